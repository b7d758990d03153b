//! Callback requests of the `callbacks_within` objectives (docs/callbacks.md): a segment in an
//! objective's scope that ends with reason `callback` opens a request, its deadline set by the
//! objective's promise in the objective's service-hours calendar; a `callback` event closes it
//! (`reached`, `cancelled`) or records an attempt (`no_answer`).
//!
//! State per objective: its open requests, the closed ones of the current period, and the
//! counts of past periods (closed requests are folded into their period's counts once the period
//! ends), so it is sized by open requests and periods, not by how many callbacks were made. Open
//! requests are bounded by `limits.max_open_callbacks`; one whose period is older than every
//! period kept is forgotten (counted). Pure: time is passed in.

use std::collections::BTreeMap;

use super::aggregate::Agg;
use super::segment::Segment;
use super::sla::fingerprint;
use super::varint::{put_bytes, put_i64, put_u64, DecodeError, Reader};
use crate::callbacks::book::{Book, Request, Tally};
use crate::callbacks::promise::Promise;
use crate::config::{Config, Measure};
use crate::event::{CallbackOutcome, Event};
use crate::sla::objective::Objective;

/// One `callbacks_within` objective's requests.
#[derive(Debug, Clone)]
pub(super) struct Desk {
    pub(super) objective: Objective,
    promise: Promise,
    fingerprint: String,
    pub(super) book: Book,
    /// Period start → (period end, counts of the requests of that period no longer held).
    past: BTreeMap<i64, (i64, Tally)>,
    /// Engine time from which the book is next tidied (the current period's end).
    tidy_at_ms: i64,
    /// The book's open requests, kept as they change (the limit is checked at every request).
    open: usize,
}

impl Desk {
    /// Requests made in the period `[start, end)`, as they stand at `now_ms`.
    #[must_use]
    pub(super) fn tally(&self, start: i64, end: i64, now_ms: i64) -> Tally {
        let mut t = self.past.get(&start).map(|p| p.1).unwrap_or_default();
        t.add(&self.book.tally(start, end, now_ms));
        t
    }

    /// The periods before `before_ms` with counts, newest first, at most `keep_periods`.
    pub(super) fn past_periods(&self, before_ms: i64) -> Vec<(i64, i64)> {
        let mut starts: BTreeMap<i64, i64> = self
            .past
            .range(..before_ms)
            .map(|(s, (e, _))| (*s, *e))
            .collect();
        for r in self.book.iter().filter(|r| r.requested_ms < before_ms) {
            if let Some((s, e)) = self.objective.period_bounds(r.requested_ms) {
                starts.insert(s, e);
            }
        }
        starts
            .into_iter()
            .rev()
            .take(self.objective.keep_periods)
            .collect()
    }

    /// Folds the closed requests of ended periods into their counts and forgets what is
    /// older than every period kept; returns how many open requests were forgotten.
    fn tidy(&mut self, now_ms: i64) -> u64 {
        if now_ms < self.tidy_at_ms {
            return 0;
        }
        let Some((start, end)) = self.objective.period_bounds(now_ms) else {
            return 0;
        };
        self.tidy_at_ms = end;
        let mut oldest = start;
        for _ in 0..self.objective.keep_periods {
            match self.objective.period_bounds(oldest - 1) {
                Some((s, _)) => oldest = s,
                None => break,
            }
        }
        let forgotten = self
            .book
            .take_all_before(oldest)
            .iter()
            .filter(|r| r.fulfilled_ms.is_none())
            .count() as u64;
        self.open = self.open.saturating_sub(forgotten as usize);
        while self
            .past
            .first_key_value()
            .is_some_and(|(s, _)| *s < oldest)
        {
            self.past.pop_first();
        }
        for r in self.book.take_closed_before(start) {
            if let Some((s, e)) = self.objective.period_bounds(r.requested_ms) {
                // Closed requests count the same whatever the time: `now` does not enter.
                self.past
                    .entry(s)
                    .or_insert((e, Tally::default()))
                    .1
                    .count(&r, 0);
            }
        }
        forgotten
    }
}

/// The requests of every `callbacks_within` objective, and what was counted apart.
#[derive(Debug, Clone, Default)]
pub(super) struct Callbacks {
    pub(super) desks: Vec<Desk>,
    /// Requests not opened because `limits.max_open_callbacks` were open.
    pub(super) refused_limit: u64,
    /// `callback` events for a call with no open request in any objective.
    pub(super) unmatched: u64,
    /// Open requests forgotten with their period (older than every period kept).
    pub(super) forgotten: u64,
    max_open: usize,
}

/// A callback tally as the counters compliance judges a ratio from (src/sla/compliance.rs):
/// requests whose outcome is known as `answered`, those made on time as `answered_within`.
#[must_use]
pub fn judged_counts(t: &Tally) -> Agg {
    Agg {
        answered: t.on_time + t.late + t.missed,
        answered_within: t.on_time,
        ..Agg::default()
    }
}

impl Callbacks {
    #[must_use]
    pub(super) fn new(cfg: &Config) -> Callbacks {
        let mut c = Callbacks::default();
        c.reconfigure(cfg);
        c
    }

    /// Applies a new config: an objective whose counting rules are unchanged keeps its
    /// requests; a new or changed one starts empty; a removed one is forgotten.
    pub(super) fn reconfigure(&mut self, cfg: &Config) {
        self.max_open = cfg.limits.max_open_callbacks;
        let mut old: BTreeMap<String, Desk> = std::mem::take(&mut self.desks)
            .into_iter()
            .map(|d| (d.objective.name.clone(), d))
            .collect();
        for entry in cfg
            .sla
            .iter()
            .filter(|e| e.measure == Measure::CallbacksWithin)
        {
            let Ok(objective) = Objective::new(entry, cfg) else {
                continue;
            };
            let Some(promise) = objective.promise else {
                continue;
            };
            let fp = fingerprint(entry, cfg);
            let desk = match old.remove(&objective.name) {
                Some(d) if d.fingerprint == fp => Desk { objective, ..d },
                _ => Desk {
                    objective,
                    promise,
                    fingerprint: fp,
                    book: Book::default(),
                    past: BTreeMap::new(),
                    tidy_at_ms: i64::MIN,
                    open: 0,
                },
            };
            self.desks.push(desk);
        }
    }

    /// Open requests over every objective.
    #[must_use]
    pub(super) fn open_count(&self) -> usize {
        self.desks.iter().map(|d| d.open).sum()
    }

    /// A segment of `call_id` ended with reason `callback` at `end_ms`: opens a request in
    /// every objective whose scope covers it. Returns whether anything changed.
    pub(super) fn open(&mut self, call_id: &str, seg: &Segment, end_ms: i64) -> bool {
        let mut open = self.open_count();
        let mut changed = false;
        for d in &mut self.desks {
            // One request per call at a time, and one per `end`: the same end seen again (its
            // segment re-derived when a late `start` arrives) opens none.
            if !d.objective.covers(seg.queue, seg.channel, seg.tags)
                || d.book.is_open(call_id)
                || d.book.requested_at(call_id) == Some(end_ms)
            {
                continue;
            }
            let Some(deadline) = d.promise.deadline(&d.objective.hours, end_ms) else {
                continue;
            };
            if open >= self.max_open {
                self.refused_limit += 1;
                changed = true;
                continue;
            }
            if d.book.request(call_id, seg.queue, end_ms, deadline) {
                open += 1;
                d.open += 1;
                changed = true;
            }
        }
        changed
    }

    /// Takes a `callback` event: closes or notes an attempt on the call's open requests. The
    /// same closing event again (a sender's retry) is a duplicate; one for a call with no open
    /// request is counted apart. Returns whether it was taken (not a duplicate).
    pub(super) fn take(&mut self, ev: &Event) -> bool {
        let outcome = ev.outcome.unwrap_or(CallbackOutcome::Reached);
        let mut matched = false;
        let mut again = false;
        for d in &mut self.desks {
            let cancelled = outcome == CallbackOutcome::Cancelled;
            let taken = match outcome {
                CallbackOutcome::Reached => d.book.fulfil(&ev.call_id, ev.ts_ms).is_some(),
                CallbackOutcome::Cancelled => d.book.cancel(&ev.call_id, ev.ts_ms).is_some(),
                CallbackOutcome::NoAnswer => d.book.attempt(&ev.call_id),
            };
            matched |= taken;
            if taken && outcome != CallbackOutcome::NoAnswer {
                d.open = d.open.saturating_sub(1);
            }
            again |= !taken
                && outcome != CallbackOutcome::NoAnswer
                && d.book.closed_by(&ev.call_id, ev.ts_ms, cancelled);
        }
        if matched {
            return true;
        }
        if !again {
            self.unmatched += 1;
        }
        !again
    }

    /// Tidies every book at engine time `now_ms`; whether anything may have changed.
    pub(super) fn tidy(&mut self, now_ms: i64) -> bool {
        let mut changed = false;
        for d in &mut self.desks {
            if now_ms >= d.tidy_at_ms {
                changed = true;
                self.forgotten += d.tidy(now_ms);
            }
        }
        changed
    }

    /// The desk of the objective named `name`.
    #[must_use]
    pub(super) fn desk(&self, name: &str) -> Option<&Desk> {
        self.desks.iter().find(|d| d.objective.name == name)
    }

    /// Heap bytes, roughly (for the engine's memory accounting).
    #[must_use]
    pub(super) fn heap_bytes(&self) -> usize {
        self.desks
            .iter()
            .map(|d| {
                d.book
                    .iter()
                    .map(|r| 2 * r.call_id.len() + r.queue.len() + 96)
                    .sum::<usize>()
                    + d.past.len() * 80
                    + d.fingerprint.len()
            })
            .sum()
    }

    /// Appends the requests and counts to a state value.
    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        for v in [self.refused_limit, self.unmatched, self.forgotten] {
            put_u64(out, v);
        }
        put_u64(out, self.desks.len() as u64);
        for d in &self.desks {
            put_bytes(out, d.objective.name.as_bytes());
            put_bytes(out, d.fingerprint.as_bytes());
            put_i64(out, d.tidy_at_ms);
            put_u64(out, d.past.len() as u64);
            for (start, (end, t)) in &d.past {
                put_i64(out, *start);
                put_i64(out, *end);
                for v in [
                    t.requested,
                    t.on_time,
                    t.late,
                    t.missed,
                    t.open,
                    t.cancelled,
                ] {
                    put_u64(out, v);
                }
            }
            let requests: Vec<&Request> = d.book.iter().collect();
            put_u64(out, requests.len() as u64);
            for r in requests {
                put_bytes(out, r.call_id.as_bytes());
                put_bytes(out, r.queue.as_bytes());
                put_i64(out, r.requested_ms);
                put_i64(out, r.deadline_ms);
                match r.fulfilled_ms {
                    None => out.push(0),
                    Some(f) => {
                        out.push(if r.cancelled { 2 } else { 1 });
                        put_i64(out, f);
                    }
                }
                put_u64(out, u64::from(r.attempts));
            }
        }
    }

    /// Reads what [`Callbacks::encode`] wrote: the requests of objectives configured now with
    /// the same counting rules are taken, the others dropped (as a reload would).
    pub(super) fn decode(&mut self, r: &mut Reader<'_>) -> Result<(), DecodeError> {
        self.refused_limit = r.u64()?;
        self.unmatched = r.u64()?;
        self.forgotten = r.u64()?;
        let n = r.usize()?;
        if n > r.rest().len() {
            return Err(DecodeError::Truncated);
        }
        for _ in 0..n {
            let name = r.str()?.to_string();
            let fingerprint = r.str()?.to_string();
            let tidy_at_ms = r.i64()?;
            let np = r.usize()?;
            if np > r.rest().len() {
                return Err(DecodeError::Truncated);
            }
            let mut past = BTreeMap::new();
            for _ in 0..np {
                let start = r.i64()?;
                let end = r.i64()?;
                let t = Tally {
                    requested: r.u64()?,
                    on_time: r.u64()?,
                    late: r.u64()?,
                    missed: r.u64()?,
                    open: r.u64()?,
                    cancelled: r.u64()?,
                };
                past.insert(start, (end, t));
            }
            let nr = r.usize()?;
            if nr > r.rest().len() {
                return Err(DecodeError::Truncated);
            }
            let mut book = Book::default();
            for _ in 0..nr {
                let call_id = r.str()?.to_string();
                let queue = r.str()?.to_string();
                let requested_ms = r.i64()?;
                let deadline_ms = r.i64()?;
                let (fulfilled_ms, cancelled) = match r.u8()? {
                    0 => (None, false),
                    1 => (Some(r.i64()?), false),
                    2 => (Some(r.i64()?), true),
                    _ => return Err(DecodeError::Invalid("unknown callback request state")),
                };
                let attempts = u32::try_from(r.u64()?).unwrap_or(u32::MAX);
                book.insert(Request {
                    call_id,
                    queue,
                    requested_ms,
                    deadline_ms,
                    fulfilled_ms,
                    cancelled,
                    attempts,
                });
            }
            if let Some(d) = self
                .desks
                .iter_mut()
                .find(|d| d.objective.name == name && d.fingerprint == fingerprint)
            {
                d.open = book.open_count();
                d.book = book;
                d.past = past;
                d.tidy_at_ms = tidy_at_ms;
            }
        }
        Ok(())
    }
}
