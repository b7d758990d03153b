//! Bucket aggregates organised by time: a *slice* holds the buckets of every key for one bucket
//! start of one tier (a minute, or an interval). Slices are what checkpoints write (one store value
//! each) and what retention drops, so both cost one operation per time bucket, not per key.
//!
//! Most buckets are kept packed ([`super::packed`], a few dozen bytes); a bucket whose packed form
//! grows past [`WIDE_BYTES`] (the `all` and channel keys of a busy host) is kept decoded instead,
//! so folding into it stays cheap.
//!
//! A slice nothing folds into any more is *frozen*: kept as its stored form, one allocation for
//! all its buckets, about half the memory of the live form (measured with 1 M calls over 20 h:
//! 5.6 MB for a day of interval slices against about 10 MB). Reading a frozen slice walks that
//! form in place; a fold into one thaws it first. The engine freezes old slices of both tiers at
//! each scan (see `expiry.rs`).

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

/// A bucket as read: packed bytes (a live packed cell, or one inside a frozen slice) or decoded.
#[derive(Debug, Clone, Copy)]
pub enum CellRef<'a> {
    Packed(&'a [u8]),
    Wide(&'a Agg),
}

impl CellRef<'_> {
    pub fn wait_max(self) -> u64 {
        match self {
            CellRef::Packed(b) => packed::wait_max(b),
            CellRef::Wide(a) => a.wait_max_ms,
        }
    }

    /// The bucket's revision, without decoding its sketches.
    pub fn revision(self) -> Result<u64, DecodeError> {
        match self {
            CellRef::Packed(b) => packed::revision(b),
            CellRef::Wide(a) => Ok(a.revision),
        }
    }

    pub fn decode(self, sets: &BandSets) -> Result<Agg, DecodeError> {
        match self {
            CellRef::Packed(b) => packed::decode(b, sets),
            CellRef::Wide(a) => Ok(a.clone()),
        }
    }

    pub fn add_into(self, sets: &BandSets, acc: &mut Running) -> Result<(), DecodeError> {
        match self {
            CellRef::Packed(b) => packed::add_into(b, sets, acc),
            CellRef::Wide(a) => {
                acc.add(a);
                Ok(())
            }
        }
    }

    /// `add_into` without the sketches (see `packed::add_counters_into`).
    pub fn add_counters_into(self, sets: &BandSets, acc: &mut Running) -> Result<(), DecodeError> {
        match self {
            CellRef::Packed(b) => packed::add_counters_into(b, sets, acc),
            CellRef::Wide(a) => {
                acc.agg.merge_counters(a);
                Ok(())
            }
        }
    }

    pub fn subtract_from(self, sets: &BandSets, acc: &mut Running) -> Result<(), DecodeError> {
        match self {
            CellRef::Packed(b) => packed::subtract_from(b, sets, acc),
            CellRef::Wide(a) => {
                acc.subtract(a);
                Ok(())
            }
        }
    }
}

impl Cell {
    fn as_ref(&self) -> CellRef<'_> {
        match self {
            Cell::Packed(b) => CellRef::Packed(b),
            Cell::Wide(a) => CellRef::Wide(a),
        }
    }

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
}

/// The buckets of every key at one bucket start, sorted by key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Slice {
    /// The keys, sorted, apart from their cells: a fold's binary search reads 4 bytes a step,
    /// so a slice's keys take a few cache lines (600 keys: 2.4 KB, where (key, cell) pairs of
    /// 24 bytes took 14 KB).
    keys: Vec<KeyId>,
    /// The bucket of each key, in `keys`' order.
    cells: Vec<Cell>,
    /// Bumped by every fold, so readers can tell a changed slice from an unchanged one.
    version: u64,
}

impl Slice {
    pub fn cells(&self) -> impl Iterator<Item = (KeyId, CellRef<'_>)> {
        self.keys
            .iter()
            .zip(&self.cells)
            .map(|(k, c)| (*k, c.as_ref()))
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.keys.capacity() * std::mem::size_of::<KeyId>()
            + self.cells.capacity() * std::mem::size_of::<Cell>()
            + self.cells.iter().map(Cell::bytes).sum::<usize>()
    }

    /// Folds `facts` into the bucket of `key`, creating it; returns whether it is new.
    pub fn fold(
        &mut self,
        key: KeyId,
        sets: &mut BandSets,
        facts: &[Fact<'_>],
        work: &mut Work,
    ) -> bool {
        let (pos, new) = match self.keys.binary_search(&key) {
            Ok(i) => (i, false),
            Err(i) => {
                self.keys.insert(i, key);
                self.cells.insert(i, Cell::Packed(Box::default()));
                (i, true)
            }
        };
        self.version += 1;
        let cell = &mut self.cells[pos];
        match cell {
            Cell::Wide(a) => {
                for fact in facts {
                    fact.add_to(a);
                }
            }
            Cell::Packed(bytes) => {
                // Cells are only ever written by `Work::pack` or `packed::encode` with these band
                // lists; a head that does not load means memory damage, and an empty start is the
                // safe answer (`Work::load` says how its sketches are trusted).
                if work.load(bytes, sets).is_err() {
                    let _ = work.load(&[], sets);
                }
                for fact in facts {
                    work.add(fact);
                }
                let out = work.pack(sets);
                if out.len() > WIDE_BYTES {
                    *cell = Cell::Wide(Box::new(work.unpack_agg()));
                } else if out.len() == bytes.len() {
                    bytes.copy_from_slice(out);
                } else {
                    // Resized where it lies: a bucket grows by a byte or two a fold, mostly
                    // within its allocation's size class, where the allocator's `realloc`
                    // neither moves nor locks (a fresh box cost an allocation and a free).
                    let mut v = std::mem::take(bytes).into_vec();
                    v.clear();
                    v.reserve_exact(out.len());
                    v.extend_from_slice(out);
                    *bytes = v.into_boxed_slice();
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
        match self.keys.binary_search(&key) {
            Ok(i) => {
                self.cells[i] = cell;
                false
            }
            Err(i) => {
                self.keys.insert(i, key);
                self.cells.insert(i, cell);
                true
            }
        }
    }

    /// The slice as one store value: each key with its packed bucket.
    pub fn encode(&self, sets: &mut BandSets) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes());
        put_u64(&mut out, self.cells.len() as u64);
        let mut scratch = Vec::new();
        for (k, c) in self.keys.iter().zip(&self.cells) {
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

    /// Reads a slice's stored form, checking every bucket decodes.
    pub fn decode(bytes: &[u8], sets: &BandSets) -> Result<Slice, DecodeError> {
        Slice::read(bytes, sets, true)
    }

    /// Reads a stored form this engine made or already checked (a frozen slice, thawed):
    /// only the wide buckets, kept decoded, are decoded.
    fn thaw(bytes: &[u8], sets: &BandSets) -> Result<Slice, DecodeError> {
        Slice::read(bytes, sets, false)
    }

    fn read(bytes: &[u8], sets: &BandSets, check: bool) -> Result<Slice, DecodeError> {
        let mut walk = StoredCells::new(bytes)?;
        let mut keys = Vec::with_capacity(walk.left);
        let mut cells = Vec::with_capacity(walk.left);
        let mut prev: Option<KeyId> = None;
        for cell in &mut walk {
            let (k, b) = cell?;
            if prev.is_some_and(|p| p >= k) {
                return Err(DecodeError::Invalid("slice keys out of order"));
            }
            prev = Some(k);
            let cell = if b.len() > WIDE_BYTES {
                Cell::Wide(Box::new(packed::decode(b, sets)?))
            } else {
                // Check it decodes now, so a damaged store is found at start-up, not at query time.
                if check {
                    packed::decode(b, sets)?;
                }
                Cell::Packed(b.into())
            };
            keys.push(k);
            cells.push(cell);
        }
        if !walk.r.is_empty() {
            return Err(DecodeError::Invalid("a slice has trailing bytes"));
        }
        Ok(Slice {
            keys,
            cells,
            version: 0,
        })
    }
}

/// The buckets of a slice's stored form, in the order written: its count, then each key with
/// its packed bucket. The one reader of that form, for decoding and for frozen slices.
struct StoredCells<'a> {
    r: Reader<'a>,
    left: usize,
}

impl<'a> StoredCells<'a> {
    fn new(bytes: &'a [u8]) -> Result<StoredCells<'a>, DecodeError> {
        let mut r = Reader::new(bytes);
        let left = r.usize()?;
        if left > bytes.len() {
            return Err(DecodeError::Truncated);
        }
        Ok(StoredCells { r, left })
    }
}

impl<'a> Iterator for StoredCells<'a> {
    type Item = Result<(KeyId, &'a [u8]), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        Some(self.r.u32().and_then(|k| Ok((k, self.r.bytes()?))))
    }
}

/// A slice in its stored form, read in place (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct Frozen {
    bytes: Box<[u8]>,
    cells: usize,
    version: u64,
}

impl Frozen {
    /// The buckets, in key order, straight from the stored form. The form was written by
    /// [`Slice::encode`] or checked by [`Slice::decode`]; should it not parse (memory damage),
    /// the walk stops there.
    fn cells(&self) -> impl Iterator<Item = (KeyId, CellRef<'_>)> {
        StoredCells::new(&self.bytes)
            .into_iter()
            .flatten()
            .map_while(Result::ok)
            .map(|(k, b)| (k, CellRef::Packed(b)))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Kept {
    Live(Slice),
    Frozen(Frozen),
}

/// One slice as read, live or frozen.
#[derive(Debug, Clone, Copy)]
pub enum SliceRef<'a> {
    Live(&'a Slice),
    Frozen(&'a Frozen),
}

impl<'a> SliceRef<'a> {
    pub fn cells(self) -> Box<dyn Iterator<Item = (KeyId, CellRef<'a>)> + 'a> {
        match self {
            SliceRef::Live(s) => Box::new(s.cells()),
            SliceRef::Frozen(f) => Box::new(f.cells()),
        }
    }

    pub fn get(self, key: KeyId) -> Option<CellRef<'a>> {
        match self {
            SliceRef::Live(s) => s.keys.binary_search(&key).ok().map(|i| s.cells[i].as_ref()),
            SliceRef::Frozen(f) => f.cells().find(|(k, _)| *k == key).map(|(_, c)| c),
        }
    }

    pub fn version(self) -> u64 {
        match self {
            SliceRef::Live(s) => s.version,
            SliceRef::Frozen(f) => f.version,
        }
    }

    pub fn is_empty(self) -> bool {
        match self {
            SliceRef::Live(s) => s.is_empty(),
            SliceRef::Frozen(f) => f.cells == 0,
        }
    }

    /// The stored form.
    pub fn encode(self, sets: &mut BandSets) -> Vec<u8> {
        match self {
            SliceRef::Live(s) => s.encode(sets),
            SliceRef::Frozen(f) => f.bytes.to_vec(),
        }
    }
}

impl Kept {
    fn as_ref(&self) -> SliceRef<'_> {
        match self {
            Kept::Live(s) => SliceRef::Live(s),
            Kept::Frozen(f) => SliceRef::Frozen(f),
        }
    }
}

/// The slices of one tier, by bucket start.
#[derive(Debug, Clone, Default)]
pub struct TierSlices {
    slices: BTreeMap<i64, Kept>,
}

impl TierSlices {
    pub fn get(&self, start: i64) -> Option<SliceRef<'_>> {
        self.slices.get(&start).map(Kept::as_ref)
    }

    /// The live slice at `start`, created, or thawed if frozen.
    pub fn entry(&mut self, start: i64, sets: &BandSets) -> &mut Slice {
        let kept = self
            .slices
            .entry(start)
            .or_insert_with(|| Kept::Live(Slice::default()));
        if let Kept::Frozen(f) = kept {
            // The frozen form was checked when it was made; should it not decode (memory
            // damage), the slice starts again empty rather than stopping the engine.
            let mut slice = Slice::thaw(&f.bytes, sets).unwrap_or_default();
            slice.version = f.version;
            *kept = Kept::Live(slice);
        }
        match kept {
            Kept::Live(s) => s,
            // Thawed just above.
            Kept::Frozen(_) => unreachable!("a frozen slice was thawed above"),
        }
    }

    pub fn range(&self, first: i64, last: i64) -> impl Iterator<Item = (i64, SliceRef<'_>)> {
        let r = if first <= last {
            self.slices.range(first..=last)
        } else {
            self.slices.range(0..0)
        };
        r.map(|(s, k)| (*s, k.as_ref()))
    }

    pub fn iter(&self) -> impl Iterator<Item = (i64, SliceRef<'_>)> {
        self.slices.iter().map(|(s, k)| (*s, k.as_ref()))
    }

    pub fn insert(&mut self, start: i64, slice: Slice) {
        self.slices.insert(start, Kept::Live(slice));
    }

    /// Keeps `bytes`, a stored form [`Slice::decode`] accepted holding `cells` buckets, frozen.
    pub fn insert_frozen(&mut self, start: i64, bytes: Vec<u8>, cells: usize) {
        self.slices.insert(
            start,
            Kept::Frozen(Frozen {
                bytes: bytes.into_boxed_slice(),
                cells,
                version: 0,
            }),
        );
    }

    /// Freezes the live slices starting before `before`; returns how many.
    pub fn freeze_before(&mut self, before: i64, sets: &mut BandSets) -> usize {
        let mut n = 0;
        for (_, kept) in self.slices.range_mut(..before) {
            if let Kept::Live(s) = kept {
                *kept = Kept::Frozen(Frozen {
                    bytes: s.encode(sets).into_boxed_slice(),
                    cells: s.len(),
                    version: s.version,
                });
                n += 1;
            }
        }
        n
    }

    /// Removes the slices starting before `from`; returns the keys of their buckets.
    pub fn split_off_before(&mut self, from: i64) -> Vec<(i64, Vec<KeyId>)> {
        let keep = self.slices.split_off(&from);
        std::mem::replace(&mut self.slices, keep)
            .into_iter()
            .map(|(start, kept)| (start, kept.as_ref().cells().map(|(k, _)| k).collect()))
            .collect()
    }

    pub fn bytes(&self) -> usize {
        self.slices
            .values()
            .map(|k| {
                48 + match k {
                    Kept::Live(s) => s.bytes(),
                    Kept::Frozen(f) => f.bytes.len() + 40,
                }
            })
            .sum()
    }

    pub fn buckets(&self) -> usize {
        self.slices
            .values()
            .map(|k| match k {
                Kept::Live(s) => s.len(),
                Kept::Frozen(f) => f.cells,
            })
            .sum()
    }
}
