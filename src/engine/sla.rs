//! The objectives' counters (`[[sla]]`, docs/sla.md): every folded segment is counted by each
//! objective whose scope covers it, with the objective's own T, S and wait clock, in the
//! objective's period holding the instant its facts are attributed to (queue facts when it left
//! the queue, handle facts at completion, as every other figure: docs/metrics.md
//! "Attribution"). A segment offered outside the objective's service hours is counted apart.
//!
//! State per objective: the counters of the periods kept (the current one and the last
//! `keep_periods` before it), nothing per call. A fact for a period older than every one kept
//! is not counted.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::aggregate::{Agg, HandleFacts, QueueFacts};
use super::segment::Segment;
use super::varint::{put_bytes, put_i64, put_u64, DecodeError, Reader};
use crate::config::{Config, SlaConfig};
use crate::sla::objective::Objective;

/// One period's counters of one objective.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeriodCounts {
    /// End of the period, exclusive (its start is the map's key).
    pub end_ms: i64,
    /// Calls offered in service hours, judged with the objective's T, S and clock.
    pub counted: Agg,
    /// Calls offered outside service hours (wall-clock waits), not counted against the target.
    pub outside: Agg,
}

/// What one objective has counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// The objective's counting rules when this was counted (see [`fingerprint`]).
    pub fingerprint: String,
    /// Engine time counting began: when the objective was first configured, or last changed.
    pub since_ms: i64,
    /// Period start → its counters; at most `keep_periods + 1` periods.
    pub periods: BTreeMap<i64, PeriodCounts>,
}

impl Tally {
    /// The counters of the period holding `at_ms`, made when needed; `None` when that period is
    /// older than every one kept and the kept ones are full.
    fn period_mut(&mut self, o: &Objective, at_ms: i64) -> Option<&mut PeriodCounts> {
        let (start, end) = o.period_bounds(at_ms)?;
        let full = self.periods.len() > o.keep_periods;
        if full
            && !self.periods.contains_key(&start)
            && self
                .periods
                .first_key_value()
                .is_some_and(|(k, _)| *k > start)
        {
            return None;
        }
        self.periods.entry(start).or_insert_with(|| PeriodCounts {
            end_ms: end,
            ..PeriodCounts::default()
        });
        self.trim(o.keep_periods);
        self.periods.get_mut(&start)
    }

    fn trim(&mut self, keep: usize) {
        while self.periods.len() > keep + 1 {
            self.periods.pop_first();
        }
    }
}

/// What of an objective decides how calls are counted: scope, T, S, clock, period, zone,
/// hours and holidays (its measure, formula and targets only judge the counters, so changing
/// them keeps the figures).
#[must_use]
pub fn fingerprint(entry: &SlaConfig, cfg: &Config) -> String {
    let d = cfg.defaults;
    let mut v = json!({
        "scope": entry.scope,
        "threshold_ms": entry.threshold.unwrap_or(d.threshold).0,
        "short_abandon_ms": entry.short_abandon.unwrap_or(d.short_abandon).0,
        "clock": entry.clock,
        "period": entry.period,
        "time_zone": entry.time_zone.as_ref().unwrap_or(&cfg.general.time_zone),
        "hours": entry.hours,
        "holidays": entry.holidays,
    });
    // Only when set, so that objectives without one keep the fingerprint they were stored with.
    if let (Some(p), Some(m)) = (&entry.promise, v.as_object_mut()) {
        m.insert("promise".into(), p.clone().into());
    }
    v.to_string()
}

/// The objectives of the config and what each has counted.
#[derive(Debug, Clone, Default)]
pub struct SlaBook {
    objectives: Vec<Objective>,
    tallies: Vec<Tally>,
    /// Tag names some objective's scope uses: kept on open calls (with the tag dimensions').
    tag_keys: BTreeSet<String>,
}

impl SlaBook {
    /// The objectives of `cfg`, nothing counted yet. An entry whose calendar cannot be built
    /// (validation refuses those) is left out.
    #[must_use]
    pub fn new(cfg: &Config) -> SlaBook {
        let mut book = SlaBook::default();
        book.reconfigure(cfg, 0);
        book
    }

    /// Applies a new config at engine time `now_ms`: an objective whose counting rules are
    /// unchanged keeps its figures (under the same name); a new or changed one starts counting
    /// afresh from now; a removed one is forgotten.
    pub fn reconfigure(&mut self, cfg: &Config, now_ms: i64) {
        let mut old: BTreeMap<String, Tally> = self
            .objectives
            .iter()
            .map(|o| o.name.clone())
            .zip(std::mem::take(&mut self.tallies))
            .collect();
        self.objectives.clear();
        for entry in &cfg.sla {
            let Ok(o) = Objective::new(entry, cfg) else {
                continue;
            };
            let fp = fingerprint(entry, cfg);
            let mut tally = match old.remove(&o.name) {
                Some(t) if t.fingerprint == fp => t,
                _ => Tally {
                    fingerprint: fp,
                    since_ms: now_ms,
                    periods: BTreeMap::new(),
                },
            };
            tally.trim(o.keep_periods);
            self.tallies.push(tally);
            self.objectives.push(o);
        }
        self.tag_keys = self
            .objectives
            .iter()
            .flat_map(|o| o.scope.tags.keys().cloned())
            .collect();
    }

    /// Dates the start of counting of every objective at `now_ms` (a store restored: those
    /// its state holds get their own dates back from [`SlaBook::decode`]).
    pub fn reconfigure_since(&mut self, now_ms: i64) {
        for t in &mut self.tallies {
            t.since_ms = now_ms;
        }
    }

    /// Each objective with what it counted, in config order.
    pub fn iter(&self) -> impl Iterator<Item = (&Objective, &Tally)> {
        self.objectives.iter().zip(&self.tallies)
    }

    /// Whether some objective's scope names a tag (so open calls keep those tags).
    #[must_use]
    pub fn keeps_tags(&self) -> bool {
        !self.tag_keys.is_empty()
    }

    /// Whether some objective's scope names the tag `name`.
    #[must_use]
    pub fn keeps(&self, name: &str) -> bool {
        self.tag_keys.contains(name)
    }

    /// Counts a segment's facts being folded for every objective covering it.
    pub fn count(
        &mut self,
        seg: &Segment,
        queue: Option<&QueueFacts>,
        handle: Option<&HandleFacts>,
    ) {
        for (o, t) in self.objectives.iter().zip(self.tallies.iter_mut()) {
            // Callback objectives count requests (engine/callbacks.rs), not segments.
            if o.goal.measure == crate::config::Measure::CallbacksWithin
                || !o.covers(seg.queue, seg.channel, seg.tags)
            {
                continue;
            }
            if let Some(f) = queue {
                let inside = o.counts_arrival(f.start_ms);
                if let Some(p) = t.period_mut(o, f.leave_ms) {
                    if inside {
                        p.counted.count_queue(&o.judged(f), &o.params, &[]);
                    } else {
                        p.outside.count_queue(f, &o.params, &[]);
                    }
                }
            }
            if let Some(h) = handle {
                let inside = o.counts_arrival(seg.start_ms);
                if let Some(p) = t.period_mut(o, h.completion_ms) {
                    if inside {
                        p.counted.count_handle(h);
                    } else {
                        p.outside.count_handle(h);
                    }
                }
            }
        }
    }

    /// Heap bytes of the counters (for the engine's memory accounting).
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        self.tallies
            .iter()
            .map(|t| {
                t.fingerprint.len() + t.periods.len() * (std::mem::size_of::<PeriodCounts>() + 16)
            })
            .sum()
    }

    /// Appends the tallies to a state value.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.tallies.len() as u64);
        for (o, t) in self.iter() {
            put_bytes(out, o.name.as_bytes());
            put_bytes(out, t.fingerprint.as_bytes());
            put_i64(out, t.since_ms);
            put_u64(out, t.periods.len() as u64);
            for (start, p) in &t.periods {
                put_i64(out, *start);
                put_i64(out, p.end_ms);
                put_counters(out, &p.counted);
                put_counters(out, &p.outside);
            }
        }
    }

    /// Reads tallies written by [`SlaBook::encode`]: those of objectives configured now with
    /// the same counting rules are taken; the others (changed or removed while stopped) are
    /// dropped, as a reload would.
    pub fn decode(&mut self, r: &mut Reader<'_>) -> Result<(), DecodeError> {
        let n = r.usize()?;
        if n > r.rest().len() {
            return Err(DecodeError::Truncated);
        }
        for _ in 0..n {
            let name = r.str()?;
            let fingerprint = r.str()?.to_string();
            let since_ms = r.i64()?;
            let np = r.usize()?;
            if np > r.rest().len() {
                return Err(DecodeError::Truncated);
            }
            let mut periods = BTreeMap::new();
            for _ in 0..np {
                let start = r.i64()?;
                let end_ms = r.i64()?;
                let counted = read_counters(r)?;
                let outside = read_counters(r)?;
                periods.insert(
                    start,
                    PeriodCounts {
                        end_ms,
                        counted,
                        outside,
                    },
                );
            }
            let Some(i) = self.objectives.iter().position(|o| o.name == name) else {
                continue;
            };
            if self.tallies[i].fingerprint == fingerprint {
                let mut t = Tally {
                    fingerprint,
                    since_ms,
                    periods,
                };
                t.trim(self.objectives[i].keep_periods);
                self.tallies[i] = t;
            }
        }
        Ok(())
    }
}

/// The counters of an [`Agg`] the objectives keep (no bands, no sketches).
fn counters(a: &Agg) -> [u64; 14] {
    [
        a.offered,
        a.answered,
        a.answered_within,
        a.abandoned,
        a.abandoned_within,
        a.short_abandoned,
        a.overflow,
        a.handled,
        a.wait_sum_ms,
        a.wait_max_ms,
        a.abandon_wait_sum_ms,
        a.talk_sum_ms,
        a.hold_sum_ms,
        a.acw_sum_ms,
    ]
}

fn put_counters(out: &mut Vec<u8>, a: &Agg) {
    for v in counters(a) {
        put_u64(out, v);
    }
}

fn read_counters(r: &mut Reader<'_>) -> Result<Agg, DecodeError> {
    let mut v = [0u64; 14];
    for x in &mut v {
        *x = r.u64()?;
    }
    let [offered, answered, answered_within, abandoned, abandoned_within, short_abandoned, overflow, handled, wait_sum_ms, wait_max_ms, abandon_wait_sum_ms, talk_sum_ms, hold_sum_ms, acw_sum_ms] =
        v;
    Ok(Agg {
        offered,
        answered,
        answered_within,
        abandoned,
        abandoned_within,
        short_abandoned,
        overflow,
        handled,
        wait_sum_ms,
        wait_max_ms,
        abandon_wait_sum_ms,
        talk_sum_ms,
        hold_sum_ms,
        acw_sum_ms,
        ..Agg::default()
    })
}
