//! systemd integration of the real binary, and its Debian package:
//!
//! - the units pass `systemd-analyze verify` and score well in `systemd-analyze security`;
//! - `sd_notify`: READY=1 once both sockets accept, WATCHDOG=1 at half of `WATCHDOG_USEC`, STATUS=,
//!   STOPPING=1 on SIGTERM, exit 0;
//! - socket activation through `systemd-socket-activate` (the sockets passed as fds 3 and 4 win
//!   over the config's paths);
//! - SIGTERM in the middle of a pipelined stream: every line gets its reply or the connection
//!   closes, and everything acknowledged is there after a restart;
//! - SIGHUP reloads the config; a broken config is refused, logged with its key, and the old one
//!   stays;
//! - `packaging/build-deb.sh` builds a .deb holding the binary, units, sysusers and tmpfiles
//!   snippets, the config as a conffile, the man page and the completions.
//!
//! Tools come from Debian packages that `.ci/run` installs (`systemd`, `dpkg-dev`) and from
//! `cargo install cargo-deb`; a missing tool fails the test with the package to install.

mod support;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{cli, json_of, now_ms, Daemon, BIN, DEADLINE, START_DEADLINE};

/// The crate's root (where `systemd/`, `config/` and `packaging/` are).
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Runs a tool the test needs; a tool that is not installed fails the test naming what provides it.
fn run_tool(cmd: &mut Command, provider: &str) -> Output {
    let program = cmd.get_program().to_string_lossy().into_owned();
    match cmd.stdin(Stdio::null()).output() {
        Ok(out) => out,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "`{program}` is not installed: {provider} (.ci/run installs it before the tests)"
        ),
        Err(e) => panic!("cannot run `{program}`: {e}"),
    }
}

const SYSTEMD_PKG: &str = "install the Debian package `systemd`";

fn both_streams(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---------------------------------------------------------------------------------------------
// 1. Units

#[test]
fn units_verify_and_score_well() {
    let dir = tempfile::tempdir().expect("create a temporary folder");
    let service = dir.path().join("callmetrics.service");
    let socket = dir.path().join("callmetrics.socket");
    let unit = std::fs::read_to_string(Path::new(ROOT).join("systemd/callmetrics.service"))
        .expect("read systemd/callmetrics.service");
    assert!(
        unit.contains("ExecStart=/usr/bin/callmetrics "),
        "the service no longer starts /usr/bin/callmetrics:\n{unit}"
    );
    std::fs::write(&service, unit.replace("/usr/bin/callmetrics", BIN)).expect("write the unit");
    std::fs::copy(Path::new(ROOT).join("systemd/callmetrics.socket"), &socket)
        .expect("copy systemd/callmetrics.socket");

    // `Documentation=man:callmetrics(1)` must resolve: the man page this binary generates.
    let man = dir.path().join("man");
    let out = cli([
        OsStr::new("generate"),
        OsStr::new("--out"),
        man.join("man1").as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "callmetrics generate failed: {}",
        both_streams(&out)
    );
    assert!(man.join("man1/callmetrics.1").is_file(), "no man page");

    let out = run_tool(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(&service)
            .arg(&socket)
            .env("MANPATH", &man),
        SYSTEMD_PKG,
    );
    let text = both_streams(&out);
    let ours: Vec<&str> = text.lines().filter(|l| l.contains("callmetrics")).collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify exited with {} and says about our units:\n{}\n(all its output:\n{text})",
        out.status,
        ours.join("\n")
    );

    let out = run_tool(
        Command::new("systemd-analyze")
            .arg("security")
            .arg("--offline=true")
            .arg(&service),
        SYSTEMD_PKG,
    );
    let text = both_streams(&out);
    let prefix = "Overall exposure level for callmetrics.service: ";
    let level: f64 = text
        .lines()
        .find_map(|l| l.split_once(prefix).map(|(_, rest)| rest))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("no `{prefix}X` in systemd-analyze security's output:\n{text}"));
    println!("systemd-analyze security: exposure level {level}");
    assert!(
        level <= 2.0,
        "exposure level {level} > 2.0; the weak points:\n{}",
        text.lines()
            .filter(|l| l.contains('✗'))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// 2. sd_notify

/// One datagram received on the notify socket, and when.
struct Note {
    at: Instant,
    text: String,
}

impl Note {
    fn has(&self, line: &str) -> bool {
        self.text.lines().any(|l| l == line)
    }
}

/// Receives on `sock` until `stop`, forwarding every datagram. Draining all the time matters:
/// the kernel queues only a few datagrams (`net.unix.max_dgram_qlen`) before the sender blocks.
fn receive_notes(sock: UnixDatagram, stop: Arc<AtomicBool>, tx: mpsc::Sender<Note>) {
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("set a read timeout");
    let mut buf = vec![0u8; 8192];
    while !stop.load(Ordering::Relaxed) {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let note = Note {
                    at: Instant::now(),
                    text: String::from_utf8_lossy(&buf[..n]).into_owned(),
                };
                if tx.send(note).is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("receiving on the notify socket failed: {e}"),
        }
    }
}

/// Takes notes until one has `line`; every note taken is appended to `seen`.
fn wait_note(
    rx: &mpsc::Receiver<Note>,
    line: &str,
    limit: Duration,
    seen: &mut Vec<Note>,
) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(note) => {
                let found = note.has(line);
                seen.push(note);
                if found {
                    return seen.len() - 1;
                }
            }
            Err(e) => panic!(
                "no {line} within {limit:?} ({e}); received: {:?}",
                seen.iter().map(|n| &n.text).collect::<Vec<_>>()
            ),
        }
    }
}

#[test]
fn notify_ready_watchdog_stopping() {
    let mut d = Daemon::configure("");
    let notify_path = d.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&notify_path).expect("bind the notify socket");
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let receiver = {
        let stop = stop.clone();
        thread::spawn(move || receive_notes(sock, stop, tx))
    };

    d.spawn_with(
        &[],
        &[
            ("NOTIFY_SOCKET", notify_path.as_os_str()),
            ("WATCHDOG_USEC", OsStr::new("400000")),
        ],
    );
    let mut seen = Vec::new();
    let ready = wait_note(&rx, "READY=1", START_DEADLINE, &mut seen);
    // Right at READY=1 both sockets must take connections.
    let events = UnixStream::connect(&d.events);
    let control = UnixStream::connect(&d.control);
    assert!(
        events.is_ok() && control.is_ok(),
        "READY=1 came before the sockets accept: events {events:?}, control {control:?}\nlog:\n{}",
        d.log_tail()
    );
    drop((events, control));
    let ready_at = seen[ready].at;
    let status = seen[ready]
        .text
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .map_or_else(
            || panic!("READY=1 came without STATUS=: {:?}", seen[ready].text),
            str::to_string,
        );
    assert!(
        status.contains("events accepted"),
        "unexpected STATUS= text: {status:?}"
    );

    // WATCHDOG_USEC=400000: a ping every 200 ms, so at least 3 in the 1.5 s after READY.
    let until = ready_at + Duration::from_millis(1500);
    let from = seen.len();
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(note) => seen.push(note),
            Err(_) => break,
        }
    }
    let pings: Vec<Duration> = seen[from..]
        .iter()
        .filter(|n| n.has("WATCHDOG=1") && n.at <= until)
        .map(|n| n.at - ready_at)
        .collect();
    assert!(
        pings.len() >= 3,
        "only {} WATCHDOG=1 within 1.5 s of READY=1 (at {pings:?})",
        pings.len()
    );
    assert!(
        !seen.iter().any(|n| n.has("STOPPING=1")),
        "STOPPING=1 before any stop signal"
    );

    // The daemon answers as usual meanwhile.
    assert_eq!(d.status()["ingest"]["events_accepted"], json!(0));

    let exit = d.terminate();
    wait_note(&rx, "STOPPING=1", DEADLINE, &mut seen);
    assert!(
        exit.success(),
        "the daemon exited with {exit} after SIGTERM; log:\n{}",
        d.log_tail()
    );
    stop.store(true, Ordering::Relaxed);
    drop(rx);
    receiver.join().expect("the notify receiver");
    println!(
        "notify: READY=1 with STATUS={status:?}; WATCHDOG=1 at {pings:?} after it; STOPPING=1"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Socket activation

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
    let activator: [&OsStr; 6] = [
        OsStr::new("systemd-socket-activate"),
        OsStr::new("-l"),
        events.as_os_str(),
        OsStr::new("-l"),
        control.as_os_str(),
        OsStr::new("--fdname=events:control"),
    ];
    d.spawn_with(&activator, &[]);
    wait_path(&control, &mut d);
    // The first connection makes the activator exec the daemon with fds 3 (events) and 4 (control).
    d.wait_answering(&control);
    let log = d.log_text();
    for name in ["events", "control"] {
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
    assert!(
        !d.events.exists() && !d.control.exists(),
        "the daemon bound the config's socket paths although it was given sockets"
    );

    d.stop();
}

// ---------------------------------------------------------------------------------------------
// 4. SIGTERM mid-stream

/// The reply the daemon gives to a line it read but will not store because it is stopping.
const SHUTTING_DOWN: &str = "the daemon is shutting down; event not stored";

/// What the reader got: line `i` of the stream is call `s{i}`, and replies come in line order.
#[derive(Debug, Default)]
struct Replies {
    /// Lines answered `{"ok":true}`.
    acked: Vec<u64>,
    /// Lines answered `{"ok":false,"error":SHUTTING_DOWN}`.
    refused: Vec<u64>,
    /// Why the reading stopped, if not because the daemon closed the connection.
    failure: Option<String>,
}

/// Streams `start` lines for `s0, s1, ...` in bursts until a write fails (the daemon closed the
/// connection) or `limit` lines; `sent` counts each line before it is written.
fn stream_starts(mut stream: UnixStream, sent: Arc<AtomicU64>, limit: u64) -> Option<ErrorKind> {
    let mut next = 0u64;
    while next < limit {
        let mut bytes = Vec::new();
        for _ in 0..20 {
            let line = json!({"type": "start", "call_id": format!("s{next}"), "queue": "q", "ts": now_ms()});
            bytes.extend_from_slice(line.to_string().as_bytes());
            bytes.push(b'\n');
            next += 1;
        }
        sent.store(next, Ordering::SeqCst);
        if let Err(e) = stream.write_all(&bytes) {
            return Some(e.kind());
        }
        thread::sleep(Duration::from_millis(2));
    }
    None
}

/// Reads replies in order until the daemon closes the connection (or the read times out: a hang).
fn read_replies(stream: UnixStream, acks: Arc<AtomicU64>) -> Replies {
    let mut got = Replies::default();
    let mut replies = BufReader::new(stream);
    let mut line = String::new();
    for n in 0u64.. {
        line.clear();
        match replies.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) if !line.ends_with('\n') => {
                got.failure = Some(format!("reply {n} cut off: {line:?}"));
                break;
            }
            Ok(_) => {}
            // Input the daemon left unread when it closed resets the connection, after the replies.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => {
                got.failure = Some(format!(
                    "no reply {n} and no close within {DEADLINE:?} ({e})"
                ));
                break;
            }
        }
        let reply: Value = serde_json::from_str(&line).unwrap_or_default();
        if reply == json!({"ok": true}) {
            got.acked.push(n);
            acks.fetch_add(1, Ordering::SeqCst);
        } else if reply == json!({"ok": false, "error": SHUTTING_DOWN}) {
            got.refused.push(n);
        } else {
            got.failure = Some(format!("unexpected reply {n}: {line:?}"));
            break;
        }
    }
    got
}

fn started_ids(d: &Daemon) -> BTreeSet<u64> {
    d.calls()
        .iter()
        .map(|c| {
            let id = c["call_id"].as_str().unwrap_or_default();
            id.strip_prefix('s')
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("calls --json lists a call never sent: {c}"))
        })
        .collect()
}

#[test]
fn sigterm_mid_stream_loses_nothing_acknowledged() {
    let mut d = Daemon::start("[limits]\nmax_open_segments = 1000000\n");
    let stream = d.event_stream();
    let sent = Arc::new(AtomicU64::new(0));
    let acks = Arc::new(AtomicU64::new(0));
    let writer = {
        let stream = stream.try_clone().expect("clone the stream");
        let sent = sent.clone();
        thread::spawn(move || stream_starts(stream, sent, 500_000))
    };
    let reader = {
        let acks = acks.clone();
        thread::spawn(move || read_replies(stream, acks))
    };

    // SIGTERM once replies flow, while the writer keeps sending.
    let deadline = Instant::now() + DEADLINE;
    while acks.load(Ordering::SeqCst) < 300 {
        assert!(
            Instant::now() < deadline,
            "only {} replies within {DEADLINE:?}",
            acks.load(Ordering::SeqCst)
        );
        thread::sleep(Duration::from_millis(5));
    }
    thread::sleep(Duration::from_millis(100));
    let sent_at_term = sent.load(Ordering::SeqCst);
    let acked_at_term = acks.load(Ordering::SeqCst);
    let exit = d.terminate();
    let got = reader.join().expect("the reader thread");
    let write_error = writer.join().expect("the writer thread");
    let sent = sent.load(Ordering::SeqCst);
    println!(
        "SIGTERM after {sent_at_term} lines sent, {acked_at_term} acknowledged; in the end {sent} \
         sent, {} acknowledged, {} refused as shutting down; the writer stopped on {write_error:?}",
        got.acked.len(),
        got.refused.len()
    );
    assert!(
        exit.success(),
        "the daemon exited with {exit} after SIGTERM; log:\n{}",
        d.log_tail()
    );
    if let Some(failure) = &got.failure {
        panic!("after SIGTERM: {failure}");
    }
    assert!(
        got.acked.len() + got.refused.len() <= sent as usize,
        "more replies than lines"
    );
    assert!(
        write_error.is_some(),
        "the writer sent all its lines: SIGTERM did not land mid-stream"
    );

    d.restart();
    let listed = started_ids(&d);
    let lost: Vec<u64> = got
        .acked
        .iter()
        .filter(|n| !listed.contains(n))
        .take(10)
        .copied()
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged before SIGTERM, missing after the restart: s{lost:?} ({} acknowledged, {} listed)",
        got.acked.len(),
        listed.len()
    );
    let stored: Vec<u64> = got
        .refused
        .iter()
        .filter(|n| listed.contains(n))
        .take(10)
        .copied()
        .collect();
    assert!(
        stored.is_empty(),
        "refused with {SHUTTING_DOWN:?}, yet listed after the restart: s{stored:?}"
    );
    assert!(
        listed.iter().all(|n| *n < sent),
        "calls listed that were never sent"
    );
    d.stop();
}

// ---------------------------------------------------------------------------------------------
// 5. SIGHUP

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

// ---------------------------------------------------------------------------------------------
// 6. Debian package

#[test]
fn deb_package_contents() {
    let out = run_tool(
        Command::new("cargo").args(["deb", "--version"]),
        "install cargo-deb with `cargo install cargo-deb --locked`",
    );
    assert!(
        out.status.success(),
        "`cargo deb` is not available ({}): .ci/run installs it with `cargo install cargo-deb --locked`",
        both_streams(&out).trim()
    );
    let out = run_tool(
        Command::new("bash")
            .arg(Path::new(ROOT).join("packaging/build-deb.sh"))
            .current_dir(ROOT),
        "install the Debian package `bash`",
    );
    assert!(
        out.status.success(),
        "packaging/build-deb.sh failed with {}:\n{}",
        out.status,
        both_streams(&out)
    );
    // cargo deb prints the package's path last.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let deb = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| Path::new(ROOT).join(l))
        .filter(|p| p.extension() == Some(OsStr::new("deb")) && p.is_file())
        .unwrap_or_else(|| panic!("build-deb.sh printed no .deb path last:\n{stdout}"));
    let name = deb.file_name().unwrap_or_default().to_string_lossy();
    assert!(
        name.starts_with(&format!("callmetrics_{}-", env!("CARGO_PKG_VERSION"))),
        "unexpected package name {name}"
    );

    let dpkg = |args: &[&OsStr]| -> String {
        let out = run_tool(
            Command::new("dpkg-deb").args(args),
            "install the Debian package `dpkg` (dpkg-dev)",
        );
        assert!(
            out.status.success(),
            "dpkg-deb {args:?} failed: {}",
            both_streams(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listing = dpkg(&[OsStr::new("-c"), deb.as_os_str()]);
    // `-rw-r--r-- root/root  1234 2024-01-01 00:00 ./usr/bin/callmetrics`
    let entries: Vec<(String, String)> = listing
        .lines()
        .filter_map(|l| {
            let mode = l.split_whitespace().next()?.to_string();
            let path = l
                .split_whitespace()
                .nth(5)?
                .trim_start_matches('.')
                .to_string();
            Some((path, mode))
        })
        .collect();
    let mode_of = |alternatives: &[&str]| -> String {
        alternatives
            .iter()
            .find_map(|p| entries.iter().find(|(path, _)| path == p))
            .map_or_else(
                || panic!("the package holds none of {alternatives:?}:\n{listing}"),
                |(_, mode)| mode.clone(),
            )
    };
    assert_eq!(mode_of(&["/usr/bin/callmetrics"]), "-rwxr-xr-x");
    for unit in ["callmetrics.service", "callmetrics.socket"] {
        mode_of(&[
            &format!("/lib/systemd/system/{unit}"),
            &format!("/usr/lib/systemd/system/{unit}"),
        ]);
    }
    for path in [
        "/usr/lib/sysusers.d/callmetrics.conf",
        "/usr/lib/tmpfiles.d/callmetrics.conf",
        "/usr/share/man/man1/callmetrics.1.gz",
        "/usr/share/bash-completion/completions/callmetrics",
        "/usr/share/zsh/vendor-completions/_callmetrics",
        "/usr/share/fish/vendor_completions.d/callmetrics.fish",
    ] {
        assert_eq!(mode_of(&[path]), "-rw-r--r--", "{path}");
    }
    // Readable by the service user: the config holds no secrets (tokens live in `token_file`).
    assert_eq!(mode_of(&["/etc/callmetrics/agent.toml"]), "-rw-r--r--");

    let fields = dpkg(&[
        OsStr::new("-f"),
        deb.as_os_str(),
        OsStr::new("Package"),
        OsStr::new("Section"),
        OsStr::new("Priority"),
        OsStr::new("Depends"),
    ]);
    for want in ["Package: callmetrics", "Section: net", "Priority: optional"] {
        assert!(
            fields.lines().any(|l| l == want),
            "no `{want}` in the control fields:\n{fields}"
        );
    }
    // `$auto`: the shared libraries the binary links, at least the C library.
    assert!(
        fields
            .lines()
            .any(|l| l.starts_with("Depends: ") && l.contains("libc6")),
        "no Depends on libc6 in the control fields:\n{fields}"
    );
    let conffiles = dpkg(&[OsStr::new("-I"), deb.as_os_str(), OsStr::new("conffiles")]);
    assert!(
        conffiles
            .lines()
            .any(|l| l.trim() == "/etc/callmetrics/agent.toml"),
        "/etc/callmetrics/agent.toml is not a conffile: {conffiles:?}"
    );

    // What is inside is usable: the binary runs, the man page is gzip, the config is ours.
    let root = tempfile::tempdir().expect("create a temporary folder");
    dpkg(&[OsStr::new("-x"), deb.as_os_str(), root.path().as_os_str()]);
    let unpacked = |p: &str| -> PathBuf { root.path().join(p.trim_start_matches('/')) };
    let out = Command::new(unpacked("/usr/bin/callmetrics"))
        .arg("--version")
        .output()
        .expect("run the packaged binary");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("callmetrics {}", env!("CARGO_PKG_VERSION"))
    );
    let man = std::fs::read(unpacked("/usr/share/man/man1/callmetrics.1.gz")).expect("man page");
    assert_eq!(
        man.get(..2),
        Some(&[0x1f, 0x8b][..]),
        "the man page is not gzip"
    );
    assert_eq!(
        std::fs::read(unpacked("/etc/callmetrics/agent.toml")).expect("packaged config"),
        std::fs::read(Path::new(ROOT).join("config/agent.toml")).expect("config/agent.toml"),
    );
}
