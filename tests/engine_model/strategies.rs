//! Random scenarios: the proptest generators of calls, transfers, delays, duplicates and query
//! moments, and their layout into ground truth and a delivery order.

use std::collections::{BTreeMap, BTreeSet};

use callmetrics::event::{EndReason, EventKind};
use proptest::prelude::*;
use proptest::sample::Index;

use crate::harness::Built;
use crate::truth::{Delivery, Model, Override, Params, Seg, Truth};
use crate::{BASE_MS, FORMULAS};

const MAX_DELAY_MS: i64 = 1_500;
/// Time between two deliveries of a backfill: a whole scenario arrives well within the reorder
/// grace, as from an import.
const BACKFILL_STEP_MS: i64 = 1;
/// Queues q0..q2 are configured; qx takes the defaults.
const QUEUES: [&str; 4] = ["q0", "q1", "q2", "qx"];
const AGENTS: [&str; 3] = ["alice", "bob", "carol"];
const CHANNELS: [Option<&str>; 3] = [None, Some("chat"), Some("email")];
const REASONS: [Option<EndReason>; 7] = [
    None,
    Some(EndReason::Abandoned),
    Some(EndReason::Completed),
    Some(EndReason::Timeout),
    Some(EndReason::Exit),
    Some(EndReason::Transferred),
    Some(EndReason::Callback),
];

#[derive(Debug, Clone)]
pub enum OutcomeSpec {
    Unanswered {
        reason: usize,
    },
    Answered {
        agent: Option<usize>,
        /// answer → end, holds included.
        talk_ms: i64,
        /// Hold/resume cut points in per-mille of the talk span; pairs make intervals.
        cuts: Vec<u16>,
        open_last: bool,
        reason: usize,
        acw_ms: Option<i64>,
    },
}

#[derive(Debug, Clone)]
pub struct SegSpec {
    queue: usize,
    channel: usize,
    wait_ms: i64,
    outcome: OutcomeSpec,
}

#[derive(Debug, Clone)]
pub struct CallSpec {
    offset_ppm: i64,
    first: SegSpec,
    /// Gap after the first segment's end, and the next segment (a transfer).
    next: Option<(i64, SegSpec)>,
    delays: Vec<i64>,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    base_offset_ms: i64,
    spread_ms: i64,
    defaults: Params,
    overrides: Vec<Override>,
    calls: Vec<CallSpec>,
    /// (which event, extra delay after its first delivery).
    dups: Vec<(Index, i64)>,
    /// (after how many deliveries, where between that delivery and the next, per mille).
    moments: Vec<(Index, i64)>,
    restart: Option<Index>,
    /// A backfill: every event arrives this long after the latest timestamp of the scenario, in
    /// the same order as in real time, [`BACKFILL_STEP_MS`] apart.
    backfill: Option<i64>,
}

fn layout_seg(spec: &SegSpec, call_id: &str, start: i64) -> Seg {
    let mut seg = Seg {
        call_id: call_id.to_string(),
        queue: QUEUES[spec.queue].to_string(),
        channel: CHANNELS[spec.channel].map(str::to_string),
        start,
        answer: None,
        agent: None,
        holds: Vec::new(),
        end: start + spec.wait_ms,
        reason: None,
        wrapup: None,
    };
    match &spec.outcome {
        OutcomeSpec::Unanswered { reason } => seg.reason = REASONS[*reason],
        OutcomeSpec::Answered {
            agent,
            talk_ms,
            cuts,
            open_last,
            reason,
            acw_ms,
        } => {
            let answer = start + spec.wait_ms;
            seg.answer = Some(answer);
            seg.agent = agent.map(|a| AGENTS[a].to_string());
            seg.end = answer + talk_ms;
            seg.reason = REASONS[*reason];
            seg.wrapup = acw_ms.map(|a| seg.end + a);
            let mut ts: Vec<i64> = cuts
                .iter()
                .map(|&c| answer + talk_ms * i64::from(c) / 1000)
                .collect();
            ts.sort_unstable();
            for pair in ts.chunks(2) {
                let (h, r) = (pair[0], pair.get(1).copied());
                match seg.holds.last() {
                    Some((_, None)) => break,
                    // A hold must start strictly after the previous resume.
                    Some((_, Some(prev))) if h <= *prev => {}
                    _ => seg.holds.push((h, r)),
                }
            }
            if *open_last {
                if let Some(last) = seg.holds.last_mut() {
                    last.1 = None;
                }
            }
        }
    }
    seg
}

/// What the protocol cannot express for a transfer from `a` to `b`; `Some(ms)` to push `b` later.
fn transfer_problem(a: &Seg, b: &Seg) -> Option<i64> {
    if b.start == a.end {
        let early = a
            .events()
            .iter()
            .any(|e| !matches!(e.kind, EventKind::End | EventKind::Wrapup) && e.ts_ms >= b.start);
        if early {
            return Some(1);
        }
    }
    if let (Some(w), Some(_)) = (a.wrapup, b.answer) {
        if b.end <= w {
            return Some(w - b.end + 1);
        }
    }
    let mut seen = BTreeSet::new();
    for e in a.events().into_iter().chain(b.events()) {
        if !seen.insert((e.kind, e.ts_ms)) {
            return Some(1);
        }
    }
    None
}

fn layout_call(spec: &CallSpec, call_id: &str, start: i64) -> Vec<Seg> {
    let first = layout_seg(&spec.first, call_id, start);
    let Some((gap, next)) = &spec.next else {
        return vec![first];
    };
    let mut gap = *gap;
    loop {
        let second = layout_seg(next, call_id, first.end + gap);
        match transfer_problem(&first, &second) {
            None => return vec![first, second],
            Some(bump) => gap += bump,
        }
    }
}

pub fn build(s: &Scenario) -> Built {
    let mut queues = BTreeMap::new();
    for (i, o) in s.overrides.iter().enumerate() {
        queues.insert(QUEUES[i].to_string(), *o);
    }
    let model = Model {
        defaults: s.defaults,
        queues,
    };
    let base = BASE_MS + s.base_offset_ms;
    let calls: Vec<Vec<Seg>> = s
        .calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            layout_call(
                c,
                &format!("c{i}"),
                base + s.spread_ms * c.offset_ppm / 1_000_000,
            )
        })
        .collect();
    let truth = Truth::new(calls);
    // Originals: rx = ts + delay; then duplicates, later.
    let mut tagged: Vec<(i64, bool, usize)> = Vec::new();
    let mut rx_of = vec![0; truth.events.len()];
    let mut ev_idx = 0;
    for (c, segs) in s.calls.iter().zip(&truth.call_segs) {
        let n: usize = segs.iter().map(|&sg| truth.seg_ev[sg].all.len()).sum();
        for j in 0..n {
            let rx = truth.events[ev_idx].ts_ms + c.delays[j % c.delays.len()];
            rx_of[ev_idx] = rx;
            tagged.push((rx, false, ev_idx));
            ev_idx += 1;
        }
    }
    for (which, extra) in &s.dups {
        let e = which.index(truth.events.len());
        tagged.push((rx_of[e] + extra, true, e));
    }
    tagged.sort_unstable();
    if let Some(lag) = s.backfill {
        let t0 = truth.events.iter().map(|e| e.ts_ms).max().unwrap_or(base) + lag;
        for (i, t) in tagged.iter_mut().enumerate() {
            t.0 = t0 + i as i64 * BACKFILL_STEP_MS;
        }
    }
    let deliveries: Vec<Delivery> = tagged
        .iter()
        .map(|&(rx, _, ev)| Delivery { rx, ev })
        .collect();
    let n = deliveries.len();
    let mut moments: Vec<(usize, i64)> = s
        .moments
        .iter()
        .map(|(at, frac)| {
            let k = at.index(n) + 1;
            let from = deliveries[k - 1].rx;
            let now = if k < n {
                from + (deliveries[k].rx - from) * frac / 1000
            } else {
                from + frac * 150
            };
            (k, now)
        })
        .collect();
    moments.sort_unstable();
    moments.dedup();
    Built {
        model,
        truth,
        deliveries,
        moments,
        restart: s.restart.as_ref().map(|r| r.index(n)),
    }
}

fn params_strategy() -> impl Strategy<Value = Params> {
    (5i64..=60, 0i64..=10, 0usize..7, 0u32..=100).prop_map(|(t, s, f, target)| Params {
        threshold_ms: t * 1000,
        short_ms: s * 1000,
        formula: FORMULAS[f].0,
        target: f64::from(target) / 100.0,
    })
}

fn override_strategy() -> impl Strategy<Value = Override> {
    (
        prop::option::of(5i64..=60),
        prop::option::of(0i64..=10),
        prop::option::of(0usize..7),
        prop::option::of(0u32..=100),
    )
        .prop_map(|(t, s, f, target)| Override {
            threshold_ms: t.map(|t| t * 1000),
            short_ms: s.map(|s| s * 1000),
            formula: f.map(|f| FORMULAS[f].0),
            target: target.map(|t| f64::from(t) / 100.0),
        })
}

/// Whole seconds often, so waits land exactly on thresholds and bands.
fn duration_ms(max_s: i64) -> impl Strategy<Value = i64> {
    prop_oneof![
        1 => Just(0i64),
        3 => (0..=max_s).prop_map(|s| s * 1000),
        3 => 0..=max_s * 1000,
    ]
}

fn outcome_strategy() -> impl Strategy<Value = OutcomeSpec> {
    let acw = prop_oneof![
        2 => Just(None),
        3 => duration_ms(100).prop_map(Some),
    ];
    prop_oneof![
        2 => (0usize..REASONS.len()).prop_map(|reason| OutcomeSpec::Unanswered { reason }),
        3 => (
            prop::option::of(0usize..AGENTS.len()),
            duration_ms(600),
            prop::collection::vec(0u16..=1000, 0..=4),
            any::<bool>(),
            0usize..REASONS.len(),
            acw,
        )
            .prop_map(|(agent, talk_ms, cuts, open_last, reason, acw_ms)| OutcomeSpec::Answered {
                agent,
                talk_ms,
                cuts,
                open_last,
                reason,
                acw_ms,
            }),
    ]
}

fn seg_strategy() -> impl Strategy<Value = SegSpec> {
    (
        0usize..QUEUES.len(),
        0usize..CHANNELS.len(),
        duration_ms(180),
        outcome_strategy(),
    )
        .prop_map(|(queue, channel, wait_ms, outcome)| SegSpec {
            queue,
            channel,
            wait_ms,
            outcome,
        })
}

fn call_strategy() -> impl Strategy<Value = CallSpec> {
    let gap = prop_oneof![2 => Just(0i64), 1 => 0i64..=2_000, 2 => 0i64..=120_000];
    let delay = prop_oneof![1 => Just(0i64), 1 => Just(MAX_DELAY_MS), 4 => 0..=MAX_DELAY_MS];
    (
        0i64..=1_000_000,
        seg_strategy(),
        prop::option::weighted(0.35, (gap, seg_strategy())),
        prop::collection::vec(delay, 16),
    )
        .prop_map(|(offset_ppm, first, next, delays)| CallSpec {
            offset_ppm,
            first,
            next,
            delays,
        })
}

pub fn scenario_strategy() -> impl Strategy<Value = Scenario> {
    let spread = prop_oneof![Just(120_000i64), Just(1_200_000i64), Just(10_800_000i64)];
    let extra = prop_oneof![0i64..=3_000, 0i64..=600_000, 0i64..=14_400_000];
    (
        0i64..=7_200_000,
        spread,
        params_strategy(),
        prop::collection::vec(override_strategy(), 3),
        prop::collection::vec(call_strategy(), 1..=24),
        prop::collection::vec((any::<Index>(), extra), 0..=12),
        prop::collection::vec((any::<Index>(), 0i64..=1000), 1..=8),
        prop::option::of(any::<Index>()),
        // Mostly real time; else a backfill of calls that are 10 minutes old (in every window
        // but the shortest), or 5 hours old (older than `max_call_duration`).
        prop_oneof![3 => Just(None), 1 => Just(Some(600_000i64)), 1 => Just(Some(5 * 3_600_000i64))],
    )
        .prop_map(
            |(
                base_offset_ms,
                spread_ms,
                defaults,
                overrides,
                calls,
                dups,
                moments,
                restart,
                backfill,
            )| {
                Scenario {
                    base_offset_ms,
                    spread_ms,
                    defaults,
                    overrides,
                    calls,
                    dups,
                    moments,
                    restart,
                    backfill,
                }
            },
        )
}
