//! The keys aggregates are kept under (queue, agent, channel names and `all`), each given a small
//! number that buckets refer to, with the per-dimension cardinality limit and its `(other)` key;
//! the keys a segment counts under; and a bucket's identity outside the engine with its stable
//! byte key ([`BucketId`]); and [`KeyMap`], a hash map by key number.
//!
//! A key lives while some bucket holds it; once retention drops its last bucket, its number is
//! free again and its place under the limit goes to the next new key.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

use super::report::{DimKind, OVERFLOW_KEY};
use super::segment::Segment;
use super::window::Tier;

/// A dimension key: (kind, name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Dim {
    pub kind: DimKind,
    pub key: String,
}

/// One bucket of one key: its identity outside the engine (interval records, the closer).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BucketId {
    pub tier: Tier,
    pub dim: Dim,
    pub start_ms: i64,
}

impl BucketId {
    /// Stable key: tier, kind, start (big-endian, sign-flipped so keys sort by time), name.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(10 + self.dim.key.len());
        k.push(match self.tier {
            Tier::Fine => b'f',
            Tier::Interval => b'i',
        });
        k.push(match self.dim.kind {
            DimKind::All => b'a',
            DimKind::Queue => b'q',
            DimKind::Agent => b'g',
            DimKind::Channel => b'c',
            DimKind::Tag => b't',
        });
        k.extend_from_slice(&((self.start_ms as u64) ^ (1 << 63)).to_be_bytes());
        k.extend_from_slice(self.dim.key.as_bytes());
        k
    }

    #[must_use]
    pub fn decode(k: &[u8]) -> Option<BucketId> {
        let tier = match k.first()? {
            b'f' => Tier::Fine,
            b'i' => Tier::Interval,
            _ => return None,
        };
        let kind = match k.get(1)? {
            b'a' => DimKind::All,
            b'q' => DimKind::Queue,
            b'g' => DimKind::Agent,
            b'c' => DimKind::Channel,
            b't' => DimKind::Tag,
            _ => return None,
        };
        let start: [u8; 8] = k.get(2..10)?.try_into().ok()?;
        let key = String::from_utf8(k.get(10..)?.to_vec()).ok()?;
        Some(BucketId {
            tier,
            dim: Dim { kind, key },
            start_ms: (u64::from_be_bytes(start) ^ (1 << 63)) as i64,
        })
    }
}

/// The number a key is known by inside the engine and its checkpoints.
pub type KeyId = u32;

/// A hash map by key id. The engine hands out the ids (small, dense), so no client can choose
/// them to collide: one multiply spreads them, where `SipHash` cost a tenth of a running total's
/// update.
pub type KeyMap<V> = HashMap<KeyId, V, BuildHasherDefault<KeyIdHasher>>;

/// The hasher of [`KeyMap`]: a key id times an odd constant (Fibonacci hashing), so the low bits
/// that pick a bucket differ for ids that differ there, and the high ones the table keeps as tags
/// depend on every bit.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyIdHasher(u64);

impl Hasher for KeyIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    /// Any other input, byte by byte (a `KeyMap` only ever hashes a `u32`).
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
}

#[must_use]
pub fn kind_index(k: DimKind) -> usize {
    match k {
        DimKind::All => 0,
        DimKind::Queue => 1,
        DimKind::Agent => 2,
        DimKind::Channel => 3,
        DimKind::Tag => 4,
    }
}

/// How many dimension kinds there are (tables indexed by [`kind_index`]).
pub const KINDS: usize = 5;

/// The keys a segment counts under: `all`, its queue, its channel, and its agent if it has one.
pub(super) fn dims_of<'a>(seg: &Segment<'a>) -> impl Iterator<Item = (DimKind, &'a str)> {
    [
        (DimKind::All, "all"),
        (DimKind::Queue, seg.queue),
        (DimKind::Channel, seg.channel),
    ]
    .into_iter()
    .chain(seg.agent().map(|a| (DimKind::Agent, a)))
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    dim: Dim,
    /// Buckets holding this key.
    buckets: u32,
}

#[derive(Debug, Clone, Default)]
pub struct Keys {
    /// Per kind (see [`kind_index`]): name → number, looked up by `&str` without allocating.
    by_name: [HashMap<Box<str>, KeyId>; KINDS],
    entries: Vec<Option<Entry>>,
    free: Vec<KeyId>,
    per_kind: [usize; KINDS],
}

impl Keys {
    #[must_use]
    pub fn get(&self, kind: DimKind, name: &str) -> Option<KeyId> {
        self.by_name[kind_index(kind)].get(name).copied()
    }

    #[must_use]
    pub fn dim(&self, id: KeyId) -> Option<&Dim> {
        self.entries
            .get(id as usize)
            .and_then(|e| e.as_ref().map(|e| &e.dim))
    }

    /// One more than the largest key number in use (for tables indexed by key).
    #[must_use]
    pub fn id_bound(&self) -> KeyId {
        self.entries.len() as KeyId
    }

    #[must_use]
    pub fn count(&self, kind: DimKind) -> usize {
        self.per_kind[kind_index(kind)]
    }

    /// Every live key of `kind`.
    pub fn of_kind(&self, kind: DimKind) -> impl Iterator<Item = (KeyId, &Dim)> {
        self.entries.iter().enumerate().filter_map(move |(i, e)| {
            e.as_ref()
                .filter(|e| e.dim.kind == kind)
                .map(|e| (i as KeyId, &e.dim))
        })
    }

    /// The name `name` counts under in `kind` now: itself when known or under the limit, else
    /// `(other)`. Registers nothing.
    #[must_use]
    pub fn effective_name<'a>(&self, kind: DimKind, name: &'a str, limit: usize) -> &'a str {
        self.effective_or(kind, name, OVERFLOW_KEY, limit)
    }

    /// As [`Keys::effective_name`], with the overflow key given (a tag's is `name=(other)`, so
    /// each tag name keeps its own).
    fn effective_or<'a>(
        &self,
        kind: DimKind,
        name: &'a str,
        overflow: &'a str,
        limit: usize,
    ) -> &'a str {
        if self.get(kind, name).is_some() || self.count(kind) < limit {
            name
        } else {
            overflow
        }
    }

    /// The key a segment counts under, registering it; `(other)` past the limit. The flag says
    /// whether the segment was moved to `(other)`.
    pub fn resolve(&mut self, kind: DimKind, name: &str, limit: usize) -> (KeyId, bool) {
        self.resolve_or(kind, name, OVERFLOW_KEY, limit)
    }

    /// As [`Keys::resolve`], past the limit under `overflow` (registered past the limit, as
    /// `(other)` is: at most one more key per overflow name).
    pub fn resolve_or(
        &mut self,
        kind: DimKind,
        name: &str,
        overflow: &str,
        limit: usize,
    ) -> (KeyId, bool) {
        let effective = self.effective_or(kind, name, overflow, limit);
        let overflowed = effective == overflow && name != overflow;
        if let Some(id) = self.get(kind, effective) {
            return (id, overflowed);
        }
        let dim = Dim {
            kind,
            key: effective.to_string(),
        };
        (self.insert(dim), overflowed)
    }

    fn insert(&mut self, dim: Dim) -> KeyId {
        self.per_kind[kind_index(dim.kind)] += 1;
        let entry = Some(Entry {
            dim: dim.clone(),
            buckets: 0,
        });
        let id = if let Some(id) = self.free.pop() {
            self.entries[id as usize] = entry;
            id
        } else {
            self.entries.push(entry);
            (self.entries.len() - 1) as KeyId
        };
        self.by_name[kind_index(dim.kind)].insert(dim.key.into(), id);
        id
    }

    /// Restores a key under its number from a checkpoint.
    pub fn restore(&mut self, id: KeyId, dim: Dim) {
        let i = id as usize;
        if self.entries.len() <= i {
            self.entries.resize(i + 1, None);
        }
        if self.entries[i].is_none() {
            self.per_kind[kind_index(dim.kind)] += 1;
        }
        self.by_name[kind_index(dim.kind)].insert(dim.key.as_str().into(), id);
        self.entries[i] = Some(Entry { dim, buckets: 0 });
    }

    /// After a restore: numbers never used are free.
    pub fn finish_restore(&mut self) {
        self.free = (0..self.entries.len() as KeyId)
            .rev()
            .filter(|&i| self.entries[i as usize].is_none())
            .collect();
    }

    pub fn bucket_added(&mut self, id: KeyId) {
        if let Some(Some(e)) = self.entries.get_mut(id as usize) {
            e.buckets += 1;
        }
    }

    /// One bucket of `id` was dropped; the key goes when it has none left.
    pub fn bucket_dropped(&mut self, id: KeyId) {
        let Some(slot) = self.entries.get_mut(id as usize) else {
            return;
        };
        let gone = match slot {
            Some(e) => {
                e.buckets = e.buckets.saturating_sub(1);
                e.buckets == 0
            }
            None => false,
        };
        if gone {
            if let Some(e) = slot.take() {
                self.per_kind[kind_index(e.dim.kind)] -= 1;
                self.by_name[kind_index(e.dim.kind)].remove(e.dim.key.as_str());
                self.free.push(id);
            }
        }
    }

    /// Drops keys that hold no bucket (registered for a fold that fell outside retention).
    pub fn drop_unused(&mut self) {
        for i in 0..self.entries.len() {
            if matches!(&self.entries[i], Some(e) if e.buckets == 0) {
                if let Some(e) = self.entries[i].take() {
                    self.per_kind[kind_index(e.dim.kind)] -= 1;
                    self.by_name[kind_index(e.dim.kind)].remove(e.dim.key.as_str());
                    self.free.push(i as KeyId);
                }
            }
        }
    }

    /// Every live key with its number, for checkpoints.
    pub fn all(&self) -> impl Iterator<Item = (KeyId, &Dim)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.as_ref().map(|e| (i as KeyId, &e.dim)))
    }

    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Option<Entry>>()
            + self
                .all()
                .map(|(_, d)| 2 * (d.key.len() + 48))
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn key_ids_hash_apart_and_spread_over_buckets() {
        let build = BuildHasherDefault::<KeyIdHasher>::default();
        let hashes: Vec<u64> = (0..65_536u32).map(|k| build.hash_one(k)).collect();
        // A multiply by an odd constant is one-to-one: no two ids share a hash.
        assert_eq!(hashes.iter().collect::<HashSet<_>>().len(), hashes.len());
        // A table of 1 024 buckets (low bits) and its 7-bit tags (high bits) both see every value
        // equally often.
        let mut low = vec![0u32; 1 << 10];
        let mut tags = vec![0u32; 1 << 7];
        for h in &hashes {
            low[(h & 1023) as usize] += 1;
            tags[(h >> 57) as usize] += 1;
        }
        assert!(low.iter().all(|&n| n == 64), "{low:?}");
        assert!(tags.iter().all(|&n| (384..=640).contains(&n)), "{tags:?}");
        let map: KeyMap<u32> = (0..1_000).map(|k| (k, k * 2)).collect();
        assert!((0..1_000).all(|k| map[&k] == k * 2));
    }
}
