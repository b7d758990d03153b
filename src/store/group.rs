//! The log's encoding of one commit group: the receive time shared by every event of the group,
//! a table of the distinct strings (call ids, queue, agent and channel names, tags), then each
//! event as a header byte, string numbers and a timestamp delta. A complete call (four events)
//! takes about fifty bytes, most of it its call id, written once.
//!
//! Version 2 adds, after the events, the *source marks* of the group: for each in-daemon source
//! whose lines produced events of the group, its name and its new file position (opaque bytes,
//! see `sources::follow::Position`). Being in the same value as the events, a mark is durable in
//! the same write, so a restart resumes exactly after the lines whose events are stored. A group
//! without marks is written as version 1.

use std::collections::HashMap;

use thiserror::Error;

use crate::event::{ByteCode, CallbackOutcome, EndReason, Event, EventKind};

const VERSION: u8 = 1;
/// A group followed by source marks.
const VERSION_MARKS: u8 = 2;

#[derive(Debug, Error)]
#[error("a logged event group cannot be decoded: {0}")]
pub struct GroupError(&'static str);

/// A decoded group: when the engine took it, its events in order, and the source marks
/// written with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub rx_ms: i64,
    pub events: Vec<Event>,
    pub marks: Vec<SourceMark>,
}

/// A source's position, stored with the events its lines produced: the source's name and its
/// position as the source encodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMark {
    pub source: String,
    pub position: Vec<u8>,
}

fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    put_u64(out, ((v << 1) ^ (v >> 63)) as u64);
}

const HAS_CHANNEL: u8 = 1 << 3;
const HAS_PRIORITY: u8 = 1 << 4;
const HAS_TAGS: u8 = 1 << 5;
const HAS_AGENT: u8 = 1 << 6;
const HAS_REASON: u8 = 1 << 7;

/// Encodes the events of one group, received at `rx_ms`.
pub fn encode<'a>(rx_ms: i64, events: impl IntoIterator<Item = &'a Event> + Clone) -> Vec<u8> {
    encode_with_marks(rx_ms, events, &[])
}

/// Encodes the events of one group, received at `rx_ms`, followed by source marks.
pub fn encode_with_marks<'a>(
    rx_ms: i64,
    events: impl IntoIterator<Item = &'a Event> + Clone,
    marks: &[SourceMark],
) -> Vec<u8> {
    let mut strings: HashMap<&'a str, u64> = HashMap::new();
    let mut table: Vec<&'a str> = Vec::new();
    let mut intern = |s: &'a str, strings: &mut HashMap<&'a str, u64>| -> u64 {
        *strings.entry(s).or_insert_with(|| {
            table.push(s);
            (table.len() - 1) as u64
        })
    };
    let mut body = Vec::new();
    let mut n = 0u64;
    let mut prev_ts = 0i64;
    for e in events {
        n += 1;
        let mut header = e.kind.code();
        header |= if e.channel.is_some() { HAS_CHANNEL } else { 0 };
        header |= if e.priority.is_some() {
            HAS_PRIORITY
        } else {
            0
        };
        header |= if e.tags.is_empty() { 0 } else { HAS_TAGS };
        header |= if e.agent.is_some() { HAS_AGENT } else { 0 };
        header |= if e.reason.is_some() { HAS_REASON } else { 0 };
        body.push(header);
        put_u64(&mut body, intern(&e.call_id, &mut strings));
        put_i64(&mut body, e.ts_ms.wrapping_sub(prev_ts));
        prev_ts = e.ts_ms;
        // A queue on any event is kept (validation allows it on `start` only).
        match &e.queue {
            Some(q) => put_u64(&mut body, intern(q, &mut strings) + 1),
            None => put_u64(&mut body, 0),
        }
        if let Some(c) = &e.channel {
            put_u64(&mut body, intern(c, &mut strings));
        }
        if let Some(p) = e.priority {
            put_i64(&mut body, p);
        }
        if !e.tags.is_empty() {
            put_u64(&mut body, e.tags.len() as u64);
            for (k, v) in &e.tags {
                put_u64(&mut body, intern(k, &mut strings));
                put_u64(&mut body, intern(v, &mut strings));
            }
        }
        if let Some(a) = &e.agent {
            put_u64(&mut body, intern(a, &mut strings));
        }
        if let Some(r) = e.reason {
            body.push(r.code());
        }
        // No header bit is free: a `callback` event (a kind no older log holds) always
        // carries its outcome byte last.
        if e.kind == EventKind::Callback {
            body.push(e.outcome.unwrap_or(CallbackOutcome::Reached).code());
        }
    }
    let mut out =
        Vec::with_capacity(body.len() + table.iter().map(|s| s.len() + 1).sum::<usize>() + 16);
    out.push(if marks.is_empty() {
        VERSION
    } else {
        VERSION_MARKS
    });
    put_i64(&mut out, rx_ms);
    put_u64(&mut out, table.len() as u64);
    for s in &table {
        put_u64(&mut out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }
    put_u64(&mut out, n);
    out.extend_from_slice(&body);
    if !marks.is_empty() {
        put_u64(&mut out, marks.len() as u64);
        for m in marks {
            put_u64(&mut out, m.source.len() as u64);
            out.extend_from_slice(m.source.as_bytes());
            put_u64(&mut out, m.position.len() as u64);
            out.extend_from_slice(&m.position);
        }
    }
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, GroupError> {
        let (&b, rest) = self.0.split_first().ok_or(GroupError("truncated"))?;
        self.0 = rest;
        Ok(b)
    }

    fn u64(&mut self) -> Result<u64, GroupError> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(GroupError("overlong number"))
    }

    fn i64(&mut self) -> Result<i64, GroupError> {
        let u = self.u64()?;
        Ok((u >> 1) as i64 ^ -((u & 1) as i64))
    }

    fn usize(&mut self) -> Result<usize, GroupError> {
        usize::try_from(self.u64()?).map_err(|_| GroupError("length out of range"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], GroupError> {
        let n = self.usize()?;
        if n > self.0.len() {
            return Err(GroupError("truncated string"));
        }
        let (s, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(s)
    }

    fn str(&mut self) -> Result<&'a str, GroupError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| GroupError("a string is not UTF-8"))
    }
}

/// Decodes one group.
pub fn decode(bytes: &[u8]) -> Result<Group, GroupError> {
    let mut r = Reader(bytes);
    let version = r.u8()?;
    if version != VERSION && version != VERSION_MARKS {
        return Err(GroupError("unknown group version"));
    }
    let rx_ms = r.i64()?;
    let ns = r.usize()?;
    if ns > bytes.len() {
        return Err(GroupError("string count beyond the data"));
    }
    let mut table = Vec::with_capacity(ns);
    for _ in 0..ns {
        table.push(r.str()?);
    }
    let s = |i: u64| -> Result<String, GroupError> {
        usize::try_from(i)
            .ok()
            .and_then(|i| table.get(i))
            .map(std::string::ToString::to_string)
            .ok_or(GroupError("string number out of range"))
    };
    let n = r.usize()?;
    if n > bytes.len() {
        return Err(GroupError("event count beyond the data"));
    }
    let mut events = Vec::with_capacity(n);
    let mut prev_ts = 0i64;
    for _ in 0..n {
        let h = r.u8()?;
        let kind = EventKind::from_code(h & 7).ok_or(GroupError("unknown event kind"))?;
        let call_id = s(r.u64()?)?;
        let ts_ms = prev_ts.wrapping_add(r.i64()?);
        prev_ts = ts_ms;
        let mut e = Event::new(kind, call_id, ts_ms);
        e.queue = match r.u64()? {
            0 => None,
            i => Some(s(i - 1)?),
        };
        if h & HAS_CHANNEL != 0 {
            e.channel = Some(s(r.u64()?)?);
        }
        if h & HAS_PRIORITY != 0 {
            e.priority = Some(r.i64()?);
        }
        if h & HAS_TAGS != 0 {
            let nt = r.usize()?;
            if nt > bytes.len() {
                return Err(GroupError("tag count beyond the data"));
            }
            for _ in 0..nt {
                let k = s(r.u64()?)?;
                let v = s(r.u64()?)?;
                e.tags.push((k, v));
            }
        }
        if h & HAS_AGENT != 0 {
            e.agent = Some(s(r.u64()?)?);
        }
        if h & HAS_REASON != 0 {
            e.reason = Some(EndReason::from_code(r.u8()?).ok_or(GroupError("unknown end reason"))?);
        }
        if kind == EventKind::Callback {
            e.outcome = Some(
                CallbackOutcome::from_code(r.u8()?)
                    .ok_or(GroupError("unknown callback outcome"))?,
            );
        }
        events.push(e);
    }
    let mut marks = Vec::new();
    if version == VERSION_MARKS {
        let nm = r.usize()?;
        if nm > bytes.len() {
            return Err(GroupError("mark count beyond the data"));
        }
        for _ in 0..nm {
            let source = r.str()?.to_string();
            let position = r.bytes()?.to_vec();
            marks.push(SourceMark { source, position });
        }
    }
    if !r.0.is_empty() {
        return Err(GroupError("trailing bytes"));
    }
    Ok(Group {
        rx_ms,
        events,
        marks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event() -> impl Strategy<Value = Event> {
        (
            0usize..7,
            "[a-z0-9-]{1,24}",
            946_684_800_000i64..4_102_444_800_000,
            proptest::option::of("[a-z]{1,8}"),
            proptest::option::of("[a-z]{1,8}"),
            proptest::option::of(any::<i64>()),
            prop::collection::vec(("[a-z]{1,4}", "[a-zé]{1,6}"), 0..3),
            proptest::option::of("[a-z]{1,8}"),
            proptest::option::of(0usize..6),
        )
            .prop_map(|(k, id, ts, q, c, p, tags, a, r)| {
                let outcome = CallbackOutcome::ALL[id.len() % 3];
                let mut e = Event::new(EventKind::ALL[k], id, ts);
                e.queue = q;
                e.channel = c;
                e.priority = p;
                e.tags = tags;
                e.agent = a;
                e.reason = r.map(|i| EndReason::ALL[i]);
                // Only a callback carries an outcome; the log writes it for that kind alone.
                if e.kind == EventKind::Callback {
                    e.outcome = Some(outcome);
                }
                e
            })
    }

    proptest! {
        #[test]
        fn groups_round_trip(rx in any::<i64>(), events in prop::collection::vec(event(), 0..40)) {
            let bytes = encode(rx, &events);
            prop_assert_eq!(decode(&bytes).unwrap(), Group { rx_ms: rx, events, marks: Vec::new() });
        }

        #[test]
        fn groups_with_marks_round_trip(
            rx in any::<i64>(),
            events in prop::collection::vec(event(), 0..10),
            marks in prop::collection::vec(("[a-z]{1,8}", prop::collection::vec(any::<u8>(), 0..40)), 1..3),
        ) {
            let marks: Vec<SourceMark> = marks
                .into_iter()
                .map(|(source, position)| SourceMark { source, position })
                .collect();
            let bytes = encode_with_marks(rx, &events, &marks);
            prop_assert_eq!(bytes[0], VERSION_MARKS);
            prop_assert_eq!(decode(&bytes).unwrap(), Group { rx_ms: rx, events, marks });
        }

        #[test]
        fn damaged_groups_are_errors(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn a_complete_call_takes_about_fifty_bytes() {
        let t = 1_795_300_000_000;
        let mut calls = Vec::new();
        for i in 0..100 {
            let id = format!("json_16conn-3-{}", 100_000 + i);
            let mut s = Event::new(EventKind::Start, id.clone(), t + i * 97_000);
            s.queue = Some(format!("q{}", i % 7));
            let mut a = Event::new(EventKind::Answer, id.clone(), t + i * 97_000 + 12_345);
            a.agent = Some(format!("a{}", i % 50));
            calls.extend([
                s,
                a,
                Event::new(EventKind::End, id.clone(), t + i * 97_000 + 300_000),
                Event::new(EventKind::Wrapup, id, t + i * 97_000 + 330_000),
            ]);
        }
        let bytes = encode(t, &calls);
        assert!(
            bytes.len() < 100 * 50,
            "{} bytes for 100 calls",
            bytes.len()
        );
    }
}
