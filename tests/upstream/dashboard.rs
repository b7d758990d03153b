//! The Grafana board `dashboards/callmetrics.json` against a real `VictoriaMetrics` fed by the
//! influx sinks of two real daemons (two host ids), late calls included so corrections travel:
//! every panel query, its variables substituted, answers the figures computed here from the calls
//! sent; the variables' `label_values` queries list the hosts and queues; and the JSON holds what
//! Grafana needs to provision or import it (ids, grid, the `${datasource}` variable everywhere).
//!
//! Tolerances: counts exact; ratios (service level, ASA, abandon rate, AHT and its parts) within a
//! relative 1e-9 of the exact ratio of the calls' sums (float division only); wait percentiles
//! within one histogram bin (a factor γ ≈ 1.02) of the calls' exact wait at rank ⌈q·n⌉, the order
//! statistic `histogram_quantile` interpolates towards.

use std::collections::{BTreeMap, BTreeSet};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::calls::{interval_of, make_calls, past_interval, Call, Outcome};
use crate::drive::{config_as, flush, send_calls, u64_field, wait_delivered, wait_settled};
use crate::support::victoria::Victoria;
use crate::support::Daemon;
use crate::{INTERVAL_MS, SHIP_DEADLINE};

const BOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards/callmetrics.json");
const HOSTS: [&str; 2] = ["pbx-a", "pbx-b"];
const QUEUES: [&str; 3] = ["sales", "support", "billing"];
/// The default service-level and short-abandon thresholds every queue here uses.
const T_MS: i64 = 20_000;
const S_MS: i64 = 5_000;
/// `$__range` of the instant queries: every interval the calls touch, from the current one back.
const RANGE: &str = "3h";
/// `$__interval` (and `$__rate_interval`): the panels' minimum interval, the ship interval.
const STEP: &str = "15m";
/// The datasource reference every panel, target and variable must carry.
const DS_UID: &str = "${datasource}";
/// γ of the wait histogram's bins (docs/upstream.md).
const GAMMA: f64 = 1.0099 / 0.9901;

/// What the calls of one host add up to in one queue and interval, by the documented attribution.
#[derive(Debug, Default, Clone)]
struct Fig {
    offered: u64,
    answered: u64,
    answered_within: u64,
    abandoned: u64,
    short_abandoned: u64,
    overflow: u64,
    handled: u64,
    wait_sum: u64,
    talk: u64,
    hold: u64,
    acw: u64,
    /// Wait of every segment that left the queue.
    waits: Vec<u64>,
}

impl Fig {
    fn merge(&mut self, o: &Fig) {
        self.offered += o.offered;
        self.answered += o.answered;
        self.answered_within += o.answered_within;
        self.abandoned += o.abandoned;
        self.short_abandoned += o.short_abandoned;
        self.overflow += o.overflow;
        self.handled += o.handled;
        self.wait_sum += o.wait_sum;
        self.talk += o.talk;
        self.hold += o.hold;
        self.acw += o.acw;
        self.waits.extend(&o.waits);
    }
}

/// (host, queue, interval start) → figures.
type Figs = BTreeMap<(String, String, i64), Fig>;

fn add_calls(figs: &mut Figs, host: &str, calls: &[Call]) {
    for c in calls {
        let wait = u64::try_from(c.wait).expect("a wait is not negative");
        let leave = figs
            .entry((host.into(), c.queue.clone(), interval_of(c.leave())))
            .or_default();
        leave.offered += 1;
        leave.waits.push(wait);
        match &c.outcome {
            Outcome::Answered { .. } => {
                leave.answered += 1;
                leave.wait_sum += wait;
                leave.answered_within += u64::from(c.wait <= T_MS);
            }
            Outcome::Abandoned => {
                leave.abandoned += 1;
                leave.short_abandoned += u64::from(c.wait < S_MS);
            }
            Outcome::Overflow => leave.overflow += 1,
        }
        if let (Some(done), Outcome::Answered { talk, hold, acw }) = (c.completion(), &c.outcome) {
            let h = figs
                .entry((host.into(), c.queue.clone(), interval_of(done)))
                .or_default();
            h.handled += 1;
            h.talk += *talk as u64;
            h.hold += hold.map_or(0, |(_, len)| len) as u64;
            h.acw += acw.unwrap_or(0) as u64;
        }
    }
}

/// How a query groups its answer: one series, or one per queue or host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum By {
    All,
    Queue,
    Host,
}

/// What a query computes from the merged figures of a group.
#[derive(Debug, Clone, Copy)]
enum Measure {
    Offered,
    Answered,
    Abandoned,
    Overflow,
    ServiceLevel,
    AbandonRate,
    Asa,
    Aht,
    Talk,
    Hold,
    Acw,
    WaitQuantile(f64),
}

/// What each panel's targets must answer: (panel title, refId, grouping, measure).
const FIGURES: &[(&str, &str, By, Measure)] = &[
    ("Calls in range", "A", By::All, Measure::Offered),
    ("Calls in range", "B", By::All, Measure::Answered),
    ("Calls in range", "C", By::All, Measure::Abandoned),
    ("Calls in range", "D", By::All, Measure::Overflow),
    (
        "Service level and abandon rate",
        "A",
        By::All,
        Measure::ServiceLevel,
    ),
    (
        "Service level and abandon rate",
        "B",
        By::All,
        Measure::AbandonRate,
    ),
    ("Handle time", "A", By::All, Measure::Aht),
    ("Handle time", "B", By::All, Measure::Talk),
    ("Handle time", "C", By::All, Measure::Hold),
    ("Handle time", "D", By::All, Measure::Acw),
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
    (
        "Offered, answered, abandoned",
        "A",
        By::All,
        Measure::Offered,
    ),
    (
        "Offered, answered, abandoned",
        "B",
        By::All,
        Measure::Answered,
    ),
    (
        "Offered, answered, abandoned",
        "C",
        By::All,
        Measure::Abandoned,
    ),
    ("ASA per queue", "A", By::Queue, Measure::Asa),
    (
        "Abandon rate per queue",
        "A",
        By::Queue,
        Measure::AbandonRate,
    ),
    (
        "AHT: talk, hold, after-call work",
        "A",
        By::All,
        Measure::Talk,
    ),
    (
        "AHT: talk, hold, after-call work",
        "B",
        By::All,
        Measure::Hold,
    ),
    (
        "AHT: talk, hold, after-call work",
        "C",
        By::All,
        Measure::Acw,
    ),
    ("Wait percentiles", "A", By::All, Measure::WaitQuantile(0.5)),
    ("Wait percentiles", "B", By::All, Measure::WaitQuantile(0.9)),
    (
        "Wait percentiles",
        "C",
        By::All,
        Measure::WaitQuantile(0.95),
    ),
    (
        "Wait percentiles",
        "D",
        By::All,
        Measure::WaitQuantile(0.99),
    ),
    ("Per host", "A", By::Host, Measure::Offered),
    ("Per host", "B", By::Host, Measure::Answered),
    ("Per host", "C", By::Host, Measure::Abandoned),
    ("Per host", "D", By::Host, Measure::ServiceLevel),
    ("Per host", "E", By::Host, Measure::Asa),
    ("Per host", "F", By::Host, Measure::AbandonRate),
    ("Per host", "G", By::Host, Measure::Aht),
    ("Per host", "H", By::Host, Measure::WaitQuantile(0.9)),
];

/// What a query must answer for one group (and time).
#[derive(Debug, Clone, Copy)]
enum Want {
    /// A count: exactly.
    Exact(f64),
    /// A ratio of sums: within a relative 1e-9.
    Ratio(f64),
    /// A percentile: inside [low, high].
    Between(f64, f64),
    /// A zero denominator: no value (absent, NaN or infinite).
    Null,
}

fn ratio(num: u64, den: u64) -> Want {
    if den == 0 {
        Want::Null
    } else {
        Want::Ratio(num as f64 / den as f64)
    }
}

fn want(m: Measure, f: &Fig) -> Want {
    match m {
        Measure::Offered => Want::Exact(f.offered as f64),
        Measure::Answered => Want::Exact(f.answered as f64),
        Measure::Abandoned => Want::Exact(f.abandoned as f64),
        Measure::Overflow => Want::Exact(f.overflow as f64),
        Measure::ServiceLevel => ratio(
            f.answered_within,
            f.answered + f.abandoned - f.short_abandoned,
        ),
        Measure::AbandonRate => ratio(
            f.abandoned - f.short_abandoned,
            f.offered - f.short_abandoned,
        ),
        Measure::Asa => ratio(f.wait_sum, f.answered),
        Measure::Aht => ratio(f.talk + f.hold + f.acw, f.handled),
        Measure::Talk => ratio(f.talk, f.handled),
        Measure::Hold => ratio(f.hold, f.handled),
        Measure::Acw => ratio(f.acw, f.handled),
        Measure::WaitQuantile(q) => {
            let mut w = f.waits.clone();
            if w.is_empty() {
                return Want::Null;
            }
            w.sort_unstable();
            let n = w.len();
            let k = ((q * n as f64).ceil() as usize).clamp(1, n);
            let x = w[k - 1] as f64;
            if x == 0.0 {
                // The zero bin spans [0, 1/γ] ms.
                Want::Between(0.0, 1.0 / GAMMA + 1e-9)
            } else {
                Want::Between(x / GAMMA * (1.0 - 1e-9), x * GAMMA * (1.0 + 1e-9))
            }
        }
    }
}

fn check(what: &str, got: Option<f64>, want: Want) -> Result<(), String> {
    let ok = match (want, got) {
        (Want::Null, None) => true,
        (Want::Exact(w), Some(g)) => g == w,
        (Want::Ratio(w), Some(g)) => (g - w).abs() <= 1e-9 * w.abs().max(1e-300),
        (Want::Between(lo, hi), Some(g)) => lo <= g && g <= hi,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, want {want:?}"))
    }
}

/// One choice of the board's `host` and `queue` variables: what Grafana substitutes, and the
/// hosts and queues it selects.
struct Selection {
    host: &'static str,
    queue: &'static str,
    hosts: &'static [&'static str],
    queues: &'static [&'static str],
}

const SELECTIONS: [Selection; 2] = [
    // "All" on both: the variables' `allValue`.
    Selection {
        host: ".*",
        queue: ".*",
        hosts: &HOSTS,
        queues: &QUEUES,
    },
    // One host, two queues (Grafana's regex form of a multi-value choice).
    Selection {
        host: "pbx-b",
        queue: "(support|billing)",
        hosts: &["pbx-b"],
        queues: &["support", "billing"],
    },
];

/// The expected answer of a measure, per group, over the selected figures of `intervals` (all of
/// them merged when `per_interval` is false, keyed by interval start otherwise, else `0`).
fn expected(
    figs: &Figs,
    sel: &Selection,
    by: By,
    m: Measure,
    per_interval: bool,
) -> BTreeMap<(String, i64), Want> {
    let mut groups: BTreeMap<(String, i64), Fig> = BTreeMap::new();
    for ((host, queue, iv), f) in figs {
        if !sel.hosts.contains(&host.as_str()) || !sel.queues.contains(&queue.as_str()) {
            continue;
        }
        let key = match by {
            By::All => String::new(),
            By::Queue => queue.clone(),
            By::Host => host.clone(),
        };
        let t = if per_interval { *iv } else { 0 };
        groups.entry((key, t)).or_default().merge(f);
    }
    groups
        .iter()
        .map(|(k, f)| (k.clone(), want(m, f)))
        .collect()
}

/// A sample value as `VictoriaMetrics` writes it; NaN and infinities (a zero denominator) are
/// no value.
fn value_of(v: &Value) -> Option<f64> {
    let x: f64 = v.as_str()?.parse().ok()?;
    x.is_finite().then_some(x)
}

fn group_key(metric: &Value, by: By) -> String {
    match by {
        By::All => String::new(),
        By::Queue => metric["queue"].as_str().unwrap_or("?").into(),
        By::Host => metric["host"].as_str().unwrap_or("?").into(),
    }
}

/// Runs one query (instant at `at_s`, or over `range_s` with the step of `STEP`) and returns
/// (group, time in ms or 0) → value.
fn run(
    vm: &Victoria,
    expr: &str,
    by: By,
    at_s: i64,
    range_s: Option<(i64, i64)>,
) -> Result<BTreeMap<(String, i64), Option<f64>>, String> {
    let mut out = BTreeMap::new();
    match range_s {
        None => {
            let at = at_s.to_string();
            let data = vm.api(
                "/api/v1/query",
                &[("query", expr), ("time", &at), ("nocache", "1")],
            )?;
            for r in data["result"].as_array().ok_or("no result")? {
                let key = group_key(&r["metric"], by);
                if out.insert((key, 0), value_of(&r["value"][1])).is_some() {
                    return Err(format!("two series for one group in {data}"));
                }
            }
        }
        Some((start, end)) => {
            let (start, end) = (start.to_string(), end.to_string());
            let step = (INTERVAL_MS / 1000).to_string();
            let data = vm.api(
                "/api/v1/query_range",
                &[
                    ("query", expr),
                    ("start", &start),
                    ("end", &end),
                    ("step", &step),
                    ("nocache", "1"),
                ],
            )?;
            for r in data["result"].as_array().ok_or("no result")? {
                let key = group_key(&r["metric"], by);
                for p in r["values"].as_array().ok_or("no values")? {
                    let t = p[0].as_f64().ok_or("no time")? as i64 * 1000;
                    if out.insert((key.clone(), t), value_of(&p[1])).is_some() {
                        return Err(format!("two series for one group in {data}"));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Compares a query's answer with the expected one, group by group (and time by time).
fn compare(
    what: &str,
    got: &BTreeMap<(String, i64), Option<f64>>,
    want: &BTreeMap<(String, i64), Want>,
) -> Result<(), String> {
    if want.values().all(|w| matches!(w, Want::Null)) {
        return Err(format!("{what}: the calls give this query nothing to show"));
    }
    let keys: BTreeSet<&(String, i64)> = got.keys().chain(want.keys()).collect();
    let mut errors = Vec::new();
    for k in keys {
        let g = got.get(k).copied().flatten();
        let w = want.get(k).copied().unwrap_or(Want::Null);
        if let Err(e) = check(&format!("{what} {k:?}"), g, w) {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

fn substitute(expr: &str, sel: &Selection) -> String {
    let e = expr
        .replace("$host", sel.host)
        .replace("$queue", sel.queue)
        .replace("$__rate_interval", STEP)
        .replace("$__interval", STEP)
        .replace("$__range", RANGE);
    assert!(!e.contains('$'), "a variable left unsubstituted in {e}");
    e
}

/// Every panel, rows' nested panels included.
fn panels(board: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in board["panels"].as_array().expect("the board has panels") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

/// Every datasource reference and uid in the JSON must be the variable's (`uid` at the top is
/// the board's own).
fn check_datasources(v: &Value, path: &str, problems: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let here = format!("{path}.{k}");
                if k == "datasource" {
                    match x {
                        Value::Object(ds) => {
                            if ds.get("uid").and_then(Value::as_str) != Some(DS_UID) {
                                problems.push(format!("{here} is {x}, not uid {DS_UID}"));
                            }
                            if ds.get("type").and_then(Value::as_str) != Some("prometheus") {
                                problems.push(format!("{here} is {x}, not type prometheus"));
                            }
                        }
                        _ => problems.push(format!("{here} is {x}, not {{uid: {DS_UID}}}")),
                    }
                } else if k == "uid" && path != "$" && path != "$.datasource" {
                    if x.as_str() != Some(DS_UID) {
                        problems.push(format!("{here} is a hard-coded uid {x}"));
                    }
                }
                check_datasources(x, &here, problems);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                check_datasources(x, &format!("{path}[{i}]"), problems);
            }
        }
        _ => {}
    }
}

/// What Grafana needs: the datasource variable, `${datasource}` everywhere, unique panel ids and
/// refIds, a grid inside 24 columns without overlaps, and every target covered by [`FIGURES`].
fn check_board(board: &Value) {
    let vars = board["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no `{name}` variable"))
    };
    let ds = var("datasource");
    assert_eq!(ds["type"], "datasource", "{ds}");
    assert_eq!(ds["query"], "prometheus", "{ds}");
    for name in ["host", "queue"] {
        let v = var(name);
        assert_eq!(v["type"], "query", "{v}");
        assert!(
            v["definition"]
                .as_str()
                .is_some_and(|d| d.starts_with("label_values(")),
            "{v}"
        );
        assert_eq!(v["query"]["query"], v["definition"], "{v}");
    }

    let mut problems = Vec::new();
    check_datasources(board, "$", &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let all = panels(board);
    let ids: Vec<u64> = all.iter().map(|p| u64_field(p, "id")).collect();
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "panel ids repeat: {ids:?}");
    let mut cells = BTreeMap::new();
    for p in &all {
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            u64_field(g, "x"),
            u64_field(g, "y"),
            u64_field(g, "w"),
            u64_field(g, "h"),
        );
        assert!(
            w >= 1 && h >= 1 && x + w <= 24,
            "gridPos of {}: {g}",
            p["title"]
        );
        for cx in x..x + w {
            for cy in y..y + h {
                if let Some(other) = cells.insert((cx, cy), p["title"].clone()) {
                    panic!("panels {other} and {} overlap at ({cx}, {cy})", p["title"]);
                }
            }
        }
        assert_eq!(
            p["datasource"]["uid"], DS_UID,
            "panel {} datasource",
            p["title"]
        );
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        let refs: BTreeSet<&str> = targets
            .iter()
            .map(|t| t["refId"].as_str().expect("refId"))
            .collect();
        assert_eq!(refs.len(), targets.len(), "refIds of {}", p["title"]);
        for t in targets {
            assert_eq!(t["datasource"]["uid"], DS_UID, "{t}");
            let expr = t["expr"].as_str().expect("expr");
            let instant = t["instant"] == true;
            assert_eq!(t["range"] == true, !instant, "{t}");
            // A figure over the range is an instant query over `$__range`; over time, a range
            // query of one window per point.
            if instant {
                assert!(
                    expr.contains("[$__range]") && !expr.contains("$__interval"),
                    "{expr}"
                );
            } else {
                assert!(
                    expr.contains("[$__interval]") && !expr.contains("$__range"),
                    "{expr}"
                );
                assert_eq!(p["interval"], STEP, "minimum interval of {}", p["title"]);
            }
        }
    }
    let targets: BTreeSet<(String, String)> = all
        .iter()
        .flat_map(|p| {
            p["targets"].as_array().into_iter().flatten().map(move |t| {
                (
                    p["title"].as_str().unwrap_or("").to_string(),
                    t["refId"].as_str().unwrap_or("").to_string(),
                )
            })
        })
        .collect();
    let covered: BTreeSet<(String, String)> = FIGURES
        .iter()
        .map(|(p, r, ..)| ((*p).to_string(), (*r).to_string()))
        .collect();
    assert_eq!(
        targets, covered,
        "every target of the board, and only those, has its expected figure here"
    );
}

/// `label_values(SELECTOR, LABEL)` as Grafana runs it: the label's values on matching series.
fn label_values(vm: &Victoria, query: &str, sel: &Selection, from_s: i64) -> BTreeSet<String> {
    let inner = query
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not label_values(…): {query}"));
    let (selector, label) = inner
        .rsplit_once(',')
        .expect("label_values(selector, label)");
    let selector = substitute(selector.trim(), sel);
    let from = from_s.to_string();
    let data = vm
        .api(
            &format!("/api/v1/label/{}/values", label.trim()),
            &[("match[]", &selector), ("start", &from)],
        )
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    data.as_array()
        .expect("an array of values")
        .iter()
        .map(|v| v.as_str().expect("a string").to_string())
        .collect()
}

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
fn dashboard_queries_answer_the_calls_figures() {
    let text = std::fs::read_to_string(BOARD).expect("read dashboards/callmetrics.json");
    let board: Value = serde_json::from_str(&text).expect("the board is JSON");
    check_board(&board);

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
    // Wait until everything is searchable: the total offered is the calls'.
    let at_s = now_interval / 1000;
    let offered: u64 = figs.values().map(|f| f.offered).sum();
    let total = format!("sum(sum_over_time(callmetrics_offered[{RANGE}]))");
    let deadline = Instant::now() + SHIP_DEADLINE;
    loop {
        let got = run(&vm, &total, By::All, at_s, None);
        if matches!(&got, Ok(m) if m.get(&(String::new(), 0)) == Some(&Some(offered as f64))) {
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
    let from_s = at_s - 86_400;
    let var = |name: &str| -> String {
        board["templating"]["list"]
            .as_array()
            .and_then(|l| l.iter().find(|v| v["name"] == name))
            .and_then(|v| v["definition"].as_str())
            .expect("the variable's query")
            .to_string()
    };
    for sel in &SELECTIONS {
        let hosts = label_values(&vm, &var("host"), sel, from_s);
        assert_eq!(hosts, HOSTS.iter().map(|h| (*h).to_string()).collect());
        let queues = label_values(&vm, &var("queue"), sel, from_s);
        let want: BTreeSet<String> = figs
            .keys()
            .filter(|(h, ..)| sel.hosts.contains(&h.as_str()))
            .map(|(_, q, _)| q.clone())
            .collect();
        assert_eq!(queues, want, "queue values with host = {}", sel.host);
    }

    // Every panel query, for each selection.
    let mut failures = Vec::new();
    let mut checked = 0;
    let range = (intervals[3] / 1000 - 900, at_s);
    for p in panels(&board) {
        let title = p["title"].as_str().unwrap_or_default();
        for t in p["targets"].as_array().into_iter().flatten() {
            let r = t["refId"].as_str().unwrap_or_default();
            let &(_, _, by, m) = FIGURES
                .iter()
                .find(|(pt, rt, ..)| *pt == title && *rt == r)
                .expect("check_board covered every target");
            let over_time = t["range"] == true;
            for sel in &SELECTIONS {
                let expr = substitute(t["expr"].as_str().unwrap_or_default(), sel);
                let what = format!("{title} / {r} (host {}, queue {})", sel.host, sel.queue);
                let want = expected(&figs, sel, by, m, over_time);
                let outcome = run(&vm, &expr, by, at_s, over_time.then_some(range))
                    .and_then(|got| compare(&what, &got, &want));
                if let Err(e) = outcome {
                    failures.push(format!("{e}\n  query: {expr}"));
                }
                checked += 1;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(checked, FIGURES.len() * SELECTIONS.len());
}
