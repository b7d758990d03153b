//! The mapping of `CUSTOM callcenter::info` events (`mod_callcenter.c`) to call events, one
//! event at a time and without state: each caller-side action carries the member's UUID, its
//! queue and the event's time, so an event needs nothing of those before it. After a restart
//! or a reconnect, an end whose start was never seen reaches the engine as an orphan, which it
//! expires and counts, instead of being dropped here.
//!
//! The call id is `<source>:<CC-Member-UUID>`; the time is `Event-Date-Timestamp`
//! (microseconds). What each action becomes is in docs/sources.md.

use std::collections::BTreeMap;

use super::wire::header;
use crate::event::{EndReason, Event, EventKind, MAX_TS_MS, MIN_TS_MS};

/// The event subclass `mod_callcenter` fires.
pub const SUBCLASS: &str = "callcenter::info";

/// Actions `mod_callcenter` fires about agents, queue counts or the agent's leg: no event of
/// the caller's queue visit. (`agent-<key>-get` answers `callcenter_config agent get`.)
const AGENT_OR_COUNT_ACTIONS: [&str; 8] = [
    "agent-add",
    "agent-status-change",
    "agent-state-change",
    "agent-contact-change",
    "agent-offering",
    "agent-max-no-answer",
    "bridge-agent-end",
    "bridge-agent-fail",
];

/// Distinct unknown actions counted by name; beyond this, under `(other)`, so a stream of
/// garbage cannot grow the counts without bound.
const MAX_UNKNOWN_ACTIONS: usize = 64;

/// Events skipped, by (reason, `CC-Action`; `-` when the event has none). Reasons:
/// `agent_or_count`, `unknown_action`, `not_callcenter`, `missing_header`, `bad_time`,
/// `unknown_cause`, `unknown_cancel_reason`; the daemon adds `too_long` and `unreadable`.
pub type Skipped = BTreeMap<(&'static str, String), u64>;

/// Maps `callcenter::info` events to call events.
#[derive(Debug)]
pub struct Mapper {
    source: String,
    skipped: Skipped,
    unknown_actions: usize,
}

impl Mapper {
    /// `source` prefixes every call id.
    #[must_use]
    pub fn new(source: &str) -> Mapper {
        Mapper {
            source: source.to_string(),
            skipped: Skipped::new(),
            unknown_actions: 0,
        }
    }

    #[must_use]
    pub fn skipped(&self) -> &Skipped {
        &self.skipped
    }

    /// Maps one event's headers (values already URL-decoded), pushing at most one event onto
    /// `out`; skips are counted. Returns the event's time in epoch ms, if it has a valid one.
    pub fn event(&mut self, headers: &[(String, String)], out: &mut Vec<Event>) -> Option<i64> {
        let time = event_time(headers);
        let action = header(headers, "CC-Action").unwrap_or("-");
        let subclass = header(headers, "Event-Subclass");
        if subclass.is_some_and(|s| s != SUBCLASS)
            || header(headers, "Event-Name").is_some_and(|n| n != "CUSTOM")
        {
            let name = subclass
                .or_else(|| header(headers, "Event-Name"))
                .unwrap_or("-");
            self.skip("not_callcenter", name);
            return time;
        }
        let kind = match action {
            "member-queue-start" | "member-queue-resume" => EventKind::Start,
            "bridge-agent-start" => EventKind::Answer,
            "member-queue-end" => EventKind::End,
            a if AGENT_OR_COUNT_ACTIONS.contains(&a)
                || a == "members-count"
                || (a.starts_with("agent-") && a.ends_with("-get")) =>
            {
                self.skip("agent_or_count", a);
                return time;
            }
            a => {
                self.unknown(a);
                return time;
            }
        };
        let Some(member) = header(headers, "CC-Member-UUID").filter(|m| !m.is_empty()) else {
            self.skip("missing_header", action);
            return time;
        };
        let Some(ts) = time else {
            self.skip("bad_time", action);
            return None;
        };
        let mut ev = Event::new(kind, format!("{}:{member}", self.source), ts);
        match kind {
            EventKind::Start => {
                let Some(queue) = header(headers, "CC-Queue").filter(|q| !q.is_empty()) else {
                    self.skip("missing_header", action);
                    return time;
                };
                ev.queue = Some(queue.to_string());
            }
            EventKind::Answer => {
                ev.agent = header(headers, "CC-Agent")
                    .filter(|a| !a.is_empty())
                    .map(str::to_string);
            }
            _ => match end_reason(headers) {
                Ok(r) => ev.reason = Some(r),
                Err(reason) => {
                    self.skip(reason, action);
                    return time;
                }
            },
        }
        out.push(ev);
        time
    }

    /// Counts `n` events skipped for a reason found outside the mapping (say, too long for
    /// the intake's limits).
    pub fn count_skipped(&mut self, reason: &'static str, action: &str, n: u64) {
        if n > 0 {
            *self
                .skipped
                .entry((reason, action.to_string()))
                .or_default() += n;
        }
    }

    fn skip(&mut self, reason: &'static str, action: &str) {
        *self
            .skipped
            .entry((reason, action.to_string()))
            .or_default() += 1;
    }

    fn unknown(&mut self, action: &str) {
        let key = ("unknown_action", action.to_string());
        if !self.skipped.contains_key(&key) {
            if self.unknown_actions >= MAX_UNKNOWN_ACTIONS {
                self.skip("unknown_action", "(other)");
                return;
            }
            self.unknown_actions += 1;
        }
        *self.skipped.entry(key).or_default() += 1;
    }
}

/// `Event-Date-Timestamp` (epoch microseconds) in epoch ms, within the accepted range.
#[must_use]
pub fn event_time(headers: &[(String, String)]) -> Option<i64> {
    let us: i64 = header(headers, "Event-Date-Timestamp")?
        .trim()
        .parse()
        .ok()?;
    let ms = us / 1000;
    (MIN_TS_MS..=MAX_TS_MS).contains(&ms).then_some(ms)
}

/// What a `member-queue-end` ends the segment as, or the reason it is skipped.
///
/// `CC-Cause: Terminated` comes from the agent's thread once the bridge with the caller ends:
/// completed. `CC-Cause: Cancel` comes from the caller's thread when it left the queue without
/// an agent, with `CC-Cancel-Reason`: `TIMEOUT` (the queue's `max-wait-time`) and
/// `NO_AGENT_TIMEOUT` (`max-wait-time-with-no-agent`) are timeouts, `EXIT_WITH_KEY` an exit;
/// `BREAK_OUT` means the queue application was interrupted, which is the caller hanging up
/// unless the channel is still up (`uuid_transfer`, `uuid_break`): the event carries the
/// caller channel's `Answer-State` (`hangup` once it is hanging up) and, when it is,
/// `Hangup-Cause`. A channel still up left the queue elsewhere: transferred.
fn end_reason(headers: &[(String, String)]) -> Result<EndReason, &'static str> {
    match header(headers, "CC-Cause") {
        Some("Terminated") => Ok(EndReason::Completed),
        Some("Cancel") => match header(headers, "CC-Cancel-Reason") {
            Some("TIMEOUT" | "NO_AGENT_TIMEOUT") => Ok(EndReason::Timeout),
            Some("EXIT_WITH_KEY") => Ok(EndReason::Exit),
            Some("BREAK_OUT") => {
                let state = header(headers, "Answer-State");
                let still_up = state.is_some_and(|s| s != "hangup")
                    && header(headers, "Hangup-Cause").is_none();
                Ok(if still_up {
                    EndReason::Transferred
                } else {
                    EndReason::Abandoned
                })
            }
            _ => Err("unknown_cancel_reason"),
        },
        _ => Err("unknown_cause"),
    }
}
