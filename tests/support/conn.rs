//! Clients of the event socket: [`JsonConn`] (JSON lines) and [`PackConn`] (`MessagePack` frames)
//! over a `UnixStream` whose reads and writes time out, so a missing reply fails instead of hanging.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::DEADLINE;

/// A raw connection to the event socket at `path` whose reads and writes fail after `timeout`
/// instead of hanging; panics when nothing listens there.
pub fn connect_events(path: &Path, timeout: Duration) -> UnixStream {
    try_connect_events(path, timeout)
        .unwrap_or_else(|e| panic!("connect to the event socket {}: {e}", path.display()))
}

/// [`connect_events`] for a daemon that may be gone (killed on purpose): the error instead of a
/// panic.
pub fn try_connect_events(path: &Path, timeout: Duration) -> std::io::Result<UnixStream> {
    let stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

/// A JSON-lines event connection.
pub struct JsonConn {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl JsonConn {
    pub fn connect(path: &Path) -> JsonConn {
        let writer = connect_events(path, DEADLINE);
        let reader = BufReader::new(writer.try_clone().expect("clone the stream"));
        JsonConn { reader, writer }
    }

    /// Sends one line (the newline is added).
    pub fn send(&mut self, line: &str) {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.writer
            .write_all(&bytes)
            .expect("write to the event socket");
    }

    /// Reads one reply line and parses it; panics on end of stream, timeout or bad JSON.
    pub fn reply(&mut self) -> Value {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .expect("read a reply (within the deadline)");
        assert!(
            n > 0,
            "the daemon closed the connection instead of replying"
        );
        assert!(line.ends_with('\n'), "reply without newline: {line:?}");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply {line:?} is not JSON: {e}"))
    }

    /// Sends one line and reads its reply.
    pub fn request(&mut self, line: &str) -> Value {
        self.send(line);
        self.reply()
    }

    /// The socket, to write partial lines or read past the replies.
    pub fn stream(&mut self) -> &mut UnixStream {
        &mut self.writer
    }
}

/// A MessagePack-framed event connection: 4-byte big-endian length, then a `MessagePack` body.
pub struct PackConn {
    stream: UnixStream,
}

impl PackConn {
    pub fn connect(path: &Path) -> PackConn {
        PackConn {
            stream: connect_events(path, DEADLINE),
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .expect("write to the event socket");
    }

    /// Sends `value` (a map or an array) as one frame.
    pub fn send(&mut self, value: &Value) {
        let body = rmp_serde::to_vec_named(value).expect("encode MessagePack");
        let len = u32::try_from(body.len()).expect("frame length fits u32");
        let mut frame = len.to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        self.send_raw(&frame);
    }

    /// Reads one length-prefixed `MessagePack` reply.
    pub fn reply(&mut self) -> Value {
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .expect("read a reply's length (within the deadline)");
        let len = u32::from_be_bytes(len) as usize;
        assert!(len < 1 << 20, "implausible reply length {len}");
        let mut body = vec![0u8; len];
        self.stream
            .read_exact(&mut body)
            .expect("read a reply's body");
        rmp_serde::from_slice(&body)
            .unwrap_or_else(|e| panic!("reply {body:?} is not MessagePack: {e}"))
    }

    pub fn request(&mut self, value: &Value) -> Value {
        self.send(value);
        self.reply()
    }

    /// Reads until the daemon closes the connection; returns the bytes that came before the close.
    /// Panics if the connection is still open after [`DEADLINE`].
    pub fn read_to_close(&mut self) -> usize {
        let mut rest = Vec::new();
        match self.stream.read_to_end(&mut rest) {
            Ok(_) => rest.len(),
            Err(e) => panic!(
                "the connection was not closed within {DEADLINE:?} ({e}); read {} bytes",
                rest.len()
            ),
        }
    }
}
