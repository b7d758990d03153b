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

/// Takes the next line into `line` (without its newline, as `read_line` reads it) if it is whole
/// in `reader`'s buffer and at most `max` bytes; false, taking nothing, otherwise.
pub(super) async fn take_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> bool {
    take(reader, |buf| {
        let end = buf
            .iter()
            .take(max.saturating_add(1))
            .position(|&b| b == b'\n')?;
        line.clear();
        line.extend_from_slice(&buf[..end]);
        Some(end + 1)
    })
    .await
}

/// Takes the next frame's body into `body` (as `read_frame` reads it) if the frame is whole in
/// `reader`'s buffer with a length of 1 to `max`; false, taking nothing, otherwise.
pub(super) async fn take_frame<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    body: &mut Vec<u8>,
    max: usize,
) -> bool {
    take(reader, |buf| {
        let header = buf.first_chunk::<4>()?;
        let len = usize::try_from(u32::from_be_bytes(*header)).unwrap_or(usize::MAX);
        let frame = buf.get(4..4usize.checked_add(len)?)?;
        if !(1..=max).contains(&len) {
            return None;
        }
        body.clear();
        body.extend_from_slice(frame);
        Some(4 + len)
    })
    .await
}

/// Hands `copy` the bytes the reader holds now (or gets without waiting) and consumes as many
/// as it says it took; false when it took nothing (or the reader holds nothing).
async fn take<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    mut copy: impl FnMut(&[u8]) -> Option<usize>,
) -> bool {
    poll_fn(|cx| {
        let used = match Pin::new(&mut *reader).poll_fill_buf(cx) {
            Poll::Ready(Ok(buf)) => copy(buf),
            // An error is left for the next read to meet; no input yet is not ready.
            Poll::Ready(Err(_)) | Poll::Pending => None,
        };
        if let Some(n) = used {
            Pin::new(&mut *reader).consume(n);
        }
        Poll::Ready(used.is_some())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_whole_lines_within_the_limit_are_taken() {
        let mut input: &[u8] = b"abc\r\nlonger than six\nrest";
        let mut line = Vec::new();
        assert!(take_line(&mut input, &mut line, 6).await);
        assert_eq!(line, b"abc\r");
        // Too long for the limit: left for `read_line` to refuse.
        assert!(!take_line(&mut input, &mut line, 6).await);
        assert_eq!(input, b"longer than six\nrest");
        let mut partial: &[u8] = b"rest";
        assert!(!take_line(&mut partial, &mut line, 64).await);
        assert_eq!(partial, b"rest");
    }

    #[tokio::test]
    async fn only_whole_frames_within_the_limit_are_taken() {
        let mut body = Vec::new();
        let mut input: &[u8] = &[0, 0, 0, 2, 7, 8, 0, 0, 0, 3, 9];
        assert!(take_frame(&mut input, &mut body, 16).await);
        assert_eq!(body, [7, 8]);
        // The next frame is cut short: nothing is taken.
        assert!(!take_frame(&mut input, &mut body, 16).await);
        assert_eq!(input, [0, 0, 0, 3, 9]);
        for bad in [&[0u8, 0, 0, 0][..], &[0, 0, 0, 17, 1, 2]] {
            let mut input = bad;
            assert!(!take_frame(&mut input, &mut body, 16).await);
            assert_eq!(input, bad, "a frame `read_frame` refuses is left to it");
        }
    }
}
