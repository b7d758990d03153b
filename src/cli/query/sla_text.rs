//! The `sla` text: one block per objective, its current period first (value, target, status,
//! what the rest of the period must do, the counts behind them, calls outside service hours,
//! agents needed now), then a table of the past periods kept.

use std::fmt::Write as _;

use super::format::{pct, secs};
use super::table::{render_table, Align};
use crate::engine::{SlaCounts, SlaObjective};
use crate::sla::compliance::Status;
use crate::units::Millis;

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Met => "met",
        Status::AtRisk => "at risk",
        Status::Missed => "missed",
        Status::NoData => "no data",
    }
}

/// Averages (`asa_max`, `aht_max`) read in seconds, the rest as percentages.
fn is_average(o: &SlaObjective) -> bool {
    matches!(o.measure.as_str(), "asa_max" | "aht_max")
}

fn value(o: &SlaObjective, v: Option<f64>) -> String {
    if v.is_none() {
        "-".into()
    } else if is_average(o) {
        format!("{} s", secs(v))
    } else {
        format!("{} %", pct(v))
    }
}

/// A period's first instant as a local date (and time when not midnight) in the zone.
fn local(ms: i64, zone: &str) -> String {
    let tz = jiff::tz::TimeZone::get(zone).unwrap_or(jiff::tz::TimeZone::UTC);
    jiff::Timestamp::from_millisecond(ms).map_or_else(
        |_| ms.to_string(),
        |t| {
            let dt = tz.to_datetime(t);
            if dt.time() == jiff::civil::Time::midnight() {
                dt.date().to_string()
            } else {
                dt.strftime("%Y-%m-%d %H:%M").to_string()
            }
        },
    )
}

fn counts(c: &SlaCounts) -> String {
    format!(
        "offered {}, answered {} ({} within T), abandoned {} ({} short), overflow {}, handled {}",
        c.offered,
        c.answered,
        c.answered_within,
        c.abandoned,
        c.short_abandoned,
        c.overflow,
        c.handled
    )
}

fn target(o: &SlaObjective) -> String {
    let sign = if o.measure == "service_level" || o.measure == "answered_within" {
        "≥"
    } else {
        "≤"
    };
    format!("{sign} {}", value(o, Some(o.target)))
}

pub(super) fn render_sla(objectives: &[SlaObjective]) -> String {
    if objectives.is_empty() {
        return "no objectives: add [[sla]] sections to the config (docs/sla.md)\n".into();
    }
    let mut out = String::new();
    for o in objectives {
        let measure = match (&o.formula, o.threshold_ms.map(Millis)) {
            (Some(f), Some(t)) => format!("{} ({f}, T {t})", o.measure),
            (None, Some(t)) => format!("{} (T {t})", o.measure),
            _ => o.measure.clone(),
        };
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{}: {measure}, target {}, this {} from {} to {} ({})",
            o.name,
            target(o),
            o.period,
            local(o.period_start_ms, &o.time_zone),
            local(o.period_end_ms, &o.time_zone),
            o.time_zone
        );
        let _ = writeln!(
            out,
            "  so far {}: {}",
            value(o, o.value),
            status_word(o.status)
        );
        if let Some(m) = &o.margin_text {
            let _ = writeln!(out, "  {m}");
        }
        let _ = writeln!(out, "  counted: {}", counts(&o.counts));
        if o.outside_hours.offered + o.outside_hours.handled > 0 {
            let _ = writeln!(
                out,
                "  outside service hours, not counted: {}",
                counts(&o.outside_hours)
            );
        }
        if !o.agents_needed.is_empty() {
            let staffing: Vec<String> = o
                .agents_needed
                .iter()
                .map(|(q, n)| format!("{q} {}", n.map_or_else(|| "-".into(), |n| n.to_string())))
                .collect();
            let _ = writeln!(out, "  agents needed now: {}", staffing.join(", "));
        }
        if !o.past.is_empty() {
            let columns = [
                ("period", Align::Left),
                ("value", Align::Right),
                ("status", Align::Left),
                ("offered", Align::Right),
                ("outside hours", Align::Right),
            ];
            let cells: Vec<Vec<String>> = o
                .past
                .iter()
                .map(|p| {
                    vec![
                        local(p.period_start_ms, &o.time_zone),
                        value(o, p.value),
                        status_word(p.status).into(),
                        p.counts.offered.to_string(),
                        p.outside_hours.offered.to_string(),
                    ]
                })
                .collect();
            for line in render_table(&columns, &cells).lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        out.push('\n');
    }
    out
}
