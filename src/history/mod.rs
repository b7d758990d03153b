//! Interval history: what a closed interval adds to the aggregates kept on disk per interval and
//! per local date, for every dimension key; how long each is kept; and reports read from them
//! (`report.rs`, with the command's dates in `dates.rs` and its periods in `period.rs`).
//!
//! An entry is the engine's [`Agg`] in the encoding the outbox's shipped copies use. The closer
//! hands over what each bucket added since it was last closed (the whole bucket, or a
//! correction's delta), and each entry becomes the sum of what was added to it: so the history
//! always equals the calls, corrections included, and merges like the upstream records.

pub mod dates;
pub mod period;
pub mod report;

use std::collections::HashMap;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde::{Deserialize, Serialize};

use crate::config::HistoryConfig;
use crate::engine::{Agg, BucketId, DimKind};
use crate::store::history::{time_key, time_of, DAYS, INTERVALS};
use crate::store::{Store, StoreError};

const DAY_MS: i64 = 86_400_000;

/// The first date of day numbers (what [`DAYS`] keys count from).
const EPOCH: Date = Date::constant(1970, 1, 1);

/// A date's number: days since 1970-01-01.
#[must_use]
pub fn day_number(d: Date) -> i64 {
    d.since(EPOCH).map_or(0, |s| i64::from(s.get_days()))
}

/// The date of a day number.
#[must_use]
pub fn date_of(n: i64) -> Option<Date> {
    EPOCH.checked_add(n.days()).ok()
}

/// The local date of an instant in `tz`.
#[must_use]
pub fn local_date(tz: &TimeZone, at_ms: i64) -> Option<Date> {
    Some(
        tz.to_datetime(Timestamp::from_millisecond(at_ms).ok()?)
            .date(),
    )
}

fn kind_byte(k: DimKind) -> u8 {
    match k {
        DimKind::All => b'a',
        DimKind::Queue => b'q',
        DimKind::Agent => b'g',
        DimKind::Channel => b'c',
        DimKind::Tag => b't',
    }
}

fn kind_of(b: u8) -> Option<DimKind> {
    Some(match b {
        b'a' => DimKind::All,
        b'q' => DimKind::Queue,
        b'g' => DimKind::Agent,
        b'c' => DimKind::Channel,
        b't' => DimKind::Tag,
        _ => return None,
    })
}

/// The key of one entry: grain, time (interval start in ms, or day number), kind, name.
#[must_use]
pub fn entry_key(grain: u8, at: i64, kind: DimKind, name: &str) -> Vec<u8> {
    let mut k = time_key(grain, at);
    k.push(kind_byte(kind));
    k.extend_from_slice(name.as_bytes());
    k
}

/// An entry's key read back: (grain, time, kind, name).
#[must_use]
pub fn parse_key(k: &[u8]) -> Option<(u8, i64, DimKind, &str)> {
    let (grain, at) = time_of(k)?;
    let kind = kind_of(*k.get(9)?)?;
    let name = std::str::from_utf8(k.get(10..)?).ok()?;
    Some((grain, at, kind, name))
}

/// An entry's stored bytes (the shipped copies' encoding).
#[must_use]
pub fn encode(a: &Agg) -> Vec<u8> {
    // Plain data with string keys serializes to a Vec without error.
    rmp_serde::to_vec(a).unwrap_or_default()
}

pub fn decode(bytes: &[u8]) -> Result<Agg, StoreError> {
    rmp_serde::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// What the history holds, as `status` shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryStatus {
    pub interval_entries: u64,
    pub interval_bytes: u64,
    pub day_entries: u64,
    pub day_bytes: u64,
    /// `history.max_bytes`.
    pub max_bytes: u64,
    pub intervals_days: u32,
    pub daily_days: u32,
    /// Every interval ending by this instant (epoch ms) was closed into the history.
    pub complete_until_ms: Option<i64>,
}

impl HistoryStatus {
    pub fn of(store: &Store, cfg: &HistoryConfig) -> Result<HistoryStatus, StoreError> {
        let s = store.history_stats()?;
        Ok(HistoryStatus {
            interval_entries: s.intervals.entries,
            interval_bytes: s.intervals.bytes,
            day_entries: s.days.entries,
            day_bytes: s.days.bytes,
            max_bytes: cfg.max_bytes,
            intervals_days: cfg.intervals_days,
            daily_days: cfg.daily_days,
            complete_until_ms: s.complete_until_ms,
        })
    }
}

/// How far back each grain is kept, at `now_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Horizons {
    /// Intervals starting before this instant are past their horizon.
    pub intervals_from_ms: i64,
    /// Dates numbered before this are past theirs.
    pub days_from: i64,
}

impl Horizons {
    /// `intervals_days` back from now for intervals; for dates, today and the `daily_days − 1`
    /// before it (today counts as one of the days).
    #[must_use]
    pub fn at(cfg: &HistoryConfig, tz: &TimeZone, now_ms: i64) -> Horizons {
        let today = local_date(tz, now_ms).map_or(0, day_number);
        Horizons {
            intervals_from_ms: now_ms - i64::from(cfg.intervals_days) * DAY_MS,
            days_from: today - i64::from(cfg.daily_days) + 1,
        }
    }
}

/// History entries as stored: key → encoded aggregate.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// The entries to write for what buckets added (`deltas`: each bucket's id and what it added
/// since last closed): each interval entry and each date's entry becomes what it held plus
/// the deltas landing in it. Entries past their horizon are not written.
pub fn plan(
    store: &Store,
    tz: &TimeZone,
    horizons: Horizons,
    deltas: &[(&BucketId, &Agg)],
) -> Result<Entries, StoreError> {
    let mut sums: HashMap<Vec<u8>, Agg> = HashMap::new();
    for (id, delta) in deltas {
        let mut keys = Vec::with_capacity(2);
        if id.start_ms >= horizons.intervals_from_ms {
            keys.push(entry_key(INTERVALS, id.start_ms, id.dim.kind, &id.dim.key));
        }
        if let Some(day) = local_date(tz, id.start_ms).map(day_number) {
            if day >= horizons.days_from {
                keys.push(entry_key(DAYS, day, id.dim.kind, &id.dim.key));
            }
        }
        for k in keys {
            let sum = match sums.entry(k) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let held = match store.history_get(v.key())? {
                        Some(bytes) => decode(&bytes)?,
                        None => Agg::default(),
                    };
                    v.insert(held)
                }
            };
            sum.merge(delta);
        }
    }
    Ok(sums.into_iter().map(|(k, a)| (k, encode(&a))).collect())
}

/// Drops what is past its horizon at `now_ms`, then the oldest past `cfg.max_bytes`.
pub fn keep(
    store: &Store,
    cfg: &HistoryConfig,
    tz: &TimeZone,
    now_ms: i64,
) -> Result<u64, StoreError> {
    let h = Horizons::at(cfg, tz, now_ms);
    store.history_prune(
        &[(INTERVALS, h.intervals_from_ms), (DAYS, h.days_from)],
        cfg.max_bytes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Dim, Tier};

    #[test]
    fn keys_and_day_numbers_round_trip() {
        let d = Date::constant(2026, 3, 29);
        assert_eq!(date_of(day_number(d)), Some(d));
        assert_eq!(day_number(EPOCH), 0);
        assert_eq!(day_number(Date::constant(1969, 12, 31)), -1);
        let k = entry_key(INTERVALS, 1_795_334_400_000, DimKind::Agent, "ann");
        assert_eq!(
            parse_key(&k),
            Some((INTERVALS, 1_795_334_400_000, DimKind::Agent, "ann"))
        );
    }

    #[test]
    fn deltas_add_to_their_interval_and_local_date_within_the_horizons() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s"), 1 << 20, 1 << 30).unwrap();
        let tz = TimeZone::get("Europe/Paris").unwrap();
        // 2026-11-22 23:30 in Paris is 22:30 UTC: the 22nd locally.
        let late_evening = 1_795_354_200_000;
        let id = BucketId {
            tier: Tier::Interval,
            dim: Dim {
                kind: DimKind::Queue,
                key: "support".into(),
            },
            start_ms: late_evening,
        };
        let delta = Agg {
            offered: 2,
            answered: 1,
            wait_max_ms: 9_000,
            ..Agg::default()
        };
        let open = Horizons {
            intervals_from_ms: 0,
            days_from: 0,
        };
        for _ in 0..2 {
            let w = plan(&store, &tz, open, &[(&id, &delta)]).unwrap();
            store
                .add_records_with_history(&[], &[], &w, 0, 1 << 20)
                .unwrap();
        }
        let day = day_number(Date::constant(2026, 11, 22));
        for k in [
            entry_key(INTERVALS, late_evening, DimKind::Queue, "support"),
            entry_key(DAYS, day, DimKind::Queue, "support"),
        ] {
            let a = decode(&store.history_get(&k).unwrap().unwrap()).unwrap();
            assert_eq!((a.offered, a.answered, a.wait_max_ms), (4, 2, 9_000));
        }
        // Past the interval horizon: the date still counts it, the interval is not written.
        let closed = Horizons {
            intervals_from_ms: late_evening + 1,
            days_from: day,
        };
        let w = plan(&store, &tz, closed, &[(&id, &delta)]).unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(parse_key(&w[0].0).map(|k| k.0), Some(DAYS));
    }
}
