//! The daemon's side of `/metrics`: one scrape reads `status`, then the engine's lifetime totals
//! and real-time queue rows under one lock, and hands them to the exposition's families.

use std::sync::Arc;

use super::control::status;
use super::{lock, wall_ms, Shared};
use crate::engine::{DimKind, MetricsQuery};
use crate::exposition::{render, Renderer, Scrape};

pub(super) fn renderer(shared: Arc<Shared>) -> Renderer {
    Arc::new(move || {
        // `status` takes the engine's lock itself: read it first.
        let report = status(&shared);
        let engine = lock(&shared.engine);
        let q = MetricsQuery {
            window: None,
            by: DimKind::Queue,
            key: None,
        };
        // The first window's rows carry each queue's real time and parameters; a window query
        // cannot fail for the configured default window, and a failure only leaves the gauges out.
        let now = wall_ms();
        let rows = engine.metrics_with(&q, now, false).unwrap_or_default();
        let sla = engine.sla_at(now);
        let mut text = render(&Scrape {
            lifetime: engine.lifetime(),
            queues_now: &rows,
            status: &report,
            sla: &sla,
        });
        drop(engine);
        text.push_str(&shared.alerts.exposition());
        text
    })
}
