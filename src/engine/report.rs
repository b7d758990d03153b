//! What the engine answers: metrics rows, open segments and counters, as plain serde types that the
//! control protocol carries unchanged and the CLI prints; and why a query cannot be answered.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use super::aggregate::{Agg, Figures};
use super::segment::Phase;
use super::service_levels::ServiceLevels;
use crate::units::{Formula, QueueParams};

/// Why a query cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QueryError {
    #[error("unknown window `{0}`; configured windows are {1}")]
    UnknownWindow(String, String),
    #[error("--queue filters queue rows only; it cannot be combined with --by {0}")]
    KeyNeedsQueueDimension(String),
}

/// The dimension a metrics row is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DimKind {
    All,
    Queue,
    Agent,
    Channel,
    /// A configured tag name and the value a call's `start` gave it (`history.tag_dimensions`),
    /// keyed `name=value`: kept in interval buckets only, for the history and `report`.
    Tag,
}

impl DimKind {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            DimKind::All => "all",
            DimKind::Queue => "queue",
            DimKind::Agent => "agent",
            DimKind::Channel => "channel",
            DimKind::Tag => "tag",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<DimKind> {
        [
            DimKind::All,
            DimKind::Queue,
            DimKind::Agent,
            DimKind::Channel,
            DimKind::Tag,
        ]
        .into_iter()
        .find(|d| d.name() == s)
    }
}

/// Key of rows that stand for every key past a cardinality limit.
pub const OVERFLOW_KEY: &str = "(other)";

/// A metrics question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsQuery {
    /// `today` or a configured trailing window such as `15m`; `None` = the first configured window.
    pub window: Option<String>,
    pub by: DimKind,
    /// Only this key of the dimension.
    pub key: Option<String>,
}

/// Service-level parameters a row was computed with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RowParams {
    pub threshold_ms: i64,
    pub short_abandon_ms: i64,
    pub formula: Formula,
    pub target: f64,
}

impl From<QueueParams> for RowParams {
    fn from(p: QueueParams) -> RowParams {
        RowParams {
            threshold_ms: p.threshold.0,
            short_abandon_ms: p.short_abandon.0,
            formula: p.formula,
            target: p.target,
        }
    }
}

/// Now, not windowed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Realtime {
    pub waiting_now: u64,
    pub longest_wait_now_ms: Option<u64>,
    pub talking_now: u64,
    pub in_acw_now: u64,
    /// Queue rows: the agents Erlang C says the queue needs now for its service-level target
    /// (see `staffing.rs`); `None` without traffic or AHT, and for other dimensions.
    #[serde(default)]
    pub agents_needed: Option<u32>,
}

/// One key of one dimension over one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsRow {
    pub window: String,
    pub dimension: DimKind,
    pub key: String,
    pub counts: Agg,
    pub figures: Figures,
    pub params: RowParams,
    pub realtime: Realtime,
}

impl MetricsRow {
    /// The row with the output names of docs/metrics.md: counters, sums, derived figures, parameters, real time.
    #[must_use]
    pub fn to_json(&self) -> Value {
        // Serializing plain numbers, strings and maps of them cannot fail.
        serde_json::to_value(self.json_view()).unwrap_or(Value::Null)
    }

    /// The row's key when it is a row of dimension `kind`: the one key field (`queue`, `agent`,
    /// `channel` or `tag`) its JSON form has.
    #[must_use]
    pub fn key_if(&self, kind: DimKind) -> Option<&str> {
        (self.dimension == kind).then_some(self.key.as_str())
    }

    /// The row as `metrics --json` prints it, serializable without building a JSON tree.
    #[must_use]
    pub fn json_view(&self) -> RowJson<'_> {
        let (c, f, p, r) = (&self.counts, &self.figures, &self.params, &self.realtime);
        let key = |k: DimKind| self.key_if(k);
        RowJson {
            abandon_rate: f.abandon_rate,
            abandon_wait_sum_ms: c.abandon_wait_sum_ms,
            abandoned: c.abandoned,
            abandoned_within: c.abandoned_within,
            acw_sum_ms: c.acw_sum_ms,
            agent: key(DimKind::Agent),
            agents_needed: r.agents_needed,
            aht_ms: f.aht_ms,
            answered: c.answered,
            answered_within: c.answered_within,
            asa_ms: f.asa_ms,
            avg_abandon_ms: f.avg_abandon_ms,
            avg_acw_ms: f.avg_acw_ms,
            avg_hold_ms: f.avg_hold_ms,
            avg_talk_ms: f.avg_talk_ms,
            bands: &c.bands,
            channel: key(DimKind::Channel),
            dimension: self.dimension.name(),
            formula: p.formula.name(),
            handle_p50_ms: f.handle_p50_ms,
            handle_p90_ms: f.handle_p90_ms,
            handle_p95_ms: f.handle_p95_ms,
            handle_p99_ms: f.handle_p99_ms,
            handled: c.handled,
            hold_sum_ms: c.hold_sum_ms,
            in_acw_now: r.in_acw_now,
            longest_wait_now_ms: r.longest_wait_now_ms,
            offered: c.offered,
            overflow: c.overflow,
            queue: key(DimKind::Queue),
            service_level: f.service_level,
            service_levels: &f.service_levels,
            short_abandon_ms: p.short_abandon_ms,
            short_abandoned: c.short_abandoned,
            tag: key(DimKind::Tag),
            talk_sum_ms: c.talk_sum_ms,
            talking_now: r.talking_now,
            target: p.target,
            threshold_ms: p.threshold_ms,
            wait_max_ms: c.wait_max_ms,
            wait_p50_ms: f.wait_p50_ms,
            wait_p90_ms: f.wait_p90_ms,
            wait_p95_ms: f.wait_p95_ms,
            wait_p99_ms: f.wait_p99_ms,
            wait_sum_ms: c.wait_sum_ms,
            waiting_now: r.waiting_now,
            window: &self.window,
        }
    }
}

/// A metrics row under the output names of docs/metrics.md, fields in name order (the order a JSON object of
/// them always had).
#[derive(Debug, Serialize)]
pub struct RowJson<'a> {
    abandon_rate: Option<f64>,
    abandon_wait_sum_ms: u64,
    abandoned: u64,
    abandoned_within: u64,
    acw_sum_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent: Option<&'a str>,
    agents_needed: Option<u32>,
    aht_ms: Option<f64>,
    answered: u64,
    answered_within: u64,
    asa_ms: Option<f64>,
    avg_abandon_ms: Option<f64>,
    avg_acw_ms: Option<f64>,
    avg_hold_ms: Option<f64>,
    avg_talk_ms: Option<f64>,
    /// Threshold (ms) → answered within it; `serde_json` writes the integer keys as strings.
    bands: &'a BTreeMap<u64, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    dimension: &'static str,
    formula: &'static str,
    handle_p50_ms: Option<f64>,
    handle_p90_ms: Option<f64>,
    handle_p95_ms: Option<f64>,
    handle_p99_ms: Option<f64>,
    handled: u64,
    hold_sum_ms: u64,
    in_acw_now: u64,
    longest_wait_now_ms: Option<u64>,
    offered: u64,
    overflow: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    queue: Option<&'a str>,
    service_level: Option<f64>,
    service_levels: &'a ServiceLevels,
    short_abandon_ms: i64,
    short_abandoned: u64,
    /// Tag rows: `name=value`.
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<&'a str>,
    talk_sum_ms: u64,
    talking_now: u64,
    target: f64,
    threshold_ms: i64,
    wait_max_ms: u64,
    wait_p50_ms: Option<f64>,
    wait_p90_ms: Option<f64>,
    wait_p95_ms: Option<f64>,
    wait_p99_ms: Option<f64>,
    wait_sum_ms: u64,
    waiting_now: u64,
    window: &'a str,
}

/// An open segment as `calls` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenSegment {
    pub call_id: String,
    pub queue: String,
    pub channel: String,
    pub agent: Option<String>,
    pub phase: Phase,
    /// Since the segment started (now − start).
    pub age_ms: i64,
    /// Since the current phase began.
    pub phase_age_ms: i64,
    /// The wait clock of its queue and channel (docs/slow-channels.md).
    #[serde(default)]
    pub clock: crate::config::WaitClock,
    /// While waiting: when its wait reaches the threshold on that clock, epoch ms.
    #[serde(default)]
    pub deadline_ms: Option<i64>,
    /// While waiting: the wait left until the deadline on that clock; negative once overdue.
    #[serde(default)]
    pub time_left_ms: Option<i64>,
}

/// Engine counters for `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStats {
    pub accepted: u64,
    pub duplicates: u64,
    /// Events for facts already folded in (after `reorder_grace`), or for a call already finished.
    pub late: u64,
    pub rejected_open_segment_limit: u64,
    pub expired_segments: u64,
    pub expired_orphan_events: u64,
    pub open_segments: u64,
    pub open_calls: u64,
    pub remembered_calls: u64,
    /// Segments counted under `(other)` because a dimension was at its key limit.
    pub overflowed: BTreeMap<String, u64>,
    /// Keys per dimension.
    pub keys: BTreeMap<String, u64>,
    /// Memory the engine's state takes, by part.
    #[serde(default)]
    pub state: StateBytes,
    /// Callback requests open now (docs/callbacks.md).
    #[serde(default)]
    pub open_callbacks: u64,
    /// Callback requests not opened: `limits.max_open_callbacks` were open.
    #[serde(default)]
    pub callbacks_refused_limit: u64,
    /// `callback` events for a call with no open request.
    #[serde(default)]
    pub callbacks_unmatched: u64,
    /// Open callback requests forgotten with their period (older than every period kept).
    #[serde(default)]
    pub callbacks_forgotten: u64,
}

/// The engine's own accounting of its state, in bytes (heap, approximately), by part: what must
/// stay flat in call volume (buckets and totals: keys × buckets) and what follows the calls open
/// now (pending) or recently finished (remembered, bounded by `metrics.max_remembered_calls`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateBytes {
    /// Buckets held (keys × time buckets with data).
    pub buckets: u64,
    pub bucket_bytes: u64,
    /// Running totals of the long windows.
    pub total_bytes: u64,
    /// Calls not yet folded in.
    pub pending_bytes: u64,
    /// Finished calls remembered for late duplicates.
    pub remembered_bytes: u64,
    pub key_bytes: u64,
}

impl StateBytes {
    /// What is sized by keys × buckets.
    #[must_use]
    pub fn aggregate_bytes(&self) -> u64 {
        self.bucket_bytes + self.total_bytes + self.key_bytes
    }
}
