//! Every sled call lives here: the event log (one value per commit group), engine checkpoints
//! (bucket aggregates and the rest of the state), the schema version, and the on-disk size cap.
//!
//! Trees: `events` (group seq → encoded events), `state` (bucket keys prefixed `b`, and the
//! checkpoint's `m:` metadata), `upstream` (the outbox, see [`outbox`]). A checkpoint is one atomic `apply_batch` on `state`, so the bucket
//! aggregates and the sequence number they include always agree; groups up to that number are then
//! deleted from the log.

pub mod outbox;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use thiserror::Error;

/// Bumped whenever the stored layout changes incompatibly.
pub const SCHEMA_VERSION: u32 = 1;

const META_SCHEMA: &[u8] = b"m:schema";
const META_SEQ: &[u8] = b"m:checkpoint_seq";
const META_VOLATILE: &[u8] = b"m:volatile";
const BUCKET_PREFIX: u8 = b'b';

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
}

/// The durable state of one daemon.
pub struct Store {
    path: PathBuf,
    db: sled::Db,
    events: sled::Tree,
    state: sled::Tree,
    upstream: sled::Tree,
    outbox: outbox::OutboxCounters,
    next_seq: AtomicU64,
    max_bytes: u64,
}

/// What a restart reads back.
pub struct Recovered {
    /// Last event group folded into the checkpoint.
    pub checkpoint_seq: u64,
    pub volatile: Option<Vec<u8>>,
    pub buckets: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Store {
    /// Opens (creating if needed) the store at `path` with a page cache of `cache_bytes`.
    pub fn open(path: &Path, cache_bytes: u64, max_bytes: u64) -> Result<Store, StoreError> {
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
        let events = db.open_tree("events").map_err(open_err)?;
        let state = db.open_tree("state").map_err(open_err)?;
        let upstream = db.open_tree("upstream").map_err(open_err)?;
        match state.get(META_SCHEMA)? {
            None => {
                state.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())?;
            }
            Some(v) => {
                let found = v
                    .as_ref()
                    .try_into()
                    .map(u32::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt("schema version".into()))?;
                if found != SCHEMA_VERSION {
                    return Err(StoreError::Schema {
                        path: path.to_owned(),
                        found,
                    });
                }
            }
        }
        let last_logged = match events.last()? {
            Some((k, _)) => seq_of(&k)?,
            None => 0,
        };
        let store = Store {
            path: path.to_owned(),
            db,
            events,
            state,
            upstream,
            outbox: outbox::OutboxCounters::default(),
            next_seq: AtomicU64::new(0),
            max_bytes,
        };
        store.count_outbox()?;
        let checkpointed = store.checkpoint_seq()?;
        store
            .next_seq
            .store(last_logged.max(checkpointed) + 1, Ordering::SeqCst);
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Bytes the store takes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// Refuses new events once the store reached its cap.
    pub fn check_room(&self, size_on_disk: u64) -> Result<(), StoreError> {
        if size_on_disk >= self.max_bytes {
            return Err(StoreError::Full {
                size: size_on_disk,
                max: self.max_bytes,
            });
        }
        Ok(())
    }

    /// Appends one encoded group of events; durable only after [`Store::flush`].
    pub fn append(&self, group: &[u8]) -> Result<u64, StoreError> {
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        self.events.insert(seq.to_be_bytes(), group)?;
        Ok(seq)
    }

    /// The sequence number the next appended group will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq.load(Ordering::SeqCst)
    }

    /// Makes everything written so far durable.
    pub async fn flush(&self) -> Result<usize, StoreError> {
        Ok(self.db.flush_async().await?)
    }

    /// Blocking flush, for shutdown paths outside the runtime.
    pub fn flush_blocking(&self) -> Result<usize, StoreError> {
        Ok(self.db.flush()?)
    }

    fn checkpoint_seq(&self) -> Result<u64, StoreError> {
        match self.state.get(META_SEQ)? {
            None => Ok(0),
            Some(v) => seq_of(&v),
        }
    }

    /// The last checkpoint: its sequence number, engine state and bucket aggregates.
    pub fn recover(&self) -> Result<Recovered, StoreError> {
        let mut buckets = Vec::new();
        for kv in self.state.scan_prefix([BUCKET_PREFIX]) {
            let (k, v) = kv?;
            buckets.push((k[1..].to_vec(), v.to_vec()));
        }
        Ok(Recovered {
            checkpoint_seq: self.checkpoint_seq()?,
            volatile: self.state.get(META_VOLATILE)?.map(|v| v.to_vec()),
            buckets,
        })
    }

    /// Logged groups after `seq`, in order.
    pub fn groups_after(
        &self,
        seq: u64,
    ) -> impl Iterator<Item = Result<(u64, Vec<u8>), StoreError>> + '_ {
        self.events.range((seq + 1).to_be_bytes()..).map(|kv| {
            let (k, v) = kv?;
            Ok((seq_of(&k)?, v.to_vec()))
        })
    }

    /// Number of groups still in the log.
    pub fn logged_groups(&self) -> usize {
        self.events.len()
    }

    /// Atomically records a checkpoint that includes every group up to `seq`, flushes it, then
    /// deletes those groups from the log.
    pub async fn write_checkpoint(
        &self,
        seq: u64,
        buckets: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        volatile: &[u8],
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (k, v) in buckets {
            let mut key = Vec::with_capacity(k.len() + 1);
            key.push(BUCKET_PREFIX);
            key.extend_from_slice(&k);
            match v {
                Some(v) => batch.insert(key, v),
                None => batch.remove(key),
            }
        }
        batch.insert(META_VOLATILE, volatile);
        batch.insert(META_SEQ, &seq.to_be_bytes());
        self.state.apply_batch(batch)?;
        self.flush().await?;
        let mut drop_log = sled::Batch::default();
        for k in self.events.range(..=seq.to_be_bytes()).keys() {
            drop_log.remove(k?);
        }
        self.events.apply_batch(drop_log)?;
        Ok(())
    }
}

fn seq_of(bytes: &[u8]) -> Result<u64, StoreError> {
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
        {
            let s = open(dir.path());
            assert_eq!(s.append(b"g1").unwrap(), 1);
            assert_eq!(s.append(b"g2").unwrap(), 2);
            s.write_checkpoint(1, vec![(b"k1".to_vec(), Some(b"v1".to_vec()))], b"vol")
                .await
                .unwrap();
            assert_eq!(s.append(b"g3").unwrap(), 3);
            s.flush().await.unwrap();
        }
        let s = open(dir.path());
        let r = s.recover().unwrap();
        assert_eq!(r.checkpoint_seq, 1);
        assert_eq!(r.volatile.as_deref(), Some(&b"vol"[..]));
        assert_eq!(r.buckets, vec![(b"k1".to_vec(), b"v1".to_vec())]);
        let rest: Vec<_> = s
            .groups_after(r.checkpoint_seq)
            .map(Result::unwrap)
            .collect();
        assert_eq!(rest, vec![(2, b"g2".to_vec()), (3, b"g3".to_vec())]);
        assert_eq!(s.append(b"g4").unwrap(), 4);
    }

    #[tokio::test]
    async fn checkpoint_removes_buckets_and_old_groups() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.append(b"g1").unwrap();
        s.write_checkpoint(1, vec![(b"k".to_vec(), Some(b"v".to_vec()))], b"a")
            .await
            .unwrap();
        s.write_checkpoint(1, vec![(b"k".to_vec(), None)], b"b")
            .await
            .unwrap();
        assert!(s.recover().unwrap().buckets.is_empty());
        assert_eq!(s.logged_groups(), 0);
        // Sequence numbers never go back, even with an empty log.
        drop(s);
        let s = open(dir.path());
        assert_eq!(s.next_seq(), 2);
    }

    #[test]
    fn a_full_store_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s"), 1 << 20, 100).unwrap();
        assert!(matches!(
            s.check_room(100),
            Err(StoreError::Full {
                size: 100,
                max: 100
            })
        ));
        assert!(s.check_room(99).is_ok());
    }
}
