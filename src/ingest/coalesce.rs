//! Pipelined input taken together: after a line or frame is read, those already whole in the
//! read buffer are read too, and all go to the committer in one submission. A client that
//! pipelines lines then costs one submission, one wait for the committer and one write of
//! replies per buffer, rather than per line (measured: ~80 lines per 16 KiB buffer of JSON
//! events). Only input already there is taken: nothing waits for more.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::AsyncBufRead;

use super::decode::Decoded;

/// Lines or frames taken into one submission at most.
const MAX_MESSAGES: usize = 256;
/// Events taken into one submission at most (a group of the committer holds 8 192).
const MAX_ITEMS: usize = 4_096;

/// The decoded lines or frames of one submission, in input order.
pub(super) struct Coalesced {
    messages: Vec<Result<Decoded, String>>,
    items: usize,
}

impl Coalesced {
    pub(super) fn new(first: Result<Decoded, String>) -> Self {
        let mut c = Coalesced {
            messages: Vec::new(),
            items: 0,
        };
        c.push(first);
        c
    }

    pub(super) fn push(&mut self, decoded: Result<Decoded, String>) {
        self.items += match &decoded {
            Ok(Decoded::One(_)) => 1,
            Ok(Decoded::Batch(items)) => items.len(),
            Ok(Decoded::TooLarge { .. }) | Err(_) => 0,
        };
        self.messages.push(decoded);
    }

    /// Whether another line or frame may join.
    pub(super) fn has_room(&self) -> bool {
        self.messages.len() < MAX_MESSAGES && self.items < MAX_ITEMS
    }

    pub(super) fn into_messages(self) -> Vec<Result<Decoded, String>> {
        self.messages
    }
}

/// Whether `reader` holds a whole line of at most `max` bytes (its newline within the first
/// `max` + 1 bytes), without waiting: `read_line` then reads it without waiting either.
pub(super) async fn line_ready<R: AsyncBufRead + Unpin>(reader: &mut R, max: usize) -> bool {
    buffered(reader, |buf| {
        buf.iter().take(max.saturating_add(1)).any(|&b| b == b'\n')
    })
    .await
}

/// Whether `reader` holds a whole frame (a length of 1 to `max`, and that many bytes), without
/// waiting: `read_frame` then reads it without waiting either.
pub(super) async fn frame_ready<R: AsyncBufRead + Unpin>(reader: &mut R, max: usize) -> bool {
    buffered(reader, |buf| {
        let Some(header) = buf.first_chunk::<4>() else {
            return false;
        };
        let len = usize::try_from(u32::from_be_bytes(*header)).unwrap_or(usize::MAX);
        (1..=max).contains(&len) && buf.len() - 4 >= len
    })
    .await
}

/// `test` of the bytes the reader holds now (or gets without waiting); false when it has none.
async fn buffered<R: AsyncBufRead + Unpin>(reader: &mut R, test: impl Fn(&[u8]) -> bool) -> bool {
    poll_fn(|cx| {
        Poll::Ready(match Pin::new(&mut *reader).poll_fill_buf(cx) {
            Poll::Ready(Ok(buf)) => test(buf),
            // An error is left for the next read to meet; no input yet is not ready.
            Poll::Ready(Err(_)) | Poll::Pending => false,
        })
    })
    .await
}
