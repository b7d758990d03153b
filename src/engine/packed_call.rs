//! One pending call: its decoded form ([`Entry`]) and its packed byte string (id, events and
//! folded facts, about a hundred bytes for a typical call), the id first so lookups read only it.

use super::aggregate::{HandleFacts, Outcome, QueueFacts};
use super::segment::{Call, CallEvent, Folded};
use super::varint::{put_bytes, put_i64, put_u64, DecodeError, Reader};
use crate::event::{ByteCode, EndReason, EventKind};

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

/// 0 for none, else the reason's code plus one.
fn reason_code(r: Option<EndReason>) -> u8 {
    r.map_or(0, |r| r.code() + 1)
}

fn outcome_code(o: Outcome) -> u8 {
    match o {
        Outcome::Answered => 0,
        Outcome::Abandoned => 1,
        Outcome::Overflow => 2,
    }
}

/// Appends the packed form of one pending call to `out` (the pending calls' arena: no
/// allocation of its own); the id comes first so lookups read only it.
pub fn encode_into(id: &str, e: &Entry, out: &mut Vec<u8>) {
    let c = &e.call;
    put_bytes(out, id.as_bytes());
    put_i64(out, e.scheduled);
    put_u64(out, e.order);
    put_u64(out, u64::from(e.open));
    put_i64(out, c.first_rx_ms);
    put_u64(out, c.events.len() as u64);
    let mut prev_ts = 0i64;
    for ev in &c.events {
        let header = ev.kind.code()
            | reason_code(ev.reason) << 3
            | u8::from(ev.label.is_some()) << 6
            | u8::from(ev.channel.is_some()) << 7;
        out.push(header);
        put_i64(out, ev.ts_ms.wrapping_sub(prev_ts));
        prev_ts = ev.ts_ms;
        put_i64(out, ev.rx_ms.wrapping_sub(c.first_rx_ms));
        for s in [&ev.label, &ev.channel].into_iter().flatten() {
            put_bytes(out, s.as_bytes());
        }
    }
    put_u64(out, c.folded.len() as u64);
    for f in &c.folded {
        let flags = u8::from(f.queue.is_some())
            | u8::from(f.handle.is_some()) << 1
            | u8::from(f.expired) << 2
            | f.queue.as_ref().map_or(0, |q| outcome_code(q.outcome)) << 3;
        out.push(flags);
        if let Some(q) = &f.queue {
            put_i64(out, q.start_ms);
            put_i64(out, q.leave_ms.wrapping_sub(q.start_ms));
        }
        if let Some(h) = &f.handle {
            put_i64(out, h.completion_ms);
            put_u64(out, h.talk_ms);
            put_u64(out, h.hold_ms);
            put_u64(out, h.acw_ms);
        }
    }
    // Tags last and only when some event has them, so calls without tags (and the calls a
    // store written before tags were kept holds) read the same.
    let tagged: Vec<(usize, &CallEvent)> = c
        .events
        .iter()
        .enumerate()
        .filter(|(_, ev)| !ev.tags.is_empty())
        .collect();
    if !tagged.is_empty() {
        put_u64(out, tagged.len() as u64);
        for (i, ev) in tagged {
            put_u64(out, i as u64);
            put_u64(out, ev.tags.len() as u64);
            for (k, v) in &ev.tags {
                put_bytes(out, k.as_bytes());
                put_bytes(out, v.as_bytes());
            }
        }
    }
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
        let kind = EventKind::from_code(h & 7).ok_or(DecodeError::Invalid("unknown event kind"))?;
        let reason = match (h >> 3) & 7 {
            0 => None,
            i => Some(
                EndReason::from_code(i - 1).ok_or(DecodeError::Invalid("unknown end reason"))?,
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
            tags: Vec::new(),
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
        for _ in 0..r.usize()? {
            let i = r.usize()?;
            let n = r.usize()?;
            if n > b.len() {
                return Err(DecodeError::Truncated);
            }
            let ev = events.get_mut(i).ok_or(DecodeError::Invalid(
                "tags of an event a pending call lacks",
            ))?;
            for _ in 0..n {
                let k = r.str()?.to_string();
                ev.tags.push((k, r.str()?.to_string()));
            }
        }
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
