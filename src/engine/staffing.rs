//! Staffing now: per queue, the agents Erlang C says are needed to meet the queue's
//! service-level target (its T and target), from the last hour's traffic: the arrival rate is
//! what was offered in the `1h` window (or the longest configured window under an hour) over
//! its length, the handle time that window's AHT. docs/sla.md says what the model assumes.

use std::collections::BTreeMap;

use super::report::{DimKind, MetricsQuery, MetricsRow, QueryError};
use super::Engine;
use crate::sla::erlang::{agents_needed, Demand};

/// The longest window the staffing figure looks back over.
pub const STAFFING_WINDOW_MS: i64 = 3_600_000;

/// The agents a queue needs for `offered` calls in `window_ms` with `aht_ms`, `threshold_ms`
/// and `target` (a fraction): `None` without traffic or AHT, or for a target Erlang C cannot
/// reach (100 %).
#[must_use]
pub fn agents_for(
    offered: u64,
    window_ms: i64,
    aht_ms: Option<f64>,
    threshold_ms: i64,
    target: f64,
) -> Option<u32> {
    let aht = aht_ms.filter(|a| *a > 0.0)?;
    if offered == 0 || window_ms <= 0 {
        return None;
    }
    let rate = offered as f64 / window_ms as f64;
    agents_needed(&Demand::from_rate(rate, aht, threshold_ms as f64, target)).map(|s| s.agents)
}

impl Engine {
    /// The window staffing is computed over: `1h`, or the longest configured one under it.
    #[must_use]
    pub fn staffing_window(&self) -> Option<i64> {
        self.s
            .windows
            .iter()
            .map(|w| w.0)
            .filter(|w| *w <= STAFFING_WINDOW_MS)
            .max()
    }

    /// Agents needed now per queue with traffic in the staffing window (see the module
    /// documentation), at `now`.
    #[must_use]
    pub fn staffing_at(&self, now: i64) -> BTreeMap<String, Option<u32>> {
        let Some(w) = self.staffing_window() else {
            return BTreeMap::new();
        };
        let q = MetricsQuery {
            window: Some(crate::units::Millis(w).to_string()),
            by: DimKind::Queue,
            key: None,
        };
        self.counter_rows(&q, now)
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                let n = agents_for(
                    r.counts.offered,
                    w,
                    r.figures.aht_ms,
                    r.params.threshold_ms,
                    r.params.target,
                );
                (r.key, n)
            })
            .collect()
    }

    /// `metrics_at`, with the rows' histograms (`counts.wait_hist`, `counts.handle_hist`) left
    /// empty unless `histograms`: the figures, quantiles included, are the same either way.
    /// Queue rows carry the agents needed now (`realtime.agents_needed`).
    pub fn metrics_with(
        &self,
        q: &MetricsQuery,
        now: i64,
        histograms: bool,
    ) -> Result<Vec<MetricsRow>, QueryError> {
        let mut rows = self.metrics_rows(q, now, histograms)?;
        if q.by == DimKind::Queue && !rows.is_empty() {
            let staffing = self.staffing_at(now);
            for r in &mut rows {
                r.realtime.agents_needed = staffing.get(&r.key).copied().flatten();
            }
        }
        Ok(rows)
    }
}
