//! `callmetrics sla --json` and the staffing figure of a real daemon: calls with tags sent over
//! the event socket, the objectives' counts and values compared with the test's own count of
//! the calls sent, `agents_needed` in `metrics --json` with the test's own Erlang C; then
//! `kill -9`, restart, and the same figures.

mod support;

use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{json_of, now_ms, Daemon, DEADLINE};

/// One call sent: tier tag, wait, talk and wrap-up in seconds (all answered, on `support`).
struct Sent {
    tier: &'static str,
    start_ms: i64,
    wait_s: i64,
    talk_s: i64,
    acw_s: i64,
}

fn config() -> String {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let holidays: Vec<String> = [-1i64, 0, 1]
        .iter()
        .map(|d| {
            format!(
                "\"{}\"",
                today.checked_add(jiff::Span::new().days(*d)).unwrap()
            )
        })
        .collect();
    format!(
        r#"
[general]
time_zone = "UTC"

[defaults]
threshold = "20s"
target = 0.8

[[sla]]
name = "support"
scope = {{ queues = ["support"] }}
measure = "answered_within"
threshold = "20s"
target = 0.8
period = "month"

[[sla]]
name = "gold"
scope = {{ queues = ["support"], tags = {{ tier = "gold" }} }}
measure = "service_level"
formula = "answered"
threshold = "10s"
target = 0.9
period = "month"

[[sla]]
name = "closed"
scope = {{ queues = ["support"] }}
measure = "answered_within"
threshold = "20s"
target = 0.8
period = "month"
holidays = [{}]
"#,
        holidays.join(", ")
    )
}

/// Thirty calls over the last fifty minutes: every third gold, waits from 2 to 31 s, ten
/// minutes of talk and one of wrap-up (5 erlangs over the hour).
fn calls(now: i64) -> Vec<Sent> {
    (0..30)
        .map(|i| Sent {
            tier: if i % 3 == 0 { "gold" } else { "silver" },
            start_ms: now - 50 * 60_000 + i * 60_000,
            wait_s: 2 + i,
            talk_s: 540,
            acw_s: 60,
        })
        .filter(|c| c.start_ms + (c.wait_s + c.talk_s + c.acw_s) * 1000 < now - 10_000)
        .collect()
}

fn send(d: &Daemon, calls: &[Sent]) {
    let mut conn = d.json_conn();
    for (i, c) in calls.iter().enumerate() {
        let id = format!("c{i}");
        let answer = c.start_ms + c.wait_s * 1000;
        let end = answer + c.talk_s * 1000;
        let batch = json!([
            {"type": "start", "call_id": id, "ts": c.start_ms, "queue": "support",
             "tags": {"tier": c.tier, "lang": "fr"}},
            {"type": "answer", "call_id": id, "ts": answer, "agent": "alice"},
            {"type": "end", "call_id": id, "ts": end},
            {"type": "wrapup", "call_id": id, "ts": end + c.acw_s * 1000},
        ]);
        let reply = conn.request(&batch.to_string());
        assert_eq!(reply["ok"], true, "{reply}");
    }
}

fn sla(d: &Daemon) -> Vec<Value> {
    match json_of("sla --json", &d.query(&["sla", "--json"])) {
        Value::Array(o) => o,
        other => panic!("sla --json printed {other}"),
    }
}

fn find<'a>(all: &'a [Value], name: &str) -> &'a Value {
    all.iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no objective {name} in {all:?}"))
}

/// Polls `sla --json` until every objective has counted `n` calls (in or outside hours).
fn wait_counted(d: &Daemon, n: u64) -> Vec<Value> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let all = sla(d);
        let counted = |o: &Value| {
            o["counts"]["offered"].as_u64().unwrap_or(0)
                + o["outside_hours"]["offered"].as_u64().unwrap_or(0)
                + o["past"].as_array().map_or(0, |p| {
                    p.iter()
                        .map(|p| {
                            p["counts"]["offered"].as_u64().unwrap_or(0)
                                + p["outside_hours"]["offered"].as_u64().unwrap_or(0)
                        })
                        .sum()
                })
        };
        let support = counted(find(&all, "support"));
        let closed = counted(find(&all, "closed"));
        if support == n && closed == n {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "waiting for {n} calls counted: {all:?}\n{}",
            d.log_tail()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// The test's own Erlang C: C(N, A) from the Erlang B recursion, then
/// SL = 1 − C·e^{−(N − A)·T/AHT}; the fewest N above A with SL ≥ target.
fn erlang_c_agents(a: f64, aht_s: f64, t_s: f64, target: f64) -> u32 {
    let mut n = a.floor() as u32 + 1;
    loop {
        let mut b = 1.0;
        for k in 1..=n {
            b = a * b / (f64::from(k) + a * b);
        }
        let c = f64::from(n) * b / (f64::from(n) - a * (1.0 - b));
        let sl = 1.0 - c * (-(f64::from(n) - a) * t_s / aht_s).exp();
        if sl >= target {
            return n;
        }
        n += 1;
    }
}

/// The figures that do not move with the clock: counts, values, period bounds, past periods.
fn stable(all: &[Value]) -> Vec<Value> {
    all.iter()
        .map(|o| {
            json!({
                "name": o["name"], "value": o["value"], "target": o["target"],
                "counts": o["counts"], "outside_hours": o["outside_hours"],
                "period_start_ms": o["period_start_ms"], "period_end_ms": o["period_end_ms"],
                "past": o["past"], "counting_since_ms": o["counting_since_ms"],
            })
        })
        .collect()
}

#[test]
fn sla_figures_equal_the_calls_sent_and_survive_kill_9() {
    let mut d = Daemon::start(&config());
    let now = now_ms();
    let sent = calls(now);
    send(&d, &sent);
    let all = wait_counted(&d, sent.len() as u64);

    // The test's own count, for the month the calls left the queue in (all in this month,
    // unless the test runs in the first hour of one: then compare what it can).
    let month = |ms: i64| {
        let z = jiff::Timestamp::from_millisecond(ms)
            .unwrap()
            .to_zoned(jiff::tz::TimeZone::UTC);
        (z.year(), z.month())
    };
    let this_month = month(now_ms());
    let here: Vec<&Sent> = sent
        .iter()
        .filter(|c| month(c.start_ms + c.wait_s * 1000) == this_month)
        .collect();
    let within = |t: i64, calls: &[&Sent]| calls.iter().filter(|c| c.wait_s <= t).count() as u64;
    let support = find(&all, "support");
    assert_eq!(support["counts"]["answered"], here.len() as u64);
    assert_eq!(support["counts"]["answered_within"], within(20, &here));
    assert_eq!(support["measure"], "answered_within");
    assert_eq!(support["period"], "month");
    assert_eq!(support["target"], 0.8);
    let value = within(20, &here) as f64 / here.len() as f64;
    assert!(
        (support["value"].as_f64().unwrap() - value).abs() < 1e-12,
        "{support}"
    );
    let start = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .first_of_month()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .unwrap()
        .timestamp()
        .as_millisecond();
    assert_eq!(support["period_start_ms"], start);
    assert!(support["status"].is_string());
    assert!(support["margin_text"].is_string(), "{support}");

    // Gold: every third call, judged against 10 s with the `answered` formula.
    let gold: Vec<&Sent> = here.iter().copied().filter(|c| c.tier == "gold").collect();
    let g = find(&all, "gold");
    assert_eq!(g["counts"]["answered"], gold.len() as u64);
    assert_eq!(g["counts"]["answered_within"], within(10, &gold));
    let gv = within(10, &gold) as f64 / gold.len() as f64;
    assert!((g["value"].as_f64().unwrap() - gv).abs() < 1e-12, "{g}");

    // Closed today (a holiday): every call is outside service hours, nothing counted.
    let closed = find(&all, "closed");
    assert_eq!(closed["counts"]["offered"], 0);
    assert_eq!(closed["value"], Value::Null);
    assert_eq!(closed["status"], "no_data");
    assert_eq!(closed["outside_hours"]["offered"], here.len() as u64);

    // Staffing: 1h window offered and AHT from the calls sent, Erlang C for T 20 s at 80 %.
    let rows = d.metrics("1h", "queue");
    let row = rows.iter().find(|r| r["queue"] == "support").unwrap();
    assert_eq!(row["offered"], sent.len() as u64);
    let aht_s = sent
        .iter()
        .map(|c| (c.talk_s + c.acw_s) as f64)
        .sum::<f64>()
        / sent.len() as f64;
    let erlangs = sent.len() as f64 / 3600.0 * aht_s;
    let agents = erlang_c_agents(erlangs, aht_s, 20.0, 0.8);
    assert_eq!(
        row["agents_needed"], agents,
        "{erlangs} erlangs, AHT {aht_s} s: {row}"
    );
    assert_eq!(support["agents_needed"]["support"], agents);
    let by_agent = d.metrics("1h", "agent");
    assert_eq!(by_agent[0]["agents_needed"], Value::Null);

    // The human table names every objective and its margin.
    let text = String::from_utf8(d.query(&["sla"]).stdout).unwrap();
    for needle in ["support:", "gold:", "closed:", "outside service hours"] {
        assert!(text.contains(needle), "{needle} in\n{text}");
    }

    // kill -9 and restart: the same figures.
    let before = stable(&all);
    d.kill();
    d.restart();
    let after = wait_counted(&d, sent.len() as u64);
    assert_eq!(stable(&after), before);
}
