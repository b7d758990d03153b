//! A callback promise and the deadline it sets for a request made at a given instant, in a
//! service-hours calendar (src/sla/calendar.rs).

use std::fmt;

use crate::sla::calendar::ServiceHours;
use crate::units::Millis;

/// When a callback is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Promise {
    /// By the close of the business day of the request (a request made while closed belongs to
    /// the next business day).
    SameBusinessDay,
    /// Within this much open time of the calendar after the request.
    Within(Millis),
}

impl std::str::FromStr for Promise {
    type Err = String;
    fn from_str(s: &str) -> Result<Promise, String> {
        if s == "same_business_day" {
            return Ok(Promise::SameBusinessDay);
        }
        match s.parse::<Millis>() {
            Ok(d) if d.0 > 0 => Ok(Promise::Within(d)),
            _ => Err(format!(
                "`{s}` is neither \"same_business_day\" nor a duration of business time such as \"12h\""
            )),
        }
    }
}

impl fmt::Display for Promise {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Promise::SameBusinessDay => f.write_str("same_business_day"),
            Promise::Within(d) => write!(f, "{d}"),
        }
    }
}

impl Promise {
    /// The deadline of a request made at `requested_ms`; `None` only for a calendar that never
    /// opens again before the year 9999.
    #[must_use]
    pub fn deadline(self, hours: &ServiceHours, requested_ms: i64) -> Option<i64> {
        match self {
            Promise::SameBusinessDay => hours.business_day_end(requested_ms),
            Promise::Within(d) => hours.add_business_ms(requested_ms, d.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sla::calendar::{parse_day, Week};

    const H: i64 = 3_600_000;

    /// Weekdays 08:00-12:00 and 13:00-18:00 in UTC, Christmas a holiday.
    fn office() -> ServiceHours {
        let mut week: Week = Default::default();
        for day in week.iter_mut().take(5) {
            *day = parse_day(&["08:00-12:00".into(), "13:00-18:00".into()]).unwrap();
        }
        let christmas: jiff::civil::Date = "2026-12-25".parse().unwrap();
        ServiceHours::new(jiff::tz::TimeZone::UTC, week, vec![christmas]).unwrap()
    }

    fn at(text: &str) -> i64 {
        text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn deadlines_across_closing_time_a_weekend_and_a_holiday() {
        let o = office();
        let same: Promise = "same_business_day".parse().unwrap();
        let four: Promise = "4h".parse().unwrap();
        // Thursday 10:00: the same day closes at 18:00; 4 open hours end at 15:00 (lunch skipped).
        let thu = at("2026-12-03T10:00:00Z");
        assert_eq!(same.deadline(&o, thu), Some(at("2026-12-03T18:00:00Z")));
        assert_eq!(four.deadline(&o, thu), Some(thu + 5 * H));
        // Friday 17:00, one hour before closing: 1 h on Friday, 3 h on Monday from 08:00.
        let fri = at("2026-12-04T17:00:00Z");
        assert_eq!(four.deadline(&o, fri), Some(at("2026-12-07T11:00:00Z")));
        // Friday 19:30, closed: Monday's business day.
        let late = at("2026-12-04T19:30:00Z");
        assert_eq!(same.deadline(&o, late), Some(at("2026-12-07T18:00:00Z")));
        // Thursday 24 December 16:00: Christmas is closed, then the weekend: Monday 28th.
        let eve = at("2026-12-24T16:00:00Z");
        assert_eq!(four.deadline(&o, eve), Some(at("2026-12-28T10:00:00Z")));
        assert_eq!(
            same.deadline(&o, at("2026-12-25T09:00:00Z")),
            Some(at("2026-12-28T18:00:00Z"))
        );
        assert_eq!(same.to_string(), "same_business_day");
        assert!("soon".parse::<Promise>().is_err());
        assert!("0s".parse::<Promise>().is_err());
    }
}
