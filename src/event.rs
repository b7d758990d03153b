//! The call lifecycle event model (ingest protocol v1) and its validation: no I/O here.
//!
//! Events arrive as JSON or MessagePack maps; both are decoded into a `serde_json::Value`
//! first so that one validation path produces the same error text for either framing.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

/// Earliest accepted timestamp: 2000-01-01T00:00:00Z. Anything older is a unit mistake (seconds, not ms).
pub const MIN_TS_MS: i64 = 946_684_800_000;
/// Latest accepted timestamp: 2100-01-01T00:00:00Z.
pub const MAX_TS_MS: i64 = 4_102_444_800_000;

/// What happened to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Start,
    Answer,
    Hold,
    Resume,
    End,
    Wrapup,
}

impl EventKind {
    pub const ALL: [EventKind; 6] = [
        EventKind::Start,
        EventKind::Answer,
        EventKind::Hold,
        EventKind::Resume,
        EventKind::End,
        EventKind::Wrapup,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EventKind::Start => "start",
            EventKind::Answer => "answer",
            EventKind::Hold => "hold",
            EventKind::Resume => "resume",
            EventKind::End => "end",
            EventKind::Wrapup => "wrapup",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Fields this kind may carry besides `type`, `call_id` and `ts`.
    fn optional_fields(self) -> &'static [&'static str] {
        match self {
            EventKind::Start => &["queue", "channel", "priority", "tags"],
            EventKind::Answer => &["agent"],
            EventKind::End => &["reason"],
            EventKind::Hold | EventKind::Resume | EventKind::Wrapup => &[],
        }
    }
}

/// Why a segment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndReason {
    Completed,
    Abandoned,
    Timeout,
    Exit,
    Transferred,
    Callback,
}

impl EndReason {
    pub const ALL: [EndReason; 6] = [
        EndReason::Completed,
        EndReason::Abandoned,
        EndReason::Timeout,
        EndReason::Exit,
        EndReason::Transferred,
        EndReason::Callback,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EndReason::Completed => "completed",
            EndReason::Abandoned => "abandoned",
            EndReason::Timeout => "timeout",
            EndReason::Exit => "exit",
            EndReason::Transferred => "transferred",
            EndReason::Callback => "callback",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == s)
    }
}

/// One validated event. `ts_ms` is the source's clock, in epoch milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub call_id: String,
    pub kind: EventKind,
    pub ts_ms: i64,
    pub queue: Option<String>,
    pub channel: Option<String>,
    pub priority: Option<i64>,
    pub tags: Vec<(String, String)>,
    pub agent: Option<String>,
    pub reason: Option<EndReason>,
}

impl Event {
    /// A bare event of `kind`; the optional fields are empty.
    pub fn new(kind: EventKind, call_id: impl Into<String>, ts_ms: i64) -> Self {
        Event {
            call_id: call_id.into(),
            kind,
            ts_ms,
            queue: None,
            channel: None,
            priority: None,
            tags: Vec::new(),
            agent: None,
            reason: None,
        }
    }

    /// The event as the JSON object a client sends (used by tests, the bench and `send`).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), self.kind.name().into());
        m.insert("call_id".into(), self.call_id.clone().into());
        m.insert("ts".into(), self.ts_ms.into());
        if let Some(q) = &self.queue {
            m.insert("queue".into(), q.clone().into());
        }
        if let Some(c) = &self.channel {
            m.insert("channel".into(), c.clone().into());
        }
        if let Some(p) = self.priority {
            m.insert("priority".into(), p.into());
        }
        if !self.tags.is_empty() {
            let tags: Map<String, Value> = self
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                .collect();
            m.insert("tags".into(), Value::Object(tags));
        }
        if let Some(a) = &self.agent {
            m.insert("agent".into(), a.clone().into());
        }
        if let Some(r) = self.reason {
            m.insert("reason".into(), r.name().into());
        }
        Value::Object(m)
    }
}

/// Bounds on what one event may carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLimits {
    /// Longest string (call_id, queue, agent, channel, tag key or value), in bytes.
    pub max_string_bytes: usize,
    /// Most tags on one event.
    pub max_tags: usize,
}

impl Default for EventLimits {
    fn default() -> Self {
        EventLimits {
            max_string_bytes: 128,
            max_tags: 16,
        }
    }
}

/// Why an event was refused; each message names the field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EventError {
    #[error("an event must be an object (map), got {got}")]
    NotAnObject { got: &'static str },
    #[error("missing field `{field}`")]
    Missing { field: &'static str },
    #[error("missing field `{field}` (required for `{kind}` events)")]
    MissingFor {
        field: &'static str,
        kind: &'static str,
    },
    #[error("field `{field}`: expected {expected}, got {got}")]
    WrongType {
        field: String,
        expected: &'static str,
        got: &'static str,
    },
    #[error("field `type`: unknown event type `{0}` (expected start, answer, hold, resume, end or wrapup)")]
    UnknownType(String),
    #[error("field `reason`: unknown reason `{0}` (expected completed, abandoned, timeout, exit, transferred or callback)")]
    UnknownReason(String),
    #[error("unknown field `{0}`")]
    UnknownField(String),
    #[error("field `{field}` is not allowed on `{kind}` events")]
    NotAllowed { field: String, kind: &'static str },
    #[error(
        "field `{field}`: {len} bytes is longer than the limit of {max} (limits.max_string_bytes)"
    )]
    TooLong {
        field: String,
        len: usize,
        max: usize,
    },
    #[error("field `{field}` must not be empty")]
    Empty { field: String },
    #[error("field `tags`: {count} tags is more than the limit of {max} (limits.max_tags)")]
    TooManyTags { count: usize, max: usize },
    #[error("field `ts`: `{0}` is not an RFC 3339 timestamp (e.g. 2026-11-22T10:00:00Z) nor epoch milliseconds")]
    BadTimestamp(String),
    #[error(
        "field `ts`: {0} ms is outside 2000-01-01..2100-01-01 (timestamps are epoch milliseconds)"
    )]
    TimestampRange(i64),
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
    Ok(())
}

/// Parses a timestamp: integer epoch milliseconds or an RFC 3339 string.
pub fn parse_ts(v: &Value) -> Result<i64, EventError> {
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
        Some(Value::String(s)) => EventKind::parse(s)
            .ok_or_else(|| EventError::UnknownType(s.chars().take(64).collect()))?,
        Some(other) => {
            return Err(EventError::WrongType {
                field: "type".into(),
                expected: "a string",
                got: type_name(other),
            })
        }
    };
    let known_everywhere = ["type", "call_id", "ts"];
    let all_optional = ["queue", "channel", "priority", "tags", "agent", "reason"];
    for key in m.keys() {
        if known_everywhere.contains(&key.as_str())
            || kind.optional_fields().contains(&key.as_str())
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
                Some(s) => Some(EndReason::parse(&s).ok_or(EventError::UnknownReason(s))?),
            }
        }
        EventKind::Hold | EventKind::Resume | EventKind::Wrapup => {}
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

/// One decoded line or frame: a single event or a batch of them.
#[derive(Debug)]
pub enum Decoded {
    One(Result<Event, EventError>),
    Batch(Vec<Result<Event, EventError>>),
}

/// Validates a decoded line or frame: a map is one event, an array is a batch.
pub fn decode_value(v: &Value, limits: &EventLimits) -> Decoded {
    match v {
        Value::Array(items) => {
            Decoded::Batch(items.iter().map(|i| event_from_value(i, limits)).collect())
        }
        other => Decoded::One(event_from_value(other, limits)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Event, EventError> {
        event_from_value(&v, &EventLimits::default())
    }

    #[test]
    fn start_with_all_fields_round_trips_through_json() {
        let v = json!({"type":"start","call_id":"c1","queue":"sales","ts":1_700_000_000_000i64,
            "channel":"chat","priority":3,"tags":{"lang":"fr"}});
        let ev = parse(v).unwrap();
        assert_eq!(ev.kind, EventKind::Start);
        assert_eq!(ev.queue.as_deref(), Some("sales"));
        assert_eq!(ev.channel.as_deref(), Some("chat"));
        assert_eq!(ev.priority, Some(3));
        assert_eq!(ev.tags, vec![("lang".to_string(), "fr".to_string())]);
        assert_eq!(parse(ev.to_json()).unwrap(), ev);
    }

    #[test]
    fn rfc3339_and_millisecond_timestamps_agree() {
        let a =
            parse(json!({"type":"hold","call_id":"c","ts":"2026-11-22T10:00:00.250Z"})).unwrap();
        let b = parse(json!({"type":"hold","call_id":"c","ts":1_795_341_600_250i64})).unwrap();
        assert_eq!(a.ts_ms, b.ts_ms);
        let c = parse(json!({"type":"hold","call_id":"c","ts":"2026-11-22T11:00:00.250+01:00"}))
            .unwrap();
        assert_eq!(a.ts_ms, c.ts_ms);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!({"call_id":"c","ts":1}), "missing field `type`"),
            (
                json!({"type":"start","call_id":"c","ts":1_700_000_000_000i64}),
                "`queue`",
            ),
            (
                json!({"type":"bogus","call_id":"c","ts":1}),
                "unknown event type `bogus`",
            ),
            (
                json!({"type":"hold","ts":1_700_000_000_000i64}),
                "missing field `call_id`",
            ),
            (json!({"type":"hold","call_id":"c"}), "missing field `ts`"),
            (
                json!({"type":"hold","call_id":"c","ts":"yesterday"}),
                "field `ts`",
            ),
            (
                json!({"type":"hold","call_id":"c","ts":1_700_000_000i64}),
                "field `ts`",
            ),
            (
                json!({"type":"hold","call_id":"c","ts":1_700_000_000_000i64,"agent":"a"}),
                "`agent` is not allowed on `hold`",
            ),
            (
                json!({"type":"hold","call_id":"c","ts":1_700_000_000_000i64,"colour":"a"}),
                "unknown field `colour`",
            ),
            (
                json!({"type":"end","call_id":"c","ts":1_700_000_000_000i64,"reason":"bored"}),
                "field `reason`",
            ),
            (
                json!({"type":"hold","call_id":7,"ts":1_700_000_000_000i64}),
                "field `call_id`: expected a string",
            ),
            (
                json!({"type":"hold","call_id":"","ts":1_700_000_000_000i64}),
                "`call_id` must not be empty",
            ),
            (
                json!({"type":"hold","call_id":"x".repeat(129),"ts":1_700_000_000_000i64}),
                "max_string_bytes",
            ),
            (
                json!({"type":"start","call_id":"c","queue":"q","ts":1_700_000_000_000i64,"tags":{"a":1}}),
                "field `tags.a`",
            ),
            (json!([1]), "must be an object"),
        ];
        for (v, want) in cases {
            let err = parse(v.clone()).unwrap_err().to_string();
            assert!(err.contains(want), "{v}: got `{err}`, wanted `{want}`");
        }
    }

    #[test]
    fn too_many_tags_is_refused() {
        let tags: Map<String, Value> = (0..17)
            .map(|i| (format!("k{i}"), Value::from("v")))
            .collect();
        let v =
            json!({"type":"start","call_id":"c","queue":"q","ts":1_700_000_000_000i64,"tags":tags});
        assert!(matches!(
            parse(v),
            Err(EventError::TooManyTags { count: 17, max: 16 })
        ));
    }

    #[test]
    fn arrays_are_batches() {
        let v = json!([{"type":"hold","call_id":"c","ts":1_700_000_000_000i64},{"type":"x"}]);
        match decode_value(&v, &EventLimits::default()) {
            Decoded::Batch(items) => {
                assert!(items[0].is_ok());
                assert!(items[1].is_err());
            }
            Decoded::One(_) => panic!("an array must decode as a batch"),
        }
    }
}
