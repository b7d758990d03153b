//! `dashboards/callmetrics-prometheus.json` over a real `VictoriaMetrics` scraping the `/metrics`
//! of two real daemons each second (`-promscrape.config`; it serves the Prometheus query API the
//! board uses). The counters run since each store was created, so the test first sends warm-up
//! calls, waits until they are scraped, notes the time, then sends the calls it checks: every
//! query runs at a time whose `$__range` starts after the warm-up, so `increase` must leave the
//! warm-up out. Panels over time run as one window (`$__interval` = the same range): the
//! counters count when the daemon folds a call, not at the call's own times, so the test can
//! say what a whole window holds but not which second a call fell in. Wait percentiles inside
//! the `callmetrics_queue_wait_seconds` bucket that holds the calls' wait at the rank.

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use crate::calls::{make_calls, past_interval};
use crate::drive::{send_calls, wait_settled};
use crate::figures::{
    add_calls, read_board, variable_query, By, Figs, FigureTable, Flavor, Measure, Run, Selection,
    COMMON,
};
use crate::support::victoria::Victoria;
use crate::support::{now_ms, Daemon};
use crate::SHIP_DEADLINE;

const BOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/dashboards/callmetrics-prometheus.json"
);
const QUEUES: [&str; 3] = ["sales", "support", "billing"];
/// The panels' minimum interval.
const MIN_INTERVAL: &str = "1m";
/// Upper bounds of `callmetrics_queue_wait_seconds` with the default bands and threshold, in ms
/// (docs/metrics.md).
const WAIT_BOUNDS_MS: [f64; 12] = [
    5e3, 10e3, 15e3, 20e3, 30e3, 45e3, 60e3, 90e3, 120e3, 180e3, 300e3, 600e3,
];

/// The bucket of `callmetrics_queue_wait_seconds` holding `v` ms: (previous bound, bound].
fn wait_bucket(v: f64) -> (f64, f64) {
    let mut lower = 0.0;
    for b in WAIT_BOUNDS_MS {
        if v <= b {
            return (lower, b);
        }
        lower = b;
    }
    (lower, f64::INFINITY)
}

const FLAVOR: Flavor = Flavor {
    unit_ms: 1000.0,
    bucket_of: wait_bucket,
    host_label: "instance",
};

/// The panels of this board alone and what their targets must answer; the rest are
/// [`figures::COMMON`].
const OWN: &FigureTable = &[
    (
        "Service level per queue",
        "A",
        By::Queue,
        Measure::ServiceLevel,
    ),
    (
        "Service level vs target, per queue",
        "A",
        By::Queue,
        Measure::TargetMargin,
    ),
    (
        "Service level over time",
        "A",
        By::Queue,
        Measure::ServiceLevel,
    ),
];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port()
}

/// Polls `probe` until it holds, or fails saying `what` and the last answer.
fn wait_until(vm: &Victoria, what: &str, mut probe: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + SHIP_DEADLINE;
    loop {
        match probe() {
            Ok(()) => return,
            Err(last) => assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last: {last}\nVictoriaMetrics log:\n{}",
                vm.log_tail()
            ),
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until `VictoriaMetrics` has scraped `offered` calls in all (every daemon, queue).
fn wait_scraped(vm: &Victoria, offered: u64) {
    wait_until(vm, &format!("{offered} offered scraped"), || {
        let at = (now_ms() / 1000).to_string();
        let data = vm.api(
            "/api/v1/query",
            &[
                ("query", "sum(callmetrics_queue_offered_total)"),
                ("time", &at),
                ("nocache", "1"),
            ],
        )?;
        let got = data["result"][0]["value"][1].as_str().unwrap_or("none");
        if got == offered.to_string() {
            Ok(())
        } else {
            Err(format!("{got} offered"))
        }
    });
}

#[test]
fn prometheus_board_queries_answer_the_calls_figures() {
    let board = read_board(BOARD, OWN, MIN_INTERVAL);

    let ports = [free_port(), free_port()];
    let instances: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let daemons: Vec<Daemon> = ports
        .iter()
        .map(|p| {
            Daemon::start(&format!(
                "\n[metrics]\nwrapup_timeout = \"3s\"\n\n[exposition]\nlisten = \"127.0.0.1:{p}\"\n"
            ))
        })
        .collect();

    // Warm-up calls, so every series exists before the window starts.
    let intervals: Vec<i64> = (2..=3).map(past_interval).collect();
    let mut sent = [0usize; 2];
    let mut warm_offered = 0;
    for (i, d) in daemons.iter().enumerate() {
        let warm = make_calls(
            &format!("warm{i}"),
            500 + i as u64,
            &QUEUES,
            &intervals[..1],
            3,
            true,
        );
        sent[i] += send_calls(d, &warm);
        warm_offered += warm.len() as u64;
        wait_settled(d, sent[i] as u64);
    }

    let scrape = tempfile::tempdir().expect("a folder for the scrape config");
    let scrape_config = scrape.path().join("scrape.yml");
    std::fs::write(
        &scrape_config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: callmetrics\n    static_configs:\n      - targets: ['{}', '{}']\n",
            instances[0], instances[1]
        ),
    )
    .expect("write the scrape config");
    let vm = Victoria::start_with(&[
        format!("-promscrape.config={}", scrape_config.display()),
        "-search.latencyOffset=1s".into(),
        // At most the scrape interval, or it thins the scrapes out (docs/upstream.md).
        "-dedup.minScrapeInterval=1ms".into(),
    ]);
    wait_scraped(&vm, warm_offered);
    // The window starts a second after a scrape that held the whole warm-up (its sample may be
    // stamped up to a second after the floor of now), and before any other call is sent: the
    // last sample at or before it holds the warm-up alone.
    thread::sleep(Duration::from_millis(1100));
    let start_s = now_ms() / 1000;
    thread::sleep(Duration::from_millis(1100));

    let mut figs = Figs::new();
    let mut offered = warm_offered;
    for (i, (d, instance)) in daemons.iter().zip(&instances).enumerate() {
        let calls = make_calls(
            &format!("main{i}"),
            600 + i as u64,
            &QUEUES,
            &intervals,
            12,
            false,
        );
        sent[i] += send_calls(d, &calls);
        offered += calls.len() as u64;
        add_calls(&mut figs, instance, &calls);
        wait_settled(d, sent[i] as u64);
    }
    wait_scraped(&vm, offered);
    // Handle figures settle with the rest (`wait_settled`: no open call), so this scrape holds
    // everything; one more second so a scrape at or before `at_s` has it.
    let at_s = now_ms() / 1000 + 1;
    thread::sleep(Duration::from_millis(2100));
    let range = format!("{}s", at_s - start_s);

    let run = Run {
        vm: &vm,
        at_s,
        range: &range,
        interval: &range,
        steps: None,
        flavor: &FLAVOR,
    };
    let selections = [
        Selection::all(&instances, &QUEUES),
        Selection::some(&instances[1], &["support", "billing"]),
    ];
    for sel in &selections {
        let got = run.label_values(&variable_query(&board, "host"), sel, start_s - 600);
        assert_eq!(got, instances.iter().cloned().collect());
        let queues = run.label_values(&variable_query(&board, "queue"), sel, start_s - 600);
        let want: BTreeSet<String> = QUEUES.iter().map(|q| (*q).to_string()).collect();
        assert_eq!(queues, want, "queue values with host = {}", sel.host);
    }
    let checked = run.check_queries(&board, OWN, &figs, &selections);
    assert_eq!(checked, (COMMON.len() + OWN.len()) * selections.len());
}
