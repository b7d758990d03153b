//! The board against a real store: what is written, and what a reopen gives back.

use super::*;
use crate::alerts::notice::NoticeStatus;
use crate::alerts::rule::{Direction, Level, Watch};

fn rule() -> Rule {
    Rule {
        name: "waiting".into(),
        objective: None,
        watch: Watch::WaitingNow,
        window: None,
        queues: vec!["support".into(), "sales".into()],
        direction: Direction::Above,
        threshold: 2.0,
        hysteresis: 1.0,
        for_ms: 1_000,
        levels: vec![
            Level {
                after_ms: 0,
                receivers: vec!["am".into()],
                severity: "warning".into(),
            },
            Level {
                after_ms: 5_000,
                receivers: vec!["am".into(), "hook".into()],
                severity: "critical".into(),
            },
        ],
    }
}

fn notices(store: &Store, receiver: &str) -> Vec<Notice> {
    store
        .alert_notices(receiver, 100)
        .unwrap()
        .iter()
        .map(|(_, b)| rmp_serde::from_slice(b).unwrap())
        .collect()
}

#[test]
fn a_reopened_board_continues_without_announcing_again() {
    let dir = tempfile::tempdir().unwrap();
    let open = || Store::open(&dir.path().join("s"), 1 << 20, 1 << 30).unwrap();
    let store = open();
    let (mut b, forgotten) = Board::load(vec![rule()], "pbx".into(), 5, &store).unwrap();
    assert!(forgotten.is_empty());
    assert!(b
        .evaluate(&store, 0, "support", 0, Some(3.0))
        .unwrap()
        .is_empty());
    assert_eq!(
        b.evaluate(&store, 0, "support", 1_000, Some(4.0)).unwrap(),
        vec!["am"]
    );
    assert!(b
        .evaluate(&store, 0, "sales", 1_000, Some(1.0))
        .unwrap()
        .is_empty());
    drop(b);
    drop(store);

    // As after kill -9: the firing alert comes back, and stepping on does not fire it again.
    let store = open();
    let (mut b, _) = Board::load(vec![rule()], "pbx".into(), 5, &store).unwrap();
    assert!(b
        .evaluate(&store, 0, "support", 2_000, Some(5.0))
        .unwrap()
        .is_empty());
    let report = b.report(&store).unwrap();
    assert_eq!(report.open.len(), 1);
    assert_eq!(
        (
            report.open[0].state.as_str(),
            report.open[0].level,
            report.open[0].value
        ),
        ("firing", 1, Some(5.0))
    );
    assert_eq!(b.firing_for("am", 2_000).len(), 1);
    assert!(b.firing_for("hook", 2_000).is_empty());
    assert_eq!(
        b.evaluate(&store, 0, "support", 6_000, Some(5.0)).unwrap(),
        vec!["am", "hook"]
    );
    assert_eq!(b.firing(), vec![("waiting".into(), "support".into(), 2)]);
    assert_eq!(
        b.evaluate(&store, 0, "support", 7_000, Some(1.0)).unwrap(),
        vec!["am", "hook"]
    );
    let am = notices(&store, "am");
    let seen: Vec<(u64, NoticeStatus, usize, Vec<usize>)> = am
        .iter()
        .map(|n| {
            (
                n.seq,
                n.status,
                n.level,
                n.levels.iter().map(|l| l.level).collect(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (1, NoticeStatus::Firing, 1, vec![1]),
            (2, NoticeStatus::Firing, 2, vec![2]),
            (3, NoticeStatus::Resolved, 2, vec![1, 2]),
        ]
    );
    assert_eq!(am[2].levels[1].starts_ms, 6_000);
    assert_eq!(
        notices(&store, "hook")
            .iter()
            .map(|n| n.seq)
            .collect::<Vec<_>>(),
        vec![2, 3]
    );
    let report = b.report(&store).unwrap();
    assert!(report.open.is_empty());
    assert_eq!(report.resolved.len(), 1);
    let r = &report.resolved[0];
    assert_eq!(
        (
            r.state.as_str(),
            r.level,
            r.since_ms,
            r.resolved_ms,
            r.value
        ),
        ("resolved", 2, 1_000, Some(7_000), Some(1.0))
    );

    // A rule renamed in the config: its stored alert is dropped, not kept for ever.
    b.evaluate(&store, 0, "sales", 8_000, Some(9.0)).unwrap();
    drop(b);
    let mut renamed = rule();
    renamed.name = "waiting-calls".into();
    let (b, forgotten) = Board::load(vec![renamed], "pbx".into(), 5, &store).unwrap();
    assert_eq!(forgotten, vec!["waiting (queue sales)"]);
    assert!(b.report(&store).unwrap().open.is_empty());
    assert!(store.alert_states().unwrap().is_empty());
}
