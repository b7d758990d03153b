//! Validation through both decoders: field rules and their error texts, timestamps, tags,
//! batches, key order and repeated keys.

use super::*;
use crate::ingest::decode::{decode_json, decode_msgpack, Decoded};
use serde_json::json;

const MAX_BATCH: usize = 4096;

/// Validates `v` sent as a JSON line and as a `MessagePack` frame; both must agree.
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
    let a = parse(json!({"type":"hold","call_id":"c","ts":"2026-11-22T10:00:00.250Z"})).unwrap();
    let b = parse(json!({"type":"hold","call_id":"c","ts":1_795_341_600_250i64})).unwrap();
    assert_eq!(a.ts_ms, b.ts_ms);
    let c =
        parse(json!({"type":"hold","call_id":"c","ts":"2026-11-22T11:00:00.250+01:00"})).unwrap();
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
            json!({"type":"answer","call_id":"c","ts":1_700_000_000_000i64,"tags":{"a":"b"}}),
            "`tags` is not allowed on `answer`",
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
    let v = json!({"type":"start","call_id":"c","queue":"q","ts":1_700_000_000_000i64,"tags":tags});
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
fn a_repeated_key_is_refused_naming_it_whatever_the_order() {
    let dup = |field: &str| {
        Err(EventError::Duplicate {
            field: field.into(),
        })
    };
    assert_eq!(
        parse_line(r#"{"type":"start","call_id":"c","queue":"a","queue":"b","ts":1700000000000}"#),
        dup("queue")
    );
    // A null is a value given: the key is still repeated.
    assert_eq!(
        parse_line(
            r#"{"type":"answer","agent":null,"call_id":"c","agent":"x","ts":1700000000000}"#
        ),
        dup("agent")
    );
    // Of several, the least in byte order, before any other error (here an unknown type).
    for line in [
        r#"{"type":"sleep","ts":1,"call_id":"c","ts":2,"call_id":"d"}"#,
        r#"{"call_id":"c","type":"sleep","call_id":"d","ts":1,"ts":2}"#,
    ] {
        assert_eq!(parse_line(line), dup("call_id"), "{line}");
    }
    assert_eq!(
        parse_line(
            r#"{"type":"start","call_id":"c","queue":"q","ts":1700000000000,"tags":{},"tags":{}}"#
        ),
        dup("tags")
    );
    assert_eq!(
        parse_line(r#"{"type":"start","call_id":"c","queue":"q","ts":1700000000000,"type":"end"}"#)
            .unwrap_err()
            .to_string(),
        "duplicate field `type`: each key may appear once in an object"
    );
    // An unknown key given twice is unknown, as once.
    assert_eq!(
        parse_line(r#"{"type":"hold","call_id":"c","ts":1700000000000,"x":1,"x":2}"#),
        Err(EventError::UnknownField("x".into()))
    );
}

#[test]
fn a_repeated_tag_is_refused_naming_it() {
    let line = r#"{"type":"start","call_id":"c","queue":"q","ts":1700000000000,
        "tags":{"b":"1","a":"2","b":"3","a":"4"}}"#;
    assert_eq!(
        parse_line(line),
        Err(EventError::Duplicate {
            field: "tags.a".into()
        })
    );
    // Before the count: the message is about the key, not the limit.
    let limits = EventLimits {
        max_tags: 1,
        ..EventLimits::default()
    };
    assert!(matches!(
        decode_json(line.as_bytes(), &limits, MAX_BATCH),
        Ok(Decoded::One(Err(EventError::Duplicate { .. })))
    ));
    let ev = parse_line(
        r#"{"type":"start","call_id":"c","queue":"q","ts":1700000000000,"tags":{"b":"1","a":"2"}}"#,
    )
    .unwrap();
    assert_eq!(
        ev.tags,
        vec![("a".into(), "2".into()), ("b".into(), "1".into())]
    );
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
        parse_line(r#"{"queue":"q","type":"hold","colour":1,"call_id":"c","ts":1700000000000}"#),
        Err(EventError::UnknownField("colour".into()))
    );
    assert_eq!(
        parse_line(r#"{"type":"answer","zz":1,"Zz":1,"call_id":"c","ts":1700000000000}"#),
        Err(EventError::UnknownField("Zz".into()))
    );
}

#[test]
fn control_and_bidi_characters_are_refused_naming_the_field() {
    let cases = [
        (
            json!({"type":"start","call_id":"c1","queue":"q\u{1b}]0;PWNED\u{7}","ts":1_700_000_000_000_i64}),
            "queue",
            0x1b,
            1,
        ),
        (
            json!({"type":"start","call_id":"c\r\n1","queue":"q","ts":1_700_000_000_000_i64}),
            "call_id",
            0x0d,
            1,
        ),
        (
            json!({"type":"answer","call_id":"c1","agent":"ali\u{202e}ce","ts":1_700_000_000_000_i64}),
            "agent",
            0x202e,
            3,
        ),
        (
            json!({"type":"start","call_id":"c1","queue":"q","channel":"v\u{9b}","ts":1_700_000_000_000_i64}),
            "channel",
            0x9b,
            1,
        ),
        (
            json!({"type":"start","call_id":"c1","queue":"q","tags":{"tier":"go\u{0}ld"},"ts":1_700_000_000_000_i64}),
            "tags",
            0x00,
            2,
        ),
    ];
    for (v, field, code, at) in cases {
        let err = parse(v.clone()).unwrap_err();
        match &err {
            EventError::Unprintable {
                field: f,
                code: c,
                at: a,
            } => {
                assert!(f.starts_with(field), "{v}: field {f}");
                assert_eq!((*c, *a), (code, at), "{v}");
            }
            other => panic!("{v}: {other}"),
        }
        let text = err.to_string();
        assert!(text.contains(field) && text.contains("printable"), "{text}");
        assert!(!text.chars().any(crate::printable::is_refused), "{text:?}");
    }
    // Printable names in any script still pass.
    parse(json!({"type":"start","call_id":"c1","queue":"support-日本","channel":"chat","ts":1_700_000_000_000_i64})).unwrap();
}

#[test]
fn an_end_may_say_how_it_ended_in_tags() {
    let e = parse(json!({"type":"end","call_id":"c","ts":1_700_000_000_000i64,
        "reason":"completed","tags":{"hangup":"caller"}}))
    .expect("tags on end are accepted");
    assert_eq!(e.tags, [("hangup".to_string(), "caller".to_string())]);
}

#[test]
fn callback_events_default_to_reached_and_name_a_bad_outcome() {
    let ts = 1_700_000_000_000i64;
    let ev = parse(json!({"type":"callback","call_id":"c1","ts":ts})).unwrap();
    assert_eq!(ev.kind, EventKind::Callback);
    assert_eq!(ev.outcome, Some(CallbackOutcome::Reached));
    for (text, want) in [
        ("reached", CallbackOutcome::Reached),
        ("no_answer", CallbackOutcome::NoAnswer),
        ("cancelled", CallbackOutcome::Cancelled),
    ] {
        let ev = parse(json!({"type":"callback","call_id":"c1","ts":ts,"outcome":text})).unwrap();
        assert_eq!(ev.outcome, Some(want));
        assert_eq!(parse(ev.to_json()).unwrap(), ev, "round trip of {text}");
    }
    let err = parse(json!({"type":"callback","call_id":"c1","ts":ts,"outcome":"maybe"}))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("field `outcome`") && err.contains("maybe"),
        "{err}"
    );
    let err = parse(json!({"type":"callback","call_id":"c1","ts":ts,"outcome":3}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("field `outcome`"), "{err}");
    let err = parse(json!({"type":"end","call_id":"c1","ts":ts,"outcome":"reached"}))
        .unwrap_err()
        .to_string();
    assert_eq!(err, "field `outcome` is not allowed on `end` events");
    let err = parse(json!({"type":"callback","call_id":"c1","ts":ts,"reason":"callback"}))
        .unwrap_err()
        .to_string();
    assert_eq!(err, "field `reason` is not allowed on `callback` events");
    let err = parse(json!({"type":"callback","ts":ts}))
        .unwrap_err()
        .to_string();
    assert_eq!(err, "missing field `call_id`");
}

#[test]
fn events_serialized_before_outcome_existed_still_read() {
    let old = json!({"call_id":"c","kind":"end","ts_ms":1_700_000_000_000i64,"queue":null,
        "channel":null,"priority":null,"tags":[],"agent":null,"reason":"callback"});
    let ev: Event = serde_json::from_value(old).unwrap();
    assert_eq!(ev.reason, Some(EndReason::Callback));
    assert_eq!(ev.outcome, None);
}
