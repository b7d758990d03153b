//! An accumulator of aggregates: exact counters plus dense sketches that add and subtract in place.
//! Window totals and query rows are built in one; [`Running::to_agg`] gives the plain aggregate.

use super::aggregate::{Agg, HandleFacts, QueueFacts};
use super::dense::DenseSketch;
use crate::units::QueueParams;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Running {
    /// Counters, sums, maximum and bands; its own sketches stay empty.
    pub agg: Agg,
    pub wait: DenseSketch,
    pub handle: DenseSketch,
}

impl Running {
    pub fn is_empty(&self) -> bool {
        self.agg.offered == 0 && self.agg.handled == 0 && self.agg.revision == 0
    }

    pub fn add_queue(&mut self, f: &QueueFacts, p: &QueueParams, bands: &[u64]) {
        self.agg.count_queue(f, p, bands);
        self.wait.add_value(f.wait_ms());
    }

    pub fn add_handle(&mut self, h: &HandleFacts) {
        self.agg.count_handle(h);
        self.handle.add_value(h.handle_ms());
    }

    pub fn add(&mut self, a: &Agg) {
        self.agg.merge_counters(a);
        self.wait.add(&a.wait_hist);
        self.handle.add(&a.handle_hist);
    }

    /// Adds another accumulator.
    pub fn merge(&mut self, o: &Running) {
        self.agg.merge_counters(&o.agg);
        self.wait.merge(&o.wait);
        self.handle.merge(&o.handle);
    }

    /// Removes an aggregate added earlier; the maximum stays (maxima do not subtract).
    pub fn subtract(&mut self, a: &Agg) {
        self.agg.subtract_counters(a);
        self.wait.subtract(&a.wait_hist);
        self.handle.subtract(&a.handle_hist);
    }

    pub fn to_agg(&self) -> Agg {
        let mut a = self.agg.clone();
        a.wait_hist = self.wait.to_sketch();
        a.handle_hist = self.handle.to_sketch();
        a
    }

    pub fn heap_bytes(&self) -> usize {
        self.wait.heap_bytes() + self.handle.heap_bytes() + self.agg.bands.len() * 48
    }
}
