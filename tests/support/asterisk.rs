//! The Asterisk `queue_log` fixture (`tests/fixtures/asterisk/day.queue_log`) and its calls
//! counted by hand, for the tests that import or follow it: the figures `metrics --json` must
//! show once every line is counted exactly once.

use serde_json::Value;

use super::{now_ms, Daemon};

/// The fixture: twelve modelled calls (listed in its comment line), lines that give no event,
/// and a last line left half-written.
pub const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/asterisk/day.queue_log"
);

/// The figures compared, in the order of [`expected`].
const KEYS: [&str; 8] = [
    "offered",
    "answered",
    "answered_within",
    "abandoned",
    "overflow",
    "wait_sum_ms",
    "handled",
    "talk_sum_ms",
];

/// `[offered, answered, answered_within, abandoned, overflow, wait_sum_ms, handled, talk_sum_ms]`
/// per queue, from the calls the fixture's comment line lists (T = 20 s).
pub fn expected(queue: &str) -> [i64; 8] {
    match queue {
        // Answered c1 (12 s, talk 188), c7 (4, 50), c8 (3, 40), c10 (21 > T, 100), c11's second
        // visit (2, 20), c12 (7, 9); abandoned c2; overflow c3 (timeout), c4, c5, c6, c11's first.
        "support" => [12, 6, 5, 1, 5, 49_000, 6, 407_000],
        // c3's second visit (5 s, talk 60) and c9 (6 s, talk 30).
        "sales" => [2, 2, 2, 0, 0, 11_000, 2, 90_000],
        _ => panic!("unexpected queue {queue}"),
    }
}

/// Every queue's expected figures, sorted by queue.
pub fn want() -> Vec<(String, [i64; 8])> {
    ["sales", "support"]
        .iter()
        .map(|q| ((*q).to_string(), expected(q)))
        .collect()
}

/// The figures `metrics --json --window 24h --by queue` shows, sorted by queue.
pub fn figures(d: &Daemon) -> Vec<(String, [i64; 8])> {
    let mut rows: Vec<(String, [i64; 8])> = d
        .metrics("24h", "queue")
        .iter()
        .map(|r: &Value| {
            let q = r["queue"].as_str().unwrap().to_string();
            (q, KEYS.map(|k| r[k].as_i64().unwrap()))
        })
        .collect();
    rows.sort();
    rows
}

/// The fixture's lines, each with its newline (the last one half-written, without), their
/// times moved so that the last is `ago_s` seconds before now: the calls then fall in the
/// trailing windows whatever the day the test runs.
pub fn recent_lines(ago_s: i64) -> Vec<String> {
    let text = std::fs::read_to_string(FIXTURE).expect("read the fixture");
    let epoch = |l: &str| l.split('|').next().and_then(|e| e.parse::<i64>().ok());
    let last = text.lines().filter_map(epoch).max().expect("timed lines");
    let shift = now_ms() / 1000 - ago_s - last;
    text.split_inclusive('\n')
        .map(|l| match (epoch(l), l.split_once('|')) {
            (Some(e), Some((_, rest))) => format!("{}|{rest}", e + shift),
            _ => l.to_string(),
        })
        .collect()
}
