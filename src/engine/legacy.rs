//! Importing the engine state of the first store layout (buckets as individual `MessagePack`
//! aggregates, the rest as one `MessagePack` value), so an upgrade keeps every acknowledged call.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Deserialize;

use super::aggregate::Agg;
use super::checkpoint::RestoreError;
use super::pending::Entry;
use super::segment::{open_segments, Call};
use super::{BucketId, Counters, Engine, Tier};
use crate::config::Config;

/// The first layout's engine counters, field for field. It repeats most of `Counters` on
/// purpose: layout 1 is frozen, so this must not follow changes to the current counters.
#[derive(Debug, Deserialize)]
struct OldStats {
    accepted: u64,
    duplicates: u64,
    late: u64,
    rejected_open_segment_limit: u64,
    expired_segments: u64,
    expired_orphan_events: u64,
    _open_segments: u64,
    _open_calls: u64,
    _remembered_calls: u64,
    overflowed: BTreeMap<String, u64>,
    _keys: BTreeMap<String, u64>,
}

/// The first layout's engine state besides buckets, field for field.
#[derive(Debug, Deserialize)]
struct OldVolatile {
    now_ms: i64,
    calls: HashMap<String, Call>,
    remembered: HashMap<u64, (i64, i64)>,
    forget_q: VecDeque<(i64, u64)>,
    _settle_q: VecDeque<(i64, String)>,
    _wrapup_q: VecDeque<(i64, String)>,
    next_scan_ms: i64,
    _open_segments: usize,
    _open_per_call: HashMap<String, usize>,
    stats: OldStats,
}

impl Engine {
    /// An engine holding the first layout's checkpoint: its buckets (encoded bucket id →
    /// `MessagePack` aggregate) and other state. Replay the first layout's log after it.
    pub fn from_legacy(
        cfg: &Config,
        buckets: Vec<(Vec<u8>, Vec<u8>)>,
        volatile: Option<&[u8]>,
    ) -> Result<Engine, RestoreError> {
        let mut e = Engine::new(cfg);
        if let Some(bytes) = volatile {
            let v: OldVolatile = rmp_serde::from_slice(bytes)
                .map_err(|err| RestoreError::Decode(format!("first-layout state: {err}")))?;
            e.now_ms = v.now_ms;
            e.next_scan_ms = v.next_scan_ms;
            e.counters = Counters {
                accepted: v.stats.accepted,
                duplicates: v.stats.duplicates,
                late: v.stats.late,
                rejected_open_segment_limit: v.stats.rejected_open_segment_limit,
                expired_segments: v.stats.expired_segments,
                expired_orphan_events: v.stats.expired_orphan_events,
                overflowed: v.stats.overflowed,
            };
            e.remembered = super::remembered::Remembered::from_parts(v.remembered, v.forget_q);
            let mut ids: Vec<_> = v.calls.into_iter().collect();
            ids.sort_by(|a, b| a.0.cmp(&b.0));
            for (id, call) in ids {
                let derived = call.derive();
                let open = open_segments(&call, &derived.segments) as u32;
                e.open_segments += open as usize;
                let due = e.next_due(&call, &derived, e.now_ms);
                e.pending.put(
                    &id,
                    Entry {
                        call,
                        scheduled: i64::MAX,
                        order: 0,
                        open,
                    },
                    due,
                );
            }
        }
        for (k, v) in buckets {
            let id = BucketId::decode(&k)
                .ok_or_else(|| RestoreError::Decode("a first-layout bucket key".into()))?;
            let agg: Agg = rmp_serde::from_slice(&v)
                .map_err(|err| RestoreError::Decode(format!("first-layout bucket: {err}")))?;
            let (key, _) = e.keys.resolve(id.dim.kind, &id.dim.key, usize::MAX);
            let slices = match id.tier {
                Tier::Fine => &mut e.fine,
                Tier::Interval => &mut e.interval,
            };
            if slices
                .entry(id.start_ms, &e.sets)
                .put(key, &mut e.sets, agg)
            {
                e.keys.bucket_added(key);
            }
        }
        e.keys.drop_unused();
        e.mark_all_dirty();
        e.rebuild_totals();
        e.rebuild_expiry();
        Ok(e)
    }
}
