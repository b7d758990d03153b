//! One objective ready to judge calls: its scope, the parameters its counters are kept with,
//! its service hours, the wait clock and the bounds of its periods. Built from a validated
//! `[[sla]]` entry.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use super::calendar::{first_reach, ServiceHours};
use super::compliance::Goal;
use crate::callbacks::promise::Promise;
use crate::config::{Config, Period, ScopeConfig, SlaConfig, WaitClock};
use crate::engine::QueueFacts;
use crate::units::QueueParams;

/// An objective with everything needed to count a call for it and judge its period.
#[derive(Debug, Clone)]
pub struct Objective {
    pub name: String,
    pub scope: ScopeConfig,
    pub goal: Goal,
    /// What its counters are kept with: the objective's T (the `[defaults]` one for measures
    /// without T, where it changes nothing measured), S and formula.
    pub params: QueueParams,
    pub clock: WaitClock,
    pub period: Period,
    pub hours: ServiceHours,
    /// Past periods whose final figures are kept (`keep_periods`).
    pub keep_periods: usize,
    /// The deadline of a callback request (`callbacks_within` only).
    pub promise: Option<Promise>,
}

impl Objective {
    /// From a `[[sla]]` entry of a config that passed validation; the messages of a calendar
    /// that cannot be built (which validation refuses) otherwise.
    pub fn new(entry: &SlaConfig, cfg: &Config) -> Result<Objective, Vec<(String, String)>> {
        let hours = entry.service_hours(&cfg.general.time_zone)?;
        let d = cfg.defaults;
        let params = QueueParams {
            threshold: entry.threshold.unwrap_or(d.threshold),
            target: d.target,
            short_abandon: entry.short_abandon.unwrap_or(d.short_abandon),
            formula: entry.formula.unwrap_or(d.formula),
        };
        Ok(Objective {
            name: entry.name.clone(),
            scope: entry.scope.clone(),
            goal: Goal {
                measure: entry.measure,
                formula: params.formula,
                threshold: entry.measure.takes_threshold().then_some(params.threshold),
                target: entry.target,
                at_risk_margin: entry.at_risk_margin,
            },
            params,
            clock: entry.clock,
            period: entry.period,
            hours,
            keep_periods: entry
                .keep_periods
                .unwrap_or(crate::config::DEFAULT_KEEP_PERIODS) as usize,
            // Validation refused a promise that does not parse.
            promise: entry.promise.as_deref().and_then(|p| p.parse().ok()),
        })
    }

    /// Whether a call of `queue` and `channel` whose `start` carried `tags` is in scope: any
    /// listed queue, any listed channel, and every listed tag with its value.
    #[must_use]
    pub fn covers(&self, queue: &str, channel: &str, tags: &[(String, String)]) -> bool {
        let s = &self.scope;
        let listed = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
        listed(&s.queues, queue)
            && listed(&s.channels, channel)
            && s.tags
                .iter()
                .all(|(k, v)| tags.iter().any(|(tk, tv)| tk == k && tv == v))
    }

    /// Whether a call offered at `start_ms` counts against the objective: only calls that
    /// arrive in service hours do; the others are reported apart.
    #[must_use]
    pub fn counts_arrival(&self, start_ms: i64) -> bool {
        self.hours.is_open(start_ms)
    }

    /// The segment's facts as the objective judges them: on the business-hours clock the wait
    /// is the open time between offer and leave, so the same `Agg` counting applies.
    #[must_use]
    pub fn judged(&self, f: &QueueFacts) -> QueueFacts {
        match self.clock {
            WaitClock::Wall => f.clone(),
            WaitClock::BusinessHours => {
                let wait = self
                    .hours
                    .business_ms_between(f.start_ms, f.leave_ms)
                    .max(0);
                QueueFacts {
                    start_ms: f.leave_ms - wait,
                    ..f.clone()
                }
            }
        }
    }

    /// The deadline of a call offered at `start_ms`: when its wait reaches T on the
    /// objective's clock (`None` for measures without T).
    #[must_use]
    pub fn deadline(&self, start_ms: i64) -> Option<i64> {
        let t = self.goal.threshold?.0;
        match self.clock {
            WaitClock::Wall => start_ms.checked_add(t),
            WaitClock::BusinessHours => self.hours.add_business_ms(start_ms, t),
        }
    }

    /// The period holding `ts_ms`, `[start, end)` in epoch ms.
    #[must_use]
    pub fn period_bounds(&self, ts_ms: i64) -> Option<(i64, i64)> {
        period_bounds(self.period, self.hours.time_zone(), ts_ms)
    }
}

/// The day, ISO week (from Monday) or month of `tz` holding `ts_ms`, as `[start, end)`: from the
/// first instant of its first date to the first instant of the next period's (a day of 23 or 25
/// hours is one day).
#[must_use]
pub fn period_bounds(period: Period, tz: &TimeZone, ts_ms: i64) -> Option<(i64, i64)> {
    let date = tz
        .to_datetime(Timestamp::from_millisecond(ts_ms).ok()?)
        .date();
    let (first, next): (Date, Date) = match period {
        Period::Day => (date, date.tomorrow().ok()?),
        Period::Week => {
            let monday = date
                .checked_sub(i64::from(date.weekday().to_monday_zero_offset()).days())
                .ok()?;
            (monday, monday.checked_add(7.days()).ok()?)
        }
        Period::Month => {
            let first = date.first_of_month();
            (first, first.checked_add(1.month()).ok()?)
        }
    };
    Some((first_reach(tz, first, 0)?, first_reach(tz, next, 0)?))
}

/// The objectives of a validated config, in file order.
pub fn objectives(cfg: &Config) -> Result<Vec<Objective>, Vec<(String, String)>> {
    cfg.sla.iter().map(|e| Objective::new(e, cfg)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Agg, Outcome};
    use std::path::Path;

    const H: i64 = 3_600_000;

    fn at(text: &str) -> i64 {
        let dt: jiff::civil::DateTime = text.parse().unwrap();
        dt.to_zoned(TimeZone::get("Europe/Paris").unwrap())
            .unwrap()
            .timestamp()
            .as_millisecond()
    }

    /// Two objectives over the same calls: a service-wide one and a gold-tier one (the tier
    /// carried in the events' tags); e-mail answered within 4 business hours.
    const TEXT: &str = r#"
[general]
time_zone = "Europe/Paris"

[[sla]]
name = "support-all"
scope = { queues = ["support", "sales"] }
measure = "service_level"
threshold = "20s"
target = 0.8
period = "month"

[[sla]]
name = "support-gold"
scope = { queues = ["support"], tags = { tier = "gold" } }
measure = "service_level"
threshold = "10s"
formula = "answered"
target = 0.9
period = "week"

[[sla]]
name = "email"
scope = { channels = ["email"] }
measure = "answered_within"
threshold = "4h"
clock = "business_hours"
target = 0.95
period = "month"
hours = { mon = ["08:00-12:00", "13:00-18:00"], tue = ["08:00-12:00", "13:00-18:00"], wed = ["08:00-12:00", "13:00-18:00"], thu = ["08:00-12:00", "13:00-18:00"], fri = ["08:00-12:00", "13:00-18:00"] }
holidays = ["2026-03-13"]
"#;

    fn objectives_of(text: &str) -> Vec<Objective> {
        let cfg = Config::parse(text, Path::new("agent.toml")).unwrap();
        objectives(&cfg).unwrap()
    }

    fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn overlapping_scopes_and_a_tier_carried_by_tags() {
        let o = objectives_of(TEXT);
        let gold = tags(&[("tier", "gold"), ("lang", "fr")]);
        let silver = tags(&[("tier", "silver")]);
        // A gold call on support counts for both the service-wide and the gold objective.
        assert!(o[0].covers("support", "voice", &gold));
        assert!(o[1].covers("support", "voice", &gold));
        // Silver, or no tags: only the service-wide one.
        assert!(o[0].covers("support", "voice", &silver));
        assert!(!o[1].covers("support", "voice", &silver));
        assert!(!o[1].covers("support", "voice", &[]));
        // Gold on sales: not the gold objective (queue not listed).
        assert!(!o[1].covers("sales", "voice", &gold));
        assert!(!o[0].covers("billing", "voice", &gold));
        // The e-mail one is scoped by channel only, any queue.
        assert!(o[2].covers("billing", "email", &[]));
        assert!(!o[2].covers("billing", "voice", &[]));

        // The same three segments counted for each objective with its own T and formula.
        let seg = |wait_s: i64, outcome| QueueFacts {
            start_ms: at("2026-03-10T10:00"),
            leave_ms: at("2026-03-10T10:00") + wait_s * 1000,
            outcome,
        };
        let calls = [
            seg(8, Outcome::Answered),
            seg(15, Outcome::Answered),
            seg(30, Outcome::Abandoned),
        ];
        let count = |ob: &Objective| {
            let mut a = Agg::default();
            for f in &calls {
                a.count_queue(&ob.judged(f), &ob.params, &[]);
            }
            a
        };
        let all = count(&o[0]);
        // T = 20 s, offered formula: A≤T = 2 of A + Ab − S = 3.
        assert_eq!(all.service_level(o[0].params.formula), Some(2.0 / 3.0));
        let gold_agg = count(&o[1]);
        // T = 10 s, answered formula: 1 of 2.
        assert_eq!(gold_agg.service_level(o[1].params.formula), Some(0.5));
    }

    #[test]
    fn business_hours_waits_deadlines_and_arrivals_outside_hours() {
        let o = objectives_of(TEXT);
        let email = &o[2];
        // Friday 6 March 19:30, answered Monday 9 March 11:15: 3 h 15 of business time.
        let f = QueueFacts {
            start_ms: at("2026-03-06T19:30"),
            leave_ms: at("2026-03-09T11:15"),
            outcome: Outcome::Answered,
        };
        assert_eq!(email.judged(&f).wait_ms(), (3 * H + 15 * 60_000) as u64);
        let mut a = Agg::default();
        a.count_queue(&email.judged(&f), &email.params, &[]);
        assert_eq!((a.answered, a.answered_within), (1, 1));
        assert_eq!(email.deadline(f.start_ms), Some(at("2026-03-09T12:00")));
        // Arrived Friday evening: outside service hours, so not counted against it.
        assert!(!email.counts_arrival(f.start_ms));
        assert!(email.counts_arrival(at("2026-03-09T09:00")));
        // The holiday (Friday 13 March) is closed.
        assert!(!email.counts_arrival(at("2026-03-13T09:00")));
        // On the wall clock the same wait is 63 h 45 and the deadline 4 h after the start.
        assert_eq!(o[0].judged(&f), f);
        assert_eq!(o[0].deadline(f.start_ms), Some(f.start_ms + 20_000));
    }

    #[test]
    fn periods_in_the_zone() {
        let o = objectives_of(TEXT);
        let ts = at("2026-03-29T12:00"); // Sunday of the spring change
                                         // Month: 1 March 00:00 CET to 1 April 00:00 CEST, 743 h.
        let (s, e) = o[0].period_bounds(ts).unwrap();
        assert_eq!((s, e), (at("2026-03-01T00:00"), at("2026-04-01T00:00")));
        assert_eq!(e - s, 743 * H);
        // ISO week: Monday 23 March to Monday 30 March, 167 h.
        let (s, e) = o[1].period_bounds(ts).unwrap();
        assert_eq!((s, e), (at("2026-03-23T00:00"), at("2026-03-30T00:00")));
        assert_eq!(e - s, 167 * H);
        let tz = TimeZone::get("Europe/Paris").unwrap();
        let (s, e) = period_bounds(Period::Day, &tz, ts).unwrap();
        assert_eq!(e - s, 23 * H);
        // The last instant of a period is in it, its end is in the next.
        let (s2, _) = period_bounds(Period::Day, &tz, e).unwrap();
        assert_eq!(s2, e);
        assert_eq!(period_bounds(Period::Day, &tz, e - 1).unwrap().0, s);
    }
}
