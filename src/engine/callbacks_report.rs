//! What `callmetrics callbacks` shows: the open callback requests of every `callbacks_within`
//! objective, the earliest deadline first, with the time left (or overdue by), and each
//! objective's tally this period. Plain serde types the control protocol carries unchanged.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::callbacks::judged_counts;
use super::Engine;
use crate::callbacks::book::Tally;
use crate::sla::compliance::{assess, Remaining, Status};

/// One open request of one objective.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenCallback {
    /// The objective whose promise set the deadline.
    pub objective: String,
    pub call_id: String,
    pub queue: String,
    pub requested_ms: i64,
    pub deadline_ms: i64,
    /// Deadline − now: negative once overdue.
    pub left_ms: i64,
    /// `no_answer` attempts so far.
    pub attempts: u32,
}

/// One objective's requests this period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackObjective {
    pub name: String,
    /// `same_business_day`, or business time such as `12h`.
    pub promise: String,
    pub target: f64,
    /// The zone of its periods and hours (IANA name).
    pub time_zone: String,
    pub period_start_ms: i64,
    pub period_end_ms: i64,
    /// On time / (on time + late + missed) so far; `None` with none known.
    pub value: Option<f64>,
    /// As `sla` judges it, without the volume estimate (see `sla` for the margin).
    pub status: Status,
    pub tally: Tally,
    /// Open requests past their deadline, whatever period they were made in.
    pub overdue: u64,
}

/// The answer to `callbacks`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallbacksReport {
    /// The instant the figures stand at.
    pub now_ms: i64,
    /// Earliest deadline first.
    pub open: Vec<OpenCallback>,
    pub objectives: Vec<CallbackObjective>,
}

impl Engine {
    /// The open requests and each objective's tally at `now` (engine time or later).
    #[must_use]
    pub fn callbacks_at(&self, now: i64) -> CallbacksReport {
        let now = now.max(self.now_ms);
        let mut open = Vec::new();
        let mut objectives = Vec::new();
        for d in &self.callbacks.desks {
            let o = &d.objective;
            let requests = d.book.open_by_deadline();
            let overdue = requests.iter().filter(|r| r.deadline_ms < now).count() as u64;
            open.extend(requests.into_iter().map(|r| OpenCallback {
                objective: o.name.clone(),
                call_id: r.call_id.clone(),
                queue: r.queue.clone(),
                requested_ms: r.requested_ms,
                deadline_ms: r.deadline_ms,
                left_ms: r.deadline_ms.saturating_sub(now),
                attempts: r.attempts,
            }));
            let Some((start, end)) = o.period_bounds(now) else {
                continue;
            };
            let tally = d.tally(start, end, now);
            let judged = assess(&o.goal, &judged_counts(&tally), Remaining::Unknown);
            objectives.push(CallbackObjective {
                name: o.name.clone(),
                promise: o.promise.map(|p| p.to_string()).unwrap_or_default(),
                target: match o.goal.target {
                    crate::config::Target::Fraction(x) => x,
                    crate::config::Target::Duration(d) => d.0 as f64,
                },
                time_zone: o.hours.time_zone().iana_name().unwrap_or("UTC").to_string(),
                period_start_ms: start,
                period_end_ms: end,
                value: judged.value,
                status: judged.status,
                tally,
                overdue,
            });
        }
        open.sort_by(|a, b| {
            (a.deadline_ms, a.requested_ms, &a.call_id, &a.objective).cmp(&(
                b.deadline_ms,
                b.requested_ms,
                &b.call_id,
                &b.objective,
            ))
        });
        CallbacksReport {
            now_ms: now,
            open,
            objectives,
        }
    }

    /// Open requests past their deadline at `now`, per queue (what a `callbacks_overdue` alert
    /// watches): those of the objective named `objective` when it is a callback objective, else
    /// of every one, a call overdue in two objectives counted once.
    #[must_use]
    pub fn overdue_callbacks_by_queue(
        &self,
        objective: Option<&str>,
        now: i64,
    ) -> BTreeMap<String, u64> {
        let now = now.max(self.now_ms);
        let only = objective.filter(|n| self.callbacks.desk(n).is_some());
        let mut calls: BTreeSet<(&str, &str)> = BTreeSet::new();
        for d in &self.callbacks.desks {
            if only.is_some_and(|n| n != d.objective.name) {
                continue;
            }
            for r in d.book.overdue(now) {
                calls.insert((r.queue.as_str(), r.call_id.as_str()));
            }
        }
        let mut out = BTreeMap::new();
        for (queue, _) in calls {
            *out.entry(queue.to_string()).or_insert(0) += 1;
        }
        out
    }
}
