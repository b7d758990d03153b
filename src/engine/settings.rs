//! What the engine reads from the config, resolved once per (re)configuration: limits, bands,
//! windows, queue parameters, retention, and the calendar buckets are aligned to.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::keys::{kind_index, KINDS};
use super::report::DimKind;
use super::wait_rules::WaitRules;
use super::window::{Calendar, Window, FINE_SPAN_MS};
use crate::config::Config;
use crate::units::{Millis, QueueParams};

/// What the engine reads from the config; replaced whole on reload.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) grace_ms: i64,
    pub(super) wrapup_timeout_ms: i64,
    pub(super) max_call_ms: i64,
    pub(super) late_window_ms: i64,
    pub(super) max_remembered: usize,
    pub(super) max_open: usize,
    pub(super) max_keys: [usize; KINDS],
    /// Shared, so folding a segment does not copy the list.
    pub(super) bands: Arc<[u64]>,
    pub(super) windows: Vec<Millis>,
    /// Windows served from interval buckets, which keep running totals: long trailing ones, `today`.
    pub(super) long_windows: Vec<Window>,
    pub(super) defaults: QueueParams,
    pub(super) queues: BTreeMap<String, QueueParams>,
    pub(super) keep_interval_ms: i64,
    /// Each queue's and channel's threshold, `max_call_duration` and wait clock.
    pub(super) wait: WaitRules,
    /// The tag names interval buckets are also kept by (`history.tag_dimensions`).
    pub(super) tag_dims: Vec<String>,
}

impl Settings {
    pub(super) fn from_config(c: &Config) -> Self {
        let m = &c.metrics;
        let longest = m.windows.iter().map(|w| w.0).max().unwrap_or(0);
        let mut bands: Vec<u64> = m.bands.iter().map(|b| b.0 as u64).collect();
        bands.sort_unstable();
        bands.dedup();
        Settings {
            grace_ms: m.reorder_grace.0,
            wrapup_timeout_ms: m.wrapup_timeout.0,
            max_call_ms: m.max_call_duration.0,
            late_window_ms: m.late_event_window.0,
            max_remembered: m.max_remembered_calls,
            max_open: c.limits.max_open_segments,
            max_keys: [
                1,
                m.max_queues,
                m.max_agents,
                m.max_channels,
                c.history.max_tag_values,
            ],
            bands: bands.into(),
            windows: m.windows.clone(),
            long_windows: m
                .windows
                .iter()
                .filter(|w| w.0 > FINE_SPAN_MS)
                .map(|w| Window::Trailing(*w))
                .chain([Window::Today])
                .collect(),
            defaults: c.defaults,
            queues: c
                .queues
                .keys()
                .map(|q| (q.clone(), c.queue_params(q)))
                .collect(),
            // `today` can reach back 25 h on a fall-back day; keep one interval more for late events.
            keep_interval_ms: longest.max(25 * 3_600_000) + m.interval.0,
            wait: WaitRules::from_config(c),
            tag_dims: c.history.tag_dimensions.clone(),
        }
    }

    pub(super) fn params(&self, queue: &str) -> QueueParams {
        self.queues.get(queue).copied().unwrap_or(self.defaults)
    }

    pub(super) fn max_keys(&self, kind: DimKind) -> usize {
        self.max_keys[kind_index(kind)]
    }
}

/// The calendar buckets are aligned to: the configured time zone and interval.
pub(super) fn calendar(cfg: &Config) -> Calendar {
    Calendar {
        tz: cfg.general.time_zone.zone(),
        interval_ms: cfg.metrics.interval.0,
    }
}
