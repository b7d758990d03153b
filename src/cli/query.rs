//! The client subcommands that ask the daemon over its control socket (`status`, `metrics`,
//! `calls`, `flush`, `reload`) and print the answer as a human table or, with `--json`, as JSON.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use thiserror::Error;

use crate::control::client::{request, ClientError};
use crate::control::protocol::{OutboxEntry, Request, Response, StatusReport};
use crate::engine::segment::Phase;
use crate::engine::{MetricsQuery, MetricsRow, OpenSegment};

/// Why a client subcommand failed; the caller prints `error: {e}` and exits with [`CliError::exit_code`].
#[derive(Debug, Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The daemon understood the request and refused it, saying why.
    #[error("the daemon answered: {0}")]
    Daemon(String),
    #[error("the daemon answered {request} with a {got} response; is the CLI the same version as the daemon?")]
    Unexpected {
        request: &'static str,
        got: &'static str,
    },
    #[error("cannot read {path}: {source}")]
    Input { path: String, source: io::Error },
    /// Talking to the event socket went wrong after connecting (for `send`).
    #[error("{0}")]
    EventSocket(String),
    #[error("cannot write the output: {0}")]
    Output(#[from] io::Error),
}

impl CliError {
    /// 1 when the daemon answered with an error; 2 when it could not be asked or the exchange failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Daemon(_) => 1,
            _ => 2,
        }
    }
}

/// Sends `req`, turning the daemon's `Error` answer into [`CliError::Daemon`].
async fn ask(socket: &Path, req: &Request) -> Result<Response, CliError> {
    match request(socket, req).await? {
        Response::Error(msg) => Err(CliError::Daemon(msg)),
        resp => Ok(resp),
    }
}

fn unexpected(request: &'static str, resp: &Response) -> CliError {
    let got = match resp {
        Response::Status(_) => "status",
        Response::Metrics(_) => "metrics",
        Response::Calls(_) => "calls",
        Response::Outbox(_) => "outbox",
        Response::Done(_) => "done",
        Response::Error(_) => "error",
    };
    CliError::Unexpected { request, got }
}

/// Writes `value` as compact JSON followed by a newline, in one write (standard output is not
/// buffered: serialising into it directly cost a system call per token).
fn write_json(out: &mut impl Write, value: &impl serde::Serialize) -> Result<(), CliError> {
    let mut text = serde_json::to_vec(value).map_err(io::Error::from)?;
    text.push(b'\n');
    out.write_all(&text)?;
    out.flush()?;
    Ok(())
}

fn write_text(out: &mut impl Write, text: &str) -> Result<(), CliError> {
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// `callmetrics status`: daemon health and counters.
pub async fn status(socket: &Path, json: bool) -> Result<ExitCode, CliError> {
    status_to(socket, json, &mut io::stdout()).await
}

async fn status_to(socket: &Path, json: bool, out: &mut impl Write) -> Result<ExitCode, CliError> {
    let report = match ask(socket, &Request::Status).await? {
        Response::Status(r) => r,
        other => return Err(unexpected("status", &other)),
    };
    if json {
        write_json(out, &report)?;
    } else {
        write_text(out, &render_status(&report))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `callmetrics metrics`: one row per key of the asked dimension over the asked window.
pub async fn metrics(socket: &Path, query: MetricsQuery, json: bool) -> Result<ExitCode, CliError> {
    metrics_to(socket, query, json, &mut io::stdout()).await
}

async fn metrics_to(
    socket: &Path,
    query: MetricsQuery,
    json: bool,
    out: &mut impl Write,
) -> Result<ExitCode, CliError> {
    let rows = match ask(socket, &Request::Metrics(query.clone())).await? {
        Response::Metrics(rows) => rows,
        other => return Err(unexpected("metrics", &other)),
    };
    if json {
        // The names of docs/metrics.md come from `to_json`, not from the Rust field layout.
        let rows: Vec<_> = rows.iter().map(MetricsRow::json_view).collect();
        write_json(out, &rows)?;
    } else {
        write_text(out, &render_metrics(&query, &rows))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `callmetrics calls`: the open segments, longest first.
pub async fn calls(socket: &Path, json: bool) -> Result<ExitCode, CliError> {
    calls_to(socket, json, &mut io::stdout()).await
}

async fn calls_to(socket: &Path, json: bool, out: &mut impl Write) -> Result<ExitCode, CliError> {
    let mut segs = match ask(socket, &Request::Calls).await? {
        Response::Calls(segs) => segs,
        other => return Err(unexpected("calls", &other)),
    };
    // The daemon lists them in no particular order; the oldest is what an operator looks for.
    segs.sort_by(|a, b| {
        b.age_ms
            .cmp(&a.age_ms)
            .then_with(|| a.call_id.cmp(&b.call_id))
    });
    if json {
        write_json(out, &segs)?;
    } else {
        write_text(out, &render_calls(&segs))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `callmetrics outbox`: records waiting to be shipped upstream.
pub async fn outbox(socket: &Path, json: bool) -> Result<ExitCode, CliError> {
    let entries = match ask(socket, &Request::Outbox { limit: 10_000 }).await? {
        Response::Outbox(e) => e,
        other => return Err(unexpected("outbox", &other)),
    };
    let mut out = io::stdout();
    if json {
        write_json(&mut out, &entries)?;
    } else {
        write_text(&mut out, &render_outbox(&entries))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn render_outbox(entries: &[OutboxEntry]) -> String {
    if entries.is_empty() {
        return "the outbox is empty: every closed interval was delivered\n".into();
    }
    use Align::{Left, Right};
    let columns = [
        ("seq", Right),
        ("kind", Left),
        ("interval start", Left),
        ("length", Right),
        ("dimension", Left),
        ("key", Left),
        ("offered", Right),
        ("waiting for", Left),
    ];
    let cells: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                format!("{:?}", e.kind).to_lowercase(),
                jiff::Timestamp::from_millisecond(e.interval_start_ms)
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                duration(e.interval_ms),
                e.dimension.name().to_string(),
                e.key.clone(),
                e.offered.to_string(),
                e.waiting_for.join(", "),
            ]
        })
        .collect();
    render_table(&columns, &cells)
}

/// `callmetrics flush`: checkpoint the store and ship every ended interval now.
pub async fn flush(socket: &Path) -> Result<ExitCode, CliError> {
    done_to(socket, Request::Flush, "flush", &mut io::stdout()).await
}

/// `callmetrics reload`: the daemon re-reads its config file.
pub async fn reload(socket: &Path) -> Result<ExitCode, CliError> {
    done_to(socket, Request::Reload, "reload", &mut io::stdout()).await
}

async fn done_to(
    socket: &Path,
    req: Request,
    name: &'static str,
    out: &mut impl Write,
) -> Result<ExitCode, CliError> {
    match ask(socket, &req).await? {
        Response::Done(text) => write_text(out, &format!("{text}\n"))?,
        other => return Err(unexpected(name, &other)),
    }
    Ok(ExitCode::SUCCESS)
}

// ---- rendering: pure functions of the daemon's answer ----

/// Keys longer than this are cut so one long agent name cannot push the figures off screen.
const MAX_KEY_CHARS: usize = 24;

#[derive(Clone, Copy, PartialEq)]
enum Align {
    Left,
    Right,
}

/// Columns padded to their widest cell (header included), two spaces apart, no trailing blanks.
fn render_table(columns: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = columns.iter().map(|(h, _)| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header: Vec<String> = columns.iter().map(|(h, _)| h.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, ((cell, w), (_, align))) in row.iter().zip(&widths).zip(columns).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            // `{:<w$}` pads by chars, matching the char counts above.
            match align {
                Align::Left => write!(line, "{cell:<w$}"),
                Align::Right => write!(line, "{cell:>w$}"),
            }
            .ok(); // Writing to a String cannot fail.
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// A duration in milliseconds as seconds with one decimal, `-` when there is none.
fn secs(ms: Option<f64>) -> String {
    ms.map_or_else(|| "-".into(), |ms| format!("{:.1}", ms / 1000.0))
}

/// A fraction 0..1 as a percentage with one decimal, `-` when there is none.
fn pct(frac: Option<f64>) -> String {
    frac.map_or_else(|| "-".into(), |f| format!("{:.1}", f * 100.0))
}

/// `45s`, `1m05s`, `2h03m09s`, `3d04h05m`: compact and sortable by eye.
fn duration(ms: i64) -> String {
    if ms < 0 {
        // Possible when the source clock runs ahead of the daemon's.
        return format!("-{}", duration(ms.saturating_neg()));
    }
    let s = ms / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d{h:02}h{m:02}m")
    } else if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Waiting => "waiting",
        Phase::Talking => "talking",
        Phase::OnHold => "on hold",
        Phase::InAcw => "in ACW",
    }
}

/// `name n, name n`; `none` when empty.
fn counts<'a>(items: impl IntoIterator<Item = (&'a String, &'a u64)>) -> String {
    let parts: Vec<String> = items.into_iter().map(|(k, v)| format!("{k} {v}")).collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

fn render_metrics(query: &MetricsQuery, rows: &[MetricsRow]) -> String {
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
    let columns = [
        ("key", Left),
        ("offered", Right),
        ("answered", Right),
        ("abandoned", Right),
        ("overflow", Right),
        ("SL %", Right),
        ("ASA (s)", Right),
        ("AHT (s)", Right),
        ("abandon %", Right),
        ("p90 wait (s)", Right),
        ("waiting now", Right),
        ("longest wait now (s)", Right),
        ("talking now", Right),
        ("in ACW now", Right),
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let (c, f, rt) = (&r.counts, &r.figures, &r.realtime);
            vec![
                truncate(&r.key, MAX_KEY_CHARS),
                c.offered.to_string(),
                c.answered.to_string(),
                c.abandoned.to_string(),
                c.overflow.to_string(),
                pct(f.service_level),
                secs(f.asa_ms),
                secs(f.aht_ms),
                pct(f.abandon_rate),
                secs(f.wait_p90_ms),
                rt.waiting_now.to_string(),
                secs(rt.longest_wait_now_ms.map(|ms| ms as f64)),
                rt.talking_now.to_string(),
                rt.in_acw_now.to_string(),
            ]
        })
        .collect();
    out.push_str(&render_table(&columns, &cells));
    out
}

fn render_calls(segs: &[OpenSegment]) -> String {
    if segs.is_empty() {
        return "no open calls\n".into();
    }
    use Align::{Left, Right};
    let columns = [
        ("call_id", Left),
        ("queue", Left),
        ("channel", Left),
        ("agent", Left),
        ("phase", Left),
        ("age", Right),
        ("in phase", Right),
    ];
    let cells: Vec<Vec<String>> = segs
        .iter()
        .map(|s| {
            vec![
                s.call_id.clone(),
                s.queue.clone(),
                s.channel.clone(),
                s.agent.clone().unwrap_or_else(|| "-".into()),
                phase_name(s.phase).into(),
                duration(s.age_ms),
                duration(s.phase_age_ms),
            ]
        })
        .collect();
    render_table(&columns, &cells)
}

fn render_status(r: &StatusReport) -> String {
    let (i, e, s, l) = (&r.ingest, &r.engine, &r.store, &r.limits);
    let rejected: u64 = i.events_rejected.values().sum();
    let rejected = if rejected == 0 {
        "0 rejected".to_string()
    } else {
        format!("{rejected} rejected ({})", counts(&i.events_rejected))
    };
    let store_share = if s.max_bytes > 0 {
        format!(
            " ({:.1} %)",
            s.size_bytes as f64 * 100.0 / s.max_bytes as f64
        )
    } else {
        String::new()
    };
    let checkpoint = s.last_checkpoint_age_ms.map_or_else(
        || "no checkpoint yet".into(),
        |ms| format!("last checkpoint {} ago", duration(ms)),
    );
    let mut lines: Vec<(&str, String)> = vec![
        ("event socket", r.event_socket.clone()),
        ("control socket", r.control_socket.clone()),
        ("time zone", r.time_zone.clone()),
        ("windows", r.windows.join(", ")),
        (
            "events",
            format!("{} accepted, {rejected}", i.events_accepted),
        ),
        (
            "connections",
            format!(
                "{} open, {} total, {} refused, {} framing errors",
                i.connections_open, i.connections_total, i.connections_refused, i.framing_errors
            ),
        ),
        (
            "engine",
            format!(
                "{} accepted, {} duplicates, {} late, {} refused at the open-segment limit",
                e.accepted, e.duplicates, e.late, e.rejected_open_segment_limit
            ),
        ),
        (
            "open now",
            format!("{} segments in {} calls", e.open_segments, e.open_calls),
        ),
        (
            "expired",
            format!(
                "{} segments, {} orphan events",
                e.expired_segments, e.expired_orphan_events
            ),
        ),
        (
            "remembered",
            format!("{} finished calls", e.remembered_calls),
        ),
        ("keys", counts(&e.keys)),
    ];
    if !e.overflowed.is_empty() {
        lines.push((
            "over key limit",
            format!("{} (segments counted under (other))", counts(&e.overflowed)),
        ));
    }
    lines.push((
        "store",
        format!(
            "{}: {} of {}{store_share}, {} groups logged, {checkpoint}",
            s.path,
            bytes(s.size_bytes),
            bytes(s.max_bytes),
            s.logged_groups
        ),
    ));
    lines.push((
        "limits",
        format!(
            "line {}, frame {}, strings {}, {} tags, {} events per batch, {} connections, {} open segments",
            bytes(l.max_line_bytes as u64),
            bytes(l.max_frame_bytes as u64),
            bytes(l.max_string_bytes as u64),
            l.max_tags,
            l.max_batch_events,
            l.max_connections,
            l.max_open_segments
        ),
    ));
    let u = &r.upstream;
    if u.sinks.is_empty() {
        lines.push(("upstream", "no sinks configured".into()));
    } else {
        lines.push((
            "upstream",
            format!(
                "host {}; outbox {} records, {}; {} dropped when full",
                u.host_id,
                u.outbox_records,
                bytes(u.outbox_bytes),
                u.dropped_records
            ),
        ));
        for sink in &u.sinks {
            let success = sink.last_success_ms.map_or_else(
                || "never delivered".to_string(),
                |ms| {
                    format!(
                        "last delivery {} ago",
                        duration(crate::daemon::wall_ms() - ms)
                    )
                },
            );
            let oldest = sink.oldest_waiting_ms.map_or_else(String::new, |ms| {
                format!(", oldest waiting {}", duration(ms))
            });
            let error = sink.last_error.as_ref().map_or_else(String::new, |e| {
                let ago = sink.last_error_ms.map_or_else(String::new, |ms| {
                    format!(" {} ago", duration(crate::daemon::wall_ms() - ms))
                });
                format!("; last error{ago}: {e}")
            });
            lines.push((
                "  sink",
                format!(
                    "{} ({} {}): backlog {} records, {}{oldest}; {} delivered, {} retries, {} dead letters; {success}{error}",
                    sink.name,
                    sink.kind,
                    sink.url,
                    sink.backlog_records,
                    bytes(sink.backlog_bytes),
                    sink.delivered_records,
                    sink.retries,
                    sink.dead_letters
                ),
            ));
        }
    }
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = format!(
        "callmetrics {}, up {}\n",
        r.version,
        duration(r.uptime_ms as i64)
    );
    for (k, v) in lines {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "{k:<width$}  {v}");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use tokio::net::UnixListener;
    use tokio::sync::watch;

    use super::*;
    use crate::config::{Formula, LimitsConfig};
    use crate::control::protocol::StoreStatus;
    use crate::control::server::{serve, Handler};
    use crate::engine::{Agg, DimKind, EngineStats, Figures, Realtime, RowParams};
    use crate::ingest::IngestCounters;

    fn query(by: DimKind) -> MetricsQuery {
        MetricsQuery {
            window: Some("15m".into()),
            by,
            key: None,
        }
    }

    fn row(key: &str, counts: Agg, realtime: Realtime) -> MetricsRow {
        MetricsRow {
            window: "15m".into(),
            dimension: DimKind::Queue,
            key: key.into(),
            figures: Figures::of(&counts, Formula::Offered),
            counts,
            params: RowParams {
                threshold_ms: 20_000,
                short_abandon_ms: 5_000,
                formula: Formula::Offered,
                target: 0.8,
            },
            realtime,
        }
    }

    /// 10 offered: 8 answered (all within T, 12 s wait each on average), 2 abandoned (not short).
    fn busy() -> Agg {
        Agg {
            offered: 10,
            answered: 8,
            answered_within: 8,
            abandoned: 2,
            handled: 8,
            wait_sum_ms: 8 * 12_000,
            talk_sum_ms: 8 * 90_000,
            ..Default::default()
        }
    }

    /// The cells of a rendered table line, split on runs of 2+ spaces.
    fn cells(line: &str) -> Vec<&str> {
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect()
    }

    /// Char column where each cell of `line` ends: a non-blank followed by two blanks or the end.
    fn cell_ends(line: &str) -> Vec<usize> {
        let chars: Vec<char> = line.chars().chain("  ".chars()).collect();
        (0..chars.len() - 2)
            .filter(|&i| chars[i] != ' ' && chars[i + 1] == ' ' && chars[i + 2] == ' ')
            .collect()
    }

    #[test]
    fn metrics_table_shows_fractions_as_percent_and_nulls_as_dashes() {
        let rows = [
            row(
                "support",
                busy(),
                Realtime {
                    waiting_now: 3,
                    longest_wait_now_ms: Some(61_500),
                    talking_now: 4,
                    in_acw_now: 1,
                },
            ),
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
                "4", "1"
            ],
            "{text}"
        );
        let idle = cells(lines[3]);
        assert_eq!(
            idle,
            ["idle", "0", "0", "0", "0", "-", "-", "-", "-", "-", "0", "-", "0", "0"],
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
        assert_eq!(header_ends.len(), 14, "{text}");
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

    #[test]
    fn durations_read_like_clocks() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(45_999), "45s");
        assert_eq!(duration(65_000), "1m05s");
        assert_eq!(duration(2 * 3_600_000 + 3 * 60_000 + 9_000), "2h03m09s");
        assert_eq!(
            duration(3 * 86_400_000 + 4 * 3_600_000 + 5 * 60_000),
            "3d04h05m"
        );
        assert_eq!(duration(-5_000), "-5s");
        assert_eq!(duration(i64::MIN).chars().next(), Some('-'));
    }

    #[test]
    fn calls_table_lists_every_field_and_says_when_empty() {
        assert_eq!(render_calls(&[]), "no open calls\n");
        let segs = [
            OpenSegment {
                call_id: "c-1".into(),
                queue: "support".into(),
                channel: "voice".into(),
                agent: None,
                phase: Phase::Waiting,
                age_ms: 65_000,
                phase_age_ms: 65_000,
            },
            OpenSegment {
                call_id: "call-0002".into(),
                queue: "sales".into(),
                channel: "chat".into(),
                agent: Some("alice".into()),
                phase: Phase::OnHold,
                age_ms: 3_725_000,
                phase_age_ms: 5_000,
            },
        ];
        let text = render_calls(&segs);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            cells(lines[0]),
            ["call_id", "queue", "channel", "agent", "phase", "age", "in phase"]
        );
        assert_eq!(
            cells(lines[1]),
            ["c-1", "support", "voice", "-", "waiting", "1m05s", "1m05s"]
        );
        assert_eq!(
            cells(lines[2]),
            [
                "call-0002",
                "sales",
                "chat",
                "alice",
                "on hold",
                "1h02m05s",
                "5s"
            ]
        );
        // Left-aligned columns start together.
        let at = |l: &str, s: &str| l.find(s).unwrap();
        assert_eq!(at(lines[1], "support"), at(lines[0], "queue"));
        assert_eq!(at(lines[2], "sales"), at(lines[0], "queue"));
        assert_eq!(at(lines[2], "alice"), at(lines[0], "agent"));
    }

    fn report() -> StatusReport {
        StatusReport {
            version: "0.1.0".into(),
            uptime_ms: 3_725_000,
            event_socket: "/run/callmetrics/events.sock".into(),
            control_socket: "/run/callmetrics/control.sock".into(),
            time_zone: "Europe/Paris".into(),
            windows: vec!["5m".into(), "15m".into()],
            ingest: IngestCounters {
                connections_open: 2,
                connections_total: 40,
                connections_refused: 1,
                framing_errors: 3,
                events_accepted: 1200,
                events_rejected: BTreeMap::from([("invalid".into(), 2), ("store_full".into(), 1)]),
            },
            engine: EngineStats {
                accepted: 1190,
                duplicates: 5,
                late: 7,
                expired_segments: 4,
                expired_orphan_events: 6,
                open_segments: 9,
                open_calls: 8,
                overflowed: BTreeMap::from([("agent".into(), 11)]),
                ..Default::default()
            },
            store: StoreStatus {
                path: "/var/lib/callmetrics/store".into(),
                size_bytes: 256 << 20,
                max_bytes: 1 << 30,
                logged_groups: 77,
                last_checkpoint_age_ms: Some(12_000),
            },
            limits: LimitsConfig::default(),
            upstream: Default::default(),
        }
    }

    #[test]
    fn status_text_names_every_counter() {
        let text = render_status(&report());
        for want in [
            "callmetrics 0.1.0, up 1h02m05s",
            "/run/callmetrics/events.sock",
            "/run/callmetrics/control.sock",
            "Europe/Paris",
            "5m, 15m",
            "1200 accepted, 3 rejected (invalid 2, store_full 1)",
            "2 open, 40 total, 1 refused, 3 framing errors",
            "5 duplicates, 7 late",
            "9 segments in 8 calls",
            "4 segments, 6 orphan events",
            "agent 11",
            "256.0 MiB of 1.0 GiB (25.0 %)",
            "last checkpoint 12s ago",
            "line 64.0 KiB",
            "100000 open segments",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        // Values start in one column.
        let starts: Vec<usize> = text
            .lines()
            .skip(1)
            .map(|l| l.find("  ").unwrap() + l[l.find("  ").unwrap()..].find(|c| c != ' ').unwrap())
            .collect();
        assert!(starts.windows(2).all(|w| w[0] == w[1]), "{text}");
    }

    #[test]
    fn exit_codes_tell_refusal_from_unreachable() {
        assert_eq!(CliError::Daemon("no".into()).exit_code(), 1);
        let unreachable = ClientError::connect(Path::new("/x"), io::ErrorKind::NotFound.into());
        assert_eq!(CliError::from(unreachable).exit_code(), 2);
        assert_eq!(
            CliError::Unexpected {
                request: "status",
                got: "done"
            }
            .exit_code(),
            2
        );
    }

    /// A daemon stand-in answering from fixed data.
    fn daemon(sock: &Path) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let handler: Handler = Arc::new(|req| match req {
            Request::Status => Response::Status(Box::new(report())),
            Request::Metrics(q) if q.window.as_deref() == Some("15m") => {
                Response::Metrics(vec![row("support", busy(), Realtime::default())])
            }
            Request::Metrics(q) => {
                Response::Error(format!("unknown window `{}`", q.window.unwrap_or_default()))
            }
            Request::Calls => Response::Calls(vec![]),
            Request::Outbox { .. } => Response::Outbox(vec![]),
            Request::Flush => Response::Done("flushed 3 groups".into()),
            Request::Reload => Response::Metrics(vec![]),
        });
        let (tx, rx) = watch::channel(false);
        (
            tx,
            tokio::spawn(serve(UnixListener::bind(sock).unwrap(), handler, rx)),
        )
    }

    #[tokio::test]
    async fn subcommands_print_the_daemons_answers() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("control.sock");
        let (stop, server) = daemon(&sock);

        let mut out = Vec::new();
        metrics_to(&sock, query(DimKind::Queue), true, &mut out)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json[0]["queue"], "support");
        assert_eq!(json[0]["service_level"], 0.8);
        assert_eq!(json[0]["wait_p90_ms"], serde_json::Value::Null);

        let mut out = Vec::new();
        status_to(&sock, true, &mut out).await.unwrap();
        let back: StatusReport = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, report());

        let mut out = Vec::new();
        calls_to(&sock, false, &mut out).await.unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "no open calls\n");
        let mut out = Vec::new();
        calls_to(&sock, true, &mut out).await.unwrap();
        assert_eq!(String::from_utf8(out).unwrap().trim(), "[]");

        let mut out = Vec::new();
        done_to(&sock, Request::Flush, "flush", &mut out)
            .await
            .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "flushed 3 groups\n");

        stop.send(true).unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn daemon_errors_exit_1_and_odd_answers_exit_2() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("control.sock");
        let (stop, server) = daemon(&sock);

        let mut q = query(DimKind::Queue);
        q.window = Some("7m".into());
        let err = metrics_to(&sock, q, false, &mut Vec::new())
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert_eq!(err.to_string(), "the daemon answered: unknown window `7m`");

        let err = done_to(&sock, Request::Reload, "reload", &mut Vec::new())
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().contains("reload with a metrics response"),
            "{err}"
        );

        stop.send(true).unwrap();
        server.await.unwrap();

        let err = status_to(&sock, false, &mut Vec::new()).await.unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().contains(&sock.display().to_string()),
            "{err}"
        );
    }
}
