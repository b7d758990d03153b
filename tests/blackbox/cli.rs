//! The client side of the binary: exit codes of queries and `send` against no daemon or a bad
//! config, and `callmetrics send` printing one reply per line.

use std::ffi::OsStr;
use std::fs;

use serde_json::{json, Value};

use crate::start_line;
use crate::support::{self, assert_refused, cli, now_ms, ok, run_to_exit, Daemon, DEADLINE};

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
