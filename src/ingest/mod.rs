//! Event intake: socket listeners, framing (JSON lines or `MessagePack` frames, chosen by the first
//! byte), decoding, and the hand-off of parsed events to the group committer, whose replies come
//! back in order.
//!
//! - [`listener`]: accept loops, the connection cap, the drain on shutdown.
//! - [`connection`]: one connection's read loop.
//! - [`framing`]: the framing of a connection; reading one line or frame within the limits.
//! - [`decode`]: a line or frame body straight into events (typed serde visitors).
//! - `submit`: decoded lines or frames' valid events to the committer, and the replies they are owed.
//! - `coalesce`: lines or frames already whole in the read buffer, taken into the same submission.
//! - `reply_queue`: replies owed in input order, and the writer half that writes them.
//! - [`reply`]: the reply owed for a line or frame, encoded for its framing.
//! - `stop`: why a reader stops taking input; `linger`: the polite close.
//! - `boundary`: the wait between messages, where a connection idle longest gives its slot up.

mod boundary;
mod coalesce;
pub mod connection;
pub mod decode;
pub mod framing;
pub(crate) mod linger;
pub mod listener;
#[cfg(test)]
mod reference;
pub mod reply;
mod reply_queue;
mod stop;
mod submit;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::LimitsConfig;
use crate::event::Event;

/// The reply to events the committer will never answer.
pub const SHUTTING_DOWN: &str = "the daemon is shutting down; event not stored";

/// Why the committer did not store an event. The text is the reply's `error`; [`Refusal::label`]
/// is the `events_rejected` counter it adds to.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    #[error("store full: {size} bytes on disk reached store.max_bytes = {max}")]
    StoreFull { size: u64, max: u64 },
    #[error("disk full: {free} bytes free on the file system of {path}, {reserve} needed in reserve; free some space")]
    DiskFull {
        path: String,
        free: u64,
        reserve: u64,
    },
    #[error("too many open segments: {open} are open (limits.max_open_segments)")]
    OpenSegmentLimit { open: usize },
    #[error("field `ts`: {ahead_ms} ms ahead of this host's clock, more than limits.max_clock_ahead ({max_ms} ms); check the sender's clock and that `ts` is epoch milliseconds in UTC")]
    ClockAhead { ahead_ms: i64, max_ms: i64 },
    /// Writing or flushing the store failed; the message is the store's.
    #[error("store error: {0}")]
    Store(String),
    /// The committer stopped before answering.
    #[error("{}", SHUTTING_DOWN)]
    ShuttingDown,
    /// The committer answered fewer results than it was given events.
    #[error("the store gave no result for this event; it may not be stored")]
    NoResult,
}

impl Refusal {
    /// The `events_rejected` label this refusal counts under.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::StoreFull { .. } => "store_full",
            Refusal::DiskFull { .. } => "disk_full",
            Refusal::OpenSegmentLimit { .. } => "open_segment_limit",
            Refusal::ClockAhead { .. } => "clock_ahead",
            Refusal::Store(_) => "store_error",
            Refusal::ShuttingDown => "shutdown",
            Refusal::NoResult => "rejected",
        }
    }
}

/// The outcome of one submitted event: accepted (durable) or refused.
pub type ItemResult = Result<(), Refusal>;

/// A group of validated events from one line or frame, waiting for the committer.
pub struct Submission {
    pub events: Vec<Event>,
    /// One result per event, in order, sent once the accepted ones are durable.
    pub reply: oneshot::Sender<Vec<ItemResult>>,
    /// This submission's share of the events allowed in flight; released when it is dropped.
    pub in_flight: tokio::sync::OwnedSemaphorePermit,
    /// From an in-daemon source: its new position, stored in the same write as the events.
    pub mark: Option<MarkSubmission>,
}

/// A source's position submitted with its events: the committer writes it in the group that
/// holds them (even when every event was refused on its own, or there were none), and says
/// whether that group is durable.
pub struct MarkSubmission {
    pub mark: crate::store::group::SourceMark,
    /// `Ok` once the group holding the mark is durable; the refusal of the whole group otherwise.
    pub stored: oneshot::Sender<Result<(), Refusal>>,
}

/// Most events decoded and waiting for the committer at once, over all connections: two full
/// commit groups, so the committer never waits for input, while a burst of pipelining clients
/// cannot queue more than a few megabytes of events.
pub const MAX_IN_FLIGHT_EVENTS: usize = 16_384;

/// Where connections send their events.
pub type SubmitTx = mpsc::Sender<Submission>;

/// What every event connection shares.
pub struct IngestCtx {
    /// Where valid events go; the committer replies once they are durable.
    pub submit: SubmitTx,
    /// The limits in force; a reload sends new ones, read afresh for every line or frame.
    limits: watch::Receiver<LimitsConfig>,
    pub stats: Arc<IngestStats>,
    /// Events decoded but not yet committed, over all connections (see [`MAX_IN_FLIGHT_EVENTS`]).
    pub in_flight: Arc<tokio::sync::Semaphore>,
}

impl IngestCtx {
    pub fn new(
        submit: SubmitTx,
        limits: watch::Receiver<LimitsConfig>,
        stats: Arc<IngestStats>,
    ) -> IngestCtx {
        IngestCtx {
            submit,
            limits,
            stats,
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT_EVENTS)),
        }
    }

    /// The limits in force now.
    #[must_use]
    pub fn limits(&self) -> LimitsConfig {
        self.limits.borrow().clone()
    }
}

/// Intake counters shown by `status`.
#[derive(Debug, Default)]
pub struct IngestStats {
    inner: Mutex<IngestCounters>,
}

/// Counters a daemon older than the CLI does not send read as 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IngestCounters {
    pub connections_open: u64,
    pub connections_total: u64,
    pub connections_refused: u64,
    /// Idle connections closed to make room for a new one (`limits.max_connections`).
    pub connections_evicted: u64,
    /// Connections closed for leaving a line or frame half-sent (`limits.partial_input_timeout`).
    pub partial_input_timeouts: u64,
    pub framing_errors: u64,
    pub events_accepted: u64,
    /// Refused events by reason (a short stable label such as `invalid`, `store_full`).
    pub events_rejected: BTreeMap<String, u64>,
}

impl IngestStats {
    pub fn update(&self, f: impl FnOnce(&mut IngestCounters)) {
        // A poisoned lock only means another thread panicked mid-update of plain counters.
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut g);
    }

    pub fn snapshot(&self) -> IngestCounters {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn reject(&self, reason: &str) {
        self.update(|c| *c.events_rejected.entry(reason.to_string()).or_default() += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_as_before_and_have_labels() {
        let cases = [
            (
                Refusal::StoreFull { size: 9, max: 8 },
                "store full: 9 bytes on disk reached store.max_bytes = 8",
                "store_full",
            ),
            (
                Refusal::OpenSegmentLimit { open: 5 },
                "too many open segments: 5 are open (limits.max_open_segments)",
                "open_segment_limit",
            ),
            (
                Refusal::Store("disk on fire".into()),
                "store error: disk on fire",
                "store_error",
            ),
            (Refusal::ShuttingDown, SHUTTING_DOWN, "shutdown"),
            (
                Refusal::NoResult,
                "the store gave no result for this event; it may not be stored",
                "rejected",
            ),
        ];
        for (refusal, text, label) in cases {
            assert_eq!(refusal.to_string(), text);
            assert_eq!(refusal.label(), label);
        }
    }

    #[test]
    fn refusals_say_what_the_store_and_engine_say() {
        // The committer maps these errors to refusals; the texts must not drift apart.
        assert_eq!(
            Refusal::StoreFull { size: 9, max: 8 }.to_string(),
            crate::store::StoreError::Full { size: 9, max: 8 }.to_string()
        );
        assert_eq!(
            Refusal::OpenSegmentLimit { open: 5 }.to_string(),
            crate::engine::Rejection::OpenSegmentLimit(5).to_string()
        );
    }
}
