//! One call's events, kept in source-time order, and the queue segments derived from them.
//!
//! Segments are derived afresh from the sorted events whenever an event arrives, so events of a call
//! may arrive in any order until a segment's facts are folded into the aggregates.

use serde::{Deserialize, Serialize};

use super::aggregate::{HandleFacts, Outcome, QueueFacts};
use crate::event::{EndReason, Event, EventKind};

/// Channel of a segment whose `start` named none.
pub const DEFAULT_CHANNEL: &str = "voice";

/// An event as the engine keeps it: what the metrics need, and when it was received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallEvent {
    pub kind: EventKind,
    pub ts_ms: i64,
    /// Engine time at which the event was accepted.
    pub rx_ms: i64,
    /// Queue (start), agent (answer): the one label the kind carries.
    pub label: Option<String>,
    /// Channel (start only).
    pub channel: Option<String>,
    pub reason: Option<EndReason>,
    /// Tags of a `start` that some objective's scope (`[[sla]]`) or a tag dimension names;
    /// empty otherwise.
    pub tags: Vec<(String, String)>,
}

impl CallEvent {
    #[must_use]
    pub fn from_event(ev: &Event, rx_ms: i64) -> Self {
        CallEvent {
            kind: ev.kind,
            ts_ms: ev.ts_ms,
            rx_ms,
            label: match ev.kind {
                EventKind::Start => ev.queue.clone(),
                EventKind::Answer => ev.agent.clone(),
                _ => None,
            },
            channel: ev.channel.clone(),
            reason: ev.reason,
            tags: Vec::new(),
        }
    }

    fn order_key(&self) -> (i64, EventKind) {
        (self.ts_ms, self.kind)
    }
}

/// What has been folded into the aggregates for one segment: those facts can no longer change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Folded {
    pub queue: Option<QueueFacts>,
    pub handle: Option<HandleFacts>,
    /// Closed as expired: no end came within `max_call_duration`.
    pub expired: bool,
}

/// A call with something not yet folded in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// Sorted by (ts, kind); no two share (kind, ts).
    pub events: Vec<CallEvent>,
    /// Engine time the first event of this call state arrived (for expiry of orphans).
    pub first_rx_ms: i64,
    /// One entry per derived segment, in order, as far as anything was folded.
    pub folded: Vec<Folded>,
}

/// A queue segment as derived from the call's events. Its names and tags are borrowed from those
/// events (deriving runs for every call at every change), so it lives no longer than they do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment<'a> {
    pub queue: &'a str,
    pub channel: &'a str,
    pub start_ms: i64,
    pub start_rx_ms: i64,
    pub answer: Option<(i64, Option<&'a str>)>,
    /// Hold intervals; an open one has no resume yet.
    pub holds: Vec<(i64, Option<i64>)>,
    pub end: Option<(i64, Option<EndReason>)>,
    pub wrapup_ms: Option<i64>,
    /// Latest receive time of the events that define the queue facts.
    pub queue_rx_ms: i64,
    /// Latest receive time of any event of this segment.
    pub last_rx_ms: i64,
    /// Receive time of the end event.
    pub end_rx_ms: Option<i64>,
    /// Tags of its `start` that some objective's scope or a tag dimension names.
    pub tags: &'a [(String, String)],
}

/// Where an open segment stands now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Waiting,
    Talking,
    OnHold,
    InAcw,
}

impl<'a> Segment<'a> {
    fn new(e: &'a CallEvent) -> Self {
        Segment {
            queue: e.label.as_deref().unwrap_or_default(),
            channel: e.channel.as_deref().unwrap_or(DEFAULT_CHANNEL),
            start_ms: e.ts_ms,
            start_rx_ms: e.rx_ms,
            answer: None,
            holds: Vec::new(),
            end: None,
            wrapup_ms: None,
            queue_rx_ms: e.rx_ms,
            last_rx_ms: e.rx_ms,
            end_rx_ms: None,
            tags: &e.tags,
        }
    }

    /// Attaches a non-start event; events that make no sense where they fall are ignored.
    fn attach(&mut self, e: &'a CallEvent) {
        let open_hold = self.holds.last().is_some_and(|h| h.1.is_none());
        let used = match e.kind {
            EventKind::Start => false,
            EventKind::Answer if self.answer.is_none() && self.end.is_none() => {
                self.answer = Some((e.ts_ms, e.label.as_deref()));
                self.queue_rx_ms = self.queue_rx_ms.max(e.rx_ms);
                true
            }
            EventKind::Hold if self.answer.is_some() && self.end.is_none() && !open_hold => {
                self.holds.push((e.ts_ms, None));
                true
            }
            EventKind::Resume if self.end.is_none() && open_hold => {
                if let Some(h) = self.holds.last_mut() {
                    h.1 = Some(e.ts_ms);
                }
                true
            }
            EventKind::End if self.end.is_none() => {
                self.end = Some((e.ts_ms, e.reason));
                self.end_rx_ms = Some(e.rx_ms);
                if self.answer.is_none() {
                    self.queue_rx_ms = self.queue_rx_ms.max(e.rx_ms);
                }
                true
            }
            EventKind::Wrapup
                if self.answer.is_some() && self.end.is_some() && self.wrapup_ms.is_none() =>
            {
                self.wrapup_ms = Some(e.ts_ms);
                true
            }
            _ => false,
        };
        if used {
            self.last_rx_ms = self.last_rx_ms.max(e.rx_ms);
        }
    }

    #[must_use]
    pub fn agent(&self) -> Option<&'a str> {
        self.answer.and_then(|(_, a)| a)
    }

    /// Known once the segment has left the queue (answered, or ended unanswered).
    #[must_use]
    pub fn queue_facts(&self) -> Option<QueueFacts> {
        let (leave_ms, outcome) = match (&self.answer, &self.end) {
            (Some((t, _)), _) => (*t, Outcome::Answered),
            (None, Some((t, reason))) => (
                *t,
                match reason {
                    None | Some(EndReason::Abandoned | EndReason::Completed) => Outcome::Abandoned,
                    Some(_) => Outcome::Overflow,
                },
            ),
            (None, None) => return None,
        };
        Some(QueueFacts {
            start_ms: self.start_ms,
            leave_ms,
            outcome,
        })
    }

    /// Handling facts of an answered, ended segment, with the wrap-up if one came.
    #[must_use]
    pub fn handle_facts(&self) -> Option<HandleFacts> {
        let (answer_ms, _) = self.answer.as_ref()?;
        let (end_ms, _) = self.end?;
        let answer_ms = *answer_ms;
        let hold_ms: i64 = self
            .holds
            .iter()
            .map(|&(h, r)| {
                let from = h.clamp(answer_ms, end_ms);
                let to = r.unwrap_or(end_ms).clamp(answer_ms, end_ms);
                (to - from).max(0)
            })
            .sum();
        let talk_ms = (end_ms - answer_ms - hold_ms).max(0);
        let acw_ms = self.wrapup_ms.map_or(0, |w| (w - end_ms).max(0));
        Some(HandleFacts {
            completion_ms: self.wrapup_ms.map_or(end_ms, |w| w.max(end_ms)),
            talk_ms: talk_ms as u64,
            hold_ms: hold_ms as u64,
            acw_ms: acw_ms as u64,
        })
    }

    /// True until the segment ends (an ended segment waiting for wrap-up is not open).
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.end.is_none()
    }

    #[must_use]
    pub fn phase(&self) -> Phase {
        match (&self.answer, &self.end) {
            (None, _) => Phase::Waiting,
            (Some(_), Some(_)) => Phase::InAcw,
            (Some(_), None) if self.holds.last().is_some_and(|h| h.1.is_none()) => Phase::OnHold,
            (Some(_), None) => Phase::Talking,
        }
    }
}

/// The result of deriving a call's segments.
pub struct Derived<'a> {
    pub segments: Vec<Segment<'a>>,
    /// Events before the call's first start: held until a start arrives or they expire.
    pub orphans: usize,
}

impl Call {
    #[must_use]
    pub fn derive(&self) -> Derived<'_> {
        derive_segments(&self.events, &self.folded)
    }

    /// Where `e` goes, or `None` when the same (kind, ts) is already here: a duplicate.
    pub fn insert_position(&self, e: &CallEvent) -> Option<usize> {
        let key = e.order_key();
        self.events
            .binary_search_by_key(&key, CallEvent::order_key)
            .err()
    }

    /// True when every folded fact still matches what the events derive.
    #[must_use]
    pub fn consistent_with_folded(&self, segments: &[Segment]) -> bool {
        self.folded.iter().enumerate().all(|(i, f)| {
            let Some(s) = segments.get(i) else {
                return *f == Folded::default();
            };
            (f.queue.is_none() || f.queue == s.queue_facts())
                && (f.handle.is_none() || f.handle == s.handle_facts())
                && (!f.expired || s.is_open())
        })
    }

    #[must_use]
    pub fn max_ts(&self) -> i64 {
        self.events
            .iter()
            .map(|e| e.ts_ms)
            .max()
            .unwrap_or(i64::MIN)
    }
}

/// Derives the segments of a call's `events` (sorted), given what of them is `folded`: the
/// segments borrow the events' names, not `folded`, so a caller may update `folded` meanwhile.
#[must_use]
pub fn derive_segments<'a>(events: &'a [CallEvent], folded: &[Folded]) -> Derived<'a> {
    let mut segments: Vec<Segment<'a>> = Vec::new();
    let mut orphans = 0;
    let mut consumed = vec![false; events.len()];
    for (i, e) in events.iter().enumerate() {
        if consumed[i] {
            continue;
        }
        match (e.kind, segments.last_mut()) {
            (EventKind::Start, current) => {
                // A transfer: the old segment's end carries the same timestamp as the new start
                // and sorts after it; it belongs to the old segment.
                if let Some(cur) = current.filter(|s| s.is_open()) {
                    for (j, later) in events.iter().enumerate().skip(i + 1) {
                        if later.ts_ms != e.ts_ms {
                            break;
                        }
                        if later.kind == EventKind::End {
                            cur.attach(later);
                            consumed[j] = true;
                        }
                    }
                }
                segments.push(Segment::new(e));
            }
            // After-call work belongs to the latest answered, ended segment still without it,
            // even when the call already moved on to another queue. A segment whose handling
            // was folded without it cannot take it: the wrap-up then waits, unused, for an
            // end that may still arrive late.
            (EventKind::Wrapup, Some(_)) => {
                if let Some(s) = segments.iter_mut().enumerate().rev().find_map(|(i, s)| {
                    // Folded handling took this very wrap-up (its completion), or none.
                    let open = folded.get(i).is_none_or(|f| {
                        f.handle.as_ref().is_none_or(|h| h.completion_ms == e.ts_ms)
                    });
                    (open && s.answer.is_some() && s.end.is_some() && s.wrapup_ms.is_none())
                        .then_some(s)
                }) {
                    s.attach(e);
                }
            }
            (_, Some(s)) => s.attach(e),
            (_, None) => orphans += 1,
        }
    }
    Derived { segments, orphans }
}

/// Open (not ended, not expired) segments of a derived call.
#[must_use]
pub fn open_segments(call: &Call, segments: &[Segment]) -> usize {
    segments
        .iter()
        .enumerate()
        .filter(|(i, s)| s.is_open() && !call.folded.get(*i).is_some_and(|f| f.expired))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, ts: i64) -> CallEvent {
        CallEvent {
            kind,
            ts_ms: ts,
            rx_ms: ts,
            label: match kind {
                EventKind::Start => Some("q".into()),
                EventKind::Answer => Some("alice".into()),
                _ => None,
            },
            channel: None,
            reason: None,
            tags: Vec::new(),
        }
    }

    fn call(events: &[CallEvent]) -> Call {
        let mut c = Call::default();
        for e in events {
            if let Some(p) = c.insert_position(e) {
                c.events.insert(p, e.clone());
            }
        }
        c
    }

    #[test]
    fn out_of_order_events_derive_the_same_segment() {
        use EventKind::*;
        let evs = [
            ev(Start, 0),
            ev(Answer, 10),
            ev(Hold, 20),
            ev(Resume, 25),
            ev(End, 100),
            ev(Wrapup, 130),
        ];
        let mut rev = evs.clone();
        rev.reverse();
        let a_call = call(&evs);
        let a = a_call.derive();
        let b_call = call(&rev);
        let b = b_call.derive();
        assert_eq!(a.segments, b.segments);
        let h = a.segments[0].handle_facts().unwrap();
        assert_eq!(
            (h.talk_ms, h.hold_ms, h.acw_ms, h.completion_ms),
            (85, 5, 30, 130)
        );
        assert_eq!(a.segments[0].queue_facts().unwrap().wait_ms(), 10);
    }

    #[test]
    fn an_open_hold_runs_to_the_end() {
        use EventKind::*;
        let d_call = call(&[ev(Start, 0), ev(Answer, 10), ev(Hold, 40), ev(End, 100)]);
        let d = d_call.derive();
        let h = d.segments[0].handle_facts().unwrap();
        assert_eq!(
            (h.talk_ms, h.hold_ms, h.acw_ms, h.completion_ms),
            (30, 60, 0, 100)
        );
    }

    #[test]
    fn transfer_makes_two_segments_and_orphans_wait_for_a_start() {
        use EventKind::*;
        let mut end1 = ev(End, 50);
        end1.reason = Some(EndReason::Transferred);
        let mut s2 = ev(Start, 50);
        s2.label = Some("q2".into());
        let d_call = call(&[ev(Start, 0), end1, s2, ev(Answer, 60)]);
        let d = d_call.derive();
        assert_eq!(d.segments.len(), 2);
        assert_eq!(
            d.segments[0].queue_facts().unwrap().outcome,
            Outcome::Overflow
        );
        assert_eq!(d.segments[1].queue, "q2");
        assert_eq!(d.segments[1].queue_facts().unwrap().wait_ms(), 10);
        let o_call = call(&[ev(Answer, 5)]);
        let o = o_call.derive();
        assert_eq!((o.segments.len(), o.orphans), (0, 1));
    }

    #[test]
    fn an_end_at_the_transfer_instant_closes_the_old_segment() {
        use EventKind::*;
        let mut s2 = ev(Start, 50);
        s2.label = Some("q2".into());
        let mut end1 = ev(End, 50);
        end1.reason = Some(EndReason::Transferred);
        let d_call = call(&[
            ev(Start, 0),
            ev(Answer, 10),
            s2,
            end1,
            ev(Wrapup, 70),
            ev(Answer, 80),
        ]);
        let d = d_call.derive();
        assert_eq!(d.segments.len(), 2);
        assert_eq!(d.segments[0].end, Some((50, Some(EndReason::Transferred))));
        assert_eq!(d.segments[0].wrapup_ms, Some(70));
        assert_eq!(d.segments[1].end, None);
        assert_eq!(d.segments[1].queue_facts().unwrap().wait_ms(), 30);
    }

    #[test]
    fn duplicates_have_no_position() {
        let c = call(&[ev(EventKind::Start, 0)]);
        assert_eq!(c.insert_position(&ev(EventKind::Start, 0)), None);
        assert_eq!(c.insert_position(&ev(EventKind::Answer, 0)), Some(1));
    }
}
