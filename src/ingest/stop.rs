//! Why a connection's reader stops taking input, and the wait that gives way to those reasons.

use std::future::Future;
use std::io;

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
pub(super) async fn or_stop<F: Future>(
    fut: F,
    shutdown: &mut watch::Receiver<bool>,
    pending: &mpsc::Sender<Pending>,
) -> Result<F::Output, Stop> {
    tokio::select! {
        biased;
        () = shutdown::signalled(shutdown) => Err(Stop::Shutdown),
        () = pending.closed() => Err(Stop::WriterGone),
        out = fut => Ok(out),
    }
}
