//! A real `VictoriaMetrics` behind the influx sink: what it stores, per queue and interval, equals
//! the calls sent and the agent's own figures.

use std::collections::{BTreeMap, BTreeSet};
use std::thread;
use std::time::{Duration, Instant};

use crate::calls::{
    expected, make_calls, past_interval, per_queue, ByInterval, Call, Totals, FIELDS,
};
use crate::drive::{
    agent_by_queue, config, flush, send_calls, u64_field, wait_delivered, wait_settled,
};
use crate::support::victoria::Victoria;
use crate::support::Daemon;
use crate::{HOST, SHIP_DEADLINE};

/// What `VictoriaMetrics` holds: (queue, interval start) → field → value.
type Stored = BTreeMap<(String, i64), BTreeMap<String, u64>>;

/// Every `callmetrics_*` sample of the influx sink's `callmetrics` point: (queue, timestamp)
/// → field → the sum over the series of that queue (an interval's record and its
/// corrections are series of their own), the maximum for `wait_max_ms`. Fails if a series
/// holds two different values at one timestamp.
fn export(vm: &Victoria) -> Result<Stored, String> {
    let mut out = Stored::new();
    for v in vm.export_series(r#"{__name__=~"callmetrics_.*"}"#)? {
        let line = &v;
        let m = &v["metric"];
        let name = m["__name__"].as_str().unwrap_or_default();
        let field = name
            .strip_prefix("callmetrics_")
            .ok_or_else(|| format!("unexpected metric {m}"))?;
        assert_eq!(m["host"], HOST, "{m}");
        assert_eq!(m["dimension"], "queue", "{m}");
        let queue = m["queue"]
            .as_str()
            .ok_or_else(|| format!("no queue label: {m}"))?
            .to_string();
        let values = v["values"].as_array().ok_or("no values")?;
        let stamps = v["timestamps"].as_array().ok_or("no timestamps")?;
        if values.len() != stamps.len() {
            return Err(format!("values and timestamps differ in length: {line}"));
        }
        let mut seen: BTreeMap<i64, f64> = BTreeMap::new();
        for (value, ts) in values.iter().zip(stamps) {
            let ts = ts.as_i64().ok_or_else(|| format!("timestamp {ts}"))?;
            let value = value.as_f64().ok_or_else(|| format!("value {value}"))?;
            if value < 0.0 || value.fract() != 0.0 {
                return Err(format!("{name} at {ts} is {value}, not a count"));
            }
            if let Some(prev) = seen.insert(ts, value) {
                assert_eq!(
                    prev, value,
                    "two different values at one timestamp in one series: {line}"
                );
                continue;
            }
            let e = out
                .entry((queue.clone(), ts))
                .or_default()
                .entry(field.to_string())
                .or_default();
            if field == "wait_max_ms" {
                *e = (*e).max(value as u64);
            } else {
                *e += value as u64;
            }
        }
    }
    Ok(out)
}

#[test]
fn victoria_metrics_end_to_end() {
    let vm = Victoria::start();
    let url = format!("http://{}/write", vm.addr);
    let d = Daemon::start(&config(&url, "influx", "json", true));

    let queues = ["sales", "support", "billing"];
    let intervals: Vec<i64> = (4..=7).map(past_interval).collect();
    let first = make_calls("vm-a", 41, &queues, &intervals, 6, false);
    let n1 = send_calls(&d, &first);
    wait_settled(&d, n1 as u64);
    flush(&d);
    wait_delivered(&d);

    // A correction: more calls in one interval already written.
    let second = make_calls("vm-b", 42, &queues[..2], &[intervals[1]], 3, true);
    let n2 = send_calls(&d, &second);
    wait_settled(&d, (n1 + n2) as u64);
    let calls: Vec<Call> = first.iter().chain(&second).cloned().collect();
    let want = expected(&calls);
    let agent = agent_by_queue(&d);
    assert_eq!(
        agent,
        per_queue(&want),
        "the agent's 24h figures vs the calls"
    );
    flush(&d);
    let st = wait_delivered(&d);
    assert_eq!(u64_field(&st, "dead_letters"), 0, "{st}");
    assert!(u64_field(&st, "delivered_records") > 0, "{st}");

    // What VictoriaMetrics stores, once searchable.
    let to_totals = |m: &Stored| -> Option<ByInterval> {
        m.iter()
            .map(|(k, fields)| {
                let mut t = Totals::default();
                for name in FIELDS {
                    t.add(name, *fields.get(name)?);
                }
                Some((k.clone(), t))
            })
            .collect()
    };
    let deadline = Instant::now() + SHIP_DEADLINE;
    let stored = loop {
        let got = export(&vm);
        if let Ok(m) = &got {
            if to_totals(m).as_ref() == Some(&want) {
                break to_totals(m).expect("complete");
            }
        }
        if Instant::now() >= deadline {
            match got {
                Ok(m) => {
                    let totals = to_totals(&m).unwrap_or_else(|| {
                        panic!("VictoriaMetrics has series with missing fields: {m:#?}")
                    });
                    assert_eq!(
                        totals,
                        want,
                        "VictoriaMetrics per (queue, interval) vs the calls sent\nVM log:\n{}",
                        vm.log_tail()
                    );
                }
                Err(e) => panic!("export failed: {e}\nVM log:\n{}", vm.log_tail()),
            }
            unreachable!("the comparison above fails");
        }
        thread::sleep(Duration::from_millis(200));
    };
    // The sum over intervals per queue equals the agent's own 24h figures.
    assert_eq!(per_queue(&stored), agent);
    // The late calls arrived as corrections, in series of their own.
    let corrections = vm
        .export_series(r#"{__name__="callmetrics_offered",correction!=""}"#)
        .expect("export the corrections");
    assert!(
        !corrections.is_empty(),
        "no correction series in VictoriaMetrics"
    );
    let stored_intervals: BTreeSet<i64> = stored.keys().map(|k| k.1).collect();
    let stored_queues: BTreeSet<&str> = stored.keys().map(|k| k.0.as_str()).collect();
    assert!(
        stored_intervals.len() >= intervals.len() && stored_queues.len() == queues.len(),
        "expected points in several intervals of every queue: {stored:#?}"
    );
}
