//! Compliance of one objective in one period: the value so far from the period's additive
//! counters, the status (met, at risk, missed, no data) and the margin in calls: what the rest
//! of the period must do to end on target, or that it no longer can.
//!
//! Pure: the caller passes the period's [`Agg`] (counted with the objective's own T, S and
//! wait clock, see `Objective::judged`) and the volume still expected.
//!
//! Ratio measures are judged in exact integer arithmetic, with the target in parts per million:
//! 7 of 100 meets a 0.07 target (in floating point 0.07 × 100 is 7.000000000000001).

use serde::{Deserialize, Serialize};

use crate::config::{Measure, Target};
use crate::engine::Agg;
use crate::units::{Formula, Millis};

/// What an objective asks: the measure, its formula and threshold, the target and the margin
/// under which a met target is still called at risk.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Goal {
    pub measure: Measure,
    /// Used by `service_level` only.
    pub formula: Formula,
    /// T, for the measures that have one (only used in messages here: the counters were kept
    /// with it).
    pub threshold: Option<Millis>,
    pub target: Target,
    pub at_risk_margin: Option<Target>,
}

/// How an objective stands in its period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// On target, by more than the at-risk margin, and (while the period runs) not lost with the
    /// volume expected.
    Met,
    /// Still reachable with the volume expected, but below the target or within the at-risk
    /// margin of it.
    AtRisk,
    /// Below the target at the period's end, or no longer reachable with the volume expected.
    Missed,
    /// No call in the measure's denominator yet.
    NoData,
}

/// The volume the rest of the period is expected to bring, in the measure's units (see
/// [`units`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remaining {
    /// The period is over: the value is final.
    Ended,
    /// This many more units are expected.
    Expected(u64),
    /// No estimate (no service time has passed yet this period).
    Unknown,
}

/// What the rest of the period must do.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Margin {
    /// At least `good` of the next `next` units must be good (answered within T; for
    /// `abandon_rate_max`, not abandoned).
    AtLeast { next: u64, good: u64 },
    /// The next `next` units must average at most `avg_ms` (ASA, AHT).
    AverageAtMost { next: u64, avg_ms: f64 },
    /// The target holds whatever the next `next` units are.
    Secured { next: u64 },
    /// The target can no longer be met this period with the volume expected.
    Unreachable,
}

/// The judgement of one objective in one period.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Compliance {
    /// The measure so far (a fraction, or ms for ASA and AHT); `None` with no denominator.
    pub value: Option<f64>,
    pub status: Status,
    /// `None` once the period has ended or when no volume can be estimated.
    pub margin: Option<Margin>,
}

const PPM: u128 = 1_000_000;

/// A fraction as parts per million (validated targets lie in 0..=1).
fn ppm(x: f64) -> u128 {
    (x.clamp(0.0, 1.0) * 1e6).round() as u128
}

/// `(good, denominator)` of a ratio measure, in the names of docs/metrics.md; `None` for the
/// averages (ASA, AHT). For `abandon_rate_max` good is what was not abandoned, Q − Ab, over
/// Q − S: the rate is 1 − good / denominator.
fn ratio_parts(g: &Goal, a: &Agg) -> Option<(u64, u64)> {
    let at = a.answered_within;
    let abt = a.abandoned_within;
    let ab_net = a.abandoned.saturating_sub(a.short_abandoned);
    Some(match g.measure {
        Measure::AnsweredWithin => (at, a.answered),
        // The engine hands a callback tally over as requests whose outcome is known
        // (`answered`) and those made on time (`answered_within`): see engine/callbacks.rs.
        Measure::CallbacksWithin => (at, a.answered),
        Measure::AbandonRateMax => (
            a.offered.saturating_sub(a.abandoned),
            a.offered.saturating_sub(a.short_abandoned),
        ),
        Measure::ServiceLevel => match g.formula {
            Formula::Answered => (at, a.answered),
            Formula::Offered => (at, a.answered + ab_net),
            Formula::OfferedWithOverflow => (at, a.answered + ab_net + a.overflow),
            Formula::AbandonNegative => (at, a.offered),
            Formula::AbandonPositive => (at + abt, a.offered),
            Formula::AbandonIgnored => (at, a.offered.saturating_sub(abt)),
            Formula::AsteriskSl2 => (at + abt, a.answered + a.abandoned),
        },
        Measure::AsaMax | Measure::AhtMax => return None,
    })
}

/// `(sum_ms, count)` of an average measure.
fn average_parts(g: &Goal, a: &Agg) -> Option<(u64, u64)> {
    match g.measure {
        Measure::AsaMax => Some((a.wait_sum_ms, a.answered)),
        Measure::AhtMax => Some((a.talk_sum_ms + a.hold_sum_ms + a.acw_sum_ms, a.handled)),
        _ => None,
    }
}

/// How many units of the measure `a` holds: the denominator of a ratio, answered calls for
/// ASA, handled ones for AHT. The volume estimate scales this.
#[must_use]
pub fn units(g: &Goal, a: &Agg) -> u64 {
    ratio_parts(g, a)
        .or_else(|| average_parts(g, a))
        .map_or(0, |(_, n)| n)
}

/// The volume still expected, from the rate so far this period: `so_far` units in
/// `elapsed_open_ms` of service hours, scaled to the `remaining_open_ms` left (rounded). The
/// rate so far, not last period's volume, so that a month busier than the last is judged by
/// its own traffic; it does not know that mornings are busier than evenings.
#[must_use]
pub fn expected_by_rate(so_far: u64, elapsed_open_ms: i64, remaining_open_ms: i64) -> Remaining {
    if remaining_open_ms <= 0 {
        return Remaining::Expected(0);
    }
    if elapsed_open_ms <= 0 {
        return Remaining::Unknown;
    }
    let scaled = (u128::from(so_far) * remaining_open_ms as u128 * 2 + elapsed_open_ms as u128)
        / (elapsed_open_ms as u128 * 2);
    Remaining::Expected(u64::try_from(scaled).unwrap_or(u64::MAX))
}

/// Judges `so_far` against `g` with `remaining` volume to come.
#[must_use]
pub fn assess(g: &Goal, so_far: &Agg, remaining: Remaining) -> Compliance {
    let (value, meets, clear, margin) = if let Some((good, den)) = ratio_parts(g, so_far) {
        ratio_judgement(g, good, den, remaining)
    } else {
        let (sum, n) = average_parts(g, so_far).unwrap_or((0, 0));
        average_judgement(g, sum, n, remaining)
    };
    let status = match (value, remaining, margin) {
        (None, _, _) => Status::NoData,
        (_, Remaining::Ended, _) if meets => Status::Met,
        (_, Remaining::Ended, _) | (_, _, Some(Margin::Unreachable)) => Status::Missed,
        _ if clear => Status::Met,
        _ => Status::AtRisk,
    };
    Compliance {
        value,
        status,
        margin: if remaining == Remaining::Ended {
            None
        } else {
            margin
        },
    }
}

/// The target and margin of a fraction measure in ppm of "good" (for the abandon rate, the
/// share not abandoned: 1 − target, and the margin counted the same way).
fn good_ppm(g: &Goal) -> (u128, u128) {
    let fraction = |t: Option<Target>| match t {
        Some(Target::Fraction(x)) => ppm(x),
        _ => 0,
    };
    let target = fraction(Some(g.target));
    let margin = fraction(g.at_risk_margin);
    if g.measure == Measure::AbandonRateMax {
        (PPM - target, margin)
    } else {
        (target, margin)
    }
}

/// `(value, meets the target, meets it by more than the margin, margin)` of a ratio measure.
fn ratio_judgement(
    g: &Goal,
    good: u64,
    den: u64,
    remaining: Remaining,
) -> (Option<f64>, bool, bool, Option<Margin>) {
    let (target, margin) = good_ppm(g);
    let (good_u, den_u) = (u128::from(good), u128::from(den));
    let value = (den > 0).then(|| {
        let share = good as f64 / den as f64;
        if g.measure == Measure::AbandonRateMax {
            1.0 - share
        } else {
            share
        }
    });
    let meets = good_u * PPM >= target * den_u;
    // "By more than the margin": strictly above target + margin, so that a value exactly at
    // the margin's edge is at risk (the margin is the zone of warning, its edge included).
    let clear = margin == 0 && meets || good_u * PPM > (target + margin).min(PPM) * den_u;
    let margin = match remaining {
        Remaining::Expected(r) => {
            let r_u = u128::from(r);
            let wanted = target * (den_u + r_u);
            let have = good_u * PPM;
            let need = wanted.saturating_sub(have).div_ceil(PPM);
            Some(if need > r_u {
                Margin::Unreachable
            } else if need == 0 {
                Margin::Secured { next: r }
            } else {
                Margin::AtLeast {
                    next: r,
                    good: need as u64,
                }
            })
        }
        Remaining::Ended | Remaining::Unknown => None,
    };
    (value, meets, clear, margin)
}

/// `(value, meets, meets by more than the margin, margin)` of an average measure (lower is
/// better): sums in ms against a target in ms, exactly.
fn average_judgement(
    g: &Goal,
    sum: u64,
    n: u64,
    remaining: Remaining,
) -> (Option<f64>, bool, bool, Option<Margin>) {
    let ms = |t: Option<Target>| match t {
        Some(Target::Duration(d)) => u128::try_from(d.0).unwrap_or(0),
        _ => 0,
    };
    let (target, margin) = (ms(Some(g.target)), ms(g.at_risk_margin));
    let (sum_u, n_u) = (u128::from(sum), u128::from(n));
    let value = (n > 0).then(|| sum as f64 / n as f64);
    let meets = sum_u <= target * n_u;
    let clear = margin == 0 && meets || sum_u < target.saturating_sub(margin) * n_u;
    let margin = match remaining {
        Remaining::Expected(r) => {
            let allowed = target * (n_u + u128::from(r));
            Some(if sum_u > allowed {
                Margin::Unreachable
            } else if r == 0 {
                Margin::Secured { next: 0 }
            } else {
                Margin::AverageAtMost {
                    next: r,
                    avg_ms: (allowed - sum_u) as f64 / r as f64,
                }
            })
        }
        Remaining::Ended | Remaining::Unknown => None,
    };
    (value, meets, clear, margin)
}

/// A period's name for messages.
#[must_use]
pub fn period_word(p: crate::config::Period) -> &'static str {
    match p {
        crate::config::Period::Day => "day",
        crate::config::Period::Week => "week",
        crate::config::Period::Month => "month",
    }
}

impl Margin {
    /// The sentence `sla` prints, e.g. "the next 120 calls must be answered within 20s at
    /// ≥ 93.4 % (113 of them) to end the month on target".
    #[must_use]
    pub fn sentence(&self, g: &Goal, period: crate::config::Period) -> String {
        let period = period_word(period);
        let within = g
            .threshold
            .map_or_else(String::new, |t| format!(" within {t}"));
        match *self {
            Margin::Unreachable => format!("the target can no longer be met this {period}"),
            Margin::Secured { next } => {
                let what = if g.measure == Measure::CallbacksWithin {
                    "callback requests"
                } else {
                    "calls"
                };
                format!("the target holds this {period} whatever the next {next} {what} do")
            }
            Margin::AtLeast { next, good } if g.measure == Measure::AbandonRateMax => format!(
                "at most {} of the next {next} calls may be abandoned to end the {period} on target",
                next - good
            ),
            Margin::AtLeast { next, good } if g.measure == Measure::CallbacksWithin => {
                let tenths = (u128::from(good) * 1000).div_ceil(u128::from(next.max(1)));
                format!(
                    "of the next {next} callback requests, ≥ {}.{} % ({good} of them) must be called back by their deadline to end the {period} on target",
                    tenths / 10,
                    tenths % 10
                )
            }
            Margin::AtLeast { next, good } => {
                // Rounded up, so that "at ≥ X %" never asks less than the count does.
                let tenths = (u128::from(good) * 1000).div_ceil(u128::from(next.max(1)));
                format!(
                    "the next {next} calls must be answered{within} at ≥ {}.{} % ({good} of them) to end the {period} on target",
                    tenths / 10,
                    tenths % 10
                )
            }
            Margin::AverageAtMost { next, avg_ms } => {
                let what = if g.measure == Measure::AhtMax {
                    "handled calls must take"
                } else {
                    "answered calls must wait"
                };
                format!(
                    "the next {next} {what} {:.1} s on average at most to end the {period} on target",
                    avg_ms / 1000.0
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Period;

    fn sl_goal(target: f64) -> Goal {
        Goal {
            measure: Measure::ServiceLevel,
            formula: Formula::Offered,
            threshold: Some(Millis::secs(20)),
            target: Target::Fraction(target),
            at_risk_margin: None,
        }
    }

    /// Counters with `within` of `answered` answered within T and `abandoned` abandoned
    /// (none short): the offered formula's ratio is within / (answered + abandoned).
    fn agg(answered: u64, within: u64, abandoned: u64) -> Agg {
        Agg {
            offered: answered + abandoned,
            answered,
            answered_within: within,
            abandoned,
            ..Agg::default()
        }
    }

    #[test]
    fn exactly_on_target_is_met_and_the_rest_must_keep_the_pace() {
        let g = sl_goal(0.8);
        let a = agg(100, 80, 0);
        let done = assess(&g, &a, Remaining::Ended);
        assert_eq!(done.value, Some(0.8));
        assert_eq!(done.status, Status::Met);
        assert_eq!(done.margin, None);
        // 50 more expected: 0.8 × 150 = 120 good needed, 80 held → 40 of 50 (exactly 80 %).
        let c = assess(&g, &a, Remaining::Expected(50));
        assert_eq!(c.status, Status::Met);
        assert_eq!(c.margin, Some(Margin::AtLeast { next: 50, good: 40 }));
        assert_eq!(
            c.margin.unwrap().sentence(&g, Period::Month),
            "the next 50 calls must be answered within 20s at ≥ 80.0 % (40 of them) to end the month on target"
        );
        // One good call short of the target: 79 of 100.
        let below = assess(&g, &agg(100, 79, 0), Remaining::Ended);
        assert_eq!(below.status, Status::Missed);
    }

    #[test]
    fn a_target_exactly_reachable_is_at_risk_and_one_call_less_is_missed() {
        let g = sl_goal(0.8);
        let a = agg(100, 70, 0);
        // 0.8 × 150 − 70 = 50: all 50 expected must be good: still reachable.
        let c = assess(&g, &a, Remaining::Expected(50));
        assert_eq!(c.status, Status::AtRisk);
        assert_eq!(c.margin, Some(Margin::AtLeast { next: 50, good: 50 }));
        // 49 expected: 0.8 × 149 − 70 = 49.2 → 50 needed of 49: unreachable.
        let c = assess(&g, &a, Remaining::Expected(49));
        assert_eq!(c.status, Status::Missed);
        assert_eq!(c.margin, Some(Margin::Unreachable));
        assert_eq!(
            c.margin.unwrap().sentence(&g, Period::Month),
            "the target can no longer be met this month"
        );
        // Nothing more expected, below target: missed before the period ends.
        assert_eq!(
            assess(&g, &a, Remaining::Expected(0)).status,
            Status::Missed
        );
        // No estimate: below target is at risk, never declared lost.
        let c = assess(&g, &a, Remaining::Unknown);
        assert_eq!((c.status, c.margin), (Status::AtRisk, None));
    }

    #[test]
    fn targets_compare_exactly_not_in_floating_point() {
        // 0.07 × 100 = 7.000000000000001 in f64; 7 of 100 meets a 0.07 target.
        assert!(std::hint::black_box(0.07) * 100.0 > 7.0);
        let g = sl_goal(0.07);
        assert_eq!(
            assess(&g, &agg(100, 7, 0), Remaining::Ended).status,
            Status::Met
        );
        assert_eq!(
            assess(&g, &agg(100, 6, 0), Remaining::Ended).status,
            Status::Missed
        );
        // 0.07 × 200 = 14: of 100 more, 7 needed.
        assert_eq!(
            assess(&g, &agg(100, 7, 0), Remaining::Expected(100)).margin,
            Some(Margin::AtLeast { next: 100, good: 7 })
        );
    }

    #[test]
    fn a_lead_that_the_expected_volume_cannot_lose_is_secured() {
        let g = sl_goal(0.8);
        // 95 of 100: with 10 more all failing, 95 / 110 = 86 % ≥ 80 %.
        let c = assess(&g, &agg(100, 95, 0), Remaining::Expected(10));
        assert_eq!(c.status, Status::Met);
        assert_eq!(c.margin, Some(Margin::Secured { next: 10 }));
        // 30 more failing would take it to 95 / 130 = 73 %: 9 of 30 must be good
        // (0.8 × 130 = 104 − 95).
        assert_eq!(
            assess(&g, &agg(100, 95, 0), Remaining::Expected(30)).margin,
            Some(Margin::AtLeast { next: 30, good: 9 })
        );
    }

    #[test]
    fn the_at_risk_margin_warns_before_the_target_is_lost() {
        let mut g = sl_goal(0.8);
        g.at_risk_margin = Some(Target::Fraction(0.02));
        // 81 %: meets 80 %, but within 2 points.
        assert_eq!(
            assess(&g, &agg(100, 81, 0), Remaining::Expected(10)).status,
            Status::AtRisk
        );
        // Exactly at the margin's edge (82 %) is still at risk; 83 % is met.
        assert_eq!(
            assess(&g, &agg(100, 82, 0), Remaining::Expected(10)).status,
            Status::AtRisk
        );
        assert_eq!(
            assess(&g, &agg(100, 83, 0), Remaining::Expected(10)).status,
            Status::Met
        );
        // At the period's end the margin no longer matters: 81 % met.
        assert_eq!(
            assess(&g, &agg(100, 81, 0), Remaining::Ended).status,
            Status::Met
        );
    }

    #[test]
    fn abandon_rate_at_most() {
        let g = Goal {
            measure: Measure::AbandonRateMax,
            formula: Formula::Offered,
            threshold: None,
            target: Target::Fraction(0.05),
            at_risk_margin: None,
        };
        // Q = 100, Ab = 6 of which S = 1: (6 − 1) / (100 − 1) = 5.05 % > 5 %.
        let a = Agg {
            offered: 100,
            answered: 94,
            abandoned: 6,
            short_abandoned: 1,
            ..Agg::default()
        };
        let c = assess(&g, &a, Remaining::Expected(50));
        assert!((c.value.unwrap() - 5.0 / 99.0).abs() < 1e-12);
        assert_eq!(c.status, Status::AtRisk);
        // 0.95 × 149 = 141.55 − 94 → 48 of the 50 must not be abandoned: at most 2 may be.
        // Check: (5 + 2) / 149 = 4.70 % ≤ 5 %; (5 + 3) / 149 = 5.37 % > 5 %.
        assert_eq!(c.margin, Some(Margin::AtLeast { next: 50, good: 48 }));
        assert_eq!(
            c.margin.unwrap().sentence(&g, Period::Week),
            "at most 2 of the next 50 calls may be abandoned to end the week on target"
        );
        assert_eq!(assess(&g, &a, Remaining::Ended).status, Status::Missed);
        // 5 of 101 non-short is 4.95 %: met.
        let ok = Agg {
            offered: 101,
            ..a.clone()
        };
        assert_eq!(assess(&g, &ok, Remaining::Ended).status, Status::Met);
    }

    #[test]
    fn asa_and_aht_at_most() {
        let asa = Goal {
            measure: Measure::AsaMax,
            formula: Formula::Offered,
            threshold: None,
            target: Target::Duration(Millis::secs(30)),
            at_risk_margin: None,
        };
        // 100 answered, 3 300 s of waits: ASA 33 s.
        let a = Agg {
            answered: 100,
            wait_sum_ms: 3_300_000,
            ..Agg::default()
        };
        let c = assess(&asa, &a, Remaining::Expected(50));
        assert_eq!(c.value, Some(33_000.0));
        assert_eq!(c.status, Status::AtRisk);
        // 30 s × 150 − 3 300 s = 1 200 s over 50 calls: 24 s each on average.
        assert_eq!(
            c.margin,
            Some(Margin::AverageAtMost {
                next: 50,
                avg_ms: 24_000.0
            })
        );
        assert_eq!(
            c.margin.unwrap().sentence(&asa, Period::Month),
            "the next 50 answered calls must wait 24.0 s on average at most to end the month on target"
        );
        // Exactly 30 s is met; 10 000 s of waits cannot come down to 30 s with 10 more calls.
        let on = Agg {
            wait_sum_ms: 3_000_000,
            ..a.clone()
        };
        assert_eq!(assess(&asa, &on, Remaining::Ended).status, Status::Met);
        let lost = Agg {
            wait_sum_ms: 10_000_000,
            ..a.clone()
        };
        let c = assess(&asa, &lost, Remaining::Expected(10));
        assert_eq!(
            (c.status, c.margin),
            (Status::Missed, Some(Margin::Unreachable))
        );
        let aht = Goal {
            measure: Measure::AhtMax,
            target: Target::Duration(Millis::secs(300)),
            ..asa
        };
        // 10 handled, 2 400 s of talk + 300 s hold + 300 s ACW = 300 s each: met exactly.
        let h = Agg {
            handled: 10,
            talk_sum_ms: 2_400_000,
            hold_sum_ms: 300_000,
            acw_sum_ms: 300_000,
            ..Agg::default()
        };
        let c = assess(&aht, &h, Remaining::Expected(5));
        assert_eq!((c.value, c.status), (Some(300_000.0), Status::Met));
        assert_eq!(
            c.margin,
            Some(Margin::AverageAtMost {
                next: 5,
                avg_ms: 300_000.0
            })
        );
    }

    #[test]
    fn no_calls_yet_is_no_data_with_what_the_period_needs() {
        let g = sl_goal(0.8);
        let c = assess(&g, &Agg::default(), Remaining::Expected(120));
        assert_eq!(c.value, None);
        assert_eq!(c.status, Status::NoData);
        assert_eq!(
            c.margin,
            Some(Margin::AtLeast {
                next: 120,
                good: 96
            })
        );
        assert_eq!(
            assess(&g, &Agg::default(), Remaining::Ended).status,
            Status::NoData
        );
    }

    /// The integer parts give the same ratio as the engine's own `service_level` for every
    /// formula, on counters with short abandons, abandons within T and overflow.
    #[test]
    fn ratio_parts_agree_with_the_engine_formulas() {
        let a = Agg {
            offered: 20,
            answered: 12,
            answered_within: 9,
            abandoned: 6,
            abandoned_within: 4,
            short_abandoned: 2,
            overflow: 2,
            ..Agg::default()
        };
        for f in Formula::ALL {
            let mut g = sl_goal(0.8);
            g.formula = f;
            let (good, den) = ratio_parts(&g, &a).unwrap();
            assert_eq!(Some(good as f64 / den as f64), a.service_level(f), "{f:?}");
            assert_eq!(assess(&g, &a, Remaining::Ended).value, a.service_level(f));
            assert_eq!(units(&g, &a), den);
        }
        let fig = crate::engine::Figures::of(&a, Formula::Offered);
        let ab = Goal {
            measure: Measure::AbandonRateMax,
            target: Target::Fraction(0.1),
            ..sl_goal(0.8)
        };
        let v = assess(&ab, &a, Remaining::Ended).value.unwrap();
        assert!((v - fig.abandon_rate.unwrap()).abs() < 1e-12);
    }

    #[test]
    fn expected_volume_from_the_rate_so_far() {
        // 300 calls in 10 open hours, 5 open hours left: 150 more.
        let h = 3_600_000;
        assert_eq!(
            expected_by_rate(300, 10 * h, 5 * h),
            Remaining::Expected(150)
        );
        // Rounded to the nearest: 1 call in 3 h, 1 h left → 0.33 → 0; 2 h left → 0.67 → 1.
        assert_eq!(expected_by_rate(1, 3 * h, h), Remaining::Expected(0));
        assert_eq!(expected_by_rate(1, 3 * h, 2 * h), Remaining::Expected(1));
        assert_eq!(expected_by_rate(0, 0, 5 * h), Remaining::Unknown);
        assert_eq!(expected_by_rate(10, 2 * h, 0), Remaining::Expected(0));
    }
}
