//! The alert state machine, step by step with exact times and values.

use super::*;

const MIN: i64 = 60_000;

/// Service level below 0.8 for 5 min; back at 0.85 resolves; level 2 after 15 more minutes,
/// level 3 after 30.
fn sl_rule() -> Rule {
    Rule {
        name: "support-sl".into(),
        objective: Some("gold".into()),
        watch: Watch::ServiceLevel,
        window: Some(crate::units::Millis(30 * MIN)),
        queues: vec!["support".into()],
        direction: Direction::Below,
        threshold: 0.8,
        hysteresis: 0.05,
        for_ms: 5 * MIN,
        levels: vec![
            Level {
                after_ms: 0,
                receivers: vec!["floor".into()],
                severity: "warning".into(),
            },
            Level {
                after_ms: 15 * MIN,
                receivers: vec!["manager".into(), "floor".into()],
                severity: "critical".into(),
            },
            Level {
                after_ms: 30 * MIN,
                receivers: vec!["owner".into()],
                severity: "critical".into(),
            },
        ],
    }
}

/// Steps through `(minute, value)` pairs, returning each transition with its minute.
fn run(rule: &Rule, phase: &mut Phase, steps: &[(i64, Option<f64>)]) -> Vec<(i64, Transition)> {
    steps
        .iter()
        .filter_map(|&(m, v)| rule.step(phase, m * MIN, v).map(|t| (m, t)))
        .collect()
}

#[test]
fn pending_then_each_level_then_resolved() {
    let r = sl_rule();
    let mut p = Phase::Ok;
    let got = run(
        &r,
        &mut p,
        &[
            (0, Some(0.9)),
            (1, Some(0.79)),  // pending from minute 1
            (5, Some(0.7)),   // 4 min: not yet
            (6, Some(0.7)),   // 5 min: level 1
            (20, Some(0.75)), // 14 min after firing: still level 1
            (21, Some(0.75)), // 15 min: level 2
            (36, Some(0.6)),  // 30 min: level 3
            (50, Some(0.6)),  // nothing more to reach
            (51, Some(0.849)),
            (52, Some(0.85)), // back at line + hysteresis: resolved
        ],
    );
    assert_eq!(
        got,
        vec![
            (6, Transition::Fired),
            (21, Transition::Escalated { from: 1, to: 2 }),
            (36, Transition::Escalated { from: 2, to: 3 }),
            (
                52,
                Transition::Resolved {
                    levels: 3,
                    fired_ms: 6 * MIN
                }
            ),
        ]
    );
    assert_eq!(p, Phase::Ok);
}

#[test]
fn the_firing_phase_records_when_each_level_began() {
    let r = sl_rule();
    let mut p = Phase::Ok;
    run(
        &r,
        &mut p,
        &[(1, Some(0.5)), (6, Some(0.5)), (21, Some(0.5))],
    );
    assert_eq!(
        p,
        Phase::Firing {
            breach_ms: MIN,
            fired_ms: 6 * MIN,
            level_ms: vec![6 * MIN, 21 * MIN]
        }
    );
    assert_eq!(p.level(), 2);
}

#[test]
fn a_breach_shorter_than_for_never_fires() {
    let r = sl_rule();
    let mut p = Phase::Ok;
    let got = run(
        &r,
        &mut p,
        &[
            (0, Some(0.7)),
            (4, Some(0.7)),
            (5, Some(0.8)), // exactly at the line is no breach: back to ok
            (6, Some(0.7)), // a new pending period starts here
            (10, Some(0.7)),
        ],
    );
    assert!(got.is_empty(), "{got:?}");
    assert_eq!(p, Phase::Pending { since_ms: 6 * MIN });
    assert_eq!(r.step(&mut p, 11 * MIN, Some(0.7)), Some(Transition::Fired));
}

#[test]
fn a_value_hovering_at_the_line_does_not_flap() {
    let r = sl_rule();
    let mut p = Phase::Ok;
    let mut steps = vec![(0, Some(0.7)), (5, Some(0.7))];
    // Minute by minute on either side of 0.8, never reaching 0.85.
    for m in 6..=60 {
        steps.push((m, Some(if m % 2 == 0 { 0.79 } else { 0.84 })));
    }
    let got = run(&r, &mut p, &steps);
    assert_eq!(
        got,
        vec![
            (5, Transition::Fired),
            (20, Transition::Escalated { from: 1, to: 2 }),
            (35, Transition::Escalated { from: 2, to: 3 }),
        ],
        "one alert, escalating, never resolved and fired again"
    );
}

#[test]
fn an_above_rule_resolves_below_the_line_minus_hysteresis() {
    let r = Rule {
        watch: Watch::WaitingNow,
        window: None,
        direction: Direction::Above,
        threshold: 2.0,
        hysteresis: 1.0,
        for_ms: 0,
        ..sl_rule()
    };
    let mut p = Phase::Ok;
    let got = run(
        &r,
        &mut p,
        &[
            (0, Some(2.0)), // at the line: no breach
            (1, Some(3.0)), // for = 0: fires at once
            (2, Some(2.0)), // not yet 1 or fewer
            (3, Some(1.0)),
            (4, Some(3.0)),
        ],
    );
    assert_eq!(
        got,
        vec![
            (1, Transition::Fired),
            (
                3,
                Transition::Resolved {
                    levels: 1,
                    fired_ms: MIN
                }
            ),
            (4, Transition::Fired),
        ]
    );
    assert_eq!(r.margin(3.0), -1.0);
    assert!((sl_rule().margin(0.7) + 0.1).abs() < 1e-12);
}

#[test]
fn no_value_cancels_a_pending_breach_but_not_an_open_alert() {
    let r = sl_rule();
    let mut p = Phase::Ok;
    run(&r, &mut p, &[(0, Some(0.5)), (3, None)]);
    assert_eq!(p, Phase::Ok);
    let got = run(
        &r,
        &mut p,
        &[(10, Some(0.5)), (15, Some(0.5)), (20, None), (30, None)],
    );
    assert_eq!(
        got,
        vec![
            (15, Transition::Fired),
            (30, Transition::Escalated { from: 1, to: 2 })
        ]
    );
    assert_eq!(p.level(), 2);
}

#[test]
fn a_late_evaluation_reaches_every_level_due_at_once() {
    let r = sl_rule();
    let mut p = Phase::Ok;
    run(&r, &mut p, &[(0, Some(0.5)), (5, Some(0.5))]);
    assert_eq!(
        r.step(&mut p, 5 * MIN + 45 * MIN, Some(0.5)),
        Some(Transition::Escalated { from: 1, to: 3 })
    );
    assert_eq!(
        p,
        Phase::Firing {
            breach_ms: 0,
            fired_ms: 5 * MIN,
            level_ms: vec![5 * MIN, 50 * MIN, 50 * MIN]
        }
    );
}

#[test]
fn a_restart_in_the_middle_continues_where_the_stored_phase_stood() {
    let r = sl_rule();
    let steps: Vec<(i64, Option<f64>)> = (0..=70)
        .map(|m| (m, Some(if m < 60 { 0.6 } else { 0.9 })))
        .collect();
    let mut straight = Phase::Ok;
    let want = run(&r, &mut straight, &steps);
    for cut in [2usize, 5, 6, 19, 20, 21, 40, 60] {
        let mut p = Phase::Ok;
        let mut got = run(&r, &mut p, &steps[..cut]);
        // What the store keeps and gives back.
        let stored = rmp_serde::to_vec(&p).unwrap();
        let mut p: Phase = rmp_serde::from_slice(&stored).unwrap();
        got.extend(run(&r, &mut p, &steps[cut..]));
        assert_eq!(got, want, "restart before minute {cut}");
    }
    assert_eq!(want.len(), 4, "{want:?}");
}

#[test]
fn routes_name_each_receiver_once_with_its_levels() {
    let r = sl_rule();
    assert_eq!(
        r.routes(&Transition::Fired),
        vec![("floor".to_string(), vec![1])]
    );
    assert_eq!(
        r.routes(&Transition::Escalated { from: 1, to: 3 }),
        vec![
            ("manager".to_string(), vec![2]),
            ("floor".to_string(), vec![2]),
            ("owner".to_string(), vec![3]),
        ]
    );
    assert_eq!(
        r.routes(&Transition::Resolved {
            levels: 2,
            fired_ms: 0
        }),
        vec![
            ("floor".to_string(), vec![1, 2]),
            ("manager".to_string(), vec![2]),
        ]
    );
}
