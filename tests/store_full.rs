//! A full store refuses new events with a reply naming `store.max_bytes`, keeps the bytes on disk
//! within 10 % of the cap, loses nothing it acknowledged, across a restart too, and takes events
//! again by itself once a checkpoint has folded the log away.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{dir_bytes, now_ms, Daemon};

/// Offered calls over the last 24 hours, all queues.
fn offered(d: &Daemon) -> u64 {
    d.metrics("24h", "all")[0]["offered"].as_u64().unwrap_or(0)
}

#[test]
fn a_full_store_refuses_events_and_keeps_what_it_acknowledged() {
    // The smallest cap allowed; a checkpoint every 3 s folds the log away. Starts carry eight
    // long tags (kept in the log, not in the aggregates), so the log fills the store quickly.
    let mut d = Daemon::start(
        "max_bytes = 16777216\ncheckpoint_events = 100000000\ncheckpoint_interval = \"3s\"\n[limits]\nmax_batch_events = 1000\nmax_line_bytes = 4194304\n",
    );
    let store = d.dir.path().join("store");
    let cap = 16u64 << 20;
    // The largest the store ever gets on disk, sampled every 20 ms while the test runs.
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, stop, store) = (peak.clone(), stop.clone(), store.clone());
        std::thread::spawn(move || {
            let t0 = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let b = dir_bytes(&store);
                if b > peak.fetch_max(b, std::sync::atomic::Ordering::SeqCst) {
                    eprintln!("PEAK {:?} {b}", t0.elapsed());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
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
                let tags: serde_json::Map<String, Value> = (0..8)
                    .map(|t| {
                        (
                            format!("tag{t}"),
                            json!(format!("{id}-{t}-{}", "x".repeat(40))),
                        )
                    })
                    .collect();
                [
                    json!({"type":"start","call_id":id,"queue":"q","ts":ts,"tags":tags}),
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
    // The cap bounds the bytes on disk, within 10 %.
    let on_disk = dir_bytes(&store);
    assert!(
        on_disk <= cap + cap / 10,
        "{on_disk} bytes on disk with a cap of {cap}"
    );
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
    // Checkpoints fold the log away; once that has freed room, intake resumes by itself.
    let waited = Instant::now();
    let resumed = loop {
        let reply = conn.request(
            &json!({"type":"start","call_id":"after","queue":"q","ts":now_ms()}).to_string(),
        );
        if reply["ok"] == json!(true) {
            break true;
        }
        if waited.elapsed() > Duration::from_secs(30) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        resumed,
        "intake did not resume within 30 s: {}\n{}",
        d.status(),
        d.log_tail()
    );
    assert!(dir_bytes(&store) <= cap + cap / 10, "after intake resumed");
    d.terminate();
    d.restart();
    assert_eq!(offered(&d), acked, "after a restart");
    assert_eq!(d.calls().len(), 1, "the call taken after intake resumed");
    assert!(dir_bytes(&store) <= cap + cap / 10, "after a restart");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    sampler.join().expect("the sampler");
    let peak = peak.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        peak <= cap + cap / 10,
        "the store took {peak} bytes on disk at its largest, cap {cap}"
    );
}
