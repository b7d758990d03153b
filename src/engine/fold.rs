//! Folding: engine time moving forward, and the facts of each call folded into the buckets of
//! every dimension once they are settled (past `reorder_grace`, or `wrapup_timeout` for handling),
//! then the call dropped and remembered. Also the early fold that bounds calls waiting to settle.

use super::aggregate::{HandleFacts, Outcome, QueueFacts};
use super::expiry::SCAN_EVERY_MS;
use super::keys::{dims_of, KeyId};
use super::packed::Fact;
use super::pending::{call_hash, Entry};
use super::report::DimKind;
use super::segment::{derive_segments, Call, Derived, Folded, Segment};
use super::window::{Tier, FINE_SPAN_MS};
use super::Engine;

/// Calls that have no open segment (finished, waiting out `reorder_grace`, or events that fit no
/// segment yet) kept before the oldest are folded early: at 165 bytes a call, about 3 MiB; at
/// the rates of a live call center (tens of calls a second) never reached.
const MAX_SETTLING_CALLS: usize = 20_000;

enum Due {
    Call,
    Forget,
    Scan,
}

/// The bucket of one tier that facts of a segment land in, and those facts (at most two: the
/// queue fact and the handle fact).
#[derive(Clone, Copy)]
pub(super) struct Target<'f> {
    pub(super) tier: Tier,
    pub(super) start: i64,
    facts: [Fact<'f>; 2],
    n: usize,
}

impl<'f> Target<'f> {
    fn new(tier: Tier, start: i64, fact: Fact<'f>) -> Self {
        Target {
            tier,
            start,
            facts: [fact; 2],
            n: 1,
        }
    }

    fn push(&mut self, fact: Fact<'f>) {
        if self.n < self.facts.len() {
            self.facts[self.n] = fact;
            self.n += 1;
        }
    }

    pub(super) fn facts(&self) -> &[Fact<'f>] {
        &self.facts[..self.n]
    }
}

impl Engine {
    /// Folds at once the calls whose grace would end first while more than
    /// [`MAX_SETTLING_CALLS`] calls beyond the open segments wait: the grace is counted from
    /// receipt, so a bulk load at hundreds of thousands of events per second would otherwise hold
    /// every call of the last two seconds (measured: 410 000 calls, 100 MiB). An event that
    /// arrives for such a call afterwards is counted late, as after any grace.
    pub(super) fn relieve(&mut self) {
        while self.pending.len() > self.open_segments + MAX_SETTLING_CALLS {
            let Some((at, ids)) = self.pending.pop_due(i64::MAX) else {
                break;
            };
            for id in ids {
                self.changed = true;
                self.settle(&id, at);
            }
        }
    }

    /// When something of the call next falls due after `after`: a fold, or the end of its grace.
    pub(super) fn next_due(&self, call: &Call, derived: &Derived, after: i64) -> Option<i64> {
        let mut due: Option<i64> = None;
        let mut consider = |t: i64| {
            if t > after {
                due = Some(due.map_or(t, |d| d.min(t)));
            }
        };
        if let Some(quiet) = call.events.iter().map(|e| e.rx_ms + self.s.grace_ms).max() {
            consider(quiet);
        }
        for (i, seg) in derived.segments.iter().enumerate() {
            let f = call.folded.get(i).cloned().unwrap_or_default();
            if f.expired {
                continue;
            }
            if f.queue.is_none() && seg.queue_facts().is_some() {
                consider(seg.queue_rx_ms + self.s.grace_ms);
            }
            if f.handle.is_none() && seg.handle_facts().is_some() {
                consider(self.handle_due(seg));
            }
        }
        due
    }

    /// When an answered, ended segment's handling completes: at its wrap-up (after the grace), or
    /// once `wrapup_timeout` has passed since its end in the source's clock (never before the
    /// grace since the end arrived).
    pub(super) fn handle_due(&self, seg: &Segment) -> i64 {
        match (seg.wrapup_ms, seg.end, seg.end_rx_ms) {
            (Some(_), _, _) => seg.last_rx_ms + self.s.grace_ms,
            (None, Some((end_ms, _)), Some(end_rx)) => {
                (end_rx + self.s.grace_ms).max(end_ms.saturating_add(self.s.wrapup_timeout_ms))
            }
            _ => i64::MAX,
        }
    }

    /// Whether an answered, ended segment without a wrap-up has completed its handling at `now`
    /// as far as a query is concerned: its wrap-up timeout has passed since its end in the
    /// source's clock. A backfilled call is complete the moment its end arrives, as it would have
    /// been in real time; only its folding waits for the reorder grace ([`Self::handle_due`]).
    pub(super) fn wrapup_timed_out(&self, seg: &Segment, now: i64) -> bool {
        seg.end
            .is_some_and(|(end_ms, _)| end_ms.saturating_add(self.s.wrapup_timeout_ms) <= now)
    }

    /// Moves engine time to `now_ms`, folding, expiring and forgetting whatever fell due, in time order.
    pub fn advance(&mut self, now_ms: i64) {
        if self.next_scan_ms == 0 {
            self.next_scan_ms = now_ms - now_ms.rem_euclid(SCAN_EVERY_MS) + SCAN_EVERY_MS;
        }
        self.now_ms = self.now_ms.max(now_ms);
        let now = self.now_ms;
        self.changed |= self.callbacks.tidy(now);
        loop {
            let mut next: Option<(i64, Due)> = None;
            let mut consider = |t: Option<i64>, d: Due| {
                if let Some(t) = t {
                    if t <= now && next.as_ref().is_none_or(|(n, _)| t < *n) {
                        next = Some((t, d));
                    }
                }
            };
            consider(self.pending.next_due(), Due::Call);
            consider(self.remembered.next_forget(), Due::Forget);
            consider(Some(self.next_scan_ms), Due::Scan);
            let Some((at, due)) = next else { break };
            match due {
                Due::Call => {
                    if let Some((at, ids)) = self.pending.pop_due(at) {
                        for id in ids {
                            self.changed = true;
                            self.settle(&id, at);
                        }
                    }
                }
                Due::Forget => {
                    self.changed = true;
                    self.remembered.forget_front(at);
                }
                Due::Scan => {
                    self.scan(at);
                    self.next_scan_ms = at + SCAN_EVERY_MS;
                }
            }
        }
        self.totals.sync(&self.cal, &self.interval, &self.sets, now);
        self.fine_totals
            .sync(&self.cal, &self.fine, &self.sets, now);
    }

    /// Folds whatever of the call is settled at `at`; drops the call once everything is.
    fn settle(&mut self, call_id: &str, at: i64) {
        let Some(mut e) = self.pending.take(call_id) else {
            return;
        };
        // Borrowing the events only: what is folded is written below.
        let derived = derive_segments(&e.call.events, &e.call.folded);
        let folded = &mut e.call.folded;
        folded.resize(derived.segments.len().max(folded.len()), Folded::default());
        for (i, seg) in derived.segments.iter().enumerate() {
            if folded[i].expired {
                continue;
            }
            let queue = seg
                .queue_facts()
                .filter(|_| folded[i].queue.is_none())
                .filter(|_| seg.queue_rx_ms + self.s.grace_ms <= at);
            let handle = seg
                .handle_facts()
                .filter(|_| folded[i].handle.is_none())
                .filter(|_| self.handle_due(seg) <= at);
            if queue.is_some() || handle.is_some() {
                // Both at once when both are due (a bulk load): a bucket holding both is
                // unpacked and packed once.
                self.fold_facts(seg, queue.as_ref(), handle.as_ref());
            }
            if queue.is_some() {
                folded[i].queue = queue;
            }
            if handle.is_some() {
                folded[i].handle = handle;
            }
        }
        // An event that fits nowhere yet (say, an answer that overtook its transfer's start) may
        // still find its segment: the call is kept until its newest event is past the grace.
        let quiet = e
            .call
            .events
            .iter()
            .all(|ev| ev.rx_ms + self.s.grace_ms <= at);
        if quiet && Self::finished(&e.call, derived.orphans, &derived.segments) {
            self.finish(call_id, e);
        } else {
            let due = self.next_due(&e.call, &derived, at);
            let expiry = self.expiry_due(&e.call, &derived);
            self.pending.put(call_id, e, due);
            self.expiry.set(call_hash(call_id), expiry);
        }
    }

    pub(super) fn finished(call: &Call, orphans: usize, segments: &[Segment]) -> bool {
        orphans == 0
            && !segments.is_empty()
            && call.folded.len() >= segments.len()
            && call.folded.iter().take(segments.len()).all(|f| {
                f.expired
                    || match &f.queue {
                        Some(q) if q.outcome == Outcome::Answered => f.handle.is_some(),
                        Some(_) => true,
                        None => false,
                    }
            })
    }

    /// Drops a call whose facts are all folded, remembering it for late duplicates.
    pub(super) fn finish(&mut self, call_id: &str, e: Entry) {
        self.open_segments -= e.open as usize;
        let hash = call_hash(call_id);
        self.expiry.set(hash, None);
        // A call sharing the hash (64 bits: all but never) keeps its own expiry.
        for other in self.pending.ids_with_hash(hash) {
            if let Some(o) = self.pending.get(&other) {
                let due = self.expiry_due(&o.call, &o.call.derive());
                let merged = due.map(|d| self.expiry.due_of(hash).map_or(d, |x| x.min(d)));
                self.expiry.set(hash, merged.or(self.expiry.due_of(hash)));
            }
        }
        let until = self.now_ms + self.s.late_window_ms;
        self.remembered.remember(
            call_hash(call_id),
            e.call.max_ts(),
            until,
            self.s.max_remembered,
        );
    }

    /// Folds a segment's queue facts (at the time it left the queue) and handle facts (at
    /// completion) into the buckets of every dimension it counts under (its tags' in
    /// `tag_dims.rs`).
    fn fold_facts(
        &mut self,
        seg: &Segment,
        queue: Option<&QueueFacts>,
        handle: Option<&HandleFacts>,
    ) {
        let rule = self.s.wait.get(seg.queue, seg.channel);
        let p = rule.params;
        // The wait as the segment's clock measures it (business time on slow channels).
        let judged = queue.map(|f| rule.judged(f));
        let bands = self.s.bands.clone();
        // At most a queue fact and a handle fact, each landing in a bucket of each tier: kept on
        // the stack, as this runs for every segment folded.
        let queue_fact = judged.as_ref().map(|f| {
            (
                f.leave_ms,
                Fact::Queue {
                    facts: f,
                    params: &p,
                    bands: &bands,
                },
            )
        });
        let handle_fact = handle.map(|h| (h.completion_ms, Fact::Handle(h)));
        let facts = [queue_fact, handle_fact];
        let n_facts = facts.iter().flatten().count();
        self.sla.count(seg, queue, handle);
        let now = self.now_ms;
        let keep = [
            (Tier::Fine, self.cal.fine_bucket(now) - FINE_SPAN_MS),
            (
                Tier::Interval,
                self.cal.interval_bucket(now) - self.s.keep_interval_ms,
            ),
        ];
        let mut targets: [Option<Target<'_>>; 4] = [None; 4];
        for (at_ms, fact) in facts.iter().flatten() {
            for (tier, from) in keep {
                let start = self.cal.bucket(tier, *at_ms);
                if start < from {
                    continue;
                }
                let same = |t: &&mut Option<Target<'_>>| {
                    t.as_ref()
                        .is_some_and(|t| t.tier == tier && t.start == start)
                };
                if let Some(Some(t)) = targets.iter_mut().find(same) {
                    t.push(*fact);
                } else if let Some(free) = targets.iter_mut().find(|t| t.is_none()) {
                    *free = Some(Target::new(tier, start, *fact));
                }
                self.dirty.insert((tier, start));
            }
        }
        let reason = seg.end.and_then(|(_, r)| r);
        for (kind, name) in dims_of(seg) {
            let limit = self.s.max_keys(kind);
            let (key, overflowed) = self.keys.resolve(kind, name, limit);
            // Lifetime totals count every fact, also one dated before the buckets kept.
            let effective = self.keys.dim(key).map_or(name, |d| d.key.as_str());
            self.lifetime.add_segment(
                kind,
                effective,
                limit,
                judged.as_ref().map(|f| (f, &p, reason)),
                handle,
            );
            if overflowed {
                self.count_overflow(kind, n_facts);
            }
            for t in targets.iter().flatten() {
                self.fold_into(t.tier, t.start, key, t.facts());
            }
        }
        self.fold_tags(seg, &targets, n_facts);
    }

    /// Counts `n` facts that went to `kind`'s overflow key, its cardinality limit reached.
    pub(super) fn count_overflow(&mut self, kind: DimKind, n: usize) {
        *self
            .counters
            .overflowed
            .entry(kind.name().to_string())
            .or_default() += n as u64;
    }

    /// Folds `facts` into `key`'s bucket of `tier` starting at `start`, and into that tier's
    /// running totals.
    pub(super) fn fold_into(&mut self, tier: Tier, start: i64, key: KeyId, facts: &[Fact<'_>]) {
        let (slices, totals) = match tier {
            Tier::Fine => (&mut self.fine, &mut self.fine_totals),
            Tier::Interval => (&mut self.interval, &mut self.totals),
        };
        if slices
            .entry(start, &self.sets)
            .fold(key, &mut self.sets, facts, &mut self.work)
        {
            self.keys.bucket_added(key);
        }
        for fact in facts {
            totals.add(key, start, |r| fact.add_to_running(r));
        }
    }
}
