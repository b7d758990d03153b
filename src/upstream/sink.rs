//! The sink role: one upstream receiver, its HTTP client (URL, token, timeouts, gzip), and one
//! attempt at a batch: the body from [`encode`], the answer classified by [`crate::upstream::retry`].
//! `docs/upstream.md` is the receiver-side description of everything sent here.

use std::time::Duration;

use reqwest::header::{
    HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, USER_AGENT,
};
use reqwest::Url;

use crate::config::{BodyFormat, SinkConfig, SinkKind};
use crate::upstream::encode::{self, batch_key, gzip};
use crate::upstream::redact::redact_url;
use crate::upstream::retry::{classify_response, describe_error, SendOutcome};
use crate::upstream::IntervalRecord;

/// Header carrying the batch key (`<host_id>:<first seq>-<last seq>`).
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

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

        let client = http_client(
            &cfg.name,
            &cfg.token_file,
            cfg.connect_timeout.0,
            cfg.request_timeout.0,
        )?;

        Ok(Sink {
            name: cfg.name.clone(),
            kind: cfg.kind,
            format: cfg.format,
            gzip: cfg.gzip,
            url,
            client,
        })
    }

    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL requests go to (with `precision=ms` added for Influx), credentials masked.
    #[must_use]
    pub fn display_url(&self) -> String {
        redact_url(self.url.as_str())
    }

    /// The uncompressed request body for `batch` and its `Content-Type` (see
    /// [`encode::body`]); gzip, when configured, is applied on top by [`Sink::send`].
    #[must_use]
    pub fn encode_body(&self, batch: &[IntervalRecord]) -> (Vec<u8>, &'static str) {
        encode::body(self.kind, self.format, &self.name, batch)
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

/// The HTTP client of one receiver: its user agent, the bearer token read from `token_file`
/// (trimmed; none when empty), its timeouts, and no redirects followed. Does no network I/O.
pub fn http_client(
    name: &str,
    token_file: &str,
    connect_timeout_ms: i64,
    request_timeout_ms: i64,
) -> Result<reqwest::Client, SinkError> {
    // Installing twice is refused harmlessly; any provider already installed is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut headers = HeaderMap::new();
    headers.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("callmetrics/", env!("CARGO_PKG_VERSION"))),
    );
    if !token_file.is_empty() {
        let path = token_file.to_string();
        let text = std::fs::read_to_string(&path).map_err(|source| SinkError::TokenUnreadable {
            sink: name.to_string(),
            path: path.clone(),
            source,
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(SinkError::TokenEmpty {
                sink: name.to_string(),
                path,
            });
        }
        let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            SinkError::TokenInvalid {
                sink: name.to_string(),
                path: path.clone(),
            }
        })?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }

    reqwest::Client::builder()
        .connect_timeout(millis(connect_timeout_ms))
        .timeout(millis(request_timeout_ms))
        // A redirected POST may turn into a GET without body: never follow, report it.
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .map_err(|source| SinkError::Client {
            sink: name.to_string(),
            source,
        })
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    use crate::config::Millis;
    use crate::engine::{Agg, DimKind};
    use crate::upstream::delivery::test_receiver::{Action, Receiver};
    use crate::upstream::encode::{
        envelope, CONTENT_TYPE_INFLUX, CONTENT_TYPE_JSON, CONTENT_TYPE_MSGPACK,
    };
    use crate::upstream::retry::ERROR_BODY_BYTES;
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
            sla: Vec::new(),
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

    /// Runs with tokio's clock paused, so the hung request costs no real time and the time it
    /// takes is measured on that clock. That is honest because the receiver serves on this test's
    /// own single-threaded runtime (`Receiver::start`): the clock only jumps when the sink and the
    /// receiver both wait, and then to the next timer, here the request timeout that cuts the hang.
    #[tokio::test(start_paused = true)]
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
        let started = tokio::time::Instant::now();
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
                assert!(error.contains("connect"), "{error}");
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
        let want: Vec<String> = records.iter().map(IntervalRecord::influx_lines).collect();
        assert_eq!(text, want.join("\n"));
    }
}
