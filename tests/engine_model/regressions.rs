//! Minimal repros of disagreements the property test once found, pinned.

use callmetrics::event::EndReason;

use crate::by_hand::{hand_model, in_ts_order, secs, seg, TEN_AM};
use crate::harness::Harness;
use crate::truth::{Delivery, Model, Truth};

/// Delivers `(rx, event index)` in the given order, checking each against the model, then folds all.
fn replay(truth: &Truth, model: &Model, order: &[(i64, usize)]) -> Result<(), String> {
    let mut h = Harness::new(truth, model);
    for &(rx, ev) in order {
        h.deliver(Delivery { rx, ev })?;
        h.check(rx)?;
    }
    let last = order.last().map_or(0, |o| o.0);
    h.finish(last + 200_000)
}

/// A transfer whose second segment's answer arrives before its start, while the first segment is
/// folded in between. Once found failing: the engine dropped the call with the unused answer,
/// remembered it, then refused the second segment's start as late and never counted that segment.
#[test]
fn transferred_segment_whose_start_arrives_after_its_answer_is_counted() {
    let t = |ms: i64| TEN_AM + ms;
    let model = hand_model();
    let truth = Truth::new(vec![vec![
        // q-a: start 0, overflow at 10 s.
        seg(
            "c",
            "sales",
            None,
            t(0),
            None,
            &[],
            (t(10_000), Some(EndReason::Transferred)),
            None,
        ),
        // q-b: start 11.0 s, answered 11.2 s, end 60 s.
        seg(
            "c",
            "support",
            None,
            t(11_000),
            Some((t(11_200), Some("bob"))),
            &[],
            (t(60_000), Some(EndReason::Completed)),
            None,
        ),
    ]]);
    // Events: 0 start1, 1 end1, 2 start2, 3 answer2, 4 end2. The answer overtakes the start by
    // 1.3 s (both within 1.5 s of their timestamps); the first segment folds at 12.0 s between them.
    let order = [
        (t(0), 0),
        (t(10_000), 1),
        (t(11_200), 3),
        (t(12_500), 2),
        (t(60_000), 4),
    ];
    replay(&truth, &model, &order).unwrap();
}

/// A wrap-up that arrives just before its own segment's end (same instant or ACW < 1.5 s), after the
/// call's earlier segment completed without wrap-up. Once found failing: the engine took it for the
/// earlier segment's, refused it as late, and the segment completed without its ACW, 120 s after
/// its end instead of at the wrap-up.
#[test]
fn wrapup_arriving_just_before_its_end_is_not_lost_after_a_transfer() {
    let t = |ms: i64| TEN_AM + ms;
    let model = hand_model();
    let truth = Truth::new(vec![vec![
        // sales: answered by alice at 5 s, transferred at 60 s, no wrap-up (completes at 180 s).
        seg(
            "c",
            "sales",
            None,
            t(0),
            Some((t(5_000), Some("alice"))),
            &[],
            (t(60_000), Some(EndReason::Transferred)),
            None,
        ),
        // support: answered by bob at 70 s, end 200 s, wrap-up 201 s (ACW 1 s).
        seg(
            "c",
            "support",
            None,
            t(60_000),
            Some((t(70_000), Some("bob"))),
            &[],
            (t(200_000), Some(EndReason::Completed)),
            Some(t(201_000)),
        ),
    ]]);
    // Events: 0 start1, 1 answer1, 2 end1, 3 start2, 4 answer2, 5 end2, 6 wrapup2.
    // The end is received 1.4 s late, after the wrap-up.
    let order = [
        (t(0), 0),
        (t(5_000), 1),
        (t(60_000), 2),
        (t(60_000), 3),
        (t(70_000), 4),
        (t(201_000), 6),
        (t(201_400), 5),
    ];
    replay(&truth, &model, &order).unwrap();
}

/// The everyday transfer: alice hands the caller to bob and finishes her wrap-up while bob talks.
/// Once alice's handling (with its wrap-up) is folded in, re-deriving the call must still give her
/// that wrap-up, or every later event of the call (bob's end) is refused as late (as it once was).
#[test]
fn first_agents_wrapup_during_the_transferred_conversation() {
    let t = |s: i64| secs(TEN_AM, s);
    let model = hand_model();
    let truth = Truth::new(vec![vec![
        seg(
            "c",
            "sales",
            None,
            t(0),
            Some((t(5), Some("alice"))),
            &[],
            (t(60), Some(EndReason::Transferred)),
            Some(t(90)),
        ),
        seg(
            "c",
            "support",
            None,
            t(60),
            Some((t(70), Some("bob"))),
            &[],
            (t(200), Some(EndReason::Completed)),
            None,
        ),
    ]]);
    // Every event received at its own timestamp, in order.
    let order: Vec<(i64, usize)> = in_ts_order(&truth).iter().map(|d| (d.rx, d.ev)).collect();
    replay(&truth, &model, &order).unwrap();
}

/// A wrap-up received just before its own end is held by the call's earlier segment until that end
/// arrives; if the earlier segment's wrap-up timeout passes meanwhile, its handling must still be
/// counted as soon as the timeout has passed and the wrap-up has moved on, not at the next settle
/// (it once showed up to 2 s late, the segment meanwhile still "in ACW").
#[test]
fn wrapup_timeout_of_the_first_segment_is_not_delayed_by_a_borrowed_wrapup() {
    let t = |ms: i64| TEN_AM + ms;
    let model = hand_model();
    let truth = Truth::new(vec![vec![
        // sales: alice, transferred at 60 s, no wrap-up: completes 120 s after its end arrived.
        seg(
            "c",
            "sales",
            None,
            t(0),
            Some((t(5_000), Some("alice"))),
            &[],
            (t(60_000), Some(EndReason::Transferred)),
            None,
        ),
        // support: bob, end 179.5 s, wrap-up 179.6 s.
        seg(
            "c",
            "support",
            None,
            t(60_000),
            Some((t(70_000), Some("bob"))),
            &[],
            (t(179_500), Some(EndReason::Completed)),
            Some(t(179_600)),
        ),
    ]]);
    // Events: 0 start1, 1 answer1, 2 end1, 3 start2, 4 answer2, 5 end2, 6 wrapup2.
    // bob's end is received 1.5 s late, after his wrap-up and after alice's timeout (180 s).
    let order = [
        (t(0), 0),
        (t(5_000), 1),
        (t(60_000), 2),
        (t(60_000), 3),
        (t(70_000), 4),
        (t(179_600), 6),
        (t(181_000), 5),
    ];
    replay(&truth, &model, &order).unwrap();
}
