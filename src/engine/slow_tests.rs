//! Slow channels in the engine: waits, the threshold test, deadlines and expiry on the
//! business clock, in the source's clock (a backfill gives the same figures at once).

use std::path::Path;

use super::*;
use crate::config::WaitClock;
use crate::event::{Event, EventKind};

const H: i64 = 3_600_000;
const M: i64 = 60_000;
/// Friday 2026-03-06 00:00 UTC.
const FRI: i64 = 1_772_755_200_000;
const MON: i64 = FRI + 3 * 24 * H;

fn engine() -> Engine {
    let cfg = Config::parse(
        "[channels.email]\nthreshold = \"4h\"\nmax_call_duration = \"1d\"\nclock = \"business_hours\"\nhours = { mon = [\"08:00-12:00\", \"13:00-18:00\"], tue = [\"08:00-12:00\", \"13:00-18:00\"], wed = [\"08:00-12:00\", \"13:00-18:00\"], thu = [\"08:00-12:00\", \"13:00-18:00\"], fri = [\"08:00-12:00\", \"13:00-18:00\"] }\n",
        Path::new("agent.toml"),
    )
    .unwrap();
    Engine::new(&cfg)
}

fn start(id: &str, channel: &str, ts: i64) -> Event {
    let mut e = Event::new(EventKind::Start, id, ts);
    e.queue = Some("mail".into());
    e.channel = Some(channel.into());
    e
}

fn row(e: &Engine, at: i64) -> MetricsRow {
    let rows = e
        .metrics_at(
            &MetricsQuery {
                window: Some("1h".into()),
                by: DimKind::Queue,
                key: None,
            },
            at,
        )
        .unwrap();
    rows.into_iter().find(|r| r.key == "mail").unwrap()
}

#[test]
fn a_backfilled_friday_email_counts_its_business_wait_at_once() {
    // Sent all at once on Monday 12:00, as an import would.
    let mut e = engine();
    let now = MON + 12 * H;
    let evs = [
        start("within", "email", FRI + 19 * H + 30 * M),
        Event::new(EventKind::Answer, "within", MON + 11 * H + 15 * M),
        start("late", "email", FRI + 19 * H + 30 * M),
        Event::new(EventKind::Answer, "late", MON + 11 * H + 45 * M),
        start("voice", "voice", MON + 11 * H + 30 * M),
        Event::new(EventKind::Answer, "voice", MON + 11 * H + 30 * M + 10_000),
    ];
    let refs: Vec<&Event> = evs.iter().collect();
    e.apply_group(&refs, now);
    // Provisionally counted before the grace, the same once folded.
    for at in [now, now + 10_000] {
        e.advance(at);
        let r = row(&e, at);
        assert_eq!(r.counts.answered, 3);
        // 3 h 15 (Monday 08:00–11:15) within 4 h; 3 h 45 within; the voice call's 10 s within
        // the default 20 s.
        assert_eq!(r.counts.answered_within, 3);
        assert_eq!(
            r.counts.wait_sum_ms,
            (3 * H + 15 * M + 3 * H + 45 * M + 10_000) as u64
        );
        assert_eq!(r.counts.wait_max_ms, (3 * H + 45 * M) as u64);
    }
}

#[test]
fn a_channel_threshold_is_a_bound_of_the_lifetime_wait_histogram() {
    // `/metrics` buckets must include every threshold, so `le` at T counts answered within.
    assert!(engine().lifetime().wait_bounds().contains(&(4 * H as u64)));
}

#[test]
fn an_answer_after_four_business_hours_is_not_within() {
    let mut e = engine();
    let now = MON + 14 * H;
    let evs = [
        start("m", "email", FRI + 19 * H + 30 * M),
        // Monday 13:30: 08:00–12:00 and 13:00–13:30, 4 h 30.
        Event::new(EventKind::Answer, "m", MON + 13 * H + 30 * M),
    ];
    let refs: Vec<&Event> = evs.iter().collect();
    e.apply_group(&refs, now);
    e.advance(now + 10_000);
    let r = row(&e, now + 10_000);
    assert_eq!((r.counts.answered, r.counts.answered_within), (1, 0));
    assert_eq!(r.counts.wait_sum_ms, (4 * H + 30 * M) as u64);
}

#[test]
fn a_waiting_email_expires_after_a_business_day_and_lists_its_deadline() {
    let mut e = engine();
    let received = FRI + 19 * H + 30 * M;
    e.apply(&start("m", "email", received), received);
    // 1d = 24 business hours of 9 a day: Monday 9, Tuesday 9, Wednesday 08:00–12:00 and
    // 13:00–15:00: Wednesday 11 March 15:00. On the wall clock: Saturday 19:30.
    let wed_15 = MON + 2 * 24 * H + 15 * H;
    e.advance(received + 24 * H + M);
    let open = e.open_calls();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].clock, WaitClock::BusinessHours);
    // Deadline Monday 12:00; on Saturday all 4 business hours are left.
    assert_eq!(open[0].deadline_ms, Some(MON + 12 * H));
    assert_eq!(open[0].time_left_ms, Some(4 * H));
    e.advance(MON + 14 * H);
    assert_eq!(e.open_calls()[0].time_left_ms, Some(-H));
    e.advance(wed_15 - M);
    assert_eq!(e.stats().expired_segments, 0);
    assert_eq!(e.stats().open_segments, 1);
    e.advance(wed_15);
    assert_eq!(e.stats().expired_segments, 1);
    assert_eq!(e.stats().open_segments, 0);
    assert!(e.open_calls().is_empty());
}

#[test]
fn the_expiry_index_survives_a_restore_and_follows_a_reload() {
    let mut e = engine();
    let received = FRI + 19 * H + 30 * M;
    e.apply(&start("m", "email", received), received);
    e.apply(&start("v", "voice", received), received);
    // Voice keeps the 4 h wall-clock default.
    e.advance(received + 4 * H + M);
    assert_eq!(e.stats().expired_segments, 1);
    let cfg = Config::parse(
        "[channels.email]\nmax_call_duration = \"1d\"\n",
        Path::new("agent.toml"),
    )
    .unwrap();
    // The e-mail now runs on the wall clock: due Saturday 19:30.
    e.reconfigure(&cfg);
    let cp = e.checkpoint();
    let mut r = Engine::restore(
        &cfg,
        cp.slices.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))),
        Some(&cp.state),
    )
    .unwrap();
    r.advance(received + 24 * H + M);
    assert_eq!(r.stats().expired_segments, 2);
}

#[test]
fn the_expiry_index_holds_the_open_calls_only() {
    // Bounded state: an entry per call with an open segment, none left by finished calls.
    let mut e = engine();
    let now = MON + 9 * H;
    let mut evs = Vec::new();
    for i in 0..1000 {
        let id = format!("c{i}");
        let channel = if i % 2 == 0 { "email" } else { "voice" };
        evs.push(start(&id, channel, now - 10 * M));
        if i % 10 >= 3 {
            evs.push(Event::new(EventKind::Answer, &id, now - 5 * M));
            evs.push(Event::new(EventKind::End, &id, now - M));
            evs.push(Event::new(EventKind::Wrapup, &id, now - M));
        }
    }
    let refs: Vec<&Event> = evs.iter().collect();
    e.apply_group(&refs, now);
    e.advance(now + 10_000);
    assert_eq!(e.stats().open_segments, 300);
    assert_eq!(e.expiry.len(), 300);
    let ends: Vec<Event> = (0..1000)
        .filter(|i| i % 10 < 3)
        .map(|i| Event::new(EventKind::End, format!("c{i}"), now + M))
        .collect();
    let refs: Vec<&Event> = ends.iter().collect();
    e.apply_group(&refs, now + M);
    e.advance(now + 2 * M);
    assert_eq!(e.stats().open_segments, 0);
    assert_eq!(e.expiry.len(), 0);
}
