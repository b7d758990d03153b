//! The `report` table: one line per period and key, counts and figures side by side, under a
//! heading that says what the report covers and up to when the history is complete.

use super::format::secs;
use super::metrics_table::{figure_cells, FIGURE_COLUMNS, MAX_KEY_CHARS};
use super::table::{render_table, truncate, Align};
use crate::history::report::Report;

pub(super) fn render_report(r: &Report) -> String {
    let mut out = format!(
        "{} to {} ({}) · by {} · {} rows · {} hours · complete until {}\n",
        r.from,
        r.to,
        r.time_zone,
        r.by.name(),
        dimension_label(r),
        r.hours,
        r.complete_until.as_deref().unwrap_or("nothing closed yet"),
    );
    if r.rows.is_empty() {
        out.push_str("no closed interval in this range yet\n");
        return out;
    }
    let mut columns = vec![("period", Align::Left), ("key", Align::Left)];
    columns.extend(FIGURE_COLUMNS);
    columns.push(("max wait (s)", Align::Right));
    let cells: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|row| {
            let c = &row.row.counts;
            let mut cells = vec![
                // `2026-11-30T00:00:00+01:00` → `2026-11-30 00:00`: the offset is in the heading's zone.
                row.start.get(..16).unwrap_or(&row.start).replace('T', " "),
                truncate(&row.row.key, MAX_KEY_CHARS),
            ];
            cells.extend(figure_cells(c, &row.row.figures));
            cells.push(secs((c.offered > 0).then_some(c.wait_max_ms as f64)));
            cells
        })
        .collect();
    out.push_str(&render_table(&columns, &cells));
    out
}

/// The rows' dimension as the heading says it: tag rows with their tag names.
fn dimension_label(r: &Report) -> String {
    if r.tags.is_empty() {
        r.dimension.name().to_string()
    } else {
        format!("{} ({})", r.dimension.name(), r.tags.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::report::{Realtime, RowParams};
    use crate::engine::{Agg, DimKind, Figures, MetricsRow};
    use crate::history::period::PeriodKind;
    use crate::history::report::ReportRow;
    use crate::units::Formula;

    #[test]
    fn a_period_per_line_with_its_figures() {
        let counts = Agg {
            offered: 4,
            answered: 3,
            answered_within: 3,
            abandoned: 1,
            wait_sum_ms: 30_000,
            wait_max_ms: 40_000,
            ..Agg::default()
        };
        let figures = Figures::of(&counts, Formula::Offered);
        let report = Report {
            time_zone: "Europe/Paris".into(),
            from: jiff::civil::Date::constant(2026, 11, 30),
            to: jiff::civil::Date::constant(2026, 11, 30),
            by: PeriodKind::Day,
            dimension: DimKind::Queue,
            hours: "all".into(),
            complete_until_ms: Some(0),
            complete_until: Some("2026-11-30T10:15:00+01:00".into()),
            rows: vec![ReportRow {
                start_ms: 0,
                end_ms: 1,
                start: "2026-11-30T00:00:00+01:00".into(),
                end: "2026-12-01T00:00:00+01:00".into(),
                row: MetricsRow {
                    window: "day".into(),
                    dimension: DimKind::Queue,
                    key: "support".into(),
                    counts,
                    figures,
                    params: RowParams {
                        threshold_ms: 20_000,
                        short_abandon_ms: 5_000,
                        formula: Formula::Offered,
                        target: 0.8,
                    },
                    realtime: Realtime::default(),
                },
            }],
            tags: Vec::new(),
        };
        let text = render_report(&report);
        assert!(
            text.contains("complete until 2026-11-30T10:15:00+01:00"),
            "{text}"
        );
        let line = text.lines().nth(2).unwrap();
        // SL 3 / (3 + 1) = 75 %, ASA 10 s, max wait 40 s.
        assert!(line.starts_with("2026-11-30 00:00  support"), "{line}");
        for cell in ["75.0", "10.0", "40.0"] {
            assert!(line.contains(cell), "{cell}: {line}");
        }
    }
}
