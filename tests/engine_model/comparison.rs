//! Comparing the engine's rows with the oracle's, field by field; every difference is described.

use std::collections::BTreeSet;

use callmetrics::engine::{DimKind, MetricsRow};

use crate::model::{div, ORow, Oracle};
use crate::truth::{Model, Params};
use crate::{BANDS_MS, FORMULAS};

const QUANTILES: [f64; 4] = [0.50, 0.90, 0.95, 0.99];

fn close(got: Option<f64>, want: Option<f64>) -> bool {
    match (got, want) {
        (None, None) => true,
        (Some(g), Some(w)) => (g - w).abs() <= 1e-9 * g.abs().max(w.abs()),
        _ => false,
    }
}

/// The exact quantile is sorted[⌊q·(n−1)⌋]; the engine's must be within 1 % of it.
fn quantile_ok(got: Option<f64>, values: &[u64], q: f64) -> Result<(), String> {
    if values.is_empty() {
        return match got {
            None => Ok(()),
            Some(g) => Err(format!("engine {g}, model None (no values)")),
        };
    }
    let mut s = values.to_vec();
    s.sort_unstable();
    let exact = s[(q * (s.len() - 1) as f64).floor() as usize] as f64;
    match got {
        Some(g) if (g - exact).abs() <= 0.01 * exact => Ok(()),
        _ => Err(format!("engine {got:?}, exact {exact} (values {s:?})")),
    }
}

fn compare_row(row: &MetricsRow, o: &ORow, p: &Params, diffs: &mut Vec<String>) {
    let c = &row.counts;
    let counters = [
        ("offered", c.offered, o.offered),
        ("answered", c.answered, o.answered),
        ("answered_within", c.answered_within, o.answered_within),
        ("abandoned", c.abandoned, o.abandoned),
        ("abandoned_within", c.abandoned_within, o.abandoned_within),
        ("short_abandoned", c.short_abandoned, o.short_abandoned),
        ("overflow", c.overflow, o.overflow),
        ("handled", c.handled, o.handled),
        ("wait_sum_ms", c.wait_sum_ms, o.wait_sum_ms),
        ("wait_max_ms", c.wait_max_ms, o.wait_max_ms),
        (
            "abandon_wait_sum_ms",
            c.abandon_wait_sum_ms,
            o.abandon_wait_sum_ms,
        ),
        ("talk_sum_ms", c.talk_sum_ms, o.talk_sum_ms),
        ("hold_sum_ms", c.hold_sum_ms, o.hold_sum_ms),
        ("acw_sum_ms", c.acw_sum_ms, o.acw_sum_ms),
        ("wait_hist.count", c.wait_hist.count(), o.waits.len() as u64),
        (
            "handle_hist.count",
            c.handle_hist.count(),
            o.handles.len() as u64,
        ),
        ("waiting_now", row.realtime.waiting_now, o.waiting_now),
        ("talking_now", row.realtime.talking_now, o.talking_now),
        ("in_acw_now", row.realtime.in_acw_now, o.in_acw_now),
    ];
    for (name, got, want) in counters {
        if got != want {
            diffs.push(format!("{name}: engine {got}, model {want}"));
        }
    }
    if row.realtime.longest_wait_now_ms != o.longest_wait_now_ms {
        diffs.push(format!(
            "longest_wait_now_ms: engine {:?}, model {:?}",
            row.realtime.longest_wait_now_ms, o.longest_wait_now_ms
        ));
    }
    for (i, b) in BANDS_MS.iter().enumerate() {
        let got = c.bands.get(b).copied().unwrap_or(0);
        if got != o.bands[i] {
            diffs.push(format!("bands[{b}]: engine {got}, model {}", o.bands[i]));
        }
    }
    if let Some(extra) = c.bands.keys().find(|b| !BANDS_MS.contains(b)) {
        diffs.push(format!("bands: unexpected threshold {extra}"));
    }

    let handled = o.handled as f64;
    let f = &row.figures;
    let figures = [
        (
            "asa_ms",
            f.asa_ms,
            div(o.wait_sum_ms as f64, o.answered as f64),
        ),
        (
            "avg_abandon_ms",
            f.avg_abandon_ms,
            div(o.abandon_wait_sum_ms as f64, o.abandoned as f64),
        ),
        (
            "aht_ms",
            f.aht_ms,
            div(
                (o.talk_sum_ms + o.hold_sum_ms + o.acw_sum_ms) as f64,
                handled,
            ),
        ),
        (
            "avg_talk_ms",
            f.avg_talk_ms,
            div(o.talk_sum_ms as f64, handled),
        ),
        (
            "avg_hold_ms",
            f.avg_hold_ms,
            div(o.hold_sum_ms as f64, handled),
        ),
        (
            "avg_acw_ms",
            f.avg_acw_ms,
            div(o.acw_sum_ms as f64, handled),
        ),
        (
            "abandon_rate",
            f.abandon_rate,
            div(
                (o.abandoned - o.short_abandoned) as f64,
                (o.offered - o.short_abandoned) as f64,
            ),
        ),
        ("service_level", f.service_level, o.service_level(p.formula)),
    ];
    for (name, got, want) in figures {
        if !close(got, want) {
            diffs.push(format!("{name}: engine {got:?}, model {want:?}"));
        }
    }
    let names: BTreeSet<&str> = f.service_levels.iter().map(|(n, _)| n).collect();
    let want_names: BTreeSet<&str> = FORMULAS.iter().map(|(_, n)| *n).collect();
    if names != want_names {
        diffs.push(format!(
            "service_levels names: engine {names:?}, want {want_names:?}"
        ));
    }
    for (formula, name) in FORMULAS {
        let got = f.service_levels.by_name(name).flatten();
        let want = o.service_level(formula);
        if !close(got, want) {
            diffs.push(format!(
                "service_levels.{name}: engine {got:?}, model {want:?}"
            ));
        }
    }
    let quantiles = [
        ("wait_p50_ms", f.wait_p50_ms, &o.waits, QUANTILES[0]),
        ("wait_p90_ms", f.wait_p90_ms, &o.waits, QUANTILES[1]),
        ("wait_p95_ms", f.wait_p95_ms, &o.waits, QUANTILES[2]),
        ("wait_p99_ms", f.wait_p99_ms, &o.waits, QUANTILES[3]),
        ("handle_p50_ms", f.handle_p50_ms, &o.handles, QUANTILES[0]),
        ("handle_p90_ms", f.handle_p90_ms, &o.handles, QUANTILES[1]),
        ("handle_p95_ms", f.handle_p95_ms, &o.handles, QUANTILES[2]),
        ("handle_p99_ms", f.handle_p99_ms, &o.handles, QUANTILES[3]),
    ];
    for (name, got, values, q) in quantiles {
        if let Err(e) = quantile_ok(got, values, q) {
            diffs.push(format!("{name}: {e}"));
        }
    }

    let rp = &row.params;
    if (rp.threshold_ms, rp.short_abandon_ms, rp.formula) != (p.threshold_ms, p.short_ms, p.formula)
        || rp.target != p.target
    {
        diffs.push(format!("params: engine {rp:?}, model {p:?}"));
    }
}

/// Compares one dimension's rows with the model; returns the differences.
pub fn compare_dim(
    rows: &[MetricsRow],
    o: &Oracle,
    model: &Model,
    window: &str,
    dim: DimKind,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut keys = BTreeSet::new();
    for row in rows {
        if !keys.insert(row.key.clone()) {
            out.push(format!("key {:?} appears twice", row.key));
        }
        if row.window != window || row.dimension != dim {
            out.push(format!(
                "row {:?} labelled window {:?} dimension {:?}",
                row.key, row.window, row.dimension
            ));
        }
    }
    let mut expected_keys: BTreeSet<String> = o
        .seen
        .iter()
        .filter(|(d, _)| *d == dim)
        .map(|(_, k)| k.clone())
        .collect();
    match dim {
        DimKind::Queue => expected_keys.extend(model.queues.keys().cloned()),
        DimKind::All => {
            expected_keys.insert("all".into());
        }
        _ => {}
    }
    for k in expected_keys.difference(&keys) {
        out.push(format!("missing row for key {k:?}"));
    }
    let zero = ORow::default();
    for row in rows {
        let orow = o.rows.get(&(dim, row.key.clone())).unwrap_or(&zero);
        let p = if dim == DimKind::Queue {
            model.params(&row.key)
        } else {
            model.defaults
        };
        let mut diffs = Vec::new();
        compare_row(row, orow, &p, &mut diffs);
        if !diffs.is_empty() {
            out.push(format!(
                "[{window} by {dim:?} key {:?}] {}",
                row.key,
                diffs.join("; ")
            ));
        }
    }
    out
}
