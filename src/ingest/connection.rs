//! One event connection's read loop: picks the framing from the first byte, reads lines or
//! frames, decodes each and hands it on (`submit.rs`), until the client closes, the
//! framing breaks, the connection makes room for a newcomer or the daemon stops.
//!
//! The connection is split in two halves that run concurrently: this reader, and the writer of
//! `reply_queue.rs`, which writes one reply per line or frame in input order.
//! The reader pushes each pending reply into a bounded queue without waiting for it, so a client
//! may pipeline thousands of lines while replies still come back in order.
//!
//! Between messages the reader also waits on the connection's slot (`boundary.rs`): a connection
//! idle longest when all slots are taken gives its slot up there, never mid-message and never
//! owing a reply, and closes with a notice saying why.

use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{mpsc, watch};

use super::boundary::{next_message, Next};
use super::coalesce::{take_frame, take_line, Coalesced};
use super::decode::{decode_json, decode_msgpack};
use super::framing::{read_frame, read_line, FrameRead, Framing, LineRead};
use super::linger::linger;
use super::reply::{encode_reply, Reply};
use super::reply_queue::{write_replies, Pending};
use super::stop::{or_stop, Stop};
use super::submit::{push_ready, submit_decoded};
use super::IngestCtx;
use crate::shutdown;
use crate::slots::Slot;

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
/// How long the notice to a connection that made room may take to write: it owes no reply, so a
/// client that does not read cannot keep the task (which no longer holds a slot) alive.
const NOTICE_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves one event connection until the client closes it, the framing breaks, it gives `slot`
/// up to a newcomer, or `shutdown` becomes true (a dropped shutdown sender counts as true).
///
/// On shutdown, input not yet read is left unread, and every reply owed for input already read is
/// still written (waiting for the committer) before the connection closes. Never panics on any input.
pub async fn serve_connection<S>(
    stream: S,
    ctx: &IngestCtx,
    slot: &Slot,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite,
{
    let (read_half, write_half) = tokio::io::split(stream);
    let mut reader = BufReader::with_capacity(READ_BUFFER, read_half);
    let mut writer = BufWriter::with_capacity(WRITE_BUFFER, write_half);

    // Wait for the first byte without consuming it: it belongs to the first line or frame.
    let first = tokio::select! {
        biased;
        () = shutdown::signalled(&mut shutdown) => None,
        next = next_message(&mut reader, slot) => match next {
            Ok(Next::Input(b)) => Some(b),
            Ok(Next::Eof) => None,
            Ok(Next::Evicted) => {
                // The framing is not known yet, so no notice can be framed: just close.
                ctx.stats.update(|c| c.connections_evicted += 1);
                let _ = writer.shutdown().await;
                linger(&mut reader).await;
                return;
            }
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
            Framing::JsonLines => {
                read_json_lines(&mut reader, ctx, slot, &pending, &mut shutdown).await
            }
            Framing::MsgPack => {
                read_msgpack_frames(&mut reader, ctx, slot, &pending, &mut shutdown).await
            }
        }
    };
    let writing = write_replies(&mut writer, pending_rx, framing, &ctx.stats, slot);
    let (stop, written) = tokio::join!(reading, writing);

    match &stop {
        Stop::Io(e) => tracing::debug!("event connection ({framing:?}): read failed: {e}"),
        other => tracing::debug!("event connection ({framing:?}) ended: {other:?}"),
    }
    if let Err(e) = written {
        tracing::debug!("event connection ({framing:?}): writing replies failed: {e}");
        return;
    }
    if matches!(stop, Stop::Evicted) {
        ctx.stats.update(|c| c.connections_evicted += 1);
        let notice = Reply::error(format!(
            "closed to make room: all {} event connections were taken and this one had been idle longest (limits.max_connections)",
            slot.cap()
        ));
        let mut encoded = Vec::new();
        encode_reply(framing, &notice, &mut encoded);
        let sent = tokio::time::timeout(NOTICE_TIMEOUT, async {
            writer.write_all(&encoded).await?;
            writer.flush().await
        })
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            tracing::debug!(
                "event connection ({framing:?}): the notice of its close was not delivered"
            );
            return;
        }
    }
    if let Err(e) = writer.shutdown().await {
        tracing::debug!("event connection ({framing:?}): closing failed: {e}");
        return;
    }
    if matches!(
        stop,
        Stop::Framing | Stop::Shutdown | Stop::Evicted | Stop::PartialTimeout
    ) {
        linger(&mut reader).await;
    }
}

/// Waits between messages for the next one to start: `Ok(())` once its first byte is in, having
/// marked the connection busy; otherwise why the reader stops.
async fn await_message<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    slot: &Slot,
    pending: &mpsc::Sender<Pending>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), Stop> {
    match or_stop(next_message(reader, slot), shutdown, pending).await? {
        Ok(Next::Input(_)) => {
            slot.begin();
            Ok(())
        }
        Ok(Next::Eof) => Err(Stop::Eof),
        Ok(Next::Evicted) => Err(Stop::Evicted),
        Err(e) => Err(Stop::Io(e)),
    }
}

/// Queues the error reply of a line or frame not completed in time, and stops reading: the rest
/// of it may still come, and there is no telling it from the next message.
async fn partial_timeout(
    ctx: &IngestCtx,
    pending: &mpsc::Sender<Pending>,
    what: &str,
    within: crate::units::Millis,
) -> Stop {
    ctx.stats.update(|c| c.partial_input_timeouts += 1);
    let msg = format!(
        "{what} not completed within {within} of its first byte (limits.partial_input_timeout); closing the connection"
    );
    match push_ready(pending, Reply::error(msg)).await {
        Ok(()) => Stop::PartialTimeout,
        Err(stop) => stop,
    }
}

async fn read_json_lines<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    ctx: &IngestCtx,
    slot: &Slot,
    pending: &mpsc::Sender<Pending>,
    shutdown: &mut watch::Receiver<bool>,
) -> Stop {
    let max = ctx.limits().max_line_bytes;
    let mut line = Vec::new();
    loop {
        if let Err(stop) = await_message(reader, slot, pending, shutdown).await {
            return stop;
        }
        let within = ctx.limits().partial_input_timeout;
        let reading = tokio::time::timeout(within.to_duration(), read_line(reader, &mut line, max));
        let read = match or_stop(reading, shutdown, pending).await {
            Ok(Ok(Ok(read))) => read,
            Ok(Ok(Err(e))) => return Stop::Io(e),
            Ok(Err(_)) => return partial_timeout(ctx, pending, "line", within).await,
            Err(stop) => return stop,
        };
        let step = match read {
            LineRead::Eof => return Stop::Eof,
            LineRead::TooLong => {
                ctx.stats.reject("too_large");
                let msg = format!("line of more than {max} bytes exceeds limits.max_line_bytes");
                push_ready(pending, Reply::error(msg)).await
            }
            LineRead::Line if is_blank(&line) => {
                slot.finish(1);
                Ok(())
            }
            LineRead::Line => {
                let limits = ctx.limits();
                let event_limits = limits.event_limits();
                let decode =
                    |line: &[u8]| decode_json(line, &event_limits, limits.max_batch_events);
                let mut taken = Coalesced::new(decode(&line));
                while taken.has_room() && take_line(reader, &mut line, max).await {
                    slot.begin();
                    if is_blank(&line) {
                        slot.finish(1);
                    } else {
                        taken.push(decode(&line));
                    }
                }
                submit_decoded(taken.into_messages(), &limits, ctx, pending, shutdown).await
            }
        };
        if let Err(stop) = step {
            return stop;
        }
    }
}

/// Blank lines (keep-alives, trailing CR/LF) need no reply.
fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

async fn read_msgpack_frames<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    ctx: &IngestCtx,
    slot: &Slot,
    pending: &mpsc::Sender<Pending>,
    shutdown: &mut watch::Receiver<bool>,
) -> Stop {
    let max = ctx.limits().max_frame_bytes;
    let mut body = Vec::new();
    loop {
        if let Err(stop) = await_message(reader, slot, pending, shutdown).await {
            return stop;
        }
        let within = ctx.limits().partial_input_timeout;
        let reading =
            tokio::time::timeout(within.to_duration(), read_frame(reader, &mut body, max));
        match or_stop(reading, shutdown, pending).await {
            Ok(Ok(Ok(FrameRead::Frame))) => {}
            Ok(Ok(Ok(FrameRead::Eof))) => return Stop::Eof,
            Ok(Ok(Ok(FrameRead::Broken(msg)))) => return framing_error(ctx, pending, msg).await,
            Ok(Ok(Err(e))) => return Stop::Io(e),
            Ok(Err(_)) => return partial_timeout(ctx, pending, "frame", within).await,
            Err(stop) => return stop,
        }
        let limits = ctx.limits();
        let event_limits = limits.event_limits();
        let decode = |body: &[u8]| decode_msgpack(body, &event_limits, limits.max_batch_events);
        let mut taken = Coalesced::new(decode(&body));
        while taken.has_room() && take_frame(reader, &mut body, max).await {
            slot.begin();
            taken.push(decode(&body));
        }
        let step = submit_decoded(taken.into_messages(), &limits, ctx, pending, shutdown).await;
        if body.capacity() > KEEP_BODY_CAPACITY {
            body = Vec::new();
        }
        if let Err(stop) = step {
            return stop;
        }
    }
}

/// Queues the error reply of a broken frame and stops reading: after a bad length there is no
/// telling where the next frame starts.
async fn framing_error(ctx: &IngestCtx, pending: &mpsc::Sender<Pending>, msg: String) -> Stop {
    ctx.stats.update(|c| c.framing_errors += 1);
    ctx.stats.reject("framing");
    match push_ready(pending, Reply::error(msg)).await {
        Ok(()) => Stop::Framing,
        Err(stop) => stop,
    }
}

#[cfg(test)]
mod tests;
