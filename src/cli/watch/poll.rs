//! The wallboard's loop: a task asks the daemon every second (`status` once per connection, for
//! its windows, then `metrics` for the window and dimension shown), a thread reads keys and
//! resizes from the terminal, and the loop applies both to the state and redraws.

use std::io::{self, Stdout};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event};
use ratatui::Terminal;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

use super::app::{Action, App, Fetched};
use super::render::{draw, visible_rows};
use crate::cli::error::CliError;
use crate::cli::query::unexpected;
use crate::control::client::request;
use crate::control::protocol::{Request, Response};
use crate::engine::MetricsQuery;

/// How often the daemon is asked, and retried while it does not answer.
pub(super) const REFRESH: Duration = Duration::from_secs(1);
/// How long the key reader waits for input before looking whether the loop has ended.
const INPUT_POLL: Duration = Duration::from_millis(100);
/// How long the end of the loop waits for the key reader to leave.
const READER_EXIT: Duration = Duration::from_millis(300);

enum Msg {
    Fetched(Fetched),
    Input(Event),
    InputFailed(io::Error),
}

/// Runs the wallboard on `terminal` until a quit key or a terminating signal.
pub(super) async fn run(
    socket: &Path,
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
) -> Result<(), CliError> {
    let mut app = App::new(socket.display().to_string());
    let (query_tx, query_rx) = watch::channel(app.query());
    let (tx, mut rx) = mpsc::channel(16);
    let poller = tokio::spawn(ask_every_second(socket.to_owned(), query_rx, tx.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = read_input(tx, Arc::clone(&stop));
    let result = show(&mut app, terminal, &query_tx, &mut rx).await;
    stop.store(true, Ordering::Relaxed);
    poller.abort();
    // A reader waiting for room in the channel fails at once instead.
    drop(rx);
    // The reader leaves within INPUT_POLL, before the terminal is restored, so it cannot
    // swallow the shell's first keystrokes. It is not waited for longer: on a terminal that
    // hung up (a dropped SSH session) crossterm's read spins on end-of-file and never returns,
    // and the process must still exit, which ends it.
    let deadline = Instant::now() + READER_EXIT;
    while !reader.is_finished() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    result
}

async fn show(
    app: &mut App,
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    query_tx: &watch::Sender<MetricsQuery>,
    rx: &mut mpsc::Receiver<Msg>,
) -> Result<(), CliError> {
    // A closed SSH session sends SIGHUP, `kill` SIGTERM: both end the loop so the terminal is
    // restored. Ctrl-C arrives as a key in raw mode; SIGINT from elsewhere ends it too.
    let mut hangup = signal(SignalKind::hangup()).map_err(CliError::Terminal)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(CliError::Terminal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(CliError::Terminal)?;
    loop {
        let size = terminal.size().map_err(CliError::Terminal)?;
        app.set_page(visible_rows(size.height));
        terminal
            .draw(|frame| draw(frame, app, Instant::now()))
            .map_err(CliError::Terminal)?;
        let msg = tokio::select! {
            msg = rx.recv() => msg,
            _ = hangup.recv() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
            _ = interrupt.recv() => return Ok(()),
        };
        match msg {
            // Both senders gone: the poller and the reader have stopped, nothing more comes.
            None => return Ok(()),
            Some(Msg::Input(Event::Key(key))) => match app.on_key(key) {
                Action::Quit => return Ok(()),
                Action::Refresh => {
                    query_tx.send_replace(app.query());
                }
                Action::Continue => {}
            },
            // A resize (or anything else) only needs the redraw at the top of the loop, which
            // takes the new size.
            Some(Msg::Input(_)) => {}
            Some(Msg::InputFailed(e)) => return Err(CliError::Terminal(e)),
            Some(Msg::Fetched(fetched)) => app.on_fetch(fetched, Instant::now(), &clock()),
        }
        if *query_tx.borrow() != app.query() {
            query_tx.send_replace(app.query());
        }
    }
}

/// The local wall-clock time, to the second.
fn clock() -> String {
    jiff::Zoned::now().strftime("%H:%M:%S").to_string()
}

/// Reads terminal events on a thread of its own (crossterm's reads block) until `stop`.
fn read_input(tx: mpsc::Sender<Msg>, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let msg = match event::poll(INPUT_POLL) {
                Ok(false) => continue,
                Ok(true) => match event::read() {
                    Ok(e) => Msg::Input(e),
                    Err(e) => Msg::InputFailed(e),
                },
                Err(e) => Msg::InputFailed(e),
            };
            let failed = matches!(msg, Msg::InputFailed(_));
            if tx.blocking_send(msg).is_err() || failed {
                return;
            }
        }
    })
}

/// Asks the daemon for the query in `query` every [`REFRESH`], at once when it changes, and
/// sends what it learns; ends when the loop has gone.
async fn ask_every_second(
    socket: PathBuf,
    mut query: watch::Receiver<MetricsQuery>,
    tx: mpsc::Sender<Msg>,
) {
    // The windows are asked again after each absence: a restart may have changed the config.
    let mut windows_known = false;
    loop {
        let q = query.borrow_and_update().clone();
        let fetched = if windows_known {
            metrics(&socket, q).await
        } else {
            match request(&socket, &Request::Status).await {
                Ok(answer) => {
                    windows_known = true;
                    if let Response::Status(report) = answer {
                        if tx
                            .send(Msg::Fetched(Fetched::Windows(report.windows)))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    // Any other answer: the windows shown stay, the metrics answer says more.
                    metrics(&socket, q).await
                }
                Err(e) => Fetched::Unreachable(e.to_string()),
            }
        };
        if matches!(fetched, Fetched::Unreachable(_)) {
            windows_known = false;
        }
        if tx.send(Msg::Fetched(fetched)).await.is_err() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(REFRESH) => {}
            changed = query.changed() => if changed.is_err() {
                return;
            }
        }
    }
}

async fn metrics(socket: &Path, query: MetricsQuery) -> Fetched {
    match request(socket, &Request::Metrics(query.clone())).await {
        Ok(Response::Metrics(rows)) => Fetched::Rows { query, rows },
        Ok(Response::Error(message)) => Fetched::Refused { query, message },
        Ok(other) => Fetched::Refused {
            query,
            message: unexpected("metrics", &other).to_string(),
        },
        Err(e) => Fetched::Unreachable(e.to_string()),
    }
}
