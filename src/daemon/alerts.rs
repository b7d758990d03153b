//! The daemon's side of alerts: the board loaded at start, the loop that evaluates every rule
//! each `alerting.evaluate_every` against the engine's figures at wall-clock time, one delivery
//! task per receiver, and what `status`, `alerts` and `/metrics` show of them.

use std::sync::{Arc, Mutex};

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tracing::{error, warn};

use super::{lock, wall_ms, DaemonError, Shared};
use crate::alerts::{deliver, figures, Board};
use crate::config::{Config, ReceiverConfig};
use crate::control::protocol::Response;
use crate::exposition::text::{Exposition, Kind};
use crate::shutdown;
use crate::store::Store;
use crate::upstream::SinkStatus;

/// A running receiver: its config, what `status` shows of it, and the bell that wakes it.
struct ReceiverHandle {
    cfg: ReceiverConfig,
    status: Arc<Mutex<SinkStatus>>,
    wake: Arc<Notify>,
}

/// The alert rules' board and receivers (rules and receivers change on restart only).
pub(super) struct Alerts {
    board: Arc<Mutex<Board>>,
    receivers: Vec<ReceiverHandle>,
    evaluate_every: std::time::Duration,
    resend_every: std::time::Duration,
}

impl Alerts {
    /// The board as the store left it, for the rules of `cfg` (already validated).
    pub(super) fn load(cfg: &Config, store: &Store, host_id: &str) -> Result<Alerts, DaemonError> {
        let rules = cfg
            .alerts
            .iter()
            .filter_map(|r| {
                r.compile(&cfg.sla, &cfg.metrics.windows, &cfg.alerting.receivers)
                    .ok()
            })
            .collect();
        let (board, forgotten) = Board::load(
            rules,
            host_id.to_string(),
            cfg.alerting.keep_resolved,
            store,
        )?;
        for f in forgotten {
            warn!("alert {f} is no longer configured: its stored state was dropped and its receivers are not told");
        }
        let receivers = cfg
            .alerting
            .receivers
            .iter()
            .map(|r| ReceiverHandle {
                cfg: r.clone(),
                status: Arc::new(Mutex::new(SinkStatus {
                    name: format!("alerts:{}", r.name),
                    kind: r.kind.name().into(),
                    url: r.url.clone(),
                    dead_letters: store
                        .alert_dead_letters(&r.name)
                        .map_or(0, |d| d.len() as u64),
                    ..SinkStatus::default()
                })),
                wake: Arc::new(Notify::new()),
            })
            .collect();
        Ok(Alerts {
            board: Arc::new(Mutex::new(board)),
            receivers,
            evaluate_every: cfg.alerting.evaluate_every.to_duration(),
            resend_every: cfg.alerting.resend_every.to_duration(),
        })
    }

    /// Starts the evaluation loop and the receivers (none without rules and receivers).
    pub(super) fn spawn(
        shared: &Arc<Shared>,
        shutdown: &watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        let a = &shared.alerts;
        let mut tasks = Vec::new();
        for r in &a.receivers {
            tasks.push(tokio::spawn(deliver::run_receiver(
                r.cfg.clone(),
                shared.store.clone(),
                a.board.clone(),
                a.resend_every,
                r.status.clone(),
                r.wake.clone(),
                shutdown.clone(),
            )));
        }
        if !lock(&a.board).rules().is_empty() {
            tasks.push(tokio::spawn(evaluate_loop(
                shared.clone(),
                shutdown.clone(),
            )));
        }
        tasks
    }

    /// What `status` shows of each receiver, as sinks named `alerts:<receiver>`.
    pub(super) fn statuses(&self, store: &Store) -> Vec<SinkStatus> {
        self.receivers
            .iter()
            .map(|r| {
                let mut st = lock(&r.status).clone();
                let (n, b) = store.alert_backlog(&r.cfg.name).unwrap_or((0, 0));
                st.backlog_records = n;
                st.backlog_bytes = b;
                st
            })
            .collect()
    }

    /// The answer to `alerts`.
    pub(super) fn report(&self, store: &Store) -> Response {
        match lock(&self.board).report(store) {
            Ok(r) => Response::Alerts(r),
            Err(e) => Response::Error(format!("cannot read the alerts: {e}")),
        }
    }

    /// The `/metrics` gauge of firing alerts (left out when none fires).
    pub(super) fn exposition(&self) -> String {
        let firing = lock(&self.board).firing();
        let mut e = Exposition::default();
        e.family(
            "callmetrics_alerts_firing",
            Kind::Gauge,
            "Alerts firing now, by rule, queue and level reached (docs/alerts.md).",
            |s| {
                for (rule, queue, level) in &firing {
                    let level = level.to_string();
                    s.value(&[("rule", rule), ("queue", queue), ("level", &level)], 1);
                }
            },
        );
        e.finish()
    }
}

/// Evaluates every rule each period until shutdown.
async fn evaluate_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(shared.alerts.evaluate_every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = shutdown::signalled(&mut shutdown) => return,
        }
        let s = shared.clone();
        // Store writes flush: off the async threads.
        let woken = tokio::task::spawn_blocking(move || evaluate(&s)).await;
        match woken {
            Ok(Ok(receivers)) => {
                for r in &shared.alerts.receivers {
                    if receivers.contains(&r.cfg.name) {
                        r.wake.notify_one();
                    }
                }
            }
            Ok(Err(e)) => {
                error!("alert evaluation could not write its state: {e}; the alerts stand as before and are evaluated again");
            }
            Err(e) => error!("alert evaluation failed: {e}"),
        }
    }
}

/// One evaluation of every rule at wall-clock time; the receivers that got notifications.
fn evaluate(shared: &Shared) -> Result<Vec<String>, crate::store::StoreError> {
    let now = wall_ms();
    let rules = lock(&shared.alerts.board).rules().to_vec();
    let values: Vec<(usize, String, Option<f64>)> = {
        let engine = lock(&shared.engine);
        rules
            .iter()
            .enumerate()
            .flat_map(|(i, r)| {
                figures::values(&engine, r, now)
                    .into_iter()
                    .map(move |(q, v)| (i, q, v))
            })
            .collect()
    };
    let mut board = lock(&shared.alerts.board);
    let mut woken = Vec::new();
    for (rule, queue, value) in values {
        for r in board.evaluate(&shared.store, rule, &queue, now, value)? {
            if !woken.contains(&r) {
                woken.push(r);
            }
        }
    }
    Ok(woken)
}
