//! Every sled call lives here: the event log (one group of events per commit), engine checkpoints
//! (time slices of bucket aggregates and one state value), the schema version, the upstream outbox,
//! and the guards that keep the store within its byte cap and away from a full disk.
//!
//! Trees: `log` (group seq + chunk → part of an encoded group), `state` (checkpoints, see
//! [`checkpoint`]: written in bounded steps, committed by one small manifest write, so the
//! slices, the state and the sequence number they include always agree; log groups up to that
//! number are then deleted), `upstream` (the outbox, see [`outbox`]).
//!
//! No value is larger than [`CHUNK`] bytes: sled 0.34 moves large values (and tree nodes that
//! hold several of them) into blob files, which are not fsynced, can leak, and can hang `flush`
//! forever when the disk fills. Writes are refused before the disk is full, since sled poisons the
//! whole database on a failed write, and a start on a full disk is refused before sled opens.

mod checkpoint;
pub mod group;
pub mod legacy;
pub mod outbox;
mod space;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard};

use thiserror::Error;

pub use checkpoint::{CheckpointWriter, Recovered};
pub use space::{free_bytes, SEGMENT_BYTES};

/// Bumped whenever the stored layout changes incompatibly.
pub const SCHEMA_VERSION: u32 = 2;
/// Largest value written, bytes: a tree node of sled holds up to 17 values and must stay below
/// its blob threshold (a quarter of [`SEGMENT_BYTES`]).
pub const CHUNK: usize = 4000;

const META_SCHEMA: &[u8] = b"m:schema";
/// The tree of logged groups.
const LOG_TREE: &[u8] = b"log";
const META_SEQ: &[u8] = b"m:checkpoint_seq";

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot open the store at {path}: {source} (check that the folder exists, is writable by this user, and no other callmetrics uses it)")]
    Open { path: PathBuf, source: sled::Error },
    #[error("store I/O error: {0}")]
    Io(#[from] sled::Error),
    #[error(
        "the store at {path} has schema version {found}, this build reads version {SCHEMA_VERSION}"
    )]
    Schema { path: PathBuf, found: u32 },
    #[error("the store holds a damaged record: {0}")]
    Corrupt(String),
    #[error("store full: {size} bytes on disk reached store.max_bytes = {max}")]
    Full { size: u64, max: u64 },
    #[error("disk full: {free} bytes free on the file system of {path}, {reserve} needed in reserve; free some space")]
    DiskFull {
        path: PathBuf,
        free: u64,
        reserve: u64,
    },
    #[error("the store failed a write earlier ({0}) and takes no more; restart the daemon once the cause is fixed")]
    Failed(String),
}

impl StoreError {
    /// The store's database is not open: reopening it after a compaction or a refresh failed.
    fn closed() -> StoreError {
        StoreError::Failed("the store could not be reopened after a compaction".into())
    }

    /// Whether this error leaves sled unable to write until it is reopened.
    fn poisons(&self) -> bool {
        matches!(self, StoreError::Io(_))
    }
}

/// The open database and its trees.
struct Trees {
    db: sled::Db,
    log: sled::Tree,
    state: sled::Tree,
    upstream: sled::Tree,
}

/// The trees, read-locked for one store operation (a compaction swaps them under a write lock).
struct TreesRef<'a>(RwLockReadGuard<'a, Option<Trees>>);

impl std::ops::Deref for TreesRef<'_> {
    type Target = Trees;
    fn deref(&self) -> &Trees {
        // `Store::t` hands out a `TreesRef` only after checking the trees are there.
        self.0.as_ref().expect("checked by Store::t")
    }
}

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
    /// When the store was last compacted (compactions are rate-limited).
    last_compaction: Mutex<Option<std::time::Instant>>,
    /// Bytes written or deleted through sled since it was last opened (see [`Store::reopen`]).
    churn: AtomicU64,
}

pub(super) fn log_key(seq: u64, chunk: u16) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..8].copy_from_slice(&seq.to_be_bytes());
    k[8..].copy_from_slice(&chunk.to_be_bytes());
    k
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
        for kv in self.t()?.log.iter() {
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
        *self.manifest.lock().unwrap_or_else(|p| p.into_inner()) = manifest;
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
        let g = self.trees.read().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            return Err(StoreError::closed());
        }
        Ok(TreesRef(g))
    }

    /// Bytes of live values (log, checkpoint, outbox): what the store would take if compacted.
    pub fn live_bytes(&self) -> u64 {
        self.log_bytes.load(Ordering::SeqCst)
            + self.state_bytes.load(Ordering::SeqCst)
            + self.outbox_size().1
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
                .unwrap_or_else(|p| p.into_inner())
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
                *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
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
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Appends one encoded group of events under the next sequence number; durable only after
    /// [`Store::flush`].
    pub fn append(&self, group: &[u8]) -> Result<u64, StoreError> {
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        let mut batch = sled::Batch::default();
        let mut bytes = 0u64;
        for (i, chunk) in checkpoint::split_chunks(group).enumerate() {
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

    /// Makes everything written so far durable.
    pub async fn flush(&self) -> Result<usize, StoreError> {
        let db = self.t()?.db.clone();
        self.note(db.flush_async().await.map_err(StoreError::from))
    }

    /// Blocking flush, for shutdown paths outside the runtime.
    pub fn flush_blocking(&self) -> Result<usize, StoreError> {
        self.note(self.t()?.db.flush().map_err(StoreError::from))
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

    /// Whether a compaction would give back a lot, since sled reuses space freed inside its file
    /// poorly and never returns it: near the cap, when the file holds at least twice its live
    /// data (at most every second); or a file over twice its live data plus 32 MiB (at most
    /// every minute; the caller asks only once events paused).
    pub fn compaction_worthwhile(&self, size_on_disk: u64, near_cap_only: bool) -> bool {
        let since = self
            .last_compaction
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|t| t.elapsed());
        let live = self.live_bytes();
        let near_cap = size_on_disk >= self.max_bytes.saturating_sub(self.reserve_bytes())
            && size_on_disk > 2 * live + 4 * SEGMENT_BYTES
            && since.is_none_or(|s| s >= std::time::Duration::from_secs(1));
        let bloated = !near_cap_only
            && size_on_disk > 2 * live + (32 << 20)
            && since.is_none_or(|s| s >= std::time::Duration::from_secs(60));
        near_cap || bloated
    }

    /// Rewrites the store into a fresh folder holding only the live data, then swaps it in: the
    /// bytes on disk come back to what the data needs. Blocks every store operation meanwhile
    /// (for a store of a few tens of MiB, well under a second). Safe against a crash at any point
    /// (see [`space::finish_interrupted_compaction`]).
    pub fn compact(&self) -> Result<(u64, u64), StoreError> {
        *self
            .last_compaction
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
        let before = self.size_on_disk();
        space::check_free(&self.path, 2 * self.live_bytes() + space::OPEN_RESERVE)?;
        let (fresh, old) = space::compaction_paths(&self.path);
        let mut guard = self.trees.write().unwrap_or_else(|p| p.into_inner());
        let Some(trees) = guard.as_ref() else {
            return Err(StoreError::closed());
        };
        self.note(trees.db.flush().map_err(StoreError::from))?;
        let io =
            |what: &str, e: std::io::Error| StoreError::Corrupt(format!("compaction: {what}: {e}"));
        if fresh.exists() {
            std::fs::remove_dir_all(&fresh).map_err(|e| io("clearing the new folder", e))?;
        }
        {
            let new = open_trees(&fresh, self.cache_bytes)?;
            for (from, to) in [
                (&trees.log, &new.log),
                (&trees.state, &new.state),
                (&trees.upstream, &new.upstream),
            ] {
                let mut batch = sled::Batch::default();
                let mut n = 0;
                for kv in from.iter() {
                    let (k, v) = kv?;
                    batch.insert(k, v);
                    n += 1;
                    if n == 512 {
                        apply_batch(to, std::mem::take(&mut batch))?;
                        n = 0;
                    }
                }
                apply_batch(to, batch)?;
            }
            new.db.flush()?;
        }
        space::sync_dir(&fresh).map_err(|e| io("syncing the new folder", e))?;
        // The old store goes aside, the new one takes its place; a crash between the two renames
        // is completed at the next open.
        *guard = None;
        let swap = std::fs::rename(&self.path, &old)
            .and_then(|()| std::fs::rename(&fresh, &self.path))
            .and_then(|()| match self.path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => {
                    std::fs::File::open(parent)?.sync_all()
                }
                _ => Ok(()),
            });
        if let Err(e) = swap {
            if !self.path.exists() && old.exists() {
                let _ = std::fs::rename(&old, &self.path);
            }
            *guard = open_trees(&self.path, self.cache_bytes).ok();
            return Err(io("swapping the folders", e));
        }
        *guard = Some(self.open_again()?);
        self.churn.store(0, Ordering::SeqCst);
        drop(guard);
        if let Err(e) = std::fs::remove_dir_all(&old) {
            tracing::warn!("cannot remove {}: {e}", old.display());
        }
        self.count()?;
        self.count_outbox()?;
        Ok((before, self.size_on_disk()))
    }

    /// Opens sled at the store's path once the previous instance is gone. The old database may
    /// take a moment to let go of its lock file, and sled's open may race its last flush: retry
    /// briefly.
    fn open_again(&self) -> Result<Trees, StoreError> {
        let mut reopened = open_trees(&self.path, self.cache_bytes);
        for _ in 0..50 {
            if reopened.is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            reopened = open_trees(&self.path, self.cache_bytes);
        }
        reopened
    }

    /// Counts bytes written or deleted through sled (see [`Store::reopen`]).
    fn churned(&self, bytes: u64) {
        self.churn.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes written or deleted through sled since it was last opened.
    pub fn churn_bytes(&self) -> u64 {
        self.churn.load(Ordering::Relaxed)
    }

    /// Closes sled and opens it again on the same files, which gives back the memory its page
    /// cache holds beyond `cache_bytes`.
    ///
    /// sled 0.34 counts a page against its cache only once 64 accesses have queued in that page's
    /// shard (of 256), so pages read or written in a burst (a bulk load, a recovery, the deletion
    /// of a folded log) stay in memory, uncounted, for as long as their shard sees no traffic:
    /// measured at 1 M calls, ~110 MiB after a recovery against ~35 MiB for a fresh open of the
    /// same store. Blocks every store operation meanwhile (a flush, then an open that reads
    /// sled's last snapshot: tens of milliseconds). Call it from the task that writes
    /// checkpoints, as for [`Store::compact`].
    pub fn reopen(&self) -> Result<(), StoreError> {
        reclaim(RECLAIM_ROUNDS_ALL);
        let mut guard = self.trees.write().unwrap_or_else(|p| p.into_inner());
        let Some(trees) = guard.as_ref() else {
            return Err(StoreError::closed());
        };
        self.note(trees.db.flush().map_err(StoreError::from))?;
        *guard = None;
        *guard = Some(self.open_again()?);
        self.churn.store(0, Ordering::SeqCst);
        Ok(())
    }

    /// Makes the next group's sequence number at least `seq`.
    fn bump_next_seq(&self, seq: u64) {
        self.next_seq.fetch_max(seq, Ordering::SeqCst);
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
const RECLAIM_ROUNDS_ALL: usize = 16_384;

/// Runs up to `rounds` × 512 of the frees sled has deferred.
///
/// sled frees the old version of a page it changed through crossbeam's epoch collector, which
/// runs at most 8 bags of 64 deferred frees per 128 pins of a thread. A batch that changes many
/// pages under one pin defers far more than that, so during a bulk load the backlog grows
/// without bound (measured: ~100 MiB of old page versions after a recovery at 1 M calls), and
/// it drains only as later operations pin. Each round here pins, flushes this thread's bag and
/// collects up to 8 expired bags; when nothing is left it costs well under a microsecond.
fn reclaim(rounds: usize) {
    for _ in 0..rounds {
        crossbeam_epoch::pin().flush();
    }
}

/// Opens sled at `path` with the store's trees.
fn open_trees(path: &Path, cache_bytes: u64) -> Result<Trees, StoreError> {
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

pub(super) fn seq_of(bytes: &[u8]) -> Result<u64, StoreError> {
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt(format!("sequence key of {} bytes", bytes.len())))
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
