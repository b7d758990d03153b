//! Event intake: socket listeners, framing (JSON lines or MessagePack frames, chosen by the first
//! byte), and the hand-off of parsed events to the group committer, whose replies come back in order.

pub mod connection;
pub mod listener;

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::event::Event;

/// The outcome of one submitted event: accepted (durable) or refused with a message naming the cause.
pub type ItemResult = Result<(), String>;

/// A group of validated events from one line or frame, waiting for the committer.
pub struct Submission {
    pub events: Vec<Event>,
    /// One result per event, in order, sent once the accepted ones are durable.
    pub reply: oneshot::Sender<Vec<ItemResult>>,
}

/// Where connections send their events.
pub type SubmitTx = mpsc::Sender<Submission>;

/// Intake counters shown by `status`.
#[derive(Debug, Default)]
pub struct IngestStats {
    inner: Mutex<IngestCounters>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestCounters {
    pub connections_open: u64,
    pub connections_total: u64,
    pub connections_refused: u64,
    pub framing_errors: u64,
    pub events_accepted: u64,
    /// Refused events by reason (a short stable label such as `invalid`, `store_full`).
    pub events_rejected: BTreeMap<String, u64>,
}

impl IngestStats {
    pub fn update(&self, f: impl FnOnce(&mut IngestCounters)) {
        // A poisoned lock only means another thread panicked mid-update of plain counters.
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g);
    }

    pub fn snapshot(&self) -> IngestCounters {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn reject(&self, reason: &str) {
        self.update(|c| *c.events_rejected.entry(reason.to_string()).or_default() += 1);
    }
}
