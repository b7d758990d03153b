//! The objectives' state as it travels upstream (docs/upstream.md): carried by the first
//! `interval` record of each shipment, one entry per objective with its current period's
//! counters so far. The counters are period-to-date totals, not deltas: a receiver keeps, per
//! host, objective and period start, the entry of the highest `seq`, and merges hosts by adding
//! their counters and recomputing the value (the measure's formula in docs/sla.md).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::engine::{SlaCounts, SlaObjective};
use crate::sla::compliance::Status;

/// One objective's state at shipping time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlaState {
    pub objective: String,
    pub measure: String,
    /// `day`, `week` or `month`.
    pub period: String,
    pub period_start_ms: i64,
    pub period_end_ms: i64,
    /// Calls offered in service hours, judged with the objective's T, S and clock.
    pub counts: SlaCounts,
    /// Calls offered outside service hours.
    pub outside_hours: SlaCounts,
    /// The measure so far (fraction, or ms for `asa_max`, `aht_max`); `None` with no data.
    pub value: Option<f64>,
    /// A fraction, or ms.
    pub target: f64,
    pub status: Status,
}

impl SlaState {
    #[must_use]
    pub fn of(o: &SlaObjective) -> SlaState {
        SlaState {
            objective: o.name.clone(),
            measure: o.measure.clone(),
            period: o.period.clone(),
            period_start_ms: o.period_start_ms,
            period_end_ms: o.period_end_ms,
            counts: o.counts,
            outside_hours: o.outside_hours,
            value: o.value,
            target: o.target,
            status: o.status,
        }
    }

    /// The entry as docs/upstream.md shows it.
    #[must_use]
    pub fn to_json(&self) -> Value {
        json!({
            "objective": self.objective,
            "measure": self.measure,
            "period": self.period,
            "period_start_ms": self.period_start_ms,
            "period_end_ms": self.period_end_ms,
            "counts": self.counts,
            "outside_hours": self.outside_hours,
            "value": self.value,
            "target": self.target,
            "status": self.status,
        })
    }

    /// One Influx line: a `callmetrics_sla` point per objective, stamped at the interval start,
    /// tagged with host, objective and period start; the period-to-date counters as integer
    /// fields, value and target as floats, status as a string.
    #[must_use]
    pub fn influx_line(&self, host_tag: &str, objective_tag: &str, stamp_ms: i64) -> String {
        let c = &self.counts;
        let mut fields = vec![
            format!("offered={}i", c.offered),
            format!("answered={}i", c.answered),
            format!("answered_within={}i", c.answered_within),
            format!("abandoned={}i", c.abandoned),
            format!("abandoned_within={}i", c.abandoned_within),
            format!("short_abandoned={}i", c.short_abandoned),
            format!("overflow={}i", c.overflow),
            format!("handled={}i", c.handled),
            format!("wait_sum_ms={}i", c.wait_sum_ms),
            format!(
                "handle_sum_ms={}i",
                c.talk_sum_ms + c.hold_sum_ms + c.acw_sum_ms
            ),
            format!("outside_hours_offered={}i", self.outside_hours.offered),
            format!("target={}", self.target),
        ];
        if let Some(v) = self.value {
            fields.push(format!("value={v}"));
        }
        let status = serde_json::to_value(self.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        fields.push(format!("status=\"{status}\""));
        format!(
            "callmetrics_sla,host={host_tag},objective={objective_tag},period_start={} {} {stamp_ms}",
            self.period_start_ms,
            fields.join(",")
        )
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use serde::Serialize;

    use super::*;
    use crate::config::Config;
    use crate::engine::{Agg, DimKind, Engine};
    use crate::event::{Event, EventKind};
    use crate::store::Store;
    use crate::upstream::closer::Closer;
    use crate::upstream::outbox_store::StoreOutbox;
    use crate::upstream::record::{IntervalRecord, RecordKind};

    /// 2026-11-22T08:00:00Z, an interval start in UTC.
    const T0: i64 = 1_795_334_400_000;

    /// Two calls on two queues, one objective over `q1`: of the two interval records shipped
    /// together, the first carries the objective's state (one call counted), the other none;
    /// the records read back from the outbox as written.
    #[tokio::test]
    async fn the_first_interval_record_of_a_shipment_carries_the_objectives() {
        let cfg = Config::parse(
            // A sink, so that closed intervals become records (without one only the history
            // is kept).
            "[[upstream.sinks]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n\n[[sla]]\nname = \"q1-day\"\nscope = { queues = [\"q1\"] }\nmeasure = \"abandon_rate_max\"\ntarget = 0.1\nperiod = \"day\"\n",
            Path::new("agent.toml"),
        )
        .unwrap();
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(&dir.path().join("s"), 1 << 20, 1 << 30).expect("store"));
        let mut engine = Engine::new(&cfg);
        let mut closer = Closer::new(&cfg, "h".into(), &store).expect("closer");
        for (id, queue, at) in [("a", "q1", T0 + 60_000), ("b", "q2", T0 + 16 * 60_000)] {
            let mut s = Event::new(EventKind::Start, id, at);
            s.queue = Some(queue.into());
            let end = Event::new(EventKind::End, id, at + 5_000);
            for ev in [&s, &end] {
                engine.apply(ev, at + 5_000);
            }
        }
        let now = T0 + 3_600_000;
        engine.advance(now);
        let c = closer.candidates(&engine, now, true);
        closer.ship(&store, c, 900_000).await.expect("ship");
        let records: Vec<IntervalRecord> = store
            .records_after(0, 100)
            .expect("records")
            .iter()
            .map(|(_, b)| StoreOutbox::decode(b).expect("decode"))
            .collect();
        let with: Vec<&IntervalRecord> = records.iter().filter(|r| !r.sla.is_empty()).collect();
        assert_eq!(with.len(), 1, "{records:?}");
        assert_eq!(with[0].kind, RecordKind::Interval);
        let s = &with[0].sla[0];
        assert_eq!(s.objective, "q1-day");
        // One call on q1, abandoned after 5 s (not short: S is 5 s): abandon rate 1/1.
        assert_eq!((s.counts.offered, s.counts.abandoned), (1, 1));
        assert_eq!(s.value, Some(1.0));
        assert_eq!(s.status, Status::Missed);
        let json = with[0].to_json();
        assert_eq!(json["sla"][0]["counts"]["offered"], 1);
        assert_eq!(json["sla"][0]["status"], "missed");
        let lines = with[0].influx_lines();
        let sla_line = lines.lines().last().unwrap();
        assert!(
            sla_line.starts_with("callmetrics_sla,host=h,objective=q1-day,period_start=")
                && sla_line.contains(" offered=1i,")
                && sla_line.contains(",status=\"missed\" "),
            "{sla_line}"
        );
    }

    /// A record written before records carried objectives (no `sla` element) still reads.
    #[test]
    fn a_record_stored_before_objectives_reads_with_none() {
        #[derive(Serialize)]
        struct Before {
            host_id: String,
            seq: u64,
            kind: RecordKind,
            interval_start_ms: i64,
            interval_ms: i64,
            dimension: DimKind,
            key: String,
            delta: Agg,
            total: Agg,
        }
        let old = Before {
            host_id: "h".into(),
            seq: 3,
            kind: RecordKind::Interval,
            interval_start_ms: T0,
            interval_ms: 900_000,
            dimension: DimKind::All,
            key: "all".into(),
            delta: Agg::default(),
            total: Agg::default(),
        };
        let r = StoreOutbox::decode(&StoreOutbox::encode(&old)).expect("decode");
        assert_eq!((r.seq, r.sla.len()), (3, 0));
    }
}
