//! The daemon: start-up order (store, recovery, sockets), the group committer, the ticker,
//! the control handler, and a shutdown that answers every waiting client before exiting.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, watch, Notify};
use tracing::{error, info, warn};

use crate::config::{Config, ConfigError, SinkConfig};
use crate::control::protocol::{
    OutboxEntry, Request, Response, StatusReport, StoreStatus, UpstreamStatus,
};
use crate::control::server::{self, Handler};
use crate::engine::{Applied, Engine, MetricsQuery, RestoreError};
use crate::event::Event;
use crate::ingest::listener::{serve_tcp, serve_unix, IngestCtx};
use crate::ingest::{IngestStats, ItemResult, Submission};
use crate::store::{Store, StoreError};
use crate::systemd;
use crate::upstream::closer::{self, Closed, Closer};
use crate::upstream::outbox_store::StoreOutbox;
use crate::upstream::{delivery, Outbox, SinkStatus};

/// Most events grouped into one store write and flush.
const MAX_GROUP_EVENTS: usize = 16_384;
/// How often the engine's clock moves on when no events arrive.
const TICK: Duration = Duration::from_secs(1);
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
    #[error("a logged event group cannot be decoded: {0}")]
    Decode(String),
}

/// An accepted event as the log keeps it: when the engine took it, and the event.
#[derive(Debug, Serialize, Deserialize)]
struct StoredEvent {
    rx_ms: i64,
    event: Event,
}

/// Wall-clock time in epoch milliseconds: the only clock the daemon reads.
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
    ingest: Arc<IngestStats>,
    started: Instant,
    store_size: Mutex<u64>,
    checkpoint: Mutex<CheckpointState>,
    rate: Mutex<RateMark>,
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

struct CheckpointState {
    last: Instant,
    events_since: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a task panicked while holding it; the data is still the best we have.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Rebuilds the engine from the last checkpoint and replays the logged groups after it.
fn recover_engine(cfg: &Config, store: &Store) -> Result<(Engine, u64), DaemonError> {
    let r = store.recover()?;
    let mut engine = Engine::restore(cfg, r.buckets, r.volatile.as_deref())?;
    let mut replayed = 0u64;
    for group in store.groups_after(r.checkpoint_seq) {
        let (_, bytes) = group?;
        let events: Vec<StoredEvent> =
            rmp_serde::from_slice(&bytes).map_err(|e| DaemonError::Decode(e.to_string()))?;
        for se in events {
            // Rejections cannot happen here: only accepted events were logged, in order.
            let _ = engine.apply(&se.event, se.rx_ms);
            replayed += 1;
        }
    }
    Ok((engine, replayed))
}

fn create_parent(path: &Path) -> Result<(), DaemonError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| DaemonError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
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
    let listener = UnixListener::bind(path).map_err(bind_err)?;
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

/// Runs the daemon until SIGINT or SIGTERM; SIGHUP reloads the config.
/// `activated` holds sockets passed by systemd, by name (`events`, `control`).
pub async fn run(
    cfg: Config,
    config_path: Option<PathBuf>,
    mut activated: HashMap<String, std::os::unix::net::UnixListener>,
) -> Result<(), DaemonError> {
    let opened = Instant::now();
    create_parent(&cfg.store.path.join("x"))?;
    let store = Store::open(&cfg.store.path, cfg.store.cache_bytes, cfg.store.max_bytes)?;
    let (mut engine, replayed) = recover_engine(&cfg, &store)?;
    engine.advance(wall_ms());
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
    for name in activated.keys() {
        warn!("ignoring a socket passed by systemd under the unknown name `{name}` (expected `events` or `control`)");
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
    let shared = Arc::new(Shared {
        engine: Mutex::new(engine),
        store: store.clone(),
        closer: tokio::sync::Mutex::new(closer),
        host_id,
        sinks,
        ingest: Arc::new(IngestStats::default()),
        started: Instant::now(),
        store_size: Mutex::new(size),
        checkpoint: Mutex::new(CheckpointState {
            last: Instant::now(),
            events_since: replayed,
        }),
        rate: Mutex::new(RateMark {
            at: Instant::now(),
            accepted: 0,
        }),
        cfg: Mutex::new(cfg.clone()),
        config_path,
    });

    if replayed > 0 {
        // Fold the replayed log into a checkpoint now, so repeated restarts never replay it again.
        checkpoint(&shared).await?;
    }

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (submit_tx, submit_rx) = mpsc::channel::<Submission>(4096);
    let committer = tokio::spawn(commit_loop(shared.clone(), submit_rx));
    let ctx = Arc::new(IngestCtx {
        submit: submit_tx,
        limits: cfg.limits.clone(),
        stats: shared.ingest.clone(),
    });
    let mut ingest_tasks = vec![tokio::spawn(serve_unix(
        events_listener,
        ctx.clone(),
        shutdown_rx.clone(),
    ))];
    if let Some(l) = tcp_listener {
        ingest_tasks.push(tokio::spawn(serve_tcp(l, ctx.clone(), shutdown_rx.clone())));
    }
    drop(ctx);
    let control = tokio::spawn(server::serve(
        control_listener,
        handler(shared.clone()),
        shutdown_rx.clone(),
    ));
    let ticker = tokio::spawn(tick_loop(shared.clone(), shutdown_rx.clone()));
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

    info!(
        "ready: events on {}, control on {}{}",
        cfg.ingest.socket.display(),
        cfg.control.socket.display(),
        if cfg.ingest.tcp.is_empty() {
            String::new()
        } else {
            format!(", events also on tcp {}", cfg.ingest.tcp)
        }
    );

    systemd::ready(&status_line(&shared));
    wait_for_stop_signal(&shared).await;
    info!("stopping: no new events taken; answering every client waiting for a reply");
    systemd::stopping();
    let _ = shutdown_tx.send(true);
    for t in ingest_tasks {
        let _ = t.await;
    }
    // Every connection has ended, so every sender is gone and the committer drains and returns.
    let _ = committer.await;
    let _ = ticker.await;
    let _ = control.await;
    for t in sink_tasks {
        let _ = t.await;
    }
    if let Err(e) = checkpoint(&shared).await {
        error!("final checkpoint failed: {e}; the event log still holds everything acknowledged");
    }
    if own_events {
        let _ = std::fs::remove_file(&cfg.ingest.socket);
    }
    if own_control {
        let _ = std::fs::remove_file(&cfg.control.socket);
    }
    info!("stopped");
    Ok(())
}

/// Waits for SIGTERM or SIGINT, reloading the config on every SIGHUP meanwhile.
async fn wait_for_stop_signal(shared: &Shared) {
    use tokio::signal::unix::{signal, SignalKind};
    let (term, int, hup) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    );
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (term, int, hup) else {
        warn!("cannot install signal handlers; stop with Ctrl-C");
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
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

/// Groups submissions from every connection into one store write and one flush, then replies.
async fn commit_loop(shared: Arc<Shared>, mut rx: mpsc::Receiver<Submission>) {
    while let Some(first) = rx.recv().await {
        let mut count = first.events.len();
        let mut subs = vec![first];
        while count < MAX_GROUP_EVENTS {
            match rx.try_recv() {
                Ok(s) => {
                    count += s.events.len();
                    subs.push(s);
                }
                Err(_) => break,
            }
        }
        commit_group(&shared, subs).await;
        if checkpoint_due(&shared) {
            if let Err(e) = checkpoint(&shared).await {
                error!("checkpoint failed: {e}; events stay in the log and will be replayed");
            }
        }
    }
}

async fn commit_group(shared: &Shared, subs: Vec<Submission>) {
    let room = shared.store.check_room(*lock(&shared.store_size));
    let mut results: Vec<Vec<ItemResult>> = Vec::with_capacity(subs.len());
    let mut stored = Vec::new();
    let mut accepted_positions = Vec::new();
    {
        let mut engine = lock(&shared.engine);
        let now = wall_ms();
        for (si, sub) in subs.iter().enumerate() {
            let mut r = Vec::with_capacity(sub.events.len());
            for (ei, ev) in sub.events.iter().enumerate() {
                if let Err(e) = &room {
                    r.push(Err(e.to_string()));
                    continue;
                }
                match engine.apply(ev, now) {
                    Ok(Applied::Accepted) => {
                        stored.push(StoredEvent {
                            rx_ms: engine.now_ms(),
                            event: ev.clone(),
                        });
                        accepted_positions.push((si, ei));
                        r.push(Ok(()));
                    }
                    Ok(Applied::Duplicate | Applied::Late) => r.push(Ok(())),
                    Err(rejection) => r.push(Err(rejection.to_string())),
                }
            }
            results.push(r);
        }
    }
    if !stored.is_empty() {
        if let Err(e) = persist(shared, &stored).await {
            error!("storing {} events failed: {e}", stored.len());
            for (si, ei) in &accepted_positions {
                results[*si][*ei] = Err(format!("store error: {e}"));
            }
            // The engine took events the store may not hold: rebuild it from what is durable.
            let cfg = lock(&shared.cfg).clone();
            match recover_engine(&cfg, &shared.store) {
                Ok((engine, _)) => *lock(&shared.engine) = engine,
                Err(e) => error!("rebuilding state from the store failed: {e}"),
            }
        } else {
            lock(&shared.checkpoint).events_since += stored.len() as u64;
        }
    }
    // Refusals are counted by the connection, which sees validation errors too.
    let accepted = results.iter().flatten().filter(|r| r.is_ok()).count() as u64;
    for (sub, r) in subs.into_iter().zip(results) {
        // The connection may be gone; its events are stored all the same.
        let _ = sub.reply.send(r);
    }
    shared.ingest.update(|c| c.events_accepted += accepted);
}

async fn persist(shared: &Shared, stored: &[StoredEvent]) -> Result<(), StoreError> {
    let bytes = rmp_serde::to_vec(stored).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    shared.store.append(&bytes)?;
    shared.store.flush().await?;
    Ok(())
}

fn checkpoint_due(shared: &Shared) -> bool {
    let cfg = lock(&shared.cfg);
    let c = lock(&shared.checkpoint);
    c.events_since >= cfg.store.checkpoint_events
        || (c.events_since > 0
            && c.last.elapsed().as_millis() as i64 >= cfg.store.checkpoint_interval.0)
}

/// Writes the engine's changed buckets and state as one atomic checkpoint, then trims the log.
async fn checkpoint(shared: &Shared) -> Result<(), StoreError> {
    let (seq, cp) = {
        let mut engine = lock(&shared.engine);
        // Taken under the engine lock, right after a whole group: it includes every logged group.
        (
            shared.store.next_seq().saturating_sub(1),
            engine.checkpoint(),
        )
    };
    let result = shared
        .store
        .write_checkpoint(seq, cp.buckets, &cp.volatile)
        .await;
    match &result {
        Ok(()) => {
            let mut c = lock(&shared.checkpoint);
            c.last = Instant::now();
            c.events_since = 0;
        }
        Err(_) => lock(&shared.engine).mark_all_dirty(),
    }
    result
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
        lock(&shared.engine).advance(wall_ms());
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
/// were shipped into outbox records, and wakes the sinks.
async fn close_intervals(shared: &Shared, all: bool) -> Result<Closed, StoreError> {
    if shared.sinks.is_empty() {
        return Ok(Closed::default());
    }
    let mut closer = shared.closer.lock().await;
    let (candidates, interval_ms, keep_from) = {
        let mut engine = lock(&shared.engine);
        let now = wall_ms();
        engine.advance(now);
        (
            closer.candidates(&engine, now, all),
            engine.calendar().interval_ms,
            now - engine.interval_retention_ms(),
        )
    };
    let closed = closer.ship(&shared.store, candidates, interval_ms).await?;
    closer.prune(&shared.store, keep_from)?;
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

fn handler(shared: Arc<Shared>) -> Handler {
    Arc::new(move |req: Request| match req {
        Request::Status => Response::Status(Box::new(status(&shared))),
        Request::Metrics(q) => metrics(&shared, &q),
        Request::Calls => {
            let mut engine = lock(&shared.engine);
            engine.advance(wall_ms());
            Response::Calls(engine.open_calls())
        }
        Request::Outbox { limit } => outbox_entries(&shared, limit),
        Request::Flush => {
            let s = shared.clone();
            // The control server runs handlers on the multi-threaded runtime, where blocking in place is allowed.
            let r = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async move {
                    checkpoint(&s).await?;
                    close_intervals(&s, true).await
                })
            });
            match r {
                Ok(c) if shared.sinks.is_empty() => {
                    let _ = c;
                    Response::Done("checkpoint written; no upstream sinks configured".into())
                }
                Ok(c) => Response::Done(format!(
                    "checkpoint written; {} interval records and {} corrections queued for {} sinks",
                    c.intervals,
                    c.corrections,
                    shared.sinks.len()
                )),
                Err(e) => Response::Error(format!("flush failed: {e}")),
            }
        }
        Request::Reload => reload(&shared),
    })
}

fn metrics(shared: &Shared, q: &MetricsQuery) -> Response {
    let mut engine = lock(&shared.engine);
    engine.advance(wall_ms());
    match engine.metrics(q) {
        Ok(rows) => Response::Metrics(rows),
        Err(e) => Response::Error(e.to_string()),
    }
}

fn reload(shared: &Shared) -> Response {
    let Some(path) = &shared.config_path else {
        return Response::Error(
            "the daemon runs on the built-in local default; there is no config file to reload"
                .into(),
        );
    };
    let new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return Response::Error(format!("config not reloaded, the old one stays: {e}")),
    };
    let mut cfg = lock(&shared.cfg);
    let mut notes = Vec::new();
    if new.ingest != cfg.ingest || new.control != cfg.control || new.store.path != cfg.store.path {
        notes.push("socket and store paths only change on restart".to_string());
    }
    if new.upstream.sinks != cfg.upstream.sinks || new.upstream.host_id != cfg.upstream.host_id {
        notes.push("upstream sinks and host_id only change on restart".to_string());
    }
    lock(&shared.engine).reconfigure(&new);
    match shared.closer.try_lock() {
        Ok(mut c) => c.reconfigure(&new),
        Err(_) => {
            notes.push("interval closing was busy; its settings apply after a restart".to_string())
        }
    }
    *cfg = new;
    Response::Done(if notes.is_empty() {
        "config reloaded".into()
    } else {
        format!("config reloaded; {}", notes.join("; "))
    })
}

/// Records waiting in the outbox, oldest first, with the sinks still owing them.
fn outbox_entries(shared: &Shared, limit: usize) -> Response {
    let cursors: Result<Vec<(String, u64)>, StoreError> = shared
        .sinks
        .iter()
        .map(|s| Ok((s.cfg.name.clone(), shared.store.cursor(&s.cfg.name)?)))
        .collect();
    let cursors = match cursors {
        Ok(c) => c,
        Err(e) => return Response::Error(e.to_string()),
    };
    let lowest = cursors.iter().map(|c| c.1).min().unwrap_or(0);
    let records = match shared.store.records_after(lowest, limit) {
        Ok(r) => r,
        Err(e) => return Response::Error(e.to_string()),
    };
    let mut out = Vec::with_capacity(records.len());
    for (seq, bytes) in records {
        let Ok(r) = StoreOutbox::decode(&bytes) else {
            continue;
        };
        out.push(OutboxEntry {
            seq,
            idempotency_key: r.idempotency_key(),
            kind: r.kind,
            interval_start_ms: r.interval_start_ms,
            interval_ms: r.interval_ms,
            dimension: r.dimension,
            key: r.key,
            offered: r.delta.offered,
            waiting_for: cursors
                .iter()
                .filter(|(_, c)| *c < seq)
                .map(|(n, _)| n.clone())
                .collect(),
        });
    }
    Response::Outbox(out)
}

fn upstream_status(shared: &Shared) -> UpstreamStatus {
    let (records, bytes) = shared.store.outbox_size();
    let now = wall_ms();
    let sinks = shared
        .sinks
        .iter()
        .map(|s| {
            let mut st = lock(&s.status).clone();
            let cursor = shared.store.cursor(&s.cfg.name).unwrap_or(0);
            let (n, b) = shared.store.backlog_after(cursor).unwrap_or((0, 0));
            st.backlog_records = n;
            st.backlog_bytes = b;
            st.oldest_waiting_ms = shared
                .store
                .records_after(cursor, 1)
                .ok()
                .and_then(|r| {
                    r.first()
                        .and_then(|(_, bytes)| StoreOutbox::decode(bytes).ok())
                })
                .map(|r| now - (r.interval_start_ms + r.interval_ms));
            st.dead_letters = shared.store.dead_letter_count(&s.cfg.name) as u64;
            st
        })
        .collect();
    UpstreamStatus {
        host_id: shared.host_id.clone(),
        outbox_records: records,
        outbox_bytes: bytes,
        dropped_records: shared.store.dropped_records().unwrap_or(0),
        sinks,
    }
}

fn status(shared: &Shared) -> StatusReport {
    let cfg = lock(&shared.cfg).clone();
    let (engine_stats, windows) = {
        let mut engine = lock(&shared.engine);
        engine.advance(wall_ms());
        (engine.stats(), engine.window_names())
    };
    let last = lock(&shared.checkpoint).last;
    StatusReport {
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_ms: shared.started.elapsed().as_millis() as u64,
        event_socket: cfg.ingest.socket.display().to_string(),
        control_socket: cfg.control.socket.display().to_string(),
        time_zone: cfg.general.time_zone.0.clone(),
        windows,
        ingest: shared.ingest.snapshot(),
        engine: engine_stats,
        store: StoreStatus {
            path: shared.store.path().display().to_string(),
            size_bytes: *lock(&shared.store_size),
            max_bytes: shared.store.max_bytes(),
            logged_groups: shared.store.logged_groups() as u64,
            last_checkpoint_age_ms: Some(last.elapsed().as_millis() as i64),
        },
        limits: cfg.limits.clone(),
        upstream: upstream_status(shared),
    }
}
