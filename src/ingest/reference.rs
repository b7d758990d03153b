//! The decoder this crate had before typed decoding, kept as it was, as a reference: every
//! line or frame went through a `serde_json::Value`, then was validated field by field, and
//! replies were built as `Value`s. The equivalence tests in `decode.rs` and `reply.rs` hold the
//! typed path to it, and `benches/decode.rs` times it as the baseline. Not part of the daemon.
//!
//! Its field checks repeat those of `event/validate.rs` on purpose, and a scan for duplicate
//! code pairs the two: an oracle that shared the code it checks could not catch that code's
//! mistakes, so the repetition stays.
//!
//! It names crate items as `crate::event::…` and `crate::ingest::…` only, so the bench can
//! include this file with those paths pointing at the library.

use std::io;

use serde_json::{json, Map, Value};

use crate::event::{
    CallbackOutcome, EndReason, Event, EventError, EventKind, EventLimits, MAX_TS_MS, MIN_TS_MS,
};
use crate::ingest::decode::{Decoded, MAX_MSGPACK_DEPTH};
use crate::ingest::framing::Framing;

fn kind_of(s: &str) -> Option<EventKind> {
    EventKind::ALL.into_iter().find(|k| k.name() == s)
}

fn reason_of(s: &str) -> Option<EndReason> {
    EndReason::ALL.into_iter().find(|r| r.name() == s)
}

fn outcome_of(s: &str) -> Option<CallbackOutcome> {
    CallbackOutcome::ALL.into_iter().find(|o| o.name() == s)
}

fn optional_fields(kind: EventKind) -> &'static [&'static str] {
    match kind {
        EventKind::Start => &["queue", "channel", "priority", "tags"],
        EventKind::Answer => &["agent"],
        EventKind::End => &["reason", "tags"],
        EventKind::Hold | EventKind::Resume | EventKind::Wrapup => &[],
        EventKind::Callback => &["outcome"],
    }
}

/// One JSON line, as `read_json_lines` decoded it.
pub fn decode_json(line: &[u8], limits: &EventLimits, max_batch: usize) -> Result<Decoded, String> {
    match serde_json::from_slice::<Value>(line) {
        Ok(value) => Ok(decode_value(&value, limits, max_batch)),
        Err(e) => Err(format!("malformed JSON: {e}")),
    }
}

/// One frame body, as `decode_msgpack` decoded it.
pub fn decode_msgpack(
    body: &[u8],
    limits: &EventLimits,
    max_batch: usize,
) -> Result<Decoded, String> {
    let mut de = rmp_serde::Deserializer::new(io::Cursor::new(body));
    de.set_max_depth(MAX_MSGPACK_DEPTH);
    let value: Value = serde::Deserialize::deserialize(&mut de)
        .map_err(|e| format!("malformed MessagePack: {e}"))?;
    let used = de.position();
    let extra = (body.len() as u64).saturating_sub(used);
    if extra > 0 {
        return Err(format!(
            "malformed MessagePack: {extra} bytes left over after the first value (a frame holds one map or one array)"
        ));
    }
    Ok(decode_value(&value, limits, max_batch))
}

/// The batch limit as `submit_value` applied it, then `decode_value`.
pub fn decode_value(v: &Value, limits: &EventLimits, max_batch: usize) -> Decoded {
    match v {
        Value::Array(items) if items.len() > max_batch => Decoded::TooLarge {
            events: items.len(),
        },
        Value::Array(items) => {
            Decoded::Batch(items.iter().map(|i| event_from_value(i, limits)).collect())
        }
        other => Decoded::One(event_from_value(other, limits)),
    }
}

/// The reply to a line or frame from its items' results (`batch`: it was an array).
pub fn reply_value(batch: bool, items: Vec<Result<(), String>>) -> Value {
    if !batch {
        return match items.into_iter().next() {
            Some(Ok(())) => json!({"ok": true}),
            Some(Err(msg)) => error_reply(&msg),
            None => error_reply("no event in this message"),
        };
    }
    let total = items.len();
    let failed: Vec<Value> = items
        .into_iter()
        .enumerate()
        .filter_map(|(index, r)| r.err().map(|error| json!({"index": index, "error": error})))
        .collect();
    if failed.is_empty() {
        json!({"ok": true, "accepted": total})
    } else {
        let refused = failed.len();
        json!({
            "ok": false,
            "accepted": total - refused,
            "error": format!("{refused} of {total} events refused"),
            "failed": failed,
        })
    }
}

pub fn error_reply(msg: &str) -> Value {
    json!({"ok": false, "error": msg})
}

/// The reply to a batch over `limits.max_batch_events`.
pub fn too_large_reply(n: usize, max_batch: usize) -> Value {
    let msg = format!("batch of {n} events exceeds limits.max_batch_events ({max_batch})");
    json!({"ok": false, "accepted": 0, "error": msg})
}

/// Encodes a reply as a JSON line or a length-prefixed `MessagePack` map.
pub fn encode_reply(framing: Framing, reply: &Value, out: &mut Vec<u8>) {
    out.clear();
    match framing {
        Framing::JsonLines => {
            if serde_json::to_writer(&mut *out, reply).is_err() {
                out.clear();
                out.extend_from_slice(
                    br#"{"ok":false,"error":"internal error encoding the reply"}"#,
                );
            }
            out.push(b'\n');
        }
        Framing::MsgPack => {
            let body = rmp_serde::to_vec_named(reply)
                .unwrap_or_else(|_| vec![0x81, 0xa2, b'o', b'k', 0xc2]);
            let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&body);
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn string_field(
    m: &Map<String, Value>,
    field: &'static str,
    limits: &EventLimits,
) -> Result<Option<String>, EventError> {
    match m.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => check_string(field, s, limits).map(|()| Some(s.clone())),
        Some(other) => Err(EventError::WrongType {
            field: field.into(),
            expected: "a string",
            got: type_name(other),
        }),
    }
}

fn check_string(field: &str, s: &str, limits: &EventLimits) -> Result<(), EventError> {
    if s.is_empty() {
        return Err(EventError::Empty {
            field: field.into(),
        });
    }
    if s.len() > limits.max_string_bytes {
        return Err(EventError::TooLong {
            field: field.into(),
            len: s.len(),
            max: limits.max_string_bytes,
        });
    }
    if let Some((at, c)) = s.char_indices().find(|&(_, c)| {
        c.is_control()
            || matches!(
                c,
                '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{2028}' | '\u{2029}'
            )
            || ('\u{202A}'..='\u{202E}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    }) {
        return Err(EventError::Unprintable {
            field: field.into(),
            code: u32::from(c),
            at,
        });
    }
    Ok(())
}

/// Parses a timestamp: integer epoch milliseconds or an RFC 3339 string.
fn parse_ts(v: &Value) -> Result<i64, EventError> {
    let ms = match v {
        Value::Number(n) => match n.as_i64() {
            Some(ms) => ms,
            None => {
                return Err(EventError::WrongType {
                    field: "ts".into(),
                    expected: "integer epoch milliseconds or an RFC 3339 string",
                    got: "a fractional or out-of-range number",
                })
            }
        },
        Value::String(s) => s
            .parse::<jiff::Timestamp>()
            .map_err(|_| EventError::BadTimestamp(s.chars().take(64).collect()))?
            .as_millisecond(),
        other => {
            return Err(EventError::WrongType {
                field: "ts".into(),
                expected: "integer epoch milliseconds or an RFC 3339 string",
                got: type_name(other),
            })
        }
    };
    if !(MIN_TS_MS..MAX_TS_MS).contains(&ms) {
        return Err(EventError::TimestampRange(ms));
    }
    Ok(ms)
}

/// Validates one decoded event.
pub fn event_from_value(v: &Value, limits: &EventLimits) -> Result<Event, EventError> {
    let Value::Object(m) = v else {
        return Err(EventError::NotAnObject { got: type_name(v) });
    };
    let kind = match m.get("type") {
        None => return Err(EventError::Missing { field: "type" }),
        Some(Value::String(s)) => {
            kind_of(s).ok_or_else(|| EventError::UnknownType(s.chars().take(64).collect()))?
        }
        Some(other) => {
            return Err(EventError::WrongType {
                field: "type".into(),
                expected: "a string",
                got: type_name(other),
            })
        }
    };
    let known_everywhere = ["type", "call_id", "ts"];
    let all_optional = [
        "queue", "channel", "priority", "tags", "agent", "reason", "outcome",
    ];
    for key in m.keys() {
        if known_everywhere.contains(&key.as_str()) || optional_fields(kind).contains(&key.as_str())
        {
            continue;
        }
        let shown: String = key.chars().take(64).collect();
        if all_optional.contains(&key.as_str()) {
            return Err(EventError::NotAllowed {
                field: shown,
                kind: kind.name(),
            });
        }
        return Err(EventError::UnknownField(shown));
    }
    let call_id =
        string_field(m, "call_id", limits)?.ok_or(EventError::Missing { field: "call_id" })?;
    let ts_ms = parse_ts(m.get("ts").ok_or(EventError::Missing { field: "ts" })?)?;
    let mut ev = Event::new(kind, call_id, ts_ms);
    match kind {
        EventKind::Start => {
            ev.queue = Some(
                string_field(m, "queue", limits)?.ok_or(EventError::MissingFor {
                    field: "queue",
                    kind: "start",
                })?,
            );
            ev.channel = string_field(m, "channel", limits)?;
            ev.priority = match m.get("priority") {
                None => None,
                Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
                Some(other) => {
                    return Err(EventError::WrongType {
                        field: "priority".into(),
                        expected: "an integer",
                        got: type_name(other),
                    })
                }
            };
            ev.tags = parse_tags(m.get("tags"), limits)?;
        }
        EventKind::Answer => ev.agent = string_field(m, "agent", limits)?,
        EventKind::End => {
            ev.reason = match string_field(m, "reason", limits)? {
                None => None,
                Some(s) => Some(reason_of(&s).ok_or(EventError::UnknownReason(s))?),
            };
            ev.tags = parse_tags(m.get("tags"), limits)?;
        }
        EventKind::Hold | EventKind::Resume | EventKind::Wrapup => {}
        EventKind::Callback => {
            ev.outcome = Some(match string_field(m, "outcome", limits)? {
                None => CallbackOutcome::Reached,
                Some(s) => outcome_of(&s).ok_or(EventError::UnknownOutcome(s))?,
            });
        }
    }
    Ok(ev)
}

fn parse_tags(
    v: Option<&Value>,
    limits: &EventLimits,
) -> Result<Vec<(String, String)>, EventError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let Value::Object(tags) = v else {
        return Err(EventError::WrongType {
            field: "tags".into(),
            expected: "an object of string values",
            got: type_name(v),
        });
    };
    if tags.len() > limits.max_tags {
        return Err(EventError::TooManyTags {
            count: tags.len(),
            max: limits.max_tags,
        });
    }
    let mut out = Vec::with_capacity(tags.len());
    for (k, val) in tags {
        let field = format!("tags.{}", k.chars().take(64).collect::<String>());
        check_string(&field, k, limits)?;
        let Value::String(s) = val else {
            return Err(EventError::WrongType {
                field,
                expected: "a string",
                got: type_name(val),
            });
        };
        check_string(&field, s, limits)?;
        out.push((k.clone(), s.clone()));
    }
    Ok(out)
}
