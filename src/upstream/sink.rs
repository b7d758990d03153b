//! One upstream receiver: how a batch of interval records becomes an HTTP request, and how the
//! answer is classified (delivered, retry later, rejected for good). `docs/upstream.md` is the
//! receiver-side description of everything sent here.

use std::io::Write;
use std::time::Duration;

use reqwest::header::{
    HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, LOCATION, RETRY_AFTER,
    USER_AGENT,
};
use reqwest::{StatusCode, Url};
use serde_json::{json, Value};

use crate::config::{BodyFormat, SinkConfig, SinkKind};
use crate::upstream::IntervalRecord;

/// `Content-Type` of a JSON batch.
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// `Content-Type` of a MessagePack batch.
pub const CONTENT_TYPE_MSGPACK: &str = "application/msgpack";
/// `Content-Type` of Influx line protocol.
pub const CONTENT_TYPE_INFLUX: &str = "text/plain; charset=utf-8";
/// Header carrying the batch key (`<host_id>:<first seq>-<last seq>`).
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// How much of a refusing receiver's answer is quoted in the error text.
const ERROR_BODY_BYTES: usize = 200;
/// A `Retry-After` longer than this is taken as this: a receiver asking for days is misconfigured,
/// and the records stay in the outbox either way.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// What happened to one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The receiver answered 2xx: every record of the batch may leave the outbox.
    Delivered,
    /// Not delivered, worth sending the same batch again (429, 5xx, 408, timeouts, connection
    /// errors). `after` is the receiver's `Retry-After`, when it gave a usable one.
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// The receiver refused this batch for good (other 4xx, 3xx): park it as dead letters.
    Reject { error: String },
}

/// A sink that cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("sink `{sink}`: cannot read token_file `{path}`: {source}")]
    TokenUnreadable {
        sink: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("sink `{sink}`: token_file `{path}` is empty")]
    TokenEmpty { sink: String, path: String },
    #[error("sink `{sink}`: token in `{path}` is not usable in an HTTP header (it must be one line of visible ASCII)")]
    TokenInvalid { sink: String, path: String },
    #[error("sink `{sink}`: url `{url}` is not usable: {problem}")]
    BadUrl {
        sink: String,
        url: String,
        problem: String,
    },
    #[error("sink `{sink}`: cannot build the HTTP client: {source}")]
    Client {
        sink: String,
        #[source]
        source: reqwest::Error,
    },
}

/// A configured receiver with its own HTTP client (connection pool, timeouts).
#[derive(Debug)]
pub struct Sink {
    name: String,
    kind: SinkKind,
    format: BodyFormat,
    gzip: bool,
    url: Url,
    client: reqwest::Client,
}

impl Sink {
    /// Builds the sink: parses the URL (adding `precision=ms` to an Influx write URL that has no
    /// precision), reads and trims the token file, and builds a client with the configured
    /// connect and request timeouts. Does no network I/O.
    pub fn new(cfg: &SinkConfig) -> Result<Sink, SinkError> {
        // Installing twice is refused harmlessly; any provider already installed is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let bad_url = |problem: String| SinkError::BadUrl {
            sink: cfg.name.clone(),
            url: redact_url(&cfg.url),
            problem,
        };
        let mut url = Url::parse(&cfg.url).map_err(|e| bad_url(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad_url("the scheme must be http or https".into()));
        }
        if cfg.kind == SinkKind::Influx {
            let precision = url
                .query_pairs()
                .find(|(k, _)| k == "precision")
                .map(|(_, v)| v.into_owned());
            match precision.as_deref() {
                None => {
                    url.query_pairs_mut().append_pair("precision", "ms");
                }
                Some("ms") => {}
                Some(other) => {
                    return Err(bad_url(format!(
                        "precision={other}, but the points carry millisecond timestamps: \
                         use precision=ms or leave precision out"
                    )))
                }
            }
        }

        let mut headers = HeaderMap::new();
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("callmetrics/", env!("CARGO_PKG_VERSION"))),
        );
        if !cfg.token_file.is_empty() {
            let path = cfg.token_file.clone();
            let text =
                std::fs::read_to_string(&path).map_err(|source| SinkError::TokenUnreadable {
                    sink: cfg.name.clone(),
                    path: path.clone(),
                    source,
                })?;
            let token = text.trim();
            if token.is_empty() {
                return Err(SinkError::TokenEmpty {
                    sink: cfg.name.clone(),
                    path,
                });
            }
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                SinkError::TokenInvalid {
                    sink: cfg.name.clone(),
                    path: path.clone(),
                }
            })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }

        let client = reqwest::Client::builder()
            .connect_timeout(millis(cfg.connect_timeout.0))
            .timeout(millis(cfg.request_timeout.0))
            // A redirected POST may turn into a GET without body: never follow, report it.
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .build()
            .map_err(|source| SinkError::Client {
                sink: cfg.name.clone(),
                source,
            })?;

        Ok(Sink {
            name: cfg.name.clone(),
            kind: cfg.kind,
            format: cfg.format,
            gzip: cfg.gzip,
            url,
            client,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL requests go to (with `precision=ms` added for Influx), credentials masked.
    pub fn display_url(&self) -> String {
        redact_url(self.url.as_str())
    }

    /// The uncompressed request body for `batch` and its `Content-Type`: the JSON or MessagePack
    /// envelope for `http`, newline-separated line protocol for `influx`. Gzip (when configured)
    /// is applied on top by [`Sink::send`]; [`gzip`] does the same for measurements.
    pub fn encode_body(&self, batch: &[IntervalRecord]) -> (Vec<u8>, &'static str) {
        match self.kind {
            SinkKind::Influx => {
                let lines: Vec<String> = batch.iter().map(IntervalRecord::influx_line).collect();
                (lines.join("\n").into_bytes(), CONTENT_TYPE_INFLUX)
            }
            SinkKind::Http => {
                let envelope = envelope(batch);
                match self.format {
                    BodyFormat::Json => (envelope.to_string().into_bytes(), CONTENT_TYPE_JSON),
                    // Serializing a `serde_json::Value` into a Vec cannot fail (no I/O, string map
                    // keys, known lengths); should it ever, JSON labelled as JSON is still correct.
                    BodyFormat::Msgpack => match rmp_serde::to_vec_named(&envelope) {
                        Ok(bytes) => (bytes, CONTENT_TYPE_MSGPACK),
                        Err(e) => {
                            tracing::error!(sink = %self.name, error = %e, "MessagePack encoding failed; sending JSON");
                            (envelope.to_string().into_bytes(), CONTENT_TYPE_JSON)
                        }
                    },
                }
            }
        }
    }

    /// Sends one batch and classifies the answer. An empty batch is trivially delivered.
    pub async fn send(&self, batch: &[IntervalRecord]) -> SendOutcome {
        if batch.is_empty() {
            return SendOutcome::Delivered;
        }
        let (body, content_type) = self.encode_body(batch);
        let mut request = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, content_type)
            .header(IDEMPOTENCY_KEY_HEADER, batch_key(batch));
        if self.gzip {
            // Writing into a Vec cannot fail; if it did, the plain body is still a correct request.
            match gzip(&body) {
                Ok(zipped) => request = request.header(CONTENT_ENCODING, "gzip").body(zipped),
                Err(_) => request = request.body(body),
            }
        } else {
            request = request.body(body);
        }
        match request.send().await {
            Ok(response) => classify_response(response).await,
            // The URL is shown separately (redacted); reqwest's text would repeat it in clear.
            Err(e) => SendOutcome::Retry {
                error: describe_error(&e.without_url()),
                after: None,
            },
        }
    }
}

/// `<host_id>:<first seq>-<last seq>`: the same for every attempt at the same batch.
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

async fn classify_response(mut response: reqwest::Response) -> SendOutcome {
    let status = response.status();
    if status.is_success() {
        // Drain a (normally empty) body so the connection can be reused; the verdict is in.
        let _ = response.bytes().await;
        return SendOutcome::Delivered;
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, jiff::Timestamp::now()));
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(redact_url);
    let snippet = body_prefix(&mut response).await;
    let mut error = format!("HTTP {status}");
    if let Some(location) = location {
        error.push_str(&format!(
            " (redirect to {location}; set the sink url to the final address)"
        ));
    }
    if !snippet.is_empty() {
        error.push_str(": ");
        error.push_str(&snippet);
    }
    if is_retryable(status) {
        SendOutcome::Retry {
            error,
            after: retry_after,
        }
    } else {
        SendOutcome::Reject { error }
    }
}

/// 408, 429 and every 5xx are worth retrying; any other non-2xx answer will not change.
pub fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// Up to the first 200 bytes of the body, one line, lossily decoded. Reads no more than needed.
async fn body_prefix(response: &mut reqwest::Response) -> String {
    let mut buf = Vec::new();
    while buf.len() < ERROR_BODY_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            _ => break,
        }
    }
    buf.truncate(ERROR_BODY_BYTES);
    let text = String::from_utf8_lossy(&buf);
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// The error and its causes on one line (reqwest's own text alone says little).
fn describe_error(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        format!("timed out: {e}")
    } else if e.is_connect() {
        format!("cannot connect: {e}")
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// A `Retry-After` value: delay-seconds, or an HTTP-date (IMF-fixdate, and the obsolete RFC 850
/// and asctime forms RFC 9110 asks recipients to accept). A date in the past means "now".
/// Unparsable values give `None`; very long delays are limited to one hour.
pub fn parse_retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = value.parse().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = parse_http_date(value)?;
    let delta = at.duration_since(now);
    if delta.is_negative() {
        return Some(Duration::ZERO);
    }
    Some(
        Duration::try_from(delta)
            .unwrap_or(MAX_RETRY_AFTER)
            .min(MAX_RETRY_AFTER),
    )
}

fn parse_http_date(value: &str) -> Option<jiff::Timestamp> {
    // IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") is a subset of RFC 2822.
    static RFC2822: jiff::fmt::rfc2822::DateTimeParser = jiff::fmt::rfc2822::DateTimeParser::new();
    if let Ok(ts) = RFC2822.parse_timestamp(value) {
        return Some(ts);
    }
    // RFC 850 ("Sunday, 06-Nov-94 08:49:37 GMT") and asctime ("Sun Nov  6 08:49:37 1994").
    let asctime = value.split_whitespace().collect::<Vec<_>>().join(" ");
    let candidates = [
        ("%A, %d-%b-%y %H:%M:%S GMT", value),
        ("%a %b %d %H:%M:%S %Y", asctime.as_str()),
    ];
    candidates.iter().find_map(|(format, text)| {
        jiff::civil::DateTime::strptime(format, text)
            .ok()
            .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC).ok())
            .map(|z| z.timestamp())
    })
}

/// The URL with any password and credential-like query values replaced by `***`, for status
/// output and logs.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = Url::parse(url) else {
        return url.to_string();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    let secret = |k: &str| {
        let k = k.to_ascii_lowercase();
        matches!(
            k.as_str(),
            "p" | "password" | "token" | "auth" | "apikey" | "api_key" | "key" | "secret"
        )
    };
    if parsed.query_pairs().any(|(k, _)| secret(&k)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret(&k) {
                    "***".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Millis;
    use crate::engine::{Agg, DimKind};
    use crate::upstream::delivery::test_receiver::{Action, Receiver};
    use crate::upstream::RecordKind;

    pub(crate) fn config(url: &str, kind: SinkKind, format: BodyFormat) -> SinkConfig {
        SinkConfig {
            name: "central".into(),
            kind,
            url: url.into(),
            format,
            gzip: false,
            token_file: String::new(),
            connect_timeout: Millis(1000),
            request_timeout: Millis(1000),
            batch_records: 500,
            linger: Millis(10),
            backoff_cap: Millis(500),
        }
    }

    /// A realistic record: a busy queue's 15 minutes with bands and two histograms.
    fn realistic(seq: u64, rng: &mut fastrand::Rng) -> IntervalRecord {
        let mut a = Agg::default();
        let calls = rng.u64(20..80);
        for _ in 0..calls {
            // Waits: mostly short, a tail to minutes; handle: 1 to 15 minutes.
            let wait = (rng.f64().powi(3) * 300_000.0) as u64;
            let handle = 60_000 + rng.u64(0..840_000);
            a.offered += 1;
            a.wait_hist.add(wait);
            a.wait_max_ms = a.wait_max_ms.max(wait);
            if rng.u8(0..10) < 8 {
                a.answered += 1;
                a.handled += 1;
                a.wait_sum_ms += wait;
                a.answered_within += u64::from(wait <= 20_000);
                a.talk_sum_ms += handle * 7 / 10;
                a.hold_sum_ms += handle / 10;
                a.acw_sum_ms += handle / 5;
                a.handle_hist.add(handle);
                for t in [10_000u64, 20_000, 30_000, 60_000, 120_000] {
                    *a.bands.entry(t).or_default() += u64::from(wait <= t);
                }
            } else {
                a.abandoned += 1;
                a.abandon_wait_sum_ms += wait;
                a.abandoned_within += u64::from(wait <= 20_000);
                a.short_abandoned += u64::from(wait < 5_000);
            }
        }
        IntervalRecord {
            host_id: "pbx-eu-01".into(),
            seq,
            kind: if seq.is_multiple_of(50) {
                RecordKind::Correction
            } else {
                RecordKind::Interval
            },
            interval_start_ms: 1_795_300_200_000 + (seq as i64 / 20) * 900_000,
            interval_ms: 900_000,
            dimension: DimKind::Queue,
            key: format!("queue-{:02}", seq % 20),
            delta: a.clone(),
            total: a,
        }
    }

    fn batch(n: u64) -> Vec<IntervalRecord> {
        let mut rng = fastrand::Rng::with_seed(7);
        (1..=n).map(|s| realistic(s, &mut rng)).collect()
    }

    #[test]
    fn json_and_msgpack_envelopes_carry_the_same_records() {
        let records = batch(5);
        let json_sink = Sink::new(&config(
            "http://127.0.0.1:9/x",
            SinkKind::Http,
            BodyFormat::Json,
        ))
        .unwrap();
        let mp_sink = Sink::new(&config(
            "http://127.0.0.1:9/x",
            SinkKind::Http,
            BodyFormat::Msgpack,
        ))
        .unwrap();
        let (jb, jt) = json_sink.encode_body(&records);
        let (mb, mt) = mp_sink.encode_body(&records);
        assert_eq!((jt, mt), (CONTENT_TYPE_JSON, CONTENT_TYPE_MSGPACK));
        let from_json: Value = serde_json::from_slice(&jb).unwrap();
        let from_mp: Value = rmp_serde::from_slice(&mb).unwrap();
        assert_eq!(from_json, from_mp);
        assert_eq!(from_json["host_id"], "pbx-eu-01");
        assert_eq!(from_json["batch_key"], "pbx-eu-01:1-5");
        let want: Vec<Value> = records.iter().map(IntervalRecord::to_json).collect();
        assert_eq!(from_json["records"], Value::Array(want));
        // And gzip round-trips.
        let zipped = gzip(&mb).unwrap();
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&zipped[..]), &mut plain)
            .unwrap();
        assert_eq!(plain, mb);
    }

    #[test]
    fn influx_urls_get_millisecond_precision() {
        let url_of = |u: &str| {
            Sink::new(&config(u, SinkKind::Influx, BodyFormat::Json)).map(|s| s.url.to_string())
        };
        assert_eq!(
            url_of("http://vm:8428/write").unwrap(),
            "http://vm:8428/write?precision=ms"
        );
        assert_eq!(
            url_of("http://influx:8086/api/v2/write?org=o&bucket=b").unwrap(),
            "http://influx:8086/api/v2/write?org=o&bucket=b&precision=ms"
        );
        assert_eq!(
            url_of("http://i/write?db=x&precision=ms").unwrap(),
            "http://i/write?db=x&precision=ms"
        );
        let err = url_of("http://i/write?precision=s")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("central") && err.contains("precision=s"),
            "{err}"
        );
        let err = url_of("ftp://x/").unwrap_err().to_string();
        assert!(err.contains("scheme"), "{err}");
    }

    #[test]
    fn token_file_problems_name_the_sink_and_the_file() {
        let mut cfg = config("http://127.0.0.1:9/x", SinkKind::Http, BodyFormat::Json);
        cfg.token_file = "/nonexistent/callmetrics-token".into();
        let err = Sink::new(&cfg).unwrap_err().to_string();
        assert!(
            err.contains("`central`") && err.contains("/nonexistent/callmetrics-token"),
            "{err}"
        );
        let empty = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(empty.path(), " \n").unwrap();
        cfg.token_file = empty.path().display().to_string();
        assert!(matches!(Sink::new(&cfg), Err(SinkError::TokenEmpty { .. })));
        std::fs::write(empty.path(), "two\nlines\n").unwrap();
        assert!(matches!(
            Sink::new(&cfg),
            Err(SinkError::TokenInvalid { .. })
        ));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now: jiff::Timestamp = "2026-03-01T12:00:00Z".parse().unwrap();
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            parse_retry_after("Sun, 01 Mar 2026 12:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Sunday, 01-Mar-26 12:00:10 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun Mar  1 12:00:05 2026", now),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            parse_retry_after("Sat, 28 Feb 2026 12:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        for junk in ["", "soon", "-5", "1.5", "Sun, 99 Mar 2026 12:00:00 GMT"] {
            assert_eq!(parse_retry_after(junk, now), None, "{junk:?}");
        }
    }

    #[test]
    fn urls_are_redacted_for_display() {
        assert_eq!(
            redact_url("https://u:pw@h/write?db=x&p=secret"),
            "https://u:***@h/write?db=x&p=***"
        );
        assert_eq!(redact_url("http://h/ingest"), "http://h/ingest");
    }

    #[test]
    fn retryable_statuses() {
        for s in [408u16, 429, 500, 502, 503, 504] {
            assert!(is_retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [301u16, 400, 401, 403, 404, 409, 413, 422] {
            assert!(!is_retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }

    /// Prints the measured sizes (`cargo test --lib bytes_per_record -- --nocapture`).
    #[test]
    fn bytes_per_record_of_a_realistic_batch() {
        let records = batch(500);
        let mut report = Vec::new();
        for (label, kind, format) in [
            ("json", SinkKind::Http, BodyFormat::Json),
            ("msgpack", SinkKind::Http, BodyFormat::Msgpack),
            ("influx", SinkKind::Influx, BodyFormat::Json),
        ] {
            let sink = Sink::new(&config("http://127.0.0.1:9/x", kind, format)).unwrap();
            let (body, _) = sink.encode_body(&records);
            let zipped = gzip(&body).unwrap();
            let (plain, gz) = (body.len() / records.len(), zipped.len() / records.len());
            report.push(format!("{label}: {plain} B/record, gzip {gz} B/record"));
            assert!(gz < plain && plain < 8_000, "{label}: {plain} {gz}");
        }
        println!(
            "bytes per record over 500 realistic records: {}",
            report.join("; ")
        );
    }

    #[tokio::test]
    async fn answers_are_classified() {
        let rx = Receiver::start(vec![
            Action::status(404, "no such endpoint: /ingest ".repeat(20)),
            Action::status(408, ""),
            Action::status(503, "").with_header("Retry-After", "2"),
            Action::status(301, "").with_header("Location", "https://u:pw@elsewhere/ingest"),
            Action::Hang(Duration::from_secs(3)),
            Action::Reset,
            Action::status(204, ""),
        ])
        .await;
        let sink = Sink::new(&config(
            &rx.url("/ingest"),
            SinkKind::Http,
            BodyFormat::Json,
        ))
        .unwrap();
        let records = batch(2);
        match sink.send(&records).await {
            SendOutcome::Reject { error } => {
                assert!(
                    error.starts_with("HTTP 404 Not Found: no such endpoint"),
                    "{error}"
                );
                assert!(
                    error.len() <= "HTTP 404 Not Found: ".len() + ERROR_BODY_BYTES,
                    "{error}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            sink.send(&records).await,
            SendOutcome::Retry { after: None, .. }
        ));
        match sink.send(&records).await {
            SendOutcome::Retry { error, after } => {
                assert_eq!(after, Some(Duration::from_secs(2)));
                assert!(error.contains("503"), "{error}");
            }
            other => panic!("{other:?}"),
        }
        match sink.send(&records).await {
            SendOutcome::Reject { error } => assert!(
                error.contains("301") && error.contains("https://u:***@elsewhere/ingest"),
                "{error}"
            ),
            other => panic!("{other:?}"),
        }
        let started = std::time::Instant::now();
        match sink.send(&records).await {
            SendOutcome::Retry { error, .. } => assert!(error.contains("timed out"), "{error}"),
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_millis(2500));
        assert!(matches!(
            sink.send(&records).await,
            SendOutcome::Retry { .. }
        ));
        assert_eq!(sink.send(&records).await, SendOutcome::Delivered);
        assert_eq!(sink.send(&[]).await, SendOutcome::Delivered);
        assert_eq!(rx.requests().len(), 7);

        // Nobody listening: a connection error, retried.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let sink = Sink::new(&config(
            &format!("http://127.0.0.1:{port}/"),
            SinkKind::Http,
            BodyFormat::Json,
        ))
        .unwrap();
        match sink.send(&records).await {
            SendOutcome::Retry { error, after: None } => {
                assert!(error.contains("connect"), "{error}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn headers_token_gzip_and_influx_body() {
        let rx = Receiver::start(vec![]).await;
        let token = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(token.path(), "  s3cret-token\n").unwrap();
        let records = batch(3);

        let mut cfg = config(&rx.url("/ingest"), SinkKind::Http, BodyFormat::Msgpack);
        cfg.gzip = true;
        cfg.token_file = token.path().display().to_string();
        let sink = Sink::new(&cfg).unwrap();
        assert_eq!(sink.send(&records).await, SendOutcome::Delivered);

        let mut cfg = config(&rx.url("/write?db=cc"), SinkKind::Influx, BodyFormat::Json);
        cfg.gzip = true;
        cfg.token_file = token.path().display().to_string();
        let sink = Sink::new(&cfg).unwrap();
        assert_eq!(sink.send(&records).await, SendOutcome::Delivered);

        let got = rx.requests();
        let http = &got[0];
        assert_eq!(http.method, "POST");
        assert_eq!(http.header("authorization"), Some("Bearer s3cret-token"));
        assert_eq!(http.header("content-encoding"), Some("gzip"));
        assert_eq!(http.header("content-type"), Some(CONTENT_TYPE_MSGPACK));
        assert_eq!(http.header("idempotency-key"), Some("pbx-eu-01:1-3"));
        assert!(
            http.wire_len < http.body.len(),
            "gzip should shrink the body"
        );
        let v: Value = rmp_serde::from_slice(&http.body).unwrap();
        assert_eq!(v, envelope(&records));

        let influx = &got[1];
        assert_eq!(influx.target, "/write?db=cc&precision=ms");
        assert_eq!(influx.header("content-type"), Some(CONTENT_TYPE_INFLUX));
        assert_eq!(influx.header("authorization"), Some("Bearer s3cret-token"));
        let text = String::from_utf8(influx.body.clone()).unwrap();
        let want: Vec<String> = records.iter().map(IntervalRecord::influx_line).collect();
        assert_eq!(text.lines().collect::<Vec<_>>(), want);
    }
}
