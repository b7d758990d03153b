//! Callback requests through the engine, against hand-worked deadlines and counts: two
//! objectives over the same calls (the same business day, and 4 business hours) in an office
//! open weekdays 08:00-18:00 UTC with Christmas closed; across a restore, a period's end, the
//! open-request limit and callbacks that match no request.

use std::path::Path;

use super::*;
use crate::callbacks::book::Tally;
use crate::config::Config;
use crate::event::{CallbackOutcome, EndReason, Event, EventKind};

const OFFICE: &str = r#"
[general]
time_zone = "UTC"

[[sla]]
name = "same-day"
scope = { queues = ["support"] }
measure = "callbacks_within"
promise = "same_business_day"
target = 0.9
period = "week"
hours = { mon = ["08:00-18:00"], tue = ["08:00-18:00"], wed = ["08:00-18:00"], thu = ["08:00-18:00"], fri = ["08:00-18:00"] }
holidays = ["2026-12-25"]

[[sla]]
name = "four-hours"
scope = { queues = ["support"] }
measure = "callbacks_within"
promise = "4h"
target = 0.5
period = "week"
hours = { mon = ["08:00-18:00"], tue = ["08:00-18:00"], wed = ["08:00-18:00"], thu = ["08:00-18:00"], fri = ["08:00-18:00"] }
holidays = ["2026-12-25"]
"#;

fn config(text: &str) -> Config {
    Config::parse(text, Path::new("agent.toml")).unwrap()
}

fn at(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

/// A call that waits a minute in `queue` and leaves it at `t` asking for a callback.
fn ask(e: &mut Engine, id: &str, queue: &str, t: &str) {
    let t = at(t);
    let mut s = Event::new(EventKind::Start, id, t - 60_000);
    s.queue = Some(queue.into());
    let mut end = Event::new(EventKind::End, id, t);
    end.reason = Some(EndReason::Callback);
    let now = t.max(e.now_ms());
    assert_eq!(e.apply_group(&[&s, &end], now), [Applied::Accepted; 2]);
}

fn callback(e: &mut Engine, id: &str, t: &str, outcome: CallbackOutcome) {
    let mut ev = Event::new(EventKind::Callback, id, at(t));
    ev.outcome = Some(outcome);
    let now = at(t).max(e.now_ms());
    assert_eq!(e.apply(&ev, now), Applied::Accepted);
}

fn tally(e: &Engine, name: &str, now: i64) -> (Option<f64>, Tally) {
    let o = e.sla_at(now).into_iter().find(|o| o.name == name).unwrap();
    (o.value, o.callbacks.unwrap())
}

fn open_ids(e: &Engine, name: &str) -> Vec<(String, i64)> {
    e.callbacks
        .desk(name)
        .unwrap()
        .book
        .open_by_deadline()
        .iter()
        .map(|r| (r.call_id.clone(), r.deadline_ms))
        .collect()
}

/// The week of Monday 7 December 2026 (deadlines worked by hand in the comments).
fn week(e: &mut Engine) {
    use CallbackOutcome::*;
    // a: Mon 09:00. Same day: Mon 18:00; 4h: Mon 13:00. Reached Mon 17:00.
    ask(e, "a", "support", "2026-12-07T09:00:00Z");
    // b: Mon 17:30. Same day: Mon 18:00; 4h: 30 min Monday + 3h30 Tuesday = Tue 11:30.
    ask(e, "b", "support", "2026-12-07T17:30:00Z");
    callback(e, "a", "2026-12-07T17:00:00Z", Reached);
    // c: Mon 19:00, closed. Same day: Tue 18:00; 4h: Tue 12:00.
    ask(e, "c", "support", "2026-12-07T19:00:00Z");
    // f: a queue out of scope: no request, and its callback matches none.
    ask(e, "f", "sales", "2026-12-07T19:30:00Z");
    callback(e, "b", "2026-12-08T09:00:00Z", Reached);
    // d: Tue 10:00. Same day: Tue 18:00; 4h: Tue 14:00. Never called back.
    ask(e, "d", "support", "2026-12-08T10:00:00Z");
    callback(e, "c", "2026-12-08T10:00:00Z", NoAnswer);
    callback(e, "c", "2026-12-08T12:00:00Z", Reached);
    callback(e, "f", "2026-12-08T12:30:00Z", Reached);
    // i: Wed 09:00. Same day: Wed 18:00; 4h: Wed 13:00.
    ask(e, "i", "support", "2026-12-09T09:00:00Z");
    // e: Wed 10:00, cancelled at 11:00.
    ask(e, "e", "support", "2026-12-09T10:00:00Z");
    callback(e, "e", "2026-12-09T11:00:00Z", Cancelled);
}

#[test]
fn on_time_late_missed_cancelled_and_open_are_counted_exactly() {
    let cfg = config(OFFICE);
    let mut e = Engine::new(&cfg);
    week(&mut e);
    let now = at("2026-12-09T12:00:00Z");
    e.advance(now);
    // Same day: a, c on time; b late; d missed; i open; e cancelled: 2 / (2 + 1 + 1).
    let same = Tally {
        requested: 6,
        on_time: 2,
        late: 1,
        missed: 1,
        open: 1,
        cancelled: 1,
    };
    assert_eq!(tally(&e, "same-day", now), (Some(0.5), same));
    // 4h: b, c on time (c exactly at its deadline); a late; d missed; i open; e cancelled.
    let four = Tally {
        requested: 6,
        on_time: 2,
        late: 1,
        missed: 1,
        open: 1,
        cancelled: 1,
    };
    assert_eq!(tally(&e, "four-hours", now), (Some(0.5), four));
    let o = e
        .sla_at(now)
        .into_iter()
        .find(|o| o.name == "same-day")
        .unwrap();
    // 4 known in 24 open hours (Mon 08:00 to Wed 12:00), 26 left to Fri 18:00: 4 more
    // expected; 0.9 × 8 − 2 = 5.2 → 6 on time needed of 4: no longer reachable.
    assert_eq!(o.status, crate::sla::compliance::Status::Missed);
    assert_eq!(o.margin, Some(crate::sla::compliance::Margin::Unreachable));
    assert_eq!(
        open_ids(&e, "four-hours"),
        [
            ("d".to_string(), at("2026-12-08T14:00:00Z")),
            ("i".to_string(), at("2026-12-09T13:00:00Z")),
        ]
    );
    let stats = e.stats();
    assert_eq!(stats.open_callbacks, 4, "d and i in both objectives");
    assert_eq!(stats.callbacks_unmatched, 1, "f");
    assert_eq!(stats.callbacks_refused_limit, 0);

    // At 13:30 i is past its 4-hour deadline, not yet its same-day one.
    let later = at("2026-12-09T13:30:00Z");
    assert_eq!(tally(&e, "four-hours", later).1.missed, 2);
    assert_eq!(tally(&e, "same-day", later).1.missed, 1);

    // A restore gives the same figures.
    let cp = e.checkpoint();
    let r = Engine::restore(&cfg, Vec::new(), Some(&cp.state)).unwrap();
    for name in ["same-day", "four-hours"] {
        assert_eq!(tally(&r, name, now), tally(&e, name, now), "{name}");
        assert_eq!(open_ids(&r, name), open_ids(&e, name), "{name}");
    }
    assert_eq!(r.stats().callbacks_unmatched, 1);
}

#[test]
fn a_week_ends_across_a_weekend_and_christmas() {
    let cfg = config(OFFICE);
    let mut e = Engine::new(&cfg);
    week(&mut e);
    // g: Friday 17:00. Same day: Fri 18:00; 4h: 1h Friday + 3h Monday = Mon 14 11:00.
    ask(&mut e, "g", "support", "2026-12-11T17:00:00Z");
    callback(
        &mut e,
        "g",
        "2026-12-14T10:30:00Z",
        CallbackOutcome::Reached,
    );
    let now = at("2026-12-14T12:00:00Z");
    e.advance(now);
    let o = e
        .sla_at(now)
        .into_iter()
        .find(|o| o.name == "same-day")
        .unwrap();
    assert_eq!(
        o.callbacks,
        Some(Tally::default()),
        "nothing asked this week"
    );
    let past = &o.past[0];
    assert_eq!(past.period_start_ms, at("2026-12-07T00:00:00Z"));
    // a, c on time; b, g late; d, i missed; e cancelled.
    assert_eq!(
        past.callbacks,
        Some(Tally {
            requested: 7,
            on_time: 2,
            late: 2,
            missed: 2,
            open: 0,
            cancelled: 1
        })
    );
    assert_eq!(past.value, Some(2.0 / 6.0));
    let four = e
        .sla_at(now)
        .into_iter()
        .find(|o| o.name == "four-hours")
        .unwrap();
    // b, c, g on time; a late; d, i missed.
    assert_eq!(four.past[0].value, Some(0.5));
    // The week is over: its closed requests are counts now; d and i are held open, and g,
    // closed after the week's tidying (at its callback), until the next one.
    for name in ["same-day", "four-hours"] {
        let held: Vec<&str> = e
            .callbacks
            .desk(name)
            .unwrap()
            .book
            .iter()
            .map(|r| r.call_id.as_str())
            .collect();
        assert_eq!(held, ["d", "g", "i"], "{name}");
    }
    // h: Thursday 24 December 16:00. Same day: 18:00; 4h: 2h Thursday, Christmas and the
    // weekend closed, 2h Monday = Mon 28 10:00.
    ask(&mut e, "h", "support", "2026-12-24T16:00:00Z");
    let deadline = |e: &Engine, name: &str| {
        open_ids(e, name)
            .into_iter()
            .find(|(id, _)| id == "h")
            .map(|(_, d)| d)
    };
    assert_eq!(deadline(&e, "same-day"), Some(at("2026-12-24T18:00:00Z")));
    assert_eq!(deadline(&e, "four-hours"), Some(at("2026-12-28T10:00:00Z")));
    // A late callback of last week's d is counted late in last week, the day it comes.
    callback(
        &mut e,
        "d",
        "2026-12-24T17:00:00Z",
        CallbackOutcome::Reached,
    );
    let now = at("2026-12-24T17:30:00Z");
    let o = e
        .sla_at(now)
        .into_iter()
        .find(|o| o.name == "same-day")
        .unwrap();
    let dec7 = o
        .past
        .iter()
        .find(|p| p.period_start_ms == at("2026-12-07T00:00:00Z"))
        .unwrap();
    let t = dec7.callbacks.unwrap();
    assert_eq!((t.late, t.missed), (3, 1));
    // The next week's end folds g and d into the counts: only i (and h) stay held.
    e.advance(at("2026-12-28T00:00:00Z"));
    let held: Vec<&str> = e
        .callbacks
        .desk("same-day")
        .unwrap()
        .book
        .iter()
        .map(|r| r.call_id.as_str())
        .collect();
    assert_eq!(held, ["h", "i"]);
    let o = e.sla_at(at("2026-12-28T00:00:00Z"));
    let dec7 = o[0]
        .past
        .iter()
        .find(|p| p.period_start_ms == at("2026-12-07T00:00:00Z"))
        .unwrap();
    assert_eq!(
        dec7.callbacks,
        Some(Tally {
            requested: 7,
            on_time: 2,
            late: 3,
            missed: 1,
            open: 0,
            cancelled: 1
        })
    );
}

#[test]
fn requests_over_the_limit_are_refused_and_counted() {
    let cfg = config(&format!("{OFFICE}\n[limits]\nmax_open_callbacks = 3\n"));
    let mut e = Engine::new(&cfg);
    ask(&mut e, "a", "support", "2026-12-07T09:00:00Z");
    ask(&mut e, "b", "support", "2026-12-07T09:10:00Z");
    // Two objectives each: a takes 2, b 1 of 3, and its second is refused.
    let s = e.stats();
    assert_eq!((s.open_callbacks, s.callbacks_refused_limit), (3, 1));
    callback(
        &mut e,
        "a",
        "2026-12-07T09:30:00Z",
        CallbackOutcome::Reached,
    );
    ask(&mut e, "c", "support", "2026-12-07T09:40:00Z");
    let s = e.stats();
    assert_eq!((s.open_callbacks, s.callbacks_refused_limit), (3, 1));
}

#[test]
fn the_same_callback_again_is_a_duplicate_not_unmatched() {
    let mut e = Engine::new(&config(OFFICE));
    ask(&mut e, "a", "support", "2026-12-07T09:00:00Z");
    callback(
        &mut e,
        "a",
        "2026-12-07T09:30:00Z",
        CallbackOutcome::Reached,
    );
    let mut again = Event::new(EventKind::Callback, "a", at("2026-12-07T09:30:00Z"));
    again.outcome = Some(CallbackOutcome::Reached);
    let now = e.now_ms();
    assert_eq!(e.apply(&again, now), Applied::Duplicate);
    // Another time, or another outcome, for a closed request matches nothing.
    again.ts_ms += 1;
    assert_eq!(e.apply(&again, now), Applied::Accepted);
    again.outcome = Some(CallbackOutcome::Cancelled);
    again.ts_ms -= 1;
    assert_eq!(e.apply(&again, now), Applied::Accepted);
    let s = e.stats();
    assert_eq!((s.duplicates, s.callbacks_unmatched), (1, 2));
    let t = tally(&e, "same-day", at("2026-12-07T10:00:00Z")).1;
    assert_eq!((t.requested, t.on_time), (1, 1));
}

#[test]
fn a_state_without_callbacks_still_restores() {
    let cfg = config(OFFICE);
    let mut e = Engine::new(&cfg);
    ask(&mut e, "a", "support", "2026-12-07T09:00:00Z");
    let mut state = e.checkpoint().state;
    // Layout 5: the same value without the callback part, its version number 5.
    let mut tail = Vec::new();
    e.callbacks.encode(&mut tail);
    state.truncate(state.len() - tail.len());
    assert_eq!(state[0], 6);
    state[0] = 5;
    let r = Engine::restore(&cfg, Vec::new(), Some(&state)).unwrap();
    assert_eq!(r.stats().open_callbacks, 0);
    assert_eq!(r.stats().open_calls, e.stats().open_calls);
}

#[test]
fn the_promise_is_checked_and_named() {
    let base =
        "[[sla]]\nname = \"cb\"\nmeasure = \"callbacks_within\"\ntarget = 0.9\nperiod = \"day\"\n";
    let err = |text: &str| {
        Config::parse(text, Path::new("agent.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(err(base).contains("sla.0.promise"), "{}", err(base));
    let soon = format!("{base}promise = \"soon\"\n");
    assert!(err(&soon).contains("sla.0.promise") && err(&soon).contains("soon"));
    let on_sl = "[[sla]]\nname = \"a\"\nmeasure = \"asa_max\"\ntarget = \"30s\"\nperiod = \"day\"\npromise = \"4h\"\n";
    assert!(err(on_sl).contains("sla.0.promise"), "{}", err(on_sl));
    let ok = format!("{base}promise = \"12h\"\n");
    assert_eq!(err(&ok), "");
}

#[test]
fn overdue_requests_are_counted_per_queue_once_per_call() {
    let cfg = config(&OFFICE.replace(
        "scope = { queues = [\"support\"] }\nmeasure = \"callbacks_within\"\npromise = \"4h\"",
        "scope = { queues = [\"support\", \"sales\"] }\nmeasure = \"callbacks_within\"\npromise = \"4h\"",
    ));
    let mut e = Engine::new(&cfg);
    ask(&mut e, "a", "support", "2026-12-07T09:00:00Z");
    ask(&mut e, "b", "sales", "2026-12-07T09:00:00Z");
    ask(&mut e, "c", "support", "2026-12-07T15:00:00Z");
    // 14:00: a and b past their 4-hour deadline (13:00), none past the same-day one.
    let now = at("2026-12-07T14:00:00Z");
    let all = e.overdue_callbacks_by_queue(None, now);
    assert_eq!(
        all.into_iter().collect::<Vec<_>>(),
        [("sales".to_string(), 1), ("support".to_string(), 1)]
    );
    assert!(e
        .overdue_callbacks_by_queue(Some("same-day"), now)
        .is_empty());
    // 19:00: a overdue in both objectives counts once; c is past its same-day deadline
    // (18:00), not its 4-hour one (3h Monday + 1h Tuesday = Tue 09:00).
    let now = at("2026-12-07T19:00:00Z");
    let support = e.overdue_callbacks_by_queue(None, now)["support"];
    assert_eq!(support, 2);
    let r = e.callbacks_at(now);
    assert_eq!(r.open.len(), 5, "a and c in both objectives, b in one");
    assert_eq!(r.open[0].left_ms, at("2026-12-07T13:00:00Z") - now);
    assert!(r
        .open
        .windows(2)
        .all(|w| w[0].deadline_ms <= w[1].deadline_ms));
    let four = r
        .objectives
        .iter()
        .find(|o| o.name == "four-hours")
        .unwrap();
    assert_eq!((four.overdue, four.tally.missed), (2, 2), "a and b");
}

#[test]
fn an_end_before_its_start_opens_the_request_when_the_start_comes() {
    let mut e = Engine::new(&config(OFFICE));
    let t = at("2026-12-07T09:00:00Z");
    let mut end = Event::new(EventKind::End, "a", t);
    end.reason = Some(EndReason::Callback);
    assert_eq!(e.apply(&end, t), Applied::Accepted);
    assert_eq!(e.stats().open_callbacks, 0, "no queue yet");
    let mut s = Event::new(EventKind::Start, "a", t - 60_000);
    s.queue = Some("support".into());
    assert_eq!(e.apply(&s, t + 1_000), Applied::Accepted);
    assert_eq!(
        e.stats().open_callbacks,
        2,
        "both objectives, made at the end's ts"
    );
    assert_eq!(
        open_ids(&e, "four-hours"),
        [("a".to_string(), at("2026-12-07T13:00:00Z"))]
    );
    // Made, then another event of the same call re-derives the segment: no second request.
    // (Within the reorder grace, so the call is still held and the event taken.)
    let made = Event {
        outcome: Some(CallbackOutcome::Reached),
        ..Event::new(EventKind::Callback, "a", t + 500)
    };
    assert_eq!(e.apply(&made, t + 1_500), Applied::Accepted);
    let mut s2 = s.clone();
    s2.ts_ms += 1;
    assert_eq!(e.apply(&s2, t + 2_000), Applied::Accepted);
    assert_eq!(e.stats().open_callbacks, 0);
    let t = tally(&e, "same-day", at("2026-12-07T10:00:00Z")).1;
    assert_eq!((t.requested, t.on_time), (1, 1));
}

#[test]
fn the_open_count_follows_the_books() {
    let cfg = config(OFFICE);
    let mut e = Engine::new(&cfg);
    week(&mut e);
    // Through a period's end (requests folded into counts) and a year on (forgotten).
    for now in [
        at("2026-12-09T12:00:00Z"),
        at("2026-12-14T12:00:00Z"),
        at("2027-12-14T12:00:00Z"),
    ] {
        e.advance(now);
        let counted: usize = e.callbacks.desks.iter().map(|d| d.book.open_count()).sum();
        assert_eq!(e.callbacks.open_count(), counted, "at {now}");
        let r = Engine::restore(&cfg, Vec::new(), Some(&e.checkpoint().state)).unwrap();
        assert_eq!(r.callbacks.open_count(), counted, "restored at {now}");
    }
    assert_eq!(e.callbacks.open_count(), 0);
    assert_eq!(
        e.stats().callbacks_forgotten,
        4,
        "d and i, in both objectives"
    );
}
