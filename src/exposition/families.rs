//! Which families `/metrics` shows and where each figure comes from: per queue, agent and
//! channel the engine's lifetime totals (counters, and for queues the wait and handle
//! histograms), per queue the real-time gauges and parameters, and the daemon's health from what
//! `status` reports. Names follow Prometheus conventions: `callmetrics_` prefix, seconds,
//! `_total` counters, ratios 0–1; docs/metrics.md lists them.

use std::collections::BTreeMap;

use super::text::{Exposition, Kind, Samples};
use crate::control::protocol::StatusReport;
use crate::engine::aggregate::Agg;
use crate::engine::lifetime::{LifeTotals, Lifetime, OUTCOMES, OVERFLOW_REASONS};
use crate::engine::{DimKind, MetricsRow, Outcome, SlaObjective};
use crate::sources::follow::{SourceState, SourceStatus};
use crate::upstream::SinkStatus;

/// What one scrape shows.
pub struct Scrape<'a> {
    pub lifetime: &'a Lifetime,
    /// One row per queue (any window): its real-time figures and parameters.
    pub queues_now: &'a [MetricsRow],
    pub status: &'a StatusReport,
    /// The `[[sla]]` objectives as `sla` shows them.
    pub sla: &'a [SlaObjective],
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// A counter of every key of a dimension: (name after `callmetrics_<dim>_`, help, value).
type CounterOf = (&'static str, &'static str, fn(&Agg) -> f64);

/// The counters shown for every key of every dimension.
const COUNTERS: [CounterOf; 13] = [
    ("offered_total", "Segments that left the queue (answered + abandoned + overflow), by where they count.", |a| a.offered as f64),
    ("answered_total", "Segments answered.", |a| a.answered as f64),
    ("answered_within_threshold_total", "Segments answered with a wait at most their queue's service-level threshold.", |a| a.answered_within as f64),
    ("abandoned_total", "Segments abandoned unanswered.", |a| a.abandoned as f64),
    ("abandoned_within_threshold_total", "Segments abandoned with a wait at most their queue's service-level threshold.", |a| a.abandoned_within as f64),
    ("short_abandoned_total", "Segments abandoned with a wait under their queue's short-abandon threshold.", |a| a.short_abandoned as f64),
    ("overflow_total", "Segments that left the queue unanswered for another reason (timeout, exit, transferred, callback).", |a| a.overflow as f64),
    ("handled_total", "Answered segments whose handling completed.", |a| a.handled as f64),
    ("answered_wait_seconds_total", "Sum of the waits of answered segments (ASA = this / answered).", |a| secs(a.wait_sum_ms)),
    ("abandoned_wait_seconds_total", "Sum of the waits of abandoned segments.", |a| secs(a.abandon_wait_sum_ms)),
    ("talk_seconds_total", "Sum of talk time of handled segments.", |a| secs(a.talk_sum_ms)),
    ("hold_seconds_total", "Sum of hold time of handled segments.", |a| secs(a.hold_sum_ms)),
    ("acw_seconds_total", "Sum of after-call work of handled segments.", |a| secs(a.acw_sum_ms)),
];

/// The exposition text of one scrape.
#[must_use]
pub fn render(s: &Scrape<'_>) -> String {
    let mut e = Exposition::default();
    dimensions(&mut e, s);
    histograms(&mut e, s.lifetime);
    realtime(&mut e, s.queues_now);
    super::sla::sla(&mut e, s.sla, s.queues_now);
    health(&mut e, s.status);
    e.finish()
}

/// Counters per queue, agent and channel. A queue known only from its real-time row shows zeros,
/// so its series exist before its first call leaves the queue.
fn dimensions(e: &mut Exposition, s: &Scrape<'_>) {
    let zero = LifeTotals::default();
    for kind in [DimKind::Queue, DimKind::Agent, DimKind::Channel] {
        // One lookup table a dimension: a scrape stays linear in the keys.
        let mut keys: BTreeMap<&str, &LifeTotals> = s
            .lifetime
            .iter()
            .filter(|(k, _, _)| *k == kind)
            .map(|(_, key, t)| (key, t))
            .collect();
        if kind == DimKind::Queue {
            for r in s.queues_now {
                keys.entry(r.key.as_str()).or_insert(&zero);
            }
        }
        let label = kind.name();
        for (suffix, help, value) in COUNTERS {
            let name = format!("callmetrics_{label}_{suffix}");
            e.family(&name, Kind::Counter, help, |out| {
                for (key, totals) in &keys {
                    out.value(&[(label, key)], value(&totals.agg));
                }
            });
        }
        if kind == DimKind::Queue {
            e.family(
                "callmetrics_queue_overflow_by_reason_total",
                Kind::Counter,
                "Overflows by the reason the segment left the queue; counted since this daemon kept reasons, so their sum may be below callmetrics_queue_overflow_total after an upgrade.",
                |out| {
                    for (key, totals) in &keys {
                        for (reason, n) in OVERFLOW_REASONS.iter().zip(totals.overflow_by_reason) {
                            out.value(&[(label, key), ("reason", reason.name())], n as f64);
                        }
                    }
                },
            );
        }
    }
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Answered => "answered",
        Outcome::Abandoned => "abandoned",
        Outcome::Overflow => "overflow",
    }
}

/// Per queue: waits by outcome and handle times, with the lifetime bounds.
fn histograms(e: &mut Exposition, l: &Lifetime) {
    let to_secs = |b: &[u64]| b.iter().map(|&ms| secs(ms)).collect::<Vec<f64>>();
    let (wait_bounds, handle_bounds) = (to_secs(l.wait_bounds()), to_secs(l.handle_bounds()));
    let queues = || {
        l.iter()
            .filter(|(k, _, _)| *k == DimKind::Queue)
            .filter_map(|(_, key, t)| t.hist.as_ref().map(|h| (key, t, h)))
    };
    e.family(
        "callmetrics_queue_wait_seconds",
        Kind::Histogram,
        "Waits of segments leaving the queue, by outcome; buckets include every band and queue threshold, le inclusive as the service level's wait <= threshold.",
        |out| {
            for (queue, t, h) in queues() {
                for (i, o) in OUTCOMES.into_iter().enumerate() {
                    let sum = match o {
                        Outcome::Answered => t.agg.wait_sum_ms,
                        Outcome::Abandoned => t.agg.abandon_wait_sum_ms,
                        Outcome::Overflow => t.overflow_wait_sum_ms,
                    };
                    out.histogram(
                        &[("queue", queue), ("outcome", outcome_name(o))],
                        &wait_bounds,
                        &h.wait[i],
                        secs(sum),
                    );
                }
            }
        },
    );
    e.family(
        "callmetrics_queue_handle_seconds",
        Kind::Histogram,
        "Handle times (talk + hold + after-call work) of handled segments.",
        |out| {
            for (queue, t, h) in queues() {
                let sum = t.agg.talk_sum_ms + t.agg.hold_sum_ms + t.agg.acw_sum_ms;
                out.histogram(&[("queue", queue)], &handle_bounds, &h.handle, secs(sum));
            }
        },
    );
}

/// A gauge per queue row: (name, help, value).
type GaugeOf = (&'static str, &'static str, fn(&MetricsRow) -> f64);

const QUEUE_GAUGES: [GaugeOf; 7] = [
    (
        "callmetrics_queue_waiting",
        "Calls waiting in the queue now.",
        |r| r.realtime.waiting_now as f64,
    ),
    (
        "callmetrics_queue_longest_wait_seconds",
        "Longest current wait in the queue (0 when none waits).",
        |r| secs(r.realtime.longest_wait_now_ms.unwrap_or(0)),
    ),
    (
        "callmetrics_queue_talking",
        "Calls of the queue talking to an agent now.",
        |r| r.realtime.talking_now as f64,
    ),
    (
        "callmetrics_queue_in_acw",
        "Calls of the queue in after-call work now.",
        |r| r.realtime.in_acw_now as f64,
    ),
    (
        "callmetrics_queue_threshold_seconds",
        "The queue's service-level threshold T.",
        |r| r.params.threshold_ms as f64 / 1000.0,
    ),
    (
        "callmetrics_queue_short_abandon_seconds",
        "The queue's short-abandon threshold S.",
        |r| r.params.short_abandon_ms as f64 / 1000.0,
    ),
    (
        "callmetrics_queue_target_ratio",
        "The queue's service-level target, 0-1.",
        |r| r.params.target,
    ),
];

fn realtime(e: &mut Exposition, rows: &[MetricsRow]) {
    for (name, help, value) in QUEUE_GAUGES {
        e.family(name, Kind::Gauge, help, |out| {
            for r in rows {
                out.value(&[("queue", &r.key)], value(r));
            }
        });
    }
}

/// One family of plain values: (labels, value) pairs.
fn simple<'a>(
    e: &mut Exposition,
    name: &str,
    kind: Kind,
    help: &str,
    values: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, f64)>,
) {
    e.family(name, kind, help, |out: &mut Samples| {
        for (labels, v) in values {
            out.value(&labels, v);
        }
    });
}

/// The daemon's own health, from what `status` reports. These counters start again at 0 when
/// the daemon restarts, except those the engine stores (duplicates, late, expired).
fn health(e: &mut Exposition, st: &StatusReport) {
    use Kind::{Counter, Gauge};
    let (i, g, u) = (&st.ingest, &st.engine, &st.upstream);
    simple(
        e,
        "callmetrics_build_info",
        Gauge,
        "Always 1; the version as a label.",
        [(vec![("version", st.version.as_str())], 1.0)],
    );
    let scalars: [(&str, Kind, &str, f64); 17] = [
        (
            "callmetrics_uptime_seconds",
            Gauge,
            "Seconds since the daemon started.",
            secs(st.uptime_ms),
        ),
        (
            "callmetrics_events_accepted_total",
            Counter,
            "Events accepted (stored and acknowledged) since the daemon started.",
            i.events_accepted as f64,
        ),
        (
            "callmetrics_events_duplicate_total",
            Counter,
            "Events ignored as duplicates.",
            g.duplicates as f64,
        ),
        (
            "callmetrics_events_late_total",
            Counter,
            "Events ignored as late (after the reorder grace, or for a finished call).",
            g.late as f64,
        ),
        (
            "callmetrics_segments_expired_total",
            Counter,
            "Segments closed as expired after max_call_duration.",
            g.expired_segments as f64,
        ),
        (
            "callmetrics_open_segments",
            Gauge,
            "Segments open now.",
            g.open_segments as f64,
        ),
        (
            "callmetrics_connections_open",
            Gauge,
            "Event connections open now.",
            i.connections_open as f64,
        ),
        (
            "callmetrics_connections_total",
            Counter,
            "Event connections accepted since the daemon started.",
            i.connections_total as f64,
        ),
        (
            "callmetrics_connections_refused_total",
            Counter,
            "Event connections refused at the connection limit.",
            i.connections_refused as f64,
        ),
        (
            "callmetrics_connections_evicted_total",
            Counter,
            "Idle event connections closed to make room.",
            i.connections_evicted as f64,
        ),
        (
            "callmetrics_partial_input_timeouts_total",
            Counter,
            "Event connections closed for input left half-sent too long.",
            i.partial_input_timeouts as f64,
        ),
        (
            "callmetrics_framing_errors_total",
            Counter,
            "Event connections closed for a framing error.",
            i.framing_errors as f64,
        ),
        (
            "callmetrics_store_size_bytes",
            Gauge,
            "Bytes the store takes on disk.",
            st.store.size_bytes as f64,
        ),
        (
            "callmetrics_store_max_bytes",
            Gauge,
            "The store's byte cap (store.max_bytes).",
            st.store.max_bytes as f64,
        ),
        (
            "callmetrics_store_logged_groups",
            Gauge,
            "Commit groups in the event log not yet covered by a checkpoint.",
            st.store.logged_groups as f64,
        ),
        (
            "callmetrics_outbox_records",
            Gauge,
            "Interval records in the outbox.",
            u.outbox_records as f64,
        ),
        (
            "callmetrics_outbox_dropped_records_total",
            Counter,
            "Records dropped because the outbox was full.",
            u.dropped_records as f64,
        ),
    ];
    for (name, kind, help, v) in scalars {
        simple(e, name, kind, help, [(vec![], v)]);
    }
    simple(
        e,
        "callmetrics_events_refused_total",
        Counter,
        "Events refused with an error reply since the daemon started, by reason.",
        i.events_rejected
            .iter()
            .map(|(r, n)| (vec![("reason", r.as_str())], *n as f64)),
    );
    let h = &st.history;
    simple(
        e,
        "callmetrics_history_entries",
        Gauge,
        "Aggregates in the history on disk, by grain (interval or day).",
        [
            (vec![("grain", "interval")], h.interval_entries as f64),
            (vec![("grain", "day")], h.day_entries as f64),
        ],
    );
    simple(
        e,
        "callmetrics_history_bytes",
        Gauge,
        "Bytes of the history on disk, by grain (interval or day); history.max_bytes bounds their sum.",
        [
            (vec![("grain", "interval")], h.interval_bytes as f64),
            (vec![("grain", "day")], h.day_bytes as f64),
        ],
    );
    type PerSink = (&'static str, Kind, &'static str, fn(&SinkStatus) -> u64);
    let per_sink: [PerSink; 5] = [
        (
            "callmetrics_sink_backlog_records",
            Gauge,
            "Records the sink has yet to deliver.",
            |s| s.backlog_records,
        ),
        (
            "callmetrics_sink_backlog_bytes",
            Gauge,
            "Bytes of the records the sink has yet to deliver.",
            |s| s.backlog_bytes,
        ),
        (
            "callmetrics_sink_delivered_records_total",
            Counter,
            "Records the sink delivered since the daemon started.",
            |s| s.delivered_records,
        ),
        (
            "callmetrics_sink_retries_total",
            Counter,
            "Failed delivery attempts retried since the daemon started.",
            |s| s.retries,
        ),
        (
            "callmetrics_sink_dead_letters",
            Gauge,
            "Records the receiver refused for good, parked.",
            |s| s.dead_letters,
        ),
    ];
    for (name, kind, help, f) in per_sink {
        simple(
            e,
            name,
            kind,
            help,
            u.sinks
                .iter()
                .map(|s| (vec![("sink", s.name.as_str())], f(s) as f64)),
        );
    }
    simple(
        e,
        "callmetrics_source_lines_total",
        Counter,
        "Lines an in-daemon source read since the daemon started.",
        st.sources
            .iter()
            .map(|s| (vec![("source", s.name.as_str())], s.lines_read as f64)),
    );
    simple(
        e,
        "callmetrics_source_lag_seconds",
        Gauge,
        "Now minus the time of the last line an in-daemon source read (absent before its first line).",
        st.sources.iter().filter_map(|s| {
            s.lag_seconds
                .map(|lag| (vec![("source", s.name.as_str())], lag))
        }),
    );
    let event_socket = || {
        st.sources.iter().filter(|s| {
            matches!(
                s.state,
                SourceState::Connecting | SourceState::Connected | SourceState::Disconnected
            )
        })
    };
    simple(
        e,
        "callmetrics_source_connected",
        Gauge,
        "1 while an event-socket source is connected and subscribed, else 0.",
        event_socket().map(|s| {
            (
                vec![("source", s.name.as_str())],
                f64::from(u8::from(s.state == SourceState::Connected)),
            )
        }),
    );
    type PerSource = (&'static str, &'static str, fn(&SourceStatus) -> u64);
    let per_source: [PerSource; 2] = [
        (
            "callmetrics_source_reconnects_total",
            "Connections an event-socket source made after its first since the daemon started.",
            |s| s.reconnects,
        ),
        (
            "callmetrics_source_expired_after_disconnect_total",
            "Segments of an event-socket source open when its connection was lost, never continued, and expired after max_call_duration.",
            |s| s.expired_after_disconnect,
        ),
    ];
    for (name, help, f) in per_source {
        simple(
            e,
            name,
            Counter,
            help,
            event_socket().map(|s| (vec![("source", s.name.as_str())], f(s) as f64)),
        );
    }
}
