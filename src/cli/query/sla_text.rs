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

/// A callback tally in words.
fn callback_counts(t: &crate::callbacks::book::Tally) -> String {
    format!(
        "requested {}, on time {}, late {}, missed {}, open {}, cancelled {}",
        t.requested, t.on_time, t.late, t.missed, t.open, t.cancelled
    )
}

fn target(o: &SlaObjective) -> String {
    let sign = if matches!(
        o.measure.as_str(),
        "service_level" | "answered_within" | "callbacks_within"
    ) {
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
        match &o.callbacks {
            Some(t) => {
                let _ = writeln!(out, "  callbacks: {}", callback_counts(t));
            }
            None => {
                let _ = writeln!(out, "  counted: {}", counts(&o.counts));
            }
        }
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
                        // A callback objective's volume is its requests.
                        p.callbacks
                            .map_or(p.counts.offered, |t| t.requested)
                            .to_string(),
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::ScopeConfig;
    use crate::engine::SlaPastPeriod;
    use crate::sla::compliance::Margin;

    fn objective() -> SlaObjective {
        SlaObjective {
            name: "gold".into(),
            measure: "service_level".into(),
            scope: ScopeConfig::default(),
            formula: Some("offered".into()),
            threshold_ms: Some(20_000),
            target: 0.9,
            period: "month".into(),
            time_zone: "Europe/Paris".into(),
            // 2026-12-01T00:00 and 2027-01-01T00:00 in Paris (UTC+1).
            period_start_ms: 1_796_079_600_000,
            period_end_ms: 1_798_758_000_000,
            value: Some(0.875),
            status: Status::AtRisk,
            margin: Some(Margin::AtLeast { next: 40, good: 38 }),
            margin_text: Some("the next 40 calls must …".into()),
            expected: Some(40),
            counts: SlaCounts {
                offered: 8,
                answered: 8,
                answered_within: 7,
                ..SlaCounts::default()
            },
            outside_hours: SlaCounts {
                offered: 2,
                ..SlaCounts::default()
            },
            counting_since_ms: 0,
            agents_needed: BTreeMap::from([("support".to_string(), Some(7))]),
            past: vec![SlaPastPeriod {
                period_start_ms: 1_793_487_600_000,
                period_end_ms: 1_796_079_600_000,
                value: None,
                status: Status::NoData,
                counts: SlaCounts::default(),
                outside_hours: SlaCounts::default(),
                callbacks: None,
            }],
            callbacks: None,
        }
    }

    #[test]
    fn an_objective_reads_as_a_block_with_its_past_periods() {
        let text = render_sla(&[objective()]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "gold: service_level (offered, T 20s), target ≥ 90.0 %, this month from 2026-12-01 to 2027-01-01 (Europe/Paris)"
        );
        assert_eq!(lines[1], "  so far 87.5 %: at risk");
        assert_eq!(lines[2], "  the next 40 calls must …");
        assert!(lines[3].starts_with("  counted: offered 8, answered 8 (7 within T)"));
        assert!(lines[4].starts_with("  outside service hours, not counted: offered 2,"));
        assert_eq!(lines[5], "  agents needed now: support 7");
        assert!(
            lines[7].starts_with("  2026-11-01") && lines[7].contains("no data"),
            "{text}"
        );
    }

    #[test]
    fn no_objectives_says_where_to_add_them() {
        assert!(render_sla(&[]).contains("[[sla]]"));
    }
}
