//! The delivery loop of one sink: take a batch from the outbox, send it, and only on 2xx move the
//! sink's cursor. Failures are retried forever with exponential backoff and full jitter (honouring
//! `Retry-After`); a batch the receiver refuses for good is parked as dead letters.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::config::{SinkConfig, SinkKind};
use crate::shutdown;
use crate::upstream::encode::batch_key;
use crate::upstream::redact::redact_url;
use crate::upstream::retry::{retry_delay, SendOutcome};
use crate::upstream::sink::Sink;
use crate::upstream::{IntervalRecord, Outbox, SinkStatus};

/// Without a wake-up, the outbox is looked at again after this long anyway (a missed
/// notification then delays shipping, never loses it).
const IDLE_POLL: Duration = Duration::from_secs(60);

/// Ships the outbox to one sink until `shutdown` turns true (or its sender is dropped).
///
/// `wake` is notified by whoever adds records to the outbox (`notify_one` for a `Notify` per
/// sink, `notify_waiters` for one shared by every sink; both are safe). An in-flight request is
/// abandoned on shutdown; its records stay in the outbox and go out again after a restart.
pub async fn run_sink(
    cfg: SinkConfig,
    outbox: Arc<dyn Outbox>,
    status: Arc<Mutex<SinkStatus>>,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = cfg.name.clone();
    let cap = millis(cfg.backoff_cap.0).max(Duration::from_millis(1));
    let linger = millis(cfg.linger.0);
    let limit = cfg.batch_records.max(1);
    {
        let mut st = lock(&status);
        st.name.clone_from(&name);
        st.kind = match cfg.kind {
            SinkKind::Http => "http",
            SinkKind::Influx => "influx",
        }
        .into();
        st.url = redact_url(&cfg.url);
    }

    // Building can fail on a token file that is not there yet: keep trying, visibly.
    let sink = {
        let mut attempt = 0u32;
        loop {
            match Sink::new(&cfg) {
                Ok(sink) => break sink,
                Err(e) => {
                    let error = e.to_string();
                    if attempt == 0 {
                        tracing::error!(sink = %name, %error, "upstream sink cannot start; retrying until the configuration is fixed");
                    }
                    let delay = retry_delay(attempt, cap, None);
                    if !back_off(&mut attempt, delay, &status, &error, false, &mut shutdown).await {
                        return;
                    }
                }
            }
        }
    };
    lock(&status).url = sink.display_url();

    // Failed attempts in a row (any cause); reset by a delivery.
    let mut failures = 0u32;
    // The batch being retried: resent as is, so its key stays the same.
    let mut retrying: Option<Vec<IntervalRecord>> = None;
    // When a partial batch was first seen (for `linger`).
    let mut partial_since: Option<Instant> = None;

    loop {
        if shutdown::is_signalled(&shutdown) {
            return;
        }
        let notified = wake.notified();
        tokio::pin!(notified);
        // Registered before looking, so a notification racing with the look is not lost.
        notified.as_mut().enable();

        let batch = match retrying.take() {
            Some(batch) => batch,
            None => match outbox.pending(&name, limit) {
                Ok(batch) => batch,
                Err(e) => {
                    let error = format!("outbox read failed: {e}");
                    if failures == 0 {
                        tracing::error!(sink = %name, %error, "cannot read the outbox; retrying");
                    }
                    let delay = retry_delay(failures, cap, None);
                    if !back_off(&mut failures, delay, &status, &error, false, &mut shutdown).await
                    {
                        return;
                    }
                    continue;
                }
            },
        };

        if batch.is_empty() {
            partial_since = None;
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
                () = shutdown::signalled(&mut shutdown) => return,
            }
            continue;
        }

        if batch.len() < limit && failures == 0 && !linger.is_zero() {
            let deadline = *partial_since.get_or_insert_with(Instant::now) + linger;
            if Instant::now() < deadline {
                tokio::select! {
                    () = &mut notified => {}
                    () = tokio::time::sleep_until(deadline) => {}
                    () = shutdown::signalled(&mut shutdown) => return,
                }
                continue;
            }
        }
        partial_since = None;

        let outcome = tokio::select! {
            outcome = sink.send(&batch) => outcome,
            () = shutdown::signalled(&mut shutdown) => return,
        };
        let first = batch.first().map_or(0, |r| r.seq);
        let last = batch.last().map_or(0, |r| r.seq);
        match outcome {
            SendOutcome::Delivered => {
                // The cursor moves and the count grows under the status lock, so `status` never
                // shows the records gone from the backlog without counting them.
                let acked = {
                    let mut st = lock(&status);
                    let acked = outbox.ack(&name, last);
                    if acked.is_ok() {
                        st.delivered_records += batch.len() as u64;
                        st.last_success_ms = Some(now_ms());
                    }
                    acked
                };
                if let Err(e) = acked {
                    // Delivered but not remembered: it will go again and the receiver dedupes.
                    let error = format!("outbox ack up to seq {last} failed: {e}");
                    tracing::error!(sink = %name, %error, "records were delivered but the cursor did not move; they will be sent again");
                    let delay = retry_delay(failures, cap, None);
                    if !back_off(&mut failures, delay, &status, &error, false, &mut shutdown).await
                    {
                        return;
                    }
                    continue;
                }
                if failures > 0 {
                    tracing::info!(sink = %name, failed_attempts = failures, records = batch.len(), "upstream delivery resumed");
                }
                failures = 0;
                tracing::debug!(sink = %name, first, last, records = batch.len(), "batch delivered");
            }
            SendOutcome::Retry { error, after } => {
                let delay = retry_delay(failures, cap, after);
                if failures == 0 {
                    tracing::warn!(
                        sink = %name, batch = %batch_key(&batch), %error, retry_in_ms = delay.as_millis() as u64,
                        "upstream delivery failed; retrying the same batch until it is accepted (records stay in the outbox)"
                    );
                } else {
                    tracing::debug!(sink = %name, attempt = failures + 1, %error, retry_in_ms = delay.as_millis() as u64, "upstream delivery failed again");
                }
                retrying = Some(batch);
                if !back_off(&mut failures, delay, &status, &error, true, &mut shutdown).await {
                    return;
                }
            }
            SendOutcome::Reject { error } => {
                let reason = format!("rejected by the receiver: {error}");
                tracing::error!(
                    sink = %name, batch = %batch_key(&batch), first, last, records = batch.len(), %error,
                    "upstream receiver refused this batch for good; it is parked as dead letters (counted in status). \
                     Check the receiver's answer and the sink's url, token_file and format; the records are kept"
                );
                let parked = {
                    let mut st = lock(&status);
                    let parked = outbox.park(&name, &batch, &reason);
                    if parked.is_ok() {
                        st.dead_letters += batch.len() as u64;
                        st.last_error = Some(reason);
                        st.last_error_ms = Some(now_ms());
                    }
                    parked
                };
                if let Err(e) = parked {
                    let error = format!("outbox park of seq {first}-{last} failed: {e}");
                    tracing::error!(sink = %name, %error, "cannot park the refused batch; will try again");
                    let delay = retry_delay(failures, cap, None);
                    if !back_off(&mut failures, delay, &status, &error, false, &mut shutdown).await
                    {
                        return;
                    }
                    continue;
                }
                // The receiver answered: the link works, so the next batch starts a fresh backoff.
                if failures > 0 {
                    tracing::info!(sink = %name, failed_attempts = failures, "upstream receiver reachable again");
                }
                failures = 0;
            }
        }
    }
}

/// After a failed attempt: notes the error in the sink's status (as a retry of the batch when
/// `retry`), counts the attempt and sleeps `delay`. False when shutdown came first.
pub(crate) async fn back_off(
    failures: &mut u32,
    delay: Duration,
    status: &Mutex<SinkStatus>,
    error: &str,
    retry: bool,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    note_error(status, error, retry);
    *failures = failures.saturating_add(1);
    shutdown::sleep_unless_signalled(delay, shutdown).await
}

fn note_error(status: &Mutex<SinkStatus>, error: &str, retry: bool) {
    let mut st = lock(status);
    st.last_error = Some(error.to_string());
    st.last_error_ms = Some(now_ms());
    if retry {
        st.retries += 1;
    }
}

/// The status even if a thread panicked while holding it (it only holds plain counters).
fn lock(status: &Mutex<SinkStatus>) -> MutexGuard<'_, SinkStatus> {
    status
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A real HTTP receiver with scripted faults, shared with the integration tests and benches; the
/// unit tests of `sink.rs` use it from here too.
#[cfg(test)]
#[path = "../../tests/support/http.rs"]
pub(crate) mod test_receiver;

#[cfg(test)]
#[path = "delivery_tests.rs"]
mod tests;
