//! One event connection's read loop: picks the framing from the first byte, reads lines or
//! frames, decodes each and hands it on (`submit.rs`), until the client closes, the
//! framing breaks or the daemon stops.
//!
//! The connection is split in two halves that run concurrently: this reader, and the writer of
//! `reply_queue.rs`, which writes one reply per line or frame in input order.
//! The reader pushes each pending reply into a bounded queue without waiting for it, so a client
//! may pipeline thousands of lines while replies still come back in order.

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter,
};
use tokio::sync::{mpsc, watch};

use super::decode::{decode_json, decode_msgpack};
use super::framing::{read_frame, read_line, FrameRead, Framing, LineRead};
use super::linger::linger;
use super::reply::Reply;
use super::reply_queue::{write_replies, Pending};
use super::stop::{or_stop, Stop};
use super::submit::{push_ready, submit_decoded};
use super::IngestCtx;
use crate::shutdown;

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
        () = shutdown::signalled(&mut shutdown) => None,
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
                push_ready(pending, Reply::error(msg)).await
            }
            // Blank lines (keep-alives, trailing CR/LF) need no reply.
            LineRead::Line if line.iter().all(u8::is_ascii_whitespace) => Ok(()),
            LineRead::Line => {
                let limits = ctx.limits();
                let decoded = decode_json(&line, &limits.event_limits(), limits.max_batch_events);
                submit_decoded(decoded, &limits, ctx, pending, shutdown).await
            }
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
        match or_stop(read_frame(reader, &mut body, max), shutdown, pending).await {
            Ok(Ok(FrameRead::Frame)) => {}
            Ok(Ok(FrameRead::Eof)) => return Stop::Eof,
            Ok(Ok(FrameRead::Broken(msg))) => return framing_error(ctx, pending, msg).await,
            Ok(Err(e)) => return Stop::Io(e),
            Err(stop) => return stop,
        }
        let limits = ctx.limits();
        let decoded = decode_msgpack(&body, &limits.event_limits(), limits.max_batch_events);
        let step = submit_decoded(decoded, &limits, ctx, pending, shutdown).await;
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
