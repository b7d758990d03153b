//! SIGHUP reloads the config; a broken config is refused, logged with its key and line, and the
//! old one stays.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{self, now_ms, Daemon, DEADLINE};

/// Sends one complete call (wrap-up included, so nothing of it stays open) answered `wait_s`
/// seconds after it started, two minutes ago.
fn answered_call(d: &Daemon, id: &str, wait_s: i64) {
    let start = now_ms() - 120_000;
    let mut conn = d.json_conn();
    for line in [
        json!({"type": "start", "call_id": id, "queue": "q", "ts": start}),
        json!({"type": "answer", "call_id": id, "agent": "alice", "ts": start + wait_s * 1000}),
        json!({"type": "end", "call_id": id, "ts": start + 60_000}),
        json!({"type": "wrapup", "call_id": id, "ts": start + 70_000}),
    ] {
        assert_eq!(conn.request(&line.to_string()), support::ok(), "{line}");
    }
}

/// Waits until the overall 1h row has `answered` calls and every call is folded into the
/// aggregates (the engine then drops it: `open_calls` is 0); returns
/// `(answered_within, threshold_ms)`. Until folded, a call is counted provisionally, under the
/// parameters of the moment.
fn within(d: &Daemon, answered: u64) -> (u64, u64) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let open = d.status()["engine"]["open_calls"].clone();
        let rows = d.metrics("1h", "all");
        if let Some(row) = rows
            .first()
            .filter(|r| open == json!(0) && r["answered"] == json!(answered))
        {
            return (
                row["answered_within"].as_u64().expect("answered_within"),
                row["threshold_ms"].as_u64().expect("threshold_ms"),
            );
        }
        assert!(
            Instant::now() < deadline,
            "never {answered} answered and no open call: open_calls {open}, rows {rows:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// The test config: `[defaults]` with `threshold`, then `more`; a short reorder grace so calls
/// are folded quickly.
fn reload_config(threshold: &str, more: &str) -> String {
    format!(
        "[metrics]\nreorder_grace = \"200ms\"\n\n[defaults]\nthreshold = \"{threshold}\"\n{more}"
    )
}

#[test]
fn sighup_reload() {
    let mut d = Daemon::start(&reload_config("20s", ""));
    answered_call(&d, "a15", 15);
    answered_call(&d, "a25", 25);
    assert_eq!(
        within(&d, 2),
        (1, 20_000),
        "20 s threshold: 15 s in, 25 s out"
    );

    // Reload to 30 s: calls folded from now on use it; those folded before keep their verdict.
    d.rewrite_config(&reload_config("30s", ""));
    d.signal("HUP");
    d.wait_log_line(&["SIGHUP: config reloaded"]);
    answered_call(&d, "b25", 25);
    assert_eq!(
        within(&d, 3),
        (2, 30_000),
        "after the reload to 30 s a call answered after 25 s is within"
    );

    // A broken config (unknown key) is refused: the old one (30 s) stays, and the log names the key.
    d.rewrite_config(&reload_config("20s", "threshhold = \"30s\"\n"));
    d.signal("HUP");
    d.wait_log_line(&["SIGHUP: config not reloaded"]);
    let bad_line = std::fs::read_to_string(&d.config)
        .expect("read the config")
        .lines()
        .position(|l| l.starts_with("threshhold"))
        .expect("the broken key is in the config")
        + 1;
    let log = d.log_text();
    let why = &log[log
        .find("SIGHUP: config not reloaded")
        .expect("found above")..];
    assert!(
        why.contains("unknown field `threshhold`") && why.contains(&format!("line {bad_line}")),
        "the log does not say which key is wrong:\n{why}"
    );
    assert!(
        d.exited().is_none(),
        "the daemon stopped on a broken config"
    );
    answered_call(&d, "c25", 25);
    assert_eq!(
        within(&d, 4),
        (3, 30_000),
        "after a refused reload the old 30 s threshold still applies"
    );
    d.stop();
}
