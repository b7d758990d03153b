//! A receiver that fails in every way a sink meets (5xx, 429 with `Retry-After`, a hang, a reset,
//! a 400 refusal): every record arrives exactly once after deduplication, or is parked as a dead
//! letter, and the sums still add up.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::calls::{expected, make_calls, past_interval, per_queue, records_by_interval};
use crate::drive::{
    agent_by_queue, checked_records, config, flush, outbox, send_calls, seqs_of, u64_field,
    wait_delivered, wait_settled,
};
use crate::support::http::{Action, Receiver, Request};
use crate::support::Daemon;

#[test]
fn faults_then_every_record_exactly_once_after_dedupe() {
    let refusal = "{\"error\":\"records[0].offered: expected a string\"}";
    let rx = Receiver::standalone(
        vec![
            Action::status(500, "boom"),
            Action::status(503, "maintenance"),
            // Longer than backoff_cap, so only honouring it explains the gap before the next try.
            Action::status(429, "slow down").with_header("Retry-After", "2"),
            Action::Hang(Duration::from_secs(3)),
            Action::Reset,
            Action::status(400, refusal),
        ],
        Action::status(200, ""),
    );
    let d = Daemon::start(&config(&rx.url("/ingest"), "http", "json", true));

    let queues = ["sales", "support", "billing"];
    let intervals: Vec<i64> = (4..=11).map(past_interval).collect();
    let calls = make_calls("faults", 11, &queues, &intervals, 6, false);
    let events = send_calls(&d, &calls);
    wait_settled(&d, events as u64);
    let want = expected(&calls);
    let agent = agent_by_queue(&d);
    assert_eq!(
        agent,
        per_queue(&want),
        "the agent's 24h figures differ from the calls sent"
    );

    flush(&d);
    let st = wait_delivered(&d);
    let reqs = rx.requests();

    // The faults and the refusal all hit the first batch, resent unchanged; then 200s.
    assert!(reqs.len() > 6, "only {} requests: {reqs:#?}", reqs.len());
    let first_key = reqs[0].header("idempotency-key").expect("a key");
    for (i, r) in reqs[..6].iter().enumerate() {
        assert_eq!(
            r.header("idempotency-key"),
            Some(first_key),
            "request {i} should retry the first batch"
        );
    }
    assert_eq!(
        reqs[..6].iter().map(|r| r.answer).collect::<Vec<_>>(),
        [Some(500), Some(503), Some(429), None, None, Some(400)]
    );
    for r in &reqs[6..] {
        assert_ne!(r.header("idempotency-key"), Some(first_key));
        assert_eq!(r.answer, Some(200));
    }
    // Retry-After is honoured, even past backoff_cap; the hang is cut at the request timeout.
    let after_429 = reqs[3].at - reqs[2].at;
    assert!(
        after_429 >= Duration::from_millis(1950),
        "retried {after_429:?} after a 429 with Retry-After: 2 (backoff_cap 1s)"
    );
    let after_hang = reqs[4].at - reqs[3].at;
    assert!(
        after_hang >= Duration::from_millis(450) && after_hang < Duration::from_millis(2900),
        "the hung request was retried after {after_hang:?} (request_timeout 500ms, backoff_cap 1s)"
    );

    let delivered = checked_records(&reqs, "application/json", true, Request::delivered);
    let dead = checked_records(&reqs, "application/json", true, |r| r.answer == Some(400));
    assert!(!dead.is_empty());
    assert!(
        dead.keys().all(|k| !delivered.contains_key(k)),
        "a parked record was also delivered"
    );

    // Every seq from 1 up was delivered, except the parked ones.
    let delivered_seqs = seqs_of(&delivered);
    let dead_seqs = seqs_of(&dead);
    let all: BTreeSet<u64> = delivered_seqs.union(&dead_seqs).copied().collect();
    let max = *all.last().expect("some records");
    assert_eq!(
        all,
        (1..=max).collect::<BTreeSet<u64>>(),
        "missing seqs: delivered {delivered_seqs:?}, parked {dead_seqs:?}"
    );
    assert!(
        delivered.values().any(|r| r["kind"] == "interval"),
        "no interval records"
    );

    // Status: parked batch counted and explained, retries counted, the rest delivered.
    assert_eq!(u64_field(&st, "dead_letters"), dead.len() as u64, "{st}");
    let last_error = st["last_error"].as_str().unwrap_or_default();
    assert!(
        last_error.contains("400") && last_error.contains("expected a string"),
        "last_error {last_error:?} should name the 400 and quote the answer"
    );
    assert!(
        u64_field(&st, "retries") >= 5,
        "5 retryable failures, status says {st}"
    );
    assert_eq!(
        u64_field(&st, "delivered_records"),
        delivered.len() as u64,
        "{st}"
    );

    // The sums: received (deduplicated) = agent − dead letters, per queue and per interval.
    let got = records_by_interval(delivered.values());
    let parked = records_by_interval(dead.values());
    let got_q = per_queue(&got);
    let parked_q = per_queue(&parked);
    for (q, total) in &agent {
        let dead_q = parked_q.get(q).copied().unwrap_or_default();
        assert_eq!(
            got_q.get(q).copied().unwrap_or_default(),
            total.minus(&dead_q),
            "queue {q}: received ≠ agent − dead letters"
        );
    }
    assert!(
        got_q.keys().all(|q| agent.contains_key(q)),
        "records for unknown queues: {got_q:?}"
    );
    let keys: BTreeSet<&(String, i64)> =
        want.keys().chain(got.keys()).chain(parked.keys()).collect();
    for k in keys {
        let sum = got
            .get(k)
            .copied()
            .unwrap_or_default()
            .plus(&parked.get(k).copied().unwrap_or_default());
        assert_eq!(
            sum,
            want.get(k).copied().unwrap_or_default(),
            "queue {} interval {}: delivered + parked ≠ the calls",
            k.0,
            k.1
        );
    }
    assert!(outbox(&d).is_empty(), "the outbox still lists records");
}
