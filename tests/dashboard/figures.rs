//! What both boards' checks share: the figures of the calls per host, queue and interval (by the
//! documented attribution, computed here from the calls, not by the agent), what each panel query
//! must answer and with which tolerance, running a query on `VictoriaMetrics`, and the checks of
//! the board's JSON.
//!
//! Tolerances: counts exact; ratios (service level, ASA, abandon rate, AHT and its parts) within a
//! relative 1e-9 of the exact ratio of the calls' sums (float division and, for seconds, the
//! daemon's ms → s conversion only); wait percentiles inside the histogram bucket that holds the
//! calls' exact wait at rank ⌈q·n⌉, the order statistic `histogram_quantile` interpolates in.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::calls::{interval_of, Call, Outcome};
use crate::drive::u64_field;
use crate::support::victoria::Victoria;

/// The default service-level and short-abandon thresholds every queue here uses.
const T_MS: i64 = 20_000;
const S_MS: i64 = 5_000;
/// The default service-level target.
const TARGET: f64 = 0.8;
/// The datasource reference every panel, target and variable must carry.
const DS_UID: &str = "${datasource}";

/// What the calls of one host add up to in one queue and interval.
#[derive(Debug, Default, Clone)]
pub struct Fig {
    pub offered: u64,
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
    /// Wait of every segment that left the queue, in ms.
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

/// (host, queue, interval start) → figures. The host is the board's host label: the influx
/// sink's `host`, or the scrape's `instance`.
pub type Figs = BTreeMap<(String, String, i64), Fig>;

/// Adds `calls` sent to `host`: queue figures where a call left the queue, handle figures where
/// it completed.
pub fn add_calls(figs: &mut Figs, host: &str, calls: &[Call]) {
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
pub enum By {
    All,
    Queue,
    Host,
}

/// What a query computes from the merged figures of a group.
#[derive(Debug, Clone, Copy)]
pub enum Measure {
    Offered,
    Answered,
    Abandoned,
    Overflow,
    ServiceLevel,
    /// Service level minus the queue's target (the default, 80 %, for every queue here).
    TargetMargin,
    AbandonRate,
    Asa,
    Aht,
    Talk,
    Hold,
    Acw,
    WaitQuantile(f64),
}

/// What each panel's targets must answer: (panel title, refId, grouping, measure).
pub type FigureTable = [(&'static str, &'static str, By, Measure)];

/// The panels both boards have, and what their targets must answer.
pub const COMMON: &FigureTable = &[
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

/// The row of `table` or [`COMMON`] for a panel's target.
fn figure(table: &FigureTable, title: &str, r: &str) -> Option<(By, Measure)> {
    COMMON
        .iter()
        .chain(table)
        .find(|(pt, rt, ..)| *pt == title && *rt == r)
        .map(|&(_, _, by, m)| (by, m))
}

/// How a board's database holds durations and the wait histogram.
pub struct Flavor {
    /// Milliseconds per unit of the board's durations (1 for ms, 1000 for seconds).
    pub unit_ms: f64,
    /// The upper bounds of the wait histogram's buckets in ms, ascending, for a value `v`:
    /// (lower, upper] of the bucket holding it.
    pub bucket_of: fn(f64) -> (f64, f64),
    /// The label naming the host (`host`, or `instance` for a scrape).
    pub host_label: &'static str,
}

/// What a query must answer for one group (and time).
#[derive(Debug, Clone, Copy)]
pub enum Want {
    /// A count: exactly.
    Exact(f64),
    /// A ratio of sums: within a relative 1e-9.
    Ratio(f64),
    /// A percentile: inside [low, high].
    Between(f64, f64),
    /// A zero denominator: no value (absent, NaN or infinite).
    Null,
}

fn ratio(num: f64, den: u64) -> Want {
    if den == 0 {
        Want::Null
    } else {
        Want::Ratio(num / den as f64)
    }
}

fn want(m: Measure, f: &Fig, flavor: &Flavor) -> Want {
    let ms = |v: u64| v as f64 / flavor.unit_ms;
    let sl = || {
        ratio(
            f.answered_within as f64,
            f.answered + f.abandoned - f.short_abandoned,
        )
    };
    match m {
        Measure::Offered => Want::Exact(f.offered as f64),
        Measure::Answered => Want::Exact(f.answered as f64),
        Measure::Abandoned => Want::Exact(f.abandoned as f64),
        Measure::Overflow => Want::Exact(f.overflow as f64),
        Measure::ServiceLevel => sl(),
        Measure::TargetMargin => match sl() {
            Want::Ratio(r) => Want::Ratio(r - TARGET),
            other => other,
        },
        Measure::AbandonRate => ratio(
            (f.abandoned - f.short_abandoned) as f64,
            f.offered - f.short_abandoned,
        ),
        Measure::Asa => ratio(ms(f.wait_sum), f.answered),
        Measure::Aht => ratio(ms(f.talk + f.hold + f.acw), f.handled),
        Measure::Talk => ratio(ms(f.talk), f.handled),
        Measure::Hold => ratio(ms(f.hold), f.handled),
        Measure::Acw => ratio(ms(f.acw), f.handled),
        Measure::WaitQuantile(q) => {
            let mut w = f.waits.clone();
            if w.is_empty() {
                return Want::Null;
            }
            w.sort_unstable();
            let n = w.len();
            let k = ((q * n as f64).ceil() as usize).clamp(1, n);
            let (lo, hi) = (flavor.bucket_of)(w[k - 1] as f64);
            Want::Between(
                lo / flavor.unit_ms * (1.0 - 1e-9),
                hi / flavor.unit_ms * (1.0 + 1e-9),
            )
        }
    }
}

fn check(what: &str, got: Option<f64>, want: Want) -> Result<(), String> {
    let ok = match (want, got) {
        (Want::Null, None) => true,
        (Want::Exact(w), Some(g)) => g == w,
        (Want::Ratio(w), Some(g)) => (g - w).abs() <= 1e-9 * w.abs().max(1e-12),
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
pub struct Selection {
    pub host: String,
    pub queue: String,
    pub hosts: Vec<String>,
    pub queues: Vec<String>,
}

impl Selection {
    /// "All" on both: the variables' `allValue`.
    pub fn all(hosts: &[String], queues: &[&str]) -> Selection {
        Selection {
            host: ".*".into(),
            queue: ".*".into(),
            hosts: hosts.to_vec(),
            queues: queues.iter().map(|q| (*q).to_string()).collect(),
        }
    }

    /// One host and several queues, in Grafana's regex form of a multi-value choice.
    pub fn some(host: &str, queues: &[&str]) -> Selection {
        Selection {
            host: host.into(),
            queue: format!("({})", queues.join("|")),
            hosts: vec![host.into()],
            queues: queues.iter().map(|q| (*q).to_string()).collect(),
        }
    }

    /// The expression with the variables substituted: this selection, and the windows.
    fn substitute(&self, expr: &str, range: &str, interval: &str) -> String {
        let e = expr
            .replace("$host", &self.host)
            .replace("$queue", &self.queue)
            .replace("$__rate_interval", interval)
            .replace("$__interval", interval)
            .replace("$__range", range);
        assert!(!e.contains('$'), "a variable left unsubstituted in {e}");
        e
    }
}

/// The expected answer of a measure, per group: all intervals merged (time key 0), or per
/// interval start.
fn expected(
    figs: &Figs,
    sel: &Selection,
    (by, m): (By, Measure),
    per_interval: bool,
    flavor: &Flavor,
) -> BTreeMap<(String, i64), Want> {
    let mut groups: BTreeMap<(String, i64), Fig> = BTreeMap::new();
    for ((host, queue, iv), f) in figs {
        if !sel.hosts.contains(host) || !sel.queues.contains(queue) {
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
        .map(|(k, f)| (k.clone(), want(m, f, flavor)))
        .collect()
}

/// A sample value as `VictoriaMetrics` writes it; NaN and infinities (a zero denominator) are
/// no value.
fn value_of(v: &Value) -> Option<f64> {
    let x: f64 = v.as_str()?.parse().ok()?;
    x.is_finite().then_some(x)
}

/// An answer: (group, time in ms, or 0 for an instant query) → value.
type Answer = BTreeMap<(String, i64), Option<f64>>;

/// When and over what a board's queries run.
pub struct Run<'a> {
    pub vm: &'a Victoria,
    /// The instant queries' time, epoch seconds.
    pub at_s: i64,
    /// `$__range`.
    pub range: &'a str,
    /// `$__interval` and `$__rate_interval`.
    pub interval: &'a str,
    /// A range query's start, end and step, epoch seconds; `None` runs range panels' queries
    /// as instant queries too (one window, `$__interval`, ending at `at_s`).
    pub steps: Option<(i64, i64, i64)>,
    pub flavor: &'a Flavor,
}

impl Run<'_> {
    fn group_key(&self, metric: &Value, by: By) -> String {
        let label = match by {
            By::All => return String::new(),
            By::Queue => "queue",
            By::Host => self.flavor.host_label,
        };
        metric[label].as_str().unwrap_or("?").into()
    }

    /// Runs one query, instant or over `steps`.
    fn query(&self, expr: &str, by: By, over_time: bool) -> Result<Answer, String> {
        let mut out = Answer::new();
        let two = |data: &Value| format!("two series for one group in {data}");
        match self.steps.filter(|_| over_time) {
            None => {
                let at = self.at_s.to_string();
                let data = self.vm.api(
                    "/api/v1/query",
                    &[("query", expr), ("time", &at), ("nocache", "1")],
                )?;
                for r in data["result"].as_array().ok_or("no result")? {
                    let key = self.group_key(&r["metric"], by);
                    if out.insert((key, 0), value_of(&r["value"][1])).is_some() {
                        return Err(two(&data));
                    }
                }
            }
            Some((start, end, step)) => {
                let (start, end, step) = (start.to_string(), end.to_string(), step.to_string());
                let data = self.vm.api(
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
                    let key = self.group_key(&r["metric"], by);
                    for p in r["values"].as_array().ok_or("no values")? {
                        let t = p[0].as_i64().ok_or("no time")? * 1000;
                        if out.insert((key.clone(), t), value_of(&p[1])).is_some() {
                            return Err(two(&data));
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every panel query of `board`, for each selection, against the figures; returns the
    /// number of queries checked, or every mismatch.
    pub fn check_queries(
        &self,
        board: &Value,
        table: &FigureTable,
        figs: &Figs,
        selections: &[Selection],
    ) -> usize {
        let mut failures = Vec::new();
        let mut checked = 0;
        for p in panels(board) {
            let title = p["title"].as_str().unwrap_or_default();
            for t in p["targets"].as_array().into_iter().flatten() {
                let r = t["refId"].as_str().unwrap_or_default();
                let (by, m) = figure(table, title, r).expect("read_board covered every target");
                let over_time = t["range"] == true;
                for sel in selections {
                    let expr = sel.substitute(
                        t["expr"].as_str().unwrap_or_default(),
                        self.range,
                        self.interval,
                    );
                    let what = format!("{title} / {r} (host {}, queue {})", sel.host, sel.queue);
                    let per_interval = over_time && self.steps.is_some();
                    let want = expected(figs, sel, (by, m), per_interval, self.flavor);
                    let outcome = self
                        .query(&expr, by, over_time)
                        .and_then(|got| compare(&what, &got, &want));
                    if let Err(e) = outcome {
                        failures.push(format!("{e}\n  query: {expr}"));
                    }
                    checked += 1;
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        checked
    }

    /// `label_values(SELECTOR, LABEL)` as Grafana runs it: the label's values on matching series
    /// since `from_s`.
    pub fn label_values(&self, query: &str, sel: &Selection, from_s: i64) -> BTreeSet<String> {
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("not label_values(…): {query}"));
        let (selector, label) = inner
            .rsplit_once(',')
            .expect("label_values(selector, label)");
        let selector = sel.substitute(selector.trim(), self.range, self.interval);
        let from = from_s.to_string();
        let data = self
            .vm
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
}

/// Compares a query's answer with the expected one, group by group (and time by time).
fn compare(what: &str, got: &Answer, want: &BTreeMap<(String, i64), Want>) -> Result<(), String> {
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

/// The query of the board's variable `name`.
pub fn variable_query(board: &Value, name: &str) -> String {
    board["templating"]["list"]
        .as_array()
        .and_then(|l| l.iter().find(|v| v["name"] == name))
        .and_then(|v| v["definition"].as_str())
        .unwrap_or_else(|| panic!("no query for the variable `{name}`"))
        .to_string()
}

/// Every datasource reference and uid in the JSON must be the variable's (the `uid` at the top
/// is the board's own).
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
                } else if k == "uid" && path != "$" && x.as_str() != Some(DS_UID) {
                    problems.push(format!("{here} is a hard-coded uid {x}"));
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

/// Reads a board and checks what Grafana needs: the datasource variable and the `host` and
/// `queue` variables, `${datasource}` everywhere, unique panel ids and refIds, a grid inside 24
/// columns without overlaps, windows that match the query type (`$__range` for instant queries,
/// `$__interval` with the panel's minimum `min_interval` for range queries), and every target
/// covered by [`COMMON`] and `table`, and only those.
pub fn read_board(file: &str, table: &FigureTable, min_interval: &str) -> Value {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("read {file}: {e}"));
    let board: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} is not JSON: {e}"));
    let vars = board["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("{file}: no `{name}` variable"))
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
    check_datasources(&board, "$", &mut problems);
    assert!(problems.is_empty(), "{file}:\n{}", problems.join("\n"));

    let all = panels(&board);
    let ids: Vec<u64> = all.iter().map(|p| u64_field(p, "id")).collect();
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "panel ids repeat: {ids:?}");
    let mut cells = BTreeMap::new();
    let mut targets = BTreeSet::new();
    for p in &all {
        let title = p["title"].as_str().expect("a title").to_string();
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            u64_field(g, "x"),
            u64_field(g, "y"),
            u64_field(g, "w"),
            u64_field(g, "h"),
        );
        assert!(w >= 1 && h >= 1 && x + w <= 24, "gridPos of {title}: {g}");
        for cx in x..x + w {
            for cy in y..y + h {
                if let Some(other) = cells.insert((cx, cy), title.clone()) {
                    panic!("panels {other} and {title} overlap at ({cx}, {cy})");
                }
            }
        }
        assert_eq!(p["datasource"]["uid"], DS_UID, "panel {title} datasource");
        let list = p["targets"].as_array().expect("targets");
        assert!(!list.is_empty(), "panel {title} has no query");
        for t in list {
            let r = t["refId"].as_str().expect("refId").to_string();
            assert!(
                targets.insert((title.clone(), r)),
                "{title}: a refId repeats"
            );
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
                assert_eq!(p["interval"], min_interval, "minimum interval of {title}");
            }
        }
    }
    let covered: BTreeSet<(String, String)> = COMMON
        .iter()
        .chain(table)
        .map(|(p, r, ..)| ((*p).to_string(), (*r).to_string()))
        .collect();
    assert_eq!(
        targets, covered,
        "every target of the board, and only those, has its expected figure here"
    );
    board
}
