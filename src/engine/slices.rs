//! Bucket aggregates organised by time: a *slice* holds the buckets of every key for one bucket
//! start of one tier (a minute, or an interval). Slices are what checkpoints write (one store value
//! each) and what retention drops, so both cost one operation per time bucket, not per key.
//!
//! Most buckets are kept packed ([`super::packed`], a few dozen bytes); a bucket whose packed form
//! grows past [`WIDE_BYTES`] (the `all` and channel keys of a busy host) is kept decoded instead,
//! so folding into it stays cheap.

use std::collections::BTreeMap;

use super::aggregate::Agg;
use super::keys::KeyId;
use super::packed::{self, BandSets, Fact, Work};
use super::running::Running;
use super::varint::{put_bytes, put_u64, DecodeError, Reader};

/// Packed buckets larger than this are kept decoded.
const WIDE_BYTES: usize = 384;

#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Packed(Box<[u8]>),
    Wide(Box<Agg>),
}

impl Cell {
    fn bytes(&self) -> usize {
        match self {
            Cell::Packed(b) => b.len() + 16,
            Cell::Wide(a) => {
                std::mem::size_of::<Agg>()
                    + a.bands.len() * 48
                    + (a.wait_hist.parts().1.len() + a.handle_hist.parts().1.len()) * 16
            }
        }
    }

    pub fn wait_max(&self) -> u64 {
        match self {
            Cell::Packed(b) => packed::wait_max(b),
            Cell::Wide(a) => a.wait_max_ms,
        }
    }

    pub fn decode(&self, sets: &BandSets) -> Result<Agg, DecodeError> {
        match self {
            Cell::Packed(b) => packed::decode(b, sets),
            Cell::Wide(a) => Ok((**a).clone()),
        }
    }

    pub fn add_into(&self, sets: &BandSets, acc: &mut Running) -> Result<(), DecodeError> {
        match self {
            Cell::Packed(b) => packed::add_into(b, sets, acc),
            Cell::Wide(a) => {
                acc.add(a);
                Ok(())
            }
        }
    }

    pub fn subtract_from(&self, sets: &BandSets, acc: &mut Running) -> Result<(), DecodeError> {
        match self {
            Cell::Packed(b) => packed::subtract_from(b, sets, acc),
            Cell::Wide(a) => {
                acc.subtract(a);
                Ok(())
            }
        }
    }
}

/// The buckets of every key at one bucket start, sorted by key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Slice {
    cells: Vec<(KeyId, Cell)>,
    /// Bumped by every fold, so readers can tell a changed slice from an unchanged one.
    version: u64,
}

impl Slice {
    pub fn cells(&self) -> impl Iterator<Item = (KeyId, &Cell)> {
        self.cells.iter().map(|(k, c)| (*k, c))
    }

    pub fn get(&self, key: KeyId) -> Option<&Cell> {
        self.cells
            .binary_search_by_key(&key, |(k, _)| *k)
            .ok()
            .map(|i| &self.cells[i].1)
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.cells.capacity() * std::mem::size_of::<(KeyId, Cell)>()
            + self.cells.iter().map(|(_, c)| c.bytes()).sum::<usize>()
    }

    /// Folds `facts` into the bucket of `key`, creating it; returns whether it is new.
    pub fn fold(
        &mut self,
        key: KeyId,
        sets: &mut BandSets,
        facts: &[Fact<'_>],
        work: &mut Work,
    ) -> bool {
        let (pos, new) = match self.cells.binary_search_by_key(&key, |(k, _)| *k) {
            Ok(i) => (i, false),
            Err(i) => {
                self.cells.insert(i, (key, Cell::Packed(Box::default())));
                (i, true)
            }
        };
        self.version += 1;
        let cell = &mut self.cells[pos].1;
        match cell {
            Cell::Wide(a) => {
                for fact in facts {
                    fact.add_to(a);
                }
            }
            Cell::Packed(bytes) => {
                // Cells are only ever written by `Work::pack` or `packed::encode` with these band
                // lists; a load error means memory damage, and an empty start is the safe answer.
                if work.load(bytes, sets).is_err() {
                    let _ = work.load(&[], sets);
                }
                for fact in facts {
                    work.add(fact);
                }
                let out = work.pack(sets);
                if out.len() > WIDE_BYTES {
                    *cell = Cell::Wide(Box::new(work.to_agg()));
                } else if out.len() == bytes.len() {
                    bytes.copy_from_slice(out);
                } else {
                    *bytes = out.into();
                }
            }
        }
        new
    }

    /// Sets the bucket of `key` to `agg` (an imported bucket); returns whether it is new.
    pub fn put(&mut self, key: KeyId, sets: &mut BandSets, agg: Agg) -> bool {
        let mut out = Vec::new();
        packed::encode(&agg, sets, &mut out);
        let cell = if out.len() > WIDE_BYTES {
            Cell::Wide(Box::new(agg))
        } else {
            Cell::Packed(out.into_boxed_slice())
        };
        self.version += 1;
        match self.cells.binary_search_by_key(&key, |(k, _)| *k) {
            Ok(i) => {
                self.cells[i].1 = cell;
                false
            }
            Err(i) => {
                self.cells.insert(i, (key, cell));
                true
            }
        }
    }

    /// The slice as one store value: each key with its packed bucket.
    pub fn encode(&self, sets: &mut BandSets) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes());
        put_u64(&mut out, self.cells.len() as u64);
        let mut scratch = Vec::new();
        for (k, c) in &self.cells {
            put_u64(&mut out, u64::from(*k));
            match c {
                Cell::Packed(b) => put_bytes(&mut out, b),
                Cell::Wide(a) => {
                    scratch.clear();
                    packed::encode(a, sets, &mut scratch);
                    put_bytes(&mut out, &scratch);
                }
            }
        }
        out
    }

    pub fn decode(bytes: &[u8], sets: &BandSets) -> Result<Slice, DecodeError> {
        let mut r = Reader::new(bytes);
        let n = r.usize()?;
        if n > bytes.len() {
            return Err(DecodeError::Truncated);
        }
        let mut cells = Vec::with_capacity(n);
        let mut prev: Option<KeyId> = None;
        for _ in 0..n {
            let k = r.u32()?;
            if prev.is_some_and(|p| p >= k) {
                return Err(DecodeError::Invalid("slice keys out of order"));
            }
            prev = Some(k);
            let b = r.bytes()?;
            // Check it decodes now, so a damaged store is found at start-up, not at query time.
            let agg = packed::decode(b, sets)?;
            let cell = if b.len() > WIDE_BYTES {
                Cell::Wide(Box::new(agg))
            } else {
                Cell::Packed(b.into())
            };
            cells.push((k, cell));
        }
        if !r.is_empty() {
            return Err(DecodeError::Invalid("a slice has trailing bytes"));
        }
        Ok(Slice { cells, version: 0 })
    }
}

/// The slices of one tier, by bucket start.
#[derive(Debug, Clone, Default)]
pub struct TierSlices {
    slices: BTreeMap<i64, Slice>,
}

impl TierSlices {
    pub fn get(&self, start: i64) -> Option<&Slice> {
        self.slices.get(&start)
    }

    pub fn entry(&mut self, start: i64) -> &mut Slice {
        self.slices.entry(start).or_default()
    }

    pub fn range(&self, first: i64, last: i64) -> impl Iterator<Item = (i64, &Slice)> {
        let r = if first <= last {
            self.slices.range(first..=last)
        } else {
            self.slices.range(0..0)
        };
        r.map(|(s, sl)| (*s, sl))
    }

    pub fn iter(&self) -> impl Iterator<Item = (i64, &Slice)> {
        self.slices.iter().map(|(s, sl)| (*s, sl))
    }

    pub fn insert(&mut self, start: i64, slice: Slice) {
        self.slices.insert(start, slice);
    }

    /// Removes and returns the slices starting before `from`.
    pub fn split_off_before(&mut self, from: i64) -> Vec<(i64, Slice)> {
        let keep = self.slices.split_off(&from);
        std::mem::replace(&mut self.slices, keep)
            .into_iter()
            .collect()
    }

    pub fn bytes(&self) -> usize {
        self.slices.values().map(|s| s.bytes() + 48).sum()
    }

    pub fn buckets(&self) -> usize {
        self.slices.values().map(Slice::len).sum()
    }
}
