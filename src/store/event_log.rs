//! The event log: one group of events per commit under its sequence number, split into chunks of
//! at most [`CHUNK`](super::CHUNK) bytes, read back in order after a checkpoint's sequence number.

use std::sync::atomic::Ordering;

use super::trees::{apply_batch, seq_of, split_chunks};
use super::{Store, StoreError};

pub(super) fn log_key(seq: u64, chunk: u16) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..8].copy_from_slice(&seq.to_be_bytes());
    k[8..].copy_from_slice(&chunk.to_be_bytes());
    k
}

impl Store {
    /// Appends one encoded group of events under the next sequence number; durable only after
    /// [`Store::flush`].
    pub fn append(&self, group: &[u8]) -> Result<u64, StoreError> {
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        let mut batch = sled::Batch::default();
        let mut bytes = 0u64;
        for (i, chunk) in split_chunks(group).enumerate() {
            let key = log_key(seq, i as u16);
            bytes += (key.len() + chunk.len()) as u64;
            batch.insert(&key[..], chunk);
        }
        self.note(apply_batch(&self.t()?.log, batch).map_err(StoreError::from))?;
        self.logged_groups.fetch_add(1, Ordering::SeqCst);
        self.log_bytes.fetch_add(bytes, Ordering::SeqCst);
        self.churned(bytes);
        Ok(seq)
    }

    /// The sequence number the next appended group will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq.load(Ordering::SeqCst)
    }

    /// Logged groups after `seq`, in order, each with its sequence number.
    pub fn groups_after(
        &self,
        seq: u64,
    ) -> impl Iterator<Item = Result<(u64, Vec<u8>), StoreError>> + '_ {
        let log = self.t().map(|t| t.log.clone());
        let mut failed = None;
        let mut iter = match log {
            Ok(log) => Some(log.range(log_key(seq + 1, 0)..).peekable()),
            Err(e) => {
                failed = Some(e);
                None
            }
        };
        std::iter::from_fn(move || {
            if let Some(e) = failed.take() {
                return Some(Err(e));
            }
            let iter = iter.as_mut()?;
            let (k, v) = match iter.next()? {
                Ok(kv) => kv,
                Err(e) => return Some(Err(e.into())),
            };
            let seq = match seq_of(k.get(..8).unwrap_or(&[])) {
                Ok(s) => s,
                Err(e) => return Some(Err(e)),
            };
            let mut group = v.to_vec();
            while let Some(Ok((k2, v2))) = iter.peek() {
                if k2.get(..8) != Some(&seq.to_be_bytes()[..]) {
                    break;
                }
                group.extend_from_slice(v2);
                iter.next();
            }
            Some(Ok((seq, group)))
        })
    }

    /// Makes the next group's sequence number at least `seq`.
    pub(super) fn bump_next_seq(&self, seq: u64) {
        self.next_seq.fetch_max(seq, Ordering::SeqCst);
    }
}
