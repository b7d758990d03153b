//! Warnings a misbehaving client can cause thousands of times a second (refused connections,
//! failed accepts) are logged at most once per interval, each line saying how many were left out.

use std::time::{Duration, Instant};

/// How often one kind of warning is logged at most.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Decides, for one kind of warning, whether this occurrence is logged.
#[derive(Debug)]
pub struct Throttle {
    interval: Duration,
    last: Option<Instant>,
    left_out: u64,
}

impl Throttle {
    #[must_use]
    pub const fn new(interval: Duration) -> Self {
        Throttle {
            interval,
            last: None,
            left_out: 0,
        }
    }

    /// `Some(n)` when this occurrence is to be logged, `n` being how many were left out since the
    /// last line; `None` (counted) while the last line is younger than the interval.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < self.interval => {
                self.left_out += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.left_out))
            }
        }
    }
}

/// The tail a throttled line carries: empty, or how many like it were not logged.
#[must_use]
pub fn left_out_note(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} more like this since the last such line were not logged)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_left_out() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut t = Throttle::new(Duration::from_secs(10));
        assert_eq!(t.admit(at(0)), Some(0));
        // 1 000 more within the interval: none logged, all counted.
        for i in 1..=1000 {
            assert_eq!(t.admit(at(i)), None);
        }
        assert_eq!(t.admit(at(9_999)), None);
        // The interval counts from the last logged line.
        assert_eq!(t.admit(at(10_000)), Some(1001));
        assert_eq!(t.admit(at(10_001)), None);
        assert_eq!(t.admit(at(30_000)), Some(1));
        assert_eq!(t.admit(at(60_000)), Some(0));
    }

    #[test]
    fn the_note_names_the_count() {
        assert_eq!(left_out_note(0), "");
        assert!(left_out_note(23_547).contains("23547 more"));
    }
}
