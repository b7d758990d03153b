//! Part 1 of the soak: pipelined load over 8 connections, a `kill -9` at a random moment, a
//! restart on the same store, many times; then every call checked on its own (see `main.rs`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use callmetrics::control::client::request;
use callmetrics::control::protocol::{Request, Response};
use callmetrics::engine::{DimKind, MetricsQuery};

use crate::support::{now_ms, try_connect_events, Daemon};
use crate::workload::{json_lines, msgpack_batches, Call, Payload};

/// Event connections per cycle: the first half send JSON lines, the others `MessagePack`.
pub const CONNECTIONS: usize = 8;

/// Longest a reply may take before the bench stops waiting for it (a killed daemon's socket
/// ends at once; this only bounds a hang).
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// What the crash cycles found.
pub struct Outcome {
    pub cycles: u64,
    /// Cycles whose kill came before every reply had arrived.
    pub cut: u64,
    pub sent: usize,
    pub acked: usize,
    pub counted: usize,
    pub doubled: usize,
    /// Slowest restart (start to answering `status`), ms.
    pub slowest_start_ms: f64,
    pub failures: Vec<String>,
}

impl Outcome {
    pub fn print(&self) {
        println!("\n== crash cycles");
        println!(
            "cycles                                   {:>10}",
            self.cycles
        );
        println!("  killed before every reply was out      {:>10}", self.cut);
        println!("calls sent                               {:>10}", self.sent);
        println!(
            "calls acknowledged (every event ok)      {:>10}",
            self.acked
        );
        println!(
            "calls counted (offered = 1 in 24h)       {:>10}",
            self.counted
        );
        println!(
            "calls counted twice                      {:>10}",
            self.doubled
        );
        println!(
            "slowest restart                          {:>10.0} ms",
            self.slowest_start_ms
        );
    }
}

/// One connection's calls, their encoding, and what became of them.
struct Conn {
    calls: Vec<Call>,
    payload: Payload,
    msgpack: bool,
    /// Byte offset where each message starts, and the end of the last one.
    starts: Vec<usize>,
}

/// What one connection achieved before the kill.
#[derive(Default)]
struct Sent {
    written: usize,
    ok: Vec<bool>,
}

impl Conn {
    fn new(calls: Vec<Call>, kind: usize) -> Conn {
        // JSON lines on half the connections; MessagePack single-event frames, or one frame per
        // call (a batch of its four events), on the others.
        let (payload, msgpack) = match kind % 4 {
            0 | 1 => (json_lines(&calls), false),
            2 => (msgpack_batches(&calls, 1), true),
            _ => (msgpack_batches(&calls, 4), true),
        };
        let starts = message_starts(&payload.bytes, msgpack);
        assert_eq!(starts.len(), payload.messages + 1, "messages of a payload");
        Conn {
            calls,
            payload,
            msgpack,
            starts,
        }
    }

    /// Sends the payload pipelined on its own threads; returns the bytes written and which
    /// replies said ok, once the connection has ended (the kill ends it).
    fn send(&self, events: &Path) -> Sent {
        let Ok(stream) = try_connect_events(events, IO_TIMEOUT) else {
            return Sent::default();
        };
        let reader = stream.try_clone().expect("clone the stream");
        std::thread::scope(|s| {
            let replies = s.spawn(|| read_oks(reader, self.payload.messages, self.msgpack));
            let mut w = stream;
            let mut written = 0;
            while written < self.payload.bytes.len() {
                match w.write(&self.payload.bytes[written..]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => written += n,
                }
            }
            Sent {
                written,
                ok: replies.join().expect("reply reader"),
            }
        })
    }

    /// For each call: (sent: its first byte was written, acknowledged: every message holding one
    /// of its events was answered ok).
    fn fate(&self, sent: &Sent) -> Vec<(bool, bool)> {
        let mut out = Vec::with_capacity(self.calls.len());
        let mut event = 0;
        let mut msg = 0;
        // Events before message `msg`.
        let mut msg_first_event = 0;
        for c in &self.calls {
            let (first, last) = (event, event + c.events());
            // Skip to the message holding this call's first event.
            while msg_first_event + self.payload.per_message[msg] <= first {
                msg_first_event += self.payload.per_message[msg];
                msg += 1;
            }
            let was_sent = sent.written > self.starts[msg];
            let (mut m, mut m_first) = (msg, msg_first_event);
            let mut acked = true;
            while m_first < last {
                acked &= sent.ok.get(m).copied().unwrap_or(false);
                m_first += self.payload.per_message[m];
                m += 1;
            }
            out.push((was_sent, acked));
            event = last;
        }
        out
    }
}

/// Byte offsets where each message of `bytes` starts, plus its length at the end.
fn message_starts(bytes: &[u8], msgpack: bool) -> Vec<usize> {
    let mut starts = vec![0];
    let mut at = 0;
    while at < bytes.len() {
        at += if msgpack {
            let len: [u8; 4] = bytes[at..at + 4].try_into().expect("a frame length");
            4 + u32::from_be_bytes(len) as usize
        } else {
            bytes[at..]
                .iter()
                .position(|&b| b == b'\n')
                .expect("a line")
                + 1
        };
        starts.push(at);
    }
    starts
}

/// Reads replies until the connection ends or all `messages` are answered: `true` for each
/// `{"ok":true}` in order.
fn read_oks(stream: UnixStream, messages: usize, msgpack: bool) -> Vec<bool> {
    let mut r = BufReader::new(stream);
    let mut oks = Vec::with_capacity(messages);
    let mut buf = Vec::new();
    while oks.len() < messages {
        let reply: serde_json::Value = if msgpack {
            let mut len = [0u8; 4];
            if r.read_exact(&mut len).is_err() {
                break;
            }
            buf.resize(u32::from_be_bytes(len) as usize, 0);
            if r.read_exact(&mut buf).is_err() {
                break;
            }
            rmp_serde::from_slice(&buf).expect("a MessagePack reply")
        } else {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(n) if n > 0 && buf.ends_with(b"\n") => {}
                _ => break,
            }
            serde_json::from_slice(&buf).expect("a JSON reply")
        };
        oks.push(reply["ok"] == serde_json::Value::Bool(true));
    }
    oks
}

/// The calls of one connection of one cycle: complete and answered, each alone in its queue.
fn calls(cycle: u64, conn: usize, n: usize, base: i64) -> Vec<Call> {
    (0..n)
        .map(|i| {
            let id = format!("s{cycle}-{conn}-{i}");
            let start = base + (i as i64) * 10;
            Call {
                queue: format!("q-{id}"),
                id,
                channel: "voice",
                agent: Some(format!("agent{conn}")),
                start,
                answer: Some(start + 4_000),
                end: start + 64_000,
                wrapup: Some(start + 70_000),
            }
        })
        .collect()
}

/// Runs the cycles on `d` (started), leaves it running, and checks every call.
pub fn run(d: &mut Daemon, cycles: u64, per_conn: usize, seed: u64) -> Outcome {
    let mut rng = fastrand::Rng::with_seed(seed);
    // Every event is in the past (calls ended a few minutes ago) and inside the 24 h window.
    let base = now_ms() - 10 * 60_000;
    // How long a whole cycle's load takes when nothing stops it; kills fall within 1.5 times that.
    let mut full_load: Option<Duration> = None;
    let mut cut = 0;
    let mut slowest_start = Duration::ZERO;
    // Per call: (sent, acknowledged).
    let mut fate: HashMap<String, (bool, bool)> = HashMap::new();
    for cycle in 0..cycles {
        if cycle > 0 {
            let t = Instant::now();
            d.restart();
            slowest_start = slowest_start.max(t.elapsed());
        }
        let conns: Vec<Conn> = (0..CONNECTIONS)
            .map(|c| Conn::new(calls(cycle, c, per_conn, base), c))
            .collect();
        let events = d.events.clone();
        let delay = full_load.map(|full| full.mul_f64(rng.f64() * 1.5));
        let started = Instant::now();
        let results: Vec<Sent> = std::thread::scope(|s| {
            let handles: Vec<_> = conns.iter().map(|c| s.spawn(|| c.send(&events))).collect();
            if let Some(delay) = delay {
                std::thread::sleep(delay);
                d.kill();
            }
            let results: Vec<Sent> = handles
                .into_iter()
                .map(|h| h.join().expect("a connection"))
                .collect();
            if delay.is_none() {
                // The first cycle measures the whole load, then is killed idle.
                full_load = Some(started.elapsed());
                d.kill();
            }
            results
        });
        let all_replied = conns
            .iter()
            .zip(&results)
            .all(|(c, r)| r.ok.len() == c.payload.messages);
        if !all_replied {
            cut += 1;
        }
        for (c, r) in conns.iter().zip(&results) {
            for (call, f) in c.calls.iter().zip(c.fate(r)) {
                fate.insert(call.id.clone(), f);
            }
        }
    }
    d.restart();
    let mut outcome = check(d, &fate);
    outcome.cycles = cycles;
    outcome.cut = cut;
    outcome.slowest_start_ms = slowest_start.as_secs_f64() * 1000.0;
    outcome
}

/// (offered, handled) per queue over 24 h.
fn counts(rt: &tokio::runtime::Runtime, control: &Path) -> HashMap<String, (u64, u64)> {
    let req = Request::Metrics(MetricsQuery {
        window: Some("24h".into()),
        by: DimKind::Queue,
        key: None,
    });
    match rt.block_on(request(control, &req)) {
        Ok(Response::Metrics(rows)) => rows
            .into_iter()
            .map(|r| (r.key, (r.counts.offered, r.counts.handled)))
            .collect(),
        other => panic!("metrics query failed: {other:?}"),
    }
}

/// Checks every call against the daemon's per-queue counts. The last restart replays the log
/// and calls wait out their reorder grace before they are folded, so the check waits (at most
/// a minute) until every acknowledged call is counted and handled.
fn check(d: &Daemon, fate: &HashMap<String, (bool, bool)>) -> Outcome {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let deadline = Instant::now() + Duration::from_secs(60);
    let by_queue = loop {
        let by_queue = counts(&rt, &d.control);
        let settled = fate
            .iter()
            .filter(|(_, f)| f.1)
            .all(|(id, _)| by_queue.get(&format!("q-{id}")).copied() == Some((1, 1)));
        if settled || Instant::now() > deadline {
            break by_queue;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let mut o = Outcome {
        cycles: 0,
        cut: 0,
        sent: 0,
        acked: 0,
        counted: 0,
        doubled: 0,
        slowest_start_ms: 0.0,
        failures: Vec::new(),
    };
    for (id, &(sent, acked)) in fate {
        let (offered, handled) = by_queue.get(&format!("q-{id}")).copied().unwrap_or((0, 0));
        o.sent += usize::from(sent);
        o.acked += usize::from(acked);
        o.counted += usize::from(offered > 0);
        if offered > 1 {
            o.doubled += 1;
            o.failures
                .push(format!("call {id} counted {offered} times"));
        }
        if acked && (offered, handled) != (1, 1) {
            o.failures.push(format!(
                "call {id} was acknowledged but counts offered {offered}, handled {handled}"
            ));
        }
        if !sent && offered > 0 {
            o.failures
                .push(format!("call {id} was never sent but is counted"));
        }
    }
    for (queue, &(offered, _)) in &by_queue {
        let known = queue
            .strip_prefix("q-")
            .is_some_and(|id| fate.contains_key(id));
        if offered > 0 && !known {
            o.failures
                .push(format!("queue {queue} counts {offered} calls nobody sent"));
        }
    }
    if !(o.acked <= o.counted && o.counted <= o.sent) {
        o.failures.push(format!(
            "acknowledged {} <= counted {} <= sent {} does not hold",
            o.acked, o.counted, o.sent
        ));
    }
    o
}
