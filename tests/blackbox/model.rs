//! The expected metrics rows, computed by hand from the scenario (docs/metrics.md applied to the
//! event timestamps), and their comparison with what `metrics --json` prints.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde_json::Value;

use crate::scenario::{scenario, CallSpec};
use crate::support::{Daemon, DEADLINE};
use crate::{S_MS, T_MS};

/// The counters docs/metrics.md defines, computed by hand for one row.
#[derive(Debug, Default, Clone, PartialEq)]
struct Expect {
    offered: u64,
    answered: u64,
    answered_within: u64,
    abandoned: u64,
    abandoned_within: u64,
    short_abandoned: u64,
    overflow: u64,
    handled: u64,
    wait_sum_ms: u64,
    wait_max_ms: u64,
    abandon_wait_sum_ms: u64,
    talk_sum_ms: u64,
    hold_sum_ms: u64,
    acw_sum_ms: u64,
    waiting_now: u64,
}

impl Expect {
    fn counters(&self) -> [(&'static str, u64); 14] {
        [
            ("offered", self.offered),
            ("answered", self.answered),
            ("answered_within", self.answered_within),
            ("abandoned", self.abandoned),
            ("abandoned_within", self.abandoned_within),
            ("short_abandoned", self.short_abandoned),
            ("overflow", self.overflow),
            ("handled", self.handled),
            ("wait_sum_ms", self.wait_sum_ms),
            ("wait_max_ms", self.wait_max_ms),
            ("abandon_wait_sum_ms", self.abandon_wait_sum_ms),
            ("talk_sum_ms", self.talk_sum_ms),
            ("hold_sum_ms", self.hold_sum_ms),
            ("acw_sum_ms", self.acw_sum_ms),
        ]
    }

    /// Derived figures; `None` where the denominator is zero.
    fn figures(&self) -> [(&'static str, Option<f64>); 5] {
        let r = |n: f64, d: f64| (d > 0.0).then(|| n / d);
        let f = |v: u64| v as f64;
        let handle = f(self.talk_sum_ms + self.hold_sum_ms + self.acw_sum_ms);
        [
            ("asa_ms", r(f(self.wait_sum_ms), f(self.answered))),
            ("aht_ms", r(handle, f(self.handled))),
            (
                "avg_abandon_ms",
                r(f(self.abandon_wait_sum_ms), f(self.abandoned)),
            ),
            (
                "abandon_rate",
                r(
                    f(self.abandoned) - f(self.short_abandoned),
                    f(self.offered) - f(self.short_abandoned),
                ),
            ),
            // The `offered` formula: A≤T / (A + Ab − S).
            (
                "service_level",
                r(
                    f(self.answered_within),
                    f(self.answered + self.abandoned) - f(self.short_abandoned),
                ),
            ),
        ]
    }
}

/// Expected rows of `metrics --by BY` (`queue`, `agent` or `all`), keyed by the row's key.
fn expected(calls: &[CallSpec], by: &str) -> BTreeMap<String, Expect> {
    let mut rows: BTreeMap<String, Expect> = BTreeMap::new();
    for c in calls {
        for sg in &c.segs {
            let keys: Vec<String> = match by {
                "queue" => vec![sg.queue.to_string()],
                "all" => vec!["all".to_string()],
                "agent" => sg.answer.map(|(_, a)| a.to_string()).into_iter().collect(),
                other => panic!("no model for --by {other}"),
            };
            for key in keys {
                let e = rows.entry(key).or_default();
                let Some((end, reason)) = sg.end else {
                    if sg.answer.is_none() {
                        e.waiting_now += 1;
                    }
                    continue;
                };
                // The segment left the queue at its answer, else at its end.
                let leave = sg.answer.map_or(end, |(t, _)| t);
                let wait = (leave - sg.start) as u64;
                e.offered += 1;
                e.wait_max_ms = e.wait_max_ms.max(wait);
                match (sg.answer, reason) {
                    (Some((answer, _)), _) => {
                        e.answered += 1;
                        e.answered_within += u64::from(wait <= T_MS);
                        e.wait_sum_ms += wait;
                        let hold: i64 = sg.holds.iter().map(|(h, r)| r - h).sum();
                        e.handled += 1;
                        e.hold_sum_ms += hold as u64;
                        e.talk_sum_ms += (end - answer - hold) as u64;
                        e.acw_sum_ms += sg.wrapup.map_or(0, |w| (w - end) as u64);
                    }
                    (None, None | Some("abandoned" | "completed")) => {
                        e.abandoned += 1;
                        e.abandoned_within += u64::from(wait <= T_MS);
                        e.short_abandoned += u64::from(wait < S_MS);
                        e.abandon_wait_sum_ms += wait;
                    }
                    (None, Some(_)) => e.overflow += 1,
                }
            }
        }
    }
    rows
}

/// The key of a metrics row of dimension `by` (`all` rows have none).
fn row_key(row: &Value, by: &str) -> String {
    if by == "all" {
        "all".to_string()
    } else {
        row[by]
            .as_str()
            .unwrap_or_else(|| panic!("row without `{by}`: {row}"))
            .to_string()
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Compares `metrics --window 1h --by BY` with the model; `Err` describes every difference.
fn compare(rows: &[Value], by: &str, want: &BTreeMap<String, Expect>) -> Result<(), String> {
    let mut diffs = Vec::new();
    let got: BTreeMap<String, &Value> = rows.iter().map(|r| (row_key(r, by), r)).collect();
    if got.len() != rows.len() {
        diffs.push(format!("duplicate keys among {} rows", rows.len()));
    }
    let got_keys: BTreeSet<&String> = got.keys().collect();
    let want_keys: BTreeSet<&String> = want.keys().collect();
    if got_keys != want_keys {
        diffs.push(format!("row keys {got_keys:?}, expected {want_keys:?}"));
    }
    for (key, e) in want {
        let Some(row) = got.get(key) else { continue };
        let mut check = |name: &str, ok: bool, want: String| {
            if !ok {
                diffs.push(format!(
                    "{by} {key}: {name} = {}, expected {want}",
                    row[name]
                ));
            }
        };
        check("window", row["window"] == "1h", "\"1h\"".into());
        check("dimension", row["dimension"] == by, format!("{by:?}"));
        for (name, v) in e.counters() {
            check(name, row[name].as_u64() == Some(v), v.to_string());
        }
        for (name, v) in e.figures() {
            let ok = match (v, &row[name]) {
                (None, Value::Null) => true,
                (Some(v), got) => got.as_f64().is_some_and(|g| close(g, v)),
                (None, _) => false,
            };
            check(name, ok, format!("{v:?}"));
        }
        // The default formula's value is also listed under its name among all formulas.
        let sl = &row["service_level"];
        check(
            "service_levels.offered",
            row["service_levels"]["offered"] == *sl,
            sl.to_string(),
        );
        if by == "queue" {
            check(
                "threshold_ms",
                row["threshold_ms"].as_u64() == Some(T_MS),
                T_MS.to_string(),
            );
            check(
                "short_abandon_ms",
                row["short_abandon_ms"].as_u64() == Some(S_MS),
                S_MS.to_string(),
            );
            check("formula", row["formula"] == "offered", "\"offered\"".into());
        }
        if by != "agent" {
            check(
                "waiting_now",
                row["waiting_now"].as_u64() == Some(e.waiting_now),
                e.waiting_now.to_string(),
            );
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("\n"))
    }
}

/// Polls `metrics --json --window 1h --by BY` until it equals the model (at most [`DEADLINE`]).
fn assert_metrics(d: &Daemon, calls: &[CallSpec], by: &str) -> Vec<Value> {
    let want = expected(calls, by);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let rows = d.metrics("1h", by);
        match compare(&rows, by, &want) {
            Ok(()) => return rows,
            Err(diff) if Instant::now() >= deadline => panic!(
                "metrics --by {by} differ from the model:\n{diff}\nrows: {}",
                serde_json::to_string_pretty(&rows).unwrap_or_default()
            ),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
}

/// Checks the model by queue, overall and by agent; returns the rows (queue, all, agent).
pub fn assert_all_metrics(d: &Daemon, calls: &[CallSpec]) -> Vec<Vec<Value>> {
    ["queue", "all", "agent"]
        .iter()
        .map(|by| assert_metrics(d, calls, by))
        .collect()
}

/// Sanity of the model itself: the scenario covers what the test claims to cover.
#[test]
fn the_model_covers_every_outcome() {
    let q = expected(&scenario(), "queue");
    let support = &q["support"];
    let sales = &q["sales"];
    assert_eq!(support.short_abandoned, 1);
    assert_eq!(support.abandoned, 3);
    assert_eq!(support.overflow, 1);
    assert_eq!(support.waiting_now, 1);
    assert_eq!(sales.overflow, 1);
    assert_eq!(sales.answered_within, 2, "wait = T counts as within");
    let all = &expected(&scenario(), "all")["all"];
    assert_eq!(all.offered, 12, "a transfer is two offered segments");
    assert_eq!(all.offered, all.answered + all.abandoned + all.overflow);
}

/// `metrics` rows with the figures that move with the clock taken out.
pub fn stable(rows: &[Value]) -> Vec<Value> {
    rows.iter()
        .map(|r| {
            let mut r = r.clone();
            if let Some(m) = r.as_object_mut() {
                m.remove("longest_wait_now_ms");
            }
            r
        })
        .collect()
}
