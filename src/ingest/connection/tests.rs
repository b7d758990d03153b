//! The read loop end to end over an in-memory pipe: framings, validation, limits, reply order,
//! shutdown, and arbitrary input.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, DuplexStream,
};
use tokio::sync::{mpsc, oneshot, watch};

use super::serve_connection;
use crate::config::LimitsConfig;
use crate::event::Event;
use crate::ingest::{
    IngestCtx, IngestStats, ItemResult, Refusal, Submission, SubmitTx, SHUTTING_DOWN,
};
use crate::slots::Slot;

const TS: i64 = 1_700_000_000_000;

fn hold(call_id: &str) -> Value {
    json!({"type": "hold", "call_id": call_id, "ts": TS})
}

/// A committer that answers every submission at once with `answer(event)` per event.
fn committer(answer: impl Fn(&Event) -> ItemResult + Send + 'static) -> SubmitTx {
    let (tx, mut rx) = mpsc::channel::<Submission>(64);
    tokio::spawn(async move {
        while let Some(sub) = rx.recv().await {
            let results = sub.events.iter().map(&answer).collect();
            let _ = sub.reply.send(results);
        }
    });
    tx
}

fn accept_all() -> SubmitTx {
    committer(|_| Ok(()))
}

fn ctx(submit: SubmitTx, limits: LimitsConfig) -> Arc<IngestCtx> {
    Arc::new(IngestCtx::new(
        submit,
        tokio::sync::watch::channel(limits).1,
        Arc::new(IngestStats::default()),
    ))
}

/// Starts a connection over an in-memory pipe; returns the client end and the shutdown switch.
fn connect(
    ctx: &Arc<IngestCtx>,
) -> (
    DuplexStream,
    watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let (stop_tx, stop_rx) = watch::channel(false);
    let ctx = Arc::clone(ctx);
    let task =
        tokio::spawn(async move { serve_connection(server, &ctx, &Slot::alone(), stop_rx).await });
    (client, stop_tx, task)
}

struct JsonClient<S> {
    reader: BufReader<tokio::io::ReadHalf<S>>,
    writer: tokio::io::WriteHalf<S>,
}

impl<S: AsyncRead + AsyncWrite> JsonClient<S> {
    fn new(stream: S) -> Self {
        let (r, w) = tokio::io::split(stream);
        JsonClient {
            reader: BufReader::new(r),
            writer: w,
        }
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    async fn send(&mut self, v: &Value) {
        let mut line = serde_json::to_vec(v).unwrap();
        line.push(b'\n');
        self.send_raw(&line).await;
    }

    /// The next reply, or `None` at end of stream.
    async fn reply(&mut self) -> Option<Value> {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
            .await
            .expect("a reply within 10 s")
            .unwrap();
        (n > 0).then(|| serde_json::from_str(&line).unwrap())
    }
}

async fn send_frame<W: AsyncWrite + Unpin>(w: &mut W, v: &Value) {
    let body = rmp_serde::to_vec_named(v).unwrap();
    w.write_all(&(body.len() as u32).to_be_bytes())
        .await
        .unwrap();
    w.write_all(&body).await.unwrap();
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Option<Value> {
    let mut len = [0u8; 4];
    let read = tokio::time::timeout(Duration::from_secs(10), r.read_exact(&mut len))
        .await
        .expect("a reply within 10 s");
    if read.is_err() {
        return None;
    }
    let mut body = vec![0; u32::from_be_bytes(len) as usize];
    r.read_exact(&mut body).await.unwrap();
    Some(rmp_serde::from_slice(&body).unwrap())
}

#[tokio::test]
async fn json_single_and_batch() {
    let ctx = ctx(
        committer(|e| {
            if e.call_id == "full" {
                Err(Refusal::StoreFull { size: 9, max: 8 })
            } else {
                Ok(())
            }
        }),
        LimitsConfig::default(),
    );
    let (stream, _stop, task) = connect(&ctx);
    let mut c = JsonClient::new(stream);

    c.send(&hold("a")).await;
    assert_eq!(c.reply().await, Some(json!({"ok": true})));

    // Blank lines get no reply; the next reply belongs to the next real line.
    c.send_raw(b"\n   \r\n").await;
    c.send(&json!({"type": "hold", "call_id": "a"})).await;
    let r = c.reply().await.unwrap();
    assert_eq!(r["ok"], json!(false));
    assert!(
        r["error"].as_str().unwrap().contains("missing field `ts`"),
        "{r}"
    );

    c.send(&json!([hold("a"), hold("b"), hold("c")])).await;
    assert_eq!(c.reply().await, Some(json!({"ok": true, "accepted": 3})));

    c.send(&json!([hold("a"), {"type": "bogus"}, hold("full")]))
        .await;
    let r = c.reply().await.unwrap();
    assert_eq!(r["ok"], json!(false), "{r}");
    assert_eq!(r["accepted"], json!(1), "{r}");
    assert_eq!(r["error"], json!("2 of 3 events refused"), "{r}");
    assert_eq!(r["failed"][0]["index"], json!(1), "{r}");
    assert!(
        r["failed"][0]["error"]
            .as_str()
            .unwrap()
            .contains("unknown event type"),
        "{r}"
    );
    assert_eq!(r["failed"][1]["index"], json!(2), "{r}");
    assert!(
        r["failed"][1]["error"]
            .as_str()
            .unwrap()
            .starts_with("store full"),
        "{r}"
    );

    c.send(&json!([])).await;
    assert_eq!(c.reply().await, Some(json!({"ok": true, "accepted": 0})));

    c.writer.shutdown().await.unwrap();
    assert_eq!(c.reply().await, None);
    task.await.unwrap();
    let s = ctx.stats.snapshot();
    assert_eq!(s.events_rejected.get("invalid"), Some(&2));
    assert_eq!(s.events_rejected.get("store_full"), Some(&1));
}

#[tokio::test]
async fn msgpack_single_and_batch() {
    let ctx = ctx(accept_all(), LimitsConfig::default());
    let (stream, _stop, task) = connect(&ctx);
    let (mut r, mut w) = tokio::io::split(stream);

    send_frame(&mut w, &hold("a")).await;
    assert_eq!(read_frame(&mut r).await, Some(json!({"ok": true})));

    send_frame(&mut w, &json!([hold("a"), hold("b")])).await;
    assert_eq!(
        read_frame(&mut r).await,
        Some(json!({"ok": true, "accepted": 2}))
    );

    send_frame(&mut w, &json!([hold("a"), {"type": "hold"}])).await;
    let reply = read_frame(&mut r).await.unwrap();
    assert_eq!(reply["accepted"], json!(1), "{reply}");
    assert_eq!(reply["failed"][0]["index"], json!(1), "{reply}");

    // An undecodable body gets an error, and the framing stays intact.
    w.write_all(&[0, 0, 0, 1, 0xc1]).await.unwrap();
    let reply = read_frame(&mut r).await.unwrap();
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .starts_with("malformed MessagePack"),
        "{reply}"
    );
    // Trailing bytes after the value are refused too.
    let mut body = rmp_serde::to_vec_named(&hold("a")).unwrap();
    body.push(0xc0);
    w.write_all(&(body.len() as u32).to_be_bytes())
        .await
        .unwrap();
    w.write_all(&body).await.unwrap();
    let reply = read_frame(&mut r).await.unwrap();
    assert!(
        reply["error"].as_str().unwrap().contains("left over"),
        "{reply}"
    );

    send_frame(&mut w, &hold("z")).await;
    assert_eq!(read_frame(&mut r).await, Some(json!({"ok": true})));

    w.shutdown().await.unwrap();
    assert_eq!(read_frame(&mut r).await, None);
    task.await.unwrap();
    assert_eq!(ctx.stats.snapshot().framing_errors, 0);
}

#[tokio::test]
async fn pipelined_replies_come_back_in_input_order() {
    const N: usize = 1000;
    // The committer collects every submission (lines buffered together come as one) before
    // answering any, and answers them in reverse: the reader must not wait for replies, and the
    // writer must restore the order.
    let (tx, mut rx) = mpsc::channel::<Submission>(16);
    tokio::spawn(async move {
        let mut held = Vec::new();
        let mut events = 0;
        while events < N {
            match rx.recv().await {
                Some(sub) => {
                    events += sub.events.len();
                    held.push(sub);
                }
                None => return,
            }
        }
        for sub in held.into_iter().rev() {
            let results = sub
                .events
                .iter()
                .map(|e| {
                    if e.call_id.ends_with('7') {
                        Err(Refusal::Store(format!("refused {}", e.call_id)))
                    } else {
                        Ok(())
                    }
                })
                .collect();
            let _ = sub.reply.send(results);
        }
    });
    let ctx = ctx(tx, LimitsConfig::default());
    let (client, server) = tokio::io::duplex(1 << 20);
    let (_stop, stop_rx) = watch::channel(false);
    let ctx2 = Arc::clone(&ctx);
    let task =
        tokio::spawn(async move { serve_connection(server, &ctx2, &Slot::alone(), stop_rx).await });
    let mut c = JsonClient::new(client);
    let mut input = Vec::new();
    for i in 0..N {
        serde_json::to_writer(&mut input, &hold(&format!("c{i}"))).unwrap();
        input.push(b'\n');
    }
    c.send_raw(&input).await;
    c.writer.shutdown().await.unwrap();
    for i in 0..N {
        let r = c
            .reply()
            .await
            .unwrap_or_else(|| panic!("reply {i} missing"));
        if i % 10 == 7 {
            assert_eq!(
                r,
                json!({"ok": false, "error": format!("store error: refused c{i}")})
            );
        } else {
            assert_eq!(r, json!({"ok": true}), "reply {i}");
        }
    }
    assert_eq!(c.reply().await, None);
    task.await.unwrap();
}

#[tokio::test]
async fn lines_buffered_together_go_in_one_submission() {
    // 40 lines written at once, an invalid one and a blank one among them: they reach the
    // committer in a few submissions, not 39, and each line still gets its own reply in order.
    let (tx, mut rx) = mpsc::channel::<Submission>(16);
    let (sizes_tx, mut sizes_rx) = mpsc::unbounded_channel::<usize>();
    tokio::spawn(async move {
        while let Some(sub) = rx.recv().await {
            let _ = sizes_tx.send(sub.events.len());
            let n = sub.events.len();
            let _ = sub.reply.send(vec![Ok(()); n]);
        }
    });
    let ctx = ctx(tx, LimitsConfig::default());
    let (stream, _stop, task) = connect(&ctx);
    let mut c = JsonClient::new(stream);
    let mut input = Vec::new();
    for i in 0..40 {
        match i {
            10 => input.extend_from_slice(b"{\"type\":\"start\"}"),
            20 => input.extend_from_slice(b"   "),
            _ => serde_json::to_writer(&mut input, &hold(&format!("c{i}"))).unwrap(),
        }
        input.push(b'\n');
    }
    c.send_raw(&input).await;
    for i in 0..40 {
        if i == 20 {
            continue;
        }
        let r = c
            .reply()
            .await
            .unwrap_or_else(|| panic!("reply {i} missing"));
        if i == 10 {
            assert_eq!(r["ok"], json!(false), "reply {i}: {r}");
        } else {
            assert_eq!(r, json!({"ok": true}), "reply {i}");
        }
    }
    drop(c);
    task.await.unwrap();
    let mut sizes = Vec::new();
    while let Ok(n) = sizes_rx.try_recv() {
        sizes.push(n);
    }
    assert_eq!(sizes.iter().sum::<usize>(), 38, "{sizes:?}");
    assert!(
        sizes.len() < 5,
        "38 buffered lines took {} submissions",
        sizes.len()
    );
}

#[tokio::test]
async fn an_oversized_line_is_refused_and_the_next_line_works() {
    let limits = LimitsConfig {
        max_line_bytes: 200,
        ..LimitsConfig::default()
    };
    let ctx = ctx(accept_all(), limits);
    let (stream, _stop, task) = connect(&ctx);
    let mut c = JsonClient::new(stream);
    let mut big = b"{\"type\":\"hold\",\"pad\":\"".to_vec();
    big.resize(big.len() + 300_000, b'x');
    big.extend_from_slice(b"\"}\n");
    c.send_raw(&big).await;
    c.send(&hold("a")).await;
    assert_eq!(
        c.reply().await,
        Some(
            json!({"ok": false, "error": "line of more than 200 bytes exceeds limits.max_line_bytes"})
        )
    );
    assert_eq!(c.reply().await, Some(json!({"ok": true})));
    // Exactly at the limit is fine.
    let mut line = serde_json::to_vec(&hold("b")).unwrap();
    line.resize(200, b' ');
    line.push(b'\n');
    c.send_raw(&line).await;
    assert_eq!(c.reply().await, Some(json!({"ok": true})));
    drop(c);
    task.await.unwrap();
    assert_eq!(
        ctx.stats.snapshot().events_rejected.get("too_large"),
        Some(&1)
    );
}

#[tokio::test]
async fn malformed_json_and_invalid_utf8_keep_the_connection() {
    let ctx = ctx(accept_all(), LimitsConfig::default());
    let (stream, _stop, task) = connect(&ctx);
    let mut c = JsonClient::new(stream);
    c.send_raw(b"{\"type\": \n").await;
    let r = c.reply().await.unwrap();
    assert!(
        r["error"].as_str().unwrap().starts_with("malformed JSON: "),
        "{r}"
    );
    c.send_raw(b"{\"type\":\"hold\",\"call_id\":\"\xff\xfe\",\"ts\":1700000000000}\n")
        .await;
    let r = c.reply().await.unwrap();
    assert!(
        r["error"].as_str().unwrap().starts_with("malformed JSON: "),
        "{r}"
    );
    c.send_raw(b"42\n").await;
    let r = c.reply().await.unwrap();
    assert!(
        r["error"].as_str().unwrap().contains("must be an object"),
        "{r}"
    );
    c.send(&hold("a")).await;
    assert_eq!(c.reply().await, Some(json!({"ok": true})));
    drop(c);
    task.await.unwrap();
    assert_eq!(
        ctx.stats.snapshot().events_rejected.get("invalid"),
        Some(&3)
    );
}

#[tokio::test]
async fn a_batch_over_the_limit_submits_nothing() {
    let (tx, mut rx) = mpsc::channel::<Submission>(16);
    let limits = LimitsConfig {
        max_batch_events: 3,
        ..LimitsConfig::default()
    };
    let ctx = ctx(tx, limits);
    let (stream, _stop, task) = connect(&ctx);
    let mut c = JsonClient::new(stream);
    c.send(&json!([hold("a"), hold("b"), hold("c"), hold("d")]))
        .await;
    let r = c.reply().await.unwrap();
    assert_eq!(r["ok"], json!(false));
    assert_eq!(
        r["error"],
        json!("batch of 4 events exceeds limits.max_batch_events (3)")
    );
    assert!(rx.try_recv().is_err(), "nothing may reach the committer");
    drop(c);
    task.await.unwrap();
    assert_eq!(
        ctx.stats.snapshot().events_rejected.get("too_large"),
        Some(&4)
    );
}

#[tokio::test]
async fn bad_frame_lengths_and_truncated_frames_close_the_connection() {
    let limits = LimitsConfig {
        max_frame_bytes: 1000,
        ..LimitsConfig::default()
    };
    let ctx = ctx(accept_all(), limits);
    // (bytes after a good frame, whether the client then closes, the error wanted)
    let cases: [(&[u8], bool, &str); 4] = [
        (
            &[0, 0, 0x10, 0],
            false,
            "frame of 4096 bytes exceeds limits.max_frame_bytes (1000)",
        ),
        (&[0, 0, 0, 0], false, "frame of 0 bytes"),
        (
            &[0, 0, 0, 9, 0x81],
            true,
            "connection closed after 1 of the 9 bytes of a frame",
        ),
        (&[0, 0], true, "the middle of a frame's 4-byte length"),
    ];
    for (input, close, want) in cases {
        let (stream, _stop, task) = connect(&ctx);
        let (mut r, mut w) = tokio::io::split(stream);
        // A good frame first: its reply must still come before the error.
        send_frame(&mut w, &hold("a")).await;
        w.write_all(input).await.unwrap();
        if close {
            w.shutdown().await.unwrap();
        }
        assert_eq!(read_frame(&mut r).await, Some(json!({"ok": true})));
        let reply = read_frame(&mut r).await.unwrap();
        assert!(reply["error"].as_str().unwrap().contains(want), "{reply}");
        assert_eq!(read_frame(&mut r).await, None, "the connection must close");
        task.await.unwrap();
    }
    assert_eq!(ctx.stats.snapshot().framing_errors, 4);
    assert_eq!(
        ctx.stats.snapshot().events_rejected.get("framing"),
        Some(&4)
    );
}

#[tokio::test]
async fn shutdown_delivers_replies_already_owed() {
    // A committer that holds submissions until released.
    let (tx, mut rx) = mpsc::channel::<Submission>(16);
    let (got_tx, mut got_rx) = mpsc::channel::<usize>(16);
    let (release_tx, release_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        // Counted in events: lines already buffered together come as one submission.
        let mut held = Vec::new();
        let mut events = 0;
        while events < 3 {
            let Some(sub) = rx.recv().await else { return };
            events += sub.events.len();
            held.push(sub);
            let _ = got_tx.send(events).await;
        }
        let _ = release_rx.await;
        for sub in held {
            let n = sub.events.len();
            let _ = sub.reply.send(vec![Ok(()); n]);
        }
    });
    let ctx = ctx(tx, LimitsConfig::default());
    let (stream, stop, task) = connect(&ctx);
    let mut c = JsonClient::new(stream);
    for i in 0..3 {
        c.send(&hold(&format!("c{i}"))).await;
    }
    while got_rx.recv().await != Some(3) {}
    stop.send(true).unwrap();
    // Input after shutdown is not read.
    c.send(&hold("late")).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    release_tx.send(()).unwrap();
    for _ in 0..3 {
        assert_eq!(c.reply().await, Some(json!({"ok": true})));
    }
    assert_eq!(c.reply().await, None);
    task.await.unwrap();
}

#[tokio::test]
async fn a_dropped_reply_sender_means_not_stored() {
    let (tx, mut rx) = mpsc::channel::<Submission>(16);
    tokio::spawn(async move {
        while let Some(sub) = rx.recv().await {
            drop(sub.reply);
        }
    });
    let ctx = ctx(tx, LimitsConfig::default());
    let (stream, _stop, task) = connect(&ctx);
    let mut c = JsonClient::new(stream);
    c.send(&hold("a")).await;
    assert_eq!(
        c.reply().await,
        Some(json!({"ok": false, "error": SHUTTING_DOWN}))
    );
    drop(c);
    task.await.unwrap();
    assert_eq!(
        ctx.stats.snapshot().events_rejected.get("shutdown"),
        Some(&1)
    );
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(200))]

    /// Any input ends with the connection closed, never a panic or a hang.
    #[test]
    fn arbitrary_input_never_panics(
        input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        json_like in proptest::prelude::any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let limits = LimitsConfig { max_line_bytes: 64, max_frame_bytes: 64, max_batch_events: 4, ..LimitsConfig::default() };
            let ctx = ctx(accept_all(), limits);
            let mut input = input;
            if json_like {
                input.insert(0, b'[');
            }
            let (client, server) = tokio::io::duplex(4096);
            let (_stop, stop_rx) = watch::channel(false);
            let (mut r, mut w) = tokio::io::split(client);
            let talk = async {
                let _ = w.write_all(&input).await;
                let _ = w.shutdown().await;
                let mut out = Vec::new();
                let _ = r.read_to_end(&mut out).await;
            };
            let slot = Slot::alone();
            let served = tokio::time::timeout(Duration::from_secs(10), async {
                tokio::join!(serve_connection(server, &ctx, &slot, stop_rx), talk)
            });
            assert!(served.await.is_ok(), "the connection hung");
        });
    }
}
