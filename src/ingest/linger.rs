//! The polite close: read and discard a peer's unread input for a moment, so closing the socket
//! does not reset it before the peer has read our last reply.

use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// How long to keep reading (and discarding) input after replying to a connection that is being
/// closed with input still unread. Closing a TCP socket with unread data resets it, and the reset
/// can destroy the final error reply before the client reads it.
const LINGER: Duration = Duration::from_millis(500);
/// At most this much input is discarded while lingering.
const LINGER_MAX_BYTES: usize = 1 << 20;

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
