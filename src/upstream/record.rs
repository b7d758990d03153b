//! Interval records: what leaves the host. Every field is additive (counters, sums, sketch bins)
//! or merges by maximum (`wait_max_ms`), so a receiver can merge hosts and intervals and, after
//! deduplicating by `idempotency_key`, add corrections to the records they correct.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::engine::sketch::Sketch;
use crate::engine::{Agg, DimKind};

/// Whether a record is the first shipment of an interval or a delta that follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    Interval,
    Correction,
}

/// One closed interval of one key, or a correction to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalRecord {
    pub host_id: String,
    pub seq: u64,
    pub kind: RecordKind,
    pub interval_start_ms: i64,
    pub interval_ms: i64,
    pub dimension: DimKind,
    pub key: String,
    /// What this record adds: the whole interval, or for a correction what changed since.
    pub delta: Agg,
    /// The interval's totals after this record (for sinks that overwrite rather than add).
    pub total: Agg,
}

impl IntervalRecord {
    /// `host_id:seq`: a receiver counts each record once by this key.
    #[must_use]
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}", self.host_id, self.seq)
    }

    /// The record as documented in `docs/upstream.md`: the names of docs/metrics.md, times in ms.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let start = jiff::Timestamp::from_millisecond(self.interval_start_ms)
            .map(|t| t.to_string())
            .unwrap_or_default();
        let mut v = json!({
            "idempotency_key": self.idempotency_key(),
            "host_id": self.host_id,
            "seq": self.seq,
            "kind": self.kind,
            "interval_start": start,
            "interval_start_ms": self.interval_start_ms,
            "interval_ms": self.interval_ms,
            "dimension": self.dimension.name(),
        });
        if let Value::Object(m) = &mut v {
            if self.dimension != DimKind::All {
                m.insert(self.dimension.name().into(), self.key.clone().into());
            }
            if let Value::Object(c) = counters_json(&self.delta) {
                m.extend(c);
            }
        }
        v
    }

    /// One Influx line-protocol point with the interval's totals: a point overwrites the fields
    /// of an earlier point with the same tags and time, so a correction carries totals, not a delta.
    #[must_use]
    pub fn influx_line(&self) -> String {
        let t = &self.total;
        let mut line = String::from("callmetrics");
        line.push_str(",host=");
        line.push_str(&escape_tag(&self.host_id));
        line.push_str(",dimension=");
        line.push_str(self.dimension.name());
        if self.dimension != DimKind::All {
            line.push(',');
            line.push_str(self.dimension.name());
            line.push('=');
            line.push_str(&escape_tag(&self.key));
        }
        let fields = t.named_counters();
        for (i, (name, value)) in fields.iter().enumerate() {
            line.push(if i == 0 { ' ' } else { ',' });
            line.push_str(name);
            line.push('=');
            line.push_str(&value.to_string());
            line.push('i');
        }
        line.push(' ');
        line.push_str(&self.interval_start_ms.to_string());
        line
    }
}

/// Counters, sums, maxima, bands and sketches of an aggregate under the names of docs/metrics.md.
#[must_use]
pub fn counters_json(a: &Agg) -> Value {
    let mut m: serde_json::Map<String, Value> = a
        .named_counters()
        .iter()
        .map(|(name, value)| (name.to_string(), Value::from(*value)))
        .collect();
    m.insert("bands".into(), json!(a.named_bands()));
    m.insert("wait_hist".into(), sketch_json(&a.wait_hist));
    m.insert("handle_hist".into(), sketch_json(&a.handle_hist));
    Value::Object(m)
}

/// A sketch as `{"gamma": γ, "zero": n, "bins": [[i, n], …]}`: bin i counts values in
/// (γ^(i−1), γ^i] ms, `zero` counts values below 1 ms. Merging adds counts bin by bin.
fn sketch_json(s: &Sketch) -> Value {
    let mut zero = 0;
    let mut bins = Vec::new();
    for (i, n) in s.bins() {
        if i == i32::MIN {
            zero = n;
        } else {
            bins.push(json!([i, n]));
        }
    }
    json!({"gamma": Sketch::gamma(), "zero": zero, "bins": bins})
}

fn escape_tag(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, ',' | '=' | ' ' | '\\') {
            out.push('\\');
        }
        if c == '\n' {
            out.push_str("\\n");
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> IntervalRecord {
        let mut a = Agg {
            offered: 3,
            answered: 2,
            wait_max_ms: 40_000,
            ..Agg::default()
        };
        a.wait_hist.add(1500);
        IntervalRecord {
            host_id: "pbx 1".into(),
            seq: 7,
            kind: RecordKind::Interval,
            interval_start_ms: 1_795_300_200_000,
            interval_ms: 900_000,
            dimension: DimKind::Queue,
            key: "sales,eu".into(),
            delta: a.clone(),
            total: a,
        }
    }

    #[test]
    fn json_uses_design_names_and_the_idempotency_key() {
        let v = record().to_json();
        assert_eq!(v["idempotency_key"], "pbx 1:7");
        assert_eq!(v["queue"], "sales,eu");
        assert_eq!(v["offered"], 3);
        assert_eq!(v["wait_max_ms"], 40_000);
        assert_eq!(v["kind"], "interval");
        assert_eq!(v["wait_hist"]["bins"].as_array().map(Vec::len), Some(1));
        assert_eq!(v["interval_start"], "2026-11-21T22:30:00Z");
    }

    #[test]
    fn influx_lines_escape_tags_and_type_integers() {
        let line = record().influx_line();
        assert!(
            line.starts_with(
                "callmetrics,host=pbx\\ 1,dimension=queue,queue=sales\\,eu offered=3i,answered=2i,"
            ),
            "{line}"
        );
        assert!(line.ends_with(" 1795300200000"), "{line}");
    }
}
