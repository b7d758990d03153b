//! SIGTERM in the middle of a pipelined stream: every line gets its reply or the connection
//! closes, and everything acknowledged is there after a restart.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{now_ms, Daemon, DEADLINE};

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
