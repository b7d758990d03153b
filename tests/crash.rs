//! Crash test: under a steady pipelined stream of events, the daemon is `SIGKILLed` at random moments
//! (at least 20 times) and restarted on the same store. After every restart, what it counts must lie
//! between what it acknowledged and what was sent: nothing acknowledged is lost, nothing is counted
//! twice.
//!
//! Two kinds of input are mixed on one JSON-lines connection, never waiting for a reply before
//! sending more (a reader thread takes the replies in order):
//! - `k<N>`: one `start` line; the call stays in its queue, so it is listed by `calls --json` and
//!   never counted in `offered`;
//! - `d<N>`: a batch `[start, end(abandoned)]`, a complete call, counted once in `offered`.
//!
//! The random seed is printed; set `CALLMETRICS_CRASH_SEED` to replay a run's kill moments.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{now_ms, Daemon, DEADLINE};

const KILLS: usize = 22;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A single `start` line for `k<N>`.
    K,
    /// A batch `[start, end]` for `d<N>`.
    D,
}

/// What one connection's life (until the SIGKILL) got acknowledged.
#[derive(Default)]
struct Round {
    acked_k: Vec<u64>,
    acked_d: Vec<u64>,
    /// Replies that were not `ok` (there should be none).
    refused: Vec<String>,
}

/// Streams events until `stop`, in bursts of 1..=6 lines every 2..=4 ms, from ids `next_id..`.
/// Each line is announced to the reader (`order`) and counted as sent before it is written, so
/// "sent" covers anything the daemon could have read.
fn writer(
    mut stream: UnixStream,
    stop: Arc<AtomicBool>,
    order: mpsc::Sender<(Kind, u64)>,
    mut next_id: u64,
    seed: u64,
) -> (Vec<u64>, Vec<u64>, u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let (mut sent_k, mut sent_d) = (Vec::new(), Vec::new());
    'outer: while !stop.load(Ordering::Relaxed) {
        let burst = rng.u64(1..=6);
        let mut bytes = Vec::new();
        for _ in 0..burst {
            let id = next_id;
            next_id += 1;
            let now = now_ms();
            let (kind, line) = if rng.bool() {
                let e =
                    json!({"type": "start", "call_id": format!("k{id}"), "queue": "q", "ts": now});
                (Kind::K, e)
            } else {
                let call = format!("d{id}");
                let e = json!([
                    {"type": "start", "call_id": call, "queue": "q", "ts": now - 2000},
                    {"type": "end", "call_id": call, "ts": now, "reason": "abandoned"},
                ]);
                (Kind::D, e)
            };
            match kind {
                Kind::K => sent_k.push(id),
                Kind::D => sent_d.push(id),
            }
            if order.send((kind, id)).is_err() {
                break 'outer;
            }
            bytes.extend_from_slice(line.to_string().as_bytes());
            bytes.push(b'\n');
        }
        if stream.write_all(&bytes).is_err() {
            break;
        }
        thread::sleep(Duration::from_millis(rng.u64(2..=4)));
    }
    (sent_k, sent_d, next_id)
}

/// Reads replies in order until the connection ends, pairing each with the line it answers.
/// Signals `first_ack` at the first acknowledgement.
fn reader(
    stream: UnixStream,
    order: mpsc::Receiver<(Kind, u64)>,
    first_ack: mpsc::Sender<()>,
) -> Round {
    let mut round = Round::default();
    let mut replies = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match replies.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if !line.ends_with('\n') {
            // Cut off by the kill: not a reply.
            break;
        }
        let Ok((kind, id)) = order.recv_timeout(DEADLINE) else {
            round
                .refused
                .push(format!("a reply for a line never sent: {line}"));
            break;
        };
        let reply: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                round
                    .refused
                    .push(format!("reply {line:?} is not JSON: {e}"));
                continue;
            }
        };
        if reply["ok"] == json!(true) {
            let _ = first_ack.send(());
            match kind {
                Kind::K => round.acked_k.push(id),
                Kind::D => round.acked_d.push(id),
            }
        } else {
            round.refused.push(format!("{kind:?}{id} refused: {reply}"));
        }
    }
    round
}

/// Everything sent and acknowledged over the whole test.
#[derive(Default)]
struct Ledger {
    sent_k: BTreeSet<u64>,
    sent_d: BTreeSet<u64>,
    acked_k: BTreeSet<u64>,
    acked_d: BTreeSet<u64>,
}

/// What the daemon shows: open `k` calls, open `d` calls, and `offered` over 1h.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    k: BTreeSet<u64>,
    d: BTreeSet<u64>,
    offered: u64,
}

fn id_of(call_id: &str, prefix: char) -> Option<u64> {
    call_id.strip_prefix(prefix).and_then(|n| n.parse().ok())
}

/// Reads the daemon's view and checks it against the ledger; `when` labels failures.
fn check(d: &Daemon, ledger: &Ledger, when: &str) -> Seen {
    let calls = d.calls();
    let mut k = BTreeSet::new();
    let mut dd = BTreeSet::new();
    for c in &calls {
        let id = c["call_id"]
            .as_str()
            .unwrap_or_else(|| panic!("call without call_id: {c}"));
        if let Some(n) = id_of(id, 'k') {
            assert!(k.insert(n), "{when}: k{n} is listed twice by calls --json");
        } else if let Some(n) = id_of(id, 'd') {
            assert!(dd.insert(n), "{when}: d{n} is listed twice by calls --json");
        } else {
            panic!("{when}: calls --json lists a call never sent: {c}");
        }
    }
    let lost: Vec<_> = ledger.acked_k.difference(&k).take(10).collect();
    assert!(
        lost.is_empty(),
        "{when}: acknowledged starts lost: k{lost:?} ({} acked, {} listed)",
        ledger.acked_k.len(),
        k.len()
    );
    let invented: Vec<_> = k.difference(&ledger.sent_k).take(10).collect();
    assert!(
        invented.is_empty(),
        "{when}: never sent but listed: k{invented:?}"
    );
    // A complete `d` call never waits; one half-stored batch could, but never an acknowledged one.
    let half: Vec<_> = dd.intersection(&ledger.acked_d).take(10).collect();
    assert!(
        half.is_empty(),
        "{when}: acknowledged [start, end] batches listed as still waiting: d{half:?}"
    );
    let invented: Vec<_> = dd.difference(&ledger.sent_d).take(10).collect();
    assert!(
        invented.is_empty(),
        "{when}: never sent but listed: d{invented:?}"
    );

    let rows = d.metrics("1h", "all");
    assert!(rows.len() <= 1, "{when}: metrics --by all: {rows:?}");
    // No row at all can only mean no traffic yet.
    let offered = rows.first().map_or(0, |row| {
        assert_eq!(row["dimension"], "all", "{when}: {row}");
        let offered = row["offered"].as_u64().expect("offered");
        // Only `d` calls leave the queue, all of them abandoned.
        assert_eq!(row["abandoned"].as_u64(), Some(offered), "{when}: {row}");
        offered
    });
    assert!(
        ledger.acked_d.len() as u64 <= offered && offered <= ledger.sent_d.len() as u64,
        "{when}: offered {offered} is outside acknowledged {} ..= sent {}",
        ledger.acked_d.len(),
        ledger.sent_d.len()
    );
    Seen { k, d: dd, offered }
}

/// The test config: room for every open call; with `checkpoints`, one every 300 events.
fn config(checkpoints: bool) -> String {
    let store = if checkpoints {
        "checkpoint_events = 300\n"
    } else {
        ""
    };
    format!("{store}\n[limits]\nmax_open_segments = 1000000\n")
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_event_and_counts_none_twice() {
    let started = Instant::now();
    let seed = std::env::var("CALLMETRICS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_ms() as u64);
    println!("CALLMETRICS_CRASH_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);

    let mut d = Daemon::start(&config(false));
    let mut ledger = Ledger::default();
    let mut next_id = 1u64;
    let mut previous: Option<Seen> = None;
    let mut refused = Vec::new();

    for round in 1..=KILLS {
        let stream = d.event_stream();
        let (order_tx, order_rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let w = {
            let stream = stream.try_clone().expect("clone the stream");
            let stop = stop.clone();
            let wseed = rng.u64(..);
            let from = next_id;
            thread::spawn(move || writer(stream, stop, order_tx, from, wseed))
        };
        let (ack_tx, ack_rx) = mpsc::channel();
        let r = thread::spawn(move || reader(stream, order_rx, ack_tx));

        // The random moment of the kill, once the stream flows: some replies are in flight.
        let flowing = ack_rx.recv_timeout(DEADLINE).is_ok();
        thread::sleep(Duration::from_millis(rng.u64(100..=600)));
        d.kill();
        stop.store(true, Ordering::Relaxed);
        let (sent_k, sent_d, next) = w.join().expect("the writer thread");
        let got = r.join().expect("the reader thread");
        next_id = next;
        ledger.sent_k.extend(sent_k);
        ledger.sent_d.extend(sent_d);
        ledger.acked_k.extend(&got.acked_k);
        ledger.acked_d.extend(&got.acked_d);
        refused.extend(got.refused);
        assert!(
            flowing,
            "round {round}: nothing acknowledged within {DEADLINE:?}; refused: {refused:?}"
        );

        // Every other run checkpoints every few hundred events, so kills also land in the middle
        // of checkpoints and restarts load one; the others replay the whole log since the last.
        d.rewrite_config(&config(round % 2 == 1));
        d.restart();
        let seen = check(&d, &ledger, &format!("after kill {round}"));
        if let Some(prev) = &previous {
            // What a restart showed once must show after every later restart.
            let gone: Vec<_> = prev.k.difference(&seen.k).take(10).collect();
            assert!(
                gone.is_empty(),
                "after kill {round}: listed before, gone now: k{gone:?}"
            );
            assert!(
                seen.offered >= prev.offered,
                "after kill {round}: offered fell from {} to {}",
                prev.offered,
                seen.offered
            );
        }
        previous = Some(seen);
    }
    assert!(refused.is_empty(), "refused events: {refused:?}");

    // A clean stop and start changes nothing at all.
    let last = previous.expect("at least one round");
    d.stop();
    d.restart();
    let after = check(&d, &ledger, "after the final SIGTERM and restart");
    assert_eq!(after, last, "a clean restart changed the state");

    println!(
        "{KILLS} kills: sent {} starts and {} [start, end] batches, {} and {} acknowledged; \
         listed {} starts, offered {}; {:?}",
        ledger.sent_k.len(),
        ledger.sent_d.len(),
        ledger.acked_k.len(),
        ledger.acked_d.len(),
        after.k.len(),
        after.offered,
        started.elapsed()
    );
}
