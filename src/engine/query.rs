//! Answers: metrics rows for a window and dimension, and the open segments, at any engine time at
//! or after the engine's own, without changing the engine (queries never wait for the committer).
//!
//! A row is the folded buckets in the window (minute buckets merged on the spot, long windows from
//! their running totals adjusted to the query's range), plus what the calls not yet folded add
//! provisionally, plus the real-time figures of the segments open now.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

use super::aggregate::{Figures, QUANTILES};
use super::keys::{dims_of, KeyId};
use super::report::{
    DimKind, MetricsQuery, MetricsRow, OpenSegment, QueryError, Realtime, RowParams,
};
use super::running::Running;
use super::segment::Phase;
use super::window::{Tier, Window};
use super::Engine;
use crate::units::Millis;

/// How much of each row a query computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detail {
    /// Every figure, and the rows carry the merged histograms.
    Histograms,
    /// Every figure, quantiles included; the rows carry no histograms.
    Quantiles,
    /// The counters and what derives from them, no quantiles: the buckets' sketches are
    /// neither decoded nor merged.
    Counters,
}

impl Engine {
    /// The window a query names, which must be configured (or `today`); the first configured
    /// one when it names none.
    fn window(&self, name: Option<&str>) -> Result<Window, QueryError> {
        let configured = || self.window_names().join(", ");
        let Some(name) = name else {
            return Ok(Window::Trailing(
                self.s.windows.first().copied().unwrap_or(Millis::secs(900)),
            ));
        };
        match Window::parse(name) {
            Some(Window::Today) => Ok(Window::Today),
            Some(Window::Trailing(w)) if self.s.windows.contains(&w) => Ok(Window::Trailing(w)),
            _ => Err(QueryError::UnknownWindow(name.to_string(), configured())),
        }
    }

    /// The windows `metrics` can be asked for.
    #[must_use]
    pub fn window_names(&self) -> Vec<String> {
        self.s
            .windows
            .iter()
            .map(std::string::ToString::to_string)
            .chain(["today".to_string()])
            .collect()
    }

    /// Metrics rows for one dimension and window at engine time (call `advance` first).
    pub fn metrics(&self, q: &MetricsQuery) -> Result<Vec<MetricsRow>, QueryError> {
        self.metrics_at(q, self.now_ms)
    }

    /// Metrics rows as they stand at `now` (never earlier than engine time), read-only: exactly
    /// what `advance(now)` followed by `metrics` would answer, but for expiries and key limits
    /// that only the next `advance` applies.
    pub fn metrics_at(&self, q: &MetricsQuery, now: i64) -> Result<Vec<MetricsRow>, QueryError> {
        self.metrics_with(q, now, true)
    }

    /// The rows of `metrics_with` before staffing is added (see `staffing.rs`).
    pub(super) fn metrics_rows(
        &self,
        q: &MetricsQuery,
        now: i64,
        histograms: bool,
    ) -> Result<Vec<MetricsRow>, QueryError> {
        let detail = if histograms {
            Detail::Histograms
        } else {
            Detail::Quantiles
        };
        self.rows(q, now, detail)
    }

    /// The rows of `metrics_rows` with no quantiles: the buckets' sketches are neither decoded
    /// nor merged, so a row costs its counters only. Staffing reads these for the last hour at
    /// every queue query, from a minute bucket per queue and minute: with the sketches, that
    /// took longer than the answer itself at 1 M calls.
    pub(super) fn counter_rows(
        &self,
        q: &MetricsQuery,
        now: i64,
    ) -> Result<Vec<MetricsRow>, QueryError> {
        self.rows(q, now, Detail::Counters)
    }

    fn rows(
        &self,
        q: &MetricsQuery,
        now: i64,
        detail: Detail,
    ) -> Result<Vec<MetricsRow>, QueryError> {
        let sketches = detail != Detail::Counters;
        if q.key.is_some() && q.by != DimKind::Queue {
            return Err(QueryError::KeyNeedsQueueDimension(q.by.name().into()));
        }
        let window = self.window(q.window.as_deref())?;
        let now = now.max(self.now_ms);
        let (tier, first, last) = self.cal.range(window, now);
        let wanted = |name: &str| q.key.as_deref().is_none_or(|k| k == name);

        let mut names: BTreeSet<String> = self
            .keys
            .of_kind(q.by)
            .map(|(_, d)| d.key.clone())
            .collect();
        if q.by == DimKind::Queue {
            names.extend(self.s.queues.keys().cloned());
        }
        if q.by == DimKind::All {
            names.insert("all".into());
        }
        // A row's accumulator borrows a long window's total until something must change it.
        let mut rows = Rows::default();

        // Provisional facts and real-time figures of calls not yet folded.
        for (_, e) in self.pending.iter() {
            let call = &e.call;
            let derived = call.derive();
            for (i, seg) in derived.segments.iter().enumerate() {
                let folded = call.folded.get(i).cloned().unwrap_or_default();
                if folded.expired {
                    continue;
                }
                let rule = self.s.wait.get(seg.queue, seg.channel);
                let p = rule.params;
                for (kind, name) in dims_of(seg) {
                    if kind != q.by {
                        continue;
                    }
                    let name = self.keys.effective_name(kind, name, self.s.max_keys(kind));
                    if !wanted(name) {
                        continue;
                    }
                    let (acc, rt) = rows.slot(name);
                    let acc = acc.to_mut();
                    if folded.queue.is_none() {
                        if let Some(f) = seg.queue_facts() {
                            let b = self.cal.bucket(tier, f.leave_ms);
                            if (first..=last).contains(&b) {
                                acc.add_queue(&rule.judged(&f), &p, &self.s.bands);
                            }
                        }
                    }
                    let timed_out = self.wrapup_timed_out(seg, now);
                    if folded.handle.is_none() && (seg.wrapup_ms.is_some() || timed_out) {
                        if let Some(h) = seg.handle_facts() {
                            let b = self.cal.bucket(tier, h.completion_ms);
                            if (first..=last).contains(&b) {
                                acc.add_handle(&h);
                            }
                        }
                    }
                    if folded.handle.is_some() {
                        continue;
                    }
                    match seg.phase() {
                        Phase::Waiting if seg.end.is_none() => {
                            rt.waiting_now += 1;
                            let w = rule.elapsed_ms(seg.start_ms, now).max(0) as u64;
                            rt.longest_wait_now_ms =
                                Some(rt.longest_wait_now_ms.map_or(w, |m| m.max(w)));
                        }
                        Phase::Talking | Phase::OnHold => rt.talking_now += 1,
                        Phase::InAcw if seg.wrapup_ms.is_none() && !timed_out => {
                            rt.in_acw_now += 1;
                        }
                        _ => {}
                    }
                }
            }
        }

        // Folded buckets, accumulated by key number (a lookup by name per bucket would cost more
        // than the bucket), then merged into the rows by name.
        let want: Vec<Option<&str>> = (0..self.keys.id_bound())
            .map(|k| {
                self.keys
                    .dim(k)
                    .filter(|d| d.kind == q.by && wanted(&d.key))
                    .map(|d| d.key.as_str())
            })
            .collect();
        let wanted_key = |key: KeyId| want.get(key as usize).copied().flatten().is_some();
        let mut acc: Vec<Option<Cow<'_, Running>>> = vec![None; want.len()];
        let mut max: Vec<u64> = vec![0; want.len()];
        let (totals, tier_slices) = match tier {
            Tier::Interval => (self.totals.get(window), &self.interval),
            Tier::Fine => (self.fine_totals.get(window), &self.fine),
        };
        // Adds (or subtracts) every wanted bucket of the slices in `from..=to`.
        let apply = |acc: &mut Vec<Option<Cow<'_, Running>>>,
                     slices: &super::slices::TierSlices,
                     from: i64,
                     to: i64,
                     add: bool| {
            for (_, slice) in slices.range(from, to) {
                for (key, cell) in slice.cells() {
                    if wanted_key(key) {
                        let a = acc[key as usize]
                            .get_or_insert_with(|| Cow::Owned(Running::default()))
                            .to_mut();
                        // Cells were written by this engine; see `Totals::sync`.
                        let _ = if add && sketches {
                            cell.add_into(&self.sets, a)
                        } else if add {
                            cell.add_counters_into(&self.sets, a)
                        } else {
                            cell.subtract_from(&self.sets, a)
                        };
                    }
                }
            }
        };
        if let Some(view) = totals {
            for (&key, total) in view.per_key {
                if wanted_key(key) {
                    acc[key as usize] = Some(Cow::Borrowed(total));
                }
            }
            // Move the totals' range to the query's: drop what left, add what entered.
            let (vf, vl) = (view.first, view.last);
            if vf > vl || last < vf || vl < first {
                apply(&mut acc, tier_slices, vf, vl, false);
                apply(&mut acc, tier_slices, first, last, true);
            } else {
                if vf < first {
                    apply(&mut acc, tier_slices, vf, first - 1, false);
                }
                if last < vl {
                    apply(&mut acc, tier_slices, last + 1, vl, false);
                }
                if first < vf {
                    apply(&mut acc, tier_slices, first, vf - 1, true);
                }
                if vl < last {
                    apply(&mut acc, tier_slices, vl + 1, last, true);
                }
            }
            // The totals' maxima hold for their own range; another range (a query just past an
            // interval boundary the committer has not reached yet) reads them from the buckets.
            if (vf, vl) != (first, last) {
                for (_, slice) in tier_slices.range(first, last) {
                    for (key, cell) in slice.cells() {
                        if wanted_key(key) {
                            let m = &mut max[key as usize];
                            *m = (*m).max(cell.wait_max());
                        }
                    }
                }
                for (a, m) in acc.iter_mut().zip(&max) {
                    if let Some(a) = a {
                        a.to_mut().agg.wait_max_ms = *m;
                    }
                }
            }
        } else {
            let slices = match tier {
                Tier::Fine => &self.fine,
                Tier::Interval => &self.interval,
            };
            apply(&mut acc, slices, first, last, true);
        }
        for (key, a) in acc.into_iter().enumerate() {
            if let (Some(a), Some(name)) = (a, want[key]) {
                match rows.get_mut(name) {
                    // Calls not yet folded add to it.
                    Some((row, _)) => {
                        let row = row.to_mut();
                        let provisional_max = row.agg.wait_max_ms;
                        row.merge(&a);
                        row.agg.wait_max_ms = provisional_max.max(a.agg.wait_max_ms);
                    }
                    None => rows.slot(name).0 = a,
                }
            }
        }

        names.extend(rows.names().cloned());
        let mut out = Vec::new();
        for name in names {
            if !wanted(&name) {
                continue;
            }
            let (acc, rt) = rows.take(&name);
            let mut counts = if detail == Detail::Histograms {
                acc.to_agg()
            } else {
                acc.agg.clone()
            };
            // One shape for every row: the configured bands always, others only where counted.
            counts
                .bands
                .retain(|t, n| *n > 0 || self.s.bands.contains(t));
            for t in self.s.bands.iter() {
                counts.bands.entry(*t).or_insert(0);
            }
            let p = if q.by == DimKind::Queue {
                self.s.params(&name)
            } else {
                self.s.defaults
            };
            let (wait_q, handle_q) = if sketches {
                (
                    acc.wait.quantiles(QUANTILES),
                    acc.handle.quantiles(QUANTILES),
                )
            } else {
                ([None; QUANTILES.len()], [None; QUANTILES.len()])
            };
            out.push(MetricsRow {
                window: window.name(),
                dimension: q.by,
                figures: Figures::with_quantiles(&counts, p.formula, wait_q, handle_q),
                key: name,
                counts,
                params: RowParams::from(p),
                realtime: rt,
            });
        }
        Ok(out)
    }

    /// Ids beginning with `prefix` of the calls with a segment open (started, neither ended nor
    /// expired): what a source that lost its connection may never hear the end of.
    #[must_use]
    pub fn open_call_ids(&self, prefix: &str) -> Vec<String> {
        self.pending
            .iter()
            .filter(|(id, e)| e.open > 0 && id.starts_with(prefix))
            .map(|(id, _)| id.to_string())
            .collect()
    }

    /// Whether call `id` has a segment open (started, neither ended nor expired).
    #[must_use]
    pub fn has_open_segment(&self, id: &str) -> bool {
        self.pending.get(id).is_some_and(|e| e.open > 0)
    }

    /// Open segments (waiting, talking, on hold, in ACW) with their ages, at engine time.
    #[must_use]
    pub fn open_calls(&self) -> Vec<OpenSegment> {
        self.open_calls_at(self.now_ms)
    }

    /// Open segments as they stand at `now` (never earlier than engine time).
    pub fn open_calls_at(&self, now: i64) -> Vec<OpenSegment> {
        let now = now.max(self.now_ms);
        let mut out = Vec::new();
        for (id, e) in self.pending.iter() {
            let call = &e.call;
            let derived = call.derive();
            for (i, seg) in derived.segments.iter().enumerate() {
                let f = call.folded.get(i).cloned().unwrap_or_default();
                if f.expired
                    || f.handle.is_some()
                    || (seg.end.is_some() && (seg.answer.is_none() || seg.wrapup_ms.is_some()))
                {
                    continue;
                }
                let phase = seg.phase();
                if phase == Phase::InAcw && self.wrapup_timed_out(seg, now) {
                    // Its wrap-up timeout has passed in the source's clock: handling is complete.
                    continue;
                }
                let since = match phase {
                    Phase::Waiting => seg.start_ms,
                    Phase::Talking => seg
                        .holds
                        .last()
                        .and_then(|h| h.1)
                        .or(seg.answer.as_ref().map(|a| a.0))
                        .unwrap_or(seg.start_ms),
                    Phase::OnHold => seg.holds.last().map_or(seg.start_ms, |h| h.0),
                    Phase::InAcw => seg.end.map_or(seg.start_ms, |e| e.0),
                };
                let rule = self.s.wait.get(seg.queue, seg.channel);
                // Only a segment still waiting has a deadline ahead of it (or behind).
                let deadline = (phase == Phase::Waiting)
                    .then(|| rule.deadline(seg.start_ms))
                    .flatten();
                out.push(OpenSegment {
                    call_id: id.to_string(),
                    queue: seg.queue.to_string(),
                    channel: seg.channel.to_string(),
                    agent: seg.agent().map(str::to_string),
                    phase,
                    age_ms: now - seg.start_ms,
                    phase_age_ms: now - since,
                    clock: rule.clock(),
                    deadline_ms: deadline,
                    time_left_ms: deadline.map(|d| rule.elapsed_ms(now, d)),
                });
            }
        }
        out.sort_by(|a, b| {
            b.age_ms
                .cmp(&a.age_ms)
                .then_with(|| a.call_id.cmp(&b.call_id))
        });
        out
    }
}

/// A query's rows by name: accumulators in a vector, a map from name to place. The accumulators
/// are large and a map moves its values as it grows and shrinks; this moves only indexes.
#[derive(Default)]
struct Rows<'a> {
    place: HashMap<String, usize>,
    rows: Vec<(Cow<'a, Running>, Realtime)>,
}

impl<'a> Rows<'a> {
    /// The row of `name`, empty when new.
    fn slot(&mut self, name: &str) -> &mut (Cow<'a, Running>, Realtime) {
        let i = if let Some(&i) = self.place.get(name) {
            i
        } else {
            self.rows.push(Default::default());
            self.place.insert(name.to_string(), self.rows.len() - 1);
            self.rows.len() - 1
        };
        &mut self.rows[i]
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut (Cow<'a, Running>, Realtime)> {
        let i = *self.place.get(name)?;
        self.rows.get_mut(i)
    }

    fn names(&self) -> impl Iterator<Item = &String> {
        self.place.keys()
    }

    /// Takes the row of `name` out, leaving an empty one; an empty row when there is none.
    fn take(&mut self, name: &str) -> (Cow<'a, Running>, Realtime) {
        self.get_mut(name).map(std::mem::take).unwrap_or_default()
    }
}
