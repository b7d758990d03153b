//! Hand-worked engine scenarios: grace and late events, wrap-up timeout, expiry, limits,
//! cardinality overflow, `today` across DST, and checkpoint/restore equality.

use super::*;
use crate::config::{Config, ZoneName};
use crate::event::{EndReason, Event, EventKind};

const T0: i64 = 1_795_300_000_000; // 2026-11-22T..Z, on a minute boundary

fn cfg() -> Config {
    let mut c = Config::default();
    c.limits.max_open_segments = 10;
    c
}

fn start(id: &str, q: &str, ts: i64) -> Event {
    let mut e = Event::new(EventKind::Start, id, ts);
    e.queue = Some(q.into());
    e
}

fn answer(id: &str, agent: &str, ts: i64) -> Event {
    let mut e = Event::new(EventKind::Answer, id, ts);
    e.agent = Some(agent.into());
    e
}

fn end(id: &str, ts: i64, reason: Option<EndReason>) -> Event {
    let mut e = Event::new(EventKind::End, id, ts);
    e.reason = reason;
    e
}

fn row(e: &Engine, by: DimKind, window: &str, key: &str) -> MetricsRow {
    e.metrics(&MetricsQuery {
        window: Some(window.into()),
        by,
        key: None,
    })
    .unwrap()
    .into_iter()
    .find(|r| r.key == key)
    .unwrap_or_else(|| panic!("no row {key}"))
}

/// Feeds events, each received at its own timestamp.
fn feed(e: &mut Engine, events: &[Event]) {
    for ev in events {
        assert_eq!(e.admit(ev, 0), Ok(()), "{ev:?}");
        assert_eq!(e.apply(ev, ev.ts_ms), Applied::Accepted, "{ev:?}");
    }
}

#[test]
fn a_finished_segment_counts_at_once_and_after_folding_alike() {
    let mut e = Engine::new(&cfg());
    feed(
        &mut e,
        &[
            start("c", "q", T0),
            answer("c", "a", T0 + 12_000),
            end("c", T0 + 60_000, None),
        ],
    );
    let before = row(&e, DimKind::Queue, "5m", "q");
    assert_eq!(
        (
            before.counts.offered,
            before.counts.answered,
            before.counts.handled
        ),
        (1, 1, 0)
    );
    assert_eq!(before.realtime.in_acw_now, 1);
    // After the wrap-up timeout the handle facts fold with no ACW, attributed at the end.
    e.advance(T0 + 60_000 + 120_000);
    let after = row(&e, DimKind::Queue, "5m", "q");
    assert_eq!(after.counts.handled, 1);
    assert_eq!(after.counts.talk_sum_ms, 48_000);
    assert_eq!(after.counts.acw_sum_ms, 0);
    assert_eq!(after.realtime.in_acw_now, 0);
    assert_eq!(after.figures.asa_ms, Some(12_000.0));
    assert_eq!(e.stats().open_calls, 0);
    assert_eq!(e.stats().remembered_calls, 1);
}

#[test]
fn events_after_the_grace_are_late_and_change_nothing() {
    let mut e = Engine::new(&cfg());
    feed(&mut e, &[start("c", "q", T0), end("c", T0 + 30_000, None)]);
    e.advance(T0 + 40_000);
    let before = row(&e, DimKind::Queue, "5m", "q");
    assert_eq!(before.counts.abandoned, 1);
    // An answer that would have made it answered comes too late: ignored, counted as late.
    assert_eq!(
        e.apply(&answer("c", "a", T0 + 10_000), T0 + 41_000),
        Applied::Late
    );
    // A duplicate of the end after the call was finished is recognised too.
    assert_eq!(
        e.apply(&end("c", T0 + 30_000, None), T0 + 42_000),
        Applied::Late
    );
    assert_eq!(row(&e, DimKind::Queue, "5m", "q").counts, before.counts);
    assert_eq!(e.stats().late, 2);
}

#[test]
fn an_answer_within_the_grace_reorders_the_segment() {
    let mut e = Engine::new(&cfg());
    feed(&mut e, &[start("c", "q", T0)]);
    assert_eq!(
        e.apply(&end("c", T0 + 30_000, None), T0 + 30_000),
        Applied::Accepted
    );
    assert_eq!(
        e.apply(&answer("c", "a", T0 + 10_000), T0 + 31_000),
        Applied::Accepted
    );
    e.advance(T0 + 200_000);
    let r = row(&e, DimKind::Queue, "5m", "q");
    assert_eq!((r.counts.answered, r.counts.abandoned), (1, 0));
    assert_eq!(r.counts.talk_sum_ms, 20_000);
}

#[test]
fn duplicates_are_ignored() {
    let mut e = Engine::new(&cfg());
    feed(&mut e, &[start("c", "q", T0)]);
    assert_eq!(e.apply(&start("c", "q", T0), T0 + 5), Applied::Duplicate);
    assert_eq!(row(&e, DimKind::Queue, "5m", "q").realtime.waiting_now, 1);
    assert_eq!(e.stats().duplicates, 1);
}

#[test]
fn open_segment_limit_refuses_new_starts_only() {
    let mut c = cfg();
    c.limits.max_open_segments = 2;
    let mut e = Engine::new(&c);
    feed(&mut e, &[start("a", "q", T0), start("b", "q", T0)]);
    assert_eq!(
        e.admit(&start("c", "q", T0), 0),
        Err(Rejection::OpenSegmentLimit(2))
    );
    // A start admitted earlier in the same group counts too; a duplicate start is not new.
    assert_eq!(
        e.admit(&start("a", "q", T0), 1),
        Ok(()),
        "a duplicate start opens nothing"
    );
    // Events of open calls still go through, and an ended call frees its place.
    feed(&mut e, &[end("a", T0 + 1000, None)]);
    feed(&mut e, &[start("c", "q", T0 + 2000)]);
    assert_eq!(e.stats().rejected_open_segment_limit, 1);
    assert_eq!(e.open_segment_count(), 2);
}

#[test]
fn segments_without_end_expire_and_are_counted() {
    let mut e = Engine::new(&cfg());
    feed(&mut e, &[start("c", "q", T0)]);
    e.advance(T0 + 4 * 3_600_000 + 61_000);
    let s = e.stats();
    assert_eq!(
        (s.expired_segments, s.open_segments, s.open_calls),
        (1, 0, 0)
    );
    let rows = e
        .metrics(&MetricsQuery {
            window: Some("1h".into()),
            by: DimKind::All,
            key: None,
        })
        .unwrap();
    assert_eq!(
        (rows[0].realtime.waiting_now, rows[0].counts.offered),
        (0, 0)
    );
}

#[test]
fn a_backfilled_old_call_split_by_a_scan_is_not_expired_but_a_lone_old_start_is() {
    let mut e = Engine::new(&cfg());
    // Engine time a second before a scan; calls five hours old (max_call_duration is 4 h).
    let now = T0 + 59_000;
    let old = T0 - 5 * 3_600_000;
    e.advance(now);
    for ev in [start("b", "q", old), start("lone", "q", old)] {
        assert_eq!(e.admit(&ev, 0), Ok(()));
        assert_eq!(e.apply(&ev, now), Applied::Accepted);
    }
    // The scan falls between the backfilled call's start and the rest of it.
    e.advance(now + 1_500);
    assert_eq!(e.stats().expired_segments, 0);
    for ev in [
        answer("b", "ann", old + 10_000),
        end("b", old + 70_000, None),
    ] {
        assert_eq!(e.apply(&ev, now + 1_500), Applied::Accepted);
    }
    let r = row(&e, DimKind::Queue, "24h", "q");
    // Counted at once, handling complete too: its wrap-up timeout passed hours ago in its clock.
    assert_eq!(
        (r.counts.answered, r.counts.handled, r.realtime.in_acw_now),
        (1, 1, 0)
    );
    assert_eq!(r.realtime.waiting_now, 1, "the lone start still waits");
    // The lone start, quiet since, expires at the first scan at least 10 s after it came.
    e.advance(now + 61_000);
    let s = e.stats();
    assert_eq!((s.expired_segments, s.open_segments), (1, 0));
    let r = row(&e, DimKind::Queue, "24h", "q");
    assert_eq!((r.counts.offered, r.counts.handled), (1, 1));
}

#[test]
fn old_slices_freeze_read_the_same_and_thaw_for_a_late_fact() {
    let c = Config::default();
    let mut e = Engine::new(&c);
    // Forty calls over the last three hours, backfilled at once.
    let mut calls = Vec::new();
    for i in 0..40 {
        let at = T0 - 3 * 3_600_000 + i * 270_000;
        let id = format!("c{i}");
        calls.extend([
            start(&id, "q", at),
            answer(&id, "ann", at + 5_000 + i * 100),
            end(&id, at + 65_000, None),
        ]);
    }
    e.advance(T0);
    for ev in &calls {
        assert_eq!(e.admit(ev, 0), Ok(()));
        assert_eq!(e.apply(ev, T0), Applied::Accepted);
    }
    // Folded after the reorder grace, before the first scan (T0 is 40 s past a minute).
    e.advance(T0 + 10_000);
    assert_eq!(e.stats().open_calls, 0);
    // Every window's row for queue q, as at `now`.
    let day = |e: &Engine, now: i64| {
        ["15m", "1h", "24h", "today"].map(|w| {
            let q = MetricsQuery {
                window: Some(w.into()),
                by: DimKind::Queue,
                key: Some("q".into()),
            };
            let r = e.metrics_at(&q, now).unwrap().remove(0);
            (r.counts, r.figures)
        })
    };
    let live = e.state_bytes();
    let before = (day(&e, T0 + 121_000), live.buckets);
    // The next scans freeze every slice but the last few minutes and the current and previous
    // interval: the same buckets and answers, in less memory.
    e.advance(T0 + 121_000);
    let frozen = e.state_bytes();
    assert_eq!((day(&e, T0 + 121_000), frozen.buckets), before);
    assert!(
        frozen.bucket_bytes < live.bucket_bytes,
        "{frozen:?} against {live:?}"
    );
    // A backfilled call two hours ago folds into a frozen slice: it thaws and counts.
    let late = T0 - 2 * 3_600_000 + 1_000;
    for ev in [start("late", "q", late), end("late", late + 4_000, None)] {
        assert_eq!(e.admit(&ev, 0), Ok(()));
        assert_eq!(e.apply(&ev, T0 + 122_000), Applied::Accepted);
    }
    e.advance(T0 + 125_000);
    let r = row(&e, DimKind::Queue, "24h", "q");
    assert_eq!((r.counts.offered, r.counts.abandoned), (41, 1));
    // Restored (old slices read back frozen) and folded the same way: the same answers.
    let b = restored(&c, &mut e);
    assert_eq!(day(&b, T0 + 125_000), day(&e, T0 + 125_000));
    assert_eq!(
        b.bucket(
            Tier::Interval,
            &Dim {
                kind: DimKind::Queue,
                key: "q".into()
            },
            c_interval(&e, late)
        ),
        e.bucket(
            Tier::Interval,
            &Dim {
                kind: DimKind::Queue,
                key: "q".into()
            },
            c_interval(&e, late)
        ),
    );
}

fn c_interval(e: &Engine, ts: i64) -> i64 {
    e.calendar().interval_bucket(ts)
}

#[test]
fn keys_past_the_limit_count_under_other() {
    let mut c = cfg();
    c.metrics.max_queues = 2;
    let mut e = Engine::new(&c);
    for (i, q) in ["q1", "q2", "q3", "q4"].iter().enumerate() {
        let id = format!("c{i}");
        feed(
            &mut e,
            &[
                start(&id, q, T0),
                end(&id, T0 + 1000, Some(EndReason::Abandoned)),
            ],
        );
    }
    e.advance(T0 + 10_000);
    let rows = e
        .metrics(&MetricsQuery {
            window: Some("5m".into()),
            by: DimKind::Queue,
            key: None,
        })
        .unwrap();
    let keys: Vec<_> = rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, vec!["(other)", "q1", "q2"]);
    assert_eq!(rows[0].counts.offered, 2);
    assert_eq!(e.stats().overflowed.get("queue"), Some(&2));
}

#[test]
fn today_follows_local_midnight_across_dst() {
    let mut c = cfg();
    c.general.time_zone = ZoneName("Europe/Paris".into());
    let mut e = Engine::new(&c);
    let ms = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_millisecond();
    // Spring-forward day: local midnight is 2026-03-28T23:00Z.
    for (id, at) in [
        ("before", "2026-03-28T22:59:00Z"),
        ("after", "2026-03-28T23:01:00Z"),
        ("noon", "2026-03-29T10:00:00Z"),
    ] {
        let t = ms(at);
        feed(&mut e, &[start(id, "q", t), end(id, t + 1000, None)]);
    }
    e.advance(ms("2026-03-29T10:30:00Z"));
    assert_eq!(row(&e, DimKind::Queue, "today", "q").counts.offered, 2);
    assert_eq!(row(&e, DimKind::Queue, "24h", "q").counts.offered, 3);
}

/// A new engine restored from `a`'s checkpoint.
fn restored(c: &Config, a: &mut Engine) -> Engine {
    let cp = a.checkpoint();
    Engine::restore(
        c,
        cp.slices.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))),
        Some(&cp.state),
    )
    .unwrap()
}

#[test]
fn restore_from_checkpoint_gives_identical_metrics() {
    let c = cfg();
    let mut a = Engine::new(&c);
    feed(
        &mut a,
        &[
            start("x", "q", T0),
            answer("x", "ann", T0 + 5000),
            start("y", "q", T0 + 1000),
        ],
    );
    let mut b = restored(&c, &mut a);
    let rest = [
        end("x", T0 + 90_000, None),
        end("y", T0 + 95_000, Some(EndReason::Timeout)),
    ];
    feed(&mut a, &rest);
    feed(&mut b, &rest);
    for e in [&mut a, &mut b] {
        e.advance(T0 + 400_000);
    }
    for by in [
        DimKind::All,
        DimKind::Queue,
        DimKind::Agent,
        DimKind::Channel,
    ] {
        for w in ["5m", "15m", "1h", "24h", "today"] {
            let q = MetricsQuery {
                window: Some(w.into()),
                by,
                key: None,
            };
            assert_eq!(a.metrics(&q).unwrap(), b.metrics(&q).unwrap(), "{by:?} {w}");
        }
    }
    assert_eq!(row(&b, DimKind::All, "15m", "all").counts.offered, 2);
    assert_eq!(a.lifetime(), b.lifetime());
}

#[test]
fn lifetime_totals_count_what_the_windows_count_and_survive_a_restore() {
    let c = cfg();
    let mut a = Engine::new(&c);
    feed(
        &mut a,
        &[
            start("x", "q", T0),
            answer("x", "ann", T0 + 5_000),
            start("y", "q", T0 + 1_000),
            end("x", T0 + 90_000, None),
            end("y", T0 + 25_000, Some(EndReason::Abandoned)),
        ],
    );
    a.advance(T0 + 400_000);
    let life = |e: &Engine, kind: DimKind, key: &str| {
        e.lifetime()
            .iter()
            .find(|(k, name, _)| *k == kind && *name == key)
            .map_or_else(
                || panic!("no lifetime totals for {key}"),
                |(_, _, t)| t.clone(),
            )
    };
    let w = row(&a, DimKind::Queue, "1h", "q").counts;
    let l = life(&a, DimKind::Queue, "q");
    assert_eq!(l.agg.named_counters(), w.named_counters());
    let h = l.hist.expect("queues keep histograms");
    assert_eq!(h.wait[0].iter().sum::<u64>(), 1);
    assert_eq!(h.wait[1].iter().sum::<u64>(), 1);
    assert_eq!(h.handle.iter().sum::<u64>(), 1);
    assert_eq!(life(&a, DimKind::Agent, "ann").agg.handled, 1);

    // Restored from a checkpoint: the same totals, which go on counting.
    let mut b = restored(&c, &mut a);
    assert_eq!(a.lifetime(), b.lifetime());
    feed(
        &mut b,
        &[
            start("z", "q", T0 + 500_000),
            end("z", T0 + 502_000, Some(EndReason::Timeout)),
        ],
    );
    b.advance(T0 + 600_000);
    assert_eq!(life(&b, DimKind::Queue, "q").agg.offered, 3);
    assert_eq!(life(&b, DimKind::Queue, "q").overflow_wait_sum_ms, 2_000);
    assert_eq!(
        life(&b, DimKind::Queue, "q").overflow_by_reason,
        [1, 0, 0, 0]
    );

    // A state of layout 2 (no lifetime part) loads with empty lifetime totals.
    let mut old = Vec::new();
    let mut part = Some(StatePart::Head);
    while let Some(p) = part.filter(|p| *p != StatePart::Lifetime) {
        part = a.encode_state_part(p, usize::MAX, &mut old);
    }
    assert_eq!(old[0], 6, "the layout number is the first byte");
    old[0] = 2;
    let c2 = Engine::restore(&c, std::iter::empty(), Some(&old)).unwrap();
    assert_eq!(c2.lifetime().iter().count(), 0);
}

#[test]
fn bucket_keys_round_trip() {
    let id = BucketId {
        tier: Tier::Interval,
        dim: Dim {
            kind: DimKind::Agent,
            key: "zoë".into(),
        },
        start_ms: -5,
    };
    assert_eq!(BucketId::decode(&id.encode()), Some(id));
}

#[test]
fn unknown_windows_and_bad_filters_are_refused() {
    let e = Engine::new(&cfg());
    let err = e
        .metrics(&MetricsQuery {
            window: Some("7m".into()),
            by: DimKind::Queue,
            key: None,
        })
        .unwrap_err();
    assert!(err.to_string().contains("5m, 15m, 1h, 24h, today"), "{err}");
    assert!(e
        .metrics(&MetricsQuery {
            window: None,
            by: DimKind::Agent,
            key: Some("q".into()),
        })
        .is_err());
}

#[test]
fn a_zero_acw_wrapup_stays_with_its_own_segment_after_a_transfer() {
    let mut e = Engine::new(&cfg());
    let t = T0;
    feed(
        &mut e,
        &[
            start("c", "q", t),
            answer("c", "a", t),
            end("c", t, None),
            start("c", "q", t + 1),
            answer("c", "b", t + 1),
            end("c", t + 1, None),
            Event::new(EventKind::Wrapup, "c", t + 1),
        ],
    );
    e.advance(t + 300_000);
    let r = row(&e, DimKind::Queue, "15m", "q");
    assert_eq!((r.counts.handled, r.counts.acw_sum_ms), (2, 0));
}

mod groups {
    use super::*;
    use proptest::prelude::*;

    /// Events of `n` calls: start, answer (agent), end, wrap-up, some left out; shuffled by `perm`.
    fn events(calls: &[(u8, u32, u32, u32, u8)]) -> Vec<Event> {
        let mut out = Vec::new();
        for (i, &(q, wait, talk, acw, mask)) in calls.iter().enumerate() {
            let id = format!("c{}", i % 7);
            let t = T0 + i as i64 * 7_000;
            out.push(start(&id, &format!("q{q}"), t));
            let answer_at = t + i64::from(wait);
            if mask & 1 == 0 {
                out.push(answer(&id, ["a", "b", "c"][i % 3], answer_at));
            }
            let end_at = answer_at + i64::from(talk);
            if mask & 2 == 0 {
                out.push(end(&id, end_at, None));
            }
            if mask & 4 == 0 {
                out.push(Event::new(EventKind::Wrapup, &id, end_at + i64::from(acw)));
            }
        }
        out
    }

    proptest! {
        #[test]
        fn a_group_applies_as_its_events_one_by_one(
            calls in prop::collection::vec((0u8..3, 0u32..40_000, 0u32..90_000, 0u32..30_000, 0u8..8), 1..25),
            cuts in prop::collection::vec(0usize..60, 0..8),
            gaps in prop::collection::vec(0i64..5_000, 8),
            seed in any::<u64>(),
        ) {
            let mut evs = events(&calls);
            // A deterministic shuffle, with duplicates now and then.
            let mut x = seed | 1;
            for i in (1..evs.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                evs.swap(i, (x % (i as u64 + 1)) as usize);
            }
            if seed % 3 == 0 {
                let d = evs[0].clone();
                evs.push(d);
            }
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|c| *c < evs.len()).collect();
            cuts.push(evs.len());
            cuts.sort_unstable();
            cuts.dedup();
            let c = cfg();
            let (mut a, mut b) = (Engine::new(&c), Engine::new(&c));
            let mut rx = T0;
            let mut from = 0;
            for (g, cut) in cuts.into_iter().enumerate() {
                rx += gaps[g % gaps.len()];
                let group: Vec<&Event> = evs[from..cut].iter().collect();
                let ra = a.apply_group(&group, rx);
                let rb: Vec<Applied> = group.iter().map(|e| b.apply(e, rx)).collect();
                prop_assert_eq!(ra, rb);
                from = cut;
                let strip = |e: &Engine| EngineStats { state: Default::default(), ..e.stats() };
                prop_assert_eq!(strip(&a), strip(&b));
                for by in [DimKind::All, DimKind::Queue, DimKind::Agent] {
                    for w in ["5m", "24h"] {
                        let q = MetricsQuery { window: Some(w.into()), by, key: None };
                        prop_assert_eq!(a.metrics(&q).unwrap(), b.metrics(&q).unwrap());
                    }
                }
            }
            a.advance(rx + 600_000);
            b.advance(rx + 600_000);
            let q = MetricsQuery { window: Some("1h".into()), by: DimKind::Queue, key: None };
            prop_assert_eq!(a.metrics(&q).unwrap(), b.metrics(&q).unwrap());
        }
    }
}

#[test]
fn rows_without_sketches_have_every_figure_but_the_quantiles() {
    let mut c = cfg();
    c.limits.max_open_segments = 1000;
    let mut e = Engine::new(&c);
    // Calls folded into minute and interval buckets, and some still open or unfolded.
    let mut events = Vec::new();
    for i in 0..120i64 {
        let id = format!("c{i}");
        let t = T0 + i * 29_000;
        let q = ["q1", "q2", "q3"][(i % 3) as usize];
        events.push(start(&id, q, t));
        if i % 4 == 0 {
            events.push(end(&id, t + 40_000, None));
        } else if i < 110 {
            events.push(answer(&id, "a", t + (i % 7) * 5_000));
            events.push(end(&id, t + 200_000 + i * 1_000, None));
        }
    }
    events.sort_by_key(|e| e.ts_ms);
    feed(&mut e, &events);
    let now = T0 + 120 * 29_000;
    for window in ["5m", "1h", "24h", "today"] {
        let q = MetricsQuery {
            window: Some(window.into()),
            by: DimKind::Queue,
            key: None,
        };
        let full = e.metrics_rows(&q, now, false).unwrap();
        let counters = e.counter_rows(&q, now).unwrap();
        assert_eq!(full.len(), counters.len(), "{window}");
        assert!(full.iter().any(|r| r.counts.offered > 0), "{window}");
        for (f, c) in full.iter().zip(&counters) {
            let mut f = f.clone();
            for q in [
                &mut f.figures.wait_p50_ms,
                &mut f.figures.wait_p90_ms,
                &mut f.figures.wait_p95_ms,
                &mut f.figures.wait_p99_ms,
                &mut f.figures.handle_p50_ms,
                &mut f.figures.handle_p90_ms,
                &mut f.figures.handle_p95_ms,
                &mut f.figures.handle_p99_ms,
            ] {
                *q = None;
            }
            assert_eq!(&f, c, "{window}");
        }
    }
}
