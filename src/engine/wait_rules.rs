//! The rules a segment waits under, by its queue and channel (docs/slow-channels.md): its
//! service-level parameters with the threshold resolved, its `max_call_duration`, and its wait
//! clock. On the business clock a wait is the open time of the calendar between two instants
//! (the clock pauses outside service hours and on holidays), so the threshold test, the wait
//! figures, the deadline and the expiry all run on it. Pure: instants are passed in, in the
//! source's clock.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::aggregate::QueueFacts;
use crate::config::{Config, WaitClock};
use crate::sla::calendar::ServiceHours;
use crate::units::QueueParams;

/// The rules of one (queue, channel) pair.
#[derive(Debug, Clone)]
pub(super) struct WaitRule {
    /// The queue's parameters, with the threshold of the queue, else the channel, else defaults.
    pub(super) params: QueueParams,
    pub(super) max_call_ms: i64,
    /// The business clock's calendar; `None` on the wall clock.
    pub(super) hours: Option<Arc<ServiceHours>>,
}

impl WaitRule {
    #[must_use]
    pub(super) fn clock(&self) -> WaitClock {
        if self.hours.is_some() {
            WaitClock::BusinessHours
        } else {
            WaitClock::Wall
        }
    }

    /// How far the wait clock runs from `from` to `to` (negative when `to` is before `from`).
    #[must_use]
    pub(super) fn elapsed_ms(&self, from: i64, to: i64) -> i64 {
        match &self.hours {
            None => to.saturating_sub(from),
            Some(h) => h.business_ms_between(from, to),
        }
    }

    /// The instant the wait clock, started at `from`, reads `d_ms`; `None` past year 9999.
    #[must_use]
    pub(super) fn after(&self, from: i64, d_ms: i64) -> Option<i64> {
        match &self.hours {
            None => from.checked_add(d_ms),
            Some(h) => h.add_business_ms(from, d_ms),
        }
    }

    /// The segment's queue facts with the wait measured on this clock: the start moved so that
    /// `leave − start` is the wait, the leave (where the facts are attributed) unchanged, so
    /// the same counting applies to both clocks.
    #[must_use]
    pub(super) fn judged(&self, f: &QueueFacts) -> QueueFacts {
        if self.hours.is_none() {
            return f.clone();
        }
        let wait = self.elapsed_ms(f.start_ms, f.leave_ms).max(0);
        QueueFacts {
            start_ms: f.leave_ms - wait,
            ..f.clone()
        }
    }

    /// When a segment offered at `start_ms` reaches its threshold: its deadline.
    #[must_use]
    pub(super) fn deadline(&self, start_ms: i64) -> Option<i64> {
        self.after(start_ms, self.params.threshold.0)
    }

    /// When a segment started at `start_ms` and never ended expires.
    #[must_use]
    pub(super) fn expiry(&self, start_ms: i64) -> Option<i64> {
        self.after(start_ms, self.max_call_ms)
    }
}

/// The rules of one queue: for any channel, and for each channel with rules of its own.
#[derive(Debug, Clone)]
struct ByChannel {
    any: WaitRule,
    channels: BTreeMap<String, WaitRule>,
}

/// Every queue's and channel's rules, resolved once per (re)configuration: queues × channels
/// configured, a handful of entries.
#[derive(Debug, Clone)]
pub(super) struct WaitRules {
    /// A queue without a `[queues.NAME]` table.
    other: ByChannel,
    queues: BTreeMap<String, ByChannel>,
}

impl WaitRules {
    pub(super) fn from_config(c: &Config) -> WaitRules {
        let rule = |queue: Option<&str>, channel: Option<&str>| {
            let w = c.wait_rules(queue, channel);
            let mut params = queue.map_or(c.defaults, |q| c.queue_params(q));
            params.threshold = w.threshold;
            WaitRule {
                params,
                max_call_ms: w.max_call_duration.0,
                // A loaded config's calendars are checked; one that fails anyway (a zone file
                // gone since) falls back to the wall clock rather than stop the engine.
                hours: w.calendar().ok().flatten().map(Arc::new),
            }
        };
        let by = |queue: Option<&str>| ByChannel {
            any: rule(queue, None),
            channels: c
                .channels
                .keys()
                .map(|ch| (ch.clone(), rule(queue, Some(ch))))
                .collect(),
        };
        let names = c.queues.keys().chain(c.queue_waits.keys());
        WaitRules {
            other: by(None),
            queues: names.map(|q| (q.clone(), by(Some(q)))).collect(),
        }
    }

    /// The parameters of every rule (a few: queues × channels configured).
    pub(super) fn all_params(&self) -> impl Iterator<Item = QueueParams> + '_ {
        std::iter::once(&self.other)
            .chain(self.queues.values())
            .flat_map(|b| std::iter::once(&b.any).chain(b.channels.values()))
            .map(|r| r.params)
    }

    /// The rules of a segment of `queue` on `channel`.
    #[must_use]
    pub(super) fn get(&self, queue: &str, channel: &str) -> &WaitRule {
        let by = self.queues.get(queue).unwrap_or(&self.other);
        by.channels.get(channel).unwrap_or(&by.any)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::engine::aggregate::Outcome;

    const H: i64 = 3_600_000;
    /// Friday 2026-03-06 00:00 UTC.
    const FRI: i64 = 1_772_755_200_000;

    fn rules(text: &str) -> WaitRules {
        WaitRules::from_config(&Config::parse(text, Path::new("agent.toml")).unwrap())
    }

    const EMAIL: &str = "[channels.email]\nthreshold = \"4h\"\nmax_call_duration = \"3d\"\nclock = \"business_hours\"\nhours = { mon = [\"08:00-12:00\", \"13:00-18:00\"], tue = [\"08:00-12:00\", \"13:00-18:00\"], wed = [\"08:00-12:00\", \"13:00-18:00\"], thu = [\"08:00-12:00\", \"13:00-18:00\"], fri = [\"08:00-12:00\", \"13:00-18:00\"] }\nholidays = [\"2026-03-10\"]\n";

    #[test]
    fn the_friday_evening_email_waits_in_business_time() {
        let r = rules(EMAIL);
        let mail = r.get("support", "email");
        assert_eq!(mail.clock(), WaitClock::BusinessHours);
        // Friday 19:30 → Monday 11:15: Monday 08:00–11:15 open, 3 h 15 (hand count).
        let start = FRI + 19 * H + H / 2;
        let answer = FRI + 3 * 24 * H + 11 * H + H / 4;
        let f = QueueFacts {
            start_ms: start,
            leave_ms: answer,
            outcome: Outcome::Answered,
        };
        assert_eq!(mail.judged(&f).wait_ms(), (3 * H + H / 4) as u64);
        assert_eq!(mail.judged(&f).leave_ms, answer);
        // 4 business hours after Friday 19:30: Monday 08:00 + 4 h = 12:00.
        assert_eq!(mail.deadline(start), Some(FRI + 3 * 24 * H + 12 * H));
        // 3 days = 72 business hours of 9 a day: Monday 8 h … Tuesday 10 March is a holiday,
        // so Mon 9, Wed 9, Thu 9, Fri 9, Mon 16 9, Tue 17 9, Wed 18 9, Thu 19 9 = 72 h: Thursday
        // 19 March 18:00.
        assert_eq!(mail.expiry(start), Some(FRI + 13 * 24 * H + 18 * H));
        // Voice keeps the defaults on the wall clock.
        let voice = r.get("support", "voice");
        assert_eq!(voice.clock(), WaitClock::Wall);
        assert_eq!(voice.judged(&f), f);
        assert_eq!(voice.deadline(start), Some(start + 20_000));
        assert_eq!(voice.expiry(start), Some(start + 4 * H));
    }

    #[test]
    fn a_queue_table_overrides_the_channel_for_its_own_segments_only() {
        let r = rules(&format!(
            "{EMAIL}[queues.vip]\nthreshold = \"1h\"\nclock = \"wall\"\nformula = \"answered\"\n"
        ));
        let vip = r.get("vip", "email");
        assert_eq!(vip.clock(), WaitClock::Wall);
        assert_eq!(vip.params.threshold.0, H);
        assert_eq!(vip.params.formula, crate::units::Formula::Answered);
        // Its max_call_duration is the channel's, on the wall clock.
        assert_eq!(vip.max_call_ms, 3 * 24 * H);
        assert_eq!(r.get("vip", "voice").params.threshold.0, H);
        assert_eq!(r.get("other", "email").params.threshold.0, 4 * H);
    }

    #[test]
    fn time_left_is_negative_once_overdue_and_pauses_when_closed() {
        let r = rules(EMAIL);
        let mail = r.get("q", "email");
        let start = FRI + 17 * H; // Friday 17:00: one open hour left that day.
        let deadline = mail.deadline(start).unwrap();
        // Friday 17:00–18:00 and Monday 08:00–11:00.
        assert_eq!(deadline, FRI + 3 * 24 * H + 11 * H);
        // Saturday noon: 3 business hours left.
        assert_eq!(mail.elapsed_ms(FRI + 36 * H, deadline), 3 * H);
        // Monday 14:00: 2 business hours overdue (11:00–12:00 and 13:00–14:00).
        let late = FRI + 3 * 24 * H + 14 * H;
        assert_eq!(mail.elapsed_ms(late, deadline), -2 * H);
    }
}
