//! Delivery of alert notifications to one receiver, oldest first, one per request, so a
//! receiver sees each rule's changes in order. A notification leaves the store only after a 2xx;
//! failures are retried with the sinks' backoff (full jitter, `Retry-After` honoured) and a
//! refusal for good is parked as a dead letter, as for interval records. An Alertmanager also
//! gets the firing alerts again every `resend_every` while nothing waits for it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::board::Board;
use super::notice::Notice;
use crate::config::{ReceiverConfig, ReceiverKind};
use crate::shutdown;
use crate::store::Store;
use crate::upstream::delivery::back_off;
use crate::upstream::redact::redact_url;
use crate::upstream::retry::{classify_response, describe_error, retry_delay, SendOutcome};
use crate::upstream::sink::{http_client, IDEMPOTENCY_KEY_HEADER};
use crate::upstream::SinkStatus;

/// Without a wake-up, the store is looked at again after this long anyway.
const IDLE_POLL: Duration = Duration::from_secs(60);

/// A firing alert sent to an Alertmanager stays for this many re-send periods: one missed
/// refresh does not end it, a daemon gone for good lets it expire.
pub const EXPIRY_PERIODS: i64 = 3;

/// A receiver's address and client.
struct Target {
    kind: ReceiverKind,
    url: String,
    client: reqwest::Client,
}

impl Target {
    /// Sends `notice` (a refresh when `refresh`: no idempotency header) and classifies the answer.
    async fn send(&self, notice: &Notice, now: i64, resend_ms: i64) -> SendOutcome {
        let body = match self.kind {
            ReceiverKind::Webhook => notice.webhook_json(),
            ReceiverKind::Alertmanager => {
                notice.alertmanager_json(now + EXPIRY_PERIODS * resend_ms)
            }
        };
        self.post(&body, (notice.seq > 0).then(|| notice.idempotency_key()))
            .await
    }

    async fn post(&self, body: &serde_json::Value, key: Option<String>) -> SendOutcome {
        let mut request = self
            .client
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(key) = key {
            request = request.header(IDEMPOTENCY_KEY_HEADER, key);
        }
        match request.send().await {
            Ok(response) => classify_response(response).await,
            Err(e) => SendOutcome::Retry {
                error: describe_error(&e.without_url()),
                after: None,
            },
        }
    }
}

/// Delivers `receiver`'s notifications until `shutdown`. `wake` is notified when the board
/// wrote some; `board` gives the firing alerts an Alertmanager is reminded of.
pub async fn run_receiver(
    cfg: ReceiverConfig,
    store: Arc<Store>,
    board: Arc<Mutex<Board>>,
    resend_every: Duration,
    status: Arc<Mutex<SinkStatus>>,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = cfg.name.clone();
    let cap = cfg.backoff_cap.to_duration().max(Duration::from_millis(1));
    let resend_ms = i64::try_from(resend_every.as_millis()).unwrap_or(i64::MAX / 4);
    let url = match cfg.kind {
        ReceiverKind::Alertmanager => format!("{}/api/v2/alerts", cfg.url.trim_end_matches('/')),
        ReceiverKind::Webhook => cfg.url.clone(),
    };
    {
        let mut st = lock(&status);
        st.name = format!("alerts:{name}");
        st.kind = cfg.kind.name().into();
        st.url = redact_url(&url);
    }
    let mut failures = 0u32;
    let target = loop {
        match http_client(
            &name,
            &cfg.token_file,
            cfg.connect_timeout.0,
            cfg.request_timeout.0,
        ) {
            Ok(client) => {
                break Target {
                    kind: cfg.kind,
                    url: url.clone(),
                    client,
                }
            }
            Err(e) => {
                let error = e.to_string();
                if failures == 0 {
                    tracing::error!(receiver = %name, %error, "alert receiver cannot start; retrying until the configuration is fixed");
                }
                let delay = retry_delay(failures, cap, None);
                if !back_off(&mut failures, delay, &status, &error, false, &mut shutdown).await {
                    return;
                }
            }
        }
    };
    let mut last_refresh = Instant::now();

    loop {
        if shutdown::is_signalled(&shutdown) {
            return;
        }
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        // The firing set is read before the queue: if a change is queued meanwhile, the
        // refresh is skipped or goes out before the change, never after it.
        let firing = (cfg.kind == ReceiverKind::Alertmanager)
            .then(|| lock_board(&board).firing_for(&name, wall_ms()));
        let next = match store.alert_notices(&name, 1) {
            Ok(n) => n.into_iter().next(),
            Err(e) => {
                let error = format!("alert outbox read failed: {e}");
                let delay = retry_delay(failures, cap, None);
                if !back_off(&mut failures, delay, &status, &error, false, &mut shutdown).await {
                    return;
                }
                continue;
            }
        };
        let Some((seq, bytes)) = next else {
            failures = 0;
            let refresh_at = last_refresh + resend_every;
            if let Some(firing) = firing.filter(|_| Instant::now() >= refresh_at) {
                last_refresh = Instant::now();
                refresh(&target, &name, firing, resend_ms).await;
                continue;
            }
            let until = if cfg.kind == ReceiverKind::Alertmanager {
                refresh_at
            } else {
                Instant::now() + IDLE_POLL
            };
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(until) => {}
                () = shutdown::signalled(&mut shutdown) => return,
            }
            continue;
        };
        let Ok(notice) = rmp_serde::from_slice::<Notice>(&bytes) else {
            // Written by this program; unreadable means a damaged store: keep it, move on.
            finish(
                &store,
                &status,
                &name,
                seq,
                Some("undecodable notification"),
            )
            .await;
            continue;
        };
        let outcome = tokio::select! {
            o = target.send(&notice, wall_ms(), resend_ms) => o,
            () = shutdown::signalled(&mut shutdown) => return,
        };
        match outcome {
            SendOutcome::Delivered => {
                if !finish(&store, &status, &name, seq, None).await {
                    let delay = retry_delay(failures, cap, None);
                    let error = format!("notification {seq} was delivered but cannot be removed from the store; it will be sent again");
                    if !back_off(&mut failures, delay, &status, &error, false, &mut shutdown).await
                    {
                        return;
                    }
                    continue;
                }
                if failures > 0 {
                    tracing::info!(receiver = %name, failed_attempts = failures, "alert delivery resumed");
                }
                failures = 0;
                if cfg.kind == ReceiverKind::Alertmanager {
                    // What it was just told counts as a refresh.
                    last_refresh = Instant::now();
                }
            }
            SendOutcome::Retry { error, after } => {
                let delay = retry_delay(failures, cap, after);
                if failures == 0 {
                    tracing::warn!(receiver = %name, key = %notice.idempotency_key(), %error, retry_in_ms = delay.as_millis() as u64,
                        "alert delivery failed; retrying until it is accepted (the notification stays in the store)");
                }
                if !back_off(&mut failures, delay, &status, &error, true, &mut shutdown).await {
                    return;
                }
            }
            SendOutcome::Reject { error } => {
                let reason = format!("rejected by the receiver: {error}");
                tracing::error!(receiver = %name, key = %notice.idempotency_key(), %error,
                    "alert receiver refused this notification for good; it is parked as a dead letter (counted in status)");
                if finish(&store, &status, &name, seq, Some(&reason)).await {
                    failures = 0;
                }
            }
        }
    }
}

/// Sends an Alertmanager its firing alerts again; a failure waits for the next period (the
/// alerts stay in the store and in the board).
async fn refresh(target: &Target, name: &str, firing: Vec<Notice>, resend_ms: i64) {
    for notice in firing {
        if let SendOutcome::Retry { error, .. } | SendOutcome::Reject { error } =
            target.send(&notice, wall_ms(), resend_ms).await
        {
            tracing::debug!(receiver = %name, %error, "alert refresh failed; trying again next period");
            return;
        }
    }
}

/// Removes (or parks) a notification and counts it; false when the store refused.
async fn finish(
    store: &Arc<Store>,
    status: &Mutex<SinkStatus>,
    name: &str,
    seq: u64,
    parked: Option<&str>,
) -> bool {
    let (s, n, p) = (store.clone(), name.to_string(), parked.map(str::to_string));
    let done = tokio::task::spawn_blocking(move || s.finish_alert_notice(&n, seq, p.as_deref()))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    let mut st = lock(status);
    match done {
        Ok(()) => {
            if let Some(reason) = parked {
                st.dead_letters += 1;
                st.last_error = Some(reason.to_string());
                st.last_error_ms = Some(wall_ms());
            } else {
                st.delivered_records += 1;
                st.last_success_ms = Some(wall_ms());
            }
            true
        }
        Err(e) => {
            tracing::error!(receiver = %name, seq, error = %e, "cannot update the alert outbox");
            false
        }
    }
}

fn lock(status: &Mutex<SinkStatus>) -> MutexGuard<'_, SinkStatus> {
    status
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn lock_board(board: &Mutex<Board>) -> MutexGuard<'_, Board> {
    board
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn wall_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
