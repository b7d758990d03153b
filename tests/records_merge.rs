//! Interval records merge: two hosts' records for the same interval and queue, added field by
//! field as a receiver would (from their JSON), give the same service level, AHT and quantiles
//! as one host fed both event streams.

use callmetrics::config::{Config, Formula};
use callmetrics::engine::{Agg, Applied, DimKind, Engine, Figures};
use callmetrics::event::{EndReason, Event, EventKind};
use callmetrics::upstream::{IntervalRecord, RecordKind};
use proptest::prelude::*;
use serde_json::Value;

/// 2026-11-22T10:00:00Z: an interval boundary.
const T0: i64 = 1_795_341_600_000;

#[derive(Debug, Clone)]
struct Call {
    start: i64,
    wait: i64,
    answered: bool,
    talk: i64,
    acw: i64,
    reason: EndReason,
}

fn call() -> impl Strategy<Value = Call> {
    (
        0i64..800_000,
        0i64..90_000,
        any::<bool>(),
        1i64..400_000,
        0i64..60_000,
        prop::sample::select(vec![
            EndReason::Abandoned,
            EndReason::Timeout,
            EndReason::Completed,
        ]),
    )
        .prop_map(|(start, wait, answered, talk, acw, reason)| Call {
            start,
            wait,
            answered,
            talk,
            acw,
            reason,
        })
}

fn events(id: &str, c: &Call) -> Vec<Event> {
    let s = T0 + c.start;
    let mut start = Event::new(EventKind::Start, id, s);
    start.queue = Some("sales".into());
    let mut out = vec![start];
    if c.answered {
        let mut a = Event::new(EventKind::Answer, id, s + c.wait);
        a.agent = Some("ann".into());
        out.push(a);
        out.push(Event::new(EventKind::End, id, s + c.wait + c.talk));
        out.push(Event::new(
            EventKind::Wrapup,
            id,
            s + c.wait + c.talk + c.acw,
        ));
    } else {
        let mut e = Event::new(EventKind::End, id, s + c.wait);
        e.reason = Some(c.reason);
        out.push(e);
    }
    out
}

/// Feeds calls into an engine (each event received at its own time) and returns the sales
/// queue's aggregate of the 10:00 interval once everything is folded.
fn interval_of(cfg: &Config, calls: &[(String, Call)]) -> Agg {
    let mut evs: Vec<Event> = calls.iter().flat_map(|(id, c)| events(id, c)).collect();
    evs.sort_by_key(|e| e.ts_ms);
    let mut engine = Engine::new(cfg);
    for e in &evs {
        assert_eq!(engine.apply(e, e.ts_ms), Applied::Accepted);
    }
    engine.advance(T0 + 3 * 3_600_000);
    engine
        .interval_buckets(&[DimKind::Queue], T0, T0)
        .into_iter()
        .find(|(id, _)| id.dim.key == "sales")
        .map(|(_, a)| a)
        .unwrap_or_default()
}

fn record_json(host: &str, agg: &Agg) -> Value {
    IntervalRecord {
        host_id: host.into(),
        seq: 1,
        kind: RecordKind::Interval,
        interval_start_ms: T0,
        interval_ms: 900_000,
        dimension: DimKind::Queue,
        key: "sales".into(),
        delta: agg.clone(),
        total: agg.clone(),
        sla: Vec::new(),
    }
    .to_json()
}

/// A receiver's merge of two records: add the counters, max the maximum.
fn merged(a: &Value, b: &Value, name: &str) -> f64 {
    let (x, y) = (
        a[name].as_f64().unwrap_or(0.0),
        b[name].as_f64().unwrap_or(0.0),
    );
    if name == "wait_max_ms" {
        x.max(y)
    } else {
        x + y
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn two_hosts_merge_to_one(a in prop::collection::vec(call(), 0..25), b in prop::collection::vec(call(), 0..25)) {
        let cfg = Config::default();
        let a: Vec<(String, Call)> = a.into_iter().enumerate().map(|(i, c)| (format!("a{i}"), c)).collect();
        let b: Vec<(String, Call)> = b.into_iter().enumerate().map(|(i, c)| (format!("b{i}"), c)).collect();
        let both: Vec<(String, Call)> = a.iter().chain(&b).cloned().collect();
        let (ra, rb, one) = (interval_of(&cfg, &a), interval_of(&cfg, &b), interval_of(&cfg, &both));
        let (ja, jb) = (record_json("h1", &ra), record_json("h2", &rb));
        let m = |n: &str| merged(&ja, &jb, n);
        for name in ["offered", "answered", "answered_within", "abandoned", "abandoned_within",
                     "short_abandoned", "overflow", "handled", "wait_sum_ms", "wait_max_ms",
                     "abandon_wait_sum_ms", "talk_sum_ms", "hold_sum_ms", "acw_sum_ms"] {
            let own = record_json("h", &one)[name].as_f64().unwrap_or(0.0);
            prop_assert_eq!(m(name), own, "{}", name);
        }
        // Service level (default formula) and AHT from the merged JSON counters, against the
        // single host's own figures.
        let fig = Figures::of(&one, Formula::Offered);
        let den = m("answered") + m("abandoned") - m("short_abandoned");
        let sl = (den > 0.0).then(|| m("answered_within") / den);
        prop_assert_eq!(sl, fig.service_level);
        let aht = (m("handled") > 0.0).then(|| (m("talk_sum_ms") + m("hold_sum_ms") + m("acw_sum_ms")) / m("handled"));
        prop_assert_eq!(aht, fig.aht_ms);
        // Histograms merge by adding bin counts: the merged sketch answers the same quantiles.
        let mut merged_agg = ra.clone();
        merged_agg.merge(&rb);
        let fm = Figures::of(&merged_agg, Formula::Offered);
        prop_assert_eq!(fm.wait_p90_ms, fig.wait_p90_ms);
        prop_assert_eq!(fm.handle_p50_ms, fig.handle_p50_ms);
        let bins = |v: &Value| v["wait_hist"]["bins"].as_array().map_or(0, |b| b.iter().map(|p| p[1].as_u64().unwrap_or(0)).sum::<u64>())
            + v["wait_hist"]["zero"].as_u64().unwrap_or(0);
        prop_assert_eq!(bins(&ja) + bins(&jb), bins(&record_json("h", &one)));
    }
}
