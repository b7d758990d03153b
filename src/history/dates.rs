//! The dates `report` takes: `YYYY-MM-DD`, or the words an operator types (`today`,
//! `yesterday`, `-7d` for seven days before today), resolved in the daemon's time zone against
//! its clock (the client may run elsewhere, and only the daemon knows its zone).

use std::fmt;
use std::str::FromStr;

use jiff::civil::Date;
use jiff::ToSpan;
use serde::{Deserialize, Serialize};

/// A date as given on the command line, resolved later against "today" in the daemon's zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DateArg {
    Date(Date),
    Today,
    Yesterday,
    /// This many days before today.
    DaysAgo(u32),
}

/// Why a date argument is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a date: use YYYY-MM-DD, today, yesterday, or -Nd for N days before today")]
pub struct BadDate(pub String);

impl FromStr for DateArg {
    type Err = BadDate;

    fn from_str(s: &str) -> Result<DateArg, BadDate> {
        let bad = || BadDate(s.to_string());
        match s {
            "today" => return Ok(DateArg::Today),
            "yesterday" => return Ok(DateArg::Yesterday),
            _ => {}
        }
        if let Some(n) = s.strip_prefix('-').and_then(|r| r.strip_suffix('d')) {
            return n
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= 36_600)
                .map(DateArg::DaysAgo)
                .ok_or_else(bad);
        }
        // jiff also takes forms such as `20261201`; the documented one only.
        if s.len() != 10 {
            return Err(bad());
        }
        s.parse::<Date>().map(DateArg::Date).map_err(|_| bad())
    }
}

impl fmt::Display for DateArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DateArg::Date(d) => write!(f, "{d}"),
            DateArg::Today => f.write_str("today"),
            DateArg::Yesterday => f.write_str("yesterday"),
            DateArg::DaysAgo(n) => write!(f, "-{n}d"),
        }
    }
}

impl DateArg {
    /// The date meant, given today's; `None` only past the calendar's range.
    #[must_use]
    pub fn resolve(self, today: Date) -> Option<Date> {
        match self {
            DateArg::Date(d) => Some(d),
            DateArg::Today => Some(today),
            DateArg::Yesterday => today.yesterday().ok(),
            DateArg::DaysAgo(n) => today.checked_sub(i64::from(n).days()).ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_dates_parse_and_resolve() {
        let today = Date::constant(2026, 3, 1);
        for (text, want) in [
            ("today", Date::constant(2026, 3, 1)),
            ("yesterday", Date::constant(2026, 2, 28)),
            ("-7d", Date::constant(2026, 2, 22)),
            ("-0d", Date::constant(2026, 3, 1)),
            ("2025-12-31", Date::constant(2025, 12, 31)),
        ] {
            let d: DateArg = text.parse().unwrap();
            assert_eq!(d.resolve(today), Some(want), "{text}");
            assert_eq!(d.to_string(), text);
        }
        for bad in [
            "2026-02-30",
            "20260201",
            "tomorrow",
            "-d",
            "-3",
            "7d",
            "",
            "2026-2-1",
        ] {
            let e = bad.parse::<DateArg>().unwrap_err();
            assert!(e.to_string().contains("YYYY-MM-DD"), "{bad}: {e}");
        }
    }
}
