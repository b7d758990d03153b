//! Submission: hands the valid events of decoded lines or frames to the committer, within the
//! limit on events in flight, and queues the replies owed for them (ready now, or waiting for the
//! committer's results). Validation errors are counted here, under their `events_rejected` label.

use tokio::sync::{mpsc, oneshot, watch};

use super::decode::Decoded;
use super::reply::{Reply, Shape};
use super::reply_queue::{Part, Pending};
use super::stop::{or_stop, Stop};
use super::{IngestCtx, IngestStats, ItemResult, Submission, MAX_IN_FLIGHT_EVENTS};
use crate::config::LimitsConfig;
use crate::event::{Event, EventError};

/// Queues a reply known without the committer.
pub(super) async fn push_ready(pending: &mpsc::Sender<Pending>, reply: Reply) -> Result<(), Stop> {
    pending
        .send(Pending::Ready(reply))
        .await
        .map_err(|_| Stop::WriterGone)
}

/// Submits the valid events of one or more decoded lines or frames (in input order) together and
/// queues the replies owed for them: one submission, so one wait for the committer, however many
/// lines a client pipelined.
pub(super) async fn submit_decoded(
    decoded: Vec<Result<Decoded, String>>,
    limits: &LimitsConfig,
    ctx: &IngestCtx,
    pending: &mpsc::Sender<Pending>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), Stop> {
    let mut parts = Vec::with_capacity(decoded.len());
    let mut events = Vec::new();
    for message in decoded {
        parts.push(part_of(message, limits, ctx, &mut events));
    }

    // Reserve the replies' place first: once events are submitted, their replies must not be lost.
    let permit = pending.reserve().await.map_err(|_| Stop::WriterGone)?;
    if events.is_empty() {
        // Nothing for the committer: every reply is known now.
        permit.send(Pending::Waiting {
            parts,
            results: answered(Vec::new()),
        });
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
            permit.send(Pending::Waiting {
                parts,
                results: never_answered(),
            });
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
                parts,
                results: reply_rx,
            });
            Ok(())
        }
        // The committer is gone: nothing was stored.
        Ok(Err(_)) => {
            permit.send(Pending::Waiting {
                parts,
                results: never_answered(),
            });
            Ok(())
        }
        // Stopped while waiting for the committer: tell the client its events were not stored.
        Err(stop) => {
            permit.send(Pending::Waiting {
                parts,
                results: never_answered(),
            });
            Err(stop)
        }
    }
}

/// The reply owed for one decoded line or frame, its valid events appended to `events`; errors
/// are counted under their `events_rejected` label.
fn part_of(
    decoded: Result<Decoded, String>,
    limits: &LimitsConfig,
    ctx: &IngestCtx,
    events: &mut Vec<Event>,
) -> Part {
    let (shape, (invalid, total)) = match decoded {
        Err(msg) => {
            ctx.stats.reject("invalid");
            return Part::Ready(Reply::error(msg));
        }
        Ok(Decoded::TooLarge { events }) => {
            ctx.stats.update(|c| {
                *c.events_rejected.entry("too_large".into()).or_default() += events as u64;
            });
            let max = limits.max_batch_events;
            return Part::Ready(Reply::BatchTooLarge { events, max });
        }
        Ok(Decoded::One(item)) => (Shape::One, split(std::iter::once(item), events, &ctx.stats)),
        Ok(Decoded::Batch(items)) => (Shape::Batch, split(items, events, &ctx.stats)),
    };
    Part::Submitted {
        shape,
        total,
        invalid,
    }
}

/// Results already known: the committer's answer when it has nothing to answer for.
fn answered(results: Vec<ItemResult>) -> oneshot::Receiver<Vec<ItemResult>> {
    let (tx, rx) = oneshot::channel();
    let _ = tx.send(results);
    rx
}

/// Results that never come: the replies say the events were not stored.
fn never_answered() -> oneshot::Receiver<Vec<ItemResult>> {
    oneshot::channel().1
}

/// Splits validated items into the events to submit (appended to `events`) and the validation
/// errors by index, counting each error; also returns the number of items.
fn split(
    items: impl IntoIterator<Item = Result<Event, EventError>>,
    events: &mut Vec<Event>,
    stats: &IngestStats,
) -> (Vec<(usize, EventError)>, usize) {
    let items = items.into_iter();
    events.reserve(items.size_hint().0);
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
    (invalid, total)
}

/// The `events_rejected` label of an event that failed validation.
fn validation_label(e: &EventError) -> &'static str {
    match e {
        EventError::TooLong { .. } | EventError::TooManyTags { .. } => "too_large",
        _ => "invalid",
    }
}
