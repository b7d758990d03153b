//! Expiry and retention: the periodic scan that expires segments and orphan events older than
//! `max_call_duration`, and drops buckets past their tier's retention.

use super::pending::call_hash;
use super::segment::{derive_segments, open_segments, Call, Derived, Folded, Segment};
use super::window::{Tier, FINE_BUCKET_MS, FINE_SPAN_MS};
use super::Engine;
use crate::event::EventKind;

/// How often (engine time) open calls are scanned for expiry and old buckets are dropped.
pub(super) const SCAN_EVERY_MS: i64 = 60_000;

/// How long nothing of a call must have arrived before a scan may expire it. A backfill (an import,
/// a source catching up) sends a call's events moments apart, however old their timestamps: a
/// scan that falls between an old call's `start` and its `end` must not take the call for one
/// that never ended. Far above any pause between the events of one call in a backfill, far below
/// `max_call_duration`.
pub(super) const EXPIRY_QUIET_MS: i64 = 10_000;

impl Engine {
    /// Expires segments open past their `max_call_duration` (on their queue's and channel's
    /// clock) and orphan events older than `metrics.max_call_duration`, in the source's clock, of
    /// calls quiet for [`EXPIRY_QUIET_MS`]; drops old buckets. Only the calls whose expiry has
    /// come are looked at (the expiry index), not every open call.
    pub(super) fn scan(&mut self, at: i64) {
        for hash in self.expiry.pop_due(at) {
            for id in self.pending.ids_with_hash(hash) {
                self.expire_call(&id, at);
            }
        }
        self.prune(at);
        self.pending.shrink();
        self.remembered.shrink();
        self.expiry.shrink();
    }

    /// Expires what of one call is due at `at`, and indexes its next expiry.
    fn expire_call(&mut self, id: &str, at: i64) {
        let Some(mut e) = self.pending.take(id) else {
            return;
        };
        let hash = call_hash(id);
        // Borrowing the events only: what is folded is written below (and after old orphans are
        // drained, the segments are derived again).
        let mut derived = derive_segments(&e.call.events, &e.call.folded);
        if last_receipt(&e.call) > at - EXPIRY_QUIET_MS {
            // An event came meanwhile: not quiet yet.
            let due = self.expiry_due(&e.call, &derived);
            self.pending.put(id, e, None);
            self.expiry.set(hash, due);
            return;
        }
        if derived.orphans > 0 && expiry_clock(&e.call) <= at - self.s.max_call_ms {
            let first_start = e
                .call
                .events
                .iter()
                .position(|ev| ev.kind == EventKind::Start)
                .unwrap_or(e.call.events.len());
            self.counters.expired_orphan_events += derived.orphans as u64;
            e.call.events.drain(..first_start);
            derived = derive_segments(&e.call.events, &e.call.folded);
        }
        e.call.folded.resize(
            derived.segments.len().max(e.call.folded.len()),
            Folded::default(),
        );
        for (i, seg) in derived.segments.iter().enumerate() {
            if seg.is_open()
                && !e.call.folded[i].expired
                && self.segment_expiry(seg).is_some_and(|t| t <= at)
            {
                e.call.folded[i].expired = true;
                self.counters.expired_segments += 1;
            }
        }
        let after = open_segments(&e.call, &derived.segments) as u32;
        self.open_segments = self.open_segments + after as usize - e.open as usize;
        e.open = after;
        self.changed = true;
        if e.call.events.is_empty() {
            return;
        }
        let quiet = e
            .call
            .events
            .iter()
            .all(|ev| ev.rx_ms + self.s.grace_ms <= at);
        if quiet && Self::finished(&e.call, derived.orphans, &derived.segments) {
            self.finish(id, e);
        } else {
            let due = self.next_due(&e.call, &derived, at);
            let expiry = self.expiry_due(&e.call, &derived);
            self.pending.put(id, e, due);
            self.expiry.set(hash, expiry);
        }
    }

    /// When an open segment expires: `max_call_duration` after its start (or its receipt, when
    /// the source's clock runs ahead of ours) on its queue's and channel's clock.
    fn segment_expiry(&self, seg: &Segment) -> Option<i64> {
        self.s
            .wait
            .get(seg.queue, seg.channel)
            .expiry(seg.start_ms.min(seg.start_rx_ms))
    }

    /// The earliest scan time at which something of the call may expire (an open segment, or
    /// orphan events), no sooner than [`EXPIRY_QUIET_MS`] after its last event arrived; `None`
    /// when nothing can.
    pub(super) fn expiry_due(&self, call: &Call, derived: &Derived) -> Option<i64> {
        let mut due: Option<i64> = None;
        if derived.orphans > 0 {
            due = expiry_clock(call).checked_add(self.s.max_call_ms);
        }
        for (i, seg) in derived.segments.iter().enumerate() {
            if seg.is_open() && !call.folded.get(i).is_some_and(|f| f.expired) {
                // Past year 9999 on its clock: it never expires, as in the wall clock's terms.
                if let Some(t) = self.segment_expiry(seg) {
                    due = Some(due.map_or(t, |d| d.min(t)));
                }
            }
        }
        due.map(|d| d.max(last_receipt(call).saturating_add(EXPIRY_QUIET_MS)))
    }

    /// Indexes every pending call's expiry afresh: after a restore (the index is not stored)
    /// and a reload (the rules may have changed).
    pub(super) fn rebuild_expiry(&mut self) {
        self.expiry.clear();
        let dues: Vec<(u64, Option<i64>)> = self
            .pending
            .iter()
            .map(|(id, e)| (call_hash(id), self.expiry_due(&e.call, &e.call.derive())))
            .collect();
        for (hash, due) in dues {
            // Calls sharing a hash share the entry at the earlier of their dues.
            let due = match (due, self.expiry.due_of(hash)) {
                (Some(d), Some(o)) => Some(d.min(o)),
                (d, o) => d.or(o),
            };
            self.expiry.set(hash, due);
        }
    }

    fn prune(&mut self, at: i64) {
        self.totals.sync(&self.cal, &self.interval, &self.sets, at);
        self.fine_totals.sync(&self.cal, &self.fine, &self.sets, at);
        let fine_from = self.cal.fine_bucket(at) - FINE_SPAN_MS;
        let interval_from = self.cal.interval_bucket(at) - self.s.keep_interval_ms;
        for (tier, from) in [(Tier::Fine, fine_from), (Tier::Interval, interval_from)] {
            let slices = match tier {
                Tier::Fine => &mut self.fine,
                Tier::Interval => &mut self.interval,
            };
            for (start, keys) in slices.split_off_before(from) {
                for key in keys {
                    self.keys.bucket_dropped(key);
                }
                self.dirty.insert((tier, start));
            }
        }
        self.keys.drop_unused();
        let (fine_before, interval_before) = self.freeze_cutoffs(at);
        self.fine.freeze_before(fine_before, &mut self.sets);
        self.interval.freeze_before(interval_before, &mut self.sets);
    }
}

impl Engine {
    /// Minute and interval slices starting before these, at engine time `at`, are frozen:
    /// nothing folds into them any more but the rare late fact (which thaws one). The current and
    /// the previous few minutes, and the current and the previous interval, stay live: a fact
    /// folds after the reorder grace, handling up to `wrapup_timeout` after the call left.
    pub(super) fn freeze_cutoffs(&self, at: i64) -> (i64, i64) {
        (
            self.cal.fine_bucket(at) - 3 * FINE_BUCKET_MS,
            self.cal.interval_bucket(at) - self.cal.interval_ms,
        )
    }
}

/// When the latest event of a call arrived.
fn last_receipt(call: &Call) -> i64 {
    call.events
        .iter()
        .map(|e| e.rx_ms)
        .max()
        .unwrap_or(call.first_rx_ms)
}

/// The time a call's expiry counts from: its earliest event in the source's clock, or its first
/// receipt when the source's clock runs ahead of ours.
fn expiry_clock(call: &Call) -> i64 {
    let first_ts = call.events.first().map_or(i64::MAX, |e| e.ts_ms);
    first_ts.min(call.first_rx_ms)
}
