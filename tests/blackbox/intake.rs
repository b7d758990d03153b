//! The scenario sent as JSON lines and as `MessagePack` frames and batches: every event accepted,
//! every figure as the model says, and the same rows from both framings.

use serde_json::{json, Value};

use crate::model::{assert_all_metrics, stable};
use crate::scenario::{base_now, events, scenario};
use crate::support::{ok, Daemon};
use crate::CONFIG;

/// Sends the scenario as JSON lines on one connection, pipelined; every reply must be `{"ok":true}`.
pub fn send_json(d: &Daemon, events: &[Value]) {
    let mut conn = d.json_conn();
    for e in events {
        conn.send(&e.to_string());
    }
    for (i, e) in events.iter().enumerate() {
        let reply = conn.reply();
        assert_eq!(reply, ok(), "reply {i} (to {e})");
    }
}

#[test]
fn json_lines_give_the_metrics_of_design_section_3() {
    let d = Daemon::start(CONFIG);
    let calls = scenario();
    let evs = events(&calls, base_now());
    send_json(&d, &evs);
    assert_all_metrics(&d, &calls);

    // An exact duplicate (same call, type and ts) is accepted and changes nothing.
    let mut conn = d.json_conn();
    assert_eq!(
        conn.request(&evs[0].to_string()),
        ok(),
        "duplicate of {}",
        evs[0]
    );
    assert_eq!(
        conn.request(&evs[3].to_string()),
        ok(),
        "duplicate of {}",
        evs[3]
    );
    assert_all_metrics(&d, &calls);

    // The waiting call is the only open segment.
    let open: Vec<Value> = d.calls().iter().map(|c| c["call_id"].clone()).collect();
    assert_eq!(open, vec![json!("w1")]);
}

#[test]
fn messagepack_frames_and_batches_give_the_same_metrics_as_json() {
    let calls = scenario();
    let base = base_now();
    let evs = events(&calls, base);

    let packed = Daemon::start(CONFIG);
    let mut conn = packed.pack_conn();
    // Alternate single maps and array batches of 2..4 events, pipelined; then read the replies.
    let mut frames: Vec<Value> = Vec::new();
    let mut rest: &[Value] = &evs;
    for size in [1, 3, 1, 2, 4].iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (now, later) = rest.split_at((*size).min(rest.len()));
        rest = later;
        frames.push(if *size == 1 {
            now[0].clone()
        } else {
            Value::Array(now.to_vec())
        });
    }
    assert!(frames.iter().any(Value::is_array) && frames.iter().any(Value::is_object));
    for f in &frames {
        conn.send(f);
    }
    for (i, f) in frames.iter().enumerate() {
        let reply = conn.reply();
        match f {
            Value::Array(items) => {
                assert_eq!(reply["ok"], json!(true), "reply {i} to batch {f}: {reply}");
                assert!(reply.get("error").is_none(), "reply {i}: {reply}");
                if let Some(n) = reply.get("accepted") {
                    assert_eq!(n.as_u64(), Some(items.len() as u64), "reply {i}: {reply}");
                }
            }
            _ => assert_eq!(reply, ok(), "reply {i} to {f}"),
        }
    }
    let packed_rows = assert_all_metrics(&packed, &calls);

    // The same events as JSON lines on another daemon: the same rows, figure for figure.
    let json_fed = Daemon::start(CONFIG);
    send_json(&json_fed, &evs);
    let json_rows = assert_all_metrics(&json_fed, &calls);
    for (p, j) in packed_rows.iter().zip(&json_rows) {
        assert_eq!(stable(p), stable(j));
    }
}
