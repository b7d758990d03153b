//! Every sled call lives here: the event log (one group of events per commit), engine checkpoints
//! (time slices of bucket aggregates and one state value), the schema version, the upstream outbox,
//! and the guards that keep the store within its byte cap and away from a full disk.
//!
//! Trees: `log` (group seq + chunk → part of an encoded group), `state` (checkpoints, see
//! [`checkpoint`]: written in bounded steps, committed by one small manifest write, so the
//! slices, the state and the sequence number they include always agree; log groups up to that
//! number are then deleted), `upstream` (the outbox, see [`outbox`], and alert state and
//! notifications, see [`alerts`]).
//!
//! No value is larger than [`CHUNK`] bytes: sled 0.34 moves large values (and tree nodes that
//! hold several of them) into blob files, which are not fsynced, can leak, and can hang `flush`
//! forever when the disk fills. Writes are refused before the disk is full, since sled poisons the
//! whole database on a failed write, and a start on a full disk is refused before sled opens.
//!
//! This file is the [`Store`] type: opening it, its counters, the byte cap and full-disk guards,
//! and flushing. The rest by concern: `event_log.rs` (the log of groups), `checkpoint.rs`,
//! `outbox.rs`, `history.rs` (interval and daily aggregates kept for reports), `compact.rs`
//! (compaction and reopening, which give back disk and memory), `trees.rs` (opening sled,
//! writing batches, chunking values), `space.rs` (free disk space, clean-up after a start cut
//! short), `error.rs`, `group.rs` (a commit group's encoding), `legacy.rs` (layout 1).

pub mod alerts;
mod checkpoint;
mod compact;
mod error;
mod event_log;
pub mod group;
pub mod history;
pub mod legacy;
pub mod outbox;
#[cfg(test)]
mod sled_reverse_tests;
mod space;
mod trees;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

pub use checkpoint::{CheckpointWriter, Recovered};
pub use error::StoreError;
pub use space::{free_bytes, SEGMENT_BYTES};
use trees::{open_trees, seq_of, Trees, TreesRef};

/// Bumped whenever the stored layout changes incompatibly.
pub const SCHEMA_VERSION: u32 = 2;
/// Largest value written, bytes: a tree node of sled holds up to 17 values and must stay below
/// its blob threshold (a quarter of [`SEGMENT_BYTES`]).
pub const CHUNK: usize = 4000;

const META_SCHEMA: &[u8] = b"m:schema";
const META_SEQ: &[u8] = b"m:checkpoint_seq";

/// The durable state of one daemon.
pub struct Store {
    path: PathBuf,
    cache_bytes: u64,
    trees: RwLock<Option<Trees>>,
    outbox: outbox::OutboxCounters,
    next_seq: AtomicU64,
    max_bytes: u64,
    /// Groups in the log.
    logged_groups: AtomicU64,
    /// Bytes of the values held in `log` and `state` (the live data, as opposed to sled's file).
    log_bytes: AtomicU64,
    state_bytes: AtomicU64,
    /// Size of the last checkpoint written, bytes (sizes the reserve kept for the next one).
    last_checkpoint_bytes: AtomicU64,
    /// Where the last checkpoint's parts are.
    manifest: Mutex<checkpoint::Manifest>,
    /// Set by a failed write: sled refuses every write after one until it is reopened.
    failed: Mutex<Option<String>>,
    has_failed: AtomicBool,
    /// The last compaction: when (compactions are rate-limited) and what it left.
    last_compaction: Mutex<Option<compact::LastCompaction>>,
    /// Bytes written or deleted through sled since it was last opened (see [`Store::reopen`]).
    churn: AtomicU64,
}

impl Store {
    /// Opens (creating if needed) the store at `path` with a page cache of `cache_bytes`.
    ///
    /// Refuses before sled touches anything when the file system has less than `reserve` bytes
    /// free: sled writes while opening, and a write cut short by a full disk can leave the store
    /// unreadable.
    pub fn open(path: &Path, cache_bytes: u64, max_bytes: u64) -> Result<Store, StoreError> {
        space::finish_interrupted_compaction(path);
        space::check_free(path, space::OPEN_RESERVE)?;
        space::remove_unfinished_snapshots(path);
        let trees = open_trees(path, cache_bytes)?;
        let store = Store {
            path: path.to_owned(),
            cache_bytes,
            trees: RwLock::new(Some(trees)),
            outbox: outbox::OutboxCounters::default(),
            next_seq: AtomicU64::new(0),
            max_bytes,
            logged_groups: AtomicU64::new(0),
            log_bytes: AtomicU64::new(0),
            state_bytes: AtomicU64::new(0),
            last_checkpoint_bytes: AtomicU64::new(0),
            manifest: Mutex::new(checkpoint::Manifest::default()),
            failed: Mutex::new(None),
            has_failed: AtomicBool::new(false),
            last_compaction: Mutex::new(None),
            churn: AtomicU64::new(0),
        };
        let has_old_log = store.t()?.db.tree_names().iter().any(|n| &**n == b"events");
        let schema = store.t()?.state.get(META_SCHEMA)?;
        match schema {
            None if !has_old_log => {
                store
                    .t()?
                    .state
                    .insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())?;
            }
            // A store of the first layout has an `events` tree and no schema 2 marker: the caller
            // migrates it (see [`legacy`]).
            None => {}
            Some(v) => {
                let found = v
                    .as_ref()
                    .try_into()
                    .map(u32::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt("schema version".into()))?;
                if found != SCHEMA_VERSION && found != legacy::SCHEMA_VERSION {
                    return Err(StoreError::Schema {
                        path: path.to_owned(),
                        found,
                    });
                }
            }
        }
        if !store.needs_migration()? {
            // A migration cut short after its checkpoint may have left the old log behind.
            let db = store.t()?.db.clone();
            legacy::drop_old_log(&db)?;
        }
        store.count()?;
        store.count_outbox()?;
        Ok(store)
    }

    /// Counts what the trees hold (groups, live bytes, chunks) once at open.
    fn count(&self) -> Result<(), StoreError> {
        let mut last_seq = 0;
        let mut groups = 0u64;
        let mut log_bytes = 0u64;
        for kv in &self.t()?.log {
            let (k, v) = kv?;
            let seq = seq_of(k.get(..8).unwrap_or(&[]))?;
            if seq != last_seq || groups == 0 {
                groups += 1;
            }
            last_seq = seq;
            log_bytes += (k.len() + v.len()) as u64;
        }
        let manifest = self.load_manifest()?;
        self.logged_groups.store(groups, Ordering::SeqCst);
        self.log_bytes.store(log_bytes, Ordering::SeqCst);
        self.state_bytes.store(manifest.bytes(), Ordering::SeqCst);
        *self
            .manifest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = manifest;
        let checkpointed = self.checkpoint_seq()?;
        self.next_seq
            .store(last_seq.max(checkpointed) + 1, Ordering::SeqCst);
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Whether the store still holds data of the first layout, to be migrated before use.
    pub fn needs_migration(&self) -> Result<bool, StoreError> {
        Ok(self.t()?.state.get(META_SCHEMA)?.as_deref() != Some(&SCHEMA_VERSION.to_be_bytes()[..]))
    }

    /// Bytes the store takes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.t()
            .ok()
            .and_then(|t| t.db.size_on_disk().ok())
            .unwrap_or(0)
    }

    /// The trees, for one operation.
    fn t(&self) -> Result<TreesRef<'_>, StoreError> {
        let g = self
            .trees
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if g.is_none() {
            return Err(StoreError::closed());
        }
        Ok(TreesRef(g))
    }

    /// Bytes of live values (log, checkpoint, outbox, history): what the store would take if
    /// compacted.
    pub fn live_bytes(&self) -> u64 {
        self.log_bytes.load(Ordering::SeqCst)
            + self.state_bytes.load(Ordering::SeqCst)
            + self.outbox_size().1
            + self
                .history_stats()
                .map_or(0, |h| h.intervals.bytes + h.days.bytes)
    }

    /// Groups in the log (not yet folded into a checkpoint).
    pub fn logged_groups(&self) -> u64 {
        self.logged_groups.load(Ordering::SeqCst)
    }

    /// What must stay free for the writes that keep the store going: the next checkpoint twice
    /// over, the deletion of the log it folds (sled writes a record for each), and two of sled's
    /// segments.
    pub fn reserve_bytes(&self) -> u64 {
        2 * self.last_checkpoint_bytes.load(Ordering::SeqCst)
            + self.log_bytes.load(Ordering::SeqCst)
            + 2 * SEGMENT_BYTES
            + (1 << 20)
    }

    /// Refuses new events when the store reached its cap, the disk is nearly full, or a write
    /// failed earlier. `size_on_disk` is the caller's recent reading (reading it walks files).
    pub fn check_room(&self, size_on_disk: u64) -> Result<(), StoreError> {
        if self.has_failed.load(Ordering::SeqCst) {
            let why = self
                .failed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
                .unwrap_or_default();
            return Err(StoreError::Failed(why));
        }
        let reserve = self.reserve_bytes();
        // sled's file only grows: space freed inside it is reused poorly and never returned, so
        // a compaction (see [`Store::compact`]) rewrites it when it has grown well past its live
        // data. Near the cap, the live data decides: events are refused while the data, even
        // compacted, would not leave the reserve free; and the file may pass the cap by at most
        // 5 % (until the next compaction) before all intake stops.
        let cap = self.max_bytes;
        let hard = size_on_disk >= cap + cap / 20;
        let soft = size_on_disk >= cap.saturating_sub(reserve)
            && self.live_bytes().saturating_mul(2) + reserve >= cap;
        if hard || soft {
            return Err(StoreError::Full {
                size: size_on_disk,
                max: cap,
            });
        }
        space::check_free(&self.path, reserve)
    }

    /// Passes `r` on, remembering a write failure: sled takes no writes after one until reopened.
    fn note<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e) = &r {
            if e.poisons() {
                *self
                    .failed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.to_string());
                self.has_failed.store(true, Ordering::SeqCst);
            }
        }
        r
    }

    /// Whether a write failed since the store was opened.
    pub fn failed(&self) -> Option<String> {
        if !self.has_failed.load(Ordering::SeqCst) {
            return None;
        }
        self.failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Makes everything written so far durable.
    pub async fn flush(&self) -> Result<usize, StoreError> {
        let db = self.t()?.db.clone();
        self.note(db.flush_async().await.map_err(StoreError::from))
    }

    /// Blocking flush, for shutdown paths outside the runtime.
    pub fn flush_blocking(&self) -> Result<usize, StoreError> {
        self.note(self.t()?.db.flush().map_err(StoreError::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> Store {
        Store::open(&dir.join("s"), 1 << 20, 1 << 30).unwrap()
    }

    #[tokio::test]
    async fn groups_and_checkpoints_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![7u8; 3 * CHUNK + 5];
        {
            let s = open(dir.path());
            assert_eq!(s.append(b"g1").unwrap(), 1);
            assert_eq!(s.append(&big).unwrap(), 2);
            s.write_checkpoint(1, vec![(b"k1".to_vec(), Some(big.clone()))], b"vol")
                .await
                .unwrap();
            assert_eq!(s.append(b"g3").unwrap(), 3);
            s.flush().await.unwrap();
            assert_eq!(s.logged_groups(), 2);
        }
        let s = open(dir.path());
        assert_eq!(s.logged_groups(), 2);
        let r = s.recover().unwrap();
        assert_eq!(r.checkpoint_seq, 1);
        assert_eq!(r.state.as_deref(), Some(&b"vol"[..]));
        assert_eq!(r.slices, vec![(b"k1".to_vec(), big.clone())]);
        let rest: Vec<_> = s
            .groups_after(r.checkpoint_seq)
            .map(Result::unwrap)
            .collect();
        assert_eq!(rest, vec![(2, big.clone()), (3, b"g3".to_vec())]);
        assert_eq!(s.append(b"g4").unwrap(), 4);
    }

    #[tokio::test]
    async fn checkpoint_removes_slices_chunks_and_old_groups() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.append(b"g1").unwrap();
        let big = vec![1u8; 2 * CHUNK + 1];
        s.write_checkpoint(1, vec![(b"k".to_vec(), Some(big))], b"a")
            .await
            .unwrap();
        s.write_checkpoint(1, vec![(b"k".to_vec(), Some(b"short".to_vec()))], b"b")
            .await
            .unwrap();
        assert_eq!(
            s.recover().unwrap().slices,
            vec![(b"k".to_vec(), b"short".to_vec())]
        );
        s.write_checkpoint(1, vec![(b"k".to_vec(), None)], b"c")
            .await
            .unwrap();
        assert!(s.recover().unwrap().slices.is_empty());
        assert_eq!(s.logged_groups(), 0);
        // Every value stays small enough never to become a blob.
        assert!(s
            .t()
            .unwrap()
            .state
            .iter()
            .all(|kv| kv.unwrap().1.len() <= CHUNK));
        // Sequence numbers never go back, even with an empty log.
        drop(s);
        let s = open(dir.path());
        assert_eq!(s.next_seq(), 2);
    }

    #[test]
    fn a_full_store_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let cap = 64u64 << 20;
        let s = Store::open(&dir.path().join("s"), 1 << 20, cap).unwrap();
        // Past the cap's 5 % margin: refused whatever the live data.
        assert!(matches!(
            s.check_room(cap + cap / 20),
            Err(StoreError::Full { max, .. }) if max == cap
        ));
        // At the cap with little live data: a compaction would make room, so events still go.
        assert!(s.check_room(cap - 1).is_ok());
        assert!(s.check_room(1 << 20).is_ok());
    }
}
