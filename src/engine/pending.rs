//! Calls with something not yet folded in, each kept as one packed byte string (its id, events and
//! folded facts, about a hundred bytes for a typical call), in a table keyed by call id with a queue
//! of the times something of a call falls due. And the finished calls remembered for a while so
//! that late duplicates of them are recognised.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use hashbrown::HashTable;

use super::aggregate::{HandleFacts, Outcome, QueueFacts};
use super::segment::{Call, CallEvent, Folded};
use super::varint::{put_bytes, put_i64, put_u64, DecodeError, Reader};
use crate::event::{EndReason, EventKind};

/// Stable 64-bit FNV-1a, so remembered calls and due times keep their identity across restarts.
pub fn call_hash(call_id: &str) -> u64 {
    call_id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A pending call, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub call: Call,
    /// The due time last queued for this call (`i64::MAX`: none yet). Earlier entries of the
    /// call may still wait in the queue; they settle nothing, since this is the earliest due.
    pub scheduled: i64,
    /// When it was queued (a running count), so calls due at the same time settle in the
    /// order they were queued, after a restart too.
    pub order: u64,
    /// Open segments of this call (counted against `limits.max_open_segments`).
    pub open: u32,
}

fn kind_code(k: EventKind) -> u8 {
    EventKind::ALL.iter().position(|x| *x == k).unwrap_or(0) as u8
}

fn reason_code(r: Option<EndReason>) -> u8 {
    r.and_then(|r| EndReason::ALL.iter().position(|x| *x == r))
        .map_or(0, |i| i as u8 + 1)
}

fn outcome_code(o: Outcome) -> u8 {
    match o {
        Outcome::Answered => 0,
        Outcome::Abandoned => 1,
        Outcome::Overflow => 2,
    }
}

/// The packed form of one pending call; the id comes first so lookups read only it.
pub fn encode(id: &str, e: &Entry) -> Box<[u8]> {
    let c = &e.call;
    let mut out = Vec::with_capacity(id.len() + 16 + c.events.len() * 12);
    put_bytes(&mut out, id.as_bytes());
    put_i64(&mut out, e.scheduled);
    put_u64(&mut out, e.order);
    put_u64(&mut out, u64::from(e.open));
    put_i64(&mut out, c.first_rx_ms);
    put_u64(&mut out, c.events.len() as u64);
    let mut prev_ts = 0i64;
    for ev in &c.events {
        let header = kind_code(ev.kind)
            | reason_code(ev.reason) << 3
            | u8::from(ev.label.is_some()) << 6
            | u8::from(ev.channel.is_some()) << 7;
        out.push(header);
        put_i64(&mut out, ev.ts_ms.wrapping_sub(prev_ts));
        prev_ts = ev.ts_ms;
        put_i64(&mut out, ev.rx_ms.wrapping_sub(c.first_rx_ms));
        for s in [&ev.label, &ev.channel].into_iter().flatten() {
            put_bytes(&mut out, s.as_bytes());
        }
    }
    put_u64(&mut out, c.folded.len() as u64);
    for f in &c.folded {
        let flags = u8::from(f.queue.is_some())
            | u8::from(f.handle.is_some()) << 1
            | u8::from(f.expired) << 2
            | f.queue.as_ref().map_or(0, |q| outcome_code(q.outcome)) << 3;
        out.push(flags);
        if let Some(q) = &f.queue {
            put_i64(&mut out, q.start_ms);
            put_i64(&mut out, q.leave_ms.wrapping_sub(q.start_ms));
        }
        if let Some(h) = &f.handle {
            put_i64(&mut out, h.completion_ms);
            put_u64(&mut out, h.talk_ms);
            put_u64(&mut out, h.hold_ms);
            put_u64(&mut out, h.acw_ms);
        }
    }
    out.into_boxed_slice()
}

/// The id of a packed call.
pub fn id_of(b: &[u8]) -> &str {
    Reader::new(b).str().unwrap_or("")
}

/// Decodes a packed call: its id and entry.
pub fn decode(b: &[u8]) -> Result<(&str, Entry), DecodeError> {
    let mut r = Reader::new(b);
    let id = r.str()?;
    let scheduled = r.i64()?;
    let order = r.u64()?;
    let open = r.u32()?;
    let first_rx_ms = r.i64()?;
    let n = r.usize()?;
    if n > b.len() {
        return Err(DecodeError::Truncated);
    }
    let mut events = Vec::with_capacity(n);
    let mut prev_ts = 0i64;
    for _ in 0..n {
        let h = r.u8()?;
        let kind = *EventKind::ALL
            .get(usize::from(h & 7))
            .ok_or(DecodeError::Invalid("unknown event kind"))?;
        let reason = match (h >> 3) & 7 {
            0 => None,
            i => Some(
                *EndReason::ALL
                    .get(usize::from(i - 1))
                    .ok_or(DecodeError::Invalid("unknown end reason"))?,
            ),
        };
        let ts_ms = prev_ts.wrapping_add(r.i64()?);
        prev_ts = ts_ms;
        let rx_ms = first_rx_ms.wrapping_add(r.i64()?);
        let label = if h & 0x40 != 0 {
            Some(r.str()?.to_string())
        } else {
            None
        };
        let channel = if h & 0x80 != 0 {
            Some(r.str()?.to_string())
        } else {
            None
        };
        events.push(CallEvent {
            kind,
            ts_ms,
            rx_ms,
            label,
            channel,
            reason,
        });
    }
    let nf = r.usize()?;
    if nf > b.len() {
        return Err(DecodeError::Truncated);
    }
    let mut folded = Vec::with_capacity(nf);
    for _ in 0..nf {
        let flags = r.u8()?;
        let queue = if flags & 1 != 0 {
            let start_ms = r.i64()?;
            let leave_ms = start_ms.wrapping_add(r.i64()?);
            let outcome = match (flags >> 3) & 3 {
                0 => Outcome::Answered,
                1 => Outcome::Abandoned,
                2 => Outcome::Overflow,
                _ => return Err(DecodeError::Invalid("unknown outcome")),
            };
            Some(QueueFacts {
                start_ms,
                leave_ms,
                outcome,
            })
        } else {
            None
        };
        let handle = if flags & 2 != 0 {
            Some(HandleFacts {
                completion_ms: r.i64()?,
                talk_ms: r.u64()?,
                hold_ms: r.u64()?,
                acw_ms: r.u64()?,
            })
        } else {
            None
        };
        folded.push(Folded {
            queue,
            handle,
            expired: flags & 4 != 0,
        });
    }
    if !r.is_empty() {
        return Err(DecodeError::Invalid("a pending call has trailing bytes"));
    }
    Ok((
        id,
        Entry {
            call: Call {
                events,
                first_rx_ms,
                folded,
            },
            scheduled,
            order,
            open,
        },
    ))
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
        let b = encode(id, &e);
        self.insert(hash, &b);
    }

    fn insert(&mut self, hash: u64, b: &[u8]) {
        // The arena stays below 4 GiB: calls are bounded in number (open segments, grace) and size.
        let slot = Slot {
            hash,
            offset: self.arena.bytes.len() as u32,
            len: b.len() as u32,
        };
        self.arena.bytes.extend_from_slice(b);
        self.arena.live += b.len();
        self.table.insert_unique(hash, slot, |s| s.hash);
    }

    /// Rewrites the arena without its holes once they are half of it.
    fn compact_if_holey(&mut self) {
        let a = &mut self.arena;
        if a.bytes.len() < 64 * 1024 || a.bytes.len() < 2 * a.live {
            return;
        }
        let mut fresh = Vec::with_capacity(a.live + a.live / 4);
        for s in self.table.iter_mut() {
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
        let a = &self.arena;
        let ids = self
            .table
            .iter_hash(hash)
            // The table may yield entries of other hashes too.
            .filter(|s| s.hash == hash)
            .map(|s| id_of(a.get(s)).to_string())
            .collect();
        Some((t, ids))
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
            p.insert(hash, b);
        }
        Ok(p)
    }
}

/// Finished calls: hash → (latest timestamp folded, forget at), with the order to forget them.
#[derive(Debug, Clone, Default)]
pub struct Remembered {
    map: HashMap<u64, (i64, i64)>,
    queue: VecDeque<(i64, u64)>,
}

impl Remembered {
    /// From the map and the order to forget it in (the first layout's form).
    pub fn from_parts(map: HashMap<u64, (i64, i64)>, queue: VecDeque<(i64, u64)>) -> Self {
        Remembered { map, queue }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn heap_bytes(&self) -> usize {
        self.map.capacity() * 25 + self.queue.capacity() * 16
    }

    /// True when `ts` is no later than what was folded of the call: a late event.
    pub fn covers(&self, hash: u64, ts: i64) -> bool {
        self.map.get(&hash).is_some_and(|(t, _)| ts <= *t)
    }

    /// Remembers a finished call until `until`, keeping at most `max` calls.
    pub fn remember(&mut self, hash: u64, ts: i64, until: i64, max: usize) {
        let entry = self.map.entry(hash).or_insert((ts, until));
        *entry = (entry.0.max(ts), until);
        self.queue.push_back((until, hash));
        while self.map.len() > max {
            match self.queue.pop_front() {
                Some((_, h)) => {
                    self.map.remove(&h);
                }
                None => break,
            }
        }
    }

    pub fn next_forget(&self) -> Option<i64> {
        self.queue.front().map(|(t, _)| *t)
    }

    /// Forgets the oldest entry (due at `at`) unless it was remembered again since.
    pub fn forget_front(&mut self, at: i64) {
        if let Some((_, h)) = self.queue.pop_front() {
            if self.map.get(&h).is_some_and(|(_, until)| *until <= at) {
                self.map.remove(&h);
            }
        }
    }

    /// Gives memory back once fewer calls are remembered than the capacity held.
    pub fn shrink(&mut self) {
        if self.map.capacity() > 4 * self.map.len() + 1024 {
            self.map.shrink_to(2 * self.map.len());
            self.queue.shrink_to(2 * self.queue.len());
        }
    }

    /// The compact form: the forget queue in order (its times as small deltas, hashes as eight
    /// bytes), each entry with its call's latest timestamp when it is the call's current one.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.queue.len() as u64);
        let mut prev = 0i64;
        for (until, h) in &self.queue {
            put_i64(out, until.wrapping_sub(prev));
            prev = *until;
            out.extend_from_slice(&h.to_le_bytes());
            match self.map.get(h) {
                Some((ts, u)) if u == until => {
                    out.push(1);
                    put_i64(out, until.wrapping_sub(*ts));
                }
                _ => out.push(0),
            }
        }
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Remembered, DecodeError> {
        let mut m = Remembered::default();
        let n = r.usize()?;
        if n > r.rest().len() {
            return Err(DecodeError::Truncated);
        }
        let mut prev = 0i64;
        for _ in 0..n {
            let until = prev.wrapping_add(r.i64()?);
            prev = until;
            let mut h = [0u8; 8];
            for b in &mut h {
                *b = r.u8()?;
            }
            let h = u64::from_le_bytes(h);
            if r.u8()? == 1 {
                let ts = until.wrapping_sub(r.i64()?);
                m.map.insert(h, (ts, until));
            }
            m.queue.push_back((until, h));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_call_round_trips_and_packs_small() {
        let ev = |kind, ts, label: Option<&str>| CallEvent {
            kind,
            ts_ms: ts,
            rx_ms: 1_795_300_000_500,
            label: label.map(str::to_string),
            channel: None,
            reason: None,
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
        let b = encode(id, &e);
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

    #[test]
    fn remembered_calls_round_trip_compactly() {
        let mut r = Remembered::default();
        for i in 0..30_000u64 {
            let h = call_hash(&format!("call-{i}"));
            r.remember(
                h,
                1_795_300_000_000 + i as i64,
                1_795_300_600_000 + i as i64 * 3,
                25_000,
            );
        }
        // Remembered again later: its first queue entry is stale.
        let h = call_hash("call-29000");
        r.remember(h, 1_795_300_100_000, 1_795_400_000_000, 25_000);
        let mut out = Vec::new();
        r.encode(&mut out);
        assert!(out.len() < 25_001 * 14, "{} bytes", out.len());
        let back = Remembered::decode(&mut Reader::new(&out)).unwrap();
        assert_eq!(back.map, r.map);
        assert_eq!(back.queue, r.queue);
    }
}
