//! A backlog the receiver refuses survives SIGTERM and SIGKILL unchanged, and arrives whole once
//! the receiver recovers.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use crate::calls::{expected, make_calls, past_interval, per_queue, records_by_interval};
use crate::drive::{
    agent_by_queue, checked_records, config, flush, outbox, send_calls, sink_status, u64_field,
    wait_delivered, wait_for, wait_settled,
};
use crate::support::http::{Action, Receiver, Request};
use crate::support::Daemon;
use crate::{SHIP_DEADLINE, SINK};

#[test]
fn backlog_survives_restart_and_sigkill() {
    let rx = Receiver::standalone(
        Vec::new(),
        Action::status(503, "storage down").with_header("Retry-After", "1"),
    );
    let mut d = Daemon::start(&config(&rx.url("/ingest"), "http", "msgpack", true));
    let queues = ["sales", "support"];
    let intervals: Vec<i64> = (4..=6).map(past_interval).collect();
    let calls = make_calls("restart", 31, &queues, &intervals, 5, false);
    let events = send_calls(&d, &calls);
    wait_settled(&d, events as u64);
    let want = expected(&calls);
    flush(&d);

    // Refused with 503: retried, and everything stays listed.
    wait_for(
        &d,
        "two 503 answers and counted retries",
        SHIP_DEADLINE,
        || {
            let s = sink_status(&d);
            let n = rx.requests().len();
            if n >= 2
                && s["retries"].as_u64().is_some_and(|r| r >= 1)
                && s["last_error"].as_str().is_some_and(|e| e.contains("503"))
            {
                Ok(())
            } else {
                Err(format!("{n} requests; sink {s}"))
            }
        },
    );
    let listed = outbox(&d);
    assert!(!listed.is_empty(), "the outbox lists nothing after a flush");
    let seqs: Vec<u64> = listed.iter().map(|e| u64_field(e, "seq")).collect();
    assert_eq!(seqs, (1..=listed.len() as u64).collect::<Vec<_>>());
    for e in &listed {
        assert_eq!(e["waiting_for"], json!([SINK]), "{e}");
    }
    let mut offered: BTreeMap<String, u64> = BTreeMap::new();
    for e in &listed {
        *offered
            .entry(e["key"].as_str().expect("a key").to_string())
            .or_default() += u64_field(e, "offered");
    }
    let want_q = per_queue(&want);
    let want_offered: BTreeMap<String, u64> = want_q
        .iter()
        .map(|(q, t)| (q.clone(), t.get("offered")))
        .collect();
    assert_eq!(offered, want_offered, "offered over the listed records");
    assert_eq!(
        u64_field(&sink_status(&d), "backlog_records"),
        listed.len() as u64
    );

    // A clean stop and a restart keep the same records, unchanged.
    // A flush right after each restart closes every ended interval again: nothing changed, so
    // it must add no record (a restart neither loses nor repeats one).
    d.stop();
    d.restart();
    assert_eq!(outbox(&d), listed, "after SIGTERM and a restart");
    flush(&d);
    assert_eq!(outbox(&d), listed, "a flush after SIGTERM and a restart");
    assert_eq!(
        agent_by_queue(&d),
        want_q,
        "the agent's figures after a restart"
    );
    // So does SIGKILL.
    d.kill();
    d.restart();
    assert_eq!(outbox(&d), listed, "after SIGKILL and a restart");
    flush(&d);
    assert_eq!(outbox(&d), listed, "a flush after SIGKILL and a restart");
    assert_eq!(
        agent_by_queue(&d),
        want_q,
        "the agent's figures after SIGKILL"
    );
    assert_eq!(
        u64_field(&sink_status(&d), "backlog_records"),
        listed.len() as u64
    );

    // The receiver recovers: every listed record arrives; duplicates only under the same key.
    let refused_before = rx.requests().len();
    assert!(refused_before >= 2);
    rx.set_then(Action::status(200, ""));
    let st = wait_delivered(&d);
    let reqs = rx.requests();
    let delivered = checked_records(&reqs, "application/msgpack", true, Request::delivered);
    let everything = checked_records(&reqs, "application/msgpack", true, |_| true);
    let listed_keys: BTreeSet<String> = listed
        .iter()
        .map(|e| e["idempotency_key"].as_str().expect("a key").to_string())
        .collect();
    assert_eq!(listed_keys.len(), listed.len());
    assert_eq!(
        delivered.keys().cloned().collect::<BTreeSet<_>>(),
        listed_keys,
        "distinct keys delivered vs listed"
    );
    assert_eq!(
        everything.keys().cloned().collect::<BTreeSet<_>>(),
        listed_keys,
        "a key that was never listed was sent"
    );
    for e in &listed {
        let r = &delivered[e["idempotency_key"].as_str().expect("a key")];
        for f in ["seq", "kind", "interval_start_ms", "interval_ms", "offered"] {
            assert_eq!(r[f], e[f], "`{f}` of {r} vs the listing {e}");
        }
        assert_eq!(r["queue"], e["key"]);
    }
    assert_eq!(records_by_interval(delivered.values()), want);
    assert_eq!(u64_field(&st, "dead_letters"), 0, "{st}");
    assert!(outbox(&d).is_empty(), "the outbox still lists records");
}
