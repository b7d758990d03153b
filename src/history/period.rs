//! The periods `report` groups by, in the configured zone: hours, days, ISO weeks (from Monday)
//! and months, each from the first instant of its local start to the first instant of the next
//! one, so a day may hold 23 or 25 hours and the repeated hour of an autumn change is two hours.

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::config::Period;
use crate::sla::objective::period_bounds;

const HOUR_MS: i64 = 3_600_000;

/// What a report's rows are per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeriodKind {
    Hour,
    Day,
    Week,
    Month,
}

impl PeriodKind {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            PeriodKind::Hour => "hour",
            PeriodKind::Day => "day",
            PeriodKind::Week => "week",
            PeriodKind::Month => "month",
        }
    }

    /// The period holding `at_ms`, `[start, end)` in epoch ms.
    #[must_use]
    pub fn bounds(self, tz: &TimeZone, at_ms: i64) -> Option<(i64, i64)> {
        let period = match self {
            PeriodKind::Hour => {
                // Back to the instant the local clock last read a whole hour: in the repeated
                // hour of an autumn change that is the current pass's.
                let dt = tz.to_datetime(Timestamp::from_millisecond(at_ms).ok()?);
                let into = i64::from(dt.minute()) * 60_000
                    + i64::from(dt.second()) * 1000
                    + i64::from(dt.subsec_nanosecond()) / 1_000_000;
                let start = at_ms - into;
                return Some((start, start + HOUR_MS));
            }
            PeriodKind::Day => Period::Day,
            PeriodKind::Week => Period::Week,
            PeriodKind::Month => Period::Month,
        };
        period_bounds(period, tz, at_ms)
    }
}

/// An instant as RFC 3339 with the zone's offset at that instant, e.g. `2026-03-29T03:00:00+02:00`.
#[must_use]
pub fn local_text(tz: &TimeZone, at_ms: i64) -> String {
    Timestamp::from_millisecond(at_ms).map_or_else(
        |_| at_ms.to_string(),
        |t| t.display_with_offset(tz.to_offset(t)).to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paris() -> TimeZone {
        TimeZone::get("Europe/Paris").unwrap()
    }

    fn at(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn days_of_23_and_25_hours_and_the_repeated_hour() {
        let tz = paris();
        // Spring change, 2026-03-29: 02:00 → 03:00.
        let (s, e) = PeriodKind::Day
            .bounds(&tz, at("2026-03-29T12:00:00+02:00"))
            .unwrap();
        assert_eq!(e - s, 23 * HOUR_MS);
        // Autumn change, 2026-10-25: 03:00 → 02:00, the hour 02:00 comes twice.
        let (s, e) = PeriodKind::Day
            .bounds(&tz, at("2026-10-25T12:00:00+01:00"))
            .unwrap();
        assert_eq!(e - s, 25 * HOUR_MS);
        let first = PeriodKind::Hour
            .bounds(&tz, at("2026-10-25T02:30:00+02:00"))
            .unwrap();
        let second = PeriodKind::Hour
            .bounds(&tz, at("2026-10-25T02:30:00+01:00"))
            .unwrap();
        assert_eq!(first.0, at("2026-10-25T02:00:00+02:00"));
        assert_eq!(second.0, at("2026-10-25T02:00:00+01:00"));
        assert_eq!(first.1, second.0);
        assert_eq!(local_text(&tz, second.0), "2026-10-25T02:00:00+01:00");
        // The hour after the spring gap starts at 03:00, one hour after 01:00.
        let h = PeriodKind::Hour
            .bounds(&tz, at("2026-03-29T03:10:00+02:00"))
            .unwrap();
        assert_eq!(h.0, at("2026-03-29T01:00:00+01:00") + HOUR_MS);
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        let tz = paris();
        let (s, e) = PeriodKind::Week
            .bounds(&tz, at("2026-12-02T10:00:00+01:00"))
            .unwrap();
        assert_eq!(local_text(&tz, s), "2026-11-30T00:00:00+01:00");
        assert_eq!(local_text(&tz, e), "2026-12-07T00:00:00+01:00");
        let (s, e) = PeriodKind::Month
            .bounds(&tz, at("2026-03-15T10:00:00+01:00"))
            .unwrap();
        assert_eq!(local_text(&tz, s), "2026-03-01T00:00:00+01:00");
        assert_eq!(local_text(&tz, e), "2026-04-01T00:00:00+02:00");
        assert_eq!(e - s, 31 * 24 * HOUR_MS - HOUR_MS);
    }
}
