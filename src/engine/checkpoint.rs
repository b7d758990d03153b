//! The engine's durable form: the slices changed since the last checkpoint (one value per time
//! slice, so a checkpoint writes what changed, not everything), and one value with the rest (keys,
//! band lists, counters, pending and remembered calls, lifetime totals). Running totals are rebuilt
//! from the slices; lifetime totals cannot be (they outlive the buckets), so they are stored, and a
//! state of layout 2, written before they existed, loads with none (see `lifetime.rs`).

use thiserror::Error;

use super::keys::{Dim, KeyId, Keys};
use super::lifetime::Lifetime;
use super::packed::BandSets;
use super::pending::PendingCalls;
use super::remembered::Remembered;
use super::report::DimKind;
use super::slices::Slice;
use super::varint::{put_bytes, put_i64, put_u64, DecodeError, Reader};
use super::window::Tier;
use super::{Counters, Engine};
use crate::config::Config;

/// Version of the state value's layout: 3 adds the lifetime totals after the remembered calls,
/// 4 their overflows by reason, 5 the objectives' counters after them, 6 the callback requests
/// after those.
const STATE_VERSION: u64 = 6;
/// The layout before the callback requests, still read.
const STATE_VERSION_NO_CALLBACKS: u64 = 5;
/// The layout before the objectives' counters, still read.
const STATE_VERSION_NO_SLA: u64 = 4;
/// The layout before overflow reasons, still read.
const STATE_VERSION_NO_REASONS: u64 = 3;
/// The layout before lifetime totals, still read.
const STATE_VERSION_NO_LIFETIME: u64 = 2;

#[derive(Debug, Error)]
pub enum RestoreError {
    #[error("stored engine state cannot be decoded: {0}")]
    Decode(String),
}

impl From<DecodeError> for RestoreError {
    fn from(e: DecodeError) -> Self {
        RestoreError::Decode(e.to_string())
    }
}

/// Where a streamed state value stands (see [`Engine::encode_state_part`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatePart {
    Head,
    /// Pending calls from this index of the table on.
    Pending(usize),
    Remembered,
    Lifetime,
    Sla,
    Callbacks,
}

/// What a checkpoint writes.
pub struct Checkpoint {
    /// Changed slices: [`slice_key`] → encoded slice, or `None` when the slice was dropped.
    pub slices: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Everything else, as one value.
    pub state: Vec<u8>,
}

/// The store key of a slice: tier, then its start (big-endian, sign-flipped so keys sort by time).
#[must_use]
pub fn slice_key(tier: Tier, start: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(match tier {
        Tier::Fine => b'f',
        Tier::Interval => b'i',
    });
    k.extend_from_slice(&((start as u64) ^ (1 << 63)).to_be_bytes());
    k
}

fn parse_slice_key(k: &[u8]) -> Option<(Tier, i64)> {
    let tier = match k.first()? {
        b'f' => Tier::Fine,
        b'i' => Tier::Interval,
        _ => return None,
    };
    let start: [u8; 8] = k.get(1..9)?.try_into().ok()?;
    (k.len() == 9).then_some((tier, (u64::from_be_bytes(start) ^ (1 << 63)) as i64))
}

/// A dimension's code in the state's key list. Tag keys (4) came without a new layout: a state
/// that holds none is what it always was, and every earlier layout reads as before.
fn kind_code(k: DimKind) -> u8 {
    match k {
        DimKind::All => 0,
        DimKind::Queue => 1,
        DimKind::Agent => 2,
        DimKind::Channel => 3,
        DimKind::Tag => 4,
    }
}

fn kind_of(c: u8) -> Result<DimKind, DecodeError> {
    Ok(match c {
        0 => DimKind::All,
        1 => DimKind::Queue,
        2 => DimKind::Agent,
        3 => DimKind::Channel,
        4 => DimKind::Tag,
        _ => return Err(DecodeError::Invalid("unknown dimension")),
    })
}

impl Engine {
    /// Changed slices since the last checkpoint and the rest of the state, encoded.
    pub fn checkpoint(&mut self) -> Checkpoint {
        let slices = self
            .take_dirty()
            .into_iter()
            .map(|(tier, start)| self.encode_slice(tier, start))
            .collect();
        Checkpoint {
            slices,
            state: self.encode_state(),
        }
    }

    /// The slices changed since the last checkpoint, forgotten as changed: a streaming checkpoint
    /// then asks for each with [`Engine::encode_slice`] (`None`: dropped). Give them back with
    /// [`Engine::mark_dirty`] if the checkpoint fails.
    pub fn take_dirty(&mut self) -> Vec<(Tier, i64)> {
        self.changed = false;
        std::mem::take(&mut self.dirty).into_iter().collect()
    }

    /// One slice in its stored form, and its store key; `None` when it holds nothing.
    pub fn encode_slice(&mut self, tier: Tier, start: i64) -> (Vec<u8>, Option<Vec<u8>>) {
        let tier_slices = match tier {
            Tier::Fine => &self.fine,
            Tier::Interval => &self.interval,
        };
        let value = tier_slices
            .get(start)
            .filter(|s| !s.is_empty())
            .map(|s| s.encode(&mut self.sets));
        (slice_key(tier, start), value)
    }

    /// Marks slices changed again (a checkpoint that took them failed).
    pub fn mark_dirty(&mut self, slices: impl IntoIterator<Item = (Tier, i64)>) {
        self.dirty.extend(slices);
        self.changed = true;
    }

    /// Marks every slice changed, so the next checkpoint writes them all (after a failed write).
    pub fn mark_all_dirty(&mut self) {
        for (start, _) in self.fine.iter() {
            self.dirty.insert((Tier::Fine, start));
        }
        for (start, _) in self.interval.iter() {
            self.dirty.insert((Tier::Interval, start));
        }
    }

    fn encode_state(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut part = StatePart::Head;
        while let Some(next) = self.encode_state_part(part, usize::MAX, &mut out) {
            part = next;
        }
        out
    }

    /// Appends the next part of the state value, about `max` bytes of it, to `out`; returns the
    /// part after it, or `None` once the whole value is written. The parts, in order, make the
    /// value [`Engine::restore`] reads; a checkpoint writes them one by one, so the calls held
    /// during a bulk load are never all encoded at once.
    pub fn encode_state_part(
        &self,
        part: StatePart,
        max: usize,
        out: &mut Vec<u8>,
    ) -> Option<StatePart> {
        match part {
            StatePart::Head => {
                self.encode_head(out);
                Some(StatePart::Pending(0))
            }
            StatePart::Pending(from) => match self.pending.encode_part(from, max, out) {
                Some(next) => Some(StatePart::Pending(next)),
                None => Some(StatePart::Remembered),
            },
            StatePart::Remembered => {
                self.remembered.encode(out);
                Some(StatePart::Lifetime)
            }
            StatePart::Lifetime => {
                self.lifetime.encode(out);
                Some(StatePart::Sla)
            }
            StatePart::Sla => {
                self.sla.encode(out);
                Some(StatePart::Callbacks)
            }
            StatePart::Callbacks => {
                self.callbacks.encode(out);
                None
            }
        }
    }

    fn encode_head(&self, out: &mut Vec<u8>) {
        put_u64(out, STATE_VERSION);
        put_i64(out, self.now_ms);
        put_i64(out, self.next_scan_ms);
        let c = &self.counters;
        for v in [
            c.accepted,
            c.duplicates,
            c.late,
            c.rejected_open_segment_limit,
            c.expired_segments,
            c.expired_orphan_events,
        ] {
            put_u64(out, v);
        }
        put_u64(out, c.overflowed.len() as u64);
        for (k, n) in &c.overflowed {
            put_bytes(out, k.as_bytes());
            put_u64(out, *n);
        }
        let sets = self.sets.lists();
        put_u64(out, sets.len() as u64);
        for s in sets {
            put_u64(out, s.len() as u64);
            for t in s {
                put_u64(out, *t);
            }
        }
        let keys: Vec<(KeyId, &Dim)> = self.keys.all().collect();
        put_u64(out, keys.len() as u64);
        for (id, dim) in keys {
            put_u64(out, u64::from(id));
            out.push(kind_code(dim.kind));
            put_bytes(out, dim.key.as_bytes());
        }
        put_u64(out, self.open_segments as u64);
    }

    /// Rebuilds an engine from a checkpoint's slices and state.
    pub fn restore<I>(cfg: &Config, slices: I, state: Option<&[u8]>) -> Result<Engine, RestoreError>
    where
        I: IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
    {
        let mut e = Engine::new(cfg);
        if let Some(bytes) = state {
            e.decode_state(bytes)?;
            e.rebuild_expiry();
        }
        let (fine_frozen_before, frozen_before) = e.freeze_cutoffs(e.now_ms);
        for (k, v) in slices {
            let (tier, start) = parse_slice_key(&k)
                .ok_or_else(|| RestoreError::Decode("a slice key is damaged".into()))?;
            let slice = Slice::decode(&v, &e.sets)?;
            for (key, _) in slice.cells() {
                if e.keys.dim(key).is_none() {
                    return Err(RestoreError::Decode(format!(
                        "a bucket refers to key {key}, which the state does not list"
                    )));
                }
                e.keys.bucket_added(key);
            }
            // An old slice is kept in the form just read and checked.
            match tier {
                Tier::Fine if start < fine_frozen_before => {
                    e.fine.insert_frozen(start, v, slice.len());
                }
                Tier::Fine => e.fine.insert(start, slice),
                Tier::Interval if start < frozen_before => {
                    e.interval.insert_frozen(start, v, slice.len());
                }
                Tier::Interval => e.interval.insert(start, slice),
            }
        }
        e.rebuild_totals();
        Ok(e)
    }

    fn decode_state(&mut self, bytes: &[u8]) -> Result<(), RestoreError> {
        let mut r = Reader::new(bytes);
        let version = r.u64()?;
        if ![
            STATE_VERSION,
            STATE_VERSION_NO_CALLBACKS,
            STATE_VERSION_NO_SLA,
            STATE_VERSION_NO_REASONS,
            STATE_VERSION_NO_LIFETIME,
        ]
        .contains(&version)
        {
            return Err(RestoreError::Decode(format!(
                "state layout {version}, this build reads {STATE_VERSION}"
            )));
        }
        self.now_ms = r.i64()?;
        self.next_scan_ms = r.i64()?;
        let mut c = Counters {
            accepted: r.u64()?,
            duplicates: r.u64()?,
            late: r.u64()?,
            rejected_open_segment_limit: r.u64()?,
            expired_segments: r.u64()?,
            expired_orphan_events: r.u64()?,
            ..Counters::default()
        };
        for _ in 0..r.usize()? {
            let k = r.str()?.to_string();
            c.overflowed.insert(k, r.u64()?);
        }
        self.counters = c;
        let mut sets = BandSets::default();
        for _ in 0..r.usize()? {
            let n = r.usize()?;
            if n > r.rest().len() {
                return Err(DecodeError::Truncated.into());
            }
            let mut s = Vec::with_capacity(n);
            for _ in 0..n {
                s.push(r.u64()?);
            }
            sets.id_of(&s);
        }
        self.sets = sets;
        let mut keys = Keys::default();
        for _ in 0..r.usize()? {
            let id = r.u32()?;
            let kind = kind_of(r.u8()?)?;
            let key = r.str()?.to_string();
            keys.restore(id, Dim { kind, key });
        }
        keys.finish_restore();
        self.keys = keys;
        self.open_segments = r.usize()?;
        self.pending = PendingCalls::decode_all(&mut r)?;
        self.remembered = Remembered::decode(&mut r)?;
        if version != STATE_VERSION_NO_LIFETIME {
            let bounds = self.lifetime.wait_bounds().to_vec();
            self.lifetime = Lifetime::decode(&mut r, version >= STATE_VERSION_NO_SLA)?;
            // The config may ask for bounds the stored totals lack (changed while stopped).
            self.lifetime.ensure_bounds(&bounds);
        }
        // Objectives configured now that the state lacks count from now on.
        self.sla.reconfigure_since(self.now_ms);
        if version >= STATE_VERSION_NO_CALLBACKS {
            self.sla.decode(&mut r)?;
        }
        if version == STATE_VERSION {
            self.callbacks.decode(&mut r)?;
        }
        if !r.is_empty() {
            return Err(RestoreError::Decode("the state has trailing bytes".into()));
        }
        Ok(())
    }
}
