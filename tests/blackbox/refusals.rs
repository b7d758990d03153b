//! Bad input (malformed JSON, unknown types and fields, missing fields, lines, strings and frames
//! over the limits) gets an error naming the cause, and harms no other event or connection.

use serde_json::{json, Value};

use crate::start_line;
use crate::support::{assert_refused, now_ms, ok, Daemon, PackConn};

#[test]
fn bad_input_gets_an_error_naming_the_cause_and_harms_no_other_connection() {
    let d = Daemon::start("[limits]\nmax_line_bytes = 1024\nmax_frame_bytes = 1024\n");
    let mut bad = d.json_conn();
    // Opened before any bad input, used after each one.
    let mut other = d.json_conn();
    let mut accepted: Vec<String> = Vec::new();
    let mut n = 0;
    let mut next_id = |prefix: &str| {
        n += 1;
        format!("{prefix}{n}")
    };
    let ts = now_ms() - 1000;
    let long_line = json!({"type": "start", "call_id": "long", "queue": "q", "ts": ts,
        "tags": {"note": "x".repeat(100)}, "priority": 1, "channel": "voice",
    })
    .to_string()
        + &" ".repeat(1100);
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "malformed JSON",
            r#"{"type":"start","call_id":"#.to_string(),
            &["JSON"],
        ),
        (
            "unknown type",
            json!({"type": "teleport", "call_id": "u1", "ts": ts}).to_string(),
            &["type", "teleport"],
        ),
        (
            "start without queue",
            json!({"type": "start", "call_id": "m1", "ts": ts}).to_string(),
            &["queue"],
        ),
        ("line over the limit", long_line, &["max_line_bytes"]),
        (
            "call_id over max_string_bytes",
            json!({"type": "start", "call_id": "c".repeat(200), "queue": "q", "ts": ts})
                .to_string(),
            &["call_id", "max_string_bytes"],
        ),
        (
            "unknown field",
            json!({"type": "start", "call_id": "f1", "queue": "q", "ts": ts, "colour": "red"})
                .to_string(),
            &["colour"],
        ),
    ];
    let refused_lines = cases.len();
    for (what, line, needles) in &cases {
        let reply = bad.request(line);
        assert_refused(&reply, needles, what);
        // The same connection goes on...
        let id = next_id("s");
        assert_eq!(
            bad.request(&start_line(&id)),
            ok(),
            "after {what}, same connection"
        );
        accepted.push(id);
        // ...and so does the other one.
        let id = next_id("o");
        assert_eq!(
            other.request(&start_line(&id)),
            ok(),
            "after {what}, other connection"
        );
        accepted.push(id);
    }

    // A batch with one bad item: that index is reported, the good one is stored.
    let good = next_id("b");
    let batch = json!([
        serde_json::from_str::<Value>(&start_line(&good)).expect("valid JSON"),
        {"type": "start", "call_id": "nq", "ts": ts},
    ]);
    let reply = bad.request(&batch.to_string());
    assert_eq!(reply["ok"], json!(false), "{reply}");
    let failed: Vec<u64> = reply["failed"]
        .as_array()
        .unwrap_or_else(|| panic!("batch reply without `failed`: {reply}"))
        .iter()
        .map(|f| f["index"].as_u64().expect("failed item index"))
        .collect();
    assert_eq!(failed, vec![1], "{reply}");
    assert!(
        reply["failed"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("queue")),
        "{reply}"
    );
    accepted.push(good);

    // A MessagePack frame over max_frame_bytes: error reply naming the limit, then the close.
    let mut framed = d.pack_conn();
    assert_eq!(
        framed.request(&serde_json::from_str(&start_line("p1")).expect("valid JSON")),
        ok()
    );
    accepted.push("p1".into());
    framed.send_raw(&100_000u32.to_be_bytes());
    let reply = framed.reply();
    assert_refused(&reply, &["max_frame_bytes"], "frame over the limit");
    assert_eq!(
        framed.read_to_close(),
        0,
        "nothing may follow the framing error"
    );
    let id = next_id("o");
    assert_eq!(
        other.request(&start_line(&id)),
        ok(),
        "after the framing error"
    );
    accepted.push(id);
    let mut fresh = PackConn::connect(&d.events);
    let id = next_id("p");
    assert_eq!(
        fresh.request(&serde_json::from_str(&start_line(&id)).expect("valid JSON")),
        ok()
    );
    accepted.push(id);

    // Exactly the accepted starts are open calls; nothing refused slipped in.
    let mut open: Vec<String> = d
        .calls()
        .iter()
        .map(|c| c["call_id"].as_str().expect("call_id").to_string())
        .collect();
    open.sort();
    accepted.sort();
    assert_eq!(open, accepted);

    // `status` counts every refusal: the bad lines, the bad batch item, the oversized frame.
    let status = d.status();
    let ingest = &status["ingest"];
    let rejected: u64 = ingest["events_rejected"]
        .as_object()
        .unwrap_or_else(|| panic!("status without ingest.events_rejected: {status}"))
        .values()
        .map(|v| v.as_u64().expect("count"))
        .sum();
    assert_eq!(rejected, refused_lines as u64 + 2, "{ingest}");
    assert_eq!(ingest["framing_errors"], json!(1), "{ingest}");
    assert_eq!(
        ingest["events_accepted"].as_u64(),
        Some(accepted.len() as u64),
        "{ingest}"
    );
}
