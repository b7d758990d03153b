//! Helpers shared by the integration tests and the benches (`mod support;`, or a `#[path]` to this
//! file from `benches/`): they drive the real `callmetrics` binary, as an operator or a PBX hook
//! would, through its sockets and CLI.
//!
//! - [`Daemon`] runs `callmetrics run --config FILE` in its own temporary folder (sockets, store and
//!   logs inside it), waits until the control socket answers `status`, and stops it with SIGTERM
//!   (`kill -TERM <pid>`) or SIGKILL (`Child::kill`). Dropping it SIGKILLs a daemon still running.
//! - [`JsonConn`] and [`PackConn`] speak the event protocol (JSON lines, `MessagePack` frames) over a
//!   `std::os::unix::net::UnixStream`, with read timeouts so a missing reply fails instead of hanging.
//! - [`cli`] runs a client subcommand and returns its output; [`run_to_exit`] runs any command
//!   with a time limit.
//! - [`http`] is a real HTTP receiver with scripted faults, for the upstream tests and bench.
//! - [`asterisk`] is the `queue_log` fixture and its calls counted by hand.
//! - [`history_report`] is the history tests' calendar, report counters and row checks.
//! - [`victoria::Victoria`] is a real `VictoriaMetrics` on loopback, for the upstream and
//!   dashboard tests.
//! - [`alertmanager::Alertmanager`] is a real Prometheus Alertmanager on loopback, for the
//!   alert tests.
//!
//! [`Daemon`] is in `daemon.rs`, the socket clients in `conn.rs`; both are re-exported here.
//!
//! Every wait polls with a deadline; nothing relies on a fixed sleep being long enough.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod alertmanager;
pub mod asterisk;
mod conn;
mod daemon;
pub mod history_report;
pub mod http;
pub mod victoria;

use std::fs;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

pub use conn::{connect_events, JsonConn, PackConn};
// Only the soak bench connects to a daemon it may have killed.
#[allow(unused_imports)]
pub use conn::try_connect_events;
pub use daemon::Daemon;

/// The binary under test, built by cargo for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_callmetrics");

/// How long a reply, a query result or a process exit may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// How long a daemon may take to open its store and answer `status` (a loaded CI box is slow).
pub const START_DEADLINE: Duration = Duration::from_secs(30);

const POLL: Duration = Duration::from_millis(25);

/// Wall-clock now in epoch milliseconds (the source clock of the events the tests send).
pub fn now_ms() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(d.as_millis()).expect("now fits i64 milliseconds")
}

/// A bench knob: the number in environment variable `name` (`_` may group digits), or `default`.
pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Runs `callmetrics ARGS...` as a client and returns its output (it has its own 10 s timeout).
pub fn cli<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the callmetrics binary")
}

/// `stdout` of a successful run, parsed as JSON; panics with both streams otherwise.
pub fn json_of(what: &str, out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{what} failed with {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what} printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Waits for `child` to exit, at most `limit`; `None` if it is still running then.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("poll a child process") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(POLL);
    }
}

/// Runs `cmd` (stdin closed, stdout and stderr captured) until it exits; panics if it is still
/// running after `limit` (it is killed then).
pub fn run_to_exit(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    if wait_exit(&mut child, limit).is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{cmd:?} did not exit within {limit:?}");
    }
    child.wait_with_output().expect("collect the output")
}

/// A loopback port free now (for a listener the daemon opens, e.g. `[exposition] listen`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The body of `GET /metrics` on the daemon's exposition listener at `port` (with its head).
pub fn scrape_metrics(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to /metrics");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    .expect("send the scrape");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read the scrape");
    text
}

/// The reply of an accepted single event.
pub fn ok() -> Value {
    serde_json::json!({"ok": true})
}

/// Asserts `reply` is a refusal whose `error` contains every one of `needles`.
pub fn assert_refused(reply: &Value, needles: &[&str], what: &str) {
    assert_eq!(reply["ok"], Value::Bool(false), "{what}: reply {reply}");
    let error = reply["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: reply {reply} has no error text"));
    for n in needles {
        assert!(
            error.contains(n),
            "{what}: error {error:?} does not name {n:?}"
        );
    }
}

/// Bytes of every file below `dir` (0 for a folder that cannot be read).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
