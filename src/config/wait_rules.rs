//! Wait rules of slow channels (docs/slow-channels.md): the service-level threshold,
//! `max_call_duration` and the wait clock (wall, or business hours with their calendar) that
//! `[channels.NAME]` and `[queues.NAME]` may set, their checks (each problem named by its dotted
//! key) and their resolution: a queue's setting over its channel's over the defaults, key by key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::sla::{service_hours_of, HoursConfig, WaitClock};
use super::{Formula, Millis, QueueOverride, ZoneName};
use crate::sla::calendar::ServiceHours;

/// Longest `max_call_duration` a queue or channel may set: 366 days. On the business clock an
/// expiry is searched day by day through the calendar, so the bound keeps that work bounded.
pub const MAX_WAIT_RULE_MS: i64 = 366 * 86_400_000;

/// The wait-rule keys a `[channels.NAME]` or `[queues.NAME]` table may set; every one optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WaitFields {
    /// A segment left unended this long after its start (in its clock) is closed as expired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_call_duration: Option<Millis>,
    /// Whether waits run on the wall clock or only in service hours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock: Option<WaitClock>,
    /// The zone of `hours` and `holidays`; `general.time_zone` when left out everywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<ZoneName>,
    /// Weekly opening hours, as `[[sla]]` writes them; open at all hours when left out everywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hours: Option<HoursConfig>,
    /// Closed dates, `"YYYY-MM-DD"`, in the zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holidays: Option<Vec<String>>,
}

/// One `[channels.NAME]` table: a threshold and the wait fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelRules {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<Millis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_call_duration: Option<Millis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock: Option<WaitClock>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<ZoneName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hours: Option<HoursConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holidays: Option<Vec<String>>,
}

impl ChannelRules {
    fn wait_fields(&self) -> WaitFields {
        WaitFields {
            max_call_duration: self.max_call_duration,
            clock: self.clock,
            time_zone: self.time_zone.clone(),
            hours: self.hours.clone(),
            holidays: self.holidays.clone(),
        }
    }
}

/// A whole `[queues.NAME]` table as written: the service-level parameters of
/// [`QueueOverride`] and the wait fields. The config reads it twice: once into the
/// `QueueOverride` (which keeps its four fields) and once for the wait fields alone.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueTable {
    pub threshold: Option<Millis>,
    pub target: Option<f64>,
    pub short_abandon: Option<Millis>,
    pub formula: Option<Formula>,
    pub max_call_duration: Option<Millis>,
    pub clock: Option<WaitClock>,
    pub time_zone: Option<ZoneName>,
    pub hours: Option<HoursConfig>,
    pub holidays: Option<Vec<String>>,
}

impl From<QueueTable> for QueueOverride {
    fn from(t: QueueTable) -> QueueOverride {
        QueueOverride {
            threshold: t.threshold,
            target: t.target,
            short_abandon: t.short_abandon,
            formula: t.formula,
        }
    }
}

impl QueueTable {
    fn wait_fields(self) -> WaitFields {
        WaitFields {
            max_call_duration: self.max_call_duration,
            clock: self.clock,
            time_zone: self.time_zone,
            hours: self.hours,
            holidays: self.holidays,
        }
    }
}

/// The `[queues.*]` tables alone, read from the whole text for their wait fields (the other
/// sections are read, and checked, by `Config` itself).
#[derive(Deserialize)]
struct QueuesOnly {
    #[serde(default)]
    queues: BTreeMap<String, QueueTable>,
}

/// The wait fields of every `[queues.NAME]` table that sets one, from config text that already
/// parsed as a `Config` (so this cannot fail on it; an error gives no fields).
#[must_use]
pub fn queue_wait_fields(text: &str) -> BTreeMap<String, WaitFields> {
    toml::from_str::<QueuesOnly>(text)
        .map(|q| {
            q.queues
                .into_iter()
                .map(|(name, t)| (name, t.wait_fields()))
                .filter(|(_, w)| *w != WaitFields::default())
                .collect()
        })
        .unwrap_or_default()
}

/// The rules one segment waits under, resolved key by key: its queue's setting, else its
/// channel's, else the defaults (`[defaults].threshold`, `metrics.max_call_duration`, wall
/// clock, `general.time_zone`, open at all hours, no holidays).
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedWait {
    pub threshold: Millis,
    pub max_call_duration: Millis,
    pub clock: WaitClock,
    pub time_zone: ZoneName,
    pub hours: Option<HoursConfig>,
    pub holidays: Vec<String>,
}

impl ResolvedWait {
    /// The calendar of the business clock (`None` on the wall clock), or every (key, message)
    /// that stops it (the keys relative to the table that set the offending value).
    pub fn calendar(&self) -> Result<Option<ServiceHours>, Vec<(String, String)>> {
        if self.clock == WaitClock::Wall {
            return Ok(None);
        }
        service_hours_of(self.time_zone.zone(), self.hours.as_ref(), &self.holidays).map(Some)
    }
}

impl super::Config {
    /// The wait rules of a segment of `queue` on `channel` (see [`ResolvedWait`]).
    #[must_use]
    pub fn wait_rules(&self, queue: Option<&str>, channel: Option<&str>) -> ResolvedWait {
        let q = queue.and_then(|q| self.queue_waits.get(q));
        let qo = queue.and_then(|q| self.queues.get(q));
        let c = channel.and_then(|c| self.channels.get(c));
        ResolvedWait {
            threshold: qo
                .and_then(|o| o.threshold)
                .or(c.and_then(|c| c.threshold))
                .unwrap_or(self.defaults.threshold),
            max_call_duration: q
                .and_then(|w| w.max_call_duration)
                .or(c.and_then(|c| c.max_call_duration))
                .unwrap_or(self.metrics.max_call_duration),
            clock: q
                .and_then(|w| w.clock)
                .or(c.and_then(|c| c.clock))
                .unwrap_or_default(),
            time_zone: q
                .and_then(|w| w.time_zone.clone())
                .or(c.and_then(|c| c.time_zone.clone()))
                .unwrap_or_else(|| self.general.time_zone.clone()),
            hours: q
                .and_then(|w| w.hours.clone())
                .or(c.and_then(|c| c.hours.clone())),
            holidays: q
                .and_then(|w| w.holidays.clone())
                .or(c.and_then(|c| c.holidays.clone()))
                .unwrap_or_default(),
        }
    }

    /// Every problem of the wait rules of `[channels.*]` and `[queues.*]`, keyed by the table's
    /// dotted name: each table's own values, then each calendar a queue and a channel build
    /// together.
    pub(super) fn wait_rule_problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let tables = self
            .channels
            .iter()
            .map(|(n, c)| (format!("channels.{n}"), c.threshold, c.wait_fields()))
            .chain(self.queue_waits.iter().map(|(n, w)| {
                let t = self.queues.get(n).and_then(|o| o.threshold);
                (format!("queues.{n}"), t, w.clone())
            }));
        for (prefix, threshold, w) in tables {
            for (key, d) in [
                ("threshold", threshold),
                ("max_call_duration", w.max_call_duration),
            ] {
                match d {
                    Some(d) if d.0 == 0 => {
                        out.push((format!("{prefix}.{key}"), "must be more than 0s".into()));
                    }
                    Some(d) if d.0 > MAX_WAIT_RULE_MS => out.push((
                        format!("{prefix}.{key}"),
                        format!("{d} is longer than 366 days (366d)"),
                    )),
                    _ => {}
                }
            }
            // The table's own calendar, as if it alone set the rules: names the key in it.
            let zone = w.time_zone.as_ref().unwrap_or(&self.general.time_zone);
            let holidays = w.holidays.clone().unwrap_or_default();
            if let Err(problems) = service_hours_of(zone.zone(), w.hours.as_ref(), &holidays) {
                out.extend(
                    problems
                        .into_iter()
                        .map(|(k, m)| (format!("{prefix}.{k}"), m)),
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError, Millis, WaitClock};

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("agent.toml"))
    }

    #[test]
    fn durations_take_days_and_weeks() {
        assert_eq!("2d".parse::<Millis>().unwrap(), Millis(2 * 86_400_000));
        assert_eq!(
            "1w 2d 3h".parse::<Millis>().unwrap(),
            Millis(9 * 86_400_000 + 3 * 3_600_000)
        );
        assert_eq!("48h".parse::<Millis>().unwrap(), Millis(2 * 86_400_000));
        assert!("1 month".parse::<Millis>().is_err());
        assert!("1y".parse::<Millis>().is_err());
        assert!("2d ago".parse::<Millis>().is_err());
    }

    #[test]
    fn a_queue_setting_wins_over_its_channel_which_wins_over_the_defaults() {
        let cfg = parse(
            "[defaults]\nthreshold = \"30s\"\n\
             [channels.email]\nthreshold = \"48h\"\nmax_call_duration = \"2w\"\nclock = \"business_hours\"\ntime_zone = \"Europe/Paris\"\nhours = { mon = [\"08:00-18:00\"] }\n\
             [queues.vip]\nthreshold = \"4h\"\nholidays = [\"2026-12-25\"]\n",
        )
        .unwrap();
        let vip_mail = cfg.wait_rules(Some("vip"), Some("email"));
        assert_eq!(vip_mail.threshold, Millis(4 * 3_600_000));
        assert_eq!(vip_mail.max_call_duration, Millis(14 * 86_400_000));
        assert_eq!(vip_mail.clock, WaitClock::BusinessHours);
        assert_eq!(vip_mail.time_zone.0, "Europe/Paris");
        assert_eq!(vip_mail.holidays, ["2026-12-25"]);
        assert!(vip_mail.hours.is_some());
        let other_mail = cfg.wait_rules(Some("support"), Some("email"));
        assert_eq!(other_mail.threshold, Millis(48 * 3_600_000));
        assert!(other_mail.holidays.is_empty());
        let vip_voice = cfg.wait_rules(Some("vip"), Some("voice"));
        assert_eq!(vip_voice.threshold, Millis(4 * 3_600_000));
        assert_eq!(vip_voice.clock, WaitClock::Wall);
        assert_eq!(vip_voice.max_call_duration, Millis(4 * 3_600_000));
        let plain = cfg.wait_rules(Some("support"), Some("voice"));
        assert_eq!(plain.threshold, Millis(30_000));
        assert_eq!(plain.time_zone.0, "UTC");
        // The queue's service-level parameters are still read from the same table.
        assert_eq!(cfg.queue_params("vip").threshold, Millis(4 * 3_600_000));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_naming_the_key_and_line() {
        let err = parse("[channels.email]\nthreshold = \"48h\"\nsla = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sla") && err.contains("line 3"), "{err}");
        let err = parse("[queues.vip]\ntarget = 0.9\nwait_clock = \"wall\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("wait_clock") && err.contains("line 3"),
            "{err}"
        );
        let err = parse("[channels.email]\nclock = \"business\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("business_hours") && err.contains("line 2"),
            "{err}"
        );
        let err = parse("[channels.email]\nmax_call_duration = \"2 fortnights\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("2d"), "{err}");
        let Err(ConfigError::Invalid { problems, .. }) = parse(
            "[channels.email]\nthreshold = \"0s\"\nhours = { mon = [\"18:00-08:00\"] }\n\
             [queues.vip]\nmax_call_duration = \"400d\"\nholidays = [\"2026-13-01\"]\n",
        ) else {
            panic!("accepted");
        };
        let keys: Vec<(&str, Option<usize>)> =
            problems.iter().map(|p| (p.key.as_str(), p.line)).collect();
        assert_eq!(
            keys,
            [
                ("channels.email.threshold", Some(2)),
                ("channels.email.hours.mon.0", Some(3)),
                ("queues.vip.max_call_duration", Some(5)),
                ("queues.vip.holidays.0", Some(6)),
            ]
        );
        let Err(ConfigError::Invalid { problems, .. }) =
            parse("[channels.email]\nclock = \"business_hours\"\nhours = {}\n")
        else {
            panic!("accepted a calendar open on no day");
        };
        assert_eq!(problems[0].key, "channels.email.hours");
    }

    #[test]
    fn the_shipped_slow_channel_examples_mean_what_they_say() {
        let text = crate::config::shipped_examples_from("# [channels.email]");
        let cfg = parse(&text).unwrap();
        let mail = cfg.wait_rules(Some("support"), Some("email"));
        assert_eq!(mail.threshold, Millis(4 * 3_600_000));
        assert_eq!(mail.max_call_duration, Millis(14 * 86_400_000));
        assert_eq!(mail.clock, WaitClock::BusinessHours);
        let hours = mail.calendar().unwrap().unwrap();
        // Friday 2026-12-25 is a holiday; Thursday 24 at 12:30 Paris time is closed (lunch).
        assert!(!hours.is_open(1_798_200_000_000)); // 2026-12-25T12:00:00Z
        assert!(!hours.is_open(1_798_111_800_000)); // 2026-12-24T11:30:00Z = 12:30 Paris
        assert!(hours.is_open(1_798_102_800_000)); // 2026-12-24T09:00:00Z = 10:00 Paris
        let form = cfg.wait_rules(None, Some("webform"));
        assert_eq!(form.clock, WaitClock::Wall);
        assert_eq!(form.threshold, Millis(48 * 3_600_000));
    }
}
