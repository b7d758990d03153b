//! The `metrics` table: one row per key, counts and figures side by side.

use super::format::{pct, secs};
use super::table::{render_table, truncate, Align};
use crate::engine::{Agg, Figures, MetricsQuery, MetricsRow};

/// Keys longer than this are cut so one long agent name cannot push the figures off screen.
pub(in crate::cli) const MAX_KEY_CHARS: usize = 24;

/// The counts and figures a row shows, in `metrics` and `report` alike.
pub(super) const FIGURE_COLUMNS: [(&str, Align); 9] = [
    ("offered", Align::Right),
    ("answered", Align::Right),
    ("abandoned", Align::Right),
    ("overflow", Align::Right),
    ("SL %", Align::Right),
    ("ASA (s)", Align::Right),
    ("AHT (s)", Align::Right),
    ("abandon %", Align::Right),
    ("p90 wait (s)", Align::Right),
];

/// The cells of [`FIGURE_COLUMNS`].
pub(super) fn figure_cells(c: &Agg, f: &Figures) -> [String; 9] {
    [
        c.offered.to_string(),
        c.answered.to_string(),
        c.abandoned.to_string(),
        c.overflow.to_string(),
        pct(f.service_level),
        secs(f.asa_ms),
        secs(f.aht_ms),
        pct(f.abandon_rate),
        secs(f.wait_p90_ms),
    ]
}

pub(super) fn render_metrics(query: &MetricsQuery, rows: &[MetricsRow]) -> String {
    let window = rows
        .first()
        .map(|r| r.window.as_str())
        .or(query.window.as_deref())
        .unwrap_or("default");
    let mut out = format!("window {window} · by {}\n", query.by.name());
    if rows.is_empty() {
        out.push_str("no traffic in this window\n");
        return out;
    }
    use Align::{Left, Right};
    let mut columns = vec![("key", Left)];
    columns.extend(FIGURE_COLUMNS);
    columns.extend([
        ("waiting now", Right),
        ("longest wait now (s)", Right),
        ("talking now", Right),
        ("in ACW now", Right),
        ("agents needed", Right),
    ]);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let rt = &r.realtime;
            let mut cells = vec![truncate(&r.key, MAX_KEY_CHARS)];
            cells.extend(figure_cells(&r.counts, &r.figures));
            cells.extend([
                rt.waiting_now.to_string(),
                secs(rt.longest_wait_now_ms.map(|ms| ms as f64)),
                rt.talking_now.to_string(),
                rt.in_acw_now.to_string(),
                rt.agents_needed
                    .map_or_else(|| "-".into(), |n| n.to_string()),
            ]);
            cells
        })
        .collect();
    out.push_str(&render_table(&columns, &cells));
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{busy, busy_support, cell_ends, cells, query, row};
    use super::*;
    use crate::engine::{Agg, DimKind, Realtime};

    #[test]
    fn metrics_table_shows_fractions_as_percent_and_nulls_as_dashes() {
        let rows = [
            busy_support(),
            row("idle", Agg::default(), Realtime::default()),
        ];
        // Independent arithmetic: SL (offered) = 8 / (8 + 2 - 0) = 0.8; abandon rate = 2 / 10.
        assert_eq!(rows[0].figures.service_level, Some(0.8));
        let text = render_metrics(&query(DimKind::Queue), &rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "window 15m · by queue");
        let support = cells(lines[2]);
        assert_eq!(
            support,
            [
                "support", "10", "8", "2", "0", "80.0", "12.0", "90.0", "20.0", "-", "3", "61.5",
                "4", "1", "-"
            ],
            "{text}"
        );
        let idle = cells(lines[3]);
        assert_eq!(
            idle,
            ["idle", "0", "0", "0", "0", "-", "-", "-", "-", "-", "0", "-", "0", "0", "-"],
            "{text}"
        );
    }

    #[test]
    fn metrics_columns_line_up_and_long_keys_are_cut() {
        let long = "a-very-long-queue-name-that-goes-on-and-on";
        let rows = [
            row(long, busy(), Realtime::default()),
            row("x", Agg::default(), Realtime::default()),
        ];
        let text = render_metrics(&query(DimKind::Queue), &rows);
        let lines: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(lines.len(), 3, "{text}");
        let cut = format!("{}…", &long[..23]);
        assert!(lines[1].starts_with(&format!("{cut}  ")), "{text}");
        assert_eq!(cut.chars().count(), MAX_KEY_CHARS);
        // Every figure column is right-aligned under its header, so each cell ends where the header does.
        let header_ends = cell_ends(lines[0]);
        assert_eq!(header_ends.len(), 15, "{text}");
        for line in &lines[1..] {
            assert_eq!(line.chars().count(), lines[0].chars().count(), "{text}");
            assert_eq!(cell_ends(line)[1..], header_ends[1..], "{text}");
        }
    }

    #[test]
    fn empty_metrics_say_so() {
        let text = render_metrics(&query(DimKind::Agent), &[]);
        assert_eq!(text, "window 15m · by agent\nno traffic in this window\n");
    }
}
