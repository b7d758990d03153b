//! Closing intervals into records: every interval bucket that ended `close_after` ago becomes a
//! record; a bucket that changed after it was shipped becomes a correction (the delta).
//!
//! What was shipped is remembered per bucket (its aggregate, in the store, written in the same
//! atomic batch as the records), so a restart neither loses nor repeats a record.
//!
//! Every bucket, of every dimension, also adds what it brought since it was last closed to the
//! interval history (`crate::history`), in that same batch; records are made only for the
//! dimensions shipped upstream, and only when some sink is configured.

use std::collections::HashMap;
use std::sync::Arc;

use jiff::tz::TimeZone;

use super::outbox_store::StoreOutbox;
use super::record::{IntervalRecord, RecordKind};
use super::sla_record::SlaState;
use crate::config::{Config, HistoryConfig};
use crate::engine::{Agg, BucketId, DimKind, Engine};
use crate::history::{self, Horizons};
use crate::store::{Store, StoreError};

/// Every dimension goes into the history, whatever is shipped upstream (tags only where
/// `history.tag_dimensions` names some: the engine keeps no tag bucket otherwise).
const HISTORY_KINDS: [DimKind; 5] = [
    DimKind::All,
    DimKind::Queue,
    DimKind::Agent,
    DimKind::Channel,
    DimKind::Tag,
];

/// Remembers what was shipped and turns engine buckets into records.
pub struct Closer {
    host_id: String,
    close_after_ms: i64,
    max_outbox_bytes: u64,
    kinds: Vec<DimKind>,
    /// Whether records are made at all (some sink is configured); the history is kept either way.
    records: bool,
    history: HistoryConfig,
    tz: TimeZone,
    /// Encoded bucket id → revision of the aggregate last shipped.
    shipped: HashMap<Vec<u8>, u64>,
    /// Interval slice start → the slice's version when every bucket of it was last found shipped:
    /// a slice with that version still is, and is not decoded again (a day of intervals holds
    /// thousands of buckets, and candidates are taken under the engine's lock).
    looked: HashMap<i64, u64>,
    /// The most buckets a round takes: [`MAX_ROUND_BUCKETS`] (smaller in tests).
    round_buckets: usize,
    /// Interval slice start → (its version when last found changed, rounds it has been held
    /// back): see [`MAX_HELD_ROUNDS`].
    held: HashMap<i64, (u64, u32)>,
}

/// How many rounds in a row a closed interval that keeps changing is held back before it is
/// closed anyway. An interval is closed once it is found unchanged since the round before:
/// during a backfill or a catch-up every interval of the day changes in every round, and each
/// closing rewrites its buckets' shipped copies and history entries, which cost more bytes
/// written than the events themselves (762 B per event at 1 M calls). Held back, an interval is
/// written once the burst is over, or every this many rounds under a stream that never stops.
pub const MAX_HELD_ROUNDS: u32 = 6;

/// The buckets to ship, and the slices they were looked for in.
pub struct Candidates {
    buckets: Vec<Candidate>,
    /// (slice start, version) of every slice decoded; all shipped once these buckets are.
    looked: Vec<(i64, u64)>,
    /// The objectives' state now, carried by the first interval record shipped.
    sla: Vec<SlaState>,
    /// Engine time when they were taken.
    now_ms: i64,
    /// Every interval ending by this instant is closed once these buckets are.
    until_ms: i64,
    /// Whether changed intervals were left for another round (see [`MAX_ROUND_BUCKETS`]).
    pub more: bool,
}

/// The most buckets one round of closing takes. A backfill changes every interval of the day at
/// once; taken in one round, each bucket's copy, history entry and write batch were held together
/// (907 MiB at 1 M calls). Bounded rounds keep that small and release the engine lock between
/// them; a round may stop inside an interval, and the next goes on with its buckets not shipped
/// yet. Measured closing the 48 800 buckets of a 1 M-call load at once: with rounds of a whole
/// interval (~600 buckets, each with its shipped copy, its interval entry and its day entry in
/// one sled batch) the daemon's RSS rose by 20 MiB over the 2 s of closing.
pub const MAX_ROUND_BUCKETS: usize = 128;

/// What one round of closing did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Closed {
    pub intervals: u64,
    pub corrections: u64,
    pub dropped: u64,
    /// Buckets whose additions went into the history.
    pub history: u64,
}

/// A bucket to ship, taken from the engine under its lock.
pub struct Candidate {
    id: BucketId,
    key: Vec<u8>,
    agg: Agg,
}

impl Closer {
    pub fn new(cfg: &Config, host_id: String, store: &Store) -> Result<Closer, StoreError> {
        let mut shipped = HashMap::new();
        store.for_each_shipped(|k, v| {
            let agg: Agg =
                rmp_serde::from_slice(v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            shipped.insert(k.to_vec(), agg.revision);
            Ok(())
        })?;
        let mut c = Closer {
            host_id,
            close_after_ms: 0,
            max_outbox_bytes: 0,
            kinds: Vec::new(),
            records: !cfg.upstream.sinks.is_empty(),
            round_buckets: MAX_ROUND_BUCKETS,
            history: cfg.history.clone(),
            tz: cfg.general.time_zone.zone(),
            shipped,
            looked: HashMap::new(),
            held: HashMap::new(),
        };
        c.reconfigure(cfg);
        Ok(c)
    }

    pub fn reconfigure(&mut self, cfg: &Config) {
        self.close_after_ms = cfg.upstream.close_after.0;
        self.max_outbox_bytes = cfg.upstream.max_outbox_bytes;
        self.kinds = cfg
            .upstream
            .dimensions
            .iter()
            .filter_map(|d| DimKind::parse(d))
            .collect();
        self.history = cfg.history.clone();
        self.tz = cfg.general.time_zone.zone();
    }

    #[must_use]
    pub fn host_id(&self) -> &str {
        &self.host_id
    }

    /// Buckets whose interval has closed (ended `close_after` ago, or simply ended with `now_all`)
    /// and that changed since they were last shipped. Cheap: run it under the engine lock; only
    /// slices that changed since they were last looked at are decoded.
    ///
    /// Without `now_all`, an interval still changing since the round before is held back (up to
    /// [`MAX_HELD_ROUNDS`] rounds), so a burst of late events closes it once, not every round.
    #[must_use]
    pub fn candidates(&mut self, engine: &Engine, now_ms: i64, now_all: bool) -> Candidates {
        let cal = engine.calendar();
        let wait = if now_all { 0 } else { self.close_after_ms };
        // The last interval that has ended at least `wait` ago.
        let until = cal.interval_bucket(now_ms - wait) - cal.interval_ms;
        let from = now_ms - engine.interval_retention_ms();
        let mut out = Candidates {
            buckets: Vec::new(),
            looked: Vec::new(),
            sla: Vec::new(),
            now_ms,
            until_ms: until + cal.interval_ms,
            more: false,
        };
        for start in engine.interval_starts(from, until) {
            let Some(version) = engine.interval_slice_version(start) else {
                continue;
            };
            if self.looked.get(&start) == Some(&version) {
                continue;
            }
            if !now_all && self.hold(start, version) {
                continue;
            }
            if out.buckets.len() >= self.round_buckets {
                // Intervals are taken oldest first: every one ending by this start is done.
                out.until_ms = start;
                out.more = true;
                break;
            }
            let room = self.round_buckets - out.buckets.len();
            let (changed, rest) =
                engine.interval_buckets_wanted(&HISTORY_KINDS, start, room, |id, revision| {
                    self.shipped.get(&id.encode()) != Some(&revision)
                });
            out.buckets
                .extend(changed.into_iter().map(|(id, agg)| Candidate {
                    key: id.encode(),
                    id,
                    agg,
                }));
            if rest {
                // Part of this interval is left: the next round takes it on from what was
                // shipped (the buckets shipped at their revision are not wanted again).
                out.until_ms = start;
                out.more = true;
                break;
            }
            out.looked.push((start, version));
        }
        if !out.buckets.is_empty() {
            out.sla = engine.sla_at(now_ms).iter().map(SlaState::of).collect();
        }
        for (start, _) in &out.looked {
            self.held.remove(start);
        }
        out
    }

    /// Whether the slice at `start`, now at `version`, is held back this round: it is when it
    /// changed since the round before (or was not seen then), unless it was held back
    /// [`MAX_HELD_ROUNDS`] rounds already.
    fn hold(&mut self, start: i64, version: u64) -> bool {
        match self.held.get_mut(&start) {
            Some((seen, _)) if *seen == version => false,
            Some((_, rounds)) if *rounds >= MAX_HELD_ROUNDS => false,
            Some((seen, rounds)) => {
                *seen = version;
                *rounds += 1;
                true
            }
            None => {
                self.held.insert(start, (version, 1));
                true
            }
        }
    }

    /// Writes the candidates as records (and what was shipped) in one atomic batch, flushed.
    pub async fn ship(
        &mut self,
        store: &Arc<Store>,
        candidates: Candidates,
        interval_ms: i64,
    ) -> Result<Closed, StoreError> {
        let mut closed = Closed::default();
        let Candidates {
            buckets: candidates,
            looked,
            mut sla,
            now_ms,
            until_ms,
            more: _,
        } = candidates;
        if candidates.is_empty() {
            store.history_mark_until(until_ms)?;
            self.looked.extend(looked);
            return Ok(closed);
        }
        let mut seq = store.next_record_seq()?;
        let mut records = Vec::with_capacity(candidates.len());
        let mut shipped = Vec::with_capacity(candidates.len());
        let mut deltas = Vec::with_capacity(candidates.len());
        for c in &candidates {
            let before = match store.shipped_copy(&c.key)? {
                Some(bytes) => Some(
                    rmp_serde::from_slice::<Agg>(&bytes)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                ),
                None => None,
            };
            let (kind, delta) = if let Some(b) = &before {
                (RecordKind::Correction, c.agg.since(b))
            } else {
                (RecordKind::Interval, c.agg.clone())
            };
            shipped.push((c.key.clone(), Some(StoreOutbox::encode(&c.agg))));
            if !self.records || !self.kinds.contains(&c.id.dim.kind) {
                deltas.push(delta);
                continue;
            }
            match kind {
                RecordKind::Correction => closed.corrections += 1,
                RecordKind::Interval => closed.intervals += 1,
            }
            let record = IntervalRecord {
                host_id: self.host_id.clone(),
                seq,
                kind,
                interval_start_ms: c.id.start_ms,
                interval_ms,
                dimension: c.id.dim.kind,
                key: c.id.dim.key.clone(),
                delta: delta.clone(),
                total: c.agg.clone(),
                sla: if kind == RecordKind::Interval {
                    std::mem::take(&mut sla)
                } else {
                    Vec::new()
                },
            };
            records.push((seq, StoreOutbox::encode(&record)));
            seq += 1;
            deltas.push(delta);
        }
        let horizons = Horizons::at(&self.history, &self.tz, now_ms);
        let added: Vec<(&BucketId, &Agg)> = candidates.iter().map(|c| &c.id).zip(&deltas).collect();
        let entries = history::plan(store, &self.tz, horizons, &added)?;
        closed.history = candidates.len() as u64;
        closed.dropped = store.add_records_with_history(
            &records,
            &shipped,
            &entries,
            until_ms,
            self.max_outbox_bytes,
        )?;
        store.flush().await?;
        for c in candidates {
            self.shipped.insert(c.key, c.agg.revision);
        }
        self.looked.extend(looked);
        Ok(closed)
    }
}

impl Closer {
    /// Drops the history past its horizons at `now_ms`, and the oldest past its byte cap.
    pub fn keep_history(&self, store: &Store, now_ms: i64) -> Result<u64, StoreError> {
        history::keep(store, &self.history, &self.tz, now_ms)
    }

    /// Forgets shipped copies of intervals older than `from` (the engine dropped them too).
    pub fn prune(&mut self, store: &Store, from: i64) -> Result<(), StoreError> {
        self.looked.retain(|start, _| *start >= from);
        self.held.retain(|start, _| *start >= from);
        let old: Vec<Vec<u8>> = self
            .shipped
            .keys()
            .filter(|k| BucketId::decode(k).is_none_or(|id| id.start_ms < from))
            .cloned()
            .collect();
        if old.is_empty() {
            return Ok(());
        }
        let removals: Vec<(Vec<u8>, Option<Vec<u8>>)> =
            old.iter().map(|k| (k.clone(), None)).collect();
        store.add_records(&[], &removals, self.max_outbox_bytes)?;
        for k in old {
            self.shipped.remove(&k);
        }
        Ok(())
    }
}

/// This host's id: the configured one, else an app-specific hash of /etc/machine-id (the raw id
/// is not to be exposed), else the host name.
#[must_use]
pub fn host_id(configured: &str) -> String {
    if !configured.is_empty() {
        return configured.to_string();
    }
    if let Ok(id) = std::fs::read_to_string("/etc/machine-id") {
        let id = id.trim();
        if !id.is_empty() {
            let h = format!("callmetrics:{id}")
                .bytes()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                });
            return format!("{h:016x}");
        }
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "unknown-host".into(), |h| h.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, EventKind};

    /// 2026-11-22T08:00:00Z, an interval start in UTC.
    const T0: i64 = 1_795_334_400_000;

    fn call(e: &mut Engine, id: &str, queue: &str, at: i64) {
        let mut s = Event::new(EventKind::Start, id, at);
        s.queue = Some(queue.into());
        let end = Event::new(EventKind::End, id, at + 5_000);
        for ev in [&s, &end] {
            e.apply(ev, at + 5_000);
        }
    }

    /// A store in a temporary folder, an engine and a closer on the default config, records
    /// made as with a sink configured.
    fn fixture() -> (tempfile::TempDir, Arc<Store>, Engine, Closer) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(&dir.path().join("s"), 1 << 20, 1 << 30).expect("store"));
        let cfg = Config::default();
        let engine = Engine::new(&cfg);
        let mut closer = Closer::new(&cfg, "h".into(), &store).expect("closer");
        closer.records = true;
        (dir, store, engine, closer)
    }

    #[tokio::test]
    async fn slices_unchanged_since_they_were_shipped_are_not_decoded_again() {
        let (_dir, store, mut engine, mut closer) = fixture();
        call(&mut engine, "a", "q1", T0 + 60_000);
        call(&mut engine, "b", "q2", T0 + 16 * 60_000);
        let now = T0 + 3_600_000;
        engine.advance(now);

        // Both intervals closed: each queue's bucket is shipped, both slices looked at; the
        // history takes the queue's, the channel's and the overall bucket of each.
        let c = closer.candidates(&engine, now, true);
        assert_eq!((c.buckets.len(), c.looked.len()), (6, 2));
        assert_eq!(
            closer
                .ship(&store, c, 900_000)
                .await
                .expect("ship")
                .intervals,
            2
        );

        // Nothing changed: no slice is decoded again.
        let c = closer.candidates(&engine, now, true);
        assert_eq!((c.buckets.len(), c.looked.len()), (0, 0));
        closer.ship(&store, c, 900_000).await.expect("ship");

        // A late call in the first interval: that slice alone is read again, one correction.
        call(&mut engine, "c", "q1", T0 + 120_000);
        engine.advance(now + 10_000);
        let c = closer.candidates(&engine, now + 10_000, true);
        assert_eq!((c.buckets.len(), c.looked.len()), (3, 1));
        let closed = closer.ship(&store, c, 900_000).await.expect("ship");
        assert_eq!((closed.intervals, closed.corrections), (0, 1));
    }

    #[tokio::test]
    async fn an_interval_still_changing_is_held_back_until_it_settles_or_for_a_bounded_number_of_rounds(
    ) {
        let (_dir, store, mut engine, mut closer) = fixture();
        call(&mut engine, "a", "q1", T0 + 60_000);
        let now = T0 + 3_600_000;
        engine.advance(now);

        // First seen: held back one round; unchanged in the next: closed.
        let c = closer.candidates(&engine, now, false);
        assert_eq!((c.buckets.len(), c.looked.len()), (0, 0));
        closer.ship(&store, c, 900_000).await.expect("ship");
        let c = closer.candidates(&engine, now, false);
        assert_eq!((c.buckets.len(), c.looked.len()), (3, 1));
        assert_eq!(
            closer
                .ship(&store, c, 900_000)
                .await
                .expect("ship")
                .intervals,
            1
        );

        // Late calls into it in every round: held back MAX_HELD_ROUNDS rounds, then closed
        // anyway (one correction for all of them so far).
        let mut late = 0u64;
        for round in 0..=MAX_HELD_ROUNDS {
            late += 1;
            call(&mut engine, &format!("late-{late}"), "q1", T0 + 120_000);
            // Past the reorder grace, so the late call is folded in.
            let now = now + i64::from(round + 1) * 10_000;
            engine.advance(now);
            let c = closer.candidates(&engine, now, false);
            let closing = round == MAX_HELD_ROUNDS;
            assert_eq!(
                c.buckets.len(),
                if closing { 3 } else { 0 },
                "round {round}"
            );
            let closed = closer.ship(&store, c, 900_000).await.expect("ship");
            assert_eq!(closed.corrections, u64::from(closing), "round {round}");
        }
        let shipped = store
            .shipped_copy(
                closer
                    .shipped
                    .keys()
                    .find(|k| BucketId::decode(k).is_some_and(|id| id.dim.kind == DimKind::Queue))
                    .expect("queue bucket shipped"),
            )
            .expect("read")
            .expect("copy");
        let agg: Agg = rmp_serde::from_slice(&shipped).expect("decode");
        assert_eq!(agg.offered, 1 + late);

        // A flush (`now_all`) takes a changed interval at once.
        call(&mut engine, "flushed", "q1", T0 + 120_000);
        let now = now + 3_600_000;
        engine.advance(now);
        let c = closer.candidates(&engine, now, true);
        assert_eq!(c.buckets.len(), 3);
    }

    #[tokio::test]
    async fn a_round_stops_at_its_bucket_bound_even_inside_an_interval_and_the_next_goes_on() {
        let (_dir, store, mut engine, mut closer) = fixture();
        // Three intervals with one call each: three buckets each (queue, channel, overall).
        for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
            call(&mut engine, id, "q1", T0 + 60_000 + i as i64 * 900_000);
        }
        let now = T0 + 3_600_000;
        engine.advance(now);
        // A bound below one interval's buckets: rounds of two take the nine buckets in five,
        // each complete up to the start of the interval it stopped in.
        closer.round_buckets = 2;
        let expected = [
            // (buckets, intervals finished, more, complete until)
            (2, 0, true, T0),
            (2, 1, true, T0 + 900_000),
            (2, 1, true, T0 + 1_800_000),
            (2, 0, true, T0 + 1_800_000),
            (1, 1, false, now),
        ];
        let mut shipped = 0;
        let mut seen = std::collections::HashSet::new();
        for (round, want) in expected.into_iter().enumerate() {
            let c = closer.candidates(&engine, now, true);
            assert_eq!(
                (c.buckets.len(), c.looked.len(), c.more, c.until_ms),
                want,
                "round {round}"
            );
            for b in &c.buckets {
                assert!(
                    seen.insert(b.key.clone()),
                    "round {round}: a bucket taken twice"
                );
            }
            shipped += closer
                .ship(&store, c, 900_000)
                .await
                .expect("ship")
                .intervals;
        }
        assert_eq!(seen.len(), 9);
        assert_eq!(shipped, 3);
        let c = closer.candidates(&engine, now, true);
        assert_eq!((c.buckets.len(), c.more), (0, false));
    }

    #[tokio::test]
    async fn tag_buckets_go_into_the_history_but_ship_only_when_upstream_dimensions_ask() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(&dir.path().join("s"), 1 << 20, 1 << 30).expect("store"));
        let mut cfg = Config::default();
        cfg.history.tag_dimensions = vec!["tier".into()];
        let mut engine = Engine::new(&cfg);
        let mut closer = Closer::new(&cfg, "h".into(), &store).expect("closer");
        closer.records = true;
        let mut s = Event::new(EventKind::Start, "a", T0 + 60_000);
        s.queue = Some("q1".into());
        s.tags = vec![("tier".into(), "gold".into())];
        let end = Event::new(EventKind::End, "a", T0 + 65_000);
        for ev in [&s, &end] {
            engine.apply(ev, T0 + 65_000);
        }
        let now = T0 + 3_600_000;
        engine.advance(now);

        // The queue's, the channel's, the overall and the tier's bucket go into the history;
        // upstream.dimensions is `queue` by default: one record, of the queue.
        let c = closer.candidates(&engine, now, true);
        let mut kinds: Vec<DimKind> = c.buckets.iter().map(|b| b.id.dim.kind).collect();
        kinds.sort();
        assert_eq!(
            kinds,
            [DimKind::All, DimKind::Queue, DimKind::Channel, DimKind::Tag]
        );
        let closed = closer.ship(&store, c, 900_000).await.expect("ship");
        assert_eq!((closed.intervals, closed.history), (1, 4));
        let records = store.records_after(0, 100).expect("records");
        assert_eq!(records.len(), 1);
        let record = StoreOutbox::decode(&records[0].1).expect("record");
        assert_eq!(
            (record.dimension, record.key.as_str()),
            (DimKind::Queue, "q1")
        );

        // Asked for, tag records are shipped. A late gold call changes the queue's and the
        // tier's bucket: a correction each (the tier's bucket went into the history before, so
        // what it adds now is a delta, as for any dimension added to upstream.dimensions).
        cfg.upstream.dimensions = vec!["queue".into(), "tag".into()];
        closer.reconfigure(&cfg);
        let mut s = Event::new(EventKind::Start, "b", T0 + 120_000);
        s.queue = Some("q1".into());
        s.tags = vec![("tier".into(), "gold".into())];
        let end = Event::new(EventKind::End, "b", T0 + 125_000);
        for ev in [&s, &end] {
            engine.apply(ev, now);
        }
        engine.advance(now + 10_000);
        let c = closer.candidates(&engine, now + 10_000, true);
        let closed = closer.ship(&store, c, 900_000).await.expect("ship");
        assert_eq!((closed.intervals, closed.corrections), (0, 2));
        let records = store.records_after(records[0].0, 100).expect("records");
        let shipped: Vec<(DimKind, String, u64, u64)> = records
            .iter()
            .map(|(_, bytes)| {
                let r = StoreOutbox::decode(bytes).expect("record");
                (r.dimension, r.key, r.delta.offered, r.total.offered)
            })
            .collect();
        assert_eq!(
            shipped,
            [
                (DimKind::Queue, "q1".to_string(), 1, 2),
                (DimKind::Tag, "tier=gold".to_string(), 1, 2)
            ]
        );
    }
}
