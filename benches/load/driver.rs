//! Driving the daemon like its clients do: pipelined event connections (a writer thread pushes
//! the whole payload, a reader thread counts the replies), one connection paced at a fixed rate
//! with each event's acknowledgement time, and metrics queries over the control socket and
//! through the CLI.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use callmetrics::control::client::request;
use callmetrics::control::protocol::{Request, Response};
use callmetrics::engine::{DimKind, MetricsQuery};

use super::workload::Payload;
use crate::support::{cli, connect_events};

/// `{"ok":true}` as a reply line, and as a reply frame's body (a map of one key).
const OK_JSON: &[u8] = b"{\"ok\":true}\n";
const OK_MSGPACK: &[u8] = &[0x81, 0xa2, b'o', b'k', 0xc3];

/// Longest a socket read or write may block before the bench gives up.
const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// What one streaming phase achieved.
pub struct Streamed {
    pub events: usize,
    /// Events the daemon refused (from the replies' `accepted` counts).
    pub refused: usize,
    pub first_error: Option<String>,
    pub wall: Duration,
}

impl Streamed {
    /// Acknowledged events per second of wall time.
    pub fn rate(&self) -> f64 {
        (self.events - self.refused) as f64 / self.wall.as_secs_f64()
    }
}

/// Reads the replies of one connection; returns the events refused and the first refusal. A
/// reply is `{"ok":true}` (one event), `{"accepted":n,"ok":true}` (a batch), or an error with the
/// batch's `accepted` count.
fn read_replies(
    stream: UnixStream,
    messages: usize,
    events_per_message: &[usize],
    msgpack: bool,
) -> (usize, Option<String>) {
    let mut refused = 0;
    let mut first = None;
    let mut r = BufReader::with_capacity(1 << 16, stream);
    let mut line = Vec::new();
    let mut body = Vec::new();
    for i in 0..messages {
        // The usual reply, `{"ok":true}`, is recognised by its bytes, as a lean client would: the
        // bench shares the daemon's two cores, so its own parsing would count against ingest.
        let v: serde_json::Value = if msgpack {
            let mut len = [0u8; 4];
            r.read_exact(&mut len).expect("read a reply frame");
            body.resize(u32::from_be_bytes(len) as usize, 0);
            r.read_exact(&mut body).expect("read a reply frame");
            if body == OK_MSGPACK {
                continue;
            }
            rmp_serde::from_slice(&body).expect("decode a reply")
        } else {
            line.clear();
            r.read_until(b'\n', &mut line).expect("read a reply line");
            if line == OK_JSON {
                continue;
            }
            serde_json::from_slice(&line).expect("decode a reply")
        };
        if v["ok"] != serde_json::Value::Bool(true) {
            let sent = events_per_message.get(i).copied().unwrap_or(1);
            let accepted = v["accepted"].as_u64().unwrap_or(0) as usize;
            refused += sent.saturating_sub(accepted);
            first.get_or_insert_with(|| v.to_string());
        }
    }
    (refused, first)
}

/// Sends every payload on its own connection at once, pipelined, and waits for every reply.
pub fn stream(events_sock: &Path, loads: &[Payload], msgpack: bool) -> Streamed {
    let started = Instant::now();
    let results: Vec<(usize, Option<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = loads
            .iter()
            .map(|p| {
                let stream = connect_events(events_sock, IO_TIMEOUT);
                let reader = stream.try_clone().expect("clone the stream");
                let messages = p.messages;
                let per = &p.per_message;
                let r = s.spawn(move || read_replies(reader, messages, per, msgpack));
                s.spawn(move || {
                    let mut w = stream;
                    w.write_all(&p.bytes).expect("send the payload");
                });
                r
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("reader thread"))
            .collect()
    });
    Streamed {
        events: loads.iter().map(|p| p.events).sum(),
        refused: results.iter().map(|r| r.0).sum(),
        first_error: results.into_iter().find_map(|r| r.1),
        wall: started.elapsed(),
    }
}

/// One connection sending single-event JSON lines at `rate` per second for `secs`: each
/// event's time from send to its acknowledgement, in ms.
pub fn paced(events_sock: &Path, lines: &[Vec<u8>], rate: u64) -> Vec<f64> {
    let stream = connect_events(events_sock, IO_TIMEOUT);
    let reader = stream.try_clone().expect("clone the stream");
    let n = lines.len();
    let (tx, rx) = std::sync::mpsc::channel::<Instant>();
    let latencies = std::thread::scope(|s| {
        let r = s.spawn(move || {
            let mut r = BufReader::new(reader);
            let mut line = Vec::new();
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                line.clear();
                r.read_until(b'\n', &mut line).expect("read an ack");
                let sent = rx.recv().expect("send time");
                out.push(sent.elapsed().as_secs_f64() * 1000.0);
            }
            out
        });
        let mut w = stream;
        let start = Instant::now();
        for (i, l) in lines.iter().enumerate() {
            let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let _ = tx.send(Instant::now());
            w.write_all(l).expect("send an event");
        }
        r.join().expect("ack reader")
    });
    let mut l = latencies;
    l.sort_by(f64::total_cmp);
    l
}

/// `metrics` round trips over the control socket (the daemon's answer plus the protocol), ms,
/// sorted; and the rows of the last answer.
pub fn query_times(
    rt: &tokio::runtime::Runtime,
    control: &Path,
    window: &str,
    by: DimKind,
    runs: usize,
) -> (Vec<f64>, usize) {
    let req = Request::Metrics(MetricsQuery {
        window: Some(window.into()),
        by,
        key: None,
    });
    let mut times = Vec::with_capacity(runs);
    let mut rows = 0;
    for _ in 0..runs {
        let t = Instant::now();
        match rt.block_on(request(control, &req)) {
            Ok(Response::Metrics(r)) => rows = r.len(),
            other => panic!("metrics query failed: {other:?}"),
        }
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    (times, rows)
}

/// `callmetrics metrics --json --window W --by B` as an operator types it: process start to exit, ms.
pub fn cli_times(control: &Path, window: &str, by: &str, runs: usize) -> Vec<f64> {
    let args = [
        "metrics", "--json", "--window", window, "--by", by, "--socket",
    ];
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let out = cli(args.iter().map(OsStr::new).chain([control.as_os_str()]));
        assert!(
            out.status.success(),
            "the CLI failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    times
}

/// Offered calls over 24 h, all queues (to check restarts lose nothing).
pub fn offered_24h(rt: &tokio::runtime::Runtime, control: &Path) -> u64 {
    let req = Request::Metrics(MetricsQuery {
        window: Some("24h".into()),
        by: DimKind::All,
        key: None,
    });
    match rt.block_on(request(control, &req)) {
        Ok(Response::Metrics(rows)) => rows.iter().map(|r| r.counts.offered).sum(),
        other => panic!("metrics query failed: {other:?}"),
    }
}
