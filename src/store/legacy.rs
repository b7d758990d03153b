//! Reading a store written by the first layout (schema 1: one sled key per bucket, the engine's
//! other state as one `MessagePack` value, the log in an `events` tree), so that an upgrade migrates
//! it instead of starting empty. The migrated checkpoint replaces it in one atomic write.

use serde::Deserialize;

use super::trees::seq_of;
use super::{Store, StoreError};
use crate::event::Event;

/// The schema version of the first layout.
pub const SCHEMA_VERSION: u32 = 1;

const OLD_LOG: &str = "events";
const OLD_BUCKET: u8 = b'b';
const OLD_VOLATILE: &[u8] = b"m:volatile";
const OLD_SEQ: &[u8] = b"m:checkpoint_seq";

/// An event as the first layout logged it.
#[derive(Debug, Deserialize)]
pub struct LoggedEvent {
    pub rx_ms: i64,
    pub event: Event,
}

/// The first layout's checkpoint.
pub struct Legacy {
    pub checkpoint_seq: u64,
    /// Encoded bucket id → `MessagePack` aggregate.
    pub buckets: Vec<(Vec<u8>, Vec<u8>)>,
    /// The engine's other state, `MessagePack`.
    pub volatile: Option<Vec<u8>>,
}

impl Store {
    /// The first layout's checkpoint.
    pub fn legacy(&self) -> Result<Legacy, StoreError> {
        let mut buckets = Vec::new();
        for kv in self.t()?.state.scan_prefix([OLD_BUCKET]) {
            let (k, v) = kv?;
            buckets.push((k[1..].to_vec(), v.to_vec()));
        }
        Ok(Legacy {
            checkpoint_seq: match self.t()?.state.get(OLD_SEQ)? {
                None => 0,
                Some(v) => seq_of(&v)?,
            },
            buckets,
            volatile: self.t()?.state.get(OLD_VOLATILE)?.map(|v| v.to_vec()),
        })
    }

    /// The first layout's logged groups after `seq`, decoded.
    pub fn legacy_groups_after(
        &self,
        seq: u64,
    ) -> Result<Vec<(u64, Vec<LoggedEvent>)>, StoreError> {
        let tree = self.t()?.db.open_tree(OLD_LOG)?;
        let mut out = Vec::new();
        for kv in tree.range((seq + 1).to_be_bytes()..) {
            let (k, v) = kv?;
            let events: Vec<LoggedEvent> = rmp_serde::from_slice(&v).map_err(|e| {
                StoreError::Corrupt(format!("a logged group of the first layout: {e}"))
            })?;
            out.push((seq_of(&k)?, events));
        }
        Ok(out)
    }

    /// Writes the migrated checkpoint, removes the first layout's keys and marks the new schema,
    /// in one atomic batch; then drops the old log.
    pub async fn write_migrated_checkpoint(
        &self,
        seq: u64,
        slices: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        state: &[u8],
    ) -> Result<(), StoreError> {
        let mut old_keys = Vec::new();
        for kv in self.t()?.state.scan_prefix([OLD_BUCKET]) {
            old_keys.push(kv?.0);
        }
        self.write_checkpoint_with(seq, slices, state, move |batch| {
            for k in old_keys {
                batch.remove(k);
            }
            batch.remove(OLD_VOLATILE);
            batch.insert(super::META_SCHEMA, &super::SCHEMA_VERSION.to_be_bytes());
        })
        .await?;
        self.bump_next_seq(seq + 1);
        drop_old_log(&self.t()?.db)?;
        self.flush().await?;
        Ok(())
    }
}

/// Drops the first layout's log tree if it is still there (after a migration cut short).
pub fn drop_old_log(db: &sled::Db) -> Result<(), StoreError> {
    if db.tree_names().iter().any(|n| &**n == OLD_LOG.as_bytes()) {
        db.drop_tree(OLD_LOG)?;
    }
    Ok(())
}
