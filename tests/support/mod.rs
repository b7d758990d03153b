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
//!
//! Every wait polls with a deadline; nothing relies on a fixed sleep being long enough.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod http;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

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

/// A `callmetrics run` process with its own folder, config, sockets and store.
pub struct Daemon {
    /// Holds the config, the sockets, the store and one log file per start.
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub events: PathBuf,
    pub control: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Daemon {
    /// Writes a config into a fresh temporary folder and starts a daemon on it.
    ///
    /// `extra` is appended to the config right after `[store]`'s `path`: it may start with more
    /// `[store]` keys, then other sections, e.g. `"[limits]\nmax_line_bytes = 1024\n"`.
    pub fn start(extra: &str) -> Daemon {
        let mut d = Daemon::configure(extra);
        d.restart();
        d
    }

    /// Like [`Daemon::start`] without starting the process.
    pub fn configure(extra: &str) -> Daemon {
        // Unix socket paths are limited to ~108 bytes: keep the folder short, under /tmp.
        let dir = tempfile::Builder::new()
            .prefix("cmt")
            .tempdir_in("/tmp")
            .expect("create a temporary folder");
        let events = dir.path().join("events.sock");
        let control = dir.path().join("control.sock");
        let config = dir.path().join("agent.toml");
        let d = Daemon {
            dir,
            config,
            events,
            control,
            child: None,
            starts: 0,
        };
        d.rewrite_config(extra);
        d
    }

    /// Rewrites the config file with other `extra` text (see [`Daemon::start`]), keeping the
    /// sockets and the store; it takes effect at the next start.
    pub fn rewrite_config(&self, extra: &str) {
        let store = self.dir.path().join("store");
        let text = format!(
            "[ingest]\nsocket = {:?}\n\n[control]\nsocket = {:?}\n\n[store]\npath = {store:?}\n{extra}",
            self.events, self.control
        );
        fs::write(&self.config, text).expect("write the config");
    }

    /// The control socket as a CLI argument.
    pub fn control_arg(&self) -> String {
        self.control.display().to_string()
    }

    /// The log file of the latest start.
    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("daemon-{}.log", self.starts))
    }

    /// The end of the latest log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the daemon is running").id()
    }

    /// Starts the daemon (again, on the same config and store) and waits until it answers `status`.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the daemon is already running");
        self.starts += 1;
        let log = fs::File::create(self.log_path()).expect("create the daemon log");
        let child = Command::new(BIN)
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("start the daemon");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Polls `callmetrics status` until the daemon answers; fails if it exits or takes too long.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let child = self.child.as_mut().expect("the daemon was started");
            if let Some(status) = child.try_wait().expect("poll the daemon") {
                self.child = None;
                panic!(
                    "the daemon exited during start-up with {status}; its log:\n{}",
                    self.log_tail()
                );
            }
            let out = cli(["status", "--json", "--socket", &self.control_arg()]);
            if out.status.success() {
                return;
            }
            assert!(Instant::now() < deadline,
                "the daemon did not answer `status` within {START_DEADLINE:?}; last attempt: {}\nits log:\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.log_tail()
            );
            thread::sleep(POLL);
        }
    }

    /// SIGTERM, then waits for the exit (at most [`DEADLINE`]) and returns its status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the daemon is running");
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {} failed", child.id());
        if let Some(status) = wait_exit(&mut child, DEADLINE) {
            status
        } else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the daemon did not exit within {DEADLINE:?} of SIGTERM; its log:\n{}",
                self.log_tail()
            );
        }
    }

    /// SIGTERM and asserts a clean exit (status 0).
    pub fn stop(&mut self) {
        let status = self.terminate();
        assert!(
            status.success(),
            "the daemon exited with {status} after SIGTERM; its log:\n{}",
            self.log_tail()
        );
    }

    /// SIGKILL (no chance to flush or checkpoint) and reaps the process.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("the daemon is running");
        child.kill().expect("SIGKILL the daemon");
        child.wait().expect("reap the daemon");
    }

    /// Runs a client subcommand against this daemon's control socket (`--socket` is appended).
    pub fn query(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        let socket = self.control_arg();
        all.extend(["--socket", socket.as_str()]);
        cli(all)
    }

    /// `metrics --json --window WINDOW --by BY`: the rows.
    pub fn metrics(&self, window: &str, by: &str) -> Vec<Value> {
        let out = self.query(&["metrics", "--json", "--window", window, "--by", by]);
        match json_of(&format!("metrics --window {window} --by {by}"), &out) {
            Value::Array(rows) => rows,
            other => panic!("metrics --json printed {other}, not an array of rows"),
        }
    }

    /// `calls --json`: the open segments.
    pub fn calls(&self) -> Vec<Value> {
        match json_of("calls --json", &self.query(&["calls", "--json"])) {
            Value::Array(segs) => segs,
            other => panic!("calls --json printed {other}, not an array"),
        }
    }

    /// `status --json`.
    pub fn status(&self) -> Value {
        json_of("status --json", &self.query(&["status", "--json"]))
    }

    pub fn json_conn(&self) -> JsonConn {
        JsonConn::connect(&self.events)
    }

    pub fn pack_conn(&self) -> PackConn {
        PackConn::connect(&self.events)
    }

    /// A raw event connection (reads and writes time out after [`DEADLINE`]), for tests that
    /// pipeline on their own threads.
    pub fn event_stream(&self) -> UnixStream {
        connect_events(&self.events, DEADLINE)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A raw connection to the event socket at `path` whose reads and writes fail after `timeout`
/// instead of hanging; panics when nothing listens there.
pub fn connect_events(path: &Path, timeout: Duration) -> UnixStream {
    let stream = UnixStream::connect(path)
        .unwrap_or_else(|e| panic!("connect to the event socket {}: {e}", path.display()));
    stream
        .set_read_timeout(Some(timeout))
        .expect("set a read timeout");
    stream
        .set_write_timeout(Some(timeout))
        .expect("set a write timeout");
    stream
}

/// A JSON-lines event connection.
pub struct JsonConn {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl JsonConn {
    pub fn connect(path: &Path) -> JsonConn {
        let writer = connect_events(path, DEADLINE);
        let reader = BufReader::new(writer.try_clone().expect("clone the stream"));
        JsonConn { reader, writer }
    }

    /// Sends one line (the newline is added).
    pub fn send(&mut self, line: &str) {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.writer
            .write_all(&bytes)
            .expect("write to the event socket");
    }

    /// Reads one reply line and parses it; panics on end of stream, timeout or bad JSON.
    pub fn reply(&mut self) -> Value {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .expect("read a reply (within the deadline)");
        assert!(
            n > 0,
            "the daemon closed the connection instead of replying"
        );
        assert!(line.ends_with('\n'), "reply without newline: {line:?}");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply {line:?} is not JSON: {e}"))
    }

    /// Sends one line and reads its reply.
    pub fn request(&mut self, line: &str) -> Value {
        self.send(line);
        self.reply()
    }

    /// The socket, to write partial lines or read past the replies.
    pub fn stream(&mut self) -> &mut UnixStream {
        &mut self.writer
    }
}

/// A MessagePack-framed event connection: 4-byte big-endian length, then a `MessagePack` body.
pub struct PackConn {
    stream: UnixStream,
}

impl PackConn {
    pub fn connect(path: &Path) -> PackConn {
        PackConn {
            stream: connect_events(path, DEADLINE),
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .expect("write to the event socket");
    }

    /// Sends `value` (a map or an array) as one frame.
    pub fn send(&mut self, value: &Value) {
        let body = rmp_serde::to_vec_named(value).expect("encode MessagePack");
        let len = u32::try_from(body.len()).expect("frame length fits u32");
        let mut frame = len.to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        self.send_raw(&frame);
    }

    /// Reads one length-prefixed `MessagePack` reply.
    pub fn reply(&mut self) -> Value {
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .expect("read a reply's length (within the deadline)");
        let len = u32::from_be_bytes(len) as usize;
        assert!(len < 1 << 20, "implausible reply length {len}");
        let mut body = vec![0u8; len];
        self.stream
            .read_exact(&mut body)
            .expect("read a reply's body");
        rmp_serde::from_slice(&body)
            .unwrap_or_else(|e| panic!("reply {body:?} is not MessagePack: {e}"))
    }

    pub fn request(&mut self, value: &Value) -> Value {
        self.send(value);
        self.reply()
    }

    /// Reads until the daemon closes the connection; returns the bytes that came before the close.
    /// Panics if the connection is still open after [`DEADLINE`].
    pub fn read_to_close(&mut self) -> usize {
        let mut rest = Vec::new();
        match self.stream.read_to_end(&mut rest) {
            Ok(_) => rest.len(),
            Err(e) => panic!(
                "the connection was not closed within {DEADLINE:?} ({e}); read {} bytes",
                rest.len()
            ),
        }
    }
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

/// Variables through which systemd talks to a service; [`Daemon::spawn_with`] starts from none.
const SYSTEMD_ENV: [&str; 6] = [
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
];

impl Daemon {
    /// The whole log (stdout and stderr) of the latest start.
    pub fn log_text(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts `callmetrics run --config FILE` like [`Daemon::restart`], but through `wrapper`
    /// (a program and its arguments that ends by exec'ing the rest of the command line, e.g.
    /// `systemd-socket-activate -l PATH`; empty: the daemon itself), with no systemd variable
    /// inherited from the test's environment and `env` set. Does not wait for it to answer.
    pub fn spawn_with(&mut self, wrapper: &[&std::ffi::OsStr], env: &[(&str, &std::ffi::OsStr)]) {
        assert!(self.child.is_none(), "the daemon is already running");
        self.starts += 1;
        let log = fs::File::create(self.log_path()).expect("create the daemon log");
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        for var in SYSTEMD_ENV {
            cmd.env_remove(var);
        }
        cmd.envs(env.iter().copied());
        let child = cmd
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start the daemon (wrapper {wrapper:?}): {e}"));
        self.child = Some(child);
    }

    /// Polls `callmetrics status --socket CONTROL` until the daemon answers there (its own control
    /// socket or one passed by socket activation); fails if it exits or takes too long.
    pub fn wait_answering(&mut self, control: &Path) {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let child = self.child.as_mut().expect("the daemon was started");
            if let Some(status) = child.try_wait().expect("poll the daemon") {
                self.child = None;
                panic!(
                    "the daemon exited during start-up with {status}; its log:\n{}",
                    self.log_tail()
                );
            }
            let out = cli([
                "status".as_ref(),
                "--json".as_ref(),
                "--socket".as_ref(),
                control.as_os_str(),
            ]);
            if out.status.success() {
                return;
            }
            assert!(Instant::now() < deadline,
                "the daemon did not answer `status` on {} within {START_DEADLINE:?}; last attempt: {}\nits log:\n{}",
                control.display(),
                String::from_utf8_lossy(&out.stderr),
                self.log_tail()
            );
            thread::sleep(POLL);
        }
    }

    /// Sends `signal` (a name `kill` knows: `HUP`, `TERM`, ...) to the running daemon.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid();
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} {pid} failed");
    }

    /// The exit status if the daemon has exited (it is then no longer running), without waiting.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let status = child.try_wait().expect("poll the daemon")?;
        self.child = None;
        Some(status)
    }

    /// Polls the latest log until a line contains every one of `needles`; returns that line.
    pub fn wait_log_line(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let text = self.log_text();
            if let Some(line) = text.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no log line containing {needles:?} within {DEADLINE:?}; the log:\n{}",
                self.log_tail()
            );
            thread::sleep(POLL);
        }
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
