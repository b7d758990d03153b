//! Careless and hostile clients against a real daemon: control messages that announce more than
//! they send, names carrying terminal escapes, floods of refused connections. Each test also
//! checks that an ordinary client is still served.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{assert_refused, now_ms, ok, Daemon};

/// The daemon's resident memory, KiB, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status")
}

/// `callmetrics status` answers, and how long it took.
fn status_latency(d: &Daemon) -> Duration {
    let t = Instant::now();
    let s = d.status();
    assert!(s.get("ingest").is_some(), "status: {s}");
    t.elapsed()
}

#[test]
fn control_messages_that_announce_more_than_they_send_cost_nothing() {
    let d = Daemon::start("");
    let before = rss_kib(d.pid());
    // 30 clients in turn announce a 16 MiB message and send nothing: each is answered with an
    // error naming the request limit, then closed.
    for _ in 0..30 {
        let mut s = UnixStream::connect(&d.control).expect("connect to the control socket");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&(16u32 << 20).to_be_bytes())
            .expect("write a length");
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.contains("larger than the limit of 65536"),
            "answer to a 16 MiB announcement: {text:?}"
        );
    }
    // 24 more announce 60 KiB (under the limit) and stay, their bodies never sent.
    let held: Vec<UnixStream> = (0..24)
        .map(|_| {
            let mut s = UnixStream::connect(&d.control).expect("connect to the control socket");
            s.write_all(&(60u32 << 10).to_be_bytes())
                .expect("write a length");
            s
        })
        .collect();
    let during = rss_kib(d.pid());
    assert!(
        during < before + 8 * 1024,
        "RSS grew from {before} to {during} KiB for requests never sent"
    );
    let latency = status_latency(&d);
    assert!(latency < Duration::from_secs(2), "status took {latency:?}");
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    let after = rss_kib(d.pid());
    assert!(
        after < before + 8 * 1024,
        "RSS {after} KiB after the clients left, {before} KiB before"
    );
}

#[test]
fn names_with_terminal_escapes_are_refused_and_never_reach_the_tables() {
    let d = Daemon::start("");
    let ts = now_ms() - 60_000;
    let mut c = d.json_conn();
    let hostile = [
        (
            serde_json::json!({"type":"start","call_id":"h1","queue":"q\u{1b}]0;PWNED\u{7}","ts":ts}),
            "queue",
        ),
        (
            serde_json::json!({"type":"start","call_id":"h2\r\nfake row","queue":"support","ts":ts}),
            "call_id",
        ),
        (
            serde_json::json!({"type":"start","call_id":"h3","queue":"support","channel":"v\u{202e}x","ts":ts}),
            "channel",
        ),
    ];
    for (event, field) in &hostile {
        let reply = c.request(&event.to_string());
        assert_refused(&reply, &[field, "printable"], &event.to_string());
    }
    // An ordinary call on the same connection is still taken.
    let fine = serde_json::json!({"type":"start","call_id":"ok1","queue":"support","ts":ts});
    assert_eq!(c.request(&fine.to_string()), ok());
    for args in [
        vec!["calls"],
        vec!["metrics", "--window", "1h"],
        vec!["status"],
    ] {
        let out = d.query(&args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text
                .chars()
                .any(|ch| ch != '\n' && callmetrics::printable::is_refused(ch)),
            "{args:?} printed a control character: {text:?}"
        );
        assert!(
            !text.contains("PWNED") && !text.contains("fake row"),
            "{args:?}: {text}"
        );
    }
    let calls = d.calls();
    assert_eq!(calls.len(), 1, "only the ordinary call is open: {calls:?}");
    assert_eq!(calls[0]["call_id"], Value::from("ok1"));
}

#[test]
fn a_flood_of_refused_connections_logs_a_line_not_a_line_each() {
    let d = Daemon::start("[limits]\nmax_connections = 4\n");
    let held: Vec<UnixStream> = (0..4).map(|_| d.event_stream()).collect();
    // Wait until the four are counted open, so every later connection is refused.
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.status()["ingest"]["connections_open"].as_u64() != Some(4) {
        assert!(Instant::now() < deadline, "status: {}", d.status());
        std::thread::sleep(Duration::from_millis(20));
    }
    let flood = 500;
    for _ in 0..flood {
        if let Ok(mut s) = UnixStream::connect(&d.events) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer);
        }
    }
    let refused = d.status()["ingest"]["connections_refused"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        refused >= flood,
        "{refused} refusals counted for {flood} refused connections"
    );
    let lines = d
        .log_text()
        .lines()
        .filter(|l| l.contains("event connection refused"))
        .count();
    assert!(
        (1..=2).contains(&lines),
        "{lines} warning lines for {refused} refusals:\n{}",
        d.log_tail()
    );
    // The held clients are still served.
    let mut s = held.into_iter().next().expect("four held");
    let e = serde_json::json!({"type":"start","call_id":"f1","queue":"support","ts":now_ms()});
    s.write_all(format!("{e}\n").as_bytes())
        .expect("send on a held connection");
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .expect("read the reply");
    assert_eq!(
        serde_json::from_str::<Value>(&line).ok(),
        Some(ok()),
        "{line:?}"
    );
}

#[test]
fn a_store_path_that_is_a_file_is_refused_naming_the_key_and_left_alone() {
    let d = Daemon::configure("");
    let store = d.dir.path().join("store");
    std::fs::write(&store, b"not a store").expect("write a file where the store goes");
    let out = support::run_to_exit(
        std::process::Command::new(support::BIN)
            .args(["run", "--config"])
            .arg(&d.config),
        Duration::from_secs(20),
    );
    assert!(!out.status.success(), "run succeeded on a file: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("store.path") && err.contains("is a file, not a folder"),
        "{err}"
    );
    assert_eq!(std::fs::read(&store).unwrap(), b"not a store");
    assert!(!d.events.exists(), "a socket was left behind");
}

#[test]
fn a_timestamp_far_ahead_of_this_hosts_clock_is_refused_naming_the_limit() {
    let d = Daemon::start("[limits]\nmax_clock_ahead = \"5m\"\n");
    let mut c = d.json_conn();
    let day_ahead = now_ms() + 24 * 3_600_000;
    let e = serde_json::json!({"type":"start","call_id":"f1","queue":"support","ts":day_ahead});
    let reply = c.request(&e.to_string());
    assert_refused(
        &reply,
        &["ts", "limits.max_clock_ahead", "ahead"],
        "a day ahead",
    );
    // A minute ahead (clocks a little apart) is taken.
    let e =
        serde_json::json!({"type":"start","call_id":"f2","queue":"support","ts":now_ms() + 60_000});
    assert_eq!(c.request(&e.to_string()), ok());
    let status = d.status();
    assert_eq!(
        status["ingest"]["events_rejected"]["clock_ahead"],
        Value::from(1),
        "{status}"
    );
    let calls = d.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["call_id"], Value::from("f2"));
}

/// One control request on `socket` over the wire protocol, as any local program could send it;
/// the daemon's answer.
fn control_request(
    socket: &std::path::Path,
    req: &callmetrics::control::protocol::Request,
) -> callmetrics::control::protocol::Response {
    use callmetrics::control::protocol::{decode_message, encode_message};
    let bytes = encode_message(req).expect("encode a request");
    let mut s = UnixStream::connect(socket).expect("connect to a control socket");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&(bytes.len() as u32).to_be_bytes()).unwrap();
    s.write_all(&bytes).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("read an answer's length");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).expect("read an answer");
    decode_message(&body).expect("decode an answer")
}

#[test]
fn flush_and_reload_are_refused_on_the_control_socket_naming_the_admin_socket() {
    use callmetrics::control::protocol::{Request, Response};
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    // No checkpoint but the ones asked for, so a flush shows in `status`.
    let d = Daemon::start("checkpoint_interval = \"1h\"\n");
    let admin = d.dir.path().join("admin.sock");
    let meta = std::fs::metadata(&admin).expect("the admin socket beside the control socket");
    assert!(meta.file_type().is_socket(), "{admin:?} is not a socket");
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "admin socket mode {:o}",
        meta.permissions().mode()
    );
    assert_eq!(
        d.status()["admin_socket"],
        Value::from(admin.display().to_string())
    );
    let control_mode = std::fs::metadata(&d.control).unwrap().permissions().mode() & 0o777;
    assert_eq!(control_mode, 0o660, "control socket mode {control_mode:o}");

    let mut c = d.json_conn();
    let e = serde_json::json!({"type":"start","call_id":"r1","queue":"support","ts":now_ms()});
    assert_eq!(c.request(&e.to_string()), ok());
    let groups = |d: &Daemon| d.status()["store"]["logged_groups"].as_u64();
    let logged = groups(&d);
    assert!(logged.is_some_and(|n| n > 0), "status: {}", d.status());

    // The CLI pointed at the control socket: refused, exit 1, naming the admin socket.
    let control = d.control_arg();
    for cmd in ["flush", "reload"] {
        let out = support::cli([cmd, "--admin-socket", &control]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {out:?}");
        assert!(
            err.contains(&format!("{cmd} is an admin request"))
                && err.contains(&format!("send it on {}", admin.display()))
                && err.contains("--admin-socket"),
            "{cmd}: {err}"
        );
    }
    // A reload refused leaves the old config: the file now says otherwise.
    d.rewrite_config("checkpoint_interval = \"1h\"\n[limits]\nmax_tags = 5\n");
    let out = support::cli(["reload", "--admin-socket", &control]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let status = d.status();
    assert_eq!(status["limits"]["max_tags"], Value::from(16), "{status}");
    assert_eq!(groups(&d), logged, "a refused flush checkpointed: {status}");

    // Many refused requests from one careless client: memory stays, others are served.
    let before = rss_kib(d.pid());
    for _ in 0..200 {
        match control_request(&d.control, &Request::Flush) {
            Response::Error(msg) => assert!(msg.contains("admin request"), "{msg}"),
            other => panic!("flush on the control socket answered {other:?}"),
        }
    }
    let latency = status_latency(&d);
    assert!(latency < Duration::from_secs(2), "status took {latency:?}");
    let after = rss_kib(d.pid());
    assert!(
        after < before + 8 * 1024,
        "RSS {after} KiB after 200 refused flushes, {before} KiB before"
    );
    assert_eq!(groups(&d), logged, "a refused flush checkpointed");
    let calls = d.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");

    // On the admin socket (found beside --socket), both work.
    let out = d.query(&["flush"]);
    assert!(out.status.success(), "flush on the admin socket: {out:?}");
    assert_eq!(groups(&d), Some(0), "status: {}", d.status());
    let out = d.query(&["reload"]);
    assert!(out.status.success(), "reload on the admin socket: {out:?}");
    assert_eq!(d.status()["limits"]["max_tags"], Value::from(5));
    // The event connection was never disturbed.
    let e = serde_json::json!({"type":"answer","call_id":"r1","agent":"ann","ts":now_ms()});
    assert_eq!(c.request(&e.to_string()), ok());
}

#[test]
fn an_event_naming_a_key_twice_is_refused_naming_it_and_changes_nothing() {
    let d = Daemon::start("");
    let ts = now_ms() - 60_000;
    let mut c = d.json_conn();
    let start = serde_json::json!({"type":"start","call_id":"k1","queue":"support","ts":ts});
    assert_eq!(c.request(&start.to_string()), ok());
    // What a refused event could change: the accepted count and the open calls (not their ages).
    let seen = |d: &Daemon| {
        let calls: Vec<(Value, Value, Value)> = d
            .calls()
            .iter()
            .map(|c| (c["call_id"].clone(), c["phase"].clone(), c["agent"].clone()))
            .collect();
        (d.status()["ingest"]["events_accepted"].clone(), calls)
    };
    let before = seen(&d);
    // Written by hand: a JSON object built in memory cannot hold a key twice.
    let lines = [
        (
            format!(r#"{{"type":"start","call_id":"k2","queue":"a","queue":"b","ts":{ts}}}"#),
            "queue",
        ),
        (
            format!(
                r#"{{"type":"answer","call_id":"k1","agent":"ann","agent":"bob","ts":{}}}"#,
                ts + 5_000
            ),
            "agent",
        ),
        (
            format!(
                r#"{{"type":"start","call_id":"k3","queue":"support","ts":{ts},"tags":{{"tier":"gold","tier":"tin"}}}}"#
            ),
            "tags.tier",
        ),
    ];
    for (line, key) in &lines {
        let reply = c.request(line);
        assert_refused(&reply, &["duplicate field", key], line);
    }
    // MessagePack: a map naming `call_id` twice.
    let mut body = b"\x84\xa4type\xa4hold\xa7call_id\xa2k1\xa7call_id\xa2k9\xa2ts\xcf".to_vec();
    body.extend(u64::try_from(ts + 1_000).unwrap().to_be_bytes());
    let mut p = d.pack_conn();
    let mut frame = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    frame.extend(body);
    p.send_raw(&frame);
    assert_refused(&p.reply(), &["duplicate field", "call_id"], "MessagePack");

    let after = seen(&d);
    assert_eq!(before, after, "a refused event changed something");
    assert_eq!(after.1.len(), 1, "{:?}", after.1);
    assert_eq!(after.1[0].2, Value::Null, "k1 was answered: {:?}", after.1);
    // Both connections keep serving.
    let answer = serde_json::json!({"type":"answer","call_id":"k1","agent":"ann","ts":ts + 5_000});
    assert_eq!(c.request(&answer.to_string()), ok());
    let hold = serde_json::json!({"type":"hold","call_id":"k1","ts":ts + 6_000});
    assert_eq!(p.request(&hold), ok());
}

/// Waits until the wall clock is at least `margin` away from a minute boundary, where the daemon's
/// expiry scan runs (every minute of its clock, aligned on the minute).
fn away_from_a_scan(margin: Duration) {
    loop {
        let into = u64::try_from(now_ms().rem_euclid(60_000)).unwrap();
        let margin = u64::try_from(margin.as_millis()).unwrap();
        if into >= margin && into + margin <= 60_000 {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_start_dated_far_in_the_past_expires_at_a_scan_soon_after_and_old_complete_calls_count() {
    let d = Daemon::start("");
    let now = now_ms();
    // A whole call 5 h ago (older than max_call_duration, 4 h), backfilled: as one batch, and
    // with `callmetrics send` line after line, clear of a scan.
    away_from_a_scan(Duration::from_secs(5));
    let call = |id: &str, at: i64| {
        [
            serde_json::json!({"type":"start","call_id":id,"queue":"backfill","ts":at}),
            serde_json::json!({"type":"answer","call_id":id,"agent":"ann","ts":at + 10_000}),
            serde_json::json!({"type":"end","call_id":id,"ts":at + 70_000}),
        ]
    };
    let batch = Value::Array(call("b1", now - 5 * 3_600_000).to_vec());
    let mut c = d.json_conn();
    let reply = c.request(&batch.to_string());
    assert_eq!(reply["ok"], Value::Bool(true), "{reply}");
    let file = d.dir.path().join("backfill.jsonl");
    let lines: Vec<String> = call("b2", now - 5 * 3_600_000 + 1_000)
        .iter()
        .map(Value::to_string)
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = support::cli([
        "send".as_ref(),
        file.as_os_str(),
        "--socket".as_ref(),
        d.events.as_os_str(),
    ]);
    assert!(out.status.success(), "send: {out:?}");

    // A lone start dated 30 days ago, and a current one.
    let received = Instant::now();
    let old = serde_json::json!({"type":"start","call_id":"old","queue":"support","ts":now - 30 * 86_400_000});
    assert_eq!(c.request(&old.to_string()), ok());
    let fresh =
        serde_json::json!({"type":"start","call_id":"fresh","queue":"support","ts":now_ms()});
    assert_eq!(c.request(&fresh.to_string()), ok());

    // The old start is closed as expired at the first scan once its call has been quiet for
    // 10 s (within 70 s of receipt, not max_call_duration after it), and counted; the current
    // call stays.
    let deadline = received + Duration::from_secs(80);
    loop {
        let status = d.status();
        if status["engine"]["expired_segments"].as_u64() == Some(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the 30-day-old start was not expired {:?} after it came: {status}",
            received.elapsed()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let calls = d.calls();
    let ids: Vec<&str> = calls.iter().filter_map(|c| c["call_id"].as_str()).collect();
    assert_eq!(ids, ["fresh"], "{calls:?}");
    let rows = d.metrics("1h", "queue");
    let support = rows
        .iter()
        .find(|r| r["queue"] == "support")
        .expect("a support row");
    assert_eq!(support["waiting_now"], Value::from(1), "{support}");
    let longest = support["longest_wait_now_ms"].as_i64().unwrap_or(0);
    assert!(
        longest < 120_000,
        "longest wait now {longest} ms: {support}"
    );

    // Both backfilled calls count in the windows they fall in, not as expired.
    let rows = d.metrics("24h", "queue");
    let backfill = rows
        .iter()
        .find(|r| r["queue"] == "backfill")
        .unwrap_or_else(|| panic!("no backfill row: {rows:?}"));
    assert_eq!(
        (
            &backfill["offered"],
            &backfill["answered"],
            &backfill["handled"]
        ),
        (&Value::from(2), &Value::from(2), &Value::from(2)),
        "{backfill}"
    );
    assert_eq!(backfill["wait_sum_ms"], Value::from(20_000), "{backfill}");
}

/// The rest of a backfilled call that comes after the expiry scan closed its old `start` cannot
/// join it (the segment is already counted as expired); its events are orphans of a call
/// older than `max_call_duration`, so the next scan expires them too and `status` counts them
/// under `expired_orphan_events`: seen, never silently dropped. README: send a backfilled call's
/// events together.
#[test]
fn the_rest_of_an_old_call_sent_after_the_scan_is_counted_as_expired() {
    let d = Daemon::start("");
    let at = now_ms() - 5 * 3_600_000;
    let mut c = d.json_conn();
    let start = serde_json::json!({"type":"start","call_id":"s1","queue":"split","ts":at});
    assert_eq!(c.request(&start.to_string()), ok());
    let deadline = Instant::now() + Duration::from_secs(80);
    while d.status()["engine"]["expired_segments"].as_u64() != Some(1) {
        assert!(Instant::now() < deadline, "status: {}", d.status());
        std::thread::sleep(Duration::from_millis(250));
    }
    let answer = serde_json::json!({"type":"answer","call_id":"s1","agent":"ann","ts":at + 10_000});
    let end = serde_json::json!({"type":"end","call_id":"s1","ts":at + 70_000});
    assert_eq!(c.request(&answer.to_string()), ok());
    assert_eq!(c.request(&end.to_string()), ok());
    let deadline = Instant::now() + Duration::from_secs(75);
    loop {
        let status = d.status();
        let orphans = status["engine"]["expired_orphan_events"]
            .as_u64()
            .unwrap_or(0);
        let late = status["engine"]["late"].as_u64().unwrap_or(0);
        if orphans + late == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the answer and end of an expired old call went uncounted: {status}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let rows = d.metrics("24h", "queue");
    let split = rows.iter().find(|r| r["queue"] == "split");
    assert!(
        split.is_none_or(|r| r["offered"].as_u64() == Some(0)),
        "an expired segment is not offered: {split:?}"
    );
    assert!(d.calls().is_empty(), "{:?}", d.calls());
}

/// A user who may query (here: the control socket opened to everyone) but is not the daemon's:
/// `status` works, `flush` is told who may use the admin socket, and nothing is flushed.
#[test]
fn a_user_allowed_on_the_control_socket_cannot_flush_and_is_told_who_can() {
    use std::os::unix::fs::PermissionsExt;
    let probe = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "true"])
        .status();
    assert!(
        probe.is_ok_and(|s| s.success()),
        "this test acts as user nobody through `setpriv` (util-linux), which needs root: run the suite as root, as .ci/run does"
    );
    let d = Daemon::start("checkpoint_interval = \"1h\"\n");
    let set_mode = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    set_mode(d.dir.path(), 0o755);
    set_mode(&d.control, 0o666);
    let mut c = d.json_conn();
    let e = serde_json::json!({"type":"start","call_id":"u1","queue":"support","ts":now_ms()});
    assert_eq!(c.request(&e.to_string()), ok());
    let logged = d.status()["store"]["logged_groups"].clone();

    let as_nobody = |args: &[&str]| {
        support::run_to_exit(
            std::process::Command::new("setpriv")
                .args([
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    support::BIN,
                ])
                .args(args),
            Duration::from_secs(20),
        )
    };
    let control = d.control_arg();
    let out = as_nobody(&["status", "--json", "--socket", &control]);
    assert!(out.status.success(), "status as nobody: {out:?}");
    let out = as_nobody(&["flush", "--socket", &control]);
    let err = String::from_utf8_lossy(&out.stderr);
    let admin = d.dir.path().join("admin.sock");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        err.contains(&format!(
            "no permission to use the admin socket {} for flush",
            admin.display()
        )) && err.contains("root")
            && err.contains("sudo callmetrics flush")
            && !err.contains("os error"),
        "{err}"
    );
    assert_eq!(d.status()["store"]["logged_groups"], logged);
}

/// A socket in a folder that does not exist yet: the daemon makes the folder (as the local default
/// and a fresh /run need) and says so in its log, naming the folder and the socket; then it serves.
#[test]
fn a_socket_in_a_missing_folder_gets_its_folder_made_and_logged() {
    let dir = tempfile::Builder::new()
        .prefix("cmt")
        .tempdir_in("/tmp")
        .unwrap();
    let events = dir.path().join("new/sub/events.sock");
    let control = dir.path().join("ctl/control.sock");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[ingest]\nsocket = {events:?}\n\n[control]\nsocket = {control:?}\n\n[store]\npath = {:?}\n",
            dir.path().join("store")
        ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let mut child = std::process::Command::new(support::BIN)
        .args(["run", "--config"])
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.path().join("daemon.err")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + support::START_DEADLINE;
    while UnixStream::connect(&events).is_err() || UnixStream::connect(&control).is_err() {
        assert!(Instant::now() < deadline, "the daemon never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = support::cli(["status", "--json", "--socket", control.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap()
        + &std::fs::read_to_string(dir.path().join("daemon.err")).unwrap();
    for folder in [events.parent().unwrap(), control.parent().unwrap()] {
        assert!(
            text.contains(&format!("created the folder {}", folder.display())),
            "no log line names {folder:?}: {text}"
        );
    }
}
