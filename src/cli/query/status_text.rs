//! The `status` text: the daemon's health and counters, one labelled line each. A sink's last
//! delivery and last error are shown as time ago, so this renderer alone reads the wall clock.

use std::fmt::Write as _;

use super::format::{bytes, counts, duration};
use crate::control::protocol::StatusReport;

pub(super) fn render_status(r: &StatusReport) -> String {
    let (i, e, s, l) = (&r.ingest, &r.engine, &r.store, &r.limits);
    let rejected: u64 = i.events_rejected.values().sum();
    let rejected = if rejected == 0 {
        "0 rejected".to_string()
    } else {
        format!("{rejected} rejected ({})", counts(&i.events_rejected))
    };
    let store_share = if s.max_bytes > 0 {
        format!(
            " ({:.1} %)",
            s.size_bytes as f64 * 100.0 / s.max_bytes as f64
        )
    } else {
        String::new()
    };
    let checkpoint = s.last_checkpoint_age_ms.map_or_else(
        || "no checkpoint yet".into(),
        |ms| format!("last checkpoint {} ago", duration(ms)),
    );
    let mut lines: Vec<(&str, String)> = vec![
        ("event socket", r.event_socket.clone()),
        ("control socket", r.control_socket.clone()),
        ("admin socket", r.admin_socket.clone()),
        ("time zone", r.time_zone.clone()),
        ("windows", r.windows.join(", ")),
        (
            "events",
            format!("{} accepted, {rejected}", i.events_accepted),
        ),
        (
            "connections",
            format!(
                "{} open, {} total, {} refused, {} closed idle to make room, {} closed half-sent, {} framing errors",
                i.connections_open,
                i.connections_total,
                i.connections_refused,
                i.connections_evicted,
                i.partial_input_timeouts,
                i.framing_errors
            ),
        ),
        (
            "engine",
            format!(
                "{} accepted, {} duplicates, {} late, {} refused at the open-segment limit",
                e.accepted, e.duplicates, e.late, e.rejected_open_segment_limit
            ),
        ),
        (
            "open now",
            format!("{} segments in {} calls", e.open_segments, e.open_calls),
        ),
        (
            "expired",
            format!(
                "{} segments, {} orphan events",
                e.expired_segments, e.expired_orphan_events
            ),
        ),
        (
            "remembered",
            format!("{} finished calls", e.remembered_calls),
        ),
        ("keys", counts(&e.keys)),
    ];
    let callbacks_seen = e.open_callbacks
        + e.callbacks_refused_limit
        + e.callbacks_unmatched
        + e.callbacks_forgotten;
    if callbacks_seen > 0 {
        lines.push((
            "callbacks",
            format!(
                "{} requests open, {} refused at the open-callback limit, {} callback events matching no request, {} forgotten with their period",
                e.open_callbacks, e.callbacks_refused_limit, e.callbacks_unmatched, e.callbacks_forgotten
            ),
        ));
    }
    if !e.overflowed.is_empty() {
        lines.push((
            "over key limit",
            format!("{} (segments counted under (other))", counts(&e.overflowed)),
        ));
    }
    lines.push((
        "store",
        format!(
            "{}: {} of {}{store_share}, {} groups logged, {checkpoint}",
            s.path,
            bytes(s.size_bytes),
            bytes(s.max_bytes),
            s.logged_groups
        ),
    ));
    lines.push((
        "limits",
        format!(
            "line {}, frame {}, strings {}, {} tags, {} events per batch, {} connections, {} open segments, half-sent input closed after {}",
            bytes(l.max_line_bytes as u64),
            bytes(l.max_frame_bytes as u64),
            bytes(l.max_string_bytes as u64),
            l.max_tags,
            l.max_batch_events,
            l.max_connections,
            l.max_open_segments,
            l.partial_input_timeout
        ),
    ));
    let h = &r.history;
    lines.push((
        "history",
        format!(
            "{} interval entries ({}, {} days kept), {} daily entries ({}, {} days kept); {} of {}; complete until {}",
            h.interval_entries,
            bytes(h.interval_bytes),
            h.intervals_days,
            h.day_entries,
            bytes(h.day_bytes),
            h.daily_days,
            bytes(h.interval_bytes + h.day_bytes),
            bytes(h.max_bytes),
            h.complete_until_ms.map_or_else(
                || "nothing closed yet".to_string(),
                |ms| jiff::Timestamp::from_millisecond(ms)
                    .map_or_else(|_| ms.to_string(), |t| t.to_string()),
            )
        ),
    ));
    let u = &r.upstream;
    if u.sinks.is_empty() {
        lines.push(("upstream", "no sinks configured".into()));
    } else {
        lines.push((
            "upstream",
            format!(
                "host {}; outbox {} records, {}; {} dropped when full",
                u.host_id,
                u.outbox_records,
                bytes(u.outbox_bytes),
                u.dropped_records
            ),
        ));
        for sink in &u.sinks {
            let success = sink.last_success_ms.map_or_else(
                || "never delivered".to_string(),
                |ms| {
                    format!(
                        "last delivery {} ago",
                        duration(crate::daemon::wall_ms() - ms)
                    )
                },
            );
            let oldest = sink.oldest_waiting_ms.map_or_else(String::new, |ms| {
                format!(", oldest waiting {}", duration(ms))
            });
            let error = sink.last_error.as_ref().map_or_else(String::new, |e| {
                let ago = sink.last_error_ms.map_or_else(String::new, |ms| {
                    format!(" {} ago", duration(crate::daemon::wall_ms() - ms))
                });
                format!("; last error{ago}: {}", crate::printable::for_terminal(e))
            });
            lines.push((
                "  sink",
                format!(
                    "{} ({} {}): backlog {} records, {}{oldest}; {} delivered, {} retries, {} dead letters; {success}{error}",
                    sink.name,
                    sink.kind,
                    sink.url,
                    sink.backlog_records,
                    bytes(sink.backlog_bytes),
                    sink.delivered_records,
                    sink.retries,
                    sink.dead_letters
                ),
            ));
        }
    }
    for src in &r.sources {
        lines.push(("source", source_line(src)));
    }
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = format!(
        "callmetrics {}, up {}\n",
        r.version,
        duration(r.uptime_ms as i64)
    );
    for (k, v) in lines {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "{k:<width$}  {v}");
    }
    out
}

/// One in-daemon source: what it reads, where it is, how far behind, what it made of the lines.
fn source_line(s: &crate::sources::follow::SourceStatus) -> String {
    use crate::sources::follow::SourceState;
    let state = match s.state {
        SourceState::Following => "following",
        SourceState::WaitingForFile => "waiting for the file",
        SourceState::Error => "error",
        SourceState::Connecting | SourceState::Connected | SourceState::Disconnected => {
            return event_socket_line(s);
        }
    };
    let lag = s.lag_seconds.map_or_else(
        || "no line read yet".to_string(),
        |l| format!("lag {}", duration((l * 1000.0) as i64)),
    );
    let (refused, skipped) = refused_and_skipped(s);
    let error = last_error(s);
    format!(
        "{} ({} {}): {state}, byte {} of inode {}, {} not yet read, {lag}; {} lines, {} events ({} stored{refused}); {skipped}; {} rotations, {} truncations, {} replaced{error}",
        s.name,
        s.kind,
        crate::printable::for_terminal(&s.path),
        s.position,
        s.inode,
        bytes(s.backlog_bytes),
        s.lines_read,
        s.events_mapped,
        s.events_stored,
        s.rotations,
        s.truncations,
        s.replaced,
    )
}

/// What a source made of its input: events (lines) mapped, stored, refused, skipped.
fn refused_and_skipped(s: &crate::sources::follow::SourceStatus) -> (String, String) {
    let refused: u64 = s.events_refused.values().sum();
    let refused = if refused == 0 {
        String::new()
    } else {
        format!(", {refused} refused ({})", counts(&s.events_refused))
    };
    let skipped: Vec<String> = s
        .skipped
        .iter()
        .map(|(reason, verbs)| {
            let n: u64 = verbs.values().sum();
            format!("{reason} {n} ({})", counts(verbs))
        })
        .collect();
    let skipped = if skipped.is_empty() {
        "none skipped".to_string()
    } else {
        format!("skipped {}", skipped.join(", "))
    };
    (refused, skipped)
}

/// `; last error 5s ago: …`, or nothing.
fn last_error(s: &crate::sources::follow::SourceStatus) -> String {
    s.last_error.as_ref().map_or_else(String::new, |e| {
        let ago = s.last_error_ms.map_or_else(String::new, |ms| {
            format!(" {} ago", duration(crate::daemon::wall_ms() - ms))
        });
        format!("; last error{ago}: {}", crate::printable::for_terminal(e))
    })
}

/// An event-socket source: its connection, how far behind, what it made of the events, and
/// what became of the segments open when a connection was lost.
fn event_socket_line(s: &crate::sources::follow::SourceStatus) -> String {
    use crate::sources::follow::SourceState;
    let now = crate::daemon::wall_ms();
    let state = match (s.state, s.connected_since_ms, s.next_attempt_ms) {
        (SourceState::Connected, Some(since), _) => {
            format!("connected for {}", duration(now - since))
        }
        (SourceState::Connected, None, _) => "connected".to_string(),
        (state, _, next) => {
            let what = if state == SourceState::Connecting {
                "not connected yet"
            } else {
                "disconnected"
            };
            next.map_or_else(
                || what.to_string(),
                |at| format!("{what}, next attempt in {}", duration((at - now).max(0))),
            )
        }
    };
    let lag = s.lag_seconds.map_or_else(
        || "no event read yet".to_string(),
        |l| format!("lag {}", duration((l * 1000.0) as i64)),
    );
    let (refused, skipped) = refused_and_skipped(s);
    format!(
        "{} ({} {}): {state}, {lag}; {} events read, {} mapped ({} stored{refused}); {skipped}; {} reconnects; open at a disconnect {}: {} continued, {} expired, {} awaited{}",
        s.name,
        s.kind,
        crate::printable::for_terminal(&s.path),
        s.lines_read,
        s.events_mapped,
        s.events_stored,
        s.reconnects,
        s.open_at_disconnect,
        s.continued_after_reconnect,
        s.expired_after_disconnect,
        s.awaiting_after_disconnect,
        last_error(s),
    )
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::report;
    use super::*;

    #[test]
    fn status_text_names_every_counter() {
        let text = render_status(&report());
        for want in [
            "callmetrics 0.1.0, up 1h02m05s",
            "/run/callmetrics/events.sock",
            "/run/callmetrics/control.sock",
            "Europe/Paris",
            "5m, 15m",
            "1200 accepted, 3 rejected (invalid 2, store_full 1)",
            "2 open, 40 total, 1 refused, 4 closed idle to make room, 5 closed half-sent, 3 framing errors",
            "5 duplicates, 7 late",
            "9 segments in 8 calls",
            "4 segments, 6 orphan events",
            "agent 11",
            "256.0 MiB of 1.0 GiB (25.0 %)",
            "last checkpoint 12s ago",
            "line 64.0 KiB",
            "100000 open segments, half-sent input closed after 30s",
            "pbx1 (asterisk_queue_log /var/log/asterisk/queue_log): following, byte 4096 of inode 77, 120 B not yet read, lag 3s; 40 lines, 30 events (28 stored, 2 refused (clock_ahead 2)); skipped member_or_config 3 (ADDMEMBER 1, PAUSE 2); 1 rotations, 1 truncations, 0 replaced",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        // Values start in one column.
        let starts: Vec<usize> = text
            .lines()
            .skip(1)
            .map(|l| l.find("  ").unwrap() + l[l.find("  ").unwrap()..].find(|c| c != ' ').unwrap())
            .collect();
        assert!(starts.windows(2).all(|w| w[0] == w[1]), "{text}");
    }
}
