//! Model-based test of the metrics engine against docs/metrics.md.
//!
//! Ground truth is a list of call segments with known timestamps. Their events are delivered to the
//! engine out of order (each event is received up to 1.5 s after its timestamp, below the 2 s
//! reorder grace), some are re-delivered later as exact duplicates, and at random moments every
//! window × dimension is queried and compared with a brute-force recomputation from the ground-truth
//! segments (the "model"). The model never uses the engine's own helpers (Agg, Sketch, Calendar,
//! Segment, Figures): it recomputes counters, sums, quantiles, ratios and real-time figures itself.
//! A second engine restored from a checkpoint taken at a random moment must answer identically.
//!
//! What the model treats as visible at engine time `now`:
//! - a segment's queue part once its start and its leave event (answer, or end if unanswered) arrived;
//! - its handle part once all its events arrived when it has a wrap-up, otherwise once
//!   `wrapup_timeout` has passed since its end in the source's clock, and the reorder grace since
//!   its end arrived: `now ≥ max(ts(end) + wrapup_timeout, rx(end) + grace)`.
//!
//! Moments where the events received so far are transiently misleading are not compared with the
//! model (the two engines are still compared with each other): an answered segment whose `end`
//! arrived before its `answer` (it looks unanswered), a wrap-up that arrived before some other event
//! of its segment, and, in a transferred call, events of one segment that arrived before its `start`
//! while another segment's `start` is there (they attach to that other segment), or the zero-wait
//! `end` of a next segment while the previous segment's own `end` has not arrived (it is taken for a
//! same-instant transfer and closes the previous segment). An engine can only
//! see what has arrived; these states last less than the reorder grace and are never folded in.
//!
//! Ground truth also avoids what the protocol cannot express without segment ids: two events of one
//! call with the same (type, ts); a second segment answered and ended before the first segment's
//! wrap-up (the wrap-up then belongs to the latest ended segment); and, at a same-instant transfer,
//! events of the first segment other than its end and wrap-up at the transfer instant.

use std::collections::{BTreeMap, BTreeSet};

use callmetrics::config::{Config, Formula, Millis, QueueOverride, QueueParams, ZoneName};
use callmetrics::engine::{Applied, DimKind, Engine, EngineStats, MetricsQuery, MetricsRow};
use callmetrics::event::{EndReason, Event, EventKind};
use callmetrics::store::Store;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};

const GRACE_MS: i64 = 2_000;
const WRAPUP_TIMEOUT_MS: i64 = 120_000;
const MAX_DELAY_MS: i64 = 1_500;
const MINUTE: i64 = 60_000;
const INTERVAL: i64 = 900_000;
const DAY: i64 = 86_400_000;
const BANDS_MS: [u64; 5] = [10_000, 20_000, 30_000, 60_000, 120_000];
const WINDOWS: [&str; 5] = ["5m", "15m", "1h", "24h", "today"];
const DIMS: [DimKind; 4] = [
    DimKind::All,
    DimKind::Queue,
    DimKind::Channel,
    DimKind::Agent,
];
const QUANTILES: [f64; 4] = [0.50, 0.90, 0.95, 0.99];
/// 2026-11-21T22:26:40Z: with up to 2 h of offset and 3 h of spread, calls straddle UTC midnight.
const BASE_MS: i64 = 1_795_300_000_000;

const FORMULAS: [(Formula, &str); 7] = [
    (Formula::Answered, "answered"),
    (Formula::Offered, "offered"),
    (Formula::OfferedWithOverflow, "offered_with_overflow"),
    (Formula::AbandonNegative, "abandon_negative"),
    (Formula::AbandonPositive, "abandon_positive"),
    (Formula::AbandonIgnored, "abandon_ignored"),
    (Formula::AsteriskSl2, "asterisk_sl2"),
];

/// Queues q0..q2 are configured; qx takes the defaults.
const QUEUES: [&str; 4] = ["q0", "q1", "q2", "qx"];
const AGENTS: [&str; 3] = ["alice", "bob", "carol"];
const CHANNELS: [Option<&str>; 3] = [None, Some("chat"), Some("email")];
const REASONS: [Option<EndReason>; 7] = [
    None,
    Some(EndReason::Abandoned),
    Some(EndReason::Completed),
    Some(EndReason::Timeout),
    Some(EndReason::Exit),
    Some(EndReason::Transferred),
    Some(EndReason::Callback),
];

// ---------------------------------------------------------------------------------------------
// Configuration, as the model sees it
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
struct Params {
    threshold_ms: i64,
    short_ms: i64,
    formula: Formula,
    target: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Override {
    threshold_ms: Option<i64>,
    short_ms: Option<i64>,
    formula: Option<Formula>,
    target: Option<f64>,
}

#[derive(Debug, Clone)]
struct Model {
    defaults: Params,
    queues: BTreeMap<String, Override>,
}

impl Model {
    fn params(&self, queue: &str) -> Params {
        let d = self.defaults;
        match self.queues.get(queue) {
            None => d,
            Some(o) => Params {
                threshold_ms: o.threshold_ms.unwrap_or(d.threshold_ms),
                short_ms: o.short_ms.unwrap_or(d.short_ms),
                formula: o.formula.unwrap_or(d.formula),
                target: o.target.unwrap_or(d.target),
            },
        }
    }

    fn config(&self) -> Config {
        let mut cfg = Config::default();
        cfg.general.time_zone = ZoneName("UTC".into());
        let m = &mut cfg.metrics;
        m.windows = vec![
            Millis::secs(300),
            Millis::secs(900),
            Millis::secs(3600),
            Millis::secs(86_400),
        ];
        m.interval = Millis::secs(900);
        m.reorder_grace = Millis(GRACE_MS);
        m.wrapup_timeout = Millis(WRAPUP_TIMEOUT_MS);
        m.bands = BANDS_MS.iter().map(|&b| Millis(b as i64)).collect();
        // Duplicates may come hours later: remember finished calls long enough to recognise them.
        m.late_event_window = Millis::secs(48 * 3600);
        m.max_remembered_calls = 1_000_000;
        m.max_queues = 1000;
        m.max_agents = 1000;
        m.max_channels = 1000;
        cfg.limits.max_open_segments = 1_000_000;
        cfg.defaults = QueueParams {
            threshold: Millis(self.defaults.threshold_ms),
            target: self.defaults.target,
            short_abandon: Millis(self.defaults.short_ms),
            formula: self.defaults.formula,
        };
        for (q, o) in &self.queues {
            cfg.queues.insert(
                q.clone(),
                QueueOverride {
                    threshold: o.threshold_ms.map(Millis),
                    target: o.target,
                    short_abandon: o.short_ms.map(Millis),
                    formula: o.formula,
                },
            );
        }
        cfg
    }
}

// ---------------------------------------------------------------------------------------------
// Ground truth
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    Answered,
    Abandoned,
    Overflow,
}

/// One queue segment as it really happened.
#[derive(Debug, Clone)]
struct Seg {
    call_id: String,
    queue: String,
    channel: Option<String>,
    start: i64,
    answer: Option<i64>,
    agent: Option<String>,
    /// [hold, resume) intervals; the last may have no resume and then runs to the end.
    holds: Vec<(i64, Option<i64>)>,
    end: i64,
    reason: Option<EndReason>,
    wrapup: Option<i64>,
}

impl Seg {
    fn channel_key(&self) -> &str {
        self.channel.as_deref().unwrap_or("voice")
    }

    fn leave(&self) -> i64 {
        self.answer.unwrap_or(self.end)
    }

    fn wait_ms(&self) -> u64 {
        (self.leave() - self.start) as u64
    }

    fn outcome(&self) -> Out {
        match (self.answer, self.reason) {
            (Some(_), _) => Out::Answered,
            (None, None | Some(EndReason::Abandoned) | Some(EndReason::Completed)) => {
                Out::Abandoned
            }
            (None, Some(_)) => Out::Overflow,
        }
    }

    fn hold_ms(&self) -> u64 {
        self.holds
            .iter()
            .map(|&(h, r)| (r.unwrap_or(self.end) - h) as u64)
            .sum()
    }

    fn talk_ms(&self) -> u64 {
        (self.end - self.answer.expect("answered") - self.hold_ms() as i64) as u64
    }

    fn acw_ms(&self) -> u64 {
        self.wrapup.map_or(0, |w| (w - self.end) as u64)
    }

    fn completion(&self) -> i64 {
        self.wrapup.unwrap_or(self.end)
    }

    /// The events of this segment: (kind, ts) plus labels.
    fn events(&self) -> Vec<Event> {
        let ev = |kind, ts| Event::new(kind, self.call_id.clone(), ts);
        let mut out = Vec::new();
        let mut start = ev(EventKind::Start, self.start);
        start.queue = Some(self.queue.clone());
        start.channel = self.channel.clone();
        out.push(start);
        if let Some(a) = self.answer {
            let mut answer = ev(EventKind::Answer, a);
            answer.agent = self.agent.clone();
            out.push(answer);
        }
        for &(h, r) in &self.holds {
            out.push(ev(EventKind::Hold, h));
            if let Some(r) = r {
                out.push(ev(EventKind::Resume, r));
            }
        }
        let mut end = ev(EventKind::End, self.end);
        end.reason = self.reason;
        out.push(end);
        if let Some(w) = self.wrapup {
            out.push(ev(EventKind::Wrapup, w));
        }
        out
    }
}

/// Event indices of one segment.
#[derive(Debug, Clone, Default)]
struct SegEvents {
    start: usize,
    answer: Option<usize>,
    end: usize,
    wrapup: Option<usize>,
    all: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Truth {
    segs: Vec<Seg>,
    seg_ev: Vec<SegEvents>,
    /// Segment indices of each call, in order.
    call_segs: Vec<Vec<usize>>,
    events: Vec<Event>,
}

impl Truth {
    fn new(calls: Vec<Vec<Seg>>) -> Truth {
        let mut t = Truth {
            segs: Vec::new(),
            seg_ev: Vec::new(),
            call_segs: Vec::new(),
            events: Vec::new(),
        };
        for call in calls {
            let mut ids = Vec::new();
            for seg in call {
                let mut se = SegEvents::default();
                for e in seg.events() {
                    let i = t.events.len();
                    match e.kind {
                        EventKind::Start => se.start = i,
                        EventKind::Answer => se.answer = Some(i),
                        EventKind::End => se.end = i,
                        EventKind::Wrapup => se.wrapup = Some(i),
                        EventKind::Hold | EventKind::Resume => {}
                    }
                    se.all.push(i);
                    t.events.push(e);
                }
                ids.push(t.segs.len());
                t.segs.push(seg);
                t.seg_ev.push(se);
            }
            t.call_segs.push(ids);
        }
        t
    }
}

#[derive(Debug, Clone, Copy)]
struct Delivery {
    rx: i64,
    ev: usize,
}

// ---------------------------------------------------------------------------------------------
// The model: brute-force recomputation from ground truth
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq)]
struct ORow {
    offered: u64,
    answered: u64,
    answered_within: u64,
    abandoned: u64,
    abandoned_within: u64,
    short_abandoned: u64,
    overflow: u64,
    handled: u64,
    wait_sum_ms: u64,
    wait_max_ms: u64,
    abandon_wait_sum_ms: u64,
    talk_sum_ms: u64,
    hold_sum_ms: u64,
    acw_sum_ms: u64,
    bands: [u64; 5],
    waits: Vec<u64>,
    handles: Vec<u64>,
    waiting_now: u64,
    longest_wait_now_ms: Option<u64>,
    talking_now: u64,
    in_acw_now: u64,
}

impl ORow {
    fn add_queue(&mut self, s: &Seg, p: &Params) {
        let wait = s.wait_ms();
        let within = u64::from(wait <= p.threshold_ms as u64);
        self.offered += 1;
        self.wait_max_ms = self.wait_max_ms.max(wait);
        self.waits.push(wait);
        match s.outcome() {
            Out::Answered => {
                self.answered += 1;
                self.answered_within += within;
                self.wait_sum_ms += wait;
                for (i, b) in BANDS_MS.iter().enumerate() {
                    self.bands[i] += u64::from(wait <= *b);
                }
            }
            Out::Abandoned => {
                self.abandoned += 1;
                self.abandoned_within += within;
                self.short_abandoned += u64::from(wait < p.short_ms as u64);
                self.abandon_wait_sum_ms += wait;
            }
            Out::Overflow => self.overflow += 1,
        }
    }

    fn add_handle(&mut self, s: &Seg) {
        let (talk, hold, acw) = (s.talk_ms(), s.hold_ms(), s.acw_ms());
        self.handled += 1;
        self.talk_sum_ms += talk;
        self.hold_sum_ms += hold;
        self.acw_sum_ms += acw;
        self.handles.push(talk + hold + acw);
    }

    fn service_level(&self, f: Formula) -> Option<f64> {
        let a = self.answered as i64;
        let at = self.answered_within as i64;
        let ab = self.abandoned as i64;
        let abt = self.abandoned_within as i64;
        let s = self.short_abandoned as i64;
        let fl = self.overflow as i64;
        let q = self.offered as i64;
        let (num, den) = match f {
            Formula::Answered => (at, a),
            Formula::Offered => (at, a + ab - s),
            Formula::OfferedWithOverflow => (at, a + ab - s + fl),
            Formula::AbandonNegative => (at, q),
            Formula::AbandonPositive => (at + abt, q),
            Formula::AbandonIgnored => (at, q - abt),
            Formula::AsteriskSl2 => (at + abt, a + ab),
        };
        div(num as f64, den as f64)
    }
}

fn div(num: f64, den: f64) -> Option<f64> {
    if den == 0.0 {
        None
    } else {
        Some(num / den)
    }
}

fn floor_to(t: i64, unit: i64) -> i64 {
    t - t.rem_euclid(unit)
}

/// Whether attribution time `ts` falls in `window` at `now` (UTC, 1-min and 15-min buckets).
fn in_window(window: &str, now: i64, ts: i64) -> bool {
    let (first, last, bucket) = match window {
        "today" => (
            floor_to(now, DAY),
            floor_to(now, INTERVAL),
            floor_to(ts, INTERVAL),
        ),
        "24h" => {
            let last = floor_to(now, INTERVAL);
            (last + INTERVAL - DAY, last, floor_to(ts, INTERVAL))
        }
        w => {
            let len = match w {
                "5m" => 5 * MINUTE,
                "15m" => 15 * MINUTE,
                "1h" => 60 * MINUTE,
                other => panic!("unknown window {other}"),
            };
            let last = floor_to(now, MINUTE);
            (last + MINUTE - len, last, floor_to(ts, MINUTE))
        }
    };
    first <= bucket && bucket <= last
}

type Key = (DimKind, String);

struct Oracle {
    rows: BTreeMap<Key, ORow>,
    seen: BTreeSet<Key>,
}

/// Every row of every dimension for `window` at `now`, given the first receive time of each event.
fn oracle(
    truth: &Truth,
    model: &Model,
    first_rx: &[Option<i64>],
    now: i64,
    window: &str,
) -> Oracle {
    let mut o = Oracle {
        rows: BTreeMap::new(),
        seen: BTreeSet::new(),
    };
    let dl = |e: usize| first_rx[e].is_some();
    for (seg, ev) in truth.segs.iter().zip(&truth.seg_ev) {
        if !dl(ev.start) {
            continue;
        }
        let answer_in = ev.answer.is_some_and(dl);
        let mut keys: Vec<Key> = vec![
            (DimKind::All, "all".to_string()),
            (DimKind::Queue, seg.queue.clone()),
            (DimKind::Channel, seg.channel_key().to_string()),
        ];
        if answer_in {
            if let Some(a) = &seg.agent {
                keys.push((DimKind::Agent, a.clone()));
            }
        }
        o.seen.extend(keys.iter().cloned());
        let p = model.params(&seg.queue);
        // Queue part: counted where the segment left the queue.
        if dl(ev.answer.unwrap_or(ev.end)) && in_window(window, now, seg.leave()) {
            for k in &keys {
                o.rows.entry(k.clone()).or_default().add_queue(seg, &p);
            }
        }
        // Handle part: counted at completion.
        let end_rx = first_rx[ev.end];
        if seg.answer.is_some() {
            let complete = match ev.wrapup {
                Some(_) => ev.all.iter().all(|&e| dl(e)),
                None => answer_in && end_rx.is_some_and(|rx| now >= handle_due(seg, rx)),
            };
            if complete && in_window(window, now, seg.completion()) {
                for k in &keys {
                    o.rows.entry(k.clone()).or_default().add_handle(seg);
                }
            }
        }
        // Real time.
        for k in &keys {
            let r = o.rows.entry(k.clone()).or_default();
            match (answer_in, end_rx) {
                (false, None) => {
                    let w = (now - seg.start) as u64;
                    r.waiting_now += 1;
                    r.longest_wait_now_ms = Some(r.longest_wait_now_ms.map_or(w, |m| m.max(w)));
                }
                (true, None) => r.talking_now += 1,
                (true, Some(rx)) if !ev.wrapup.is_some_and(dl) && now < handle_due(seg, rx) => {
                    r.in_acw_now += 1
                }
                _ => {}
            }
        }
    }
    o
}

/// When a segment without wrap-up completes: its timeout runs in the source's clock, from its end,
/// but never before the grace since the end arrived.
fn handle_due(seg: &Seg, end_rx: i64) -> i64 {
    (seg.end + WRAPUP_TIMEOUT_MS).max(end_rx + GRACE_MS)
}

/// True when the events received so far are transiently misleading (see the module docs).
fn ambiguous(truth: &Truth, first_rx: &[Option<i64>]) -> bool {
    let dl = |e: usize| first_rx[e].is_some();
    truth.call_segs.iter().any(|segs| {
        let any_start = segs.iter().any(|&s| dl(truth.seg_ev[s].start));
        let misplaced_transfer_end = segs.windows(2).any(|w| {
            let (prev, next) = (&truth.seg_ev[w[0]], &truth.seg_ev[w[1]]);
            dl(prev.start)
                && !dl(prev.end)
                && dl(next.start)
                && dl(next.end)
                && truth.segs[w[1]].end == truth.segs[w[1]].start
        });
        misplaced_transfer_end
            || segs.iter().any(|&s| {
                let ev = &truth.seg_ev[s];
                let started = dl(ev.start);
                (segs.len() > 1 && !started && any_start && ev.all.iter().any(|&e| dl(e)))
                    || (started && ev.answer.is_some_and(|a| !dl(a)) && dl(ev.end))
                    || (ev.wrapup.is_some_and(dl) && !ev.all.iter().all(|&e| dl(e)))
            })
    })
}

// ---------------------------------------------------------------------------------------------
// Comparison
// ---------------------------------------------------------------------------------------------

fn close(got: Option<f64>, want: Option<f64>) -> bool {
    match (got, want) {
        (None, None) => true,
        (Some(g), Some(w)) => (g - w).abs() <= 1e-9 * g.abs().max(w.abs()),
        _ => false,
    }
}

/// The exact quantile is sorted[⌊q·(n−1)⌋]; the engine's must be within 1 % of it.
fn quantile_ok(got: Option<f64>, values: &[u64], q: f64) -> Result<(), String> {
    if values.is_empty() {
        return match got {
            None => Ok(()),
            Some(g) => Err(format!("engine {g}, model None (no values)")),
        };
    }
    let mut s = values.to_vec();
    s.sort_unstable();
    let exact = s[(q * (s.len() - 1) as f64).floor() as usize] as f64;
    match got {
        Some(g) if (g - exact).abs() <= 0.01 * exact => Ok(()),
        _ => Err(format!("engine {got:?}, exact {exact} (values {s:?})")),
    }
}

fn compare_row(row: &MetricsRow, o: &ORow, p: &Params, diffs: &mut Vec<String>) {
    let c = &row.counts;
    let counters = [
        ("offered", c.offered, o.offered),
        ("answered", c.answered, o.answered),
        ("answered_within", c.answered_within, o.answered_within),
        ("abandoned", c.abandoned, o.abandoned),
        ("abandoned_within", c.abandoned_within, o.abandoned_within),
        ("short_abandoned", c.short_abandoned, o.short_abandoned),
        ("overflow", c.overflow, o.overflow),
        ("handled", c.handled, o.handled),
        ("wait_sum_ms", c.wait_sum_ms, o.wait_sum_ms),
        ("wait_max_ms", c.wait_max_ms, o.wait_max_ms),
        (
            "abandon_wait_sum_ms",
            c.abandon_wait_sum_ms,
            o.abandon_wait_sum_ms,
        ),
        ("talk_sum_ms", c.talk_sum_ms, o.talk_sum_ms),
        ("hold_sum_ms", c.hold_sum_ms, o.hold_sum_ms),
        ("acw_sum_ms", c.acw_sum_ms, o.acw_sum_ms),
        ("wait_hist.count", c.wait_hist.count(), o.waits.len() as u64),
        (
            "handle_hist.count",
            c.handle_hist.count(),
            o.handles.len() as u64,
        ),
        ("waiting_now", row.realtime.waiting_now, o.waiting_now),
        ("talking_now", row.realtime.talking_now, o.talking_now),
        ("in_acw_now", row.realtime.in_acw_now, o.in_acw_now),
    ];
    for (name, got, want) in counters {
        if got != want {
            diffs.push(format!("{name}: engine {got}, model {want}"));
        }
    }
    if row.realtime.longest_wait_now_ms != o.longest_wait_now_ms {
        diffs.push(format!(
            "longest_wait_now_ms: engine {:?}, model {:?}",
            row.realtime.longest_wait_now_ms, o.longest_wait_now_ms
        ));
    }
    for (i, b) in BANDS_MS.iter().enumerate() {
        let got = c.bands.get(b).copied().unwrap_or(0);
        if got != o.bands[i] {
            diffs.push(format!("bands[{b}]: engine {got}, model {}", o.bands[i]));
        }
    }
    if let Some(extra) = c.bands.keys().find(|b| !BANDS_MS.contains(b)) {
        diffs.push(format!("bands: unexpected threshold {extra}"));
    }

    let handled = o.handled as f64;
    let f = &row.figures;
    let figures = [
        (
            "asa_ms",
            f.asa_ms,
            div(o.wait_sum_ms as f64, o.answered as f64),
        ),
        (
            "avg_abandon_ms",
            f.avg_abandon_ms,
            div(o.abandon_wait_sum_ms as f64, o.abandoned as f64),
        ),
        (
            "aht_ms",
            f.aht_ms,
            div(
                (o.talk_sum_ms + o.hold_sum_ms + o.acw_sum_ms) as f64,
                handled,
            ),
        ),
        (
            "avg_talk_ms",
            f.avg_talk_ms,
            div(o.talk_sum_ms as f64, handled),
        ),
        (
            "avg_hold_ms",
            f.avg_hold_ms,
            div(o.hold_sum_ms as f64, handled),
        ),
        (
            "avg_acw_ms",
            f.avg_acw_ms,
            div(o.acw_sum_ms as f64, handled),
        ),
        (
            "abandon_rate",
            f.abandon_rate,
            div(
                (o.abandoned - o.short_abandoned) as f64,
                (o.offered - o.short_abandoned) as f64,
            ),
        ),
        ("service_level", f.service_level, o.service_level(p.formula)),
    ];
    for (name, got, want) in figures {
        if !close(got, want) {
            diffs.push(format!("{name}: engine {got:?}, model {want:?}"));
        }
    }
    let names: BTreeSet<&str> = f.service_levels.keys().map(String::as_str).collect();
    let want_names: BTreeSet<&str> = FORMULAS.iter().map(|(_, n)| *n).collect();
    if names != want_names {
        diffs.push(format!(
            "service_levels names: engine {names:?}, want {want_names:?}"
        ));
    }
    for (formula, name) in FORMULAS {
        let got = f.service_levels.get(name).copied().flatten();
        let want = o.service_level(formula);
        if !close(got, want) {
            diffs.push(format!(
                "service_levels.{name}: engine {got:?}, model {want:?}"
            ));
        }
    }
    let quantiles = [
        ("wait_p50_ms", f.wait_p50_ms, &o.waits, QUANTILES[0]),
        ("wait_p90_ms", f.wait_p90_ms, &o.waits, QUANTILES[1]),
        ("wait_p95_ms", f.wait_p95_ms, &o.waits, QUANTILES[2]),
        ("wait_p99_ms", f.wait_p99_ms, &o.waits, QUANTILES[3]),
        ("handle_p50_ms", f.handle_p50_ms, &o.handles, QUANTILES[0]),
        ("handle_p90_ms", f.handle_p90_ms, &o.handles, QUANTILES[1]),
        ("handle_p95_ms", f.handle_p95_ms, &o.handles, QUANTILES[2]),
        ("handle_p99_ms", f.handle_p99_ms, &o.handles, QUANTILES[3]),
    ];
    for (name, got, values, q) in quantiles {
        if let Err(e) = quantile_ok(got, values, q) {
            diffs.push(format!("{name}: {e}"));
        }
    }

    let rp = &row.params;
    if (rp.threshold_ms, rp.short_abandon_ms, rp.formula) != (p.threshold_ms, p.short_ms, p.formula)
        || rp.target != p.target
    {
        diffs.push(format!("params: engine {rp:?}, model {p:?}"));
    }
}

/// Compares one dimension's rows with the model; returns the differences.
fn compare_dim(
    rows: &[MetricsRow],
    o: &Oracle,
    model: &Model,
    window: &str,
    dim: DimKind,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut keys = BTreeSet::new();
    for row in rows {
        if !keys.insert(row.key.clone()) {
            out.push(format!("key {:?} appears twice", row.key));
        }
        if row.window != window || row.dimension != dim {
            out.push(format!(
                "row {:?} labelled window {:?} dimension {:?}",
                row.key, row.window, row.dimension
            ));
        }
    }
    let mut expected_keys: BTreeSet<String> = o
        .seen
        .iter()
        .filter(|(d, _)| *d == dim)
        .map(|(_, k)| k.clone())
        .collect();
    match dim {
        DimKind::Queue => expected_keys.extend(model.queues.keys().cloned()),
        DimKind::All => {
            expected_keys.insert("all".into());
        }
        _ => {}
    }
    for k in expected_keys.difference(&keys) {
        out.push(format!("missing row for key {k:?}"));
    }
    let zero = ORow::default();
    for row in rows {
        let orow = o.rows.get(&(dim, row.key.clone())).unwrap_or(&zero);
        let p = if dim == DimKind::Queue {
            model.params(&row.key)
        } else {
            model.defaults
        };
        let mut diffs = Vec::new();
        compare_row(row, orow, &p, &mut diffs);
        if !diffs.is_empty() {
            out.push(format!(
                "[{window} by {dim:?} key {:?}] {}",
                row.key,
                diffs.join("; ")
            ));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Driving the engine
// ---------------------------------------------------------------------------------------------

struct Harness<'a> {
    truth: &'a Truth,
    model: &'a Model,
    cfg: Config,
    a: Engine,
    /// Restored from a checkpoint of `a`, fed the same deliveries since.
    b: Option<Engine>,
    first_rx: Vec<Option<i64>>,
    deliveries: u64,
    compared: usize,
    skipped: usize,
}

fn query(window: &str, dim: DimKind) -> MetricsQuery {
    MetricsQuery {
        window: Some(window.to_string()),
        by: dim,
        key: None,
    }
}

impl<'a> Harness<'a> {
    fn new(truth: &'a Truth, model: &'a Model) -> Self {
        let cfg = model.config();
        Harness {
            truth,
            model,
            a: Engine::new(&cfg),
            cfg,
            b: None,
            first_rx: vec![None; truth.events.len()],
            deliveries: 0,
            compared: 0,
            skipped: 0,
        }
    }

    fn deliver(&mut self, d: Delivery) -> Result<Applied, String> {
        let ev = &self.truth.events[d.ev];
        self.a
            .admit(ev, 0)
            .map_err(|e| format!("engine refused {}: {e}", show_event(ev)))?;
        let ra = self.a.apply(ev, d.rx);
        if let Some(b) = &mut self.b {
            let rb = b.apply(ev, d.rx);
            if rb != ra {
                return Err(format!(
                    "{}: engine {ra:?}, restored engine {rb:?}",
                    show_event(ev)
                ));
            }
        }
        self.deliveries += 1;
        if self.first_rx[d.ev].is_none() {
            self.first_rx[d.ev] = Some(d.rx);
            if ra != Applied::Accepted {
                return Err(format!(
                    "first delivery of {} at rx {}: {ra:?}",
                    show_event(ev),
                    d.rx
                ));
            }
        } else if !matches!(ra, Applied::Duplicate | Applied::Late) {
            return Err(format!(
                "re-delivery of {} at rx {}: {ra:?}",
                show_event(ev),
                d.rx
            ));
        }
        Ok(ra)
    }

    /// Writes a checkpoint of the engine into a real store and starts a second engine from what
    /// the store gives back; from then on both take the same deliveries and must answer alike.
    fn restart(&mut self) -> Result<(), String> {
        let cp = self.a.checkpoint();
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let store = Store::open(&dir.path().join("store"), 1 << 20, 1 << 30)
            .map_err(|e| format!("store: {e}"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(store.write_checkpoint(1, cp.slices, &cp.state))
            .map_err(|e| format!("writing the checkpoint: {e}"))?;
        let r = store.recover().map_err(|e| format!("recover: {e}"))?;
        let b = Engine::restore(&self.cfg, r.slices, r.state.as_deref())
            .map_err(|e| format!("restore: {e}"))?;
        self.b = Some(b);
        Ok(())
    }

    fn check(&mut self, now: i64) -> Result<(), String> {
        // A read-only query at `now` answers what advancing to `now` and asking does.
        let ahead: Vec<_> = WINDOWS
            .iter()
            .flat_map(|w| DIMS.iter().map(move |d| (*w, *d)))
            .map(|(w, d)| self.a.metrics_at(&query(w, d), now))
            .collect();
        self.a.advance(now);
        let after: Vec<_> = WINDOWS
            .iter()
            .flat_map(|w| DIMS.iter().map(move |d| (*w, *d)))
            .map(|(w, d)| self.a.metrics(&query(w, d)))
            .collect();
        if ahead != after {
            return Err(format!(
                "at now {now}: metrics_at(now) differs from advance(now) + metrics"
            ));
        }
        if self.a.now_ms() != now {
            return Err(format!(
                "engine time {} after advance({now})",
                self.a.now_ms()
            ));
        }
        if let Some(b) = &mut self.b {
            b.advance(now);
            // Counters must agree; the memory accounting (`state`) depends on allocations.
            let counted = |e: &Engine| EngineStats {
                state: Default::default(),
                ..e.stats()
            };
            if counted(&self.a) != counted(b) {
                return Err(format!(
                    "stats differ after restore at now {now}:\n  engine   {:?}\n  restored {:?}",
                    self.a.stats(),
                    b.stats()
                ));
            }
            for w in WINDOWS {
                for dim in DIMS {
                    let (ra, rb) = (self.a.metrics(&query(w, dim)), b.metrics(&query(w, dim)));
                    if ra != rb {
                        return Err(format!(
                            "restored engine differs at now {now}, {w} by {dim:?}:\n  engine   {ra:?}\n  restored {rb:?}"
                        ));
                    }
                }
            }
        }
        if ambiguous(self.truth, &self.first_rx) {
            self.skipped += 1;
            return Ok(());
        }
        self.compared += 1;
        let mut diffs = Vec::new();
        for w in WINDOWS {
            let o = oracle(self.truth, self.model, &self.first_rx, now, w);
            for dim in DIMS {
                let rows = self
                    .a
                    .metrics(&query(w, dim))
                    .map_err(|e| format!("query {w}: {e}"))?;
                diffs.extend(compare_dim(&rows, &o, self.model, w, dim));
                if dim == DimKind::Queue {
                    // A key filter answers exactly that queue's row.
                    for r in &rows {
                        let q = MetricsQuery {
                            key: Some(r.key.clone()),
                            ..query(w, dim)
                        };
                        if self.a.metrics(&q).as_deref() != Ok(std::slice::from_ref(r)) {
                            diffs.push(format!(
                                "{w} by queue with key {:?} is not that row alone",
                                r.key
                            ));
                        }
                    }
                }
            }
        }
        // No window named means the first configured one.
        let unnamed = MetricsQuery {
            window: None,
            by: DimKind::All,
            key: None,
        };
        if self.a.metrics(&unnamed) != self.a.metrics(&query("5m", DimKind::All)) {
            diffs.push(
                "a query without a window does not answer the first configured window (5m)".into(),
            );
        }
        if diffs.is_empty() {
            Ok(())
        } else {
            diffs.truncate(12);
            Err(format!(
                "at now {now} ({}):\n  {}",
                rel(now),
                diffs.join("\n  ")
            ))
        }
    }

    /// Final check once everything is folded, plus the engine's counters.
    fn finish(&mut self, now: i64) -> Result<(), String> {
        self.check(now)?;
        let n = self.truth.events.len() as u64;
        for (name, e) in
            std::iter::once(("engine", &self.a)).chain(self.b.iter().map(|b| ("restored", b)))
        {
            let s = e.stats();
            let problems = [
                (
                    s.accepted != n,
                    format!("accepted {} != {n} distinct events", s.accepted),
                ),
                (
                    s.accepted + s.duplicates + s.late != self.deliveries,
                    format!(
                        "accepted {} + duplicates {} + late {} != {} deliveries",
                        s.accepted, s.duplicates, s.late, self.deliveries
                    ),
                ),
                (s.rejected_open_segment_limit != 0, "rejections".into()),
                (
                    s.expired_segments + s.expired_orphan_events != 0,
                    "expiries".into(),
                ),
                (
                    s.open_segments + s.open_calls != 0,
                    format!(
                        "not everything folded: {} open segments, {} open calls",
                        s.open_segments, s.open_calls
                    ),
                ),
            ];
            for (bad, what) in problems {
                if bad {
                    return Err(format!("{name} stats: {what} ({s:?})"));
                }
            }
        }
        Ok(())
    }
}

fn rel(t: i64) -> String {
    jiff::Timestamp::from_millisecond(t).map_or_else(|_| t.to_string(), |ts| format!("{ts:.3}"))
}

fn show_event(e: &Event) -> String {
    let mut s = format!("{} {} ts={}", e.call_id, e.kind.name(), rel(e.ts_ms));
    for (k, v) in [
        ("queue", &e.queue),
        ("channel", &e.channel),
        ("agent", &e.agent),
    ] {
        if let Some(v) = v {
            s.push_str(&format!(" {k}={v}"));
        }
    }
    if let Some(r) = e.reason {
        s.push_str(&format!(" reason={}", r.name()));
    }
    s
}

fn show_run(truth: &Truth, model: &Model, deliveries: &[Delivery]) -> String {
    let mut s = format!(
        "defaults {:?}\nqueues {:?}\ndeliveries (rx: event):\n",
        model.defaults, model.queues
    );
    for d in deliveries {
        s.push_str(&format!(
            "  {}: {}\n",
            rel(d.rx),
            show_event(&truth.events[d.ev])
        ));
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Random scenarios
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum OutcomeSpec {
    Unanswered {
        reason: usize,
    },
    Answered {
        agent: Option<usize>,
        /// answer → end, holds included.
        talk_ms: i64,
        /// Hold/resume cut points in per-mille of the talk span; pairs make intervals.
        cuts: Vec<u16>,
        open_last: bool,
        reason: usize,
        acw_ms: Option<i64>,
    },
}

#[derive(Debug, Clone)]
struct SegSpec {
    queue: usize,
    channel: usize,
    wait_ms: i64,
    outcome: OutcomeSpec,
}

#[derive(Debug, Clone)]
struct CallSpec {
    offset_ppm: i64,
    first: SegSpec,
    /// Gap after the first segment's end, and the next segment (a transfer).
    next: Option<(i64, SegSpec)>,
    delays: Vec<i64>,
}

#[derive(Debug, Clone)]
struct Scenario {
    base_offset_ms: i64,
    spread_ms: i64,
    defaults: Params,
    overrides: Vec<Override>,
    calls: Vec<CallSpec>,
    /// (which event, extra delay after its first delivery).
    dups: Vec<(Index, i64)>,
    /// (after how many deliveries, where between that delivery and the next, per mille).
    moments: Vec<(Index, i64)>,
    restart: Option<Index>,
}

fn layout_seg(spec: &SegSpec, call_id: &str, start: i64) -> Seg {
    let mut seg = Seg {
        call_id: call_id.to_string(),
        queue: QUEUES[spec.queue].to_string(),
        channel: CHANNELS[spec.channel].map(str::to_string),
        start,
        answer: None,
        agent: None,
        holds: Vec::new(),
        end: start + spec.wait_ms,
        reason: None,
        wrapup: None,
    };
    match &spec.outcome {
        OutcomeSpec::Unanswered { reason } => seg.reason = REASONS[*reason],
        OutcomeSpec::Answered {
            agent,
            talk_ms,
            cuts,
            open_last,
            reason,
            acw_ms,
        } => {
            let answer = start + spec.wait_ms;
            seg.answer = Some(answer);
            seg.agent = agent.map(|a| AGENTS[a].to_string());
            seg.end = answer + talk_ms;
            seg.reason = REASONS[*reason];
            seg.wrapup = acw_ms.map(|a| seg.end + a);
            let mut ts: Vec<i64> = cuts
                .iter()
                .map(|&c| answer + talk_ms * i64::from(c) / 1000)
                .collect();
            ts.sort_unstable();
            for pair in ts.chunks(2) {
                let (h, r) = (pair[0], pair.get(1).copied());
                match seg.holds.last() {
                    Some((_, None)) => break,
                    // A hold must start strictly after the previous resume.
                    Some((_, Some(prev))) if h <= *prev => continue,
                    _ => seg.holds.push((h, r)),
                }
            }
            if *open_last {
                if let Some(last) = seg.holds.last_mut() {
                    last.1 = None;
                }
            }
        }
    }
    seg
}

/// What the protocol cannot express for a transfer from `a` to `b`; `Some(ms)` to push `b` later.
fn transfer_problem(a: &Seg, b: &Seg) -> Option<i64> {
    if b.start == a.end {
        let early = a
            .events()
            .iter()
            .any(|e| !matches!(e.kind, EventKind::End | EventKind::Wrapup) && e.ts_ms >= b.start);
        if early {
            return Some(1);
        }
    }
    if let (Some(w), Some(_)) = (a.wrapup, b.answer) {
        if b.end <= w {
            return Some(w - b.end + 1);
        }
    }
    let mut seen = BTreeSet::new();
    for e in a.events().into_iter().chain(b.events()) {
        if !seen.insert((e.kind, e.ts_ms)) {
            return Some(1);
        }
    }
    None
}

fn layout_call(spec: &CallSpec, call_id: &str, start: i64) -> Vec<Seg> {
    let first = layout_seg(&spec.first, call_id, start);
    let Some((gap, next)) = &spec.next else {
        return vec![first];
    };
    let mut gap = *gap;
    loop {
        let second = layout_seg(next, call_id, first.end + gap);
        match transfer_problem(&first, &second) {
            None => return vec![first, second],
            Some(bump) => gap += bump,
        }
    }
}

struct Built {
    model: Model,
    truth: Truth,
    deliveries: Vec<Delivery>,
    moments: Vec<(usize, i64)>,
    restart: Option<usize>,
}

fn build(s: &Scenario) -> Built {
    let mut queues = BTreeMap::new();
    for (i, o) in s.overrides.iter().enumerate() {
        queues.insert(QUEUES[i].to_string(), *o);
    }
    let model = Model {
        defaults: s.defaults,
        queues,
    };
    let base = BASE_MS + s.base_offset_ms;
    let calls: Vec<Vec<Seg>> = s
        .calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            layout_call(
                c,
                &format!("c{i}"),
                base + s.spread_ms * c.offset_ppm / 1_000_000,
            )
        })
        .collect();
    let truth = Truth::new(calls);
    // Originals: rx = ts + delay; then duplicates, later.
    let mut tagged: Vec<(i64, bool, usize)> = Vec::new();
    let mut rx_of = vec![0; truth.events.len()];
    let mut ev_idx = 0;
    for (c, segs) in s.calls.iter().zip(&truth.call_segs) {
        let n: usize = segs.iter().map(|&sg| truth.seg_ev[sg].all.len()).sum();
        for j in 0..n {
            let rx = truth.events[ev_idx].ts_ms + c.delays[j % c.delays.len()];
            rx_of[ev_idx] = rx;
            tagged.push((rx, false, ev_idx));
            ev_idx += 1;
        }
    }
    for (which, extra) in &s.dups {
        let e = which.index(truth.events.len());
        tagged.push((rx_of[e] + extra, true, e));
    }
    tagged.sort();
    let deliveries: Vec<Delivery> = tagged
        .iter()
        .map(|&(rx, _, ev)| Delivery { rx, ev })
        .collect();
    let n = deliveries.len();
    let mut moments: Vec<(usize, i64)> = s
        .moments
        .iter()
        .map(|(at, frac)| {
            let k = at.index(n) + 1;
            let from = deliveries[k - 1].rx;
            let now = if k < n {
                from + (deliveries[k].rx - from) * frac / 1000
            } else {
                from + frac * 150
            };
            (k, now)
        })
        .collect();
    moments.sort_unstable();
    moments.dedup();
    Built {
        model,
        truth,
        deliveries,
        moments,
        restart: s.restart.as_ref().map(|r| r.index(n)),
    }
}

/// Runs one scenario; returns (moments compared with the model, moments skipped).
fn run(b: &Built) -> Result<(usize, usize), String> {
    let mut h = Harness::new(&b.truth, &b.model);
    let mut mi = 0;
    for (i, d) in b.deliveries.iter().enumerate() {
        if b.restart == Some(i) {
            h.restart()?;
        }
        h.deliver(*d)?;
        while mi < b.moments.len() && b.moments[mi].0 == i + 1 {
            h.check(b.moments[mi].1)?;
            mi += 1;
        }
    }
    let last = b.deliveries.last().map_or(BASE_MS, |d| d.rx);
    h.finish(last + 200_000)?;
    Ok((h.compared, h.skipped))
}

fn params_strategy() -> impl Strategy<Value = Params> {
    (5i64..=60, 0i64..=10, 0usize..7, 0u32..=100).prop_map(|(t, s, f, target)| Params {
        threshold_ms: t * 1000,
        short_ms: s * 1000,
        formula: FORMULAS[f].0,
        target: f64::from(target) / 100.0,
    })
}

fn override_strategy() -> impl Strategy<Value = Override> {
    (
        prop::option::of(5i64..=60),
        prop::option::of(0i64..=10),
        prop::option::of(0usize..7),
        prop::option::of(0u32..=100),
    )
        .prop_map(|(t, s, f, target)| Override {
            threshold_ms: t.map(|t| t * 1000),
            short_ms: s.map(|s| s * 1000),
            formula: f.map(|f| FORMULAS[f].0),
            target: target.map(|t| f64::from(t) / 100.0),
        })
}

/// Whole seconds often, so waits land exactly on thresholds and bands.
fn duration_ms(max_s: i64) -> impl Strategy<Value = i64> {
    prop_oneof![
        1 => Just(0i64),
        3 => (0..=max_s).prop_map(|s| s * 1000),
        3 => 0..=max_s * 1000,
    ]
}

fn outcome_strategy() -> impl Strategy<Value = OutcomeSpec> {
    let acw = prop_oneof![
        2 => Just(None),
        3 => duration_ms(100).prop_map(Some),
    ];
    prop_oneof![
        2 => (0usize..REASONS.len()).prop_map(|reason| OutcomeSpec::Unanswered { reason }),
        3 => (
            prop::option::of(0usize..AGENTS.len()),
            duration_ms(600),
            prop::collection::vec(0u16..=1000, 0..=4),
            any::<bool>(),
            0usize..REASONS.len(),
            acw,
        )
            .prop_map(|(agent, talk_ms, cuts, open_last, reason, acw_ms)| OutcomeSpec::Answered {
                agent,
                talk_ms,
                cuts,
                open_last,
                reason,
                acw_ms,
            }),
    ]
}

fn seg_strategy() -> impl Strategy<Value = SegSpec> {
    (
        0usize..QUEUES.len(),
        0usize..CHANNELS.len(),
        duration_ms(180),
        outcome_strategy(),
    )
        .prop_map(|(queue, channel, wait_ms, outcome)| SegSpec {
            queue,
            channel,
            wait_ms,
            outcome,
        })
}

fn call_strategy() -> impl Strategy<Value = CallSpec> {
    let gap = prop_oneof![2 => Just(0i64), 1 => 0i64..=2_000, 2 => 0i64..=120_000];
    let delay = prop_oneof![1 => Just(0i64), 1 => Just(MAX_DELAY_MS), 4 => 0..=MAX_DELAY_MS];
    (
        0i64..=1_000_000,
        seg_strategy(),
        prop::option::weighted(0.35, (gap, seg_strategy())),
        prop::collection::vec(delay, 16),
    )
        .prop_map(|(offset_ppm, first, next, delays)| CallSpec {
            offset_ppm,
            first,
            next,
            delays,
        })
}

fn scenario_strategy() -> impl Strategy<Value = Scenario> {
    let spread = prop_oneof![Just(120_000i64), Just(1_200_000i64), Just(10_800_000i64)];
    let extra = prop_oneof![0i64..=3_000, 0i64..=600_000, 0i64..=14_400_000];
    (
        0i64..=7_200_000,
        spread,
        params_strategy(),
        prop::collection::vec(override_strategy(), 3),
        prop::collection::vec(call_strategy(), 1..=24),
        prop::collection::vec((any::<Index>(), extra), 0..=12),
        prop::collection::vec((any::<Index>(), 0i64..=1000), 1..=8),
        prop::option::of(any::<Index>()),
    )
        .prop_map(
            |(base_offset_ms, spread_ms, defaults, overrides, calls, dups, moments, restart)| {
                Scenario {
                    base_offset_ms,
                    spread_ms,
                    defaults,
                    overrides,
                    calls,
                    dups,
                    moments,
                    restart,
                }
            },
        )
}

#[test]
fn engine_matches_brute_force_model() {
    let mut runner = TestRunner::new(ProptestConfig {
        // PROPTEST_CASES overrides, for longer runs.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let totals = std::cell::Cell::new((0usize, 0usize));
    let result = runner.run(&scenario_strategy(), |s| {
        let built = build(&s);
        let (compared, skipped) = run(&built).map_err(|e| {
            TestCaseError::fail(format!(
                "{e}\n{}",
                show_run(&built.truth, &built.model, &built.deliveries)
            ))
        })?;
        let (c, k) = totals.get();
        totals.set((c + compared, k + skipped));
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (compared, skipped) = totals.get();
    eprintln!(
        "moments compared with the model: {compared}, skipped as transiently misleading: {skipped}"
    );
    // Skipping must stay the exception, or the test would prove little.
    assert!(
        compared >= 10 * skipped.max(1),
        "compared {compared}, skipped {skipped}"
    );
}

// ---------------------------------------------------------------------------------------------
// Hand-built scenarios with hand-computed numbers
// ---------------------------------------------------------------------------------------------

/// 2026-11-22T10:00:00Z.
const TEN_AM: i64 = 1_795_341_600_000;

fn secs(base: i64, s: i64) -> i64 {
    base + s * 1000
}

#[allow(clippy::too_many_arguments)]
fn seg(
    call: &str,
    queue: &str,
    channel: Option<&str>,
    start: i64,
    answer: Option<(i64, Option<&str>)>,
    holds: &[(i64, Option<i64>)],
    end: (i64, Option<EndReason>),
    wrapup: Option<i64>,
) -> Seg {
    Seg {
        call_id: call.into(),
        queue: queue.into(),
        channel: channel.map(str::to_string),
        start,
        answer: answer.map(|a| a.0),
        agent: answer.and_then(|a| a.1.map(str::to_string)),
        holds: holds.to_vec(),
        end: end.0,
        reason: end.1,
        wrapup,
    }
}

/// Every event delivered at its own timestamp, in timestamp order (ties in the order given).
fn in_ts_order(truth: &Truth) -> Vec<Delivery> {
    let mut d: Vec<Delivery> = truth
        .events
        .iter()
        .enumerate()
        .map(|(ev, e)| Delivery { rx: e.ts_ms, ev })
        .collect();
    d.sort_by_key(|d| (d.rx, d.ev));
    d
}

fn row(e: &Engine, window: &str, dim: DimKind, key: &str) -> MetricsRow {
    e.metrics(&query(window, dim))
        .unwrap()
        .into_iter()
        .find(|r| r.key == key)
        .unwrap_or_else(|| panic!("no row {key} in {window} by {dim:?}"))
}

/// Counters in a fixed order: offered, answered, answered_within, abandoned, abandoned_within,
/// short_abandoned, overflow, handled.
fn counts(r: &MetricsRow) -> [u64; 8] {
    let c = &r.counts;
    [
        c.offered,
        c.answered,
        c.answered_within,
        c.abandoned,
        c.abandoned_within,
        c.short_abandoned,
        c.overflow,
        c.handled,
    ]
}

fn realtime(r: &MetricsRow) -> (u64, Option<u64>, u64, u64) {
    let t = &r.realtime;
    (
        t.waiting_now,
        t.longest_wait_now_ms,
        t.talking_now,
        t.in_acw_now,
    )
}

/// Queue `sales`: T = 20 s, S = 5 s, formula abandon_positive. `support` is not configured and
/// takes the defaults: T = 20 s, S = 5 s, formula answered (also the formula of non-queue rows).
fn hand_model() -> Model {
    let mut queues = BTreeMap::new();
    queues.insert(
        "sales".to_string(),
        Override {
            formula: Some(Formula::AbandonPositive),
            target: Some(0.9),
            ..Override::default()
        },
    );
    Model {
        defaults: Params {
            threshold_ms: 20_000,
            short_ms: 5_000,
            formula: Formula::Answered,
            target: 0.8,
        },
        queues,
    }
}

/// Seconds after 10:00:00:
/// - c1 sales: start 0, answer 15 (alice), hold 60–90, end 200, wrap-up 230:
///   wait 15 (within), talk 155, hold 30, ACW 30, handle 215, counted at 230.
/// - c2 sales: start 10, answer 40 (bob), end 100, no wrap-up: wait 30, talk 60, counted at 100
///   once 120 s passed after its end arrived (at 220).
/// - c3 sales: start 20, end 23 (no reason): abandoned, wait 3 (short, within).
/// - c4 sales: start 30, end 60 abandoned: wait 30.
/// - c5 sales (chat): start 40, end 70 transferred: overflow, wait 30; then support (chat): start 70,
///   answer 75 (alice), end 135, wrap-up 145: wait 5, talk 60, ACW 10.
fn hand_truth() -> Truth {
    let t = |s| secs(TEN_AM, s);
    use EndReason::*;
    Truth::new(vec![
        vec![seg(
            "c1",
            "sales",
            None,
            t(0),
            Some((t(15), Some("alice"))),
            &[(t(60), Some(t(90)))],
            (t(200), None),
            Some(t(230)),
        )],
        vec![seg(
            "c2",
            "sales",
            None,
            t(10),
            Some((t(40), Some("bob"))),
            &[],
            (t(100), Some(Completed)),
            None,
        )],
        vec![seg(
            "c3",
            "sales",
            None,
            t(20),
            None,
            &[],
            (t(23), None),
            None,
        )],
        vec![seg(
            "c4",
            "sales",
            None,
            t(30),
            None,
            &[],
            (t(60), Some(Abandoned)),
            None,
        )],
        vec![
            seg(
                "c5",
                "sales",
                Some("chat"),
                t(40),
                None,
                &[],
                (t(70), Some(Transferred)),
                None,
            ),
            seg(
                "c5",
                "support",
                Some("chat"),
                t(70),
                Some((t(75), Some("alice"))),
                &[],
                (t(135), Some(Completed)),
                Some(t(145)),
            ),
        ],
    ])
}

/// Feeds deliveries up to (and including) receive time `until`, then advances to `until`.
fn feed_until(h: &mut Harness, deliveries: &[Delivery], next: &mut usize, until: i64) {
    while *next < deliveries.len() && deliveries[*next].rx <= until {
        h.deliver(deliveries[*next]).unwrap();
        *next += 1;
    }
    h.check(until).unwrap();
}

#[test]
fn one_call_of_each_outcome_by_hand() {
    let model = hand_model();
    let truth = hand_truth();
    let mut deliveries = in_ts_order(&truth);
    // c1's hold again while c1 is still open (a duplicate), and c3's start again long after c3
    // was folded in and forgotten (late).
    let hold = truth
        .events
        .iter()
        .position(|e| e.kind == EventKind::Hold)
        .unwrap();
    let c3_start = truth.events.iter().position(|e| e.call_id == "c3").unwrap();
    deliveries.push(Delivery {
        rx: secs(TEN_AM, 100),
        ev: hold,
    });
    deliveries.push(Delivery {
        rx: secs(TEN_AM, 290),
        ev: c3_start,
    });
    deliveries.sort_by_key(|d| d.rx);
    let t = |s| secs(TEN_AM, s);
    let mut h = Harness::new(&truth, &model);
    let mut next = 0;

    feed_until(&mut h, &deliveries, &mut next, t(45));
    let sales = row(&h.a, "15m", DimKind::Queue, "sales");
    // Waiting: c4 (since 30 s) and c5 (since 40 s); talking: c1 and c2.
    assert_eq!(realtime(&sales), (2, Some(15_000), 2, 0));
    // c1 and c2 answered, c3 abandoned (short).
    assert_eq!(counts(&sales), [3, 2, 1, 1, 1, 1, 0, 0]);
    assert_eq!(
        realtime(&row(&h.a, "15m", DimKind::Agent, "alice")),
        (0, None, 1, 0)
    );

    feed_until(&mut h, &deliveries, &mut next, t(150));
    let sales = row(&h.a, "15m", DimKind::Queue, "sales");
    assert_eq!(realtime(&sales), (0, None, 1, 1)); // c1 talking, c2 in ACW
    assert_eq!(sales.counts.handled, 0);
    let support = row(&h.a, "15m", DimKind::Queue, "support");
    assert_eq!(counts(&support), [1, 1, 1, 0, 0, 0, 0, 1]);
    assert_eq!(
        (support.counts.talk_sum_ms, support.counts.acw_sum_ms),
        (60_000, 10_000)
    );
    assert_eq!(
        realtime(&row(&h.a, "15m", DimKind::Agent, "bob")),
        (0, None, 0, 1)
    );

    feed_until(&mut h, &deliveries, &mut next, t(219));
    let sales = row(&h.a, "15m", DimKind::Queue, "sales");
    assert_eq!(realtime(&sales), (0, None, 0, 2)); // c1 ended at 200 without wrap-up yet; c2
    assert_eq!(sales.counts.handled, 0);
    feed_until(&mut h, &deliveries, &mut next, t(220));
    let sales = row(&h.a, "15m", DimKind::Queue, "sales");
    assert_eq!(realtime(&sales), (0, None, 0, 1)); // c2 timed out of ACW: handled
    assert_eq!(sales.counts.handled, 1);

    feed_until(&mut h, &deliveries, &mut next, t(300));
    assert_eq!(next, deliveries.len());
    let sales = row(&h.a, "15m", DimKind::Queue, "sales");
    // Q = 5: A = 2 (waits 15, 30), Ab = 2 (3 short, 30), F = 1 (30).
    assert_eq!(counts(&sales), [5, 2, 1, 2, 1, 1, 1, 2]);
    let c = &sales.counts;
    assert_eq!(
        (c.wait_sum_ms, c.abandon_wait_sum_ms, c.wait_max_ms),
        (45_000, 33_000, 30_000)
    );
    assert_eq!(
        (c.talk_sum_ms, c.hold_sum_ms, c.acw_sum_ms),
        (215_000, 30_000, 30_000)
    );
    let bands: Vec<u64> = BANDS_MS.iter().map(|b| c.bands[b]).collect();
    assert_eq!(bands, [0, 1, 2, 2, 2]);
    let f = &sales.figures;
    assert_eq!(f.asa_ms, Some(22_500.0));
    assert_eq!(f.avg_abandon_ms, Some(16_500.0));
    assert_eq!(f.aht_ms, Some(137_500.0));
    assert_eq!(f.abandon_rate, Some(0.25)); // (2 − 1) / (5 − 1)
    assert_eq!(f.service_level, Some(0.4)); // abandon_positive: (1 + 1) / 5
    let sl = |name: &str| f.service_levels[name].unwrap();
    assert_eq!(sl("answered"), 0.5);
    assert_eq!(sl("offered"), 1.0 / 3.0);
    assert_eq!(sl("offered_with_overflow"), 0.25);
    assert_eq!(sl("abandon_negative"), 0.2);
    assert_eq!(sl("abandon_positive"), 0.4);
    assert_eq!(sl("abandon_ignored"), 0.25);
    assert_eq!(sl("asterisk_sl2"), 0.5);
    // Waits 3, 15, 30, 30, 30 s; handles 60, 215 s.
    assert!((f.wait_p50_ms.unwrap() - 30_000.0).abs() <= 300.0);
    assert!((f.wait_p99_ms.unwrap() - 30_000.0).abs() <= 300.0);
    assert!((f.handle_p50_ms.unwrap() - 60_000.0).abs() <= 600.0);
    assert!((f.handle_p99_ms.unwrap() - 60_000.0).abs() <= 600.0);
    assert_eq!(sales.params.formula, Formula::AbandonPositive);
    assert_eq!(sales.params.target, 0.9);

    // 5m at 10:05:00 covers the minutes 10:01..10:05: c4 (left at 60 s), c5 (70 s), and the
    // handling of c1 (230 s) and c2 (100 s); c1, c2 and c3 left the queue in minute 10:00.
    let sales5 = row(&h.a, "5m", DimKind::Queue, "sales");
    assert_eq!(counts(&sales5), [2, 0, 0, 1, 0, 0, 1, 2]);
    assert_eq!(sales5.figures.service_level, Some(0.0));
    assert_eq!(sales5.figures.asa_ms, None);

    let all = row(&h.a, "15m", DimKind::All, "all");
    assert_eq!(counts(&all), [6, 3, 2, 2, 1, 1, 1, 3]);
    assert_eq!(all.figures.service_level, Some(2.0 / 3.0)); // defaults: answered
    let c = &all.counts;
    assert_eq!(
        (c.talk_sum_ms, c.hold_sum_ms, c.acw_sum_ms),
        (275_000, 30_000, 40_000)
    );
    let alice = row(&h.a, "15m", DimKind::Agent, "alice");
    assert_eq!(counts(&alice), [2, 2, 2, 0, 0, 0, 0, 2]);
    assert_eq!(
        (alice.counts.talk_sum_ms, alice.counts.acw_sum_ms),
        (215_000, 40_000)
    );
    let bob = row(&h.a, "15m", DimKind::Agent, "bob");
    assert_eq!(counts(&bob), [1, 1, 0, 0, 0, 0, 0, 1]);
    assert_eq!(
        counts(&row(&h.a, "15m", DimKind::Channel, "chat")),
        [2, 1, 1, 0, 0, 0, 1, 1]
    );
    assert_eq!(
        counts(&row(&h.a, "15m", DimKind::Channel, "voice")),
        [4, 2, 1, 2, 1, 1, 0, 2]
    );

    let s = h.a.stats();
    assert_eq!((s.accepted, s.duplicates, s.late), (19, 1, 1));
    h.finish(t(500)).unwrap();
}

#[test]
fn hand_scenario_survives_a_restart_at_every_delivery() {
    let model = hand_model();
    let truth = hand_truth();
    let deliveries = in_ts_order(&truth);
    for restart in 0..deliveries.len() {
        let built = Built {
            model: model.clone(),
            truth: truth.clone(),
            deliveries: deliveries.clone(),
            moments: (1..=deliveries.len())
                .map(|k| (k, deliveries[k - 1].rx))
                .collect(),
            restart: Some(restart),
        };
        let (compared, _) =
            run(&built).unwrap_or_else(|e| panic!("restart before delivery {restart}: {e}"));
        assert_eq!(compared, deliveries.len() + 1);
    }
}

#[test]
fn windows_and_today_across_midnight_by_hand() {
    // 2026-11-23T00:00:00Z.
    let midnight = TEN_AM - 10 * 3_600_000 + DAY;
    let t = |s| secs(midnight, s);
    let model = hand_model();
    let truth = Truth::new(vec![
        // Waits 60 s across midnight: it left the queue today, at 00:00:10.
        vec![seg(
            "late",
            "support",
            None,
            t(-50),
            Some((t(10), Some("carol"))),
            &[],
            (t(70), None),
            None,
        )],
        // Abandoned yesterday at 23:50:10 after 10 s.
        vec![seg(
            "early",
            "support",
            None,
            t(-600),
            None,
            &[],
            (t(-590), None),
            None,
        )],
    ]);
    let deliveries = in_ts_order(&truth);
    let mut h = Harness::new(&truth, &model);
    let mut next = 0;
    let offered = |h: &Harness, w| row(&h.a, w, DimKind::Queue, "support").counts.offered;

    feed_until(&mut h, &deliveries, &mut next, t(60));
    assert_eq!(offered(&h, "today"), 1);
    assert_eq!(offered(&h, "24h"), 2);
    assert_eq!(offered(&h, "1h"), 2);
    assert_eq!(offered(&h, "15m"), 2); // minutes 23:46..00:01
    assert_eq!(offered(&h, "5m"), 1); // minutes 23:57..00:01
    assert_eq!(
        realtime(&row(&h.a, "today", DimKind::Agent, "carol")),
        (0, None, 1, 0)
    );

    feed_until(&mut h, &deliveries, &mut next, t(70 + 119));
    let r = row(&h.a, "today", DimKind::Queue, "support");
    assert_eq!((r.counts.handled, r.realtime.in_acw_now), (0, 1));
    feed_until(&mut h, &deliveries, &mut next, t(70 + 120));
    let r = row(&h.a, "today", DimKind::Queue, "support");
    assert_eq!((r.counts.handled, r.realtime.in_acw_now), (1, 0));
    assert_eq!(r.figures.aht_ms, Some(60_000.0));

    // The answer at 00:00:10 (minute 00:00) stays in 5m until 00:04:59.999.
    h.check(t(300) - 1).unwrap();
    assert_eq!(offered(&h, "5m"), 1);
    h.check(t(300)).unwrap();
    assert_eq!(offered(&h, "5m"), 0);
    assert_eq!(offered(&h, "15m"), 1); // 23:50:10 left the 15m window at 00:05
                                       // 24h on 15-minute buckets: the 23:45 bucket stays until 23:45 the next day.
    h.check(t(DAY / 1000 - 900) - 1).unwrap();
    assert_eq!(offered(&h, "24h"), 2);
    h.check(t(DAY / 1000 - 900)).unwrap();
    assert_eq!(offered(&h, "24h"), 1);
    assert_eq!(offered(&h, "today"), 1);
    h.check(t(DAY / 1000) - 1).unwrap();
    assert_eq!((offered(&h, "today"), offered(&h, "24h")), (1, 1));
    h.finish(t(DAY / 1000)).unwrap();
    assert_eq!((offered(&h, "today"), offered(&h, "24h")), (0, 0));
}

// ---------------------------------------------------------------------------------------------
// Minimal repros of disagreements found by the property test
// ---------------------------------------------------------------------------------------------

/// Delivers `(rx, event index)` in the given order, checking each against the model, then folds all.
fn replay(truth: &Truth, model: &Model, order: &[(i64, usize)]) -> Result<(), String> {
    let mut h = Harness::new(truth, model);
    for &(rx, ev) in order {
        h.deliver(Delivery { rx, ev })?;
        h.check(rx)?;
    }
    let last = order.last().map_or(0, |o| o.0);
    h.finish(last + 200_000)
}

/// A transfer whose second segment's answer arrives before its start, while the first segment is
/// folded in between. Once found failing: the engine dropped the call with the unused answer,
/// remembered it, then refused the second segment's start as late and never counted that segment.
#[test]
fn transferred_segment_whose_start_arrives_after_its_answer_is_counted() {
    let t = |ms: i64| TEN_AM + ms;
    let model = hand_model();
    let truth = Truth::new(vec![vec![
        // q-a: start 0, overflow at 10 s.
        seg(
            "c",
            "sales",
            None,
            t(0),
            None,
            &[],
            (t(10_000), Some(EndReason::Transferred)),
            None,
        ),
        // q-b: start 11.0 s, answered 11.2 s, end 60 s.
        seg(
            "c",
            "support",
            None,
            t(11_000),
            Some((t(11_200), Some("bob"))),
            &[],
            (t(60_000), Some(EndReason::Completed)),
            None,
        ),
    ]]);
    // Events: 0 start1, 1 end1, 2 start2, 3 answer2, 4 end2. The answer overtakes the start by
    // 1.3 s (both within 1.5 s of their timestamps); the first segment folds at 12.0 s between them.
    let order = [
        (t(0), 0),
        (t(10_000), 1),
        (t(11_200), 3),
        (t(12_500), 2),
        (t(60_000), 4),
    ];
    replay(&truth, &model, &order).unwrap();
}

/// A wrap-up that arrives just before its own segment's end (same instant or ACW < 1.5 s), after the
/// call's earlier segment completed without wrap-up. Once found failing: the engine took it for the
/// earlier segment's, refused it as late, and the segment completed without its ACW, 120 s after
/// its end instead of at the wrap-up.
#[test]
fn wrapup_arriving_just_before_its_end_is_not_lost_after_a_transfer() {
    let t = |ms: i64| TEN_AM + ms;
    let model = hand_model();
    let truth = Truth::new(vec![vec![
        // sales: answered by alice at 5 s, transferred at 60 s, no wrap-up (completes at 180 s).
        seg(
            "c",
            "sales",
            None,
            t(0),
            Some((t(5_000), Some("alice"))),
            &[],
            (t(60_000), Some(EndReason::Transferred)),
            None,
        ),
        // support: answered by bob at 70 s, end 200 s, wrap-up 201 s (ACW 1 s).
        seg(
            "c",
            "support",
            None,
            t(60_000),
            Some((t(70_000), Some("bob"))),
            &[],
            (t(200_000), Some(EndReason::Completed)),
            Some(t(201_000)),
        ),
    ]]);
    // Events: 0 start1, 1 answer1, 2 end1, 3 start2, 4 answer2, 5 end2, 6 wrapup2.
    // The end is received 1.4 s late, after the wrap-up.
    let order = [
        (t(0), 0),
        (t(5_000), 1),
        (t(60_000), 2),
        (t(60_000), 3),
        (t(70_000), 4),
        (t(201_000), 6),
        (t(201_400), 5),
    ];
    replay(&truth, &model, &order).unwrap();
}

/// The everyday transfer: alice hands the caller to bob and finishes her wrap-up while bob talks.
/// Once alice's handling (with its wrap-up) is folded in, re-deriving the call must still give her
/// that wrap-up, or every later event of the call (bob's end) is refused as late (as it once was).
#[test]
fn first_agents_wrapup_during_the_transferred_conversation() {
    let t = |s: i64| secs(TEN_AM, s);
    let model = hand_model();
    let truth = Truth::new(vec![vec![
        seg(
            "c",
            "sales",
            None,
            t(0),
            Some((t(5), Some("alice"))),
            &[],
            (t(60), Some(EndReason::Transferred)),
            Some(t(90)),
        ),
        seg(
            "c",
            "support",
            None,
            t(60),
            Some((t(70), Some("bob"))),
            &[],
            (t(200), Some(EndReason::Completed)),
            None,
        ),
    ]]);
    // Every event received at its own timestamp, in order.
    let order: Vec<(i64, usize)> = in_ts_order(&truth).iter().map(|d| (d.rx, d.ev)).collect();
    replay(&truth, &model, &order).unwrap();
}

/// A wrap-up received just before its own end is held by the call's earlier segment until that end
/// arrives; if the earlier segment's wrap-up timeout passes meanwhile, its handling must still be
/// counted as soon as the timeout has passed and the wrap-up has moved on, not at the next settle
/// (it once showed up to 2 s late, the segment meanwhile still "in ACW").
#[test]
fn wrapup_timeout_of_the_first_segment_is_not_delayed_by_a_borrowed_wrapup() {
    let t = |ms: i64| TEN_AM + ms;
    let model = hand_model();
    let truth = Truth::new(vec![vec![
        // sales: alice, transferred at 60 s, no wrap-up: completes 120 s after its end arrived.
        seg(
            "c",
            "sales",
            None,
            t(0),
            Some((t(5_000), Some("alice"))),
            &[],
            (t(60_000), Some(EndReason::Transferred)),
            None,
        ),
        // support: bob, end 179.5 s, wrap-up 179.6 s.
        seg(
            "c",
            "support",
            None,
            t(60_000),
            Some((t(70_000), Some("bob"))),
            &[],
            (t(179_500), Some(EndReason::Completed)),
            Some(t(179_600)),
        ),
    ]]);
    // Events: 0 start1, 1 answer1, 2 end1, 3 start2, 4 answer2, 5 end2, 6 wrapup2.
    // bob's end is received 1.5 s late, after his wrap-up and after alice's timeout (180 s).
    let order = [
        (t(0), 0),
        (t(5_000), 1),
        (t(60_000), 2),
        (t(60_000), 3),
        (t(70_000), 4),
        (t(179_600), 6),
        (t(181_000), 5),
    ];
    replay(&truth, &model, &order).unwrap();
}
