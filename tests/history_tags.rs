//! `callmetrics report --by-dimension tag`, black-box: calls tagged `tier = gold` or `silver`
//! on their `start` (and some without the tag, one with it on its `end` only) are sent to a real
//! daemon whose config names `tier` in `history.tag_dimensions`, closed at once by `flush`, and
//! the report by hour and by day is compared with this file's own count of the calls sent; the
//! same after a `kill -9`, with a call left open across it that keeps its tier; the CSV and the
//! table name the tag keys; bad input, and tag rows without the setting, are refused naming
//! the flag or the setting.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use jiff::ToSpan;
use serde_json::{json, Value};
use support::history_report::{
    check_row, config, day_start, flush_until, period_start, refused, report, today, Counts,
};
use support::{now_ms, Daemon, JsonConn};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
/// T and S of the default queue parameters, which tag rows are judged by.
const T: i64 = 20_000;
const S: i64 = 5_000;

/// A long trailing window keeps the engine's interval buckets for a week, so calls of the last
/// days are folded into buckets (and so into the history) when they arrive.
const TAGGED: &str = "[history]\ntag_dimensions = [\"tier\"]\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Answered { talk: i64, acw: i64 },
    Abandoned,
    Overflow,
}

#[derive(Debug, Clone)]
struct Call {
    id: String,
    /// The tier its `start` carries.
    tier: Option<&'static str>,
    /// A tier carried by its `end` only: counts under no tag.
    end_tier: Option<&'static str>,
    start: i64,
    wait: i64,
    end: End,
}

impl Call {
    fn start_event(&self) -> Value {
        let mut ev =
            json!({"type": "start", "call_id": self.id, "queue": "support", "ts": self.start});
        if let Some(t) = self.tier {
            // `lang` is not a tag dimension: it is dropped.
            ev["tags"] = json!({"tier": t, "lang": "fr"});
        }
        ev
    }

    fn rest_events(&self) -> Vec<Value> {
        let leave = self.start + self.wait;
        let mut out = Vec::new();
        let mut end = match self.end {
            End::Answered { talk, acw } => {
                out.push(
                    json!({"type": "answer", "call_id": self.id, "ts": leave, "agent": "ann"}),
                );
                let end = json!({"type": "end", "call_id": self.id, "ts": leave + talk});
                if acw > 0 {
                    out.push(end);
                    out.push(
                        json!({"type": "wrapup", "call_id": self.id, "ts": leave + talk + acw}),
                    );
                    return out;
                }
                end
            }
            End::Abandoned => {
                json!({"type": "end", "call_id": self.id, "ts": leave, "reason": "abandoned"})
            }
            End::Overflow => {
                json!({"type": "end", "call_id": self.id, "ts": leave, "reason": "timeout"})
            }
        };
        if let Some(t) = self.end_tier {
            end["tags"] = json!({ "tier": t });
        }
        out.push(end);
        out
    }
}

/// Deterministic calls: `n` of them from `first` on, `step` apart (with jitter); a third gold,
/// a third silver, a third without the tag (every other one of those with a tier on its end).
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
            let tier = [Some("gold"), Some("silver"), None][i % 3];
            let wait = next(45_000) as i64;
            let end = match next(10) {
                0..=5 => End::Answered {
                    talk: 20_000 + next(600_000) as i64,
                    acw: if next(2) == 0 {
                        next(120_000) as i64 + 1
                    } else {
                        0
                    },
                },
                6..=8 => End::Abandoned,
                _ => End::Overflow,
            };
            Call {
                id: format!("{prefix}{i}"),
                tier,
                end_tier: (tier.is_none() && i % 2 == 0).then_some("gold"),
                start: first + i as i64 * step + next(step as u64 / 2) as i64,
                wait,
                end,
            }
        })
        .collect()
}

fn send_events(conn: &mut JsonConn, events: &[Value]) {
    for ev in events {
        let reply = conn.request(&ev.to_string());
        assert_eq!(reply["ok"], true, "{ev} → {reply}");
    }
}

fn send(d: &Daemon, calls: &[Call]) {
    let mut conn = JsonConn::connect(&d.events);
    for c in calls {
        send_events(&mut conn, &[c.start_event()]);
        send_events(&mut conn, &c.rest_events());
    }
}

/// Additive counters of docs/metrics.md, as this test counts them.
/// What a call adds and when: its queue facts when it leaves the queue, its handling when it
/// completes (end, or wrap-up).
fn facts(c: &Call) -> Vec<(i64, Counts)> {
    let leave = c.start + c.wait;
    let w = c.wait as u64;
    let mut queue = Counts {
        offered: 1,
        wait_max_ms: w,
        ..Counts::default()
    };
    let mut out = Vec::new();
    match c.end {
        End::Answered { talk, acw } => {
            queue.answered = 1;
            queue.answered_within = u64::from(c.wait <= T);
            queue.wait_sum_ms = w;
            out.push((
                leave + talk + acw,
                Counts {
                    handled: 1,
                    talk_sum_ms: talk as u64,
                    acw_sum_ms: acw as u64,
                    ..Counts::default()
                },
            ));
        }
        End::Abandoned => {
            queue.abandoned = 1;
            queue.abandoned_within = u64::from(c.wait <= T);
            queue.short_abandoned = u64::from(c.wait < S);
            queue.abandon_wait_sum_ms = w;
        }
        End::Overflow => queue.overflow = 1,
    }
    out.push((leave, queue));
    out
}

/// Expected counts per (period start, `tier=…` key) for facts in `[from, to)`: only calls whose
/// `start` carried the tier.
fn expected(calls: &[Call], by: &str, from: i64, to: i64) -> BTreeMap<(i64, String), Counts> {
    let mut out: BTreeMap<(i64, String), Counts> = BTreeMap::new();
    for c in calls {
        let Some(tier) = c.tier else { continue };
        for (at, add) in facts(c) {
            if at < from || at >= to {
                continue;
            }
            let p = period_start(by, at).max(from);
            out.entry((p, format!("tier={tier}")))
                .or_default()
                .add(&add);
        }
    }
    out
}

/// Every row of a tag report against the count of the calls: counters exact, figures within
/// 1e-9, every expected (period, key) present, the others zero; returns the keys seen.
fn check(report: &Value, want: &BTreeMap<(i64, String), Counts>, what: &str) -> BTreeSet<String> {
    assert_eq!(report["dimension"], "tag", "{what}");
    assert_eq!(report["tags"], json!(["tier"]), "{what}");
    let rows = report["rows"].as_array().expect("rows");
    let mut seen = BTreeSet::new();
    for row in rows {
        assert_eq!(row["dimension"], "tag", "{what}: {row}");
        let key = row["tag"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: row without its tag: {row}"))
            .to_string();
        let start = row["period_start_ms"].as_i64().expect("period_start_ms");
        let c = want.get(&(start, key.clone())).copied().unwrap_or_default();
        let here = format!("{what}: {key} at {}", row["period_start"]);
        check_row(row, &c, &here);
        assert!(seen.insert((start, key)), "{here}: a second row");
    }
    for (k, c) in want {
        assert!(seen.contains(k), "{what}: no row for {k:?} ({c:?})");
    }
    seen.into_iter().map(|(_, k)| k).collect()
}

#[test]
fn tag_reports_equal_the_tagged_calls_sent_across_a_kill_with_a_call_open() {
    let mut d = Daemon::start(&config(TAGGED));
    let now = now_ms();
    // Two and a half days of calls up to two hours ago, 20 minutes apart.
    let first = now - 5 * DAY / 2;
    let mut sent = calls("c", 5 * 36 - 6, first, 20 * MIN, 5);
    send(&d, &sent);
    flush_until(&d, sent.len() as u64, "-3d");

    let (from, to) = (
        day_start(today() - 3.days()),
        day_start(today().tomorrow().expect("tomorrow")),
    );
    let check_all = |d: &Daemon, sent: &[Call], label: &str| -> Vec<Value> {
        ["hour", "day"]
            .into_iter()
            .flat_map(|by| {
                let all = report(d, &["--by", by, "--from", "-3d", "--by-dimension", "tag"]);
                let one = report(
                    d,
                    &[
                        "--by",
                        by,
                        "--from",
                        "-3d",
                        "--by-dimension",
                        "tag",
                        "--tag",
                        "tier",
                    ],
                );
                let want = expected(sent, by, from, to);
                let keys = check(&all, &want, &format!("{label} by {by}"));
                // Gold and silver only: neither the untagged calls, nor a tier on an end, nor
                // the `lang` tag make a key.
                assert_eq!(
                    keys,
                    BTreeSet::from(["tier=gold".to_string(), "tier=silver".to_string()]),
                    "{label} by {by}"
                );
                assert_eq!(one["rows"], all["rows"], "{label} by {by}: --tag tier");
                [all["rows"].clone()]
            })
            .collect()
    };
    let before = check_all(&d, &sent, "first");
    // The engine holds the two tag keys, and moved nothing to tier=(other).
    let st = d.status();
    assert_eq!(st["engine"]["keys"]["tag"], 2, "{st}");
    assert!(st["engine"]["overflowed"].get("tag").is_none(), "{st}");
    // Tag rows hold what the tagged calls hold: less than every call, by the untagged ones.
    let untagged = sent.iter().filter(|c| c.tier.is_none()).count() as u64;
    let total = |r: &Value| -> u64 {
        r["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r["offered"].as_u64().unwrap_or(0))
            .sum()
    };
    let tags_day = report(
        &d,
        &["--by", "day", "--from", "-3d", "--by-dimension", "tag"],
    );
    let all_day = report(
        &d,
        &["--by", "day", "--from", "-3d", "--by-dimension", "all"],
    );
    assert_eq!(total(&tags_day) + untagged, total(&all_day));
    assert!(untagged > 0 && total(&tags_day) > 0);

    // A gold call left open (waiting since 90 minutes ago) across a kill -9: it ends after the
    // restart, and counts under its tier.
    let open = Call {
        id: "open".into(),
        tier: Some("gold"),
        end_tier: None,
        start: now - 90 * MIN,
        wait: 40_000,
        end: End::Abandoned,
    };
    send_events(&mut JsonConn::connect(&d.events), &[open.start_event()]);
    d.kill();
    d.restart();
    let after = check_all(&d, &sent, "after kill -9");
    for (a, b) in before.iter().zip(&after) {
        let n = a.as_array().expect("rows").len();
        // Rows of periods closed since may follow; the ones reported before are unchanged.
        assert_eq!(
            &b.as_array().expect("rows")[..n],
            a.as_array().expect("rows").as_slice()
        );
    }
    send_events(&mut JsonConn::connect(&d.events), &open.rest_events());
    sent.push(open);
    flush_until(&d, sent.len() as u64, "-3d");
    check_all(&d, &sent, "after the open call ended");

    // CSV and table name the tag keys.
    let csv = d.query(&["report", "--csv", "--from", "-3d", "--by-dimension", "tag"]);
    assert!(
        csv.status.success(),
        "{}",
        String::from_utf8_lossy(&csv.stderr)
    );
    let csv = String::from_utf8_lossy(&csv.stdout).to_string();
    let header: Vec<&str> = csv.lines().next().expect("header").split(',').collect();
    let col = header
        .iter()
        .position(|h| *h == "tag")
        .expect("a tag column");
    let keys: BTreeSet<&str> = csv
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(col))
        .collect();
    assert_eq!(keys, BTreeSet::from(["tier=gold", "tier=silver"]), "{csv}");
    let table = d.query(&["report", "--from", "-3d", "--by-dimension", "tag"]);
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(
        table.contains("tag (tier) rows") && table.contains("tier=gold"),
        "{table}"
    );

    // Bad input is refused naming the flag.
    for (args, needles) in [
        (
            vec!["report", "--by-dimension", "tag", "--tag", "customer"],
            vec!["--tag customer", "history.tag_dimensions", "tier"],
        ),
        (
            vec!["report", "--by-dimension", "queue", "--tag", "tier"],
            vec!["--tag", "--by-dimension queue"],
        ),
        (
            vec!["report", "--by-dimension", "tag", "--queue", "support"],
            vec!["--queue", "--by-dimension tag"],
        ),
    ] {
        refused(&d, &args, &needles);
    }

    // Without the setting, tag rows are refused naming it (the history keeps what it has).
    d.stop();
    d.rewrite_config(&config(""));
    d.restart();
    refused(
        &d,
        &["report", "--by-dimension", "tag", "--from", "-3d"],
        &["--by-dimension tag", "history.tag_dimensions"],
    );
    d.stop();
}

#[test]
fn help_says_what_tag_rows_are_and_what_they_need() {
    let out = support::cli(["report", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--by-dimension tag",
        "history.tag_dimensions",
        "--tag <NAME>",
    ] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
}
