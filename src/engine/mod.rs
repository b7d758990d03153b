//! The metrics engine: pairs events into segments and folds them into bucketed aggregates.
//! Pure: time is passed in, no clock reads and no I/O, so every result is reproducible.
//!
//! Life of a segment: its events are held per call ([`pending`]); once its queue facts (answer, or
//! unanswered end) are known and `reorder_grace` has passed since the last event defining them,
//! they are folded into the buckets of the time it left the queue; its handle facts likewise at
//! completion (wrap-up, or end once `wrapup_timeout` has passed in the source's clock). Until
//! folded, queries count it provisionally, so answers are exact at every moment. A call whose facts
//! are all folded is dropped and remembered for `late_event_window` so late duplicates are
//! recognised.
//!
//! State is sized by keys × buckets plus the calls not yet folded: buckets are packed per time
//! slice ([`slices`]), long windows keep running totals per key ([`totals`]), and nothing is kept
//! per call once its facts are folded but a hash in the bounded remembered set.
//!
//! This file holds the [`Engine`] type, its construction and reconfiguration, and its counters.
//! Its work is spread by concern: `intake.rs` (admitting and taking events), `fold.rs` (time
//! moving forward, settled facts folded into buckets), `expiry.rs` (expiring old calls, dropping
//! old buckets; `expiry_index.rs` orders the calls that may expire), `wait_rules.rs` (each
//! queue's and channel's threshold, `max_call_duration` and wait clock), `query.rs` (metrics rows and open calls), `buckets.rs` (buckets read from
//! outside, for interval records), `checkpoint.rs` and `legacy.rs` (the durable form, and
//! importing layout 1); `settings.rs` is what it reads from the config. `sla.rs` counts the
//! `[[sla]]` objectives per period, `sla_report.rs` judges them for `sla`, `callbacks.rs` holds
//! the callback requests of the `callbacks_within` objectives and `callbacks_report.rs` lists
//! them for `callbacks`, `staffing.rs` adds Erlang C agents to queue rows, `tag_dims.rs` keeps interval buckets per
//! configured tag (`history.tag_dimensions`).

pub mod aggregate;
mod buckets;
mod callbacks;
pub mod callbacks_report;
mod checkpoint;
mod dense;
mod expiry;
mod expiry_index;
mod fold;
mod intake;
pub mod keys;
mod legacy;
pub mod lifetime;
mod packed;
mod packed_call;
mod pending;
mod query;
mod remembered;
pub mod report;
mod row_json;
mod running;
pub mod segment;
pub mod service_levels;
mod settings;
pub mod sketch;
mod sla;
pub mod sla_report;
mod slices;
#[cfg(test)]
mod slow_tests;
mod staffing;
mod tag_dims;
mod totals;
mod varint;
mod wait_rules;
pub mod window;

use std::collections::{BTreeMap, BTreeSet};

pub use aggregate::{Agg, Figures, HandleFacts, Outcome, QueueFacts};
pub use callbacks::judged_counts as callback_judged_counts;
pub use callbacks_report::{CallbackObjective, CallbacksReport, OpenCallback};
pub use checkpoint::{slice_key, Checkpoint, RestoreError, StatePart};
pub use keys::{BucketId, Dim};
pub use report::{
    DimKind, EngineStats, MetricsQuery, MetricsRow, OpenSegment, QueryError, Realtime, RowParams,
    StateBytes,
};
pub use sla_report::{SlaCounts, SlaObjective, SlaPastPeriod};
pub use staffing::{agents_for, STAFFING_WINDOW_MS};
pub use window::{Calendar, Tier, Window, FINE_BUCKET_MS, FINE_SPAN_MS};

use thiserror::Error;

use crate::config::Config;
use keys::Keys;
use lifetime::{wait_bounds_of, Lifetime};
use packed::{BandSets, Work};
use pending::PendingCalls;
use remembered::Remembered;
use settings::{calendar, Settings};
use slices::TierSlices;
use totals::Totals;

/// What happened to an accepted event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Accepted,
    /// Same call, type and timestamp as one already here: ignored.
    Duplicate,
    /// About facts already folded in, or a call already finished: ignored and counted.
    Late,
}

/// Why an event was refused at admission; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Rejection {
    #[error("too many open segments: {0} are open (limits.max_open_segments)")]
    OpenSegmentLimit(usize),
}

/// Counters kept by the engine (the rest of `EngineStats` is computed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Counters {
    accepted: u64,
    duplicates: u64,
    late: u64,
    rejected_open_segment_limit: u64,
    expired_segments: u64,
    expired_orphan_events: u64,
    overflowed: BTreeMap<String, u64>,
}

/// The metrics engine; see the module documentation.
pub struct Engine {
    s: Settings,
    cal: Calendar,
    now_ms: i64,
    next_scan_ms: i64,
    counters: Counters,
    keys: Keys,
    sets: BandSets,
    fine: TierSlices,
    interval: TierSlices,
    totals: Totals,
    /// Running totals of the staffing window over the minute buckets (see `staffing.rs`).
    fine_totals: Totals,
    /// Cumulative totals since the store was created, per key (`/metrics` counters).
    lifetime: Lifetime,
    pending: PendingCalls,
    remembered: Remembered,
    open_segments: usize,
    /// Slices changed since the last checkpoint.
    dirty: BTreeSet<(Tier, i64)>,
    /// Scratch buffers for folding into packed buckets.
    work: Work,
    /// Something changed since the last checkpoint (events, folds, expiries, forgotten calls).
    changed: bool,
    /// The `[[sla]]` objectives and their counters per period.
    sla: sla::SlaBook,
    /// The callback requests of the `callbacks_within` objectives.
    callbacks: callbacks::Callbacks,
    /// When each call with an open segment (or orphan events) may expire.
    expiry: expiry_index::ExpiryIndex,
}

impl Engine {
    #[must_use]
    pub fn new(cfg: &Config) -> Engine {
        let s = Settings::from_config(cfg);
        let cal = calendar(cfg);
        let totals = Totals::build(
            &s.long_windows,
            &cal,
            &TierSlices::default(),
            &BandSets::default(),
            0,
        );
        let lifetime = Lifetime::new(&lifetime_bounds(&s));
        let mut e = Engine {
            s,
            cal,
            now_ms: 0,
            next_scan_ms: 0,
            counters: Counters::default(),
            keys: Keys::default(),
            sets: BandSets::default(),
            fine: TierSlices::default(),
            interval: TierSlices::default(),
            totals,
            fine_totals: Totals::default(),
            lifetime,
            pending: PendingCalls::default(),
            remembered: Remembered::default(),
            open_segments: 0,
            dirty: BTreeSet::new(),
            work: Work::default(),
            changed: false,
            sla: sla::SlaBook::new(cfg),
            callbacks: callbacks::Callbacks::new(cfg),
            expiry: expiry_index::ExpiryIndex::default(),
        };
        // The staffing window's totals (the long windows' are built above).
        e.rebuild_totals();
        e
    }

    /// Applies a new config: parameters apply to what is folded from now on.
    pub fn reconfigure(&mut self, cfg: &Config) {
        self.s = Settings::from_config(cfg);
        self.cal = calendar(cfg);
        self.rebuild_totals();
        self.lifetime.ensure_bounds(&lifetime_bounds(&self.s));
        self.sla.reconfigure(cfg, self.now_ms);
        self.callbacks.reconfigure(cfg);
        // Expiries follow each queue's and channel's `max_call_duration` and clock.
        self.rebuild_expiry();
        self.changed = true;
    }

    /// Cumulative totals per key since the store was created (see [`lifetime`]).
    #[must_use]
    pub fn lifetime(&self) -> &Lifetime {
        &self.lifetime
    }

    fn rebuild_totals(&mut self) {
        self.totals = Totals::build(
            &self.s.long_windows,
            &self.cal,
            &self.interval,
            &self.sets,
            self.now_ms,
        );
        let staffing: Vec<Window> = self
            .staffing_window()
            .map(|w| Window::Trailing(crate::units::Millis(w)))
            .into_iter()
            .collect();
        self.fine_totals = Totals::build(&staffing, &self.cal, &self.fine, &self.sets, self.now_ms);
    }

    #[must_use]
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    #[must_use]
    pub fn calendar(&self) -> &Calendar {
        &self.cal
    }

    #[must_use]
    pub fn stats(&self) -> EngineStats {
        let c = &self.counters;
        EngineStats {
            accepted: c.accepted,
            duplicates: c.duplicates,
            late: c.late,
            rejected_open_segment_limit: c.rejected_open_segment_limit,
            expired_segments: c.expired_segments,
            expired_orphan_events: c.expired_orphan_events,
            open_segments: self.open_segments as u64,
            open_calls: self.pending.len() as u64,
            remembered_calls: self.remembered.len() as u64,
            overflowed: c.overflowed.clone(),
            keys: [DimKind::Queue, DimKind::Agent, DimKind::Channel]
                .into_iter()
                // Tag keys only where some are configured (`history.tag_dimensions`).
                .chain((!self.s.tag_dims.is_empty()).then_some(DimKind::Tag))
                .map(|k| (k.name().to_string(), self.keys.count(k) as u64))
                .collect(),
            state: self.state_bytes(),
            open_callbacks: self.callbacks.open_count() as u64,
            callbacks_refused_limit: self.callbacks.refused_limit,
            callbacks_unmatched: self.callbacks.unmatched,
            callbacks_forgotten: self.callbacks.forgotten,
        }
    }

    /// The engine's own accounting of the memory its state takes.
    #[must_use]
    pub fn state_bytes(&self) -> StateBytes {
        StateBytes {
            buckets: (self.fine.buckets() + self.interval.buckets()) as u64,
            bucket_bytes: (self.fine.bytes() + self.interval.bytes()) as u64,
            total_bytes: (self.totals.heap_bytes()
                + self.fine_totals.heap_bytes()
                + self.lifetime.heap_bytes()
                + self.sla.heap_bytes()
                + self.callbacks.heap_bytes()) as u64,
            pending_bytes: (self.pending.heap_bytes() + self.expiry.heap_bytes()) as u64,
            remembered_bytes: self.remembered.heap_bytes() as u64,
            key_bytes: self.keys.heap_bytes() as u64,
        }
    }

    /// Whether anything changed since the last checkpoint (so one is worth writing).
    #[must_use]
    pub fn has_changes(&self) -> bool {
        self.changed || !self.dirty.is_empty()
    }

    /// Number of open segments (for the intake limit and status).
    #[must_use]
    pub fn open_segment_count(&self) -> usize {
        self.open_segments
    }
}

/// The lifetime wait histogram's bounds the settings ask for: bands and every queue threshold.
fn lifetime_bounds(s: &Settings) -> Vec<u64> {
    wait_bounds_of(
        &s.bands,
        std::iter::once(s.defaults)
            .chain(s.queues.values().copied())
            // Channel thresholds too (slow channels), so `le` has a bucket at each T.
            .chain(s.wait.all_params()),
    )
}

#[cfg(test)]
mod callbacks_tests;
#[cfg(test)]
mod sla_tests;
#[cfg(test)]
mod tag_tests;
#[cfg(test)]
mod tests;
