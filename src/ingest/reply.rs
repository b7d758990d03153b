//! Replies: the one owed for each line or frame, from its items' outcomes, and its encoding for
//! either framing, serialized from typed structs with no `serde_json::Value`. Keys are written in
//! the order a `Value` map wrote them (sorted), so the bytes are what they always were.

use std::fmt;

use serde::{Serialize, Serializer};

use super::framing::Framing;
use super::{IngestStats, ItemResult, Refusal};
use crate::event::EventError;

/// Whether a line or frame held one event (a map) or a batch (an array); it decides the reply's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    One,
    Batch,
}

/// Why a line, frame or event was refused; its text is the reply's `error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The event failed validation.
    Invalid(EventError),
    /// The committer did not store the event.
    Refused(Refusal),
    /// About the whole line or frame: malformed, too long, a broken frame.
    Message(String),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Invalid(e) => e.fmt(f),
            Fault::Refused(r) => r.fmt(f),
            Fault::Message(m) => f.write_str(m),
        }
    }
}

/// The reply to one line or frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `{"ok":true}`
    Ok,
    /// `{"error":…,"ok":false}`
    Error(Fault),
    /// `{"accepted":0,"error":"batch of … events exceeds limits.max_batch_events (…)","ok":false}`
    BatchTooLarge { events: usize, max: usize },
    /// `{"accepted":…,"ok":true}` if nothing failed, else `{"accepted":…,"error":"… of … events
    /// refused","failed":[{"error":…,"index":…},…],"ok":false}`; `failed` is in index order.
    Batch {
        total: usize,
        failed: Vec<(usize, Fault)>,
    },
}

impl Reply {
    #[must_use]
    pub fn error(message: String) -> Reply {
        Reply::Error(Fault::Message(message))
    }
}

/// The committer's results for one submission, taken in turn by its lines or frames.
pub(super) type Results = std::vec::IntoIter<ItemResult>;

/// Merges the validation errors of a line or frame of `total` items (by index, in order) with
/// the committer's results for the other items, in order (`None`: the committer never
/// answered), into its reply, counting the committer's refusals. It takes one result per valid
/// item from `committed`, so the lines of one submission take theirs in turn.
pub(super) fn resolve(
    shape: Shape,
    total: usize,
    invalid: Vec<(usize, EventError)>,
    mut committed: Option<&mut Results>,
    stats: &IngestStats,
) -> Reply {
    let mut invalid = invalid.into_iter().peekable();
    let mut failed = Vec::new();
    for index in 0..total {
        if let Some((_, e)) = invalid.next_if(|(i, _)| *i == index) {
            failed.push((index, Fault::Invalid(e)));
            continue;
        }
        let result = match committed.as_mut() {
            // A committer that answers fewer results than events leaves the rest unconfirmed.
            Some(results) => results.next().unwrap_or(Err(Refusal::NoResult)),
            None => Err(Refusal::ShuttingDown),
        };
        if let Err(refusal) = result {
            stats.reject(refusal.label());
            failed.push((index, Fault::Refused(refusal)));
        }
    }
    match shape {
        Shape::One => match failed.pop() {
            None => Reply::Ok,
            Some((_, fault)) => Reply::Error(fault),
        },
        Shape::Batch => Reply::Batch { total, failed },
    }
}

/// `{"ok":true}` as a JSON line.
const OK_JSON: &[u8] = b"{\"ok\":true}\n";
/// `{"ok":true}` as a frame: the length 5, then the map {"ok": true}.
const OK_MSGPACK: &[u8] = &[0, 0, 0, 5, 0x81, 0xa2, b'o', b'k', 0xc3];

/// Encodes a reply as a JSON line or a length-prefixed `MessagePack` map, replacing `out`.
pub fn encode_reply(framing: Framing, reply: &Reply, out: &mut Vec<u8>) {
    out.clear();
    if matches!(reply, Reply::Ok) {
        out.extend_from_slice(match framing {
            Framing::JsonLines => OK_JSON,
            Framing::MsgPack => OK_MSGPACK,
        });
        return;
    }
    match framing {
        Framing::JsonLines => {
            if serde_json::to_writer(&mut *out, &Wire(reply)).is_err() {
                // Unreachable for these types; still answer rather than skip a reply.
                out.clear();
                out.extend_from_slice(
                    br#"{"ok":false,"error":"internal error encoding the reply"}"#,
                );
            }
            out.push(b'\n');
        }
        Framing::MsgPack => {
            out.extend_from_slice(&[0; 4]);
            if rmp_serde::encode::write_named(out, &Wire(reply)).is_err() {
                // Same fallback: the map {"ok": false}.
                out.truncate(4);
                out.extend_from_slice(&[0x81, 0xa2, b'o', b'k', 0xc2]);
            }
            // Replies are a few hundred bytes at most; a failing conversion would mean over 4 GiB.
            let len = u32::try_from(out.len() - 4).unwrap_or(u32::MAX);
            if let Some(head) = out.get_mut(..4) {
                head.copy_from_slice(&len.to_be_bytes());
            }
        }
    }
}

/// A reply as it goes on the wire.
struct Wire<'a>(&'a Reply);

impl Serialize for Wire<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Field order is key order: sorted, as `serde_json::Map` kept them.
        #[derive(Serialize)]
        struct Okay {
            ok: bool,
        }
        #[derive(Serialize)]
        struct Refused<'a> {
            #[serde(serialize_with = "as_text")]
            error: &'a Fault,
            ok: bool,
        }
        #[derive(Serialize)]
        struct BatchRefused {
            accepted: usize,
            error: String,
            ok: bool,
        }
        #[derive(Serialize)]
        struct BatchAccepted {
            accepted: usize,
            ok: bool,
        }
        #[derive(Serialize)]
        struct BatchFailed<'a> {
            accepted: usize,
            error: String,
            failed: Failed<'a>,
            ok: bool,
        }

        match self.0 {
            Reply::Ok => Okay { ok: true }.serialize(s),
            Reply::Error(fault) => Refused {
                error: fault,
                ok: false,
            }
            .serialize(s),
            Reply::BatchTooLarge { events, max } => BatchRefused {
                accepted: 0,
                error: format!("batch of {events} events exceeds limits.max_batch_events ({max})"),
                ok: false,
            }
            .serialize(s),
            Reply::Batch { total, failed } if failed.is_empty() => BatchAccepted {
                accepted: *total,
                ok: true,
            }
            .serialize(s),
            Reply::Batch { total, failed } => BatchFailed {
                accepted: total.saturating_sub(failed.len()),
                error: format!("{} of {total} events refused", failed.len()),
                failed: Failed(failed),
                ok: false,
            }
            .serialize(s),
        }
    }
}

/// The `failed` list of a batch reply.
struct Failed<'a>(&'a [(usize, Fault)]);

impl Serialize for Failed<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Item<'a> {
            #[serde(serialize_with = "as_text")]
            error: &'a Fault,
            index: usize,
        }
        s.collect_seq(self.0.iter().map(|(index, error)| Item {
            error,
            index: *index,
        }))
    }
}

// serde's `serialize_with` hands the field by reference.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn as_text<S: Serializer>(fault: &&Fault, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(*fault)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::reference;
    use proptest::prelude::*;

    /// What the reply of `reply` was when built as a `serde_json::Value`.
    fn reference_value(reply: &Reply) -> serde_json::Value {
        match reply {
            Reply::Ok => reference::reply_value(false, vec![Ok(())]),
            Reply::Error(fault) => reference::error_reply(&fault.to_string()),
            Reply::BatchTooLarge { events, max } => reference::too_large_reply(*events, *max),
            Reply::Batch { total, failed } => {
                let mut items: Vec<Result<(), String>> = vec![Ok(()); *total];
                for (index, fault) in failed {
                    items[*index] = Err(fault.to_string());
                }
                reference::reply_value(true, items)
            }
        }
    }

    fn assert_same_bytes(reply: &Reply) {
        for framing in [Framing::JsonLines, Framing::MsgPack] {
            let (mut typed, mut before) = (Vec::new(), Vec::new());
            encode_reply(framing, reply, &mut typed);
            reference::encode_reply(framing, &reference_value(reply), &mut before);
            assert_eq!(typed, before, "{framing:?} {reply:?}");
        }
    }

    fn fault() -> impl Strategy<Value = Fault> {
        prop_oneof![
            "\\PC{0,300}".prop_map(Fault::Message),
            prop_oneof![
                Just(EventError::Missing { field: "ts" }),
                "\\PC{0,80}".prop_map(EventError::UnknownField),
                "[\"\\\\\n\t\u{1}é]{0,40}".prop_map(EventError::UnknownType),
            ]
            .prop_map(Fault::Invalid),
            prop_oneof![
                Just(Refusal::ShuttingDown),
                Just(Refusal::NoResult),
                (any::<u64>(), any::<u64>())
                    .prop_map(|(size, max)| Refusal::StoreFull { size, max }),
                any::<usize>().prop_map(|open| Refusal::OpenSegmentLimit { open }),
                "\\PC{0,40}".prop_map(Refusal::Store),
            ]
            .prop_map(Fault::Refused),
        ]
    }

    fn reply() -> impl Strategy<Value = Reply> {
        prop_oneof![
            Just(Reply::Ok),
            fault().prop_map(Reply::Error),
            (any::<usize>(), any::<usize>())
                .prop_map(|(events, max)| Reply::BatchTooLarge { events, max }),
            proptest::collection::vec(proptest::option::weighted(0.3, fault()), 0..300).prop_map(
                |items| Reply::Batch {
                    total: items.len(),
                    failed: items
                        .into_iter()
                        .enumerate()
                        .filter_map(|(i, f)| f.map(|f| (i, f)))
                        .collect(),
                }
            ),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Every reply is, byte for byte, what building it as a `serde_json::Value` gave.
        #[test]
        fn replies_are_what_they_were(reply in reply()) {
            assert_same_bytes(&reply);
        }
    }

    #[test]
    fn long_messages_and_large_batches_encode_as_before() {
        // MessagePack string and array headers of every size.
        for len in [0, 31, 32, 255, 256, 65_535, 65_536] {
            assert_same_bytes(&Reply::error("é".repeat(len / 2) + &"x".repeat(len % 2)));
        }
        for total in [15, 16, 200, 70_000] {
            let failed = (0..total)
                .step_by(3)
                .map(|i| (i, Fault::Refused(Refusal::NoResult)))
                .collect();
            assert_same_bytes(&Reply::Batch { total, failed });
            assert_same_bytes(&Reply::Batch {
                total,
                failed: Vec::new(),
            });
        }
        assert_same_bytes(&Reply::Ok);
    }

    #[test]
    fn resolve_merges_validation_errors_and_committer_results() {
        let stats = IngestStats::default();
        let invalid = vec![
            (0, EventError::Missing { field: "ts" }),
            (3, EventError::Missing { field: "type" }),
        ];
        // Items 1, 2 and 4 went to the committer, which answered for two of them only.
        let results = vec![Ok(()), Err(Refusal::StoreFull { size: 2, max: 1 })];
        let reply = resolve(
            Shape::Batch,
            5,
            invalid.clone(),
            Some(&mut results.into_iter()),
            &stats,
        );
        assert_eq!(
            reply,
            Reply::Batch {
                total: 5,
                failed: vec![
                    (0, Fault::Invalid(EventError::Missing { field: "ts" })),
                    (2, Fault::Refused(Refusal::StoreFull { size: 2, max: 1 })),
                    (3, Fault::Invalid(EventError::Missing { field: "type" })),
                    (4, Fault::Refused(Refusal::NoResult)),
                ],
            }
        );
        let reply = resolve(Shape::One, 1, Vec::new(), None, &stats);
        assert_eq!(reply, Reply::Error(Fault::Refused(Refusal::ShuttingDown)));
        let reply = resolve(
            Shape::One,
            1,
            Vec::new(),
            Some(&mut vec![Ok(())].into_iter()),
            &stats,
        );
        assert_eq!(reply, Reply::Ok);
        let rejected = stats.snapshot().events_rejected;
        assert_eq!(rejected.get("store_full"), Some(&1));
        assert_eq!(rejected.get("rejected"), Some(&1));
        assert_eq!(rejected.get("shutdown"), Some(&1));
        // Validation errors are counted when found, not here.
        assert_eq!(rejected.get("invalid"), None);
    }
}
