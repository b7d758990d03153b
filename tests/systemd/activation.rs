//! Socket activation through `systemd-socket-activate`: the sockets passed as fds 3, 4 and 5
//! (events, control, admin) win over the config's paths, and the daemon answers on them.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{self, cli, json_of, now_ms, Daemon, START_DEADLINE};
use crate::{run_tool, SYSTEMD_PKG};

/// Waits until `path` exists (a socket the activator binds at its start).
fn wait_path(path: &Path, d: &mut Daemon) {
    let deadline = Instant::now() + START_DEADLINE;
    while !path.exists() {
        if let Some(status) = d.exited() {
            panic!(
                "systemd-socket-activate exited with {status} before binding {}:\n{}",
                path.display(),
                d.log_text()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} was not bound within {START_DEADLINE:?}:\n{}",
            path.display(),
            d.log_text()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn socket_activation() {
    let out = run_tool(
        Command::new("systemd-socket-activate").arg("--version"),
        SYSTEMD_PKG,
    );
    assert!(
        out.status.success(),
        "systemd-socket-activate --version failed"
    );

    // The config names d.events and d.control; the activator binds other paths, so only the
    // passed fds can make the daemon answer on them.
    let mut d = Daemon::configure("");
    let events = d.dir.path().join("act-events.sock");
    let control = d.dir.path().join("act-control.sock");
    let admin = d.dir.path().join("act-admin.sock");
    let activator: [&OsStr; 8] = [
        OsStr::new("systemd-socket-activate"),
        OsStr::new("-l"),
        events.as_os_str(),
        OsStr::new("-l"),
        control.as_os_str(),
        OsStr::new("-l"),
        admin.as_os_str(),
        OsStr::new("--fdname=events:control:admin"),
    ];
    d.spawn_with(&activator, &[]);
    wait_path(&control, &mut d);
    // The first connection makes the activator exec the daemon with fds 3 (events) and 4 (control).
    d.wait_answering(&control);
    let log = d.log_text();
    for name in ["events", "control", "admin"] {
        assert!(
            log.contains(&format!("using the {name} socket passed by systemd")),
            "the daemon did not take the {name} socket passed to it; log:\n{log}"
        );
    }

    let base = now_ms() - 60_000;
    let lines = [
        json!({"type": "start", "call_id": "a1", "queue": "sales", "ts": base}),
        json!({"type": "answer", "call_id": "a1", "agent": "alice", "ts": base + 5_000}),
        json!({"type": "end", "call_id": "a1", "ts": base + 30_000}),
        json!({"type": "start", "call_id": "a2", "queue": "sales", "ts": base + 1_000}),
        json!({"type": "end", "call_id": "a2", "reason": "abandoned", "ts": base + 21_000}),
        json!({"type": "start", "call_id": "a3", "queue": "sales", "ts": base + 50_000}),
    ];
    let mut conn = support::JsonConn::connect(&events);
    for line in &lines {
        assert_eq!(conn.request(&line.to_string()), support::ok(), "{line}");
    }
    drop(conn);

    let control_arg = control.display().to_string();
    let status = json_of(
        "status --json",
        &cli(["status", "--json", "--socket", &control_arg]),
    );
    assert_eq!(status["ingest"]["events_accepted"], json!(lines.len()));
    let rows = json_of(
        "metrics --json",
        &cli([
            "metrics",
            "--json",
            "--window",
            "1h",
            "--by",
            "all",
            "--socket",
            &control_arg,
        ]),
    );
    let row = &rows[0];
    assert_eq!(
        (&row["offered"], &row["answered"], &row["abandoned"]),
        (&json!(2), &json!(1), &json!(1)),
        "{rows}"
    );
    assert_eq!(row["waiting_now"], json!(1), "{rows}");
    let calls = json_of(
        "calls --json",
        &cli(["calls", "--json", "--socket", &control_arg]),
    );
    assert!(
        calls
            .as_array()
            .is_some_and(|c| c.iter().any(|s| s["call_id"] == "a3")),
        "a3 is not listed as waiting: {calls}"
    );
    // flush is refused on the passed control socket and served on the passed admin socket.
    let out = cli([
        "flush",
        "--socket",
        &control_arg,
        "--admin-socket",
        &control_arg,
    ]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("admin request"),
        "flush on the control socket: {out:?}"
    );
    let out = cli([
        "flush".as_ref(),
        "--admin-socket".as_ref(),
        admin.as_os_str(),
    ]);
    assert!(out.status.success(), "flush on the admin socket: {out:?}");
    let configured_admin = d.dir.path().join("admin.sock");
    assert!(
        !d.events.exists() && !d.control.exists() && !configured_admin.exists(),
        "the daemon bound the config's socket paths although it was given sockets"
    );

    d.stop();
}
