//! Black-box tests of the real `callmetrics` binary: the event protocol over its Unix socket (JSON
//! lines and `MessagePack` frames), error replies and limits, the CLI's exit codes, restarts after
//! SIGTERM and SIGKILL, and `callmetrics send`. Each test starts its own daemon in its own folder.
//!
//! Expected metrics are computed here from a list of calls written as data (docs/metrics.md
//! applied by hand to the event timestamps), never copied from the daemon's output.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::time::Instant;

use serde_json::{json, Value};
use support::{assert_refused, cli, now_ms, ok, run_to_exit, Daemon, PackConn, DEADLINE};

/// The config's service-level parameters (written into the test config, see [`CONFIG`]).
const T_MS: u64 = 20_000;
const S_MS: u64 = 5_000;

/// Service-level parameters stated explicitly, so the expectations below do not hang on defaults.
const CONFIG: &str =
    "[defaults]\nthreshold = \"20s\"\nshort_abandon = \"5s\"\nformula = \"offered\"\n";

const fn s(secs: i64) -> i64 {
    secs * 1000
}

/// One visit of a call to a queue; times are offsets (ms) from the scenario's base time.
#[derive(Debug, Clone)]
struct Seg {
    queue: &'static str,
    start: i64,
    answer: Option<(i64, &'static str)>,
    holds: Vec<(i64, i64)>,
    /// `None` = still in the queue (no end sent).
    end: Option<(i64, Option<&'static str>)>,
    wrapup: Option<i64>,
}

#[derive(Debug, Clone)]
struct CallSpec {
    id: &'static str,
    segs: Vec<Seg>,
}

fn seg(queue: &'static str, start: i64) -> Seg {
    Seg {
        queue,
        start,
        answer: None,
        holds: Vec::new(),
        end: None,
        wrapup: None,
    }
}

impl Seg {
    fn answer(mut self, at: i64, agent: &'static str) -> Seg {
        self.answer = Some((at, agent));
        self
    }
    fn holds(mut self, holds: &[(i64, i64)]) -> Seg {
        self.holds = holds.to_vec();
        self
    }
    fn end(mut self, at: i64, reason: Option<&'static str>) -> Seg {
        self.end = Some((at, reason));
        self
    }
    fn wrapup(mut self, at: i64) -> Seg {
        self.wrapup = Some(at);
        self
    }
}

fn call(id: &'static str, segs: Vec<Seg>) -> CallSpec {
    CallSpec { id, segs }
}

/// The scenario: answered calls with holds and wrap-ups, short and long abandons (and the edges
/// wait = S and wait = T), an overflow by `timeout`, an unanswered `completed` end, two transfers
/// (answered, and unanswered) making two segments of one call in two queues, and one call still
/// waiting. Every answered segment gets a wrap-up, so every handle figure is final at once.
fn scenario() -> Vec<CallSpec> {
    vec![
        // Answered within T after 12 s, 30 s on hold, 30 s of after-call work.
        call(
            "a1",
            vec![seg("support", s(0))
                .answer(s(12), "alice")
                .holds(&[(s(60), s(90))])
                .end(s(200), None)
                .wrapup(s(230))],
        ),
        // Answered after 35 s: beyond T. Explicit `completed`.
        call(
            "a2",
            vec![seg("support", s(10))
                .answer(s(45), "bob")
                .end(s(150), Some("completed"))
                .wrapup(s(160))],
        ),
        // Answered after exactly T (within: inclusive), two holds.
        call(
            "a3",
            vec![seg("sales", s(20))
                .answer(s(40), "carol")
                .holds(&[(s(60), s(70)), (s(80), s(85))])
                .end(s(300), None)
                .wrapup(s(320))],
        ),
        // Abandoned after 3 s: short.
        call(
            "ab1",
            vec![seg("support", s(30)).end(s(33), Some("abandoned"))],
        ),
        // Abandoned after exactly S, no reason (abandoned by default): not short.
        call("ab2", vec![seg("support", s(40)).end(s(45), None)]),
        // Abandoned after 95 s: long, beyond T.
        call(
            "ab3",
            vec![seg("sales", s(50)).end(s(145), Some("abandoned"))],
        ),
        // `completed` without an answer counts as abandoned (18 s: within T).
        call(
            "ab4",
            vec![seg("support", s(60)).end(s(78), Some("completed"))],
        ),
        // Left unanswered by timeout after 40 s: overflow.
        call(
            "of1",
            vec![seg("support", s(70)).end(s(110), Some("timeout"))],
        ),
        // Answered in sales by alice, transferred to support (alice's wrap-up comes while the call
        // waits there), answered by bob.
        call(
            "tr1",
            vec![
                seg("sales", s(100))
                    .answer(s(106), "alice")
                    .end(s(160), Some("transferred"))
                    .wrapup(s(170)),
                seg("support", s(160))
                    .answer(s(185), "bob")
                    .holds(&[(s(200), s(230))])
                    .end(s(400), None)
                    .wrapup(s(415)),
            ],
        ),
        // Unanswered in sales, transferred after 8 s (overflow there), answered in support.
        call(
            "tr2",
            vec![
                seg("sales", s(120)).end(s(128), Some("transferred")),
                seg("support", s(128))
                    .answer(s(150), "carol")
                    .end(s(250), None)
                    .wrapup(s(255)),
            ],
        ),
        // Still waiting: in `calls`, in `waiting_now`, not yet offered.
        call("w1", vec![seg("support", s(600))]),
    ]
}

/// The base time of a scenario: 15 minutes ago, so every event lies in the past and inside `1h`.
fn base_now() -> i64 {
    let b = now_ms() - 15 * 60_000;
    b - b % 1000
}

/// A timestamp as epoch ms, or (for `rfc`) as an RFC 3339 string: both are valid `ts`.
fn ts(ms: i64, rfc: bool) -> Value {
    if rfc {
        Value::String(
            jiff::Timestamp::from_millisecond(ms)
                .expect("valid timestamp")
                .to_string(),
        )
    } else {
        json!(ms)
    }
}

/// The events of the scenario, in source-time order (a stable sort: at a transfer instant the old
/// segment's end precedes the new start). Answers carry RFC 3339 timestamps, the rest epoch ms.
fn events(calls: &[CallSpec], base: i64) -> Vec<Value> {
    let mut evs: Vec<(i64, Value)> = Vec::new();
    for c in calls {
        for sg in &c.segs {
            let at = |off: i64| base + off;
            evs.push((
                at(sg.start),
                json!({"type": "start", "call_id": c.id, "queue": sg.queue, "ts": at(sg.start)}),
            ));
            if let Some((t, agent)) = sg.answer {
                evs.push((
                    at(t),
                    json!({"type": "answer", "call_id": c.id, "agent": agent, "ts": ts(at(t), true)}),
                ));
            }
            for &(h, r) in &sg.holds {
                evs.push((at(h), json!({"type": "hold", "call_id": c.id, "ts": at(h)})));
                evs.push((
                    at(r),
                    json!({"type": "resume", "call_id": c.id, "ts": at(r)}),
                ));
            }
            if let Some((t, reason)) = sg.end {
                let mut e = json!({"type": "end", "call_id": c.id, "ts": at(t)});
                if let Some(r) = reason {
                    e["reason"] = json!(r);
                }
                evs.push((at(t), e));
            }
            if let Some(w) = sg.wrapup {
                evs.push((
                    at(w),
                    json!({"type": "wrapup", "call_id": c.id, "ts": at(w)}),
                ));
            }
        }
    }
    evs.sort_by_key(|(t, _)| *t);
    evs.into_iter().map(|(_, e)| e).collect()
}

/// The counters docs/metrics.md defines, computed by hand for one row.
#[derive(Debug, Default, Clone, PartialEq)]
struct Expect {
    offered: u64,
    answered: u64,
    answered_within: u64,
    abandoned: u64,
    abandoned_within: u64,
    short_abandoned: u64,
    overflow: u64,
    handled: u64,
    wait_sum_ms: u64,
    wait_max_ms: u64,
    abandon_wait_sum_ms: u64,
    talk_sum_ms: u64,
    hold_sum_ms: u64,
    acw_sum_ms: u64,
    waiting_now: u64,
}

impl Expect {
    fn counters(&self) -> [(&'static str, u64); 14] {
        [
            ("offered", self.offered),
            ("answered", self.answered),
            ("answered_within", self.answered_within),
            ("abandoned", self.abandoned),
            ("abandoned_within", self.abandoned_within),
            ("short_abandoned", self.short_abandoned),
            ("overflow", self.overflow),
            ("handled", self.handled),
            ("wait_sum_ms", self.wait_sum_ms),
            ("wait_max_ms", self.wait_max_ms),
            ("abandon_wait_sum_ms", self.abandon_wait_sum_ms),
            ("talk_sum_ms", self.talk_sum_ms),
            ("hold_sum_ms", self.hold_sum_ms),
            ("acw_sum_ms", self.acw_sum_ms),
        ]
    }

    /// Derived figures; `None` where the denominator is zero.
    fn figures(&self) -> [(&'static str, Option<f64>); 5] {
        let r = |n: f64, d: f64| (d > 0.0).then(|| n / d);
        let f = |v: u64| v as f64;
        let handle = f(self.talk_sum_ms + self.hold_sum_ms + self.acw_sum_ms);
        [
            ("asa_ms", r(f(self.wait_sum_ms), f(self.answered))),
            ("aht_ms", r(handle, f(self.handled))),
            (
                "avg_abandon_ms",
                r(f(self.abandon_wait_sum_ms), f(self.abandoned)),
            ),
            (
                "abandon_rate",
                r(
                    f(self.abandoned) - f(self.short_abandoned),
                    f(self.offered) - f(self.short_abandoned),
                ),
            ),
            // The `offered` formula: A≤T / (A + Ab − S).
            (
                "service_level",
                r(
                    f(self.answered_within),
                    f(self.answered + self.abandoned) - f(self.short_abandoned),
                ),
            ),
        ]
    }
}

/// Expected rows of `metrics --by BY` (`queue`, `agent` or `all`), keyed by the row's key.
fn expected(calls: &[CallSpec], by: &str) -> BTreeMap<String, Expect> {
    let mut rows: BTreeMap<String, Expect> = BTreeMap::new();
    for c in calls {
        for sg in &c.segs {
            let keys: Vec<String> = match by {
                "queue" => vec![sg.queue.to_string()],
                "all" => vec!["all".to_string()],
                "agent" => sg.answer.map(|(_, a)| a.to_string()).into_iter().collect(),
                other => panic!("no model for --by {other}"),
            };
            for key in keys {
                let e = rows.entry(key).or_default();
                let Some((end, reason)) = sg.end else {
                    if sg.answer.is_none() {
                        e.waiting_now += 1;
                    }
                    continue;
                };
                // The segment left the queue at its answer, else at its end.
                let leave = sg.answer.map_or(end, |(t, _)| t);
                let wait = (leave - sg.start) as u64;
                e.offered += 1;
                e.wait_max_ms = e.wait_max_ms.max(wait);
                match (sg.answer, reason) {
                    (Some((answer, _)), _) => {
                        e.answered += 1;
                        e.answered_within += u64::from(wait <= T_MS);
                        e.wait_sum_ms += wait;
                        let hold: i64 = sg.holds.iter().map(|(h, r)| r - h).sum();
                        e.handled += 1;
                        e.hold_sum_ms += hold as u64;
                        e.talk_sum_ms += (end - answer - hold) as u64;
                        e.acw_sum_ms += sg.wrapup.map_or(0, |w| (w - end) as u64);
                    }
                    (None, None | Some("abandoned" | "completed")) => {
                        e.abandoned += 1;
                        e.abandoned_within += u64::from(wait <= T_MS);
                        e.short_abandoned += u64::from(wait < S_MS);
                        e.abandon_wait_sum_ms += wait;
                    }
                    (None, Some(_)) => e.overflow += 1,
                }
            }
        }
    }
    rows
}

/// The key of a metrics row of dimension `by` (`all` rows have none).
fn row_key(row: &Value, by: &str) -> String {
    if by == "all" {
        "all".to_string()
    } else {
        row[by]
            .as_str()
            .unwrap_or_else(|| panic!("row without `{by}`: {row}"))
            .to_string()
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Compares `metrics --window 1h --by BY` with the model; `Err` describes every difference.
fn compare(rows: &[Value], by: &str, want: &BTreeMap<String, Expect>) -> Result<(), String> {
    let mut diffs = Vec::new();
    let got: BTreeMap<String, &Value> = rows.iter().map(|r| (row_key(r, by), r)).collect();
    if got.len() != rows.len() {
        diffs.push(format!("duplicate keys among {} rows", rows.len()));
    }
    let got_keys: BTreeSet<&String> = got.keys().collect();
    let want_keys: BTreeSet<&String> = want.keys().collect();
    if got_keys != want_keys {
        diffs.push(format!("row keys {got_keys:?}, expected {want_keys:?}"));
    }
    for (key, e) in want {
        let Some(row) = got.get(key) else { continue };
        let mut check = |name: &str, ok: bool, want: String| {
            if !ok {
                diffs.push(format!(
                    "{by} {key}: {name} = {}, expected {want}",
                    row[name]
                ));
            }
        };
        check("window", row["window"] == "1h", "\"1h\"".into());
        check("dimension", row["dimension"] == by, format!("{by:?}"));
        for (name, v) in e.counters() {
            check(name, row[name].as_u64() == Some(v), v.to_string());
        }
        for (name, v) in e.figures() {
            let ok = match (v, &row[name]) {
                (None, Value::Null) => true,
                (Some(v), got) => got.as_f64().is_some_and(|g| close(g, v)),
                (None, _) => false,
            };
            check(name, ok, format!("{v:?}"));
        }
        // The default formula's value is also listed under its name among all formulas.
        let sl = &row["service_level"];
        check(
            "service_levels.offered",
            row["service_levels"]["offered"] == *sl,
            sl.to_string(),
        );
        if by == "queue" {
            check(
                "threshold_ms",
                row["threshold_ms"].as_u64() == Some(T_MS),
                T_MS.to_string(),
            );
            check(
                "short_abandon_ms",
                row["short_abandon_ms"].as_u64() == Some(S_MS),
                S_MS.to_string(),
            );
            check("formula", row["formula"] == "offered", "\"offered\"".into());
        }
        if by != "agent" {
            check(
                "waiting_now",
                row["waiting_now"].as_u64() == Some(e.waiting_now),
                e.waiting_now.to_string(),
            );
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("\n"))
    }
}

/// Polls `metrics --json --window 1h --by BY` until it equals the model (at most [`DEADLINE`]).
fn assert_metrics(d: &Daemon, calls: &[CallSpec], by: &str) -> Vec<Value> {
    let want = expected(calls, by);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let rows = d.metrics("1h", by);
        match compare(&rows, by, &want) {
            Ok(()) => return rows,
            Err(diff) if Instant::now() >= deadline => panic!(
                "metrics --by {by} differ from the model:\n{diff}\nrows: {}",
                serde_json::to_string_pretty(&rows).unwrap_or_default()
            ),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
}

/// Checks the model by queue, overall and by agent; returns the rows (queue, all, agent).
fn assert_all_metrics(d: &Daemon, calls: &[CallSpec]) -> Vec<Vec<Value>> {
    ["queue", "all", "agent"]
        .iter()
        .map(|by| assert_metrics(d, calls, by))
        .collect()
}

/// Sanity of the model itself: the scenario covers what the test claims to cover.
#[test]
fn the_model_covers_every_outcome() {
    let q = expected(&scenario(), "queue");
    let support = &q["support"];
    let sales = &q["sales"];
    assert_eq!(support.short_abandoned, 1);
    assert_eq!(support.abandoned, 3);
    assert_eq!(support.overflow, 1);
    assert_eq!(support.waiting_now, 1);
    assert_eq!(sales.overflow, 1);
    assert_eq!(sales.answered_within, 2, "wait = T counts as within");
    let all = &expected(&scenario(), "all")["all"];
    assert_eq!(all.offered, 12, "a transfer is two offered segments");
    assert_eq!(all.offered, all.answered + all.abandoned + all.overflow);
}

/// Sends the scenario as JSON lines on one connection, pipelined; every reply must be `{"ok":true}`.
fn send_json(d: &Daemon, events: &[Value]) {
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

/// `metrics` rows with the figures that move with the clock taken out.
fn stable(rows: &[Value]) -> Vec<Value> {
    rows.iter()
        .map(|r| {
            let mut r = r.clone();
            if let Some(m) = r.as_object_mut() {
                m.remove("longest_wait_now_ms");
            }
            r
        })
        .collect()
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

/// A valid start event for a fresh call.
fn start_line(id: &str) -> String {
    json!({"type": "start", "call_id": id, "queue": "q", "ts": now_ms() - 1000}).to_string()
}

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

#[test]
fn cli_exit_codes_tell_unreachable_from_invalid_config() {
    // Unreachable daemon: exit 2, one line on stderr naming the socket.
    for sub in [
        &["status"][..],
        &["status", "--json"],
        &["metrics", "--json"],
        &["calls"],
    ] {
        let mut args = sub.to_vec();
        args.extend(["--socket", "/nonexistent/x.sock"]);
        let out = cli(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr:?}");
        assert!(stderr.contains("/nonexistent/x.sock"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed on stdout");
    }

    let dir = tempfile::tempdir().expect("temporary folder");
    let events = dir.path().join("events.jsonl");
    fs::write(&events, start_line("x1") + "\n").expect("write events");
    let out = cli([
        OsStr::new("send"),
        events.as_os_str(),
        OsStr::new("--socket"),
        OsStr::new("/nonexistent/e.sock"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "send: {stderr}");
    assert!(stderr.contains("/nonexistent/e.sock"), "send: {stderr}");

    // An unknown key: 78, naming the key and its line, from check-config and from run.
    let bad = dir.path().join("bad.toml");
    fs::write(
        &bad,
        "[general]\ntime_zone = \"UTC\"\n\n[metrics]\ninterval = \"15m\"\ncolour = \"blue\"\n",
    )
    .expect("write config");
    let out = cli([OsStr::new("check-config"), bad.as_os_str()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "check-config: {stderr}");
    assert!(stderr.contains("colour"), "check-config: {stderr}");
    assert!(stderr.contains("line 6"), "check-config: {stderr}");
    let out = run_to_exit(
        std::process::Command::new(support::BIN).args([
            OsStr::new("run"),
            OsStr::new("--config"),
            bad.as_os_str(),
        ]),
        DEADLINE,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "run: {stderr}");
    assert!(stderr.contains("colour"), "run: {stderr}");

    // The same file without the typo is valid.
    let good = dir.path().join("good.toml");
    fs::write(
        &good,
        "[general]\ntime_zone = \"UTC\"\n\n[metrics]\ninterval = \"15m\"\n",
    )
    .expect("write config");
    let out = cli([OsStr::new("check-config"), good.as_os_str()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Everything a restart must keep: metrics rows (less the clock-driven figure) and open calls.
fn snapshot(d: &Daemon) -> (Vec<Vec<Value>>, Vec<Value>) {
    let rows = ["queue", "all", "agent", "channel"]
        .iter()
        .map(|by| stable(&d.metrics("1h", by)))
        .collect();
    let calls = d
        .calls()
        .into_iter()
        .map(|mut c| {
            if let Some(m) = c.as_object_mut() {
                m.remove("age_ms");
                m.remove("phase_age_ms");
            }
            c
        })
        .collect();
    (rows, calls)
}

#[test]
fn restarts_after_sigterm_and_sigkill_keep_every_figure() {
    let mut d = Daemon::start(CONFIG);
    let calls = scenario();
    send_json(&d, &events(&calls, base_now()));
    assert_all_metrics(&d, &calls);
    let before = snapshot(&d);
    assert!(!before.1.is_empty(), "the waiting call is listed");

    d.stop();
    d.restart();
    assert_all_metrics(&d, &calls);
    assert_eq!(snapshot(&d), before, "after SIGTERM and restart");

    d.kill();
    d.restart();
    assert_all_metrics(&d, &calls);
    assert_eq!(snapshot(&d), before, "after SIGKILL and restart");

    // Events acknowledged just before a SIGKILL survive it too.
    let mut more = calls.clone();
    more.push(call(
        "late1",
        vec![seg("sales", s(30))
            .answer(s(38), "dave")
            .end(s(98), None)
            .wrapup(s(99))],
    ));
    let extra = events(&more[more.len() - 1..], base_now());
    send_json(&d, &extra);
    d.kill();
    d.restart();
    assert_all_metrics(&d, &more);
}

#[test]
fn send_prints_one_reply_per_line_and_exits_1_on_a_refusal() {
    let d = Daemon::start("");
    let ts = now_ms() - 60_000;
    let good: Vec<String> = (0..5)
        .map(|i| {
            json!({"type": "start", "call_id": format!("g{i}"), "queue": "q", "ts": ts}).to_string()
        })
        .collect();
    let file = d.dir.path().join("good.jsonl");
    fs::write(&file, good.join("\n") + "\n").expect("write events");
    let out = cli([
        OsStr::new("send"),
        file.as_os_str(),
        OsStr::new("--socket"),
        d.events.as_os_str(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replies: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON reply per line"))
        .collect();
    assert_eq!(replies, vec![ok(); good.len()], "{stdout}");

    // One refused line among three, sent with --config: exit 1, three replies in order.
    let lines = [
        json!({"type": "start", "call_id": "h1", "queue": "q", "ts": ts}).to_string(),
        json!({"type": "start", "call_id": "h2", "ts": ts}).to_string(),
        json!({"type": "start", "call_id": "h3", "queue": "q", "ts": ts}).to_string(),
    ];
    let file = d.dir.path().join("mixed.jsonl");
    fs::write(&file, lines.join("\n") + "\n").expect("write events");
    let out = cli([
        OsStr::new("send"),
        file.as_os_str(),
        OsStr::new("--config"),
        d.config.as_os_str(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replies: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON reply per line"))
        .collect();
    assert_eq!(replies.len(), 3, "{stdout}");
    assert_eq!(replies[0], ok());
    assert_refused(&replies[1], &["queue"], "start without queue");
    assert_eq!(replies[2], ok());

    let mut open: Vec<String> = d
        .calls()
        .iter()
        .map(|c| c["call_id"].as_str().expect("call_id").to_string())
        .collect();
    open.sort();
    assert_eq!(open, ["g0", "g1", "g2", "g3", "g4", "h1", "h3"]);
}
