//! Breach alerts end to end: the real daemon evaluates an `[[alerts]]` rule over the calls it is
//! sent and delivers its notifications to a real Prometheus Alertmanager and to a webhook (the
//! scripted HTTP receiver of `support::http`): level 1, level 2 after its delay, resolved past the
//! hysteresis, across a `kill -9`, and through a receiver that fails for a while.
//!
//! The figure watched is `waiting_now`, so the expected values are counted by hand from the
//! calls sent (3 waiting, then 1). Every wait polls with a deadline; a missing Alertmanager
//! fails the test with instructions.

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::alertmanager::Alertmanager;
use support::http::{Action, Receiver};
use support::{json_of, now_ms, ok, Daemon};

const HOST: &str = "pbx-alerts-01";
/// How long a notification may take to arrive (evaluation every second, retries included).
const DEADLINE: Duration = Duration::from_secs(30);

fn event(kind: &str, id: &str) -> String {
    let mut e = json!({"type": kind, "call_id": id, "ts": now_ms()});
    if kind == "start" {
        e["queue"] = json!("support");
    }
    e.to_string()
}

fn send(d: &Daemon, lines: &[String]) {
    let mut conn = d.json_conn();
    for l in lines {
        assert_eq!(conn.request(l), ok(), "{l}");
    }
}

/// Polls `f` until it gives a value, at most [`DEADLINE`]; fails saying `what` it waited for.
fn wait_for<T>(d: &Daemon, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "waiting for {what}; daemon log:\n{}",
            d.log_tail()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// `callmetrics alerts --json`.
fn alerts(d: &Daemon) -> Value {
    json_of("alerts --json", &d.query(&["alerts", "--json"]))
}

/// The receiver's status entry in `status --json` (alert receivers are listed as sinks).
fn receiver_status(d: &Daemon, name: &str) -> Value {
    let st = d.status();
    st["upstream"]["sinks"]
        .as_array()
        .expect("status lists sinks")
        .iter()
        .find(|s| s["name"] == format!("alerts:{name}"))
        .unwrap_or_else(|| panic!("no alerts:{name} in {st}"))
        .clone()
}

/// The JSON documents a webhook accepted (2xx), in arrival order.
fn accepted(rx: &Receiver) -> Vec<Value> {
    rx.requests()
        .iter()
        .filter(|r| r.delivered())
        .map(support::http::Request::json)
        .collect()
}

/// Every attempt's idempotency key, and how many times each was accepted.
fn keys(rx: &Receiver) -> (Vec<String>, HashMap<String, usize>) {
    let mut tried = Vec::new();
    let mut accepted: HashMap<String, usize> = HashMap::new();
    for r in rx.requests() {
        let key = r
            .header("idempotency-key")
            .expect("every notification carries an Idempotency-Key")
            .to_string();
        if r.delivered() {
            assert_eq!(r.json()["idempotency_key"], key.as_str());
            *accepted.entry(key.clone()).or_default() += 1;
        }
        tried.push(key);
    }
    (tried, accepted)
}

fn ms_of(text: &Value) -> i64 {
    text.as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .unwrap_or_else(|| panic!("{text} is not an RFC 3339 time"))
        .as_millisecond()
}

/// The Alertmanager's alerts of the rule, by their `level` label.
fn am_levels(am: &Alertmanager) -> HashMap<String, Value> {
    am.alerts()
        .into_iter()
        .filter(|a| a["labels"]["alertname"] == "queue-full")
        .map(|a| (a["labels"]["level"].as_str().unwrap_or("").to_string(), a))
        .collect()
}

fn config(receivers: &str, rule: &str) -> String {
    format!(
        "[upstream]\nhost_id = \"{HOST}\"\n\n[alerting]\nevaluate_every = \"1s\"\nresend_every = \"3s\"\n\n{receivers}\n{rule}"
    )
}

#[test]
fn alertmanager_sees_level_1_then_level_2_then_resolved_across_a_kill_9() {
    let am_hook = Receiver::standalone(vec![], Action::status(200, ""));
    let am = Alertmanager::start(&am_hook.url("/am"));
    let hook = Receiver::standalone(vec![], Action::status(200, ""));
    let receivers = format!(
        "[[alerting.receivers]]\nname = \"am\"\nkind = \"alertmanager\"\nurl = \"{}\"\nbackoff_cap = \"1s\"\n\n\
         [[alerting.receivers]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\nbackoff_cap = \"1s\"\n",
        am.url(),
        hook.url("/hook")
    );
    let rule = r#"
[[alerts]]
name = "queue-full"
watch = "waiting_now"
queues = ["support"]
above = 2
hysteresis = 1
for = "1s"
levels = [
  { receivers = ["am", "hook"] },
  { after = "8s", receivers = ["am", "hook"], severity = "critical" },
]
"#;
    let mut d = Daemon::start(&config(&receivers, rule));

    // Three calls wait: 3 > 2.
    send(&d, &["c1", "c2", "c3"].map(|c| event("start", c)));
    let levels = wait_for(&d, "level 1 in Alertmanager", || {
        Some(am_levels(&am)).filter(|l| l.contains_key("1"))
    });
    assert_eq!(levels.len(), 1, "{levels:?}");
    let l1 = &levels["1"];
    assert_eq!(
        l1["labels"],
        json!({"alertname": "queue-full", "host": HOST, "objective": "queue-full",
               "queue": "support", "level": "1", "severity": "warning"})
    );
    assert_eq!(l1["annotations"]["value"], "3");
    assert_eq!(l1["annotations"]["target"], "2");
    assert_eq!(l1["annotations"]["margin"], "-1");
    let l1_starts = ms_of(&l1["startsAt"]);
    let l1_ends = ms_of(&l1["endsAt"]);

    // Both receivers have it; then the daemon dies without a chance to flush anything.
    wait_for(&d, "both receivers served", || {
        let done = ["am", "hook"].iter().all(|r| {
            let s = receiver_status(&d, r);
            s["backlog_records"] == 0 && s["delivered_records"] == 1
        });
        done.then_some(())
    });
    d.kill();
    d.restart();

    // Level 2 comes 8 s after level 1 fired, from the stored state: level 1 is not fired again.
    let levels = wait_for(&d, "level 2 in Alertmanager", || {
        Some(am_levels(&am)).filter(|l| l.contains_key("2"))
    });
    assert_eq!(levels["2"]["labels"]["severity"], "critical");
    assert_eq!(levels["2"]["labels"]["level"], "2");
    assert_eq!(ms_of(&levels["1"]["startsAt"]), l1_starts);
    assert!(ms_of(&levels["2"]["startsAt"]) >= l1_starts + 8_000);
    let open = alerts(&d);
    assert_eq!(open["open"].as_array().map(Vec::len), Some(1), "{open}");
    let a = &open["open"][0];
    assert_eq!(
        (
            &a["state"],
            &a["level"],
            &a["value"],
            &a["threshold"],
            &a["since_ms"]
        ),
        (
            &json!("firing"),
            &json!(2),
            &json!(3.0),
            &json!(2.0),
            &json!(l1_starts)
        )
    );

    // Level 1 is only refreshed (re-sent every resend_every), so a later endsAt proves it.
    wait_for(&d, "a refresh of level 1", || {
        am_levels(&am)
            .get("1")
            .filter(|a| ms_of(&a["endsAt"]) > l1_ends)
            .map(|_| ())
    });

    // Alertmanager told its own receiver of both levels firing (it tells of a resolution only
    // what it told as firing).
    let notified = |status: &str, level: &str| {
        accepted(&am_hook)
            .iter()
            .flat_map(|n| n["alerts"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["status"] == status && a["labels"]["level"] == level)
            .collect::<Vec<Value>>()
    };
    wait_for(&d, "Alertmanager's notification of level 2", || {
        (!notified("firing", "2").is_empty()).then_some(())
    });

    // Two calls answered: 1 waits, 2 − 1 = 1 is back past the hysteresis.
    send(&d, &["c1", "c2"].map(|c| event("answer", c)));
    wait_for(&d, "the alert gone from Alertmanager", || {
        am_levels(&am).is_empty().then_some(())
    });
    let docs = wait_for(&d, "the resolved notice at the webhook", || {
        Some(accepted(&hook)).filter(|d| d.len() == 3)
    });
    let seen: Vec<(Value, Value, Value)> = docs
        .iter()
        .map(|d| (d["seq"].clone(), d["status"].clone(), d["level"].clone()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (json!(1), json!("firing"), json!(1)),
            (json!(2), json!("firing"), json!(2)),
            (json!(3), json!("resolved"), json!(2)),
        ]
    );
    assert_eq!(docs[2]["levels"], json!([1, 2]));
    assert_eq!(docs[2]["value"], json!(1.0));
    assert_eq!(docs[2]["idempotency_key"], format!("{HOST}:alert-3"));
    let (_, accepted_keys) = keys(&hook);
    assert!(
        accepted_keys.values().all(|n| *n == 1),
        "a notification was delivered twice: {accepted_keys:?}"
    );
    let resolved_at = ms_of(&docs[2]["at"]);

    // Alertmanager itself concluded "resolved" at that instant, for both levels (not an
    // expiry: each firing send set endsAt 9 s ahead).
    for level in ["1", "2"] {
        let resolved = wait_for(&d, "Alertmanager's resolved notifications", || {
            Some(notified("resolved", level)).filter(|r| !r.is_empty())
        });
        for a in &resolved {
            assert_eq!(a["labels"]["queue"], "support");
            assert_eq!(ms_of(&a["endsAt"]), resolved_at, "{a}");
        }
    }

    let report = alerts(&d);
    assert_eq!(report["open"], json!([]));
    assert_eq!(report["resolved"][0]["level"], 2);
    assert_eq!(report["resolved"][0]["resolved_ms"], resolved_at);
    let text = String::from_utf8_lossy(&d.query(&["alerts"]).stdout).to_string();
    assert!(
        text.starts_with("no open alerts\n\nresolved\n") && text.contains("queue-full"),
        "{text}"
    );
    d.stop();
}

#[test]
fn a_failing_webhook_gets_every_notification_once_in_order() {
    // 500, 500, two requests that time out, a 503 asking for a second's patience; then 200.
    let hook = Receiver::standalone(
        vec![
            Action::status(500, "down"),
            Action::status(500, "down"),
            Action::Hang(Duration::from_secs(3)),
            Action::Hang(Duration::from_secs(3)),
            Action::status(503, "").with_header("Retry-After", "1"),
        ],
        Action::status(200, ""),
    );
    let receivers = format!(
        "[[alerting.receivers]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\nrequest_timeout = \"500ms\"\nbackoff_cap = \"1s\"\n",
        hook.url("/hook")
    );
    let rule = r#"
[[alerts]]
name = "queue-full"
watch = "waiting_now"
queues = ["support"]
above = 0
levels = [{ receivers = ["hook"] }]
"#;
    let d = Daemon::start(&config(&receivers, rule));

    // Three alerts, each fired by a waiting call and resolved by its answer.
    for i in 0..3 {
        let id = format!("w{i}");
        send(&d, &[event("start", &id)]);
        wait_for(&d, "the alert firing", || {
            (alerts(&d)["open"][0]["state"] == "firing").then_some(())
        });
        send(&d, &[event("answer", &id)]);
        wait_for(&d, "the alert resolved", || {
            (alerts(&d)["resolved"].as_array().map(Vec::len) == Some(i + 1)).then_some(())
        });
    }

    let docs = wait_for(&d, "six notifications accepted", || {
        Some(accepted(&hook)).filter(|d| d.len() >= 6)
    });
    let seen: Vec<(u64, &str)> = docs
        .iter()
        .map(|d| {
            (
                d["seq"].as_u64().unwrap_or(0),
                d["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (1, "firing"),
            (2, "resolved"),
            (3, "firing"),
            (4, "resolved"),
            (5, "firing"),
            (6, "resolved")
        ]
    );
    let (tried, accepted_keys) = keys(&hook);
    assert_eq!(accepted_keys.len(), 6);
    assert!(accepted_keys.values().all(|n| *n == 1), "{accepted_keys:?}");
    // The five failures were all the first notification, retried; nothing overtook it.
    assert!(
        tried[..6].iter().all(|k| k == &format!("{HOST}:alert-1")),
        "{tried:?}"
    );
    let seqs: Vec<u64> = tried
        .iter()
        .filter_map(|k| k.rsplit('-').next()?.parse().ok())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "{seqs:?}");

    let st = receiver_status(&d, "hook");
    assert_eq!(st["kind"], "webhook");
    assert_eq!(st["delivered_records"], 6);
    assert_eq!(st["backlog_records"], 0);
    assert_eq!(st["dead_letters"], 0);
    assert!(st["retries"].as_u64() >= Some(5), "{st}");
    assert!(d.log_text().contains("alert delivery failed"));
}
