//! Validation: the fields of one event map as they came off the wire ([`RawEvent`]), filled by a
//! decoder, and the rules that make them an [`Event`] or name what is wrong, the one place the
//! rules live.

use std::borrow::Cow;

use super::{
    CallbackOutcome, EndReason, Event, EventError, EventKind, EventLimits, MAX_TS_MS, MIN_TS_MS,
};

/// One field's value as it came off the wire, before validation: typed only as far as the wire
/// types go. Arrays and objects keep only their type (their content was read past), except the
/// value of `tags`, see [`RawTags`].
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue<'a> {
    /// Null; also a float that is not finite (`MessagePack` can carry NaN), as `serde_json::Value`
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
    #[must_use]
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
    /// An object: its entries in wire order, a repeated key included (validation refuses it).
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

/// The fields of one event map as they came off the wire, in any order, a repeated key noted
/// (and refused): what a decoder fills for [`RawEvent::validate`], the one place the rules live.
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
    outcome: Option<RawValue<'a>>,
    /// The least unknown key in byte order: the one an error names.
    first_unknown: Option<Cow<'a, str>>,
    /// The least key in byte order given more than once: the one an error names.
    first_repeated: Option<Cow<'a, str>>,
}

impl<'a> RawEvent<'a> {
    /// Where the value of `key` goes. A slot already filled means the map gives the key twice:
    /// the decoder tells [`RawEvent::repeated_key`], and validation refuses the event.
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
            "outcome" => &mut self.outcome,
            "tags" => return Slot::Tags(&mut self.tags),
            _ => return Slot::Unknown,
        };
        Slot::Value(value)
    }

    /// Notes a field the map gives more than once (no value wins: the event is refused).
    pub fn repeated_key(&mut self, key: Cow<'a, str>) {
        if self
            .first_repeated
            .as_ref()
            .is_none_or(|first| key < *first)
        {
            self.first_repeated = Some(key);
        }
    }

    /// Notes a key that names no field (its value was read past).
    pub fn unknown_key(&mut self, key: Cow<'a, str>) {
        if self.first_unknown.as_ref().is_none_or(|first| key < *first) {
            self.first_unknown = Some(key);
        }
    }

    /// Applies every rule of the protocol; errors come in a fixed order whatever the key order:
    /// the first field (in byte order) given twice, `type`, then the first key (in byte order)
    /// not allowed on that type, then `call_id`, `ts` and the type's own fields.
    pub fn validate(self, limits: &EventLimits) -> Result<Event, EventError> {
        if let Some(field) = self.first_repeated {
            return Err(EventError::Duplicate {
                field: field.into_owned(),
            });
        }
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
                ev.reason = match str_field("reason", self.reason, limits)? {
                    None => None,
                    Some(s) => Some(
                        EndReason::parse(&s)
                            .ok_or_else(|| EventError::UnknownReason(s.into_owned()))?,
                    ),
                };
                ev.tags = parse_tags(self.tags, limits)?;
            }
            EventKind::Hold | EventKind::Resume | EventKind::Wrapup => {}
            EventKind::Callback => {
                ev.outcome = Some(match str_field("outcome", self.outcome, limits)? {
                    None => CallbackOutcome::Reached,
                    Some(s) => CallbackOutcome::parse(&s)
                        .ok_or_else(|| EventError::UnknownOutcome(s.into_owned()))?,
                });
            }
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
            ("outcome", self.outcome.is_some()),
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
    Unprintable(usize, char),
}

impl StrFault {
    fn at(self, field: String, limits: &EventLimits) -> EventError {
        match self {
            StrFault::Empty => EventError::Empty { field },
            StrFault::Unprintable(at, c) => EventError::Unprintable {
                field,
                code: u32::from(c),
                at,
            },
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
    if let Some((at, c)) = crate::printable::first_refused(s) {
        return Err(StrFault::Unprintable(at, c));
    }
    Ok(())
}

fn string_field(
    field: &'static str,
    value: Option<RawValue<'_>>,
    limits: &EventLimits,
) -> Result<Option<String>, EventError> {
    Ok(str_field(field, value, limits)?.map(Cow::into_owned))
}

/// [`string_field`] as it came: borrowed from the input where the decoder could, for a value
/// that is only parsed (a reason, an outcome), so it is never copied.
fn str_field<'a>(
    field: &'static str,
    value: Option<RawValue<'a>>,
    limits: &EventLimits,
) -> Result<Option<Cow<'a, str>>, EventError> {
    match value {
        None => Ok(None),
        Some(RawValue::Str(s)) => match check_string(&s, limits) {
            Ok(()) => Ok(Some(s)),
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
    // In key order, as an object holds them; a key given twice is refused (the least such key,
    // whatever the wire order), not resolved by letting one value win.
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if let Some(pair) = entries.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        return Err(EventError::Duplicate {
            field: format!("tags.{}", pair[0].0.chars().take(64).collect::<String>()),
        });
    }
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
