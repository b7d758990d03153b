//! What the engine answers: metrics rows, open segments and counters, as plain serde types that the
//! control protocol carries unchanged and the CLI prints.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::aggregate::{Agg, Figures};
use super::segment::Phase;
use crate::config::Formula;

/// The dimension a metrics row is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DimKind {
    All,
    Queue,
    Agent,
    Channel,
}

impl DimKind {
    pub fn name(self) -> &'static str {
        match self {
            DimKind::All => "all",
            DimKind::Queue => "queue",
            DimKind::Agent => "agent",
            DimKind::Channel => "channel",
        }
    }

    pub fn parse(s: &str) -> Option<DimKind> {
        [
            DimKind::All,
            DimKind::Queue,
            DimKind::Agent,
            DimKind::Channel,
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

/// Now, not windowed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Realtime {
    pub waiting_now: u64,
    pub longest_wait_now_ms: Option<u64>,
    pub talking_now: u64,
    pub in_acw_now: u64,
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
    /// The row with DESIGN's output names: counters, sums, derived figures, parameters, real time.
    pub fn to_json(&self) -> Value {
        let c = &self.counts;
        let mut m = Map::new();
        m.insert("window".into(), self.window.clone().into());
        m.insert("dimension".into(), self.dimension.name().into());
        if self.dimension != DimKind::All {
            m.insert(self.dimension.name().into(), self.key.clone().into());
        }
        let f = &self.figures;
        let figures = json!({
            "asa_ms": f.asa_ms, "avg_abandon_ms": f.avg_abandon_ms, "aht_ms": f.aht_ms,
            "avg_talk_ms": f.avg_talk_ms, "avg_hold_ms": f.avg_hold_ms, "avg_acw_ms": f.avg_acw_ms,
            "abandon_rate": f.abandon_rate, "service_level": f.service_level,
            "service_levels": f.service_levels,
            "wait_p50_ms": f.wait_p50_ms, "wait_p90_ms": f.wait_p90_ms,
            "wait_p95_ms": f.wait_p95_ms, "wait_p99_ms": f.wait_p99_ms,
            "handle_p50_ms": f.handle_p50_ms, "handle_p90_ms": f.handle_p90_ms,
            "handle_p95_ms": f.handle_p95_ms, "handle_p99_ms": f.handle_p99_ms,
        });
        let p = &self.params;
        let r = &self.realtime;
        let rest = json!({
            "bands": c.named_bands(),
            "threshold_ms": p.threshold_ms, "short_abandon_ms": p.short_abandon_ms,
            "formula": p.formula.name(), "target": p.target,
            "waiting_now": r.waiting_now, "longest_wait_now_ms": r.longest_wait_now_ms,
            "talking_now": r.talking_now, "in_acw_now": r.in_acw_now,
        });
        for (name, value) in c.named_counters() {
            m.insert(name.into(), value.into());
        }
        for part in [figures, rest] {
            if let Value::Object(o) = part {
                m.extend(o);
            }
        }
        Value::Object(m)
    }
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
    pub fn aggregate_bytes(&self) -> u64 {
        self.bucket_bytes + self.total_bytes + self.key_bytes
    }
}
