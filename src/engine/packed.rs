//! The packed byte form of one bucket's aggregates, a few dozen bytes for a typical agent-interval:
//! every counter a varint, bands as counts against a shared list of thresholds, both sketches in
//! their compact gap form. The maximum wait comes first, so window maxima read one number a bucket.

use serde::{Deserialize, Serialize};

use super::aggregate::{Agg, HandleFacts, Outcome, QueueFacts};
use super::running::Running;
use super::sketch::Sketch;
use super::varint::{put_u64, DecodeError, Reader};
use crate::units::QueueParams;

/// The band threshold lists buckets were counted against, shared so each bucket names its list by
/// number instead of repeating the thresholds. Lists are only added (a reload may bring a new one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BandSets {
    sets: Vec<Vec<u64>>,
}

impl BandSets {
    /// The number of `thresholds` (sorted), registering it when new.
    pub fn id_of(&mut self, thresholds: &[u64]) -> usize {
        if let Some(i) = self.sets.iter().position(|s| s == thresholds) {
            i
        } else {
            self.sets.push(thresholds.to_vec());
            self.sets.len() - 1
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

/// The 14 counters of an aggregate in their packed order, as an array of its fields: read for
/// [`encode`], assigned to by [`agg_of`]. The indexes below (`OFFERED`…`REVISION`) follow it.
macro_rules! counters {
    ($a:expr) => {
        [
            $a.offered,
            $a.answered,
            $a.answered_within,
            $a.abandoned,
            $a.abandoned_within,
            $a.short_abandoned,
            $a.overflow,
            $a.handled,
            $a.wait_sum_ms,
            $a.abandon_wait_sum_ms,
            $a.talk_sum_ms,
            $a.hold_sum_ms,
            $a.acw_sum_ms,
            $a.revision,
        ]
    };
}

/// Appends the packed form of `a` to `out`.
pub fn encode(a: &Agg, sets: &mut BandSets, out: &mut Vec<u8>) {
    put_u64(out, a.wait_max_ms);
    for v in counters!(a) {
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

/// The revision of a packed bucket, read without decoding its bands and sketches.
pub fn revision(b: &[u8]) -> Result<u64, DecodeError> {
    let mut r = Reader::new(b);
    // The largest wait, then the counters up to the revision, the last of them.
    for _ in 0..=REVISION {
        r.u64()?;
    }
    r.u64()
}

/// The counters of a packed bucket, in `encode`'s order, and where the bands and sketches start.
struct Head<'a> {
    wait_max: u64,
    counters: [u64; 14],
    band_set: Option<usize>,
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
        band_set: set.checked_sub(1),
        bands,
        band_counts: r,
    })
}

/// An aggregate with these counters (in `encode`'s order) and maximum wait, and nothing else yet.
fn agg_of(wait_max: u64, c: &[u64; 14]) -> Agg {
    let mut a = Agg {
        wait_max_ms: wait_max,
        ..Agg::default()
    };
    counters!(a) = *c;
    a
}

/// A fact folded into a bucket: a segment leaving its queue (judged against its own queue's
/// parameters and the configured bands), or a segment's handling completing.
#[derive(Clone, Copy)]
pub enum Fact<'a> {
    Queue {
        facts: &'a QueueFacts,
        params: &'a QueueParams,
        bands: &'a [u64],
    },
    Handle(&'a HandleFacts),
}

impl Fact<'_> {
    pub fn add_to(&self, a: &mut Agg) {
        self.apply(a, Agg::add_queue, Agg::add_handle);
    }

    pub fn add_to_running(&self, r: &mut Running) {
        self.apply(r, Running::add_queue, Running::add_handle);
    }

    /// Hands the fact to `queue` or `handle`, with `target`.
    fn apply<T>(
        &self,
        target: &mut T,
        queue: fn(&mut T, &QueueFacts, &QueueParams, &[u64]),
        handle: fn(&mut T, &HandleFacts),
    ) {
        match *self {
            Fact::Queue {
                facts,
                params,
                bands,
            } => queue(target, facts, params, bands),
            Fact::Handle(h) => handle(target, h),
        }
    }
}

/// A packed bucket unpacked into reusable buffers, so folding into one allocates nothing but
/// its new packed form. Counters are in `encode`'s order.
#[derive(Debug, Default)]
pub struct Work {
    wait_max: u64,
    c: [u64; 14],
    /// (threshold, count), sorted by threshold.
    bands: Vec<(u64, u64)>,
    /// The band list `bands` has, when known (saves looking it up again at encode).
    band_set: Option<usize>,
    wait_zero: u64,
    wait: Vec<(i32, u64)>,
    handle_zero: u64,
    handle: Vec<(i32, u64)>,
    /// Both sketches' packed bytes as loaded (the wait sketch, then the handle sketch), until a
    /// fact needs one unpacked: a queue fact leaves the handle sketch alone and a handle fact the
    /// wait sketch, so a fold copies the other's bytes instead of decoding and encoding them
    /// again (a third of a fold's cost). Nothing walks a sketch it does not need: the handle
    /// sketch is the tail, found by walking the wait sketch only when it is wanted.
    sketches: Vec<u8>,
    /// Where the handle sketch starts in `sketches`, once the wait sketch was walked.
    handle_at: Option<usize>,
    wait_unpacked: bool,
    handle_unpacked: bool,
    out: Vec<u8>,
}

/// Decodes one sketch's compact form from the front of `bytes` into `bins`; returns its zero
/// count and the bytes it took, or `None` (and no bins) when they do not decode.
fn unpack_sketch(bytes: &[u8], bins: &mut Vec<(i32, u64)>) -> Option<(u64, usize)> {
    bins.clear();
    let mut r = Reader::new(bytes);
    if let Ok(zero) = Sketch::decode_parts(&mut r, bins) {
        Some((zero, bytes.len() - r.rest().len()))
    } else {
        bins.clear();
        None
    }
}

const OFFERED: usize = 0;
const ANSWERED: usize = 1;
const ANSWERED_WITHIN: usize = 2;
const ABANDONED: usize = 3;
const ABANDONED_WITHIN: usize = 4;
const SHORT_ABANDONED: usize = 5;
const OVERFLOW: usize = 6;
const HANDLED: usize = 7;
const WAIT_SUM: usize = 8;
const ABANDON_WAIT_SUM: usize = 9;
const TALK_SUM: usize = 10;
const HOLD_SUM: usize = 11;
const ACW_SUM: usize = 12;
const REVISION: usize = 13;

fn add_bin(zero: &mut u64, bins: &mut Vec<(i32, u64)>, value_ms: u64) {
    match Sketch::bin_of(value_ms) {
        None => *zero += 1,
        Some(k) => match bins.binary_search_by_key(&k, |(i, _)| *i) {
            Ok(p) => bins[p].1 += 1,
            Err(p) => bins.insert(p, (k, 1)),
        },
    }
}

impl Work {
    /// Unpacks the head of `b` (empty: a new bucket) into the buffers; its sketches stay packed
    /// until a fact needs them.
    ///
    /// The sketches are trusted: cells are checked whole when they enter memory (`Slice::decode`
    /// decodes every packed one read from the store; a frozen slice thawed again was made by this
    /// engine) and written only by [`Work::pack`] and [`encode`]. Should a sketch a fact needs
    /// not decode all the same, it is taken as empty; one no fact needs is copied as it is.
    pub fn load(&mut self, b: &[u8], sets: &BandSets) -> Result<(), DecodeError> {
        self.bands.clear();
        self.wait.clear();
        self.handle.clear();
        self.wait_zero = 0;
        self.handle_zero = 0;
        self.sketches.clear();
        self.handle_at = None;
        self.wait_unpacked = true;
        self.handle_unpacked = true;
        if b.is_empty() {
            self.wait_max = 0;
            self.c = [0; 14];
            self.band_set = None;
            return Ok(());
        }
        let h = head(b, sets)?;
        self.wait_max = h.wait_max;
        self.c = h.counters;
        self.band_set = h.band_set;
        let mut r = h.band_counts;
        for &t in h.bands.unwrap_or(&[]) {
            self.bands.push((t, r.u64()?));
        }
        self.sketches.extend_from_slice(r.rest());
        self.wait_unpacked = false;
        self.handle_unpacked = false;
        Ok(())
    }

    /// Unpacks the wait sketch if it is not yet; learns where the handle sketch starts.
    fn unpack_wait(&mut self) {
        if self.wait_unpacked {
            return;
        }
        self.wait_unpacked = true;
        match unpack_sketch(&self.sketches, &mut self.wait) {
            Some((zero, len)) => {
                self.wait_zero = zero;
                self.handle_at = Some(len);
            }
            None => self.lose_sketches(),
        }
    }

    /// Unpacks the handle sketch if it is not yet, walking over the wait sketch to find it.
    fn unpack_handle(&mut self) {
        if self.handle_unpacked {
            return;
        }
        if self.handle_at.is_none() {
            if let Ok(wait) = Sketch::skip_parts(&mut Reader::new(&self.sketches)) {
                self.handle_at = Some(wait.len());
            }
        }
        let Some(at) = self.handle_at else {
            self.lose_sketches();
            return;
        };
        self.handle_unpacked = true;
        // `handle_at` is a count of bytes walked in this very `sketches`: within it.
        self.handle_zero = unpack_sketch(&self.sketches[at..], &mut self.handle).map_or(0, |z| z.0);
    }

    /// Takes whatever sketch is still packed as empty: its bytes do not decode.
    fn lose_sketches(&mut self) {
        if !self.wait_unpacked {
            self.wait.clear();
            self.wait_zero = 0;
            self.wait_unpacked = true;
        }
        if !self.handle_unpacked {
            self.handle.clear();
            self.handle_zero = 0;
            self.handle_unpacked = true;
        }
        if self.handle_at.is_none() {
            // Neither sketch can be told from the other: both are lost.
            self.wait.clear();
            self.wait_zero = 0;
            self.handle.clear();
            self.handle_zero = 0;
        }
    }

    /// What [`Agg::add_queue`] and [`Agg::add_handle`] do, on the unpacked form.
    pub fn add(&mut self, fact: &Fact<'_>) {
        let c = &mut self.c;
        c[REVISION] += 1;
        match *fact {
            Fact::Queue {
                facts: f,
                params: p,
                bands,
            } => {
                let wait = f.wait_ms();
                let within = u64::from(wait <= p.threshold.0 as u64);
                self.unpack_wait();
                let c = &mut self.c;
                c[OFFERED] += 1;
                self.wait_max = self.wait_max.max(wait);
                add_bin(&mut self.wait_zero, &mut self.wait, wait);
                match f.outcome {
                    Outcome::Answered => {
                        c[ANSWERED] += 1;
                        c[ANSWERED_WITHIN] += within;
                        c[WAIT_SUM] += wait;
                        for &b in bands {
                            let n = u64::from(wait <= b);
                            match self.bands.binary_search_by_key(&b, |(t, _)| *t) {
                                Ok(i) => self.bands[i].1 += n,
                                Err(i) => {
                                    self.bands.insert(i, (b, n));
                                    self.band_set = None;
                                }
                            }
                        }
                    }
                    Outcome::Abandoned => {
                        c[ABANDONED] += 1;
                        c[ABANDONED_WITHIN] += within;
                        c[SHORT_ABANDONED] += u64::from(wait < p.short_abandon.0 as u64);
                        c[ABANDON_WAIT_SUM] += wait;
                    }
                    Outcome::Overflow => c[OVERFLOW] += 1,
                }
            }
            Fact::Handle(h) => {
                self.unpack_handle();
                let c = &mut self.c;
                c[HANDLED] += 1;
                c[TALK_SUM] += h.talk_ms;
                c[HOLD_SUM] += h.hold_ms;
                c[ACW_SUM] += h.acw_ms;
                add_bin(&mut self.handle_zero, &mut self.handle, h.handle_ms());
            }
        }
    }

    /// Packs the buffers; the result is what `encode` gives for the same aggregate.
    pub fn pack(&mut self, sets: &mut BandSets) -> &[u8] {
        let out = &mut self.out;
        out.clear();
        put_u64(out, self.wait_max);
        for v in self.c {
            put_u64(out, v);
        }
        if self.bands.is_empty() {
            put_u64(out, 0);
        } else {
            let set = if let Some(s) = self.band_set {
                s
            } else {
                let thresholds: Vec<u64> = self.bands.iter().map(|(t, _)| *t).collect();
                sets.id_of(&thresholds)
            };
            self.band_set = Some(set);
            put_u64(out, set as u64 + 1);
            for (_, n) in &self.bands {
                put_u64(out, *n);
            }
        }
        // A sketch still packed goes over as its bytes. Where only one is, the border between
        // them (`handle_at`, a count of bytes walked in `sketches`, so within it) was found when
        // the other was unpacked (a sketch that could not be told apart was taken as empty);
        // where both are, the border does not matter.
        let at = self.handle_at.unwrap_or(self.sketches.len());
        if self.wait_unpacked {
            Sketch::encode_parts(self.wait_zero, &self.wait, out);
        } else {
            out.extend_from_slice(&self.sketches[..at]);
        }
        if self.handle_unpacked {
            Sketch::encode_parts(self.handle_zero, &self.handle, out);
        } else {
            out.extend_from_slice(&self.sketches[at..]);
        }
        &self.out
    }

    /// The unpacked bucket as an aggregate.
    pub fn unpack_agg(&mut self) -> Agg {
        self.unpack_wait();
        self.unpack_handle();
        let mut a = agg_of(self.wait_max, &self.c);
        a.bands = self.bands.iter().copied().collect();
        a.wait_hist = Sketch::from_parts(self.wait_zero, self.wait.clone());
        a.handle_hist = Sketch::from_parts(self.handle_zero, self.handle.clone());
        a
    }
}

/// Decodes a packed bucket.
pub fn decode(b: &[u8], sets: &BandSets) -> Result<Agg, DecodeError> {
    let h = head(b, sets)?;
    let mut a = agg_of(h.wait_max, &h.counters);
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
    let mut r = add_head(b, sets, acc)?;
    acc.wait.add(&Sketch::decode_from(&mut r)?);
    acc.handle.add(&Sketch::decode_from(&mut r)?);
    Ok(())
}

/// Adds a packed bucket's counters, sums, maximum and bands to an accumulator, leaving its
/// sketches as they are: what a figure without quantiles needs, at a fraction of the cost.
pub fn add_counters_into(b: &[u8], sets: &BandSets, acc: &mut Running) -> Result<(), DecodeError> {
    add_head(b, sets, acc).map(|_| ())
}

/// Adds what precedes the sketches; the reader is left at the first sketch.
fn add_head<'a>(
    b: &'a [u8],
    sets: &'a BandSets,
    acc: &mut Running,
) -> Result<Reader<'a>, DecodeError> {
    let h = head(b, sets)?;
    let part = agg_of(h.wait_max, &h.counters);
    let mut r = h.band_counts;
    acc.agg.merge_counters(&part);
    for &t in h.bands.unwrap_or(&[]) {
        *acc.agg.bands.entry(t).or_default() += r.u64()?;
    }
    Ok(r)
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
    use proptest::prelude::*;

    // The tests here run under the default queue parameters (T = 20 s, S = 5 s): any would do,
    // since each compares two forms of the same counting.

    fn agg(waits: &[(u64, u8)], handles: &[u64], bands: &[u64]) -> Agg {
        let p = QueueParams::default();
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
            let mut a = agg(&waits, &handles, &[10_000, 20_000, 60_000]);
            a.revision = waits.len() as u64 * 1_000_003 + handles.len() as u64;
            let mut out = Vec::new();
            encode(&a, &mut sets, &mut out);
            prop_assert_eq!(decode(&out, &sets).unwrap(), a.clone());
            prop_assert_eq!(wait_max(&out), a.wait_max_ms);
            prop_assert_eq!(revision(&out).unwrap(), a.revision);
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
        fn folding_packed_equals_folding_the_aggregate(
            facts in prop::collection::vec((0u64..2_000_000, 0u8..4, 0u64..500_000), 1..80),
            bands_b in any::<bool>(),
        ) {
            let p = QueueParams::default();
            let mut sets = BandSets::default();
            let mut agg = Agg::default();
            let mut bytes: Vec<u8> = Vec::new();
            let mut work = Work::default();
            for (i, &(w, o, h)) in facts.iter().enumerate() {
                // A reload halfway through changes the band list.
                let bands: &[u64] = if bands_b && i > facts.len() / 2 { &[15_000, 20_000] } else { &[10_000, 20_000, 60_000] };
                let q = QueueFacts { start_ms: 100, leave_ms: 100 + w as i64, outcome: [Outcome::Answered, Outcome::Abandoned, Outcome::Overflow, Outcome::Answered][o as usize] };
                let hf = HandleFacts { completion_ms: 0, talk_ms: h, hold_ms: h / 5, acw_ms: h % 7_000 };
                let fact = if o == 3 { Fact::Handle(&hf) } else { Fact::Queue { facts: &q, params: &p, bands } };
                fact.add_to(&mut agg);
                work.load(&bytes, &sets).unwrap();
                work.add(&fact);
                bytes = work.pack(&mut sets).to_vec();
                let mut want = Vec::new();
                encode(&agg, &mut sets, &mut want);
                prop_assert_eq!(&bytes, &want);
            }
            prop_assert_eq!(decode(&bytes, &sets).unwrap(), agg);
        }

        #[test]
        fn damaged_buckets_are_errors_not_panics(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
            let sets = BandSets::default();
            let _ = decode(&bytes, &sets);
            let _ = add_into(&bytes, &sets, &mut Running::default());
        }

        #[test]
        fn folding_into_damaged_sketches_never_panics(
            waits in prop::collection::vec((0u64..1_000_000, 0u8..3), 0..20),
            handles in prop::collection::vec(0u64..3_000_000, 0..20),
            cut in 0usize..200,
            noise in prop::collection::vec(any::<u8>(), 0..8),
            queue_first in any::<bool>(),
        ) {
            // A good head with its sketches cut short and garbage after: `load` takes the head,
            // and whatever sketch a fact needs and cannot decode is taken as empty, never a
            // panic. With one fact, the other sketch is copied as it is; with both, every sketch
            // is packed again and the bucket decodes.
            let mut sets = BandSets::default();
            let a = agg(&waits, &handles, &[]);
            let mut bytes = Vec::new();
            encode(&a, &mut sets, &mut bytes);
            let mut tail = Vec::new();
            a.wait_hist.encode_into(&mut tail);
            a.handle_hist.encode_into(&mut tail);
            let sketches_at = bytes.len() - tail.len();
            bytes.truncate(sketches_at + cut.min(bytes.len() - sketches_at));
            bytes.extend_from_slice(&noise);
            let p = QueueParams::default();
            let q = QueueFacts { start_ms: 0, leave_ms: 7_000, outcome: Outcome::Answered };
            let h = HandleFacts { completion_ms: 0, talk_ms: 90_000, hold_ms: 0, acw_ms: 0 };
            let facts = [Fact::Queue { facts: &q, params: &p, bands: &[] }, Fact::Handle(&h)];
            let order = if queue_first { [0, 1] } else { [1, 0] };
            let mut work = Work::default();
            work.load(&bytes, &sets).unwrap();
            work.add(&facts[order[0]]);
            let one = work.pack(&mut sets).to_vec();
            let revision = |b: &[u8]| head(b, &sets).unwrap().counters[REVISION];
            prop_assert_eq!(revision(&one), revision(&bytes) + 1);
            work.load(&bytes, &sets).unwrap();
            for f in order {
                work.add(&facts[f]);
            }
            let packed = work.pack(&mut sets).to_vec();
            let back = decode(&packed, &sets);
            prop_assert!(back.is_ok(), "{:?}", back);
            let back = back.unwrap();
            prop_assert_eq!(back.offered, waits.len() as u64 + 1);
            prop_assert!(back.wait_hist.count() >= 1 && back.handle_hist.count() >= 1);
        }
    }

    #[test]
    fn a_sketch_left_packed_still_reaches_the_aggregate() {
        // Both sketches filled, then only a queue fact: the handle sketch stays in its bytes
        // through the fold, and must still be all there when the bucket is unpacked whole.
        let waits: Vec<(u64, u8)> = (0..9).map(|i| (500 + i * 4_000, 0)).collect();
        let handles: Vec<u64> = (0..7).map(|i| 30_000 + i * 11_000).collect();
        let mut sets = BandSets::default();
        let mut want = agg(&waits, &handles, &[10_000, 20_000]);
        let mut bytes = Vec::new();
        encode(&want, &mut sets, &mut bytes);
        let p = QueueParams::default();
        let q = QueueFacts {
            start_ms: 0,
            leave_ms: 12_345,
            outcome: Outcome::Answered,
        };
        let fact = Fact::Queue {
            facts: &q,
            params: &p,
            bands: &[10_000, 20_000],
        };
        fact.add_to(&mut want);
        let mut work = Work::default();
        work.load(&bytes, &sets).unwrap();
        work.add(&fact);
        assert_eq!(decode(work.pack(&mut sets), &sets).unwrap(), want);
        assert_eq!(work.unpack_agg(), want);
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
