//! The control handler: answers status, metrics, calls and outbox queries, and runs the
//! mutating commands (flush, reload) against the daemon's shared state.

use std::sync::Arc;

use super::{close_intervals, lock, wall_ms, Shared};
use crate::config::Config;
use crate::control::protocol::{
    OutboxEntry, Request, Response, StatusReport, StoreStatus, UpstreamStatus,
};
use crate::control::server::Handler;
use crate::engine::MetricsQuery;
use crate::history::report::{report, ReportQuery};
use crate::history::HistoryStatus;
use crate::store::StoreError;
use crate::upstream::outbox_store::StoreOutbox;

/// Longest `flush` waits for its checkpoint.
const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Why `flush` did not complete.
#[derive(Debug, thiserror::Error)]
enum FlushError {
    #[error("the daemon is stopping")]
    Stopping,
    #[error("the store did not finish a checkpoint within {} s", FLUSH_TIMEOUT.as_secs())]
    Timeout,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(super) fn handler(shared: Arc<Shared>) -> Handler {
    Arc::new(move |req: Request| match req {
        Request::Status => Response::Status(Box::new(status(&shared))),
        Request::Metrics(q) => metrics(&shared, &q),
        Request::Calls => Response::Calls(lock(&shared.engine).open_calls_at(wall_ms())),
        Request::Outbox { limit } => outbox_entries(&shared, limit),
        Request::Flush => {
            let s = shared.clone();
            // The control server runs handlers on the multi-threaded runtime, where blocking in place is allowed.
            let r = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async move {
                    // The committer writes it, between groups; a store that does not answer
                    // gets a clear error instead of a request that never returns.
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    s.checkpoint_now
                        .send(tx)
                        .await
                        .map_err(|_| FlushError::Stopping)?;
                    match tokio::time::timeout(FLUSH_TIMEOUT, rx).await {
                        Ok(Ok(r)) => r?,
                        Ok(Err(_)) => return Err(FlushError::Stopping),
                        Err(_) => return Err(FlushError::Timeout),
                    }
                    Ok::<_, FlushError>(close_intervals(&s, true).await?)
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
        Request::Sla => Response::Sla(lock(&shared.engine).sla_at(wall_ms())),
        Request::Report(q) => history_report(&shared, &q),
        Request::Alerts => shared.alerts.report(&shared.store),
        Request::Callbacks => Response::Callbacks(lock(&shared.engine).callbacks_at(wall_ms())),
    })
}

/// A report read from the history in the store, off the engine lock.
fn history_report(shared: &Shared, q: &ReportQuery) -> Response {
    let cfg = lock(&shared.cfg).clone();
    // The control server runs handlers on the multi-threaded runtime; a long range reads many
    // entries from disk.
    let r = tokio::task::block_in_place(|| report(&cfg, &shared.store, wall_ms(), q));
    match r {
        Ok(r) => Response::Report(Box::new(r)),
        Err(e) => Response::Error(e.to_string()),
    }
}

fn metrics(shared: &Shared, q: &MetricsQuery) -> Response {
    // Read-only at the wall clock: only the committer moves the engine's clock on.
    // The CLI shows no histograms; leaving them out keeps the answer small.
    let result = lock(&shared.engine).metrics_with(q, wall_ms(), false);
    match result {
        Ok(rows) => Response::Metrics(rows),
        Err(e) => Response::Error(e.to_string()),
    }
}

pub(super) fn reload(shared: &Shared) -> Response {
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
    if new.sources != cfg.sources {
        notes.push("sources only change on restart".to_string());
    }
    if new.exposition != cfg.exposition {
        notes.push("the /metrics listener (exposition) only changes on restart".to_string());
    }
    if new.alerts != cfg.alerts || new.alerting != cfg.alerting {
        notes.push("alert rules and receivers only change on restart".to_string());
    }
    lock(&shared.engine).reconfigure(&new);
    shared.limits.send_replace(new.limits.clone());
    match shared.closer.try_lock() {
        Ok(mut c) => c.reconfigure(&new),
        Err(_) => {
            notes.push("interval closing was busy; its settings apply after a restart".to_string());
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
    let mut sinks: Vec<_> = shared
        .sinks
        .iter()
        .map(|s| {
            // Read under the sink's status lock: delivery moves the cursor and counts what it
            // delivered or parked under the same lock, so the backlog and the counts agree.
            let (mut st, cursor) = {
                let guard = lock(&s.status);
                (guard.clone(), shared.store.cursor(&s.cfg.name).unwrap_or(0))
            };
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
    sinks.extend(shared.alerts.statuses(&shared.store));
    UpstreamStatus {
        host_id: shared.host_id.clone(),
        outbox_records: records,
        outbox_bytes: bytes,
        dropped_records: shared.store.dropped_records().unwrap_or(0),
        sinks,
    }
}

pub(super) fn status(shared: &Shared) -> StatusReport {
    let cfg = lock(&shared.cfg).clone();
    let (engine_stats, windows) = {
        let engine = lock(&shared.engine);
        (engine.stats(), engine.window_names())
    };
    let last = lock(&shared.checkpoint).last;
    StatusReport {
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_ms: shared.started.elapsed().as_millis() as u64,
        event_socket: shared.sockets.0.clone(),
        control_socket: shared.sockets.1.clone(),
        admin_socket: shared.sockets.2.clone(),
        time_zone: cfg.general.time_zone.0.clone(),
        windows,
        ingest: shared.ingest.snapshot(),
        engine: engine_stats,
        store: StoreStatus {
            path: shared.store.path().display().to_string(),
            size_bytes: *lock(&shared.store_size),
            max_bytes: shared.store.max_bytes(),
            logged_groups: shared.store.logged_groups(),
            last_checkpoint_age_ms: Some(last.elapsed().as_millis() as i64),
        },
        limits: cfg.limits.clone(),
        upstream: upstream_status(shared),
        sources: super::sources::statuses(shared),
        history: HistoryStatus::of(&shared.store, &cfg.history).unwrap_or_default(),
    }
}
