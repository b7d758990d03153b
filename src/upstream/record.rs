//! Interval records: what leaves the host. Every field is additive (counters, sums, sketch bins)
//! or merges by maximum (`wait_max_ms`), so a receiver can merge hosts and intervals and, after
//! deduplicating by `idempotency_key`, add corrections to the records they correct.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::sla_record::SlaState;
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
    /// The interval's totals after this record (kept in the outbox for receivers that would
    /// rather overwrite than add; no sink sends them today).
    pub total: Agg,
    /// The objectives' state when it was shipped (first `interval` record of a shipment only;
    /// see `sla_record.rs`). Records stored before it existed read with none.
    #[serde(default)]
    pub sla: Vec<SlaState>,
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
            if !self.sla.is_empty() {
                m.insert(
                    "sla".into(),
                    self.sla.iter().map(SlaState::to_json).collect(),
                );
            }
        }
        v
    }

    /// The record in Influx line protocol: one `callmetrics` point with what the record adds
    /// (its counters, sums and maximum), then one `callmetrics_wait_ms` point per non-empty bin
    /// of the wait sketch, tagged with the bin's `vmrange`. Every line carries this record's
    /// delta, never the interval's totals, and a correction's lines carry a `correction` tag
    /// holding its `seq`: each correction lands in series of its own, so no series ever holds
    /// two different values at one timestamp, summing every series adds corrections to what
    /// they correct, and a batch sent again (at-least-once) rewrites identical samples, which
    /// `VictoriaMetrics`' deduplication or `InfluxDB`'s overwrite reduces to one whichever copy
    /// it keeps. Lines are joined by `\n`.
    #[must_use]
    pub fn influx_lines(&self) -> String {
        let d = &self.delta;
        let mut tags = String::new();
        tags.push_str(",host=");
        tags.push_str(&escape_tag(&self.host_id));
        tags.push_str(",dimension=");
        tags.push_str(self.dimension.name());
        if self.dimension != DimKind::All {
            tags.push(',');
            tags.push_str(self.dimension.name());
            tags.push('=');
            tags.push_str(&escape_tag(&self.key));
        }
        if self.kind == RecordKind::Correction {
            tags.push_str(",correction=");
            tags.push_str(&self.seq.to_string());
        }
        let stamp = self.interval_start_ms.to_string();
        let mut out = String::from("callmetrics");
        out.push_str(&tags);
        for (i, (name, value)) in d.named_counters().iter().enumerate() {
            out.push(if i == 0 { ' ' } else { ',' });
            out.push_str(name);
            out.push('=');
            out.push_str(&value.to_string());
            out.push('i');
        }
        out.push(' ');
        out.push_str(&stamp);
        for (bin, n) in d.wait_hist.bins() {
            out.push_str("\ncallmetrics_wait_ms");
            out.push_str(&tags);
            out.push_str(",vmrange=");
            out.push_str(&vmrange(bin));
            out.push_str(" bucket=");
            out.push_str(&n.to_string());
            out.push_str("i ");
            out.push_str(&stamp);
        }
        for s in &self.sla {
            out.push('\n');
            out.push_str(&s.influx_line(
                &escape_tag(&self.host_id),
                &escape_tag(&s.objective),
                self.interval_start_ms,
            ));
        }
        out
    }
}

/// The `VictoriaMetrics` histogram bucket label of a sketch bin, `lower...upper` in ms: bin `i`
/// holds (γ^(i−1), γ^i]; the zero bin (`i32::MIN`, values below 1 ms) holds [0, γ^−1]. The same
/// bin always gives the same text (seven significant digits, enough to tell neighbours apart
/// since γ − 1 ≈ 2 %), so the buckets of every host and interval fall in the same series.
fn vmrange(bin: i32) -> String {
    let g = Sketch::gamma();
    if bin == i32::MIN {
        return format!("0...{:.6e}", g.powi(-1));
    }
    format!("{:.6e}...{:.6e}", g.powi(bin - 1), g.powi(bin))
}

/// Counters, sums, maxima, bands and sketches of an aggregate under the names of docs/metrics.md.
#[must_use]
pub fn counters_json(a: &Agg) -> Value {
    let mut m: serde_json::Map<String, Value> = a
        .named_counters()
        .iter()
        .map(|(name, value)| (name.to_string(), Value::from(*value)))
        .collect();
    m.insert("bands".into(), json!(a.bands));
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
            sla: Vec::new(),
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
        let text = record().influx_lines();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].starts_with(
                "callmetrics,host=pbx\\ 1,dimension=queue,queue=sales\\,eu offered=3i,answered=2i,"
            ),
            "{text}"
        );
        assert!(lines[0].ends_with(" 1795300200000"), "{text}");
        // 1500 ms is in bin ceil(ln 1500 / ln γ) = 370: (γ^369, γ^370] = (1489.86…, 1519.65…].
        assert_eq!(
            lines[1],
            "callmetrics_wait_ms,host=pbx\\ 1,dimension=queue,queue=sales\\,eu,\
             vmrange=1.489862e3...1.519656e3 bucket=1i 1795300200000"
        );
    }

    #[test]
    fn a_tag_record_names_its_name_value_key_under_tag() {
        let mut r = record();
        r.dimension = DimKind::Tag;
        r.key = "tier=gold".into();
        let v = r.to_json();
        assert_eq!(
            (&v["dimension"], &v["tag"]),
            (&json!("tag"), &json!("tier=gold"))
        );
        assert!(v.get("queue").is_none());
        assert!(
            r.influx_lines()
                .starts_with("callmetrics,host=pbx\\ 1,dimension=tag,tag=tier\\=gold offered=3i,"),
            "{}",
            r.influx_lines()
        );
    }

    #[test]
    fn a_correction_sends_its_delta_in_series_of_its_own() {
        let mut r = record();
        r.kind = RecordKind::Correction;
        r.seq = 9;
        r.total.offered = 10;
        r.delta.wait_hist = Sketch::default();
        r.delta.wait_hist.add(0);
        let text = r.influx_lines();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with(
                "callmetrics,host=pbx\\ 1,dimension=queue,queue=sales\\,eu,correction=9 offered=3i,"
            ),
            "the delta, not the total of 10: {text}"
        );
        assert_eq!(
            lines[1],
            "callmetrics_wait_ms,host=pbx\\ 1,dimension=queue,queue=sales\\,eu,correction=9,\
             vmrange=0...9.803941e-1 bucket=1i 1795300200000"
        );
    }

    #[test]
    fn vmranges_of_neighbouring_bins_touch_and_differ() {
        for bin in [0, 1, 372, 373, 501, 900] {
            let (lo, hi) = vmrange(bin)
                .split_once("...")
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .unwrap();
            let (_, next_hi) = vmrange(bin + 1)
                .split_once("...")
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .unwrap();
            assert_eq!(vmrange(bin + 1).split("...").next(), Some(hi.as_str()));
            assert_ne!(hi, next_hi);
            let (lo, hi): (f64, f64) = (lo.parse().unwrap(), hi.parse().unwrap());
            assert!(
                lo < hi && (hi / lo - Sketch::gamma()).abs() < 1e-5,
                "{bin}: {lo} {hi}"
            );
        }
        assert_eq!(
            vmrange(i32::MIN).split("...").nth(1),
            vmrange(0).split("...").next()
        );
    }
}
