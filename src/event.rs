//! The call lifecycle event model (ingest protocol v1) and its validation: no I/O here.
//!
//! Events arrive as JSON or `MessagePack` maps. A decoder (`ingest::decode`) reads each map
//! straight into a [`RawEvent`], the fields as they came; [`RawEvent::validate`] applies every
//! rule, so both framings get the same error text from one validation path.
//!
//! This file is the model: kinds, reasons, [`Event`], limits and errors. The wire form and the
//! rules are in `event/validate.rs`.

mod validate;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

pub use validate::{RawEvent, RawTags, RawValue, Slot};

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
    /// A callback promised to an earlier call was attempted (docs/callbacks.md): not part of
    /// any segment, it closes (or records an attempt on) the call's callback request.
    Callback,
}

impl EventKind {
    pub const ALL: [EventKind; 7] = [
        EventKind::Start,
        EventKind::Answer,
        EventKind::Hold,
        EventKind::Resume,
        EventKind::End,
        EventKind::Wrapup,
        EventKind::Callback,
    ];

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Start => "start",
            EventKind::Answer => "answer",
            EventKind::Hold => "hold",
            EventKind::Resume => "resume",
            EventKind::End => "end",
            EventKind::Wrapup => "wrapup",
            EventKind::Callback => "callback",
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
            "callback" => EventKind::Callback,
            _ => return None,
        })
    }

    /// Fields this kind may carry besides `type`, `call_id` and `ts`.
    fn optional_fields(self) -> &'static [&'static str] {
        match self {
            EventKind::Start => &["queue", "channel", "priority", "tags"],
            EventKind::Answer => &["agent"],
            EventKind::End => &["reason", "tags"],
            EventKind::Hold | EventKind::Resume | EventKind::Wrapup => &[],
            EventKind::Callback => &["outcome"],
        }
    }
}

/// How a callback attempt went (`outcome` of a `callback` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackOutcome {
    /// The caller was reached: the request is fulfilled.
    Reached,
    /// Nobody answered: an attempt, the request stays open.
    NoAnswer,
    /// The request was withdrawn (the caller called again, asked not to be called): closed,
    /// counted apart from fulfilled ones.
    Cancelled,
}

impl CallbackOutcome {
    pub const ALL: [CallbackOutcome; 3] = [
        CallbackOutcome::Reached,
        CallbackOutcome::NoAnswer,
        CallbackOutcome::Cancelled,
    ];

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            CallbackOutcome::Reached => "reached",
            CallbackOutcome::NoAnswer => "no_answer",
            CallbackOutcome::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.name() == s)
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

    #[must_use]
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

/// [`EventKind`] and [`EndReason`] as the byte forms of the engine (a pending call) and of the
/// store (a logged group) write them: as their place in `ALL`, 0 to 5, so that order must not
/// change.
pub trait ByteCode: Copy + PartialEq + 'static {
    /// Every value, in code order.
    const BY_CODE: &'static [Self];

    #[must_use]
    fn code(self) -> u8 {
        Self::BY_CODE.iter().position(|x| *x == self).unwrap_or(0) as u8
    }

    /// The value numbered `code`, if any.
    #[must_use]
    fn from_code(code: u8) -> Option<Self> {
        Self::BY_CODE.get(usize::from(code)).copied()
    }
}

impl ByteCode for EventKind {
    const BY_CODE: &'static [Self] = &EventKind::ALL;
}

impl ByteCode for EndReason {
    const BY_CODE: &'static [Self] = &EndReason::ALL;
}

impl ByteCode for CallbackOutcome {
    const BY_CODE: &'static [Self] = &CallbackOutcome::ALL;
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
    /// A `callback` event's outcome (`reached` when the sender leaves it out); `None` on every
    /// other kind. Defaulted so that events serialized before it existed still read.
    #[serde(default)]
    pub outcome: Option<CallbackOutcome>,
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
            outcome: None,
        }
    }

    /// The event as the JSON object a client sends (used by tests, the bench and `send`).
    #[must_use]
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
        if let Some(o) = self.outcome {
            m.insert("outcome".into(), o.name().into());
        }
        Value::Object(m)
    }
}

/// Bounds on what one event may carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLimits {
    /// Longest string (`call_id`, queue, agent, channel, tag key or value), in bytes.
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
    #[error("field `type`: unknown event type `{0}` (expected start, answer, hold, resume, end, wrapup or callback)")]
    UnknownType(String),
    #[error("field `reason`: unknown reason `{0}` (expected completed, abandoned, timeout, exit, transferred or callback)")]
    UnknownReason(String),
    #[error("unknown field `{0}`")]
    UnknownField(String),
    /// A key given twice in one object (an event, or its `tags`): no value wins silently.
    #[error("duplicate field `{field}`: each key may appear once in an object")]
    Duplicate { field: String },
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
    #[error("field `{field}`: control or bidirectional character U+{code:04X} at byte {at} (names must be printable text)")]
    Unprintable { field: String, code: u32, at: usize },
    #[error("field `tags`: {count} tags is more than the limit of {max} (limits.max_tags)")]
    TooManyTags { count: usize, max: usize },
    #[error("field `ts`: `{0}` is not an RFC 3339 timestamp (e.g. 2026-11-22T10:00:00Z) nor epoch milliseconds")]
    BadTimestamp(String),
    #[error(
        "field `ts`: {0} ms is outside 2000-01-01..2100-01-01 (timestamps are epoch milliseconds)"
    )]
    TimestampRange(i64),
    #[error("field `outcome`: unknown outcome `{0}` (expected reached, no_answer or cancelled)")]
    UnknownOutcome(String),
}

#[cfg(test)]
mod tests;
