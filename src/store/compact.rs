//! Giving back what sled holds on to: compaction rewrites the store into a fresh folder when its
//! file has grown well past its live data (disk), and a reopen after a burst of writes gives back
//! the page cache sled does not count (memory).

use std::sync::atomic::Ordering;
use std::sync::RwLockWriteGuard;

use super::trees::{apply_batch, open_trees, reclaim, Trees, RECLAIM_ROUNDS_ALL};
use super::{space, Store, StoreError, SEGMENT_BYTES};

/// sled's page cache for the fresh store a compaction writes.
const COMPACTION_CACHE_BYTES: u64 = 1 << 20;
/// Most entries, and bytes, copied in one batch of a compaction.
const COPY_BATCH_ENTRIES: usize = 512;
const COPY_BATCH_BYTES: usize = 1 << 20;

/// What the last compaction left, to tell what the next one would give back.
#[derive(Debug, Clone, Copy)]
pub(super) struct LastCompaction {
    at: std::time::Instant,
    /// The store's size on disk right after it.
    after_bytes: u64,
    /// Live bytes (see [`Store::live_bytes`]) it rewrote.
    live_bytes: u64,
}

/// Least a compaction must be expected to give back, beyond the near-cap case.
const WORTHWHILE_GAIN: u64 = 32 << 20;

impl Store {
    /// Whether a compaction would give back a lot, since sled reuses space freed inside its file
    /// poorly and never returns it: near the cap, when the file holds at least twice its live
    /// data (at most every second); or a file over one and a half times its live data plus
    /// 32 MiB (at most every 30 s; the caller asks only once events paused). After a bulk load,
    /// closing its intervals into the history goes on after the first compaction; compacting at
    /// most once a minute, above twice the live data plus 32 MiB, the load bench's store stood
    /// at 129-131 MiB at the end of its 65 s settle (bound: 128 MiB).
    ///
    /// Either way only when the file also stands well above what a compaction would leave:
    /// sled's freshly written file holds about two and a half times the live bytes (half-full
    /// leaves after sorted inserts), so the live bytes alone understate it. Measured after the
    /// load bench's 1 M calls: a compaction 30 s after the last took the file from 81.8 to
    /// 82.8 MB. The last compaction's result, scaled by the live bytes since, is the estimate.
    pub fn compaction_worthwhile(&self, size_on_disk: u64, near_cap_only: bool) -> bool {
        let last = *self
            .last_compaction
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let since = last.map(|l| l.at.elapsed());
        let live = self.live_bytes();
        let left = expected_after(last, live);
        let near_cap = size_on_disk >= self.max_bytes.saturating_sub(self.reserve_bytes())
            && size_on_disk > 2 * live + 4 * SEGMENT_BYTES
            && size_on_disk > left + 4 * SEGMENT_BYTES
            && since.is_none_or(|s| s >= std::time::Duration::from_secs(1));
        let bloated = !near_cap_only
            && size_on_disk > live + live / 2 + WORTHWHILE_GAIN
            && size_on_disk > left + WORTHWHILE_GAIN
            && since.is_none_or(|s| s >= std::time::Duration::from_secs(30));
        near_cap || bloated
    }

    /// Rewrites the store into a fresh folder holding only the live data, then swaps it in: the
    /// bytes on disk come back to what the data needs. Blocks every store operation meanwhile
    /// (for a store of a few tens of MiB, well under a second). Safe against a crash at any point
    /// (see [`space::finish_interrupted_compaction`]).
    ///
    /// The old store is read through a fresh open with a small page cache, so the copy holds
    /// neither the running cache's pages nor the pages it reads beyond that small cache.
    pub fn compact(&self) -> Result<(u64, u64), StoreError> {
        let at = std::time::Instant::now();
        let before = self.size_on_disk();
        let live = self.live_bytes();
        {
            let mut last = self
                .last_compaction
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Rate-limits a failing compaction as well as a finished one.
            *last = Some(LastCompaction {
                at,
                after_bytes: last.map_or(before, |l| l.after_bytes),
                live_bytes: last.map_or(live, |l| l.live_bytes),
            });
        }
        space::check_free(&self.path, 2 * live + space::OPEN_RESERVE)?;
        let (fresh, old) = space::compaction_paths(&self.path);
        let mut guard = self.lock_flushed()?;
        let io =
            |what: &str, e: std::io::Error| StoreError::Corrupt(format!("compaction: {what}: {e}"));
        if fresh.exists() {
            std::fs::remove_dir_all(&fresh).map_err(|e| io("clearing the new folder", e))?;
        }
        // Closed here and reopened lean for the copy; whatever happens, the store is open again
        // with its own cache when this returns.
        *guard = None;
        let copied = self
            .open_again_with(COMPACTION_CACHE_BYTES)
            .and_then(|from| copy_live(&from, &fresh))
            .and_then(|()| space::sync_dir(&fresh).map_err(|e| io("syncing the new folder", e)));
        if let Err(e) = copied {
            *guard = Some(self.open_again()?);
            return Err(e);
        }
        // The old store goes aside, the new one takes its place; a crash between the two renames
        // is completed at the next open.
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
        let after = self.size_on_disk();
        *self
            .last_compaction
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(LastCompaction {
            at,
            after_bytes: after,
            live_bytes: live,
        });
        Ok((before, after))
    }

    /// The trees write-locked (every other store operation waits) and flushed: where a compaction
    /// and a reopen start, before they close sled. An error if the store is closed.
    fn lock_flushed(&self) -> Result<RwLockWriteGuard<'_, Option<Trees>>, StoreError> {
        let guard = self
            .trees
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(trees) = guard.as_ref() else {
            return Err(StoreError::closed());
        };
        self.note(trees.db.flush().map_err(StoreError::from))?;
        Ok(guard)
    }

    /// Opens sled at the store's path once the previous instance is gone. The old database may
    /// take a moment to let go of its lock file, and sled's open may race its last flush: retry
    /// briefly.
    fn open_again(&self) -> Result<Trees, StoreError> {
        self.open_again_with(self.cache_bytes)
    }

    /// [`Store::open_again`] with a page cache of `cache_bytes`.
    fn open_again_with(&self, cache_bytes: u64) -> Result<Trees, StoreError> {
        let mut reopened = open_trees(&self.path, cache_bytes);
        for _ in 0..50 {
            if reopened.is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            reopened = open_trees(&self.path, cache_bytes);
        }
        reopened
    }

    /// Counts bytes written or deleted through sled (see [`Store::reopen`]).
    pub(super) fn churned(&self, bytes: u64) {
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
        let mut guard = self.lock_flushed()?;
        *guard = None;
        *guard = Some(self.open_again()?);
        self.churn.store(0, Ordering::SeqCst);
        Ok(())
    }
}

/// What a compaction would leave on disk with `live` bytes of live data: the last one's result
/// scaled to the live bytes now, or the live bytes alone before any.
fn expected_after(last: Option<LastCompaction>, live: u64) -> u64 {
    match last {
        Some(l) if l.live_bytes > 0 => {
            let scaled = u128::from(l.after_bytes) * u128::from(live) / u128::from(l.live_bytes);
            u64::try_from(scaled).unwrap_or(u64::MAX).max(live)
        }
        _ => live,
    }
}

/// Copies the live trees of `from` into a new store at `fresh`, flushed.
fn copy_live(from: &Trees, fresh: &std::path::Path) -> Result<(), StoreError> {
    // Only written, never read back here: a small cache keeps the rewrite from holding a
    // second page cache beside the old store's (measured: +20 MiB at 1 M calls).
    let new = open_trees(fresh, COMPACTION_CACHE_BYTES)?;
    for (src, to) in [
        (&from.log, &new.log),
        (&from.state, &new.state),
        (&from.upstream, &new.upstream),
    ] {
        let mut batch = sled::Batch::default();
        let (mut n, mut bytes) = (0, 0);
        for kv in src {
            let (k, v) = kv?;
            bytes += k.len() + v.len();
            batch.insert(k, v);
            n += 1;
            // Bounded in bytes too: 512 log groups of a bulk load are ~36 MiB, which a
            // batch of that many entries held at once.
            if n == COPY_BATCH_ENTRIES || bytes >= COPY_BATCH_BYTES {
                apply_batch(to, std::mem::take(&mut batch))?;
                (n, bytes) = (0, 0);
            }
        }
        apply_batch(to, batch)?;
    }
    new.db.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expected_result_scales_the_last_one_by_the_live_bytes() {
        let at = std::time::Instant::now();
        assert_eq!(expected_after(None, 1000), 1000);
        let last = LastCompaction {
            at,
            after_bytes: 2500,
            live_bytes: 1000,
        };
        assert_eq!(expected_after(Some(last), 2000), 5000);
        assert_eq!(expected_after(Some(last), 0), 0);
        // Never less than the live bytes themselves.
        let lean = LastCompaction {
            after_bytes: 10,
            ..last
        };
        assert_eq!(expected_after(Some(lean), 1000), 1000);
    }

    #[test]
    fn no_compaction_is_worthwhile_when_it_would_leave_about_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s"), 1 << 20, 1 << 40).unwrap();
        for i in 0..200u32 {
            store.append(&vec![(i % 251) as u8; 3000]).unwrap();
        }
        let (_, after) = store.compact().unwrap();
        let live = store.live_bytes();
        // sled's fresh file is larger than the live bytes: the old rule alone would compact
        // again at this size; what the last compaction left says it would give back nothing.
        assert!(after > live + live / 2, "after {after}, live {live}");
        let size = after + WORTHWHILE_GAIN - 1;
        assert!(size > live + live / 2 + WORTHWHILE_GAIN);
        // As if the 30 s since the last compaction had passed.
        let past = std::time::Instant::now()
            .checked_sub(std::time::Duration::from_secs(60))
            .unwrap();
        store.last_compaction.lock().unwrap().as_mut().unwrap().at = past;
        assert!(!store.compaction_worthwhile(size, false));
        assert!(store.compaction_worthwhile(after + WORTHWHILE_GAIN + 1, false));
        // Rate-limited: not again within 30 s of the last.
        store.last_compaction.lock().unwrap().as_mut().unwrap().at = std::time::Instant::now();
        assert!(!store.compaction_worthwhile(after + WORTHWHILE_GAIN + 1, false));
    }
}
