//! The wait between two messages of a connection: for the first byte of the next line or frame,
//! or for a newcomer's request that this connection give its slot up, whichever comes first.

use std::io;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::slots::Slot;

/// What the wait between messages found.
#[derive(Debug)]
pub(super) enum Next {
    /// The next message has begun; its first byte (still unread) is this.
    Input(u8),
    /// The client closed its side between messages.
    Eof,
    /// The connection gave its slot up: it is to say why and close.
    Evicted,
}

/// Waits for the next message to begin, or gives the slot up if asked. Input already there wins,
/// so a message that has begun to arrive is never cut off; giving the slot up is decided under
/// the slot table's lock, so once it is decided the connection reads no further message.
pub(super) async fn next_message<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    slot: &Slot,
) -> io::Result<Next> {
    tokio::select! {
        biased;
        filled = reader.fill_buf() => Ok(filled?.first().map_or(Next::Eof, |&b| Next::Input(b))),
        () = slot.evicted() => Ok(Next::Evicted),
    }
}
