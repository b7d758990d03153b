//! The figures alert rules watch, read from the engine: one metrics query per rule (its window,
//! by queue), the rule's queues picked from the rows. Read-only; the engine is not changed.

use std::collections::HashMap;

use super::rule::{Rule, Watch};
use crate::engine::{DimKind, Engine, MetricsQuery, MetricsRow};

/// The value of `watch` in a row: `None` where the figure has no value (a zero denominator).
#[must_use]
pub fn value_of(watch: Watch, row: Option<&MetricsRow>) -> Option<f64> {
    match watch {
        // Real-time figures of a queue nobody waits in are 0.
        Watch::WaitingNow => Some(row.map_or(0.0, |r| r.realtime.waiting_now as f64)),
        Watch::LongestWaitNow => Some(
            row.and_then(|r| r.realtime.longest_wait_now_ms)
                .map_or(0.0, |ms| ms as f64),
        ),
        Watch::ServiceLevel => row.and_then(|r| r.figures.service_level),
        Watch::AbandonRate => row.and_then(|r| r.figures.abandon_rate),
        Watch::Asa => row.and_then(|r| r.figures.asa_ms),
        Watch::Aht => row.and_then(|r| r.figures.aht_ms),
        // Not a metrics figure: read from the callback requests (see `values`).
        Watch::CallbacksOverdue => None,
    }
}

/// Each of the rule's queues with the value of its figure at `now`.
#[must_use]
pub fn values(engine: &Engine, rule: &Rule, now: i64) -> Vec<(String, Option<f64>)> {
    if rule.watch == Watch::CallbacksOverdue {
        let overdue = engine.overdue_callbacks_by_queue(rule.objective.as_deref(), now);
        return rule
            .queues
            .iter()
            .map(|queue| {
                let n = overdue.get(queue.as_str()).copied().unwrap_or(0);
                (queue.clone(), Some(n as f64))
            })
            .collect();
    }
    let q = MetricsQuery {
        // Real-time figures are the same in every window's rows: take the first.
        window: rule.window.map(|w| w.to_string()),
        by: DimKind::Queue,
        key: None,
    };
    // The window was checked against the configured ones when the config was read; a reload
    // that removed it leaves no rows, so no values, rather than stale ones.
    let rows = engine.metrics_with(&q, now, false).unwrap_or_default();
    let by_queue: HashMap<&str, &MetricsRow> = rows.iter().map(|r| (r.key.as_str(), r)).collect();
    rule.queues
        .iter()
        .map(|queue| {
            let row = by_queue.get(queue.as_str()).copied();
            (queue.clone(), value_of(rule.watch, row))
        })
        .collect()
}
