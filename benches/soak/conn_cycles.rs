//! Part 2 of the soak: many short connections on both sockets, and the daemon's descriptors and
//! resident memory before and after.

use std::time::{Duration, Instant};

use callmetrics::control::client::request;
use callmetrics::control::protocol::{Request, Response};
use serde_json::json;

use crate::probe::{fd_count, rss_mib};
use crate::support::{now_ms, Daemon};

/// Connections before the "before" figures: buffers, slots and caches reach their working size.
const WARM_UP: u64 = 200;
/// How far the figures after may be above those before: a descriptor or two of a close still
/// under way, and allocator slack.
const FD_SLACK: usize = 2;
const RSS_SLACK_MIB: f64 = 4.0;

pub struct Outcome {
    pub cycles: u64,
    pub fds_before: usize,
    pub fds_after: usize,
    pub rss_before: f64,
    pub rss_after: f64,
    pub seconds: f64,
    pub failures: Vec<String>,
}

impl Outcome {
    pub fn print(&self) {
        println!("\n== connection cycles");
        println!(
            "cycles per socket                        {:>10}",
            self.cycles
        );
        println!(
            "seconds                                  {:>10.1}",
            self.seconds
        );
        println!(
            "open descriptors before                  {:>10}",
            self.fds_before
        );
        println!(
            "open descriptors after                   {:>10}",
            self.fds_after
        );
        println!(
            "RSS before                               {:>10.1} MiB",
            self.rss_before
        );
        println!(
            "RSS after                                {:>10.1} MiB",
            self.rss_after
        );
    }
}

/// One cycle on each socket: an event connection (JSON on even cycles, `MessagePack` on odd),
/// then a control connection asking `status`. Returns what went wrong, if anything.
fn one(
    d: &Daemon,
    rt: &tokio::runtime::Runtime,
    i: u64,
    event: &serde_json::Value,
) -> Option<String> {
    let reply = if i.is_multiple_of(2) {
        d.json_conn().request(&event.to_string())
    } else {
        d.pack_conn().request(event)
    };
    if reply != json!({"ok": true}) {
        return Some(format!("cycle {i}: event reply {reply}"));
    }
    match rt.block_on(request(&d.control, &Request::Status)) {
        Ok(Response::Status(_)) => None,
        other => Some(format!("cycle {i}: status answered {other:?}")),
    }
}

pub fn run(d: &Daemon, cycles: u64) -> Outcome {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let pid = d.pid();
    // The same event every time: the daemon stores it and ignores it as a duplicate, so only the
    // connections themselves could leave anything behind.
    let event = json!({"type": "start", "call_id": "soak-conn-probe", "queue": "probe", "ts": now_ms() - 60_000});
    let mut failures = Vec::new();
    for i in 0..WARM_UP {
        failures.extend(one(d, &rt, i, &event));
    }
    std::thread::sleep(Duration::from_secs(2));
    let (fds_before, rss_before) = (fd_count(pid), rss_mib(pid));
    let started = Instant::now();
    for i in 0..cycles {
        failures.extend(one(d, &rt, i, &event));
    }
    let seconds = started.elapsed().as_secs_f64();
    // Closes finish and freed pages go back (jemalloc returns them within a second).
    let deadline = Instant::now() + Duration::from_secs(10);
    let (fds_after, rss_after) = loop {
        std::thread::sleep(Duration::from_secs(2));
        let now = (fd_count(pid), rss_mib(pid));
        if (now.0 <= fds_before + FD_SLACK && now.1 <= rss_before + RSS_SLACK_MIB)
            || Instant::now() > deadline
        {
            break now;
        }
    };
    if fds_after > fds_before + FD_SLACK {
        failures.push(format!(
            "open descriptors {fds_before} before, {fds_after} after {cycles} connection cycles"
        ));
    }
    if rss_after > rss_before + RSS_SLACK_MIB {
        failures.push(format!(
            "RSS {rss_before:.1} MiB before, {rss_after:.1} MiB after {cycles} connection cycles"
        ));
    }
    Outcome {
        cycles,
        fds_before,
        fds_after,
        rss_before,
        rss_after,
        seconds,
        failures,
    }
}
