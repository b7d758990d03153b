//! The engine's state is sized by keys × buckets plus the calls open now, not by how many calls
//! went through: fed 10 000 and then 200 000 calls through the same queues, agents and channels
//! (in-process, engine time passed in), its own accounting of its state stays within a bound set
//! by the keys and buckets alone, and the calls leave nothing behind but that; with tag
//! dimensions configured too.

use callmetrics::config::Config;
use callmetrics::engine::{DimKind, Engine, MetricsQuery, StateBytes};
use callmetrics::event::{Event, EventKind};

const HOUR: i64 = 3_600_000;
/// 2026-11-22T00:00:00Z.
const T0: i64 = 1_795_305_600_000;
const QUEUES: u64 = 20;
const AGENTS: u64 = 100;
const CHANNELS: [&str; 3] = ["voice", "chat", "email"];
/// Customers tagged on the calls of the tag test: more than its `history.max_tag_values`.
const CUSTOMERS: u64 = 200;

/// Feeds `n` complete calls leaving their queue within the 20 h before `now`, received at `now`
/// in groups of 1 000 (a bulk load), then lets the reorder grace pass.
fn feed(e: &mut Engine, seed: u64, n: usize, now: i64) {
    feed_with(e, seed, n, now, false);
}

/// As [`feed`]; with `tagged`, each `start` carries a `tier` of three values and a `customer`
/// of [`CUSTOMERS`].
fn feed_with(e: &mut Engine, seed: u64, n: usize, now: i64, tagged: bool) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut tags = fastrand::Rng::with_seed(!seed);
    let mut group: Vec<Event> = Vec::new();
    for i in 0..n {
        let id = format!("{seed}-{i}");
        let leave = now - HOUR / 2 - rng.i64(0..20 * HOUR);
        let start = leave - rng.i64(0..60_000);
        let mut s = Event::new(EventKind::Start, &id, start);
        s.queue = Some(format!("q{}", rng.u64(0..QUEUES)));
        s.channel = Some(CHANNELS[rng.usize(0..3)].to_string());
        if tagged {
            // Drawn apart, so tagged and untagged loads are the same calls.
            s.tags = vec![
                (
                    "tier".into(),
                    ["gold", "silver", "bronze"][tags.usize(0..3)].into(),
                ),
                ("customer".into(), format!("c{}", tags.u64(0..CUSTOMERS))),
            ];
        }
        group.push(s);
        if rng.u8(0..10) < 8 {
            let mut a = Event::new(EventKind::Answer, &id, leave);
            a.agent = Some(format!("a{}", rng.u64(0..AGENTS)));
            group.push(a);
            let end = leave + rng.i64(30_000..600_000);
            group.push(Event::new(EventKind::End, &id, end));
            group.push(Event::new(EventKind::Wrapup, &id, end + rng.i64(0..60_000)));
        } else {
            group.push(Event::new(EventKind::End, &id, leave));
        }
        if group.len() >= 1000 || i + 1 == n {
            let refs: Vec<&Event> = group.iter().collect();
            e.apply_group(&refs, now);
            group.clear();
        }
    }
    e.advance(now + 5_000);
}

fn offered(e: &Engine) -> u64 {
    let rows = e
        .metrics(&MetricsQuery {
            window: Some("24h".into()),
            by: DimKind::All,
            key: None,
        })
        .unwrap();
    rows[0].counts.offered
}

#[test]
fn state_does_not_grow_with_the_calls_that_went_through() {
    let cfg = Config::default();
    let mut e = Engine::new(&cfg);
    let now = T0 + 30 * HOUR;
    feed(&mut e, 1, 10_000, now);
    assert_eq!(offered(&e), 10_000);
    let small: StateBytes = e.stats().state;

    feed(&mut e, 2, 190_000, now + 10_000);
    assert_eq!(offered(&e), 200_000);
    // A scan (every minute of engine time) gives back what the bulk load needed meanwhile.
    e.advance(now + 10_000 + 61_000);
    let big: StateBytes = e.stats().state;
    let stats = e.stats();

    // Buckets: at most one per key and time bucket the windows keep (60 minutes, 25 h 15 min of
    // 15-minute intervals), whatever the number of calls.
    let keys = 1 + QUEUES + AGENTS + CHANNELS.len() as u64;
    let per_key = 60 + 101;
    assert!(
        big.buckets <= keys * per_key,
        "{} buckets for {keys} keys",
        big.buckets
    );
    // Each bucket is bounded in bytes (packed counters, sketches of bounded bins); on average a
    // few hundred bytes here, so the aggregates are bounded by keys × buckets alone.
    let bound = keys * per_key * 600;
    assert!(
        big.aggregate_bytes() <= bound,
        "aggregates take {} bytes, bound {bound}: {big:?}",
        big.aggregate_bytes()
    );
    // Twenty times the calls cost nowhere near twenty times the state: per call it shrinks.
    let per_call_small = small.aggregate_bytes() as f64 / 10_000.0;
    let per_call_big = big.aggregate_bytes() as f64 / 200_000.0;
    assert!(
        per_call_big * 5.0 < per_call_small,
        "bytes per call {per_call_small:.1} at 10 k, {per_call_big:.1} at 200 k"
    );
    // No call stays behind once folded: nothing open, remembered calls capped by the config.
    assert_eq!((stats.open_calls, stats.open_segments), (0, 0));
    assert!(stats.remembered_calls <= cfg.metrics.max_remembered_calls as u64);
    // What is left is the slack a shrink keeps (1024 slots of table and queue, 64 KiB of arena).
    assert!(
        big.pending_bytes < 128 * 1024,
        "pending calls still hold {} bytes",
        big.pending_bytes
    );
    assert!(
        big.remembered_bytes <= cfg.metrics.max_remembered_calls as u64 * 96,
        "remembered calls hold {} bytes",
        big.remembered_bytes
    );
}

/// With tag dimensions, the same rule: tag keys are bounded by `history.max_tag_values` (plus a
/// `name=(other)` per name), and each holds at most one interval bucket per interval and no
/// minute bucket, however many calls went through.
#[test]
fn tag_dimensions_add_at_most_their_keys_times_the_intervals_kept() {
    const MAX_TAG_VALUES: u64 = 20;
    let tagged = Config::parse(
        &format!(
            "[history]\ntag_dimensions = [\"tier\", \"customer\"]\nmax_tag_values = {MAX_TAG_VALUES}\n"
        ),
        std::path::Path::new("agent.toml"),
    )
    .unwrap();
    let plain = Config::default();
    let (mut with, mut without) = (Engine::new(&tagged), Engine::new(&plain));
    let now = T0 + 30 * HOUR;
    for (e, tags) in [(&mut with, true), (&mut without, false)] {
        feed_with(e, 1, 10_000, now, tags);
    }
    for (e, tags) in [(&mut with, true), (&mut without, false)] {
        feed_with(e, 2, 100_000, now + 10_000, tags);
        e.advance(now + 10_000 + 61_000);
        assert_eq!(offered(e), 110_000);
    }
    let stats = with.stats();
    // 20 keys, then tier=(other) and customer=(other): the 200 customers overflowed.
    let tag_keys = stats.keys["tag"];
    assert!(tag_keys <= MAX_TAG_VALUES + 2, "{tag_keys} tag keys");
    assert!(stats.overflowed["tag"] > 0, "{stats:?}");
    // The same calls, the same other keys: the difference is the tag buckets, interval ones
    // only. The calls leave their queue over 20 h and complete up to 11 min later (and the
    // second load is 10 s later): under 20 h 12 min, which touches at most 80 + 2 intervals.
    // Minute buckets would add some thirty more per key (the last hour is kept at minute grain).
    let intervals = (20 * HOUR + 12 * 60_000) as u64 / 900_000 + 2;
    let tag_buckets = stats.state.buckets - without.stats().state.buckets;
    assert!(
        tag_buckets <= tag_keys * intervals,
        "{tag_buckets} tag buckets for {tag_keys} keys"
    );
    assert_eq!((stats.open_calls, stats.open_segments), (0, 0));
    assert!(
        stats.state.pending_bytes < 128 * 1024,
        "pending calls still hold {} bytes",
        stats.state.pending_bytes
    );
}

/// 100 000 e-mails waiting at once on the business clock (docs/slow-channels.md): what each
/// open item costs the engine, by its own accounting, stays within 256 bytes (the packed call,
/// its slot in the table and due queue, its entry in the expiry index), and the scans of the
/// following minutes expire none of them before their `max_call_duration`.
#[test]
fn a_hundred_thousand_open_emails_fit_the_memory_rules() {
    const OPEN: usize = 100_000;
    let cfg = Config::parse(
        "[limits]\nmax_open_segments = 200000\n\
         [channels.email]\nthreshold = \"4h\"\nmax_call_duration = \"2w\"\nclock = \"business_hours\"\n\
         hours = { mon = [\"08:00-18:00\"], tue = [\"08:00-18:00\"], wed = [\"08:00-18:00\"], thu = [\"08:00-18:00\"], fri = [\"08:00-18:00\"] }\n",
        std::path::Path::new("agent.toml"),
    )
    .unwrap();
    let mut e = Engine::new(&cfg);
    let now = T0 + 30 * HOUR;
    e.advance(now);
    let before = e.stats().state.pending_bytes;
    let mut rng = fastrand::Rng::with_seed(7);
    let mut group: Vec<Event> = Vec::new();
    for i in 0..OPEN {
        // Received over the last five days, in twenty queues.
        let mut s = Event::new(
            EventKind::Start,
            format!("mail-{i:06}"),
            now - rng.i64(0..5 * 24 * HOUR),
        );
        s.queue = Some(format!("q{}", rng.u64(0..QUEUES)));
        s.channel = Some("email".into());
        group.push(s);
        if group.len() == 1000 {
            let refs: Vec<&Event> = group.iter().collect();
            e.apply_group(&refs, now);
            group.clear();
        }
    }
    // Past the reorder grace and a few scans.
    e.advance(now + 5 * 60_000);
    let stats = e.stats();
    assert_eq!(stats.open_segments, OPEN as u64);
    assert_eq!(stats.expired_segments, 0);
    let per_item = (stats.state.pending_bytes - before) as f64 / OPEN as f64;
    eprintln!("{per_item:.1} bytes per open e-mail");
    assert!(
        per_item <= 256.0,
        "{per_item:.1} bytes per open e-mail ({:?})",
        stats.state
    );
    // Every one is listed with its deadline on the business clock.
    let open = e.open_calls();
    assert_eq!(open.len(), OPEN);
    assert!(open.iter().all(
        |s| s.deadline_ms.is_some() && s.clock == callmetrics::config::WaitClock::BusinessHours
    ));
}
