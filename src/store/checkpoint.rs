//! Checkpoints in the `state` tree, written in bounded steps and committed by one small write.
//!
//! Each checkpoint has a generation. Its slices and state go under keys that carry that
//! generation, in batches of at most [`BATCH_BYTES`], so neither this process nor sled ever holds
//! a whole checkpoint twice; a slice that did not change keeps its older generation. Then one
//! small atomic batch writes the *manifest* (which generation each slice and the state is at, and
//! the last log group included) — the commit point. Superseded generations and the folded log are
//! deleted after. A crash before the manifest leaves the previous checkpoint whole; chunks no
//! manifest names are removed at the next open.
//!
//! Keys: `M`+chunk (manifest), `S`+slice key+generation+chunk (slices), `V`+generation+chunk
//! (state), `m:checkpoint_seq`, `p:`+source name (the position of an in-daemon source as of the
//! checkpoint's last group, written in the committing batch: see `group::SourceMark`).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::event_log::log_key;
use super::trees::{apply_batch, seq_of, split_chunks, LOG_TREE};
use super::{Store, StoreError, CHUNK, META_SEQ, SEGMENT_BYTES};

const MANIFEST: u8 = b'M';
/// Prefix of a source's position.
const SOURCE_MARK: &[u8] = b"p:";
const SLICE: u8 = b'S';
const STATE: u8 = b'V';
/// Most bytes handed to sled in one batch while a checkpoint is written.
const BATCH_BYTES: usize = 1 << 20;
/// Most keys changed by one batch: sled copies a node for each key a batch changes and frees the
/// copies only after the batch, so a batch of many small changes would hold a node per key.
const BATCH_KEYS: usize = 256;

/// Where one stored value lives: its generation, chunk count and bytes (keys included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Part {
    gen: u64,
    chunks: u32,
    bytes: u64,
}

/// Which generation every slice and the state are at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Manifest {
    gen: u64,
    slices: BTreeMap<Vec<u8>, Part>,
    state: Option<Part>,
    /// Chunks the manifest itself took when last written.
    own_chunks: u16,
}

fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get(b: &mut &[u8]) -> Result<u64, StoreError> {
    let mut v = 0u64;
    for i in 0..10 {
        let (&x, rest) = b
            .split_first()
            .ok_or_else(|| StoreError::Corrupt("the checkpoint manifest is cut short".into()))?;
        *b = rest;
        v |= u64::from(x & 0x7f) << (7 * i);
        if x & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(StoreError::Corrupt(
        "the checkpoint manifest is damaged".into(),
    ))
}

impl Part {
    fn write(&self, out: &mut Vec<u8>) {
        put(out, self.gen);
        put(out, u64::from(self.chunks));
        put(out, self.bytes);
    }

    fn read(b: &mut &[u8]) -> Result<Part, StoreError> {
        Ok(Part {
            gen: get(b)?,
            chunks: u32::try_from(get(b)?)
                .map_err(|_| StoreError::Corrupt("a chunk count is out of range".into()))?,
            bytes: get(b)?,
        })
    }
}

impl Manifest {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.slices.len() * 24);
        put(&mut out, self.gen);
        put(&mut out, self.slices.len() as u64);
        for (k, p) in &self.slices {
            put(&mut out, k.len() as u64);
            out.extend_from_slice(k);
            p.write(&mut out);
        }
        match &self.state {
            Some(p) => {
                out.push(1);
                p.write(&mut out);
            }
            None => out.push(0),
        }
        out
    }

    fn decode(mut b: &[u8], own_chunks: u16) -> Result<Manifest, StoreError> {
        let b = &mut b;
        let gen = get(b)?;
        let n = get(b)?;
        let mut slices = BTreeMap::new();
        for _ in 0..n {
            let len = usize::try_from(get(b)?)
                .map_err(|_| StoreError::Corrupt("a slice key length".into()))?;
            if len > b.len() {
                return Err(StoreError::Corrupt(
                    "the checkpoint manifest is cut short".into(),
                ));
            }
            let (k, rest) = b.split_at(len);
            *b = rest;
            slices.insert(k.to_vec(), Part::read(b)?);
        }
        let state = match b.split_first() {
            Some((1, rest)) => {
                *b = rest;
                Some(Part::read(b)?)
            }
            Some((0, _)) => None,
            _ => {
                return Err(StoreError::Corrupt(
                    "the checkpoint manifest is damaged".into(),
                ))
            }
        };
        Ok(Manifest {
            gen,
            slices,
            state,
            own_chunks,
        })
    }

    /// Bytes of the values it names.
    pub(super) fn bytes(&self) -> u64 {
        self.slices.values().map(|p| p.bytes).sum::<u64>() + self.state.map_or(0, |p| p.bytes)
    }
}

fn slice_chunk_key(slice: &[u8], gen: u64, i: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(slice.len() + 11);
    k.push(SLICE);
    k.extend_from_slice(slice);
    k.extend_from_slice(&gen.to_be_bytes());
    k.extend_from_slice(&(i as u16).to_be_bytes());
    k
}

fn state_chunk_key(gen: u64, i: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(13);
    k.push(STATE);
    k.extend_from_slice(&gen.to_be_bytes());
    k.extend_from_slice(&i.to_be_bytes());
    k
}

fn source_mark_key(name: &str) -> Vec<u8> {
    let mut k = SOURCE_MARK.to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

fn manifest_key(i: u16) -> [u8; 3] {
    let b = i.to_be_bytes();
    [MANIFEST, b[0], b[1]]
}

/// A checkpoint being written: parts go to sled in batches of at most [`BATCH_BYTES`], each
/// flushed before the next, so neither this process nor sled holds much of it at once; nothing
/// counts until [`CheckpointWriter::commit`] writes the manifest.
pub struct CheckpointWriter<'a> {
    store: &'a Store,
    old: Manifest,
    new: Manifest,
    batch: sled::Batch,
    pending: usize,
    /// Keys changed by `batch`.
    keys: usize,
    written: u64,
}

impl CheckpointWriter<'_> {
    async fn insert(&mut self, k: Vec<u8>, v: &[u8]) -> Result<(), StoreError> {
        self.pending += k.len() + v.len();
        self.keys += 1;
        self.batch.insert(k, v);
        self.spill(false).await
    }

    async fn remove(&mut self, k: Vec<u8>) -> Result<(), StoreError> {
        self.pending += k.len() + 8;
        self.keys += 1;
        self.batch.remove(k);
        self.spill(false).await
    }

    /// Hands the batch to sled once it is large (or `always`), and waits until it is on disk.
    async fn spill(&mut self, always: bool) -> Result<(), StoreError> {
        if self.pending < BATCH_BYTES && self.keys < BATCH_KEYS && !always {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.store.churned(self.pending as u64);
        self.pending = 0;
        self.keys = 0;
        let state = self.store.t()?.state.clone();
        self.store
            .note(apply_batch(&state, batch).map_err(StoreError::from))?;
        self.store.flush().await?;
        Ok(())
    }

    /// One changed slice: its new value, or `None` when it was dropped.
    pub async fn slice(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        match value {
            Some(v) => {
                let gen = self.new.gen;
                let mut part = Part {
                    gen,
                    chunks: 0,
                    bytes: 0,
                };
                for (i, c) in split_chunks(v).enumerate() {
                    let k = slice_chunk_key(key, gen, i as u32);
                    part.bytes += (k.len() + c.len()) as u64;
                    part.chunks += 1;
                    self.insert(k, c).await?;
                }
                self.written += part.bytes;
                self.new.slices.insert(key.to_vec(), part);
            }
            None => {
                self.new.slices.remove(key);
            }
        }
        Ok(())
    }

    /// The rest of the engine's state, whole.
    pub async fn state(&mut self, state: &[u8]) -> Result<(), StoreError> {
        self.state_piece(state).await
    }

    /// The next piece of the rest of the engine's state: the pieces, in order, make the value.
    pub async fn state_piece(&mut self, piece: &[u8]) -> Result<(), StoreError> {
        let gen = self.new.gen;
        // The state part of this generation so far (the old one is still named until commit).
        let mut part = match self.new.state {
            Some(p) if p.gen == gen => p,
            _ => Part {
                gen,
                chunks: 0,
                bytes: 0,
            },
        };
        for c in split_chunks(piece) {
            if c.is_empty() && part.chunks > 0 {
                continue;
            }
            let k = state_chunk_key(gen, part.chunks);
            part.bytes += (k.len() + c.len()) as u64;
            part.chunks += 1;
            self.written += (k.len() + c.len()) as u64;
            self.insert(k, c).await?;
        }
        self.new.state = Some(part);
        Ok(())
    }

    /// Commits the checkpoint as including every log group up to `seq`, then deletes what it
    /// supersedes and those groups.
    pub async fn commit(self, seq: u64) -> Result<(), StoreError> {
        self.commit_with(seq, |_| {}).await
    }

    /// [`CheckpointWriter::commit`], with the sources' positions as of group `seq` (source name
    /// → position) in the committing batch: the log groups that carried them are deleted after.
    pub async fn commit_with_marks(
        self,
        seq: u64,
        marks: &BTreeMap<String, Vec<u8>>,
    ) -> Result<(), StoreError> {
        self.commit_with(seq, |batch| {
            for (name, position) in marks {
                batch.insert(source_mark_key(name), &position[..]);
            }
        })
        .await
    }

    async fn commit_with(
        mut self,
        seq: u64,
        extra: impl FnOnce(&mut sled::Batch),
    ) -> Result<(), StoreError> {
        self.spill(true).await?;
        let store = self.store;
        // The commit point: the manifest and the sequence number, in one batch.
        let encoded = self.new.encode();
        let mut commit = sled::Batch::default();
        extra(&mut commit);
        let mut own = 0u16;
        for (i, c) in split_chunks(&encoded).enumerate() {
            commit.insert(&manifest_key(i as u16)[..], c);
            own = i as u16 + 1;
        }
        for i in own..self.old.own_chunks {
            commit.remove(&manifest_key(i)[..]);
        }
        commit.insert(META_SEQ, &seq.to_be_bytes());
        let tree = store.t()?.state.clone();
        store.note(apply_batch(&tree, commit).map_err(StoreError::from))?;
        store.flush().await?;
        if store.has_failed.load(Ordering::SeqCst) {
            return Err(StoreError::Failed(store.failed().unwrap_or_default()));
        }
        self.new.own_chunks = own;
        store.state_bytes.store(self.new.bytes(), Ordering::SeqCst);
        store
            .last_checkpoint_bytes
            .store(self.written, Ordering::SeqCst);
        *store
            .manifest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = self.new.clone();

        // What the new checkpoint supersedes: replaced or dropped slices, the old state.
        let (old, new) = (std::mem::take(&mut self.old), std::mem::take(&mut self.new));
        for (key, p) in &old.slices {
            if new.slices.get(key).is_none_or(|n| n.gen != p.gen) {
                for i in 0..p.chunks {
                    self.remove(slice_chunk_key(key, p.gen, i)).await?;
                }
            }
        }
        if let Some(p) = old.state {
            for i in 0..p.chunks {
                self.remove(state_chunk_key(p.gen, i)).await?;
            }
        }
        self.spill(true).await?;
        store.trim_log(seq)
    }
}

/// What a restart reads back.
pub struct Recovered {
    /// Last event group folded into the checkpoint.
    pub checkpoint_seq: u64,
    pub state: Option<Vec<u8>>,
    /// Slice key → encoded slice.
    pub slices: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Store {
    /// Reads the manifest, and removes chunks it does not name (left by a checkpoint cut short).
    pub(super) fn load_manifest(&self) -> Result<Manifest, StoreError> {
        let t = self.t()?;
        let mut bytes = Vec::new();
        let mut chunks = 0u16;
        for kv in t.state.scan_prefix([MANIFEST]) {
            let (_, v) = kv?;
            bytes.extend_from_slice(&v);
            chunks += 1;
        }
        let m = if chunks == 0 {
            Manifest::default()
        } else {
            Manifest::decode(&bytes, chunks)?
        };
        let mut stale = sled::Batch::default();
        let mut any = false;
        for kv in t.state.scan_prefix([SLICE]) {
            let (k, _) = kv?;
            let named = k.len() >= 11 && {
                let (slice, rest) = k[1..].split_at(k.len() - 11);
                let gen = u64::from_be_bytes(rest[..8].try_into().unwrap_or_default());
                m.slices.get(slice).is_some_and(|p| p.gen == gen)
            };
            if !named {
                stale.remove(k);
                any = true;
            }
        }
        for kv in t.state.scan_prefix([STATE]) {
            let (k, _) = kv?;
            let gen = k
                .get(1..9)
                .and_then(|g| g.try_into().ok())
                .map(u64::from_be_bytes);
            if m.state.map(|p| p.gen) != gen {
                stale.remove(k);
                any = true;
            }
        }
        if any {
            apply_batch(&t.state, stale)?;
        }
        Ok(m)
    }

    /// The last checkpoint: its sequence number, engine state and slices.
    pub fn recover(&self) -> Result<Recovered, StoreError> {
        let m = self
            .manifest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let t = self.t()?;
        let read =
            |keys: &mut dyn ExactSizeIterator<Item = Vec<u8>>| -> Result<Vec<u8>, StoreError> {
                // Sized once: doubling a Vec of several MiB would hold both copies at the peak.
                let mut out = Vec::with_capacity(keys.len() * CHUNK);
                for k in keys {
                    let v = t.state.get(&k)?.ok_or_else(|| {
                        StoreError::Corrupt("a checkpoint chunk is missing".into())
                    })?;
                    out.extend_from_slice(&v);
                }
                Ok(out)
            };
        let mut slices = Vec::with_capacity(m.slices.len());
        for (key, p) in &m.slices {
            let bytes = read(&mut (0..p.chunks).map(|i| slice_chunk_key(key, p.gen, i)))?;
            slices.push((key.clone(), bytes));
        }
        let state = match m.state {
            Some(p) => Some(read(&mut (0..p.chunks).map(|i| state_chunk_key(p.gen, i)))?),
            None => None,
        };
        Ok(Recovered {
            checkpoint_seq: self.checkpoint_seq()?,
            state,
            slices,
        })
    }

    /// The sources' positions as of the last checkpoint (source name → position); the log
    /// groups after it may carry newer ones.
    pub fn source_marks(&self) -> Result<BTreeMap<String, Vec<u8>>, StoreError> {
        let mut out = BTreeMap::new();
        for kv in self.t()?.state.scan_prefix(SOURCE_MARK) {
            let (k, v) = kv?;
            let name = String::from_utf8_lossy(&k[SOURCE_MARK.len()..]).into_owned();
            out.insert(name, v.to_vec());
        }
        Ok(out)
    }

    pub(super) fn checkpoint_seq(&self) -> Result<u64, StoreError> {
        match self.t()?.state.get(META_SEQ)? {
            None => Ok(0),
            Some(v) => seq_of(&v),
        }
    }

    /// Records a checkpoint that includes every group up to `seq` (changed slices, `None` for a
    /// dropped one, and the state), flushes it, then deletes what it supersedes and those groups.
    pub async fn write_checkpoint(
        &self,
        seq: u64,
        slices: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        state: &[u8],
    ) -> Result<(), StoreError> {
        self.write_checkpoint_with(seq, slices, state, |_| {}).await
    }

    /// `write_checkpoint`, with `extra` changes to the `state` tree in the committing batch.
    pub(super) async fn write_checkpoint_with(
        &self,
        seq: u64,
        slices: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        state: &[u8],
        extra: impl FnOnce(&mut sled::Batch),
    ) -> Result<(), StoreError> {
        let size: u64 = slices
            .iter()
            .map(|(_, v)| v.as_ref().map_or(0, |v| v.len() as u64))
            .sum::<u64>()
            + state.len() as u64;
        let mut w = self.begin_checkpoint(size)?;
        for (key, value) in &slices {
            w.slice(key, value.as_deref()).await?;
        }
        w.state(state).await?;
        w.commit_with(seq, extra).await
    }

    /// Starts a checkpoint written part by part (see [`CheckpointWriter`]); `estimate` is about
    /// how many bytes it will write, to check the disk has room for it.
    pub fn begin_checkpoint(&self, estimate: u64) -> Result<CheckpointWriter<'_>, StoreError> {
        // A checkpoint is only an optimisation of the log: skip it rather than let sled meet a full
        // disk (which would poison it). Room for it twice over and two fresh segments.
        super::space::check_free(&self.path, 2 * estimate + 2 * SEGMENT_BYTES)?;
        let old = self
            .manifest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let gen = old.gen + 1;
        Ok(CheckpointWriter {
            store: self,
            new: Manifest { gen, ..old.clone() },
            old,
            batch: sled::Batch::default(),
            pending: 0,
            keys: 0,
            written: 0,
        })
    }

    /// Deletes the log groups up to `seq` (folded into a checkpoint).
    fn trim_log(&self, seq: u64) -> Result<(), StoreError> {
        let log = self.t()?.log.clone();
        let last = log
            .last()?
            .map(|(k, _)| seq_of(k.get(..8).unwrap_or(&[])))
            .transpose()?;
        match last {
            None => return Ok(()),
            // The usual case (checkpoints are written between groups): the whole log goes.
            Some(last) if last <= seq => return self.drop_log(),
            Some(_) => {}
        }
        let mut drop_log = sled::Batch::default();
        let (mut dropped, mut groups, mut pending, mut keys) = (0u64, 0u64, 0usize, 0usize);
        let mut last = None;
        for kv in log.range(..log_key(seq + 1, 0)) {
            let (k, v) = kv?;
            dropped += (k.len() + v.len()) as u64;
            pending += k.len() + 8;
            let s = k.get(..8).map(<[u8]>::to_vec);
            if s != last {
                groups += 1;
                last = s;
            }
            drop_log.remove(k);
            keys += 1;
            if pending >= BATCH_BYTES || keys == BATCH_KEYS {
                self.note(
                    apply_batch(&log, std::mem::take(&mut drop_log)).map_err(StoreError::from),
                )?;
                pending = 0;
                keys = 0;
            }
        }
        self.note(apply_batch(&log, drop_log).map_err(StoreError::from))?;
        self.churned(dropped);
        self.log_bytes.fetch_sub(
            dropped.min(self.log_bytes.load(Ordering::SeqCst)),
            Ordering::SeqCst,
        );
        let before = self.logged_groups.load(Ordering::SeqCst);
        self.logged_groups
            .store(before.saturating_sub(groups), Ordering::SeqCst);
        Ok(())
    }

    /// Drops the whole log tree and starts an empty one. sled frees a dropped tree page by page,
    /// where deleting its keys would copy a node per key and write a record per key.
    fn drop_log(&self) -> Result<(), StoreError> {
        let mut guard = self
            .trees
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(trees) = guard.as_mut() else {
            return Err(StoreError::closed());
        };
        let dropped = self.note(trees.db.drop_tree(LOG_TREE).map_err(StoreError::from));
        // Whatever the drop did, the handle must name the tree sled has now.
        let reopened = self.note(trees.db.open_tree(LOG_TREE).map_err(StoreError::from));
        dropped?;
        trees.log = reopened?;
        drop(guard);
        let bytes = self.log_bytes.swap(0, Ordering::SeqCst);
        self.churned(bytes);
        self.logged_groups.store(0, Ordering::SeqCst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn source_marks_are_committed_with_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s"), 1 << 20, 1 << 30).unwrap();
        assert!(s.source_marks().unwrap().is_empty());
        s.append(b"g1").unwrap();
        let mut marks = BTreeMap::new();
        marks.insert("pbx1".to_string(), vec![1, 2, 3]);
        let w = s.begin_checkpoint(0).unwrap();
        w.commit_with_marks(1, &marks).await.unwrap();
        drop(s);
        let s = Store::open(&dir.path().join("s"), 1 << 20, 1 << 30).unwrap();
        assert_eq!(s.source_marks().unwrap(), marks);
        assert_eq!(s.logged_groups(), 0);
    }

    #[test]
    fn the_manifest_round_trips() {
        let mut m = Manifest {
            gen: 7,
            ..Manifest::default()
        };
        m.slices.insert(
            b"i\x80\x00\x01\x9b\x8c\x2a\x4b\x00".to_vec(),
            Part {
                gen: 5,
                chunks: 3,
                bytes: 9_000,
            },
        );
        m.state = Some(Part {
            gen: 7,
            chunks: 1,
            bytes: 40,
        });
        assert_eq!(Manifest::decode(&m.encode(), 0).unwrap(), m);
    }
}
