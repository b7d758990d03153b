//! The `callbacks` text: the open requests, the earliest deadline first, with the time left or
//! overdue by, then each objective's tally this period.

use std::fmt::Write as _;

use super::format::{duration, pct};
use super::table::{render_table, Align};
use crate::engine::CallbacksReport;

/// An instant as a local date and time in `zone`.
fn local(ms: i64, zone: &str) -> String {
    let tz = jiff::tz::TimeZone::get(zone).unwrap_or(jiff::tz::TimeZone::UTC);
    jiff::Timestamp::from_millisecond(ms).map_or_else(
        |_| ms.to_string(),
        |t| tz.to_datetime(t).strftime("%Y-%m-%d %H:%M").to_string(),
    )
}

pub(super) fn render_callbacks(r: &CallbacksReport) -> String {
    use Align::{Left, Right};
    if r.objectives.is_empty() {
        return "no callback objectives: add an [[sla]] with measure = \"callbacks_within\" (docs/callbacks.md)\n".into();
    }
    let zone_of = |name: &str| {
        r.objectives
            .iter()
            .find(|o| o.name == name)
            .map_or("UTC", |o| o.time_zone.as_str())
    };
    let mut out = String::new();
    if r.open.is_empty() {
        out.push_str("no open callback requests\n");
    } else {
        let columns = [
            ("call", Left),
            ("queue", Left),
            ("objective", Left),
            ("requested", Left),
            ("deadline", Left),
            ("left", Right),
            ("attempts", Right),
        ];
        let cells: Vec<Vec<String>> = r
            .open
            .iter()
            .map(|c| {
                let zone = zone_of(&c.objective);
                vec![
                    c.call_id.clone(),
                    c.queue.clone(),
                    c.objective.clone(),
                    local(c.requested_ms, zone),
                    local(c.deadline_ms, zone),
                    if c.left_ms < 0 {
                        format!("overdue {}", duration(-c.left_ms))
                    } else {
                        duration(c.left_ms)
                    },
                    c.attempts.to_string(),
                ]
            })
            .collect();
        out.push_str(&render_table(&columns, &cells));
    }
    out.push('\n');
    for o in &r.objectives {
        let t = &o.tally;
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{}: within {}, this period from {} ({}): {} % on time (target {} %); requested {}, on time {}, late {}, missed {}, open {}, cancelled {}; overdue now {}",
            o.name,
            o.promise,
            local(o.period_start_ms, &o.time_zone),
            o.time_zone,
            pct(o.value),
            pct(Some(o.target)),
            t.requested,
            t.on_time,
            t.late,
            t.missed,
            t.open,
            t.cancelled,
            o.overdue
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callbacks::book::Tally;
    use crate::engine::{CallbackObjective, OpenCallback};
    use crate::sla::compliance::Status;

    #[test]
    fn open_requests_show_time_left_or_overdue() {
        let r = CallbacksReport {
            now_ms: 1_796_634_000_000,
            open: vec![
                OpenCallback {
                    objective: "same-day".into(),
                    call_id: "c1".into(),
                    queue: "support".into(),
                    requested_ms: 1_796_634_000_000 - 7_200_000,
                    deadline_ms: 1_796_634_000_000 - 90_000,
                    left_ms: -90_000,
                    attempts: 2,
                },
                OpenCallback {
                    objective: "same-day".into(),
                    call_id: "c2".into(),
                    queue: "support".into(),
                    requested_ms: 1_796_634_000_000,
                    deadline_ms: 1_796_634_000_000 + 3_600_000,
                    left_ms: 3_600_000,
                    attempts: 0,
                },
            ],
            objectives: vec![CallbackObjective {
                name: "same-day".into(),
                promise: "same_business_day".into(),
                target: 0.9,
                time_zone: "UTC".into(),
                period_start_ms: 1_796_601_600_000,
                period_end_ms: 1_796_688_000_000,
                value: Some(0.75),
                status: Status::Missed,
                tally: Tally {
                    requested: 6,
                    on_time: 3,
                    late: 1,
                    missed: 0,
                    open: 2,
                    cancelled: 0,
                },
                overdue: 1,
            }],
        };
        let text = render_callbacks(&r);
        assert!(text.contains("overdue 1m30s"), "{text}");
        assert!(text.contains("1h00m00s"), "{text}");
        assert!(text.find("c1").unwrap() < text.find("c2").unwrap());
        assert!(
            text.contains("75.0 % on time (target 90.0 %); requested 6, on time 3, late 1"),
            "{text}"
        );
        assert!(text.contains("overdue now 1"), "{text}");
    }
}
