//! Accept loops for the event sockets (Unix, and optionally loopback TCP): one task per
//! connection, a cap on open connections where the connection idle longest makes room for a new
//! one (see `crate::slots`), and an orderly drain on shutdown.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::connection::serve_connection;
use super::framing::Framing;
use super::linger::linger;
use super::reply::{encode_reply, Reply};
use super::{IngestCtx, IngestStats};
use crate::log_throttle::{left_out_note, Throttle, WARN_INTERVAL};
use crate::shutdown;
use crate::slots::{Slots, MIN_IDLE};

/// How long connections may take, after shutdown is requested, to write the replies they owe
/// (which wait for the committer's last flush). Connections still open after this are cut, so a
/// client that never reads its replies cannot hold up the daemon's exit.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long the "too many connections" reply may take to write.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a failed accept (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// How long a new connection waits, when every slot is taken, for the connection idle longest to
/// give its slot up (it does so as soon as it sees the request, unless a message begins first).
pub const ROOM_WAIT: Duration = Duration::from_secs(1);

/// A listening socket whose connections carry events.
trait Accept {
    type Stream: AsyncRead + AsyncWrite + Send + 'static;
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Stream>>;
}

impl Accept for UnixListener {
    type Stream = UnixStream;
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<UnixStream>> {
        UnixListener::poll_accept(self, cx).map_ok(|(stream, _)| stream)
    }
}

impl Accept for TcpListener {
    type Stream = TcpStream;
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<TcpStream>> {
        TcpListener::poll_accept(self, cx).map_ok(|(stream, _)| {
            // Replies are small and flushed as soon as none is pending: send them now, not after
            // Nagle's delay. Failing to set it only costs latency.
            let _ = stream.set_nodelay(true);
            stream
        })
    }
}

/// Serves event connections on a Unix socket until shutdown; returns once every connection ended.
pub async fn serve_unix(
    listener: UnixListener,
    ctx: Arc<IngestCtx>,
    shutdown: watch::Receiver<bool>,
) {
    serve(listener, ctx, shutdown).await;
}

/// Serves event connections on a (loopback) TCP socket until shutdown; returns once every
/// connection ended.
pub async fn serve_tcp(
    listener: TcpListener,
    ctx: Arc<IngestCtx>,
    shutdown: watch::Receiver<bool>,
) {
    serve(listener, ctx, shutdown).await;
}

/// Keeps `connections_open` true for as long as a connection task lives, even if it is aborted.
/// (A connection that gave its slot up still counts as open while it closes.)
struct OpenConnection {
    stats: Arc<IngestStats>,
}

impl OpenConnection {
    fn new(stats: Arc<IngestStats>) -> Self {
        stats.update(|c| {
            c.connections_open += 1;
            c.connections_total += 1;
        });
        OpenConnection { stats }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.stats
            .update(|c| c.connections_open = c.connections_open.saturating_sub(1));
    }
}

async fn serve<L: Accept>(listener: L, ctx: Arc<IngestCtx>, mut shutdown: watch::Receiver<bool>) {
    let slots = Slots::new(ctx.limits().max_connections, MIN_IDLE);
    let mut tasks = JoinSet::new();
    // Shared with the connection tasks, which decide refusals once room could not be made.
    let refusals = Arc::new(Mutex::new(Throttle::new(WARN_INTERVAL)));
    let mut failures = Throttle::new(WARN_INTERVAL);
    loop {
        tokio::select! {
            biased;
            () = shutdown::signalled(&mut shutdown) => break,
            Some(ended) = tasks.join_next(), if !tasks.is_empty() => report_end(ended),
            accepted = std::future::poll_fn(|cx| listener.poll_accept(cx)) => match accepted {
                Ok(stream) => {
                    // Taking a slot may wait for an idle connection to leave: not in this loop.
                    let admission = Admission {
                        slots: Arc::clone(&slots),
                        ctx: Arc::clone(&ctx),
                        refusals: Arc::clone(&refusals),
                    };
                    tasks.spawn(admission.serve(stream, shutdown.clone()));
                }
                Err(e) => {
                    if let Some(n) = failures.admit(Instant::now()) {
                        tracing::warn!("accepting an event connection failed: {e}{}", left_out_note(n));
                    }
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            },
        }
    }
    // Stop accepting: from here new clients are refused by the kernel, not left waiting.
    drop(listener);

    let open = tasks.len();
    if open > 0 {
        tracing::info!(
            "shutting down: waiting for {open} event connections to deliver their replies"
        );
    }
    let deadline = tokio::time::sleep(SHUTDOWN_GRACE);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            ended = tasks.join_next() => match ended {
                Some(ended) => report_end(ended),
                None => break,
            },
            () = &mut deadline => {
                tracing::warn!(
                    "{} event connections still open {}s after shutdown; closing them (their clients get no reply for the last events)",
                    tasks.len(),
                    SHUTDOWN_GRACE.as_secs()
                );
                tasks.abort_all();
                while let Some(ended) = tasks.join_next().await {
                    report_end(ended);
                }
                break;
            }
        }
    }
}

/// What a new connection needs to take a slot, or to be refused one.
struct Admission {
    slots: Arc<Slots>,
    ctx: Arc<IngestCtx>,
    refusals: Arc<Mutex<Throttle>>,
}

impl Admission {
    /// Serves the connection in a slot of its own, made by the connection idle longest if need
    /// be; refuses it when no connection can make room within [`ROOM_WAIT`].
    async fn serve<S: AsyncRead + AsyncWrite>(self, stream: S, shutdown: watch::Receiver<bool>) {
        let Some(slot) = self.slots.take(ROOM_WAIT).await else {
            self.refuse(stream).await;
            return;
        };
        let _open = OpenConnection::new(Arc::clone(&self.ctx.stats));
        serve_connection(stream, &self.ctx, &slot, shutdown).await;
    }

    async fn refuse<S: AsyncRead + AsyncWrite>(self, stream: S) {
        let max = self.slots.max();
        self.ctx.stats.update(|c| c.connections_refused += 1);
        let logged = self
            .refusals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(Instant::now());
        if let Some(n) = logged {
            tracing::warn!(
                "event connection refused: {max} connections are open, none idle for {}s (limits.max_connections){}",
                MIN_IDLE.as_secs(),
                left_out_note(n)
            );
        }
        refuse(stream, max).await;
    }
}

fn report_end(ended: Result<(), tokio::task::JoinError>) {
    if let Err(e) = ended {
        if e.is_panic() {
            tracing::error!("an event connection task panicked: {e}");
        }
    }
}

/// Tells a client over the connection limit why it is being turned away, then closes.
async fn refuse<S: AsyncRead + AsyncWrite>(stream: S, max: usize) {
    let (read_half, mut write_half) = tokio::io::split(stream);
    let reply = Reply::error(format!(
        "too many connections (limits.max_connections = {max})"
    ));
    let mut line = Vec::new();
    encode_reply(Framing::JsonLines, &reply, &mut line);
    let sent = tokio::time::timeout(REFUSE_TIMEOUT, async {
        write_half.write_all(&line).await?;
        write_half.shutdown().await
    })
    .await;
    if matches!(sent, Ok(Ok(()))) {
        // The client may already have sent events; read past them so the close does not reset
        // the connection before the client reads the reply.
        linger(&mut BufReader::new(read_half)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LimitsConfig;
    use crate::ingest::SubmitTx;
    use crate::ingest::{ItemResult, Submission};
    use serde_json::Value;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    use tokio::net::UnixStream;
    use tokio::sync::{mpsc, oneshot};

    const TS: i64 = 1_700_000_000_000;

    fn hold(call_id: &str) -> String {
        format!("{{\"type\":\"hold\",\"call_id\":\"{call_id}\",\"ts\":{TS}}}\n")
    }

    fn accept_all() -> SubmitTx {
        let (tx, mut rx) = mpsc::channel::<Submission>(64);
        tokio::spawn(async move {
            while let Some(sub) = rx.recv().await {
                let n = sub.events.len();
                let _ = sub.reply.send(vec![Ok(()); n]);
            }
        });
        tx
    }

    struct Server {
        path: std::path::PathBuf,
        ctx: Arc<IngestCtx>,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
        _dir: tempfile::TempDir,
    }

    fn start(submit: SubmitTx, limits: LimitsConfig) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let ctx = Arc::new(IngestCtx::new(
            submit,
            watch::channel(limits).1,
            Arc::new(IngestStats::default()),
        ));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(serve_unix(listener, Arc::clone(&ctx), stop_rx));
        Server {
            path,
            ctx,
            stop,
            task,
            _dir: dir,
        }
    }

    async fn read_reply(r: &mut BufReader<tokio::net::unix::OwnedReadHalf>) -> Option<Value> {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut line))
            .await
            .expect("a reply within 10 s")
            .unwrap();
        (n > 0).then(|| serde_json::from_str(&line).unwrap())
    }

    async fn json_client(
        path: &std::path::Path,
    ) -> (
        BufReader<tokio::net::unix::OwnedReadHalf>,
        tokio::net::unix::OwnedWriteHalf,
    ) {
        let (r, w) = UnixStream::connect(path).await.unwrap().into_split();
        (BufReader::new(r), w)
    }

    async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        for _ in 0..500 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting until {what}");
    }

    #[tokio::test]
    async fn a_bad_frame_closes_only_its_connection() {
        let server = start(accept_all(), LimitsConfig::default());
        let (mut good_r, mut good_w) = json_client(&server.path).await;
        good_w.write_all(hold("a").as_bytes()).await.unwrap();
        assert_eq!(
            read_reply(&mut good_r).await,
            Some(serde_json::json!({"ok": true}))
        );

        let mut bad = UnixStream::connect(&server.path).await.unwrap();
        bad.write_all(&[0x7f, 0xff, 0xff, 0xff, 1, 2, 3])
            .await
            .unwrap();
        let mut len = [0u8; 4];
        bad.read_exact(&mut len).await.unwrap();
        let mut body = vec![0; u32::from_be_bytes(len) as usize];
        bad.read_exact(&mut body).await.unwrap();
        let reply: Value = rmp_serde::from_slice(&body).unwrap();
        assert_eq!(reply["ok"], serde_json::json!(false));
        assert!(
            reply["error"]
                .as_str()
                .unwrap()
                .contains("limits.max_frame_bytes"),
            "{reply}"
        );
        let mut rest = Vec::new();
        bad.read_to_end(&mut rest).await.unwrap();
        assert!(
            rest.is_empty(),
            "the bad connection must close after its error reply"
        );

        good_w.write_all(hold("b").as_bytes()).await.unwrap();
        assert_eq!(
            read_reply(&mut good_r).await,
            Some(serde_json::json!({"ok": true}))
        );
        let stats = server.ctx.stats.snapshot();
        assert_eq!(stats.framing_errors, 1);
        assert_eq!(stats.connections_total, 2);

        server.stop.send(true).unwrap();
        assert_eq!(read_reply(&mut good_r).await, None);
        server.task.await.unwrap();
        assert_eq!(server.ctx.stats.snapshot().connections_open, 0);
    }

    #[tokio::test]
    async fn connections_over_the_limit_are_refused() {
        let limits = LimitsConfig {
            max_connections: 1,
            ..LimitsConfig::default()
        };
        let server = start(accept_all(), limits);
        let (mut first_r, mut first_w) = json_client(&server.path).await;
        first_w.write_all(hold("a").as_bytes()).await.unwrap();
        assert_eq!(
            read_reply(&mut first_r).await,
            Some(serde_json::json!({"ok": true}))
        );
        // Half a line: busy, so it cannot be asked to make room however slow this test runs.
        first_w.write_all(b"{\"type\":").await.unwrap();

        let (mut second_r, mut second_w) = json_client(&server.path).await;
        // Sending before reading the refusal must not lose it.
        second_w.write_all(hold("b").as_bytes()).await.unwrap();
        assert_eq!(
            read_reply(&mut second_r).await,
            Some(
                serde_json::json!({"ok": false, "error": "too many connections (limits.max_connections = 1)"})
            )
        );
        assert_eq!(read_reply(&mut second_r).await, None);
        assert_eq!(server.ctx.stats.snapshot().connections_refused, 1);

        // Once the first leaves, its slot is free again.
        drop((first_r, first_w));
        let stats = Arc::clone(&server.ctx.stats);
        wait_until("the first connection is closed", || {
            stats.snapshot().connections_open == 0
        })
        .await;
        let (mut third_r, mut third_w) = json_client(&server.path).await;
        third_w.write_all(hold("c").as_bytes()).await.unwrap();
        assert_eq!(
            read_reply(&mut third_r).await,
            Some(serde_json::json!({"ok": true}))
        );
        let s = server.ctx.stats.snapshot();
        assert_eq!(
            (
                s.connections_open,
                s.connections_total,
                s.connections_refused
            ),
            (1, 2, 1)
        );

        drop((third_r, third_w));
        server.stop.send(true).unwrap();
        server.task.await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_waits_for_replies_then_closes_every_connection() {
        // The committer holds every submission until released, as if a flush were slow.
        let (tx, mut rx) = mpsc::channel::<Submission>(16);
        // It says how many events it holds: lines written together come as one submission.
        let (got_tx, mut got_rx) = mpsc::channel::<usize>(16);
        let (release_tx, release_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let mut held: Vec<Submission> = Vec::new();
            let mut events = 0;
            let mut release_rx = release_rx;
            loop {
                tokio::select! {
                    sub = rx.recv() => match sub {
                        Some(sub) => {
                            events += sub.events.len();
                            held.push(sub);
                            let _ = got_tx.send(events).await;
                        }
                        None => return,
                    },
                    _ = &mut release_rx => break,
                }
            }
            for sub in held {
                let results: Vec<ItemResult> = vec![Ok(()); sub.events.len()];
                let _ = sub.reply.send(results);
            }
        });
        let server = start(tx, LimitsConfig::default());
        let (mut a_r, mut a_w) = json_client(&server.path).await;
        let (mut b_r, mut b_w) = json_client(&server.path).await;
        let (mut idle_r, _idle_w) = json_client(&server.path).await;
        a_w.write_all(format!("{}{}", hold("a1"), hold("a2")).as_bytes())
            .await
            .unwrap();
        b_w.write_all(hold("b1").as_bytes()).await.unwrap();
        while got_rx.recv().await.unwrap() < 3 {}

        server.stop.send(true).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!server.task.is_finished(), "replies are still owed");
        // New connections are no longer accepted once the loop stopped.
        assert!(UnixStream::connect(&server.path).await.is_err());
        release_tx.send(()).unwrap();

        for _ in 0..2 {
            assert_eq!(
                read_reply(&mut a_r).await,
                Some(serde_json::json!({"ok": true}))
            );
        }
        assert_eq!(read_reply(&mut a_r).await, None);
        assert_eq!(
            read_reply(&mut b_r).await,
            Some(serde_json::json!({"ok": true}))
        );
        assert_eq!(read_reply(&mut b_r).await, None);
        assert_eq!(read_reply(&mut idle_r).await, None);
        tokio::time::timeout(Duration::from_secs(10), server.task)
            .await
            .expect("serve_unix returns once its connections ended")
            .unwrap();
        assert_eq!(server.ctx.stats.snapshot().connections_open, 0);
    }

    #[tokio::test]
    async fn tcp_serves_the_same_protocol() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ctx = Arc::new(IngestCtx::new(
            accept_all(),
            watch::channel(LimitsConfig::default()).1,
            Arc::new(IngestStats::default()),
        ));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(serve_tcp(listener, Arc::clone(&ctx), stop_rx));
        let (r, mut w) = TcpStream::connect(addr).await.unwrap().into_split();
        let mut r = BufReader::new(r);
        w.write_all(format!("[{},{}]\n", hold("a").trim(), hold("b").trim()).as_bytes())
            .await
            .unwrap();
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&line).unwrap(),
            serde_json::json!({"ok": true, "accepted": 2})
        );
        stop.send(true).unwrap();
        task.await.unwrap();
        assert_eq!(ctx.stats.snapshot().connections_total, 1);
    }
}
