//! Soak benchmark of the real daemon binary (`cargo bench --bench soak`): many `kill -9`s under
//! pipelined load, then many short connections, checking that nothing acknowledged is lost or
//! counted twice and that nothing leaks. Figures and the command are in `benches/soak/README.md`.
//!
//! 1. **Crash cycles** (`CALLMETRICS_SOAK_CYCLES`, default 200): the daemon starts on the same
//!    store each cycle; 8 connections (4 of JSON lines, 4 of `MessagePack` frames, single events
//!    and one-call batches) pipeline complete calls (start, answer, end, wrap-up) with unique call
//!    ids; the daemon is killed with SIGKILL at a random moment of the load, and each
//!    connection's replies say which calls got `{"ok":true}` for every one of their events.
//!
//!    *How each call is checked on its own*: every call is the only call of its own queue (queue
//!    `q-<call id>`, `metrics.max_queues` raised to fit them all), so the 24 h metrics row of that
//!    queue is that call's count. After the last restart, for every call: acknowledged ⇒
//!    `offered` = 1 and `handled` = 1; never sent ⇒ no count; and no queue ever has `offered` > 1
//!    (a call counted twice, e.g. replayed from the log after a checkpoint already held it). Summed:
//!    acknowledged ≤ counted ≤ sent. A call sent but not acknowledged may or may not count: its
//!    events may have been stored before the kill without their reply getting out.
//! 2. **Connection cycles** (`CALLMETRICS_SOAK_CONNS_CYCLES`, default 10 000): on both sockets,
//!    open, send one event (alternately a JSON line and a `MessagePack` frame, always the same
//!    event, a duplicate the daemon ignores, so the engine's state does not grow) or a `status`
//!    request, read the reply, close. The daemon's open descriptors (`/proc/PID/fd`) and resident
//!    memory after must be back within a small bound of before (after a warm-up).

#[path = "../../tests/support/mod.rs"]
mod support;

// The soak reads /proc and encodes calls as the load bench does; it needs only part of each.
#[allow(dead_code)]
#[path = "../load/probe.rs"]
mod probe;
#[allow(dead_code)]
#[path = "../load/workload.rs"]
mod workload;

mod conn_cycles;
mod crash_cycles;

use std::process::ExitCode;

use support::{env_num, Daemon};

fn main() -> ExitCode {
    let cycles = env_num("CALLMETRICS_SOAK_CYCLES", 200);
    let calls_per_conn = env_num("CALLMETRICS_SOAK_CALLS_PER_CONN", 8);
    let conn_cycles = env_num("CALLMETRICS_SOAK_CONNS_CYCLES", 10_000);
    let seed = env_num("CALLMETRICS_SOAK_SEED", 1);
    // Each call has its own queue (see above): room for every one of them, and no "(other)" row.
    let max_queues = cycles * calls_per_conn * crash_cycles::CONNECTIONS as u64 + 16;
    let mut d = Daemon::start(&format!("\n[metrics]\nmax_queues = {max_queues}\n"));
    println!("soak: {cycles} crash cycles of {calls_per_conn} calls on each of {} connections, then {conn_cycles} connection cycles on each socket (seed {seed})", crash_cycles::CONNECTIONS);

    let crash = crash_cycles::run(&mut d, cycles, calls_per_conn as usize, seed);
    crash.print();
    let conns = conn_cycles::run(&d, conn_cycles);
    conns.print();

    let failures: Vec<&String> = crash.failures.iter().chain(&conns.failures).collect();
    println!("\n== summary");
    println!(
        "crash cycles: {} ({} killed during the load); calls sent {}, acknowledged {}, counted {}, counted twice {}",
        crash.cycles, crash.cut, crash.sent, crash.acked, crash.counted, crash.doubled
    );
    println!(
        "connection cycles: {} per socket; fds {} -> {}; RSS {:.1} -> {:.1} MiB",
        conns.cycles, conns.fds_before, conns.fds_after, conns.rss_before, conns.rss_after
    );
    if failures.is_empty() {
        println!("PASS");
        ExitCode::SUCCESS
    } else {
        for f in failures.iter().take(20) {
            println!("FAIL: {f}");
        }
        println!("FAIL: {} problems", failures.len());
        ExitCode::FAILURE
    }
}
