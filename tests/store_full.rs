//! A full store refuses new events with a reply naming `store.max_bytes`, and loses nothing it
//! acknowledged before, across a restart too.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{now_ms, Daemon};

/// Offered calls over the last 24 hours, all queues.
fn offered(d: &Daemon) -> u64 {
    d.metrics("24h", "all")[0]["offered"].as_u64().unwrap_or(0)
}

#[test]
fn a_full_store_refuses_events_and_keeps_what_it_acknowledged() {
    // The smallest cap allowed; checkpoints often, so the log is folded and trimmed as it goes.
    let mut d = Daemon::start(
        "max_bytes = 16777216\ncheckpoint_events = 20000\n[limits]\nmax_batch_events = 1000\nmax_line_bytes = 1048576\n",
    );
    let mut conn = d.json_conn();
    let base = now_ms() - 30 * 60_000;
    let (mut acked, mut refusal): (u64, Option<Value>) = (0, None);
    let started = Instant::now();
    let mut n = 0u64;
    // Complete abandoned calls, 500 per line, until the store says it is full.
    while refusal.is_none() && started.elapsed() < Duration::from_secs(120) && n < 2_000_000 {
        let batch: Vec<Value> = (0..500)
            .flat_map(|i| {
                let id = format!("call-{n}-{i}-padding-to-make-the-stored-event-a-little-larger");
                let ts = base + ((n * 500 + i) % 1_500_000) as i64;
                [
                    json!({"type":"start","call_id":id,"queue":"q","ts":ts}),
                    json!({"type":"end","call_id":id,"ts":ts + 1000,"reason":"abandoned"}),
                ]
            })
            .collect();
        n += 1;
        let reply = conn.request(&Value::Array(batch).to_string());
        acked += reply["accepted"].as_u64().unwrap_or(0) / 2;
        if reply["ok"] != json!(true) {
            refusal = Some(reply);
        }
    }
    let refusal = refusal.expect("the store never reported full within the time limit");
    assert!(
        refusal.to_string().contains("store.max_bytes"),
        "refusal does not name the limit: {refusal}"
    );
    // Nothing acknowledged is lost, nothing refused is counted.
    assert_eq!(offered(&d), acked, "offered calls vs acknowledged calls");
    let status = d.status();
    assert!(
        status["ingest"]["events_rejected"]["store_full"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "status does not count store_full refusals: {status}"
    );
    // A single new event is refused as well, and changes nothing.
    let one = conn
        .request(&json!({"type":"start","call_id":"late","queue":"q","ts":now_ms()}).to_string());
    assert_eq!(one["ok"], json!(false), "{one}");
    d.terminate();
    d.restart();
    assert_eq!(offered(&d), acked, "after a restart");
}
