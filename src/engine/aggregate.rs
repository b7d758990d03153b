//! Additive per-bucket aggregates (counters, sums, maxima, sketches) and the figures derived from them.
//!
//! Everything here is mergeable: a window, an interval record or two hosts' records combine by `merge`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::service_levels::ServiceLevels;
use super::sketch::Sketch;
use crate::units::{Formula, QueueParams};

/// How a segment left its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Answered,
    Abandoned,
    Overflow,
}

/// The queue-side facts of one segment, counted where it left the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueFacts {
    pub start_ms: i64,
    /// Answer time if answered, else end time: the attribution time.
    pub leave_ms: i64,
    pub outcome: Outcome,
}

impl QueueFacts {
    #[must_use]
    pub fn wait_ms(&self) -> u64 {
        self.leave_ms.saturating_sub(self.start_ms).max(0) as u64
    }
}

/// The handling facts of one answered segment, counted at completion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandleFacts {
    /// Wrap-up time if one came, else end time: the attribution time.
    pub completion_ms: i64,
    pub talk_ms: u64,
    pub hold_ms: u64,
    pub acw_ms: u64,
}

impl HandleFacts {
    #[must_use]
    pub fn handle_ms(&self) -> u64 {
        self.talk_ms + self.hold_ms + self.acw_ms
    }
}

/// Exact aggregates of what left the queue or completed in one bucket (or window) for one key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Agg {
    pub offered: u64,
    pub answered: u64,
    pub answered_within: u64,
    pub abandoned: u64,
    pub abandoned_within: u64,
    pub short_abandoned: u64,
    pub overflow: u64,
    pub handled: u64,
    pub wait_sum_ms: u64,
    pub wait_max_ms: u64,
    pub abandon_wait_sum_ms: u64,
    pub talk_sum_ms: u64,
    pub hold_sum_ms: u64,
    pub acw_sum_ms: u64,
    /// Band threshold (ms) → answered within it.
    pub bands: BTreeMap<u64, u64>,
    /// Waits of every segment that left the queue.
    pub wait_hist: Sketch,
    /// Handle times of handled segments.
    pub handle_hist: Sketch,
    /// Number of contributions folded in; tells a changed bucket from an unchanged one.
    #[serde(default)]
    pub revision: u64,
}

impl Agg {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.offered == 0 && self.handled == 0
    }

    /// Counts one segment leaving the queue, judged against its own queue's parameters.
    pub fn add_queue(&mut self, f: &QueueFacts, p: &QueueParams, bands: &[u64]) {
        self.count_queue(f, p, bands);
        self.wait_hist.add(f.wait_ms());
    }

    /// Everything of `add_queue` but the sketch (for accumulators that keep their own).
    pub fn count_queue(&mut self, f: &QueueFacts, p: &QueueParams, bands: &[u64]) {
        let wait = f.wait_ms();
        let within = wait <= p.threshold.0 as u64;
        self.revision += 1;
        self.offered += 1;
        self.wait_max_ms = self.wait_max_ms.max(wait);
        match f.outcome {
            Outcome::Answered => {
                self.answered += 1;
                self.answered_within += u64::from(within);
                self.wait_sum_ms += wait;
                for &b in bands {
                    *self.bands.entry(b).or_default() += u64::from(wait <= b);
                }
            }
            Outcome::Abandoned => {
                self.abandoned += 1;
                self.abandoned_within += u64::from(within);
                self.short_abandoned += u64::from(wait < p.short_abandon.0 as u64);
                self.abandon_wait_sum_ms += wait;
            }
            Outcome::Overflow => self.overflow += 1,
        }
    }

    /// Counts one completed answered segment.
    pub fn add_handle(&mut self, h: &HandleFacts) {
        self.count_handle(h);
        self.handle_hist.add(h.handle_ms());
    }

    /// Everything of `add_handle` but the sketch.
    pub fn count_handle(&mut self, h: &HandleFacts) {
        self.revision += 1;
        self.handled += 1;
        self.talk_sum_ms += h.talk_ms;
        self.hold_sum_ms += h.hold_ms;
        self.acw_sum_ms += h.acw_ms;
    }

    /// Removes what `o` added earlier (an aggregate that is part of this one): counters, sums,
    /// bands and sketch bins subtract; the maximum stays, since maxima do not subtract.
    pub fn subtract(&mut self, o: &Agg) {
        self.subtract_counters(o);
        self.wait_hist.subtract(&o.wait_hist);
        self.handle_hist.subtract(&o.handle_hist);
    }

    /// Everything of `subtract` but the sketches.
    pub fn subtract_counters(&mut self, o: &Agg) {
        let d = |a: &mut u64, b: u64| *a = a.saturating_sub(b);
        d(&mut self.offered, o.offered);
        d(&mut self.answered, o.answered);
        d(&mut self.answered_within, o.answered_within);
        d(&mut self.abandoned, o.abandoned);
        d(&mut self.abandoned_within, o.abandoned_within);
        d(&mut self.short_abandoned, o.short_abandoned);
        d(&mut self.overflow, o.overflow);
        d(&mut self.handled, o.handled);
        d(&mut self.wait_sum_ms, o.wait_sum_ms);
        d(&mut self.abandon_wait_sum_ms, o.abandon_wait_sum_ms);
        d(&mut self.talk_sum_ms, o.talk_sum_ms);
        d(&mut self.hold_sum_ms, o.hold_sum_ms);
        d(&mut self.acw_sum_ms, o.acw_sum_ms);
        d(&mut self.revision, o.revision);
        for (b, n) in &o.bands {
            if let Some(have) = self.bands.get_mut(b) {
                *have = have.saturating_sub(*n);
            }
        }
    }

    pub fn merge(&mut self, o: &Agg) {
        self.merge_counters(o);
        self.wait_hist.merge(&o.wait_hist);
        self.handle_hist.merge(&o.handle_hist);
    }

    /// Everything of `merge` but the sketches.
    pub fn merge_counters(&mut self, o: &Agg) {
        self.offered += o.offered;
        self.answered += o.answered;
        self.answered_within += o.answered_within;
        self.abandoned += o.abandoned;
        self.abandoned_within += o.abandoned_within;
        self.short_abandoned += o.short_abandoned;
        self.overflow += o.overflow;
        self.handled += o.handled;
        self.wait_sum_ms += o.wait_sum_ms;
        self.wait_max_ms = self.wait_max_ms.max(o.wait_max_ms);
        self.abandon_wait_sum_ms += o.abandon_wait_sum_ms;
        self.talk_sum_ms += o.talk_sum_ms;
        self.hold_sum_ms += o.hold_sum_ms;
        self.acw_sum_ms += o.acw_sum_ms;
        for (b, n) in &o.bands {
            *self.bands.entry(*b).or_default() += n;
        }
        self.revision += o.revision;
    }

    /// Adds many aggregates at once (a window's buckets): as `merge` one by one, but the
    /// sketches are summed in one pass instead of copying the growing result each time.
    pub fn merge_many<'a>(&mut self, others: impl IntoIterator<Item = &'a Agg> + Clone) {
        for o in others.clone() {
            self.merge_counters(o);
        }
        self.wait_hist
            .merge_many(others.clone().into_iter().map(|o| &o.wait_hist));
        self.handle_hist
            .merge_many(others.into_iter().map(|o| &o.handle_hist));
    }

    /// What was added since `earlier` (an older state of the same bucket): counters, sums and
    /// sketch bins subtract; the maximum is the current one, since maxima merge by `max`.
    #[must_use]
    pub fn since(&self, earlier: &Agg) -> Agg {
        let d = |now: u64, then: u64| now.saturating_sub(then);
        Agg {
            offered: d(self.offered, earlier.offered),
            answered: d(self.answered, earlier.answered),
            answered_within: d(self.answered_within, earlier.answered_within),
            abandoned: d(self.abandoned, earlier.abandoned),
            abandoned_within: d(self.abandoned_within, earlier.abandoned_within),
            short_abandoned: d(self.short_abandoned, earlier.short_abandoned),
            overflow: d(self.overflow, earlier.overflow),
            handled: d(self.handled, earlier.handled),
            wait_sum_ms: d(self.wait_sum_ms, earlier.wait_sum_ms),
            wait_max_ms: self.wait_max_ms,
            abandon_wait_sum_ms: d(self.abandon_wait_sum_ms, earlier.abandon_wait_sum_ms),
            talk_sum_ms: d(self.talk_sum_ms, earlier.talk_sum_ms),
            hold_sum_ms: d(self.hold_sum_ms, earlier.hold_sum_ms),
            acw_sum_ms: d(self.acw_sum_ms, earlier.acw_sum_ms),
            bands: self
                .bands
                .iter()
                .map(|(b, n)| (*b, d(*n, earlier.bands.get(b).copied().unwrap_or(0))))
                .collect(),
            wait_hist: self.wait_hist.since(&earlier.wait_hist),
            handle_hist: self.handle_hist.since(&earlier.handle_hist),
            revision: d(self.revision, earlier.revision),
        }
    }

    /// The counters, sums and maximum under the output names of docs/metrics.md, in their documented order.
    #[must_use]
    pub fn named_counters(&self) -> [(&'static str, u64); 14] {
        [
            ("offered", self.offered),
            ("answered", self.answered),
            ("answered_within", self.answered_within),
            ("abandoned", self.abandoned),
            ("abandoned_within", self.abandoned_within),
            ("short_abandoned", self.short_abandoned),
            ("overflow", self.overflow),
            ("handled", self.handled),
            ("wait_sum_ms", self.wait_sum_ms),
            ("wait_max_ms", self.wait_max_ms),
            ("abandon_wait_sum_ms", self.abandon_wait_sum_ms),
            ("talk_sum_ms", self.talk_sum_ms),
            ("hold_sum_ms", self.hold_sum_ms),
            ("acw_sum_ms", self.acw_sum_ms),
        ]
    }

    /// The service level by `formula`, `None` when its denominator is zero.
    #[must_use]
    pub fn service_level(&self, formula: Formula) -> Option<f64> {
        let a = self.answered as f64;
        let at = self.answered_within as f64;
        let ab = self.abandoned as f64;
        let abt = self.abandoned_within as f64;
        let s = self.short_abandoned as f64;
        let f = self.overflow as f64;
        let q = self.offered as f64;
        let (num, den) = match formula {
            Formula::Answered => (at, a),
            Formula::Offered => (at, a + ab - s),
            Formula::OfferedWithOverflow => (at, a + ab - s + f),
            Formula::AbandonNegative => (at, q),
            Formula::AbandonPositive => (at + abt, q),
            Formula::AbandonIgnored => (at, q - abt),
            Formula::AsteriskSl2 => (at + abt, a + ab),
        };
        ratio(num, den)
    }
}

/// `num / den`, or `None` for a zero denominator (never 0 or NaN).
#[must_use]
pub fn ratio(num: f64, den: f64) -> Option<f64> {
    (den > 0.0).then(|| num / den)
}

/// Everything `metrics` reports for one key and window, derived from an [`Agg`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub asa_ms: Option<f64>,
    pub avg_abandon_ms: Option<f64>,
    pub aht_ms: Option<f64>,
    pub avg_talk_ms: Option<f64>,
    pub avg_hold_ms: Option<f64>,
    pub avg_acw_ms: Option<f64>,
    pub abandon_rate: Option<f64>,
    pub service_level: Option<f64>,
    pub service_levels: ServiceLevels,
    pub wait_p50_ms: Option<f64>,
    pub wait_p90_ms: Option<f64>,
    pub wait_p95_ms: Option<f64>,
    pub wait_p99_ms: Option<f64>,
    pub handle_p50_ms: Option<f64>,
    pub handle_p90_ms: Option<f64>,
    pub handle_p95_ms: Option<f64>,
    pub handle_p99_ms: Option<f64>,
}

/// The quantiles rows report: p50, p90, p95, p99.
pub const QUANTILES: [f64; 4] = [0.50, 0.90, 0.95, 0.99];

impl Figures {
    #[must_use]
    pub fn of(a: &Agg, formula: Formula) -> Figures {
        Figures::with_quantiles(
            a,
            formula,
            QUANTILES.map(|q| a.wait_hist.quantile(q)),
            QUANTILES.map(|q| a.handle_hist.quantile(q)),
        )
    }

    /// The figures of `a`'s counters, with the [`QUANTILES`] of waits and handle times given.
    #[must_use]
    pub fn with_quantiles(
        a: &Agg,
        formula: Formula,
        wait: [Option<f64>; 4],
        handle: [Option<f64>; 4],
    ) -> Figures {
        let handled = a.handled as f64;
        Figures {
            asa_ms: ratio(a.wait_sum_ms as f64, a.answered as f64),
            avg_abandon_ms: ratio(a.abandon_wait_sum_ms as f64, a.abandoned as f64),
            aht_ms: ratio(
                (a.talk_sum_ms + a.hold_sum_ms + a.acw_sum_ms) as f64,
                handled,
            ),
            avg_talk_ms: ratio(a.talk_sum_ms as f64, handled),
            avg_hold_ms: ratio(a.hold_sum_ms as f64, handled),
            avg_acw_ms: ratio(a.acw_sum_ms as f64, handled),
            abandon_rate: ratio(
                a.abandoned as f64 - a.short_abandoned as f64,
                a.offered as f64 - a.short_abandoned as f64,
            ),
            service_level: a.service_level(formula),
            service_levels: ServiceLevels::from_fn(|f| a.service_level(f)),
            wait_p50_ms: wait[0],
            wait_p90_ms: wait[1],
            wait_p95_ms: wait[2],
            wait_p99_ms: wait[3],
            handle_p50_ms: handle[0],
            handle_p90_ms: handle[1],
            handle_p95_ms: handle[2],
            handle_p99_ms: handle[3],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::Millis;

    /// A hand-worked queue: T = 20 s, S = 5 s.
    /// Answered: waits 5 s, 15 s, 20 s (within, inclusive), 40 s  → A = 4, A≤T = 3
    /// Abandoned: waits 2 s (short), 10 s (within), 30 s          → Ab = 3, S = 1, Ab≤T = 2
    /// Overflow: 1 (wait 50 s)                                     → F = 1, Q = 8
    fn worked() -> Agg {
        let p = QueueParams {
            threshold: Millis::secs(20),
            target: 0.8,
            short_abandon: Millis::secs(5),
            formula: Formula::Offered,
        };
        let mut a = Agg::default();
        let mut add = |wait_s: i64, outcome| {
            let f = QueueFacts {
                start_ms: 1_000_000,
                leave_ms: 1_000_000 + wait_s * 1000,
                outcome,
            };
            a.add_queue(&f, &p, &[10_000, 20_000]);
        };
        for w in [5, 15, 20, 40] {
            add(w, Outcome::Answered);
        }
        for w in [2, 10, 30] {
            add(w, Outcome::Abandoned);
        }
        add(50, Outcome::Overflow);
        a
    }

    #[test]
    fn seven_formulas_by_hand() {
        let a = worked();
        assert_eq!((a.offered, a.answered, a.answered_within), (8, 4, 3));
        assert_eq!(
            (
                a.abandoned,
                a.short_abandoned,
                a.abandoned_within,
                a.overflow
            ),
            (3, 1, 2, 1)
        );
        let sl = |f| a.service_level(f).unwrap();
        assert_eq!(sl(Formula::Answered), 3.0 / 4.0); // A≤T / A
        assert_eq!(sl(Formula::Offered), 3.0 / 6.0); // A≤T / (A + Ab − S) = 3 / (4 + 3 − 1)
        assert_eq!(sl(Formula::OfferedWithOverflow), 3.0 / 7.0); // + F
        assert_eq!(sl(Formula::AbandonNegative), 3.0 / 8.0); // A≤T / Q
        assert_eq!(sl(Formula::AbandonPositive), 5.0 / 8.0); // (A≤T + Ab≤T) / Q
        assert_eq!(sl(Formula::AbandonIgnored), 3.0 / 6.0); // A≤T / (Q − Ab≤T) = 3 / (8 − 2)
        assert_eq!(sl(Formula::AsteriskSl2), 5.0 / 7.0); // (A≤T + Ab≤T) / (A + Ab)
        let fig = Figures::of(&a, Formula::Offered);
        assert_eq!(fig.asa_ms, Some(80_000.0 / 4.0));
        assert_eq!(fig.avg_abandon_ms, Some(42_000.0 / 3.0));
        assert_eq!(fig.abandon_rate, Some((3.0 - 1.0) / (8.0 - 1.0)));
        assert_eq!(a.wait_max_ms, 50_000);
        assert_eq!(a.bands.get(&10_000), Some(&1));
        assert_eq!(a.bands.get(&20_000), Some(&3));
    }

    #[test]
    fn zero_denominators_are_none() {
        let fig = Figures::of(&Agg::default(), Formula::Offered);
        assert_eq!(fig.asa_ms, None);
        assert_eq!(fig.aht_ms, None);
        assert_eq!(fig.service_level, None);
        assert!(fig.service_levels.iter().all(|(_, v)| v.is_none()));
        assert_eq!(fig.wait_p50_ms, None);
    }

    #[test]
    fn merge_equals_adding_everything_to_one() {
        let a = worked();
        let mut b = worked();
        b.add_handle(&HandleFacts {
            completion_ms: 5,
            talk_ms: 100,
            hold_ms: 10,
            acw_ms: 5,
        });
        let mut m = a.clone();
        m.merge(&b);
        let mut many = a.clone();
        many.merge_many([&b]);
        assert_eq!(many, m);
        assert_eq!(m.since(&a), b);
        assert_eq!(m.offered, 16);
        assert_eq!(m.handled, 1);
        assert_eq!(m.wait_hist.count(), 16);
        assert_eq!(m.service_level(Formula::Offered), Some(6.0 / 12.0));
    }
}
