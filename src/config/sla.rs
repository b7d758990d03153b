//! The `[[sla]]` objectives and the `[history]` section (retention, and the tag dimensions checked
//! in `tag_dims.rs`): their types, defaults and checks (each problem named by its dotted key,
//! `sla.N.field`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Formula, Millis, ZoneName};
use crate::sla::calendar::{self, ServiceHours, Week};

/// What an objective measures (docs/sla.md gives each formula).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// The service level by `formula`, at least `target`.
    ServiceLevel,
    /// ASA (`wait_sum` / answered), at most `target`.
    AsaMax,
    /// Abandon rate ((Ab − S) / (Q − S)), at most `target`.
    AbandonRateMax,
    /// AHT (handle sum / handled), at most `target`.
    AhtMax,
    /// Answered within the threshold among the answered (A≤T / A), at least `target`.
    AnsweredWithin,
    /// Callback requests made by their `promise` deadline among those whose outcome is known
    /// (on time / (on time + late + missed)), at least `target` (docs/callbacks.md).
    CallbacksWithin,
}

impl Measure {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Measure::ServiceLevel => "service_level",
            Measure::AsaMax => "asa_max",
            Measure::AbandonRateMax => "abandon_rate_max",
            Measure::AhtMax => "aht_max",
            Measure::AnsweredWithin => "answered_within",
            Measure::CallbacksWithin => "callbacks_within",
        }
    }

    /// Whether the target is a duration (ASA, AHT) rather than a fraction.
    #[must_use]
    pub fn takes_duration(self) -> bool {
        matches!(self, Measure::AsaMax | Measure::AhtMax)
    }

    /// Whether waits are judged against a threshold T.
    #[must_use]
    pub fn takes_threshold(self) -> bool {
        matches!(self, Measure::ServiceLevel | Measure::AnsweredWithin)
    }

    /// Whether the short-abandon threshold S enters the measure.
    #[must_use]
    pub fn takes_short_abandon(self) -> bool {
        matches!(self, Measure::ServiceLevel | Measure::AbandonRateMax)
    }
}

/// The length of an objective's periods, in its time zone; weeks start on Monday (ISO 8601).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    Week,
    Month,
}

/// Which clock a wait runs on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitClock {
    /// Every millisecond counts.
    #[default]
    Wall,
    /// The clock pauses outside the objective's service hours (help-desk style).
    BusinessHours,
}

/// A target or margin: a fraction (`0.8` = 80 %) or a duration (`"30s"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    Fraction(f64),
    Duration(Millis),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Fraction(x) => write!(f, "{x}"),
            Target::Duration(d) => write!(f, "\"{d}\""),
        }
    }
}

impl Serialize for Target {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Target::Fraction(x) => s.serialize_f64(*x),
            Target::Duration(d) => s.collect_str(d),
        }
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Target;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a fraction such as 0.8 (80 %) or a duration such as \"30s\"")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Target, E> {
                Ok(Target::Fraction(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Target, E> {
                Ok(Target::Fraction(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Target, E> {
                Ok(Target::Fraction(v as f64))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Target, E> {
                v.parse().map(Target::Duration).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Which calls an objective covers. Within a list any entry matches; across lists and tags all
/// must; an empty scope covers every call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScopeConfig {
    pub queues: Vec<String>,
    pub channels: Vec<String>,
    /// Tag values the call's `start` event must carry, e.g. `{ tier = "gold" }`.
    pub tags: BTreeMap<String, String>,
}

/// Weekly opening hours: each weekday's ranges, `"HH:MM-HH:MM"`; a day left out is closed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HoursConfig {
    pub mon: Vec<String>,
    pub tue: Vec<String>,
    pub wed: Vec<String>,
    pub thu: Vec<String>,
    pub fri: Vec<String>,
    pub sat: Vec<String>,
    pub sun: Vec<String>,
}

impl HoursConfig {
    /// The days Monday first, with their keys.
    fn days(&self) -> [(&'static str, &[String]); 7] {
        [
            ("mon", &self.mon),
            ("tue", &self.tue),
            ("wed", &self.wed),
            ("thu", &self.thu),
            ("fri", &self.fri),
            ("sat", &self.sat),
            ("sun", &self.sun),
        ]
    }
}

/// Longest threshold: 366 days.
const MAX_THRESHOLD_MS: i64 = 366 * 86_400_000;

/// One `[[sla]]` objective: a target on a measure over a scope, per period, within service
/// hours (docs/sla.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaConfig {
    /// Unique name, shown by `sla` and sent upstream.
    pub name: String,
    #[serde(default)]
    pub scope: ScopeConfig,
    pub measure: Measure,
    /// T of `service_level` and `answered_within` (required by those, refused by the others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<Millis>,
    /// Whether waits run on the wall clock or only in service hours.
    #[serde(default)]
    pub clock: WaitClock,
    /// The service-level formula; `[defaults].formula` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formula: Option<Formula>,
    /// S; `[defaults].short_abandon` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_abandon: Option<Millis>,
    /// A fraction for `service_level`, `answered_within` and `abandon_rate_max`, a duration
    /// for `asa_max` and `aht_max`.
    pub target: Target,
    /// How close to the target (in the target's kind) a value that meets it may be and still
    /// be called at risk; none when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_risk_margin: Option<Target>,
    pub period: Period,
    /// The zone of the periods, hours and holidays; `general.time_zone` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<ZoneName>,
    /// Service hours; open at all hours when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<HoursConfig>,
    /// Closed dates, `"YYYY-MM-DD"`, in the objective's zone.
    #[serde(default)]
    pub holidays: Vec<String>,
    /// How many past periods' final figures `sla` shows (and the daemon keeps), 1 to
    /// [`MAX_KEEP_PERIODS`]; [`DEFAULT_KEEP_PERIODS`] when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_periods: Option<u32>,
    /// The deadline of a callback request, for `callbacks_within` (required there, refused
    /// elsewhere): `"same_business_day"` or business time such as `"12h"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promise: Option<String>,
}

/// Past periods kept per objective when `keep_periods` is left out: a year of months.
pub const DEFAULT_KEEP_PERIODS: u32 = 12;
/// Most past periods kept per objective: ten years of months, or a year and a half of days.
pub const MAX_KEEP_PERIODS: u32 = 120;

impl SlaConfig {
    /// The objective's time zone: its own, else `general`.
    #[must_use]
    pub fn zone(&self, general: &ZoneName) -> jiff::tz::TimeZone {
        self.time_zone.as_ref().unwrap_or(general).zone()
    }

    /// The service-hours calendar, or every (key relative to the entry, message) that stops it.
    pub fn service_hours(&self, general: &ZoneName) -> Result<ServiceHours, Vec<(String, String)>> {
        service_hours_of(self.zone(general), self.hours.as_ref(), &self.holidays)
    }

    /// Every (key relative to the entry, message) wrong with this objective alone.
    fn problems(&self, general: &ZoneName) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |key: &str, msg: String| out.push((key.to_string(), msg));
        let m = self.measure;
        let name = m.name();
        if m.takes_threshold() {
            match self.threshold {
                None => bad(
                    "threshold",
                    format!("measure `{name}` needs a threshold such as \"20s\" or \"48h\""),
                ),
                Some(t) if t.0 == 0 => bad("threshold", "must be more than 0s".into()),
                // A deadline is searched day by day through the calendar: bounded work.
                Some(t) if t.0 > MAX_THRESHOLD_MS => {
                    bad("threshold", format!("{t} is longer than a year (8784h)"));
                }
                Some(_) => {}
            }
        } else if self.threshold.is_some() {
            bad(
                "threshold",
                format!(
                    "measure `{name}` has no threshold (only service_level and answered_within do)"
                ),
            );
        }
        if self.formula.is_some() && m != Measure::ServiceLevel {
            bad(
                "formula",
                format!("measure `{name}` has no formula (only service_level does)"),
            );
        }
        if self.short_abandon.is_some() && !m.takes_short_abandon() {
            bad(
                "short_abandon",
                format!("measure `{name}` does not use short abandons (service_level and abandon_rate_max do)"),
            );
        }
        match (&self.promise, m == Measure::CallbacksWithin) {
            (None, true) => bad(
                "promise",
                "measure `callbacks_within` needs a promise: \"same_business_day\" or business time such as \"12h\"".into(),
            ),
            (Some(p), true) => match p.parse::<crate::callbacks::promise::Promise>() {
                Err(e) => bad("promise", e),
                // A deadline is searched day by day through the calendar: bounded work.
                Ok(crate::callbacks::promise::Promise::Within(d)) if d.0 > MAX_THRESHOLD_MS => {
                    bad("promise", format!("{d} is longer than a year (8784h)"));
                }
                Ok(_) => {}
            },
            (Some(_), false) => bad(
                "promise",
                format!("measure `{name}` has no promise (only callbacks_within does)"),
            ),
            (None, false) => {}
        }
        if self.clock == WaitClock::BusinessHours && m == Measure::CallbacksWithin {
            bad(
                "clock",
                "`business_hours` applies to waits; a callback promise always runs on the service hours".into(),
            );
        }
        if self.clock == WaitClock::BusinessHours && m == Measure::AhtMax {
            bad(
                "clock",
                "`business_hours` applies to waits; aht_max measures handling".into(),
            );
        }
        for (key, value) in [
            ("target", Some(self.target)),
            ("at_risk_margin", self.at_risk_margin),
        ] {
            let Some(value) = value else { continue };
            match (m.takes_duration(), value, key) {
                (true, Target::Duration(d), "target") if d.0 == 0 => {
                    bad(key, "must be more than 0s".into());
                }
                (true, Target::Duration(_), _) => {}
                (true, Target::Fraction(_), _) => bad(
                    key,
                    format!("measure `{name}` takes a duration such as \"30s\", not {value}"),
                ),
                (false, Target::Duration(_), _) => bad(
                    key,
                    format!("measure `{name}` takes a fraction such as 0.8 (80 %), not {value}"),
                ),
                (false, Target::Fraction(x), "target") => {
                    let ok = if m == Measure::AbandonRateMax {
                        (0.0..1.0).contains(&x)
                    } else {
                        x > 0.0 && x <= 1.0
                    };
                    if !ok {
                        bad(
                            key,
                            format!(
                                "{x} must be a fraction above 0 up to 1 (0.8 = 80 %){}",
                                if m == Measure::AbandonRateMax {
                                    ", from 0 up to but not 1 for abandon_rate_max"
                                } else {
                                    ""
                                }
                            ),
                        );
                    }
                }
                (false, Target::Fraction(x), _) => {
                    if !(0.0..1.0).contains(&x) {
                        bad(key, format!("{x} must be a fraction from 0 up to 1"));
                    }
                }
            }
        }
        for (list, what) in [
            (&self.scope.queues, "queues"),
            (&self.scope.channels, "channels"),
        ] {
            for (i, v) in list.iter().enumerate() {
                if v.is_empty() || crate::printable::first_refused(v).is_some() {
                    bad(
                        &format!("scope.{what}.{i}"),
                        format!("{v:?} is not a name (empty, or holds a control character)"),
                    );
                }
            }
        }
        for (k, v) in &self.scope.tags {
            if k.is_empty() || v.is_empty() {
                bad(
                    "scope.tags",
                    format!("tag {k:?} = {v:?}: neither a tag nor its value may be empty"),
                );
            }
        }
        if let Some(n) = self.keep_periods {
            if !(1..=MAX_KEEP_PERIODS).contains(&n) {
                bad(
                    "keep_periods",
                    format!("{n} must be from 1 to {MAX_KEEP_PERIODS} past periods"),
                );
            }
        }
        if let Err(problems) = self.service_hours(general) {
            out.extend(problems);
        }
        out
    }
}

/// A service-hours calendar in `tz` from weekly `hours` (open at all hours when `None`) and
/// `holidays`, or every (key relative to the table, message) that stops it: what `[[sla]]`
/// objectives and slow channels' business clocks are built from.
pub(super) fn service_hours_of(
    tz: jiff::tz::TimeZone,
    hours: Option<&HoursConfig>,
    holidays: &[String],
) -> Result<ServiceHours, Vec<(String, String)>> {
    let mut problems = Vec::new();
    let mut dates = Vec::with_capacity(holidays.len());
    for (i, h) in holidays.iter().enumerate() {
        match h.parse::<jiff::civil::Date>() {
            Ok(d) if h.len() == 10 => dates.push(d),
            _ => problems.push((
                format!("holidays.{i}"),
                format!("`{h}` is not a date such as \"2026-12-25\""),
            )),
        }
    }
    let Some(hours) = hours else {
        return problems
            .is_empty()
            .then(|| ServiceHours::always(tz).with_holidays(dates))
            .ok_or(problems);
    };
    let mut week: Week = Default::default();
    for (slot, (key, ranges)) in week.iter_mut().zip(hours.days()) {
        match calendar::parse_day(ranges) {
            Ok(r) => *slot = r,
            Err((i, m)) => problems.push((format!("hours.{key}.{i}"), m)),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    ServiceHours::new(tz, week, dates).map_err(|e| vec![("hours".into(), e.to_string())])
}

/// Every problem of the `[[sla]]` entries, keyed `sla.N.field`: each entry's own and names
/// used twice.
pub(super) fn problems(entries: &[SlaConfig], general: &ZoneName) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for (i, s) in entries.iter().enumerate() {
        let printable = crate::printable::first_refused(&s.name).is_none();
        if s.name.is_empty() || s.name.len() > 64 || !printable {
            out.push((
                format!("sla.{i}.name"),
                format!(
                    "objective name {:?} must be 1 to 64 bytes without control characters",
                    s.name
                ),
            ));
        } else if !names.insert(s.name.as_str()) {
            out.push((
                format!("sla.{i}.name"),
                format!(
                    "objective name `{}` is used twice; each objective needs its own",
                    s.name
                ),
            ));
        }
        out.extend(
            s.problems(general)
                .into_iter()
                .map(|(k, m)| (format!("sla.{i}.{k}"), m)),
        );
    }
    out
}

/// How long interval history is kept (read by the `report` and `sla` commands, to come).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Days of interval (15 min by default) aggregates kept.
    pub intervals_days: u32,
    /// Days of daily aggregates kept.
    pub daily_days: u32,
    /// Most bytes the history may take on disk; the oldest goes first past it.
    pub max_bytes: u64,
    /// Tag names whose values the interval buckets (and so the history) are also kept by, for
    /// `report --by-dimension tag` (see `tag_dims.rs`); none by default, costing nothing.
    pub tag_dimensions: Vec<String>,
    /// Most `name=value` keys of those tags; past it a value counts under `name=(other)`.
    pub max_tag_values: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            intervals_days: 35,
            daily_days: 400,
            max_bytes: 256 << 20,
            tag_dimensions: Vec::new(),
            max_tag_values: super::tag_dims::DEFAULT_MAX_TAG_VALUES,
        }
    }
}

impl HistoryConfig {
    pub(super) fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !(1..=366).contains(&self.intervals_days) {
            out.push((
                "history.intervals_days".into(),
                format!("{} must be from 1 to 366 days", self.intervals_days),
            ));
        }
        if !(1..=3660).contains(&self.daily_days) {
            out.push((
                "history.daily_days".into(),
                format!("{} must be from 1 to 3660 days (10 years)", self.daily_days),
            ));
        }
        if self.max_bytes < 1 << 20 {
            out.push((
                "history.max_bytes".into(),
                "must be at least 1048576 (1 MiB)".into(),
            ));
        }
        out.extend(super::tag_dims::problems(
            &self.tag_dimensions,
            self.max_tag_values,
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{Config, ConfigError};
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("agent.toml"))
    }

    /// The (key, line) of every problem of a refused config.
    fn problems(text: &str) -> Vec<(String, Option<usize>, String)> {
        match parse(text) {
            Err(ConfigError::Invalid { problems, .. }) => problems
                .into_iter()
                .map(|p| (p.key, p.line, p.message))
                .collect(),
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn a_full_objective_and_history_parse() {
        let cfg = parse(
            r#"
[[sla]]
name = "gold"
scope = { queues = ["support"], channels = ["voice", "chat"], tags = { tier = "gold" } }
measure = "service_level"
threshold = "20s"
formula = "abandon_ignored"
short_abandon = "3s"
target = 0.9
at_risk_margin = 0.02
period = "week"
time_zone = "America/New_York"
hours = { mon = ["08:00-12:00", "13:00-24:00"], sat = ["10:00-14:00"] }
holidays = ["2026-12-25", "2027-01-01"]

[[sla]]
name = "asa"
measure = "asa_max"
target = "30s"
period = "day"

[history]
intervals_days = 40
"#,
        )
        .unwrap();
        let s = &cfg.sla[0];
        assert_eq!(s.scope.tags.get("tier").map(String::as_str), Some("gold"));
        assert_eq!(s.formula, Some(Formula::AbandonIgnored));
        assert_eq!(s.target, Target::Fraction(0.9));
        assert_eq!(s.period, Period::Week);
        assert_eq!(s.clock, WaitClock::Wall);
        let hours = s.service_hours(&cfg.general.time_zone).unwrap();
        // 4 + 11 h Monday, 4 h Saturday.
        assert_eq!(hours.weekly_minutes(), (15 + 4) * 60);
        assert_eq!(cfg.sla[1].target, Target::Duration(Millis::secs(30)));
        assert!(cfg.sla[1].scope.queues.is_empty() && cfg.sla[1].hours.is_none());
        assert_eq!(
            cfg.history,
            HistoryConfig {
                intervals_days: 40,
                ..HistoryConfig::default()
            }
        );
        let none = parse("").unwrap();
        assert!(none.sla.is_empty());
        assert_eq!(none.history.intervals_days, 35);
        assert_eq!(none.history.daily_days, 400);
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        for (text, key) in [
            ("[[sla]]\nname = \"a\"\nmeasure = \"aht_max\"\ntarget = \"5m\"\nperiod = \"day\"\nwindow = \"1h\"\n", "window"),
            ("[[sla]]\nname = \"a\"\nmeasure = \"aht_max\"\ntarget = \"5m\"\nperiod = \"day\"\nscope = { queue = [\"q\"] }\n", "queue"),
            ("[[sla]]\nname = \"a\"\nmeasure = \"aht_max\"\ntarget = \"5m\"\nperiod = \"day\"\nhours = { monday = [\"08:00-18:00\"] }\n", "monday"),
            ("[history]\nintervals = 3\n", "intervals"),
            ("[[sla]]\nname = \"a\"\nmeasure = \"uptime\"\ntarget = 0.9\nperiod = \"day\"\n", "uptime"),
            ("[[sla]]\nname = \"a\"\nmeasure = \"aht_max\"\ntarget = \"5m\"\nperiod = \"year\"\n", "year"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
        // A missing required key is named.
        let err = parse("[[sla]]\nname = \"a\"\nmeasure = \"aht_max\"\nperiod = \"day\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("target"), "{err}");
    }

    #[test]
    fn invalid_values_name_sla_n_field_and_line() {
        let text = r#"[[sla]]
name = "a"
measure = "service_level"
target = 80
period = "month"
hours = { mon = ["08:00-12:00", "11:00-13:00"], tue = ["9-17"] }
holidays = ["2026-12-25", "25/12/2026"]

[[sla]]
name = "a"
measure = "asa_max"
threshold = "20s"
target = 0.5
formula = "answered"
period = "day"

[[sla]]
name = "c"
measure = "abandon_rate_max"
target = "5s"
at_risk_margin = 0.01
period = "day"
clock = "business_hours"
scope = { queues = ["ok", ""], tags = { tier = "" } }

[[sla]]
name = "d"
measure = "aht_max"
target = "6m"
clock = "business_hours"
short_abandon = "5s"
period = "day"
hours = {}

[history]
intervals_days = 0
max_bytes = 10
"#;
        let found = problems(text);
        let keys: Vec<(&str, Option<usize>)> =
            found.iter().map(|(k, l, _)| (k.as_str(), *l)).collect();
        assert_eq!(
            keys,
            [
                ("sla.0.threshold", None),
                ("sla.0.target", Some(4)),
                ("sla.0.holidays.1", Some(7)),
                ("sla.0.hours.mon.1", Some(6)),
                ("sla.0.hours.tue.0", Some(6)),
                ("sla.1.name", Some(10)),
                ("sla.1.threshold", Some(12)),
                ("sla.1.formula", Some(14)),
                ("sla.1.target", Some(13)),
                ("sla.2.target", Some(20)),
                ("sla.2.scope.queues.1", Some(24)),
                ("sla.2.scope.tags", Some(24)),
                ("sla.3.short_abandon", Some(31)),
                ("sla.3.clock", Some(30)),
                ("sla.3.hours", Some(33)),
                ("history.intervals_days", Some(36)),
                ("history.max_bytes", Some(37)),
            ],
            "{found:#?}"
        );
        let message = |key: &str| {
            found
                .iter()
                .find(|(k, _, _)| k == key)
                .map(|(_, _, m)| m.clone())
                .unwrap()
        };
        assert!(message("sla.0.threshold").contains("needs a threshold"));
        assert!(message("sla.0.target").contains("0.8 = 80 %"));
        assert!(message("sla.0.hours.mon.1").contains("overlaps 08:00-12:00"));
        assert!(message("sla.0.hours.tue.0").contains("`9-17`"));
        assert!(message("sla.0.holidays.1").contains("25/12/2026"));
        assert!(message("sla.1.name").contains("used twice"));
        assert!(message("sla.1.target").contains("takes a duration"));
        assert!(message("sla.2.target").contains("takes a fraction"));
        assert!(message("sla.3.hours").contains("open on no day"));
        // The whole text names each key as the file writes it.
        let text = parse(text).unwrap_err().to_string();
        assert!(text.contains("line 6: `sla.0.hours.mon.1`"), "{text}");
    }

    #[test]
    fn business_hours_thresholds_for_slow_channels() {
        let long = problems(
            "[[sla]]\nname = \"a\"\nmeasure = \"answered_within\"\nthreshold = \"8785h\"\ntarget = 0.9\nperiod = \"day\"\n",
        );
        assert_eq!(long[0].0, "sla.0.threshold");
        assert!(long[0].2.contains("longer than a year"), "{long:?}");
        let cfg = parse(
            "[[sla]]\nname = \"email\"\nscope = { channels = [\"email\"] }\nmeasure = \"answered_within\"\nthreshold = \"48h\"\nclock = \"business_hours\"\ntarget = 0.95\nperiod = \"month\"\nhours = { mon = [\"09:00-17:00\"] }\n",
        )
        .unwrap();
        assert_eq!(cfg.sla[0].threshold, Some(Millis::secs(48 * 3600)));
        assert_eq!(cfg.sla[0].clock, WaitClock::BusinessHours);
    }

    /// The commented `[history]` and `[[sla]]` examples of config/agent.toml, uncommented, are a
    /// valid config that says what their comments say.
    #[test]
    fn keep_periods_is_bounded_and_named() {
        let base =
            "[[sla]]\nname = \"a\"\nmeasure = \"asa_max\"\ntarget = \"30s\"\nperiod = \"day\"\n";
        for n in [0, MAX_KEEP_PERIODS + 1] {
            let p = problems(&format!("{base}keep_periods = {n}\n"));
            assert_eq!(p.len(), 1, "{p:?}");
            assert_eq!(p[0].0, "sla.0.keep_periods");
            assert_eq!(p[0].1, Some(6));
            assert!(p[0].2.contains("from 1 to 120"), "{p:?}");
        }
        let cfg = parse(&format!("{base}keep_periods = 24\n")).unwrap();
        assert_eq!(cfg.sla[0].keep_periods, Some(24));
    }

    #[test]
    fn the_shipped_commented_examples_are_valid() {
        let text = super::super::shipped_examples_from("# [history]");
        let cfg = parse(&text).unwrap();
        assert_eq!(cfg.history, HistoryConfig::default());
        assert_eq!(cfg.sla.len(), 3);
        let email = &cfg.sla[1];
        let hours = email.service_hours(&cfg.general.time_zone).unwrap();
        // "Friday 17:00 + 4 h is Monday 11:00": Friday 4 December 2026 in UTC (the default zone).
        let friday_17 = 1_796_403_600_000; // 2026-12-04T17:00Z
        assert_eq!(
            hours.add_business_ms(friday_17, 4 * 3_600_000),
            Some(friday_17 + (3 * 24 - 6) * 3_600_000) // Monday 7 December 11:00Z
        );
        // The callback example: Friday 17:00's request is due at the close, 18:00.
        let callbacks = &cfg.sla[2];
        assert_eq!(callbacks.measure, Measure::CallbacksWithin);
        let promise: crate::callbacks::promise::Promise =
            callbacks.promise.as_deref().unwrap().parse().unwrap();
        let hours = callbacks.service_hours(&cfg.general.time_zone).unwrap();
        assert_eq!(
            promise.deadline(&hours, friday_17),
            Some(friday_17 + 3_600_000)
        );
    }
}
