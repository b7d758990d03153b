//! Load benchmark of the real daemon binary over its real sockets (`cargo bench --bench load`):
//! memory, disk, ingest, query and restart figures at 10 k and at 1 M calls in the windows, next
//! to the `SQLite` table a call center would otherwise build, each figure printed beside its target.
//!
//! Not a test: it prints one figure per line and writes them as JSON to `target/bench-load.json`.
//! Knobs (environment): `CALLMETRICS_BENCH_CALLS` (calls of the large phase, default 1 000 000),
//! `CALLMETRICS_BENCH_SETTLE_SECS` (idle time before steady memory is read, default 65: one
//! minute-long scan gives memory back after a burst), `CALLMETRICS_BENCH_PEER=0` skips `SQLite`,
//! `CALLMETRICS_BENCH_KEEP_STORE=DIR` copies the large phase's store there
//! right after its `kill -9` (to study recovery), `CALLMETRICS_BENCH_CONFIG` is TOML added to
//! both daemons' config (to compare a setting against the default in one build).

#[path = "../../tests/support/mod.rs"]
mod support;

mod driver;
mod probe;
mod sqlite_peer;
mod workload;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use callmetrics::engine::DimKind;
use serde_json::{json, Value};

use support::{env_num, now_ms, Daemon};
use workload::{Call, Payload};

const HOUR: i64 = 3_600_000;

/// Figures, printed as they come and kept for the summary and the JSON file.
struct Report {
    lines: Vec<String>,
    json: serde_json::Map<String, Value>,
}

impl Report {
    fn section(&mut self, title: &str) {
        let l = format!("\n== {title}");
        println!("{l}");
        self.lines.push(l);
    }

    /// One figure; `target` is `Some((text, met))` where the issue sets one.
    fn figure(
        &mut self,
        key: &str,
        label: &str,
        value: f64,
        unit: &str,
        target: Option<(&str, bool)>,
    ) {
        let shown = if value.abs() >= 100.0 {
            format!("{value:.0}")
        } else if value.abs() >= 1.0 {
            format!("{value:.2}")
        } else {
            format!("{value:.3}")
        };
        let mut line = format!("{label:<62} {shown:>12} {unit}");
        let mut entry = json!({"value": value, "unit": unit});
        if let Some((text, met)) = target {
            let verdict = if met { "PASS" } else { "MISS" };
            line = format!("{line:<88} [{text}: {verdict}]");
            entry["target"] = text.into();
            entry["met"] = met.into();
        }
        println!("{line}");
        self.lines.push(line);
        self.json.insert(key.into(), entry);
    }

    fn note(&mut self, text: &str) {
        let l = format!("  note: {text}");
        println!("{l}");
        self.lines.push(l);
    }
}

/// Waits until no call is pending, then `secs` more (steady state after a burst).
fn settle(d: &Daemon, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while d.status()["engine"]["open_calls"].as_u64().unwrap_or(0) > 0 && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(secs));
}

/// Loads calls on `conns` connections in one framing; the figures of the phase.
fn load(d: &Daemon, calls: &[Call], conns: usize, msgpack: bool) -> (driver::Streamed, u64) {
    let loads: Vec<Payload> = workload::split(calls, conns)
        .into_iter()
        .map(|c| {
            if msgpack {
                workload::msgpack_batches(c, 100)
            } else {
                workload::json_lines(c)
            }
        })
        .collect();
    let written = probe::write_bytes(d.pid());
    let r = driver::stream(&d.events, &loads, msgpack);
    (r, probe::write_bytes(d.pid()) - written)
}

struct QueryFigures {
    queue_daemon_p50: f64,
    queue_daemon_p99: f64,
    queue_cli_p50: f64,
    agent_daemon_p50: f64,
    agent_daemon_p99: f64,
    agent_cli_p50: f64,
    queue_rows: usize,
    agent_rows: usize,
}

fn queries(rt: &tokio::runtime::Runtime, d: &Daemon) -> QueryFigures {
    let (q, queue_rows) = driver::query_times(rt, &d.control, "24h", DimKind::Queue, 200);
    let (a, agent_rows) = driver::query_times(rt, &d.control, "24h", DimKind::Agent, 200);
    let qc = driver::cli_times(&d.control, "24h", "queue", 30);
    let ac = driver::cli_times(&d.control, "24h", "agent", 30);
    QueryFigures {
        queue_daemon_p50: probe::pct(&q, 0.5),
        queue_daemon_p99: probe::pct(&q, 0.99),
        queue_cli_p50: probe::pct(&qc, 0.5),
        agent_daemon_p50: probe::pct(&a, 0.5),
        agent_daemon_p99: probe::pct(&a, 0.99),
        agent_cli_p50: probe::pct(&ac, 0.5),
        queue_rows,
        agent_rows,
    }
}

fn report_queries(rep: &mut Report, tag: &str, f: &QueryFigures) {
    rep.figure(
        &format!("{tag}_query_queue_daemon_p50_ms"),
        &format!(
            "metrics 24h by queue ({} rows), daemon round trip p50",
            f.queue_rows
        ),
        f.queue_daemon_p50,
        "ms",
        Some(("<= 2 ms", f.queue_daemon_p50 <= 2.0)),
    );
    rep.figure(
        &format!("{tag}_query_queue_daemon_p99_ms"),
        "  p99",
        f.queue_daemon_p99,
        "ms",
        None,
    );
    rep.figure(
        &format!("{tag}_query_queue_cli_p50_ms"),
        "metrics --json --window 24h, CLI process p50",
        f.queue_cli_p50,
        "ms",
        Some(("<= 5 ms", f.queue_cli_p50 <= 5.0)),
    );
    rep.figure(
        &format!("{tag}_query_agent_daemon_p50_ms"),
        &format!(
            "metrics 24h by agent ({} rows), daemon round trip p50",
            f.agent_rows
        ),
        f.agent_daemon_p50,
        "ms",
        Some(("<= 2 ms", f.agent_daemon_p50 <= 2.0)),
    );
    rep.figure(
        &format!("{tag}_query_agent_daemon_p99_ms"),
        "  p99",
        f.agent_daemon_p99,
        "ms",
        None,
    );
    rep.figure(
        &format!("{tag}_query_agent_cli_p50_ms"),
        "metrics --json --window 24h --by agent, CLI process p50",
        f.agent_cli_p50,
        "ms",
        Some(("<= 5 ms", f.agent_cli_p50 <= 5.0)),
    );
}

fn main() {
    let n = env_num("CALLMETRICS_BENCH_CALLS", 1_000_000) as usize;
    let settle_secs = env_num("CALLMETRICS_BENCH_SETTLE_SECS", 65);
    let peer = env_num("CALLMETRICS_BENCH_PEER", 1) != 0;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut rep = Report {
        lines: Vec::new(),
        json: serde_json::Map::new(),
    };
    let bench_start = Instant::now();
    let now = now_ms();
    // Calls leave their queue within the last 20 h, and complete (wrap-up) before now.
    let (from, until) = (now - 20 * HOUR, now - HOUR / 4);
    println!(
        "callmetrics load bench: {n} calls over the last 20 h, 100 queues, 500 agents, 3 channels, {} cores",
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    );
    rep.json.insert("calls".into(), n.into());
    let extra = std::env::var("CALLMETRICS_BENCH_CONFIG").unwrap_or_default();
    if !extra.is_empty() {
        println!("config added: {extra}");
    }

    // ---- 10 k calls: the reference for flat memory and query time.
    let small = workload::calls(1, "s", 10_000, from, until);
    rep.section("10 000 calls (fresh daemon, default config)");
    let mut d = Daemon::start(&extra);
    let (r, _) = load(&d, &small, 16, false);
    assert_eq!(r.refused, 0, "refused: {:?}", r.first_error);
    settle(&d, settle_secs);
    let rss_small = probe::rss_mib(d.pid());
    rep.figure("small_rss_mib", "RSS, steady", rss_small, "MiB", None);
    let q_small = queries(&rt, &d);
    report_queries(&mut rep, "small", &q_small);
    d.stop();

    // ---- the large load.
    rep.section(&format!("{n} calls (fresh daemon, default config)"));
    let big = workload::calls(2, "b", n, from, until);
    let events: usize = big.iter().map(Call::events).sum();
    let mut d = Daemon::start(&extra);
    let third = n / 3;
    let phases = [
        (
            "msgpack_1conn",
            "MessagePack batches of 100, 1 connection",
            &big[..third],
            1,
            true,
        ),
        (
            "json_16conn",
            "JSON lines, 16 connections",
            &big[third..2 * third],
            16,
            false,
        ),
        (
            "msgpack_16conn",
            "MessagePack batches of 100, 16 connections",
            &big[2 * third..],
            16,
            true,
        ),
    ];
    let cpu0 = probe::cpu_secs(d.pid());
    let mut written_total = 0u64;
    let mut acked_total = 0usize;
    for (key, label, calls, conns, msgpack) in phases {
        let (r, written) = load(&d, calls, conns, msgpack);
        if let Some(e) = &r.first_error {
            rep.note(&format!("{key}: {} refused, first: {e}", r.refused));
        }
        let rate = r.rate();
        rep.figure(
            &format!("{key}_eps"),
            &format!("ingest, {label}"),
            rate,
            "events/s",
            (conns == 16 || msgpack).then_some((">= 300 000", rate >= 300_000.0)),
        );
        rep.figure(
            &format!("{key}_written_per_event"),
            "  bytes written to disk per event",
            written as f64 / r.events as f64,
            "B",
            None,
        );
        written_total += written;
        acked_total += r.events - r.refused;
    }
    let cpu = probe::cpu_secs(d.pid()) - cpu0;
    rep.figure(
        "ingest_cpu_us_per_event",
        "daemon CPU per event, all phases",
        cpu * 1e6 / acked_total as f64,
        "µs",
        None,
    );
    let per_event = written_total as f64 / acked_total as f64;
    rep.figure(
        "written_per_event",
        "bytes written to disk per event, all phases",
        per_event,
        "B",
        Some(("<= 256", per_event <= 256.0)),
    );
    let peak = probe::peak_rss_mib(d.pid());
    rep.figure(
        "peak_rss_mib",
        "peak RSS during the load (VmHWM)",
        peak,
        "MiB",
        Some(("<= 64 MiB", peak <= 64.0)),
    );
    settle(&d, settle_secs);
    // What follows a burst: the last checkpoint, the intervals closed into the history and, once
    // events have paused, the store's compaction.
    let settle_peak = probe::peak_rss_mib(d.pid());
    rep.figure(
        "settle_peak_rss_mib",
        "peak RSS to the end of the settle (VmHWM)",
        settle_peak,
        "MiB",
        Some(("<= 64 MiB", settle_peak <= 64.0)),
    );
    let st = d.status();
    let offered = driver::offered_24h(&rt, &d.control);
    rep.note(&format!(
        "{offered} segments offered in the last 24 h, {events} events"
    ));
    let rss = probe::rss_mib(d.pid());
    rep.figure(
        "rss_mib",
        "RSS, steady",
        rss,
        "MiB",
        Some(("<= 48 MiB", rss <= 48.0)),
    );
    let ratio = rss / rss_small;
    rep.figure(
        "rss_ratio",
        "RSS at 1 M calls / RSS at 10 k calls",
        ratio,
        "x",
        Some(("<= 1.5", ratio <= 1.5)),
    );
    let state = &st["engine"]["state"];
    rep.note(&format!("engine state: {state}"));
    let store_dir = d.dir.path().join("store");
    let store = support::dir_bytes(&store_dir) as f64 / 1_048_576.0;
    rep.figure(
        "store_mib",
        "store on disk",
        store,
        "MiB",
        Some(("<= 128 MiB", store <= 128.0)),
    );

    let q_big = queries(&rt, &d);
    report_queries(&mut rep, "big", &q_big);
    for (key, a, b) in [
        (
            "query_queue_growth",
            q_big.queue_daemon_p50,
            q_small.queue_daemon_p50,
        ),
        (
            "query_agent_growth",
            q_big.agent_daemon_p50,
            q_small.agent_daemon_p50,
        ),
    ] {
        let g = a / b;
        rep.figure(
            key,
            "  query time at 1 M / at 10 k calls",
            g,
            "x",
            Some(("<= 2", g <= 2.0)),
        );
    }

    // Acknowledgement latency at a steady 5 000 events/s of real-time calls.
    let live = workload::calls(3, "live", 12_500, now_ms() - 60_000, now_ms());
    let lines: Vec<Vec<u8>> = {
        let p = workload::json_lines(&live);
        p.bytes
            .split_inclusive(|b| *b == b'\n')
            .map(<[u8]>::to_vec)
            .collect()
    };
    let lat = driver::paced(&d.events, &lines[..lines.len().min(50_000)], 5_000);
    let p99 = probe::pct(&lat, 0.99);
    rep.figure(
        "ack_p50_ms",
        "ack latency at 5 000 events/s, p50",
        probe::pct(&lat, 0.5),
        "ms",
        None,
    );
    rep.figure(
        "ack_p99_ms",
        "  p99",
        p99,
        "ms",
        Some(("<= 10 ms", p99 <= 10.0)),
    );

    // Restart after kill -9, with a log to replay.
    let extra = workload::calls(4, "k", 25_000, from, until);
    let (r, _) = load(&d, &extra, 4, false);
    assert_eq!(r.refused, 0, "refused: {:?}", r.first_error);
    let before = driver::offered_24h(&rt, &d.control);
    d.kill();
    if let Some(keep) = std::env::var_os("CALLMETRICS_BENCH_KEEP_STORE") {
        copy_dir(&store_dir, Path::new(&keep));
        rep.note(&format!(
            "store after kill -9 kept in {}",
            Path::new(&keep).display()
        ));
    }
    let t = Instant::now();
    d.restart();
    let ready = t.elapsed().as_secs_f64();
    rep.figure(
        "kill_restart_ready_s",
        "restart to ready after kill -9",
        ready,
        "s",
        Some(("<= 1 s", ready <= 1.0)),
    );
    let to_ready = probe::peak_rss_mib(d.pid());
    rep.figure(
        "recovery_peak_rss_to_ready_mib",
        "  peak RSS of the restarted daemon up to ready",
        to_ready,
        "MiB",
        None,
    );
    let after = driver::offered_24h(&rt, &d.control);
    rep.figure(
        "kill_offered_delta",
        "  offered (24 h) after minus before",
        after as f64 - before as f64,
        "calls",
        Some(("0", after == before)),
    );
    // At ready, RSS still counts what recovery freed and the allocator gives back within its
    // one-second decay; both readings are shown, the settled one is held to the steady bound.
    let rss_at_ready = probe::rss_mib(d.pid());
    rep.figure(
        "recovery_rss_at_ready_mib",
        "  RSS at ready",
        rss_at_ready,
        "MiB",
        None,
    );
    std::thread::sleep(Duration::from_secs(5));
    // The replayed log is checkpointed by the committer just after ready: its peak counts too.
    let during = probe::peak_rss_mib(d.pid());
    rep.figure(
        "recovery_peak_rss_mib",
        "  peak RSS of the restarted daemon, to 5 s after ready",
        during,
        "MiB",
        Some(("<= 64 MiB", during <= 64.0)),
    );
    let rss_after = probe::rss_mib(d.pid());
    rep.figure(
        "recovery_rss_mib",
        "  RSS 5 s after ready",
        rss_after,
        "MiB",
        Some(("<= 48 MiB", rss_after <= 48.0)),
    );

    // Retention: calls that already left the longest window cost no lasting room.
    rep.section("calls older than every window (26 h), then retention");
    let store_before = support::dir_bytes(&store_dir) as f64 / 1_048_576.0;
    let old = workload::calls(5, "old", n / 4, now - 46 * HOUR, now - 26 * HOUR);
    let (r, _) = load(&d, &old, 16, false);
    assert_eq!(r.refused, 0, "refused: {:?}", r.first_error);
    let out = d.query(&["flush"]);
    assert!(
        out.status.success(),
        "flush: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A store that is mostly garbage is compacted once events have paused for 10 s.
    std::thread::sleep(Duration::from_secs(15));
    let store_after = support::dir_bytes(&store_dir) as f64 / 1_048_576.0;
    rep.figure(
        "store_before_old_mib",
        "store on disk before",
        store_before,
        "MiB",
        None,
    );
    rep.figure(
        "store_after_old_mib",
        &format!("store on disk after {} such calls and a checkpoint", n / 4),
        store_after,
        "MiB",
        Some(("no growth beyond 10 %", store_after <= store_before * 1.1)),
    );
    d.stop();

    // ---- the peer a call center would otherwise build.
    if peer {
        rep.section("SQLite peer (WAL, synchronous=FULL, 256 events per transaction)");
        let dir = tempfile::tempdir().expect("tempdir");
        let calls: Vec<sqlite_peer::PeerCall<'_>> = big
            .iter()
            .map(|c| sqlite_peer::PeerCall {
                call_id: &c.id,
                queue: &c.queue,
                channel: c.channel,
                agent: c.agent.as_deref(),
                start_ms: c.start,
                answer_ms: c.answer,
                end_ms: c.end,
                wrapup_ms: c.wrapup,
            })
            .collect();
        let ing = sqlite_peer::ingest(dir.path(), &calls).expect("SQLite ingest");
        let peer_rate = ing.events as f64 / ing.seconds;
        rep.figure(
            "peer_ingest_eps",
            "SQLite ingest",
            peer_rate,
            "events/s",
            None,
        );
        rep.figure(
            "peer_written_per_event",
            "  bytes written per event",
            ing.bytes_written as f64 / ing.events as f64,
            "B",
            None,
        );
        rep.figure(
            "peer_db_mib",
            "  database and WAL on disk",
            ing.db_bytes as f64 / 1_048_576.0,
            "MiB",
            None,
        );
        let (times, rows) = sqlite_peer::query(dir.path(), now, 5).expect("SQLite query");
        if let Err(e) = sqlite_peer::check_against(&calls, now, &rows) {
            rep.note(&format!(
                "the SQLite query disagrees with the direct computation: {e}"
            ));
        }
        let mut times = times;
        times.sort_by(f64::total_cmp);
        let peer_query = probe::pct(&times, 0.5);
        rep.figure(
            "peer_query_ms",
            "SQLite per-queue query over 24 h, median",
            peer_query,
            "ms",
            None,
        );
        let best16 = rep.json["json_16conn_eps"]["value"].as_f64().unwrap_or(0.0);
        let ingest_ratio = best16 / peer_rate;
        rep.figure(
            "ratio_ingest_to_peer",
            "ingest (JSON, 16 connections) / SQLite ingest",
            ingest_ratio,
            "x",
            Some((">= 2", ingest_ratio >= 2.0)),
        );
        let query_ratio = peer_query / q_big.queue_daemon_p50;
        rep.figure(
            "ratio_query_to_peer",
            "SQLite query time / daemon query time (24 h by queue)",
            query_ratio,
            "x",
            Some((">= 100", query_ratio >= 100.0)),
        );
    }

    rep.figure(
        "bench_wall_s",
        "bench wall time",
        bench_start.elapsed().as_secs_f64(),
        "s",
        None,
    );
    println!("\n===== summary =====");
    for l in &rep.lines {
        println!("{l}");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
        PathBuf::from,
    );
    let out = target.join("bench-load.json");
    let text = serde_json::to_string_pretty(&Value::Object(rep.json)).expect("encode the report");
    match std::fs::write(&out, text + "\n") {
        Ok(()) => println!("\nwritten {}", out.display()),
        Err(e) => eprintln!("cannot write {}: {e}", out.display()),
    }
}

/// Copies a folder tree (the stopped daemon's store) to `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy's folder");
    for entry in std::fs::read_dir(from).expect("read the store folder") {
        let entry = entry.expect("read the store folder");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a store file");
        }
    }
}
