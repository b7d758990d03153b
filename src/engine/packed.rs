//! The packed byte form of one bucket's aggregates, a few dozen bytes for a typical agent-interval:
//! every counter a varint, bands as counts against a shared list of thresholds, both sketches in
//! their compact gap form. The maximum wait comes first, so window maxima read one number a bucket.

use serde::{Deserialize, Serialize};

use super::aggregate::Agg;
use super::running::Running;
use super::sketch::Sketch;
use super::varint::{put_u64, DecodeError, Reader};

/// The band threshold lists buckets were counted against, shared so each bucket names its list by
/// number instead of repeating the thresholds. Lists are only added (a reload may bring a new one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BandSets {
    sets: Vec<Vec<u64>>,
}

impl BandSets {
    /// The number of `thresholds` (sorted), registering it when new.
    pub fn id_of(&mut self, thresholds: &[u64]) -> usize {
        match self.sets.iter().position(|s| s == thresholds) {
            Some(i) => i,
            None => {
                self.sets.push(thresholds.to_vec());
                self.sets.len() - 1
            }
        }
    }

    /// Every list, in number order (for checkpoints).
    pub fn lists(&self) -> &[Vec<u64>] {
        &self.sets
    }

    pub fn get(&self, id: usize) -> Option<&[u64]> {
        self.sets.get(id).map(Vec::as_slice)
    }
}

/// Appends the packed form of `a` to `out`.
pub fn encode(a: &Agg, sets: &mut BandSets, out: &mut Vec<u8>) {
    put_u64(out, a.wait_max_ms);
    for v in [
        a.offered,
        a.answered,
        a.answered_within,
        a.abandoned,
        a.abandoned_within,
        a.short_abandoned,
        a.overflow,
        a.handled,
        a.wait_sum_ms,
        a.abandon_wait_sum_ms,
        a.talk_sum_ms,
        a.hold_sum_ms,
        a.acw_sum_ms,
        a.revision,
    ] {
        put_u64(out, v);
    }
    if a.bands.is_empty() {
        put_u64(out, 0);
    } else {
        let thresholds: Vec<u64> = a.bands.keys().copied().collect();
        put_u64(out, sets.id_of(&thresholds) as u64 + 1);
        for n in a.bands.values() {
            put_u64(out, *n);
        }
    }
    a.wait_hist.encode_into(out);
    a.handle_hist.encode_into(out);
}

/// The largest wait counted in a packed bucket, read without decoding the rest.
pub fn wait_max(b: &[u8]) -> u64 {
    Reader::new(b).u64().unwrap_or(0)
}

/// The counters of a packed bucket, in `encode`'s order, and where the bands and sketches start.
struct Head<'a> {
    wait_max: u64,
    counters: [u64; 14],
    bands: Option<&'a [u64]>,
    band_counts: Reader<'a>,
}

fn head<'a>(b: &'a [u8], sets: &'a BandSets) -> Result<Head<'a>, DecodeError> {
    let mut r = Reader::new(b);
    let wait_max = r.u64()?;
    let mut counters = [0u64; 14];
    for c in &mut counters {
        *c = r.u64()?;
    }
    let set = r.usize()?;
    let bands = if set == 0 {
        None
    } else {
        Some(
            sets.get(set - 1)
                .ok_or(DecodeError::Invalid("a bucket names an unknown band list"))?,
        )
    };
    Ok(Head {
        wait_max,
        counters,
        bands,
        band_counts: r,
    })
}

fn set_counters(a: &mut Agg, c: &[u64; 14]) {
    [
        a.offered,
        a.answered,
        a.answered_within,
        a.abandoned,
        a.abandoned_within,
        a.short_abandoned,
        a.overflow,
        a.handled,
        a.wait_sum_ms,
        a.abandon_wait_sum_ms,
        a.talk_sum_ms,
        a.hold_sum_ms,
        a.acw_sum_ms,
        a.revision,
    ] = *c;
}

/// Decodes a packed bucket.
pub fn decode(b: &[u8], sets: &BandSets) -> Result<Agg, DecodeError> {
    let h = head(b, sets)?;
    let mut a = Agg {
        wait_max_ms: h.wait_max,
        ..Agg::default()
    };
    set_counters(&mut a, &h.counters);
    let mut r = h.band_counts;
    for &t in h.bands.unwrap_or(&[]) {
        a.bands.insert(t, r.u64()?);
    }
    a.wait_hist = Sketch::decode_from(&mut r)?;
    a.handle_hist = Sketch::decode_from(&mut r)?;
    if !r.is_empty() {
        return Err(DecodeError::Invalid("a bucket has trailing bytes"));
    }
    Ok(a)
}

/// Adds a packed bucket into an accumulator without building an [`Agg`].
pub fn add_into(b: &[u8], sets: &BandSets, acc: &mut Running) -> Result<(), DecodeError> {
    let h = head(b, sets)?;
    let mut part = Agg {
        wait_max_ms: h.wait_max,
        ..Agg::default()
    };
    set_counters(&mut part, &h.counters);
    let mut r = h.band_counts;
    acc.agg.merge_counters(&part);
    for &t in h.bands.unwrap_or(&[]) {
        *acc.agg.bands.entry(t).or_default() += r.u64()?;
    }
    acc.wait.add(&Sketch::decode_from(&mut r)?);
    acc.handle.add(&Sketch::decode_from(&mut r)?);
    Ok(())
}

/// Removes a packed bucket from an accumulator it was added to.
pub fn subtract_from(b: &[u8], sets: &BandSets, acc: &mut Running) -> Result<(), DecodeError> {
    let a = decode(b, sets)?;
    acc.subtract(&a);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Formula, Millis, QueueParams};
    use crate::engine::aggregate::{HandleFacts, Outcome, QueueFacts};
    use proptest::prelude::*;

    fn agg(waits: &[(u64, u8)], handles: &[u64], bands: &[u64]) -> Agg {
        let p = QueueParams {
            threshold: Millis::secs(20),
            target: 0.8,
            short_abandon: Millis::secs(5),
            formula: Formula::Offered,
        };
        let mut a = Agg::default();
        for &(w, o) in waits {
            let outcome =
                [Outcome::Answered, Outcome::Abandoned, Outcome::Overflow][o as usize % 3];
            a.add_queue(
                &QueueFacts {
                    start_ms: 0,
                    leave_ms: w as i64,
                    outcome,
                },
                &p,
                bands,
            );
        }
        for &h in handles {
            a.add_handle(&HandleFacts {
                completion_ms: 0,
                talk_ms: h,
                hold_ms: h / 3,
                acw_ms: h / 7,
            });
        }
        a
    }

    proptest! {
        #[test]
        fn packed_buckets_round_trip_and_accumulate(
            waits in prop::collection::vec((0u64..1_000_000, 0u8..3), 0..60),
            handles in prop::collection::vec(0u64..3_000_000, 0..60),
            other in prop::collection::vec((0u64..1_000_000, 0u8..3), 0..20),
        ) {
            let mut sets = BandSets::default();
            let a = agg(&waits, &handles, &[10_000, 20_000, 60_000]);
            let mut out = Vec::new();
            encode(&a, &mut sets, &mut out);
            prop_assert_eq!(decode(&out, &sets).unwrap(), a.clone());
            prop_assert_eq!(wait_max(&out), a.wait_max_ms);
            // Accumulating packed buckets equals merging the aggregates.
            let b = agg(&other, &[], &[20_000, 30_000]);
            let mut out_b = Vec::new();
            encode(&b, &mut sets, &mut out_b);
            let mut acc = Running::default();
            add_into(&out, &sets, &mut acc).unwrap();
            add_into(&out_b, &sets, &mut acc).unwrap();
            let mut m = a.clone();
            m.merge(&b);
            prop_assert_eq!(acc.to_agg(), m.clone());
            subtract_from(&out_b, &sets, &mut acc).unwrap();
            let mut back = a.clone();
            back.wait_max_ms = m.wait_max_ms;
            for t in b.bands.keys() {
                back.bands.entry(*t).or_insert(0);
            }
            prop_assert_eq!(acc.to_agg(), back);
        }

        #[test]
        fn damaged_buckets_are_errors_not_panics(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
            let sets = BandSets::default();
            let _ = decode(&bytes, &sets);
            let _ = add_into(&bytes, &sets, &mut Running::default());
        }
    }

    #[test]
    fn an_agent_interval_packs_small() {
        let waits: Vec<(u64, u8)> = (0..21).map(|i| (1_000 + i * 2_713, 0)).collect();
        let handles: Vec<u64> = (0..19).map(|i| 60_000 + i * 17_000).collect();
        let a = agg(&waits, &handles, &[10_000, 20_000, 30_000, 60_000, 120_000]);
        let mut out = Vec::new();
        encode(&a, &mut BandSets::default(), &mut out);
        assert!(out.len() < 100, "{} bytes", out.len());
    }
}
