//! The retry role of a sink: how a receiver's answer is classified (delivered, retry later,
//! refused for good), `Retry-After`, and the jittered exponential backoff between attempts.

use std::time::Duration;

use reqwest::header::{LOCATION, RETRY_AFTER};
use reqwest::StatusCode;

use crate::upstream::redact::redact_url;

/// How much of a refusing receiver's answer is quoted in the error text.
pub const ERROR_BODY_BYTES: usize = 200;
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

/// Full-jitter exponential backoff: uniform in `[0, min(cap, 2^attempt s)]` (attempt 0 → up to 1 s).
pub fn backoff(attempt: u32, cap: Duration) -> Duration {
    let ceiling = 1u64
        .checked_shl(attempt)
        .map_or(Duration::MAX, Duration::from_secs)
        .min(cap);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

/// The wait before the next attempt: the jittered backoff, but at least the receiver's
/// `Retry-After`, and never more than `max(cap, retry_after)`.
#[must_use]
pub fn retry_delay(attempt: u32, cap: Duration, retry_after: Option<Duration>) -> Duration {
    let after = retry_after.unwrap_or(Duration::ZERO);
    backoff(attempt, cap).max(after).min(cap.max(after))
}

pub async fn classify_response(mut response: reqwest::Response) -> SendOutcome {
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
#[must_use]
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
#[must_use]
pub fn describe_error(e: &reqwest::Error) -> String {
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
#[must_use]
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn retryable_statuses() {
        for s in [408u16, 429, 500, 502, 503, 504] {
            assert!(is_retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [301u16, 400, 401, 403, 404, 409, 413, 422] {
            assert!(!is_retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }

    #[test]
    fn backoff_stays_within_its_bounds() {
        let cap = Duration::from_secs(30);
        for attempt in [0u32, 1, 2, 3, 4, 5, 10, 63, 64, 1000, u32::MAX] {
            let ceiling =
                Duration::from_secs(1u64.checked_shl(attempt).unwrap_or(u64::MAX)).min(cap);
            let mut max_seen = Duration::ZERO;
            for _ in 0..500 {
                let d = backoff(attempt, cap);
                assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
                max_seen = max_seen.max(d);
            }
            // Full jitter spreads over the whole range.
            assert!(max_seen > ceiling / 2, "attempt {attempt}: {max_seen:?}");
        }
    }

    #[test]
    fn retry_delay_honours_retry_after() {
        let cap = Duration::from_secs(5);
        for attempt in 0..20 {
            let d = retry_delay(attempt, cap, Some(Duration::from_secs(60)));
            assert_eq!(
                d,
                Duration::from_secs(60),
                "never below nor above Retry-After when it exceeds the cap"
            );
            let d = retry_delay(attempt, cap, Some(Duration::from_secs(2)));
            assert!(d >= Duration::from_secs(2) && d <= cap, "{d:?}");
            let d = retry_delay(attempt, cap, None);
            assert!(d <= cap);
        }
    }
}
