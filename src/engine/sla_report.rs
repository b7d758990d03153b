//! What `callmetrics sla` shows of each objective: the current period's value, status and
//! margin (src/sla/compliance.rs) from the objective's counters, the counts behind them, the
//! calls offered outside service hours, the agents its queues need now, and the final figures
//! of the periods kept. Plain serde types the control protocol carries unchanged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::aggregate::Agg;
use super::sla::PeriodCounts;
use super::Engine;
use crate::callbacks::book::Tally;
use crate::config::{Measure, ScopeConfig, Target};
use crate::sla::compliance::{
    assess, expected_by_rate, period_word, units, Margin, Remaining, Status,
};
use crate::sla::objective::Objective;

/// The counters behind an objective's figures, in the names of docs/metrics.md.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaCounts {
    pub offered: u64,
    pub answered: u64,
    pub answered_within: u64,
    pub abandoned: u64,
    pub abandoned_within: u64,
    pub short_abandoned: u64,
    pub overflow: u64,
    pub handled: u64,
    pub wait_sum_ms: u64,
    pub talk_sum_ms: u64,
    pub hold_sum_ms: u64,
    pub acw_sum_ms: u64,
}

impl SlaCounts {
    #[must_use]
    pub fn of(a: &Agg) -> SlaCounts {
        SlaCounts {
            offered: a.offered,
            answered: a.answered,
            answered_within: a.answered_within,
            abandoned: a.abandoned,
            abandoned_within: a.abandoned_within,
            short_abandoned: a.short_abandoned,
            overflow: a.overflow,
            handled: a.handled,
            wait_sum_ms: a.wait_sum_ms,
            talk_sum_ms: a.talk_sum_ms,
            hold_sum_ms: a.hold_sum_ms,
            acw_sum_ms: a.acw_sum_ms,
        }
    }

    /// The same counters as an [`Agg`] (what compliance is computed from).
    #[must_use]
    pub fn to_agg(&self) -> Agg {
        Agg {
            offered: self.offered,
            answered: self.answered,
            answered_within: self.answered_within,
            abandoned: self.abandoned,
            abandoned_within: self.abandoned_within,
            short_abandoned: self.short_abandoned,
            overflow: self.overflow,
            handled: self.handled,
            wait_sum_ms: self.wait_sum_ms,
            talk_sum_ms: self.talk_sum_ms,
            hold_sum_ms: self.hold_sum_ms,
            acw_sum_ms: self.acw_sum_ms,
            ..Agg::default()
        }
    }

    /// Sums two periods' or hosts' counters.
    pub fn merge(&mut self, o: &SlaCounts) {
        self.offered += o.offered;
        self.answered += o.answered;
        self.answered_within += o.answered_within;
        self.abandoned += o.abandoned;
        self.abandoned_within += o.abandoned_within;
        self.short_abandoned += o.short_abandoned;
        self.overflow += o.overflow;
        self.handled += o.handled;
        self.wait_sum_ms += o.wait_sum_ms;
        self.talk_sum_ms += o.talk_sum_ms;
        self.hold_sum_ms += o.hold_sum_ms;
        self.acw_sum_ms += o.acw_sum_ms;
    }
}

/// A period that has ended, with its final figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlaPastPeriod {
    pub period_start_ms: i64,
    pub period_end_ms: i64,
    pub value: Option<f64>,
    pub status: Status,
    pub counts: SlaCounts,
    pub outside_hours: SlaCounts,
    /// `callbacks_within`: the requests made in the period and how they stand.
    #[serde(default)]
    pub callbacks: Option<Tally>,
}

/// One objective as `sla` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlaObjective {
    pub name: String,
    /// `service_level`, `answered_within`, `abandon_rate_max`, `asa_max` or `aht_max`.
    pub measure: String,
    pub scope: ScopeConfig,
    /// `service_level` only.
    pub formula: Option<String>,
    pub threshold_ms: Option<i64>,
    /// A fraction, or ms for `asa_max` and `aht_max`.
    pub target: f64,
    /// `day`, `week` or `month`.
    pub period: String,
    /// The zone of the periods and service hours (IANA name).
    pub time_zone: String,
    pub period_start_ms: i64,
    pub period_end_ms: i64,
    /// The measure so far this period (a fraction, or ms); `None` with no data.
    pub value: Option<f64>,
    pub status: Status,
    pub margin: Option<Margin>,
    /// The margin as a sentence ("the next 120 calls must be …").
    pub margin_text: Option<String>,
    /// Units of the measure still expected this period (see docs/sla.md).
    pub expected: Option<u64>,
    /// Calls offered in service hours, counted against the target.
    pub counts: SlaCounts,
    /// Calls offered outside service hours, counted apart.
    pub outside_hours: SlaCounts,
    /// Engine time counting began (the objective was added or its counting rules changed).
    pub counting_since_ms: i64,
    /// Agents needed now per queue of the scope (every queue with traffic when the scope names
    /// none): see docs/sla.md "Staffing".
    pub agents_needed: BTreeMap<String, Option<u32>>,
    /// The periods kept before this one, newest first.
    pub past: Vec<SlaPastPeriod>,
    /// `callbacks_within`: the requests made this period and how they stand (the calls'
    /// `counts` are then empty: the objective counts requests, not calls).
    #[serde(default)]
    pub callbacks: Option<Tally>,
}

/// A target as a number: the fraction, or ms.
fn target_number(t: Target) -> f64 {
    match t {
        Target::Fraction(x) => x,
        Target::Duration(d) => d.0 as f64,
    }
}

/// Judges an objective's current period at `now` (`p` its counters, if any).
fn current(
    o: &Objective,
    start: i64,
    end: i64,
    p: Option<&PeriodCounts>,
    now: i64,
) -> SlaObjective {
    let counted = p.map(|p| p.counted.clone()).unwrap_or_default();
    let elapsed = o.hours.business_ms_between(start, now.min(end));
    let left = o.hours.business_ms_between(now.min(end), end);
    let remaining = if now >= end {
        Remaining::Ended
    } else {
        expected_by_rate(units(&o.goal, &counted), elapsed, left)
    };
    let c = assess(&o.goal, &counted, remaining);
    SlaObjective {
        name: o.name.clone(),
        measure: o.goal.measure.name().to_string(),
        scope: o.scope.clone(),
        formula: (o.goal.measure == crate::config::Measure::ServiceLevel)
            .then(|| o.goal.formula.name().to_string()),
        threshold_ms: o.goal.threshold.map(|t| t.0),
        target: target_number(o.goal.target),
        period: period_word(o.period).to_string(),
        time_zone: o.hours.time_zone().iana_name().unwrap_or("UTC").to_string(),
        period_start_ms: start,
        period_end_ms: end,
        value: c.value,
        status: c.status,
        margin: c.margin,
        margin_text: c.margin.map(|m| m.sentence(&o.goal, o.period)),
        expected: match remaining {
            Remaining::Expected(r) => Some(r),
            Remaining::Ended | Remaining::Unknown => None,
        },
        counts: SlaCounts::of(&counted),
        outside_hours: p.map(|p| SlaCounts::of(&p.outside)).unwrap_or_default(),
        counting_since_ms: 0,
        agents_needed: BTreeMap::new(),
        past: Vec::new(),
        callbacks: None,
    }
}

/// Judges a `callbacks_within` objective's current period and the periods kept before it.
fn callbacks_objective(
    o: &Objective,
    desk: &super::callbacks::Desk,
    now: i64,
) -> Option<SlaObjective> {
    let (start, end) = o.period_bounds(now)?;
    let tally = desk.tally(start, end, now);
    let counted = super::callbacks::judged_counts(&tally);
    let p = PeriodCounts {
        end_ms: end,
        counted,
        outside: Agg::default(),
    };
    let mut out = current(o, start, end, Some(&p), now);
    out.counts = SlaCounts::default();
    out.callbacks = Some(tally);
    out.past = desk
        .past_periods(start)
        .into_iter()
        .map(|(s, e)| {
            let t = desk.tally(s, e, now);
            let c = assess(
                &o.goal,
                &super::callbacks::judged_counts(&t),
                Remaining::Ended,
            );
            SlaPastPeriod {
                period_start_ms: s,
                period_end_ms: e,
                value: c.value,
                status: c.status,
                counts: SlaCounts::default(),
                outside_hours: SlaCounts::default(),
                callbacks: Some(t),
            }
        })
        .collect();
    Some(out)
}

impl Engine {
    /// Every objective as it stands at `now` (engine time or later), in config order.
    #[must_use]
    pub fn sla_at(&self, now: i64) -> Vec<SlaObjective> {
        let now = now.max(self.now_ms);
        let staffing = self.staffing_at(now);
        self.sla
            .iter()
            .filter_map(|(o, t)| {
                if o.goal.measure == Measure::CallbacksWithin {
                    let mut out = callbacks_objective(o, self.callbacks.desk(&o.name)?, now)?;
                    out.counting_since_ms = t.since_ms;
                    return Some(out);
                }
                let (start, end) = o.period_bounds(now)?;
                let mut out = current(o, start, end, t.periods.get(&start), now);
                out.counting_since_ms = t.since_ms;
                out.agents_needed = if o.scope.queues.is_empty() {
                    staffing.clone()
                } else {
                    o.scope
                        .queues
                        .iter()
                        .map(|q| (q.clone(), staffing.get(q).copied().flatten()))
                        .collect()
                };
                out.past = t
                    .periods
                    .range(..start)
                    .rev()
                    .map(|(s, p)| {
                        let c = assess(&o.goal, &p.counted, Remaining::Ended);
                        SlaPastPeriod {
                            period_start_ms: *s,
                            period_end_ms: p.end_ms,
                            value: c.value,
                            status: c.status,
                            counts: SlaCounts::of(&p.counted),
                            outside_hours: SlaCounts::of(&p.outside),
                            callbacks: None,
                        }
                    })
                    .take(o.keep_periods)
                    .collect();
                Some(out)
            })
            .collect()
    }
}
