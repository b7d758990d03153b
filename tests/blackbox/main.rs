//! Black-box tests of the real `callmetrics` binary: the event protocol over its Unix socket (JSON
//! lines and `MessagePack` frames), error replies and limits, the CLI's exit codes, restarts after
//! SIGTERM and SIGKILL, and `callmetrics send`. Each test starts its own daemon in its own folder.
//!
//! Expected metrics are computed here from a list of calls written as data (docs/metrics.md
//! applied by hand to the event timestamps), never copied from the daemon's output: the calls are
//! in `scenario`, the expected rows in `model`; the tests are grouped by theme in `intake`,
//! `refusals`, `cli` and `restart`.

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod intake;
mod model;
mod refusals;
mod restart;
mod scenario;

use serde_json::json;
use support::now_ms;

/// The config's service-level parameters (written into the test config, see [`CONFIG`]).
const T_MS: u64 = 20_000;
const S_MS: u64 = 5_000;

/// Service-level parameters stated explicitly, so the expectations below do not hang on defaults.
const CONFIG: &str =
    "[defaults]\nthreshold = \"20s\"\nshort_abandon = \"5s\"\nformula = \"offered\"\n";

const fn s(secs: i64) -> i64 {
    secs * 1000
}

/// A valid start event for a fresh call.
fn start_line(id: &str) -> String {
    json!({"type": "start", "call_id": id, "queue": "q", "ts": now_ms() - 1000}).to_string()
}
