//! Reply ordering: the queue of replies owed, one per line or frame in input order, and the
//! writer half that awaits each in turn and writes it.
//!
//! The reader pushes a [`Pending`] reply as soon as it has handed a line or frame on, without
//! waiting for the committer; the writer resolves them strictly in queue order. So a client may
//! pipeline thousands of lines while replies still come back in order, and only once the
//! committer says the events are durable.

use std::io;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::framing::Framing;
use super::reply::{encode_reply, resolve, Reply, Results, Shape};
use super::{IngestStats, ItemResult};
use crate::event::EventError;
use crate::slots::Slot;

/// The replies owed for one line or frame, or for several submitted together, queued in input
/// order.
pub(super) enum Pending {
    /// Known without the committer: nothing of this line or frame was submitted.
    Ready(Reply),
    /// Events of these lines or frames went to the committer in one submission, in order; the
    /// committer answers for them all at once.
    Waiting {
        parts: Vec<Part>,
        results: oneshot::Receiver<Vec<ItemResult>>,
    },
}

/// The reply owed for one line or frame of a submission.
pub(super) enum Part {
    /// Known without the committer (nothing of it was submitted).
    Ready(Reply),
    /// Its valid events went to the committer, after those of the parts before it.
    Submitted {
        shape: Shape,
        /// Items in the line or frame.
        total: usize,
        /// The items that failed validation, by index, in order; the committer answers for the
        /// others, in order.
        invalid: Vec<(usize, EventError)>,
    },
}

impl Part {
    /// The reply, taking this part's results from the submission's (`None`: never answered).
    pub(super) fn resolve(self, results: Option<&mut Results>, stats: &IngestStats) -> Reply {
        match self {
            Part::Ready(reply) => reply,
            Part::Submitted {
                shape,
                total,
                invalid,
            } => resolve(shape, total, invalid, results, stats),
        }
    }
}

/// Awaits each queued reply in input order and writes it; flushes whenever the next reply is not
/// ready yet, so no reply sits in the buffer while the writer waits. Each flush tells `slot` how
/// many replies went out: a connection owing none is idle. The caller closes the write half.
pub(super) async fn write_replies<W: AsyncWrite + Unpin>(
    out: &mut W,
    mut queue: mpsc::Receiver<Pending>,
    framing: Framing,
    stats: &IngestStats,
    slot: &Slot,
) -> io::Result<()> {
    let mut encoded = Vec::new();
    // Replies written to the buffer since the last flush.
    let mut unflushed = 0;
    loop {
        let next = match queue.try_recv() {
            Ok(next) => next,
            Err(mpsc::error::TryRecvError::Empty) => {
                flush(out, slot, &mut unflushed).await?;
                match queue.recv().await {
                    Some(next) => next,
                    None => break,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        match next {
            Pending::Ready(reply) => {
                encode_reply(framing, &reply, &mut encoded);
                out.write_all(&encoded).await?;
                unflushed += 1;
            }
            Pending::Waiting { parts, mut results } => {
                let results = match results.try_recv() {
                    Ok(results) => Some(results),
                    Err(oneshot::error::TryRecvError::Empty) => {
                        flush(out, slot, &mut unflushed).await?;
                        // An error means the committer dropped the reply sender.
                        results.await.ok()
                    }
                    Err(oneshot::error::TryRecvError::Closed) => None,
                };
                let mut results = results.map(Vec::into_iter);
                for part in parts {
                    let reply = part.resolve(results.as_mut(), stats);
                    encode_reply(framing, &reply, &mut encoded);
                    out.write_all(&encoded).await?;
                    unflushed += 1;
                }
            }
        }
    }
    flush(out, slot, &mut unflushed).await
}

/// Flushes the replies written so far and marks them done on the slot: only replies the socket
/// took count as delivered.
async fn flush<W: AsyncWrite + Unpin>(
    out: &mut W,
    slot: &Slot,
    unflushed: &mut usize,
) -> io::Result<()> {
    out.flush().await?;
    slot.finish(std::mem::take(unflushed));
    Ok(())
}
