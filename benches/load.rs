//! Load benchmark of the real daemon binary over its real Unix sockets (`cargo bench --bench load`).
//!
//! Not a test: it prints one figure per line, each next to its target, and writes the same figures
//! as JSON to `target/bench-load.json`. Knobs (environment, or the first numeric argument):
//! `CALLMETRICS_BENCH_CALLS` (complete calls for the ingest phases, default 1 000 000; each call is
//! `start`, `answer`, `end`, `wrapup`) and `CALLMETRICS_BENCH_IDLE_SECS` (idle CPU window, default 60).
//!
//! Every daemon it starts is killed when its guard drops, also on panic. Only Unix sockets are used.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Barrier};
use std::time::{Duration, Instant};

use callmetrics::control::client::request;
use callmetrics::control::protocol::{Request, Response, StatusReport};
use callmetrics::engine::{DimKind, MetricsQuery};
use callmetrics::event::{Event, EventKind};
use callmetrics::store::Store;
use serde::Serialize;
use serde_json::{json, Value};

const DAEMON: &str = env!("CARGO_BIN_EXE_callmetrics");
const QUEUES: u64 = 100;
const AGENTS: u64 = 500;
const SPREAD_MS: i64 = 23 * 3_600_000;
const MSGPACK_BATCH: usize = 100;
const RAW_GROUP: usize = 256;
/// Longest a socket read or write may block before the bench gives up on it.
const IO_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// Report

struct Report {
    lines: Vec<String>,
    json: serde_json::Map<String, Value>,
}

impl Report {
    fn new() -> Report {
        Report {
            lines: Vec::new(),
            json: serde_json::Map::new(),
        }
    }

    /// Records one figure: printed at once (progress stays visible) and kept for the summary and JSON.
    fn figure(&mut self, key: &str, label: &str, value: f64, unit: &str, target: &str) {
        let shown = if value.abs() >= 100.0 || value == value.trunc() {
            format!("{value:.0}")
        } else if value.abs() >= 1.0 {
            format!("{value:.2}")
        } else {
            format!("{value:.4}")
        };
        let mut line = format!("{label:<58} {shown:>12} {unit}");
        if !target.is_empty() {
            line = format!("{line:<86} [{target}]");
        }
        println!("{line}");
        self.lines.push(line);
        let mut entry = json!({"value": value, "unit": unit});
        if !target.is_empty() {
            entry["target"] = target.into();
        }
        self.json.insert(key.to_string(), entry);
    }

    fn note(&mut self, key: &str, text: &str) {
        let text = match text.char_indices().nth(240) {
            Some((i, _)) => format!("{}...", &text[..i]),
            None => text.to_string(),
        };
        let text = text.as_str();
        println!("  note: {text}");
        self.lines.push(format!("  note: {text}"));
        self.json.insert(key.to_string(), text.into());
    }

    fn section(&mut self, title: &str) {
        println!("\n== {title}");
        self.lines.push(format!("\n== {title}"));
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

// ---------------------------------------------------------------------------------------------
// Workload

/// splitmix64: small, fast, deterministic; good enough to spread queues, agents and times.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// The four events of one complete, answered call; the wrap-up lies in the last 23 hours.
fn call_events(rng: &mut Rng, call_id: &str, now: i64) -> [Event; 4] {
    let wrapup = now - rng.below(SPREAD_MS as u64) as i64;
    let acw = rng.below(60_000) as i64;
    let talk = 30_000 + rng.below(570_000) as i64;
    let wait = rng.below(60_000) as i64;
    let end = wrapup - acw;
    let answer = end - talk;
    let start = answer - wait;
    let mut s = Event::new(EventKind::Start, call_id, start);
    s.queue = Some(format!("q{}", rng.below(QUEUES)));
    let mut a = Event::new(EventKind::Answer, call_id, answer);
    a.agent = Some(format!("a{}", rng.below(AGENTS)));
    [
        s,
        a,
        Event::new(EventKind::End, call_id, end),
        Event::new(EventKind::Wrapup, call_id, wrapup),
    ]
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    Json,
    MsgPack,
}

/// What one connection sends: the bytes, the replies owed for them and the events they carry.
struct Payload {
    bytes: Vec<u8>,
    replies: usize,
    events: usize,
}

fn json_payload(seed: u64, prefix: &str, calls: usize, now: i64) -> Payload {
    let mut rng = Rng(seed);
    let mut bytes = Vec::with_capacity(calls * 4 * 90);
    for k in 0..calls {
        for ev in call_events(&mut rng, &format!("{prefix}-{k}"), now) {
            serde_json::to_writer(&mut bytes, &ev.to_json()).expect("encode JSON");
            bytes.push(b'\n');
        }
    }
    Payload {
        bytes,
        replies: calls * 4,
        events: calls * 4,
    }
}

fn msgpack_payload(seed: u64, prefix: &str, calls: usize, now: i64) -> Payload {
    let mut rng = Rng(seed);
    let mut events = Vec::with_capacity(calls * 4);
    for k in 0..calls {
        events.extend(call_events(&mut rng, &format!("{prefix}-{k}"), now).map(|e| e.to_json()));
    }
    let mut bytes = Vec::with_capacity(calls * 4 * 70);
    let mut replies = 0;
    for chunk in events.chunks(MSGPACK_BATCH) {
        let body = rmp_serde::to_vec_named(&Value::Array(chunk.to_vec())).expect("encode frame");
        bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&body);
        replies += 1;
    }
    Payload {
        bytes,
        replies,
        events: calls * 4,
    }
}

/// Payloads for `conns` connections sharing `calls` calls, built on every core.
fn payloads(framing: Framing, phase: &str, calls: usize, conns: usize) -> Vec<Payload> {
    let now = now_ms();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..conns)
            .map(|c| {
                let share = calls / conns + usize::from(c < calls % conns);
                let prefix = format!("{phase}{c}");
                let seed = 0x5EED ^ ((c as u64 + 1) << 20) ^ phase.len() as u64;
                s.spawn(move || match framing {
                    Framing::Json => json_payload(seed, &prefix, share, now),
                    Framing::MsgPack => msgpack_payload(seed, &prefix, share, now),
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("payload thread"))
            .collect()
    })
}

// ---------------------------------------------------------------------------------------------
// /proc

fn proc_field(path: &str, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

fn rss_kib(pid: u32) -> u64 {
    proc_field(&format!("/proc/{pid}/status"), "VmRSS").unwrap_or(0)
}

fn hwm_kib(pid: u32) -> u64 {
    proc_field(&format!("/proc/{pid}/status"), "VmHWM").unwrap_or(0)
}

fn write_bytes(pid: u32) -> u64 {
    proc_field(&format!("/proc/{pid}/io"), "write_bytes").unwrap_or(0)
}

fn write_bytes_self() -> u64 {
    proc_field("/proc/self/io", "write_bytes").unwrap_or(0)
}

/// CPU ticks of each thread of a process, summed by thread name.
fn thread_ticks(pid: u32) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        *out.entry(stat[open + 1..close].to_string()).or_insert(0) += get(11) + get(12);
    }
    out
}

/// The daemon's busiest threads (by name) between two `thread_ticks` samples, in % of one core.
fn thread_split(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    secs: f64,
    hz: f64,
) -> String {
    let mut v: Vec<(f64, &String)> = after
        .iter()
        .map(|(name, t)| {
            let d = t.saturating_sub(before.get(name).copied().unwrap_or(0));
            (d as f64 / hz / secs * 100.0, name)
        })
        .filter(|(p, _)| *p >= 0.5)
        .collect();
    v.sort_by(|a, b| b.0.total_cmp(&a.0));
    v.iter()
        .map(|(p, n)| format!("{n} {p:.0}%"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: &str) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the parenthesised command: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// Context switches of all threads of a process: each one is a wake-up.
fn ctx_switches(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.flatten()
        .map(|t| {
            let p = t.path().join("status");
            let p = p.to_string_lossy();
            proc_field(&p, "voluntary_ctxt_switches").unwrap_or(0)
                + proc_field(&p, "nonvoluntary_ctxt_switches").unwrap_or(0)
        })
        .sum()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Busy ticks of the whole machine (all cores), from the first line of /proc/stat.
fn machine_busy_ticks() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0;
    };
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal: everything but idle and iowait.
    [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| f.get(i).copied().unwrap_or(0))
        .sum()
}

/// CPU over a stretch of wall time, in % of one core.
struct Cpu {
    daemon: f64,
    bench: f64,
    /// Every other process on the machine (compilers, tests...): noise in the figures.
    others: f64,
}

/// Measures the CPU of the daemon, of this bench and of everything else.
struct CpuMeter {
    pid: String,
    daemon: u64,
    client: u64,
    machine: u64,
    at: Instant,
}

impl CpuMeter {
    fn start(pid: u32) -> CpuMeter {
        let pid = pid.to_string();
        CpuMeter {
            daemon: cpu_ticks(&pid),
            client: cpu_ticks("self"),
            machine: machine_busy_ticks(),
            pid,
            at: Instant::now(),
        }
    }

    fn stop(&self, hz: f64) -> Cpu {
        let secs = self.at.elapsed().as_secs_f64();
        let pct = |ticks: u64| ticks as f64 / hz / secs * 100.0;
        let daemon = cpu_ticks(&self.pid).saturating_sub(self.daemon);
        let bench = cpu_ticks("self").saturating_sub(self.client);
        let machine = machine_busy_ticks().saturating_sub(self.machine);
        Cpu {
            daemon: pct(daemon),
            bench: pct(bench),
            others: pct(machine.saturating_sub(daemon + bench)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The daemon

/// `store.max_bytes` for the bench daemon: the 1 GiB default fills at about 3.9 M events.
const STORE_MAX_BYTES: u64 = 16 << 30;

struct Paths {
    config: PathBuf,
    events: PathBuf,
    control: PathBuf,
    store: PathBuf,
    log: PathBuf,
}

impl Paths {
    fn new(dir: &Path) -> Paths {
        let p = Paths {
            config: dir.join("agent.toml"),
            events: dir.join("events.sock"),
            control: dir.join("control.sock"),
            store: dir.join("store"),
            log: dir.join("daemon.log"),
        };
        let toml = format!(
            "[ingest]\nsocket = {:?}\n\n[control]\nsocket = {:?}\n\n[store]\npath = {:?}\n\
             max_bytes = {STORE_MAX_BYTES}\n\n\
             [limits]\nmax_open_segments = 2000000\nmax_connections = 256\n",
            p.events.display().to_string(),
            p.control.display().to_string(),
            p.store.display().to_string(),
        );
        std::fs::write(&p.config, toml).expect("write config");
        p
    }
}

/// A running daemon; killed (SIGKILL) and reaped when dropped, also while unwinding from a panic.
struct Daemon {
    child: Option<Child>,
    pid: u32,
    spawned: Instant,
}

impl Daemon {
    fn spawn(paths: &Paths) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&paths.log)
            .expect("open daemon log");
        let spawned = Instant::now();
        let child = Command::new(DAEMON)
            .arg("run")
            .arg("--config")
            .arg(&paths.config)
            .args(["--log-level", "info"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start the daemon binary");
        Daemon {
            pid: child.id(),
            child: Some(child),
            spawned,
        }
    }

    /// Waits until the control socket answers `Status`; returns the time since spawn.
    fn wait_ready(&mut self, rt: &tokio::runtime::Runtime, paths: &Paths) -> Duration {
        let deadline = self.spawned + Duration::from_secs(120);
        loop {
            if let Ok(Response::Status(_)) = rt.block_on(request(&paths.control, &Request::Status))
            {
                return self.spawned.elapsed();
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "the daemon exited ({status}) before it was ready:\n{}",
                    tail_log(&paths.log)
                );
            }
            assert!(
                Instant::now() < deadline,
                "the daemon was not ready within 120 s:\n{}",
                tail_log(&paths.log)
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// SIGTERM, then waits for the exit; returns how long the stop took.
    fn terminate(mut self) -> Duration {
        let t = Instant::now();
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -TERM {} failed", self.pid);
        let mut child = self.child.take().expect("child");
        let deadline = t + Duration::from_secs(120);
        loop {
            if let Some(status) = child.try_wait().expect("wait for the daemon") {
                assert!(status.success(), "the daemon stopped with {status}");
                return t.elapsed();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the daemon did not stop within 120 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// SIGKILL and reap.
    fn kill(mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL the daemon");
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn tail_log(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// `replayed_events=N` from the daemon's last start-up line.
fn last_replayed(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("replayed_events="))?;
    let rest = &line[line.find("replayed_events=")? + "replayed_events=".len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn status(rt: &tokio::runtime::Runtime, paths: &Paths) -> StatusReport {
    match rt.block_on(request(&paths.control, &Request::Status)) {
        Ok(Response::Status(s)) => *s,
        other => panic!("status request failed: {other:?}"),
    }
}

fn metrics_query(window: &str, by: DimKind) -> Request {
    Request::Metrics(MetricsQuery {
        window: Some(window.to_string()),
        by,
        key: None,
    })
}

/// Calls offered in the 24h window, all queues together.
fn offered_24h(rt: &tokio::runtime::Runtime, paths: &Paths) -> u64 {
    match rt.block_on(request(&paths.control, &metrics_query("24h", DimKind::All))) {
        Ok(Response::Metrics(rows)) => rows.iter().map(|r| r.counts.offered).sum(),
        other => panic!("metrics request failed: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Phases

struct StreamResult {
    acked: u64,
    errors: u64,
    first_error: Option<String>,
    wall: Duration,
    cpu: Cpu,
    /// The daemon's CPU by thread name.
    threads: String,
    written: u64,
}

impl StreamResult {
    fn rate(&self) -> f64 {
        self.acked as f64 / self.wall.as_secs_f64()
    }
}

/// Replies read: (acknowledged events, refusals, first refusal, replies).
type Replies = (u64, u64, Option<String>, usize);

/// Reads JSON-line replies until end of stream.
fn read_json_replies(stream: UnixStream) -> Replies {
    let mut r = BufReader::with_capacity(64 * 1024, stream);
    let (mut ok, mut bad, mut first, mut n) = (0, 0, None, 0);
    let mut line = Vec::with_capacity(128);
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                first.get_or_insert_with(|| format!("reading replies: {e}"));
                bad += 1;
                break;
            }
        }
        n += 1;
        if line.strip_suffix(b"\n").unwrap_or(&line) == br#"{"ok":true}"# {
            ok += 1;
        } else {
            bad += 1;
            first.get_or_insert_with(|| String::from_utf8_lossy(&line).trim().to_string());
        }
    }
    (ok, bad, first, n)
}

/// Reads MessagePack batch replies until end of stream, counting `accepted` events.
fn read_msgpack_replies(stream: UnixStream) -> Replies {
    let mut r = BufReader::with_capacity(64 * 1024, stream);
    let (mut ok, mut bad, mut first, mut n) = (0, 0, None, 0);
    let mut body = Vec::new();
    loop {
        let mut len = [0u8; 4];
        match r.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => {
                first.get_or_insert_with(|| format!("reading replies: {e}"));
                bad += 1;
                break;
            }
        }
        body.resize(u32::from_be_bytes(len) as usize, 0);
        if let Err(e) = r.read_exact(&mut body) {
            first.get_or_insert_with(|| format!("reading a reply: {e}"));
            bad += 1;
            break;
        }
        n += 1;
        let reply: Value = rmp_serde::from_slice(&body).unwrap_or(Value::Null);
        ok += reply["accepted"].as_u64().unwrap_or(0);
        if reply["ok"] != Value::Bool(true) {
            bad += 1;
            first.get_or_insert_with(|| reply.to_string());
        }
    }
    (ok, bad, first, n)
}

/// Streams every payload on its own connection (a writer and a reader thread each), all at once.
fn stream_phase(
    daemon: &Daemon,
    paths: &Paths,
    framing: Framing,
    loads: &[Payload],
    hz: f64,
) -> StreamResult {
    let barrier = Barrier::new(loads.len() * 2 + 1);
    let streams: Vec<UnixStream> = loads
        .iter()
        .map(|_| {
            let s = UnixStream::connect(&paths.events).expect("connect to the event socket");
            s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
            s.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
            s
        })
        .collect();
    let written_before = write_bytes(daemon.pid);
    let (wall, results, cpu) = std::thread::scope(|s| {
        let mut readers = Vec::new();
        for (load, stream) in loads.iter().zip(&streams) {
            let mut w = stream.try_clone().expect("clone socket");
            let r = stream.try_clone().expect("clone socket");
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                for chunk in load.bytes.chunks(256 * 1024) {
                    w.write_all(chunk).expect("write events");
                }
                // End of input: the daemon answers the rest and then closes.
                w.shutdown(std::net::Shutdown::Write).expect("shutdown");
            });
            readers.push(s.spawn(move || {
                barrier.wait();
                let out = match framing {
                    Framing::Json => read_json_replies(r),
                    Framing::MsgPack => read_msgpack_replies(r),
                };
                (out, Instant::now())
            }));
        }
        barrier.wait();
        let start = Instant::now();
        let cpu = CpuMeter::start(daemon.pid);
        let threads = thread_ticks(daemon.pid);
        let results: Vec<_> = readers
            .into_iter()
            .map(|h| h.join().expect("reader"))
            .collect();
        let end = results.iter().map(|(_, t)| *t).max().unwrap_or(start);
        let secs = cpu.at.elapsed().as_secs_f64();
        let threads = thread_split(&threads, &thread_ticks(daemon.pid), secs, hz);
        (end - start, results, (cpu.stop(hz), threads))
    });
    let mut out = StreamResult {
        acked: 0,
        errors: 0,
        first_error: None,
        wall,
        cpu: cpu.0,
        threads: cpu.1,
        written: write_bytes(daemon.pid) - written_before,
    };
    let mut replies = 0;
    for ((ok, bad, first, n), _) in results {
        replies += n;
        out.acked += ok;
        out.errors += bad;
        if out.first_error.is_none() {
            out.first_error = first;
        }
    }
    let sent: usize = loads.iter().map(|l| l.events).sum();
    let owed: usize = loads.iter().map(|l| l.replies).sum();
    if out.acked != sent as u64 || out.errors > 0 || replies != owed {
        eprintln!(
            "warning: {} of {sent} events acknowledged, {replies} of {owed} replies, {} refusals; first: {:?}",
            out.acked, out.errors, out.first_error
        );
    }
    out
}

/// One connection at a fixed event rate: per-line latency from write to reply, sorted, in ms.
fn paced_phase(paths: &Paths, rate: u64, secs: u64) -> (Vec<f64>, Duration) {
    let total = (rate * secs) as usize;
    let calls = total.div_ceil(4);
    let now = now_ms();
    let mut rng = Rng(0xACC);
    let lines: Vec<Vec<u8>> = (0..calls)
        .flat_map(|k| call_events(&mut rng, &format!("lat-{k}"), now))
        .map(|ev| {
            let mut b = serde_json::to_vec(&ev.to_json()).expect("encode");
            b.push(b'\n');
            b
        })
        .collect();
    let stream = UnixStream::connect(&paths.events).expect("connect to the event socket");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let mut w = stream.try_clone().expect("clone socket");
    let (tx, rx) = mpsc::channel::<Instant>();
    let step = Duration::from_nanos(1_000_000_000 / rate);
    let start = Instant::now();
    std::thread::scope(|s| {
        let lines = &lines;
        s.spawn(move || {
            for (i, line) in lines.iter().enumerate() {
                let due = start + step * i as u32;
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                tx.send(Instant::now()).expect("latency channel");
                w.write_all(line).expect("write event");
            }
            w.shutdown(std::net::Shutdown::Write).expect("shutdown");
        });
        let reader = s.spawn(move || {
            let mut r = BufReader::new(stream);
            let mut lat = Vec::with_capacity(lines.len());
            let mut line = Vec::new();
            while let Ok(sent) = rx.recv() {
                line.clear();
                match r.read_until(b'\n', &mut line) {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
                let ms = sent.elapsed().as_secs_f64() * 1000.0;
                assert_eq!(line.as_slice(), b"{\"ok\":true}\n", "paced reply");
                lat.push(ms);
            }
            lat
        });
        let mut lat = reader.join().expect("reader");
        lat.sort_by(f64::total_cmp);
        (lat, start.elapsed())
    })
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// `n` metrics requests by queue over `window`: sorted latencies (ms) and the rows of the last answer.
fn metrics_phase(
    rt: &tokio::runtime::Runtime,
    paths: &Paths,
    window: &str,
    n: usize,
) -> (Vec<f64>, usize) {
    let req = metrics_query(window, DimKind::Queue);
    let mut lat = Vec::with_capacity(n);
    let mut rows = 0;
    for _ in 0..n {
        let t = Instant::now();
        let resp = rt.block_on(request(&paths.control, &req));
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        match resp {
            Ok(Response::Metrics(r)) => rows = r.len(),
            other => panic!("metrics request failed: {other:?}"),
        }
    }
    lat.sort_by(f64::total_cmp);
    (lat, rows)
}

/// An accepted event as the daemon logs it.
#[derive(Serialize)]
struct StoredEvent {
    rx_ms: i64,
    event: Event,
}

fn raw_group(rng: &mut Rng, next_call: &mut usize, now: i64) -> Vec<StoredEvent> {
    let mut group = Vec::with_capacity(RAW_GROUP);
    while group.len() < RAW_GROUP {
        let id = format!("raw-{next_call}");
        *next_call += 1;
        for event in call_events(rng, &id, now) {
            group.push(StoredEvent { rx_ms: now, event });
        }
    }
    group.truncate(RAW_GROUP);
    group
}

/// The daemon's own write path without the daemon: one sled value per group of 256 events + flush.
/// Returns (events, time spent in append + flush, bytes written to disk).
fn raw_store(events: usize, cap: Duration) -> (usize, Duration, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = write_bytes_self();
    let store = Store::open(&dir.path().join("s"), 8 << 20, u64::MAX).expect("open store");
    let (mut rng, mut next, now) = (Rng(7), 0, now_ms());
    let (mut done, mut spent) = (0, Duration::ZERO);
    while done < events && spent < cap {
        let bytes = rmp_serde::to_vec(&raw_group(&mut rng, &mut next, now)).expect("encode");
        let t = Instant::now();
        store.append(&bytes).expect("append");
        store.flush_blocking().expect("flush");
        spent += t.elapsed();
        done += RAW_GROUP;
    }
    (done, spent, write_bytes_self() - written)
}

/// sled itself, one record per event: `apply_batch` of 256 records + `flush` per group.
fn raw_sled_batch(events: usize, cap: Duration) -> (usize, Duration, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = write_bytes_self();
    let db = sled::Config::new()
        .path(dir.path().join("s"))
        .cache_capacity(8 << 20)
        .flush_every_ms(None)
        .open()
        .expect("open sled");
    let tree = db.open_tree("events").expect("tree");
    let (mut rng, mut next, now) = (Rng(8), 0, now_ms());
    let (mut done, mut spent, mut key) = (0, Duration::ZERO, 0u64);
    while done < events && spent < cap {
        let mut batch = sled::Batch::default();
        for se in raw_group(&mut rng, &mut next, now) {
            key += 1;
            batch.insert(&key.to_be_bytes(), rmp_serde::to_vec(&se).expect("encode"));
        }
        let t = Instant::now();
        tree.apply_batch(batch).expect("apply_batch");
        db.flush().expect("flush");
        spent += t.elapsed();
        done += RAW_GROUP;
    }
    drop(tree);
    drop(db);
    (done, spent, write_bytes_self() - written)
}

// ---------------------------------------------------------------------------------------------

fn env_or_arg(name: &str, arg: Option<u64>, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .or(arg)
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; a bare number is the call count.
    let arg = std::env::args()
        .skip(1)
        .find_map(|a| a.replace('_', "").parse::<u64>().ok());
    let calls = env_or_arg("CALLMETRICS_BENCH_CALLS", arg, 1_000_000) as usize;
    let idle_secs = env_or_arg("CALLMETRICS_BENCH_IDLE_SECS", None, 60);
    let hz = clock_ticks();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut rep = Report::new();
    let bench_start = Instant::now();
    println!(
        "callmetrics load bench: {calls} calls ({} events) in the ingest phases, {cores} cores, idle window {idle_secs} s",
        calls * 4
    );
    rep.json.insert("calls".into(), calls.into());
    rep.json.insert("cores".into(), cores.into());

    // Split of the ingest calls: 10 % on one connection, 45 % JSON and 45 % MessagePack on 16.
    let calls_one = calls / 10;
    let calls_json16 = (calls - calls_one) / 2;
    let calls_mp16 = calls - calls_one - calls_json16;

    // --- 3. the raw limit first, with no daemon running.
    rep.section(
        "raw store limit (in this process, 8 MiB cache, groups of 256 events, one flush per group)",
    );
    let (n, spent, written) = raw_store(calls * 4, Duration::from_secs(20));
    let raw_rate = n as f64 / spent.as_secs_f64();
    rep.figure(
        "raw_store_append_flush_eps",
        "Store::append (one value/group) + flush",
        raw_rate,
        "events/s",
        "",
    );
    rep.figure(
        "raw_store_written_bytes_per_event",
        "  bytes written to disk per event",
        written as f64 / n as f64,
        "B/event",
        "",
    );
    let (n2, spent2, written2) = raw_sled_batch(calls * 4, Duration::from_secs(10));
    let raw_batch_rate = n2 as f64 / spent2.as_secs_f64();
    rep.figure(
        "raw_sled_apply_batch_flush_eps",
        "sled apply_batch (one record/event) + flush",
        raw_batch_rate,
        "events/s",
        "",
    );
    rep.figure(
        "raw_sled_written_bytes_per_event",
        "  bytes written to disk per event",
        written2 as f64 / n2 as f64,
        "B/event",
        "",
    );

    // --- start a fresh daemon.
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = Paths::new(dir.path());
    let mut daemon = Daemon::spawn(&paths);
    let cold = daemon.wait_ready(&rt, &paths);
    rep.section("fresh daemon");
    rep.note(
        "config",
        &format!(
            "defaults except limits.max_open_segments = 2000000 and store.max_bytes = {} GiB \
             (the 1 GiB default fills at about 3.9 M events)",
            STORE_MAX_BYTES >> 30
        ),
    );
    rep.figure(
        "cold_start_ready_ms",
        "start to ready, empty store",
        cold.as_secs_f64() * 1000.0,
        "ms",
        "",
    );

    // --- 7a. metrics latency with ~1 k calls.
    let warm_calls = 1000;
    let warm = payloads(Framing::Json, "w", warm_calls, 1);
    let r = stream_phase(&daemon, &paths, Framing::Json, &warm, hz);
    assert_eq!(
        r.acked,
        warm_calls as u64 * 4,
        "warm-up events acknowledged"
    );
    std::thread::sleep(Duration::from_secs(3));
    let mut fresh_metrics = BTreeMap::new();
    for w in ["15m", "24h"] {
        let (lat, rows) = metrics_phase(&rt, &paths, w, 200);
        rep.figure(
            &format!("metrics_{w}_fresh_p50_ms"),
            &format!("metrics by=queue window={w}, {warm_calls} calls: p50"),
            pct(&lat, 0.5),
            "ms",
            "",
        );
        rep.figure(
            &format!("metrics_{w}_fresh_p99_ms"),
            &format!("metrics by=queue window={w}, {warm_calls} calls: p99 ({rows} rows)"),
            pct(&lat, 0.99),
            "ms",
            "<= 2 ms",
        );
        fresh_metrics.insert(w, (pct(&lat, 0.5), pct(&lat, 0.99)));
    }

    // --- 2. ack latency at a paced 5 000 events/s.
    rep.section("ack latency, one connection paced at 5 000 events/s for 10 s");
    let cpu = CpuMeter::start(daemon.pid);
    let (lat, took) = paced_phase(&paths, 5000, 10);
    let cpu = cpu.stop(hz);
    rep.figure(
        "ack_rate_eps",
        "achieved rate",
        lat.len() as f64 / took.as_secs_f64(),
        "events/s",
        "",
    );
    rep.figure("ack_p50_ms", "ack latency p50", pct(&lat, 0.5), "ms", "");
    let p99 = pct(&lat, 0.99);
    rep.figure(
        "ack_p99_ms",
        "ack latency p99",
        p99,
        "ms",
        &format!("<= 10 ms: {}", verdict(p99 <= 10.0)),
    );
    rep.figure("ack_max_ms", "ack latency max", pct(&lat, 1.0), "ms", "");
    rep.figure(
        "ack_daemon_cpu_pct",
        "daemon CPU at 5 k/s",
        cpu.daemon,
        "% of a core",
        "",
    );
    rep.figure(
        "ack_others_cpu_pct",
        "other processes' CPU meanwhile (noise)",
        cpu.others,
        "% of a core",
        "",
    );

    // --- 1. throughput; 6. bytes written per event.
    rep.section("durable ingest throughput (pipelined, acknowledged events / wall time)");
    let written_before = write_bytes(daemon.pid);
    let mut ingest_acked = 0u64;
    let phases = [
        (
            "json_1conn",
            "JSON lines, 1 connection",
            Framing::Json,
            calls_one,
            1usize,
        ),
        (
            "json_16conn",
            "JSON lines, 16 connections",
            Framing::Json,
            calls_json16,
            16,
        ),
        (
            "msgpack_16conn",
            "MessagePack batches of 100, 16 connections",
            Framing::MsgPack,
            calls_mp16,
            16,
        ),
    ];
    let mut rate16 = 0.0;
    for (key, label, framing, n, conns) in phases {
        let loads = payloads(framing, key, n, conns);
        let r = stream_phase(&daemon, &paths, framing, &loads, hz);
        drop(loads);
        ingest_acked += r.acked;
        let rate = r.rate();
        let target = if key == "json_16conn" {
            rate16 = rate;
            format!(">= 100000 events/s: {}", verdict(rate >= 100_000.0))
        } else {
            String::new()
        };
        rep.figure(&format!("{key}_eps"), label, rate, "events/s", &target);
        rep.figure(
            &format!("{key}_events"),
            &format!(
                "  acknowledged ({} refused) in {:.1} s",
                r.errors,
                r.wall.as_secs_f64()
            ),
            r.acked as f64,
            "events",
            "",
        );
        rep.figure(
            &format!("{key}_daemon_cpu_pct"),
            "  daemon CPU",
            r.cpu.daemon,
            "% of a core",
            "",
        );
        rep.figure(
            &format!("{key}_bench_cpu_pct"),
            "  load generator CPU",
            r.cpu.bench,
            "% of a core",
            "",
        );
        rep.note(
            &format!("{key}_daemon_threads"),
            &format!("daemon CPU by thread: {}", r.threads),
        );
        rep.figure(
            &format!("{key}_others_cpu_pct"),
            "  other processes' CPU meanwhile (noise)",
            r.cpu.others,
            "% of a core",
            "",
        );
        rep.figure(
            &format!("{key}_written_bytes_per_event"),
            "  bytes written to disk per event",
            r.written as f64 / r.acked.max(1) as f64,
            "B/event",
            "",
        );
        if let Some(e) = r.first_error {
            rep.note(&format!("{key}_first_error"), &e);
        }
    }
    let written = write_bytes(daemon.pid) - written_before;
    let ratio = rate16 / raw_rate;
    rep.figure(
        "ratio_16conn_to_raw",
        "JSON 16 connections / raw Store append+flush",
        ratio * 100.0,
        "%",
        &format!(">= 50 %: {}", verdict(ratio >= 0.5)),
    );
    let mp16 = rep.json["msgpack_16conn_eps"]["value"]
        .as_f64()
        .unwrap_or(0.0);
    rep.figure(
        "ratio_msgpack16_to_raw",
        "MessagePack 16 connections / raw Store append+flush",
        mp16 / raw_rate * 100.0,
        "%",
        "",
    );
    rep.figure(
        "ratio_16conn_to_sled_batch",
        "JSON 16 connections / raw sled apply_batch+flush",
        rate16 / raw_batch_rate * 100.0,
        "%",
        "",
    );
    rep.figure(
        "written_bytes_per_event",
        "bytes written to disk per event, all ingest phases",
        written as f64 / ingest_acked.max(1) as f64,
        "B/event",
        "",
    );

    // --- 4. memory with all the segments stored.
    std::thread::sleep(Duration::from_secs(5));
    let st = status(&rt, &paths);
    let offered = offered_24h(&rt, &paths);
    let stored_calls = offered;
    rep.section(&format!(
        "daemon after the load ({stored_calls} segments offered in 24h)"
    ));
    let rss = rss_kib(daemon.pid) as f64 / 1024.0;
    rep.figure(
        "rss_mib",
        &format!("VmRSS with {stored_calls} segments stored"),
        rss,
        "MiB",
        &format!("<= 32 MiB: {}", verdict(rss <= 32.0)),
    );
    rep.figure(
        "rss_peak_mib",
        "VmHWM (peak RSS during the load)",
        hwm_kib(daemon.pid) as f64 / 1024.0,
        "MiB",
        "",
    );
    rep.figure(
        "store_bytes",
        "store size on disk (status)",
        st.store.size_bytes as f64 / 1_048_576.0,
        "MiB",
        "",
    );
    rep.figure(
        "store_dir_bytes",
        "store folder size",
        dir_bytes(&paths.store) as f64 / 1_048_576.0,
        "MiB",
        "",
    );
    rep.figure(
        "open_calls",
        "open calls held in memory",
        st.engine.open_calls as f64,
        "calls",
        "",
    );
    rep.figure(
        "remembered_calls",
        "finished calls remembered (late duplicates)",
        st.engine.remembered_calls as f64,
        "calls",
        "",
    );
    if !st.ingest.events_rejected.is_empty() {
        rep.note(
            "rejected",
            &format!("events refused: {:?}", st.ingest.events_rejected),
        );
    }

    // --- 7b. metrics latency with the full load.
    for w in ["15m", "24h"] {
        let (lat, rows) = metrics_phase(&rt, &paths, w, 200);
        let (p50, p99) = (pct(&lat, 0.5), pct(&lat, 0.99));
        let (f50, f99) = fresh_metrics[w];
        rep.figure(
            &format!("metrics_{w}_loaded_p50_ms"),
            &format!("metrics by=queue window={w}, {stored_calls} calls: p50"),
            p50,
            "ms",
            &format!("fresh {f50:.3} ms"),
        );
        let flat = p99 <= 2.0 && p99 <= f99 * 1.5 + 0.2;
        rep.figure(
            &format!("metrics_{w}_loaded_p99_ms"),
            &format!("metrics by=queue window={w}, {stored_calls} calls: p99 ({rows} rows)"),
            p99,
            "ms",
            &format!("<= 2 ms and flat (fresh {f99:.3} ms): {}", verdict(flat)),
        );
    }

    // --- 8. idle CPU.
    let cpu = CpuMeter::start(daemon.pid);
    let wakes = ctx_switches(daemon.pid);
    std::thread::sleep(Duration::from_secs(idle_secs));
    let cpu = cpu.stop(hz);
    let idle = cpu.daemon;
    let wakes = ctx_switches(daemon.pid) - wakes;
    rep.section(&format!("idle daemon over {idle_secs} s"));
    rep.figure(
        "idle_cpu_pct",
        "idle CPU",
        idle,
        "% of a core",
        &format!("~0 (<= 0.1 %): {}", verdict(idle <= 0.1)),
    );
    rep.figure(
        "idle_wakeups_per_s",
        "idle wake-ups (context switches, all threads)",
        wakes as f64 / idle_secs as f64,
        "/s",
        "",
    );
    rep.figure(
        "idle_others_cpu_pct",
        "other processes' CPU meanwhile (noise)",
        cpu.others,
        "% of a core",
        "",
    );

    // --- 5. restarts.
    rep.section("restart with the stored segments");
    let stop = daemon.terminate();
    rep.figure(
        "sigterm_stop_ms",
        "SIGTERM to exit (final checkpoint)",
        stop.as_secs_f64() * 1000.0,
        "ms",
        "",
    );
    let mut daemon = Daemon::spawn(&paths);
    let ready = daemon.wait_ready(&rt, &paths);
    rep.figure(
        "restart_ready_ms",
        "restart to ready after SIGTERM",
        ready.as_secs_f64() * 1000.0,
        "ms",
        &format!("<= 3 s: {}", verdict(ready <= Duration::from_secs(3))),
    );
    rep.figure(
        "restart_replayed_events",
        "  events replayed",
        last_replayed(&paths.log).unwrap_or(0) as f64,
        "events",
        "",
    );
    let after = offered_24h(&rt, &paths);
    rep.figure(
        "restart_offered_delta",
        "  offered (24h) after minus before",
        after as f64 - offered as f64,
        "calls",
        "0",
    );
    let (lat, _) = metrics_phase(&rt, &paths, "24h", 50);
    rep.figure(
        "restart_metrics_24h_p50_ms",
        "  metrics by=queue window=24h after restart: p50",
        pct(&lat, 0.5),
        "ms",
        "",
    );
    rep.figure(
        "restart_rss_mib",
        "  VmRSS after restart",
        rss_kib(daemon.pid) as f64 / 1024.0,
        "MiB",
        "",
    );

    // Events in the log, not yet checkpointed, then SIGKILL.
    let extra = 25_000;
    let loads = payloads(Framing::Json, "k", extra, 16);
    let r = stream_phase(&daemon, &paths, Framing::Json, &loads, hz);
    drop(loads);
    daemon.kill();
    let mut daemon = Daemon::spawn(&paths);
    let ready = daemon.wait_ready(&rt, &paths);
    rep.figure(
        "kill_restart_ready_ms",
        &format!(
            "restart to ready after SIGKILL ({} events just acked)",
            r.acked
        ),
        ready.as_secs_f64() * 1000.0,
        "ms",
        &format!("<= 3 s: {}", verdict(ready <= Duration::from_secs(3))),
    );
    rep.figure(
        "kill_replayed_events",
        "  events replayed from the log",
        last_replayed(&paths.log).unwrap_or(0) as f64,
        "events",
        "",
    );
    let after_kill = offered_24h(&rt, &paths);
    rep.figure(
        "kill_offered_delta",
        "  offered (24h) after minus before the extra calls",
        after_kill as f64 - after as f64,
        "calls",
        &format!("{extra}"),
    );
    let stop = daemon.terminate();
    rep.figure(
        "final_sigterm_stop_ms",
        "final SIGTERM to exit",
        stop.as_secs_f64() * 1000.0,
        "ms",
        "",
    );
    rep.figure(
        "bench_wall_s",
        "bench wall time",
        bench_start.elapsed().as_secs_f64(),
        "s",
        "",
    );

    // Summary and JSON.
    println!("\n===== summary =====");
    for l in &rep.lines {
        println!("{l}");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let out = target.join("bench-load.json");
    let text = serde_json::to_string_pretty(&Value::Object(rep.json)).expect("encode report");
    match std::fs::write(&out, text + "\n") {
        Ok(()) => println!("\nwritten {}", out.display()),
        Err(e) => eprintln!("cannot write {}: {e}", out.display()),
    }
}
