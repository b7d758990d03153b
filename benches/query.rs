//! Query benchmark (`cargo bench --bench query`): where the time of a `metrics` answer goes, in
//! process and on one thread, at 10 k and at 1 M calls in the windows: the engine computing the
//! rows, the daemon encoding them for the control socket, the CLI decoding them and printing
//! them as JSON. First it reports how fast the engine took the calls in (events applied, folded
//! into the buckets and settled, per second of one thread): the committer runs this part alone,
//! so it bounds the daemon's ingest. Same workload as the load bench (100 queues, 500 agents, 3 channels, complete
//! calls over the last 20 h, default config).
//!
//! Knobs (environment): `CALLMETRICS_BENCH_CALLS` (the large case, default 1 000 000),
//! `CALLMETRICS_BENCH_QUERY_RUNS` (timed runs per step, default 50).

use std::hint::black_box;
use std::time::Instant;

use callmetrics::config::Config;
use callmetrics::control::protocol::{read_message, write_message, Response};
use callmetrics::engine::{DimKind, Engine, MetricsQuery, MetricsRow};
use callmetrics::event::{Event, EventKind};

const HOUR: i64 = 3_600_000;
/// 2026-11-22T00:00:00Z.
const T0: i64 = 1_795_305_600_000;

/// Feeds `n` calls in groups of 4 000 events, as the committer does; returns the events fed.
fn feed(e: &mut Engine, n: usize, now: i64) -> usize {
    let mut events = 0;
    let mut rng = fastrand::Rng::with_seed(11);
    let mut group: Vec<Event> = Vec::new();
    for i in 0..n {
        let id = format!("c-{i}");
        let leave = now - HOUR / 2 - rng.i64(0..20 * HOUR);
        let start = leave - rng.i64(0..60_000);
        let mut s = Event::new(EventKind::Start, &id, start);
        s.queue = Some(format!("q{}", rng.u32(0..100)));
        s.channel = Some(["voice", "chat", "email"][rng.usize(0..3)].to_string());
        group.push(s);
        if rng.u8(0..100) < 85 {
            let mut a = Event::new(EventKind::Answer, &id, leave);
            a.agent = Some(format!("a{}", rng.u32(0..500)));
            group.push(a);
            let end = leave + rng.i64(30_000..600_000);
            group.push(Event::new(EventKind::End, &id, end));
            group.push(Event::new(EventKind::Wrapup, &id, end + rng.i64(0..60_000)));
        } else {
            group.push(Event::new(EventKind::End, &id, leave));
        }
        if group.len() >= 4000 || i + 1 == n {
            events += group.len();
            let refs: Vec<&Event> = group.iter().collect();
            e.apply_group(&refs, now);
            group.clear();
            e.advance(now);
        }
    }
    e.advance(now + 61_000);
    events
}

/// Median of `runs` timings of `f`, in ms.
fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn steps(rt: &tokio::runtime::Runtime, e: &Engine, now: i64, by: DimKind, runs: usize) -> [f64; 5] {
    let q = MetricsQuery {
        window: Some("24h".into()),
        by,
        key: None,
    };
    let rows = e.metrics_with(&q, now, false).expect("query");
    let response = Response::Metrics(rows);
    let mut wire = Vec::new();
    rt.block_on(write_message(&mut wire, &response))
        .expect("encode");
    let compute = median_ms(runs, || {
        black_box(e.metrics_with(&q, now, false).expect("query"));
    });
    let encode = median_ms(runs, || {
        let mut buf = Vec::new();
        rt.block_on(write_message(&mut buf, &response))
            .expect("encode");
        black_box(buf);
    });
    let decode = median_ms(runs, || {
        let back: Response = rt
            .block_on(read_message(&mut wire.as_slice()))
            .expect("decode");
        black_box(back);
    });
    let Response::Metrics(rows) = &response else {
        unreachable!("built above")
    };
    let print = median_ms(runs, || {
        let json: Vec<_> = rows.iter().map(MetricsRow::json_view).collect();
        black_box(serde_json::to_vec_pretty(&json).expect("json"));
    });
    [compute, encode, decode, print, wire.len() as f64 / 1024.0]
}

fn main() {
    let big: usize = std::env::var("CALLMETRICS_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let runs: usize = std::env::var("CALLMETRICS_BENCH_QUERY_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    println!("median ms per step, 24h window; wire = MessagePack answer size");
    println!(
        "{:>9} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "calls", "by", "compute", "encode", "decode", "json", "wire KiB"
    );
    for n in [10_000, big] {
        let mut e = Engine::new(&Config::default());
        let now = T0 + 30 * HOUR;
        let started = Instant::now();
        let events = feed(&mut e, n, now);
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{n:>9} calls: engine apply {:.0} events/s ({events} events in {secs:.2} s)",
            events as f64 / secs
        );
        let now = now + 61_000;
        for by in [DimKind::Queue, DimKind::Agent] {
            let [c, en, d, p, kib] = steps(&rt, &e, now, by, runs);
            println!(
                "{n:>9} {:>6} {c:>9.3} {en:>9.3} {d:>9.3} {p:>9.3} {kib:>9.1}",
                by.name()
            );
        }
    }
}
