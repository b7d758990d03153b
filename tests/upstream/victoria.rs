//! A real `VictoriaMetrics` behind the influx sink: what it stores, per queue and interval, equals
//! the calls sent and the agent's own figures. [`Victoria`] runs it as docs/upstream.md asks
//! (deduplication on) and answers queries, for this test and the dashboard's.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::calls::{
    expected, make_calls, past_interval, per_queue, ByInterval, Call, Totals, FIELDS,
};
use crate::drive::{
    agent_by_queue, config, flush, send_calls, u64_field, wait_delivered, wait_settled,
};
use crate::support::{now_ms, Daemon};
use crate::{HOST, POLL, SHIP_DEADLINE, VICTORIA_METRICS};

/// What `VictoriaMetrics` holds: (queue, interval start) → field → value.
type Stored = BTreeMap<(String, i64), BTreeMap<String, u64>>;

/// The `-dedup.minScrapeInterval` docs/upstream.md requires: any duration up to the interval
/// works; 1m, not 1ms, so a test would notice an encoding that relies on distinct milliseconds.
const DEDUP: &str = "1m";

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
                .arg(format!("-dedup.minScrapeInterval={DEDUP}"))
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

    /// Every `callmetrics_*` sample of the influx sink's `callmetrics` point: (queue, timestamp)
    /// → field → the sum over the series of that queue (an interval's record and its
    /// corrections are series of their own), the maximum for `wait_max_ms`. Fails if a series
    /// holds two different values at one timestamp.
    fn export(&self) -> Result<Stored, String> {
        let mut out = Stored::new();
        for v in self.export_series(r#"{__name__=~"callmetrics_.*"}"#)? {
            let line = &v;
            let m = &v["metric"];
            let name = m["__name__"].as_str().unwrap_or_default();
            let field = name
                .strip_prefix("callmetrics_")
                .ok_or_else(|| format!("unexpected metric {m}"))?;
            assert_eq!(m["host"], HOST, "{m}");
            assert_eq!(m["dimension"], "queue", "{m}");
            let queue = m["queue"]
                .as_str()
                .ok_or_else(|| format!("no queue label: {m}"))?
                .to_string();
            let values = v["values"].as_array().ok_or("no values")?;
            let stamps = v["timestamps"].as_array().ok_or("no timestamps")?;
            if values.len() != stamps.len() {
                return Err(format!("values and timestamps differ in length: {line}"));
            }
            let mut seen: BTreeMap<i64, f64> = BTreeMap::new();
            for (value, ts) in values.iter().zip(stamps) {
                let ts = ts.as_i64().ok_or_else(|| format!("timestamp {ts}"))?;
                let value = value.as_f64().ok_or_else(|| format!("value {value}"))?;
                if value < 0.0 || value.fract() != 0.0 {
                    return Err(format!("{name} at {ts} is {value}, not a count"));
                }
                if let Some(prev) = seen.insert(ts, value) {
                    assert_eq!(
                        prev, value,
                        "two different values at one timestamp in one series: {line}"
                    );
                    continue;
                }
                let e = out
                    .entry((queue.clone(), ts))
                    .or_default()
                    .entry(field.to_string())
                    .or_default();
                if field == "wait_max_ms" {
                    *e = (*e).max(value as u64);
                } else {
                    *e += value as u64;
                }
            }
        }
        Ok(out)
    }
}

/// Percent-encodes everything but unreserved characters (for a form body).
fn percent_encode(s: &str) -> String {
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

#[test]
fn victoria_metrics_end_to_end() {
    let vm = Victoria::start();
    let url = format!("http://{}/write", vm.addr);
    let d = Daemon::start(&config(&url, "influx", "json", true));

    let queues = ["sales", "support", "billing"];
    let intervals: Vec<i64> = (4..=7).map(past_interval).collect();
    let first = make_calls("vm-a", 41, &queues, &intervals, 6, false);
    let n1 = send_calls(&d, &first);
    wait_settled(&d, n1 as u64);
    flush(&d);
    wait_delivered(&d);

    // A correction: more calls in one interval already written.
    let second = make_calls("vm-b", 42, &queues[..2], &[intervals[1]], 3, true);
    let n2 = send_calls(&d, &second);
    wait_settled(&d, (n1 + n2) as u64);
    let calls: Vec<Call> = first.iter().chain(&second).cloned().collect();
    let want = expected(&calls);
    let agent = agent_by_queue(&d);
    assert_eq!(
        agent,
        per_queue(&want),
        "the agent's 24h figures vs the calls"
    );
    flush(&d);
    let st = wait_delivered(&d);
    assert_eq!(u64_field(&st, "dead_letters"), 0, "{st}");
    assert!(u64_field(&st, "delivered_records") > 0, "{st}");

    // What VictoriaMetrics stores, once searchable.
    let to_totals = |m: &Stored| -> Option<ByInterval> {
        m.iter()
            .map(|(k, fields)| {
                let mut t = Totals::default();
                for name in FIELDS {
                    t.add(name, *fields.get(name)?);
                }
                Some((k.clone(), t))
            })
            .collect()
    };
    let deadline = Instant::now() + SHIP_DEADLINE;
    let stored = loop {
        let got = vm.export();
        if let Ok(m) = &got {
            if to_totals(m).as_ref() == Some(&want) {
                break to_totals(m).expect("complete");
            }
        }
        if Instant::now() >= deadline {
            match got {
                Ok(m) => {
                    let totals = to_totals(&m).unwrap_or_else(|| {
                        panic!("VictoriaMetrics has series with missing fields: {m:#?}")
                    });
                    assert_eq!(
                        totals,
                        want,
                        "VictoriaMetrics per (queue, interval) vs the calls sent\nVM log:\n{}",
                        vm.log_tail()
                    );
                }
                Err(e) => panic!("export failed: {e}\nVM log:\n{}", vm.log_tail()),
            }
            unreachable!("the comparison above fails");
        }
        thread::sleep(Duration::from_millis(200));
    };
    // The sum over intervals per queue equals the agent's own 24h figures.
    assert_eq!(per_queue(&stored), agent);
    // The late calls arrived as corrections, in series of their own.
    let corrections = vm
        .export_series(r#"{__name__="callmetrics_offered",correction!=""}"#)
        .expect("export the corrections");
    assert!(
        !corrections.is_empty(),
        "no correction series in VictoriaMetrics"
    );
    let stored_intervals: BTreeSet<i64> = stored.keys().map(|k| k.1).collect();
    let stored_queues: BTreeSet<&str> = stored.keys().map(|k| k.0.as_str()).collect();
    assert!(
        stored_intervals.len() >= intervals.len() && stored_queues.len() == queues.len(),
        "expected points in several intervals of every queue: {stored:#?}"
    );
}
