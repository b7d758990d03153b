//! `dashboards/callmetrics.json` over a real `VictoriaMetrics` fed by the influx sinks of two
//! real daemons (two host ids), with late calls in intervals already shipped, so corrections
//! travel too. Counts and ratios per interval (range queries, one 15-minute step per interval)
//! and over the range (instant queries), for all hosts and queues and for one host and two
//! queues; wait percentiles within one log bin (a factor γ ≈ 1.02, see `figures`).

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use crate::calls::{make_calls, past_interval};
use crate::drive::{config_as, flush, send_calls, u64_field, wait_delivered, wait_settled};
use crate::figures::{
    add_calls, read_board, variable_query, By, Figs, FigureTable, Flavor, Measure, Run, Selection,
    COMMON,
};
use crate::support::victoria::Victoria;
use crate::support::Daemon;
use crate::{INTERVAL_MS, SHIP_DEADLINE};

const BOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards/callmetrics.json");
const HOSTS: [&str; 2] = ["pbx-a", "pbx-b"];
const QUEUES: [&str; 3] = ["sales", "support", "billing"];
/// `$__range` of the instant queries: every interval the calls touch, from the current one back.
const RANGE: &str = "3h";
/// `$__interval`: the panels' minimum interval, the ship interval.
const STEP: &str = "15m";
/// γ of the wait histogram's bins (docs/upstream.md).
const GAMMA: f64 = 1.0099 / 0.9901;

/// The log bin of the sketch holding `v` ms: (γ^(i−1), γ^i], or the zero bin [0, 1/γ]; widened
/// by 1e-6 for the seven significant digits of the `vmrange` label.
fn log_bin(v: f64) -> (f64, f64) {
    if v < 1.0 {
        return (0.0, 1.0 / GAMMA * (1.0 + 1e-6));
    }
    let i = (v.ln() / GAMMA.ln()).ceil();
    (
        GAMMA.powf(i - 1.0) * (1.0 - 1e-6),
        GAMMA.powf(i) * (1.0 + 1e-6),
    )
}

const FLAVOR: Flavor = Flavor {
    unit_ms: 1.0,
    bucket_of: log_bin,
    host_label: "host",
};

/// The panels of this board alone and what their targets must answer; the rest are
/// [`figures::COMMON`].
const OWN: &FigureTable = &[
    (
        "Service level vs target, per queue",
        "A",
        By::Queue,
        Measure::ServiceLevel,
    ),
    (
        "Service level per interval",
        "A",
        By::Queue,
        Measure::ServiceLevel,
    ),
];

/// The number in "… and N corrections queued …" that `flush` prints.
fn corrections_queued(flushed: &str) -> u64 {
    flushed
        .split(" corrections")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no correction count in {flushed:?}"))
}

#[test]
fn influx_board_queries_answer_the_calls_figures() {
    let board = read_board(BOARD, OWN, STEP);

    let now_interval = past_interval(0);
    let intervals: Vec<i64> = (4..=7).map(past_interval).collect();
    let vm = Victoria::start();
    let url = format!("http://{}/write", vm.addr);
    let daemons: Vec<Daemon> = HOSTS
        .iter()
        .map(|h| Daemon::start(&config_as(h, &url, "influx", "json", true)))
        .collect();

    // The calls, shipped; then late calls in intervals already shipped: corrections.
    let mut figs = Figs::new();
    let mut sent = [0usize; 2];
    for (i, (d, host)) in daemons.iter().zip(HOSTS).enumerate() {
        let calls = make_calls(host, 300 + i as u64, &QUEUES, &intervals, 9, false);
        sent[i] += send_calls(d, &calls);
        add_calls(&mut figs, host, &calls);
        wait_settled(d, sent[i] as u64);
        flush(d);
        wait_delivered(d);
    }
    for (i, (d, host)) in daemons.iter().zip(HOSTS).enumerate() {
        let late = make_calls(
            &format!("{host}-late"),
            400 + i as u64,
            &QUEUES,
            &intervals[1..3],
            4,
            true,
        );
        sent[i] += send_calls(d, &late);
        add_calls(&mut figs, host, &late);
        wait_settled(d, sent[i] as u64);
        let flushed = flush(d);
        assert!(
            corrections_queued(&flushed) > 0,
            "{host}: the late calls made no corrections: {flushed}"
        );
        let st = wait_delivered(d);
        assert_eq!(u64_field(&st, "dead_letters"), 0, "{st}");
    }

    let at_s = now_interval / 1000;
    let step_s = INTERVAL_MS / 1000;
    let run = Run {
        vm: &vm,
        at_s,
        range: RANGE,
        interval: STEP,
        steps: Some((intervals[3] / 1000 - step_s, at_s, step_s)),
        flavor: &FLAVOR,
    };
    let hosts: Vec<String> = HOSTS.iter().map(|h| (*h).to_string()).collect();
    let selections = [
        Selection::all(&hosts, &QUEUES),
        Selection::some("pbx-b", &["support", "billing"]),
    ];

    // Wait until everything is searchable: the total offered is the calls'.
    let offered: u64 = figs.values().map(|f| f.offered).sum();
    let total = format!("sum(sum_over_time(callmetrics_offered[{RANGE}]))");
    let deadline = Instant::now() + SHIP_DEADLINE;
    loop {
        let got = vm.api(
            "/api/v1/query",
            &[
                ("query", &total),
                ("time", &at_s.to_string()),
                ("nocache", "1"),
            ],
        );
        let value = got
            .as_ref()
            .ok()
            .and_then(|d| d["result"][0]["value"][1].as_str().map(String::from));
        if value.as_deref() == Some(offered.to_string().as_str()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "VictoriaMetrics never held {offered} offered: {got:?}\nits log:\n{}",
            vm.log_tail()
        );
        thread::sleep(Duration::from_millis(200));
    }
    for host in HOSTS {
        let series = vm
            .export_series(&format!(
                r#"{{__name__="callmetrics_offered",host="{host}",correction!=""}}"#
            ))
            .expect("export");
        assert!(!series.is_empty(), "{host}: no correction series stored");
    }

    // The variables.
    for sel in &selections {
        let got = run.label_values(&variable_query(&board, "host"), sel, at_s - 86_400);
        assert_eq!(got, hosts.iter().cloned().collect());
        let queues = run.label_values(&variable_query(&board, "queue"), sel, at_s - 86_400);
        let want: BTreeSet<String> = figs
            .keys()
            .filter(|(h, ..)| sel.hosts.contains(h))
            .map(|(_, q, _)| q.clone())
            .collect();
        assert_eq!(queues, want, "queue values with host = {}", sel.host);
    }

    // Every panel query, for each selection.
    let checked = run.check_queries(&board, OWN, &figs, &selections);
    assert_eq!(checked, (COMMON.len() + OWN.len()) * selections.len());
}
