//! Hand-worked objectives through the engine: a month with a DST change and two holidays, a
//! call that waits across closing, overlapping scopes and a tier carried by tags (across a
//! restore), the margin at its boundaries, late facts for past periods, reloads; and a property
//! test against a brute-force count from the list of segments.

use std::collections::BTreeMap;
use std::path::Path;

use jiff::tz::TimeZone;
use proptest::prelude::*;

use super::*;
use crate::config::Config;
use crate::event::{Event, EventKind};
use crate::sla::compliance::{Margin, Status};

const H: i64 = 3_600_000;

fn config(text: &str) -> Config {
    Config::parse(text, Path::new("agent.toml")).unwrap()
}

/// Epoch ms of a local date-time in `zone`.
fn at(zone: &str, text: &str) -> i64 {
    let dt: jiff::civil::DateTime = text.parse().unwrap();
    dt.to_zoned(TimeZone::get(zone).unwrap())
        .unwrap()
        .timestamp()
        .as_millisecond()
}

fn paris(text: &str) -> i64 {
    at("Europe/Paris", text)
}

/// One segment's events: start (queue, channel, tags), then answer or abandon after `wait_ms`,
/// then (answered) end 60 s later and a wrap-up at once.
fn call(
    id: &str,
    queue: &str,
    channel: &str,
    tags: &[(&str, &str)],
    start_ms: i64,
    wait_ms: i64,
    answered: bool,
) -> Vec<Event> {
    let mut s = Event::new(EventKind::Start, id, start_ms);
    s.queue = Some(queue.into());
    s.channel = Some(channel.into());
    s.tags = tags
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    let leave = start_ms + wait_ms;
    if answered {
        let mut a = Event::new(EventKind::Answer, id, leave);
        a.agent = Some("alice".into());
        vec![
            s,
            a,
            Event::new(EventKind::End, id, leave + 60_000),
            Event::new(EventKind::Wrapup, id, leave + 60_000),
        ]
    } else {
        vec![s, Event::new(EventKind::End, id, leave)]
    }
}

/// Feeds every event in time order, each received at its timestamp, then lets everything fold.
fn run(e: &mut Engine, calls: Vec<Vec<Event>>) {
    let mut events: Vec<Event> = calls.into_iter().flatten().collect();
    events.sort_by_key(|ev| ev.ts_ms);
    for ev in &events {
        assert_eq!(
            e.apply(ev, ev.ts_ms.max(e.now_ms())),
            Applied::Accepted,
            "{ev:?}"
        );
    }
    let last = events.iter().map(|e| e.ts_ms).max().unwrap_or(0);
    e.advance(e.now_ms().max(last) + 10 * 60_000);
}

fn objective<'a>(all: &'a [SlaObjective], name: &str) -> &'a SlaObjective {
    all.iter().find(|o| o.name == name).unwrap()
}

const MARCH: &str = r#"
[general]
time_zone = "Europe/Paris"

[[sla]]
name = "office"
scope = { queues = ["support"] }
measure = "service_level"
formula = "answered"
threshold = "20s"
target = 0.8
period = "month"
hours = { mon = ["08:00-18:00"], tue = ["08:00-18:00"], wed = ["08:00-18:00"], thu = ["08:00-18:00"], fri = ["08:00-18:00"] }
holidays = ["2026-03-13", "2026-03-27"]

[[sla]]
name = "always"
scope = { queues = ["support"] }
measure = "service_level"
formula = "answered"
threshold = "20s"
target = 0.8
period = "month"
"#;

/// March 2026 in Paris: the clocks go forward on Sunday the 29th (02:00 → 03:00), the 13th
/// and the 27th (Fridays) are holidays, weekdays open 08:00-18:00.
#[test]
fn a_month_with_a_dst_change_and_two_holidays() {
    let mut e = Engine::new(&config(MARCH));
    run(
        &mut e,
        vec![
            // Monday 2nd, open: answered in 10 s, within T.
            call(
                "c1",
                "support",
                "voice",
                &[],
                paris("2026-03-02T10:00"),
                10_000,
                true,
            ),
            // Friday 13th, a holiday: answered in 5 s, outside hours for "office".
            call(
                "c2",
                "support",
                "voice",
                &[],
                paris("2026-03-13T10:00"),
                5_000,
                true,
            ),
            // Friday 27th, a holiday: abandoned after 30 s, outside hours.
            call(
                "c3",
                "support",
                "voice",
                &[],
                paris("2026-03-27T11:00"),
                30_000,
                false,
            ),
            // Monday 30th, summer time: 08:30 CEST (06:30 UTC) is open; answered in 30 s.
            call(
                "c4",
                "support",
                "voice",
                &[],
                paris("2026-03-30T08:30"),
                30_000,
                true,
            ),
            // Monday 30th 07:30 CEST (05:30 UTC) is before opening; a calendar still on
            // winter time (UTC+1) would read 05:30 UTC as 06:30, closed too, but one that
            // applied the change twice would read 08:30, open. Answered in 5 s.
            call(
                "c5",
                "support",
                "voice",
                &[],
                paris("2026-03-30T07:30"),
                5_000,
                true,
            ),
            // Tuesday 31st 23:59:50, answered at 00:00:10 on April 1st: it left the queue in
            // April (and arrived after closing for "office").
            call(
                "c6",
                "support",
                "voice",
                &[],
                paris("2026-03-31T23:59:50"),
                20_000,
                true,
            ),
        ],
    );
    let now = paris("2026-04-02T12:00");
    let all = e.sla_at(now);

    // "office", March: c1 and c4 counted (answered 2, within 1: 1/2 = 50 %, missed against
    // 80 %); c2, c3, c5 outside hours (offered 3, answered 2, abandoned 1).
    let office = objective(&all, "office");
    assert_eq!(office.period_start_ms, paris("2026-04-01T00:00"));
    let march = &office.past[0];
    assert_eq!(march.period_start_ms, paris("2026-03-01T00:00"));
    assert_eq!(march.period_end_ms, paris("2026-04-01T00:00"));
    // 31 days less the hour skipped on the 29th.
    assert_eq!(march.period_end_ms - march.period_start_ms, 31 * 24 * H - H);
    assert_eq!(
        (
            march.counts.offered,
            march.counts.answered,
            march.counts.answered_within
        ),
        (2, 2, 1)
    );
    assert_eq!(march.value, Some(0.5));
    assert_eq!(march.status, Status::Missed);
    assert_eq!(
        (
            march.outside_hours.offered,
            march.outside_hours.answered,
            march.outside_hours.abandoned
        ),
        (3, 2, 1)
    );
    // April so far: c6 only, outside hours (it arrived at 23:59:50).
    assert_eq!(office.counts.offered, 0);
    assert_eq!(office.outside_hours.offered, 1);
    assert_eq!(office.status, Status::NoData);

    // "always", March: c1..c5; answered 4 of which within 20 s c1 (10 s), c2 (5 s), c5 (5 s):
    // 3/4 = 75 %, missed. April: c6 answered in exactly 20 s, within: 100 %.
    let always = objective(&all, "always");
    let march = &always.past[0];
    assert_eq!(
        (
            march.counts.offered,
            march.counts.answered,
            march.counts.answered_within
        ),
        (5, 4, 3)
    );
    assert_eq!(march.value, Some(0.75));
    assert_eq!(march.status, Status::Missed);
    assert_eq!(always.counts.answered_within, 1);
    assert_eq!(always.value, Some(1.0));
}

const CLOSING: &str = r#"
[metrics]
max_call_duration = "48h"

[general]
time_zone = "Europe/Paris"

[[sla]]
name = "business"
measure = "answered_within"
threshold = "60s"
clock = "business_hours"
target = 0.9
period = "day"
hours = { mon = ["08:00-18:00"], tue = ["08:00-18:00"] }

[[sla]]
name = "wall"
measure = "answered_within"
threshold = "60s"
target = 0.9
period = "day"
hours = { mon = ["08:00-18:00"], tue = ["08:00-18:00"] }
"#;

/// Offered Monday 17:59:30, answered Tuesday 08:00:20. It arrived in service hours, so both
/// objectives count it, on Tuesday (when it left the queue). Business clock: 30 s before
/// closing + 20 s after opening = 50 s, within 60 s. Wall clock: 14 h 0 min 50 s, not within.
#[test]
fn a_call_offered_before_closing_and_answered_after_opening() {
    let mut e = Engine::new(&config(CLOSING));
    let offered = paris("2026-03-02T17:59:30");
    let answered = paris("2026-03-03T08:00:20");
    run(
        &mut e,
        vec![call(
            "c",
            "q",
            "voice",
            &[],
            offered,
            answered - offered,
            true,
        )],
    );
    let all = e.sla_at(paris("2026-03-03T12:00"));
    let business = objective(&all, "business");
    assert_eq!(business.period_start_ms, paris("2026-03-03T00:00"));
    assert_eq!(
        (business.counts.answered, business.counts.answered_within),
        (1, 1)
    );
    assert_eq!(business.counts.wait_sum_ms, 50_000);
    assert!(business.past.is_empty(), "nothing left the queue on Monday");
    let wall = objective(&all, "wall");
    assert_eq!((wall.counts.answered, wall.counts.answered_within), (1, 0));
    assert_eq!(wall.counts.wait_sum_ms, (14 * H + 50_000) as u64);
    assert_eq!(wall.value, Some(0.0));
}

const TIERS: &str = r#"
[[sla]]
name = "support"
scope = { queues = ["support"] }
measure = "service_level"
formula = "answered"
threshold = "20s"
target = 0.8
period = "month"

[[sla]]
name = "gold"
scope = { queues = ["support"], tags = { tier = "gold" } }
measure = "service_level"
formula = "answered"
threshold = "10s"
target = 0.9
period = "month"
"#;

/// A service-wide objective and a gold-tier one over the same queue: the gold call counts for
/// both (each with its own T), the silver one for the service-wide one only, the gold call on
/// another queue for neither. The tags of a call still open survive a checkpoint and restore.
#[test]
fn overlapping_scopes_and_a_tier_carried_by_tags_across_a_restore() {
    let cfg = config(TIERS);
    let mut e = Engine::new(&cfg);
    let t0 = at("UTC", "2026-03-02T10:00");
    let gold = [("tier", "gold"), ("lang", "fr")];
    run(
        &mut e,
        vec![
            // Gold, 15 s: within 20 s (support), not within 10 s (gold).
            call("g1", "support", "voice", &gold, t0, 15_000, true),
            // Silver, 5 s.
            call(
                "s1",
                "support",
                "voice",
                &[("tier", "silver")],
                t0 + H,
                5_000,
                true,
            ),
            // Gold on sales: neither.
            call("g2", "sales", "voice", &gold, t0 + 2 * H, 5_000, true),
        ],
    );
    // A gold call starts, the engine is checkpointed and restored before it is answered.
    let g3 = call("g3", "support", "chat", &gold, t0 + 3 * H, 4_000, true);
    assert_eq!(e.apply(&g3[0], g3[0].ts_ms), Applied::Accepted);
    let cp = e.checkpoint();
    let slices: Vec<(Vec<u8>, Vec<u8>)> = cp
        .slices
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
    let mut r = Engine::restore(&cfg, slices, Some(&cp.state)).unwrap();
    for ev in &g3[1..] {
        assert_eq!(r.apply(ev, ev.ts_ms), Applied::Accepted);
    }
    r.advance(t0 + 4 * H);
    let all = r.sla_at(t0 + 4 * H);
    // support: g1 (15 s), s1 (5 s), g3 (4 s): 3 answered, 3 within 20 s.
    let support = objective(&all, "support");
    assert_eq!(
        (support.counts.answered, support.counts.answered_within),
        (3, 3)
    );
    // gold: g1 (15 s, late for 10 s) and g3 (4 s): 2 answered, 1 within: 50 %.
    let gold = objective(&all, "gold");
    assert_eq!((gold.counts.answered, gold.counts.answered_within), (2, 1));
    assert_eq!(gold.value, Some(0.5));
    // Only the tag some scope names is kept on open calls.
    assert_eq!(
        r.tags_kept(&[("tier".into(), "gold".into()), ("lang".into(), "fr".into())]),
        vec![("tier".to_string(), "gold".to_string())]
    );
    assert!(Engine::new(&config(MARCH))
        .tags_kept(&[("tier".into(), "gold".into())])
        .is_empty());
}

const DAILY: &str = r#"
[[sla]]
name = "daily"
measure = "answered_within"
threshold = "20s"
target = 0.8
period = "day"
keep_periods = 2
"#;

/// The margin through the engine at its two boundaries, on a day open at all hours (UTC). At
/// noon, 5 calls in 12 h of service time, 12 h left: 5 more expected.
/// - 4 of 5 within T: exactly 80 %, met; need = ⌈0.8 × (5 + 5) − 4⌉ = 4 of the next 5.
/// - 1 of 5 within T: need = ⌈0.8 × 10 − 1⌉ = 7 > 5: the target can no longer be met.
#[test]
fn the_margin_exactly_on_target_and_out_of_reach() {
    let day = at("UTC", "2026-03-02T00:00");
    let noon = day + 12 * H;
    for (within, status, margin) in [
        (4, Status::Met, Some(Margin::AtLeast { next: 5, good: 4 })),
        (1, Status::Missed, Some(Margin::Unreachable)),
    ] {
        let mut e = Engine::new(&config(DAILY));
        let calls = (0..5)
            .map(|i| {
                let wait = if i < within { 10_000 } else { 30_000 };
                call(
                    &format!("c{i}"),
                    "q",
                    "voice",
                    &[],
                    day + (i + 1) * H,
                    wait,
                    true,
                )
            })
            .collect();
        run(&mut e, calls);
        let d = &e.sla_at(noon)[0];
        assert_eq!(d.counts.answered, 5);
        assert_eq!(d.expected, Some(5));
        assert_eq!(d.status, status);
        assert_eq!(d.margin, margin);
        let text = d.margin_text.clone().unwrap();
        if within == 4 {
            assert_eq!(
                text,
                "the next 5 calls must be answered within 20s at ≥ 80.0 % (4 of them) to end the day on target"
            );
        } else {
            assert_eq!(text, "the target can no longer be met this day");
        }
    }
}

/// Days 1 to 5 with one call each, two past days kept: days 3, 4 and 5 remain. A call of day
/// 4 arriving on day 5 adds to day 4's final figures; one of day 1 is no longer counted.
#[test]
fn late_facts_adjust_a_kept_period_and_older_ones_are_not_counted() {
    let mut e = Engine::new(&config(DAILY));
    let day = |d: i64| at("UTC", "2026-03-01T00:00") + d * 24 * H;
    run(
        &mut e,
        (1..=5)
            .map(|d| {
                call(
                    &format!("c{d}"),
                    "q",
                    "voice",
                    &[],
                    day(d) + 10 * H,
                    5_000,
                    true,
                )
            })
            .collect(),
    );
    let kept = |e: &Engine| -> Vec<(i64, u64)> {
        e.sla_at(day(5) + 23 * H)[0]
            .past
            .iter()
            .map(|p| (p.period_start_ms, p.counts.offered))
            .collect()
    };
    assert_eq!(kept(&e), vec![(day(4), 1), (day(3), 1)]);
    run(
        &mut e,
        vec![
            call("late4", "q", "voice", &[], day(4) + 9 * H, 30_000, true),
            call("late1", "q", "voice", &[], day(1) + 9 * H, 5_000, true),
        ],
    );
    assert_eq!(kept(&e), vec![(day(4), 2), (day(3), 1)]);
    let four = &e.sla_at(day(5) + 23 * H)[0].past[0];
    assert_eq!(four.value, Some(0.5));
    assert_eq!(four.status, Status::Missed);
}

/// A reload: an objective whose target changes keeps its figures (the target only judges
/// them); one whose threshold changes counts afresh from the reload; a removed one is gone.
/// Checkpoint and restore give the same figures.
#[test]
fn reload_keeps_unchanged_counting_and_restarts_changed_objectives() {
    let two = format!(
        "{DAILY}\n[[sla]]\nname = \"other\"\nmeasure = \"answered_within\"\nthreshold = \"20s\"\ntarget = 0.8\nperiod = \"day\"\n"
    );
    let mut e = Engine::new(&config(&two));
    let day = at("UTC", "2026-03-02T00:00");
    run(
        &mut e,
        vec![call("a", "q", "voice", &[], day + H, 5_000, true)],
    );
    let before = e.sla_at(day + 2 * H);
    assert_eq!(before[0].counts.offered, 1);
    assert_eq!(before[1].counts.offered, 1);

    // Restore: same figures.
    let cp = e.checkpoint();
    let slices: Vec<(Vec<u8>, Vec<u8>)> = cp
        .slices
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
    let r = Engine::restore(&config(&two), slices, Some(&cp.state)).unwrap();
    assert_eq!(r.sla_at(day + 2 * H), before);

    let changed = two.replacen("target = 0.8", "target = 0.95", 1).replacen(
        "threshold = \"20s\"\ntarget = 0.8\nperiod = \"day\"\n",
        "threshold = \"30s\"\ntarget = 0.8\nperiod = \"day\"\n",
        1,
    );
    e.reconfigure(&config(&changed));
    let after = e.sla_at(day + 2 * H);
    assert_eq!(after[0].target, 0.95);
    assert_eq!(after[0].counts.offered, 1, "a new target keeps the figures");
    assert_eq!(after[0].counting_since_ms, before[0].counting_since_ms);
    assert_eq!(after[1].counts.offered, 0, "a new threshold counts afresh");
    assert_eq!(after[1].counting_since_ms, e.now_ms());
    run(
        &mut e,
        vec![call("b", "q", "voice", &[], day + 3 * H, 25_000, true)],
    );
    let later = e.sla_at(day + 4 * H);
    assert_eq!(
        (later[1].counts.answered, later[1].counts.answered_within),
        (1, 1)
    );

    e.reconfigure(&config(DAILY));
    assert_eq!(e.sla_at(day + 4 * H).len(), 1);
}

/// Handle facts count where the call completed: AHT over the period's handled calls.
#[test]
fn aht_counts_handling_at_completion() {
    let text =
        "[[sla]]\nname = \"aht\"\nmeasure = \"aht_max\"\ntarget = \"50s\"\nperiod = \"day\"\n";
    let mut e = Engine::new(&config(text));
    let day = at("UTC", "2026-03-02T00:00");
    // Each call talks 60 s (end 60 s after the answer) and wraps up at once.
    run(
        &mut e,
        vec![
            call("a", "q", "voice", &[], day + H, 5_000, true),
            call("b", "q", "voice", &[], day + 2 * H, 5_000, true),
        ],
    );
    let o = &e.sla_at(day + 12 * H)[0];
    assert_eq!(o.counts.handled, 2);
    assert_eq!(o.value, Some(60_000.0));
    // 120 s over 2 calls against 50 s: the next 2 expected must average at most
    // (50 × 4 − 120) / 2 = 40 s.
    assert_eq!(
        o.margin,
        Some(Margin::AverageAtMost {
            next: 2,
            avg_ms: 40_000.0
        })
    );
}

// ---- property test: engine against a brute-force count -----------------------------------

/// A segment as the test sent it.
#[derive(Debug, Clone)]
struct Seg {
    queue: &'static str,
    channel: &'static str,
    tier: Option<&'static str>,
    start_ms: i64,
    wait_ms: i64,
    answered: bool,
}

const ZONES: [&str; 4] = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"];
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

#[derive(Debug, Clone)]
struct Spec {
    zone: usize,
    /// Per weekday: closed, or open from `a` to `b` minutes.
    hours: Option<Vec<Option<(u16, u16)>>>,
    holidays: Vec<i64>,
    queues: Vec<&'static str>,
    channel: Option<&'static str>,
    tier: Option<&'static str>,
    period: usize,
    business: bool,
    threshold_s: i64,
}

fn hhmm(m: u16) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

fn spec_toml(i: usize, s: &Spec) -> String {
    let mut t = format!(
        "[[sla]]\nname = \"o{i}\"\nmeasure = \"answered_within\"\nthreshold = \"{}s\"\ntarget = 0.8\nperiod = \"{}\"\ntime_zone = \"{}\"\nkeep_periods = 120\nclock = \"{}\"\n",
        s.threshold_s,
        ["day", "week", "month"][s.period],
        ZONES[s.zone],
        if s.business { "business_hours" } else { "wall" },
    );
    let mut scope = Vec::new();
    if !s.queues.is_empty() {
        let q: Vec<String> = s.queues.iter().map(|q| format!("\"{q}\"")).collect();
        scope.push(format!("queues = [{}]", q.join(", ")));
    }
    if let Some(c) = s.channel {
        scope.push(format!("channels = [\"{c}\"]"));
    }
    if let Some(tier) = s.tier {
        scope.push(format!("tags = {{ tier = \"{tier}\" }}"));
    }
    t.push_str(&format!("scope = {{ {} }}\n", scope.join(", ")));
    if let Some(h) = &s.hours {
        let days: Vec<String> = DAYS
            .iter()
            .zip(h)
            .filter_map(|(d, r)| r.map(|(a, b)| format!("{d} = [\"{}-{}\"]", hhmm(a), hhmm(b))))
            .collect();
        t.push_str(&format!("hours = {{ {} }}\n", days.join(", ")));
    }
    let base: jiff::civil::Date = "2026-01-01".parse().unwrap();
    let hol: Vec<String> = s
        .holidays
        .iter()
        .map(|d| {
            format!(
                "\"{}\"",
                base.checked_add(jiff::Span::new().days(*d)).unwrap()
            )
        })
        .collect();
    t.push_str(&format!("holidays = [{}]\n", hol.join(", ")));
    t
}

fn spec() -> impl Strategy<Value = Spec> {
    let range = (0u16..24 * 4, 1u16..24 * 4).prop_map(|(a, len)| {
        let a = a * 15;
        (a, (a + len * 15).min(24 * 60))
    });
    (
        0..ZONES.len(),
        // A calendar open on no day is refused by the config, so such a draw means "no hours".
        proptest::option::of(proptest::collection::vec(proptest::option::of(range), 7))
            .prop_map(|h| h.filter(|days| days.iter().any(Option::is_some))),
        proptest::collection::vec(0i64..120, 0..4),
        proptest::sample::subsequence(vec!["support", "sales"], 0..=2),
        proptest::option::of(proptest::sample::select(vec!["voice", "chat"])),
        proptest::option::of(proptest::sample::select(vec!["gold", "silver"])),
        0usize..3,
        any::<bool>(),
        prop_oneof![Just(20i64), Just(600), Just(4 * 3600)],
    )
        .prop_map(
            |(zone, hours, holidays, queues, channel, tier, period, business, threshold_s)| Spec {
                zone,
                hours,
                holidays,
                queues,
                channel,
                tier,
                period,
                business,
                threshold_s,
            },
        )
}

fn seg() -> impl Strategy<Value = Seg> {
    (
        proptest::sample::select(vec!["support", "sales", "billing"]),
        proptest::sample::select(vec!["voice", "chat"]),
        proptest::option::of(proptest::sample::select(vec!["gold", "silver"])),
        0i64..100 * 24 * 3600,
        prop_oneof![0i64..120, 0i64..86_400],
        any::<bool>(),
    )
        .prop_map(|(queue, channel, tier, start_s, wait_s, answered)| Seg {
            queue,
            channel,
            tier,
            start_ms: at("UTC", "2026-01-01T00:00") + start_s * 1000,
            wait_ms: wait_s * 1000,
            answered,
        })
}

/// The period a leave time falls in, named by its first local date: computed from the local
/// date alone, not from the engine's period bounds.
fn period_first_date(period: usize, tz: &TimeZone, ms: i64) -> jiff::civil::Date {
    let d = tz
        .to_datetime(jiff::Timestamp::from_millisecond(ms).unwrap())
        .date();
    match period {
        0 => d,
        1 => d
            .checked_sub(jiff::Span::new().days(i64::from(d.weekday().to_monday_zero_offset())))
            .unwrap(),
        _ => d.first_of_month(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Per objective and period: (counted offered, answered, answered within T, wait sum;
    /// outside-hours offered; handled inside and outside hours) from the engine equal those
    /// counted from the list of segments. Handling counts where it completes (the end, 60 s
    /// after the answer), which may be the next period.
    #[test]
    fn engine_counts_equal_a_brute_force_count(
        specs in proptest::collection::vec(spec(), 1..4),
        segs in proptest::collection::vec(seg(), 1..40),
    ) {
        let text: String = std::iter::once("[metrics]\nmax_call_duration = \"48h\"\n".to_string())
            .chain(specs.iter().enumerate().map(|(i, s)| spec_toml(i, s)))
            .collect();
        let cfg = config(&text);
        let mut e = Engine::new(&cfg);
        let calls = segs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let tags: Vec<(&str, &str)> = s.tier.iter().map(|t| ("tier", *t)).collect();
                call(&format!("c{i}"), s.queue, s.channel, &tags, s.start_ms, s.wait_ms, s.answered)
            })
            .collect();
        run(&mut e, calls);

        for (i, s) in specs.iter().enumerate() {
            let objective = crate::sla::objective::Objective::new(&cfg.sla[i], &cfg).unwrap();
            let tz = TimeZone::get(ZONES[s.zone]).unwrap();
            type Key = jiff::civil::Date;
            type Counts = (u64, u64, u64, u64, u64, u64, u64);
            let mut want: BTreeMap<Key, Counts> = BTreeMap::new();
            for g in &segs {
                let covered = (s.queues.is_empty() || s.queues.contains(&g.queue))
                    && s.channel.is_none_or(|c| c == g.channel)
                    && s.tier.is_none_or(|t| g.tier == Some(t));
                if !covered {
                    continue;
                }
                let leave = g.start_ms + g.wait_ms;
                let inside = objective.hours.is_open(g.start_ms);
                if g.answered {
                    let done = want
                        .entry(period_first_date(s.period, &tz, leave + 60_000))
                        .or_default();
                    if inside {
                        done.5 += 1;
                    } else {
                        done.6 += 1;
                    }
                }
                let w = want.entry(period_first_date(s.period, &tz, leave)).or_default();
                if !inside {
                    w.4 += 1;
                    continue;
                }
                let wait = if s.business {
                    objective.hours.business_ms_between(g.start_ms, leave)
                } else {
                    g.wait_ms
                };
                w.0 += 1;
                if g.answered {
                    w.1 += 1;
                    w.2 += u64::from(wait <= s.threshold_s * 1000);
                    w.3 += wait as u64;
                }
            }
            let (_, tally) = e.sla.iter().nth(i).unwrap();
            let got: BTreeMap<Key, Counts> = tally
                .periods
                .iter()
                .map(|(start, p)| {
                    let c = &p.counted;
                    (
                        period_first_date(s.period, &tz, *start),
                        (
                            c.offered,
                            c.answered,
                            c.answered_within,
                            c.wait_sum_ms,
                            p.outside.offered,
                            c.handled,
                            p.outside.handled,
                        ),
                    )
                })
                .collect();
            prop_assert_eq!(got, want, "objective {}", text);
        }
    }
}
