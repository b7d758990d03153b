//! A dense, subtractable form of the quantile sketch for running window totals: one counter per
//! bin between the lowest and highest bin seen, each as narrow as the largest count allows.
//!
//! A day of one agent's waits spans a few hundred bins with counts below 256, so its total takes a
//! few hundred bytes; counters widen (8 → 16 → 32 → 64 bits) only when a count needs it.

use super::sketch::Sketch;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Counts {
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
}

impl Counts {
    fn len(&self) -> usize {
        match self {
            Counts::U8(v) => v.len(),
            Counts::U16(v) => v.len(),
            Counts::U32(v) => v.len(),
            Counts::U64(v) => v.len(),
        }
    }

    fn get(&self, i: usize) -> u64 {
        match self {
            Counts::U8(v) => u64::from(v[i]),
            Counts::U16(v) => u64::from(v[i]),
            Counts::U32(v) => u64::from(v[i]),
            Counts::U64(v) => v[i],
        }
    }

    fn max_value(&self) -> u64 {
        match self {
            Counts::U8(_) => u64::from(u8::MAX),
            Counts::U16(_) => u64::from(u16::MAX),
            Counts::U32(_) => u64::from(u32::MAX),
            Counts::U64(_) => u64::MAX,
        }
    }

    /// Sets counter `i` to `v`, widening every counter first when `v` does not fit.
    fn set(&mut self, i: usize, v: u64) {
        while v > self.max_value() {
            self.widen();
        }
        // Each arm's cast is lossless: `v` fits the width, checked just above.
        match self {
            Counts::U8(c) => c[i] = v as u8,
            Counts::U16(c) => c[i] = v as u16,
            Counts::U32(c) => c[i] = v as u32,
            Counts::U64(c) => c[i] = v,
        }
    }

    fn widen(&mut self) {
        *self = match self {
            Counts::U8(v) => Counts::U16(v.iter().map(|&x| u16::from(x)).collect()),
            Counts::U16(v) => Counts::U32(v.iter().map(|&x| u32::from(x)).collect()),
            Counts::U32(v) => Counts::U64(v.iter().map(|&x| u64::from(x)).collect()),
            Counts::U64(v) => Counts::U64(std::mem::take(v)),
        };
    }

    /// Inserts `n` zero counters at the front.
    fn grow_front(&mut self, n: usize) {
        match self {
            Counts::U8(v) => drop(v.splice(0..0, std::iter::repeat_n(0, n))),
            Counts::U16(v) => drop(v.splice(0..0, std::iter::repeat_n(0, n))),
            Counts::U32(v) => drop(v.splice(0..0, std::iter::repeat_n(0, n))),
            Counts::U64(v) => drop(v.splice(0..0, std::iter::repeat_n(0, n))),
        }
    }

    fn grow_back(&mut self, len: usize) {
        match self {
            Counts::U8(v) => v.resize(len, 0),
            Counts::U16(v) => v.resize(len, 0),
            Counts::U32(v) => v.resize(len, 0),
            Counts::U64(v) => v.resize(len, 0),
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Counts::U8(v) => v.capacity(),
            Counts::U16(v) => v.capacity() * 2,
            Counts::U32(v) => v.capacity() * 4,
            Counts::U64(v) => v.capacity() * 8,
        }
    }
}

/// Bin counts from `low` upwards, plus the zero bin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenseSketch {
    zero: u64,
    low: i32,
    counts: Counts,
    total: u64,
}

impl Default for DenseSketch {
    fn default() -> Self {
        DenseSketch {
            zero: 0,
            low: 0,
            counts: Counts::U8(Vec::new()),
            total: 0,
        }
    }
}

impl DenseSketch {
    pub fn heap_bytes(&self) -> usize {
        self.counts.heap_bytes()
    }

    /// The slot of bin `k`, growing the range to hold it.
    fn slot(&mut self, k: i32) -> usize {
        if self.counts.len() == 0 {
            self.low = k;
        }
        if k < self.low {
            self.counts.grow_front((self.low - k) as usize);
            self.low = k;
        }
        let i = (k - self.low) as usize;
        if i >= self.counts.len() {
            self.counts.grow_back(i + 1);
        }
        i
    }

    pub fn add_bin(&mut self, k: i32, n: u64) {
        let i = self.slot(k);
        let v = self.counts.get(i) + n;
        self.counts.set(i, v);
        self.total += n;
    }

    pub fn add_value(&mut self, value_ms: u64) {
        match Sketch::bin_of(value_ms) {
            None => {
                self.zero += 1;
                self.total += 1;
            }
            Some(k) => self.add_bin(k, 1),
        }
    }

    pub fn add(&mut self, s: &Sketch) {
        let (zero, bins) = s.parts();
        self.zero += zero;
        self.total += zero;
        if let (Some(first), Some(last)) = (bins.first(), bins.last()) {
            // Grow once to the whole range before adding.
            self.slot(first.0);
            self.slot(last.0);
        }
        for &(k, c) in bins {
            self.add_bin(k, c);
        }
    }

    /// Adds another dense sketch.
    pub fn merge(&mut self, o: &DenseSketch) {
        self.zero += o.zero;
        self.total += o.zero;
        let n = o.counts.len();
        if n == 0 {
            return;
        }
        self.slot(o.low);
        self.slot(o.low + n as i32 - 1);
        for i in 0..n {
            let c = o.counts.get(i);
            if c > 0 {
                self.add_bin(o.low + i as i32, c);
            }
        }
    }

    /// Removes what `s` added earlier (counts never go below zero).
    pub fn subtract(&mut self, s: &Sketch) {
        let (zero, bins) = s.parts();
        let z = zero.min(self.zero);
        self.zero -= z;
        self.total -= z;
        let len = self.counts.len();
        for &(k, c) in bins {
            if k < self.low || (k - self.low) as usize >= len {
                continue;
            }
            let i = (k - self.low) as usize;
            let have = self.counts.get(i);
            let take = c.min(have);
            self.counts.set(i, have - take);
            self.total -= take;
        }
        if self.total == 0 {
            *self = DenseSketch::default();
        }
    }

    /// The values at ranks ⌊q·(n−1)⌋ of each of `qs` (ascending), within 1 %, in one pass: what
    /// [`Sketch::quantile`] answers for the same bins.
    pub fn quantiles<const N: usize>(&self, qs: [f64; N]) -> [Option<f64>; N] {
        let mut out = [None; N];
        if self.total == 0 {
            return out;
        }
        let ranks = qs.map(|q| (q.clamp(0.0, 1.0) * (self.total - 1) as f64).floor() as u64);
        let mut next = 0;
        while next < N && ranks[next] < self.zero {
            out[next] = Some(0.0);
            next += 1;
        }
        // One pass over the counters, with the width matched once rather than per counter. The
        // counters are summed a block at a time and a block no quantile falls in is stepped over
        // whole: a query row reads two sketches of ~800 counters, most of them in such blocks.
        fn walk<T: Copy + Into<u64>, const N: usize>(
            v: &[T],
            ranks: &[u64; N],
            mut seen: u64,
            mut next: usize,
            out: &mut [Option<i32>; N],
        ) -> Option<usize> {
            const BLOCK: usize = 32;
            // The last block holding a nonzero counter, for the answer past the last rank.
            let mut last_block = None;
            for (b, block) in v.chunks(BLOCK).enumerate() {
                if next == N {
                    break;
                }
                let sum: u64 = block.iter().map(|&c| c.into()).sum();
                if sum == 0 {
                    continue;
                }
                last_block = Some(b);
                if seen + sum <= ranks[next] {
                    seen += sum;
                    continue;
                }
                for (j, c) in block.iter().enumerate() {
                    let c: u64 = (*c).into();
                    if c == 0 {
                        continue;
                    }
                    seen += c;
                    while next < N && seen > ranks[next] {
                        out[next] = Some((b * BLOCK + j) as i32);
                        next += 1;
                    }
                }
            }
            last_block.and_then(|b| {
                let block = &v[b * BLOCK..v.len().min((b + 1) * BLOCK)];
                let j = block.iter().rposition(|&c| c.into() != 0)?;
                Some(b * BLOCK + j)
            })
        }
        let mut at: [Option<i32>; N] = [None; N];
        let last = match &self.counts {
            Counts::U8(v) => walk(v, &ranks, self.zero, next, &mut at),
            Counts::U16(v) => walk(v, &ranks, self.zero, next, &mut at),
            Counts::U32(v) => walk(v, &ranks, self.zero, next, &mut at),
            Counts::U64(v) => walk(v, &ranks, self.zero, next, &mut at),
        };
        for k in next..N {
            out[k] = at[k]
                .map(|i| i as usize)
                .or(last)
                .map(|i| Sketch::value_of(self.low + i as i32));
        }
        out
    }

    /// The sparse form (what records and rows carry).
    pub fn to_sketch(&self) -> Sketch {
        fn nonzero<T: Copy + Into<u64>>(low: i32, v: &[T]) -> Vec<(i32, u64)> {
            v.iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    let c: u64 = (*c).into();
                    (c > 0).then(|| (low + i as i32, c))
                })
                .collect()
        }
        let bins = match &self.counts {
            Counts::U8(v) => nonzero(self.low, v),
            Counts::U16(v) => nonzero(self.low, v),
            Counts::U32(v) => nonzero(self.low, v),
            Counts::U64(v) => nonzero(self.low, v),
        };
        Sketch::from_parts(self.zero, bins)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn dense_and_sparse_agree(a in prop::collection::vec(0u64..10_000_000, 0..300),
                                  b in prop::collection::vec(0u64..10_000_000, 0..300),
                                  heavy in 0u64..70_000) {
            let mut sa = Sketch::default();
            let mut sb = Sketch::default();
            for v in &a { sa.add(*v); }
            for v in &b { sb.add(*v); }
            let mut d = DenseSketch::default();
            d.add(&sa);
            for v in &b { d.add_value(*v); }
            // A heavy bin forces the counters to widen.
            for _ in 0..heavy { d.add_value(42_000); }
            let mut both = sa.clone();
            both.merge(&sb);
            for _ in 0..heavy { both.add(42_000); }
            prop_assert_eq!(d.to_sketch(), both.clone());
            let qs = [0.0, 0.5, 0.9, 0.95, 0.99, 1.0];
            prop_assert_eq!(d.quantiles(qs), qs.map(|q| both.quantile(q)));
            d.subtract(&sa);
            let mut only_b = sb.clone();
            for _ in 0..heavy { only_b.add(42_000); }
            prop_assert_eq!(d.to_sketch(), only_b);
        }
    }
}
