//! Framing: which of the two a connection uses, and reading one JSON line or one `MessagePack`
//! frame at a time within the size limits.

use std::io;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// How a connection frames its messages, chosen by its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Newline-delimited JSON; the first byte was `{`, `[` or ASCII whitespace.
    JsonLines,
    /// A 4-byte big-endian length followed by a `MessagePack` body; any other first byte.
    MsgPack,
}

impl Framing {
    #[must_use]
    pub fn from_first_byte(b: u8) -> Framing {
        if b == b'{' || b == b'[' || b.is_ascii_whitespace() {
            Framing::JsonLines
        } else {
            Framing::MsgPack
        }
    }
}

/// What `read_line` found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum LineRead {
    /// A line is in the buffer (without its newline).
    Line,
    /// The line was longer than the limit; it has been read past and discarded.
    TooLong,
    /// The client closed its side; no more lines.
    Eof,
}

/// Reads one line into `line`, holding at most `max` bytes of it: a longer line is consumed in
/// buffer-sized chunks and discarded, so an endless line cannot exhaust memory.
pub(super) async fn read_line<R: AsyncBufRead + Unpin>(
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

/// What `read_frame` found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum FrameRead {
    /// A frame's body is in the buffer.
    Frame,
    /// The client closed its side between frames; no more frames.
    Eof,
    /// The framing is broken (the message says how): there is no telling where the next frame
    /// would start.
    Broken(String),
}

/// Reads one frame's body into `body`: a 4-byte big-endian length of 1 to `max`, then that many
/// bytes.
pub(super) async fn read_frame<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    body: &mut Vec<u8>,
    max: usize,
) -> io::Result<FrameRead> {
    // The end of input is clean only between frames.
    if reader.fill_buf().await?.is_empty() {
        return Ok(FrameRead::Eof);
    }
    let mut header = [0u8; 4];
    match reader.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Ok(FrameRead::Broken(
                "connection closed in the middle of a frame's 4-byte length".into(),
            ));
        }
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(header);
    // On a 16-bit target a length beyond usize is over any limit anyway.
    let len_usize = usize::try_from(len).unwrap_or(usize::MAX);
    if len == 0 {
        return Ok(FrameRead::Broken(format!(
            "frame of 0 bytes: a frame is a 4-byte big-endian length of 1 to {max} bytes \
             (limits.max_frame_bytes) followed by that many bytes of MessagePack"
        )));
    }
    if len_usize > max {
        return Ok(FrameRead::Broken(format!(
            "frame of {len} bytes exceeds limits.max_frame_bytes ({max})"
        )));
    }
    // `take` + `read_to_end` grows the buffer as bytes arrive, so a client that announces a
    // large frame and sends nothing does not make us allocate it.
    body.clear();
    let n = (&mut *reader)
        .take(u64::from(len))
        .read_to_end(body)
        .await?;
    if n != len_usize {
        return Ok(FrameRead::Broken(format!(
            "connection closed after {n} of the {len} bytes of a frame"
        )));
    }
    Ok(FrameRead::Frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

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
    async fn read_frame_takes_one_frame_at_a_time() {
        let mut input: &[u8] = &[0, 0, 0, 2, 0x90, 0x90, 0, 0, 0, 1, 0xc0, 0, 0, 0, 3, 1];
        let mut reader = BufReader::with_capacity(4, &mut input);
        let mut body = Vec::new();
        assert_eq!(
            read_frame(&mut reader, &mut body, 8).await.unwrap(),
            FrameRead::Frame
        );
        assert_eq!(body, [0x90, 0x90]);
        assert_eq!(
            read_frame(&mut reader, &mut body, 8).await.unwrap(),
            FrameRead::Frame
        );
        assert_eq!(body, [0xc0]);
        assert_eq!(
            read_frame(&mut reader, &mut body, 8).await.unwrap(),
            FrameRead::Broken("connection closed after 1 of the 3 bytes of a frame".into())
        );
        assert_eq!(
            read_frame(&mut reader, &mut body, 8).await.unwrap(),
            FrameRead::Eof
        );
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
}
