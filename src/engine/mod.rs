//! The metrics engine: pairs events into segments and folds them into bucketed aggregates.
//! Pure: time is passed in, no clock reads and no I/O, so every result is reproducible.
//!
//! Life of a segment: its events are held per call ([`pending`]); once its queue facts (answer, or
//! unanswered end) are known and `reorder_grace` has passed since the last event defining them,
//! they are folded into the buckets of the time it left the queue; its handle facts likewise at
//! completion (wrap-up, or end once `wrapup_timeout` has passed in the source's clock). Until
//! folded, queries count it provisionally, so answers are exact at every moment. A call whose facts
//! are all folded is dropped and remembered for `late_event_window` so late duplicates are
//! recognised.
//!
//! State is sized by keys × buckets plus the calls not yet folded: buckets are packed per time
//! slice ([`slices`]), long windows keep running totals per key ([`totals`]), and nothing is kept
//! per call once its facts are folded but a hash in the bounded remembered set.

pub mod aggregate;
mod checkpoint;
mod dense;
pub mod keys;
mod legacy;
mod packed;
mod pending;
mod query;
pub mod report;
mod running;
pub mod segment;
pub mod sketch;
mod slices;
mod totals;
mod varint;
pub mod window;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use thiserror::Error;

pub use aggregate::{Agg, Figures, HandleFacts, Outcome, QueueFacts};
pub use checkpoint::{slice_key, Checkpoint, RestoreError, StatePart};
pub use keys::Dim;
pub use report::{
    DimKind, EngineStats, MetricsQuery, MetricsRow, OpenSegment, Realtime, RowParams, StateBytes,
};
pub use window::{Calendar, Tier, Window, FINE_BUCKET_MS, FINE_SPAN_MS};

use crate::config::Config;
use crate::event::{Event, EventKind};
use crate::units::{Millis, QueueParams};
use keys::{kind_index, Keys};
use packed::{BandSets, Fact, Work};
use pending::{call_hash, Entry, PendingCalls, Remembered};
use segment::{open_segments, Call, CallEvent, Derived, Folded, Segment};
use slices::TierSlices;
use totals::Totals;

/// How often (engine time) open calls are scanned for expiry and old buckets are dropped.
const SCAN_EVERY_MS: i64 = 60_000;

/// What happened to an accepted event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Accepted,
    /// Same call, type and timestamp as one already here: ignored.
    Duplicate,
    /// About facts already folded in, or a call already finished: ignored and counted.
    Late,
}

/// Why an event was refused at admission; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Rejection {
    #[error("too many open segments: {0} are open (limits.max_open_segments)")]
    OpenSegmentLimit(usize),
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QueryError {
    #[error("unknown window `{0}`; configured windows are {1}")]
    UnknownWindow(String, String),
    #[error("--queue filters queue rows only; it cannot be combined with --by {0}")]
    KeyNeedsQueueDimension(String),
}

/// One bucket of one key: its identity outside the engine (interval records, the closer).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BucketId {
    pub tier: Tier,
    pub dim: Dim,
    pub start_ms: i64,
}

impl BucketId {
    /// Stable key: tier, kind, start (big-endian, sign-flipped so keys sort by time), name.
    pub fn encode(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(10 + self.dim.key.len());
        k.push(match self.tier {
            Tier::Fine => b'f',
            Tier::Interval => b'i',
        });
        k.push(match self.dim.kind {
            DimKind::All => b'a',
            DimKind::Queue => b'q',
            DimKind::Agent => b'g',
            DimKind::Channel => b'c',
        });
        k.extend_from_slice(&((self.start_ms as u64) ^ (1 << 63)).to_be_bytes());
        k.extend_from_slice(self.dim.key.as_bytes());
        k
    }

    pub fn decode(k: &[u8]) -> Option<BucketId> {
        let tier = match k.first()? {
            b'f' => Tier::Fine,
            b'i' => Tier::Interval,
            _ => return None,
        };
        let kind = match k.get(1)? {
            b'a' => DimKind::All,
            b'q' => DimKind::Queue,
            b'g' => DimKind::Agent,
            b'c' => DimKind::Channel,
            _ => return None,
        };
        let start: [u8; 8] = k.get(2..10)?.try_into().ok()?;
        let key = String::from_utf8(k.get(10..)?.to_vec()).ok()?;
        Some(BucketId {
            tier,
            dim: Dim { kind, key },
            start_ms: (u64::from_be_bytes(start) ^ (1 << 63)) as i64,
        })
    }
}

/// What the engine reads from the config; replaced whole on reload.
#[derive(Debug, Clone)]
struct Settings {
    grace_ms: i64,
    wrapup_timeout_ms: i64,
    max_call_ms: i64,
    late_window_ms: i64,
    max_remembered: usize,
    max_open: usize,
    max_keys: [usize; 4],
    /// Shared, so folding a segment does not copy the list.
    bands: Arc<[u64]>,
    windows: Vec<Millis>,
    /// Windows served from interval buckets, which keep running totals: long trailing ones, `today`.
    long_windows: Vec<Window>,
    defaults: QueueParams,
    queues: BTreeMap<String, QueueParams>,
    keep_interval_ms: i64,
}

impl Settings {
    fn from_config(c: &Config) -> Self {
        let m = &c.metrics;
        let longest = m.windows.iter().map(|w| w.0).max().unwrap_or(0);
        let mut bands: Vec<u64> = m.bands.iter().map(|b| b.0 as u64).collect();
        bands.sort_unstable();
        bands.dedup();
        Settings {
            grace_ms: m.reorder_grace.0,
            wrapup_timeout_ms: m.wrapup_timeout.0,
            max_call_ms: m.max_call_duration.0,
            late_window_ms: m.late_event_window.0,
            max_remembered: m.max_remembered_calls,
            max_open: c.limits.max_open_segments,
            max_keys: [1, m.max_queues, m.max_agents, m.max_channels],
            bands: bands.into(),
            windows: m.windows.clone(),
            long_windows: m
                .windows
                .iter()
                .filter(|w| w.0 > FINE_SPAN_MS)
                .map(|w| Window::Trailing(*w))
                .chain([Window::Today])
                .collect(),
            defaults: c.defaults,
            queues: c
                .queues
                .keys()
                .map(|q| (q.clone(), c.queue_params(q)))
                .collect(),
            // `today` can reach back 25 h on a fall-back day; keep one interval more for late events.
            keep_interval_ms: longest.max(25 * 3_600_000) + m.interval.0,
        }
    }

    fn params(&self, queue: &str) -> QueueParams {
        self.queues.get(queue).copied().unwrap_or(self.defaults)
    }

    fn max_keys(&self, kind: DimKind) -> usize {
        self.max_keys[kind_index(kind)]
    }
}

/// Counters kept by the engine (the rest of `EngineStats` is computed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Counters {
    accepted: u64,
    duplicates: u64,
    late: u64,
    rejected_open_segment_limit: u64,
    expired_segments: u64,
    expired_orphan_events: u64,
    overflowed: BTreeMap<String, u64>,
}

pub struct Engine {
    s: Settings,
    cal: Calendar,
    now_ms: i64,
    next_scan_ms: i64,
    counters: Counters,
    keys: Keys,
    sets: BandSets,
    fine: TierSlices,
    interval: TierSlices,
    totals: Totals,
    pending: PendingCalls,
    remembered: Remembered,
    open_segments: usize,
    /// Slices changed since the last checkpoint.
    dirty: BTreeSet<(Tier, i64)>,
    /// Scratch buffers for folding into packed buckets.
    work: Work,
    /// Something changed since the last checkpoint (events, folds, expiries, forgotten calls).
    changed: bool,
}

/// Calls that have no open segment (finished, waiting out `reorder_grace`, or events that fit no
/// segment yet) kept before the oldest are folded early: at 165 bytes a call, about 3 MiB; at
/// the rates of a live call center (tens of calls a second) never reached.
const MAX_SETTLING_CALLS: usize = 20_000;

enum Due {
    Call,
    Forget,
    Scan,
}

fn calendar(cfg: &Config) -> Calendar {
    Calendar {
        tz: cfg.general.time_zone.zone(),
        interval_ms: cfg.metrics.interval.0,
    }
}

impl Engine {
    pub fn new(cfg: &Config) -> Engine {
        let s = Settings::from_config(cfg);
        let cal = calendar(cfg);
        let totals = Totals::build(
            &s.long_windows,
            &cal,
            &TierSlices::default(),
            &BandSets::default(),
            0,
        );
        Engine {
            s,
            cal,
            now_ms: 0,
            next_scan_ms: 0,
            counters: Counters::default(),
            keys: Keys::default(),
            sets: BandSets::default(),
            fine: TierSlices::default(),
            interval: TierSlices::default(),
            totals,
            pending: PendingCalls::default(),
            remembered: Remembered::default(),
            open_segments: 0,
            dirty: BTreeSet::new(),
            work: Work::default(),
            changed: false,
        }
    }

    /// Applies a new config: parameters apply to what is folded from now on.
    pub fn reconfigure(&mut self, cfg: &Config) {
        self.s = Settings::from_config(cfg);
        self.cal = calendar(cfg);
        self.rebuild_totals();
    }

    fn rebuild_totals(&mut self) {
        self.totals = Totals::build(
            &self.s.long_windows,
            &self.cal,
            &self.interval,
            &self.sets,
            self.now_ms,
        );
    }

    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    pub fn calendar(&self) -> &Calendar {
        &self.cal
    }

    /// Whether `ev` may be taken, given `admitted_starts` starts already admitted in the same
    /// group: a `start` that is not a duplicate is refused when the open segments would exceed
    /// `limits.max_open_segments`. Read-only, so it can run before the event is stored.
    pub fn admit(&mut self, ev: &Event, admitted_starts: usize) -> Result<(), Rejection> {
        if ev.kind != EventKind::Start {
            return Ok(());
        }
        let open = self.open_segments + admitted_starts;
        if open < self.s.max_open {
            return Ok(());
        }
        let duplicate = self.pending.get(&ev.call_id).is_some_and(|e| {
            e.call
                .events
                .iter()
                .any(|x| x.kind == EventKind::Start && x.ts_ms == ev.ts_ms)
        });
        if duplicate || self.remembered.covers(call_hash(&ev.call_id), ev.ts_ms) {
            return Ok(());
        }
        self.counters.rejected_open_segment_limit += 1;
        Err(Rejection::OpenSegmentLimit(open))
    }

    /// Takes one event received at `now_ms` (engine time; it never goes backwards).
    pub fn apply(&mut self, ev: &Event, now_ms: i64) -> Applied {
        self.apply_group(&[ev], now_ms)[0]
    }

    /// Takes a group of events received together at `now_ms`: exactly as `apply` one by one in
    /// order, but each call's state is unpacked once for all its events in the group.
    pub fn apply_group(&mut self, events: &[&Event], now_ms: i64) -> Vec<Applied> {
        self.advance(now_ms);
        let now = self.now_ms;
        let mut out = vec![Applied::Accepted; events.len()];
        // Calls in the order they first appear; their events in group order, chained by index
        // (no allocation per call: a bulk load brings thousands per group).
        let mut first: Vec<usize> = Vec::new();
        let mut next = vec![usize::MAX; events.len()];
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(events.len().min(1 << 16));
        for (i, ev) in events.iter().enumerate() {
            match last.get_mut(ev.call_id.as_str()) {
                Some(l) => {
                    next[*l] = i;
                    *l = i;
                }
                None => {
                    last.insert(&ev.call_id, i);
                    first.push(i);
                }
            }
        }
        drop(last);
        for f in first {
            let call_id = events[f].call_id.as_str();
            let hash = call_hash(call_id);
            let existing = self.pending.take(call_id);
            let had = existing.is_some();
            let mut e = existing.unwrap_or_else(|| Entry {
                call: Call {
                    first_rx_ms: now,
                    ..Call::default()
                },
                scheduled: i64::MAX,
                order: 0,
                open: 0,
            });
            let mut changed = false;
            let mut i = f;
            while i != usize::MAX {
                out[i] = self.take_event(&mut e.call, events[i], hash, now);
                changed |= out[i] == Applied::Accepted;
                i = next[i];
            }
            if changed {
                self.changed = true;
                let derived = e.call.derive();
                let after = open_segments(&e.call, &derived.segments) as u32;
                self.open_segments = self.open_segments + after as usize - e.open as usize;
                e.open = after;
                let due = self.next_due(&e.call, &derived, now);
                self.pending.put(call_id, e, due);
            } else if had {
                self.pending.put(call_id, e, None);
            }
        }
        self.relieve();
        out
    }

    /// Folds at once the calls whose grace would end first while more than
    /// [`MAX_SETTLING_CALLS`] calls beyond the open segments wait: the grace is counted from
    /// receipt, so a bulk load at hundreds of thousands of events per second would otherwise hold
    /// every call of the last two seconds (measured: 410 000 calls, 100 MiB). An event that
    /// arrives for such a call afterwards is counted late, as after any grace.
    fn relieve(&mut self) {
        while self.pending.len() > self.open_segments + MAX_SETTLING_CALLS {
            let Some((at, ids)) = self.pending.pop_due(i64::MAX) else {
                break;
            };
            for id in ids {
                self.changed = true;
                self.settle(&id, at);
            }
        }
    }

    /// Adds one event to its call's state, unless it is a duplicate or late.
    fn take_event(&mut self, call: &mut Call, ev: &Event, hash: u64, now: i64) -> Applied {
        if self.remembered.covers(hash, ev.ts_ms) {
            self.counters.late += 1;
            return Applied::Late;
        }
        let ce = CallEvent::from_event(ev, now);
        let Some(pos) = call.insert_position(&ce) else {
            self.counters.duplicates += 1;
            return Applied::Duplicate;
        };
        call.events.insert(pos, ce);
        if !call.folded.is_empty() && !call.consistent_with_folded(&call.derive().segments) {
            call.events.remove(pos);
            self.counters.late += 1;
            return Applied::Late;
        }
        self.counters.accepted += 1;
        Applied::Accepted
    }

    /// When something of the call next falls due after `after`: a fold, or the end of its grace.
    fn next_due(&self, call: &Call, derived: &Derived, after: i64) -> Option<i64> {
        let mut due: Option<i64> = None;
        let mut consider = |t: i64| {
            if t > after {
                due = Some(due.map_or(t, |d| d.min(t)));
            }
        };
        if let Some(quiet) = call.events.iter().map(|e| e.rx_ms + self.s.grace_ms).max() {
            consider(quiet);
        }
        for (i, seg) in derived.segments.iter().enumerate() {
            let f = call.folded.get(i).cloned().unwrap_or_default();
            if f.expired {
                continue;
            }
            if f.queue.is_none() && seg.queue_facts().is_some() {
                consider(seg.queue_rx_ms + self.s.grace_ms);
            }
            if f.handle.is_none() && seg.handle_facts().is_some() {
                consider(self.handle_due(seg));
            }
        }
        due
    }

    /// When an answered, ended segment's handling completes: at its wrap-up (after the grace), or
    /// once `wrapup_timeout` has passed since its end in the source's clock (never before the
    /// grace since the end arrived).
    fn handle_due(&self, seg: &Segment) -> i64 {
        match (seg.wrapup_ms, seg.end, seg.end_rx_ms) {
            (Some(_), _, _) => seg.last_rx_ms + self.s.grace_ms,
            (None, Some((end_ms, _)), Some(end_rx)) => {
                (end_rx + self.s.grace_ms).max(end_ms.saturating_add(self.s.wrapup_timeout_ms))
            }
            _ => i64::MAX,
        }
    }

    /// Moves engine time to `now_ms`, folding, expiring and forgetting whatever fell due, in time order.
    pub fn advance(&mut self, now_ms: i64) {
        if self.next_scan_ms == 0 {
            self.next_scan_ms = now_ms - now_ms.rem_euclid(SCAN_EVERY_MS) + SCAN_EVERY_MS;
        }
        self.now_ms = self.now_ms.max(now_ms);
        let now = self.now_ms;
        loop {
            let mut next: Option<(i64, Due)> = None;
            let mut consider = |t: Option<i64>, d: Due| {
                if let Some(t) = t {
                    if t <= now && next.as_ref().is_none_or(|(n, _)| t < *n) {
                        next = Some((t, d));
                    }
                }
            };
            consider(self.pending.next_due(), Due::Call);
            consider(self.remembered.next_forget(), Due::Forget);
            consider(Some(self.next_scan_ms), Due::Scan);
            let Some((at, due)) = next else { break };
            match due {
                Due::Call => {
                    if let Some((at, ids)) = self.pending.pop_due(at) {
                        for id in ids {
                            self.changed = true;
                            self.settle(&id, at);
                        }
                    }
                }
                Due::Forget => {
                    self.changed = true;
                    self.remembered.forget_front(at);
                }
                Due::Scan => {
                    self.scan(at);
                    self.next_scan_ms = at + SCAN_EVERY_MS;
                }
            }
        }
        self.totals.sync(&self.cal, &self.interval, &self.sets, now);
    }

    /// Folds whatever of the call is settled at `at`; drops the call once everything is.
    fn settle(&mut self, call_id: &str, at: i64) {
        let Some(mut e) = self.pending.take(call_id) else {
            return;
        };
        let derived = e.call.derive();
        let call = &mut e.call;
        call.folded.resize(
            derived.segments.len().max(call.folded.len()),
            Folded::default(),
        );
        for (i, seg) in derived.segments.iter().enumerate() {
            if call.folded[i].expired {
                continue;
            }
            let queue = seg
                .queue_facts()
                .filter(|_| call.folded[i].queue.is_none())
                .filter(|_| seg.queue_rx_ms + self.s.grace_ms <= at);
            let handle = seg
                .handle_facts()
                .filter(|_| call.folded[i].handle.is_none())
                .filter(|_| self.handle_due(seg) <= at);
            if queue.is_some() || handle.is_some() {
                // Both at once when both are due (a bulk load): a bucket holding both is
                // unpacked and packed once.
                self.fold_facts(seg, queue.as_ref(), handle.as_ref());
            }
            if queue.is_some() {
                call.folded[i].queue = queue;
            }
            if handle.is_some() {
                call.folded[i].handle = handle;
            }
        }
        // An event that fits nowhere yet (say, an answer that overtook its transfer's start) may
        // still find its segment: the call is kept until its newest event is past the grace.
        let quiet = call
            .events
            .iter()
            .all(|ev| ev.rx_ms + self.s.grace_ms <= at);
        if quiet && self.finished(&e.call, derived.orphans, &derived.segments) {
            self.finish(call_id, e);
        } else {
            let due = self.next_due(&e.call, &derived, at);
            self.pending.put(call_id, e, due);
        }
    }

    fn finished(&self, call: &Call, orphans: usize, segments: &[Segment]) -> bool {
        orphans == 0
            && !segments.is_empty()
            && call.folded.len() >= segments.len()
            && call.folded.iter().take(segments.len()).all(|f| {
                f.expired
                    || match &f.queue {
                        Some(q) if q.outcome == Outcome::Answered => f.handle.is_some(),
                        Some(_) => true,
                        None => false,
                    }
            })
    }

    /// Drops a call whose facts are all folded, remembering it for late duplicates.
    fn finish(&mut self, call_id: &str, e: Entry) {
        self.open_segments -= e.open as usize;
        let until = self.now_ms + self.s.late_window_ms;
        self.remembered.remember(
            call_hash(call_id),
            e.call.max_ts(),
            until,
            self.s.max_remembered,
        );
    }

    /// Expires segments and orphan events older than `max_call_duration` in the source's clock;
    /// drops old buckets.
    fn scan(&mut self, at: i64) {
        let limit = at - self.s.max_call_ms;
        let candidates: Vec<String> = self
            .pending
            .iter()
            // Only calls with an open segment, or events before their first start, can expire.
            .filter(|(_, e)| {
                (e.open > 0
                    || e.call
                        .events
                        .first()
                        .is_some_and(|ev| ev.kind != EventKind::Start))
                    && expiry_clock(&e.call) <= limit
            })
            .map(|(id, _)| id.to_string())
            .collect();
        for id in candidates {
            let Some(mut e) = self.pending.take(&id) else {
                continue;
            };
            let mut derived = e.call.derive();
            if derived.orphans > 0 && expiry_clock(&e.call) <= limit {
                let first_start = e
                    .call
                    .events
                    .iter()
                    .position(|ev| ev.kind == EventKind::Start)
                    .unwrap_or(e.call.events.len());
                e.call.events.drain(..first_start);
                self.counters.expired_orphan_events += derived.orphans as u64;
                derived = e.call.derive();
            }
            e.call.folded.resize(
                derived.segments.len().max(e.call.folded.len()),
                Folded::default(),
            );
            for (i, seg) in derived.segments.iter().enumerate() {
                if seg.is_open()
                    && !e.call.folded[i].expired
                    && seg.start_ms.min(seg.start_rx_ms) <= limit
                {
                    e.call.folded[i].expired = true;
                    self.counters.expired_segments += 1;
                }
            }
            let after = open_segments(&e.call, &derived.segments) as u32;
            self.open_segments = self.open_segments + after as usize - e.open as usize;
            e.open = after;
            self.changed = true;
            if e.call.events.is_empty() {
                continue;
            }
            let quiet = e
                .call
                .events
                .iter()
                .all(|ev| ev.rx_ms + self.s.grace_ms <= at);
            if quiet && self.finished(&e.call, derived.orphans, &derived.segments) {
                self.finish(&id, e);
            } else {
                let due = self.next_due(&e.call, &derived, at);
                self.pending.put(&id, e, due);
            }
        }
        self.prune(at);
        self.pending.shrink();
        self.remembered.shrink();
    }

    fn prune(&mut self, at: i64) {
        self.totals.sync(&self.cal, &self.interval, &self.sets, at);
        let fine_from = self.cal.fine_bucket(at) - FINE_SPAN_MS;
        let interval_from = self.cal.interval_bucket(at) - self.s.keep_interval_ms;
        for (tier, from) in [(Tier::Fine, fine_from), (Tier::Interval, interval_from)] {
            let slices = match tier {
                Tier::Fine => &mut self.fine,
                Tier::Interval => &mut self.interval,
            };
            for (start, slice) in slices.split_off_before(from) {
                for (key, _) in slice.cells() {
                    self.keys.bucket_dropped(key);
                }
                self.dirty.insert((tier, start));
            }
        }
        self.keys.drop_unused();
    }

    fn dims_of(seg: &Segment) -> Vec<(DimKind, &str)> {
        let mut d = vec![
            (DimKind::All, "all"),
            (DimKind::Queue, seg.queue.as_str()),
            (DimKind::Channel, seg.channel.as_str()),
        ];
        if let Some(a) = seg.agent() {
            d.push((DimKind::Agent, a));
        }
        d
    }

    /// Folds a segment's queue facts (at the time it left the queue) and handle facts (at
    /// completion) into the buckets of every dimension it counts under.
    fn fold_facts(
        &mut self,
        seg: &Segment,
        queue: Option<&QueueFacts>,
        handle: Option<&HandleFacts>,
    ) {
        let p = self.s.params(&seg.queue);
        let bands = self.s.bands.clone();
        let mut facts: Vec<(i64, Fact<'_>)> = Vec::with_capacity(2);
        if let Some(f) = queue {
            facts.push((
                f.leave_ms,
                Fact::Queue {
                    facts: f,
                    params: &p,
                    bands: &bands,
                },
            ));
        }
        if let Some(h) = handle {
            facts.push((h.completion_ms, Fact::Handle(h)));
        }
        let now = self.now_ms;
        let keep = [
            (Tier::Fine, self.cal.fine_bucket(now) - FINE_SPAN_MS),
            (
                Tier::Interval,
                self.cal.interval_bucket(now) - self.s.keep_interval_ms,
            ),
        ];
        // (tier, bucket start, facts landing there)
        let mut targets: Vec<(Tier, i64, Vec<Fact<'_>>)> = Vec::with_capacity(4);
        for (at_ms, fact) in &facts {
            for (tier, from) in keep {
                let start = self.cal.bucket(tier, *at_ms);
                if start < from {
                    continue;
                }
                match targets.iter_mut().find(|t| t.0 == tier && t.1 == start) {
                    Some(t) => t.2.push(*fact),
                    None => targets.push((tier, start, vec![*fact])),
                }
                self.dirty.insert((tier, start));
            }
        }
        for (kind, name) in Self::dims_of(seg) {
            let limit = self.s.max_keys(kind);
            let (key, overflowed) = self.keys.resolve(kind, name, limit);
            if overflowed {
                *self
                    .counters
                    .overflowed
                    .entry(kind.name().to_string())
                    .or_default() += facts.len() as u64;
            }
            for (tier, start, here) in &targets {
                let slices = match tier {
                    Tier::Fine => &mut self.fine,
                    Tier::Interval => &mut self.interval,
                };
                if slices
                    .entry(*start)
                    .fold(key, &mut self.sets, here, &mut self.work)
                {
                    self.keys.bucket_added(key);
                }
                if *tier == Tier::Interval {
                    for fact in here {
                        self.totals.add(key, *start, |r| fact.add_to_running(r));
                    }
                }
            }
        }
    }

    fn window(&self, name: Option<&str>) -> Result<Window, QueryError> {
        let configured = || self.window_names().join(", ");
        let Some(name) = name else {
            return Ok(Window::Trailing(
                self.s.windows.first().copied().unwrap_or(Millis::secs(900)),
            ));
        };
        match Window::parse(name) {
            Some(Window::Today) => Ok(Window::Today),
            Some(Window::Trailing(w)) if self.s.windows.contains(&w) => Ok(Window::Trailing(w)),
            _ => Err(QueryError::UnknownWindow(name.to_string(), configured())),
        }
    }

    /// The windows `metrics` can be asked for.
    pub fn window_names(&self) -> Vec<String> {
        self.s
            .windows
            .iter()
            .map(|w| w.to_string())
            .chain(["today".to_string()])
            .collect()
    }

    pub fn stats(&self) -> EngineStats {
        let c = &self.counters;
        EngineStats {
            accepted: c.accepted,
            duplicates: c.duplicates,
            late: c.late,
            rejected_open_segment_limit: c.rejected_open_segment_limit,
            expired_segments: c.expired_segments,
            expired_orphan_events: c.expired_orphan_events,
            open_segments: self.open_segments as u64,
            open_calls: self.pending.len() as u64,
            remembered_calls: self.remembered.len() as u64,
            overflowed: c.overflowed.clone(),
            keys: [DimKind::Queue, DimKind::Agent, DimKind::Channel]
                .into_iter()
                .map(|k| (k.name().to_string(), self.keys.count(k) as u64))
                .collect(),
            state: self.state_bytes(),
        }
    }

    /// The engine's own accounting of the memory its state takes.
    pub fn state_bytes(&self) -> StateBytes {
        StateBytes {
            buckets: (self.fine.buckets() + self.interval.buckets()) as u64,
            bucket_bytes: (self.fine.bytes() + self.interval.bytes()) as u64,
            total_bytes: self.totals.heap_bytes() as u64,
            pending_bytes: self.pending.heap_bytes() as u64,
            remembered_bytes: self.remembered.heap_bytes() as u64,
            key_bytes: self.keys.heap_bytes() as u64,
        }
    }

    /// Whether anything changed since the last checkpoint (so one is worth writing).
    pub fn has_changes(&self) -> bool {
        self.changed || !self.dirty.is_empty()
    }

    /// Number of open segments (for the intake limit and status).
    pub fn open_segment_count(&self) -> usize {
        self.open_segments
    }

    /// The aggregate of one bucket, if any (for interval records and tests).
    pub fn bucket(&self, tier: Tier, dim: &Dim, start_ms: i64) -> Option<Agg> {
        let key = self.keys.get(dim.kind, &dim.key)?;
        let slices = match tier {
            Tier::Fine => &self.fine,
            Tier::Interval => &self.interval,
        };
        slices.get(start_ms)?.get(key)?.decode(&self.sets).ok()
    }

    /// A number that changes whenever an interval bucket starting at `start_ms` changes (for the
    /// closer, so it decodes only slices that changed since it last looked).
    pub fn interval_slice_version(&self, start_ms: i64) -> Option<u64> {
        self.interval.get(start_ms).map(|s| s.version())
    }

    /// Starts of the interval slices within `from..=until`.
    pub fn interval_starts(&self, from: i64, until: i64) -> Vec<i64> {
        self.interval.range(from, until).map(|(s, _)| s).collect()
    }

    /// Interval buckets of `kinds` in the slice starting at `start` (for interval records).
    pub fn interval_buckets_at(&self, kinds: &[DimKind], start: i64) -> Vec<(BucketId, Agg)> {
        let Some(slice) = self.interval.get(start) else {
            return Vec::new();
        };
        slice
            .cells()
            .filter_map(|(key, cell)| {
                let dim = self.keys.dim(key)?;
                if !kinds.contains(&dim.kind) {
                    return None;
                }
                let agg = cell.decode(&self.sets).ok()?;
                Some((
                    BucketId {
                        tier: Tier::Interval,
                        dim: dim.clone(),
                        start_ms: start,
                    },
                    agg,
                ))
            })
            .collect()
    }

    /// Interval buckets of `kinds` starting within `from..=until` (for interval records).
    pub fn interval_buckets(
        &self,
        kinds: &[DimKind],
        from: i64,
        until: i64,
    ) -> Vec<(BucketId, Agg)> {
        self.interval_starts(from, until)
            .into_iter()
            .flat_map(|s| self.interval_buckets_at(kinds, s))
            .collect()
    }

    /// How far back interval buckets are kept.
    pub fn interval_retention_ms(&self) -> i64 {
        self.s.keep_interval_ms
    }
}

/// The time a call's expiry counts from: its earliest event in the source's clock, or its first
/// receipt when the source's clock runs ahead of ours.
fn expiry_clock(call: &Call) -> i64 {
    let first_ts = call.events.first().map_or(i64::MAX, |e| e.ts_ms);
    first_ts.min(call.first_rx_ms)
}

#[cfg(test)]
mod tests;
