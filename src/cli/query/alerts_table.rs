//! The `alerts` text: open alerts (firing, then pending) with their level, since when, value
//! and line, then the last resolved ones.

use super::format::duration;
use super::table::{render_table, Align};
use crate::alerts::notice::show_value;
use crate::alerts::{AlertView, AlertsReport, Direction};

/// The line an alert watches, as `< 80.0 %` or `> 120.0 s`.
fn line(a: &AlertView) -> String {
    let side = match a.direction {
        Direction::Below => "<",
        Direction::Above => ">",
    };
    format!("{side} {}", show_value(a.threshold, &a.unit))
}

fn value(a: &AlertView) -> String {
    a.value
        .map_or_else(|| "-".into(), |v| show_value(v, &a.unit))
}

fn figure(a: &AlertView) -> String {
    match &a.window {
        Some(w) => format!("{} {w}", a.watch),
        None => a.watch.clone(),
    }
}

/// The report as text, ages counted to `now_ms`.
pub(super) fn render_alerts(r: &AlertsReport, now_ms: i64) -> String {
    use Align::{Left, Right};
    let mut out = String::new();
    if r.open.is_empty() {
        out.push_str("no open alerts\n");
    } else {
        let columns = [
            ("rule", Left),
            ("queue", Left),
            ("state", Left),
            ("level", Right),
            ("severity", Left),
            ("since", Right),
            ("at level", Right),
            ("figure", Left),
            ("value", Right),
            ("line", Right),
        ];
        let cells: Vec<Vec<String>> = r
            .open
            .iter()
            .map(|a| {
                vec![
                    a.rule.clone(),
                    a.queue.clone(),
                    a.state.clone(),
                    a.level.to_string(),
                    a.severity.clone().unwrap_or_else(|| "-".into()),
                    duration(now_ms - a.since_ms),
                    a.level_since_ms
                        .map_or_else(|| "-".into(), |t| duration(now_ms - t)),
                    figure(a),
                    value(a),
                    line(a),
                ]
            })
            .collect();
        out.push_str(&render_table(&columns, &cells));
    }
    if !r.resolved.is_empty() {
        out.push_str("\nresolved\n");
        let columns = [
            ("rule", Left),
            ("queue", Left),
            ("level", Right),
            ("fired", Right),
            ("lasted", Right),
            ("figure", Left),
            ("value", Right),
            ("line", Right),
        ];
        let cells: Vec<Vec<String>> = r
            .resolved
            .iter()
            .map(|a| {
                let end = a.resolved_ms.unwrap_or(a.since_ms);
                vec![
                    a.rule.clone(),
                    a.queue.clone(),
                    a.level.to_string(),
                    format!("{} ago", duration(now_ms - a.since_ms)),
                    duration(end - a.since_ms),
                    figure(a),
                    value(a),
                    line(a),
                ]
            })
            .collect();
        out.push_str(&render_table(&columns, &cells));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::cells;
    use super::*;

    fn view(state: &str, level: usize) -> AlertView {
        AlertView {
            rule: "support-sl".into(),
            objective: Some("gold".into()),
            queue: "support".into(),
            watch: "service_level".into(),
            window: Some("15m".into()),
            state: state.into(),
            level,
            severity: (level > 0).then(|| "critical".into()),
            since_ms: 1_000_000,
            level_since_ms: (level > 0).then_some(1_600_000),
            resolved_ms: (state == "resolved").then_some(2_200_000),
            value: Some(0.712),
            threshold: 0.8,
            direction: Direction::Below,
            hysteresis: 0.05,
            unit: "fraction".into(),
        }
    }

    #[test]
    fn open_and_resolved_alerts_with_ages_values_and_lines() {
        assert_eq!(
            render_alerts(&AlertsReport::default(), 0),
            "no open alerts\n"
        );
        let r = AlertsReport {
            open: vec![view("firing", 2), view("pending", 0)],
            resolved: vec![view("resolved", 3)],
        };
        let text = render_alerts(&r, 1_900_000);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            cells(lines[1]),
            [
                "support-sl",
                "support",
                "firing",
                "2",
                "critical",
                "15m00s",
                "5m00s",
                "service_level 15m",
                "71.2 %",
                "< 80.0 %"
            ]
        );
        assert!(
            lines[2].contains("pending") && lines[2].contains(" - "),
            "{}",
            lines[2]
        );
        assert_eq!(lines[4], "resolved");
        let resolved = cells(lines[6]);
        assert_eq!(
            &resolved[..5],
            ["support-sl", "support", "3", "15m00s ago", "20m00s"]
        );
    }
}
