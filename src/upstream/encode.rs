//! The encoder role of a sink: a batch of interval records as a request body (JSON or
//! `MessagePack` envelope, Influx line protocol), its gzip, and the batch key receivers dedupe on.
//! `docs/upstream.md` describes these bodies for receivers.

use std::io::Write;

use serde_json::{json, Value};

use crate::config::{BodyFormat, SinkKind};
use crate::upstream::IntervalRecord;

/// `Content-Type` of a JSON batch.
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// `Content-Type` of a `MessagePack` batch.
pub const CONTENT_TYPE_MSGPACK: &str = "application/msgpack";
/// `Content-Type` of Influx line protocol.
pub const CONTENT_TYPE_INFLUX: &str = "text/plain; charset=utf-8";
/// The uncompressed request body for `batch` and its `Content-Type`: the JSON or `MessagePack`
/// envelope for `http`, newline-separated line protocol for `influx`. `sink` names the sink in
/// the log.
pub fn body(
    kind: SinkKind,
    format: BodyFormat,
    sink: &str,
    batch: &[IntervalRecord],
) -> (Vec<u8>, &'static str) {
    match kind {
        SinkKind::Influx => {
            let lines: Vec<String> = batch.iter().map(IntervalRecord::influx_lines).collect();
            (lines.join("\n").into_bytes(), CONTENT_TYPE_INFLUX)
        }
        SinkKind::Http => {
            let envelope = envelope(batch);
            match format {
                BodyFormat::Json => (envelope.to_string().into_bytes(), CONTENT_TYPE_JSON),
                // Serializing a `serde_json::Value` into a Vec cannot fail (no I/O, string map
                // keys, known lengths); should it ever, JSON labelled as JSON is still correct.
                BodyFormat::Msgpack => match rmp_serde::to_vec_named(&envelope) {
                    Ok(bytes) => (bytes, CONTENT_TYPE_MSGPACK),
                    Err(e) => {
                        tracing::error!(sink = %sink, error = %e, "MessagePack encoding failed; sending JSON");
                        (envelope.to_string().into_bytes(), CONTENT_TYPE_JSON)
                    }
                },
            }
        }
    }
}

/// `<host_id>:<first seq>-<last seq>`: the same for every attempt at the same batch.
#[must_use]
pub fn batch_key(batch: &[IntervalRecord]) -> String {
    match (batch.first(), batch.last()) {
        (Some(first), Some(last)) => format!("{}:{}-{}", first.host_id, first.seq, last.seq),
        _ => String::new(),
    }
}

/// The envelope `{"host_id", "batch_key", "records": [...]}` of an `http` sink.
pub fn envelope(batch: &[IntervalRecord]) -> Value {
    let host_id = batch
        .first()
        .map(|r| r.host_id.as_str())
        .unwrap_or_default();
    let records: Vec<Value> = batch.iter().map(IntervalRecord::to_json).collect();
    json!({ "host_id": host_id, "batch_key": batch_key(batch), "records": records })
}

/// Gzip at the default level.
pub fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::default(),
    );
    encoder.write_all(data)?;
    encoder.finish()
}
