//! Upstream benchmark: a week-long outage's backlog (100 queues × 672 intervals) drained by the
//! real daemon into a local HTTP receiver; RSS while the backlog waits; bytes per record on disk
//! and on the wire (JSON and `MessagePack`, plain and gzipped).
//!
//! `cargo bench --bench upstream` (set `CALLMETRICS_BENCH_QUEUES` / `_INTERVALS` to shrink it).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use callmetrics::config::{BodyFormat, Formula, Millis, QueueParams, SinkConfig, SinkKind};
use callmetrics::engine::{Agg, DimKind, HandleFacts, Outcome, QueueFacts};
use callmetrics::store::Store;
use callmetrics::upstream::encode::gzip;
use callmetrics::upstream::outbox_store::StoreOutbox;
use callmetrics::upstream::sink::Sink;
use callmetrics::upstream::{IntervalRecord, RecordKind};

#[path = "../tests/support/mod.rs"]
mod support;
use support::http::{Action, Receiver};
use support::{dir_bytes, Daemon};

const INTERVAL_MS: i64 = 900_000;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A realistic queue interval: 20–80 calls with waits, talk, hold and ACW.
fn interval_agg(rng: &mut fastrand::Rng) -> Agg {
    let p = QueueParams {
        threshold: Millis::secs(20),
        target: 0.8,
        short_abandon: Millis::secs(5),
        formula: Formula::Offered,
    };
    let bands = [10_000, 20_000, 30_000, 60_000, 120_000];
    let mut a = Agg::default();
    for _ in 0..rng.usize(20..80) {
        let wait = rng.i64(0..180_000);
        let outcome = match rng.u8(0..10) {
            0..=6 => Outcome::Answered,
            7..=8 => Outcome::Abandoned,
            _ => Outcome::Overflow,
        };
        a.add_queue(
            &QueueFacts {
                start_ms: 0,
                leave_ms: wait,
                outcome,
            },
            &p,
            &bands,
        );
        if outcome == Outcome::Answered {
            a.add_handle(&HandleFacts {
                completion_ms: 0,
                talk_ms: rng.u64(10_000..900_000),
                hold_ms: rng.u64(0..60_000),
                acw_ms: rng.u64(0..120_000),
            });
        }
    }
    a
}

fn records(queues: usize, intervals: usize) -> Vec<IntervalRecord> {
    let mut rng = fastrand::Rng::with_seed(7);
    let start = 1_795_300_200_000 - intervals as i64 * INTERVAL_MS;
    let mut out = Vec::with_capacity(queues * intervals);
    for i in 0..intervals {
        for q in 0..queues {
            let agg = interval_agg(&mut rng);
            out.push(IntervalRecord {
                host_id: "bench-host".into(),
                seq: (out.len() + 1) as u64,
                kind: RecordKind::Interval,
                interval_start_ms: start + i as i64 * INTERVAL_MS,
                interval_ms: INTERVAL_MS,
                dimension: DimKind::Queue,
                key: format!("queue-{q:03}"),
                delta: agg.clone(),
                total: agg,
                sla: Vec::new(),
            });
        }
    }
    out
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() {
    let queues = env_or("CALLMETRICS_BENCH_QUEUES", 100);
    let intervals = env_or("CALLMETRICS_BENCH_INTERVALS", 672);
    let recs = records(queues, intervals);
    let n = recs.len();
    println!("upstream bench: {queues} queues × {intervals} intervals = {n} records");

    // Wire sizes, from the sink's own encoder, on batches of 500.
    for (format, name) in [(BodyFormat::Json, "json"), (BodyFormat::Msgpack, "msgpack")] {
        let sink = Sink::new(&SinkConfig {
            name: "wire".into(),
            kind: SinkKind::Http,
            url: "http://127.0.0.1:9/".into(),
            format,
            gzip: false,
            token_file: String::new(),
            connect_timeout: Millis::secs(5),
            request_timeout: Millis::secs(30),
            batch_records: 500,
            linger: Millis(100),
            backoff_cap: Millis::secs(60),
        })
        .expect("build a sink");
        let (mut plain, mut zipped) = (0usize, 0usize);
        for batch in recs.chunks(500).take(20) {
            let (body, _) = sink.encode_body(batch);
            plain += body.len();
            zipped += gzip(&body).map_or(0, |b| b.len());
        }
        let counted = recs.len().min(20 * 500) as f64;
        println!(
            "wire bytes per record, {name}: {:.0} plain, {:.0} gzip",
            plain as f64 / counted,
            zipped as f64 / counted
        );
    }

    // The backlog, written into the daemon's store as a week of closed intervals would be.
    // The receiver is down (503, Retry-After: 1) until it opens (200).
    let receiver = Receiver::standalone(
        Vec::new(),
        Action::status(503, "").with_header("Retry-After", "1"),
    );
    // Appended to the daemon's `[store]` section.
    let extra = format!(
        r#"max_bytes = 17179869184

[upstream]
host_id = "bench-host"
max_outbox_bytes = 17179869184

[[upstream.sinks]]
name = "central"
kind = "http"
url = "{url}"
batch_records = 1000
linger = "10ms"
backoff_cap = "1s"
"#,
        url = receiver.url("/records")
    );
    let mut d = Daemon::configure(&extra);
    let store_path = d.dir.path().join("store");
    {
        let store = Store::open(&store_path, 8 << 20, 1 << 34).expect("open the store");
        let before = dir_bytes(&store_path);
        for chunk in recs.chunks(1000) {
            let encoded: Vec<(u64, Vec<u8>)> = chunk
                .iter()
                .map(|r| (r.seq, StoreOutbox::encode(r)))
                .collect();
            store
                .add_records(&encoded, &[], 1 << 34)
                .expect("add records");
        }
        store.flush_blocking().expect("flush");
        let (count, bytes) = store.outbox_size();
        println!(
            "outbox: {count} records, {:.0} bytes per record encoded, {:.0} bytes per record on disk (store files)",
            bytes as f64 / count.max(1) as f64,
            (dir_bytes(&store_path) - before) as f64 / count.max(1) as f64
        );
    }

    let started = Instant::now();
    d.restart();
    let pid = d.pid();
    println!(
        "daemon ready with the backlog in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    // The receiver is down (503) for 3 s: the backlog waits.
    std::thread::sleep(Duration::from_secs(3));
    println!(
        "RSS while the backlog of {n} records waits: {:.1} MiB",
        rss_kib(pid) as f64 / 1024.0
    );
    receiver.set_then(Action::status(200, ""));
    let drain = Instant::now();
    let mut peak = 0;
    // Distinct records delivered, and the wire bytes of the requests that delivered them.
    let (mut keys, mut bytes, mut seen) = (HashSet::new(), 0usize, 0);
    loop {
        let new = receiver.requests_since(seen);
        seen += new.len();
        for req in new.iter().filter(|r| r.delivered()) {
            bytes += req.wire_len;
            for r in req.json()["records"].as_array().into_iter().flatten() {
                keys.insert(
                    r["idempotency_key"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
        }
        let got = keys.len();
        peak = peak.max(rss_kib(pid));
        if got >= n || drain.elapsed() > Duration::from_secs(600) {
            let secs = drain.elapsed().as_secs_f64();
            println!(
                "drained {got} of {n} records in {secs:.2} s: {:.0} records/s; peak RSS while draining {:.1} MiB; {:.0} wire bytes per record (json)",
                got as f64 / secs,
                peak as f64 / 1024.0,
                bytes as f64 / got.max(1) as f64
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
