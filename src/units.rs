//! Units and parameters shared by the config, the engine and the outputs: durations, time-zone
//! names, the spans of the time buckets, the service-level formulas and per-queue parameters.
//! A leaf: it imports nothing of the crate, so the config (which reads these) and the engine
//! (which computes with them) both stand above it.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Width of the fine (minute) buckets.
pub const FINE_BUCKET_MS: i64 = 60_000;
/// Longest window served from fine buckets; longer ones use interval buckets.
pub const FINE_SPAN_MS: i64 = 3_600_000;

/// A duration written as `"20s"`, `"15m"`, `"1h 30m"` or `"250ms"`, kept in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Millis(pub i64);

impl Millis {
    #[must_use]
    pub fn secs(s: i64) -> Self {
        Millis(s * 1000)
    }

    /// As a `Duration`; a negative value (which parsing refuses) counts as zero.
    #[must_use]
    pub fn to_duration(self) -> std::time::Duration {
        std::time::Duration::from_millis(u64::try_from(self.0).unwrap_or(0))
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        if ms != 0 && ms % 3_600_000 == 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms != 0 && ms % 60_000 == 0 {
            write!(f, "{}m", ms / 60_000)
        } else if ms % 1000 == 0 {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl std::str::FromStr for Millis {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`{s}` is not a duration (write e.g. \"20s\", \"15m\", \"1h\", \"2d\", \"1w\", \"250ms\")"
            )
        };
        // `SignedDuration` refuses days and weeks (calendar units to jiff); slow channels count
        // in them, always as 24 h and 7 × 24 h here, so those go through a `Span`.
        let d: jiff::SignedDuration = match s.trim().parse() {
            Ok(d) => d,
            Err(_) => fixed_days(s.trim()).ok_or_else(bad)?,
        };
        if d.is_negative() {
            return Err(format!("`{s}` is negative"));
        }
        i64::try_from(d.as_millis())
            .map(Millis)
            .map_err(|_| format!("`{s}` is too long"))
    }
}

/// A duration written with days or weeks (`"2d"`, `"1w 2d"`), a day counted as 24 h; `None`
/// for anything else, and for years and months, which have no fixed length.
fn fixed_days(s: &str) -> Option<jiff::SignedDuration> {
    let span: jiff::Span = s.parse().ok()?;
    if span.get_years() != 0 || span.get_months() != 0 {
        return None;
    }
    let ms = i128::from(span.get_weeks()) * 7 * 86_400_000
        + i128::from(span.get_days()) * 86_400_000
        + i128::from(span.get_hours()) * 3_600_000
        + i128::from(span.get_minutes()) * 60_000
        + i128::from(span.get_seconds()) * 1000
        + i128::from(span.get_milliseconds())
        + i128::from(span.get_microseconds()) / 1000
        + i128::from(span.get_nanoseconds()) / 1_000_000;
    Some(jiff::SignedDuration::from_millis(i64::try_from(ms).ok()?))
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A [`Millis`] field written as its config text (`"5m"`) both ways, for a config section that is
/// also sent whole to the CLI (`Millis` alone serializes as integer milliseconds).
pub mod duration_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Millis;

    /// Writes the duration as the config writes it.
    pub fn serialize<S: Serializer>(m: &Millis, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(m)
    }

    /// Reads the duration as the config writes it.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
        Millis::deserialize(d)
    }
}

/// The service-level formulas (docs/metrics.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Formula {
    Answered,
    Offered,
    OfferedWithOverflow,
    AbandonNegative,
    AbandonPositive,
    AbandonIgnored,
    AsteriskSl2,
}

impl Formula {
    pub const ALL: [Formula; 7] = [
        Formula::Answered,
        Formula::Offered,
        Formula::OfferedWithOverflow,
        Formula::AbandonNegative,
        Formula::AbandonPositive,
        Formula::AbandonIgnored,
        Formula::AsteriskSl2,
    ];

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Formula::Answered => "answered",
            Formula::Offered => "offered",
            Formula::OfferedWithOverflow => "offered_with_overflow",
            Formula::AbandonNegative => "abandon_negative",
            Formula::AbandonPositive => "abandon_positive",
            Formula::AbandonIgnored => "abandon_ignored",
            Formula::AsteriskSl2 => "asterisk_sl2",
        }
    }

    /// The formula named `name` (as [`Formula::name`] spells it).
    #[must_use]
    pub fn parse(name: &str) -> Option<Formula> {
        Formula::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// An IANA time zone name, checked against the system's zone database when read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZoneName(pub String);

impl ZoneName {
    #[must_use]
    pub fn zone(&self) -> jiff::tz::TimeZone {
        // Checked when the config was read; UTC is only reached if the zone file vanished since.
        jiff::tz::TimeZone::get(&self.0).unwrap_or(jiff::tz::TimeZone::UTC)
    }
}

impl<'de> Deserialize<'de> for ZoneName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        jiff::tz::TimeZone::get(&s).map_err(|_| {
            serde::de::Error::custom(format!(
                "`{s}` is not a time zone known to this system (write an IANA name such as \"Europe/Paris\" or \"UTC\")"
            ))
        })?;
        Ok(ZoneName(s))
    }
}

/// Service-level parameters of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueParams {
    /// Service-level threshold T: answered within this counts.
    pub threshold: Millis,
    /// Service-level target, a fraction 0..1.
    pub target: f64,
    /// Short-abandon threshold S: abandons quicker than this are left out of rates.
    pub short_abandon: Millis,
    pub formula: Formula,
}

impl Default for QueueParams {
    fn default() -> Self {
        QueueParams {
            threshold: Millis::secs(20),
            target: 0.8,
            short_abandon: Millis::secs(5),
            formula: Formula::Offered,
        }
    }
}
