//! Decoding: one JSON line or `MessagePack` frame body straight into events, with no
//! `serde_json::Value` in between.
//!
//! Serde visitors fill one [`RawEvent`](crate::event::RawEvent) per map, borrowing strings from
//! the input where the deserializer allows it, and
//! [`RawEvent::validate`](crate::event::RawEvent::validate) applies the rules. The visitors take
//! and refuse exactly the wire types `serde_json::Value` takes and refuses, read map keys the way
//! it reads them, state the same expectation when refusing, and read every value to its end; so
//! the deserializer reports any malformed input with the very error text it gave when it built a
//! `Value`, and a malformed line is malformed whatever its first event says.
//!
//! The visitors are in `decode/visitors.rs`; this file is the entry points and the `MessagePack`
//! value length that tells a frame's trailing bytes.

mod visitors;

use serde::de::DeserializeSeed;

use crate::event::{Event, EventError, EventLimits};
use visitors::Message;

/// `MessagePack` nesting limit; the same as `serde_json`'s, so no input can exhaust the stack.
pub const MAX_MSGPACK_DEPTH: usize = 128;

/// One decoded line or frame.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    /// A single value: a map is one event; anything else is refused as not an object.
    One(Result<Event, EventError>),
    /// An array: one result per item, in order.
    Batch(Vec<Result<Event, EventError>>),
    /// An array of more items than the batch limit: none was validated.
    TooLarge { events: usize },
}

/// Decodes one JSON line (without its newline). `Err` is the reply's message for a line that is
/// not JSON at all.
pub fn decode_json(line: &[u8], limits: &EventLimits, max_batch: usize) -> Result<Decoded, String> {
    let mut de = serde_json::Deserializer::from_slice(line);
    let decoded = Message { limits, max_batch }
        .deserialize(&mut de)
        .and_then(|decoded| de.end().map(|()| decoded))
        .map_err(|e| format!("malformed JSON: {e}"))?;
    Ok(decoded)
}

/// Decodes one frame body, which must be exactly one `MessagePack` value. `Err` is the reply's
/// message for a body that is not.
pub fn decode_msgpack(
    body: &[u8],
    limits: &EventLimits,
    max_batch: usize,
) -> Result<Decoded, String> {
    let mut de = rmp_serde::Deserializer::from_read_ref(body);
    de.set_max_depth(MAX_MSGPACK_DEPTH);
    let decoded = Message { limits, max_batch }
        .deserialize(&mut de)
        .map_err(|e| format!("malformed MessagePack: {e}"))?;
    // The value decoded, so it is complete; the borrowing reader does not tell where it ended.
    let used = msgpack_value_len(body).unwrap_or(body.len());
    let extra = body.len().saturating_sub(used);
    if extra > 0 {
        return Err(format!(
            "malformed MessagePack: {extra} bytes left over after the first value (a frame holds one map or one array)"
        ));
    }
    Ok(decoded)
}

/// The length in bytes of the `MessagePack` value at the start of `bytes`, or `None` if it is cut
/// short or holds the reserved marker. Iterative: nesting costs no stack.
#[must_use]
pub fn msgpack_value_len(bytes: &[u8]) -> Option<usize> {
    // A big-endian length of `n` bytes at `at`.
    let be = |at: usize, n: usize| -> Option<usize> {
        let field = bytes.get(at..at.checked_add(n)?)?;
        Some(
            field
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b)),
        )
    };
    // A payload of `head` bytes (the length's `n` bytes and any type byte), then as many bytes
    // as the length says.
    let sized = |at: usize, n: usize, head: usize| be(at, n)?.checked_add(head);
    let mut at = 0usize;
    // Values still to read past: each array item, map key and map value counts one.
    let mut pending: u64 = 1;
    while pending > 0 {
        pending -= 1;
        let marker = *bytes.get(at)?;
        at += 1;
        // (bytes of payload after the marker, values nested inside)
        let (skip, nested): (usize, u64) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * u64::from(marker & 0x0f)),
            0x90..=0x9f => (0, u64::from(marker & 0x0f)),
            0xa0..=0xbf => (usize::from(marker & 0x1f), 0),
            0xc1 => return None,
            // bin 8/16/32, str 8/16/32: a length, then that many bytes.
            0xc4 | 0xd9 => (sized(at, 1, 1)?, 0),
            0xc5 | 0xda => (sized(at, 2, 2)?, 0),
            0xc6 | 0xdb => (sized(at, 4, 4)?, 0),
            // ext 8/16/32: a length, a type byte, then that many bytes.
            0xc7 => (sized(at, 1, 2)?, 0),
            0xc8 => (sized(at, 2, 3)?, 0),
            0xc9 => (sized(at, 4, 5)?, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xca | 0xce | 0xd2 => (4, 0),
            0xcb | 0xcf | 0xd3 => (8, 0),
            // fixext 1/2/4/8/16: a type byte and the data.
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => (2, be(at, 2)? as u64),
            0xdd => (4, be(at, 4)? as u64),
            0xde => (2, 2 * be(at, 2)? as u64),
            0xdf => (4, 2 * be(at, 4)? as u64),
        };
        at = at.checked_add(skip)?;
        if at > bytes.len() {
            return None;
        }
        pending = pending.checked_add(nested)?;
    }
    Some(at)
}

#[cfg(test)]
mod tests;
