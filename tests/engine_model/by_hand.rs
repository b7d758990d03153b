//! Hand-built scenarios with hand-computed numbers, and the helpers that build them.

use std::collections::BTreeMap;

use callmetrics::config::Formula;
use callmetrics::engine::{DimKind, Engine, MetricsRow};
use callmetrics::event::{EndReason, EventKind};

use crate::harness::{query, run, Built, Harness};
use crate::truth::{Delivery, Model, Override, Params, Seg, Truth};
use crate::{BANDS_MS, DAY};

/// 2026-11-22T10:00:00Z.
pub const TEN_AM: i64 = 1_795_341_600_000;

pub fn secs(base: i64, s: i64) -> i64 {
    base + s * 1000
}

#[allow(clippy::too_many_arguments)]
pub fn seg(
    call: &str,
    queue: &str,
    channel: Option<&str>,
    start: i64,
    answer: Option<(i64, Option<&str>)>,
    holds: &[(i64, Option<i64>)],
    end: (i64, Option<EndReason>),
    wrapup: Option<i64>,
) -> Seg {
    Seg {
        call_id: call.into(),
        queue: queue.into(),
        channel: channel.map(str::to_string),
        start,
        answer: answer.map(|a| a.0),
        agent: answer.and_then(|a| a.1.map(str::to_string)),
        holds: holds.to_vec(),
        end: end.0,
        reason: end.1,
        wrapup,
    }
}

/// Every event delivered at its own timestamp, in timestamp order (ties in the order given).
pub fn in_ts_order(truth: &Truth) -> Vec<Delivery> {
    let mut d: Vec<Delivery> = truth
        .events
        .iter()
        .enumerate()
        .map(|(ev, e)| Delivery { rx: e.ts_ms, ev })
        .collect();
    d.sort_by_key(|d| (d.rx, d.ev));
    d
}

fn row(e: &Engine, window: &str, dim: DimKind, key: &str) -> MetricsRow {
    e.metrics(&query(window, dim))
        .unwrap()
        .into_iter()
        .find(|r| r.key == key)
        .unwrap_or_else(|| panic!("no row {key} in {window} by {dim:?}"))
}

/// Counters in a fixed order: offered, answered, `answered_within`, abandoned, `abandoned_within`,
/// `short_abandoned`, overflow, handled.
fn counts(r: &MetricsRow) -> [u64; 8] {
    let c = &r.counts;
    [
        c.offered,
        c.answered,
        c.answered_within,
        c.abandoned,
        c.abandoned_within,
        c.short_abandoned,
        c.overflow,
        c.handled,
    ]
}

fn realtime(r: &MetricsRow) -> (u64, Option<u64>, u64, u64) {
    let t = &r.realtime;
    (
        t.waiting_now,
        t.longest_wait_now_ms,
        t.talking_now,
        t.in_acw_now,
    )
}

/// Queue `sales`: T = 20 s, S = 5 s, formula `abandon_positive`. `support` is not configured and
/// takes the defaults: T = 20 s, S = 5 s, formula answered (also the formula of non-queue rows).
pub fn hand_model() -> Model {
    let mut queues = BTreeMap::new();
    queues.insert(
        "sales".to_string(),
        Override {
            formula: Some(Formula::AbandonPositive),
            target: Some(0.9),
            ..Override::default()
        },
    );
    Model {
        defaults: Params {
            threshold_ms: 20_000,
            short_ms: 5_000,
            formula: Formula::Answered,
            target: 0.8,
        },
        queues,
    }
}

/// Seconds after 10:00:00:
/// - c1 sales: start 0, answer 15 (alice), hold 60–90, end 200, wrap-up 230:
///   wait 15 (within), talk 155, hold 30, ACW 30, handle 215, counted at 230.
/// - c2 sales: start 10, answer 40 (bob), end 100, no wrap-up: wait 30, talk 60, counted at 100
///   once 120 s passed after its end arrived (at 220).
/// - c3 sales: start 20, end 23 (no reason): abandoned, wait 3 (short, within).
/// - c4 sales: start 30, end 60 abandoned: wait 30.
/// - c5 sales (chat): start 40, end 70 transferred: overflow, wait 30; then support (chat): start 70,
///   answer 75 (alice), end 135, wrap-up 145: wait 5, talk 60, ACW 10.
fn hand_truth() -> Truth {
    let t = |s| secs(TEN_AM, s);
    use EndReason::*;
    Truth::new(vec![
        vec![seg(
            "c1",
            "sales",
            None,
            t(0),
            Some((t(15), Some("alice"))),
            &[(t(60), Some(t(90)))],
            (t(200), None),
            Some(t(230)),
        )],
        vec![seg(
            "c2",
            "sales",
            None,
            t(10),
            Some((t(40), Some("bob"))),
            &[],
            (t(100), Some(Completed)),
            None,
        )],
        vec![seg(
            "c3",
            "sales",
            None,
            t(20),
            None,
            &[],
            (t(23), None),
            None,
        )],
        vec![seg(
            "c4",
            "sales",
            None,
            t(30),
            None,
            &[],
            (t(60), Some(Abandoned)),
            None,
        )],
        vec![
            seg(
                "c5",
                "sales",
                Some("chat"),
                t(40),
                None,
                &[],
                (t(70), Some(Transferred)),
                None,
            ),
            seg(
                "c5",
                "support",
                Some("chat"),
                t(70),
                Some((t(75), Some("alice"))),
                &[],
                (t(135), Some(Completed)),
                Some(t(145)),
            ),
        ],
    ])
}

/// Feeds deliveries up to (and including) receive time `until`, then advances to `until`.
fn feed_until(h: &mut Harness, deliveries: &[Delivery], next: &mut usize, until: i64) {
    while *next < deliveries.len() && deliveries[*next].rx <= until {
        h.deliver(deliveries[*next]).unwrap();
        *next += 1;
    }
    h.check(until).unwrap();
}

#[test]
fn one_call_of_each_outcome_by_hand() {
    let model = hand_model();
    let truth = hand_truth();
    let mut deliveries = in_ts_order(&truth);
    // c1's hold again while c1 is still open (a duplicate), and c3's start again long after c3
    // was folded in and forgotten (late).
    let hold = truth
        .events
        .iter()
        .position(|e| e.kind == EventKind::Hold)
        .unwrap();
    let c3_start = truth.events.iter().position(|e| e.call_id == "c3").unwrap();
    deliveries.push(Delivery {
        rx: secs(TEN_AM, 100),
        ev: hold,
    });
    deliveries.push(Delivery {
        rx: secs(TEN_AM, 290),
        ev: c3_start,
    });
    deliveries.sort_by_key(|d| d.rx);
    let t = |s| secs(TEN_AM, s);
    let mut h = Harness::new(&truth, &model);
    let mut next = 0;

    feed_until(&mut h, &deliveries, &mut next, t(45));
    let sales = row(&h.a, "15m", DimKind::Queue, "sales");
    // Waiting: c4 (since 30 s) and c5 (since 40 s); talking: c1 and c2.
    assert_eq!(realtime(&sales), (2, Some(15_000), 2, 0));
    // c1 and c2 answered, c3 abandoned (short).
    assert_eq!(counts(&sales), [3, 2, 1, 1, 1, 1, 0, 0]);
    assert_eq!(
        realtime(&row(&h.a, "15m", DimKind::Agent, "alice")),
        (0, None, 1, 0)
    );

    feed_until(&mut h, &deliveries, &mut next, t(150));
    let sales = row(&h.a, "15m", DimKind::Queue, "sales");
    assert_eq!(realtime(&sales), (0, None, 1, 1)); // c1 talking, c2 in ACW
    assert_eq!(sales.counts.handled, 0);
    let support = row(&h.a, "15m", DimKind::Queue, "support");
    assert_eq!(counts(&support), [1, 1, 1, 0, 0, 0, 0, 1]);
    assert_eq!(
        (support.counts.talk_sum_ms, support.counts.acw_sum_ms),
        (60_000, 10_000)
    );
    assert_eq!(
        realtime(&row(&h.a, "15m", DimKind::Agent, "bob")),
        (0, None, 0, 1)
    );

    feed_until(&mut h, &deliveries, &mut next, t(219));
    let sales = row(&h.a, "15m", DimKind::Queue, "sales");
    assert_eq!(realtime(&sales), (0, None, 0, 2)); // c1 ended at 200 without wrap-up yet; c2
    assert_eq!(sales.counts.handled, 0);
    feed_until(&mut h, &deliveries, &mut next, t(220));
    let sales = row(&h.a, "15m", DimKind::Queue, "sales");
    assert_eq!(realtime(&sales), (0, None, 0, 1)); // c2 timed out of ACW: handled
    assert_eq!(sales.counts.handled, 1);

    feed_until(&mut h, &deliveries, &mut next, t(300));
    assert_eq!(next, deliveries.len());
    let sales = row(&h.a, "15m", DimKind::Queue, "sales");
    // Q = 5: A = 2 (waits 15, 30), Ab = 2 (3 short, 30), F = 1 (30).
    assert_eq!(counts(&sales), [5, 2, 1, 2, 1, 1, 1, 2]);
    let c = &sales.counts;
    assert_eq!(
        (c.wait_sum_ms, c.abandon_wait_sum_ms, c.wait_max_ms),
        (45_000, 33_000, 30_000)
    );
    assert_eq!(
        (c.talk_sum_ms, c.hold_sum_ms, c.acw_sum_ms),
        (215_000, 30_000, 30_000)
    );
    let bands: Vec<u64> = BANDS_MS.iter().map(|b| c.bands[b]).collect();
    assert_eq!(bands, [0, 1, 2, 2, 2]);
    let f = &sales.figures;
    assert_eq!(f.asa_ms, Some(22_500.0));
    assert_eq!(f.avg_abandon_ms, Some(16_500.0));
    assert_eq!(f.aht_ms, Some(137_500.0));
    assert_eq!(f.abandon_rate, Some(0.25)); // (2 − 1) / (5 − 1)
    assert_eq!(f.service_level, Some(0.4)); // abandon_positive: (1 + 1) / 5
    let sl = |name: &str| f.service_levels.by_name(name).flatten().unwrap();
    assert_eq!(sl("answered"), 0.5);
    assert_eq!(sl("offered"), 1.0 / 3.0);
    assert_eq!(sl("offered_with_overflow"), 0.25);
    assert_eq!(sl("abandon_negative"), 0.2);
    assert_eq!(sl("abandon_positive"), 0.4);
    assert_eq!(sl("abandon_ignored"), 0.25);
    assert_eq!(sl("asterisk_sl2"), 0.5);
    // Waits 3, 15, 30, 30, 30 s; handles 60, 215 s.
    assert!((f.wait_p50_ms.unwrap() - 30_000.0).abs() <= 300.0);
    assert!((f.wait_p99_ms.unwrap() - 30_000.0).abs() <= 300.0);
    assert!((f.handle_p50_ms.unwrap() - 60_000.0).abs() <= 600.0);
    assert!((f.handle_p99_ms.unwrap() - 60_000.0).abs() <= 600.0);
    assert_eq!(sales.params.formula, Formula::AbandonPositive);
    assert_eq!(sales.params.target, 0.9);

    // 5m at 10:05:00 covers the minutes 10:01..10:05: c4 (left at 60 s), c5 (70 s), and the
    // handling of c1 (230 s) and c2 (100 s); c1, c2 and c3 left the queue in minute 10:00.
    let sales5 = row(&h.a, "5m", DimKind::Queue, "sales");
    assert_eq!(counts(&sales5), [2, 0, 0, 1, 0, 0, 1, 2]);
    assert_eq!(sales5.figures.service_level, Some(0.0));
    assert_eq!(sales5.figures.asa_ms, None);

    let all = row(&h.a, "15m", DimKind::All, "all");
    assert_eq!(counts(&all), [6, 3, 2, 2, 1, 1, 1, 3]);
    assert_eq!(all.figures.service_level, Some(2.0 / 3.0)); // defaults: answered
    let c = &all.counts;
    assert_eq!(
        (c.talk_sum_ms, c.hold_sum_ms, c.acw_sum_ms),
        (275_000, 30_000, 40_000)
    );
    let alice = row(&h.a, "15m", DimKind::Agent, "alice");
    assert_eq!(counts(&alice), [2, 2, 2, 0, 0, 0, 0, 2]);
    assert_eq!(
        (alice.counts.talk_sum_ms, alice.counts.acw_sum_ms),
        (215_000, 40_000)
    );
    let bob = row(&h.a, "15m", DimKind::Agent, "bob");
    assert_eq!(counts(&bob), [1, 1, 0, 0, 0, 0, 0, 1]);
    assert_eq!(
        counts(&row(&h.a, "15m", DimKind::Channel, "chat")),
        [2, 1, 1, 0, 0, 0, 1, 1]
    );
    assert_eq!(
        counts(&row(&h.a, "15m", DimKind::Channel, "voice")),
        [4, 2, 1, 2, 1, 1, 0, 2]
    );

    let s = h.a.stats();
    assert_eq!((s.accepted, s.duplicates, s.late), (19, 1, 1));
    h.finish(t(500)).unwrap();
}

#[test]
fn hand_scenario_survives_a_restart_at_every_delivery() {
    let model = hand_model();
    let truth = hand_truth();
    let deliveries = in_ts_order(&truth);
    for restart in 0..deliveries.len() {
        let built = Built {
            model: model.clone(),
            truth: truth.clone(),
            deliveries: deliveries.clone(),
            moments: (1..=deliveries.len())
                .map(|k| (k, deliveries[k - 1].rx))
                .collect(),
            restart: Some(restart),
        };
        let (compared, _) =
            run(&built).unwrap_or_else(|e| panic!("restart before delivery {restart}: {e}"));
        assert_eq!(compared, deliveries.len() + 1);
    }
}

#[test]
fn windows_and_today_across_midnight_by_hand() {
    // 2026-11-23T00:00:00Z.
    let midnight = TEN_AM - 10 * 3_600_000 + DAY;
    let t = |s| secs(midnight, s);
    let model = hand_model();
    let truth = Truth::new(vec![
        // Waits 60 s across midnight: it left the queue today, at 00:00:10.
        vec![seg(
            "late",
            "support",
            None,
            t(-50),
            Some((t(10), Some("carol"))),
            &[],
            (t(70), None),
            None,
        )],
        // Abandoned yesterday at 23:50:10 after 10 s.
        vec![seg(
            "early",
            "support",
            None,
            t(-600),
            None,
            &[],
            (t(-590), None),
            None,
        )],
    ]);
    let deliveries = in_ts_order(&truth);
    let mut h = Harness::new(&truth, &model);
    let mut next = 0;
    let offered = |h: &Harness, w| row(&h.a, w, DimKind::Queue, "support").counts.offered;

    feed_until(&mut h, &deliveries, &mut next, t(60));
    assert_eq!(offered(&h, "today"), 1);
    assert_eq!(offered(&h, "24h"), 2);
    assert_eq!(offered(&h, "1h"), 2);
    assert_eq!(offered(&h, "15m"), 2); // minutes 23:46..00:01
    assert_eq!(offered(&h, "5m"), 1); // minutes 23:57..00:01
    assert_eq!(
        realtime(&row(&h.a, "today", DimKind::Agent, "carol")),
        (0, None, 1, 0)
    );

    feed_until(&mut h, &deliveries, &mut next, t(70 + 119));
    let r = row(&h.a, "today", DimKind::Queue, "support");
    assert_eq!((r.counts.handled, r.realtime.in_acw_now), (0, 1));
    feed_until(&mut h, &deliveries, &mut next, t(70 + 120));
    let r = row(&h.a, "today", DimKind::Queue, "support");
    assert_eq!((r.counts.handled, r.realtime.in_acw_now), (1, 0));
    assert_eq!(r.figures.aht_ms, Some(60_000.0));

    // The answer at 00:00:10 (minute 00:00) stays in 5m until 00:04:59.999.
    h.check(t(300) - 1).unwrap();
    assert_eq!(offered(&h, "5m"), 1);
    h.check(t(300)).unwrap();
    assert_eq!(offered(&h, "5m"), 0);
    assert_eq!(offered(&h, "15m"), 1); // 23:50:10 left the 15m window at 00:05
                                       // 24h on 15-minute buckets: the 23:45 bucket stays until 23:45 the next day.
    h.check(t(DAY / 1000 - 900) - 1).unwrap();
    assert_eq!(offered(&h, "24h"), 2);
    h.check(t(DAY / 1000 - 900)).unwrap();
    assert_eq!(offered(&h, "24h"), 1);
    assert_eq!(offered(&h, "today"), 1);
    h.check(t(DAY / 1000) - 1).unwrap();
    assert_eq!((offered(&h, "today"), offered(&h, "24h")), (1, 1));
    h.finish(t(DAY / 1000)).unwrap();
    assert_eq!((offered(&h, "today"), offered(&h, "24h")), (0, 0));
}
