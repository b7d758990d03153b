//! Prometheus exposition: an optional HTTP listener (`[exposition] listen`) that answers
//! `GET /metrics` in the Prometheus text format, a small landing page at `/`, and 404 otherwise.
//!
//! Bounded like the other sockets: at most [`MAX_CONNECTIONS`] at once (more are closed at
//! once), one request per connection, request heads of at most 8 KiB read within
//! [`HEAD_TIMEOUT`], and a whole exchange cut off after [`EXCHANGE_TIMEOUT`].
//!
//! Not the `prometheus-client` crate: it writes the `OpenMetrics` text format (counter TYPE lines without
//! `_total`, a closing `# EOF`), not the 0.0.4 text format this endpoint's Content-Type names;
//! and it models live metric objects a program increments, while every figure here is read from
//! the engine's stored totals at scrape time, for which it offers constant counters and gauges
//! but no constant histogram. The format is small ([`text`]); hyper, already in the tree through
//! reqwest, serves it.

mod families;
mod sla;
pub mod text;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn};

pub use families::{render, Scrape};

/// Connections served at once; a scraper needs one, a curl or two more.
pub const MAX_CONNECTIONS: usize = 4;
/// Longest wait for a request's head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a connection lives, request and answer together.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(15);
/// Request heads larger than this are refused (hyper's smallest read buffer).
const MAX_HEAD_BYTES: usize = 8192;

/// Why the listener could not start.
#[derive(Debug, Error)]
pub enum ExpositionError {
    #[error("exposition.listen: cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// Builds the exposition text of one scrape (reads the daemon's state; called off the runtime).
pub type Renderer = Arc<dyn Fn() -> String + Send + Sync>;

/// Binds the listener (at start-up, so a taken port stops the daemon with a clear message).
pub async fn bind(addr: &str) -> Result<TcpListener, ExpositionError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ExpositionError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// Serves `/metrics` until `shutdown` turns true.
pub async fn serve(listener: TcpListener, render: Renderer, mut shutdown: watch::Receiver<bool>) {
    if let Ok(a) = listener.local_addr() {
        info!("Prometheus metrics on http://{a}/metrics");
    }
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            () = crate::shutdown::signalled(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Over the limit the connection is closed at once: a scraper retries on
                    // its next interval, and nothing queues up behind a slow client.
                    let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                        debug!("metrics connection from {peer} closed: {MAX_CONNECTIONS} already open");
                        continue;
                    };
                    let render = render.clone();
                    tokio::spawn(async move {
                        let _slot = slot;
                        exchange(stream, peer, render).await;
                    });
                }
                Err(e) => {
                    warn!("metrics listener: accept failed: {e}");
                    // Typically out of file descriptors; pausing keeps this loop from spinning.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

async fn exchange(stream: tokio::net::TcpStream, peer: SocketAddr, render: Renderer) {
    let service = service_fn(move |req| answer(req, render.clone()));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(EXCHANGE_TIMEOUT, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!("metrics connection from {peer}: {e}"),
        Err(_) => debug!(
            "metrics connection from {peer} cut off after {} s",
            EXCHANGE_TIMEOUT.as_secs()
        ),
    }
}

const LANDING: &str = "<!doctype html>\n<html><head><title>callmetrics</title></head><body>\n<h1>callmetrics</h1>\n<p>Call-center metrics in the Prometheus text format: <a href=\"/metrics\">/metrics</a>.</p>\n</body></html>\n";

async fn answer(
    req: Request<Incoming>,
    render: Renderer,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            // Rendering locks the engine briefly; keep it off the runtime's workers.
            let text = tokio::task::spawn_blocking(move || render())
                .await
                .unwrap_or_else(|e| format!("# the scrape failed: {e}\n"));
            (StatusCode::OK, text::CONTENT_TYPE, text)
        }
        (&Method::GET | &Method::HEAD, "/") => (
            StatusCode::OK,
            "text/html; charset=utf-8",
            LANDING.to_string(),
        ),
        (_, "/metrics" | "/") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET and HEAD are answered here\n".to_string(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: the metrics are at /metrics\n".to_string(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(if req.method() == Method::HEAD {
        String::new()
    } else {
        body
    })));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    Ok(resp)
}
