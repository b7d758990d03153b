//! The CLI side of the control socket: one request, one response, with errors an operator can act on.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;
use tokio::net::UnixStream;

use super::protocol::{read_message, write_message, ProtocolError, Request, Response};

/// Longest a whole exchange (connect, send, answer) may take before the CLI gives up.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum ClientError {
    /// Nobody answers at the socket: each message is one line naming the socket and what to check.
    #[error("cannot reach the callmetrics daemon at {}: {} ({})", socket.display(), os_reason(source), connect_hint(source))]
    Connect { socket: PathBuf, source: io::Error },
    #[error("the callmetrics daemon at {} did not answer within {}s (is it overloaded or stuck? see its log)", socket.display(), timeout.as_secs())]
    Timeout { socket: PathBuf, timeout: Duration },
    /// The admin socket (where `flush` and `reload` go) does not admit this user.
    #[error("no permission to use the admin socket {} for {request}: it admits only its owner, the daemon's user (callmetrics), and root; run `sudo callmetrics {request}` or as that user (`sudo -u callmetrics callmetrics {request}`); status, metrics and calls need only the control socket", socket.display())]
    AdminDenied {
        socket: PathBuf,
        request: &'static str,
    },
    /// The daemon closed the connection before taking the request, without a readable answer.
    #[error("the callmetrics daemon at {} refused the connection: too many open control connections, or it is stopping (try again; see its log)", socket.display())]
    Refused { socket: PathBuf },
    #[error("talking to the callmetrics daemon at {}: {source}", socket.display())]
    Protocol {
        socket: PathBuf,
        source: ProtocolError,
    },
}

impl ClientError {
    /// The error for a failed `connect` to `socket`; shared with `callmetrics send` so both
    /// sockets fail with the same advice.
    #[must_use]
    pub fn connect(socket: &Path, source: io::Error) -> ClientError {
        ClientError::Connect {
            socket: socket.to_owned(),
            source,
        }
    }
}

/// The OS message without Rust's `(os error N)` suffix, which means nothing to an operator.
fn os_reason(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn connect_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::PermissionDenied => {
            "the socket belongs to the callmetrics group: add your user to it and log in again, or run as root"
        }
        io::ErrorKind::ConnectionRefused => {
            "the socket file exists but nothing listens: is the daemon running, or did it stop without removing it?"
        }
        _ => "is the daemon running? is this the socket in its config? pass --socket or --config",
    }
}

/// The errors of a write to a peer that has closed its end.
fn closed_by_peer(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

/// Sends `req` to the daemon at `socket` and returns its answer (which may be `Response::Error`).
/// A mutating request goes to the admin socket, so a connection it is not permitted is told as
/// the admin socket's ([`ClientError::AdminDenied`]).
pub async fn request(socket: &Path, req: &Request) -> Result<Response, ClientError> {
    request_within(socket, req, REQUEST_TIMEOUT).await
}

async fn request_within(
    socket: &Path,
    req: &Request,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let exchange = async {
        let mut stream = UnixStream::connect(socket).await.map_err(|e| {
            if req.is_mutating() && e.kind() == io::ErrorKind::PermissionDenied {
                ClientError::AdminDenied {
                    socket: socket.to_owned(),
                    request: req.name(),
                }
            } else {
                ClientError::connect(socket, e)
            }
        })?;
        let protocol = |source| ClientError::Protocol {
            socket: socket.to_owned(),
            source,
        };
        match write_message(&mut stream, req).await {
            Ok(()) => read_message(&mut stream).await.map_err(protocol),
            // The daemon closed without reading: it may have written why before closing.
            Err(ProtocolError::Io(e)) if closed_by_peer(&e) => read_message(&mut stream)
                .await
                .map_err(|_| ClientError::Refused {
                    socket: socket.to_owned(),
                }),
            Err(e) => Err(protocol(e)),
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(ClientError::Timeout {
                socket: socket.to_owned(),
                timeout,
            })
        })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::net::UnixListener;
    use tokio::sync::watch;

    use super::*;
    use crate::control::server::{serve, Access, Handler};
    use crate::engine::{DimKind, MetricsQuery};

    #[tokio::test]
    async fn a_missing_socket_gives_one_line_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("control.sock");
        let err = request(&sock, &Request::Status).await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
        assert!(!msg.contains('\n'), "{msg}");
        assert!(msg.contains(&sock.display().to_string()), "{msg}");
        assert!(msg.contains("No such file or directory"), "{msg}");
        assert!(!msg.contains("os error"), "{msg}");
        assert!(msg.contains("is the daemon running?"), "{msg}");
    }

    #[tokio::test]
    async fn a_stale_socket_file_says_nothing_listens() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("control.sock");
        drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
        let msg = request(&sock, &Request::Status)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("nothing listens") && msg.contains(&sock.display().to_string()),
            "{msg}"
        );
    }

    #[test]
    fn permission_denied_points_at_the_group() {
        let err = ClientError::connect(Path::new("/run/x.sock"), io::Error::from_raw_os_error(13));
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                "cannot reach the callmetrics daemon at /run/x.sock: Permission denied ("
            ),
            "{msg}"
        );
        assert!(msg.contains("callmetrics group"), "{msg}");
    }

    #[tokio::test]
    async fn permission_denied_on_the_admin_socket_says_who_may_use_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("admin.sock");
        let _listener = UnixListener::bind(&sock).unwrap();
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o000)).unwrap();
        if UnixStream::connect(&sock).await.is_ok() {
            // Root passes any file mode: nothing to see here.
            return;
        }
        let err = request(&sock, &Request::Flush).await.unwrap_err();
        assert!(matches!(err, ClientError::AdminDenied { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "no permission to use the admin socket {} for flush",
                sock.display()
            )) && msg.contains("root")
                && msg.contains("sudo callmetrics flush"),
            "{msg}"
        );
        // A read-only request meeting the same refusal gets the control socket's advice.
        let msg = request(&sock, &Request::Status)
            .await
            .unwrap_err()
            .to_string();
        assert!(msg.contains("callmetrics group"), "{msg}");
    }

    #[test]
    fn the_admin_refusal_names_the_socket_and_who_may_use_it() {
        let msg = ClientError::AdminDenied {
            socket: "/run/callmetrics/admin.sock".into(),
            request: "reload",
        }
        .to_string();
        assert!(
            msg.starts_with(
                "no permission to use the admin socket /run/callmetrics/admin.sock for reload"
            ) && msg.contains("callmetrics")
                && msg.contains("root")
                && !msg.contains('\n'),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn a_silent_daemon_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("control.sock");
        // Accepts (the kernel queues the connection) but never answers.
        let _listener = UnixListener::bind(&sock).unwrap();
        let err = request_within(&sock, &Request::Status, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
    }

    /// A listener that answers each connection with `answer` (if any) and closes at once,
    /// without reading the request.
    fn closing_at_once(sock: &Path, answer: Option<Response>) -> tokio::task::JoinHandle<()> {
        let listener = UnixListener::bind(sock).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            if let Some(answer) = answer {
                write_message(&mut s, &answer).await.unwrap();
            }
            drop(s);
        })
    }

    /// A request too large for the socket buffer, so that writing it meets the closed end.
    fn large_request() -> Request {
        Request::Metrics(MetricsQuery {
            window: Some("w".repeat(4 << 20)),
            by: DimKind::All,
            key: None,
        })
    }

    #[tokio::test]
    async fn a_refusal_written_before_the_close_is_shown_not_the_broken_pipe() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("control.sock");
        let server = closing_at_once(&sock, Some(Response::Error("full up".into())));
        let resp = request(&sock, &large_request()).await.unwrap();
        assert_eq!(resp, Response::Error("full up".into()));
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_close_without_an_answer_says_the_connection_was_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("control.sock");
        let server = closing_at_once(&sock, None);
        let err = request(&sock, &large_request()).await.unwrap_err();
        assert!(matches!(err, ClientError::Refused { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("refused the connection: too many open control connections"),
            "{msg}"
        );
        assert!(!msg.to_lowercase().contains("broken pipe"), "{msg}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn requests_reach_the_server_and_answers_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("control.sock");
        let handler: Handler = Arc::new(|req| match req {
            Request::Metrics(q) => Response::Done(format!("by {}", q.by.name())),
            other => Response::Error(format!("{other:?}")),
        });
        let (stop, rx) = watch::channel(false);
        let server = tokio::spawn(serve(
            UnixListener::bind(&sock).unwrap(),
            handler,
            Access::Admin,
            rx,
        ));
        let q = MetricsQuery {
            window: None,
            by: DimKind::Channel,
            key: None,
        };
        let resp = request(&sock, &Request::Metrics(q)).await.unwrap();
        assert_eq!(resp, Response::Done("by channel".into()));
        stop.send(true).unwrap();
        server.await.unwrap();
    }
}
