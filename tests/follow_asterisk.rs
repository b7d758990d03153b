//! The in-daemon `queue_log` follower (`[[sources]]`) against the real daemon and real files:
//! lines appended in pieces (a line half-written, completed later), rotation by rename while
//! the old file is still written, truncation, `copytruncate`, and `kill -9` between appends.
//! Each ends with `metrics --json` equal to the fixture's calls counted by hand
//! (`support::asterisk`), and with no event sent twice (the engine saw no duplicate).

mod support;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::asterisk::{figures, recent_lines, want};
use support::{free_port, scrape_metrics, Daemon};

/// Complete lines of the fixture (its comment line included): what the follower reads.
const COMPLETE_LINES: u64 = 43;
/// Events the complete lines map to.
const EVENTS: u64 = 36;

/// A daemon following `queue_log` in its own folder, polling it every 50 ms; `extra` is more
/// config (e.g. an `[exposition]` section).
fn follower(extra: &str) -> (Daemon, PathBuf) {
    let mut d = Daemon::configure("");
    let log = d.dir.path().join("queue_log");
    d.rewrite_config(&format!(
        "\n[metrics]\nwrapup_timeout = \"1s\"\n{extra}\n[[sources]]\nname = \"pbx1\"\nkind = \"asterisk_queue_log\"\npath = {log:?}\npoll_interval = \"50ms\"\n"
    ));
    d.restart();
    (d, log)
}

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open the queue_log for appending");
    f.write_all(text.as_bytes())
        .expect("append to the queue_log");
}

/// Empties the file in place (same inode), as `: > queue_log` or `copytruncate` do.
fn truncate(path: &Path) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(0))
        .expect("truncate the queue_log");
}

/// The source's entry in `status --json`.
fn source(d: &Daemon) -> Value {
    let st = d.status();
    let sources = st["sources"].as_array().expect("status lists sources");
    assert_eq!(sources.len(), 1, "{st}");
    sources[0].clone()
}

/// Waits until `done` holds for the source's status.
fn wait_source(d: &Daemon, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    d.wait_source("pbx1", Duration::from_secs(30), what, done)
}

/// Waits until the source has stored everything up to byte `offset` of its current file.
fn wait_position(d: &Daemon, offset: usize) -> Value {
    wait_source(d, &format!("position {offset}"), |s| {
        s["position"].as_u64() == Some(offset as u64)
    })
}

/// Waits for the hand-counted figures, then checks no event was taken twice.
fn assert_counted_once(d: &Daemon) {
    let want = want();
    let deadline = Instant::now() + Duration::from_secs(30);
    while figures(d) != want {
        assert!(
            Instant::now() < deadline,
            "{:?} != {want:?}\n{}",
            figures(d),
            d.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let st = d.status();
    assert_eq!(
        st["engine"]["duplicates"], 0,
        "an event was sent twice: {st}"
    );
    assert_eq!(st["engine"]["late"], 0, "{st}");
}

#[test]
fn appended_lines_are_followed_a_half_written_line_waits_for_its_newline() {
    let port = free_port();
    let (d, log) = follower(&format!("\n[exposition]\nlisten = \"127.0.0.1:{port}\"\n"));
    let lines = recent_lines(120);
    // Before the file exists, the source waits for it.
    let s = source(&d);
    assert_eq!(s["state"], "waiting_for_file", "{s}");

    let first: String = lines[..15].concat();
    append(&log, &first);
    wait_position(&d, first.len());
    // Line 16 in two writes: nothing of it is read until its newline is there.
    let (head, tail) = lines[15].split_at(lines[15].len() / 2);
    append(&log, head);
    std::thread::sleep(Duration::from_millis(500));
    let s = wait_position(&d, first.len());
    assert_eq!(s["lines_read"], 15, "{s}");
    append(&log, tail);
    let upto16 = first.len() + lines[15].len();
    wait_position(&d, upto16);
    for l in &lines[16..] {
        append(&log, l);
    }
    assert_counted_once(&d);
    // The fixture's own last line is half-written: not read.
    let complete: usize = lines[..lines.len() - 1].iter().map(String::len).sum();
    let s = wait_position(&d, complete);
    assert_eq!(s["state"], "following", "{s}");
    assert_eq!(s["lines_read"], COMPLETE_LINES, "{s}");
    assert_eq!(s["events_mapped"], EVENTS, "{s}");
    assert_eq!(s["events_stored"], EVENTS, "{s}");
    assert_eq!(s["backlog_bytes"], lines[lines.len() - 1].len(), "{s}");
    assert_eq!(s["skipped"]["unknown_verb"]["FROBNICATE"], 1, "{s}");
    assert_eq!(s["skipped"]["comment"]["-"], 1, "{s}");
    assert_eq!(s["skipped"]["pseudo_call_id"]["QUEUESTART"], 1, "{s}");
    // The lag is now minus the time of the last line read: the last complete one.
    let last_read: i64 = lines[lines.len() - 2]
        .split('|')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let lag_now = (support::now_ms() / 1000 - last_read) as f64;
    let lag = s["lag_seconds"]
        .as_f64()
        .expect("a lag once lines are read");
    assert!(
        (lag_now - 30.0..=lag_now + 1.0).contains(&lag),
        "{lag} vs {lag_now}: {s}"
    );

    let text = scrape_metrics(port);
    assert!(
        text.contains(&format!(
            "callmetrics_source_lines_total{{source=\"pbx1\"}} {COMPLETE_LINES}"
        )),
        "{text}"
    );
    let lag_line = text
        .lines()
        .find(|l| l.starts_with("callmetrics_source_lag_seconds{source=\"pbx1\"} "))
        .unwrap_or_else(|| panic!("no lag sample in\n{text}"));
    let lag: f64 = lag_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(
        (lag_now - 30.0..=lag_now + 30.0).contains(&lag),
        "{lag_line}"
    );
    let status_text = d.query(&["status"]);
    let status_text = String::from_utf8_lossy(&status_text.stdout);
    assert!(
        status_text.contains("pbx1 (asterisk_queue_log ") && status_text.contains("following"),
        "{status_text}"
    );
}

#[test]
fn rotation_drains_the_renamed_file_then_truncation_and_copytruncate_count_each_line_once() {
    let lines = recent_lines(120);
    let (a, b, c) = (&lines[..14], &lines[14..28], &lines[28..]);

    // logrotate's `create`: the file is renamed and an empty one made; Asterisk writes to the
    // renamed file until `logger reload`, then to the new one.
    let (d, log) = follower("");
    append(&log, &a.concat());
    wait_position(&d, a.concat().len());
    let rotated = log.with_file_name("queue_log.1");
    std::fs::rename(&log, &rotated).unwrap();
    append(&log, "");
    std::thread::sleep(Duration::from_millis(300));
    append(&rotated, &b.concat());
    std::thread::sleep(Duration::from_millis(300));
    append(&log, &c.concat());
    assert_counted_once(&d);
    let s = source(&d);
    assert_eq!(s["rotations"], 1, "{s}");
    assert_eq!(s["lines_read"], COMPLETE_LINES, "{s}");
    drop(d);

    // Truncated in place (`: > queue_log`), then written again.
    let (d, log) = follower("");
    append(&log, &a.concat());
    wait_position(&d, a.concat().len());
    truncate(&log);
    wait_source(&d, "the truncation", |s| s["truncations"] == 1);
    append(&log, &format!("{}{}", b.concat(), c.concat()));
    assert_counted_once(&d);
    assert_eq!(source(&d)["lines_read"], COMPLETE_LINES);
    drop(d);

    // copytruncate: lines appended just before the copy are in the copy only; the daemon is
    // stopped (SIGSTOP) meanwhile, so it looks again only once the file was truncated and
    // written on. Those lines are read from the copy, once.
    let (d, log) = follower("");
    append(&log, &a.concat());
    wait_position(&d, a.concat().len());
    d.signal("STOP");
    append(&log, &b.concat());
    std::fs::copy(&log, log.with_file_name("queue_log.1")).unwrap();
    truncate(&log);
    append(&log, &c.concat());
    d.signal("CONT");
    assert_counted_once(&d);
    let s = source(&d);
    assert_eq!(s["truncations"], 1, "{s}");
    assert_eq!(s["lines_read"], COMPLETE_LINES, "{s}");
    let copied = b.concat().len();
    assert!(
        d.log_text().contains(&format!(
            "read {copied} bytes of lines the file no longer holds from its copy"
        )),
        "{}",
        d.log_tail()
    );
}

#[test]
fn kill_9_between_appends_loses_nothing_and_counts_nothing_twice() {
    let lines = recent_lines(120);
    let (mut d, log) = follower("");
    let mut written = 0;
    for (i, part) in lines.chunks(9).enumerate() {
        let text = part.concat();
        append(&log, &text);
        written += text.len();
        if i % 2 == 0 {
            // Killed while it may be reading or storing these lines.
            std::thread::sleep(Duration::from_millis(20 * i as u64));
        } else {
            // Killed once they are stored.
            let complete = if i == lines.len().div_ceil(9) - 1 {
                written - lines[lines.len() - 1].len()
            } else {
                written
            };
            wait_position(&d, complete);
        }
        d.kill();
        d.restart();
    }
    assert_counted_once(&d);
    let s = source(&d);
    let complete: usize = lines[..lines.len() - 1].iter().map(String::len).sum();
    assert_eq!(s["position"], complete, "{s}");
    assert_eq!(s["events_refused"], serde_json::json!({}), "{s}");
}
