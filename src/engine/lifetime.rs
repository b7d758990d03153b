//! Lifetime totals: one cumulative aggregate per key since the store was created, for counters
//! that never go backwards (Prometheus `/metrics`), and fixed-bound wait and handle histograms
//! for queues.
//!
//! They are folded on the same path as the buckets (`fold.rs`), at the same moment, so a fact
//! counts here exactly when it counts in a window; and they are saved in the checkpoint's state
//! value, so a restart (clean or `kill -9`: the log replayed after the checkpoint folds the rest
//! again) continues from where they were. A checkpoint written before they existed loads with
//! zero lifetime totals: nothing had exposed them, so nothing sees them go back.
//!
//! State is keys-sized: per key, the counters of an [`Agg`] (its bands and sketches stay empty)
//! and, for queues, a count per histogram bucket. Keys are kept by name, not by the
//! engine's reusable key numbers, and at most the dimension's key limit of them; beyond it, a new
//! name counts under `(other)`, as in the windows.
//!
//! Histogram buckets hold non-cumulative counts, one per `(previous bound, bound]` and one past
//! the last bound (`+Inf`). A bound added by a reload (a new threshold or band) splits a bucket:
//! the lower part starts empty, so the cumulative count at the new bound starts at that of the
//! bound below it and is exact for waits folded from then on; no other bucket changes.

use std::collections::BTreeMap;

use super::aggregate::{Agg, HandleFacts, Outcome, QueueFacts};
use super::keys::kind_index;
use super::report::{DimKind, OVERFLOW_KEY};
use super::varint::{put_bytes, put_u64, DecodeError, Reader};
use crate::event::EndReason;
use crate::units::QueueParams;

/// Handle-time bounds (ms) always present: 30 s to an hour.
const HANDLE_BOUNDS_MS: [u64; 11] = [
    30_000, 60_000, 120_000, 180_000, 300_000, 450_000, 600_000, 900_000, 1_200_000, 1_800_000,
    3_600_000,
];

/// Wait bounds (ms) always present besides the configured bands and thresholds.
const WAIT_BOUNDS_MS: [u64; 12] = [
    5_000, 10_000, 15_000, 20_000, 30_000, 45_000, 60_000, 90_000, 120_000, 180_000, 300_000,
    600_000,
];

/// The dimensions in the order [`Lifetime::iter`] gives them.
const KINDS: [DimKind; 4] = [
    DimKind::All,
    DimKind::Queue,
    DimKind::Agent,
    DimKind::Channel,
];

/// The reasons an unanswered segment overflows (leaves the queue neither answered nor
/// abandoned), in the order of [`LifeTotals::overflow_by_reason`].
pub const OVERFLOW_REASONS: [EndReason; 4] = [
    EndReason::Timeout,
    EndReason::Exit,
    EndReason::Transferred,
    EndReason::Callback,
];

/// Outcomes in histogram order (`outcome` label of the wait histogram).
pub const OUTCOMES: [Outcome; 3] = [Outcome::Answered, Outcome::Abandoned, Outcome::Overflow];

fn outcome_index(o: Outcome) -> usize {
    match o {
        Outcome::Answered => 0,
        Outcome::Abandoned => 1,
        Outcome::Overflow => 2,
    }
}

/// Non-cumulative counts per bucket of one histogram: `bounds.len() + 1` of them.
pub type Buckets = Vec<u64>;

/// The wait and handle histograms of one key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Histograms {
    /// Per outcome (see [`OUTCOMES`]).
    pub wait: [Buckets; 3],
    pub handle: Buckets,
}

/// One key's lifetime totals.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LifeTotals {
    /// Counters and sums (its bands and sketches stay empty; `wait_max_ms` is the longest ever).
    pub agg: Agg,
    /// Sum of the waits of segments that overflowed (the wait histogram's overflow `_sum`).
    pub overflow_wait_sum_ms: u64,
    /// Overflows by reason (see [`OVERFLOW_REASONS`]), counted since totals of layout 4 were
    /// kept: totals restored from an older store counted their overflows without a reason.
    pub overflow_by_reason: [u64; 4],
    /// For queues only.
    pub hist: Option<Histograms>,
}

/// Every key's lifetime totals and the histogram bounds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Lifetime {
    wait_bounds: Vec<u64>,
    handle_bounds: Vec<u64>,
    /// Per dimension (see [`kind_index`]), by key name: looked up by `&str` without allocating.
    per_key: [BTreeMap<Box<str>, LifeTotals>; 4],
}

/// The wait bounds a config asks for: the fixed ones, every band and every queue threshold.
pub fn wait_bounds_of(bands: &[u64], params: impl IntoIterator<Item = QueueParams>) -> Vec<u64> {
    let mut b: Vec<u64> = WAIT_BOUNDS_MS
        .iter()
        .copied()
        .chain(bands.iter().copied())
        .chain(params.into_iter().map(|p| p.threshold.0.max(0) as u64))
        .collect();
    b.sort_unstable();
    b.dedup();
    b
}

fn totals_mut(
    per_key: &mut [BTreeMap<Box<str>, LifeTotals>; 4],
) -> impl Iterator<Item = &mut LifeTotals> {
    per_key.iter_mut().flat_map(BTreeMap::values_mut)
}

/// Index of the bucket holding `v`: the first bound `>= v` (`le` is inclusive), or the last.
fn bucket_of(bounds: &[u64], v: u64) -> usize {
    bounds.partition_point(|&b| b < v)
}

/// Adds `wanted` bounds missing from `bounds`, splitting the buckets they fall in (see the module
/// documentation); `buckets` follow.
fn add_bounds<'a>(
    bounds: &mut Vec<u64>,
    wanted: &[u64],
    buckets: impl Iterator<Item = &'a mut Buckets>,
) {
    let new: Vec<u64> = wanted
        .iter()
        .copied()
        .filter(|b| bounds.binary_search(b).is_err())
        .collect();
    if new.is_empty() {
        return;
    }
    let mut buckets: Vec<&mut Buckets> = buckets.collect();
    for b in new {
        let i = bucket_of(bounds, b);
        bounds.insert(i, b);
        for counts in &mut buckets {
            counts.insert(i, 0);
        }
    }
}

impl Lifetime {
    /// Empty totals with the given bounds.
    #[must_use]
    pub fn new(wait_bounds: &[u64]) -> Lifetime {
        let mut l = Lifetime {
            wait_bounds: Vec::new(),
            handle_bounds: HANDLE_BOUNDS_MS.to_vec(),
            per_key: Default::default(),
        };
        l.ensure_bounds(wait_bounds);
        l
    }

    /// Makes sure every one of `wait_bounds` is a bound (after a reload or a restore).
    pub fn ensure_bounds(&mut self, wait_bounds: &[u64]) {
        let mut wanted = wait_bounds.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        add_bounds(
            &mut self.wait_bounds,
            &wanted,
            totals_mut(&mut self.per_key)
                .filter_map(|t| t.hist.as_mut())
                .flat_map(|h| h.wait.iter_mut()),
        );
        add_bounds(
            &mut self.handle_bounds,
            &HANDLE_BOUNDS_MS,
            totals_mut(&mut self.per_key)
                .filter_map(|t| t.hist.as_mut())
                .map(|h| &mut h.handle),
        );
    }

    #[must_use]
    pub fn wait_bounds(&self) -> &[u64] {
        &self.wait_bounds
    }

    #[must_use]
    pub fn handle_bounds(&self) -> &[u64] {
        &self.handle_bounds
    }

    /// Every key's totals: dimension, name, totals; by dimension, then name.
    pub fn iter(&self) -> impl Iterator<Item = (DimKind, &str, &LifeTotals)> {
        KINDS.into_iter().flat_map(move |kind| {
            self.per_key[kind_index(kind)]
                .iter()
                .map(move |(k, t)| (kind, &**k, t))
        })
    }

    /// The totals of `dim`'s key `name` (already the engine's effective name), created if new;
    /// a new name beyond `limit` keys of its kind counts under `(other)`.
    fn entry(&mut self, kind: DimKind, name: &str, limit: usize) -> &mut LifeTotals {
        let (nw, nh) = (self.wait_bounds.len() + 1, self.handle_bounds.len() + 1);
        let map = &mut self.per_key[kind_index(kind)];
        // Known keys (all but a key's first fact) cost two searches: this one and `get_mut`.
        if !map.contains_key(name) {
            let name = if map.len() < limit.max(1) {
                name
            } else {
                OVERFLOW_KEY
            };
            if !map.contains_key(name) {
                map.insert(
                    name.into(),
                    LifeTotals {
                        hist: (kind == DimKind::Queue).then(|| Histograms {
                            wait: [vec![0; nw], vec![0; nw], vec![0; nw]],
                            handle: vec![0; nh],
                        }),
                        ..LifeTotals::default()
                    },
                );
            }
            // Present: inserted just above if it was absent.
            return map
                .get_mut(name)
                .expect("present: inserted above if absent");
        }
        // Present: `contains_key` said so just above.
        map.get_mut(name).expect("the key is present")
    }

    /// Counts one segment leaving the queue under one key, judged by its queue's parameters
    /// ([`Lifetime::add_segment`] with a queue fact only; the tests' shorthand).
    #[cfg(test)]
    pub fn add_queue(
        &mut self,
        kind: DimKind,
        name: &str,
        limit: usize,
        f: &QueueFacts,
        p: &QueueParams,
        reason: Option<EndReason>,
    ) {
        self.add_segment(kind, name, limit, Some((f, p, reason)), None);
    }

    /// Counts one completed answered segment under one key ([`Lifetime::add_segment`] with a
    /// handle fact only; the tests' shorthand).
    #[cfg(test)]
    pub fn add_handle(&mut self, kind: DimKind, name: &str, limit: usize, h: &HandleFacts) {
        self.add_segment(kind, name, limit, None, Some(h));
    }

    /// Counts what of one segment is folded now under one key: its leaving the queue (judged by
    /// its queue's parameters, with its end reason), its completed handling, or both (the key
    /// looked up once).
    pub fn add_segment(
        &mut self,
        kind: DimKind,
        name: &str,
        limit: usize,
        queue: Option<(&QueueFacts, &QueueParams, Option<EndReason>)>,
        handle: Option<&HandleFacts>,
    ) {
        if queue.is_none() && handle.is_none() {
            // Nothing to count: no key is created for it.
            return;
        }
        let wait_bucket = queue.map(|(f, _, _)| bucket_of(&self.wait_bounds, f.wait_ms()));
        let handle_bucket = handle.map(|h| bucket_of(&self.handle_bounds, h.handle_ms()));
        let t = self.entry(kind, name, limit);
        // `revision` tells changed buckets apart; nothing reads it here, and it is not stored.
        if let (Some((f, p, reason)), Some(i)) = (queue, wait_bucket) {
            t.agg.count_queue(f, p, &[]);
            t.agg.revision = 0;
            if f.outcome == Outcome::Overflow {
                t.overflow_wait_sum_ms += f.wait_ms();
                if let Some(r) = reason.and_then(|r| OVERFLOW_REASONS.iter().position(|o| *o == r))
                {
                    t.overflow_by_reason[r] += 1;
                }
            }
            if let Some(h) = &mut t.hist {
                h.wait[outcome_index(f.outcome)][i] += 1;
            }
        }
        if let (Some(h), Some(i)) = (handle, handle_bucket) {
            t.agg.count_handle(h);
            t.agg.revision = 0;
            if let Some(hist) = &mut t.hist {
                hist.handle[i] += 1;
            }
        }
    }

    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        let per_hist = (4 * self.wait_bounds.len() + self.handle_bounds.len() + 5) * 8;
        self.iter()
            .map(|(_, key, t)| {
                key.len()
                    + 64
                    + std::mem::size_of::<LifeTotals>()
                    + t.hist.as_ref().map_or(0, |_| per_hist)
            })
            .sum()
    }

    /// Appends the durable form (see [`Lifetime::decode`]).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let put_list = |out: &mut Vec<u8>, l: &[u64]| {
            put_u64(out, l.len() as u64);
            for v in l {
                put_u64(out, *v);
            }
        };
        put_list(out, &self.wait_bounds);
        put_list(out, &self.handle_bounds);
        put_u64(out, self.iter().count() as u64);
        for (kind, key, t) in self.iter() {
            out.push(kind_index(kind) as u8);
            put_bytes(out, key.as_bytes());
            for (_, v) in t.agg.named_counters() {
                put_u64(out, v);
            }
            put_u64(out, t.overflow_wait_sum_ms);
            for v in t.overflow_by_reason {
                put_u64(out, v);
            }
            match &t.hist {
                None => out.push(0),
                Some(h) => {
                    out.push(1);
                    for w in &h.wait {
                        put_list(out, w);
                    }
                    put_list(out, &h.handle);
                }
            }
        }
    }

    /// Reads what [`Lifetime::encode`] wrote; `with_reasons: false` reads the form before the
    /// overflow reasons were kept (state layout 3).
    pub fn decode(r: &mut Reader<'_>, with_reasons: bool) -> Result<Lifetime, DecodeError> {
        fn list(r: &mut Reader<'_>, len: Option<usize>) -> Result<Vec<u64>, DecodeError> {
            let n = r.usize()?;
            if n > r.rest().len() || len.is_some_and(|l| l != n) {
                return Err(DecodeError::Invalid("lifetime histogram length"));
            }
            (0..n).map(|_| r.u64()).collect()
        }
        let wait_bounds = list(r, None)?;
        let handle_bounds = list(r, None)?;
        let mut per_key: [BTreeMap<Box<str>, LifeTotals>; 4] = Default::default();
        for _ in 0..r.usize()? {
            let kind = match r.u8()? {
                0 => DimKind::All,
                1 => DimKind::Queue,
                2 => DimKind::Agent,
                3 => DimKind::Channel,
                _ => return Err(DecodeError::Invalid("unknown dimension")),
            };
            let key = r.str()?.to_string();
            let mut c = [0u64; 14];
            for v in &mut c {
                *v = r.u64()?;
            }
            let agg = Agg {
                offered: c[0],
                answered: c[1],
                answered_within: c[2],
                abandoned: c[3],
                abandoned_within: c[4],
                short_abandoned: c[5],
                overflow: c[6],
                handled: c[7],
                wait_sum_ms: c[8],
                wait_max_ms: c[9],
                abandon_wait_sum_ms: c[10],
                talk_sum_ms: c[11],
                hold_sum_ms: c[12],
                acw_sum_ms: c[13],
                ..Agg::default()
            };
            let overflow_wait_sum_ms = r.u64()?;
            let mut overflow_by_reason = [0u64; 4];
            if with_reasons {
                for v in &mut overflow_by_reason {
                    *v = r.u64()?;
                }
            }
            let hist = match r.u8()? {
                0 => None,
                1 => {
                    let (nw, nh) = (Some(wait_bounds.len() + 1), Some(handle_bounds.len() + 1));
                    Some(Histograms {
                        wait: [list(r, nw)?, list(r, nw)?, list(r, nw)?],
                        handle: list(r, nh)?,
                    })
                }
                _ => return Err(DecodeError::Invalid("lifetime histogram flag")),
            };
            per_key[kind_index(kind)].insert(
                key.into(),
                LifeTotals {
                    agg,
                    overflow_wait_sum_ms,
                    overflow_by_reason,
                    hist,
                },
            );
        }
        Ok(Lifetime {
            wait_bounds,
            handle_bounds,
            per_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::Millis;

    fn params(threshold_ms: i64) -> QueueParams {
        QueueParams {
            threshold: Millis(threshold_ms),
            ..QueueParams::default()
        }
    }

    fn leave(wait_ms: i64, outcome: Outcome) -> QueueFacts {
        QueueFacts {
            start_ms: 1_000,
            leave_ms: 1_000 + wait_ms,
            outcome,
        }
    }

    #[test]
    fn a_wait_equal_to_a_bound_counts_in_that_bound_as_le_is_inclusive() {
        let mut l = Lifetime::new(&[20_000]);
        let p = params(20_000);
        l.add_queue(
            DimKind::Queue,
            "q",
            10,
            &leave(20_000, Outcome::Answered),
            &p,
            None,
        );
        l.add_queue(
            DimKind::Queue,
            "q",
            10,
            &leave(20_001, Outcome::Answered),
            &p,
            None,
        );
        let (_, _, t) = l.iter().next().expect("one key");
        let h = t.hist.as_ref().expect("queues have histograms");
        let at = l
            .wait_bounds()
            .iter()
            .position(|&b| b == 20_000)
            .expect("bound");
        assert_eq!(h.wait[0][at], 1);
        assert_eq!(h.wait[0][at + 1], 1);
        assert_eq!(t.agg.answered_within, 1);
    }

    #[test]
    fn a_bound_added_later_splits_a_bucket_and_keeps_the_others() {
        let mut l = Lifetime::new(&[]);
        let p = params(20_000);
        l.add_queue(
            DimKind::Queue,
            "q",
            10,
            &leave(25_000, Outcome::Answered),
            &p,
            None,
        );
        let before: u64 = l
            .iter()
            .next()
            .expect("key")
            .2
            .hist
            .as_ref()
            .expect("hist")
            .wait[0]
            .iter()
            .sum();
        l.ensure_bounds(&[25_000]);
        let (_, _, t) = l.iter().next().expect("key");
        let h = t.hist.as_ref().expect("hist");
        let at = l
            .wait_bounds()
            .iter()
            .position(|&b| b == 25_000)
            .expect("bound");
        assert_eq!(h.wait[0].len(), l.wait_bounds().len() + 1);
        assert_eq!(h.wait[0][at], 0, "the new lower part starts empty");
        assert_eq!(h.wait[0][at + 1], 1);
        assert_eq!(h.wait[0].iter().sum::<u64>(), before);
    }

    #[test]
    fn keys_beyond_the_limit_count_under_other_and_agents_keep_no_histogram() {
        let mut l = Lifetime::new(&[]);
        let h = HandleFacts {
            completion_ms: 5,
            talk_ms: 1,
            hold_ms: 2,
            acw_ms: 3,
        };
        for a in ["a", "b", "c"] {
            l.add_handle(DimKind::Agent, a, 2, &h);
        }
        let names: Vec<&str> = l.iter().map(|(_, k, _)| k).collect();
        assert_eq!(names, ["(other)", "a", "b"]);
        assert!(l.iter().all(|(_, _, t)| t.hist.is_none()));
    }

    #[test]
    fn the_form_before_overflow_reasons_reads_with_none() {
        let mut l = Lifetime::new(&[]);
        l.add_queue(
            DimKind::Channel,
            "voice",
            10,
            &leave(9_000, Outcome::Overflow),
            &params(20_000),
            None,
        );
        let mut out = Vec::new();
        l.encode(&mut out);
        // One key without histograms: its four reason counts (zero, a byte each) come right
        // before its last byte, the histogram flag; the older form has none.
        let flag = out.len() - 1;
        assert_eq!(&out[flag - 4..], [0, 0, 0, 0, 0]);
        out.drain(flag - 4..flag);
        let mut r = Reader::new(&out);
        let old = Lifetime::decode(&mut r, false).expect("decodes");
        assert!(r.is_empty());
        assert_eq!(old, l);
        assert_eq!(old.iter().next().expect("one key").2.agg.overflow, 1);
    }

    #[test]
    fn the_durable_form_reads_back_equal() {
        let mut l = Lifetime::new(&[7_000]);
        let p = params(7_000);
        l.add_queue(
            DimKind::Queue,
            "q,\"x",
            10,
            &leave(3_000, Outcome::Abandoned),
            &p,
            None,
        );
        l.add_queue(
            DimKind::Channel,
            "voice",
            10,
            &leave(9_000, Outcome::Overflow),
            &p,
            None,
        );
        l.add_handle(
            DimKind::Queue,
            "q,\"x",
            10,
            &HandleFacts {
                completion_ms: 1,
                talk_ms: 60_000,
                hold_ms: 0,
                acw_ms: 5_000,
            },
        );
        // Only an overflow's own reasons count: an answer's reason changes nothing.
        l.add_queue(
            DimKind::Channel,
            "voice",
            10,
            &leave(9_000, Outcome::Overflow),
            &p,
            Some(EndReason::Transferred),
        );
        l.add_queue(
            DimKind::Channel,
            "voice",
            10,
            &leave(9_000, Outcome::Answered),
            &p,
            Some(EndReason::Transferred),
        );
        let voice = l.iter().find(|(_, k, _)| *k == "voice").expect("voice").2;
        assert_eq!(voice.overflow_by_reason, [0, 0, 1, 0]);
        let mut out = Vec::new();
        l.encode(&mut out);
        let mut r = Reader::new(&out);
        assert_eq!(Lifetime::decode(&mut r, true).expect("decodes"), l);
        assert!(r.is_empty());
    }
}
