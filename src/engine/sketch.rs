//! A sparse, mergeable log-bucket quantile sketch (DDSketch): every quantile it answers is within
//! 1 % of the exact value at that rank, and two sketches merge by adding bin counts.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::varint::{put_i64, put_u64, DecodeError, Reader};

/// Relative accuracy. Slightly under 1 % so float rounding at bin edges stays inside the promise.
pub const RELATIVE_ACCURACY: f64 = 0.0099;

fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

/// The value a bin stands for: the midpoint, in relative terms, of the values it holds.
fn representative_of(index: i32) -> f64 {
    let g = gamma();
    2.0 * g.powi(index) / (g + 1.0)
}

/// Counts of millisecond values in logarithmic bins; values below 1 ms count in a zero bin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sketch {
    zero: u64,
    /// (bin index, count), sorted by index, no zero counts.
    bins: Vec<(i32, u64)>,
}

impl Sketch {
    #[must_use]
    pub fn count(&self) -> u64 {
        self.zero + self.bins.iter().map(|(_, c)| c).sum::<u64>()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.zero == 0 && self.bins.is_empty()
    }

    /// The bins as (index, count) pairs, the zero bin as index `i32::MIN`: the documented mergeable form.
    pub fn bins(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        (self.zero > 0)
            .then_some((i32::MIN, self.zero))
            .into_iter()
            .chain(self.bins.iter().copied())
    }

    fn index(value_ms: u64) -> Option<i32> {
        // Values are at most ~2^63 ms, so the index fits an i32 by a wide margin.
        (value_ms >= 1).then(|| ((value_ms as f64).ln() / gamma().ln()).ceil() as i32)
    }

    fn representative(index: i32) -> f64 {
        // Worked out once for the bins real durations reach (bin 2 047 stands for ~6·10^17
        // ms): `powi` was a tenth of the daemon's time answering 500 agent rows, which read
        // eight quantiles each. The table holds what the formula gives, so every answer is the
        // same.
        static TABLE: OnceLock<[f64; 2048]> = OnceLock::new();
        // The index of an array of 2 048 fits an i32.
        let table = TABLE.get_or_init(|| std::array::from_fn(|i| representative_of(i as i32)));
        usize::try_from(index)
            .ok()
            .and_then(|i| table.get(i))
            .copied()
            .unwrap_or_else(|| representative_of(index))
    }

    pub fn add(&mut self, value_ms: u64) {
        self.add_n(value_ms, 1);
    }

    fn add_n(&mut self, value_ms: u64, n: u64) {
        match Self::index(value_ms) {
            None => self.zero += n,
            Some(i) => self.add_bin(i, n),
        }
    }

    fn add_bin(&mut self, index: i32, n: u64) {
        match self.bins.binary_search_by_key(&index, |(k, _)| *k) {
            Ok(pos) => self.bins[pos].1 += n,
            Err(pos) => self.bins.insert(pos, (index, n)),
        }
    }

    pub fn merge(&mut self, other: &Sketch) {
        self.zero += other.zero;
        if self.bins.is_empty() {
            self.bins.clone_from(&other.bins);
            return;
        }
        let mut merged = Vec::with_capacity(self.bins.len() + other.bins.len());
        let (mut a, mut b) = (self.bins.iter().peekable(), other.bins.iter().peekable());
        loop {
            match (a.peek(), b.peek()) {
                (Some(&&(ka, ca)), Some(&&(kb, cb))) => match ka.cmp(&kb) {
                    std::cmp::Ordering::Equal => {
                        merged.push((ka, ca + cb));
                        a.next();
                        b.next();
                    }
                    std::cmp::Ordering::Less => {
                        merged.push((ka, ca));
                        a.next();
                    }
                    std::cmp::Ordering::Greater => {
                        merged.push((kb, cb));
                        b.next();
                    }
                },
                (Some(&&x), None) => {
                    merged.push(x);
                    a.next();
                }
                (None, Some(&&x)) => {
                    merged.push(x);
                    b.next();
                }
                (None, None) => break,
            }
        }
        self.bins = merged;
    }

    /// Adds many sketches at once through a dense accumulator: linear in their bins, where
    /// merging them one by one would copy the growing result each time.
    pub fn merge_many<'a>(&mut self, others: impl IntoIterator<Item = &'a Sketch>) {
        let mut dense: Vec<u64> = Vec::new();
        let mut low = i32::MAX;
        let add = |dense: &mut Vec<u64>, low: &mut i32, k: i32, c: u64| {
            if dense.is_empty() {
                *low = k;
            }
            if k < *low {
                let shift = (*low - k) as usize;
                dense.splice(0..0, std::iter::repeat_n(0, shift));
                *low = k;
            }
            let i = (k - *low) as usize;
            if i >= dense.len() {
                dense.resize(i + 1, 0);
            }
            dense[i] += c;
        };
        for &(k, c) in &self.bins {
            add(&mut dense, &mut low, k, c);
        }
        for o in others {
            self.zero += o.zero;
            for &(k, c) in &o.bins {
                add(&mut dense, &mut low, k, c);
            }
        }
        self.bins = dense
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (low + i as i32, *c))
            .collect();
    }

    /// Bins added since `earlier`, an older state of this sketch.
    #[must_use]
    pub fn since(&self, earlier: &Sketch) -> Sketch {
        let bins = self
            .bins
            .iter()
            .filter_map(|&(k, c)| {
                let before = earlier
                    .bins
                    .binary_search_by_key(&k, |(i, _)| *i)
                    .map_or(0, |p| earlier.bins[p].1);
                let n = c.saturating_sub(before);
                (n > 0).then_some((k, n))
            })
            .collect();
        Sketch {
            zero: self.zero.saturating_sub(earlier.zero),
            bins,
        }
    }

    /// Bin index of a value: the documented mapping, shared with the dense form of [`super::dense`].
    #[must_use]
    pub fn bin_of(value_ms: u64) -> Option<i32> {
        Self::index(value_ms)
    }

    /// Representative value of bin `index` (within 1 % of every value in it).
    #[must_use]
    pub fn value_of(index: i32) -> f64 {
        Self::representative(index)
    }

    /// Zero-bin count and sparse bins, for the dense form.
    #[must_use]
    pub fn parts(&self) -> (u64, &[(i32, u64)]) {
        (self.zero, &self.bins)
    }

    /// Builds a sketch from a zero count and sorted, non-zero bins.
    #[must_use]
    pub fn from_parts(zero: u64, bins: Vec<(i32, u64)>) -> Sketch {
        Sketch { zero, bins }
    }

    /// Appends the compact form: zero count, bin count, then each bin as the gap from the previous
    /// index (one byte for neighbours) with a flag for a count above one.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        Self::encode_parts(self.zero, &self.bins, out);
    }

    /// [`Sketch::encode_into`] for a sketch given by its parts.
    pub fn encode_parts(zero: u64, bins: &[(i32, u64)], out: &mut Vec<u8>) {
        put_u64(out, zero);
        put_u64(out, bins.len() as u64);
        let mut prev: Option<i32> = None;
        for &(k, c) in bins {
            match prev {
                None => {
                    put_i64(out, i64::from(k));
                    put_u64(out, c);
                }
                Some(p) => {
                    // Bins are sorted and distinct, so the gap is at least one.
                    let gap = (i64::from(k) - i64::from(p)) as u64;
                    put_u64(out, (gap << 1) | u64::from(c > 1));
                    if c > 1 {
                        put_u64(out, c - 2);
                    }
                }
            }
            prev = Some(k);
        }
    }

    /// [`Sketch::decode_from`] into a reused buffer of bins; returns the zero count.
    pub fn decode_parts(
        r: &mut Reader<'_>,
        bins: &mut Vec<(i32, u64)>,
    ) -> Result<u64, DecodeError> {
        Self::walk_parts(r, |k, c| bins.push((k, c)))
    }

    /// Advances `r` over a sketch's compact form without unpacking it, checking it as
    /// [`Sketch::decode_parts`] does (bytes it accepts decode later without error); returns the
    /// bytes passed over.
    pub fn skip_parts<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], DecodeError> {
        let start = r.rest();
        Self::walk_parts(r, |_, _| {})?;
        Ok(&start[..start.len() - r.rest().len()])
    }

    /// Reads a sketch's compact form, handing each bin to `bin`; returns the zero count.
    fn walk_parts(r: &mut Reader<'_>, mut bin: impl FnMut(i32, u64)) -> Result<u64, DecodeError> {
        let zero = r.u64()?;
        let n = r.usize()?;
        // Every bin takes at least one byte, so a count beyond the data is damage, not a size.
        if n > r.rest().len() {
            return Err(DecodeError::Truncated);
        }
        let mut prev: i64 = 0;
        for i in 0..n {
            let (k, c) = if i == 0 {
                let k = r.i64()?;
                (k, r.u64()?)
            } else {
                let g = r.u64()?;
                let gap = (g >> 1) as i64;
                if gap == 0 {
                    return Err(DecodeError::Invalid("sketch bins out of order"));
                }
                let c = if g & 1 == 1 {
                    r.u64()?.saturating_add(2)
                } else {
                    1
                };
                (prev.saturating_add(gap), c)
            };
            let k32 =
                i32::try_from(k).map_err(|_| DecodeError::Invalid("sketch bin out of range"))?;
            if c == 0 {
                return Err(DecodeError::Invalid("empty sketch bin"));
            }
            bin(k32, c);
            prev = k;
        }
        Ok(zero)
    }

    /// Reads what [`Sketch::encode_into`] wrote.
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Sketch, DecodeError> {
        let mut bins = Vec::new();
        let zero = Self::decode_parts(r, &mut bins)?;
        Ok(Sketch { zero, bins })
    }

    /// Removes what `other` added (bin counts subtract; `other` must be part of this sketch).
    pub fn subtract(&mut self, other: &Sketch) {
        self.zero = self.zero.saturating_sub(other.zero);
        for &(k, c) in &other.bins {
            if let Ok(pos) = self.bins.binary_search_by_key(&k, |(i, _)| *i) {
                self.bins[pos].1 = self.bins[pos].1.saturating_sub(c);
            }
        }
        self.bins.retain(|(_, c)| *c > 0);
    }

    /// Relative accuracy parameter γ of the bins: bin `i` holds values in (γ^(i−1), γ^i] ms.
    #[must_use]
    pub fn gamma() -> f64 {
        gamma()
    }

    /// The value at rank ⌊q·(n−1)⌋ within 1 %, or `None` when empty.
    #[must_use]
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        // Rank is below n, which fits f64 exactly for any count this process can hold.
        let rank = (q.clamp(0.0, 1.0) * (n - 1) as f64).floor() as u64;
        if rank < self.zero {
            return Some(0.0);
        }
        let mut seen = self.zero;
        for &(k, c) in &self.bins {
            seen += c;
            if seen > rank {
                return Some(Self::representative(k));
            }
        }
        self.bins.last().map(|&(k, _)| Self::representative(k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn table_matches_formula() {
        for index in (-5..2100).chain([i32::MIN + 1, -100_000, 100_000, i32::MAX]) {
            assert_eq!(
                Sketch::representative(index).to_bits(),
                representative_of(index).to_bits(),
                "bin {index}"
            );
        }
        // And the bins of real values fall in the table.
        let top = Sketch::index(86_400_000 * 365).unwrap();
        assert!((0..2048).contains(&top), "a year in ms is bin {top}");
    }

    fn exact(sorted: &[u64], q: f64) -> u64 {
        sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
    }

    proptest! {
        #[test]
        fn quantiles_are_within_one_percent(values in prop::collection::vec(0u64..100_000_000, 1..400), split in 0usize..400) {
            let mut s1 = Sketch::default();
            let mut s2 = Sketch::default();
            for (i, v) in values.iter().enumerate() {
                if i < split { s1.add(*v) } else { s2.add(*v) }
            }
            let mut many = Sketch::default();
            many.merge_many([&s1, &s2]);
            s1.merge(&s2);
            prop_assert_eq!(&many, &s1);
            let mut sorted = values.clone();
            sorted.sort_unstable();
            prop_assert_eq!(s1.count(), values.len() as u64);
            for q in [0.0, 0.5, 0.9, 0.95, 0.99, 1.0] {
                let want = exact(&sorted, q) as f64;
                let got = s1.quantile(q).unwrap();
                prop_assert!((got - want).abs() <= 0.01 * want, "q={} got={} want={}", q, got, want);
            }
        }
    }

    proptest! {
        #[test]
        fn compact_form_round_trips(values in prop::collection::vec(0u64..100_000_000, 0..300), dup in 1u64..5) {
            let mut s = Sketch::default();
            for v in &values {
                s.add_n(*v, dup);
            }
            let mut out = Vec::new();
            s.encode_into(&mut out);
            let mut r = Reader::new(&out);
            prop_assert_eq!(Sketch::decode_from(&mut r).unwrap(), s.clone());
            prop_assert!(r.is_empty());
            let mut twice = s.clone();
            twice.merge(&s);
            twice.subtract(&s);
            prop_assert_eq!(twice, s);
        }
    }

    #[test]
    fn empty_sketch_has_no_quantile() {
        assert_eq!(Sketch::default().quantile(0.5), None);
    }
}
