//! A real HTTP/1.1 receiver (hyper's server) for the upstream tests and bench: it answers requests
//! in arrival order from a script of answers and faults, then with a standing answer, and records
//! every request (method, target, headers, body) for the test to assert on.
//!
//! The faults are those a sink meets in the field: any status with any headers (a 5xx, a 429 with
//! `Retry-After`, a 3xx with `Location`, a 4xx refusal), a receiver that reads the request and then
//! says nothing ([`Action::Hang`]), and one that resets the connection ([`Action::Reset`]).
//!
//! [`Receiver::start`] serves on the caller's tokio runtime, so under paused time its hangs and the
//! recorded arrival times follow the paused clock; [`Receiver::standalone`] serves on a runtime of
//! its own, for tests and benches without one. The crate's unit tests include this file too
//! (`src/upstream/delivery.rs`), so it names nothing of `crate::`.

// Each user takes a different part of it: the crate's unit tests, integration tests, a bench.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How the receiver answers one request (always after reading all of it).
#[derive(Debug, Clone)]
pub enum Action {
    /// This status, these headers (besides `content-length`, and `content-type: text/plain`
    /// unless given), this body.
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Answer nothing for this long, then close the connection.
    Hang(Duration),
    /// Close the connection at once with a reset (RST), without answering.
    Reset,
}

impl Action {
    pub fn status(status: u16, body: impl Into<String>) -> Action {
        Action::Respond {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a header to a [`Action::Respond`] (no effect on the faults).
    pub fn with_header(mut self, name: &str, value: &str) -> Action {
        if let Action::Respond { headers, .. } = &mut self {
            headers.push((name.to_string(), value.to_string()));
        }
        self
    }

    /// The status it answers with, if it answers.
    pub fn answer(&self) -> Option<u16> {
        match self {
            Action::Respond { status, .. } => Some(*status),
            Action::Hang(_) | Action::Reset => None,
        }
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Names lowercased, in the order received.
    pub headers: Vec<(String, String)>,
    /// Decompressed when `Content-Encoding: gzip` (kept as received if it does not decompress,
    /// so that a test parsing it fails).
    pub body: Vec<u8>,
    /// Body bytes on the wire.
    pub wire_len: usize,
    /// The status it was answered with; `None` for a hang or a reset.
    pub answer: Option<u16>,
    /// When it had arrived whole (tokio's clock: paused time applies under [`Receiver::start`]).
    pub at: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Answered with a 2xx.
    pub fn delivered(&self) -> bool {
        self.answer.is_some_and(|s| (200..300).contains(&s))
    }

    /// The body as a JSON value, read as JSON or as `MessagePack` after its `content-type`.
    pub fn json(&self) -> serde_json::Value {
        match self.header("content-type") {
            Some("application/json") => serde_json::from_slice(&self.body)
                .unwrap_or_else(|e| panic!("a JSON body that does not parse: {e}")),
            Some("application/msgpack") => rmp_serde::from_slice(&self.body)
                .unwrap_or_else(|e| panic!("a MessagePack body that does not decode: {e}")),
            other => panic!("a body of content-type {other:?}, neither JSON nor MessagePack"),
        }
    }
}

struct Script {
    schedule: VecDeque<Action>,
    /// The answer once the schedule is used up.
    then: Action,
    requests: Vec<Request>,
}

/// A listening receiver; dropping it closes the listener and every connection.
pub struct Receiver {
    addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    server: tokio::task::AbortHandle,
    /// The runtime it serves on when [`Receiver::standalone`].
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Receiver {
    /// Serves on the current tokio runtime: `schedule` first, then 200 with an empty body.
    pub async fn start(schedule: Vec<Action>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let (addr, script) = Receiver::prepare(&listener, schedule, Action::status(200, ""));
        let server = tokio::spawn(serve(listener, script.clone())).abort_handle();
        Receiver {
            addr,
            script,
            server,
            runtime: None,
        }
    }

    /// Serves on a runtime of its own (so it must not be called from inside one): `schedule`
    /// first, then `then`.
    pub fn standalone(schedule: Vec<Action>, then: Action) -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("build the receiver's runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind the receiver");
        let (addr, script) = Receiver::prepare(&listener, schedule, then);
        let server = runtime
            .spawn(serve(listener, script.clone()))
            .abort_handle();
        Receiver {
            addr,
            script,
            server,
            runtime: Some(runtime),
        }
    }

    fn prepare(
        listener: &TcpListener,
        schedule: Vec<Action>,
        then: Action,
    ) -> (SocketAddr, Arc<Mutex<Script>>) {
        let addr = listener.local_addr().expect("the receiver's address");
        let script = Script {
            schedule: schedule.into(),
            then,
            requests: Vec::new(),
        };
        (addr, Arc::new(Mutex::new(script)))
    }

    /// `http://127.0.0.1:PORT` followed by `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests_since(0)
    }

    /// The requests from the `first`-th on (none if there are not that many yet).
    pub fn requests_since(&self, first: usize) -> Vec<Request> {
        let script = lock(&self.script);
        script.requests.get(first..).unwrap_or_default().to_vec()
    }

    /// Answers with `then` from now on, once the schedule is used up.
    pub fn set_then(&self, then: Action) {
        lock(&self.script).then = then;
    }
}

/// The script even if a test thread panicked while holding it (it only holds plain data).
fn lock(script: &Mutex<Script>) -> MutexGuard<'_, Script> {
    script
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Accepts connections until aborted; every connection ends with it.
async fn serve(listener: TcpListener, script: Arc<Mutex<Script>>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection(stream, script.clone()));
                }
                Err(e) => panic!("the receiver cannot accept: {e}"),
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// How a fault ends the connection it came on.
#[derive(Default)]
struct Hangup {
    now: Notify,
    /// With a reset rather than a close.
    reset: AtomicBool,
}

impl Hangup {
    fn hang_up(&self, reset: bool) {
        self.reset.store(reset, Ordering::SeqCst);
        self.now.notify_one();
    }
}

async fn connection(stream: TcpStream, script: Arc<Mutex<Script>>) {
    let hangup = Arc::new(Hangup::default());
    let io = TokioIo::new(Socket {
        stream,
        hangup: hangup.clone(),
    });
    let h = hangup.clone();
    let service = service_fn(move |req| answer(req, script.clone(), h.clone()));
    let conn = http1::Builder::new().serve_connection(io, service);
    tokio::select! {
        // Ends when the client closes, or on a request hyper cannot read.
        _ = conn => {}
        // Dropping `conn` drops the socket: closed, or reset (see `Socket`).
        () = hangup.now.notified() => {}
    }
}

/// Reads one request whole, records it, and answers it as the script says.
async fn answer(
    req: hyper::Request<Incoming>,
    script: Arc<Mutex<Script>>,
    hangup: Arc<Hangup>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let method = req.method().to_string();
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().to_string(), ToString::to_string);
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| {
            let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (n.as_str().to_string(), value)
        })
        .collect();
    let raw = req.into_body().collect().await?.to_bytes();
    let gzipped = headers
        .iter()
        .any(|(n, v)| n == "content-encoding" && v.eq_ignore_ascii_case("gzip"));
    let body = if gzipped { gunzip(&raw) } else { None }.unwrap_or_else(|| raw.to_vec());
    let action = {
        let mut script = lock(&script);
        let action = match script.schedule.pop_front() {
            Some(a) => a,
            None => script.then.clone(),
        };
        script.requests.push(Request {
            method,
            target,
            headers,
            body,
            wire_len: raw.len(),
            answer: action.answer(),
            at: Instant::now(),
        });
        action
    };
    match action {
        Action::Respond {
            status,
            headers,
            body,
        } => {
            let mut response = Response::builder().status(status);
            if !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            {
                response = response.header("content-type", "text/plain");
            }
            for (n, v) in headers {
                response = response.header(n, v);
            }
            Ok(response
                .body(Full::new(Bytes::from(body)))
                .expect("a scripted answer hyper can send"))
        }
        Action::Hang(d) => {
            tokio::time::sleep(d).await;
            hangup.hang_up(false);
            std::future::pending().await
        }
        Action::Reset => {
            hangup.hang_up(true);
            std::future::pending().await
        }
    }
}

fn gunzip(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(raw)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

/// A connection's TCP stream as hyper reads and writes it; dropped after [`Action::Reset`], it
/// goes with a reset (`SO_LINGER` 0) instead of an orderly close.
struct Socket {
    stream: TcpStream,
    hangup: Arc<Hangup>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        if self.hangup.reset.load(Ordering::SeqCst) {
            // Best effort: if it fails, the client sees a close instead of a reset.
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
