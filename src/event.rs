//! The call lifecycle event model (ingest protocol v1) and its validation: no I/O here.
//!
//! Events arrive as JSON or MessagePack maps. A decoder (`ingest::decode`) reads each map
//! straight into a [`RawEvent`], the fields as they came; [`RawEvent::validate`] applies every
//! rule, so both framings get the same error text from one validation path.

use std::borrow::Cow;

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
        Some(match s {
            "start" => EventKind::Start,
            "answer" => EventKind::Answer,
            "hold" => EventKind::Hold,
            "resume" => EventKind::Resume,
            "end" => EventKind::End,
            "wrapup" => EventKind::Wrapup,
            _ => return None,
        })
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
        Some(match s {
            "completed" => EndReason::Completed,
            "abandoned" => EndReason::Abandoned,
            "timeout" => EndReason::Timeout,
            "exit" => EndReason::Exit,
            "transferred" => EndReason::Transferred,
            "callback" => EndReason::Callback,
            _ => return None,
        })
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

/// One field's value as it came off the wire, before validation: typed only as far as the wire
/// types go. Arrays and objects keep only their type (their content was read past), except the
/// value of `tags`, see [`RawTags`].
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue<'a> {
    /// Null; also a float that is not finite (MessagePack can carry NaN), as `serde_json::Value`
    /// reads one.
    Null,
    Bool,
    /// An integer within `i64`.
    Int(i64),
    /// Any other number: one with a fraction or an exponent, or an integer beyond `i64`.
    Number,
    Str(Cow<'a, str>),
    Array,
    Object,
}

impl RawValue<'_> {
    /// The type as error messages name it.
    pub fn type_name(&self) -> &'static str {
        match self {
            RawValue::Null => "null",
            RawValue::Bool => "a boolean",
            RawValue::Int(_) | RawValue::Number => "a number",
            RawValue::Str(_) => "a string",
            RawValue::Array => "an array",
            RawValue::Object => "an object",
        }
    }
}

/// The value of `tags` as it came off the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum RawTags<'a> {
    /// An object: its entries in wire order, a repeated key included (its last value counts).
    Object(Vec<(Cow<'a, str>, RawValue<'a>)>),
    /// Anything else, by its type name.
    Other { got: &'static str },
}

/// Where a decoder puts the value of one key of an event map.
pub enum Slot<'r, 'a> {
    Value(&'r mut Option<RawValue<'a>>),
    Tags(&'r mut Option<RawTags<'a>>),
    /// Not a field of any event; the decoder reads past the value and reports the key.
    Unknown,
}

/// The fields of one event map as they came off the wire, in any order, a repeated key keeping
/// its last value: what a decoder fills for [`RawEvent::validate`], the one place the rules live.
#[derive(Debug, Default)]
pub struct RawEvent<'a> {
    kind: Option<RawValue<'a>>,
    call_id: Option<RawValue<'a>>,
    ts: Option<RawValue<'a>>,
    queue: Option<RawValue<'a>>,
    channel: Option<RawValue<'a>>,
    priority: Option<RawValue<'a>>,
    tags: Option<RawTags<'a>>,
    agent: Option<RawValue<'a>>,
    reason: Option<RawValue<'a>>,
    /// The least unknown key in byte order: the one an error names.
    first_unknown: Option<Cow<'a, str>>,
}

impl<'a> RawEvent<'a> {
    /// Where the value of `key` goes.
    pub fn slot(&mut self, key: &str) -> Slot<'_, 'a> {
        let value = match key {
            "type" => &mut self.kind,
            "call_id" => &mut self.call_id,
            "ts" => &mut self.ts,
            "queue" => &mut self.queue,
            "channel" => &mut self.channel,
            "priority" => &mut self.priority,
            "agent" => &mut self.agent,
            "reason" => &mut self.reason,
            "tags" => return Slot::Tags(&mut self.tags),
            _ => return Slot::Unknown,
        };
        Slot::Value(value)
    }

    /// Notes a key that names no field (its value was read past).
    pub fn unknown_key(&mut self, key: Cow<'a, str>) {
        if self.first_unknown.as_ref().is_none_or(|first| key < *first) {
            self.first_unknown = Some(key);
        }
    }

    /// Applies every rule of the protocol; errors come in a fixed order whatever the key order:
    /// `type`, then the first key (in byte order) not allowed on that type, then `call_id`, `ts`
    /// and the type's own fields.
    pub fn validate(self, limits: &EventLimits) -> Result<Event, EventError> {
        let kind = match &self.kind {
            None => return Err(EventError::Missing { field: "type" }),
            Some(RawValue::Str(s)) => EventKind::parse(s)
                .ok_or_else(|| EventError::UnknownType(s.chars().take(64).collect()))?,
            Some(other) => {
                return Err(EventError::WrongType {
                    field: "type".into(),
                    expected: "a string",
                    got: other.type_name(),
                })
            }
        };
        self.check_keys(kind)?;
        let call_id = string_field("call_id", self.call_id, limits)?
            .ok_or(EventError::Missing { field: "call_id" })?;
        let ts_ms = parse_ts(
            self.ts
                .as_ref()
                .ok_or(EventError::Missing { field: "ts" })?,
        )?;
        let mut ev = Event::new(kind, call_id, ts_ms);
        match kind {
            EventKind::Start => {
                ev.queue = Some(string_field("queue", self.queue, limits)?.ok_or(
                    EventError::MissingFor {
                        field: "queue",
                        kind: "start",
                    },
                )?);
                ev.channel = string_field("channel", self.channel, limits)?;
                ev.priority = match self.priority {
                    None => None,
                    Some(RawValue::Int(p)) => Some(p),
                    Some(other) => {
                        return Err(EventError::WrongType {
                            field: "priority".into(),
                            expected: "an integer",
                            got: other.type_name(),
                        })
                    }
                };
                ev.tags = parse_tags(self.tags, limits)?;
            }
            EventKind::Answer => ev.agent = string_field("agent", self.agent, limits)?,
            EventKind::End => {
                ev.reason = match string_field("reason", self.reason, limits)? {
                    None => None,
                    Some(s) => Some(EndReason::parse(&s).ok_or(EventError::UnknownReason(s))?),
                }
            }
            EventKind::Hold | EventKind::Resume | EventKind::Wrapup => {}
        }
        Ok(ev)
    }

    /// Refuses the least key (in byte order) that is neither common nor allowed on `kind`.
    fn check_keys(&self, kind: EventKind) -> Result<(), EventError> {
        let optional = [
            ("queue", self.queue.is_some()),
            ("channel", self.channel.is_some()),
            ("priority", self.priority.is_some()),
            ("tags", self.tags.is_some()),
            ("agent", self.agent.is_some()),
            ("reason", self.reason.is_some()),
        ];
        let mut least: Option<(&str, bool)> = self.first_unknown.as_deref().map(|k| (k, false));
        for (name, present) in optional {
            if present
                && !kind.optional_fields().contains(&name)
                && least.is_none_or(|(k, _)| name < k)
            {
                least = Some((name, true));
            }
        }
        match least {
            None => Ok(()),
            Some((key, known)) => {
                let shown: String = key.chars().take(64).collect();
                Err(if known {
                    EventError::NotAllowed {
                        field: shown,
                        kind: kind.name(),
                    }
                } else {
                    EventError::UnknownField(shown)
                })
            }
        }
    }
}

/// What is wrong with a string, before knowing how to name its field.
enum StrFault {
    Empty,
    TooLong(usize),
}

impl StrFault {
    fn at(self, field: String, limits: &EventLimits) -> EventError {
        match self {
            StrFault::Empty => EventError::Empty { field },
            StrFault::TooLong(len) => EventError::TooLong {
                field,
                len,
                max: limits.max_string_bytes,
            },
        }
    }
}

fn check_string(s: &str, limits: &EventLimits) -> Result<(), StrFault> {
    if s.is_empty() {
        return Err(StrFault::Empty);
    }
    if s.len() > limits.max_string_bytes {
        return Err(StrFault::TooLong(s.len()));
    }
    Ok(())
}

fn string_field(
    field: &'static str,
    value: Option<RawValue<'_>>,
    limits: &EventLimits,
) -> Result<Option<String>, EventError> {
    match value {
        None => Ok(None),
        Some(RawValue::Str(s)) => match check_string(&s, limits) {
            Ok(()) => Ok(Some(s.into_owned())),
            Err(fault) => Err(fault.at(field.into(), limits)),
        },
        Some(other) => Err(EventError::WrongType {
            field: field.into(),
            expected: "a string",
            got: other.type_name(),
        }),
    }
}

/// Parses a timestamp: integer epoch milliseconds or an RFC 3339 string.
fn parse_ts(v: &RawValue<'_>) -> Result<i64, EventError> {
    let ms = match v {
        RawValue::Int(ms) => *ms,
        RawValue::Number => {
            return Err(EventError::WrongType {
                field: "ts".into(),
                expected: "integer epoch milliseconds or an RFC 3339 string",
                got: "a fractional or out-of-range number",
            })
        }
        RawValue::Str(s) => s
            .parse::<jiff::Timestamp>()
            .map_err(|_| EventError::BadTimestamp(s.chars().take(64).collect()))?
            .as_millisecond(),
        other => {
            return Err(EventError::WrongType {
                field: "ts".into(),
                expected: "integer epoch milliseconds or an RFC 3339 string",
                got: other.type_name(),
            })
        }
    };
    if !(MIN_TS_MS..MAX_TS_MS).contains(&ms) {
        return Err(EventError::TimestampRange(ms));
    }
    Ok(ms)
}

fn parse_tags(
    tags: Option<RawTags<'_>>,
    limits: &EventLimits,
) -> Result<Vec<(String, String)>, EventError> {
    let mut entries = match tags {
        None => return Ok(Vec::new()),
        Some(RawTags::Object(entries)) => entries,
        Some(RawTags::Other { got }) => {
            return Err(EventError::WrongType {
                field: "tags".into(),
                expected: "an object of string values",
                got,
            })
        }
    };
    // As an object holds them: in key order, a repeated key once, with its last value. The sort
    // is stable, so of equal keys the last one on the wire comes last; dedup keeps the first of
    // a run, so it takes the value of each later one in turn.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            std::mem::swap(&mut later.1, &mut kept.1);
        }
        same
    });
    if entries.len() > limits.max_tags {
        return Err(EventError::TooManyTags {
            count: entries.len(),
            max: limits.max_tags,
        });
    }
    let mut out = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let field = || format!("tags.{}", key.chars().take(64).collect::<String>());
        check_string(&key, limits).map_err(|fault| fault.at(field(), limits))?;
        let RawValue::Str(value) = value else {
            return Err(EventError::WrongType {
                field: field(),
                expected: "a string",
                got: value.type_name(),
            });
        };
        check_string(&value, limits).map_err(|fault| fault.at(field(), limits))?;
        out.push((key.into_owned(), value.into_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::decode::{decode_json, decode_msgpack, Decoded};
    use serde_json::json;

    const MAX_BATCH: usize = 4096;

    /// Validates `v` sent as a JSON line and as a MessagePack frame; both must agree.
    fn parse(v: Value) -> Result<Event, EventError> {
        let limits = EventLimits::default();
        let line = serde_json::to_vec(&v).unwrap();
        let frame = rmp_serde::to_vec_named(&v).unwrap();
        let from_json = decode_json(&line, &limits, MAX_BATCH);
        assert_eq!(from_json, decode_msgpack(&frame, &limits, MAX_BATCH), "{v}");
        match from_json {
            Ok(Decoded::One(item)) => item,
            other => panic!("{v}: not one event: {other:?}"),
        }
    }

    /// Validates one JSON line written by hand (key order and repeated keys as given).
    fn parse_line(line: &str) -> Result<Event, EventError> {
        match decode_json(line.as_bytes(), &EventLimits::default(), MAX_BATCH) {
            Ok(Decoded::One(item)) => item,
            other => panic!("{line}: not one event: {other:?}"),
        }
    }

    #[test]
    fn names_parse_back() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.name()), Some(k));
        }
        for r in EndReason::ALL {
            assert_eq!(EndReason::parse(r.name()), Some(r));
        }
        assert_eq!(EventKind::parse("Start"), None);
        assert_eq!(EndReason::parse(""), None);
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
            (json!(42), "must be an object"),
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
        let line = br#"[{"type":"hold","call_id":"c","ts":1700000000000},{"type":"x"},1,[{}]]"#;
        match decode_json(line, &EventLimits::default(), MAX_BATCH) {
            Ok(Decoded::Batch(items)) => {
                assert!(items[0].is_ok());
                assert!(matches!(&items[1], Err(EventError::UnknownType(t)) if t == "x"));
                assert_eq!(items[2], Err(EventError::NotAnObject { got: "a number" }));
                assert_eq!(items[3], Err(EventError::NotAnObject { got: "an array" }));
            }
            other => panic!("an array must decode as a batch: {other:?}"),
        }
    }

    #[test]
    fn type_may_come_last() {
        let ev =
            parse_line(r#"{"call_id":"c","queue":"q","ts":1700000000000,"type":"start"}"#).unwrap();
        assert_eq!(ev.kind, EventKind::Start);
        assert_eq!(ev.queue.as_deref(), Some("q"));
        // The error about a field not allowed on the type needs the type first.
        assert_eq!(
            parse_line(r#"{"agent":"a","call_id":"c","ts":1700000000000,"type":"hold"}"#),
            Err(EventError::NotAllowed {
                field: "agent".into(),
                kind: "hold"
            })
        );
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value() {
        let ev = parse_line(
            r#"{"type":"hold","call_id":"c","ts":1,"type":"start","queue":"q","ts":1700000000000,
                "tags":{"b":"1","a":"2","b":"3"}}"#,
        )
        .unwrap();
        assert_eq!(ev.kind, EventKind::Start);
        assert_eq!(ev.ts_ms, 1_700_000_000_000);
        assert_eq!(
            ev.tags,
            vec![("a".into(), "2".into()), ("b".into(), "3".into())]
        );
        // Tags are counted once per key.
        let limits = EventLimits {
            max_tags: 2,
            ..EventLimits::default()
        };
        let line = br#"{"type":"start","call_id":"c","queue":"q","ts":1700000000000,
            "tags":{"a":"1","b":"2","a":"3","b":"4"}}"#;
        assert!(matches!(
            decode_json(line, &limits, MAX_BATCH),
            Ok(Decoded::One(Ok(_)))
        ));
    }

    #[test]
    fn the_least_offending_key_is_named() {
        // In byte order `agent` < `zeta`: a field not allowed comes before an unknown one...
        assert_eq!(
            parse_line(r#"{"zeta":1,"type":"hold","agent":"a","call_id":"c","ts":1700000000000}"#),
            Err(EventError::NotAllowed {
                field: "agent".into(),
                kind: "hold"
            })
        );
        // ...and an unknown one before a field not allowed, when it sorts first.
        assert_eq!(
            parse_line(
                r#"{"queue":"q","type":"hold","colour":1,"call_id":"c","ts":1700000000000}"#
            ),
            Err(EventError::UnknownField("colour".into()))
        );
        assert_eq!(
            parse_line(r#"{"type":"answer","zz":1,"Zz":1,"call_id":"c","ts":1700000000000}"#),
            Err(EventError::UnknownField("Zz".into()))
        );
    }
}
