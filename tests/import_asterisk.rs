//! `callmetrics import --format asterisk-queue-log` against a real daemon: the figures of
//! `metrics --json` equal the fixture's calls counted by hand, for the plain file, a `.gz` copy,
//! and a second import of the same file.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{cli, Daemon};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/asterisk/day.queue_log"
);

/// `[offered, answered, answered_within, abandoned, overflow, wait_sum_ms, handled, talk_sum_ms]`
/// per queue, from the calls the fixture's comment line lists (T = 20 s).
fn expected(queue: &str) -> [i64; 8] {
    match queue {
        // Answered c1 (12 s, talk 188), c7 (4, 50), c8 (3, 40), c10 (21 > T, 100), c11's second
        // visit (2, 20), c12 (7, 9); abandoned c2; overflow c3 (timeout), c4, c5, c6, c11's first.
        "support" => [12, 6, 5, 1, 5, 49_000, 6, 407_000],
        // c3's second visit (5 s, talk 60) and c9 (6 s, talk 30).
        "sales" => [2, 2, 2, 0, 0, 11_000, 2, 90_000],
        _ => panic!("unexpected queue {queue}"),
    }
}

fn figures(d: &Daemon) -> Vec<(String, [i64; 8])> {
    let keys = [
        "offered",
        "answered",
        "answered_within",
        "abandoned",
        "overflow",
        "wait_sum_ms",
        "handled",
        "talk_sum_ms",
    ];
    let mut rows: Vec<(String, [i64; 8])> = d
        .metrics("24h", "queue")
        .iter()
        .map(|r: &Value| {
            let q = r["queue"].as_str().unwrap().to_string();
            (q, keys.map(|k| r[k].as_i64().unwrap()))
        })
        .collect();
    rows.sort();
    rows
}

fn import(d: &Daemon, file: &str) -> String {
    let out = cli([
        "import",
        "--format",
        "asterisk-queue-log",
        "--socket",
        d.events.to_str().unwrap(),
        "--ledger",
        d.dir.path().join("imports.ledger").to_str().unwrap(),
        file,
    ]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn imported_figures_equal_the_hand_count_once_whatever_the_copies() {
    let d = Daemon::start("[metrics]\nwrapup_timeout = \"1s\"\n");
    let summary = import(&d, FIXTURE);
    assert!(
        summary.contains("36 events sent: 36 accepted, 0 refused"),
        "{summary}"
    );
    assert!(summary.contains("half-written"), "{summary}");
    // Handled segments complete once the wrap-up timeout has passed after receipt.
    let deadline = Instant::now() + Duration::from_secs(30);
    let want: Vec<(String, [i64; 8])> = ["sales", "support"]
        .iter()
        .map(|q| ((*q).to_string(), expected(q)))
        .collect();
    while figures(&d) != want {
        assert!(Instant::now() < deadline, "{:?} != {want:?}", figures(&d));
        std::thread::sleep(Duration::from_millis(200));
    }
    let gz = d.dir.path().join("day.queue_log.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut enc, &std::fs::read(FIXTURE).unwrap()).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let again = import(&d, gz.to_str().unwrap());
    assert!(
        again.contains("(43 imported before, skipped), 0 events sent"),
        "{again}"
    );
    let again = import(&d, FIXTURE);
    assert!(again.contains("0 events sent"), "{again}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(figures(&d), want);
}
