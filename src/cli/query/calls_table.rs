//! The `calls` table: the open segments, one row each.

use super::format::duration;
use super::table::{render_table, Align};
use crate::engine::segment::Phase;
use crate::engine::OpenSegment;

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
            },
            OpenSegment {
                call_id: "call-0002".into(),
                queue: "sales".into(),
                channel: "chat".into(),
                agent: Some("alice".into()),
                phase: Phase::OnHold,
                age_ms: 3_725_000,
                phase_age_ms: 5_000,
            },
        ];
        let text = render_calls(&segs);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            cells(lines[0]),
            ["call_id", "queue", "channel", "agent", "phase", "age", "in phase"]
        );
        assert_eq!(
            cells(lines[1]),
            ["c-1", "support", "voice", "-", "waiting", "1m05s", "1m05s"]
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
                "5s"
            ]
        );
        // Left-aligned columns start together.
        let at = |l: &str, s: &str| l.find(s).unwrap();
        assert_eq!(at(lines[1], "support"), at(lines[0], "queue"));
        assert_eq!(at(lines[2], "sales"), at(lines[0], "queue"));
        assert_eq!(at(lines[2], "alice"), at(lines[0], "agent"));
    }
}
