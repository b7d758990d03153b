//! Test data shared by the renderers' and the subcommands' tests: queries, rows, a status
//! report, and readers of rendered table lines.

use std::collections::BTreeMap;

use crate::config::{Formula, LimitsConfig};
use crate::control::protocol::{StatusReport, StoreStatus};
use crate::engine::{
    Agg, DimKind, EngineStats, Figures, MetricsQuery, MetricsRow, Realtime, RowParams,
};
use crate::ingest::IngestCounters;

pub(in crate::cli) fn query(by: DimKind) -> MetricsQuery {
    MetricsQuery {
        window: Some("15m".into()),
        by,
        key: None,
    }
}

pub(in crate::cli) fn row(key: &str, counts: Agg, realtime: Realtime) -> MetricsRow {
    MetricsRow {
        window: "15m".into(),
        dimension: DimKind::Queue,
        key: key.into(),
        figures: Figures::of(&counts, Formula::Offered),
        counts,
        params: RowParams {
            threshold_ms: 20_000,
            short_abandon_ms: 5_000,
            formula: Formula::Offered,
            target: 0.8,
        },
        realtime,
    }
}

/// 10 offered: 8 answered (all within T, 12 s wait each on average), 2 abandoned (not short).
pub(in crate::cli) fn busy() -> Agg {
    Agg {
        offered: 10,
        answered: 8,
        answered_within: 8,
        abandoned: 2,
        handled: 8,
        wait_sum_ms: 8 * 12_000,
        talk_sum_ms: 8 * 90_000,
        ..Default::default()
    }
}

/// [`busy`] at `support`, with 3 waiting (the longest 61.5 s), 4 talking and 1 in after-call work.
pub(in crate::cli) fn busy_support() -> MetricsRow {
    row(
        "support",
        busy(),
        Realtime {
            waiting_now: 3,
            longest_wait_now_ms: Some(61_500),
            talking_now: 4,
            in_acw_now: 1,
            agents_needed: None,
        },
    )
}

/// The cells of a rendered table line, split on runs of 2+ spaces.
pub(super) fn cells(line: &str) -> Vec<&str> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

/// Char column where each cell of `line` ends: a non-blank followed by two blanks or the end.
pub(super) fn cell_ends(line: &str) -> Vec<usize> {
    let chars: Vec<char> = line.chars().chain("  ".chars()).collect();
    (0..chars.len() - 2)
        .filter(|&i| chars[i] != ' ' && chars[i + 1] == ' ' && chars[i + 2] == ' ')
        .collect()
}

pub(super) fn report() -> StatusReport {
    StatusReport {
        version: "0.1.0".into(),
        uptime_ms: 3_725_000,
        event_socket: "/run/callmetrics/events.sock".into(),
        control_socket: "/run/callmetrics/control.sock".into(),
        admin_socket: "/run/callmetrics/admin.sock".into(),
        time_zone: "Europe/Paris".into(),
        windows: vec!["5m".into(), "15m".into()],
        ingest: IngestCounters {
            connections_open: 2,
            connections_total: 40,
            connections_refused: 1,
            connections_evicted: 4,
            partial_input_timeouts: 5,
            framing_errors: 3,
            events_accepted: 1200,
            events_rejected: BTreeMap::from([("invalid".into(), 2), ("store_full".into(), 1)]),
        },
        engine: EngineStats {
            accepted: 1190,
            duplicates: 5,
            late: 7,
            expired_segments: 4,
            expired_orphan_events: 6,
            open_segments: 9,
            open_calls: 8,
            overflowed: BTreeMap::from([("agent".into(), 11)]),
            ..Default::default()
        },
        store: StoreStatus {
            path: "/var/lib/callmetrics/store".into(),
            size_bytes: 256 << 20,
            max_bytes: 1 << 30,
            logged_groups: 77,
            last_checkpoint_age_ms: Some(12_000),
        },
        limits: LimitsConfig::default(),
        upstream: Default::default(),
        sources: vec![crate::sources::follow::SourceStatus {
            name: "pbx1".into(),
            kind: "asterisk_queue_log".into(),
            path: "/var/log/asterisk/queue_log".into(),
            state: crate::sources::follow::SourceState::Following,
            inode: 77,
            position: 4096,
            backlog_bytes: 120,
            lines_read: 40,
            events_mapped: 30,
            events_stored: 28,
            events_refused: BTreeMap::from([("clock_ahead".into(), 2)]),
            skipped: BTreeMap::from([(
                "member_or_config".into(),
                BTreeMap::from([("ADDMEMBER".into(), 1), ("PAUSE".into(), 2)]),
            )]),
            rotations: 1,
            truncations: 1,
            lag_seconds: Some(3.2),
            ..Default::default()
        }],
        history: crate::history::HistoryStatus {
            interval_entries: 9_600,
            interval_bytes: 2_400_000,
            day_entries: 100,
            day_bytes: 30_000,
            max_bytes: 256 << 20,
            intervals_days: 35,
            daily_days: 400,
            complete_until_ms: Some(1_795_334_400_000),
        },
    }
}
