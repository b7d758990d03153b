//! [`Victoria`]: a real `VictoriaMetrics` (Debian's `victoria-metrics` package) on a free loopback
//! port with its own storage folder, run as docs/upstream.md asks (deduplication on), with the
//! few HTTP API calls the tests make: export, instant and range queries, label values.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{now_ms, POLL};

/// Where the Debian package installs `VictoriaMetrics`.
const VICTORIA_METRICS: &str = "/usr/bin/victoria-metrics";

/// The `-dedup.minScrapeInterval` docs/upstream.md requires: any duration up to the interval
/// works; 1m, not 1ms, so a test would notice an encoding that relies on distinct milliseconds.
/// A server that also scrapes gives its own, at most its scrape interval.
const DEDUP: &str = "-dedup.minScrapeInterval=1m";

/// A `VictoriaMetrics` process on a free port with its own storage; killed on drop.
pub struct Victoria {
    child: Child,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Victoria {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Victoria {
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("vm.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Starts it and waits until `/health` answers; a few tries in case the port was taken.
    pub fn start() -> Victoria {
        Victoria::start_with(&[])
    }

    /// [`Victoria::start`] with more command-line flags (e.g. `-promscrape.config=…`); a
    /// `-dedup.minScrapeInterval` among them replaces the default one.
    pub fn start_with(flags: &[String]) -> Victoria {
        let dedup = (!flags
            .iter()
            .any(|f| f.starts_with("-dedup.minScrapeInterval=")))
        .then_some(DEDUP);
        assert!(
            Path::new(VICTORIA_METRICS).exists(),
            "{VICTORIA_METRICS} is missing: this test needs VictoriaMetrics. `.ci/run` installs Debian's \
             `victoria-metrics` package (apt-get install -y victoria-metrics); install it and run again"
        );
        let mut last = String::new();
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("find a free port")
                .port();
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let dir = tempfile::tempdir().expect("a folder for VictoriaMetrics");
            let log = std::fs::File::create(dir.path().join("vm.log")).expect("create the log");
            let child = Command::new(VICTORIA_METRICS)
                .arg(format!(
                    "-storageDataPath={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("-httpListenAddr={addr}"))
                .arg("-retentionPeriod=100y")
                .args(dedup)
                .args(flags)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log handle"))
                .stderr(log)
                .spawn()
                .expect("start victoria-metrics");
            let mut vm = Victoria { child, addr, dir };
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(status) = vm.child.try_wait().expect("poll victoria-metrics") {
                    last = format!("it exited with {status}; its log:\n{}", vm.log_tail());
                    break;
                }
                if let Ok((200, _)) = http(addr, "GET", "/health", "") {
                    return vm;
                }
                assert!(
                    Instant::now() < deadline,
                    "victoria-metrics did not answer /health within 30s; its log:\n{}",
                    vm.log_tail()
                );
                thread::sleep(POLL);
            }
        }
        panic!("victoria-metrics did not start: {last}");
    }

    /// Every series matching `selector` over the last two days, as `/api/v1/export` gives them:
    /// one JSON object a series (`metric`, `values`, `timestamps`).
    pub fn export_series(&self, selector: &str) -> Result<Vec<Value>, String> {
        let start = now_ms() / 1000 - 2 * 86_400;
        let body = format!("match[]={}&start={start}", percent_encode(selector));
        let (status, text) = http(self.addr, "POST", "/api/v1/export", &body)?;
        if status != 200 {
            return Err(format!("export answered {status}: {text}"));
        }
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| serde_json::from_str(line).map_err(|e| format!("export line {line}: {e}")))
            .collect()
    }

    /// `GET`-style API call with form `params`; returns `data` of a `"status": "success"` answer.
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let body: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect();
        let (status, text) = http(self.addr, "POST", path, &body.join("&"))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{path} answered {status} with {text}: {e}"))?;
        if status != 200 || v["status"] != "success" {
            return Err(format!("{path} {params:?} answered {status}: {text}"));
        }
        Ok(v["data"].clone())
    }
}

/// Percent-encodes everything but unreserved characters (for a form body).
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A minimal blocking HTTP/1.0 exchange; returns the status and the body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of head in {text:?}"))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    if !chunked {
        return Ok((status, rest.to_string()));
    }
    let mut out = String::new();
    let mut rest = rest;
    loop {
        let (size, after) = rest.split_once("\r\n").ok_or("a truncated chunked body")?;
        let size = usize::from_str_radix(size.trim(), 16).map_err(|e| e.to_string())?;
        if size == 0 {
            return Ok((status, out));
        }
        out.push_str(after.get(..size).ok_or("a truncated chunk")?);
        rest = after.get(size + 2..).ok_or("a truncated chunk")?;
    }
}
