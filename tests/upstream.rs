//! Upstream shipping, end to end: the real daemon closes past intervals into records and ships
//! them to the scripted receiver of `support::http` (a real HTTP/1.1 server injecting faults) or
//! to a real `VictoriaMetrics`. Each test checks what arrived against the agent's own figures and
//! against figures computed independently from the calls it sent.
//!
//! Every wait polls with a deadline; a missing prerequisite (the `victoria-metrics` binary) fails
//! the test with instructions instead of skipping it.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::http::{Action, Receiver, Request};
use support::{json_of, now_ms, Daemon};

/// The `upstream.host_id` of every daemon here.
const HOST: &str = "pbx-test-01";
/// The sink's name in every config here.
const SINK: &str = "central";
/// `metrics.interval` (the default).
const INTERVAL_MS: i64 = 900_000;
/// How long shipping may take once records are in the outbox (retries included).
const SHIP_DEADLINE: Duration = Duration::from_secs(30);
/// Poll period of every wait.
const POLL: Duration = Duration::from_millis(50);
/// Where the Debian package installs `VictoriaMetrics`.
const VICTORIA_METRICS: &str = "/usr/bin/victoria-metrics";

// ---------------------------------------------------------------------------------------------
// Calls, their events, and the figures they must produce (computed here, independently).
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Outcome {
    Answered {
        /// Talk time (excluding hold).
        talk: i64,
        /// Hold: offset after the answer, length.
        hold: Option<(i64, i64)>,
        /// After-call work; `None` = no wrap-up event (completes at the end, after the timeout).
        acw: Option<i64>,
    },
    Abandoned,
    /// Left the queue unanswered with reason `timeout`.
    Overflow,
}

#[derive(Debug, Clone)]
struct Call {
    id: String,
    queue: String,
    start: i64,
    wait: i64,
    outcome: Outcome,
}

impl Call {
    /// When the call left the queue (answer, abandon or overflow): where its queue figures count.
    fn leave(&self) -> i64 {
        self.start + self.wait
    }

    fn end(&self) -> i64 {
        match &self.outcome {
            Outcome::Answered { talk, hold, .. } => {
                self.leave() + talk + hold.map_or(0, |(_, len)| len)
            }
            _ => self.leave(),
        }
    }

    /// When an answered call completed (wrap-up, else end): where its handle figures count.
    fn completion(&self) -> Option<i64> {
        match &self.outcome {
            Outcome::Answered { acw, .. } => Some(self.end() + acw.unwrap_or(0)),
            _ => None,
        }
    }

    fn events(&self) -> Vec<Value> {
        let mut out = vec![json!({
            "type": "start", "call_id": self.id, "queue": self.queue, "ts": self.start
        })];
        match &self.outcome {
            Outcome::Answered { hold, acw, .. } => {
                let answer = self.leave();
                out.push(json!({
                    "type": "answer", "call_id": self.id, "agent": format!("agent-{}", self.queue), "ts": answer
                }));
                if let Some((off, len)) = hold {
                    out.push(json!({"type": "hold", "call_id": self.id, "ts": answer + off}));
                    out.push(
                        json!({"type": "resume", "call_id": self.id, "ts": answer + off + len}),
                    );
                }
                out.push(json!({"type": "end", "call_id": self.id, "ts": self.end()}));
                if let Some(acw) = acw {
                    out.push(json!({"type": "wrapup", "call_id": self.id, "ts": self.end() + acw}));
                }
            }
            Outcome::Abandoned => out.push(json!({
                "type": "end", "call_id": self.id, "ts": self.end(), "reason": "abandoned"
            })),
            Outcome::Overflow => out.push(json!({
                "type": "end", "call_id": self.id, "ts": self.end(), "reason": "timeout"
            })),
        }
        out
    }
}

/// Start of the interval holding `ts` (UTC, the default time zone).
fn interval_of(ts: i64) -> i64 {
    ts - ts.rem_euclid(INTERVAL_MS)
}

/// Start of the interval `k` intervals before the current one.
fn past_interval(k: i64) -> i64 {
    interval_of(now_ms()) - k * INTERVAL_MS
}

/// Random calls starting in each of `intervals`, `per_interval` each, over `queues`. With
/// `contained`, every event of a call stays inside the interval it starts in; otherwise a call
/// may leave the queue or complete in the next interval.
fn make_calls(
    prefix: &str,
    seed: u64,
    queues: &[&str],
    intervals: &[i64],
    per_interval: usize,
    contained: bool,
) -> Vec<Call> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::new();
    for &iv in intervals {
        for i in 0..per_interval {
            let queue = if i < queues.len() {
                queues[i]
            } else {
                queues[rng.usize(0..queues.len())]
            };
            let (start_span, wait_max, talk_max, acw_max) = if contained {
                (600_000, 60_000, 120_000, 30_000)
            } else {
                (INTERVAL_MS - 1, 90_000, 300_000, 60_000)
            };
            let start = iv + rng.i64(0..start_span);
            let wait = rng.i64(0..wait_max);
            let outcome = match rng.u8(0..10) {
                0..=5 => {
                    let talk = rng.i64(1_000..talk_max);
                    let hold =
                        (rng.u8(0..3) == 0).then(|| (rng.i64(0..talk), rng.i64(1_000..30_000)));
                    let acw = (rng.u8(0..4) != 0).then(|| rng.i64(0..acw_max));
                    Outcome::Answered { talk, hold, acw }
                }
                6..=8 => Outcome::Abandoned,
                _ => Outcome::Overflow,
            };
            out.push(Call {
                id: format!("{prefix}-{}-{i}", out.len()),
                queue: queue.to_string(),
                start,
                wait,
                outcome,
            });
        }
    }
    out
}

/// The counters and sums compared between calls, the agent and the receivers.
const FIELDS: [&str; 10] = [
    "offered",
    "answered",
    "abandoned",
    "overflow",
    "handled",
    "wait_sum_ms",
    "abandon_wait_sum_ms",
    "talk_sum_ms",
    "hold_sum_ms",
    "acw_sum_ms",
];

#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Totals([u64; FIELDS.len()]);

impl fmt::Debug for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(FIELDS.iter().zip(self.0.iter()))
            .finish()
    }
}

impl Totals {
    /// From a record or a metrics row: every field must be there, as an integer.
    fn from_json(v: &Value) -> Totals {
        let mut t = Totals::default();
        for (i, name) in FIELDS.iter().enumerate() {
            t.0[i] = v[name]
                .as_u64()
                .unwrap_or_else(|| panic!("`{name}` is not an unsigned integer in {v}"));
        }
        t
    }

    fn get(&self, name: &str) -> u64 {
        let i = FIELDS
            .iter()
            .position(|f| *f == name)
            .expect("a known field");
        self.0[i]
    }

    fn add(&mut self, name: &str, n: u64) {
        let i = FIELDS
            .iter()
            .position(|f| *f == name)
            .expect("a known field");
        self.0[i] += n;
    }

    fn plus(mut self, o: &Totals) -> Totals {
        for (a, b) in self.0.iter_mut().zip(o.0.iter()) {
            *a += b;
        }
        self
    }

    fn minus(mut self, o: &Totals) -> Totals {
        for (i, (a, b)) in self.0.iter_mut().zip(o.0.iter()).enumerate() {
            *a = a
                .checked_sub(*b)
                .unwrap_or_else(|| panic!("`{}`: {a} - {b} is negative", FIELDS[i]));
        }
        self
    }
}

/// (queue, interval start) → totals.
type ByInterval = BTreeMap<(String, i64), Totals>;

/// What the calls must add up to, per queue and interval, by the documented attribution: queue
/// figures where the call left the queue, handle figures where it completed.
fn expected(calls: &[Call]) -> ByInterval {
    let mut out = ByInterval::new();
    for c in calls {
        let leave = out
            .entry((c.queue.clone(), interval_of(c.leave())))
            .or_default();
        leave.add("offered", 1);
        let wait = c.wait as u64;
        match &c.outcome {
            Outcome::Answered { .. } => {
                leave.add("answered", 1);
                leave.add("wait_sum_ms", wait);
            }
            Outcome::Abandoned => {
                leave.add("abandoned", 1);
                leave.add("abandon_wait_sum_ms", wait);
            }
            Outcome::Overflow => leave.add("overflow", 1),
        }
        if let (Some(done), Outcome::Answered { talk, hold, acw }) = (c.completion(), &c.outcome) {
            let h = out.entry((c.queue.clone(), interval_of(done))).or_default();
            h.add("handled", 1);
            h.add("talk_sum_ms", *talk as u64);
            h.add("hold_sum_ms", hold.map_or(0, |(_, len)| len) as u64);
            h.add("acw_sum_ms", acw.unwrap_or(0) as u64);
        }
    }
    out
}

fn per_queue(m: &ByInterval) -> BTreeMap<String, Totals> {
    let mut out: BTreeMap<String, Totals> = BTreeMap::new();
    for ((q, _), t) in m {
        let e = out.entry(q.clone()).or_default();
        *e = e.plus(t);
    }
    out
}

/// Record JSON (http sink) summed per queue and interval.
fn records_by_interval<'a>(records: impl IntoIterator<Item = &'a Value>) -> ByInterval {
    let mut out = ByInterval::new();
    for r in records {
        assert_eq!(r["dimension"], "queue", "{r}");
        let q = r["queue"]
            .as_str()
            .unwrap_or_else(|| panic!("record without queue: {r}"))
            .to_string();
        let iv = r["interval_start_ms"]
            .as_i64()
            .unwrap_or_else(|| panic!("record without interval_start_ms: {r}"));
        assert_eq!(r["interval_ms"], INTERVAL_MS, "{r}");
        assert_eq!(iv, interval_of(iv), "interval start not aligned: {r}");
        let e = out.entry((q, iv)).or_default();
        *e = e.plus(&Totals::from_json(r));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Driving the daemon.
// ---------------------------------------------------------------------------------------------

/// The daemon config (appended after `[store]`): an interval closes a minute after it ends, one
/// sink with short timeouts and small batches.
fn config(url: &str, kind: &str, format: &str, gzip: bool) -> String {
    format!(
        r#"
[metrics]
wrapup_timeout = "3s"

[upstream]
host_id = "{HOST}"
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
fn wait_for<T>(
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
fn send_calls(d: &Daemon, calls: &[Call]) -> usize {
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
fn wait_settled(d: &Daemon, events: u64) {
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
fn agent_by_queue(d: &Daemon) -> BTreeMap<String, Totals> {
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
fn flush(d: &Daemon) -> String {
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
fn outbox(d: &Daemon) -> Vec<Value> {
    match json_of("outbox --json", &d.query(&["outbox", "--json"])) {
        Value::Array(entries) => entries,
        other => panic!("outbox --json printed {other}, not an array"),
    }
}

/// This test's sink in `status --json`.
fn sink_status(d: &Daemon) -> Value {
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
fn wait_delivered(d: &Daemon) -> Value {
    wait_for(d, "the sink's backlog to reach 0", SHIP_DEADLINE, || {
        let s = sink_status(d);
        if s["backlog_records"].as_u64() == Some(0) {
            Ok(s)
        } else {
            Err(s.to_string())
        }
    })
}

fn u64_field(v: &Value, name: &str) -> u64 {
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
fn checked_records(
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

fn seqs_of(records: &BTreeMap<String, Value>) -> BTreeSet<u64> {
    records.values().map(|r| u64_field(r, "seq")).collect()
}

// ---------------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------------

#[test]
fn faults_then_every_record_exactly_once_after_dedupe() {
    let refusal = "{\"error\":\"records[0].offered: expected a string\"}";
    let rx = Receiver::standalone(
        vec![
            Action::status(500, "boom"),
            Action::status(503, "maintenance"),
            // Longer than backoff_cap, so only honouring it explains the gap before the next try.
            Action::status(429, "slow down").with_header("Retry-After", "2"),
            Action::Hang(Duration::from_secs(3)),
            Action::Reset,
            Action::status(400, refusal),
        ],
        Action::status(200, ""),
    );
    let d = Daemon::start(&config(&rx.url("/ingest"), "http", "json", true));

    let queues = ["sales", "support", "billing"];
    let intervals: Vec<i64> = (4..=11).map(past_interval).collect();
    let calls = make_calls("faults", 11, &queues, &intervals, 6, false);
    let events = send_calls(&d, &calls);
    wait_settled(&d, events as u64);
    let want = expected(&calls);
    let agent = agent_by_queue(&d);
    assert_eq!(
        agent,
        per_queue(&want),
        "the agent's 24h figures differ from the calls sent"
    );

    flush(&d);
    let st = wait_delivered(&d);
    let reqs = rx.requests();

    // The faults and the refusal all hit the first batch, resent unchanged; then 200s.
    assert!(reqs.len() > 6, "only {} requests: {reqs:#?}", reqs.len());
    let first_key = reqs[0].header("idempotency-key").expect("a key");
    for (i, r) in reqs[..6].iter().enumerate() {
        assert_eq!(
            r.header("idempotency-key"),
            Some(first_key),
            "request {i} should retry the first batch"
        );
    }
    assert_eq!(
        reqs[..6].iter().map(|r| r.answer).collect::<Vec<_>>(),
        [Some(500), Some(503), Some(429), None, None, Some(400)]
    );
    for r in &reqs[6..] {
        assert_ne!(r.header("idempotency-key"), Some(first_key));
        assert_eq!(r.answer, Some(200));
    }
    // Retry-After is honoured, even past backoff_cap; the hang is cut at the request timeout.
    let after_429 = reqs[3].at - reqs[2].at;
    assert!(
        after_429 >= Duration::from_millis(1950),
        "retried {after_429:?} after a 429 with Retry-After: 2 (backoff_cap 1s)"
    );
    let after_hang = reqs[4].at - reqs[3].at;
    assert!(
        after_hang >= Duration::from_millis(450) && after_hang < Duration::from_millis(2900),
        "the hung request was retried after {after_hang:?} (request_timeout 500ms, backoff_cap 1s)"
    );

    let delivered = checked_records(&reqs, "application/json", true, Request::delivered);
    let dead = checked_records(&reqs, "application/json", true, |r| r.answer == Some(400));
    assert!(!dead.is_empty());
    assert!(
        dead.keys().all(|k| !delivered.contains_key(k)),
        "a parked record was also delivered"
    );

    // Every seq from 1 up was delivered, except the parked ones.
    let delivered_seqs = seqs_of(&delivered);
    let dead_seqs = seqs_of(&dead);
    let all: BTreeSet<u64> = delivered_seqs.union(&dead_seqs).copied().collect();
    let max = *all.last().expect("some records");
    assert_eq!(
        all,
        (1..=max).collect::<BTreeSet<u64>>(),
        "missing seqs: delivered {delivered_seqs:?}, parked {dead_seqs:?}"
    );
    assert!(
        delivered.values().any(|r| r["kind"] == "interval"),
        "no interval records"
    );

    // Status: parked batch counted and explained, retries counted, the rest delivered.
    assert_eq!(u64_field(&st, "dead_letters"), dead.len() as u64, "{st}");
    let last_error = st["last_error"].as_str().unwrap_or_default();
    assert!(
        last_error.contains("400") && last_error.contains("expected a string"),
        "last_error {last_error:?} should name the 400 and quote the answer"
    );
    assert!(
        u64_field(&st, "retries") >= 5,
        "5 retryable failures, status says {st}"
    );
    assert_eq!(
        u64_field(&st, "delivered_records"),
        delivered.len() as u64,
        "{st}"
    );

    // The sums: received (deduplicated) = agent − dead letters, per queue and per interval.
    let got = records_by_interval(delivered.values());
    let parked = records_by_interval(dead.values());
    let got_q = per_queue(&got);
    let parked_q = per_queue(&parked);
    for (q, total) in &agent {
        let dead_q = parked_q.get(q).copied().unwrap_or_default();
        assert_eq!(
            got_q.get(q).copied().unwrap_or_default(),
            total.minus(&dead_q),
            "queue {q}: received ≠ agent − dead letters"
        );
    }
    assert!(
        got_q.keys().all(|q| agent.contains_key(q)),
        "records for unknown queues: {got_q:?}"
    );
    let keys: BTreeSet<&(String, i64)> =
        want.keys().chain(got.keys()).chain(parked.keys()).collect();
    for k in keys {
        let sum = got
            .get(k)
            .copied()
            .unwrap_or_default()
            .plus(&parked.get(k).copied().unwrap_or_default());
        assert_eq!(
            sum,
            want.get(k).copied().unwrap_or_default(),
            "queue {} interval {}: delivered + parked ≠ the calls",
            k.0,
            k.1
        );
    }
    assert!(outbox(&d).is_empty(), "the outbox still lists records");
}

#[test]
fn corrections_add_up() {
    let rx = Receiver::standalone(Vec::new(), Action::status(200, ""));
    let d = Daemon::start(&config(&rx.url("/ingest"), "http", "json", false));
    let iv = past_interval(6);
    let queues = ["sales", "support"];

    let first = make_calls("corr-a", 21, &queues, &[iv], 6, true);
    let n1 = send_calls(&d, &first);
    wait_settled(&d, n1 as u64);
    flush(&d);
    wait_delivered(&d);
    let phase1 = checked_records(
        &rx.requests(),
        "application/json",
        false,
        Request::delivered,
    );
    assert!(!phase1.is_empty(), "nothing arrived after the first flush");
    let s1 = *seqs_of(&phase1).last().expect("some records");
    let want1 = expected(&first);
    assert_eq!(records_by_interval(phase1.values()), want1);
    for q in queues {
        let intervals = phase1
            .values()
            .filter(|r| r["queue"] == q && r["kind"] == "interval")
            .count();
        assert_eq!(intervals, 1, "queue {q}: one interval record first");
    }

    // More calls in the same, already shipped interval.
    let second = make_calls("corr-b", 22, &queues, &[iv], 4, true);
    let n2 = send_calls(&d, &second);
    wait_settled(&d, (n1 + n2) as u64);
    let all_calls: Vec<Call> = first.iter().chain(&second).cloned().collect();
    let want = expected(&all_calls);
    assert_eq!(
        want.keys().map(|k| k.1).collect::<BTreeSet<_>>(),
        [iv].into()
    );
    let agent = agent_by_queue(&d);
    assert_eq!(
        agent,
        per_queue(&want),
        "the agent's figures for the interval"
    );
    flush(&d);
    wait_for(&d, "records after the second flush", SHIP_DEADLINE, || {
        let s = sink_status(&d);
        let got = checked_records(
            &rx.requests(),
            "application/json",
            false,
            Request::delivered,
        );
        if s["backlog_records"] == 0 && got.len() > phase1.len() {
            Ok(())
        } else {
            Err(format!("{} records received; sink {s}", got.len()))
        }
    });

    let all = checked_records(
        &rx.requests(),
        "application/json",
        false,
        Request::delivered,
    );
    let later: Vec<&Value> = all.values().filter(|r| u64_field(r, "seq") > s1).collect();
    for r in &later {
        assert_eq!(r["kind"], "correction", "{r}");
        assert_eq!(r["interval_start_ms"], iv, "{r}");
    }
    for q in queues {
        assert!(
            later.iter().any(|r| r["queue"] == q),
            "no correction for queue {q}: {later:#?}"
        );
    }
    assert_eq!(
        records_by_interval(later.iter().copied()),
        expected(&second),
        "the corrections carry exactly what the second calls added"
    );
    // Interval plus corrections = the agent's totals for the interval (and the calls').
    let merged = records_by_interval(all.values());
    assert_eq!(merged, want);
    let merged_q = per_queue(&merged);
    assert_eq!(merged_q, agent);
    assert!(
        all.values()
            .all(|r| r["kind"] == "correction" || u64_field(r, "seq") <= s1),
        "an interval record after the first shipment"
    );
    let st = sink_status(&d);
    assert_eq!(u64_field(&st, "dead_letters"), 0, "{st}");
    assert_eq!(
        u64_field(&st, "delivered_records"),
        all.len() as u64,
        "{st}"
    );
}

#[test]
fn backlog_survives_restart_and_sigkill() {
    let rx = Receiver::standalone(
        Vec::new(),
        Action::status(503, "storage down").with_header("Retry-After", "1"),
    );
    let mut d = Daemon::start(&config(&rx.url("/ingest"), "http", "msgpack", true));
    let queues = ["sales", "support"];
    let intervals: Vec<i64> = (4..=6).map(past_interval).collect();
    let calls = make_calls("restart", 31, &queues, &intervals, 5, false);
    let events = send_calls(&d, &calls);
    wait_settled(&d, events as u64);
    let want = expected(&calls);
    flush(&d);

    // Refused with 503: retried, and everything stays listed.
    wait_for(
        &d,
        "two 503 answers and counted retries",
        SHIP_DEADLINE,
        || {
            let s = sink_status(&d);
            let n = rx.requests().len();
            if n >= 2
                && s["retries"].as_u64().is_some_and(|r| r >= 1)
                && s["last_error"].as_str().is_some_and(|e| e.contains("503"))
            {
                Ok(())
            } else {
                Err(format!("{n} requests; sink {s}"))
            }
        },
    );
    let listed = outbox(&d);
    assert!(!listed.is_empty(), "the outbox lists nothing after a flush");
    let seqs: Vec<u64> = listed.iter().map(|e| u64_field(e, "seq")).collect();
    assert_eq!(seqs, (1..=listed.len() as u64).collect::<Vec<_>>());
    for e in &listed {
        assert_eq!(e["waiting_for"], json!([SINK]), "{e}");
    }
    let mut offered: BTreeMap<String, u64> = BTreeMap::new();
    for e in &listed {
        *offered
            .entry(e["key"].as_str().expect("a key").to_string())
            .or_default() += u64_field(e, "offered");
    }
    let want_q = per_queue(&want);
    let want_offered: BTreeMap<String, u64> = want_q
        .iter()
        .map(|(q, t)| (q.clone(), t.get("offered")))
        .collect();
    assert_eq!(offered, want_offered, "offered over the listed records");
    assert_eq!(
        u64_field(&sink_status(&d), "backlog_records"),
        listed.len() as u64
    );

    // A clean stop and a restart keep the same records, unchanged.
    // A flush right after each restart closes every ended interval again: nothing changed, so
    // it must add no record (a restart neither loses nor repeats one).
    d.stop();
    d.restart();
    assert_eq!(outbox(&d), listed, "after SIGTERM and a restart");
    flush(&d);
    assert_eq!(outbox(&d), listed, "a flush after SIGTERM and a restart");
    assert_eq!(
        agent_by_queue(&d),
        want_q,
        "the agent's figures after a restart"
    );
    // So does SIGKILL.
    d.kill();
    d.restart();
    assert_eq!(outbox(&d), listed, "after SIGKILL and a restart");
    flush(&d);
    assert_eq!(outbox(&d), listed, "a flush after SIGKILL and a restart");
    assert_eq!(
        agent_by_queue(&d),
        want_q,
        "the agent's figures after SIGKILL"
    );
    assert_eq!(
        u64_field(&sink_status(&d), "backlog_records"),
        listed.len() as u64
    );

    // The receiver recovers: every listed record arrives; duplicates only under the same key.
    let refused_before = rx.requests().len();
    assert!(refused_before >= 2);
    rx.set_then(Action::status(200, ""));
    let st = wait_delivered(&d);
    let reqs = rx.requests();
    let delivered = checked_records(&reqs, "application/msgpack", true, Request::delivered);
    let everything = checked_records(&reqs, "application/msgpack", true, |_| true);
    let listed_keys: BTreeSet<String> = listed
        .iter()
        .map(|e| e["idempotency_key"].as_str().expect("a key").to_string())
        .collect();
    assert_eq!(listed_keys.len(), listed.len());
    assert_eq!(
        delivered.keys().cloned().collect::<BTreeSet<_>>(),
        listed_keys,
        "distinct keys delivered vs listed"
    );
    assert_eq!(
        everything.keys().cloned().collect::<BTreeSet<_>>(),
        listed_keys,
        "a key that was never listed was sent"
    );
    for e in &listed {
        let r = &delivered[e["idempotency_key"].as_str().expect("a key")];
        for f in ["seq", "kind", "interval_start_ms", "interval_ms", "offered"] {
            assert_eq!(r[f], e[f], "`{f}` of {r} vs the listing {e}");
        }
        assert_eq!(r["queue"], e["key"]);
    }
    assert_eq!(records_by_interval(delivered.values()), want);
    assert_eq!(u64_field(&st, "dead_letters"), 0, "{st}");
    assert!(outbox(&d).is_empty(), "the outbox still lists records");
}

/// What `VictoriaMetrics` holds: (queue, interval start) → field → value.
type Stored = BTreeMap<(String, i64), BTreeMap<String, u64>>;

/// A `VictoriaMetrics` process on a free port with its own storage; killed on drop.
struct Victoria {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Victoria {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Victoria {
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("vm.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Starts it and waits until `/health` answers; a few tries in case the port was taken.
    fn start() -> Victoria {
        assert!(
            Path::new(VICTORIA_METRICS).exists(),
            "{VICTORIA_METRICS} is missing: this test needs VictoriaMetrics. `.ci/run` installs Debian's \
             `victoria-metrics` package (apt-get install -y victoria-metrics); install it and run again"
        );
        let mut last = String::new();
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("find a free port")
                .port();
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let dir = tempfile::tempdir().expect("a folder for VictoriaMetrics");
            let log = std::fs::File::create(dir.path().join("vm.log")).expect("create the log");
            let child = Command::new(VICTORIA_METRICS)
                .arg(format!(
                    "-storageDataPath={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("-httpListenAddr={addr}"))
                .arg("-retentionPeriod=100y")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log handle"))
                .stderr(log)
                .spawn()
                .expect("start victoria-metrics");
            let mut vm = Victoria { child, addr, dir };
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(status) = vm.child.try_wait().expect("poll victoria-metrics") {
                    last = format!("it exited with {status}; its log:\n{}", vm.log_tail());
                    break;
                }
                if let Ok((200, _)) = http(addr, "GET", "/health", "") {
                    return vm;
                }
                assert!(
                    Instant::now() < deadline,
                    "victoria-metrics did not answer /health within 30s; its log:\n{}",
                    vm.log_tail()
                );
                thread::sleep(POLL);
            }
        }
        panic!("victoria-metrics did not start: {last}");
    }

    /// Every `callmetrics_*` sample: (queue, timestamp) → field → the largest value stored.
    fn export(&self) -> Result<Stored, String> {
        let start = now_ms() / 1000 - 2 * 86_400;
        let body = format!(
            "match[]={}&start={start}",
            percent_encode(r#"{__name__=~"callmetrics_.*"}"#)
        );
        let (status, text) = http(self.addr, "POST", "/api/v1/export", &body)?;
        if status != 200 {
            return Err(format!("export answered {status}: {text}"));
        }
        let mut out = Stored::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value =
                serde_json::from_str(line).map_err(|e| format!("export line {line}: {e}"))?;
            let m = &v["metric"];
            let name = m["__name__"].as_str().unwrap_or_default();
            let field = name
                .strip_prefix("callmetrics_")
                .ok_or_else(|| format!("unexpected metric {m}"))?;
            assert_eq!(m["host"], HOST, "{m}");
            assert_eq!(m["dimension"], "queue", "{m}");
            let queue = m["queue"]
                .as_str()
                .ok_or_else(|| format!("no queue label: {m}"))?
                .to_string();
            let values = v["values"].as_array().ok_or("no values")?;
            let stamps = v["timestamps"].as_array().ok_or("no timestamps")?;
            if values.len() != stamps.len() {
                return Err(format!("values and timestamps differ in length: {line}"));
            }
            for (value, ts) in values.iter().zip(stamps) {
                let ts = ts.as_i64().ok_or_else(|| format!("timestamp {ts}"))?;
                let value = value.as_f64().ok_or_else(|| format!("value {value}"))?;
                if value < 0.0 || value.fract() != 0.0 {
                    return Err(format!("{name} at {ts} is {value}, not a count"));
                }
                // Several samples may share a timestamp after a correction: totals only grow.
                let e = out
                    .entry((queue.clone(), ts))
                    .or_default()
                    .entry(field.to_string())
                    .or_default();
                *e = (*e).max(value as u64);
            }
        }
        Ok(out)
    }
}

/// Percent-encodes everything but unreserved characters (for a form body).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A minimal blocking HTTP/1.0 exchange; returns the status and the body.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of head in {text:?}"))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    if !chunked {
        return Ok((status, rest.to_string()));
    }
    let mut out = String::new();
    let mut rest = rest;
    loop {
        let (size, after) = rest.split_once("\r\n").ok_or("a truncated chunked body")?;
        let size = usize::from_str_radix(size.trim(), 16).map_err(|e| e.to_string())?;
        if size == 0 {
            return Ok((status, out));
        }
        out.push_str(after.get(..size).ok_or("a truncated chunk")?);
        rest = after.get(size + 2..).ok_or("a truncated chunk")?;
    }
}

#[test]
fn victoria_metrics_end_to_end() {
    let vm = Victoria::start();
    let url = format!("http://{}/write", vm.addr);
    let d = Daemon::start(&config(&url, "influx", "json", true));

    let queues = ["sales", "support", "billing"];
    let intervals: Vec<i64> = (4..=7).map(past_interval).collect();
    let first = make_calls("vm-a", 41, &queues, &intervals, 6, false);
    let n1 = send_calls(&d, &first);
    wait_settled(&d, n1 as u64);
    flush(&d);
    wait_delivered(&d);

    // A correction: more calls in one interval already written.
    let second = make_calls("vm-b", 42, &queues[..2], &[intervals[1]], 3, true);
    let n2 = send_calls(&d, &second);
    wait_settled(&d, (n1 + n2) as u64);
    let calls: Vec<Call> = first.iter().chain(&second).cloned().collect();
    let want = expected(&calls);
    let agent = agent_by_queue(&d);
    assert_eq!(
        agent,
        per_queue(&want),
        "the agent's 24h figures vs the calls"
    );
    flush(&d);
    let st = wait_delivered(&d);
    assert_eq!(u64_field(&st, "dead_letters"), 0, "{st}");
    assert!(u64_field(&st, "delivered_records") > 0, "{st}");

    // What VictoriaMetrics stores, once searchable.
    let to_totals = |m: &Stored| -> Option<ByInterval> {
        m.iter()
            .map(|(k, fields)| {
                let mut t = Totals::default();
                for name in FIELDS {
                    t.add(name, *fields.get(name)?);
                }
                Some((k.clone(), t))
            })
            .collect()
    };
    let deadline = Instant::now() + SHIP_DEADLINE;
    let stored = loop {
        let got = vm.export();
        if let Ok(m) = &got {
            if to_totals(m).as_ref() == Some(&want) {
                break to_totals(m).expect("complete");
            }
        }
        if Instant::now() >= deadline {
            match got {
                Ok(m) => {
                    let totals = to_totals(&m).unwrap_or_else(|| {
                        panic!("VictoriaMetrics has series with missing fields: {m:#?}")
                    });
                    assert_eq!(
                        totals,
                        want,
                        "VictoriaMetrics per (queue, interval) vs the calls sent\nVM log:\n{}",
                        vm.log_tail()
                    );
                }
                Err(e) => panic!("export failed: {e}\nVM log:\n{}", vm.log_tail()),
            }
            unreachable!("the comparison above fails");
        }
        thread::sleep(Duration::from_millis(200));
    };
    // The sum over intervals per queue equals the agent's own 24h figures.
    assert_eq!(per_queue(&stored), agent);
    let stored_intervals: BTreeSet<i64> = stored.keys().map(|k| k.1).collect();
    let stored_queues: BTreeSet<&str> = stored.keys().map(|k| k.0.as_str()).collect();
    assert!(
        stored_intervals.len() >= intervals.len() && stored_queues.len() == queues.len(),
        "expected points in several intervals of every queue: {stored:#?}"
    );
}
