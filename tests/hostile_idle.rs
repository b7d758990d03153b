//! Black-box tests of connections held open and quiet on purpose: idle event connections filling
//! `limits.max_connections` must make room for a real PBX client, a half-sent line or frame must
//! not hold its connection for ever, and idle control connections must not lock the CLI out.
//! The daemon's memory is read from /proc before and after each flood.

mod support;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

use callmetrics::control::protocol::{decode_message, Response};
use serde_json::Value;
use support::{connect_events, now_ms, ok, Daemon, JsonConn, PackConn, DEADLINE};

/// Longest a real client may wait for its first reply when it had to take an idle connection's
/// slot: the daemon waits at most 1 s for the slot, and the rest is a loaded test machine's slack.
const REPLY_LATENCY: Duration = Duration::from_secs(2);
/// How long a connection must have been quiet before it can be asked to make room (1 s in the
/// daemon), with a margin.
/// These tests measure idle times and latencies on shared connection slots: one at a time, so on
/// a 2-core machine one test's floods do not stretch another's idle clocks.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    // A failed test poisons the lock; the next test still runs alone.
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

const IDLE_ENOUGH: Duration = Duration::from_millis(1300);
/// How much more resident memory the daemon may hold once the connections of a flood are gone.
const RSS_SLACK_KIB: u64 = 8 * 1024;

fn start_event(call_id: &str) -> String {
    format!(
        r#"{{"type":"start","call_id":"{call_id}","queue":"support","ts":{}}}"#,
        now_ms()
    )
}

/// The daemon's resident memory, KiB.
fn rss_kib(d: &Daemon) -> u64 {
    let status =
        fs::read_to_string(format!("/proc/{}/status", d.pid())).expect("read /proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("a VmRSS line");
    line.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in kB")
}

/// Waits until the daemon's RSS is within `slack` KiB of `before` (freed pages go back within a
/// second or so); returns the last reading, which the caller asserts on.
fn settled_rss(d: &Daemon, before: u64, slack: u64) -> u64 {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let now = rss_kib(d);
        if now <= before + slack || Instant::now() > deadline {
            return now;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// A real client: connects, sends one event, and returns how long the reply took and the
/// connection (kept open, as a PBX hook would).
fn real_client(d: &Daemon, call_id: &str) -> (Duration, Value, JsonConn) {
    let started = Instant::now();
    let mut conn = d.json_conn();
    let reply = conn.request(&start_event(call_id));
    (started.elapsed(), reply, conn)
}

/// Reads until the daemon closes `stream`; panics if it does not within [`DEADLINE`].
fn read_to_close(stream: &mut UnixStream) -> Vec<u8> {
    let mut rest = Vec::new();
    stream
        .read_to_end(&mut rest)
        .unwrap_or_else(|e| panic!("the daemon did not close the connection: {e}"));
    rest
}

fn counter(status: &Value, name: &str) -> u64 {
    status["ingest"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("status has no ingest.{name}: {status}"))
}

#[test]
fn idle_event_connections_make_room_for_real_clients() {
    let _alone = one_at_a_time();
    const MAX: usize = 8;
    let d = Daemon::start(&format!("[limits]\nmax_connections = {MAX}\n"));
    let rss_before = rss_kib(&d);

    // One in the middle of a line, connected first but busy: never to be chosen.
    let mut midline = d.event_stream();
    midline
        .write_all(br#"{"type":"start","call_id":"midline","#)
        .unwrap();
    // The oldest idle: it sent an event, got its reply, and has been quiet since.
    let mut used = d.json_conn();
    assert_eq!(used.request(&start_event("early")), ok());
    // Connections that never send anything, like a hook that connects "just in case".
    let mut silent: Vec<UnixStream> = (0..MAX - 2).map(|_| d.event_stream()).collect();
    thread::sleep(IDLE_ENOUGH);

    // The first real client takes the slot of the one idle longest: the one that was used.
    let (took, reply, first) = real_client(&d, "real-0");
    assert_eq!(reply, ok());
    assert!(
        took < REPLY_LATENCY,
        "the first real client waited {took:?}"
    );
    let mut latencies = vec![took];
    let mut notice = String::new();
    let mut used_reader = BufReader::new(used.stream().try_clone().expect("clone the stream"));
    used_reader.read_line(&mut notice).unwrap();
    let notice: Value = serde_json::from_str(&notice)
        .unwrap_or_else(|e| panic!("notice {notice:?} is not JSON: {e}"));
    assert_eq!(notice["ok"], Value::Bool(false), "{notice}");
    let why = notice["error"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("closed to make room") && why.contains("(limits.max_connections)"),
        "{why}"
    );
    assert!(
        read_to_close(used_reader.get_mut()).is_empty(),
        "nothing may follow the notice"
    );

    // Each further real client takes a silent connection's slot; those close without a word
    // (their framing is unknown).
    let mut real = vec![first];
    for i in 1..MAX - 1 {
        let (took, reply, conn) = real_client(&d, &format!("real-{i}"));
        assert_eq!(reply, ok(), "real client {i}");
        assert!(took < REPLY_LATENCY, "real client {i} waited {took:?}");
        latencies.push(took);
        real.push(conn);
    }
    for (i, s) in silent.iter_mut().enumerate() {
        assert!(read_to_close(s).is_empty(), "silent connection {i}");
    }

    // The connection in the middle of a line kept its slot: its line completes and is stored.
    midline
        .write_all(format!("\"queue\":\"support\",\"ts\":{}}}\n", now_ms()).as_bytes())
        .unwrap();
    let mut line = String::new();
    BufReader::new(&mut midline).read_line(&mut line).unwrap();
    let reply: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(reply, ok(), "the busy connection was cut off");

    let status = d.status();
    assert_eq!(counter(&status, "connections_evicted"), (MAX - 1) as u64);
    assert_eq!(counter(&status, "connections_refused"), 0);
    eprintln!("reply latencies of real clients taking an idle slot: {latencies:?}");
    drop((used_reader, used, real, midline));

    // A larger flood: rounds of idle connections, each fully replaced by real clients.
    for round in 0..3 {
        let idle: Vec<UnixStream> = (0..MAX).map(|_| d.event_stream()).collect();
        thread::sleep(IDLE_ENOUGH);
        let real: Vec<JsonConn> = (0..MAX)
            .map(|i| {
                let (took, reply, conn) = real_client(&d, &format!("flood-{round}-{i}"));
                assert_eq!(reply, ok());
                assert!(
                    took < REPLY_LATENCY,
                    "round {round}, client {i} waited {took:?}"
                );
                conn
            })
            .collect();
        drop((idle, real));
    }
    let rss_after = settled_rss(&d, rss_before, RSS_SLACK_KIB);
    eprintln!("daemon RSS: {rss_before} KiB before, {rss_after} KiB after the floods");
    assert!(
        rss_after <= rss_before + RSS_SLACK_KIB,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
}

#[test]
fn connections_busy_or_recently_active_are_not_evicted_and_newcomers_are_refused() {
    let _alone = one_at_a_time();
    let d = Daemon::start("[limits]\nmax_connections = 2\n");
    let mut a = d.json_conn();
    let mut b = d.json_conn();
    assert_eq!(a.request(&start_event("a")), ok());
    // `b` half-sends a line: busy however long it waits.
    b.stream()
        .write_all(br#"{"type":"start","#)
        .expect("write half a line");
    thread::sleep(IDLE_ENOUGH);
    // `a` stays active: never idle for a whole second.
    let mut refused = None;
    for i in 0..4 {
        assert_eq!(a.request(&start_event(&format!("a{i}"))), ok());
        let mut c = connect_events(&d.events, DEADLINE);
        let mut line = String::new();
        BufReader::new(&mut c).read_line(&mut line).unwrap();
        refused = Some(line);
        thread::sleep(Duration::from_millis(300));
    }
    let refused: Value = serde_json::from_str(&refused.unwrap()).unwrap();
    assert_eq!(
        refused,
        serde_json::json!({"ok": false, "error": "too many connections (limits.max_connections = 2)"})
    );
    // Both kept their slots.
    assert_eq!(a.request(&start_event("a-last")), ok());
    b.stream()
        .write_all(format!("\"call_id\":\"b\",\"queue\":\"q\",\"ts\":{}}}\n", now_ms()).as_bytes())
        .unwrap();
    assert_eq!(b.reply(), ok());
    let status = d.status();
    assert_eq!(counter(&status, "connections_evicted"), 0);
    assert_eq!(counter(&status, "connections_refused"), 4);
}

#[test]
fn half_sent_lines_and_frames_time_out_with_an_error_naming_the_limit() {
    let _alone = one_at_a_time();
    let d = Daemon::start("[limits]\npartial_input_timeout = \"1s\"\n");

    let mut line = d.json_conn();
    let started = Instant::now();
    line.stream()
        .write_all(br#"{"type":"start","call_id":"x""#)
        .unwrap();
    let reply = line.reply();
    let took = started.elapsed();
    assert_eq!(reply["ok"], Value::Bool(false), "{reply}");
    let why = reply["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("line not completed within 1s")
            && why.contains("limits.partial_input_timeout"),
        "{why}"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "the timeout fired after {took:?}"
    );
    assert!(read_to_close(&mut line.stream().try_clone().unwrap()).is_empty());
    eprintln!("half-sent line closed after {took:?}");

    let mut frame = PackConn::connect(&d.events);
    frame.send_raw(&[0, 0, 0, 100, 0x81, 0xa4]);
    let reply = frame.reply();
    let why = reply["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("frame not completed within 1s")
            && why.contains("limits.partial_input_timeout"),
        "{reply}"
    );
    assert_eq!(frame.read_to_close(), 0);

    // A line sent slowly, but completed within the limit, is stored.
    let mut slow = d.json_conn();
    let event = start_event("slow");
    let (head, tail) = event.split_at(event.len() / 2);
    slow.stream().write_all(head.as_bytes()).unwrap();
    thread::sleep(Duration::from_millis(500));
    assert_eq!(slow.request(tail), ok());

    let status = d.status();
    assert_eq!(counter(&status, "partial_input_timeouts"), 2);
    let text = d.query(&["status"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("2 closed half-sent"), "{text}");
}

#[test]
fn idle_control_connections_do_not_lock_the_cli_out() {
    let _alone = one_at_a_time();
    let d = Daemon::start("");
    let rss_before = rss_kib(&d);
    let control = || {
        let s = UnixStream::connect(&d.control).expect("connect to the control socket");
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s
    };
    // The 8 oldest, then 40 more: 16 of those find all 32 slots taken by connections idle for
    // less than a second, and are refused.
    let mut first: Vec<UnixStream> = (0..8).map(|_| control()).collect();
    thread::sleep(Duration::from_millis(200));
    let rest: Vec<UnixStream> = (0..40).map(|_| control()).collect();
    thread::sleep(IDLE_ENOUGH);

    let mut latencies = Vec::new();
    for i in 0..3 {
        let started = Instant::now();
        let out = d.query(&["status"]);
        let took = started.elapsed();
        assert!(
            out.status.success(),
            "status {i} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("connections"));
        assert!(took < REPLY_LATENCY, "status {i} took {took:?}");
        latencies.push(took);
    }
    eprintln!("status latencies with 48 idle control connections: {latencies:?}");
    // The first status took the slot of one of the oldest, which was told why; the next ones
    // found the slot the previous status freed.
    let told: Vec<Response> = first
        .iter_mut()
        .filter_map(|s| {
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut len = [0u8; 4];
            // Untouched connections have nothing to read: the read times out.
            s.read_exact(&mut len).ok()?;
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            s.read_exact(&mut body).expect("read a control message");
            Some(decode_message(&body).expect("a control message"))
        })
        .collect();
    assert_eq!(told.len(), 1, "one of the oldest made room: {told:?}");
    for msg in &told {
        assert!(
            matches!(msg, Response::Error(why) if why.starts_with("closed to make room")),
            "{msg:?}"
        );
    }
    drop((first, rest));
    let rss_after = settled_rss(&d, rss_before, RSS_SLACK_KIB);
    eprintln!("daemon RSS: {rss_before} KiB before, {rss_after} KiB after the control flood");
    assert!(rss_after <= rss_before + RSS_SLACK_KIB);
}

#[test]
fn a_refused_cli_says_why_not_broken_pipe() {
    let _alone = one_at_a_time();
    let d = Daemon::start("");
    // Every control slot busy with half a request.
    let busy: Vec<UnixStream> = (0..40)
        .map(|_| {
            let mut s = UnixStream::connect(&d.control).unwrap();
            let _ = s.write_all(&[0, 0]);
            s
        })
        .collect();
    thread::sleep(IDLE_ENOUGH);
    let out = d.query(&["status"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("refused the connection: too many open control connections"),
        "{stderr}"
    );
    assert!(!stderr.to_lowercase().contains("broken pipe"), "{stderr}");
    drop(busy);
    // Once they are gone, the CLI is served again (as soon as the daemon has seen them close).
    let deadline = Instant::now() + DEADLINE;
    while !d.query(&["status"]).status.success() {
        assert!(
            Instant::now() < deadline,
            "status still refused after the busy connections left"
        );
        thread::sleep(Duration::from_millis(100));
    }
}
