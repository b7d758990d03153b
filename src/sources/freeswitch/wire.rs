//! The FreeSWITCH event-socket wire format (`mod_event_socket.c`), pure: frames of
//! `Name: value` header lines ended by an empty line, followed by a body of `Content-Length`
//! bytes when that header is present; and the `text/event-plain` body, the event's own headers
//! with URL-encoded values (`switch_event_serialize`).

use std::fmt::Write as _;

use thiserror::Error;

/// Largest header block of one frame; FreeSWITCH's own are a few hundred bytes.
pub const MAX_HEAD_BYTES: usize = 64 << 10;
/// Largest body of one frame: a `callcenter::info` event is 2–8 KiB, with every channel
/// variable (`verbose_events`) a few tens.
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// Why the byte stream cannot be read as frames: the connection is dropped and made again.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    #[error("a frame's headers exceed {MAX_HEAD_BYTES} bytes without an empty line")]
    HeadTooLong,
    #[error("Content-Length `{0}` is not a number of bytes up to {MAX_BODY_BYTES}")]
    BadLength(String),
    #[error("a frame header line has no `:`: {0:?}")]
    BadHeader(String),
}

/// One frame: its headers (`Content-Type`, `Reply-Text`, …) and body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frame {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Frame {
    /// The first header named `name` (names compared without case, as FreeSWITCH does).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    #[must_use]
    pub fn content_type(&self) -> &str {
        self.header("Content-Type").unwrap_or("")
    }
}

/// The first of `headers` named `name`, compared without case.
#[must_use]
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Bytes read from the socket, cut into frames as they complete.
#[derive(Debug, Default)]
pub struct FrameBuffer {
    buf: Vec<u8>,
    /// Bytes at the front already handed out as frames.
    consumed: usize,
}

impl FrameBuffer {
    /// Appends bytes read from the socket.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.consumed > 0 && self.consumed * 2 >= self.buf.len() {
            self.buf.drain(..self.consumed);
            self.consumed = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received and not yet part of a complete frame.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.buf.len() - self.consumed
    }

    /// The next complete frame, if the buffer holds one.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, WireError> {
        let rest = &self.buf[self.consumed..];
        // FreeSWITCH skips blank lines before a frame; so does this reader.
        let skip = rest
            .iter()
            .take_while(|&&b| b == b'\n' || b == b'\r')
            .count();
        let rest = &rest[skip..];
        let Some((head_len, sep)) = head_end(rest) else {
            if rest.len() > MAX_HEAD_BYTES {
                return Err(WireError::HeadTooLong);
            }
            return Ok(None);
        };
        if head_len > MAX_HEAD_BYTES {
            return Err(WireError::HeadTooLong);
        }
        let headers = parse_head(&rest[..head_len], false)?;
        let body_len = match header(&headers, "Content-Length") {
            None => 0,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if n <= MAX_BODY_BYTES => n,
                _ => return Err(WireError::BadLength(v.to_string())),
            },
        };
        let start = head_len + sep;
        if rest.len() < start + body_len {
            return Ok(None);
        }
        let body = rest[start..start + body_len].to_vec();
        self.consumed += skip + start + body_len;
        Ok(Some(Frame { headers, body }))
    }
}

/// Where a header block ends: its length and the length of the empty line after it.
fn head_end(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while let Some(nl) = bytes[i..].iter().position(|&b| b == b'\n') {
        let at = i + nl;
        let next = &bytes[at + 1..];
        if next.first() == Some(&b'\n') {
            return Some((at + 1, 1));
        }
        if next.starts_with(b"\r\n") {
            return Some((at + 1, 2));
        }
        i = at + 1;
    }
    None
}

/// `Name: value` lines; values URL-decoded when `decode`.
fn parse_head(bytes: &[u8], decode: bool) -> Result<Vec<(String, String)>, WireError> {
    let mut out = Vec::new();
    for line in bytes.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let text = String::from_utf8_lossy(line);
        let Some((name, value)) = text.split_once(':') else {
            return Err(WireError::BadHeader(text.chars().take(80).collect()));
        };
        let value = value.strip_prefix(' ').unwrap_or(value);
        let value = if decode {
            url_decode(value)
        } else {
            value.to_string()
        };
        out.push((name.trim().to_string(), value));
    }
    Ok(out)
}

/// The headers of a `text/event-plain` body, values URL-decoded. An event's own body (after
/// its empty line) is not read: `callcenter::info` events have none.
pub fn plain_event(body: &[u8]) -> Result<Vec<(String, String)>, WireError> {
    let head = match head_end(body) {
        Some((len, _)) => &body[..len],
        None => body,
    };
    parse_head(head, true)
}

/// `%XX` sequences to their bytes, as `switch_url_decode` does (`+` stays `+`: the encoder
/// writes a plus as `%2B`); bytes that are not UTF-8 become U+FFFD.
#[must_use]
pub fn url_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A header value URL-encoded as `switch_url_encode` does (for tests and fixtures that write
/// the wire form).
#[must_use]
pub fn url_encode(s: &str) -> String {
    const UNSAFE: &[u8] = b"\r\n \"#%&+:;<=>?@[\\]^`{|}";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if !(b' '..=b'~').contains(&b) || UNSAFE.contains(&b) {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        } else {
            out.push(char::from(b));
        }
    }
    out
}
