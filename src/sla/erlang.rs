//! Erlang C staffing: the probability that a call waits, the service level and ASA that N agents
//! give a queue, and the fewest agents that meet a service-level target (optionally under an
//! occupancy cap).
//!
//! The model (M/M/N): calls arrive at random (Poisson) at rate λ, handle times are exponential
//! with mean AHT, N agents serve one queue first come first served, and **no caller abandons**:
//! everyone waits as long as it takes. With the traffic A = λ · AHT (erlangs):
//! - `C(N, A)` = probability that a call waits, from the Erlang B recursion
//!   `B(0) = 1, B(n) = A·B(n−1) / (n + A·B(n−1))` and `C = N·B / (N − A·(1 − B))`;
//!   the recursion never forms `A^N` or `N!`, so it stays exact to rounding for thousands of
//!   erlangs;
//! - service level within T: `SL = 1 − C · e^{−(N − A)·T / AHT}`;
//! - ASA = `C · AHT / (N − A)`; occupancy = `A / N`.
//!
//! With N ≤ A the queue grows without bound: C = 1, SL = 0, ASA has no value.
//!
//! Limits: real callers abandon, so a queue that is short of agents does better than Erlang C
//! says (those who hang up shorten the wait of the others), and Erlang C overstates the agents
//! needed at high occupancy; arrivals are burstier than Poisson in some hours; agents are not
//! all alike. Erlang A (which adds patience) is not offered. All times here are in one unit of
//! the caller's choosing (AHT and T alike).

/// Erlang B: the probability that a call finds all `n` agents busy in a loss system with
/// traffic `a` erlangs (the step Erlang C is computed from).
#[must_use]
pub fn erlang_b(n: u32, a: f64) -> f64 {
    (1..=n).fold(1.0, |b, k| a * b / (f64::from(k) + a * b))
}

/// Erlang C from Erlang B of the same `n` and `a`.
fn c_from_b(n: u32, a: f64, b: f64) -> f64 {
    if f64::from(n) <= a {
        return 1.0;
    }
    let n = f64::from(n);
    n * b / (n - a * (1.0 - b))
}

/// Erlang C: the probability that a call waits at all, with `n` agents and `a` erlangs; 1 when
/// `n <= a` (the queue never empties).
#[must_use]
pub fn wait_probability(n: u32, a: f64) -> f64 {
    c_from_b(n, a, erlang_b(n, a))
}

/// The service level from C: the share of calls answered within `t`.
fn sl_from_c(n: u32, a: f64, c: f64, aht: f64, t: f64) -> f64 {
    if f64::from(n) <= a {
        return 0.0;
    }
    (1.0 - c * (-(f64::from(n) - a) * t / aht).exp()).clamp(0.0, 1.0)
}

/// The share of calls answered within `t` with `n` agents, `a` erlangs and handle time `aht`
/// (same unit as `t`); 0 when `n <= a`.
#[must_use]
pub fn service_level(n: u32, a: f64, aht: f64, t: f64) -> f64 {
    sl_from_c(n, a, wait_probability(n, a), aht, t)
}

/// Average speed of answer over all calls (those answered at once count 0), in `aht`'s unit;
/// `None` when `n <= a`.
#[must_use]
pub fn asa(n: u32, a: f64, aht: f64) -> Option<f64> {
    (f64::from(n) > a).then(|| wait_probability(n, a) * aht / (f64::from(n) - a))
}

/// What a number of agents gives a queue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Staffing {
    pub agents: u32,
    pub wait_probability: f64,
    pub service_level: f64,
    /// In `aht`'s unit.
    pub asa: f64,
    pub occupancy: f64,
}

/// What the staffing search is asked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Demand {
    /// Traffic in erlangs: arrival rate × AHT in one time unit.
    pub erlangs: f64,
    /// Average handle time.
    pub aht: f64,
    /// Service-level threshold, in `aht`'s unit.
    pub threshold: f64,
    /// Target share answered within `threshold`, 0 < target < 1.
    pub target: f64,
    /// Most occupancy allowed (e.g. 0.85), if any.
    pub max_occupancy: Option<f64>,
}

impl Demand {
    /// From an arrival rate (calls per time unit) and AHT in that unit.
    #[must_use]
    pub fn from_rate(per_unit: f64, aht: f64, threshold: f64, target: f64) -> Demand {
        Demand {
            erlangs: per_unit * aht,
            aht,
            threshold,
            target,
            max_occupancy: None,
        }
    }
}

/// Most agents the search tries: far beyond any queue a host serves, and a bound on the work.
pub const MAX_AGENTS: u32 = 1_000_000;

/// The fewest agents whose Erlang C service level reaches `d.target` (and whose occupancy is at
/// most `d.max_occupancy`), with what they give. No traffic needs no agent. `None` for inputs
/// that are not finite and positive where they must be (AHT, a target from 0 to 1 excluded, an
/// occupancy cap above 0 up to 1), or when [`MAX_AGENTS`] are not enough.
#[must_use]
pub fn agents_needed(d: &Demand) -> Option<Staffing> {
    let valid = d.erlangs.is_finite()
        && d.erlangs >= 0.0
        && d.aht.is_finite()
        && d.aht > 0.0
        && d.threshold.is_finite()
        && d.threshold >= 0.0
        && d.target > 0.0
        && d.target < 1.0
        && d.max_occupancy.is_none_or(|o| o > 0.0 && o <= 1.0);
    if !valid {
        return None;
    }
    let a = d.erlangs;
    if a == 0.0 {
        return Some(Staffing {
            agents: 0,
            wait_probability: 0.0,
            service_level: 1.0,
            asa: 0.0,
            occupancy: 0.0,
        });
    }
    // One pass of the recursion: B(n) from B(n − 1), each n judged as it comes.
    let mut b = 1.0;
    for n in 1..=MAX_AGENTS {
        b = a * b / (f64::from(n) + a * b);
        let nf = f64::from(n);
        if nf <= a || d.max_occupancy.is_some_and(|o| a / nf > o) {
            continue;
        }
        let c = c_from_b(n, a, b);
        let sl = sl_from_c(n, a, c, d.aht, d.threshold);
        if sl >= d.target {
            return Some(Staffing {
                agents: n,
                wait_probability: c,
                service_level: sl,
                asa: c * d.aht / (nf - a),
                occupancy: a / nf,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(got: f64, want: f64, tol: f64) -> bool {
        (got - want).abs() <= tol
    }

    /// Erlang C from its textbook form with the sums of A^k/k! (terms built one from the
    /// previous, in f64): an independent computation for small N.
    fn erlang_c_by_sums(n: u32, a: f64) -> f64 {
        let mut term = 1.0; // A^0 / 0!
        let mut sum = 0.0;
        for k in 0..n {
            sum += term;
            term *= a / f64::from(k + 1);
        }
        // term = A^N / N!
        let top = term * f64::from(n) / (f64::from(n) - a);
        top / (sum + top)
    }

    /// Mitan Ltd, "The Erlang-C formula" (www.mitan.co.uk/erlang/elgcmath.htm), the
    /// step-by-step example: 360 calls per half hour, calls of 4 minutes, 55 agents, target
    /// answer time 15 s. The figures asserted were recomputed independently with exact
    /// rational arithmetic (Python `fractions`, the Erlang B recursion) and rounded here:
    /// A = 48 erlangs, occupancy 0.8727, C = 0.2387009 (a call waits 23.9 % of the time),
    /// ASA = 8.18403 s, SL(15 s) = 0.845883; compare with the page's rounded results.
    #[test]
    fn mitan_step_by_step_example() {
        let a = 360.0 / 1800.0 * 240.0;
        assert_eq!(a, 48.0);
        let c = wait_probability(55, a);
        assert!(close(c, 0.238_700_9, 1e-7), "{c}");
        assert!(close(asa(55, a, 240.0).unwrap(), 8.184_03, 1e-5));
        let sl = service_level(55, a, 240.0, 15.0);
        assert!(close(sl, 0.845_883, 1e-6), "{sl}");
        assert!(close(a / 55.0, 0.873, 5e-4));
    }

    /// Call Centre Helper, "Erlang C Formula – Made Simple With an Easy Worked Example"
    /// (www.callcentrehelper.com/erlang-c-formula-example-121281.htm): 100 calls in 30
    /// minutes, AHT 180 s, 80 % answered within 20 s, whose answer before shrinkage is 14
    /// agents. Recomputed independently with exact rationals (as above): 10 erlangs; 13 agents
    /// give 79.5595 %, 14 give 88.8350 % with C = 0.174132, ASA 7.836 s, occupancy 71.43 %.
    #[test]
    fn call_centre_helper_worked_example() {
        let d = Demand::from_rate(100.0 / 1800.0, 180.0, 20.0, 0.8);
        assert!(close(d.erlangs, 10.0, 1e-12));
        assert!(close(
            service_level(13, d.erlangs, 180.0, 20.0),
            0.795_595,
            1e-6
        ));
        let s = agents_needed(&d).unwrap();
        assert_eq!(s.agents, 14);
        assert!(close(s.service_level, 0.888_350, 1e-6), "{s:?}");
        assert!(close(s.wait_probability, 0.174_132, 1e-6), "{s:?}");
        assert!(close(s.asa, 7.836, 1e-3), "{s:?}");
        assert!(close(s.occupancy, 10.0 / 14.0, 1e-12));
    }

    /// The Mitan traffic (48 erlangs, AHT 240 s) with T = 20 s and an 80 % target needs 54
    /// agents (81.72 %; 53 give 75.18 %, 55 give 86.68 %), recomputed exactly; with an 85 %
    /// occupancy cap it needs ⌈48 / 0.85⌉ = 57.
    #[test]
    fn fewest_agents_for_48_erlangs_at_80_in_20_and_under_an_occupancy_cap() {
        let mut d = Demand::from_rate(360.0 / 1800.0, 240.0, 20.0, 0.8);
        let s = agents_needed(&d).unwrap();
        assert_eq!(s.agents, 54);
        assert!(close(s.service_level, 0.817_248, 1e-6), "{s:?}");
        assert!(close(service_level(53, 48.0, 240.0, 20.0), 0.751_768, 1e-6));
        d.max_occupancy = Some(0.85);
        let capped = agents_needed(&d).unwrap();
        assert_eq!(capped.agents, 57);
        assert!(capped.occupancy <= 0.85 && 48.0 / 56.0 > 0.85);
    }

    #[test]
    fn the_recursion_equals_the_textbook_sums() {
        for n in 1..=40u32 {
            for a in [0.5, 1.0, 3.7, 10.0, 18.0, 25.5, 39.9] {
                if f64::from(n) > a {
                    let (got, want) = (wait_probability(n, a), erlang_c_by_sums(n, a));
                    assert!(
                        close(got, want, 1e-12 * want.max(1.0)),
                        "{n} {a}: {got} {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn overload_and_edges() {
        assert_eq!(wait_probability(10, 10.0), 1.0);
        assert_eq!(service_level(9, 10.0, 180.0, 20.0), 0.0);
        assert_eq!(asa(10, 10.0, 180.0), None);
        let none = agents_needed(&Demand::from_rate(0.0, 180.0, 20.0, 0.8)).unwrap();
        assert_eq!((none.agents, none.service_level), (0, 1.0));
        for bad in [
            Demand::from_rate(1.0, 0.0, 20.0, 0.8),
            Demand::from_rate(1.0, 180.0, 20.0, 1.0),
            Demand::from_rate(f64::NAN, 180.0, 20.0, 0.8),
            Demand::from_rate(-1.0, 180.0, 20.0, 0.8),
        ] {
            assert_eq!(agents_needed(&bad), None, "{bad:?}");
        }
    }

    /// 10 000 erlangs (factorials would overflow f64 past 170): the recursion stays finite and
    /// the answer lies where square-root staffing puts it, A + β√A with β of order 1.
    #[test]
    fn large_traffic_is_stable() {
        let d = Demand::from_rate(10_000.0 / 180.0, 180.0, 20.0, 0.8);
        let s = agents_needed(&d).unwrap();
        assert!(s.agents > 10_000 && s.agents < 10_000 + 200, "{s:?}");
        assert!(s.service_level >= 0.8 && s.wait_probability.is_finite());
        assert!(service_level(s.agents - 1, d.erlangs, 180.0, 20.0) < 0.8);
    }

    proptest! {
        #[test]
        fn more_traffic_never_needs_fewer_agents(
            a in 0.0f64..300.0,
            extra in 0.0f64..50.0,
            aht in 10.0f64..900.0,
            t in 0.0f64..120.0,
            target in 0.05f64..0.99,
            cap in prop::option::of(0.5f64..1.0),
        ) {
            let d = Demand { erlangs: a, aht, threshold: t, target, max_occupancy: cap };
            let more = Demand { erlangs: a + extra, ..d };
            let (s, m) = (agents_needed(&d).unwrap(), agents_needed(&more).unwrap());
            prop_assert!(s.agents <= m.agents, "{s:?} {m:?}");
            // The answer is the fewest: one agent less misses the target or the cap.
            if s.agents > 0 {
                let n = s.agents - 1;
                let occ_ok = cap.is_none_or(|o| a / f64::from(n) <= o);
                prop_assert!(!occ_ok || service_level(n, a, aht, t) < target);
            }
            prop_assert!(s.service_level >= target);
        }

        #[test]
        fn more_agents_never_lower_the_service_level(
            n in 1u32..400,
            a in 0.1f64..300.0,
            aht in 10.0f64..900.0,
            t in 0.0f64..120.0,
        ) {
            let (sl, next) = (service_level(n, a, aht, t), service_level(n + 1, a, aht, t));
            prop_assert!(next >= sl, "{sl} {next}");
            prop_assert!(wait_probability(n + 1, a) <= wait_probability(n, a));
            if let (Some(x), Some(y)) = (asa(n, a, aht), asa(n + 1, a, aht)) {
                prop_assert!(y <= x);
            }
        }
    }
}
