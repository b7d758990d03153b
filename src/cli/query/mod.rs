//! The client subcommands that ask the daemon over its control socket (`status`, `metrics`,
//! `calls`, `outbox`, `flush`, `reload`, `sla`, `report`, `alerts`) and print the answer as a human table or, with `--json`,
//! as JSON. Each table or text has its own renderer file, a function of the daemon's answer:
//! `metrics_table.rs`, `calls_table.rs`, `outbox_table.rs`, `status_text.rs`, `alerts_table.rs`; they share
//! `table.rs` (layout) and `format.rs` (cell formats).

mod alerts_table;
mod callbacks_text;
mod calls_table;
#[cfg(test)]
pub(super) mod fixtures;
pub(super) mod format;
mod metrics_csv;
pub(super) mod metrics_table;
mod outbox_table;
mod report_table;
mod sla_text;
mod status_text;
pub(super) mod table;

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::ExitCode;

use alerts_table::render_alerts;
use callbacks_text::render_callbacks;
pub use calls_table::CallsSort;
use calls_table::{render_calls, sort_calls};
use metrics_csv::render_csv;
use metrics_table::render_metrics;
use outbox_table::render_outbox;
use report_table::render_report;
use sla_text::render_sla;
use status_text::render_status;

pub use super::error::CliError;
use crate::control::client::request;
use crate::control::protocol::{Request, Response};
use crate::engine::{MetricsQuery, MetricsRow};

/// Sends `req`, turning the daemon's `Error` answer into [`CliError::Daemon`].
async fn ask(socket: &Path, req: &Request) -> Result<Response, CliError> {
    match request(socket, req).await? {
        Response::Error(msg) => Err(CliError::Daemon(msg)),
        resp => Ok(resp),
    }
}

pub(super) fn unexpected(request: &'static str, resp: &Response) -> CliError {
    let got = match resp {
        Response::Status(_) => "status",
        Response::Metrics(_) => "metrics",
        Response::Calls(_) => "calls",
        Response::Outbox(_) => "outbox",
        Response::Done(_) => "done",
        Response::Error(_) => "error",
        Response::Sla(_) => "sla",
        Response::Report(_) => "report",
        Response::Alerts(_) => "alerts",
        Response::Callbacks(_) => "callbacks",
    };
    CliError::Unexpected { request, got }
}

/// Writes `value` as compact JSON followed by a newline. Standard output is not buffered
/// (serialising into it directly cost a system call per token), and serialising into one `Vec`
/// first re-copied it at every doubling (a tenth of the CLI's work for 500 agent rows): a 64 KiB
/// buffer writes it in a few large pieces instead.
fn write_json(out: &mut impl Write, value: &impl serde::Serialize) -> Result<(), CliError> {
    let mut buffered = io::BufWriter::with_capacity(1 << 16, out);
    serde_json::to_writer(&mut buffered, value).map_err(io::Error::from)?;
    buffered.write_all(b"\n")?;
    buffered.flush()?;
    Ok(())
}

/// Rows as a JSON array followed by a newline, each written by [`MetricsRow::write_json`] (the
/// names of docs/metrics.md), in pieces of about 64 KiB.
fn write_rows_json(out: &mut impl Write, rows: &[MetricsRow]) -> Result<(), CliError> {
    const PIECE: usize = 1 << 16;
    let mut buf = Vec::with_capacity(PIECE + 4096);
    buf.push(b'[');
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        row.write_json(&mut buf);
        if buf.len() >= PIECE {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    buf.extend_from_slice(b"]\n");
    out.write_all(&buf)?;
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
/// How `metrics` prints its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsFormat {
    Table,
    Json,
    /// The JSON's columns as CSV (`metrics_csv.rs`).
    Csv,
}

/// `callmetrics metrics`, the command: the process ends once it returns.
pub async fn metrics(
    socket: &Path,
    query: MetricsQuery,
    format: MetricsFormat,
) -> Result<ExitCode, CliError> {
    let rows = metrics_to(socket, query, format, &mut stdout_unscanned()).await?;
    // The process ends next, which gives all its memory back at once: freeing each row's
    // strings and maps one by one was 5 % of `metrics --json --by agent`'s instructions
    // (500 rows).
    std::mem::forget(rows);
    Ok(ExitCode::SUCCESS)
}

/// Standard output as a plain file on a duplicate of its descriptor, or `io::stdout()` where it
/// cannot be duplicated. `io::stdout()` searches every write for a newline to flush at; the
/// large answers are written in 64 KiB pieces that need no such search (it was a twentieth of
/// `metrics --json --by agent`'s own work). Used only before anything else is written to
/// standard output, so nothing buffered there can come out of order.
fn stdout_unscanned() -> Box<dyn Write> {
    match io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => Box::new(std::fs::File::from(fd)),
        Err(_) => Box::new(io::stdout()),
    }
}

/// Asks for the rows of `query` and writes them to `out` in `format`; returns them.
async fn metrics_to(
    socket: &Path,
    query: MetricsQuery,
    format: MetricsFormat,
    out: &mut impl Write,
) -> Result<Vec<MetricsRow>, CliError> {
    let rows = match ask(socket, &Request::Metrics(query.clone())).await? {
        Response::Metrics(rows) => rows,
        other => return Err(unexpected("metrics", &other)),
    };
    match format {
        MetricsFormat::Json => {
            write_rows_json(out, &rows)?;
        }
        MetricsFormat::Csv => {
            let rows: Vec<_> = rows.iter().map(MetricsRow::to_json).collect();
            write_text(out, &render_csv(&rows))?;
        }
        MetricsFormat::Table => write_text(out, &render_metrics(&query, &rows))?,
    }
    Ok(rows)
}

/// `callmetrics report`: the history per period and key, as a table, JSON or CSV (the rows'
/// columns, as `metrics --csv`).
pub async fn report(
    socket: &Path,
    query: crate::history::report::ReportQuery,
    format: MetricsFormat,
) -> Result<ExitCode, CliError> {
    let report = match ask(socket, &Request::Report(query)).await? {
        Response::Report(r) => r,
        other => return Err(unexpected("report", &other)),
    };
    let out = &mut io::stdout();
    match format {
        MetricsFormat::Json => write_json(out, &report.to_json())?,
        MetricsFormat::Csv => {
            let rows: Vec<_> = report
                .rows
                .iter()
                .map(crate::history::report::ReportRow::to_json)
                .collect();
            write_text(out, &render_csv(&rows))?;
        }
        MetricsFormat::Table => write_text(out, &render_report(&report))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `callmetrics calls`: the open segments, longest first.
pub async fn calls(socket: &Path, json: bool, sort: CallsSort) -> Result<ExitCode, CliError> {
    calls_to(socket, json, sort, &mut io::stdout()).await
}

async fn calls_to(
    socket: &Path,
    json: bool,
    sort: CallsSort,
    out: &mut impl Write,
) -> Result<ExitCode, CliError> {
    let mut segs = match ask(socket, &Request::Calls).await? {
        Response::Calls(segs) => segs,
        other => return Err(unexpected("calls", &other)),
    };
    // The daemon lists them in no particular order; the oldest is what an operator looks for,
    // or, for slow channels, the nearest deadline.
    sort_calls(&mut segs, sort);
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
/// `callmetrics sla`: each objective's compliance this period and in the periods kept.
pub async fn sla(socket: &Path, json: bool) -> Result<ExitCode, CliError> {
    let objectives = match ask(socket, &Request::Sla).await? {
        Response::Sla(o) => o,
        other => return Err(unexpected("sla", &other)),
    };
    let mut out = io::stdout();
    if json {
        write_json(&mut out, &objectives)?;
    } else {
        write_text(&mut out, &render_sla(&objectives))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `callmetrics callbacks`: open callback requests by deadline and each objective's tally.
pub async fn callbacks(socket: &Path, json: bool) -> Result<ExitCode, CliError> {
    let report = match ask(socket, &Request::Callbacks).await? {
        Response::Callbacks(r) => r,
        other => return Err(unexpected("callbacks", &other)),
    };
    let mut out = io::stdout();
    if json {
        write_json(&mut out, &report)?;
    } else {
        write_text(&mut out, &render_callbacks(&report))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `callmetrics alerts`: open alerts and the last resolved ones.
pub async fn alerts(socket: &Path, json: bool) -> Result<ExitCode, CliError> {
    let report = match ask(socket, &Request::Alerts).await? {
        Response::Alerts(r) => r,
        other => return Err(unexpected("alerts", &other)),
    };
    let mut out = io::stdout();
    if json {
        write_json(&mut out, &report)?;
    } else {
        let now = jiff::Timestamp::now().as_millisecond();
        write_text(&mut out, &render_alerts(&report, now))?;
    }
    Ok(ExitCode::SUCCESS)
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::net::UnixListener;
    use tokio::sync::watch;

    use super::fixtures::{busy, query, report, row};
    use super::*;
    use crate::control::protocol::StatusReport;
    use crate::control::server::{serve, Access, Handler};
    use crate::engine::{Agg, DimKind, Realtime};

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
            Request::Alerts => Response::Alerts(crate::alerts::AlertsReport::default()),
            Request::Flush => Response::Done("flushed 3 groups".into()),
            Request::Reload => Response::Metrics(vec![]),
            Request::Sla => Response::Sla(vec![]),
            Request::Report(_) => Response::Error("no history here".into()),
            Request::Callbacks => Response::Callbacks(crate::engine::CallbacksReport::default()),
        });
        let (tx, rx) = watch::channel(false);
        (
            tx,
            tokio::spawn(serve(
                UnixListener::bind(sock).unwrap(),
                handler,
                Access::Admin,
                rx,
            )),
        )
    }

    /// Many rows, written in several pieces, are the JSON array `serde_json` makes of their views.
    #[test]
    fn rows_json_in_pieces_is_the_array_of_the_views() {
        let rows: Vec<MetricsRow> = (0..300)
            .map(|i| {
                let mut counts = Agg {
                    offered: i,
                    answered: i / 2,
                    ..Agg::default()
                };
                counts.bands.insert(20_000, i / 3);
                row(&format!("q\"{i}"), counts, Realtime::default())
            })
            .collect();
        let mut out = Vec::new();
        write_rows_json(&mut out, &rows).unwrap();
        assert!(
            out.len() > 3 << 16,
            "{} bytes: fewer than four pieces",
            out.len()
        );
        let views: Vec<_> = rows.iter().map(MetricsRow::json_view).collect();
        let mut expected = serde_json::to_vec(&views).unwrap();
        expected.push(b'\n');
        assert_eq!(out, expected);

        let mut none = Vec::new();
        write_rows_json(&mut none, &[]).unwrap();
        assert_eq!(none, b"[]\n");
    }

    #[tokio::test]
    async fn subcommands_print_the_daemons_answers() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("control.sock");
        let (stop, server) = daemon(&sock);

        let mut out = Vec::new();
        metrics_to(&sock, query(DimKind::Queue), MetricsFormat::Json, &mut out)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json[0]["queue"], "support");
        assert_eq!(json[0]["service_level"], 0.8);
        assert_eq!(json[0]["wait_p90_ms"], serde_json::Value::Null);

        let mut csv = Vec::new();
        metrics_to(&sock, query(DimKind::Queue), MetricsFormat::Csv, &mut csv)
            .await
            .unwrap();
        let csv = String::from_utf8(csv).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 2, "{csv}");
        assert!(
            lines[0].starts_with("abandon_rate,abandon_wait_sum_ms,"),
            "{csv}"
        );
        assert!(lines[1].contains(",support,"), "{csv}");

        let mut out = Vec::new();
        status_to(&sock, true, &mut out).await.unwrap();
        let back: StatusReport = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, report());

        let mut out = Vec::new();
        calls_to(&sock, false, CallsSort::Age, &mut out)
            .await
            .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "no open calls\n");
        let mut out = Vec::new();
        calls_to(&sock, true, CallsSort::Age, &mut out)
            .await
            .unwrap();
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
        let err = metrics_to(&sock, q, MetricsFormat::Table, &mut Vec::new())
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
