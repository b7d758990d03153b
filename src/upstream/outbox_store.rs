//! The store-backed [`Outbox`] that sinks read from and acknowledge to.

use std::sync::Arc;

use serde::Serialize;

use super::record::IntervalRecord;
use super::{Outbox, OutboxError};
use crate::store::outbox::DeadLetter;
use crate::store::Store;

/// The outbox of one daemon, shared by all its sinks.
pub struct StoreOutbox {
    store: Arc<Store>,
    /// Every configured sink: a record leaves once all of them passed it.
    sinks: Vec<String>,
}

impl StoreOutbox {
    pub fn new(store: Arc<Store>, sinks: Vec<String>) -> StoreOutbox {
        StoreOutbox { store, sinks }
    }

    pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
        // Plain data structs with string keys serialize to a Vec without error.
        rmp_serde::to_vec(v).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<IntervalRecord, OutboxError> {
        Ok(rmp_serde::from_slice(bytes)?)
    }
}

impl Outbox for StoreOutbox {
    fn pending(&self, sink: &str, limit: usize) -> Result<Vec<IntervalRecord>, OutboxError> {
        let cursor = self.store.cursor(sink)?;
        self.store
            .records_after(cursor, limit)?
            .iter()
            .map(|(_, bytes)| Self::decode(bytes))
            .collect()
    }

    fn ack(&self, sink: &str, upto_seq: u64) -> Result<(), OutboxError> {
        Ok(self
            .store
            .advance_cursor(sink, upto_seq, &[], &self.sinks)?)
    }

    fn park(
        &self,
        sink: &str,
        records: &[IntervalRecord],
        reason: &str,
    ) -> Result<(), OutboxError> {
        let Some(last) = records.iter().map(|r| r.seq).max() else {
            return Ok(());
        };
        let dead: Vec<(u64, DeadLetter)> = records
            .iter()
            .map(|r| {
                (
                    r.seq,
                    DeadLetter {
                        reason: reason.to_string(),
                        record: Self::encode(r),
                    },
                )
            })
            .collect();
        Ok(self.store.advance_cursor(sink, last, &dead, &self.sinks)?)
    }
}
