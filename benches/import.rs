//! Throughput of the Asterisk `queue_log` import: a generated 1 M-line file, mapped alone, then
//! imported whole into a running release daemon. Run: `cargo bench --bench import`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use callmetrics::cli::import::{import_files, ImportJob, Progress};
use callmetrics::sources::asterisk::{Mapper, Options};

const LINES: usize = 1_000_000;

/// Calls of 5 lines each (enter, connect, complete; enter, abandon every fifth), two queues, a
/// member line now and then, from 2026-12-01 00:00 UTC, one call starting each second.
fn generate() -> Vec<u8> {
    let mut out = Vec::with_capacity(LINES * 60);
    let t0 = 1_796_083_200_i64;
    let mut i = 0usize;
    let mut lines = 0;
    while lines < LINES {
        let t = t0 + (i as i64) / 4;
        let q = if i.is_multiple_of(2) {
            "support"
        } else {
            "sales"
        };
        let id = format!("{t}.{i}");
        if i % 5 == 4 {
            let _ = writeln!(out, "{t}|{id}|{q}|NONE|ENTERQUEUE||555{i}|1");
            let _ = writeln!(out, "{}|{id}|{q}|NONE|ABANDON|1|1|9", t + 9);
            lines += 2;
        } else {
            let _ = writeln!(out, "{t}|{id}|{q}|NONE|ENTERQUEUE||555{i}|1");
            let _ = writeln!(out, "{}|{id}|{q}|SIP/a{}|CONNECT|7|x|1", t + 7, i % 50);
            let _ = writeln!(
                out,
                "{}|{id}|{q}|SIP/a{}|COMPLETECALLER|7|60|1",
                t + 67,
                i % 50
            );
            lines += 3;
        }
        if i.is_multiple_of(100) {
            let _ = writeln!(out, "{t}|NONE|{q}|SIP/a1|PAUSE|");
            lines += 1;
        }
        i += 1;
    }
    out
}

fn main() {
    let text = generate();
    let n = text.split_inclusive(|b| *b == b'\n').count();
    let started = Instant::now();
    let mut m = Mapper::new(Options::default());
    let mut events = Vec::new();
    let mut total = 0usize;
    for line in text.split_inclusive(|b| *b == b'\n') {
        events.clear();
        m.line(line, &mut events);
        total += events.len();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "parse+map: {n} lines, {total} events in {secs:.2} s: {:.0} lines/s",
        n as f64 / secs
    );

    let dir = tempfile::Builder::new()
        .prefix("cmib")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let file = dir.path().join("queue_log");
    std::fs::write(&file, &text).expect("write the log");
    let events_sock = dir.path().join("events.sock");
    let control = dir.path().join("control.sock");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[ingest]\nsocket = {events_sock:?}\n\n[control]\nsocket = {control:?}\n\n[store]\npath = {:?}\n",
            dir.path().join("store")
        ),
    )
    .expect("write the config");
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/callmetrics");
    let mut daemon = Command::new(&bin)
        .args(["run", "--config", config.to_str().unwrap_or_default()])
        .stderr(Stdio::null())
        .spawn()
        .expect("start target/release/callmetrics (cargo build --release first)");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !events_sock.exists() {
        assert!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let files = [file];
    let ledger = dir.path().join("imports.ledger");
    let started = Instant::now();
    let summary = rt
        .block_on(import_files(
            ImportJob {
                event_socket: &events_sock,
                ledger: &ledger,
                files: &files,
                options: Options::default(),
            },
            &Progress::silent(),
        ))
        .expect("import");
    let secs = started.elapsed().as_secs_f64();
    println!(
        "import into the release daemon: {} lines, {} events accepted, {} refused in {secs:.2} s: {:.0} lines/s",
        summary.lines,
        summary.accepted,
        summary.refused,
        summary.lines as f64 / secs
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
}
