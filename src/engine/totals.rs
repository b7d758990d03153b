//! Running totals of the long windows (trailing windows served from interval buckets, and `today`)
//! per key, so a query over a day reads one total a key instead of a hundred buckets; and, over
//! the minute buckets, of the staffing window (the last hour), which every queue query reads.
//!
//! Each window's total is the exact sum of the interval buckets in its range at the time it was
//! last synced: a fold into a bucket in range adds to it, and when time moves the range on, the
//! buckets that left are subtracted and those that entered (they may hold future-dated calls) are
//! added. Maxima do not subtract, so when the range moves they are read again from the buckets.

use super::keys::{KeyId, KeyMap};
use super::packed::BandSets;
use super::running::Running;
use super::slices::TierSlices;
use super::window::{Calendar, Tier, Window, FINE_BUCKET_MS};

#[derive(Debug, Clone)]
struct LongWindow {
    window: Window,
    /// Inclusive bucket starts of the synced range; `first > last` when empty.
    first: i64,
    last: i64,
    per_key: KeyMap<Running>,
}

#[derive(Debug, Clone, Default)]
pub struct Totals {
    windows: Vec<LongWindow>,
    /// Engine time up to which every synced range stays what it is.
    valid_until: i64,
}

impl Totals {
    /// Totals for `windows` (the long ones), built from `slices` at `now`.
    pub fn build(
        windows: &[Window],
        cal: &Calendar,
        slices: &TierSlices,
        sets: &BandSets,
        now: i64,
    ) -> Totals {
        let mut t = Totals {
            windows: windows
                .iter()
                .map(|w| LongWindow {
                    window: *w,
                    first: 1,
                    last: 0,
                    per_key: KeyMap::default(),
                })
                .collect(),
            valid_until: i64::MIN,
        };
        t.sync(cal, slices, sets, now);
        t
    }

    /// Adds a fact folded into the bucket starting at `start` (of the tier these totals are
    /// over) to every window holding it.
    pub fn add(&mut self, key: KeyId, start: i64, add: impl Fn(&mut Running)) {
        for w in &mut self.windows {
            if (w.first..=w.last).contains(&start) {
                add(w.per_key.entry(key).or_default());
            }
        }
    }

    /// Moves every window's range to `now`, subtracting buckets that left it and adding those that
    /// entered. Cheap when no range changed.
    pub fn sync(&mut self, cal: &Calendar, slices: &TierSlices, sets: &BandSets, now: i64) {
        if now < self.valid_until {
            return;
        }
        let mut valid_until = i64::MAX;
        for w in &mut self.windows {
            let (_, first, last) = cal.range(w.window, now);
            valid_until = valid_until.min(next_change(cal, w.window, now));
            if (first, last) == (w.first, w.last) {
                continue;
            }
            let overlap = w.first <= w.last && first <= w.last && w.first <= last;
            if overlap {
                // Old range minus new: left; new minus old: entered.
                if w.first < first {
                    apply(&mut w.per_key, slices, sets, w.first, first - 1, false);
                }
                if last < w.last {
                    apply(&mut w.per_key, slices, sets, last + 1, w.last, false);
                }
                if first < w.first {
                    apply(&mut w.per_key, slices, sets, first, w.first - 1, true);
                }
                if w.last < last {
                    apply(&mut w.per_key, slices, sets, w.last + 1, last, true);
                }
                w.per_key.retain(|_, r| !r.is_empty());
                // Maxima do not subtract: read them again from the buckets now in range.
                for r in w.per_key.values_mut() {
                    r.agg.wait_max_ms = 0;
                }
                for (_, slice) in slices.range(first, last) {
                    for (key, cell) in slice.cells() {
                        if let Some(r) = w.per_key.get_mut(&key) {
                            r.agg.wait_max_ms = r.agg.wait_max_ms.max(cell.wait_max());
                        }
                    }
                }
            } else {
                w.per_key.clear();
                apply(&mut w.per_key, slices, sets, first, last, true);
            }
            w.first = first;
            w.last = last;
        }
        self.valid_until = valid_until;
    }

    /// The synced range and total of `key` for `window`, if `window` is one of the long ones.
    pub fn get(&self, window: Window) -> Option<TotalsView<'_>> {
        self.windows
            .iter()
            .find(|w| w.window == window)
            .map(|w| TotalsView {
                first: w.first,
                last: w.last,
                per_key: &w.per_key,
            })
    }

    pub fn heap_bytes(&self) -> usize {
        self.windows
            .iter()
            .map(|w| {
                w.per_key.capacity() * (std::mem::size_of::<Running>() + 16)
                    + w.per_key.values().map(Running::heap_bytes).sum::<usize>()
            })
            .sum()
    }
}

/// One long window's synced totals.
pub struct TotalsView<'a> {
    pub first: i64,
    pub last: i64,
    pub per_key: &'a KeyMap<Running>,
}

/// Adds (or subtracts) every bucket of the slices in `first..=last` to the per-key totals.
fn apply(
    per_key: &mut KeyMap<Running>,
    slices: &TierSlices,
    sets: &BandSets,
    first: i64,
    last: i64,
    add: bool,
) {
    for (_, slice) in slices.range(first, last) {
        for (key, cell) in slice.cells() {
            let r = per_key.entry(key).or_default();
            // Cells were written by the engine itself; a decode error would mean memory damage,
            // and skipping the cell is all that can be done about it.
            let _ = if add {
                cell.add_into(sets, r)
            } else {
                cell.subtract_from(sets, r)
            };
        }
    }
}

/// The first engine time after `now` at which `window`'s range may change: the next minute for a
/// window of minute buckets, else the next interval boundary (local midnight is one too, since
/// intervals divide an hour).
fn next_change(cal: &Calendar, window: Window, now: i64) -> i64 {
    match cal.range(window, now).0 {
        Tier::Fine => cal.fine_bucket(now) + FINE_BUCKET_MS,
        Tier::Interval => cal.interval_bucket(now) + cal.interval_ms,
    }
}
