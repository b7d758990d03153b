//! The interval history in sled: aggregates per closed interval and per local date, kept in the
//! `upstream` tree under `h` keys so that they are written in the same atomic batch as the outbox
//! records and shipped copies of the same close (a crash leaves both or neither). Beside them,
//! under `m:history_*`, the entries and bytes of each grain, the time the history is complete up
//! to, and from when each grain is still whole after retention dropped its oldest.
//!
//! Keys after `h`: the grain ([`INTERVALS`] or [`DAYS`]), 8 bytes of time (sign-flipped big-endian
//! so keys sort by time: an interval's start in epoch ms, a date's number of days since
//! 1970-01-01), then whatever the caller adds (dimension and key). The values are opaque here.
//! Nothing is held in memory: every figure is read from the tree when asked.

use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};

use super::trees::apply_batch;
use super::{Store, StoreError};

const PREFIX: u8 = b'h';
/// Grain of the interval aggregates.
pub const INTERVALS: u8 = b'i';
/// Grain of the daily aggregates.
pub const DAYS: u8 = b'd';
const META_UNTIL: &[u8] = b"m:history_until";
/// Removals per batch when retention drops entries.
const DROP_BATCH: usize = 4096;

/// Entries and bytes (keys and values) of one grain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryCounts {
    pub entries: u64,
    pub bytes: u64,
}

/// What the history holds, as `status` shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryStats {
    pub intervals: HistoryCounts,
    pub days: HistoryCounts,
    /// Every interval ending at or before this instant (epoch ms) was closed into the history.
    pub complete_until_ms: Option<i64>,
    /// Intervals starting before this were dropped (by age or by the byte cap).
    pub intervals_from_ms: Option<i64>,
    /// Dates numbered before this were dropped.
    pub days_from: Option<i64>,
}

/// The time part of a history key: sign-flipped big-endian, so keys sort by time.
#[must_use]
pub fn time_key(grain: u8, at: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(grain);
    k.extend_from_slice(&((at as u64) ^ (1 << 63)).to_be_bytes());
    k
}

/// The grain and time of a history key made by [`time_key`] (and more bytes after).
#[must_use]
pub fn time_of(key: &[u8]) -> Option<(u8, i64)> {
    let at: [u8; 8] = key.get(1..9)?.try_into().ok()?;
    Some((*key.first()?, (u64::from_be_bytes(at) ^ (1 << 63)) as i64))
}

fn stored(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(PREFIX);
    k.extend_from_slice(key);
    k
}

fn meta_counts(grain: u8) -> Vec<u8> {
    let mut k = b"m:history_counts_".to_vec();
    k.push(grain);
    k
}

fn meta_floor(grain: u8) -> Vec<u8> {
    let mut k = b"m:history_floor_".to_vec();
    k.push(grain);
    k
}

fn i64_of(v: Option<sled::IVec>) -> Option<i64> {
    v.and_then(|v| v.as_ref().try_into().ok().map(i64::from_be_bytes))
}

fn counts_of(v: Option<sled::IVec>) -> HistoryCounts {
    v.and_then(|v| {
        let e: [u8; 8] = v.get(..8)?.try_into().ok()?;
        let b: [u8; 8] = v.get(8..16)?.try_into().ok()?;
        Some(HistoryCounts {
            entries: u64::from_be_bytes(e),
            bytes: u64::from_be_bytes(b),
        })
    })
    .unwrap_or_default()
}

fn counts_bytes(c: HistoryCounts) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&c.entries.to_be_bytes());
    out[8..].copy_from_slice(&c.bytes.to_be_bytes());
    out
}

impl Store {
    /// One history entry (key as made with [`time_key`] and more).
    pub fn history_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.t()?.upstream.get(stored(key))?.map(|v| v.to_vec()))
    }

    /// Calls `f` with every history entry whose key lies in `from..to`, in key order, until it
    /// breaks.
    pub fn history_scan(
        &self,
        from: &[u8],
        to: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        for kv in self.t()?.upstream.range(stored(from)..stored(to)) {
            let (k, v) = kv?;
            if f(&k[1..], &v).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// What the history holds.
    pub fn history_stats(&self) -> Result<HistoryStats, StoreError> {
        let t = self.t()?;
        Ok(HistoryStats {
            intervals: counts_of(t.upstream.get(meta_counts(INTERVALS))?),
            days: counts_of(t.upstream.get(meta_counts(DAYS))?),
            complete_until_ms: i64_of(t.upstream.get(META_UNTIL)?),
            intervals_from_ms: i64_of(t.upstream.get(meta_floor(INTERVALS))?),
            days_from: i64_of(t.upstream.get(meta_floor(DAYS))?),
        })
    }

    /// [`Store::add_records`], and in the same atomic batch the history entries `history`
    /// (replacing what they held) and `until`, the time the history is now complete up to
    /// (never moved back). Durable after the next flush.
    pub fn add_records_with_history(
        &self,
        records: &[(u64, Vec<u8>)],
        shipped: &[(Vec<u8>, Option<Vec<u8>>)],
        history: &[(Vec<u8>, Vec<u8>)],
        until: i64,
        max_outbox_bytes: u64,
    ) -> Result<u64, StoreError> {
        let mut batch = sled::Batch::default();
        let stats = self.history_stats()?;
        let (mut intervals, mut days) = (stats.intervals, stats.days);
        for (k, v) in history {
            let key = stored(k);
            let counts = match k.first() {
                Some(&INTERVALS) => &mut intervals,
                _ => &mut days,
            };
            if let Some(old) = self.t()?.upstream.get(&key)? {
                counts.bytes = counts.bytes.saturating_sub(old.len() as u64) + v.len() as u64;
            } else {
                counts.entries += 1;
                counts.bytes += (key.len() + v.len()) as u64;
            }
            batch.insert(key, v.as_slice());
        }
        batch.insert(meta_counts(INTERVALS), &counts_bytes(intervals));
        batch.insert(meta_counts(DAYS), &counts_bytes(days));
        if stats.complete_until_ms.is_none_or(|u| u < until) {
            batch.insert(META_UNTIL, &until.to_be_bytes());
        }
        self.add_records_with(records, shipped, batch, max_outbox_bytes)
    }

    /// Drops history entries of each `(grain, before)` whose time is before `before`, then,
    /// while the history takes more than `max_bytes`, the oldest intervals (every entry of an
    /// interval together), and when no interval is left the oldest dates. Each grain's floor
    /// moves up past what was dropped. Returns how many entries were dropped.
    pub fn history_prune(&self, horizons: &[(u8, i64)], max_bytes: u64) -> Result<u64, StoreError> {
        let mut dropped = 0;
        for &(grain, before) in horizons {
            loop {
                let n = self.drop_oldest(grain, |at, _| at < before)?;
                dropped += n;
                if n < DROP_BATCH as u64 {
                    break;
                }
            }
            self.history_raise_floor(grain, before)?;
        }
        for grain in [INTERVALS, DAYS] {
            loop {
                let stats = self.history_stats()?;
                let total = stats.intervals.bytes + stats.days.bytes;
                if total <= max_bytes {
                    return Ok(dropped);
                }
                let mut excess = total - max_bytes;
                let mut last_at = None;
                let n = self.drop_oldest(grain, |at, bytes| {
                    // Whole times only: an interval (or date) is dropped with all its keys.
                    if excess == 0 && last_at != Some(at) {
                        return false;
                    }
                    excess = excess.saturating_sub(bytes);
                    last_at = Some(at);
                    true
                })?;
                if n == 0 {
                    break;
                }
                dropped += n;
            }
        }
        Ok(dropped)
    }

    /// Drops up to [`DROP_BATCH`] of the oldest entries of `grain` while `take(time, bytes)`
    /// says so, in one batch with the grain's counts and floor. Returns how many.
    fn drop_oldest(
        &self,
        grain: u8,
        mut take: impl FnMut(i64, u64) -> bool,
    ) -> Result<u64, StoreError> {
        let t = self.t()?;
        let mut batch = sled::Batch::default();
        let mut counts = counts_of(t.upstream.get(meta_counts(grain))?);
        let mut floor = i64_of(t.upstream.get(meta_floor(grain))?);
        let mut n = 0u64;
        let mut last_at = None;
        for kv in t.upstream.scan_prefix([PREFIX, grain]) {
            let (k, v) = kv?;
            let Some((_, at)) = time_of(&k[1..]) else {
                continue;
            };
            // A batch ends on a change of time, so a time is never left half dropped.
            if n as usize >= DROP_BATCH && last_at != Some(at) {
                break;
            }
            let bytes = (k.len() + v.len()) as u64;
            if !take(at, bytes) {
                break;
            }
            counts.entries = counts.entries.saturating_sub(1);
            counts.bytes = counts.bytes.saturating_sub(bytes);
            floor = Some(floor.map_or(at + 1, |f| f.max(at + 1)));
            last_at = Some(at);
            batch.remove(k);
            n += 1;
        }
        if n > 0 {
            batch.insert(meta_counts(grain), &counts_bytes(counts));
            if let Some(f) = floor {
                batch.insert(meta_floor(grain), &f.to_be_bytes());
            }
            apply_batch(&t.upstream, batch)?;
        }
        Ok(n)
    }

    /// Records that the history is complete up to `until` (never moved back) when nothing else
    /// is written with it.
    pub fn history_mark_until(&self, until: i64) -> Result<(), StoreError> {
        let t = self.t()?;
        if i64_of(t.upstream.get(META_UNTIL)?).is_none_or(|u| u < until) {
            t.upstream.insert(META_UNTIL, &until.to_be_bytes())?;
        }
        Ok(())
    }

    /// Moves the floor of `grain` up to `at` (nothing before it is kept), without dropping
    /// anything: what a horizon says even when nothing was there to drop.
    pub fn history_raise_floor(&self, grain: u8, at: i64) -> Result<(), StoreError> {
        let t = self.t()?;
        if i64_of(t.upstream.get(meta_floor(grain))?).is_none_or(|f| f < at) {
            t.upstream.insert(meta_floor(grain), &at.to_be_bytes())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(grain: u8, at: i64, name: &str, len: usize) -> (Vec<u8>, Vec<u8>) {
        let mut k = time_key(grain, at);
        k.extend_from_slice(name.as_bytes());
        (k, vec![7u8; len])
    }

    #[test]
    fn entries_are_counted_replaced_and_dropped_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s"), 1 << 20, 1 << 30).unwrap();
        let e = [
            entry(INTERVALS, -5, "a", 10),
            entry(INTERVALS, 100, "a", 10),
            entry(INTERVALS, 100, "b", 10),
            entry(INTERVALS, 200, "a", 10),
            entry(DAYS, 1, "a", 10),
            entry(DAYS, 2, "a", 10),
        ];
        s.add_records_with_history(&[], &[], &e, 300, 1 << 20)
            .unwrap();
        let st = s.history_stats().unwrap();
        assert_eq!(st.intervals.entries, 4);
        assert_eq!(st.intervals.bytes, 4 * (1 + 9 + 1 + 10));
        assert_eq!(st.days.entries, 2);
        assert_eq!(st.complete_until_ms, Some(300));
        // Replacing a value changes bytes, not entries; `until` never moves back.
        let bigger = entry(INTERVALS, 100, "a", 30);
        s.add_records_with_history(&[], &[], std::slice::from_ref(&bigger), 250, 1 << 20)
            .unwrap();
        let st = s.history_stats().unwrap();
        assert_eq!((st.intervals.entries, st.intervals.bytes), (4, 4 * 21 + 20));
        assert_eq!(st.complete_until_ms, Some(300));
        assert_eq!(s.history_get(&bigger.0).unwrap(), Some(bigger.1.clone()));

        // Keys sort by time, negative times first.
        let mut seen = Vec::new();
        s.history_scan(
            &time_key(INTERVALS, i64::MIN),
            &time_key(INTERVALS, 150),
            |k, _| {
                seen.push(time_of(k).unwrap().1);
                ControlFlow::Continue(())
            },
        )
        .unwrap();
        assert_eq!(seen, vec![-5, 100, 100]);

        // By age: intervals before 100 and dates before 2.
        assert_eq!(
            s.history_prune(&[(INTERVALS, 100), (DAYS, 2)], 1 << 20)
                .unwrap(),
            2
        );
        let st = s.history_stats().unwrap();
        assert_eq!((st.intervals.entries, st.days.entries), (3, 1));
        assert_eq!((st.intervals_from_ms, st.days_from), (Some(100), Some(2)));
        // By bytes: the whole oldest interval (both keys) goes, the rest stays.
        let total = st.intervals.bytes + st.days.bytes;
        assert_eq!(s.history_prune(&[], total - 1).unwrap(), 2);
        let st = s.history_stats().unwrap();
        assert_eq!((st.intervals.entries, st.days.entries), (1, 1));
        assert_eq!(st.intervals_from_ms, Some(101));
        // Past the cap with no interval left: the oldest dates.
        assert_eq!(s.history_prune(&[], 0).unwrap(), 2);
        let st = s.history_stats().unwrap();
        assert_eq!(st.intervals.bytes + st.days.bytes, 0);
        assert_eq!(st.days_from, Some(3));
    }
}
