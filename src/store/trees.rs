//! The sled database and its trees: opening them, the one way every batch is written (which also
//! runs the frees sled has deferred), values cut into chunks of at most [`CHUNK`] bytes, and
//! sequence numbers read back from keys.

use std::path::Path;
use std::sync::RwLockReadGuard;

use super::{StoreError, CHUNK};

/// The tree of logged groups.
pub(super) const LOG_TREE: &[u8] = b"log";

/// The open database and its trees.
pub(super) struct Trees {
    pub(super) db: sled::Db,
    pub(super) log: sled::Tree,
    pub(super) state: sled::Tree,
    pub(super) upstream: sled::Tree,
}

/// The trees, read-locked for one store operation (a compaction swaps them under a write lock).
pub(super) struct TreesRef<'a>(pub(super) RwLockReadGuard<'a, Option<Trees>>);

impl std::ops::Deref for TreesRef<'_> {
    type Target = Trees;
    fn deref(&self) -> &Trees {
        // `Store::t` hands out a `TreesRef` only after checking the trees are there.
        self.0.as_ref().expect("checked by Store::t")
    }
}

/// Applies `batch` to `tree` atomically, then runs the frees of the pages it replaced (see
/// [`reclaim`]). Every batch of the store goes through here.
pub(super) fn apply_batch(tree: &sled::Tree, batch: sled::Batch) -> Result<(), sled::Error> {
    let r = tree.apply_batch(batch);
    reclaim(RECLAIM_ROUNDS_PER_BATCH);
    r
}

/// Rounds of [`reclaim`] after each batch. sled defers one old page version per key it changes,
/// and the largest batch (a log trim of 1 MiB of keys) changes ~58 000 keys; a round frees up
/// to 512, and costs well under a microsecond once nothing is left.
const RECLAIM_ROUNDS_PER_BATCH: usize = 128;
/// Rounds of [`reclaim`] before a reopen: whatever backlog is left.
pub(super) const RECLAIM_ROUNDS_ALL: usize = 16_384;

/// Runs up to `rounds` × 512 of the frees sled has deferred.
///
/// sled frees the old version of a page it changed through crossbeam's epoch collector, which
/// runs at most 8 bags of 64 deferred frees per 128 pins of a thread. A batch that changes many
/// pages under one pin defers far more than that, so during a bulk load the backlog grows
/// without bound (measured: ~100 MiB of old page versions after a recovery at 1 M calls), and
/// it drains only as later operations pin. Each round here pins, flushes this thread's bag and
/// collects up to 8 expired bags; when nothing is left it costs well under a microsecond.
pub(super) fn reclaim(rounds: usize) {
    for _ in 0..rounds {
        crossbeam_epoch::pin().flush();
    }
}

/// Opens sled at `path` with the store's trees.
pub(super) fn open_trees(path: &Path, cache_bytes: u64) -> Result<Trees, StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    let db = sled::Config::new()
        .path(path)
        .cache_capacity(cache_bytes)
        // Flushes are explicit (group commit); no background flusher waking up when idle.
        .flush_every_ms(None)
        .open()
        .map_err(open_err)?;
    Ok(Trees {
        log: db.open_tree(LOG_TREE).map_err(open_err)?,
        state: db.open_tree("state").map_err(open_err)?,
        upstream: db.open_tree("upstream").map_err(open_err)?,
        db,
    })
}

/// Splits a value into chunks of at most [`CHUNK`] bytes (an empty value is one empty chunk).
pub(super) fn split_chunks(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let n = bytes.len().div_ceil(CHUNK).max(1);
    (0..n).map(move |i| &bytes[(i * CHUNK).min(bytes.len())..((i + 1) * CHUNK).min(bytes.len())])
}

/// A sequence number from the 8 big-endian bytes of a key.
pub(super) fn seq_of(bytes: &[u8]) -> Result<u64, StoreError> {
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt(format!("sequence key of {} bytes", bytes.len())))
}
