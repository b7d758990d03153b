//! Time buckets and windows: minute buckets for short trailing windows, interval buckets aligned in
//! the configured time zone for long windows, `today` and shipping.
//!
//! A trailing window of length W covers the bucket holding `now` and the whole buckets before it,
//! W in all; `today` covers the interval buckets from local midnight (DST-correct) to `now`.

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::units::Millis;
pub use crate::units::{FINE_BUCKET_MS, FINE_SPAN_MS};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Tier {
    Fine,
    Interval,
}

/// A window a query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Window {
    Trailing(Millis),
    Today,
}

impl Window {
    #[must_use]
    pub fn name(&self) -> String {
        match self {
            Window::Trailing(m) => m.to_string(),
            Window::Today => "today".into(),
        }
    }

    /// Parses `today` or a duration such as `15m`.
    pub fn parse(s: &str) -> Option<Window> {
        if s == "today" {
            return Some(Window::Today);
        }
        s.parse::<Millis>().ok().map(Window::Trailing)
    }
}

/// Bucket alignment for one time zone and interval length.
#[derive(Debug, Clone)]
pub struct Calendar {
    pub tz: TimeZone,
    pub interval_ms: i64,
}

impl Calendar {
    fn offset_ms(&self, ts_ms: i64) -> i64 {
        match Timestamp::from_millisecond(ts_ms) {
            Ok(t) => i64::from(self.tz.to_offset(t).seconds()) * 1000,
            Err(_) => 0,
        }
    }

    #[must_use]
    pub fn fine_bucket(&self, ts_ms: i64) -> i64 {
        ts_ms - ts_ms.rem_euclid(FINE_BUCKET_MS)
    }

    /// Start of the interval holding `ts_ms`, aligned on local clock time.
    #[must_use]
    pub fn interval_bucket(&self, ts_ms: i64) -> i64 {
        ts_ms - (ts_ms + self.offset_ms(ts_ms)).rem_euclid(self.interval_ms)
    }

    #[must_use]
    pub fn bucket(&self, tier: Tier, ts_ms: i64) -> i64 {
        match tier {
            Tier::Fine => self.fine_bucket(ts_ms),
            Tier::Interval => self.interval_bucket(ts_ms),
        }
    }

    /// Local midnight of the day holding `ts_ms`, as epoch ms.
    #[must_use]
    pub fn local_midnight(&self, ts_ms: i64) -> i64 {
        Timestamp::from_millisecond(ts_ms)
            .ok()
            .and_then(|t| t.to_zoned(self.tz.clone()).start_of_day().ok())
            .map_or(ts_ms - ts_ms.rem_euclid(86_400_000), |z| {
                z.timestamp().as_millisecond()
            })
    }

    /// The tier and the first and last bucket starts (inclusive) of `w` at `now`.
    #[must_use]
    pub fn range(&self, w: Window, now_ms: i64) -> (Tier, i64, i64) {
        match w {
            Window::Trailing(Millis(len)) if len <= FINE_SPAN_MS => {
                let last = self.fine_bucket(now_ms);
                (Tier::Fine, last + FINE_BUCKET_MS - len, last)
            }
            Window::Trailing(Millis(len)) => {
                let last = self.interval_bucket(now_ms);
                (Tier::Interval, last + self.interval_ms - len, last)
            }
            Window::Today => (
                Tier::Interval,
                self.local_midnight(now_ms),
                self.interval_bucket(now_ms),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paris() -> Calendar {
        Calendar {
            tz: TimeZone::get("Europe/Paris").unwrap(),
            interval_ms: 900_000,
        }
    }

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn today_starts_at_local_midnight_across_spring_forward() {
        // 2026-03-29 in Paris: clocks go 02:00 → 03:00; local midnight is 23:00 UTC the day before.
        let c = paris();
        let now = ms("2026-03-29T12:00:00+02:00");
        let (tier, first, last) = c.range(Window::Today, now);
        assert_eq!(tier, Tier::Interval);
        assert_eq!(first, ms("2026-03-28T23:00:00Z"));
        assert_eq!(last, ms("2026-03-29T10:00:00Z"));
        // Only 11 hours have passed since local midnight on that day.
        assert_eq!(now - first, 11 * 3_600_000);
    }

    #[test]
    fn today_is_25_hours_long_on_fall_back_day() {
        let c = paris();
        let end = ms("2026-10-25T23:59:59+01:00");
        let (_, first, _) = c.range(Window::Today, end);
        assert_eq!(first, ms("2026-10-25T00:00:00+02:00"));
        assert_eq!(end + 1000 - first, 25 * 3_600_000);
    }

    #[test]
    fn intervals_align_on_local_clock_in_half_hour_zones() {
        let c = Calendar {
            tz: TimeZone::get("Asia/Kolkata").unwrap(),
            interval_ms: 3_600_000,
        };
        // 10:47 IST → bucket 10:00 IST = 04:30 UTC.
        assert_eq!(
            c.interval_bucket(ms("2026-06-01T10:47:00+05:30")),
            ms("2026-06-01T04:30:00Z")
        );
    }

    #[test]
    fn trailing_windows_cover_whole_buckets_to_now() {
        let c = paris();
        let now = ms("2026-06-01T10:07:30Z");
        assert_eq!(
            c.range(Window::Trailing(Millis::secs(300)), now),
            (
                Tier::Fine,
                ms("2026-06-01T10:03:00Z"),
                ms("2026-06-01T10:07:00Z")
            )
        );
        assert_eq!(
            c.range(Window::Trailing(Millis::secs(86_400)), now),
            (
                Tier::Interval,
                ms("2026-05-31T10:15:00Z"),
                ms("2026-06-01T10:00:00Z")
            )
        );
    }
}
