//! One event connection: picks the framing from the first byte, parses lines or frames, hands valid
//! events to the committer and writes exactly one reply per line or frame, in input order.
//!
//! The connection is split in two halves that run concurrently: the reader parses and submits, and
//! pushes one pending reply per line or frame into a bounded in-order queue; the writer awaits each
//! pending reply in turn and writes it. So a client may pipeline thousands of lines without waiting,
//! while replies still come back in order and only once the committer says the events are durable.

use std::future::Future;
use std::io;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
    BufWriter,
};
use tokio::sync::{mpsc, oneshot, watch};

use super::listener::IngestCtx;
use super::{IngestStats, ItemResult, Submission};
use crate::event::{decode_value, Decoded, EventError};

/// Replies that may wait in order behind the oldest unanswered one; beyond this the reader stops
/// taking input, which pushes back on a client that sends faster than events become durable.
const PENDING_REPLIES: usize = 1024;
/// Socket read buffer. Lines are copied out of it, so it does not bound the line length.
const READ_BUFFER: usize = 16 * 1024;
/// Socket write buffer; flushed whenever the writer runs out of ready replies.
const WRITE_BUFFER: usize = 8 * 1024;
/// A frame body buffer that grew beyond this is released after use, so one large frame does not
/// pin its memory for the life of the connection.
const KEEP_BODY_CAPACITY: usize = 64 * 1024;
/// MessagePack nesting limit; the same as serde_json's, so no input can exhaust the stack.
const MAX_MSGPACK_DEPTH: usize = 128;
/// How long to keep reading (and discarding) input after replying to a connection that is being
/// closed with input still unread. Closing a TCP socket with unread data resets it, and the reset
/// can destroy the final error reply before the client reads it.
pub(crate) const LINGER: Duration = Duration::from_millis(500);
/// At most this much input is discarded while lingering.
const LINGER_MAX_BYTES: usize = 1 << 20;

/// The reply to events the committer will never answer.
pub const SHUTTING_DOWN: &str = "the daemon is shutting down; event not stored";

/// How a connection frames its messages, chosen by its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Newline-delimited JSON; the first byte was `{`, `[` or ASCII whitespace.
    JsonLines,
    /// A 4-byte big-endian length followed by a MessagePack body; any other first byte.
    MsgPack,
}

impl Framing {
    pub fn from_first_byte(b: u8) -> Framing {
        if b == b'{' || b == b'[' || b.is_ascii_whitespace() {
            Framing::JsonLines
        } else {
            Framing::MsgPack
        }
    }
}

/// Whether a line or frame held one event (a map) or a batch (an array); it decides the reply's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    One,
    Batch,
}

/// The reply owed for one line or frame, queued in input order.
enum Pending {
    /// Known without the committer: nothing of this line or frame was submitted.
    Ready(Value),
    /// Some events went to the committer; `slots` holds each item's validation error, or `None`
    /// where the item was submitted and its result comes from `results`.
    Waiting {
        shape: Shape,
        slots: Vec<Option<String>>,
        results: oneshot::Receiver<Vec<ItemResult>>,
    },
}

/// Why the reader stopped taking input.
#[derive(Debug)]
enum Stop {
    /// The client closed its side at a message boundary.
    Eof,
    /// The daemon is shutting down.
    Shutdown,
    /// The writer ended (the client stopped reading or went away); nobody could get the replies.
    WriterGone,
    /// The MessagePack framing is broken; the stream cannot be resynchronised.
    Framing,
    Io(io::Error),
}

/// Serves one event connection until the client closes it, the framing breaks, or `shutdown`
/// becomes true (a dropped shutdown sender counts as true).
///
/// On shutdown, input not yet read is left unread, and every reply owed for input already read is
/// still written (waiting for the committer) before the connection closes. Never panics on any input.
pub async fn serve_connection<S>(stream: S, ctx: &IngestCtx, mut shutdown: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite,
{
    let (read_half, write_half) = tokio::io::split(stream);
    let mut reader = BufReader::with_capacity(READ_BUFFER, read_half);
    let mut writer = BufWriter::with_capacity(WRITE_BUFFER, write_half);

    // Peek at the first byte without consuming it: it belongs to the first line or frame.
    let first = tokio::select! {
        biased;
        () = shutdown_signalled(&mut shutdown) => None,
        peeked = reader.fill_buf() => match peeked {
            Ok(buf) => buf.first().copied(),
            Err(e) => {
                tracing::debug!("event connection: read failed before the first byte: {e}");
                None
            }
        },
    };
    let Some(first) = first else {
        // The client closed without sending anything, or the daemon is stopping.
        let _ = writer.shutdown().await;
        return;
    };
    let framing = Framing::from_first_byte(first);

    let (pending_tx, pending_rx) = mpsc::channel(PENDING_REPLIES);
    let reading = async {
        // `pending_tx` is moved in, so the writer sees the queue close as soon as the reader ends.
        let pending = pending_tx;
        match framing {
            Framing::JsonLines => read_json_lines(&mut reader, ctx, &pending, &mut shutdown).await,
            Framing::MsgPack => {
                read_msgpack_frames(&mut reader, ctx, &pending, &mut shutdown).await
            }
        }
    };
    let writing = write_replies(&mut writer, pending_rx, framing, &ctx.stats);
    let (stop, written) = tokio::join!(reading, writing);

    match &stop {
        Stop::Io(e) => tracing::debug!("event connection ({framing:?}): read failed: {e}"),
        other => tracing::debug!("event connection ({framing:?}) ended: {other:?}"),
    }
    if let Err(e) = written {
        tracing::debug!("event connection ({framing:?}): writing replies failed: {e}");
        return;
    }
    if matches!(stop, Stop::Framing | Stop::Shutdown) {
        linger(&mut reader).await;
    }
}

/// Resolves once shutdown is requested, or once nobody can request it any more.
pub(crate) async fn shutdown_signalled(shutdown: &mut watch::Receiver<bool>) {
    // An error means the sender was dropped: the owner is gone, which is a shutdown too.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Discards input for a short while (see `LINGER`) so the peer reads our last replies before the close.
pub(crate) async fn linger<R: AsyncBufRead + Unpin>(reader: &mut R) {
    let drain = async {
        let mut discarded = 0;
        while discarded < LINGER_MAX_BYTES {
            let n = match reader.fill_buf().await {
                Ok(buf) if !buf.is_empty() => buf.len(),
                _ => break,
            };
            reader.consume(n);
            discarded += n;
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Runs `fut` unless shutdown is requested or the writer ends first.
async fn or_stop<F: Future>(
    fut: F,
    shutdown: &mut watch::Receiver<bool>,
    pending: &mpsc::Sender<Pending>,
) -> Result<F::Output, Stop> {
    tokio::select! {
        biased;
        () = shutdown_signalled(shutdown) => Err(Stop::Shutdown),
        () = pending.closed() => Err(Stop::WriterGone),
        out = fut => Ok(out),
    }
}

/// What `read_line` found.
#[derive(Debug, PartialEq, Eq)]
enum LineRead {
    /// A line is in the buffer (without its newline).
    Line,
    /// The line was longer than the limit; it has been read past and discarded.
    TooLong,
    /// The client closed its side; no more lines.
    Eof,
}

/// Reads one line into `line`, holding at most `max` bytes of it: a longer line is consumed in
/// buffer-sized chunks and discarded, so an endless line cannot exhaust memory.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<LineRead> {
    line.clear();
    let mut too_long = false;
    let mut started = false;
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            // A last line without its newline is still a line.
            return Ok(match (started, too_long) {
                (false, _) => LineRead::Eof,
                (true, true) => LineRead::TooLong,
                (true, false) => LineRead::Line,
            });
        }
        started = true;
        let (part, used, complete) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], i + 1, true),
            None => (chunk, chunk.len(), false),
        };
        if !too_long {
            if line.len() + part.len() > max {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(part);
            }
        }
        reader.consume(used);
        if complete {
            return Ok(if too_long {
                LineRead::TooLong
            } else {
                LineRead::Line
            });
        }
    }
}

async fn read_json_lines<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    ctx: &IngestCtx,
    pending: &mpsc::Sender<Pending>,
    shutdown: &mut watch::Receiver<bool>,
) -> Stop {
    let max = ctx.limits().max_line_bytes;
    let mut line = Vec::new();
    loop {
        let read = match or_stop(read_line(reader, &mut line, max), shutdown, pending).await {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => return Stop::Io(e),
            Err(stop) => return stop,
        };
        let step = match read {
            LineRead::Eof => return Stop::Eof,
            LineRead::TooLong => {
                ctx.stats.reject("too_large");
                let msg = format!("line of more than {max} bytes exceeds limits.max_line_bytes");
                push_ready(pending, error_reply(&msg)).await
            }
            // Blank lines (keep-alives, trailing CR/LF) need no reply.
            LineRead::Line if line.iter().all(u8::is_ascii_whitespace) => Ok(()),
            LineRead::Line => match serde_json::from_slice::<Value>(&line) {
                Ok(value) => submit_value(value, ctx, pending, shutdown).await,
                Err(e) => {
                    ctx.stats.reject("invalid");
                    push_ready(pending, error_reply(&format!("malformed JSON: {e}"))).await
                }
            },
        };
        if let Err(stop) = step {
            return stop;
        }
    }
}

async fn read_msgpack_frames<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    ctx: &IngestCtx,
    pending: &mpsc::Sender<Pending>,
    shutdown: &mut watch::Receiver<bool>,
) -> Stop {
    let max = ctx.limits().max_frame_bytes;
    let mut body = Vec::new();
    loop {
        // The end of input is clean only between frames.
        let at_eof = or_stop(
            async { reader.fill_buf().await.map(|b| b.is_empty()) },
            shutdown,
            pending,
        )
        .await;
        match at_eof {
            Ok(Ok(true)) => return Stop::Eof,
            Ok(Ok(false)) => {}
            Ok(Err(e)) => return Stop::Io(e),
            Err(stop) => return stop,
        }

        let mut header = [0u8; 4];
        match or_stop(reader.read_exact(&mut header), shutdown, pending).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return framing_error(
                    ctx,
                    pending,
                    "connection closed in the middle of a frame's 4-byte length".into(),
                )
                .await;
            }
            Ok(Err(e)) => return Stop::Io(e),
            Err(stop) => return stop,
        }
        let len = u32::from_be_bytes(header);
        // On a 16-bit target a length beyond usize is over any limit anyway.
        let len_usize = usize::try_from(len).unwrap_or(usize::MAX);
        if len == 0 {
            let msg = format!(
                "frame of 0 bytes: a frame is a 4-byte big-endian length of 1 to {max} bytes \
                 (limits.max_frame_bytes) followed by that many bytes of MessagePack"
            );
            return framing_error(ctx, pending, msg).await;
        }
        if len_usize > max {
            let msg = format!("frame of {len} bytes exceeds limits.max_frame_bytes ({max})");
            return framing_error(ctx, pending, msg).await;
        }

        // `take` + `read_to_end` grows the buffer as bytes arrive, so a client that announces a
        // large frame and sends nothing does not make us allocate it.
        body.clear();
        let read = or_stop(
            (&mut *reader).take(u64::from(len)).read_to_end(&mut body),
            shutdown,
            pending,
        )
        .await;
        match read {
            Ok(Ok(n)) if n == len_usize => {}
            Ok(Ok(n)) => {
                let msg = format!("connection closed after {n} of the {len} bytes of a frame");
                return framing_error(ctx, pending, msg).await;
            }
            Ok(Err(e)) => return Stop::Io(e),
            Err(stop) => return stop,
        }

        let step = match decode_msgpack(&body) {
            Ok(value) => submit_value(value, ctx, pending, shutdown).await,
            Err(msg) => {
                ctx.stats.reject("invalid");
                push_ready(pending, error_reply(&msg)).await
            }
        };
        if body.capacity() > KEEP_BODY_CAPACITY {
            body = Vec::new();
        }
        if let Err(stop) = step {
            return stop;
        }
    }
}

/// Decodes one frame body; the whole body must be exactly one MessagePack value.
fn decode_msgpack(body: &[u8]) -> Result<Value, String> {
    let mut de = rmp_serde::Deserializer::new(io::Cursor::new(body));
    de.set_max_depth(MAX_MSGPACK_DEPTH);
    let value: Value = serde::Deserialize::deserialize(&mut de)
        .map_err(|e| format!("malformed MessagePack: {e}"))?;
    let used = de.position();
    let extra = (body.len() as u64).saturating_sub(used);
    if extra > 0 {
        return Err(format!(
            "malformed MessagePack: {extra} bytes left over after the first value (a frame holds one map or one array)"
        ));
    }
    Ok(value)
}

/// Queues the error reply of a broken frame and stops reading: after a bad length there is no
/// telling where the next frame starts.
async fn framing_error(ctx: &IngestCtx, pending: &mpsc::Sender<Pending>, msg: String) -> Stop {
    ctx.stats.update(|c| c.framing_errors += 1);
    ctx.stats.reject("framing");
    match push_ready(pending, error_reply(&msg)).await {
        Ok(()) => Stop::Framing,
        Err(stop) => stop,
    }
}

async fn push_ready(pending: &mpsc::Sender<Pending>, reply: Value) -> Result<(), Stop> {
    pending
        .send(Pending::Ready(reply))
        .await
        .map_err(|_| Stop::WriterGone)
}

/// Validates one decoded line or frame, submits its valid events and queues the reply owed for it.
async fn submit_value(
    value: Value,
    ctx: &IngestCtx,
    pending: &mpsc::Sender<Pending>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), Stop> {
    let max_batch = ctx.limits().max_batch_events;
    if let Value::Array(items) = &value {
        if items.len() > max_batch {
            let n = items.len();
            ctx.stats
                .update(|c| *c.events_rejected.entry("too_large".into()).or_default() += n as u64);
            let msg = format!("batch of {n} events exceeds limits.max_batch_events ({max_batch})");
            return push_ready(pending, json!({"ok": false, "accepted": 0, "error": msg})).await;
        }
    }
    let (shape, decoded) = match decode_value(&value, &ctx.limits().event_limits()) {
        Decoded::One(item) => (Shape::One, vec![item]),
        Decoded::Batch(items) => (Shape::Batch, items),
    };
    drop(value);
    let mut slots = Vec::with_capacity(decoded.len());
    let mut events = Vec::with_capacity(decoded.len());
    for item in decoded {
        match item {
            Ok(event) => {
                events.push(event);
                slots.push(None);
            }
            Err(e) => {
                ctx.stats.reject(validation_label(&e));
                slots.push(Some(e.to_string()));
            }
        }
    }

    // Reserve the reply's place first: once events are submitted, their reply must not be lost.
    let permit = pending.reserve().await.map_err(|_| Stop::WriterGone)?;
    if events.is_empty() {
        permit.send(Pending::Ready(resolve(
            shape,
            slots,
            Some(Vec::new()),
            &ctx.stats,
        )));
        return Ok(());
    }
    let (reply_tx, reply_rx) = oneshot::channel();
    let submission = Submission {
        events,
        reply: reply_tx,
    };
    // `send` waits while the committer is busy: that is the back-pressure on fast clients.
    match or_stop(ctx.submit.send(submission), shutdown, pending).await {
        Ok(Ok(())) => {
            permit.send(Pending::Waiting {
                shape,
                slots,
                results: reply_rx,
            });
            Ok(())
        }
        // The committer is gone: nothing was stored.
        Ok(Err(_)) => {
            permit.send(Pending::Ready(resolve(shape, slots, None, &ctx.stats)));
            Ok(())
        }
        // Stopped while waiting for the committer: tell the client its events were not stored.
        Err(stop) => {
            permit.send(Pending::Ready(resolve(shape, slots, None, &ctx.stats)));
            Err(stop)
        }
    }
}

/// The `events_rejected` label of an event that failed validation.
fn validation_label(e: &EventError) -> &'static str {
    match e {
        EventError::TooLong { .. } | EventError::TooManyTags { .. } => "too_large",
        _ => "invalid",
    }
}

/// The `events_rejected` label of an event the committer refused, from its message.
pub fn committer_label(message: &str) -> &'static str {
    if message.starts_with("store full") {
        "store_full"
    } else if message.starts_with("too many open segments") {
        "open_segment_limit"
    } else if message.starts_with("store error") {
        "store_error"
    } else if message == SHUTTING_DOWN {
        "shutdown"
    } else {
        "rejected"
    }
}

/// Merges validation errors with the committer's results (`None`: the committer never answered)
/// into the reply, counting the committer's refusals.
fn resolve(
    shape: Shape,
    slots: Vec<Option<String>>,
    results: Option<Vec<ItemResult>>,
    stats: &IngestStats,
) -> Value {
    let mut committed = results.map(Vec::into_iter);
    let items: Vec<ItemResult> = slots
        .into_iter()
        .map(|slot| {
            if let Some(invalid) = slot {
                return Err(invalid);
            }
            let result = match committed.as_mut() {
                // A committer that answers fewer results than events leaves the rest unconfirmed.
                Some(results) => results.next().unwrap_or_else(|| {
                    Err("the store gave no result for this event; it may not be stored".into())
                }),
                None => Err(SHUTTING_DOWN.to_string()),
            };
            if let Err(msg) = &result {
                stats.reject(committer_label(msg));
            }
            result
        })
        .collect();
    reply_value(shape, items)
}

/// The reply for one line or frame, from the result of each of its items.
fn reply_value(shape: Shape, items: Vec<ItemResult>) -> Value {
    match shape {
        Shape::One => match items.into_iter().next() {
            Some(Ok(())) => json!({"ok": true}),
            Some(Err(msg)) => error_reply(&msg),
            None => error_reply("no event in this message"),
        },
        Shape::Batch => {
            let total = items.len();
            let failed: Vec<Value> = items
                .into_iter()
                .enumerate()
                .filter_map(|(index, r)| {
                    r.err().map(|error| json!({"index": index, "error": error}))
                })
                .collect();
            if failed.is_empty() {
                json!({"ok": true, "accepted": total})
            } else {
                let refused = failed.len();
                json!({
                    "ok": false,
                    "accepted": total - refused,
                    "error": format!("{refused} of {total} events refused"),
                    "failed": failed,
                })
            }
        }
    }
}

fn error_reply(msg: &str) -> Value {
    json!({"ok": false, "error": msg})
}

/// Awaits each queued reply in input order and writes it; flushes whenever the next reply is not
/// ready yet, so no reply sits in the buffer while the writer waits.
async fn write_replies<W: AsyncWrite + Unpin>(
    out: &mut W,
    mut queue: mpsc::Receiver<Pending>,
    framing: Framing,
    stats: &IngestStats,
) -> io::Result<()> {
    let mut encoded = Vec::new();
    loop {
        let next = match queue.try_recv() {
            Ok(next) => next,
            Err(mpsc::error::TryRecvError::Empty) => {
                out.flush().await?;
                match queue.recv().await {
                    Some(next) => next,
                    None => break,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        let reply = match next {
            Pending::Ready(reply) => reply,
            Pending::Waiting {
                shape,
                slots,
                mut results,
            } => {
                let results = match results.try_recv() {
                    Ok(results) => Some(results),
                    Err(oneshot::error::TryRecvError::Empty) => {
                        out.flush().await?;
                        // An error means the committer dropped the reply sender.
                        results.await.ok()
                    }
                    Err(oneshot::error::TryRecvError::Closed) => None,
                };
                resolve(shape, slots, results, stats)
            }
        };
        encode_reply(framing, &reply, &mut encoded);
        out.write_all(&encoded).await?;
    }
    out.flush().await?;
    out.shutdown().await
}

/// Encodes a reply as a JSON line or a length-prefixed MessagePack map.
fn encode_reply(framing: Framing, reply: &Value, out: &mut Vec<u8>) {
    out.clear();
    match framing {
        Framing::JsonLines => {
            if serde_json::to_writer(&mut *out, reply).is_err() {
                // Unreachable for a `Value` built here; still answer rather than skip a reply.
                out.clear();
                out.extend_from_slice(
                    br#"{"ok":false,"error":"internal error encoding the reply"}"#,
                );
            }
            out.push(b'\n');
        }
        Framing::MsgPack => {
            let body = rmp_serde::to_vec_named(reply).unwrap_or_else(|_| {
                // Same fallback: the map {"ok": false}.
                vec![0x81, 0xa2, b'o', b'k', 0xc2]
            });
            // Replies are a few hundred bytes at most; a failing conversion would mean over 4 GiB.
            let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LimitsConfig;
    use crate::event::Event;
    use std::sync::Arc;
    use tokio::io::DuplexStream;

    const TS: i64 = 1_700_000_000_000;

    fn hold(call_id: &str) -> Value {
        json!({"type": "hold", "call_id": call_id, "ts": TS})
    }

    /// A committer that answers every submission at once with `answer(event)` per event.
    fn committer(answer: impl Fn(&Event) -> ItemResult + Send + 'static) -> super::super::SubmitTx {
        let (tx, mut rx) = mpsc::channel::<Submission>(64);
        tokio::spawn(async move {
            while let Some(sub) = rx.recv().await {
                let results = sub.events.iter().map(&answer).collect();
                let _ = sub.reply.send(results);
            }
        });
        tx
    }

    fn accept_all() -> super::super::SubmitTx {
        committer(|_| Ok(()))
    }

    fn ctx(submit: super::super::SubmitTx, limits: LimitsConfig) -> Arc<IngestCtx> {
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
        let task = tokio::spawn(async move { serve_connection(server, &ctx, stop_rx).await });
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
                    Err("store full: 9 bytes on disk reached store.max_bytes = 8".into())
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
        // The committer collects every submission before answering any, and answers them in
        // reverse: the reader must not wait for replies, and the writer must restore the order.
        let (tx, mut rx) = mpsc::channel::<Submission>(16);
        tokio::spawn(async move {
            let mut held = Vec::new();
            while held.len() < N {
                match rx.recv().await {
                    Some(sub) => held.push(sub),
                    None => return,
                }
            }
            for sub in held.into_iter().rev() {
                let results = sub
                    .events
                    .iter()
                    .map(|e| {
                        if e.call_id.ends_with('7') {
                            Err(format!("refused {}", e.call_id))
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
        let task = tokio::spawn(async move { serve_connection(server, &ctx2, stop_rx).await });
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
                assert_eq!(r, json!({"ok": false, "error": format!("refused c{i}")}));
            } else {
                assert_eq!(r, json!({"ok": true}), "reply {i}");
            }
        }
        assert_eq!(c.reply().await, None);
        task.await.unwrap();
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
        big.extend_from_slice(&[b'x'; 300_000]);
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
    async fn read_line_holds_at_most_the_limit() {
        let mut input: &[u8] = b"0123456789abcdef\nok\nlast";
        let mut reader = BufReader::with_capacity(4, &mut input);
        let mut line = Vec::new();
        assert_eq!(
            read_line(&mut reader, &mut line, 8).await.unwrap(),
            LineRead::TooLong
        );
        assert!(line.capacity() <= 8, "held {} bytes", line.capacity());
        assert_eq!(
            read_line(&mut reader, &mut line, 8).await.unwrap(),
            LineRead::Line
        );
        assert_eq!(line, b"ok");
        assert_eq!(
            read_line(&mut reader, &mut line, 8).await.unwrap(),
            LineRead::Line
        );
        assert_eq!(line, b"last");
        assert_eq!(
            read_line(&mut reader, &mut line, 8).await.unwrap(),
            LineRead::Eof
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
            let mut held = Vec::new();
            while held.len() < 3 {
                let Some(sub) = rx.recv().await else { return };
                held.push(sub);
                let _ = got_tx.send(held.len()).await;
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

    #[test]
    fn committer_errors_map_to_labels() {
        assert_eq!(
            committer_label("store full: 1 bytes on disk reached store.max_bytes = 1"),
            "store_full"
        );
        assert_eq!(
            committer_label("too many open segments: 5 are open (limits.max_open_segments)"),
            "open_segment_limit"
        );
        assert_eq!(committer_label("disk on fire"), "rejected");
    }

    #[test]
    fn the_first_byte_picks_the_framing() {
        for b in [b'{', b'[', b' ', b'\n', b'\t', b'\r'] {
            assert_eq!(Framing::from_first_byte(b), Framing::JsonLines);
        }
        for b in [0u8, 0x81, b'x', 0xff] {
            assert_eq!(Framing::from_first_byte(b), Framing::MsgPack);
        }
    }

    #[test]
    fn deeply_nested_msgpack_is_refused_without_overflowing() {
        let body = vec![0x91u8; 100_000];
        assert!(decode_msgpack(&body).is_err());
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
                let served = tokio::time::timeout(Duration::from_secs(10), async {
                    tokio::join!(serve_connection(server, &ctx, stop_rx), talk)
                });
                assert!(served.await.is_ok(), "the connection hung");
            });
        }
    }
}
