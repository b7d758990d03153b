//! `callmetrics watch` in a real terminal: tmux (Debian's `tmux`) runs it against the real daemon
//! in a detached session of a fixed size, keys are typed with `send-keys` and the screen is read
//! with `capture-pane`. The queue rows must show the figures computed here from the calls sent;
//! a key switches the window, another the dimension; a narrower terminal leaves columns out;
//! the daemon killed is said on screen, and restarted on the same state its rows come back; `q`
//! ends it with status 0. A terminal that hangs up ends it; without a terminal it refuses.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{now_ms, Daemon, BIN, DEADLINE, START_DEADLINE};

/// The terminal's size: wide enough for every column of the wallboard.
const WIDTH: u16 = 160;
const HEIGHT: u16 = 30;
const POLL: Duration = Duration::from_millis(100);

/// A tmux server of its own (`tmux -L NAME`, its socket in a temporary folder), so tests do not
/// share sessions; killed on drop, also when a test fails, and its socket removed.
struct Tmux {
    name: String,
    sockets: tempfile::TempDir,
}

impl Tmux {
    /// Starts `program args…` in a detached session of [`WIDTH`] × [`HEIGHT`].
    fn start(program: &Path, args: &[&str]) -> Tmux {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "cmwatch-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let sockets = tempfile::Builder::new()
            .prefix("cmtmux")
            .tempdir_in("/tmp")
            .expect("a folder for tmux's socket");
        let tmux = Tmux { name, sockets };
        let (w, h) = (WIDTH.to_string(), HEIGHT.to_string());
        let mut command = vec!["new-session", "-d", "-s", "watch", "-x", &w, "-y", &h, "--"];
        let program = program.to_str().expect("a UTF-8 path");
        command.push(program);
        command.extend(args);
        let out = tmux.run(&command);
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            // No user or system config: the test's terminal is tmux's defaults.
            .args(["-f", "/dev/null", "-L", &self.name])
            .env("TMUX_TMPDIR", self.sockets.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run tmux ({e}): this test needs it, install Debian's `tmux` package")
            })
    }

    /// The visible screen as text; with `escapes`, with the colours as escape sequences.
    fn screen(&self, escapes: bool) -> String {
        let mut args = vec!["capture-pane", "-p", "-t", "watch"];
        if escapes {
            args.push("-e");
        }
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "tmux capture-pane failed (did the program exit?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        let out = self.run(&["send-keys", "-t", "watch", keys]);
        assert!(
            out.status.success(),
            "tmux send-keys {keys} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Resizes the terminal to `width` columns (of [`HEIGHT`] lines), as a user dragging the
    /// window would.
    fn resize(&self, width: u16) {
        let (w, h) = (width.to_string(), HEIGHT.to_string());
        let out = self.run(&["resize-window", "-t", "watch", "-x", &w, "-y", &h]);
        assert!(
            out.status.success(),
            "tmux resize-window failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Polls the screen until `ready` says yes; fails with the last screen after `limit`.
    fn wait_for(&self, what: &str, limit: Duration, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen(false);
            if ready(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} on screen within {limit:?}; the screen:\n{screen}"
            );
            thread::sleep(POLL);
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// One call sent to one queue, in seconds from a base time in the past.
struct Call {
    id: &'static str,
    queue: &'static str,
    agent: &'static str,
    start: i64,
    /// Seconds in the queue before the answer or the abandon; `None` = waiting still.
    wait: Option<i64>,
    outcome: Outcome,
}

enum Outcome {
    Waiting,
    Abandoned,
    /// Answered and talking still.
    Talking,
    /// Answered, ended after `talk` seconds, in after-call work still.
    InAcw {
        talk: i64,
    },
    /// Answered, ended after `talk` seconds, wrapped up `acw` seconds later.
    Done {
        talk: i64,
        acw: i64,
    },
}

/// How far back the calls start: their events all fall within the last 5 minutes.
const BACK_S: i64 = 200;

fn calls() -> Vec<Call> {
    use Outcome::{Abandoned, Done, InAcw, Talking, Waiting};
    let c = |id, queue, agent, start, wait, outcome| Call {
        id,
        queue,
        agent,
        start,
        wait,
        outcome,
    };
    vec![
        c(
            "s1",
            "sales",
            "alice",
            0,
            Some(5),
            Done { talk: 60, acw: 10 },
        ),
        c(
            "s2",
            "sales",
            "bob",
            2,
            Some(10),
            Done { talk: 60, acw: 20 },
        ),
        c(
            "s3",
            "sales",
            "alice",
            4,
            Some(30),
            Done { talk: 30, acw: 0 },
        ),
        c("s4", "sales", "", 6, Some(40), Abandoned),
        c("s5", "sales", "bob", 60, Some(9), Talking),
        // Waiting since 20 s before the calls are sent.
        c("s6", "sales", "", BACK_S - 20, None, Waiting),
        c(
            "t1",
            "support",
            "alice",
            10,
            Some(4),
            Done { talk: 50, acw: 5 },
        ),
        c(
            "t2",
            "support",
            "carol",
            12,
            Some(25),
            Done { talk: 80, acw: 15 },
        ),
        // Shorter than the 5 s short-abandon threshold.
        c("t3", "support", "", 14, Some(3), Abandoned),
        c("t4", "support", "carol", 16, Some(6), InAcw { talk: 40 }),
    ]
}

/// The JSON event lines of `call`, `base` being epoch ms of its second 0.
fn events(call: &Call, base: i64) -> Vec<String> {
    let at = |s: i64| base + s * 1000;
    let start = call.start;
    let mut out =
        vec![json!({"type": "start", "call_id": call.id, "queue": call.queue, "ts": at(start)})];
    let answered = start + call.wait.unwrap_or(0);
    let answer =
        json!({"type": "answer", "call_id": call.id, "agent": call.agent, "ts": at(answered)});
    let end = |s: i64| json!({"type": "end", "call_id": call.id, "ts": at(s)});
    let wrapup = |s: i64| json!({"type": "wrapup", "call_id": call.id, "ts": at(s)});
    match call.outcome {
        Outcome::Waiting => {}
        Outcome::Abandoned => out.push(
            json!({"type": "end", "call_id": call.id, "reason": "abandoned", "ts": at(answered)}),
        ),
        Outcome::Talking => out.push(answer),
        Outcome::InAcw { talk } => out.extend([answer, end(answered + talk)]),
        Outcome::Done { talk, acw } => {
            out.extend([answer, end(answered + talk), wrapup(answered + talk + acw)]);
        }
    }
    out.into_iter().map(|e| e.to_string()).collect()
}

/// Service-level parameters of the test's queues: T and S in seconds, the target.
const THRESHOLD_S: i64 = 20;
const SHORT_ABANDON_S: i64 = 5;

fn target(queue: &str) -> f64 {
    match queue {
        "support" => 0.5,
        _ => 0.8,
    }
}

/// A queue's row as the wallboard must show it, computed from the calls with the README's
/// formulas (SL by `offered`), formatted as the `metrics` table formats; the longest wait now
/// (which grows by the second) is checked apart.
struct Expected {
    cells: Vec<String>,
    /// The longest wait now is at least this many seconds (when anyone waits).
    longest_at_least: Option<i64>,
    sl_met: bool,
}

fn expected(queue: &str, calls: &[Call]) -> Expected {
    let mine: Vec<&Call> = calls.iter().filter(|c| c.queue == queue).collect();
    let answered: Vec<i64> = mine
        .iter()
        .filter(|c| {
            matches!(
                c.outcome,
                Outcome::Talking | Outcome::InAcw { .. } | Outcome::Done { .. }
            )
        })
        .filter_map(|c| c.wait)
        .collect();
    let abandoned: Vec<i64> = mine
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Abandoned))
        .filter_map(|c| c.wait)
        .collect();
    let a = answered.len() as f64;
    let within = answered.iter().filter(|w| **w <= THRESHOLD_S).count() as f64;
    let ab = abandoned.len() as f64;
    let short = abandoned.iter().filter(|w| **w < SHORT_ABANDON_S).count() as f64;
    let offered = a + ab;
    let handles: Vec<i64> = mine
        .iter()
        .filter_map(|c| match c.outcome {
            Outcome::Done { talk, acw } => Some(talk + acw),
            _ => None,
        })
        .collect();
    let count = |f: &dyn Fn(&Outcome) -> bool| mine.iter().filter(|c| f(&c.outcome)).count();
    let waiting = count(&|o| matches!(o, Outcome::Waiting));
    let sl = within / (a + ab - short);
    let ratio = |x: f64| format!("{:.1}", x * 100.0);
    let secs = |x: f64| format!("{x:.1}");
    let longest_at_least = mine
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Waiting))
        .map(|c| BACK_S - c.start)
        .max();
    let cells = vec![
        queue.to_string(),
        ratio(sl),
        ratio(target(queue)),
        format!("{offered}"),
        waiting.to_string(),
        if waiting == 0 { "-".into() } else { "?".into() },
        secs(answered.iter().sum::<i64>() as f64 / a),
        ratio((ab - short) / (offered - short)),
        secs(handles.iter().sum::<i64>() as f64 / handles.len() as f64),
        count(&|o| matches!(o, Outcome::Talking)).to_string(),
        count(&|o| matches!(o, Outcome::InAcw { .. })).to_string(),
    ];
    Expected {
        cells,
        longest_at_least,
        sl_met: sl >= target(queue),
    }
}

/// The cells of the screen line of `key`'s row, if it is on screen.
fn row_of<'a>(screen: &'a str, key: &str) -> Option<Vec<&'a str>> {
    screen
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&key))
}

/// Whether `screen` shows `queue`'s row with the expected figures; the longest wait now must be
/// at least the wait at `base` (the calls' second 0 plus [`BACK_S`]) and at most that plus the
/// seconds since (and one for rounding).
fn shows(screen: &str, queue: &str, want: &Expected, base: Instant) -> bool {
    let Some(cells) = row_of(screen, queue) else {
        return false;
    };
    if cells.len() != want.cells.len() {
        return false;
    }
    let longest_ok = match want.longest_at_least {
        None => cells[5] == "-",
        Some(least) => cells[5].parse::<f64>().is_ok_and(|s| {
            s >= least as f64 && s <= (least as f64) + base.elapsed().as_secs_f64() + 1.0
        }),
    };
    longest_ok
        && cells
            .iter()
            .zip(&want.cells)
            .enumerate()
            .all(|(i, (got, want))| i == 5 || got == want)
}

/// The colour of `key`'s service-level cell on the screen captured with escapes: the colour
/// set by the last escape sequence before the first figure after the key.
fn sl_colour(escaped: &str, key: &str) -> &'static str {
    let line = escaped
        .lines()
        .find(|l| l.contains(&format!("{key} ")))
        .unwrap_or_else(|| panic!("no {key} row on the screen:\n{escaped}"));
    let mut rest = &line[line.find(key).expect("the key") + key.len()..];
    let mut last_codes = String::new();
    while let Some(c) = rest.chars().next() {
        if let Some(sgr) = rest.strip_prefix("\u{1b}[") {
            let end = sgr.find('m').expect("an escape sequence ends with m");
            last_codes = sgr[..end].to_string();
            rest = &sgr[end + 1..];
        } else if c == ' ' {
            rest = &rest[1..];
        } else {
            break;
        }
    }
    let codes: Vec<&str> = last_codes.split(';').collect();
    // tmux writes the 8 basic colours as 38;5;N or 3N.
    let has = |n: &str| {
        codes.windows(3).any(|w| w == ["38", "5", n]) || codes.contains(&format!("3{n}").as_str())
    };
    if has("2") {
        "green"
    } else if has("1") {
        "red"
    } else {
        "none"
    }
}

fn daemon() -> Daemon {
    Daemon::start(
        "[metrics]\n# The call left in after-call work stays there for the whole test.\nwrapup_timeout = \"30m\"\n\n\
         [queues.sales]\nthreshold = \"20s\"\nshort_abandon = \"5s\"\ntarget = 0.8\n\n\
         [queues.support]\nthreshold = \"20s\"\nshort_abandon = \"5s\"\ntarget = 0.5\n",
    )
}

#[test]
fn the_wallboard_shows_the_queues_follows_keys_and_outlives_the_daemon() {
    let mut d = daemon();
    let calls = calls();
    let base = now_ms() - BACK_S * 1000;
    let base_at = Instant::now();
    let mut conn = d.json_conn();
    for call in &calls {
        for line in events(call, base) {
            let reply = conn.request(&line);
            assert_eq!(reply, json!({"ok": true}), "{line}");
        }
    }
    drop(conn);

    let sales = expected("sales", &calls);
    let support = expected("support", &calls);
    // The same figures by hand, so the model above is checked too. sales: A = 4 (waits 5, 10,
    // 30, 9), 3 within 20 s, 1 abandoned after 40 s: SL = 3 / 5, ASA = 54 / 4, abandon = 1 / 5,
    // AHT = (70 + 80 + 30) / 3. support: A = 3 (waits 4, 25, 6), 2 within, 1 short abandon:
    // SL = 2 / (3 + 1 - 1), ASA = 35 / 3, abandon = 0 / 3, AHT = (55 + 95) / 2.
    assert_eq!(
        sales.cells,
        ["sales", "60.0", "80.0", "5", "1", "?", "13.5", "20.0", "60.0", "1", "0"]
    );
    assert_eq!(
        support.cells,
        ["support", "66.7", "50.0", "4", "0", "-", "11.7", "0.0", "75.0", "0", "1"]
    );
    assert!(!sales.sl_met && support.sl_met);

    let status = d.dir.path().join("watch.status");
    let script = "\"$0\" watch --socket \"$1\"; echo $? > \"$2\"";
    let tmux = Tmux::start(
        Path::new("sh"),
        &[
            "-c",
            script,
            BIN,
            &d.control_arg(),
            status.to_str().expect("a UTF-8 path"),
        ],
    );
    let both =
        |s: &str| shows(s, "sales", &sales, base_at) && shows(s, "support", &support, base_at);
    let screen = tmux.wait_for("queue rows with the figures sent", DEADLINE, both);
    assert!(
        screen.contains("window 5m") && screen.contains("by queue"),
        "{screen}"
    );
    assert!(screen.contains("keys: "), "the footer of keys:\n{screen}");
    let escaped = tmux.screen(true);
    assert_eq!(
        sl_colour(&escaped, "sales"),
        "red",
        "60 % against 80 %:\n{escaped:?}"
    );
    assert_eq!(
        sl_colour(&escaped, "support"),
        "green",
        "66.7 % against 50 %:\n{escaped:?}"
    );

    // Key 3: the third window, 1h, which holds the same calls.
    tmux.keys("3");
    tmux.wait_for("the 1h window with the rows", DEADLINE, |s| {
        s.contains("window 1h") && both(s)
    });
    // w: the next one.
    tmux.keys("w");
    tmux.wait_for("the 24h window with the rows", DEADLINE, |s| {
        s.contains("window 24h") && both(s)
    });
    // d: agents instead of queues; the agents who answered, no queue row.
    tmux.keys("d");
    let screen = tmux.wait_for("agent rows", DEADLINE, |s| {
        s.contains("by agent")
            && ["alice", "bob", "carol"]
                .iter()
                .all(|a| row_of(s, a).is_some())
    });
    assert!(row_of(&screen, "sales").is_none(), "{screen}");
    // Back to queues: queue, agent, channel, queue.
    tmux.keys("d");
    tmux.keys("d");
    tmux.wait_for("queue rows again", DEADLINE, |s| {
        s.contains("by queue") && both(s)
    });

    // A narrower terminal: the columns that do not fit are left out whole, from the right
    // (queue 7 wide, then 2 + 4, 2 + 8, 2 + 7, 2 + 11, 2 + 20, 2 + 7, 2 + 9: 87 of 90 columns).
    tmux.resize(90);
    let screen = tmux.wait_for("the table cut to 90 columns", DEADLINE, |s| {
        s.lines()
            .any(|l| l.starts_with("queue") && l.ends_with("ASA (s)  abandon %"))
            && row_of(s, "sales").is_some_and(|cells| cells.len() == 8)
    });
    assert!(!screen.contains("AHT (s)"), "{screen}");
    tmux.resize(WIDTH);
    tmux.wait_for("every column again", DEADLINE, both);

    d.kill();
    let screen = tmux.wait_for("the daemon-not-reachable notice", DEADLINE, |s| {
        s.contains("daemon not reachable since")
    });
    assert!(
        row_of(&screen, "sales").is_none(),
        "no stale figures:\n{screen}"
    );
    assert!(screen.contains("retrying every 1s"), "{screen}");
    // It keeps retrying: the count of tries goes up.
    tmux.wait_for("a later retry", DEADLINE, |s| s.contains(" tries)"));

    d.restart();
    let screen = tmux.wait_for("the rows after the restart", START_DEADLINE, |s| {
        s.contains("daemon back at") && both(s)
    });
    assert!(
        screen.contains("window 24h"),
        "the window chosen stays:\n{screen}"
    );

    tmux.keys("q");
    let code = wait_for_file(&status);
    assert_eq!(
        code.trim(),
        "0",
        "the exit status of `callmetrics watch` after q"
    );
    d.stop();
}

/// The contents of `path` once it exists with a line in it.
fn wait_for_file(path: &PathBuf) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.ends_with('\n') {
                return text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} not written within {DEADLINE:?}: did `callmetrics watch` exit?",
            path.display()
        );
        thread::sleep(POLL);
    }
}

#[test]
fn without_a_terminal_it_refuses_with_a_hint() {
    let out = Command::new(BIN)
        .args(["watch", "--socket", "/nonexistent/control.sock"])
        .stdin(Stdio::null())
        .output()
        .expect("run callmetrics watch");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: callmetrics watch needs a terminal")
            && err.contains("metrics --json"),
        "{err}"
    );
}

#[test]
fn a_terminal_that_goes_away_ends_it() {
    // A dropped SSH session: the terminal hangs up under the wallboard, which must exit rather
    // than spin on a dead terminal. tmux's server killed closes the pane's terminal.
    let dir = tempfile::tempdir().expect("a temporary folder");
    let pid_file = dir.path().join("watch.pid");
    let missing = dir.path().join("control.sock");
    let tmux = Tmux::start(
        Path::new("sh"),
        &[
            "-c",
            "echo $$ > \"$2\"; exec \"$0\" watch --socket \"$1\"",
            BIN,
            missing.to_str().expect("a UTF-8 path"),
            pid_file.to_str().expect("a UTF-8 path"),
        ],
    );
    tmux.wait_for("the daemon-not-reachable notice", DEADLINE, |s| {
        s.contains("daemon not reachable since")
    });
    let pid = wait_for_file(&pid_file).trim().to_string();
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    assert!(
        proc_dir.exists(),
        "callmetrics watch (pid {pid}) is running"
    );
    drop(tmux);
    let deadline = Instant::now() + DEADLINE;
    // Gone, or a zombie waiting to be reaped: either way it has exited.
    while std::fs::read_to_string(proc_dir.join("stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    }) {
        assert!(
            Instant::now() < deadline,
            "callmetrics watch (pid {pid}) still runs {DEADLINE:?} after its terminal hung up"
        );
        thread::sleep(POLL);
    }
}
