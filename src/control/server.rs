//! The daemon side of the control sockets: accepts connections and answers each request with the
//! handler. When every slot is taken, the connection idle longest makes room (see
//! `crate::slots`), so idle clients cannot lock the CLI out.
//!
//! The daemon serves two sockets with one handler: the control socket ([`Access::ReadOnly`])
//! refuses mutating requests, naming the admin socket; the admin socket ([`Access::Admin`]),
//! whose file mode admits fewer users, serves everything. Each socket has its own slots, so
//! clients of one cannot crowd the other out.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::protocol::{
    read_message_within, write_message, ProtocolError, Request, Response, MAX_REQUEST_BYTES,
};
use crate::ingest::linger::linger;
use crate::log_throttle::{left_out_note, Throttle, WARN_INTERVAL};
use crate::shutdown;
use crate::slots::{Slot, Slots, MIN_IDLE};

/// Answers one request. It runs on the connection's task, so it must be quick and not block.
pub type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// Connections served at once; a message may be up to 16 MiB, so this bounds the memory a
/// misbehaving local client can make the daemon hold.
const MAX_CONNECTIONS: usize = 32;

/// A client that stops reading its answer must not hold a connection (and shutdown) forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// A request begun must arrive whole within this, or a client that sends half a request would
/// keep its connection busy, and so out of reach of the idle-longest rule, for ever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new connection waits for an idle one to make room.
const ROOM_WAIT: Duration = Duration::from_secs(1);
/// How long a last error answer (refusal, eviction, bad request) may take to write.
const SAY_TIMEOUT: Duration = Duration::from_secs(1);

/// What a control socket serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Every request: the admin socket.
    Admin,
    /// Read-only requests; a mutating one is refused with [`Refusal::AdminOnly`], naming the
    /// admin socket.
    ReadOnly { admin_socket: PathBuf },
}

/// Why a socket refused a request before the handler saw it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{request} is an admin request, refused on this read-only control socket: send it on {} (callmetrics {request} --admin-socket {}; the socket admits root and the daemon's user)", admin_socket.display(), admin_socket.display())]
    AdminOnly {
        request: &'static str,
        admin_socket: PathBuf,
    },
}

impl Access {
    /// Whether this socket serves `req`.
    pub fn admit(&self, req: &Request) -> Result<(), Refusal> {
        match self {
            Access::ReadOnly { admin_socket } if req.is_mutating() => Err(Refusal::AdminOnly {
                request: req.name(),
                admin_socket: admin_socket.clone(),
            }),
            _ => Ok(()),
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Access::Admin => "admin",
            Access::ReadOnly { .. } => "control",
        }
    }
}

/// The reply to a connection refused because no open one could make room.
pub(crate) fn refusal() -> String {
    format!(
        "the daemon refused the connection: too many open control connections (all {MAX_CONNECTIONS} are busy or active within {}s); try again",
        MIN_IDLE.as_secs()
    )
}

/// Serves the control socket until `shutdown` turns true (or its sender is dropped, which can only
/// mean the owner is gone). Then it stops accepting, lets requests being answered finish, drops
/// idle connections, and returns once every connection task has ended.
pub async fn serve(
    listener: UnixListener,
    handler: Handler,
    access: Access,
    mut shutdown: watch::Receiver<bool>,
) {
    let access = Arc::new(access);
    let slots = Slots::new(MAX_CONNECTIONS, MIN_IDLE);
    let mut conns = JoinSet::new();
    let refusals = Arc::new(Mutex::new(Throttle::new(WARN_INTERVAL)));
    let mut failures = Throttle::new(WARN_INTERVAL);
    loop {
        tokio::select! {
            () = shutdown::signalled(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let slots = Arc::clone(&slots);
                    let handler = handler.clone();
                    let access = Arc::clone(&access);
                    let shutdown = shutdown.clone();
                    let refusals = Arc::clone(&refusals);
                    // Taking a slot may wait for an idle connection to leave: not in this loop.
                    conns.spawn(async move {
                        match slots.take(ROOM_WAIT).await {
                            Some(slot) => connection(stream, &slot, &handler, &access, shutdown).await,
                            None => refuse(stream, &refusals).await,
                        }
                    });
                }
                Err(e) => {
                    // Typically out of file descriptors; pausing keeps this loop from spinning.
                    if let Some(n) = failures.admit(Instant::now()) {
                        warn!(error = %e, "control socket accept failed{}", left_out_note(n));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(done) = conns.join_next(), if !conns.is_empty() => log_end(done),
        }
    }
    drop(listener);
    while let Some(done) = conns.join_next().await {
        log_end(done);
    }
}

fn log_end(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        warn!(error = %e, "control connection task failed");
    }
}

async fn refuse(stream: UnixStream, refusals: &Mutex<Throttle>) {
    let logged = refusals
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .admit(Instant::now());
    if let Some(n) = logged {
        warn!(
            limit = MAX_CONNECTIONS,
            "control connection refused: too many open, none idle{}",
            left_out_note(n)
        );
    }
    say_and_close(stream, refusal()).await;
}

/// Writes a last error answer, then closes politely (the event socket's close: see
/// `crate::ingest::linger`), so a request the client sent meanwhile does not reset the connection
/// before the client reads the answer.
async fn say_and_close(stream: UnixStream, why: String) {
    let mut stream = BufReader::new(stream);
    let msg = Response::Error(why);
    let sent = tokio::time::timeout(SAY_TIMEOUT, write_message(&mut stream, &msg)).await;
    if matches!(sent, Ok(Ok(()))) {
        let _ = stream.shutdown().await;
        linger(&mut stream).await;
    }
}

/// What the wait between two requests found.
enum Next {
    Request,
    Closed,
    Evicted,
}

/// Answers requests in order until the client closes, a protocol error, shutdown while idle, or
/// the connection gives its slot up to a newcomer while idle.
async fn connection(
    stream: UnixStream,
    slot: &Slot,
    handler: &Handler,
    access: &Access,
    mut shutdown: watch::Receiver<bool>,
) {
    // Buffered so the wait between requests can see a request begin without consuming it.
    let mut stream = BufReader::new(stream);
    loop {
        // Shutdown and eviction only interrupt the wait for a request, never an answer being
        // written; input already there wins over eviction.
        let next = tokio::select! {
            biased;
            () = shutdown::signalled(&mut shutdown) => return,
            filled = stream.fill_buf() => match filled {
                Ok(buf) if !buf.is_empty() => Next::Request,
                _ => Next::Closed,
            },
            () = slot.evicted() => Next::Evicted,
        };
        match next {
            Next::Request => slot.begin(),
            Next::Closed => return,
            Next::Evicted => {
                let why = format!(
                    "closed to make room: all {MAX_CONNECTIONS} control connections were taken and this one had been idle longest"
                );
                say_and_close(stream.into_inner(), why).await;
                return;
            }
        }
        let req = tokio::time::timeout(
            REQUEST_TIMEOUT,
            read_message_within::<_, Request>(&mut stream, MAX_REQUEST_BYTES),
        )
        .await;
        let resp = match req {
            Ok(Ok(req)) => match access.admit(&req) {
                Ok(()) => handler(req),
                Err(refusal) => {
                    // Not a warning: any client may send these, and the log must not be theirs to fill.
                    debug!(
                        "{} refused on the {} socket: {refusal}",
                        req.name(),
                        access.label()
                    );
                    Response::Error(refusal.to_string())
                }
            },
            Ok(Err(ProtocolError::Closed)) => return,
            Ok(Err(ProtocolError::Io(e))) => {
                debug!(error = %e, "control connection broken");
                return;
            }
            Ok(Err(e)) => {
                // The stream may be mid-message, so after telling the client why, close it.
                debug!(error = %e, "bad control message");
                say_and_close(stream.into_inner(), e.to_string()).await;
                return;
            }
            Err(_) => {
                debug!("control request not completed in time");
                let why = format!(
                    "request not completed within {}s of its first byte",
                    REQUEST_TIMEOUT.as_secs()
                );
                say_and_close(stream.into_inner(), why).await;
                return;
            }
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write_message(&mut stream, &resp)).await {
            Ok(Ok(())) => slot.finish(1),
            Ok(Err(e)) => {
                debug!(error = %e, "control answer not delivered");
                return;
            }
            Err(_) => {
                debug!("control client stopped reading its answer");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::config::LimitsConfig;
    use crate::control::client::request;
    use crate::control::protocol::read_message;
    use crate::control::protocol::{StatusReport, StoreStatus, PROTOCOL_VERSION};
    use crate::engine::{DimKind, EngineStats, MetricsQuery, MetricsRow};
    use crate::ingest::IngestCounters;

    fn status() -> StatusReport {
        StatusReport {
            version: "9.9.9".into(),
            uptime_ms: 1234,
            event_socket: "/tmp/e.sock".into(),
            control_socket: "/tmp/c.sock".into(),
            admin_socket: "/tmp/a.sock".into(),
            time_zone: "UTC".into(),
            windows: vec!["5m".into()],
            ingest: IngestCounters::default(),
            engine: EngineStats::default(),
            store: StoreStatus {
                path: "/tmp/store".into(),
                size_bytes: 1,
                max_bytes: 2,
                logged_groups: 3,
                last_checkpoint_age_ms: None,
            },
            limits: LimitsConfig::default(),
            upstream: Default::default(),
            sources: Vec::new(),
            history: Default::default(),
        }
    }

    fn row(key: &str, by: DimKind) -> MetricsRow {
        let counts = crate::engine::Agg {
            offered: 3,
            ..Default::default()
        };
        MetricsRow {
            window: "15m".into(),
            dimension: by,
            key: key.into(),
            figures: crate::engine::Figures::of(&counts, crate::config::Formula::Offered),
            counts,
            params: crate::engine::RowParams {
                threshold_ms: 20_000,
                short_abandon_ms: 5_000,
                formula: crate::config::Formula::Offered,
                target: 0.8,
            },
            realtime: Default::default(),
        }
    }

    /// A server whose handler answers Status and Metrics from fixed data.
    fn start(sock: &Path) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let handler: Handler = Arc::new(|req| match req {
            Request::Status => Response::Status(Box::new(status())),
            Request::Metrics(q) => {
                Response::Metrics(vec![row(q.key.as_deref().unwrap_or("all"), q.by)])
            }
            _ => Response::Error("not here".into()),
        });
        let (tx, rx) = watch::channel(false);
        let listener = UnixListener::bind(sock).unwrap();
        (
            tx,
            tokio::spawn(serve(listener, handler, Access::Admin, rx)),
        )
    }

    /// The daemon's pair: a read-only socket and an admin socket on one handler, which counts
    /// the mutating requests it runs.
    #[tokio::test]
    async fn the_read_only_socket_refuses_mutating_requests_naming_the_admin_socket() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let control = dir.path().join("control.sock");
        let admin = dir.path().join("admin.sock");
        let ran = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&ran);
        let handler: Handler = Arc::new(move |req| match req {
            Request::Status => Response::Status(Box::new(status())),
            Request::Flush | Request::Reload => {
                counted.fetch_add(1, Ordering::SeqCst);
                Response::Done("done".into())
            }
            _ => Response::Error("not here".into()),
        });
        let (stop, rx) = watch::channel(false);
        let servers = [
            tokio::spawn(serve(
                UnixListener::bind(&control).unwrap(),
                handler.clone(),
                Access::ReadOnly {
                    admin_socket: admin.clone(),
                },
                rx.clone(),
            )),
            tokio::spawn(serve(
                UnixListener::bind(&admin).unwrap(),
                handler,
                Access::Admin,
                rx,
            )),
        ];
        for req in [Request::Flush, Request::Reload] {
            let expected = Refusal::AdminOnly {
                request: req.name(),
                admin_socket: admin.clone(),
            }
            .to_string();
            assert_eq!(
                request(&control, &req).await.unwrap(),
                Response::Error(expected.clone())
            );
            assert!(
                expected.starts_with(&format!("{} is an admin request", req.name()))
                    && expected.contains(&format!("send it on {}", admin.display()))
                    && expected.contains("--admin-socket"),
                "{expected}"
            );
        }
        assert_eq!(ran.load(Ordering::SeqCst), 0, "a refused request ran");
        // Read-only requests are served on both; mutating ones on the admin socket.
        for sock in [&control, &admin] {
            assert!(matches!(
                request(sock, &Request::Status).await.unwrap(),
                Response::Status(_)
            ));
        }
        for req in [Request::Flush, Request::Reload] {
            assert_eq!(
                request(&admin, &req).await.unwrap(),
                Response::Done("done".into())
            );
        }
        assert_eq!(ran.load(Ordering::SeqCst), 2);
        // A refusal leaves the connection open for the next request.
        let mut s = UnixStream::connect(&control).await.unwrap();
        write_message(&mut s, &Request::Flush).await.unwrap();
        let resp: Response = read_message(&mut s).await.unwrap();
        assert!(matches!(resp, Response::Error(_)), "{resp:?}");
        write_message(&mut s, &Request::Status).await.unwrap();
        let resp: Response = read_message(&mut s).await.unwrap();
        assert!(matches!(resp, Response::Status(_)), "{resp:?}");
        stop.send(true).unwrap();
        for server in servers {
            server.await.unwrap();
        }
    }

    /// A status from a daemon built before the admin socket still decodes, and one from now
    /// carries nothing a CLI built before it refuses (unknown fields are skipped).
    #[test]
    fn status_without_the_admin_socket_still_decodes() {
        let bytes = rmp_serde::to_vec_named(&status()).unwrap();
        let mut value: serde_json::Value = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(value["admin_socket"], "/tmp/a.sock");
        value.as_object_mut().unwrap().remove("admin_socket");
        let old = rmp_serde::to_vec_named(&value).unwrap();
        let back: StatusReport = rmp_serde::from_slice(&old).unwrap();
        assert_eq!(back.admin_socket, "");
        assert_eq!(back.control_socket, "/tmp/c.sock");
    }

    #[test]
    fn only_flush_and_reload_need_the_admin_socket() {
        let access = Access::ReadOnly {
            admin_socket: "/run/callmetrics/admin.sock".into(),
        };
        let q = MetricsQuery {
            window: None,
            by: DimKind::Queue,
            key: None,
        };
        for req in [
            Request::Status,
            Request::Metrics(q),
            Request::Calls,
            Request::Outbox { limit: 1 },
        ] {
            assert_eq!(access.admit(&req), Ok(()), "{req:?}");
            assert_eq!(Access::Admin.admit(&req), Ok(()), "{req:?}");
        }
        for req in [Request::Flush, Request::Reload] {
            assert!(access.admit(&req).is_err(), "{req:?}");
            assert_eq!(Access::Admin.admit(&req), Ok(()), "{req:?}");
        }
    }

    #[tokio::test]
    async fn status_and_metrics_round_trip_on_one_connection_each() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("c.sock");
        let (stop, server) = start(&sock);

        assert_eq!(
            request(&sock, &Request::Status).await.unwrap(),
            Response::Status(Box::new(status()))
        );
        let q = MetricsQuery {
            window: Some("15m".into()),
            by: DimKind::Queue,
            key: Some("support".into()),
        };
        assert_eq!(
            request(&sock, &Request::Metrics(q)).await.unwrap(),
            Response::Metrics(vec![row("support", DimKind::Queue)])
        );
        assert_eq!(
            request(&sock, &Request::Flush).await.unwrap(),
            Response::Error("not here".into())
        );
        stop.send(true).unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn one_connection_carries_many_requests_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("c.sock");
        let (stop, server) = start(&sock);
        let mut s = UnixStream::connect(&sock).await.unwrap();
        for by in [DimKind::Agent, DimKind::Channel, DimKind::All] {
            let q = MetricsQuery {
                window: None,
                by,
                key: None,
            };
            write_message(&mut s, &Request::Metrics(q)).await.unwrap();
            let resp: Response = read_message(&mut s).await.unwrap();
            assert_eq!(resp, Response::Metrics(vec![row("all", by)]));
        }
        stop.send(true).unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_bad_version_gets_an_error_reply_and_the_connection_closes() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("c.sock");
        let (stop, server) = start(&sock);

        #[derive(serde::Serialize)]
        struct Env {
            version: u16,
            body: Request,
        }
        let bytes = rmp_serde::to_vec_named(&Env {
            version: PROTOCOL_VERSION + 1,
            body: Request::Status,
        })
        .unwrap();
        let mut s = UnixStream::connect(&sock).await.unwrap();
        s.write_all(&(bytes.len() as u32).to_be_bytes())
            .await
            .unwrap();
        s.write_all(&bytes).await.unwrap();
        let resp: Response = read_message(&mut s).await.unwrap();
        match resp {
            Response::Error(msg) => assert!(
                msg.contains(&format!("version {}", PROTOCOL_VERSION + 1)),
                "{msg}"
            ),
            other => panic!("expected an error, got {other:?}"),
        }
        let mut rest = Vec::new();
        assert_eq!(
            s.read_to_end(&mut rest).await.unwrap(),
            0,
            "connection should be closed"
        );

        // The server still serves others.
        assert!(matches!(
            request(&sock, &Request::Status).await.unwrap(),
            Response::Status(_)
        ));
        stop.send(true).unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn an_oversized_or_garbled_message_gets_an_error_reply() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("c.sock");
        let (stop, server) = start(&sock);
        for msg in [
            u32::MAX.to_be_bytes().to_vec(),
            vec![0, 0, 0, 2, 0xc1, 0xc1],
        ] {
            let mut s = UnixStream::connect(&sock).await.unwrap();
            s.write_all(&msg).await.unwrap();
            let resp: Response = read_message(&mut s).await.unwrap();
            assert!(matches!(resp, Response::Error(_)), "{resp:?}");
        }
        stop.send(true).unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_drops_idle_connections_and_stops_accepting() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("c.sock");
        let (stop, server) = start(&sock);
        let mut idle = UnixStream::connect(&sock).await.unwrap();
        // Make sure the idle connection was accepted before shutting down.
        write_message(&mut idle, &Request::Status).await.unwrap();
        let _: Response = read_message(&mut idle).await.unwrap();

        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("serve returns promptly with an idle client connected")
            .unwrap();
        let mut rest = Vec::new();
        assert_eq!(idle.read_to_end(&mut rest).await.unwrap(), 0);
        assert!(
            UnixStream::connect(&sock).await.is_err(),
            "listener should be closed"
        );
    }

    /// Takes every slot with a connection that has been answered once (so surely accepted).
    async fn fill(sock: &Path) -> Vec<UnixStream> {
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            let mut s = UnixStream::connect(sock).await.unwrap();
            write_message(&mut s, &Request::Status).await.unwrap();
            let _: Response = read_message(&mut s).await.unwrap();
            held.push(s);
        }
        held
    }

    #[tokio::test]
    async fn connections_past_the_limit_are_told_so_when_none_is_idle() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("c.sock");
        let (stop, server) = start(&sock);
        let mut held = fill(&sock).await;
        for s in &mut held {
            // Half a length: busy, so not a candidate to make room, however long it waits.
            s.write_all(&[0, 0]).await.unwrap();
        }
        tokio::time::sleep(MIN_IDLE + Duration::from_millis(100)).await;
        // The client's request must not hide the refusal behind a broken pipe or a reset.
        match request(&sock, &Request::Status).await.unwrap() {
            Response::Error(msg) => assert_eq!(msg, refusal()),
            other => panic!("expected a refusal, got {other:?}"),
        }
        drop(held);
        stop.send(true).unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn the_connection_idle_longest_makes_room_and_is_told_why() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("c.sock");
        let (stop, server) = start(&sock);
        let mut held = fill(&sock).await;
        tokio::time::sleep(MIN_IDLE + Duration::from_millis(100)).await;
        // All but the first are used again: the first is the one idle longest.
        for s in &mut held[1..] {
            write_message(s, &Request::Status).await.unwrap();
            let _: Response = read_message(s).await.unwrap();
        }
        tokio::time::sleep(MIN_IDLE + Duration::from_millis(100)).await;
        let started = Instant::now();
        assert!(matches!(
            request(&sock, &Request::Status).await.unwrap(),
            Response::Status(_)
        ));
        assert!(
            started.elapsed() < ROOM_WAIT,
            "took {:?}",
            started.elapsed()
        );
        match read_message::<_, Response>(&mut held[0]).await.unwrap() {
            Response::Error(msg) => assert!(msg.starts_with("closed to make room"), "{msg}"),
            other => panic!("expected the notice, got {other:?}"),
        }
        let mut rest = Vec::new();
        assert_eq!(held[0].read_to_end(&mut rest).await.unwrap(), 0);
        // The others were not touched.
        write_message(&mut held[1], &Request::Status).await.unwrap();
        assert!(matches!(
            read_message::<_, Response>(&mut held[1]).await.unwrap(),
            Response::Status(_)
        ));
        drop(held);
        stop.send(true).unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn dropping_the_shutdown_sender_stops_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("c.sock");
        let (stop, server) = start(&sock);
        drop(stop);
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
    }
}
