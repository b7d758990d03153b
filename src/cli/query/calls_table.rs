//! The `calls` table: the open segments, one row each, and their order.

use super::format::duration;
use super::table::{render_table, Align};
use crate::config::WaitClock;
use crate::engine::segment::Phase;
use crate::engine::OpenSegment;

/// The order of `calls`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CallsSort {
    /// The oldest first.
    #[default]
    Age,
    /// The least time left to the deadline first (the most overdue at the top); segments
    /// without a deadline (no longer waiting) last, oldest first.
    Deadline,
}

/// Puts the segments in `sort`'s order; ties by call id, so the order is stable.
pub(super) fn sort_calls(segs: &mut [OpenSegment], sort: CallsSort) {
    segs.sort_by(|a, b| {
        let by = match sort {
            CallsSort::Age => std::cmp::Ordering::Equal,
            // `None` after every `Some`: the ones without a deadline go last.
            CallsSort::Deadline => match (a.time_left_ms, b.time_left_ms) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            },
        };
        by.then_with(|| b.age_ms.cmp(&a.age_ms))
            .then_with(|| a.call_id.cmp(&b.call_id))
    });
}

fn clock_name(c: WaitClock) -> &'static str {
    match c {
        WaitClock::Wall => "wall",
        WaitClock::BusinessHours => "business",
    }
}

/// A deadline as UTC to the second (the CLI does not know the daemon's zone).
fn instant(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(
        |_| ms.to_string(),
        |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Waiting => "waiting",
        Phase::Talking => "talking",
        Phase::OnHold => "on hold",
        Phase::InAcw => "in ACW",
    }
}

pub(super) fn render_calls(segs: &[OpenSegment]) -> String {
    if segs.is_empty() {
        return "no open calls\n".into();
    }
    use Align::{Left, Right};
    let columns = [
        ("call_id", Left),
        ("queue", Left),
        ("channel", Left),
        ("agent", Left),
        ("phase", Left),
        ("age", Right),
        ("in phase", Right),
        ("clock", Left),
        ("deadline", Left),
        ("left", Right),
    ];
    let cells: Vec<Vec<String>> = segs
        .iter()
        .map(|s| {
            vec![
                s.call_id.clone(),
                s.queue.clone(),
                s.channel.clone(),
                s.agent.clone().unwrap_or_else(|| "-".into()),
                phase_name(s.phase).into(),
                duration(s.age_ms),
                duration(s.phase_age_ms),
                clock_name(s.clock).into(),
                s.deadline_ms.map_or_else(|| "-".into(), instant),
                s.time_left_ms.map_or_else(|| "-".into(), duration),
            ]
        })
        .collect();
    render_table(&columns, &cells)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::cells;
    use super::*;

    #[test]
    fn calls_table_lists_every_field_and_says_when_empty() {
        assert_eq!(render_calls(&[]), "no open calls\n");
        let segs = [
            OpenSegment {
                call_id: "c-1".into(),
                queue: "support".into(),
                channel: "voice".into(),
                agent: None,
                phase: Phase::Waiting,
                age_ms: 65_000,
                phase_age_ms: 65_000,
                clock: WaitClock::Wall,
                deadline_ms: Some(1_772_755_200_000),
                time_left_ms: Some(-45_000),
            },
            OpenSegment {
                call_id: "call-0002".into(),
                queue: "sales".into(),
                channel: "chat".into(),
                agent: Some("alice".into()),
                phase: Phase::OnHold,
                age_ms: 3_725_000,
                phase_age_ms: 5_000,
                clock: WaitClock::BusinessHours,
                deadline_ms: None,
                time_left_ms: None,
            },
        ];
        let text = render_calls(&segs);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            cells(lines[0]),
            [
                "call_id", "queue", "channel", "agent", "phase", "age", "in phase", "clock",
                "deadline", "left"
            ]
        );
        assert_eq!(
            cells(lines[1]),
            [
                "c-1",
                "support",
                "voice",
                "-",
                "waiting",
                "1m05s",
                "1m05s",
                "wall",
                "2026-03-06T00:00:00Z",
                "-45s"
            ]
        );
        assert_eq!(
            cells(lines[2]),
            [
                "call-0002",
                "sales",
                "chat",
                "alice",
                "on hold",
                "1h02m05s",
                "5s",
                "business",
                "-",
                "-"
            ]
        );
        // Left-aligned columns start together.
        let at = |l: &str, s: &str| l.find(s).unwrap();
        assert_eq!(at(lines[1], "support"), at(lines[0], "queue"));
        assert_eq!(at(lines[2], "sales"), at(lines[0], "queue"));
        assert_eq!(at(lines[2], "alice"), at(lines[0], "agent"));
    }

    #[test]
    fn deadline_order_puts_the_most_overdue_first_and_the_rest_by_age() {
        let seg = |id: &str, age: i64, left: Option<i64>| OpenSegment {
            call_id: id.into(),
            queue: "q".into(),
            channel: "email".into(),
            agent: None,
            phase: if left.is_some() {
                Phase::Waiting
            } else {
                Phase::Talking
            },
            age_ms: age,
            phase_age_ms: age,
            clock: WaitClock::BusinessHours,
            deadline_ms: left.map(|l| 1_000_000 + l),
            time_left_ms: left,
        };
        let mut segs = vec![
            seg("a", 10, Some(5_000)),
            seg("b", 99, None),
            seg("c", 20, Some(-3_000)),
            seg("d", 50, None),
            seg("e", 30, Some(0)),
        ];
        sort_calls(&mut segs, CallsSort::Deadline);
        let ids: Vec<&str> = segs.iter().map(|s| s.call_id.as_str()).collect();
        assert_eq!(ids, ["c", "e", "a", "b", "d"]);
        sort_calls(&mut segs, CallsSort::Age);
        let ids: Vec<&str> = segs.iter().map(|s| s.call_id.as_str()).collect();
        assert_eq!(ids, ["b", "d", "e", "c", "a"]);
    }
}
