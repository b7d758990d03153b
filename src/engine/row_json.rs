//! `metrics --json`'s rows written straight as JSON text: the same bytes as serializing
//! [`MetricsRow::json_view`] with `serde_json` (a property test holds them equal), without
//! escaping every key of every row. With 500 agent rows `serde_json` spent a fifth of the CLI's
//! instructions scanning the ~60 keys of each row for characters to escape; here the keys are
//! constants that need none, and only the values go through `serde_json`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::report::{DimKind, MetricsRow};
use super::service_levels::ServiceLevels;

/// A key as the bytes written before its value, comma included: one constant to copy.
macro_rules! key {
    ($name:literal) => {
        Key(concat!(",\"", $name, "\":").as_bytes())
    };
}
/// `,"name":` for a name that needs no escaping.
struct Key(&'static [u8]);

/// More than a row takes (about 1 200 bytes with five bands).
const ROW_BYTES: usize = 2048;

impl MetricsRow {
    /// Appends the row to `out` as one JSON object, keys in name order.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let (c, f, p, r) = (&self.counts, &self.figures, &self.params, &self.realtime);
        // Room for a whole row, so the writes below do not grow the buffer one by one.
        out.reserve(ROW_BYTES);
        let mut o = Object::open(out);
        o.field(key!("abandon_rate"), &f.abandon_rate);
        o.field(key!("abandon_wait_sum_ms"), &c.abandon_wait_sum_ms);
        o.field(key!("abandoned"), &c.abandoned);
        o.field(key!("abandoned_within"), &c.abandoned_within);
        o.field(key!("acw_sum_ms"), &c.acw_sum_ms);
        o.field_if_some(key!("agent"), self.key_if(DimKind::Agent));
        o.field(key!("agents_needed"), &r.agents_needed);
        o.field(key!("aht_ms"), &f.aht_ms);
        o.field(key!("answered"), &c.answered);
        o.field(key!("answered_within"), &c.answered_within);
        o.field(key!("asa_ms"), &f.asa_ms);
        o.field(key!("avg_abandon_ms"), &f.avg_abandon_ms);
        o.field(key!("avg_acw_ms"), &f.avg_acw_ms);
        o.field(key!("avg_hold_ms"), &f.avg_hold_ms);
        o.field(key!("avg_talk_ms"), &f.avg_talk_ms);
        o.key(key!("bands"));
        write_bands(o.out, &c.bands);
        o.field_if_some(key!("channel"), self.key_if(DimKind::Channel));
        o.field(key!("dimension"), self.dimension.name());
        o.field(key!("formula"), p.formula.name());
        o.field(key!("handle_p50_ms"), &f.handle_p50_ms);
        o.field(key!("handle_p90_ms"), &f.handle_p90_ms);
        o.field(key!("handle_p95_ms"), &f.handle_p95_ms);
        o.field(key!("handle_p99_ms"), &f.handle_p99_ms);
        o.field(key!("handled"), &c.handled);
        o.field(key!("hold_sum_ms"), &c.hold_sum_ms);
        o.field(key!("in_acw_now"), &r.in_acw_now);
        o.field(key!("longest_wait_now_ms"), &r.longest_wait_now_ms);
        o.field(key!("offered"), &c.offered);
        o.field(key!("overflow"), &c.overflow);
        o.field_if_some(key!("queue"), self.key_if(DimKind::Queue));
        o.field(key!("service_level"), &f.service_level);
        o.key(key!("service_levels"));
        write_service_levels(o.out, &f.service_levels);
        o.field(key!("short_abandon_ms"), &p.short_abandon_ms);
        o.field(key!("short_abandoned"), &c.short_abandoned);
        o.field_if_some(key!("tag"), self.key_if(DimKind::Tag));
        o.field(key!("talk_sum_ms"), &c.talk_sum_ms);
        o.field(key!("talking_now"), &r.talking_now);
        o.field(key!("target"), &p.target);
        o.field(key!("threshold_ms"), &p.threshold_ms);
        o.field(key!("wait_max_ms"), &c.wait_max_ms);
        o.field(key!("wait_p50_ms"), &f.wait_p50_ms);
        o.field(key!("wait_p90_ms"), &f.wait_p90_ms);
        o.field(key!("wait_p95_ms"), &f.wait_p95_ms);
        o.field(key!("wait_p99_ms"), &f.wait_p99_ms);
        o.field(key!("wait_sum_ms"), &c.wait_sum_ms);
        o.field(key!("waiting_now"), &r.waiting_now);
        o.field(key!("window"), self.window.as_str());
        o.close();
    }
}

/// A JSON object being written.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Object<'a> {
    fn open(out: &'a mut Vec<u8>) -> Object<'a> {
        out.push(b'{');
        Object { out, empty: true }
    }

    fn key(&mut self, key: Key) {
        debug_assert!(key.0[2..key.0.len() - 2]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_'));
        // The first key has no comma before it.
        let skip = usize::from(std::mem::take(&mut self.empty));
        self.out.extend_from_slice(&key.0[skip..]);
    }

    fn field(&mut self, key: Key, value: &(impl Serialize + ?Sized)) {
        self.key(key);
        write_value(self.out, value);
    }

    /// A key that only some rows have (the row's own dimension).
    fn field_if_some(&mut self, key: Key, value: Option<&str>) {
        if let Some(v) = value {
            self.field(key, v);
        }
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

/// A value as `serde_json` writes it: numbers as it formats them, strings escaped, a
/// non-finite float as `null`.
fn write_value(out: &mut Vec<u8>, value: &(impl Serialize + ?Sized)) {
    // Writing into a `Vec` cannot fail, and the values written here (numbers, strings and
    // options of them) have no serialization that fails.
    let _ = value.serialize(&mut serde_json::Serializer::new(out));
}

/// Threshold (ms) → answered within it, the integer keys as strings (as `serde_json` writes a
/// map with integer keys).
fn write_bands(out: &mut Vec<u8>, bands: &BTreeMap<u64, u64>) {
    out.push(b'{');
    for (i, (threshold, within)) in bands.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        write_value(out, threshold);
        out.extend_from_slice(b"\":");
        write_value(out, within);
    }
    out.push(b'}');
}

/// Every formula's name → its value, names in alphabetical order.
fn write_service_levels(out: &mut Vec<u8>, levels: &ServiceLevels) {
    out.push(b'{');
    for (i, (name, value)) in levels.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        write_value(out, &value);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::engine::aggregate::{Agg, Figures};
    use crate::engine::report::{Realtime, RowParams};
    use crate::units::Formula;

    const DIMS: [DimKind; 5] = [
        DimKind::All,
        DimKind::Queue,
        DimKind::Agent,
        DimKind::Channel,
        DimKind::Tag,
    ];

    /// A float the way figures come: often absent, sometimes whole, sometimes fractional,
    /// tiny or huge, and now and then one that is not finite.
    fn figure() -> impl Strategy<Value = Option<f64>> {
        prop_oneof![
            Just(None),
            (0u64..10_000_000).prop_map(|n| Some(n as f64)),
            any::<f64>().prop_map(Some),
            prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY)]
                .prop_map(Some),
            (1u64..1_000_000, 1u64..1_000_000).prop_map(|(a, b)| Some(a as f64 / b as f64)),
        ]
    }

    fn figures() -> impl Strategy<Value = Figures> {
        (
            proptest::collection::vec(figure(), 16),
            proptest::collection::vec(figure(), 7),
        )
            .prop_map(|(v, levels)| {
                let mut levels = levels.into_iter();
                Figures {
                    asa_ms: v[0],
                    avg_abandon_ms: v[1],
                    aht_ms: v[2],
                    avg_talk_ms: v[3],
                    avg_hold_ms: v[4],
                    avg_acw_ms: v[5],
                    abandon_rate: v[6],
                    service_level: v[7],
                    service_levels: ServiceLevels::from_fn(|_| levels.next().flatten()),
                    wait_p50_ms: v[8],
                    wait_p90_ms: v[9],
                    wait_p95_ms: v[10],
                    wait_p99_ms: v[11],
                    handle_p50_ms: v[12],
                    handle_p90_ms: v[13],
                    handle_p95_ms: v[14],
                    handle_p99_ms: v[15],
                }
            })
    }

    fn counts() -> impl Strategy<Value = Agg> {
        (
            proptest::collection::vec(any::<u64>(), 14),
            proptest::collection::btree_map(any::<u64>(), any::<u64>(), 0..7),
        )
            .prop_map(|(n, bands)| Agg {
                offered: n[0],
                answered: n[1],
                answered_within: n[2],
                abandoned: n[3],
                abandoned_within: n[4],
                short_abandoned: n[5],
                overflow: n[6],
                handled: n[7],
                wait_sum_ms: n[8],
                wait_max_ms: n[9],
                abandon_wait_sum_ms: n[10],
                talk_sum_ms: n[11],
                hold_sum_ms: n[12],
                acw_sum_ms: n[13],
                bands,
                ..Agg::default()
            })
    }

    fn row() -> impl Strategy<Value = MetricsRow> {
        (
            // Names with quotes, backslashes, control characters and non-ASCII text.
            "[a-z0-9\"\\\\\u{1}\n\té€😀 =()]{0,12}",
            "[a-z0-9]{1,4}",
            0..DIMS.len(),
            counts(),
            figures(),
            (any::<i64>(), any::<i64>(), 0..Formula::ALL.len(), figure()),
            (
                any::<u64>(),
                proptest::option::of(any::<u64>()),
                any::<u64>(),
                any::<u64>(),
                proptest::option::of(any::<u32>()),
            ),
        )
            .prop_map(|(key, window, dim, counts, figures, params, realtime)| {
                let (threshold_ms, short_abandon_ms, formula, target) = params;
                let (waiting_now, longest_wait_now_ms, talking_now, in_acw_now, agents_needed) =
                    realtime;
                MetricsRow {
                    window,
                    dimension: DIMS[dim],
                    key,
                    counts,
                    figures,
                    params: RowParams {
                        threshold_ms,
                        short_abandon_ms,
                        formula: Formula::ALL[formula],
                        target: target.unwrap_or(0.8),
                    },
                    realtime: Realtime {
                        waiting_now,
                        longest_wait_now_ms,
                        talking_now,
                        in_acw_now,
                        agents_needed,
                    },
                }
            })
    }

    proptest! {
        /// The written row is byte for byte what serde_json makes of the row's JSON view.
        #[test]
        fn written_row_equals_serde_json_of_its_view(row in row()) {
            let mut written = Vec::new();
            row.write_json(&mut written);
            let serialized = serde_json::to_vec(&row.json_view()).unwrap();
            prop_assert_eq!(written, serialized);
        }
    }
}
