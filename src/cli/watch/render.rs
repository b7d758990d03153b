//! Drawing the wallboard: a header with the window and dimension shown, the daemon's state, one
//! row per key with its service level coloured against its target, and a footer of keys. The
//! cells are strings in the `metrics` table's formats, made by [`cells`].

use std::time::Instant;

use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use super::app::{Answer, App, Link, DIMENSIONS};
use super::poll::REFRESH;
use crate::cli::query::format::{duration, pct, secs};
use crate::cli::query::metrics_table::MAX_KEY_CHARS;
use crate::cli::query::table::truncate;
use crate::engine::MetricsRow;
use crate::printable::for_terminal;

/// Header lines above the notice: the title, the window and dimension choices.
const HEADER_LINES: u16 = 2;
/// Lines of the daemon's state: a headline and its reason (which may take two lines).
const NOTICE_LINES: u16 = 3;
/// Blanks between two columns.
const COLUMN_SPACING: usize = 2;
const FOOTER_LINES: u16 = 1;
/// The table's column titles line.
const TABLE_HEADER_LINES: u16 = 1;

/// The figure columns after the key, as `metrics` names them.
pub(super) const FIGURES: [&str; 10] = [
    "SL %",
    "target %",
    "offered",
    "waiting now",
    "longest wait now (s)",
    "ASA (s)",
    "abandon %",
    "AHT (s)",
    "talking now",
    "in ACW now",
];

const FOOTER: &str =
    "keys: 1-9 window  w/W next/previous window  d dimension  Up/Down/PgUp/PgDn scroll  r refresh  q/Esc quit";

/// Where a row's service level stands against its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Standing {
    /// At or above target.
    Met,
    Missed,
    /// No service level in this window (nothing to count yet).
    Unknown,
}

pub(super) fn standing(row: &MetricsRow) -> Standing {
    match row.figures.service_level {
        Some(sl) if sl >= row.params.target => Standing::Met,
        Some(_) => Standing::Missed,
        None => Standing::Unknown,
    }
}

/// The key (made printable and cut to the `metrics` table's width), then the [`FIGURES`].
pub(super) fn cells(row: &MetricsRow) -> [String; 11] {
    let (c, f, rt) = (&row.counts, &row.figures, &row.realtime);
    [
        truncate(&for_terminal(&row.key), MAX_KEY_CHARS),
        pct(f.service_level),
        pct(Some(row.params.target)),
        c.offered.to_string(),
        rt.waiting_now.to_string(),
        secs(rt.longest_wait_now_ms.map(|ms| ms as f64)),
        secs(f.asa_ms),
        pct(f.abandon_rate),
        secs(f.aht_ms),
        rt.talking_now.to_string(),
        rt.in_acw_now.to_string(),
    ]
}

/// Rows the table has room for on a terminal `height` lines tall.
pub(super) fn visible_rows(height: u16) -> usize {
    usize::from(
        height.saturating_sub(HEADER_LINES + NOTICE_LINES + FOOTER_LINES + TABLE_HEADER_LINES),
    )
}

pub(super) fn draw(frame: &mut Frame, app: &App, now: Instant) {
    let [title, choices, notice, table, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(NOTICE_LINES),
        Constraint::Min(0),
        Constraint::Length(FOOTER_LINES),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(title_line(app)), title);
    frame.render_widget(Paragraph::new(choices_line(app)), choices);
    frame.render_widget(
        Paragraph::new(notice_lines(app, now)).wrap(Wrap { trim: false }),
        notice,
    );
    draw_table(frame, app, table);
    frame.render_widget(
        Paragraph::new(footer_line(app, table)).style(Style::new().add_modifier(Modifier::DIM)),
        footer,
    );
}

fn title_line(app: &App) -> Line<'static> {
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let updated = app
        .updated
        .as_deref()
        .map_or_else(|| "not yet".to_string(), str::to_string);
    Line::from(vec![
        Span::styled("callmetrics watch", bold),
        Span::raw("  ·  "),
        Span::styled(format!("window {}", app.window_name()), bold),
        Span::raw("  ·  "),
        Span::styled(format!("by {}", app.dimension().name()), bold),
        Span::raw(format!(
            "  ·  {}  ·  updated {updated}",
            for_terminal(&app.socket)
        )),
    ])
}

/// The windows and dimensions, each with the key that picks it; the ones shown in reverse video.
fn choices_line(app: &App) -> Line<'static> {
    let chosen = Style::new().add_modifier(Modifier::REVERSED);
    let mut spans = vec![Span::raw("window ")];
    for (i, w) in app.windows().iter().enumerate() {
        let text = if i < 9 {
            format!(" {} {w} ", i + 1)
        } else {
            format!(" {w} ")
        };
        let style = if w == app.window_name() {
            chosen
        } else {
            Style::new()
        };
        spans.push(Span::styled(text, style));
    }
    spans.push(Span::raw("   dimension "));
    for d in DIMENSIONS {
        let style = if d == app.dimension() {
            chosen
        } else {
            Style::new()
        };
        spans.push(Span::styled(format!(" {} ", d.name()), style));
    }
    Line::from(spans)
}

fn notice_lines(app: &App, now: Instant) -> Vec<Line<'static>> {
    let alarm = Style::new()
        .fg(Color::White)
        .bg(Color::Red)
        .add_modifier(Modifier::BOLD);
    match &app.link {
        Link::Connecting => vec![Line::from(format!(
            "connecting to the daemon at {}…",
            for_terminal(&app.socket)
        ))],
        Link::Down {
            reason,
            since_clock,
            tries,
            ..
        } => vec![
            Line::styled(
                format!(
                    " daemon not reachable since {since_clock}: retrying every {}s ({tries} {}) ",
                    REFRESH.as_secs(),
                    if *tries == 1 { "try" } else { "tries" }
                ),
                alarm,
            ),
            Line::from(for_terminal(reason).into_owned()),
        ],
        Link::Up { .. } => {
            let mut lines = Vec::new();
            if let Some(back) = app.back_notice(now) {
                lines.push(Line::styled(
                    format!(
                        " daemon back at {}, after {} away ",
                        back.clock,
                        duration(back.away.as_millis() as i64)
                    ),
                    Style::new()
                        .fg(Color::Black)
                        .bg(Color::Green)
                        .add_modifier(Modifier::BOLD),
                ));
            }
            if let Answer::Refused(message) = &app.answer {
                lines.push(Line::styled(
                    format!("the daemon answered: {}", for_terminal(message)),
                    Style::new().fg(Color::Yellow),
                ));
            }
            lines
        }
    }
}

fn draw_table(frame: &mut Frame, app: &App, area: Rect) {
    let rows = match &app.answer {
        Answer::Rows(rows) if !rows.is_empty() => rows,
        other => {
            let text = match (other, &app.link) {
                (_, Link::Down { .. }) => "no figures while the daemon is not reachable",
                (Answer::Rows(_), _) => "no traffic in this window",
                _ => "",
            };
            frame.render_widget(Paragraph::new(text), area);
            return;
        }
    };
    let all: Vec<[String; 11]> = rows.iter().map(cells).collect();
    let mut widths: Vec<usize> = std::iter::once(app.dimension().name())
        .chain(FIGURES)
        .map(|h| h.chars().count())
        .collect();
    for row in &all {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // Columns that do not fit are left out whole, from the right, rather than squeezed until
    // their titles and figures are cut.
    let fit = fitting_columns(&widths, usize::from(area.width));
    widths.truncate(fit);
    let right = |s: String| Cell::from(Line::from(s).alignment(Alignment::Right));
    let header = Row::new(
        std::iter::once(Cell::from(app.dimension().name()))
            .chain(FIGURES.into_iter().map(|h| right(h.to_string())))
            .take(fit),
    )
    .style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let shown = rows
        .iter()
        .zip(all)
        .skip(app.scroll)
        .take(usize::from(area.height.saturating_sub(TABLE_HEADER_LINES)));
    let body = shown.map(|(row, cells)| {
        let sl_style = match standing(row) {
            Standing::Met => Style::new().fg(Color::Green).add_modifier(Modifier::BOLD),
            Standing::Missed => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            Standing::Unknown => Style::new(),
        };
        let mut cells = cells.into_iter();
        let key = cells.next().map(Cell::from);
        let sl = cells.next().map(|s| right(s).style(sl_style));
        Row::new(key.into_iter().chain(sl).chain(cells.map(right)).take(fit))
    });
    let constraints = widths
        .iter()
        .map(|w| Constraint::Length(u16::try_from(*w).unwrap_or(u16::MAX)));
    frame.render_widget(
        Table::new(body, constraints)
            .header(header)
            .column_spacing(COLUMN_SPACING as u16),
        area,
    );
}

/// How many of the columns `widths` wide fit side by side in `room` cells, the key and the
/// service level always (a terminal narrower than those cuts them).
pub(super) fn fitting_columns(widths: &[usize], room: usize) -> usize {
    let mut used = 0;
    let mut fit = 0;
    for (i, w) in widths.iter().enumerate() {
        used += w + if i == 0 { 0 } else { COLUMN_SPACING };
        if used > room && i >= 2 {
            break;
        }
        fit = i + 1;
    }
    fit
}

/// The keys, and which rows are shown when they do not all fit.
fn footer_line(app: &App, table: Rect) -> String {
    let total = match &app.answer {
        Answer::Rows(rows) => rows.len(),
        _ => 0,
    };
    let room = usize::from(table.height.saturating_sub(TABLE_HEADER_LINES));
    if total > room && room > 0 {
        let last = (app.scroll + room).min(total);
        format!("rows {}-{last} of {total}  {FOOTER}", app.scroll + 1)
    } else {
        FOOTER.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;
    use ratatui::Terminal;

    use super::super::super::query::fixtures::{busy, busy_support, row};
    use super::super::app::Fetched;
    use super::*;
    use crate::engine::{Agg, Realtime};

    fn rendered(app: &App, now: Instant, width: u16, height: u16) -> (Vec<String>, Buffer) {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| draw(f, app, now)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        let lines = (0..height)
            .map(|y| {
                (0..width)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect::<String>()
                    .trim_end()
                    .to_string()
            })
            .collect();
        (lines, buffer)
    }

    /// The foreground colour of the cell where `needle` starts on the line `y`.
    fn colour_at(lines: &[String], buffer: &Buffer, y: usize, needle: &str) -> Color {
        let x = lines[y]
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not on line {y}: {:?}", lines[y]));
        let x = lines[y][..x].chars().count();
        buffer[(x as u16, y as u16)].fg
    }

    #[test]
    fn cells_are_the_metrics_tables_formats_with_dashes_for_nulls() {
        // busy(): SL (offered) = 8 / (8 + 2 - 0) = 0.8; ASA = 96 s / 8; abandon = 2 / 10;
        // AHT = 8 × 90 s / 8.
        assert_eq!(
            cells(&busy_support()),
            ["support", "80.0", "80.0", "10", "3", "61.5", "12.0", "20.0", "90.0", "4", "1"]
        );
        assert_eq!(
            cells(&row("idle", Agg::default(), Realtime::default())),
            ["idle", "-", "80.0", "0", "0", "-", "-", "-", "-", "0", "0"]
        );
        let odd = row(
            "a\u{1b}[2J-very-long-queue-name-indeed",
            busy(),
            Realtime::default(),
        );
        let key = &cells(&odd)[0];
        assert!(!key.contains('\u{1b}'), "{key:?}");
        assert_eq!(key.chars().count(), MAX_KEY_CHARS);
    }

    #[test]
    fn the_service_level_stands_against_its_target() {
        let mut r = busy_support();
        assert_eq!(standing(&r), Standing::Met, "0.8 against 0.8 is met");
        r.params.target = 0.81;
        assert_eq!(standing(&r), Standing::Missed);
        r.figures.service_level = None;
        assert_eq!(standing(&r), Standing::Unknown);
    }

    #[test]
    fn the_screen_shows_the_rows_coloured_and_the_keys() {
        let mut app = App::new("/tmp/c.sock".into());
        let mut missed = row("sales", busy(), Realtime::default());
        missed.params.target = 0.9;
        let t = Instant::now();
        app.on_fetch(
            Fetched::Rows {
                query: app.query(),
                rows: vec![missed, busy_support()],
            },
            t,
            "10:00:00",
        );
        let (lines, buffer) = rendered(&app, t, 160, 12);
        assert!(
            lines[0].starts_with(
                "callmetrics watch  ·  window 5m  ·  by queue  ·  /tmp/c.sock  ·  updated 10:00:00"
            ),
            "{lines:#?}"
        );
        assert!(lines[1].contains(" 5 today "), "{lines:#?}");
        let header = lines.iter().position(|l| l.starts_with("queue")).unwrap();
        assert!(lines[header].ends_with("in ACW now"), "{lines:#?}");
        let sales = &lines[header + 1];
        let cols: Vec<&str> = sales.split_whitespace().collect();
        assert_eq!(
            cols,
            ["sales", "80.0", "90.0", "10", "0", "-", "12.0", "20.0", "90.0", "0", "0"],
            "{lines:#?}"
        );
        assert_eq!(colour_at(&lines, &buffer, header + 1, "80.0"), Color::Red);
        assert_eq!(colour_at(&lines, &buffer, header + 2, "80.0"), Color::Green);
        // Figures are right-aligned under their titles.
        // (AHT is the last 90.0 of the line: the target comes before it.)
        let end = |line: &str, s: &str| line.rfind(s).unwrap() + s.len();
        assert_eq!(
            end(&lines[header], "AHT (s)"),
            end(sales, "90.0"),
            "{lines:#?}"
        );
        assert!(lines[11].starts_with("keys: 1-9 window"), "{lines:#?}");
    }

    #[test]
    fn the_daemon_away_and_back_is_said_on_screen() {
        let mut app = App::new("/tmp/c.sock".into());
        let t = Instant::now();
        let reason = "cannot reach the callmetrics daemon at /tmp/c.sock: Connection refused (the socket file exists but nothing listens)";
        app.on_fetch(Fetched::Unreachable(reason.into()), t, "10:00:00");
        let (lines, buffer) = rendered(&app, t, 80, 10);
        assert!(
            lines[2].contains("daemon not reachable since 10:00:00: retrying every 1s (1 try)"),
            "{lines:#?}"
        );
        assert_eq!(buffer[(1, 2)].bg, Color::Red);
        // The reason is wrapped onto the next line rather than cut.
        assert_eq!(format!("{} {}", lines[3], lines[4]), reason, "{lines:#?}");
        assert_eq!(lines[5], "no figures while the daemon is not reachable");

        let back = t + Duration::from_secs(65);
        app.on_fetch(
            Fetched::Rows {
                query: app.query(),
                rows: vec![],
            },
            back,
            "10:01:05",
        );
        let (lines, _) = rendered(&app, back, 120, 10);
        assert!(
            lines[2].contains("daemon back at 10:01:05, after 1m05s away"),
            "{lines:#?}"
        );
        assert_eq!(lines[5], "no traffic in this window");
        let (lines, _) = rendered(&app, back + Duration::from_secs(60), 120, 10);
        assert_eq!(lines[2], "", "{lines:#?}");
    }

    #[test]
    fn columns_that_do_not_fit_are_left_out_whole() {
        // 5 + 2 + 4 + 2 + 8 = 21 for three columns.
        let widths = [5, 4, 8, 7];
        assert_eq!(fitting_columns(&widths, 100), 4);
        assert_eq!(fitting_columns(&widths, 30), 4);
        assert_eq!(fitting_columns(&widths, 29), 3);
        assert_eq!(fitting_columns(&widths, 21), 3);
        assert_eq!(fitting_columns(&widths, 20), 2);
        // The key and the service level stay, however narrow.
        assert_eq!(fitting_columns(&widths, 3), 2);

        let mut app = App::new("s".into());
        let t = Instant::now();
        app.on_fetch(
            Fetched::Rows {
                query: app.query(),
                rows: vec![busy_support()],
            },
            t,
            "10:00:00",
        );
        let (lines, _) = rendered(&app, t, 60, 10);
        let header = lines.iter().position(|l| l.starts_with("queue")).unwrap();
        // queue 7, SL % 4, target % 8, offered 7, waiting now 11, longest wait now (s) 20:
        // 7 + 6 + 10 + 9 + 13 = 45, and the next column would reach 67.
        assert_eq!(
            lines[header], "queue    SL %  target %  offered  waiting now",
            "{lines:#?}"
        );
        assert_eq!(
            lines[header + 1].split_whitespace().collect::<Vec<_>>(),
            ["support", "80.0", "80.0", "10", "3"]
        );
    }

    #[test]
    fn rows_past_the_screen_are_reached_by_scrolling() {
        let mut app = App::new("s".into());
        let rows: Vec<MetricsRow> = (0..20)
            .map(|i| row(&format!("q{i:02}"), busy(), Realtime::default()))
            .collect();
        let t = Instant::now();
        app.on_fetch(
            Fetched::Rows {
                query: app.query(),
                rows,
            },
            t,
            "10:00:00",
        );
        let height = 12;
        app.set_page(visible_rows(height));
        // Title, choices, three notice lines, the table's titles, the footer.
        assert_eq!(visible_rows(height), 5);
        app.on_key(ratatui::crossterm::event::KeyEvent::from(
            ratatui::crossterm::event::KeyCode::End,
        ));
        let (lines, _) = rendered(&app, t, 160, height);
        let keys: Vec<&str> = lines[6..11]
            .iter()
            .map(|l| l.split_whitespace().next().unwrap_or(""))
            .collect();
        assert_eq!(keys, ["q15", "q16", "q17", "q18", "q19"], "{lines:#?}");
        assert!(
            lines[11].starts_with("rows 16-20 of 20  keys:"),
            "{lines:#?}"
        );
    }
}
