//! The interval history and `callmetrics report`, black-box: calls timestamped over the last
//! days are sent to a real daemon, closed at once by `flush`, and every report (by hour, day,
//! week and month, per queue, agent and overall, one queue alone) is compared with this file's
//! own count of the calls sent; the same after a `kill -9` and a restart; late calls into a
//! closed interval change the report by exactly what they add; a restart with shorter horizons
//! drops what is past them and keeps the rest exactly; bad input is refused naming its flag.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use jiff::civil::Date;
use jiff::ToSpan;
use serde_json::{json, Value};
use support::history_report::{
    check_row, config, day_start, flush_until, period_start, refused, report, today, zoned, Counts,
};
use support::{now_ms, Daemon, JsonConn};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
/// T and S of the default queue parameters.
const T: i64 = 20_000;
const S: i64 = 5_000;

/// A long trailing window keeps the engine's interval buckets for a week, so calls of the last
/// days are folded into buckets (and so into the history) when they arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Answered { talk: i64, acw: Option<i64> },
    Abandoned,
    Overflow,
}

#[derive(Debug, Clone)]
struct Call {
    id: String,
    queue: &'static str,
    channel: &'static str,
    agent: &'static str,
    start: i64,
    wait: i64,
    end: End,
}

impl Call {
    fn events(&self) -> Vec<Value> {
        let mut start =
            json!({"type": "start", "call_id": self.id, "queue": self.queue, "ts": self.start});
        if self.channel != "voice" {
            start["channel"] = self.channel.into();
        }
        let leave = self.start + self.wait;
        let mut out = vec![start];
        match self.end {
            End::Answered { talk, acw } => {
                out.push(
                    json!({"type": "answer", "call_id": self.id, "ts": leave, "agent": self.agent}),
                );
                out.push(json!({"type": "end", "call_id": self.id, "ts": leave + talk}));
                if let Some(acw) = acw {
                    out.push(
                        json!({"type": "wrapup", "call_id": self.id, "ts": leave + talk + acw}),
                    );
                }
            }
            End::Abandoned => out.push(
                json!({"type": "end", "call_id": self.id, "ts": leave, "reason": "abandoned"}),
            ),
            End::Overflow => out
                .push(json!({"type": "end", "call_id": self.id, "ts": leave, "reason": "timeout"})),
        }
        out
    }
}

/// Deterministic calls: `n` of them from `first` on, `step` apart (with jitter).
fn calls(prefix: &str, n: usize, first: i64, step: i64, seed: u64) -> Vec<Call> {
    let mut x = seed;
    let mut next = move |m: u64| {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (x >> 33) % m
    };
    (0..n)
        .map(|i| {
            let queue = ["support", "sales", "billing"][next(3) as usize];
            let channel = ["voice", "voice", "chat"][next(3) as usize];
            let agent = ["ann", "bob", "cy", "dee"][next(4) as usize];
            let wait = next(45_000) as i64;
            let end = match next(10) {
                0..=5 => End::Answered {
                    talk: 20_000 + next(600_000) as i64,
                    acw: (next(2) == 0).then(|| next(120_000) as i64),
                },
                6..=8 => End::Abandoned,
                _ => End::Overflow,
            };
            Call {
                id: format!("{prefix}{i}"),
                queue,
                channel,
                agent,
                start: first + i as i64 * step + next(step as u64 / 2) as i64,
                wait,
                end,
            }
        })
        .collect()
}

fn send(d: &Daemon, calls: &[Call]) {
    let mut conn = JsonConn::connect(&d.events);
    for c in calls {
        for ev in c.events() {
            let reply = conn.request(&ev.to_string());
            assert_eq!(reply["ok"], true, "{ev} → {reply}");
        }
    }
}

/// Additive counters of docs/metrics.md, as this test counts them.
/// One fact of a call: when it counts, under which keys, and what it adds.
struct Fact {
    at: i64,
    keys: Vec<(&'static str, String)>,
    add: Counts,
}

fn facts(c: &Call) -> Vec<Fact> {
    let leave = c.start + c.wait;
    let w = c.wait as u64;
    let mut keys = vec![
        ("all", "all".to_string()),
        ("queue", c.queue.to_string()),
        ("channel", c.channel.to_string()),
    ];
    let mut queue = Counts {
        offered: 1,
        wait_max_ms: w,
        ..Counts::default()
    };
    let mut out = Vec::new();
    match c.end {
        End::Answered { talk, acw } => {
            keys.push(("agent", c.agent.to_string()));
            queue.answered = 1;
            queue.answered_within = u64::from(c.wait <= T);
            queue.wait_sum_ms = w;
            let done = leave + talk + acw.unwrap_or(0);
            out.push(Fact {
                at: done,
                keys: keys.clone(),
                add: Counts {
                    handled: 1,
                    talk_sum_ms: talk as u64,
                    acw_sum_ms: acw.unwrap_or(0) as u64,
                    ..Counts::default()
                },
            });
        }
        End::Abandoned => {
            queue.abandoned = 1;
            queue.abandoned_within = u64::from(c.wait <= T);
            queue.short_abandoned = u64::from(c.wait < S);
            queue.abandon_wait_sum_ms = w;
        }
        End::Overflow => queue.overflow = 1,
    }
    out.push(Fact {
        at: leave,
        keys,
        add: queue,
    });
    out
}

/// Expected counts per (period start, key) of `dimension` for facts in `[from, to)`.
fn expected(
    calls: &[Call],
    by: &str,
    dimension: &str,
    queue: Option<&str>,
    from: i64,
    to: i64,
) -> BTreeMap<(i64, String), Counts> {
    let mut out: BTreeMap<(i64, String), Counts> = BTreeMap::new();
    for c in calls {
        if queue.is_some_and(|q| q != c.queue) {
            continue;
        }
        for f in facts(c) {
            if f.at < from || f.at >= to {
                continue;
            }
            for (kind, key) in &f.keys {
                if *kind == dimension {
                    let p = period_start(by, f.at).max(from);
                    out.entry((p, key.clone())).or_default().add(&f.add);
                }
            }
        }
    }
    out
}

/// Every row of `report` against the count of the calls: counters exact, figures within 1e-9,
/// every expected (period, key) present, the others zero.
fn check(report: &Value, want: &BTreeMap<(i64, String), Counts>, dimension: &str, what: &str) {
    let rows = report["rows"].as_array().expect("rows");
    let mut seen = BTreeSet::new();
    for row in rows {
        let key = row[dimension]
            .as_str()
            .or_else(|| (dimension == "all").then_some("all"))
            .unwrap_or_else(|| panic!("{what}: row without its {dimension}: {row}"))
            .to_string();
        let start = row["period_start_ms"].as_i64().expect("period_start_ms");
        let c = want.get(&(start, key.clone())).copied().unwrap_or_default();
        let here = format!("{what}: {key} at {}", row["period_start"]);
        check_row(row, &c, &here);
        if c.offered == 0 {
            assert!(row["wait_p50_ms"].is_null(), "{here}: quantile of nothing");
        } else {
            assert!(row["wait_p50_ms"].as_f64().is_some(), "{here}: wait_p50_ms");
        }
        assert!(seen.insert((start, key)), "{here}: a second row");
    }
    for (k, c) in want {
        assert!(seen.contains(k), "{what}: no row for {k:?} ({c:?})");
    }
}

#[test]
fn reports_equal_the_calls_sent_across_a_kill_and_late_calls_add_exactly_theirs() {
    let mut d = Daemon::start(&config(""));
    let now = now_ms();
    // Five days of calls up to two hours ago, 20 minutes apart.
    let first = now - 5 * DAY;
    let mut sent = calls("c", 5 * 72 - 6, first, 20 * MIN, 7);
    send(&d, &sent);
    flush_until(&d, sent.len() as u64, "-6d");

    let from_date = today() - 6.days();
    let (from, to) = (
        day_start(from_date),
        day_start(today().tomorrow().expect("tomorrow")),
    );
    let asks: Vec<(Vec<&str>, &str, &str, Option<&str>)> = vec![
        (vec!["--by", "hour", "--from", "-6d"], "hour", "queue", None),
        (vec!["--by", "day", "--from", "-6d"], "day", "queue", None),
        (vec!["--by", "week", "--from", "-6d"], "week", "queue", None),
        (
            vec!["--by", "month", "--from", "-6d", "--to", "today"],
            "month",
            "queue",
            None,
        ),
        (
            vec!["--by", "day", "--from", "-6d", "--queue", "support"],
            "day",
            "queue",
            Some("support"),
        ),
        (
            vec!["--by", "day", "--from", "-6d", "--by-dimension", "agent"],
            "day",
            "agent",
            None,
        ),
        (
            vec!["--by", "hour", "--from", "-6d", "--by-dimension", "channel"],
            "hour",
            "channel",
            None,
        ),
        (
            vec!["--by", "day", "--from", "-6d", "--by-dimension", "all"],
            "day",
            "all",
            None,
        ),
    ];
    let check_all = |d: &Daemon, sent: &[Call], label: &str| -> Vec<Value> {
        asks.iter()
            .map(|(args, by, dim, queue)| {
                let r = report(d, args);
                let until = r["complete_until_ms"].as_i64().expect("complete_until_ms");
                assert!(until >= now - 2 * HOUR, "{label}: complete until {until}");
                let want = expected(sent, by, dim, *queue, from, to);
                check(&r, &want, dim, &format!("{label} {args:?}"));
                if let Some(q) = queue {
                    assert!(r["rows"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|row| row["queue"] == *q));
                }
                r["rows"].clone()
            })
            .collect()
    };
    let before = check_all(&d, &sent, "first");
    // Hour rows are DST-proof local hours; a day row spans its local day.
    let day_rows = &before[1];
    let row = &day_rows[0];
    assert_eq!(row["period_start"], format!("{from_date}T00:00:00+01:00"));
    assert_eq!(row["period"], "day");

    d.kill();
    d.restart();
    let after = check_all(&d, &sent, "after kill -9");
    for (a, b) in before.iter().zip(&after) {
        let n = a.as_array().unwrap().len();
        // Rows of periods closed since may follow; the ones reported before are unchanged.
        assert_eq!(
            &b.as_array().unwrap()[..n],
            a.as_array().unwrap().as_slice()
        );
    }

    // Late calls, three days back: one interval already closed changes by exactly theirs.
    let late = calls("late", 6, now - 3 * DAY + 7 * MIN, 60_000, 11);
    send(&d, &late);
    sent.extend(late.clone());
    flush_until(&d, sent.len() as u64, "-6d");
    let late_day = period_start("day", late[0].start + late[0].wait);
    let r = report(
        &d,
        &["--by", "day", "--from", "-6d", "--by-dimension", "all"],
    );
    let rows = r["rows"].as_array().unwrap();
    for (old, new) in before[7].as_array().unwrap().iter().zip(rows) {
        let delta = new["offered"].as_u64().unwrap() - old["offered"].as_u64().unwrap();
        let want = if new["period_start_ms"] == late_day {
            6
        } else {
            0
        };
        assert_eq!(delta, want, "{}", new["period_start"]);
    }
    check_all(&d, &sent, "after late calls");

    // Bad input is refused naming the flag.
    for (args, needles) in [
        (
            vec!["report", "--from", "2026-12-05", "--to", "2026-12-01"],
            vec!["--from", "--to", "after"],
        ),
        (
            vec!["report", "--queue", "nosuch"],
            vec!["--queue", "nosuch"],
        ),
        (
            vec!["report", "--from", "2026-13-01"],
            vec!["--from", "YYYY-MM-DD"],
        ),
        (
            vec!["report", "--to", "last week"],
            vec!["--to", "YYYY-MM-DD"],
        ),
        (
            vec!["report", "--by-dimension", "agent", "--queue", "support"],
            vec!["--queue", "--by-dimension"],
        ),
        (
            vec!["report", "--hours", "business"],
            vec!["--hours business", "--calendar"],
        ),
    ] {
        refused(&d, &args, &needles);
    }
    let out = d.query(&["report", "--from", "today", "--to", "today"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = d.status();
    assert!(
        st["history"]["interval_entries"].as_u64().unwrap() > 0,
        "{st}"
    );
    d.stop();
}

#[test]
fn retention_drops_only_what_is_past_its_horizon() {
    let mut d = Daemon::start(&config(""));
    let now = now_ms();
    // Calls 5 days back to 2 hours back, 30 minutes apart.
    let sent = calls("r", 5 * 48 - 4, now - 5 * DAY, 30 * MIN, 3);
    send(&d, &sent);
    flush_until(&d, sent.len() as u64, "-6d");
    let entries = |st: &Value, what: &str| st["history"][what].as_u64().expect("entries");
    let all = d.status();

    // Distinct (interval, kind, key) and (date, kind, key) of the facts, as the history keys them.
    let keyed = |grain: &dyn Fn(i64) -> i64, from: i64| -> usize {
        let mut set = BTreeSet::new();
        for c in &sent {
            for f in facts(c) {
                let g = grain(f.at);
                if g >= from {
                    for k in &f.keys {
                        set.insert((g, k.clone()));
                    }
                }
            }
        }
        set.len()
    };
    let interval = |at: i64| at - at.rem_euclid(15 * MIN);
    let date = |at: i64| {
        i64::from(
            zoned(at)
                .date()
                .since(Date::constant(1970, 1, 1))
                .unwrap()
                .get_days(),
        )
    };
    assert_eq!(
        entries(&all, "interval_entries") as usize,
        keyed(&interval, i64::MIN)
    );
    assert_eq!(
        entries(&all, "day_entries") as usize,
        keyed(&date, i64::MIN)
    );

    // A day of intervals and three dates (today and the two before), from the next start.
    d.kill();
    d.rewrite_config(&config("[history]\nintervals_days = 1\ndaily_days = 3\n"));
    d.restart();
    d.query(&["flush"]);
    let now = now_ms();
    let st = d.status();
    let today_n = date(now);
    assert_eq!(
        entries(&st, "interval_entries") as usize,
        keyed(&interval, now - DAY),
        "{st}"
    );
    assert_eq!(
        entries(&st, "day_entries") as usize,
        keyed(&date, today_n - 2),
        "{st}"
    );

    // What is inside is kept exactly.
    let from = day_start(today() - 2.days());
    let to = day_start(today().tomorrow().unwrap());
    for dim in ["queue", "agent", "all"] {
        let r = report(&d, &["--by", "day", "--from", "-2d", "--by-dimension", dim]);
        check(
            &r,
            &expected(&sent, "day", dim, None, from, to),
            dim,
            &format!("kept days by {dim}"),
        );
    }
    let since = day_start(today());
    let r = report(&d, &["--by", "hour", "--from", "today"]);
    check(
        &r,
        &expected(&sent, "hour", "queue", None, since, to),
        "queue",
        "kept hours",
    );

    // What is past is refused, naming the flag and the setting.
    for (args, needles) in [
        (
            vec!["report", "--by", "day", "--from", "-3d"],
            vec!["--from", "history.daily_days = 3"],
        ),
        (
            vec!["report", "--by", "hour", "--from", "yesterday"],
            vec!["--by hour", "history.intervals_days = 1", "--by day"],
        ),
    ] {
        refused(&d, &args, &needles);
    }
    d.stop();
}
