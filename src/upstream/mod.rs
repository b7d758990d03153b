//! Upstream shipping: closed intervals become records in a durable outbox, and each sink ships
//! them at least once, in order, leaving the outbox only after the receiver answered 2xx.

pub mod closer;
pub mod delivery;
pub mod encode;
pub mod outbox_store;
pub mod record;
pub mod redact;
pub mod retry;
pub mod sink;
pub mod sla_record;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use record::{IntervalRecord, RecordKind};

use crate::store::StoreError;

/// Why the outbox could not be read or moved on.
#[derive(Debug, Error)]
pub enum OutboxError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("undecodable outbox record: {0}")]
    Undecodable(#[from] rmp_serde::decode::Error),
}

/// The durable outbox as delivery sees it (the store implements it).
pub trait Outbox: Send + Sync + 'static {
    /// Up to `limit` records after this sink's cursor, oldest first.
    fn pending(&self, sink: &str, limit: usize) -> Result<Vec<IntervalRecord>, OutboxError>;
    /// The sink confirmed every record up to `upto_seq`: move its cursor, durably.
    fn ack(&self, sink: &str, upto_seq: u64) -> Result<(), OutboxError>;
    /// The sink refused these records for good: keep them as dead letters and move the cursor past them.
    fn park(&self, sink: &str, records: &[IntervalRecord], reason: &str)
        -> Result<(), OutboxError>;
}

/// What `status` shows of one sink.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SinkStatus {
    pub name: String,
    pub kind: String,
    pub url: String,
    /// Records waiting for this sink.
    pub backlog_records: u64,
    pub backlog_bytes: u64,
    pub oldest_waiting_ms: Option<i64>,
    pub delivered_records: u64,
    pub retries: u64,
    pub last_success_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    pub dead_letters: u64,
}
