//! The metrics engine: pairs events into segments and folds them into bucketed aggregates.
//! Pure: time is passed in, no clock reads and no I/O, so every result is reproducible.
//!
//! Life of a segment: its events are held per call; once its queue facts (answer, or unanswered
//! end) are known and `reorder_grace` has passed since the last event defining them, they are
//! folded into the buckets of the time it left the queue; its handle facts likewise at completion
//! (wrap-up, or end once `wrapup_timeout` passed without one). Until folded, queries count it
//! provisionally, so answers are exact at every moment. A call whose facts are all folded is
//! dropped and remembered for `late_event_window` so late duplicates are recognised.

pub mod aggregate;
pub mod report;
pub mod segment;
pub mod sketch;
pub mod window;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use aggregate::{Agg, Figures, HandleFacts, Outcome, QueueFacts};
pub use report::{
    DimKind, EngineStats, MetricsQuery, MetricsRow, OpenSegment, Realtime, RowParams,
};
pub use window::{Calendar, Tier, Window, FINE_BUCKET_MS, FINE_SPAN_MS};

use crate::config::{Config, Millis, QueueParams};
use crate::event::{Event, EventKind};
use report::OVERFLOW_KEY;
use segment::{open_segments, Call, CallEvent, Folded, Phase, Segment};

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

/// Why an event was refused; nothing changed.
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

#[derive(Debug, Error)]
pub enum RestoreError {
    #[error("stored engine state cannot be decoded: {0}")]
    Decode(String),
}

/// A dimension key: (kind, name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Dim {
    pub kind: DimKind,
    pub key: String,
}

/// One bucket of one key: its identity in the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BucketId {
    pub tier: Tier,
    pub dim: Dim,
    pub start_ms: i64,
}

impl BucketId {
    /// Store key: tier, kind, start (big-endian, sign-flipped so keys sort by time), name.
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

/// Bucketed aggregates of one key.
#[derive(Debug, Clone, Default)]
struct Series {
    fine: BTreeMap<i64, Agg>,
    interval: BTreeMap<i64, Agg>,
}

impl Series {
    fn tier(&self, t: Tier) -> &BTreeMap<i64, Agg> {
        match t {
            Tier::Fine => &self.fine,
            Tier::Interval => &self.interval,
        }
    }
    fn tier_mut(&mut self, t: Tier) -> &mut BTreeMap<i64, Agg> {
        match t {
            Tier::Fine => &mut self.fine,
            Tier::Interval => &mut self.interval,
        }
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
    bands: std::sync::Arc<[u64]>,
    windows: Vec<Millis>,
    defaults: QueueParams,
    queues: BTreeMap<String, QueueParams>,
    keep_interval_ms: i64,
}

impl Settings {
    fn from_config(c: &Config) -> Self {
        let m = &c.metrics;
        let longest = m.windows.iter().map(|w| w.0).max().unwrap_or(0);
        Settings {
            grace_ms: m.reorder_grace.0,
            wrapup_timeout_ms: m.wrapup_timeout.0,
            max_call_ms: m.max_call_duration.0,
            late_window_ms: m.late_event_window.0,
            max_remembered: m.max_remembered_calls,
            max_open: c.limits.max_open_segments,
            max_keys: [1, m.max_queues, m.max_agents, m.max_channels],
            bands: m
                .bands
                .iter()
                .map(|b| b.0 as u64)
                .collect::<Vec<_>>()
                .into(),
            windows: m.windows.clone(),
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
}

fn kind_index(k: DimKind) -> usize {
    match k {
        DimKind::All => 0,
        DimKind::Queue => 1,
        DimKind::Agent => 2,
        DimKind::Channel => 3,
    }
}

/// Stable 64-bit FNV-1a, so remembered calls keep their identity across restarts.
fn call_hash(call_id: &str) -> u64 {
    call_id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Engine state that is not bucket aggregates: checkpointed whole.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Volatile {
    now_ms: i64,
    calls: HashMap<String, Call>,
    /// Finished calls: hash → (latest folded ts, forget at).
    remembered: HashMap<u64, (i64, i64)>,
    forget_q: VecDeque<(i64, u64)>,
    settle_q: VecDeque<(i64, String)>,
    wrapup_q: VecDeque<(i64, String)>,
    next_scan_ms: i64,
    open_segments: usize,
    /// Open segments per call, kept in step with `calls`.
    open_per_call: HashMap<String, usize>,
    stats: EngineStats,
}

/// Bucket changes and the rest of the state, ready for the store.
pub struct Checkpoint {
    /// Encoded [`BucketId`] → encoded [`Agg`], or `None` when the bucket was dropped.
    pub buckets: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    pub volatile: Vec<u8>,
}

pub struct Engine {
    s: Settings,
    cal: Calendar,
    v: Volatile,
    series: HashMap<Dim, Series>,
    keys_per_kind: [usize; 4],
    dirty: HashSet<BucketId>,
}

enum Due {
    Settle,
    Wrapup,
    Forget,
    Scan,
}

impl Engine {
    pub fn new(cfg: &Config) -> Engine {
        Engine {
            s: Settings::from_config(cfg),
            cal: Calendar {
                tz: cfg.general.time_zone.zone(),
                interval_ms: cfg.metrics.interval.0,
            },
            v: Volatile::default(),
            series: HashMap::new(),
            keys_per_kind: [0; 4],
            dirty: HashSet::new(),
        }
    }

    /// Applies a new config: parameters apply to what is folded from now on.
    pub fn reconfigure(&mut self, cfg: &Config) {
        self.s = Settings::from_config(cfg);
        self.cal = Calendar {
            tz: cfg.general.time_zone.zone(),
            interval_ms: cfg.metrics.interval.0,
        };
    }

    pub fn now_ms(&self) -> i64 {
        self.v.now_ms
    }

    pub fn calendar(&self) -> &Calendar {
        &self.cal
    }

    /// Takes one event received at `now_ms` (engine time; it never goes backwards).
    pub fn apply(&mut self, ev: &Event, now_ms: i64) -> Result<Applied, Rejection> {
        self.advance(now_ms);
        let now = self.v.now_ms;
        let hash = call_hash(&ev.call_id);
        if self
            .v
            .remembered
            .get(&hash)
            .is_some_and(|(ts, _)| ev.ts_ms <= *ts)
        {
            self.v.stats.late += 1;
            return Ok(Applied::Late);
        }
        let ce = CallEvent::from_event(ev, now);
        let existing = self.v.calls.contains_key(&ev.call_id);
        let mut call = self.v.calls.remove(&ev.call_id).unwrap_or_else(|| Call {
            first_rx_ms: now,
            ..Call::default()
        });
        let put_back = |v: &mut Volatile, call: Call| {
            if existing {
                v.calls.insert(ev.call_id.clone(), call);
            }
        };
        let Some(pos) = call.insert_position(&ce) else {
            put_back(&mut self.v, call);
            self.v.stats.duplicates += 1;
            return Ok(Applied::Duplicate);
        };
        call.events.insert(pos, ce);
        let derived = call.derive();
        if !call.consistent_with_folded(&derived.segments) {
            call.events.remove(pos);
            put_back(&mut self.v, call);
            self.v.stats.late += 1;
            return Ok(Applied::Late);
        }
        let before = self.v.open_per_call.get(&ev.call_id).copied().unwrap_or(0);
        let after = open_segments(&call, &derived.segments);
        if after > before && self.v.open_segments - before + after > self.s.max_open {
            call.events.remove(pos);
            put_back(&mut self.v, call);
            self.v.stats.rejected_open_segment_limit += 1;
            return Err(Rejection::OpenSegmentLimit(self.v.open_segments));
        }
        self.set_open(&ev.call_id, before, after);
        self.v
            .settle_q
            .push_back((now + self.s.grace_ms, ev.call_id.clone()));
        if ev.kind == EventKind::End {
            let wait = self.s.grace_ms.max(self.s.wrapup_timeout_ms);
            self.v.wrapup_q.push_back((now + wait, ev.call_id.clone()));
        }
        self.v.calls.insert(ev.call_id.clone(), call);
        self.v.stats.accepted += 1;
        Ok(Applied::Accepted)
    }

    fn set_open(&mut self, call_id: &str, before: usize, after: usize) {
        self.v.open_segments = self.v.open_segments - before + after;
        if after == 0 {
            self.v.open_per_call.remove(call_id);
        } else if before != after {
            self.v.open_per_call.insert(call_id.to_string(), after);
        }
    }

    /// Moves engine time to `now_ms`, folding, expiring and forgetting whatever fell due, in time order.
    pub fn advance(&mut self, now_ms: i64) {
        if self.v.next_scan_ms == 0 {
            self.v.next_scan_ms = now_ms - now_ms.rem_euclid(SCAN_EVERY_MS) + SCAN_EVERY_MS;
        }
        self.v.now_ms = self.v.now_ms.max(now_ms);
        let now = self.v.now_ms;
        loop {
            let mut next: Option<(i64, Due)> = None;
            let mut consider = |t: Option<i64>, d: Due| {
                if let Some(t) = t {
                    if t <= now && next.as_ref().is_none_or(|(n, _)| t < *n) {
                        next = Some((t, d));
                    }
                }
            };
            consider(self.v.settle_q.front().map(|e| e.0), Due::Settle);
            consider(self.v.wrapup_q.front().map(|e| e.0), Due::Wrapup);
            consider(self.v.forget_q.front().map(|e| e.0), Due::Forget);
            consider(Some(self.v.next_scan_ms), Due::Scan);
            let Some((at, due)) = next else { break };
            match due {
                Due::Settle | Due::Wrapup => {
                    let q = if matches!(due, Due::Settle) {
                        &mut self.v.settle_q
                    } else {
                        &mut self.v.wrapup_q
                    };
                    if let Some((_, id)) = q.pop_front() {
                        self.settle(&id, at);
                    }
                }
                Due::Forget => {
                    if let Some((_, h)) = self.v.forget_q.pop_front() {
                        if self
                            .v
                            .remembered
                            .get(&h)
                            .is_some_and(|(_, until)| *until <= at)
                        {
                            self.v.remembered.remove(&h);
                        }
                    }
                }
                Due::Scan => {
                    self.scan(at);
                    self.v.next_scan_ms = at + SCAN_EVERY_MS;
                }
            }
        }
    }

    /// Folds whatever of the call is settled at `at`; drops the call once everything is.
    fn settle(&mut self, call_id: &str, at: i64) {
        let Some(mut call) = self.v.calls.remove(call_id) else {
            return;
        };
        let derived = call.derive();
        call.folded.resize(
            derived.segments.len().max(call.folded.len()),
            Folded::default(),
        );
        for (i, seg) in derived.segments.iter().enumerate() {
            if call.folded[i].expired {
                continue;
            }
            if call.folded[i].queue.is_none() {
                if let Some(q) = seg.queue_facts() {
                    if seg.queue_rx_ms + self.s.grace_ms <= at {
                        self.fold_queue(seg, &q);
                        call.folded[i].queue = Some(q);
                    }
                }
            }
            if call.folded[i].handle.is_none() {
                if let Some(h) = seg.handle_facts() {
                    if self.handle_due(seg) <= at {
                        self.fold_handle(seg, &h);
                        call.folded[i].handle = Some(h);
                    }
                }
            }
        }
        // An event that fits nowhere yet (say, an answer that overtook its transfer's start) may
        // still find its segment: the call is kept until its newest event is past the grace.
        let quiet = call.events.iter().all(|e| e.rx_ms + self.s.grace_ms <= at);
        if quiet {
            self.keep_or_finish(call_id, call, derived.orphans, &derived.segments);
        } else {
            self.v.calls.insert(call_id.to_string(), call);
        }
    }

    fn handle_due(&self, seg: &Segment) -> i64 {
        match (seg.wrapup_ms, seg.end_rx_ms) {
            (Some(_), _) => seg.last_rx_ms + self.s.grace_ms,
            (None, Some(end_rx)) => end_rx + self.s.grace_ms.max(self.s.wrapup_timeout_ms),
            (None, None) => i64::MAX,
        }
    }

    fn keep_or_finish(&mut self, call_id: &str, call: Call, orphans: usize, segments: &[Segment]) {
        let done = orphans == 0
            && !segments.is_empty()
            && segments.iter().zip(&call.folded).all(|(_, f)| {
                f.expired
                    || match &f.queue {
                        Some(q) if q.outcome == Outcome::Answered => f.handle.is_some(),
                        Some(_) => true,
                        None => false,
                    }
            })
            && call.folded.len() >= segments.len();
        if !done {
            self.v.calls.insert(call_id.to_string(), call);
            return;
        }
        let before = self.v.open_per_call.get(call_id).copied().unwrap_or(0);
        self.set_open(call_id, before, 0);
        let hash = call_hash(call_id);
        let until = self.v.now_ms + self.s.late_window_ms;
        let ts = call.max_ts();
        let entry = self.v.remembered.entry(hash).or_insert((ts, until));
        *entry = (entry.0.max(ts), until);
        self.v.forget_q.push_back((until, hash));
        while self.v.remembered.len() > self.s.max_remembered {
            match self.v.forget_q.pop_front() {
                Some((_, h)) => {
                    self.v.remembered.remove(&h);
                }
                None => break,
            }
        }
    }

    /// Expires segments and orphan events older than `max_call_duration`; drops old buckets.
    fn scan(&mut self, at: i64) {
        let limit = at - self.s.max_call_ms;
        let ids: Vec<String> = self
            .v
            .calls
            .iter()
            .filter(|(_, c)| c.first_rx_ms <= limit)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            let Some(mut call) = self.v.calls.remove(&id) else {
                continue;
            };
            let mut derived = call.derive();
            if derived.orphans > 0 && call.first_rx_ms <= limit {
                let first_start = call
                    .events
                    .iter()
                    .position(|e| e.kind == EventKind::Start)
                    .unwrap_or(call.events.len());
                call.events.drain(..first_start);
                self.v.stats.expired_orphan_events += derived.orphans as u64;
                derived = call.derive();
            }
            call.folded.resize(
                derived.segments.len().max(call.folded.len()),
                Folded::default(),
            );
            for (i, seg) in derived.segments.iter().enumerate() {
                if seg.is_open() && !call.folded[i].expired && seg.start_rx_ms <= limit {
                    call.folded[i].expired = true;
                    self.v.stats.expired_segments += 1;
                }
            }
            let before = self.v.open_per_call.get(&id).copied().unwrap_or(0);
            let after = open_segments(&call, &derived.segments);
            self.set_open(&id, before, after);
            if call.events.is_empty() {
                continue;
            }
            self.keep_or_finish(&id, call, derived.orphans, &derived.segments);
        }
        self.prune(at);
    }

    fn prune(&mut self, at: i64) {
        let fine_from = self.cal.fine_bucket(at) - FINE_SPAN_MS;
        let interval_from = self.cal.interval_bucket(at) - self.s.keep_interval_ms;
        let mut emptied = Vec::new();
        for (dim, series) in &mut self.series {
            for (tier, from) in [(Tier::Fine, fine_from), (Tier::Interval, interval_from)] {
                let map = series.tier_mut(tier);
                let old: Vec<i64> = map.range(..from).map(|(k, _)| *k).collect();
                for start_ms in old {
                    map.remove(&start_ms);
                    self.dirty.insert(BucketId {
                        tier,
                        dim: dim.clone(),
                        start_ms,
                    });
                }
            }
            if series.fine.is_empty() && series.interval.is_empty() {
                emptied.push(dim.clone());
            }
        }
        for dim in emptied {
            self.series.remove(&dim);
            self.keys_per_kind[kind_index(dim.kind)] -= 1;
        }
    }

    /// The key a segment counts under in `kind`, folding past-limit keys into `(other)`.
    /// With `create`, a new key is registered.
    fn resolve(&mut self, kind: DimKind, key: &str) -> Dim {
        let dim = self.peek_resolve(kind, key);
        if !self.series.contains_key(&dim) {
            self.series.insert(dim.clone(), Series::default());
            self.keys_per_kind[kind_index(kind)] += 1;
        }
        if dim.key == OVERFLOW_KEY && key != OVERFLOW_KEY {
            *self
                .v
                .stats
                .overflowed
                .entry(kind.name().to_string())
                .or_default() += 1;
        }
        dim
    }

    fn peek_resolve(&self, kind: DimKind, key: &str) -> Dim {
        let dim = Dim {
            kind,
            key: key.to_string(),
        };
        if self.series.contains_key(&dim)
            || self.keys_per_kind[kind_index(kind)] < self.s.max_keys[kind_index(kind)]
        {
            return dim;
        }
        Dim {
            kind,
            key: OVERFLOW_KEY.to_string(),
        }
    }

    fn dims_of(seg: &Segment, with_agent: bool) -> Vec<(DimKind, &str)> {
        let mut d = vec![
            (DimKind::All, "all"),
            (DimKind::Queue, seg.queue.as_str()),
            (DimKind::Channel, seg.channel.as_str()),
        ];
        if with_agent {
            if let Some(a) = seg.agent() {
                d.push((DimKind::Agent, a));
            }
        }
        d
    }

    fn fold_queue(&mut self, seg: &Segment, f: &QueueFacts) {
        let p = self.s.params(&seg.queue);
        let bands = self.s.bands.clone();
        self.fold(seg, f.leave_ms, |a| a.add_queue(f, &p, &bands));
    }

    fn fold_handle(&mut self, seg: &Segment, h: &HandleFacts) {
        self.fold(seg, h.completion_ms, |a| a.add_handle(h));
    }

    fn fold(&mut self, seg: &Segment, at_ms: i64, add: impl Fn(&mut Agg)) {
        let now = self.v.now_ms;
        let keep = [
            (Tier::Fine, self.cal.fine_bucket(now) - FINE_SPAN_MS),
            (
                Tier::Interval,
                self.cal.interval_bucket(now) - self.s.keep_interval_ms,
            ),
        ];
        for (kind, key) in Self::dims_of(seg, true) {
            let dim = self.resolve(kind, key);
            for (tier, from) in keep {
                let start_ms = self.cal.bucket(tier, at_ms);
                if start_ms < from {
                    continue;
                }
                let series = self.series.entry(dim.clone()).or_default();
                add(series.tier_mut(tier).entry(start_ms).or_default());
                self.dirty.insert(BucketId {
                    tier,
                    dim: dim.clone(),
                    start_ms,
                });
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

    /// Metrics rows for one dimension and window at engine time (call `advance` first).
    pub fn metrics(&self, q: &MetricsQuery) -> Result<Vec<MetricsRow>, QueryError> {
        if q.key.is_some() && q.by != DimKind::Queue {
            return Err(QueryError::KeyNeedsQueueDimension(q.by.name().into()));
        }
        let window = self.window(q.window.as_deref())?;
        let now = self.v.now_ms;
        let (tier, first, last) = self.cal.range(window, now);
        let mut keys: BTreeSet<String> = self
            .series
            .keys()
            .filter(|d| d.kind == q.by)
            .map(|d| d.key.clone())
            .collect();
        if q.by == DimKind::Queue {
            keys.extend(self.s.queues.keys().cloned());
        }
        if q.by == DimKind::All {
            keys.insert("all".into());
        }
        let mut rows: BTreeMap<String, (Agg, Realtime)> = BTreeMap::new();
        // Provisional facts and real-time figures of calls not yet folded.
        for call in self.v.calls.values() {
            let derived = call.derive();
            for (i, seg) in derived.segments.iter().enumerate() {
                let folded = call.folded.get(i).cloned().unwrap_or_default();
                if folded.expired {
                    continue;
                }
                let p = self.s.params(&seg.queue);
                for (kind, key) in Self::dims_of(seg, true) {
                    if kind != q.by {
                        continue;
                    }
                    let dim = self.peek_resolve(kind, key);
                    if q.key.as_ref().is_some_and(|k| *k != dim.key) {
                        continue;
                    }
                    let (agg, rt) = rows.entry(dim.key.clone()).or_default();
                    if folded.queue.is_none() {
                        if let Some(f) = seg.queue_facts() {
                            let b = self.cal.bucket(tier, f.leave_ms);
                            if (first..=last).contains(&b) {
                                agg.add_queue(&f, &p, &self.s.bands);
                            }
                        }
                    }
                    let handle_due = self.handle_due(seg);
                    if folded.handle.is_none() && (seg.wrapup_ms.is_some() || handle_due <= now) {
                        if let Some(h) = seg.handle_facts() {
                            let b = self.cal.bucket(tier, h.completion_ms);
                            if (first..=last).contains(&b) {
                                agg.add_handle(&h);
                            }
                        }
                    }
                    if folded.handle.is_some() {
                        continue;
                    }
                    match seg.phase() {
                        Phase::Waiting if seg.end.is_none() => {
                            rt.waiting_now += 1;
                            let w = (now - seg.start_ms).max(0) as u64;
                            rt.longest_wait_now_ms =
                                Some(rt.longest_wait_now_ms.map_or(w, |m| m.max(w)));
                        }
                        Phase::Talking | Phase::OnHold => rt.talking_now += 1,
                        Phase::InAcw if seg.wrapup_ms.is_none() && now < handle_due => {
                            rt.in_acw_now += 1
                        }
                        _ => {}
                    }
                }
            }
        }
        keys.extend(rows.keys().cloned());
        let mut out = Vec::new();
        for key in keys {
            if q.key.as_ref().is_some_and(|k| *k != key) {
                continue;
            }
            let (mut agg, rt) = rows.remove(&key).unwrap_or_default();
            let dim = Dim { kind: q.by, key };
            if let Some(series) = self.series.get(&dim) {
                agg.merge_many(series.tier(tier).range(first..=last).map(|(_, b)| b));
            }
            let p = if q.by == DimKind::Queue {
                self.s.params(&dim.key)
            } else {
                self.s.defaults
            };
            out.push(MetricsRow {
                window: window.name(),
                dimension: q.by,
                figures: Figures::of(&agg, p.formula),
                key: dim.key,
                counts: agg,
                params: RowParams {
                    threshold_ms: p.threshold.0,
                    short_abandon_ms: p.short_abandon.0,
                    formula: p.formula,
                    target: p.target,
                },
                realtime: rt,
            });
        }
        Ok(out)
    }

    /// Open segments (waiting, talking, on hold, in ACW) with their ages.
    pub fn open_calls(&self) -> Vec<OpenSegment> {
        let now = self.v.now_ms;
        let mut out = Vec::new();
        for (id, call) in &self.v.calls {
            let derived = call.derive();
            for (i, seg) in derived.segments.iter().enumerate() {
                let f = call.folded.get(i).cloned().unwrap_or_default();
                if f.expired
                    || f.handle.is_some()
                    || (seg.end.is_some() && (seg.answer.is_none() || seg.wrapup_ms.is_some()))
                {
                    continue;
                }
                let phase = seg.phase();
                let since = match phase {
                    Phase::Waiting => seg.start_ms,
                    Phase::Talking => seg
                        .holds
                        .last()
                        .and_then(|h| h.1)
                        .or(seg.answer.as_ref().map(|a| a.0))
                        .unwrap_or(seg.start_ms),
                    Phase::OnHold => seg.holds.last().map_or(seg.start_ms, |h| h.0),
                    Phase::InAcw => seg.end.map_or(seg.start_ms, |e| e.0),
                };
                out.push(OpenSegment {
                    call_id: id.clone(),
                    queue: seg.queue.clone(),
                    channel: seg.channel.clone(),
                    agent: seg.agent().map(str::to_string),
                    phase,
                    age_ms: now - seg.start_ms,
                    phase_age_ms: now - since,
                });
            }
        }
        out.sort_by(|a, b| {
            b.age_ms
                .cmp(&a.age_ms)
                .then_with(|| a.call_id.cmp(&b.call_id))
        });
        out
    }

    pub fn stats(&self) -> EngineStats {
        let mut s = self.v.stats.clone();
        s.open_segments = self.v.open_segments as u64;
        s.open_calls = self.v.calls.len() as u64;
        s.remembered_calls = self.v.remembered.len() as u64;
        s.keys = [DimKind::Queue, DimKind::Agent, DimKind::Channel]
            .into_iter()
            .map(|k| {
                (
                    k.name().to_string(),
                    self.keys_per_kind[kind_index(k)] as u64,
                )
            })
            .collect();
        s
    }

    /// Number of open segments (for the intake limit and status).
    pub fn open_segment_count(&self) -> usize {
        self.v.open_segments
    }

    /// The aggregates of one bucket, if any (for interval records and tests).
    pub fn bucket(&self, tier: Tier, dim: &Dim, start_ms: i64) -> Option<&Agg> {
        self.series.get(dim)?.tier(tier).get(&start_ms)
    }

    /// Interval buckets of `kinds` starting within `from..=until` (for interval records).
    pub fn interval_buckets(
        &self,
        kinds: &[DimKind],
        from: i64,
        until: i64,
    ) -> Vec<(BucketId, &Agg)> {
        let mut out = Vec::new();
        for (dim, series) in &self.series {
            if !kinds.contains(&dim.kind) {
                continue;
            }
            for (start_ms, agg) in series.interval.range(from..=until) {
                out.push((
                    BucketId {
                        tier: Tier::Interval,
                        dim: dim.clone(),
                        start_ms: *start_ms,
                    },
                    agg,
                ));
            }
        }
        out
    }

    /// How far back interval buckets are kept.
    pub fn interval_retention_ms(&self) -> i64 {
        self.s.keep_interval_ms
    }

    /// Changed buckets since the last checkpoint, and the rest of the state, encoded.
    pub fn checkpoint(&mut self) -> Checkpoint {
        let mut buckets = Vec::with_capacity(self.dirty.len());
        for id in self.dirty.drain() {
            let value = self
                .series
                .get(&id.dim)
                .and_then(|s| s.tier(id.tier).get(&id.start_ms))
                .map(encode);
            buckets.push((id.encode(), value));
        }
        Checkpoint {
            buckets,
            volatile: encode(&self.v),
        }
    }

    /// Marks every bucket changed, so the next checkpoint writes them all (after a failed write).
    pub fn mark_all_dirty(&mut self) {
        for (dim, series) in &self.series {
            for tier in [Tier::Fine, Tier::Interval] {
                for start_ms in series.tier(tier).keys() {
                    self.dirty.insert(BucketId {
                        tier,
                        dim: dim.clone(),
                        start_ms: *start_ms,
                    });
                }
            }
        }
    }

    /// Rebuilds an engine from a checkpoint's buckets and state.
    pub fn restore<I>(
        cfg: &Config,
        buckets: I,
        volatile: Option<&[u8]>,
    ) -> Result<Engine, RestoreError>
    where
        I: IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
    {
        let mut e = Engine::new(cfg);
        if let Some(bytes) = volatile {
            e.v = rmp_serde::from_slice(bytes)
                .map_err(|err| RestoreError::Decode(err.to_string()))?;
        }
        for (k, v) in buckets {
            let id = BucketId::decode(&k)
                .ok_or_else(|| RestoreError::Decode("bad bucket key".into()))?;
            let agg: Agg =
                rmp_serde::from_slice(&v).map_err(|err| RestoreError::Decode(err.to_string()))?;
            if !e.series.contains_key(&id.dim) {
                e.keys_per_kind[kind_index(id.dim.kind)] += 1;
            }
            let series = e.series.entry(id.dim).or_default();
            series.tier_mut(id.tier).insert(id.start_ms, agg);
        }
        Ok(e)
    }
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing plain data structs to a Vec cannot fail: no I/O, every map key is a string or integer.
    rmp_serde::to_vec(v).unwrap_or_default()
}

#[cfg(test)]
mod tests;
