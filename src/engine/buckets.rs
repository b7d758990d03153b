//! Reading folded buckets from outside the engine: one bucket's aggregate, and the interval
//! buckets the closer turns into interval records, each named by its [`BucketId`].

use super::aggregate::Agg;
use super::keys::{BucketId, Dim};
use super::report::DimKind;
use super::window::Tier;
use super::Engine;

impl Engine {
    /// The aggregate of one bucket, if any (for interval records and tests).
    #[must_use]
    pub fn bucket(&self, tier: Tier, dim: &Dim, start_ms: i64) -> Option<Agg> {
        let key = self.keys.get(dim.kind, &dim.key)?;
        let slices = match tier {
            Tier::Fine => &self.fine,
            Tier::Interval => &self.interval,
        };
        slices.get(start_ms)?.get(key)?.decode(&self.sets).ok()
    }

    /// A number that changes whenever an interval bucket starting at `start_ms` changes (for the
    /// closer, so it decodes only slices that changed since it last looked).
    #[must_use]
    pub fn interval_slice_version(&self, start_ms: i64) -> Option<u64> {
        self.interval
            .get(start_ms)
            .map(super::slices::SliceRef::version)
    }

    /// Starts of the interval slices within `from..=until`.
    #[must_use]
    pub fn interval_starts(&self, from: i64, until: i64) -> Vec<i64> {
        self.interval.range(from, until).map(|(s, _)| s).collect()
    }

    /// Up to `limit` interval buckets of `kinds` in the slice starting at `start` for which
    /// `wanted(id, revision)` holds, each decoded only once wanted (the closer's bounded rounds);
    /// and whether more were wanted past the limit.
    pub fn interval_buckets_wanted(
        &self,
        kinds: &[DimKind],
        start: i64,
        limit: usize,
        mut wanted: impl FnMut(&BucketId, u64) -> bool,
    ) -> (Vec<(BucketId, Agg)>, bool) {
        let mut out = Vec::new();
        let Some(slice) = self.interval.get(start) else {
            return (out, false);
        };
        for (key, cell) in slice.cells() {
            let Some(dim) = self.keys.dim(key).filter(|d| kinds.contains(&d.kind)) else {
                continue;
            };
            let Ok(revision) = cell.revision() else {
                continue;
            };
            let id = BucketId {
                tier: Tier::Interval,
                dim: dim.clone(),
                start_ms: start,
            };
            if !wanted(&id, revision) {
                continue;
            }
            if out.len() == limit {
                return (out, true);
            }
            if let Ok(agg) = cell.decode(&self.sets) {
                out.push((id, agg));
            }
        }
        (out, false)
    }

    /// Interval buckets of `kinds` in the slice starting at `start` (for interval records).
    #[must_use]
    pub fn interval_buckets_at(&self, kinds: &[DimKind], start: i64) -> Vec<(BucketId, Agg)> {
        self.interval_buckets_wanted(kinds, start, usize::MAX, |_, _| true)
            .0
    }

    /// Interval buckets of `kinds` starting within `from..=until` (for interval records).
    #[must_use]
    pub fn interval_buckets(
        &self,
        kinds: &[DimKind],
        from: i64,
        until: i64,
    ) -> Vec<(BucketId, Agg)> {
        self.interval_starts(from, until)
            .into_iter()
            .flat_map(|s| self.interval_buckets_at(kinds, s))
            .collect()
    }

    /// How far back interval buckets are kept.
    #[must_use]
    pub fn interval_retention_ms(&self) -> i64 {
        self.s.keep_interval_ms
    }
}
