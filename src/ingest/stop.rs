//! Why a connection's reader stops taking input, and the wait that gives way to those reasons.

use std::future::Future;
use std::io;
use std::task::Poll;

use tokio::sync::{mpsc, watch};

use super::reply_queue::Pending;
use crate::shutdown;

/// Why the reader stopped taking input.
#[derive(Debug)]
pub(super) enum Stop {
    /// The client closed its side at a message boundary.
    Eof,
    /// The daemon is shutting down.
    Shutdown,
    /// The writer ended (the client stopped reading or went away); nobody could get the replies.
    WriterGone,
    /// The `MessagePack` framing is broken; the stream cannot be resynchronised.
    Framing,
    /// The connection gave its slot up to a newcomer, between messages and owing no reply.
    Evicted,
    /// A line or frame begun did not complete within `limits.partial_input_timeout`.
    PartialTimeout,
    Io(io::Error),
}

/// Runs `fut` unless shutdown is requested or the writer ends first.
///
/// Most calls complete at once (the line is already buffered, room is free, the committer
/// takes the submission), so `fut` is polled once before any waiter is registered: waiting on
/// the stop signal registers with a notifier that every connection shares, and doing that
/// several times per line cost ~15 % of the daemon's CPU with 16 connections of JSON lines
/// (lock contention on it, measured with `perf`). The stop and the writer's end are still
/// checked first, as the waiting path checks them first.
pub(super) async fn or_stop<F: Future>(
    fut: F,
    shutdown: &mut watch::Receiver<bool>,
    pending: &mpsc::Sender<Pending>,
) -> Result<F::Output, Stop> {
    if shutdown::is_signalled(shutdown) {
        return Err(Stop::Shutdown);
    }
    if pending.is_closed() {
        return Err(Stop::WriterGone);
    }
    let mut fut = std::pin::pin!(fut);
    if let Poll::Ready(out) = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
        return Ok(out);
    }
    tokio::select! {
        biased;
        () = shutdown::signalled(shutdown) => Err(Stop::Shutdown),
        () = pending.closed() => Err(Stop::WriterGone),
        out = &mut fut => Ok(out),
    }
}
