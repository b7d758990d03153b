//! Expiry and retention: the periodic scan that expires segments and orphan events older than
//! `max_call_duration`, and drops buckets past their tier's retention.

use super::segment::{open_segments, Call, Folded};
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
    /// Expires segments and orphan events older than `max_call_duration` in the source's clock,
    /// of calls quiet for [`EXPIRY_QUIET_MS`]; drops old buckets.
    pub(super) fn scan(&mut self, at: i64) {
        let limit = at - self.s.max_call_ms;
        let quiet_since = at - EXPIRY_QUIET_MS;
        let candidates: Vec<String> = self
            .pending
            .iter()
            // Only calls with an open segment, or events before their first start, can expire.
            .filter(|(_, e)| {
                (e.open > 0
                    || e.call
                        .events
                        .first()
                        .is_some_and(|ev| ev.kind != EventKind::Start))
                    && expiry_clock(&e.call) <= limit
                    && last_receipt(&e.call) <= quiet_since
            })
            .map(|(id, _)| id.to_string())
            .collect();
        for id in candidates {
            let Some(mut e) = self.pending.take(&id) else {
                continue;
            };
            let mut derived = e.call.derive();
            if derived.orphans > 0 && expiry_clock(&e.call) <= limit {
                let first_start = e
                    .call
                    .events
                    .iter()
                    .position(|ev| ev.kind == EventKind::Start)
                    .unwrap_or(e.call.events.len());
                e.call.events.drain(..first_start);
                self.counters.expired_orphan_events += derived.orphans as u64;
                derived = e.call.derive();
            }
            e.call.folded.resize(
                derived.segments.len().max(e.call.folded.len()),
                Folded::default(),
            );
            for (i, seg) in derived.segments.iter().enumerate() {
                if seg.is_open()
                    && !e.call.folded[i].expired
                    && seg.start_ms.min(seg.start_rx_ms) <= limit
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
                continue;
            }
            let quiet = e
                .call
                .events
                .iter()
                .all(|ev| ev.rx_ms + self.s.grace_ms <= at);
            if quiet && Self::finished(&e.call, derived.orphans, &derived.segments) {
                self.finish(&id, e);
            } else {
                let due = self.next_due(&e.call, &derived, at);
                self.pending.put(&id, e, due);
            }
        }
        self.prune(at);
        self.pending.shrink();
        self.remembered.shrink();
    }

    fn prune(&mut self, at: i64) {
        self.totals.sync(&self.cal, &self.interval, &self.sets, at);
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
