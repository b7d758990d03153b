//! [`Daemon`]: a `callmetrics run` process in its own temporary folder, started, queried through
//! its control socket, signalled and stopped the way an operator or systemd would.

use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::Instant;

use serde_json::Value;

use super::{
    cli, connect_events, json_of, wait_exit, JsonConn, PackConn, BIN, DEADLINE, POLL,
    START_DEADLINE,
};

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

    /// The in-daemon source named `name` in `status --json`.
    pub fn source(&self, name: &str) -> Value {
        let st = self.status();
        st["sources"]
            .as_array()
            .expect("status lists sources")
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no source {name} in {st}"))
            .clone()
    }

    /// Polls the source named `name` until `done` holds for its status, at most `limit`; fails
    /// saying `what` it waited for.
    pub fn wait_source(
        &self,
        name: &str,
        limit: std::time::Duration,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let s = self.source(name);
            if done(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "waiting for {what}: {s}\n{}",
                self.log_tail()
            );
            thread::sleep(std::time::Duration::from_millis(50));
        }
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
