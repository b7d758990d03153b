//! Hand-worked tag dimension scenarios: segments counted under each configured tag name their
//! `start` gave a value, in interval buckets only, past the key limit under `name=(other)`,
//! nothing kept without the setting, and the buckets and open calls' tags across a restore.

use super::*;
use crate::config::Config;
use crate::event::{EndReason, Event, EventKind};

/// 2026-11-22T08:00:00Z, an interval start in UTC (the default zone).
const T0: i64 = 1_795_334_400_000;

fn cfg(tags: &[&str], max_values: usize) -> Config {
    let mut c = Config::default();
    c.history.tag_dimensions = tags.iter().map(|t| (*t).to_string()).collect();
    c.history.max_tag_values = max_values;
    c
}

fn start(id: &str, ts: i64, tags: &[(&str, &str)]) -> Event {
    let mut e = Event::new(EventKind::Start, id, ts);
    e.queue = Some("support".into());
    e.tags = tags
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    e
}

fn answer(id: &str, ts: i64) -> Event {
    let mut e = Event::new(EventKind::Answer, id, ts);
    e.agent = Some("ann".into());
    e
}

fn end(id: &str, ts: i64, reason: Option<EndReason>) -> Event {
    let mut e = Event::new(EventKind::End, id, ts);
    e.reason = reason;
    e
}

fn feed(e: &mut Engine, events: &[Event]) {
    for ev in events {
        assert_eq!(e.admit(ev, 0), Ok(()), "{ev:?}");
        assert_eq!(e.apply(ev, ev.ts_ms), Applied::Accepted, "{ev:?}");
    }
}

fn tag(key: &str) -> Dim {
    Dim {
        kind: DimKind::Tag,
        key: key.into(),
    }
}

/// The tag keys of the interval buckets from T0 on, with their offered counts.
fn offered_by_tag(e: &Engine) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = e
        .interval_buckets(&[DimKind::Tag], T0, T0 + 86_400_000)
        .into_iter()
        .map(|(id, agg)| (id.dim.key, agg.offered))
        .collect();
    v.sort();
    v
}

/// Five calls in the interval at T0, leaving their queue in this order (so folded in it):
/// c1 gold/acme answered after 10 s, talks 60 s; c2 gold abandoned after 30 s; c3 silver
/// overflowed after 50 s; c4 untagged, answered; c5 bronze (a fourth tag key: past a limit
/// of 3) abandoned after 20 s. `lang` is not configured.
fn five_calls() -> Vec<Event> {
    vec![
        start(
            "c1",
            T0,
            &[("tier", "gold"), ("customer", "acme"), ("lang", "fr")],
        ),
        start("c2", T0 + 1_000, &[("tier", "gold")]),
        start("c3", T0 + 2_000, &[("tier", "silver")]),
        start("c4", T0 + 3_000, &[]),
        start("c5", T0 + 60_000, &[("tier", "bronze")]),
        answer("c1", T0 + 10_000),
        end("c2", T0 + 31_000, Some(EndReason::Abandoned)),
        answer("c4", T0 + 40_000),
        end("c3", T0 + 52_000, Some(EndReason::Timeout)),
        end("c5", T0 + 80_000, Some(EndReason::Abandoned)),
        end("c1", T0 + 70_000, None),
        end("c4", T0 + 100_000, None),
    ]
}

#[test]
fn segments_count_under_each_configured_tag_in_interval_buckets_only() {
    let mut e = Engine::new(&cfg(&["tier", "customer"], 3));
    // Folded one by one as each leaves its queue, so keys are registered in that order.
    let mut events = five_calls();
    events.sort_by_key(|ev| ev.ts_ms);
    for ev in &events {
        feed(&mut e, std::slice::from_ref(ev));
        e.advance(ev.ts_ms);
    }
    // Past every grace and the 120 s wrap-up timeout, within the hour of fine buckets.
    e.advance(T0 + 10 * 60_000);

    // gold: c1 (answered, wait 10 s, talk 60 s) and c2 (abandoned after 30 s).
    let gold = e
        .bucket(Tier::Interval, &tag("tier=gold"), T0)
        .expect("gold");
    assert_eq!(
        (gold.offered, gold.answered, gold.abandoned, gold.handled),
        (2, 1, 1, 1)
    );
    assert_eq!(
        (gold.wait_sum_ms, gold.abandon_wait_sum_ms, gold.talk_sum_ms),
        (10_000, 30_000, 60_000)
    );
    let silver = e
        .bucket(Tier::Interval, &tag("tier=silver"), T0)
        .expect("silver");
    assert_eq!((silver.offered, silver.overflow), (1, 1));
    let acme = e
        .bucket(Tier::Interval, &tag("customer=acme"), T0)
        .expect("acme");
    assert_eq!((acme.offered, acme.answered, acme.handled), (1, 1, 1));
    // The fourth key is past max_tag_values = 3: bronze counts under tier=(other).
    assert_eq!(
        offered_by_tag(&e),
        [
            ("customer=acme".to_string(), 1),
            ("tier=(other)".to_string(), 1),
            ("tier=gold".to_string(), 2),
            ("tier=silver".to_string(), 1),
        ]
    );
    let stats = e.stats();
    assert_eq!(stats.overflowed.get("tag"), Some(&1));
    assert_eq!(stats.keys.get("tag"), Some(&4));
    // Every tier key together: every call but the untagged one (offered 5 overall).
    let all = e
        .bucket(
            Tier::Interval,
            &Dim {
                kind: DimKind::All,
                key: "all".into(),
            },
            T0,
        )
        .expect("all");
    assert_eq!(all.offered, 5);
    let tiers: u64 = offered_by_tag(&e)
        .iter()
        .filter(|(k, _)| k.starts_with("tier="))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(tiers, all.offered - 1);
    // No minute bucket holds a tag key; the queue's minute bucket is there.
    let fine = e.calendar().fine_bucket(T0 + 31_000);
    let queue = Dim {
        kind: DimKind::Queue,
        key: "support".into(),
    };
    assert!(e.bucket(Tier::Fine, &queue, fine).is_some());
    assert!(e.bucket(Tier::Fine, &tag("tier=gold"), fine).is_none());
}

#[test]
fn without_tag_dimensions_no_tag_is_kept_or_counted() {
    let mut e = Engine::new(&cfg(&[], 1_000));
    let gold = [("tier".to_string(), "gold".to_string())];
    assert!(e.tags_kept(&gold).is_empty());
    feed(&mut e, &five_calls());
    e.advance(T0 + 10 * 60_000);
    assert!(offered_by_tag(&e).is_empty());
    assert!(!e.stats().keys.contains_key("tag"));
    // Configured, only the names listed are kept on the call.
    let e = Engine::new(&cfg(&["tier"], 1_000));
    let mixed = [
        ("lang".to_string(), "fr".to_string()),
        ("tier".to_string(), "gold".to_string()),
    ];
    assert_eq!(e.tags_kept(&mixed), gold);
}

#[test]
fn tag_buckets_and_open_calls_tags_survive_a_restore() {
    let c = cfg(&["tier"], 1_000);
    let mut a = Engine::new(&c);
    feed(&mut a, &five_calls());
    // c6 is still waiting when the checkpoint is taken: only its open call holds its tier.
    feed(&mut a, &[start("c6", T0 + 120_000, &[("tier", "silver")])]);
    a.advance(T0 + 125_000);
    let cp = a.checkpoint();
    let mut b = Engine::restore(
        &c,
        cp.slices.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))),
        Some(&cp.state),
    )
    .expect("restore");
    assert_eq!(offered_by_tag(&b), offered_by_tag(&a));
    let rest = [end("c6", T0 + 150_000, Some(EndReason::Abandoned))];
    for e in [&mut a, &mut b] {
        feed(e, &rest);
        e.advance(T0 + 10 * 60_000);
    }
    // silver: c3 and c6; no limit reached, so bronze is its own key.
    let want = vec![
        ("tier=bronze".to_string(), 1),
        ("tier=gold".to_string(), 2),
        ("tier=silver".to_string(), 2),
    ];
    assert_eq!(offered_by_tag(&b), want);
    assert_eq!(offered_by_tag(&a), want);
    let silver = b
        .bucket(Tier::Interval, &tag("tier=silver"), T0)
        .expect("silver");
    assert_eq!((silver.abandoned, silver.overflow), (1, 1));
    // c1's handling completed after the restore (end + 120 s wrap-up timeout): its call kept
    // its tier, so gold counts it handled.
    let gold = b
        .bucket(Tier::Interval, &tag("tier=gold"), T0)
        .expect("gold");
    assert_eq!((gold.handled, gold.talk_sum_ms), (1, 60_000));
}
