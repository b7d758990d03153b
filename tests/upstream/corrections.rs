//! More calls in an interval already shipped: correction records carry exactly what they added.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::calls::{expected, make_calls, past_interval, per_queue, records_by_interval, Call};
use crate::drive::{
    agent_by_queue, checked_records, config, flush, send_calls, seqs_of, sink_status, u64_field,
    wait_delivered, wait_for, wait_settled,
};
use crate::support::http::{Action, Receiver, Request};
use crate::support::Daemon;
use crate::SHIP_DEADLINE;

#[test]
fn corrections_add_up() {
    let rx = Receiver::standalone(Vec::new(), Action::status(200, ""));
    let d = Daemon::start(&config(&rx.url("/ingest"), "http", "json", false));
    let iv = past_interval(6);
    let queues = ["sales", "support"];

    let first = make_calls("corr-a", 21, &queues, &[iv], 6, true);
    let n1 = send_calls(&d, &first);
    wait_settled(&d, n1 as u64);
    flush(&d);
    wait_delivered(&d);
    let phase1 = checked_records(
        &rx.requests(),
        "application/json",
        false,
        Request::delivered,
    );
    assert!(!phase1.is_empty(), "nothing arrived after the first flush");
    let s1 = *seqs_of(&phase1).last().expect("some records");
    let want1 = expected(&first);
    assert_eq!(records_by_interval(phase1.values()), want1);
    for q in queues {
        let intervals = phase1
            .values()
            .filter(|r| r["queue"] == q && r["kind"] == "interval")
            .count();
        assert_eq!(intervals, 1, "queue {q}: one interval record first");
    }

    // More calls in the same, already shipped interval.
    let second = make_calls("corr-b", 22, &queues, &[iv], 4, true);
    let n2 = send_calls(&d, &second);
    wait_settled(&d, (n1 + n2) as u64);
    let all_calls: Vec<Call> = first.iter().chain(&second).cloned().collect();
    let want = expected(&all_calls);
    assert_eq!(
        want.keys().map(|k| k.1).collect::<BTreeSet<_>>(),
        [iv].into()
    );
    let agent = agent_by_queue(&d);
    assert_eq!(
        agent,
        per_queue(&want),
        "the agent's figures for the interval"
    );
    flush(&d);
    wait_for(&d, "records after the second flush", SHIP_DEADLINE, || {
        let s = sink_status(&d);
        let got = checked_records(
            &rx.requests(),
            "application/json",
            false,
            Request::delivered,
        );
        if s["backlog_records"] == 0 && got.len() > phase1.len() {
            Ok(())
        } else {
            Err(format!("{} records received; sink {s}", got.len()))
        }
    });

    let all = checked_records(
        &rx.requests(),
        "application/json",
        false,
        Request::delivered,
    );
    let later: Vec<&Value> = all.values().filter(|r| u64_field(r, "seq") > s1).collect();
    for r in &later {
        assert_eq!(r["kind"], "correction", "{r}");
        assert_eq!(r["interval_start_ms"], iv, "{r}");
    }
    for q in queues {
        assert!(
            later.iter().any(|r| r["queue"] == q),
            "no correction for queue {q}: {later:#?}"
        );
    }
    assert_eq!(
        records_by_interval(later.iter().copied()),
        expected(&second),
        "the corrections carry exactly what the second calls added"
    );
    // Interval plus corrections = the agent's totals for the interval (and the calls').
    let merged = records_by_interval(all.values());
    assert_eq!(merged, want);
    let merged_q = per_queue(&merged);
    assert_eq!(merged_q, agent);
    assert!(
        all.values()
            .all(|r| r["kind"] == "correction" || u64_field(r, "seq") <= s1),
        "an interval record after the first shipment"
    );
    let st = sink_status(&d);
    assert_eq!(u64_field(&st, "dead_letters"), 0, "{st}");
    assert_eq!(
        u64_field(&st, "delivered_records"),
        all.len() as u64,
        "{st}"
    );
}
