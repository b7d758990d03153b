//! Driving the daemon: its config, sending calls, waiting until they are folded and shipped, and
//! checking the envelopes and records the receiver got.

use std::collections::{BTreeMap, BTreeSet};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::calls::{Call, Totals};
use crate::support::http::Request;
use crate::support::{json_of, Daemon};
use crate::{HOST, POLL, SHIP_DEADLINE, SINK};

/// The daemon config (appended after `[store]`): an interval closes a minute after it ends, one
/// sink with short timeouts and small batches.
pub fn config(url: &str, kind: &str, format: &str, gzip: bool) -> String {
    config_as(HOST, url, kind, format, gzip)
}

/// [`config`] for a daemon whose `upstream.host_id` is `host`.
pub fn config_as(host: &str, url: &str, kind: &str, format: &str, gzip: bool) -> String {
    format!(
        r#"
[metrics]
wrapup_timeout = "3s"

[upstream]
host_id = "{host}"
close_after = "1m"

[[upstream.sinks]]
name = "{SINK}"
kind = "{kind}"
url = "{url}"
format = "{format}"
gzip = {gzip}
connect_timeout = "500ms"
request_timeout = "500ms"
backoff_cap = "1s"
linger = "100ms"
batch_records = 5
"#
    )
}

/// Polls `probe` until it gives a value; panics with `what` and the daemon log at the deadline.
pub fn wait_for<T>(
    d: &Daemon,
    what: &str,
    limit: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(last) => {
                assert!(Instant::now() < deadline,
                    "timed out after {limit:?} waiting for {what}; last seen: {last}\ndaemon log:\n{}",
                    d.log_tail()
                );
            }
        }
        thread::sleep(POLL);
    }
}

/// Sends every call's events as one batch per call and checks each is accepted.
pub fn send_calls(d: &Daemon, calls: &[Call]) -> usize {
    let mut conn = d.json_conn();
    let mut n = 0;
    for chunk in calls.chunks(50) {
        for c in chunk {
            conn.send(&Value::Array(c.events()).to_string());
        }
        for c in chunk {
            let reply = conn.reply();
            let want = c.events().len();
            assert_eq!(
                reply,
                json!({"ok": true, "accepted": want}),
                "events of call {c:?}"
            );
            n += want;
        }
    }
    n
}

/// Waits until the engine has taken `events` events in all and folded every call (no open calls
/// left), so the interval buckets are final and a flush ships them whole.
pub fn wait_settled(d: &Daemon, events: u64) {
    wait_for(d, "every call to be folded", SHIP_DEADLINE, || {
        let st = d.status();
        let engine = &st["engine"];
        if engine["accepted"].as_u64() == Some(events) && engine["open_calls"].as_u64() == Some(0) {
            Ok(())
        } else {
            Err(format!("engine {engine}"))
        }
    });
}

/// `metrics --json --window 24h --by queue`, as totals per queue.
pub fn agent_by_queue(d: &Daemon) -> BTreeMap<String, Totals> {
    d.metrics("24h", "queue")
        .iter()
        .map(|row| {
            let q = row["queue"]
                .as_str()
                .unwrap_or_else(|| panic!("queue row without queue: {row}"));
            (q.to_string(), Totals::from_json(row))
        })
        .collect()
}

/// `callmetrics flush`; returns what it printed.
pub fn flush(d: &Daemon) -> String {
    let out = d.query(&["flush"]);
    assert!(
        out.status.success(),
        "flush failed with {}: {}{}\ndaemon log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        d.log_tail()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `callmetrics outbox --json`.
pub fn outbox(d: &Daemon) -> Vec<Value> {
    match json_of("outbox --json", &d.query(&["outbox", "--json"])) {
        Value::Array(entries) => entries,
        other => panic!("outbox --json printed {other}, not an array"),
    }
}

/// This test's sink in `status --json`.
pub fn sink_status(d: &Daemon) -> Value {
    let st = d.status();
    let sinks = st["upstream"]["sinks"]
        .as_array()
        .unwrap_or_else(|| panic!("status has no upstream.sinks: {st}"));
    sinks
        .iter()
        .find(|s| s["name"] == SINK)
        .cloned()
        .unwrap_or_else(|| panic!("sink `{SINK}` is not in status: {st}"))
}

/// Waits until the sink's backlog is empty; returns its status then.
pub fn wait_delivered(d: &Daemon) -> Value {
    wait_for(d, "the sink's backlog to reach 0", SHIP_DEADLINE, || {
        let s = sink_status(d);
        if s["backlog_records"].as_u64() == Some(0) {
            Ok(s)
        } else {
            Err(s.to_string())
        }
    })
}

pub fn u64_field(v: &Value, name: &str) -> u64 {
    v[name]
        .as_u64()
        .unwrap_or_else(|| panic!("`{name}` is not an unsigned integer in {v}"))
}

/// The records of a request's envelope (`{"host_id", "batch_key", "records"}`, JSON or `MessagePack`).
fn records_of(req: &Request) -> Vec<Value> {
    let env = req.json();
    match env["records"].as_array() {
        Some(r) => r.clone(),
        None => panic!("an envelope without records: {env}"),
    }
}

/// Checks the envelope and headers of every request, and returns the records of those answered
/// `pred`, deduplicated by `idempotency_key` (copies must be identical).
pub fn checked_records(
    reqs: &[Request],
    content_type: &str,
    gzip: bool,
    pred: impl Fn(&Request) -> bool,
) -> BTreeMap<String, Value> {
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    for (i, req) in reqs.iter().enumerate() {
        assert_eq!(req.method, "POST", "request {i}");
        assert_eq!(req.target, "/ingest", "request {i}");
        assert_eq!(
            req.header("content-type"),
            Some(content_type),
            "request {i}"
        );
        assert_eq!(
            req.header("content-encoding"),
            gzip.then_some("gzip"),
            "request {i}"
        );
        let env = req.json();
        assert_eq!(env["host_id"], HOST, "request {i}: {env}");
        let records = records_of(req);
        assert!(
            !records.is_empty() && records.len() <= 5,
            "request {i}: {} records in a batch of at most 5",
            records.len()
        );
        let seqs: Vec<u64> = records.iter().map(|r| u64_field(r, "seq")).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "request {i}: seqs not increasing: {seqs:?}"
        );
        let key = format!("{HOST}:{}-{}", seqs[0], seqs[seqs.len() - 1]);
        assert_eq!(env["batch_key"], key.as_str(), "request {i}");
        assert_eq!(
            req.header("idempotency-key"),
            Some(key.as_str()),
            "request {i}"
        );
        for r in &records {
            let seq = u64_field(r, "seq");
            assert_eq!(r["host_id"], HOST, "{r}");
            assert_eq!(r["idempotency_key"], format!("{HOST}:{seq}"), "{r}");
            assert!(
                r["kind"] == "interval" || r["kind"] == "correction",
                "kind of {r}"
            );
        }
        for r in records {
            let k = r["idempotency_key"].as_str().expect("a key").to_string();
            if let Some(prev) = out.get(&k) {
                assert_eq!(
                    prev, &r,
                    "two different records under one idempotency_key {k}"
                );
            }
            if pred(req) {
                out.insert(k, r);
            }
        }
    }
    out
}

pub fn seqs_of(records: &BTreeMap<String, Value>) -> BTreeSet<u64> {
    records.values().map(|r| u64_field(r, "seq")).collect()
}
