//! The daemon: start-up order (store, recovery, sockets), the ticker that moves time on and
//! closes intervals, signals (SIGHUP reloads), and a shutdown that answers every waiting client
//! before exiting. The group committer and the control handler have modules of their own.

mod alerts;
mod commit;
mod control;
mod exposition;
mod freeswitch;
mod sources;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, watch, Notify};
use tracing::{error, info, warn};

use crate::config::{Config, ConfigError, LimitsConfig, SinkConfig};
use crate::control::protocol::Response;
use crate::control::server;
use crate::engine::{Engine, RestoreError};
use crate::ingest::listener::{serve_tcp, serve_unix};
use crate::ingest::IngestCtx;
use crate::ingest::{IngestStats, Submission};
use crate::store::{Store, StoreError};
use crate::systemd;
use crate::upstream::closer::{self, Closed, Closer};
use crate::upstream::outbox_store::StoreOutbox;
use crate::upstream::{delivery, Outbox, SinkStatus};
use commit::{checkpoint, commit_loop, recover_engine, CheckpointState};
use control::{handler, reload};

/// How often the store size and the watchdog are refreshed.
const TICK: Duration = Duration::from_secs(1);
/// Longest a stop may take: answering waiting clients and the final checkpoint.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);
/// How often ended intervals are checked for closing into upstream records.
const CLOSE_EVERY: Duration = Duration::from_secs(10);
/// How often the STATUS= line for `systemctl status` is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {path}: {source}")]
    Bind {
        path: String,
        source: std::io::Error,
    },
    #[error("another callmetrics daemon already answers on {0}; stop it first or use another socket path")]
    InUse(PathBuf),
    #[error("store.path: {0} is a file, not a folder (the store is a folder, created if missing)")]
    StoreNotFolder(PathBuf),
    #[error(transparent)]
    Group(#[from] crate::store::group::GroupError),
    #[error("the store failed a write: {0}; stopping so that a restart can reopen it")]
    StoreFailed(String),
    #[error(transparent)]
    Exposition(#[from] crate::exposition::ExpositionError),
}

/// Rebuilds the engine from the store as a start does (migrating a store of the first layout):
/// the engine, the events replayed from the log, and the last log group applied.
pub async fn recover(cfg: &Config, store: &Store) -> Result<(Engine, u64, u64), DaemonError> {
    let r = recover_engine(cfg, store).await?;
    Ok((r.engine, r.replayed, r.last))
}

/// Wall-clock time in epoch milliseconds: the only clock the daemon reads.
#[must_use]
pub fn wall_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// State shared by the daemon's tasks.
struct Shared {
    cfg: Mutex<Config>,
    config_path: Option<PathBuf>,
    engine: Mutex<Engine>,
    store: Arc<Store>,
    closer: tokio::sync::Mutex<Closer>,
    host_id: String,
    sinks: Vec<SinkHandle>,
    /// The in-daemon sources (`[[sources]]`).
    sources: Vec<sources::SourceHandle>,
    ingest: Arc<IngestStats>,
    /// The event, control and admin sockets as `status` names them (a path, or "passed by
    /// systemd").
    sockets: (String, String, String),
    /// Intake limits; a reload sends new ones to every connection.
    limits: watch::Sender<LimitsConfig>,
    started: Instant,
    store_size: Mutex<u64>,
    checkpoint: Mutex<CheckpointState>,
    /// Serialises checkpoints (the committer's and `flush`'s).
    checkpoint_gate: tokio::sync::Mutex<()>,
    /// The last log group applied to the engine: what a checkpoint includes.
    applied_seq: AtomicU64,
    /// Each in-daemon source's position as of that group (changed under the engine lock).
    source_marks: Mutex<commit::SourceMarks>,
    /// Rung when a store write fails: sled takes no more writes until reopened.
    store_failed: Notify,
    /// Asks the committer for a checkpoint now (only it may write one while it runs).
    checkpoint_now: mpsc::Sender<commit::CheckpointRequest>,
    rate: Mutex<RateMark>,
    /// Alert rules, their board and receivers.
    alerts: alerts::Alerts,
}

/// A running sink: its config, what `status` shows of it, and the bell that wakes it.
struct SinkHandle {
    cfg: SinkConfig,
    status: Arc<Mutex<SinkStatus>>,
    wake: Arc<Notify>,
}

/// Accepted-event count at the last status line, for the events/s figure.
struct RateMark {
    at: Instant,
    accepted: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a task panicked while holding it; the data is still the best we have.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn create_parent(path: &Path) -> Result<(), DaemonError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            std::fs::create_dir_all(dir).map_err(|source| DaemonError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
            info!(
                "created the folder {} for {}",
                dir.display(),
                path.display()
            );
        }
    }
    Ok(())
}

/// Binds a Unix socket, replacing a stale socket file but never a live daemon's.
fn bind_unix(path: &Path, mode: u32) -> Result<UnixListener, DaemonError> {
    use std::os::unix::fs::PermissionsExt;
    create_parent(path)?;
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(DaemonError::InUse(path.to_owned()));
        }
        let _ = std::fs::remove_file(path);
    }
    let bind_err = |source| DaemonError::Bind {
        path: path.display().to_string(),
        source,
    };
    // The socket file is never looser than `mode`, not even between its creation and the chmod:
    // a client that connected in between would keep its connection (the admin socket's 0600
    // matters). The umask is the process's, so files other threads create meanwhile may come
    // out stricter for group and others than they would, never looser.
    use rustix::fs::Mode;
    use rustix::process::umask;
    let previous = umask(Mode::from_raw_mode(0o077));
    umask(Mode::from_raw_mode(
        previous.as_raw_mode() | (!mode & 0o777),
    ));
    let bound = UnixListener::bind(path);
    umask(previous);
    let listener = bound.map_err(bind_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(bind_err)?;
    Ok(listener)
}

/// Takes a socket passed by systemd under `name`, else binds `path` itself.
/// Returns the listener and whether this process owns (and so removes) the socket file.
fn listener(
    activated: &mut HashMap<String, std::os::unix::net::UnixListener>,
    name: &str,
    path: &Path,
    mode: u32,
) -> Result<(UnixListener, bool), DaemonError> {
    match activated.remove(name) {
        Some(std_listener) => {
            info!("using the {name} socket passed by systemd");
            let l = UnixListener::from_std(std_listener).map_err(|source| DaemonError::Bind {
                path: format!("{name} socket from systemd"),
                source,
            })?;
            Ok((l, false))
        }
        None => Ok((bind_unix(path, mode)?, true)),
    }
}

/// How `status` and the log name a socket: its path, or where it came from.
fn socket_label(path: &Path, owned: bool) -> String {
    if owned {
        path.display().to_string()
    } else {
        "passed by systemd".to_string()
    }
}

/// Runs the daemon until SIGINT or SIGTERM; SIGHUP reloads the config.
/// `activated` holds sockets passed by systemd, by name (`events`, `control`, `admin`).
#[allow(clippy::implicit_hasher)] // one caller, with the map systemd::activated_sockets builds
pub async fn run(
    cfg: Config,
    config_path: Option<PathBuf>,
    mut activated: HashMap<String, std::os::unix::net::UnixListener>,
) -> Result<(), DaemonError> {
    let opened = Instant::now();
    if cfg.store.path.exists() && !cfg.store.path.is_dir() {
        return Err(DaemonError::StoreNotFolder(cfg.store.path.clone()));
    }
    create_parent(&cfg.store.path.join("x"))?;
    let store = Store::open(&cfg.store.path, cfg.store.cache_bytes, cfg.store.max_bytes)?;
    let commit::Recovery {
        mut engine,
        replayed,
        last: applied_seq,
        marks,
    } = recover_engine(&cfg, &store).await?;
    engine.advance(wall_ms().max(engine.now_ms()));
    let stats = engine.stats();
    info!(
        open_calls = stats.open_calls,
        replayed_events = replayed,
        elapsed_ms = opened.elapsed().as_millis() as u64,
        "store {} opened and state recovered",
        cfg.store.path.display()
    );

    let (events_listener, own_events) = listener(
        &mut activated,
        systemd::EVENTS_FD_NAME,
        &cfg.ingest.socket,
        cfg.ingest.mode_bits(),
    )?;
    let (control_listener, own_control) = listener(
        &mut activated,
        systemd::CONTROL_FD_NAME,
        &cfg.control.socket,
        cfg.control.mode_bits(),
    )?;
    let admin_socket = cfg.control.admin_socket_path();
    let (admin_listener, own_admin) = listener(
        &mut activated,
        systemd::ADMIN_FD_NAME,
        &admin_socket,
        cfg.control.admin_mode_bits(),
    )?;
    for name in activated.keys() {
        warn!("ignoring a socket passed by systemd under the unknown name `{name}` (expected `events`, `control` or `admin`)");
    }
    let tcp_listener = if cfg.ingest.tcp.is_empty() {
        None
    } else {
        Some(
            TcpListener::bind(&cfg.ingest.tcp)
                .await
                .map_err(|source| DaemonError::Bind {
                    path: cfg.ingest.tcp.clone(),
                    source,
                })?,
        )
    };

    let metrics_listener = if cfg.exposition.listen.is_empty() {
        None
    } else {
        Some(crate::exposition::bind(&cfg.exposition.listen).await?)
    };

    let size = store.size_on_disk();
    let store = Arc::new(store);
    let host_id = closer::host_id(&cfg.upstream.host_id);
    let closer = Closer::new(&cfg, host_id.clone(), &store)?;
    let sinks: Vec<SinkHandle> = cfg
        .upstream
        .sinks
        .iter()
        .map(|s| SinkHandle {
            cfg: s.clone(),
            status: Arc::new(Mutex::new(SinkStatus {
                name: s.name.clone(),
                kind: format!("{:?}", s.kind).to_lowercase(),
                url: s.url.clone(),
                dead_letters: store.dead_letter_count(&s.name) as u64,
                ..SinkStatus::default()
            })),
            wake: Arc::new(Notify::new()),
        })
        .collect();
    let alerts = alerts::Alerts::load(&cfg, &store, &host_id)?;
    let (checkpoint_tx, checkpoint_rx) = mpsc::channel(4);
    let shared = Arc::new(Shared {
        engine: Mutex::new(engine),
        store: store.clone(),
        closer: tokio::sync::Mutex::new(closer),
        host_id,
        sinks,
        sources: cfg.sources.iter().map(sources::SourceHandle::new).collect(),
        ingest: Arc::new(IngestStats::default()),
        sockets: (
            socket_label(&cfg.ingest.socket, own_events),
            socket_label(&cfg.control.socket, own_control),
            socket_label(&admin_socket, own_admin),
        ),
        limits: watch::Sender::new(cfg.limits.clone()),
        started: Instant::now(),
        store_size: Mutex::new(size),
        checkpoint: Mutex::new(CheckpointState {
            last: Instant::now(),
            events_since: replayed,
            after_replay: replayed > 0,
        }),
        checkpoint_gate: tokio::sync::Mutex::new(()),
        applied_seq: AtomicU64::new(applied_seq),
        source_marks: Mutex::new(marks),
        store_failed: Notify::new(),
        checkpoint_now: checkpoint_tx,
        rate: Mutex::new(RateMark {
            at: Instant::now(),
            accepted: 0,
        }),
        alerts,
        cfg: Mutex::new(cfg.clone()),
        config_path,
    });

    if replayed > 0 {
        // Recovery read the whole checkpoint and log, which sled keeps in memory: start lean.
        // The replayed log is folded into a checkpoint by the committer shortly after ready
        // (`CheckpointState::after_replay`): writing it here held up readiness and,
        // on top of what recovery had read, made the restart peak (78 MiB against 65 MiB at 1 M
        // calls). Until it is written, a crash replays the same log again, nothing more.
        commit::reopen(&shared);
    }

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (submit_tx, submit_rx) = mpsc::channel::<Submission>(4096);
    let committer = tokio::spawn(commit_loop(shared.clone(), submit_rx, checkpoint_rx));
    let ctx = Arc::new(IngestCtx::new(
        submit_tx,
        shared.limits.subscribe(),
        shared.ingest.clone(),
    ));
    let mut ingest_tasks = vec![tokio::spawn(serve_unix(
        events_listener,
        ctx.clone(),
        shutdown_rx.clone(),
    ))];
    if let Some(l) = tcp_listener {
        ingest_tasks.push(tokio::spawn(serve_tcp(l, ctx.clone(), shutdown_rx.clone())));
    }
    // Sources hand events to the committer like connections, and stop before it.
    ingest_tasks.extend(sources::spawn(&shared, &ctx, &shutdown_rx));
    drop(ctx);
    let control = tokio::spawn(server::serve(
        control_listener,
        handler(shared.clone()),
        server::Access::ReadOnly {
            admin_socket: admin_socket.clone(),
        },
        shutdown_rx.clone(),
    ));
    let admin = tokio::spawn(server::serve(
        admin_listener,
        handler(shared.clone()),
        server::Access::Admin,
        shutdown_rx.clone(),
    ));
    let ticker = tokio::spawn(tick_loop(shared.clone(), shutdown_rx.clone()));
    let metrics_http = metrics_listener.map(|l| {
        tokio::spawn(crate::exposition::serve(
            l,
            exposition::renderer(shared.clone()),
            shutdown_rx.clone(),
        ))
    });
    let outbox: Arc<dyn Outbox> = Arc::new(StoreOutbox::new(
        store.clone(),
        shared.sinks.iter().map(|s| s.cfg.name.clone()).collect(),
    ));
    let mut sink_tasks = Vec::new();
    for s in &shared.sinks {
        sink_tasks.push(tokio::spawn(delivery::run_sink(
            s.cfg.clone(),
            outbox.clone(),
            s.status.clone(),
            s.wake.clone(),
            shutdown_rx.clone(),
        )));
        // Whatever waited in the outbox before this start goes out now.
        s.wake.notify_one();
    }
    sink_tasks.extend(alerts::Alerts::spawn(&shared, &shutdown_rx));

    info!(
        "ready: events on {}, control on {}, admin on {}{}",
        shared.sockets.0,
        shared.sockets.1,
        shared.sockets.2,
        if cfg.ingest.tcp.is_empty() {
            String::new()
        } else {
            format!(", events also on tcp {}", cfg.ingest.tcp)
        }
    );

    systemd::ready(&status_line(&shared));
    let stop = wait_for_stop_signal(&shared).await;
    info!("stopping: no new events taken; answering every client waiting for a reply");
    systemd::stopping();
    let _ = shutdown_tx.send(true);
    let failed = shared.store.failed();
    let drain = async {
        for t in ingest_tasks {
            let _ = t.await;
        }
        // Every connection has ended, so every sender is gone and the committer drains and returns.
        let _ = committer.await;
        let _ = ticker.await;
        let _ = control.await;
        let _ = admin.await;
        if let Some(t) = metrics_http {
            let _ = t.await;
        }
        for t in sink_tasks {
            let _ = t.await;
        }
        if shared.store.failed().is_none() {
            if let Err(e) = checkpoint(&shared).await {
                error!("final checkpoint failed: {e}; the event log still holds everything acknowledged");
            }
        }
    };
    let drained = tokio::time::timeout(SHUTDOWN_DEADLINE, drain).await.is_ok();
    if own_events {
        let _ = std::fs::remove_file(&cfg.ingest.socket);
    }
    if own_control {
        let _ = std::fs::remove_file(&cfg.control.socket);
    }
    if own_admin {
        let _ = std::fs::remove_file(&admin_socket);
    }
    if !drained {
        // The disk does not answer: waiting longer would not make anything more durable (every
        // acknowledged event is in the log), and dropping the store would wait for it too.
        error!(
            "stopped after {} s without a final checkpoint: the store did not answer; the log holds every acknowledged event",
            SHUTDOWN_DEADLINE.as_secs()
        );
        std::process::exit(1);
    }
    if let (Stop::StoreFailed | Stop::Signal, Some(why)) =
        (stop, failed.or_else(|| shared.store.failed()))
    {
        error!("stopped: the store failed a write ({why}); a restart reopens it");
        Err(DaemonError::StoreFailed(why))
    } else {
        info!("stopped");
        Ok(())
    }
}

/// Why the daemon stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Signal,
    StoreFailed,
}

/// Waits for SIGTERM or SIGINT, reloading the config on every SIGHUP meanwhile; or for a failed
/// store write, after which sled takes no more writes until the process reopens it.
async fn wait_for_stop_signal(shared: &Shared) -> Stop {
    use tokio::signal::unix::{signal, SignalKind};
    let (term, int, hup) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    );
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (term, int, hup) else {
        warn!("cannot install signal handlers; stop with Ctrl-C");
        let _ = tokio::signal::ctrl_c().await;
        return Stop::Signal;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return Stop::Signal,
            _ = int.recv() => return Stop::Signal,
            () = shared.store_failed.notified() => return Stop::StoreFailed,
            _ = hup.recv() => {
                systemd::reloading();
                match reload(shared) {
                    Response::Done(msg) => info!("SIGHUP: {msg}"),
                    Response::Error(msg) => error!("SIGHUP: {msg}"),
                    _ => {}
                }
                systemd::reloaded(&status_line(shared));
            }
        }
    }
}

/// Moves the engine's clock on, refreshes the store size, and tells systemd the daemon is alive:
/// the watchdog ping goes out only after the engine lock was taken, so a stuck engine is caught.
async fn tick_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let watchdog = systemd::watchdog_interval();
    let period = watchdog.map_or(TICK, |w| w.min(TICK));
    let mut every = tokio::time::interval(period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_status = Instant::now();
    let mut last_close = Instant::now();
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.changed() => return,
        }
        // Taking the engine lock shows the engine is not stuck (the watchdog ping below).
        drop(lock(&shared.engine));
        *lock(&shared.store_size) = shared.store.size_on_disk();
        if watchdog.is_some() {
            systemd::watchdog();
        }
        if last_close.elapsed() >= CLOSE_EVERY {
            last_close = Instant::now();
            if let Err(e) = close_intervals(&shared, false).await {
                error!("closing intervals into upstream records failed: {e}; will retry");
            }
        }
        if last_status.elapsed() >= STATUS_EVERY {
            systemd::status(&status_line(&shared));
            last_status = Instant::now();
        }
    }
}

/// The one-line state shown by `systemctl status`.
fn status_line(shared: &Shared) -> String {
    let accepted = shared.ingest.snapshot().events_accepted;
    let mut rate = lock(&shared.rate);
    let elapsed = rate.at.elapsed().as_secs_f64().max(0.001);
    let per_sec = accepted.saturating_sub(rate.accepted) as f64 / elapsed;
    *rate = RateMark {
        at: Instant::now(),
        accepted,
    };
    drop(rate);
    let stats = lock(&shared.engine).stats();
    format!(
        "{per_sec:.0} events/s, {} events accepted, {} open calls ({} segments), store {} MiB",
        accepted,
        stats.open_calls,
        stats.open_segments,
        *lock(&shared.store_size) >> 20
    )
}

/// Turns intervals that ended (`close_after` ago, or at all with `all`) and changed since they
/// were closed into the history and, with sinks, outbox records, and wakes the sinks; then
/// drops the history past its horizons.
async fn close_intervals(shared: &Shared, all: bool) -> Result<Closed, StoreError> {
    let mut closer = shared.closer.lock().await;
    let mut closed = Closed::default();
    // In bounded rounds (`MAX_ROUND_BUCKETS`), the engine lock taken anew for each.
    let keep_from = loop {
        let (candidates, interval_ms, keep_from) = {
            let engine = lock(&shared.engine);
            let now = engine.now_ms();
            (
                closer.candidates(&engine, now, all),
                engine.calendar().interval_ms,
                now - engine.interval_retention_ms(),
            )
        };
        let more = candidates.more;
        let round = closer.ship(&shared.store, candidates, interval_ms).await?;
        closed.intervals += round.intervals;
        closed.corrections += round.corrections;
        closed.dropped += round.dropped;
        closed.history += round.history;
        if !more {
            break keep_from;
        }
    };
    closer.prune(&shared.store, keep_from)?;
    closer.keep_history(&shared.store, wall_ms())?;
    if closed.intervals + closed.corrections > 0 {
        info!(
            intervals = closed.intervals,
            corrections = closed.corrections,
            "closed interval records into the outbox"
        );
        for s in &shared.sinks {
            s.wake.notify_one();
        }
    }
    if closed.dropped > 0 {
        warn!(
            dropped = closed.dropped,
            "the outbox is over upstream.max_outbox_bytes: the oldest records were dropped; check the sinks"
        );
    }
    Ok(closed)
}
