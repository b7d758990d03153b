//! The objectives' families of `/metrics` (docs/sla.md): per objective its value so far this
//! period, target, status (one series per status, 1 for the current one), the calls that must
//! still be good and the calls expected in the rest of the period, and the calls offered
//! outside service hours; per queue the agents Erlang C says are needed now. Ratios are 0–1
//! and durations seconds, as everywhere in the exposition.

use super::text::{Exposition, Kind};
use crate::engine::{MetricsRow, SlaObjective};
use crate::sla::compliance::{Margin, Status};

const STATUSES: [(Status, &str); 4] = [
    (Status::Met, "met"),
    (Status::AtRisk, "at_risk"),
    (Status::Missed, "missed"),
    (Status::NoData, "no_data"),
];

/// A figure in the exposition's unit: ratios as they are, `asa_max` and `aht_max` in seconds.
fn unit(o: &SlaObjective, v: f64) -> f64 {
    if matches!(o.measure.as_str(), "asa_max" | "aht_max") {
        v / 1000.0
    } else {
        v
    }
}

/// One gauge family over the objectives: (objective, measure) labels and the value, if any.
fn per_objective(
    e: &mut Exposition,
    name: &str,
    help: &str,
    objectives: &[SlaObjective],
    value: impl Fn(&SlaObjective) -> Option<f64>,
) {
    e.family(name, Kind::Gauge, help, |out| {
        for o in objectives {
            if let Some(v) = value(o) {
                out.value(&[("objective", &o.name), ("measure", &o.measure)], v);
            }
        }
    });
}

pub(super) fn sla(e: &mut Exposition, objectives: &[SlaObjective], queues: &[MetricsRow]) {
    per_objective(
        e,
        "callmetrics_sla_value",
        "The objective's measure so far this period (ratio 0-1, or seconds for asa_max and aht_max); absent with no data.",
        objectives,
        |o| o.value.map(|v| unit(o, v)),
    );
    per_objective(
        e,
        "callmetrics_sla_target",
        "The objective's target (ratio 0-1, or seconds for asa_max and aht_max).",
        objectives,
        |o| Some(unit(o, o.target)),
    );
    e.family(
        "callmetrics_sla_status",
        Kind::Gauge,
        "1 for the objective's status this period (met, at_risk, missed, no_data), 0 for the others.",
        |out| {
            for o in objectives {
                for (s, name) in STATUSES {
                    out.value(
                        &[("objective", &o.name), ("status", name)],
                        u8::from(o.status == s),
                    );
                }
            }
        },
    );
    per_objective(
        e,
        "callmetrics_sla_margin_calls",
        "Calls among those expected in the rest of the period that must still be good (answered within T; not abandoned for abandon_rate_max) to end on target; 0 when the target holds whatever they do; absent when out of reach, for averages, or with no estimate.",
        objectives,
        |o| match o.margin {
            Some(Margin::AtLeast { good, .. }) => Some(good as f64),
            Some(Margin::Secured { .. }) => Some(0.0),
            _ => None,
        },
    );
    per_objective(
        e,
        "callmetrics_sla_expected_calls",
        "Units of the measure expected in the rest of the period, from the rate so far in service hours.",
        objectives,
        |o| o.expected.map(|r| r as f64),
    );
    per_objective(
        e,
        "callmetrics_sla_unreachable",
        "1 when the target can no longer be met this period with the volume expected.",
        objectives,
        |o| Some(f64::from(u8::from(o.margin == Some(Margin::Unreachable)))),
    );
    per_objective(
        e,
        "callmetrics_sla_calls_outside_service",
        "Calls in the objective's scope offered outside its service hours this period (not counted against it).",
        objectives,
        |o| Some(o.outside_hours.offered as f64),
    );
    e.family(
        "callmetrics_queue_agents_needed",
        Kind::Gauge,
        "Agents Erlang C says the queue needs now for its service-level target, from the last hour's arrivals and AHT; absent without traffic or AHT.",
        |out| {
            for r in queues {
                if let Some(n) = r.realtime.agents_needed {
                    out.value(&[("queue", &r.key)], n);
                }
            }
        },
    );
}
