//! The typed decoder against the `serde_json::Value` decoder it replaced (`reference.rs`):
//! generated documents, damaged or not, must decode the same both ways; plus hand-picked cases.

use super::*;
use crate::ingest::reference;
use proptest::prelude::*;
use proptest::sample::{select, Index};

/// Small limits, so that generated input reaches them.
const LIMITS: EventLimits = EventLimits {
    max_string_bytes: 16,
    max_tags: 3,
};
const MAX_BATCH: usize = 4;

/// Whether the typed decoding agrees with the reference's. Where a `Value` keeps the last of a
/// key given twice, the typed decoder refuses the event naming the key: such an item may differ
/// (the unit tests below check those refusals); all else must be equal.
fn agree(typed: &Result<Decoded, String>, reference: &Result<Decoded, String>) -> bool {
    let item = |t: &Result<Event, EventError>, r: &Result<Event, EventError>| {
        t == r || matches!(t, Err(EventError::Duplicate { .. }))
    };
    match (typed, reference) {
        (Ok(Decoded::One(t)), Ok(Decoded::One(r))) => item(t, r),
        (Ok(Decoded::Batch(t)), Ok(Decoded::Batch(r))) => {
            t.len() == r.len() && t.iter().zip(r).all(|(t, r)| item(t, r))
        }
        _ => typed == reference,
    }
}

/// Decodes `line` both ways; they must agree.
fn json_both(line: &[u8]) -> Result<Decoded, String> {
    let typed = decode_json(line, &LIMITS, MAX_BATCH);
    let reference = reference::decode_json(line, &LIMITS, MAX_BATCH);
    assert!(
        agree(&typed, &reference),
        "{:?}: {typed:?} != {reference:?}",
        String::from_utf8_lossy(line)
    );
    typed
}

/// Decodes `body` both ways; they must agree.
fn msgpack_both(body: &[u8]) -> Result<Decoded, String> {
    let typed = decode_msgpack(body, &LIMITS, MAX_BATCH);
    let reference = reference::decode_msgpack(body, &LIMITS, MAX_BATCH);
    assert!(
        agree(&typed, &reference),
        "{body:02x?}: {typed:?} != {reference:?}"
    );
    typed
}

/// A document to send: any JSON value, plus what only `MessagePack` can carry.
#[derive(Debug, Clone)]
enum Doc {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    F32(f32),
    Str(String),
    Arr(Vec<Doc>),
    Obj(Vec<(Doc, Doc)>),
    /// JSON only: text written as is (odd numbers, escapes, broken tokens).
    RawJson(String),
    /// `MessagePack` only.
    Bin(Vec<u8>),
    Ext(i8, Vec<u8>),
    /// A `MessagePack` string whose bytes need not be UTF-8.
    RawStr(Vec<u8>),
}

fn json(doc: &Doc, out: &mut String) {
    match doc {
        Doc::Null => out.push_str("null"),
        Doc::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Doc::Int(i) => out.push_str(&i.to_string()),
        Doc::UInt(u) => out.push_str(&u.to_string()),
        Doc::Float(f) => out.push_str(&serde_json::to_string(f).unwrap()),
        Doc::F32(f) => out.push_str(&serde_json::to_string(&f64::from(*f)).unwrap()),
        Doc::Str(s) => out.push_str(&serde_json::to_string(s).unwrap()),
        Doc::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json(item, out);
            }
            out.push(']');
        }
        Doc::Obj(entries) => {
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match k {
                    Doc::Str(_) | Doc::RawJson(_) => json(k, out),
                    // JSON keys are strings; others go in as their JSON text in a string.
                    other => {
                        let mut text = String::new();
                        json(other, &mut text);
                        out.push_str(&serde_json::to_string(&text).unwrap());
                    }
                }
                out.push(':');
                json(v, out);
            }
            out.push('}');
        }
        Doc::RawJson(text) => out.push_str(text),
        Doc::Bin(b) | Doc::RawStr(b) | Doc::Ext(_, b) => {
            out.push_str(&serde_json::to_string(&String::from_utf8_lossy(b)).unwrap());
        }
    }
}

fn msgpack_len(out: &mut Vec<u8>, len: usize, fix: Option<(u8, usize)>, markers: [u8; 3]) {
    match fix {
        Some((base, max)) if len <= max => out.push(base | len as u8),
        _ if len <= 0xff && markers[0] != 0 => out.extend([markers[0], len as u8]),
        _ if len <= 0xffff => {
            out.push(markers[1]);
            out.extend((len as u16).to_be_bytes());
        }
        _ => {
            out.push(markers[2]);
            out.extend((len as u32).to_be_bytes());
        }
    }
}

fn msgpack(doc: &Doc, out: &mut Vec<u8>) {
    match doc {
        Doc::Null => out.push(0xc0),
        Doc::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Doc::Int(i) => {
            rmp_serde::encode::write(out, i).unwrap();
        }
        Doc::UInt(u) => {
            rmp_serde::encode::write(out, u).unwrap();
        }
        Doc::Float(f) => {
            out.push(0xcb);
            out.extend(f.to_be_bytes());
        }
        Doc::F32(f) => {
            out.push(0xca);
            out.extend(f.to_be_bytes());
        }
        Doc::Str(s) => {
            msgpack_len(out, s.len(), Some((0xa0, 31)), [0xd9, 0xda, 0xdb]);
            out.extend(s.as_bytes());
        }
        Doc::RawStr(b) => {
            msgpack_len(out, b.len(), Some((0xa0, 31)), [0xd9, 0xda, 0xdb]);
            out.extend(b);
        }
        Doc::Bin(b) => {
            msgpack_len(out, b.len(), None, [0xc4, 0xc5, 0xc6]);
            out.extend(b);
        }
        Doc::Ext(tag, data) => {
            match data.len() {
                1 => out.push(0xd4),
                2 => out.push(0xd5),
                4 => out.push(0xd6),
                8 => out.push(0xd7),
                16 => out.push(0xd8),
                n => msgpack_len(out, n, None, [0xc7, 0xc8, 0xc9]),
            }
            out.push(*tag as u8);
            out.extend(data);
        }
        Doc::Arr(items) => {
            msgpack_len(out, items.len(), Some((0x90, 15)), [0, 0xdc, 0xdd]);
            for item in items {
                msgpack(item, out);
            }
        }
        Doc::Obj(entries) => {
            msgpack_len(out, entries.len(), Some((0x80, 15)), [0, 0xde, 0xdf]);
            for (k, v) in entries {
                msgpack(k, out);
                msgpack(v, out);
            }
        }
        Doc::RawJson(text) => msgpack(&Doc::Str(text.clone()), out),
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(vec![
            "start", "answer", "hold", "resume", "end", "wrapup", "completed", "abandoned",
            "timeout", "exit", "transferred", "callback", "voice", "q", "", "c-1",
            "2026-11-22T10:00:00Z", "2026-11-22T11:00:00.250+01:00", "1999-12-31T23:59:59Z",
            "2100-01-01T00:00:00Z", "yesterday", "xxxxxxxxxxxxxxxx", "xxxxxxxxxxxxxxxxx",
            "ééééééééé", "\u{0}", "line\nbreak", "\"quoted\"",
        ])
        .prop_map(String::from),
        2 => "[a-z]{0,18}",
        1 => "\\PC{0,70}",
    ]
}

fn key() -> impl Strategy<Value = Doc> {
    prop_oneof![
        8 => select(vec![
            "type", "call_id", "ts", "queue", "channel", "priority", "tags", "agent", "reason",
        ])
        .prop_map(|k| Doc::Str(k.into())),
        2 => select(vec!["colour", "", "zz", "Zz", "typ", "types", "a", "b", "é"])
            .prop_map(|k| Doc::Str(k.into())),
        1 => "\\PC{0,70}".prop_map(Doc::Str),
    ]
}

/// `MessagePack` keys need not be strings.
fn odd_key() -> impl Strategy<Value = Doc> {
    prop_oneof![
        any::<i64>().prop_map(Doc::Int),
        Just(Doc::Null),
        select(vec!["type", "ts", "colour"]).prop_map(|k| Doc::Bin(k.as_bytes().to_vec())),
        Just(Doc::Bin(vec![0xff, b'a'])),
        Just(Doc::RawStr(vec![b't', 0xff])),
        Just(Doc::Ext(1, vec![b'x'])),
        Just(Doc::Arr(vec![])),
        Just(Doc::Float(f64::NAN)),
    ]
}

fn leaf(msgpack_only: bool) -> BoxedStrategy<Doc> {
    let common = prop_oneof![
        Just(Doc::Null),
        any::<bool>().prop_map(Doc::Bool),
        prop_oneof![
            select(vec![
                0i64,
                -1,
                3,
                1_700_000_000,
                1_700_000_000_000,
                MIN_TS - 1,
                MIN_TS,
                MAX_TS - 1,
                MAX_TS,
                i64::MIN,
                i64::MAX
            ]),
            any::<i64>(),
        ]
        .prop_map(Doc::Int),
        prop_oneof![select(vec![1u64 << 63, u64::MAX]), any::<u64>()].prop_map(Doc::UInt),
        prop_oneof![
            select(vec![1.7e12, 0.5, -0.0, 3.0]),
            any::<f64>().prop_filter("finite", |f| f.is_finite()),
        ]
        .prop_map(Doc::Float),
        text().prop_map(Doc::Str),
    ];
    if msgpack_only {
        prop_oneof![
            20 => common,
            1 => prop_oneof![
                select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY]).prop_map(Doc::Float),
                any::<f32>().prop_map(Doc::F32),
                proptest::collection::vec(any::<u8>(), 0..5).prop_map(Doc::Bin),
                (any::<i8>(), proptest::collection::vec(any::<u8>(), 0..18))
                    .prop_map(|(t, d)| Doc::Ext(t, d)),
                proptest::collection::vec(any::<u8>(), 0..5).prop_map(Doc::RawStr),
            ],
        ]
        .boxed()
    } else {
        prop_oneof![
            20 => common,
            1 => select(vec![
                "1e400", "-0", "1.0", "01", "1e3", "-9223372036854775809",
                "18446744073709551616", "\"\\ud800\"", "\"\\u0074ype\"", "tru", "\"\\x\"",
                "[1,]", "{\"a\" 1}", "\"ts\"", "  ",
            ])
            .prop_map(|t| Doc::RawJson(t.into())),
        ]
        .boxed()
    }
}

const MIN_TS: i64 = crate::event::MIN_TS_MS;
const MAX_TS: i64 = crate::event::MAX_TS_MS;

fn value(msgpack_only: bool) -> BoxedStrategy<Doc> {
    let keys = if msgpack_only {
        prop_oneof![20 => key(), 1 => odd_key()].boxed()
    } else {
        prop_oneof![
            9 => key(),
            1 => select(vec![r#""\u0074ype""#, r#""c\u0061ll_id""#, r#""a\"b""#])
                .prop_map(|k| Doc::RawJson(k.into())),
        ]
        .boxed()
    };
    leaf(msgpack_only)
        .prop_recursive(3, 24, 5, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Doc::Arr),
                proptest::collection::vec((keys.clone(), inner), 0..6).prop_map(Doc::Obj),
            ]
        })
        .boxed()
}

/// A map that is often a valid event: the fields of its type, mostly with good values, in
/// any order, sometimes with others, repeated keys or fields of other types.
fn event(msgpack_only: bool) -> BoxedStrategy<Doc> {
    let kinds = select(vec!["start", "answer", "hold", "resume", "end", "wrapup"]);
    kinds
        .prop_flat_map(move |kind| {
            let allowed: &[&str] = match kind {
                "start" => &["queue", "channel", "priority", "tags"],
                "answer" => &["agent"],
                "end" => &["reason"],
                _ => &[],
            };
            let p = |name: &str| match name {
                "type" | "call_id" | "ts" => 0.97,
                "queue" if kind == "start" => 0.95,
                _ if allowed.contains(&name) => 0.5,
                _ => 0.02,
            };
            let field = move |name: &'static str, good: BoxedStrategy<Doc>| {
                proptest::option::weighted(
                    p(name),
                    prop_oneof![19 => good, 1 => value(msgpack_only)]
                        .prop_map(move |v| (Doc::Str(name.into()), v)),
                )
            };
            let good_text = || "[a-z0-9-]{1,12}".prop_map(Doc::Str).boxed();
            let tags = proptest::collection::vec(
                (
                    prop_oneof![
                        9 => select(vec!["a", "b", "c", "d"]).prop_map(String::from),
                        1 => text(),
                    ]
                    .prop_map(Doc::Str),
                    prop_oneof![9 => "[a-z]{1,17}".prop_map(Doc::Str), 1 => value(msgpack_only)],
                ),
                0..6,
            )
            .prop_map(Doc::Obj)
            .boxed();
            (
                (
                    field("type", Just(Doc::Str(kind.into())).boxed()),
                    field("call_id", good_text()),
                    field(
                        "ts",
                        prop_oneof![
                            9 => (MIN_TS..MAX_TS).prop_map(Doc::Int),
                            1 => Just(Doc::Str("2026-11-22T10:00:00.250Z".into())),
                        ]
                        .boxed(),
                    ),
                    field("queue", good_text()),
                    field("channel", good_text()),
                    field("priority", (-5i64..5).prop_map(Doc::Int).boxed()),
                ),
                (
                    field("tags", tags),
                    field("agent", good_text()),
                    field(
                        "reason",
                        prop_oneof![
                            9 => select(vec!["completed", "abandoned", "callback"]),
                            1 => Just("bored"),
                        ]
                        .prop_map(|r| Doc::Str(r.into()))
                        .boxed(),
                    ),
                    proptest::option::weighted(
                        0.15,
                        proptest::collection::vec((key(), value(msgpack_only)), 1..3),
                    ),
                ),
            )
        })
        .prop_flat_map(|((a, b, c, d, e, f), (g, h, i, extra))| {
            let mut entries: Vec<(Doc, Doc)> =
                [a, b, c, d, e, f, g, h, i].into_iter().flatten().collect();
            entries.extend(extra.into_iter().flatten());
            Just(entries).prop_shuffle()
        })
        .prop_map(Doc::Obj)
        .boxed()
}

fn document(msgpack_only: bool) -> BoxedStrategy<Doc> {
    prop_oneof![
        4 => event(msgpack_only),
        3 => proptest::collection::vec(
            prop_oneof![4 => event(msgpack_only), 1 => value(msgpack_only)],
            0..7,
        )
        .prop_map(Doc::Arr),
        1 => value(msgpack_only),
    ]
    .boxed()
}

/// Sometimes breaks the encoding: cuts it, changes a byte, or appends bytes.
fn damage(mut bytes: Vec<u8>, how: Option<(u8, Index, u8)>) -> Vec<u8> {
    match how {
        None => {}
        Some((0, at, _)) => bytes.truncate(at.index(bytes.len() + 1)),
        Some((1, at, b)) if !bytes.is_empty() => {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        Some((_, _, b)) => bytes.extend([b, b]),
    }
    bytes
}

fn damage_strategy() -> impl Strategy<Value = Option<(u8, Index, u8)>> {
    proptest::option::weighted(0.3, (0u8..3, any::<Index>(), any::<u8>()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Every JSON line decodes to the same events, or the same error text, as through a `Value`.
    #[test]
    fn json_decodes_as_through_a_value(doc in document(false), how in damage_strategy()) {
        let mut line = String::new();
        json(&doc, &mut line);
        let _ = json_both(&damage(line.into_bytes(), how));
    }

    /// Every frame body decodes to the same events, or the same error text, as through a `Value`.
    #[test]
    fn msgpack_decodes_as_through_a_value(doc in document(true), how in damage_strategy()) {
        let mut body = Vec::new();
        msgpack(&doc, &mut body);
        let _ = msgpack_both(&damage(body, how));
    }

    #[test]
    fn arbitrary_bytes_decode_as_through_a_value(
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let _ = json_both(&bytes);
        let _ = msgpack_both(&bytes);
    }

    /// The length of a decodable frame's value is where the reading deserializer stopped.
    #[test]
    fn msgpack_value_len_finds_the_end(doc in document(true), tail in proptest::collection::vec(any::<u8>(), 0..3)) {
        let mut body = Vec::new();
        msgpack(&doc, &mut body);
        let len = body.len();
        body.extend(tail);
        let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(&body[..]));
        de.set_max_depth(MAX_MSGPACK_DEPTH);
        if serde::de::IgnoredAny::deserialize(&mut de).is_ok() {
            prop_assert_eq!(msgpack_value_len(&body), Some(len));
            prop_assert_eq!(de.position(), len as u64);
        }
    }
}

use serde::Deserialize;

#[test]
fn msgpack_value_len_never_overruns() {
    assert_eq!(msgpack_value_len(&[]), None);
    assert_eq!(msgpack_value_len(&[0xc0, 0xc0]), Some(1));
    assert_eq!(msgpack_value_len(&[0x92, 0x01, 0xa1, b'x', 0xc0]), Some(4));
    for huge in [0xc6, 0xc9, 0xdb, 0xdd, 0xdf] {
        assert_eq!(msgpack_value_len(&[huge, 0xff, 0xff, 0xff, 0xff, 0]), None);
    }
    assert_eq!(msgpack_value_len(&[0xd8, 0]), None);
    assert_eq!(msgpack_value_len(&[0x91, 0xc1]), None);
}

#[test]
fn realistic_events_decode() {
    let line = br#"{"call_id":"json_16conn-3-123456","channel":"voice","queue":"q12","ts":1700000000000,"type":"start"}"#;
    let limits = EventLimits::default();
    let Ok(Decoded::One(Ok(ev))) = decode_json(line, &limits, 4096) else {
        panic!("not decoded");
    };
    assert_eq!(ev.call_id, "json_16conn-3-123456");
    assert_eq!(ev.queue.as_deref(), Some("q12"));
    assert_eq!(ev.channel.as_deref(), Some("voice"));
    let body = rmp_serde::to_vec_named(&vec![ev.to_json(); 3]).unwrap();
    assert_eq!(
        decode_msgpack(&body, &limits, 4096),
        Ok(Decoded::Batch(vec![Ok(ev.clone()), Ok(ev.clone()), Ok(ev)]))
    );
}

#[test]
fn deep_nesting_is_refused_without_overflowing() {
    let limits = EventLimits::default();
    let body = vec![0x91u8; 100_000];
    assert!(decode_msgpack(&body, &limits, 4096).is_err());
    let mut body = vec![0x81, 0xa1, b'x'];
    body.extend(vec![0x91u8; 100_000]);
    assert!(msgpack_both(&body).is_err());
    let line = vec![b'['; 100_000];
    assert!(decode_json(&line, &limits, 4096).is_err());
    let mut line = br#"{"type":"hold","x":"#.to_vec();
    line.extend(vec![b'['; 100_000]);
    assert!(json_both(&line).is_err());
    // Right at the limit of the reading deserializers: the same either way.
    for depth in 125..=130 {
        let mut line = br#"{"type":"hold","x":"#.to_vec();
        line.extend(vec![b'['; depth]);
        line.extend(vec![b']'; depth]);
        line.push(b'}');
        let _ = json_both(&line);
        let mut body = vec![0x81, 0xa1, b'x'];
        body.extend(vec![0x91u8; depth]);
        body.push(0xc0);
        let _ = msgpack_both(&body);
    }
}

#[test]
fn what_only_msgpack_can_say_reads_as_through_a_value() {
    let event = |extra: &[u8]| {
        let mut body = vec![0x83 + u8::from(!extra.is_empty())];
        body.extend(b"\xa4type\xa4hold\xa7call_id\xa1c\xa2ts\xcf");
        body.extend(1_700_000_000_000u64.to_be_bytes());
        body.extend(extra);
        body
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // A NaN timestamp is null to a `Value`.
        (
            b"\x83\xa4type\xa4hold\xa7call_id\xa1c\xa2ts\xcb\x7f\xf8\0\0\0\0\0\0".to_vec(),
            "got null",
        ),
        (
            event(b"\xa1x\xc4\x01a"),
            "byte array, expected any valid JSON value",
        ),
        (event(b"\xa1x\xd4\x01a"), "newtype struct"),
        (event(b"\xa1x\xa2\xff\xfe"), "invalid utf8"),
        // The first key must be a string; a later key may be UTF-8 bytes, read as a string.
        (b"\x81\x01\xc0".to_vec(), "expected a string key"),
        (event(b"\x01\xc0"), "expected a string"),
        (event(b"\xc4\x06colour\xc0"), "unknown field `colour`"),
        (event(b"\xc4\x02\xff\xfe\xc0"), "invalid value: byte array"),
        (event(b"\xc4\x02ts\xa1x"), "field `ts`"),
        (b"\xc1".to_vec(), "malformed MessagePack"),
        (b"\x92\xc0".to_vec(), "malformed MessagePack"),
    ];
    for (body, want) in cases {
        let got = match msgpack_both(&body) {
            Err(e) => e,
            Ok(Decoded::One(Err(e))) => e.to_string(),
            other => format!("{other:?}"),
        };
        assert!(
            got.contains(want),
            "{body:02x?}: got `{got}`, wanted `{want}`"
        );
    }
}

#[test]
fn json_oddities_read_as_through_a_value() {
    let cases: [&[u8]; 9] = [
        br#"{"type":"hold","call_id":"\xff","ts":1700000000000}"#,
        b"{\"type\":\"hold\",\"call_id\":\"\xff\",\"ts\":1700000000000}",
        br#"{"\u0074ype":"hold","call_id":"c\n","ts":1700000000000}"#,
        br#"{"type":"hold","call_id":"c","ts":1700000000000.0}"#,
        br#"{"type":"hold","call_id":"c","ts":1e400}"#,
        br#"{"type":"hold","call_id":"c","ts":18446744073709551615}"#,
        br#"{"type":"hold","call_id":"c","ts":1700000000000} x"#,
        br#"{"type":"hold","call_id":"c","ts":1700000000000,"type":"end"}"#,
        br#"  "hold"  "#,
    ];
    for line in cases {
        let _ = json_both(line);
    }
}

#[test]
fn batches_over_the_limit_are_counted_not_validated() {
    let item = r#"{"type":"hold","call_id":"c","ts":1700000000000}"#;
    for n in 0..8 {
        let line = format!("[{}]", vec![item; n].join(","));
        match json_both(line.as_bytes()) {
            Ok(Decoded::Batch(items)) => assert!(n <= MAX_BATCH && items.len() == n),
            Ok(Decoded::TooLarge { events }) => assert!(n > MAX_BATCH && events == n),
            other => panic!("{n}: {other:?}"),
        }
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        let _ = msgpack_both(&rmp_serde::to_vec_named(&value).unwrap());
    }
    // Too large and malformed: malformed wins, as the whole line is read first.
    let line = format!("[{}", [item; 6].join(","));
    assert!(json_both(line.as_bytes()).is_err());
}

/// The refusal of a key given twice, as a decoded single event.
fn duplicate(field: &str) -> Decoded {
    Decoded::One(Err(EventError::Duplicate {
        field: field.into(),
    }))
}

#[test]
fn json_events_naming_a_field_twice_are_refused_naming_it() {
    let limits = EventLimits::default();
    let line = br#"{"type":"start","queue":"a","queue":"b","call_id":"c","ts":1700000000000}"#;
    assert_eq!(decode_json(line, &limits, 4096), Ok(duplicate("queue")));
    // In a batch, only that item.
    let line = br#"[{"type":"hold","call_id":"c","ts":1700000000000},
        {"type":"hold","call_id":"c","call_id":"d","ts":1700000000000}]"#;
    let Ok(Decoded::Batch(items)) = decode_json(line, &limits, 4096) else {
        panic!("not a batch");
    };
    assert!(items[0].is_ok(), "{items:?}");
    assert_eq!(
        items[1],
        Err(EventError::Duplicate {
            field: "call_id".into()
        })
    );
    // An escape spelling the same key is the same key.
    let line = br#"{"type":"hold","call_id":"c","\u0074s":1,"ts":1700000000000}"#;
    assert_eq!(decode_json(line, &limits, 4096), Ok(duplicate("ts")));
}

#[test]
fn msgpack_maps_naming_a_field_twice_are_refused_naming_it() {
    let limits = EventLimits::default();
    let mut body =
        b"\x85\xa4type\xa5start\xa5queue\xa1a\xa5queue\xa1b\xa7call_id\xa1c\xa2ts\xcf".to_vec();
    body.extend(1_700_000_000_000u64.to_be_bytes());
    assert_eq!(decode_msgpack(&body, &limits, 4096), Ok(duplicate("queue")));
    // A later key may come as UTF-8 bytes: the same key all the same.
    let mut body = b"\x84\xa4type\xa4hold\xa7call_id\xa1c\xc4\x07call_id\xa1d\xa2ts\xcf".to_vec();
    body.extend(1_700_000_000_000u64.to_be_bytes());
    assert_eq!(
        decode_msgpack(&body, &limits, 4096),
        Ok(duplicate("call_id"))
    );
}

#[test]
fn tags_naming_a_key_twice_are_refused_naming_it() {
    let limits = EventLimits::default();
    let line = br#"{"type":"start","queue":"q","call_id":"c","ts":1700000000000,"tags":{"vip":"1","tier":"a","vip":"2"}}"#;
    assert_eq!(decode_json(line, &limits, 4096), Ok(duplicate("tags.vip")));
    let mut body = b"\x85\xa4type\xa5start\xa5queue\xa1q\xa7call_id\xa1c\xa4tags\x82\xa3vip\xa11\xa3vip\xa12\xa2ts\xcf".to_vec();
    body.extend(1_700_000_000_000u64.to_be_bytes());
    assert_eq!(
        decode_msgpack(&body, &limits, 4096),
        Ok(duplicate("tags.vip"))
    );
}
