//! The delivery loop of one sink: take a batch from the outbox, send it, and only on 2xx move the
//! sink's cursor. Failures are retried forever with exponential backoff and full jitter (honouring
//! `Retry-After`); a batch the receiver refuses for good is parked as dead letters.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::config::{SinkConfig, SinkKind};
use crate::shutdown;
use crate::upstream::encode::batch_key;
use crate::upstream::redact::redact_url;
use crate::upstream::retry::{retry_delay, SendOutcome};
use crate::upstream::sink::Sink;
use crate::upstream::{IntervalRecord, Outbox, SinkStatus};

/// Without a wake-up, the outbox is looked at again after this long anyway (a missed
/// notification then delays shipping, never loses it).
const IDLE_POLL: Duration = Duration::from_secs(60);

/// Ships the outbox to one sink until `shutdown` turns true (or its sender is dropped).
///
/// `wake` is notified by whoever adds records to the outbox (`notify_one` for a `Notify` per
/// sink, `notify_waiters` for one shared by every sink; both are safe). An in-flight request is
/// abandoned on shutdown; its records stay in the outbox and go out again after a restart.
pub async fn run_sink(
    cfg: SinkConfig,
    outbox: Arc<dyn Outbox>,
    status: Arc<Mutex<SinkStatus>>,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = cfg.name.clone();
    let cap = millis(cfg.backoff_cap.0).max(Duration::from_millis(1));
    let linger = millis(cfg.linger.0);
    let limit = cfg.batch_records.max(1);
    {
        let mut st = lock(&status);
        st.name = name.clone();
        st.kind = match cfg.kind {
            SinkKind::Http => "http",
            SinkKind::Influx => "influx",
        }
        .into();
        st.url = redact_url(&cfg.url);
    }

    // Building can fail on a token file that is not there yet: keep trying, visibly.
    let sink = {
        let mut attempt = 0u32;
        loop {
            match Sink::new(&cfg) {
                Ok(sink) => break sink,
                Err(e) => {
                    let error = e.to_string();
                    if attempt == 0 {
                        tracing::error!(sink = %name, %error, "upstream sink cannot start; retrying until the configuration is fixed");
                    }
                    let delay = retry_delay(attempt, cap, None);
                    if !back_off(&mut attempt, delay, &status, &error, false, &mut shutdown).await {
                        return;
                    }
                }
            }
        }
    };
    lock(&status).url = sink.display_url();

    // Failed attempts in a row (any cause); reset by a delivery.
    let mut failures = 0u32;
    // The batch being retried: resent as is, so its key stays the same.
    let mut retrying: Option<Vec<IntervalRecord>> = None;
    // When a partial batch was first seen (for `linger`).
    let mut partial_since: Option<Instant> = None;

    loop {
        if shutdown::is_signalled(&shutdown) {
            return;
        }
        let notified = wake.notified();
        tokio::pin!(notified);
        // Registered before looking, so a notification racing with the look is not lost.
        notified.as_mut().enable();

        let batch = match retrying.take() {
            Some(batch) => batch,
            None => match outbox.pending(&name, limit) {
                Ok(batch) => batch,
                Err(e) => {
                    let error = format!("outbox read failed: {e}");
                    if failures == 0 {
                        tracing::error!(sink = %name, %error, "cannot read the outbox; retrying");
                    }
                    let delay = retry_delay(failures, cap, None);
                    if !back_off(&mut failures, delay, &status, &error, false, &mut shutdown).await
                    {
                        return;
                    }
                    continue;
                }
            },
        };

        if batch.is_empty() {
            partial_since = None;
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = shutdown::signalled(&mut shutdown) => return,
            }
            continue;
        }

        if batch.len() < limit && failures == 0 && !linger.is_zero() {
            let deadline = *partial_since.get_or_insert_with(Instant::now) + linger;
            if Instant::now() < deadline {
                tokio::select! {
                    _ = &mut notified => {}
                    _ = tokio::time::sleep_until(deadline) => {}
                    _ = shutdown::signalled(&mut shutdown) => return,
                }
                continue;
            }
        }
        partial_since = None;

        let outcome = tokio::select! {
            outcome = sink.send(&batch) => outcome,
            _ = shutdown::signalled(&mut shutdown) => return,
        };
        let first = batch.first().map_or(0, |r| r.seq);
        let last = batch.last().map_or(0, |r| r.seq);
        match outcome {
            SendOutcome::Delivered => {
                // The cursor moves and the count grows under the status lock, so `status` never
                // shows the records gone from the backlog without counting them.
                let acked = {
                    let mut st = lock(&status);
                    let acked = outbox.ack(&name, last);
                    if acked.is_ok() {
                        st.delivered_records += batch.len() as u64;
                        st.last_success_ms = Some(now_ms());
                    }
                    acked
                };
                if let Err(e) = acked {
                    // Delivered but not remembered: it will go again and the receiver dedupes.
                    let error = format!("outbox ack up to seq {last} failed: {e}");
                    tracing::error!(sink = %name, %error, "records were delivered but the cursor did not move; they will be sent again");
                    let delay = retry_delay(failures, cap, None);
                    if !back_off(&mut failures, delay, &status, &error, false, &mut shutdown).await
                    {
                        return;
                    }
                    continue;
                }
                if failures > 0 {
                    tracing::info!(sink = %name, failed_attempts = failures, records = batch.len(), "upstream delivery resumed");
                }
                failures = 0;
                tracing::debug!(sink = %name, first, last, records = batch.len(), "batch delivered");
            }
            SendOutcome::Retry { error, after } => {
                let delay = retry_delay(failures, cap, after);
                if failures == 0 {
                    tracing::warn!(
                        sink = %name, batch = %batch_key(&batch), %error, retry_in_ms = delay.as_millis() as u64,
                        "upstream delivery failed; retrying the same batch until it is accepted (records stay in the outbox)"
                    );
                } else {
                    tracing::debug!(sink = %name, attempt = failures + 1, %error, retry_in_ms = delay.as_millis() as u64, "upstream delivery failed again");
                }
                retrying = Some(batch);
                if !back_off(&mut failures, delay, &status, &error, true, &mut shutdown).await {
                    return;
                }
            }
            SendOutcome::Reject { error } => {
                let reason = format!("rejected by the receiver: {error}");
                tracing::error!(
                    sink = %name, batch = %batch_key(&batch), first, last, records = batch.len(), %error,
                    "upstream receiver refused this batch for good; it is parked as dead letters (counted in status). \
                     Check the receiver's answer and the sink's url, token_file and format; the records are kept"
                );
                let parked = {
                    let mut st = lock(&status);
                    let parked = outbox.park(&name, &batch, &reason);
                    if parked.is_ok() {
                        st.dead_letters += batch.len() as u64;
                        st.last_error = Some(reason);
                        st.last_error_ms = Some(now_ms());
                    }
                    parked
                };
                if let Err(e) = parked {
                    let error = format!("outbox park of seq {first}-{last} failed: {e}");
                    tracing::error!(sink = %name, %error, "cannot park the refused batch; will try again");
                    let delay = retry_delay(failures, cap, None);
                    if !back_off(&mut failures, delay, &status, &error, false, &mut shutdown).await
                    {
                        return;
                    }
                    continue;
                }
                // The receiver answered: the link works, so the next batch starts a fresh backoff.
                if failures > 0 {
                    tracing::info!(sink = %name, failed_attempts = failures, "upstream receiver reachable again");
                }
                failures = 0;
            }
        }
    }
}

/// After a failed attempt: notes the error in the sink's status (as a retry of the batch when
/// `retry`), counts the attempt and sleeps `delay`. False when shutdown came first.
async fn back_off(
    failures: &mut u32,
    delay: Duration,
    status: &Mutex<SinkStatus>,
    error: &str,
    retry: bool,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    note_error(status, error, retry);
    *failures = failures.saturating_add(1);
    shutdown::sleep_unless_signalled(delay, shutdown).await
}

fn note_error(status: &Mutex<SinkStatus>, error: &str, retry: bool) {
    let mut st = lock(status);
    st.last_error = Some(error.to_string());
    st.last_error_ms = Some(now_ms());
    if retry {
        st.retries += 1;
    }
}

/// The status even if a thread panicked while holding it (it only holds plain counters).
fn lock(status: &Mutex<SinkStatus>) -> MutexGuard<'_, SinkStatus> {
    status
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A fault-injecting HTTP/1.1 receiver for tests: answers requests in arrival order from a
/// schedule, then with 200, and keeps every request (gzip bodies decoded).
#[cfg(test)]
pub(crate) mod test_receiver {
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::{TcpListener, TcpStream};

    /// How to answer one request.
    #[derive(Debug, Clone)]
    pub(crate) enum Action {
        Respond {
            status: u16,
            headers: Vec<(String, String)>,
            body: String,
        },
        /// Read the request, then say nothing for this long, then close.
        Hang(Duration),
        /// Read the request, then close the connection (RST) without answering.
        Reset,
    }

    impl Action {
        pub(crate) fn status(status: u16, body: impl Into<String>) -> Action {
            Action::Respond {
                status,
                headers: Vec::new(),
                body: body.into(),
            }
        }

        pub(crate) fn with_header(mut self, name: &str, value: &str) -> Action {
            if let Action::Respond { headers, .. } = &mut self {
                headers.push((name.into(), value.into()));
            }
            self
        }
    }

    /// One request as received.
    #[derive(Debug, Clone)]
    pub(crate) struct Request {
        pub method: String,
        /// Path and query.
        pub target: String,
        /// Names lowercased.
        pub headers: Vec<(String, String)>,
        /// Decoded (gunzipped when `Content-Encoding: gzip`).
        pub body: Vec<u8>,
        /// Bytes on the wire.
        pub wire_len: usize,
        pub at: Instant,
        /// What it was answered with.
        pub action: String,
    }

    impl Request {
        pub(crate) fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    struct Shared {
        schedule: Vec<Action>,
        next: usize,
        requests: Vec<Request>,
    }

    pub(crate) struct Receiver {
        addr: std::net::SocketAddr,
        shared: Arc<Mutex<Shared>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Receiver {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Receiver {
        pub(crate) async fn start(schedule: Vec<Action>) -> Receiver {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let shared = Arc::new(Mutex::new(Shared {
                schedule,
                next: 0,
                requests: Vec::new(),
            }));
            let s = shared.clone();
            let task = tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve(stream, s.clone()));
                }
            });
            Receiver { addr, shared, task }
        }

        pub(crate) fn url(&self, path: &str) -> String {
            format!("http://{}{}", self.addr, path)
        }

        pub(crate) fn requests(&self) -> Vec<Request> {
            self.shared.lock().unwrap().requests.clone()
        }
    }

    async fn serve(stream: TcpStream, shared: Arc<Mutex<Shared>>) {
        let mut reader = BufReader::new(stream);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or_default().to_string();
            let target = parts.next().unwrap_or_default().to_string();
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).await.unwrap_or(0) == 0 {
                    return;
                }
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                if let Some((n, v)) = h.split_once(':') {
                    headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
            }
            let len: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut raw = vec![0; len];
            if reader.read_exact(&mut raw).await.is_err() {
                return;
            }
            let gzipped = headers
                .iter()
                .any(|(n, v)| n == "content-encoding" && v == "gzip");
            let body = if gzipped {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&raw[..])
                    .read_to_end(&mut out)
                    .unwrap();
                out
            } else {
                raw.clone()
            };
            let action = {
                let mut sh = shared.lock().unwrap();
                let action = sh
                    .schedule
                    .get(sh.next)
                    .cloned()
                    .unwrap_or(Action::status(200, ""));
                sh.next += 1;
                sh.requests.push(Request {
                    method,
                    target,
                    headers,
                    body,
                    wire_len: len,
                    at: Instant::now(),
                    action: format!("{action:?}"),
                });
                action
            };
            match action {
                Action::Respond {
                    status,
                    headers,
                    body,
                } => {
                    let mut out =
                        format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
                    for (n, v) in headers {
                        out.push_str(&format!("{n}: {v}\r\n"));
                    }
                    out.push_str("\r\n");
                    out.push_str(&body);
                    if reader.get_mut().write_all(out.as_bytes()).await.is_err() {
                        return;
                    }
                }
                Action::Hang(d) => {
                    tokio::time::sleep(d).await;
                    return;
                }
                Action::Reset => {
                    let _ = reader.get_ref().set_zero_linger();
                    return;
                }
            }
        }
    }
}

/// An in-memory [`Outbox`] for tests: records in seq order, a cursor per sink, dead letters.
#[cfg(test)]
pub(crate) mod test_outbox {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use crate::upstream::{IntervalRecord, Outbox, OutboxError};

    #[derive(Default)]
    pub(crate) struct MemOutbox {
        pub records: Mutex<Vec<IntervalRecord>>,
        pub cursors: Mutex<HashMap<String, u64>>,
        /// (sink, record, reason)
        pub dead: Mutex<Vec<(String, IntervalRecord, String)>>,
    }

    impl MemOutbox {
        pub(crate) fn push(&self, records: impl IntoIterator<Item = IntervalRecord>) {
            self.records.lock().unwrap().extend(records);
        }

        pub(crate) fn cursor(&self, sink: &str) -> u64 {
            self.cursors.lock().unwrap().get(sink).copied().unwrap_or(0)
        }
    }

    impl Outbox for MemOutbox {
        fn pending(&self, sink: &str, limit: usize) -> Result<Vec<IntervalRecord>, OutboxError> {
            let cursor = self.cursor(sink);
            Ok(self
                .records
                .lock()
                .unwrap()
                .iter()
                .filter(|r| r.seq > cursor)
                .take(limit)
                .cloned()
                .collect())
        }

        fn ack(&self, sink: &str, upto_seq: u64) -> Result<(), OutboxError> {
            let mut c = self.cursors.lock().unwrap();
            let e = c.entry(sink.to_string()).or_default();
            *e = (*e).max(upto_seq);
            Ok(())
        }

        fn park(
            &self,
            sink: &str,
            records: &[IntervalRecord],
            reason: &str,
        ) -> Result<(), OutboxError> {
            let mut dead = self.dead.lock().unwrap();
            dead.extend(
                records
                    .iter()
                    .map(|r| (sink.to_string(), r.clone(), reason.to_string())),
            );
            if let Some(last) = records.last() {
                self.ack(sink, last.seq)?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::Value;

    use super::test_outbox::MemOutbox;
    use super::test_receiver::{Action, Receiver};
    use super::*;
    use crate::config::{BodyFormat, Millis};
    use crate::engine::{Agg, DimKind};
    use crate::upstream::RecordKind;

    fn cfg(url: &str, format: BodyFormat, gzip: bool) -> SinkConfig {
        SinkConfig {
            name: "central".into(),
            kind: SinkKind::Http,
            url: url.into(),
            format,
            gzip,
            token_file: String::new(),
            connect_timeout: Millis(1000),
            // Long enough that a loaded test machine answers 200s in time.
            request_timeout: Millis(1000),
            batch_records: 10,
            linger: Millis(50),
            backoff_cap: Millis(300),
        }
    }

    fn record(seq: u64) -> IntervalRecord {
        let mut a = Agg::default();
        a.offered = seq % 7 + 1;
        a.answered = seq % 5;
        a.abandoned = a.offered - a.answered.min(a.offered);
        a.wait_sum_ms = seq * 1_000;
        a.wait_max_ms = seq * 100;
        a.talk_sum_ms = seq * 60_000;
        a.wait_hist.add(seq * 100);
        a.handle_hist.add(seq * 60_000);
        IntervalRecord {
            host_id: "pbx-1".into(),
            seq,
            kind: if seq % 10 == 3 {
                RecordKind::Correction
            } else {
                RecordKind::Interval
            },
            interval_start_ms: 1_795_300_200_000 + (seq as i64 / 5) * 900_000,
            interval_ms: 900_000,
            dimension: DimKind::Queue,
            key: format!("q{}", seq % 5),
            delta: a.clone(),
            total: a,
        }
    }

    struct Run {
        outbox: Arc<MemOutbox>,
        status: Arc<Mutex<SinkStatus>>,
        wake: Arc<Notify>,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    }

    fn start(cfg: SinkConfig, records: impl IntoIterator<Item = IntervalRecord>) -> Run {
        let outbox = Arc::new(MemOutbox::default());
        outbox.push(records);
        let status = Arc::new(Mutex::new(SinkStatus::default()));
        let wake = Arc::new(Notify::new());
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(run_sink(
            cfg,
            outbox.clone(),
            status.clone(),
            wake.clone(),
            rx,
        ));
        Run {
            outbox,
            status,
            wake,
            stop,
            task,
        }
    }

    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    const COUNTERS: [&str; 6] = [
        "offered",
        "answered",
        "abandoned",
        "wait_sum_ms",
        "talk_sum_ms",
        "wait_max_ms",
    ];

    fn sums(records: impl IntoIterator<Item = Value>) -> BTreeMap<&'static str, u64> {
        let mut out = BTreeMap::new();
        for r in records {
            for c in COUNTERS {
                *out.entry(c).or_default() += r[c].as_u64().unwrap();
            }
        }
        out
    }

    /// Records received, deduplicated by idempotency_key.
    fn received(rx: &Receiver, delivered_only: bool) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        for req in rx.requests() {
            if delivered_only && !req.action.contains("200") {
                continue;
            }
            let v: Value = match req.header("content-type") {
                Some("application/msgpack") => rmp_serde::from_slice(&req.body).unwrap(),
                _ => serde_json::from_slice(&req.body).unwrap(),
            };
            for r in v["records"].as_array().unwrap() {
                out.insert(
                    r["idempotency_key"].as_str().unwrap().to_string(),
                    r.clone(),
                );
            }
        }
        out
    }

    #[tokio::test]
    async fn every_record_arrives_through_faults_and_only_the_refused_batch_is_parked() {
        for (format, gzip) in [(BodyFormat::Json, false), (BodyFormat::Msgpack, true)] {
            let rx = Receiver::start(vec![
                Action::status(500, "boom"),
                Action::status(503, ""),
                Action::status(429, "slow down").with_header("Retry-After", "1"),
                Action::Hang(Duration::from_secs(2)),
                Action::Reset,
                Action::status(200, ""),
                Action::status(400, "{\"error\":\"field offered must be a string\"}"),
            ])
            .await;
            let input: Vec<IntervalRecord> = (1..=50).map(record).collect();
            let run = start(cfg(&rx.url("/ingest"), format, gzip), input.clone());

            until("the cursor to reach 50", || {
                run.outbox.cursor("central") == 50
            })
            .await;
            let reqs = rx.requests();
            // Five faults and the delivery of batch 1 share a key; then batch 2 is refused, 3..5 pass.
            assert_eq!(reqs.len(), 10, "{reqs:#?}");
            let keys: Vec<&str> = reqs
                .iter()
                .map(|r| r.header("idempotency-key").unwrap())
                .collect();
            assert!(keys[..6].iter().all(|k| *k == "pbx-1:1-10"), "{keys:?}");
            assert_eq!(
                &keys[6..],
                ["pbx-1:11-20", "pbx-1:21-30", "pbx-1:31-40", "pbx-1:41-50"]
            );
            // Retry-After: 1 is honoured although the backoff cap is 300 ms.
            assert!(
                reqs[3].at - reqs[2].at >= Duration::from_millis(950),
                "{:?}",
                reqs[3].at - reqs[2].at
            );
            for r in &reqs {
                assert_eq!(r.header("content-encoding"), gzip.then_some("gzip"));
            }

            // Every record reached the receiver (retries included); those answered 200 are all but batch 2.
            let all = received(&rx, false);
            assert_eq!(all.len(), 50);
            let want = sums(input.iter().map(IntervalRecord::to_json));
            assert_eq!(sums(all.values().cloned()), want);
            let delivered = received(&rx, true);
            let dead = run.outbox.dead.lock().unwrap().clone();
            let dead_seqs: Vec<u64> = dead.iter().map(|(_, r, _)| r.seq).collect();
            assert_eq!(dead_seqs, (11..=20).collect::<Vec<_>>());
            assert!(
                dead[0].2.contains("400") && dead[0].2.contains("must be a string"),
                "{}",
                dead[0].2
            );
            assert_eq!(delivered.len(), 40);
            let mut both = sums(delivered.values().cloned());
            for (k, v) in sums(dead.iter().map(|(_, r, _)| r.to_json())) {
                *both.get_mut(k).unwrap() += v;
            }
            assert_eq!(both, want);
            for r in &input {
                assert_eq!(all[&r.idempotency_key()], r.to_json());
            }

            let st = run.status.lock().unwrap().clone();
            assert_eq!(st.name, "central");
            assert_eq!(st.kind, "http");
            assert_eq!(st.delivered_records, 40);
            assert_eq!(st.dead_letters, 10);
            assert_eq!(st.retries, 5);
            assert!(
                st.last_error.as_deref().unwrap_or_default().contains("400"),
                "{st:?}"
            );
            assert!(st.last_error_ms.is_some() && st.last_success_ms.is_some());

            // Records added later go out after a wake-up, in a partial batch after the linger.
            run.outbox.push((51..=53).map(record));
            run.wake.notify_one();
            until("the late records", || run.outbox.cursor("central") == 53).await;
            assert_eq!(
                rx.requests().last().unwrap().header("idempotency-key"),
                Some("pbx-1:51-53")
            );
            assert_eq!(run.status.lock().unwrap().delivered_records, 43);

            run.stop.send(true).unwrap();
            tokio::time::timeout(Duration::from_secs(1), run.task)
                .await
                .unwrap()
                .unwrap();
        }
    }

    #[tokio::test]
    async fn shutdown_is_prompt_during_a_request_and_records_stay() {
        let rx = Receiver::start(vec![Action::Hang(Duration::from_secs(30))]).await;
        let mut c = cfg(&rx.url("/ingest"), BodyFormat::Json, false);
        c.request_timeout = Millis(30_000);
        let run = start(c, (1..=3).map(record));
        until("the request", || !rx.requests().is_empty()).await;
        let t = std::time::Instant::now();
        run.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(1), run.task)
            .await
            .unwrap()
            .unwrap();
        assert!(t.elapsed() < Duration::from_millis(500));
        assert_eq!(run.outbox.cursor("central"), 0);
        assert_eq!(run.outbox.records.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn shutdown_is_prompt_during_a_long_retry_after_and_when_idle() {
        let rx = Receiver::start(vec![
            Action::status(503, "").with_header("Retry-After", "3000")
        ])
        .await;
        let run = start(
            cfg(&rx.url("/ingest"), BodyFormat::Json, false),
            (1..=3).map(record),
        );
        until("the retry", || run.status.lock().unwrap().retries == 1).await;
        drop(run.stop); // a dropped sender also means stop
        tokio::time::timeout(Duration::from_secs(1), run.task)
            .await
            .unwrap()
            .unwrap();

        let run = start(cfg(&rx.url("/ingest"), BodyFormat::Json, false), []);
        tokio::time::sleep(Duration::from_millis(50)).await;
        run.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(1), run.task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn an_unreadable_token_file_is_reported_and_retried() {
        let dir = tempfile::tempdir().unwrap();
        let rx = Receiver::start(vec![]).await;
        let mut c = cfg(&rx.url("/ingest"), BodyFormat::Json, false);
        let token = dir.path().join("token");
        c.token_file = token.display().to_string();
        let run = start(c, (1..=2).map(record));
        until("the error", || {
            run.status.lock().unwrap().last_error.is_some()
        })
        .await;
        let err = run.status.lock().unwrap().last_error.clone().unwrap();
        assert!(err.contains("central") && err.contains("token"), "{err}");
        std::fs::write(&token, "tok\n").unwrap();
        until("delivery", || run.outbox.cursor("central") == 2).await;
        assert_eq!(rx.requests()[0].header("authorization"), Some("Bearer tok"));
        run.stop.send(true).unwrap();
        run.task.await.unwrap();
    }
}
