//! The delivery loop of `delivery.rs` against a real HTTP receiver with scripted faults
//! (`tests/support/http.rs`, included as `super::test_receiver`) and an in-memory outbox.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::test_receiver::{Action, Receiver};
use super::*;
use crate::config::{BodyFormat, Millis};
use crate::engine::{Agg, DimKind};
use crate::upstream::{OutboxError, RecordKind};

/// An in-memory [`Outbox`]: records in seq order, a cursor per sink, dead letters.
#[derive(Default)]
struct MemOutbox {
    records: Mutex<Vec<IntervalRecord>>,
    cursors: Mutex<HashMap<String, u64>>,
    /// (sink, record, reason)
    dead: Mutex<Vec<(String, IntervalRecord, String)>>,
}

impl MemOutbox {
    fn push(&self, records: impl IntoIterator<Item = IntervalRecord>) {
        self.records.lock().unwrap().extend(records);
    }

    fn cursor(&self, sink: &str) -> u64 {
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
        sla: Vec::new(),
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

/// Waits for the sink task to end once told to stop: within a second, and without a panic.
async fn ended(task: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .unwrap()
        .unwrap();
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

/// Records received, deduplicated by `idempotency_key`.
fn received(rx: &Receiver, delivered_only: bool) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for req in rx.requests() {
        if delivered_only && req.answer != Some(200) {
            continue;
        }
        let v = req.json();
        for r in v["records"].as_array().unwrap() {
            out.insert(
                r["idempotency_key"].as_str().unwrap().to_string(),
                r.clone(),
            );
        }
    }
    out
}

/// How much later than the delivery loop's own wait a request may arrive under the paused clock:
/// the clock moves in whole milliseconds, and a packet the kernel were slow to hand over would let
/// it jump to the next timer, at most one poll of [`until`] away.
const PAUSED_SLACK: Duration = Duration::from_millis(50);

/// Runs with tokio's clock paused, so backoff, `Retry-After`, the request timeout and the linger
/// take no real time and their waits are measured exactly. That is honest here because the
/// receiver serves on this test's own single-threaded runtime (`Receiver::start`): the clock only
/// jumps when the sink, the receiver and the test all wait, and then to the next timer, which is
/// what the waits measured below are made of.
#[tokio::test(start_paused = true)]
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
        let gap = |i: usize| reqs[i + 1].at - reqs[i].at;
        let cap = Duration::from_millis(300);
        // After the 500, the 503 and the reset: the jittered backoff, within its 300 ms cap.
        for i in [0, 1, 4] {
            assert!(gap(i) <= cap + PAUSED_SLACK, "retry {i}: {:?}", gap(i));
        }
        // Retry-After: 1 is honoured although the backoff cap is 300 ms, and not exceeded.
        assert!(
            gap(2) >= Duration::from_secs(1) && gap(2) < Duration::from_secs(1) + PAUSED_SLACK,
            "{:?}",
            gap(2)
        );
        // The 2 s hang is cut at the 1 s request timeout, then backs off as usual.
        assert!(
            gap(3) >= Duration::from_secs(1)
                && gap(3) <= Duration::from_secs(1) + cap + PAUSED_SLACK,
            "{:?}",
            gap(3)
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

        // Records added later go out after a wake-up, in a partial batch after the 50 ms linger.
        let woken = tokio::time::Instant::now();
        run.outbox.push((51..=53).map(record));
        run.wake.notify_one();
        until("the late records", || run.outbox.cursor("central") == 53).await;
        let late = rx.requests().last().unwrap().clone();
        assert_eq!(late.header("idempotency-key"), Some("pbx-1:51-53"));
        let linger = Duration::from_millis(50);
        assert!(
            late.at - woken >= linger && late.at - woken < linger + PAUSED_SLACK,
            "{:?}",
            late.at - woken
        );
        assert_eq!(run.status.lock().unwrap().delivered_records, 43);

        run.stop.send(true).unwrap();
        ended(run.task).await;
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
    ended(run.task).await;
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
    ended(run.task).await;

    let run = start(cfg(&rx.url("/ingest"), BodyFormat::Json, false), []);
    tokio::time::sleep(Duration::from_millis(50)).await;
    run.stop.send(true).unwrap();
    ended(run.task).await;
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
