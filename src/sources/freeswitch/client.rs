//! The inbound event-socket client: connects to FreeSWITCH's `mod_event_socket`, answers its
//! `auth/request` with the password, subscribes to `CUSTOM callcenter::info` in plain format,
//! then hands out the events as they come, URL-decoded. A quiet connection is probed with
//! `api version` so a peer that vanished without closing is noticed.

use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::wire::{plain_event, Frame, FrameBuffer, WireError};

/// Longest wait for a connection, and for each answer of the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection quiet this long is probed with `api version`.
pub const PROBE_AFTER: Duration = Duration::from_secs(30);
/// The probe's answer must come within this.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// Bytes asked of the socket by one read.
const READ_CHUNK: usize = 16 << 10;

/// The subscription command: plain format, `mod_callcenter`'s events only.
pub const SUBSCRIBE: &str = "event plain CUSTOM callcenter::info";

/// Why a connection could not be made or ended; the daemon says it in `status` and reconnects.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("no answer from {address} within {}s ({step})", HANDSHAKE_TIMEOUT.as_secs())]
    HandshakeTimeout { address: String, step: &'static str },
    #[error("FreeSWITCH refused the password (auth: {reply}); password_file must hold the password of event_socket.conf.xml")]
    AuthRejected { reply: String },
    #[error("FreeSWITCH refused `{command}`: {reply}")]
    Refused {
        command: &'static str,
        reply: String,
    },
    #[error("FreeSWITCH turned this connection away ({0}); its event_socket.conf.xml apply-inbound-acl must allow this host")]
    RudeRejection(String),
    #[error("expected {expected} from FreeSWITCH, got a frame of Content-Type `{got}`")]
    Unexpected { expected: &'static str, got: String },
    #[error("the event socket connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("FreeSWITCH closed the connection")]
    Closed,
    #[error("FreeSWITCH sent a disconnect notice: {0}")]
    Disconnected(String),
    #[error("no answer from FreeSWITCH to a probe within {}s of {}s of silence", PROBE_TIMEOUT.as_secs(), PROBE_AFTER.as_secs())]
    Silent,
    #[error("unreadable data on the event socket: {0}")]
    Wire(#[from] WireError),
}

/// One authenticated, subscribed connection.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    buf: FrameBuffer,
    /// Why the connection ended, once a disconnect notice was read after events still to be
    /// handed out.
    ended: Option<String>,
    /// What one read fills, on the heap (the futures stay small).
    scratch: Vec<u8>,
    /// When bytes last came.
    last_rx: Instant,
    /// When the probe was sent, until anything comes.
    probe_sent: Option<Instant>,
}

/// What one read handed out.
#[derive(Debug, Default)]
pub struct Batch {
    /// Events, each as its headers.
    pub events: Vec<Vec<(String, String)>>,
    /// `text/event-plain` frames whose body could not be read (counted, not fatal).
    pub unreadable: u64,
}

impl Client {
    /// Connects, authenticates and subscribes.
    pub async fn connect(address: &str, password: &str) -> Result<Client, ClientError> {
        let stream =
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(address)).await {
                Ok(Ok(s)) => s,
                Ok(Err(source)) => {
                    return Err(ClientError::Connect {
                        address: address.to_string(),
                        source,
                    })
                }
                Err(_) => {
                    return Err(ClientError::HandshakeTimeout {
                        address: address.to_string(),
                        step: "connecting",
                    })
                }
            };
        stream.set_nodelay(true)?;
        let mut c = Client {
            stream,
            buf: FrameBuffer::default(),
            ended: None,
            scratch: vec![0; READ_CHUNK],
            last_rx: Instant::now(),
            probe_sent: None,
        };
        let timeout = |step| ClientError::HandshakeTimeout {
            address: address.to_string(),
            step,
        };
        let hello = c
            .frame_within(HANDSHAKE_TIMEOUT)
            .await?
            .ok_or_else(|| timeout("auth/request"))?;
        if hello.content_type() == "text/rude-rejection" {
            let why = String::from_utf8_lossy(&hello.body);
            return Err(ClientError::RudeRejection(
                why.lines().next().unwrap_or("").trim().to_string(),
            ));
        }
        if hello.content_type() != "auth/request" {
            return Err(ClientError::Unexpected {
                expected: "auth/request",
                got: hello.content_type().to_string(),
            });
        }
        // The password ends at the line's end: a newline in it would start another command.
        let password = password.lines().next().unwrap_or("");
        c.send(&format!("auth {password}")).await?;
        let reply = c.reply(|| timeout("auth")).await?;
        if !reply.starts_with("+OK") {
            return Err(ClientError::AuthRejected { reply });
        }
        c.send(SUBSCRIBE).await?;
        let reply = c.reply(|| timeout("event")).await?;
        if !reply.starts_with("+OK") {
            return Err(ClientError::Refused {
                command: SUBSCRIBE,
                reply,
            });
        }
        Ok(c)
    }

    /// Waits for the next events and returns them with whatever else is already buffered, at
    /// most `max`; an empty batch once `until` has come. Cancel-safe: bytes read stay buffered.
    pub async fn next_events(
        &mut self,
        max: usize,
        until: Option<Instant>,
    ) -> Result<Batch, ClientError> {
        let mut batch = Batch::default();
        loop {
            while batch.events.len() < max {
                let Some(frame) = self.buf.next_frame()? else {
                    break;
                };
                self.take(frame, &mut batch);
                if self.ended.is_some() {
                    break;
                }
            }
            if !batch.events.is_empty() || batch.unreadable > 0 {
                return Ok(batch);
            }
            if let Some(why) = self.ended.take() {
                return Err(ClientError::Disconnected(why));
            }
            let probe_due = match self.probe_sent {
                Some(sent) => sent + PROBE_TIMEOUT,
                None => self.last_rx + PROBE_AFTER,
            };
            let deadline = until.map_or(probe_due, |u| u.min(probe_due));
            if self.fill_until(deadline).await? {
                continue;
            }
            if until.is_some_and(|u| Instant::now() >= u) {
                return Ok(batch);
            }
            if self.probe_sent.is_some() {
                return Err(ClientError::Silent);
            }
            self.probe_sent = Some(Instant::now());
            self.send("api version").await?;
        }
    }

    /// Sorts one frame: events into the batch, a disconnect notice remembered, replies dropped.
    fn take(&mut self, frame: Frame, batch: &mut Batch) {
        self.probe_sent = None;
        match frame.content_type() {
            "text/event-plain" => match plain_event(&frame.body) {
                Ok(h) => batch.events.push(h),
                Err(_) => batch.unreadable += 1,
            },
            "text/disconnect-notice" => {
                let text = String::from_utf8_lossy(&frame.body);
                let text = text.lines().next().unwrap_or("").trim();
                self.ended = Some(if text.is_empty() {
                    "Disconnected".to_string()
                } else {
                    text.to_string()
                });
            }
            // The probe's answer (api/response), command replies, logs: nothing to hand out.
            _ => {}
        }
    }

    /// Reads once into the buffer, waiting until `deadline`; `false` if nothing came by then.
    async fn fill_until(&mut self, deadline: Instant) -> Result<bool, ClientError> {
        match tokio::time::timeout_at(deadline, self.stream.read(&mut self.scratch)).await {
            Err(_) => Ok(false),
            Ok(Ok(0)) => Err(ClientError::Closed),
            Ok(Ok(n)) => {
                self.buf.extend(&self.scratch[..n]);
                self.last_rx = Instant::now();
                Ok(true)
            }
            Ok(Err(e)) => Err(e.into()),
        }
    }

    /// The next frame, if one completes within `wait`.
    async fn frame_within(&mut self, wait: Duration) -> Result<Option<Frame>, ClientError> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(f) = self.buf.next_frame()? {
                return Ok(Some(f));
            }
            if !self.fill_until(deadline).await? {
                return Ok(None);
            }
        }
    }

    /// The `Reply-Text` of the next `command/reply` (a disconnect notice instead is an error).
    async fn reply(&mut self, timeout: impl Fn() -> ClientError) -> Result<String, ClientError> {
        loop {
            let f = self
                .frame_within(HANDSHAKE_TIMEOUT)
                .await?
                .ok_or_else(&timeout)?;
            match f.content_type() {
                "command/reply" => return Ok(f.header("Reply-Text").unwrap_or("").to_string()),
                "text/disconnect-notice" => {
                    return Err(ClientError::Disconnected(
                        String::from_utf8_lossy(&f.body).trim().to_string(),
                    ))
                }
                _ => {}
            }
        }
    }

    async fn send(&mut self, command: &str) -> Result<(), ClientError> {
        self.stream
            .write_all(format!("{command}\n\n").as_bytes())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that writes `bytes` to the first connection, reads what comes, and closes.
    async fn server(bytes: &'static [u8]) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.write_all(bytes).await.unwrap();
            let mut sink = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_millis(200), s.read_to_end(&mut sink)).await;
        });
        addr
    }

    #[tokio::test]
    async fn an_acl_rejection_and_a_refused_subscription_are_said_as_such() {
        let addr = server(
            b"Content-Type: text/rude-rejection\nContent-Length: 24\n\nAccess Denied, go away.\n",
        )
        .await;
        let e = Client::connect(&addr, "pw").await.unwrap_err().to_string();
        assert!(
            e.contains("turned this connection away (Access Denied, go away.)"),
            "{e}"
        );
        let addr = server(
            b"Content-Type: auth/request\n\nContent-Type: command/reply\nReply-Text: +OK accepted\n\nContent-Type: command/reply\nReply-Text: -ERR permission denied\n\n",
        )
        .await;
        let e = Client::connect(&addr, "pw").await.unwrap_err().to_string();
        assert_eq!(
            e,
            "FreeSWITCH refused `event plain CUSTOM callcenter::info`: -ERR permission denied"
        );
        let e = Client::connect("127.0.0.1:1", "pw")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cannot connect to 127.0.0.1:1"), "{e}");
    }
}
