//! Calls with something not yet folded in, each kept as one packed byte string (see
//! `packed_call.rs`) in one buffer, in a table keyed by call id with a queue of the times
//! something of a call falls due. Finished calls are remembered in `remembered.rs`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use hashbrown::HashTable;

pub use super::packed_call::Entry;
use super::packed_call::{decode, encode_into, id_of};
use super::varint::{put_bytes, put_u64, DecodeError, Reader};

/// Stable 64-bit FNV-1a, so remembered calls and due times keep their identity across restarts.
pub fn call_hash(call_id: &str) -> u64 {
    call_id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Where a packed call lives in the arena.
#[derive(Debug, Clone, Copy)]
struct Slot {
    hash: u64,
    offset: u32,
    len: u32,
}

/// The packed calls, one after another in one buffer. Calls come and go by the hundred thousand
/// in a bulk load; kept as separate allocations, their churn among the long-lived buckets left the
/// heap fragmented (hundreds of MiB resident for a few MiB in use). A replaced or removed call
/// leaves a hole; the buffer is rewritten without holes once they are half of it.
#[derive(Debug, Clone, Default)]
struct Arena {
    bytes: Vec<u8>,
    live: usize,
}

impl Arena {
    fn get(&self, s: &Slot) -> &[u8] {
        &self.bytes[s.offset as usize..(s.offset + s.len) as usize]
    }
}

/// The pending calls and the queue of their due times.
#[derive(Debug, Clone, Default)]
pub struct PendingCalls {
    table: HashTable<Slot>,
    arena: Arena,
    /// (due, order, call hash); an entry is live only while the call's `scheduled` and `order`
    /// are its own.
    due: BinaryHeap<Reverse<(i64, u64, u64)>>,
    next_order: u64,
}

impl PendingCalls {
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Heap bytes held: packed calls, table and due queue.
    pub fn heap_bytes(&self) -> usize {
        self.arena.bytes.capacity()
            + self.table.capacity() * (std::mem::size_of::<Slot>() + 1)
            + self.due.capacity() * std::mem::size_of::<(i64, u64, u64)>()
    }

    fn find(&self, id: &str) -> Option<&Slot> {
        let a = &self.arena;
        self.table.find(call_hash(id), |s| id_of(a.get(s)) == id)
    }

    pub fn get(&self, id: &str) -> Option<Entry> {
        let s = self.find(id)?;
        decode(self.arena.get(s)).ok().map(|(_, e)| e)
    }

    /// Removes a call and returns it.
    pub fn take(&mut self, id: &str) -> Option<Entry> {
        let a = &self.arena;
        let found = self
            .table
            .find_entry(call_hash(id), |s| id_of(a.get(s)) == id)
            .ok()?;
        let (slot, _) = found.remove();
        let e = decode(self.arena.get(&slot)).ok().map(|(_, e)| e);
        self.arena.live -= slot.len as usize;
        self.compact_if_holey();
        e
    }

    /// Stores a call (replacing none: take it first) and queues `due` unless it is what the call
    /// last queued.
    pub fn put(&mut self, id: &str, mut e: Entry, due: Option<i64>) {
        let hash = call_hash(id);
        if let Some(d) = due {
            if d != e.scheduled {
                e.scheduled = d;
                e.order = self.next_order;
                self.next_order += 1;
                self.due.push(Reverse((d, e.order, hash)));
            }
        }
        let offset = self.arena.bytes.len();
        encode_into(id, &e, &mut self.arena.bytes);
        self.insert(hash, offset);
    }

    /// Indexes the call appended to the arena from `offset` on.
    fn insert(&mut self, hash: u64, offset: usize) {
        let len = self.arena.bytes.len() - offset;
        // The arena stays below 4 GiB: calls are bounded in number (open segments, grace) and size.
        let slot = Slot {
            hash,
            offset: offset as u32,
            len: len as u32,
        };
        self.arena.live += len;
        self.table.insert_unique(hash, slot, |s| s.hash);
    }

    /// Rewrites the arena without its holes once they are half of it.
    fn compact_if_holey(&mut self) {
        let a = &mut self.arena;
        if a.bytes.len() < 64 * 1024 || a.bytes.len() < 2 * a.live {
            return;
        }
        let mut fresh = Vec::with_capacity(a.live + a.live / 4);
        for s in &mut self.table {
            let start = fresh.len();
            fresh.extend_from_slice(&a.bytes[s.offset as usize..(s.offset + s.len) as usize]);
            s.offset = start as u32;
        }
        a.bytes = fresh;
    }

    /// Gives memory back after a burst: the table and the queue keep the capacity of their
    /// largest size otherwise.
    pub fn shrink(&mut self) {
        if self.table.capacity() > 4 * self.table.len() + 1024 {
            self.table.shrink_to(2 * self.table.len(), |s| s.hash);
        }
        if self.due.capacity() > 4 * self.due.len() + 1024 {
            self.due.shrink_to(2 * self.due.len());
        }
        if self.arena.bytes.capacity() > 4 * self.arena.bytes.len() + 64 * 1024 {
            self.arena.bytes.shrink_to(2 * self.arena.bytes.len());
        }
    }

    /// The earliest queued due time.
    pub fn next_due(&self) -> Option<i64> {
        self.due.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Pops the earliest due entry at or before `now`: its time and the ids of the calls with its
    /// hash (settling a call with nothing due changes nothing, so sharing a hash is harmless).
    pub fn pop_due(&mut self, now: i64) -> Option<(i64, Vec<String>)> {
        let &Reverse((t, _, hash)) = self.due.peek()?;
        if t > now {
            return None;
        }
        self.due.pop();
        Some((t, self.ids_with_hash(hash)))
    }

    /// The ids of the calls whose id hashes to `hash`.
    pub fn ids_with_hash(&self, hash: u64) -> Vec<String> {
        let a = &self.arena;
        self.table
            .iter_hash(hash)
            // The table may yield entries of other hashes too.
            .filter(|s| s.hash == hash)
            .map(|s| id_of(a.get(s)).to_string())
            .collect()
    }

    /// Every pending call, decoded.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Entry)> {
        let a = &self.arena;
        self.table.iter().filter_map(move |s| decode(a.get(s)).ok())
    }

    /// All pending calls in one byte string.
    #[cfg(test)]
    pub fn encode_all(&self, out: &mut Vec<u8>) {
        let mut from = 0;
        while let Some(next) = self.encode_part(from, usize::MAX, out) {
            from = next;
        }
    }

    /// Appends the calls from index `from` of the table on, about `max` bytes of them (the count
    /// first, with index 0), to `out`; returns where to go on, or `None` when all are written.
    /// The table does not change between parts (only the committer changes it, and it is busy
    /// writing them).
    pub fn encode_part(&self, from: usize, max: usize, out: &mut Vec<u8>) -> Option<usize> {
        if from == 0 {
            put_u64(out, self.next_order);
            put_u64(out, self.table.len() as u64);
        }
        let start = out.len();
        for (i, s) in (from..).zip(self.table.iter().skip(from)) {
            if out.len() - start >= max {
                return Some(i);
            }
            put_bytes(out, self.arena.get(s));
        }
        None
    }

    /// Reads what `encode_all` wrote; the due queue is rebuilt from each call's `scheduled`.
    pub fn decode_all(r: &mut Reader<'_>) -> Result<PendingCalls, DecodeError> {
        let next_order = r.u64()?;
        let n = r.usize()?;
        if n > r.rest().len() {
            return Err(DecodeError::Truncated);
        }
        let mut p = PendingCalls {
            next_order,
            ..PendingCalls::default()
        };
        for _ in 0..n {
            let b = r.bytes()?;
            let (id, e) = decode(b)?;
            let hash = call_hash(id);
            if e.scheduled != i64::MAX {
                p.due.push(Reverse((e.scheduled, e.order, hash)));
            }
            let offset = p.arena.bytes.len();
            p.arena.bytes.extend_from_slice(b);
            p.insert(hash, offset);
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::aggregate::{Outcome, QueueFacts};
    use crate::engine::segment::{Call, CallEvent, Folded};
    use crate::event::{EndReason, EventKind};

    #[test]
    fn a_pending_call_round_trips_and_packs_small() {
        let ev = |kind, ts, label: Option<&str>| CallEvent {
            kind,
            ts_ms: ts,
            rx_ms: 1_795_300_000_500,
            label: label.map(str::to_string),
            channel: None,
            reason: None,
            tags: Vec::new(),
        };
        let t = 1_795_300_000_000;
        let mut end = ev(EventKind::End, t + 300_000, None);
        end.reason = Some(EndReason::Completed);
        let e = Entry {
            call: Call {
                events: vec![
                    ev(EventKind::Start, t, Some("q17")),
                    ev(EventKind::Answer, t + 12_000, Some("a123")),
                    end,
                    ev(EventKind::Wrapup, t + 330_000, None),
                ],
                first_rx_ms: 1_795_300_000_400,
                folded: vec![Folded {
                    queue: Some(QueueFacts {
                        start_ms: t,
                        leave_ms: t + 12_000,
                        outcome: Outcome::Answered,
                    }),
                    handle: None,
                    expired: false,
                }],
            },
            scheduled: 1_795_300_002_500,
            order: 7,
            open: 0,
        };
        let id = "json_16conn-3-123456";
        let mut b = Vec::new();
        encode_into(id, &e, &mut b);
        assert!(b.len() < 90, "{} bytes", b.len());
        assert_eq!(decode(&b).unwrap(), (id, e.clone()));
        let mut p = PendingCalls::default();
        p.put(id, e.clone(), None);
        assert_eq!(p.get(id), Some(e.clone()));
        let mut all = Vec::new();
        p.encode_all(&mut all);
        let q = PendingCalls::decode_all(&mut Reader::new(&all)).unwrap();
        assert_eq!(q.get(id), Some(e.clone()));
        assert_eq!(q.next_due(), Some(e.scheduled));
        assert_eq!(p.take(id), Some(e));
        assert_eq!(p.len(), 0);
    }
}
