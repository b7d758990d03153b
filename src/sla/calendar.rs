//! Service hours: weekly opening hours and holidays in an IANA time zone, and the business-time
//! arithmetic SLA objectives need (is it open now, how much open time lies between two instants,
//! which instant is N business hours after another, when does this business day close).
//!
//! Pure: instants are epoch milliseconds passed in, nothing reads a clock.
//!
//! # How wall-clock hours become instants
//!
//! A range such as `08:00-18:00` on a date opens at the first instant at which the local wall
//! clock reaches 08:00 on that date, and closes at the first instant at which it reaches 18:00
//! (`24:00` is the next date's 00:00). One rule covers every DST case:
//! - on a day of 23 or 25 hours the ranges keep their wall-clock times, so `00:00-24:00` is open
//!   23 or 25 hours;
//! - a time the clock skips (02:30 when it jumps from 02:00 to 03:00) is first reached at the
//!   jump itself, so a range starting there opens at 03:00, and one lying wholly inside the
//!   skipped hour is never open;
//! - in the repeated hour the clock has already reached the times it shows a second time, so a
//!   range that holds the repeated hour stays open through both passes (`00:00-03:00` is open
//!   4 hours on the autumn change in Europe/Paris), and a range opens and closes once a day.
//!
//! Said otherwise: an instant is open when the highest wall-clock time reached so far lies in a
//! range of its date, and that date is not a holiday. The property test below checks the code
//! against exactly that statement, minute by minute.

use std::collections::BTreeSet;
use std::fmt;

use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::Timestamp;

/// Minutes in a day: the end of a range that closes at `24:00`.
pub const DAY_MINUTES: u16 = 1440;

/// One opening range of a day, in minutes after local midnight: `start < end <= 1440`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Range {
    pub start: u16,
    pub end: u16,
}

impl Range {
    /// Parses `"HH:MM-HH:MM"` (the end may be `24:00`); the message says what is wrong.
    pub fn parse(text: &str) -> Result<Range, String> {
        let bad = || format!("`{text}` is not an opening range such as \"08:00-18:00\"");
        let (a, b) = text.split_once('-').ok_or_else(bad)?;
        let start = minute_of_day(a.trim()).ok_or_else(bad)?;
        let end = minute_of_day(b.trim()).ok_or_else(bad)?;
        if start >= DAY_MINUTES {
            return Err(format!("`{text}`: a range cannot start at 24:00"));
        }
        if start >= end {
            return Err(format!(
                "`{text}`: the range must end after it starts (split a range over midnight into \"22:00-24:00\" on one day and \"00:00-06:00\" on the next)"
            ));
        }
        Ok(Range { start, end })
    }

    fn minutes(self) -> u16 {
        self.end - self.start
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        write!(f, "{}-{}", hm(self.start), hm(self.end))
    }
}

/// `HH:MM` with HH 00..=24 and MM 00..=59 (24 only as 24:00) as minutes after midnight.
fn minute_of_day(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
}

/// Parses one day's ranges, sorted; overlapping ranges are refused (adjacent ones are fine).
/// The error carries the index of the offending range as the config writes it.
pub fn parse_day(ranges: &[String]) -> Result<Vec<Range>, (usize, String)> {
    let mut parsed: Vec<(Range, usize)> = Vec::with_capacity(ranges.len());
    for (i, r) in ranges.iter().enumerate() {
        parsed.push((Range::parse(r).map_err(|m| (i, m))?, i));
    }
    parsed.sort();
    for pair in parsed.windows(2) {
        let ((a, _), (b, i)) = (pair[0], pair[1]);
        if b.start < a.end {
            return Err((i, format!("{b} overlaps {a}")));
        }
    }
    Ok(parsed.into_iter().map(|(r, _)| r).collect())
}

/// The opening ranges of each weekday, Monday first.
pub type Week = [Vec<Range>; 7];

/// Why service hours cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoursError {
    #[error("the service is open on no day of the week (leave `hours` out for a service open at all hours)")]
    NeverOpen,
}

/// Weekly opening hours and holidays in a time zone.
#[derive(Debug, Clone)]
pub struct ServiceHours {
    tz: TimeZone,
    /// `None`: open at all hours (but holidays).
    week: Option<Week>,
    holidays: BTreeSet<Date>,
}

impl ServiceHours {
    /// Open at all hours every day: the calendar of an objective without `hours`.
    #[must_use]
    pub fn always(tz: TimeZone) -> ServiceHours {
        ServiceHours {
            tz,
            week: None,
            holidays: BTreeSet::new(),
        }
    }

    /// Open in `week`'s ranges (each day's sorted and disjoint, as [`parse_day`] gives them),
    /// closed on `holidays` (local dates) all day.
    pub fn new(
        tz: TimeZone,
        week: Week,
        holidays: impl IntoIterator<Item = Date>,
    ) -> Result<ServiceHours, HoursError> {
        // An empty week would make the searches for the next opening run to the end of time.
        if week.iter().all(Vec::is_empty) {
            return Err(HoursError::NeverOpen);
        }
        Ok(ServiceHours {
            tz,
            week: Some(week),
            holidays: holidays.into_iter().collect(),
        })
    }

    /// Adds holidays (to [`ServiceHours::always`] too: open at all hours but those dates).
    #[must_use]
    pub fn with_holidays(mut self, holidays: impl IntoIterator<Item = Date>) -> ServiceHours {
        self.holidays.extend(holidays);
        self
    }

    #[must_use]
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// Open minutes of a plain (non-holiday) week, DST aside: 10 080 for `always`.
    #[must_use]
    pub fn weekly_minutes(&self) -> u32 {
        match &self.week {
            None => 7 * u32::from(DAY_MINUTES),
            Some(w) => w.iter().flatten().map(|r| u32::from(r.minutes())).sum(),
        }
    }

    /// Whether the service is open at `ts_ms`.
    #[must_use]
    pub fn is_open(&self, ts_ms: i64) -> bool {
        self.spans_from(ts_ms)
            .next()
            .is_some_and(|(_, start, _)| start <= ts_ms)
    }

    /// Open time between `a` and `b`, in ms: how far a wait clock that pauses outside service
    /// hours runs from `a` to `b`. Negative when `b` is before `a`.
    #[must_use]
    pub fn business_ms_between(&self, a: i64, b: i64) -> i64 {
        if b < a {
            return -self.business_ms_between(b, a);
        }
        self.spans_from(a)
            .take_while(|&(_, start, _)| start < b)
            .map(|(_, start, end)| end.min(b) - start.max(a))
            .sum()
    }

    /// The earliest instant at which `d_ms` of open time has passed since `ts_ms`: the deadline
    /// of "within 4 business hours". `d_ms <= 0` gives `ts_ms`. `None` only past the year 9999.
    #[must_use]
    pub fn add_business_ms(&self, ts_ms: i64, d_ms: i64) -> Option<i64> {
        if d_ms <= 0 {
            return Some(ts_ms);
        }
        let mut left = d_ms;
        for (_, start, end) in self.spans_from(ts_ms) {
            let from = start.max(ts_ms);
            if end - from >= left {
                return Some(from + left);
            }
            left -= end - from;
        }
        None
    }

    /// The first open instant at or after `ts_ms` (`ts_ms` itself when open).
    #[must_use]
    pub fn next_open(&self, ts_ms: i64) -> Option<i64> {
        self.spans_from(ts_ms)
            .next()
            .map(|(_, start, _)| start.max(ts_ms))
    }

    /// When the business day of `ts_ms` closes, for "the same business day": the closing
    /// instant of the last range of the date on which the service is open at `ts_ms`, or, when
    /// it is closed then, of the date on which it next opens (an e-mail of Friday evening
    /// belongs to Monday's business day).
    #[must_use]
    pub fn business_day_end(&self, ts_ms: i64) -> Option<i64> {
        let mut spans = self.spans_from(ts_ms);
        let (day, _, mut close) = spans.next()?;
        for (d, _, end) in spans {
            if d != day {
                break;
            }
            close = end;
        }
        Some(close)
    }

    /// The open spans `(date, open, close)` that end after `ts_ms`, in time order, from the
    /// day before `ts_ms`'s local date on: an instant with local date D is at or after the
    /// first instant of D, where every span of D − 2 has ended, and starting one day earlier
    /// still covers a repeated hour across midnight (the clock back from D 00:30 to D−1 23:30).
    fn spans_from(&self, ts_ms: i64) -> impl Iterator<Item = (Date, i64, i64)> + '_ {
        let first = Timestamp::from_millisecond(ts_ms)
            .ok()
            .and_then(|t| self.tz.to_datetime(t).date().yesterday().ok());
        let days = std::iter::successors(first, |d| d.tomorrow().ok());
        days.flat_map(move |d| self.spans_of(d))
            .filter(move |&(_, _, end)| end > ts_ms)
    }

    /// The open spans of one local date (none on a holiday), as instants; a range that lies
    /// wholly in a skipped hour gives no span.
    fn spans_of(&self, date: Date) -> Vec<(Date, i64, i64)> {
        if self.holidays.contains(&date) {
            return Vec::new();
        }
        const ALL_DAY: [Range; 1] = [Range {
            start: 0,
            end: DAY_MINUTES,
        }];
        let ranges: &[Range] = match &self.week {
            None => &ALL_DAY,
            Some(w) => &w[date.weekday().to_monday_zero_offset() as usize],
        };
        ranges
            .iter()
            .filter_map(|r| {
                let open = first_reach(&self.tz, date, r.start)?;
                let close = first_reach(&self.tz, date, r.end)?;
                (close > open).then_some((date, open, close))
            })
            .collect()
    }
}

/// The first instant at which the local clock of `tz` reads `minute` (0..=1440) on `date`, or
/// later if that reading is skipped: the opening rule of the module doc, also the first instant
/// of a day (`minute` 0) for period bounds.
#[must_use]
pub fn first_reach(tz: &TimeZone, date: Date, minute: u16) -> Option<i64> {
    let (date, minute) = if minute >= DAY_MINUTES {
        (date.tomorrow().ok()?, 0)
    } else {
        (date, minute)
    };
    let wall: DateTime = date.at((minute / 60) as i8, (minute % 60) as i8, 0, 0);
    let wall_ms = wall_as_utc_ms(wall)?;
    let at = |offset: jiff::tz::Offset| wall_ms - i64::from(offset.seconds()) * 1000;
    match tz.to_ambiguous_timestamp(wall).offset() {
        AmbiguousOffset::Unambiguous { offset } => Some(at(offset)),
        // Shown twice: the first pass reaches it first.
        AmbiguousOffset::Fold { before, after } => Some(at(before).min(at(after))),
        // Skipped: first reached at the jump, the transition just after the instant that reads
        // this time with the later (larger) offset.
        AmbiguousOffset::Gap { before, after } => {
            let earlier = Timestamp::from_millisecond(at(before).min(at(after))).ok()?;
            let jump = tz.following(earlier).next();
            Some(jump.map_or(at(before).max(at(after)), |t| {
                t.timestamp().as_millisecond()
            }))
        }
    }
}

/// The milliseconds of a civil date-time read as if it were UTC: the wall reading an offset is
/// subtracted from.
fn wall_as_utc_ms(wall: DateTime) -> Option<i64> {
    TimeZone::UTC
        .to_ambiguous_timestamp(wall)
        .unambiguous()
        .ok()
        .map(Timestamp::as_millisecond)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    const H: i64 = 3_600_000;
    const M: i64 = 60_000;

    fn paris() -> TimeZone {
        TimeZone::get("Europe/Paris").unwrap()
    }

    /// The instant the local clock of `tz` reads `text` (unambiguous times only).
    fn at(tz: &TimeZone, text: &str) -> i64 {
        let dt: DateTime = text.parse().unwrap();
        dt.to_zoned(tz.clone())
            .unwrap()
            .timestamp()
            .as_millisecond()
    }

    fn day(ranges: &[&str]) -> Vec<Range> {
        parse_day(&ranges.iter().map(|s| (*s).to_string()).collect::<Vec<_>>()).unwrap()
    }

    /// Mon–Fri 08:00–12:00 and 13:00–18:00, Saturday 09:00–12:00, Sunday closed.
    fn office(tz: TimeZone, holidays: &[Date]) -> ServiceHours {
        let weekday = day(&["13:00-18:00", "08:00-12:00"]);
        let week = [
            weekday.clone(),
            weekday.clone(),
            weekday.clone(),
            weekday.clone(),
            weekday,
            day(&["09:00-12:00"]),
            Vec::new(),
        ];
        ServiceHours::new(tz, week, holidays.iter().copied()).unwrap()
    }

    #[test]
    fn ranges_parse_strictly() {
        assert_eq!(
            Range::parse("08:00-24:00").unwrap(),
            Range {
                start: 480,
                end: 1440
            }
        );
        assert_eq!(
            Range::parse("08:00-18:30").unwrap().to_string(),
            "08:00-18:30"
        );
        for bad in [
            "8:00-18:00",
            "08:00",
            "08:00-18:60",
            "25:00-26:00",
            "24:00-24:00",
            "18:00-08:00",
            "08:00-08:00",
            "24:30-24:45",
            "08h-18h",
        ] {
            assert!(Range::parse(bad).is_err(), "{bad}");
        }
        let overlap = parse_day(&["08:00-12:00".into(), "11:00-13:00".into()]).unwrap_err();
        assert_eq!(overlap.0, 1);
        assert!(overlap.1.contains("overlaps"), "{}", overlap.1);
        // Adjacent ranges are two ranges, sorted.
        assert_eq!(day(&["12:00-18:00", "08:00-12:00"]).len(), 2);
        assert_eq!(
            ServiceHours::new(paris(), Default::default(), []).unwrap_err(),
            HoursError::NeverOpen
        );
    }

    /// March 2026 in Europe/Paris: clocks go from 02:00 to 03:00 on Sunday 29 March; holidays
    /// on Monday 2 and Friday 13 March (two chosen dates, to test holidays on working days).
    /// Weekdays 08–12 and 13–18 (9 h), Saturdays 09–12 (3 h), Sundays closed.
    /// March 2026: Sunday 1st; Mondays 2, 9, 16, 23, 30; Saturdays 7, 14, 21, 28.
    /// Weekdays: 22 (2–6, 9–13, 16–20, 23–27, 30–31), minus 2 holidays = 20 → 180 h;
    /// Saturdays: 4 → 12 h; total 192 h.
    #[test]
    fn march_2026_in_paris_with_a_dst_change_and_two_holidays() {
        let tz = paris();
        let cal = office(tz.clone(), &[date(2026, 3, 2), date(2026, 3, 13)]);
        let start = at(&tz, "2026-03-01T00:00");
        let end = at(&tz, "2026-04-01T00:00");
        // The month itself has 31 × 24 − 1 hours: one lost to DST.
        assert_eq!(end - start, (31 * 24 - 1) * H);
        assert_eq!(cal.business_ms_between(start, end), 192 * H);
        // The holiday is closed at noon, the next day open.
        assert!(!cal.is_open(at(&tz, "2026-03-13T10:00")));
        assert!(cal.is_open(at(&tz, "2026-03-12T10:00")));
        // Lunch is closed; the opening instant is open, the closing one is not.
        assert!(!cal.is_open(at(&tz, "2026-03-12T12:30")));
        assert!(cal.is_open(at(&tz, "2026-03-12T08:00")));
        assert!(!cal.is_open(at(&tz, "2026-03-12T18:00")));
        assert!(cal.is_open(at(&tz, "2026-03-12T17:59:59.999")));
        // The week across the change (Mon 30 March is after it): 9 h Monday, in CEST.
        assert_eq!(
            cal.business_ms_between(at(&tz, "2026-03-28T00:00"), at(&tz, "2026-03-31T00:00")),
            (3 + 9) * H
        );
        // The UTC hours of Monday 30 March opening are one earlier than of Monday 23 March.
        assert_eq!(
            at(&tz, "2026-03-30T08:00") - at(&tz, "2026-03-23T08:00"),
            7 * 24 * H - H
        );
        // Antisymmetric.
        assert_eq!(cal.business_ms_between(end, start), -192 * H);
    }

    #[test]
    fn a_call_that_starts_before_closing_and_is_answered_after() {
        let tz = paris();
        let cal = office(tz.clone(), &[]);
        // Thursday 12 March 2026: offered 17:55, answered 18:07 → 5 min of service hours.
        let start = at(&tz, "2026-03-12T17:55");
        let answer = at(&tz, "2026-03-12T18:07");
        assert_eq!(answer - start, 12 * M);
        assert_eq!(cal.business_ms_between(start, answer), 5 * M);
        // Offered 11:58, answered 13:01: 2 min before lunch, 1 after.
        assert_eq!(
            cal.business_ms_between(at(&tz, "2026-03-12T11:58"), at(&tz, "2026-03-12T13:01")),
            3 * M
        );
        // Offered 17:55 and answered 08:03 the next morning: 5 + 3 min.
        assert_eq!(
            cal.business_ms_between(start, at(&tz, "2026-03-13T08:03")),
            8 * M
        );
    }

    #[test]
    fn an_email_received_friday_evening_answered_monday_within_4_business_hours() {
        let tz = paris();
        // Saturday closed for this help desk: Mon–Fri 08–12, 13–18.
        let weekday = day(&["08:00-12:00", "13:00-18:00"]);
        let mut week: Week = Default::default();
        for d in week.iter_mut().take(5) {
            d.clone_from(&weekday);
        }
        let cal = ServiceHours::new(tz.clone(), week, []).unwrap();
        // Friday 6 March 2026, 19:30: after closing.
        let received = at(&tz, "2026-03-06T19:30");
        // 4 business hours: Monday 08:00–12:00, so the deadline is Monday 12:00 (the earliest
        // instant with 4 h open since, not 13:00 after lunch).
        let deadline = cal.add_business_ms(received, 4 * H).unwrap();
        assert_eq!(deadline, at(&tz, "2026-03-09T12:00"));
        // Answered Monday 11:15: 3 h 15 of business time, within the 4 hours.
        let answered = at(&tz, "2026-03-09T11:15");
        assert_eq!(cal.business_ms_between(received, answered), 3 * H + 15 * M);
        assert!(answered <= deadline);
        // 65 wall-clock hours passed.
        assert_eq!(answered - received, 63 * H + 45 * M);
        // Answered Monday 14:00 is 5 business hours: late.
        assert_eq!(
            cal.business_ms_between(received, at(&tz, "2026-03-09T14:00")),
            5 * H
        );
        // 4 h 30 lands after lunch: 12:00 + 0:30 of the afternoon.
        assert_eq!(
            cal.add_business_ms(received, 4 * H + 30 * M),
            Some(at(&tz, "2026-03-09T13:30"))
        );
        // Its business day is Monday's: "same business day" means by Monday 18:00.
        assert_eq!(
            cal.business_day_end(received),
            Some(at(&tz, "2026-03-09T18:00"))
        );
        // Received Monday at 12:30 (lunch): still Monday's day; next opening 13:00.
        let lunch = at(&tz, "2026-03-09T12:30");
        assert_eq!(
            cal.business_day_end(lunch),
            Some(at(&tz, "2026-03-09T18:00"))
        );
        assert_eq!(cal.next_open(lunch), Some(at(&tz, "2026-03-09T13:00")));
        assert_eq!(cal.next_open(answered), Some(answered));
        assert_eq!(cal.add_business_ms(received, 0), Some(received));
    }

    #[test]
    fn dst_days_of_23_and_25_hours_a_skipped_range_and_the_repeated_hour() {
        let tz = paris();
        let every_day = |ranges: &[&str]| {
            let d = day(ranges);
            ServiceHours::new(tz.clone(), std::array::from_fn(|_| d.clone()), []).unwrap()
        };
        let spring = at(&tz, "2026-03-29T00:00");
        let spring_next = at(&tz, "2026-03-30T00:00");
        let autumn = at(&tz, "2026-10-25T00:00");
        let autumn_next = at(&tz, "2026-10-26T00:00");
        let all = every_day(&["00:00-24:00"]);
        assert_eq!(all.business_ms_between(spring, spring_next), 23 * H);
        assert_eq!(all.business_ms_between(autumn, autumn_next), 25 * H);
        // 01:00–03:30 on the spring day: 01:00–02:00 CET then 03:00–03:30 CEST = 1 h 30.
        let night = every_day(&["01:00-03:30"]);
        assert_eq!(night.business_ms_between(spring, spring_next), 90 * M);
        // 02:15–02:45 never happens on the spring day; the day before it is 30 min.
        let skipped = every_day(&["02:15-02:45"]);
        assert_eq!(skipped.business_ms_between(spring, spring_next), 0);
        assert_eq!(
            skipped.business_ms_between(at(&tz, "2026-03-28T00:00"), spring),
            30 * M
        );
        // 02:30–04:00 on the spring day opens at the jump (03:00 CEST = 01:00 UTC).
        let from_gap = every_day(&["02:30-04:00"]);
        assert_eq!(from_gap.business_ms_between(spring, spring_next), H);
        assert_eq!(from_gap.next_open(spring), Some(1_774_746_000_000)); // 2026-03-29T01:00Z
                                                                         // Autumn: 02:00 CEST comes, then at 03:00 CEST the clock goes back to 02:00 CET.
                                                                         // 00:00–03:00 covers both passes: 00:00 CEST to 03:00 CET = 4 h.
        let to_fold = every_day(&["00:00-03:00"]);
        assert_eq!(to_fold.business_ms_between(autumn, autumn_next), 4 * H);
        // 02:30–04:00: from the first 02:30 (CEST) to 04:00 CET = 2 h 30, open the whole way.
        let in_fold = every_day(&["02:30-04:00"]);
        assert_eq!(in_fold.business_ms_between(autumn, autumn_next), 150 * M);
        let second_pass_0215 = 1_792_890_900_000; // 2026-10-25T01:15Z = 02:15 CET
        assert!(in_fold.is_open(second_pass_0215));
        // 03:00–04:00 waits for the second pass to reach 03:00 (CET).
        let after_fold = every_day(&["03:00-04:00"]);
        assert!(!after_fold.is_open(second_pass_0215));
        assert_eq!(after_fold.business_ms_between(autumn, autumn_next), H);
        // A deadline across the change: 2 business hours after 01:30 CEST (23:30Z the day
        // before) on 00:00–03:00 is 01:30Z, which reads 02:30 CET in the second pass: still
        // open all the way.
        let start = at(&tz, "2026-10-25T01:30");
        assert_eq!(to_fold.add_business_ms(start, 2 * H), Some(start + 2 * H));
        assert_eq!(
            to_fold.business_day_end(start),
            Some(at(&tz, "2026-10-25T03:00"))
        );
    }

    #[test]
    fn always_open_with_holidays() {
        let tz = paris();
        let cal = ServiceHours::always(tz.clone()).with_holidays([date(2026, 12, 25)]);
        assert_eq!(cal.weekly_minutes(), 10_080);
        let a = at(&tz, "2026-12-24T20:00");
        let b = at(&tz, "2026-12-26T02:00");
        assert_eq!(cal.business_ms_between(a, b), 6 * H);
        assert!(!cal.is_open(at(&tz, "2026-12-25T12:00")));
        assert_eq!(
            cal.add_business_ms(a, 5 * H),
            Some(at(&tz, "2026-12-26T01:00"))
        );
        // The business day of Christmas noon is the 26th, which closes at midnight.
        assert_eq!(
            cal.business_day_end(at(&tz, "2026-12-25T12:00")),
            Some(at(&tz, "2026-12-27T00:00"))
        );
    }

    mod brute_force {
        use super::*;
        use proptest::prelude::*;

        /// Zones with the DST kinds that matter, each with two instants of 2026 at which its
        /// offset changes: a 1 h change in spring and autumn (Paris, New York), a 30 min change
        /// (Lord Howe), a 45 min offset (Chatham), changes at midnight with a repeated hour
        /// across midnight (Santiago), and none (Kolkata, at two plain dates).
        const ZONES: [(&str, [i64; 2]); 6] = [
            ("Europe/Paris", [1_774_746_000_000, 1_792_890_000_000]), // 03-29T01:00Z, 10-25T01:00Z
            ("America/New_York", [1_772_953_200_000, 1_793_512_800_000]), // 03-08T07:00Z, 11-01T06:00Z
            (
                "Australia/Lord_Howe",
                [1_775_314_800_000, 1_791_041_400_000],
            ), // 04-04T15:00Z, 10-03T15:30Z
            ("Pacific/Chatham", [1_775_311_200_000, 1_790_431_200_000]), // 04-04T14:00Z, 09-26T14:00Z
            ("America/Santiago", [1_775_358_000_000, 1_788_667_200_000]), // 04-05T03:00Z, 09-06T04:00Z
            ("Asia/Kolkata", [1_780_272_000_000, 1_774_746_000_000]),     // 06-01, 03-29
        ];

        fn arb_day() -> impl Strategy<Value = Vec<Range>> {
            // Up to 3 ranges from sorted cut points on the minute (a few on whole hours so that
            // ranges meet transition times exactly).
            prop::collection::vec(
                prop_oneof![0u16..=1440, (0u16..=24).prop_map(|h| h * 60)],
                0..=6,
            )
            .prop_map(|mut cuts| {
                cuts.sort_unstable();
                cuts.dedup();
                cuts.chunks_exact(2)
                    .map(|c| Range {
                        start: c[0],
                        end: c[1],
                    })
                    .filter(|r| r.start < DAY_MINUTES)
                    .collect()
            })
        }

        fn arb_calendar() -> impl Strategy<Value = (ServiceHours, i64)> {
            (
                0..ZONES.len(),
                0..2usize,
                prop::array::uniform7(arb_day()),
                prop::collection::vec(-3i64..=3, 0..3),
                any::<bool>(),
            )
                .prop_filter_map(
                    "a week open somewhere",
                    |(z, anchor, week, holiday_offsets, always)| {
                        let tz = TimeZone::get(ZONES[z].0).ok()?;
                        let anchor = ZONES[z].1[anchor];
                        let anchor_date = tz
                            .to_datetime(Timestamp::from_millisecond(anchor).ok()?)
                            .date();
                        let holidays: Vec<Date> = holiday_offsets
                            .iter()
                            .filter_map(|&d| {
                                anchor_date.checked_add(jiff::Span::new().days(d)).ok()
                            })
                            .collect();
                        let cal = if always {
                            ServiceHours::always(tz).with_holidays(holidays)
                        } else {
                            ServiceHours::new(tz, week, holidays).ok()?
                        };
                        Some((cal, anchor))
                    },
                )
        }

        /// Whether the minute starting at `m` is open, by the statement in the module doc:
        /// the highest wall-clock time reached so far (`high`) lies in a range of its date.
        fn open_by_definition(cal: &ServiceHours, high: DateTime) -> bool {
            if cal.holidays.contains(&high.date()) {
                return false;
            }
            let minute = (high.hour() as u16) * 60 + high.minute() as u16;
            match &cal.week {
                None => true,
                Some(w) => w[high.date().weekday().to_monday_zero_offset() as usize]
                    .iter()
                    .any(|r| r.start <= minute && minute < r.end),
            }
        }

        /// Open milliseconds in `[a, b)`, minute by minute from a day before `a` (to learn the
        /// highest wall-clock time reached); every zone here changes offset on whole minutes,
        /// so a minute is open or closed throughout.
        fn brute(cal: &ServiceHours, a: i64, b: i64) -> (i64, Vec<(i64, bool)>) {
            let mut high: Option<DateTime> = None;
            let mut total = 0;
            let mut minutes = Vec::new();
            let mut m = (a - 86_400_000).div_euclid(M) * M;
            while m < b {
                let wall = cal.tz.to_datetime(Timestamp::from_millisecond(m).unwrap());
                let h = high.map_or(wall, |h| h.max(wall));
                high = Some(h);
                let open = open_by_definition(cal, h);
                if m + M > a {
                    minutes.push((m, open));
                    if open {
                        total += (m + M).min(b) - m.max(a);
                    }
                }
                m += M;
            }
            (total, minutes)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(96))]

            #[test]
            fn business_time_equals_a_minute_by_minute_count(
                (cal, anchor) in arb_calendar(),
                from in -2 * 86_400_000i64..2 * 86_400_000,
                len in 0i64..3 * 86_400_000,
                d in 0i64..20 * H,
            ) {
                let a = anchor + from;
                let b = a + len;
                let (expected, minutes) = brute(&cal, a, b);
                prop_assert_eq!(cal.business_ms_between(a, b), expected);
                for &(m, open) in minutes.iter().step_by(7) {
                    let probe = m.max(a);
                    prop_assert_eq!(cal.is_open(probe), open, "at {}", probe);
                }
                // The deadline d after a: exactly d open between, and none earlier.
                if let Some(t) = cal.add_business_ms(a, d) {
                    prop_assert_eq!(cal.business_ms_between(a, t), d);
                    if d > 0 {
                        prop_assert!(cal.business_ms_between(a, t - 1) < d);
                    }
                }
                if let Some(t) = cal.next_open(a) {
                    prop_assert!(t >= a && cal.is_open(t));
                    prop_assert_eq!(cal.business_ms_between(a, t), 0);
                }
            }
        }
    }
}
