//! Taking events: admission against the open-segment limit, and adding a group's events to
//! their calls' state (duplicates and late events counted, not taken). What falls due is then
//! folded by `fold.rs`.

use std::collections::HashMap;

use super::pending::{call_hash, Entry};
use super::segment::{open_segments, Call, CallEvent};
use super::{Applied, Engine, Rejection};
use crate::event::{EndReason, Event, EventKind};

impl Engine {
    /// Whether `ev` may be taken, given `admitted_starts` starts already admitted in the same
    /// group: a `start` that is not a duplicate is refused when the open segments would exceed
    /// `limits.max_open_segments`. Read-only, so it can run before the event is stored.
    pub fn admit(&mut self, ev: &Event, admitted_starts: usize) -> Result<(), Rejection> {
        if ev.kind != EventKind::Start {
            return Ok(());
        }
        let open = self.open_segments + admitted_starts;
        if open < self.s.max_open {
            return Ok(());
        }
        let duplicate = self.pending.get(&ev.call_id).is_some_and(|e| {
            e.call
                .events
                .iter()
                .any(|x| x.kind == EventKind::Start && x.ts_ms == ev.ts_ms)
        });
        if duplicate || self.remembered.covers(call_hash(&ev.call_id), ev.ts_ms) {
            return Ok(());
        }
        self.counters.rejected_open_segment_limit += 1;
        Err(Rejection::OpenSegmentLimit(open))
    }

    /// Takes one event received at `now_ms` (engine time; it never goes backwards).
    pub fn apply(&mut self, ev: &Event, now_ms: i64) -> Applied {
        self.apply_group(&[ev], now_ms)[0]
    }

    /// Takes a group of events received together at `now_ms`: exactly as `apply` one by one in
    /// order, but each call's state is unpacked once for all its events in the group.
    pub fn apply_group(&mut self, events: &[&Event], now_ms: i64) -> Vec<Applied> {
        self.advance(now_ms);
        let now = self.now_ms;
        let mut out = vec![Applied::Accepted; events.len()];
        // Calls in the order they first appear; their events in group order, chained by index
        // (no allocation per call: a bulk load brings thousands per group).
        let mut first: Vec<usize> = Vec::new();
        let mut next = vec![usize::MAX; events.len()];
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(events.len().min(1 << 16));
        for (i, ev) in events.iter().enumerate() {
            // A `callback` belongs to no segment: taken after the calls' events below.
            if ev.kind == EventKind::Callback {
                continue;
            }
            if let Some(l) = last.get_mut(ev.call_id.as_str()) {
                next[*l] = i;
                *l = i;
            } else {
                last.insert(&ev.call_id, i);
                first.push(i);
            }
        }
        drop(last);
        for f in first {
            let call_id = events[f].call_id.as_str();
            let hash = call_hash(call_id);
            let existing = self.pending.take(call_id);
            let had = existing.is_some();
            let mut e = existing.unwrap_or_else(|| Entry {
                call: Call {
                    first_rx_ms: now,
                    ..Call::default()
                },
                scheduled: i64::MAX,
                order: 0,
                open: 0,
            });
            // The call's events in this group, by index.
            let chain =
                || std::iter::successors(Some(f), |&i| Some(next[i]).filter(|&n| n != usize::MAX));
            let mut changed = false;
            for i in chain() {
                out[i] = self.take_event(&mut e.call, events[i], hash, now);
                changed |= out[i] == Applied::Accepted;
            }
            if changed {
                self.changed = true;
                let derived = e.call.derive();
                // Starts and ends with reason `callback` taken now: the segments they complete
                // open callback requests (a start may come after its end: events of a call may
                // arrive in any order). A segment without its `start` is not derived: its end
                // waits for it, as the request does (it has no queue to be scoped by until then).
                let taken = |kind: EventKind, ts: i64| {
                    chain().any(|i| {
                        out[i] == Applied::Accepted
                            && events[i].kind == kind
                            && events[i].ts_ms == ts
                            && (kind != EventKind::End
                                || events[i].reason == Some(EndReason::Callback))
                    })
                };
                for seg in &derived.segments {
                    if let Some((ts, Some(EndReason::Callback))) = seg.end {
                        if taken(EventKind::End, ts) || taken(EventKind::Start, seg.start_ms) {
                            self.callbacks.open(call_id, seg, ts);
                        }
                    }
                }
                let after = open_segments(&e.call, &derived.segments) as u32;
                self.open_segments = self.open_segments + after as usize - e.open as usize;
                e.open = after;
                let due = self.next_due(&e.call, &derived, now);
                let expiry = self.expiry_due(&e.call, &derived);
                self.pending.put(call_id, e, due);
                self.expiry.set(hash, expiry);
            } else if had {
                self.pending.put(call_id, e, None);
            }
        }
        for (i, ev) in events.iter().enumerate() {
            if ev.kind == EventKind::Callback {
                if self.callbacks.take(ev) {
                    self.counters.accepted += 1;
                    self.changed = true;
                    out[i] = Applied::Accepted;
                } else {
                    self.counters.duplicates += 1;
                    out[i] = Applied::Duplicate;
                }
            }
        }
        self.relieve();
        out
    }

    /// Adds one event to its call's state, unless it is a duplicate or late.
    fn take_event(&mut self, call: &mut Call, ev: &Event, hash: u64, now: i64) -> Applied {
        if self.remembered.covers(hash, ev.ts_ms) {
            self.counters.late += 1;
            return Applied::Late;
        }
        let mut ce = CallEvent::from_event(ev, now);
        if ev.kind == EventKind::Start {
            ce.tags = self.tags_kept(&ev.tags);
        }
        let Some(pos) = call.insert_position(&ce) else {
            self.counters.duplicates += 1;
            return Applied::Duplicate;
        };
        call.events.insert(pos, ce);
        if !call.folded.is_empty() && !call.consistent_with_folded(&call.derive().segments) {
            call.events.remove(pos);
            self.counters.late += 1;
            return Applied::Late;
        }
        self.counters.accepted += 1;
        Applied::Accepted
    }
}
