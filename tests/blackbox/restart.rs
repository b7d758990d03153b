//! Restarts after SIGTERM and SIGKILL keep every figure and every open call, including events
//! acknowledged just before a SIGKILL.

use serde_json::Value;

use crate::intake::send_json;
use crate::model::{assert_all_metrics, stable};
use crate::scenario::{base_now, call, events, scenario, seg};
use crate::support::Daemon;
use crate::{s, CONFIG};

/// Everything a restart must keep: metrics rows (less the clock-driven figure) and open calls.
fn snapshot(d: &Daemon) -> (Vec<Vec<Value>>, Vec<Value>) {
    let rows = ["queue", "all", "agent", "channel"]
        .iter()
        .map(|by| stable(&d.metrics("1h", by)))
        .collect();
    let calls = d
        .calls()
        .into_iter()
        .map(|mut c| {
            if let Some(m) = c.as_object_mut() {
                m.remove("age_ms");
                m.remove("phase_age_ms");
                // Counts down with the wall clock; the deadline it is measured to stays.
                m.remove("time_left_ms");
            }
            c
        })
        .collect();
    (rows, calls)
}

#[test]
fn restarts_after_sigterm_and_sigkill_keep_every_figure() {
    let mut d = Daemon::start(CONFIG);
    let calls = scenario();
    send_json(&d, &events(&calls, base_now()));
    assert_all_metrics(&d, &calls);
    let before = snapshot(&d);
    assert!(!before.1.is_empty(), "the waiting call is listed");

    d.stop();
    d.restart();
    assert_all_metrics(&d, &calls);
    assert_eq!(snapshot(&d), before, "after SIGTERM and restart");

    d.kill();
    d.restart();
    assert_all_metrics(&d, &calls);
    assert_eq!(snapshot(&d), before, "after SIGKILL and restart");

    // Events acknowledged just before a SIGKILL survive it too.
    let mut more = calls.clone();
    more.push(call(
        "late1",
        vec![seg("sales", s(30))
            .answer(s(38), "dave")
            .end(s(98), None)
            .wrapup(s(99))],
    ));
    let extra = events(&more[more.len() - 1..], base_now());
    send_json(&d, &extra);
    d.kill();
    d.restart();
    assert_all_metrics(&d, &more);
}
