//! Control protocol v2, shared by daemon and CLI: every message is a 4-byte big-endian length
//! followed by a `MessagePack` `Envelope`: a map of the protocol version and the body, a request or
//! response in compact `MessagePack` (structs as arrays) carried as a binary blob. Read-only
//! queries and mutating commands are separate requests.
//!
//! The envelope stays a named map so that any version's reader finds `version` and can say which
//! binary to use; the body is compact because a metrics answer of 500 rows under field names is
//! half a megabyte, and encoding, decoding and matching those names was most of its round trip.
//!
//! The protocol borrows its payload types from the modules that produce them (metrics rows and
//! stats from the engine, counters from ingest, sink status from upstream) rather than owning
//! copies: those types already carry the output names of `docs/metrics.md`, which the JSON the
//! CLI prints must keep, and a second copy per type would be one more place for a name to drift.
//! The price is that `control` stands above those modules in the layering; nothing below it
//! imports it. The version number guards the wire form: a change to a borrowed type that alters
//! its `MessagePack` form bumps [`PROTOCOL_VERSION`].

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::LimitsConfig;
use crate::engine::{DimKind, EngineStats, MetricsQuery, MetricsRow, OpenSegment, SlaObjective};
use crate::history::report::{Report, ReportQuery};
use crate::history::HistoryStatus;
use crate::ingest::IngestCounters;
use crate::sources::follow::SourceStatus;
use crate::upstream::{RecordKind, SinkStatus};

/// 1: body as a named map; 2: body as a compact blob; 3: the status report lists the sources;
/// 4: a source's status has the event-socket states and counters; 5: rows carry the agents
/// needed (`Realtime::agents_needed`), the status report the history, and the `sla`, `report`
/// and `alerts` requests exist; 6: open segments carry their wait clock, deadline and time left; 7: the
/// `callbacks` request exists, and the status report's limits and engine figures count callback
/// requests; 8: a report query may name a tag (`ReportQuery::tag`) and a report lists the tag
/// names of its rows (`Report::tags`).
pub const PROTOCOL_VERSION: u16 = 8;
/// Largest control message either side accepts (answers with many rows are the large ones).
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// The most a reader reserves for a message before its bytes arrive.
const RESERVE_UP_FRONT: usize = 1 << 20;

/// Largest request the daemon accepts: every request is a few dozen bytes, so this bounds what one
/// client can make the daemon buffer.
pub const MAX_REQUEST_BYTES: usize = 64 << 10;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Read-only: daemon health and counters.
    Status,
    /// Read-only: metrics rows.
    Metrics(MetricsQuery),
    /// Read-only: open segments.
    Calls,
    /// Read-only: records waiting in the upstream outbox (at most `limit`).
    Outbox { limit: usize },
    /// Mutating: checkpoint the store now and ship every interval that has ended.
    Flush,
    /// Mutating: re-read the config file.
    Reload,
    /// Read-only: the `[[sla]]` objectives' compliance this period and in the periods kept.
    Sla,
    /// Read-only: a report from the interval history.
    Report(ReportQuery),
    /// Read-only: open alerts and the last resolved ones.
    Alerts,
    /// Read-only: open callback requests by deadline and each objective's tally.
    Callbacks,
}

impl Request {
    /// Mutating requests are served on the admin socket only.
    #[must_use]
    pub fn is_mutating(&self) -> bool {
        matches!(self, Request::Flush | Request::Reload)
    }

    /// The CLI subcommand that sends it.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Metrics(_) => "metrics",
            Request::Calls => "calls",
            Request::Outbox { .. } => "outbox",
            Request::Flush => "flush",
            Request::Reload => "reload",
            Request::Sla => "sla",
            Request::Report(_) => "report",
            Request::Alerts => "alerts",
            Request::Callbacks => "callbacks",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Status(Box<StatusReport>),
    Metrics(Vec<MetricsRow>),
    Calls(Vec<OpenSegment>),
    Outbox(Vec<OutboxEntry>),
    /// A mutating command finished; the text says what it did.
    Done(String),
    /// The request failed; the text says why.
    ///
    /// Refusals are typed where they are made (e.g. `server::Refusal` for a mutating request on
    /// the read-only socket) and travel as their text: a new variant here would leave a CLI of
    /// the same protocol version, built before it, unable to decode the answer at all (an unknown
    /// variant), while every CLI of this version prints an `Error`'s text. So a new refusal needs
    /// no new [`PROTOCOL_VERSION`]; no client parses the text back.
    Error(String),
    Sla(Vec<SlaObjective>),
    Report(Box<Report>),
    /// Open and recently resolved alerts.
    Alerts(crate::alerts::AlertsReport),
    /// Open callback requests and the objectives' tallies.
    Callbacks(crate::engine::CallbacksReport),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreStatus {
    pub path: String,
    pub size_bytes: u64,
    pub max_bytes: u64,
    pub logged_groups: u64,
    pub last_checkpoint_age_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub version: String,
    pub uptime_ms: u64,
    pub event_socket: String,
    pub control_socket: String,
    /// The socket that also takes flush and reload. Defaulted when absent from a status read as
    /// JSON; on the control socket every field is sent, in order (the body is positional).
    #[serde(default)]
    pub admin_socket: String,
    pub time_zone: String,
    pub windows: Vec<String>,
    pub ingest: IngestCounters,
    pub engine: EngineStats,
    pub store: StoreStatus,
    pub limits: LimitsConfig,
    #[serde(default)]
    pub upstream: UpstreamStatus,
    /// The in-daemon sources (`[[sources]]`), in config order.
    #[serde(default)]
    pub sources: Vec<SourceStatus>,
    /// The interval history kept on disk.
    #[serde(default)]
    pub history: HistoryStatus,
}

/// Upstream shipping as `status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpstreamStatus {
    pub host_id: String,
    pub outbox_records: u64,
    pub outbox_bytes: u64,
    /// Records dropped because the outbox was full.
    pub dropped_records: u64,
    pub sinks: Vec<SinkStatus>,
}

/// A record waiting in the outbox, as `outbox` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub seq: u64,
    pub idempotency_key: String,
    pub kind: RecordKind,
    pub interval_start_ms: i64,
    pub interval_ms: i64,
    pub dimension: DimKind,
    pub key: String,
    pub offered: u64,
    /// Sinks that have not yet confirmed it.
    pub waiting_for: Vec<String>,
}

/// What goes on the wire: the version, and the body as compact `MessagePack` bytes.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope<'a> {
    version: u16,
    #[serde(borrow)]
    body: Blob<'a>,
}

/// Bytes serialized as one `MessagePack` bin (a plain `&[u8]` would be an array of numbers).
#[derive(Debug)]
struct Blob<'a>(&'a [u8]);

impl Serialize for Blob<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Blob<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a [u8]>::deserialize(d).map(Blob)
    }
}

#[derive(Debug, Error)]
pub enum ProtocolError {
    #[error("connection closed")]
    Closed,
    #[error("I/O error on the control socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("control message of {len} bytes is larger than the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("undecodable control message: {0}")]
    Decode(String),
    #[error("protocol version {0} is not supported (this build speaks version {PROTOCOL_VERSION}); use the callmetrics binary that matches the daemon")]
    Version(u16),
}

/// One message's envelope (without its length prefix), of at most [`MAX_MESSAGE_BYTES`].
pub fn encode_message<T: Serialize>(body: &T) -> Result<Vec<u8>, ProtocolError> {
    let body = rmp_serde::to_vec(body).map_err(|e| ProtocolError::Decode(e.to_string()))?;
    let bytes = rmp_serde::to_vec_named(&Envelope {
        version: PROTOCOL_VERSION,
        body: Blob(&body),
    })
    .map_err(|e| ProtocolError::Decode(e.to_string()))?;
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(ProtocolError::TooLarge {
            len: bytes.len(),
            max: MAX_MESSAGE_BYTES,
        });
    }
    Ok(bytes)
}

/// The body of one message's envelope (without its length prefix).
pub fn decode_message<T: for<'de> Deserialize<'de>>(buf: &[u8]) -> Result<T, ProtocolError> {
    // The version alone first: every version's envelope has it (v1 carried its body as a map),
    // so a reader of any version can name the binary to use; skipping a v2 blob costs nothing.
    #[derive(Deserialize)]
    struct VersionOnly {
        version: u16,
    }
    let v: VersionOnly =
        rmp_serde::from_slice(buf).map_err(|e| ProtocolError::Decode(e.to_string()))?;
    if v.version != PROTOCOL_VERSION {
        return Err(ProtocolError::Version(v.version));
    }
    let env: Envelope<'_> =
        rmp_serde::from_slice(buf).map_err(|e| ProtocolError::Decode(e.to_string()))?;
    rmp_serde::from_slice(env.body.0).map_err(|e| ProtocolError::Decode(e.to_string()))
}

/// Writes one message.
pub async fn write_message<W, T>(w: &mut W, body: &T) -> Result<(), ProtocolError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let bytes = encode_message(body)?;
    // Bounded by MAX_MESSAGE_BYTES above, so the length fits a u32.
    w.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
    w.write_all(&bytes).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one message of up to [`MAX_MESSAGE_BYTES`]; `Closed` on a clean end of stream before a
/// length.
pub async fn read_message<R, T>(r: &mut R) -> Result<T, ProtocolError>
where
    R: AsyncRead + Unpin,
    T: for<'de> Deserialize<'de>,
{
    read_message_within(r, MAX_MESSAGE_BYTES).await
}

/// Reads one message of up to `max` bytes. Room for up to 1 MiB of it is reserved when its
/// length is read; beyond that the buffer grows only as bytes arrive, so a large length
/// announced and not sent costs little.
pub async fn read_message_within<R, T>(r: &mut R, max: usize) -> Result<T, ProtocolError>
where
    R: AsyncRead + Unpin,
    T: for<'de> Deserialize<'de>,
{
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(ProtocolError::Closed)
        }
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(ProtocolError::TooLarge { len, max });
    }
    // Room for the announced length up front (up to 1 MiB): growing by doubling as bytes arrive
    // copied a 200 KB answer several times over. A request the daemon reads is at most
    // MAX_REQUEST_BYTES (64 KiB), so this reserves no more there than a full request would use.
    let mut buf = Vec::with_capacity(len.min(RESERVE_UP_FRONT));
    (&mut *r).take(len as u64).read_to_end(&mut buf).await?;
    if buf.len() != len {
        return Err(ProtocolError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!(
                "connection closed after {} of the {len} bytes of a message",
                buf.len()
            ),
        )));
    }
    decode_message(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::DimKind;

    #[tokio::test]
    async fn requests_round_trip() {
        let req = Request::Metrics(MetricsQuery {
            window: Some("15m".into()),
            by: DimKind::Agent,
            key: None,
        });
        let mut buf = Vec::new();
        write_message(&mut buf, &req).await.unwrap();
        let back: Request = read_message(&mut buf.as_slice()).await.unwrap();
        assert_eq!(back, req);
    }

    #[tokio::test]
    async fn other_versions_are_refused_by_name() {
        let body = rmp_serde::to_vec(&Request::Status).unwrap();
        let bytes = rmp_serde::to_vec_named(&Envelope {
            version: 99,
            body: Blob(&body),
        })
        .unwrap();
        let mut buf = (bytes.len() as u32).to_be_bytes().to_vec();
        buf.extend(bytes);
        let err = read_message::<_, Request>(&mut buf.as_slice())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("version 99"), "{err}");
    }

    #[tokio::test]
    async fn oversized_lengths_are_refused_before_reading() {
        let buf = u32::MAX.to_be_bytes();
        let err = read_message::<_, Request>(&mut buf.as_slice())
            .await
            .unwrap_err();
        assert!(matches!(err, ProtocolError::TooLarge { .. }));
    }

    #[tokio::test]
    async fn requests_past_their_limit_are_refused_with_it() {
        let mut buf = ((MAX_REQUEST_BYTES + 1) as u32).to_be_bytes().to_vec();
        buf.extend(vec![0u8; 16]);
        let err = read_message_within::<_, Request>(&mut buf.as_slice(), MAX_REQUEST_BYTES)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProtocolError::TooLarge { len, max } if len == MAX_REQUEST_BYTES + 1 && max == MAX_REQUEST_BYTES),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_message_cut_short_is_an_io_error_not_a_decode_error() {
        let mut buf = 100u32.to_be_bytes().to_vec();
        buf.extend(vec![0x90u8; 10]);
        let err = read_message::<_, Request>(&mut buf.as_slice())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ProtocolError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof),
            "{err}"
        );
        assert!(err.to_string().contains("10 of the 100 bytes"), "{err}");
    }
}
