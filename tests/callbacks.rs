//! Callback commitments through a real daemon: calls that leave `support` asking for a callback
//! and the `callback` events that follow, sent over the event socket for a week two weeks ago
//! (a backfill); the deadlines across closing time, a holiday and a weekend, and the on-time,
//! late, missed and cancelled counts of `callbacks --json` and `sla --json`, against this
//! file's own hand-worked figures; then a clean restart and a `kill -9`, and the same figures.

mod support;

use serde_json::{json, Value};
use support::{json_of, now_ms, Daemon, JsonConn};

const H: i64 = 3_600_000;
const MIN: i64 = 60_000;

/// The Monday (00:00 UTC) of the week two weeks before this one.
fn monday() -> i64 {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let this_monday = today
        .checked_sub(jiff::Span::new().days(i64::from(today.weekday().to_monday_zero_offset())))
        .unwrap();
    this_monday
        .checked_sub(jiff::Span::new().days(14))
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .unwrap()
        .timestamp()
        .as_millisecond()
}

fn date(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string()
}

const DAY: i64 = 24 * H;

/// Two weekly objectives on `support` (weekdays 08:00-18:00, that week's Wednesday a holiday)
/// and one on `sales` open at all hours.
fn config(m: i64) -> String {
    let hours = r#"hours = { mon = ["08:00-18:00"], tue = ["08:00-18:00"], wed = ["08:00-18:00"], thu = ["08:00-18:00"], fri = ["08:00-18:00"] }"#;
    let holiday = date(m + 2 * DAY);
    format!(
        r#"
[general]
time_zone = "UTC"

[[sla]]
name = "same-day"
scope = {{ queues = ["support"] }}
measure = "callbacks_within"
promise = "same_business_day"
target = 0.9
period = "week"
{hours}
holidays = ["{holiday}"]

[[sla]]
name = "four-hours"
scope = {{ queues = ["support"] }}
measure = "callbacks_within"
promise = "4h"
target = 0.6
period = "week"
{hours}
holidays = ["{holiday}"]

[[sla]]
name = "anytime"
scope = {{ queues = ["sales"] }}
measure = "callbacks_within"
promise = "2h"
target = 0.9
period = "month"
"#
    )
}

fn ask(conn: &mut JsonConn, id: &str, queue: &str, at: i64) {
    let batch = json!([
        {"type": "start", "call_id": id, "ts": at - MIN, "queue": queue},
        {"type": "end", "call_id": id, "ts": at, "reason": "callback"},
    ]);
    let reply = conn.request(&batch.to_string());
    assert_eq!(reply["ok"], true, "{reply}");
}

fn callback(conn: &mut JsonConn, id: &str, at: i64, outcome: Option<&str>) {
    let mut ev = json!({"type": "callback", "call_id": id, "ts": at});
    if let Some(o) = outcome {
        ev["outcome"] = o.into();
    }
    let reply = conn.request(&ev.to_string());
    assert_eq!(reply["ok"], true, "{reply}");
}

/// The week of `m`, in time order. Deadlines (same day / 4 business hours), worked by hand:
/// - a Mon 09:00: Mon 18:00 / Mon 13:00; reached Mon 12:00: on time / on time.
/// - b Mon 17:00 (an hour before closing): Mon 18:00 / 1 h Mon + 3 h Tue = Tue 11:00;
///   reached Tue 10:00: late / on time.
/// - c Tue 16:00: Tue 18:00 / 2 h Tue, Wednesday a holiday, 2 h Thu = Thu 10:00; reached Thu
///   09:30: late / on time.
/// - e Thu 10:00: Thu 18:00 / Thu 14:00; never called back: missed / missed.
/// - f Thu 11:00: cancelled Thu 12:00: out of the measure.
/// - g Thu 12:00: Thu 18:00 / Thu 16:00; no answer 13:00, reached 13:30: on time / on time.
/// - d Fri 16:00: Fri 18:00 / 2 h Fri, the weekend, 2 h Mon = next Mon 10:00; reached next
///   Mon 10:30: late / late.
///
/// Same day: on time a, g; late b, c, d; missed e: 2 / 6. Four hours: on time a, b, c, g;
/// late d; missed e: 4 / 6. Seven requested, one cancelled, in each.
fn send_week(d: &Daemon, m: i64) {
    let mut conn = d.json_conn();
    let c = &mut conn;
    ask(c, "a", "support", m + 9 * H);
    callback(c, "a", m + 12 * H, None);
    ask(c, "b", "support", m + 17 * H);
    callback(c, "b", m + DAY + 10 * H, Some("reached"));
    ask(c, "c", "support", m + DAY + 16 * H);
    callback(c, "c", m + 3 * DAY + 9 * H + 30 * MIN, None);
    ask(c, "e", "support", m + 3 * DAY + 10 * H);
    ask(c, "f", "support", m + 3 * DAY + 11 * H);
    callback(c, "f", m + 3 * DAY + 12 * H, Some("cancelled"));
    ask(c, "g", "support", m + 3 * DAY + 12 * H);
    callback(c, "g", m + 3 * DAY + 13 * H, Some("no_answer"));
    callback(c, "g", m + 3 * DAY + 13 * H + 30 * MIN, None);
    ask(c, "d", "support", m + 4 * DAY + 16 * H);
    callback(c, "d", m + 7 * DAY + 10 * H + 30 * MIN, None);
    // A callback for a call that asked for none: taken, counted apart.
    callback(c, "zz", m + 7 * DAY + 11 * H, None);
}

fn callbacks(d: &Daemon) -> Value {
    json_of("callbacks --json", &d.query(&["callbacks", "--json"]))
}

fn sla(d: &Daemon) -> Vec<Value> {
    match json_of("sla --json", &d.query(&["sla", "--json"])) {
        Value::Array(o) => o,
        other => panic!("sla --json printed {other}"),
    }
}

/// The figures that do not move with the clock.
fn stable(d: &Daemon) -> Value {
    let cb = callbacks(d);
    let open: Vec<Value> = cb["open"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            json!([
                r["objective"],
                r["call_id"],
                r["queue"],
                r["requested_ms"],
                r["deadline_ms"],
                r["attempts"]
            ])
        })
        .collect();
    let past: Vec<Value> = sla(d)
        .iter()
        .map(|o| json!([o["name"], o["past"], o["callbacks"]]))
        .collect();
    let engine = &d.status()["engine"];
    json!({
        "open": open,
        "past": past,
        "status": [engine["open_callbacks"], engine["callbacks_unmatched"], engine["callbacks_refused_limit"]],
    })
}

fn past_week<'a>(all: &'a [Value], name: &str, m: i64) -> &'a Value {
    let o = all
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no objective {name}: {all:?}"));
    assert_eq!(o["measure"], "callbacks_within");
    o["past"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["period_start_ms"] == m)
        .unwrap_or_else(|| panic!("no week of {m} in {o}"))
}

#[test]
fn callback_figures_equal_the_hand_worked_ones_and_survive_restart_and_kill_9() {
    let m = monday();
    let mut d = Daemon::start(&config(m));
    send_week(&d, m);
    // Two requests on `sales` now: i asked 3 h ago (due 1 h ago), h a minute ago.
    let now = now_ms();
    let mut conn = d.json_conn();
    ask(&mut conn, "i", "sales", now - 3 * H);
    ask(&mut conn, "h", "sales", now - MIN);
    drop(conn);

    let all = sla(&d);
    let same = past_week(&all, "same-day", m);
    assert_eq!(
        same["callbacks"],
        json!({"requested": 7, "on_time": 2, "late": 3, "missed": 1, "open": 0, "cancelled": 1})
    );
    assert!(
        (same["value"].as_f64().unwrap() - 2.0 / 6.0).abs() < 1e-12,
        "{same}"
    );
    assert_eq!(same["status"], "missed");
    let four = past_week(&all, "four-hours", m);
    assert_eq!(
        four["callbacks"],
        json!({"requested": 7, "on_time": 4, "late": 1, "missed": 1, "open": 0, "cancelled": 1})
    );
    assert!(
        (four["value"].as_f64().unwrap() - 4.0 / 6.0).abs() < 1e-12,
        "{four}"
    );
    assert_eq!(four["status"], "met");

    // Open now: e in both weekly objectives (overdue), i overdue, h due in 2 h less a minute;
    // the earliest deadline first.
    let cb = callbacks(&d);
    let open: Vec<(String, String, i64)> = cb["open"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["objective"].as_str().unwrap().to_string(),
                r["call_id"].as_str().unwrap().to_string(),
                r["deadline_ms"].as_i64().unwrap(),
            )
        })
        .collect();
    let thu = m + 3 * DAY;
    assert_eq!(
        open,
        [
            ("four-hours".to_string(), "e".to_string(), thu + 14 * H),
            ("same-day".to_string(), "e".to_string(), thu + 18 * H),
            ("anytime".to_string(), "i".to_string(), now - H),
            ("anytime".to_string(), "h".to_string(), now - MIN + 2 * H),
        ]
    );
    let left = |i: usize| cb["open"][i]["left_ms"].as_i64().unwrap();
    assert!(left(2) < -H + 60_000 && left(2) > -H - 60_000, "{cb}");
    assert!(left(3) > 0, "{cb}");
    let anytime = cb["objectives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "anytime")
        .unwrap();
    assert_eq!(anytime["overdue"], 1, "{anytime}");
    let text = String::from_utf8(d.query(&["callbacks"]).stdout).unwrap();
    assert!(text.contains("overdue 1h"), "{text}");

    let engine = &d.status()["engine"];
    assert_eq!(engine["open_callbacks"], 4);
    assert_eq!(engine["callbacks_unmatched"], 1);

    // The same after a clean restart, and after kill -9 (the events replayed from the log).
    let before = stable(&d);
    d.stop();
    d.restart();
    assert_eq!(stable(&d), before, "after a restart");
    // A late callback for e after the restart, then kill -9 before any checkpoint.
    let mut conn = d.json_conn();
    callback(&mut conn, "e", now - 10 * MIN, None);
    drop(conn);
    let after_e = stable(&d);
    assert_ne!(after_e, before);
    d.kill();
    d.restart();
    assert_eq!(stable(&d), after_e, "after kill -9");
    let all = sla(&d);
    let same = past_week(&all, "same-day", m);
    assert_eq!(
        same["callbacks"],
        json!({"requested": 7, "on_time": 2, "late": 4, "missed": 0, "open": 0, "cancelled": 1})
    );
}

/// `callmetrics alerts --json`, polled until `f` finds what it waits for.
fn wait_alerts<T>(d: &Daemon, what: &str, f: impl Fn(&Value) -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + support::DEADLINE;
    loop {
        let a = json_of("alerts --json", &d.query(&["alerts", "--json"]));
        if let Some(t) = f(&a) {
            return t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waiting for {what}: {a}\n{}",
            d.log_tail()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn overdue_requests_raise_an_alert_that_resolves_once_called_back() {
    let m = monday();
    // The receiver's port has no listener: delivery is retried, the alert's state is the daemon's.
    let extra = format!(
        "{}\n[alerting]\nevaluate_every = \"1s\"\n\n[[alerting.receivers]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\nbackoff_cap = \"1s\"\n\n[[alerts]]\nname = \"callbacks-overdue\"\nsla = \"anytime\"\nabove = 0\nlevels = [{{ receivers = [\"hook\"] }}]\n",
        config(m)
    );
    let d = Daemon::start(&extra);
    let now = now_ms();
    let mut conn = d.json_conn();
    // Due an hour ago, and one due in two hours: one overdue on `sales`.
    ask(&mut conn, "i", "sales", now - 3 * H);
    ask(&mut conn, "h", "sales", now - MIN);
    let firing = wait_alerts(&d, "the alert firing", |a| {
        a["open"]
            .as_array()?
            .iter()
            .find(|x| x["state"] == "firing")
            .cloned()
    });
    assert_eq!(firing["rule"], "callbacks-overdue");
    assert_eq!(firing["queue"], "sales");
    assert_eq!(firing["watch"], "callbacks_overdue");
    assert_eq!(firing["value"], 1.0);
    assert_eq!(firing["unit"], "requests");
    // Called back: nothing overdue, the alert resolves.
    callback(&mut conn, "i", now_ms(), None);
    let resolved = wait_alerts(&d, "the alert resolved", |a| {
        a["resolved"].as_array()?.first().cloned()
    });
    assert_eq!(resolved["rule"], "callbacks-overdue");
    assert_eq!(resolved["value"], 0.0);
}
