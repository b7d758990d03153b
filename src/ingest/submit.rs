//! Submission: hands the valid events of one decoded line or frame to the committer, within the
//! limit on events in flight, and queues the reply owed for it (ready now, or waiting for the
//! committer's results). Validation errors are counted here, under their `events_rejected` label.

use tokio::sync::{mpsc, oneshot, watch};

use super::decode::Decoded;
use super::reply::{resolve, Reply, Shape};
use super::reply_queue::Pending;
use super::stop::{or_stop, Stop};
use super::{IngestCtx, IngestStats, Submission, MAX_IN_FLIGHT_EVENTS};
use crate::config::LimitsConfig;
use crate::event::{Event, EventError};

/// Queues a reply known without the committer.
pub(super) async fn push_ready(pending: &mpsc::Sender<Pending>, reply: Reply) -> Result<(), Stop> {
    pending
        .send(Pending::Ready(reply))
        .await
        .map_err(|_| Stop::WriterGone)
}

/// Submits the valid events of one decoded line or frame and queues the reply owed for it.
pub(super) async fn submit_decoded(
    decoded: Result<Decoded, String>,
    limits: &LimitsConfig,
    ctx: &IngestCtx,
    pending: &mpsc::Sender<Pending>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), Stop> {
    let (shape, (events, invalid, total)) = match decoded {
        Err(msg) => {
            ctx.stats.reject("invalid");
            return push_ready(pending, Reply::error(msg)).await;
        }
        Ok(Decoded::TooLarge { events }) => {
            ctx.stats.update(|c| {
                *c.events_rejected.entry("too_large".into()).or_default() += events as u64;
            });
            let max = limits.max_batch_events;
            return push_ready(pending, Reply::BatchTooLarge { events, max }).await;
        }
        Ok(Decoded::One(item)) => (Shape::One, split(std::iter::once(item), &ctx.stats)),
        Ok(Decoded::Batch(items)) => (Shape::Batch, split(items, &ctx.stats)),
    };

    // Reserve the reply's place first: once events are submitted, their reply must not be lost.
    let permit = pending.reserve().await.map_err(|_| Stop::WriterGone)?;
    if events.is_empty() {
        permit.send(Pending::Ready(resolve(
            shape,
            total,
            invalid,
            Some(Vec::new()),
            &ctx.stats,
        )));
        return Ok(());
    }
    // Wait for room among the events in flight: the back-pressure that bounds decoded events.
    let want = events.len().min(MAX_IN_FLIGHT_EVENTS) as u32;
    let in_flight = match or_stop(
        ctx.in_flight.clone().acquire_many_owned(want),
        shutdown,
        pending,
    )
    .await
    {
        Ok(Ok(p)) => p,
        // Stopped while waiting (the semaphore itself is never closed): nothing was stored.
        other => {
            permit.send(Pending::Ready(resolve(
                shape, total, invalid, None, &ctx.stats,
            )));
            return Err(match other {
                Err(stop) => stop,
                Ok(_) => Stop::Shutdown,
            });
        }
    };
    let (reply_tx, reply_rx) = oneshot::channel();
    let submission = Submission {
        events,
        reply: reply_tx,
        in_flight,
        mark: None,
    };
    // `send` waits while the committer is busy: that is the back-pressure on fast clients.
    match or_stop(ctx.submit.send(submission), shutdown, pending).await {
        Ok(Ok(())) => {
            permit.send(Pending::Waiting {
                shape,
                total,
                invalid,
                results: reply_rx,
            });
            Ok(())
        }
        // The committer is gone: nothing was stored.
        Ok(Err(_)) => {
            permit.send(Pending::Ready(resolve(
                shape, total, invalid, None, &ctx.stats,
            )));
            Ok(())
        }
        // Stopped while waiting for the committer: tell the client its events were not stored.
        Err(stop) => {
            permit.send(Pending::Ready(resolve(
                shape, total, invalid, None, &ctx.stats,
            )));
            Err(stop)
        }
    }
}

/// Splits validated items into the events to submit and the validation errors by index,
/// counting each error; also returns the number of items.
fn split(
    items: impl IntoIterator<Item = Result<Event, EventError>>,
    stats: &IngestStats,
) -> (Vec<Event>, Vec<(usize, EventError)>, usize) {
    let items = items.into_iter();
    let mut events = Vec::with_capacity(items.size_hint().0);
    let mut invalid = Vec::new();
    let mut total = 0;
    for (index, item) in items.enumerate() {
        total += 1;
        match item {
            Ok(event) => events.push(event),
            Err(e) => {
                stats.reject(validation_label(&e));
                invalid.push((index, e));
            }
        }
    }
    (events, invalid, total)
}

/// The `events_rejected` label of an event that failed validation.
fn validation_label(e: &EventError) -> &'static str {
    match e {
        EventError::TooLong { .. } | EventError::TooManyTags { .. } => "too_large",
        _ => "invalid",
    }
}
