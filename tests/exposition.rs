//! Prometheus `/metrics` of a real daemon over real HTTP: after known calls on several queues,
//! agents and channels, the scraped counters equal both the figures computed here from the calls
//! and `metrics --json`; `promtool check metrics` accepts the scrape; a real Prometheus scraping
//! the daemon computes service level (from the histogram buckets), ASA, abandon rate and AHT
//! equal to `metrics --json`; and after `kill -9` and a restart the counters go on from where they
//! were. Needs Debian's `prometheus` package (promtool and prometheus), which `.ci/run` installs.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{now_ms, Daemon, DEADLINE};

/// How a call left its queue.
#[derive(Clone, Copy)]
enum Leave {
    /// Answered by `agent`, talked, held, wrapped up (seconds).
    Answered {
        agent: &'static str,
        talk: i64,
        hold: i64,
        acw: i64,
    },
    Abandoned,
    /// Left unanswered with this `end` reason.
    Overflow(&'static str),
}

/// (queue, channel, wait in seconds, how it left).
const CALLS: [(&str, &str, i64, Leave); 10] = [
    (
        "support",
        "voice",
        10,
        Leave::Answered {
            agent: "alice",
            talk: 100,
            hold: 15,
            acw: 10,
        },
    ),
    (
        "support",
        "voice",
        25,
        Leave::Answered {
            agent: "bob",
            talk: 200,
            hold: 0,
            acw: 0,
        },
    ),
    ("support", "voice", 3, Leave::Abandoned),
    ("support", "chat", 30, Leave::Abandoned),
    ("support", "voice", 40, Leave::Overflow("timeout")),
    (
        VIP,
        "voice",
        25,
        Leave::Answered {
            agent: "alice",
            talk: 50,
            hold: 0,
            acw: 20,
        },
    ),
    (
        VIP,
        "chat",
        35,
        Leave::Answered {
            agent: "bob",
            talk: 60,
            hold: 0,
            acw: 5,
        },
    ),
    (VIP, "voice", 8, Leave::Abandoned),
    (
        "sales",
        "chat",
        20,
        Leave::Answered {
            agent: "alice",
            talk: 80,
            hold: 0,
            acw: 0,
        },
    ),
    ("sales", "voice", 12, Leave::Overflow("transferred")),
];

/// A queue name a label must escape, with its own threshold of 30 s.
const VIP: &str = "vip,\"x";

fn threshold_s(queue: &str) -> i64 {
    if queue == VIP {
        30
    } else {
        20
    }
}

/// The counters of docs/metrics.md computed from [`CALLS`] for the keys `key_of` picks.
fn expected(
    key_of: impl Fn(&str, &str, Option<&str>) -> String,
) -> BTreeMap<String, BTreeMap<&'static str, i64>> {
    let mut out: BTreeMap<String, BTreeMap<&'static str, i64>> = BTreeMap::new();
    for (queue, channel, wait, leave) in CALLS {
        let agent = match leave {
            Leave::Answered { agent, .. } => Some(agent),
            _ => None,
        };
        let m = out.entry(key_of(queue, channel, agent)).or_default();
        let mut add = |k: &'static str, v: i64| *m.entry(k).or_default() += v;
        add("offered", 1);
        let within = i64::from(wait <= threshold_s(queue));
        match leave {
            Leave::Answered {
                talk, hold, acw, ..
            } => {
                add("answered", 1);
                add("answered_within", within);
                add("wait_sum_ms", wait * 1000);
                add("handled", 1);
                add("talk_sum_ms", talk * 1000);
                add("hold_sum_ms", hold * 1000);
                add("acw_sum_ms", acw * 1000);
            }
            Leave::Abandoned => {
                add("abandoned", 1);
                add("abandoned_within", within);
                add("short_abandoned", i64::from(wait < 5));
                add("abandon_wait_sum_ms", wait * 1000);
            }
            Leave::Overflow(_) => add("overflow", 1),
        }
    }
    out
}

/// Every event of [`CALLS`], the first call starting 20 minutes before `now`.
fn events(now: i64, prefix: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for (i, (queue, channel, wait, leave)) in CALLS.iter().enumerate() {
        let id = format!("{prefix}{i}");
        let start = now - 1_200_000 + i as i64 * 60_000;
        let left = start + wait * 1000;
        let ev = |v: Value| lines.push(v.to_string());
        let mut ev = ev;
        ev(
            serde_json::json!({"type": "start", "call_id": id, "queue": queue, "channel": channel, "ts": start}),
        );
        match *leave {
            Leave::Answered {
                agent,
                talk,
                hold,
                acw,
            } => {
                ev(
                    serde_json::json!({"type": "answer", "call_id": id, "agent": agent, "ts": left}),
                );
                if hold > 0 {
                    ev(serde_json::json!({"type": "hold", "call_id": id, "ts": left + 1000}));
                    ev(
                        serde_json::json!({"type": "resume", "call_id": id, "ts": left + 1000 + hold * 1000}),
                    );
                }
                let end = left + (talk + hold) * 1000;
                ev(serde_json::json!({"type": "end", "call_id": id, "ts": end}));
                ev(serde_json::json!({"type": "wrapup", "call_id": id, "ts": end + acw * 1000}));
            }
            Leave::Abandoned => {
                ev(
                    serde_json::json!({"type": "end", "call_id": id, "reason": "abandoned", "ts": left}),
                );
            }
            Leave::Overflow(reason) => {
                ev(serde_json::json!({"type": "end", "call_id": id, "reason": reason, "ts": left}));
            }
        }
    }
    lines
}

fn send(d: &Daemon, lines: &[String]) {
    let mut conn = d.json_conn();
    for l in lines {
        let reply = conn.request(l);
        assert_eq!(reply["ok"], true, "{l} → {reply}");
    }
}

/// One HTTP/1.1 GET: (status, headers in lower case, body).
fn get(addr: &str, path: &str) -> std::io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(DEADLINE))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, head.to_lowercase(), body.to_string()))
}

fn scrape(addr: &str) -> String {
    let (status, head, body) = get(addr, "/metrics").expect("scrape /metrics");
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(
        head.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    body
}

/// A label value escaped as the text format does.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The value of the sample `name{labels}` in `text`, if present.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let l: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", esc(v)))
        .collect();
    let key = if l.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{}}} ", l.join(","))
    };
    text.lines()
        .find_map(|line| line.strip_prefix(key.as_str()))
        .and_then(|v| v.parse().ok())
}

/// Which scraped counter holds each figure, and its unit factor to the JSON's milliseconds.
const COUNTERS: [(&str, &str, f64); 12] = [
    ("offered", "offered_total", 1.0),
    ("answered", "answered_total", 1.0),
    ("answered_within", "answered_within_threshold_total", 1.0),
    ("abandoned", "abandoned_total", 1.0),
    ("abandoned_within", "abandoned_within_threshold_total", 1.0),
    ("short_abandoned", "short_abandoned_total", 1.0),
    ("overflow", "overflow_total", 1.0),
    ("handled", "handled_total", 1.0),
    ("wait_sum_ms", "answered_wait_seconds_total", 1000.0),
    (
        "abandon_wait_sum_ms",
        "abandoned_wait_seconds_total",
        1000.0,
    ),
    ("talk_sum_ms", "talk_seconds_total", 1000.0),
    ("acw_sum_ms", "acw_seconds_total", 1000.0),
];

/// Checks every counter of every key of `dim` against the model and `metrics --json`.
fn check_dim(
    d: &Daemon,
    text: &str,
    dim: &str,
    model: &BTreeMap<String, BTreeMap<&'static str, i64>>,
) {
    let rows = d.metrics("1h", dim);
    for (key, want) in model {
        let row = rows
            .iter()
            .find(|r| r[dim] == key.as_str())
            .unwrap_or_else(|| panic!("metrics --json has no {dim} {key}: {rows:?}"));
        for (json, prom, unit) in COUNTERS {
            let name = format!("callmetrics_{dim}_{prom}");
            let got = sample(text, &name, &[(dim, key)])
                .unwrap_or_else(|| panic!("no {name} for {key} in\n{text}"));
            let hand = want.get(json).copied().unwrap_or(0) as f64;
            assert_eq!(
                got * unit,
                hand,
                "{name}{{{dim}={key:?}}}: scraped vs computed"
            );
            assert_eq!(
                row[json].as_f64(),
                Some(hand),
                "metrics --json {dim} {key} {json}"
            );
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port()
}

/// Polls until `f` holds, or fails with `what`.
fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

fn config(port: u16) -> String {
    format!(
        "\n[exposition]\nlisten = \"127.0.0.1:{port}\"\n\n[queues.\"vip,\\\"x\"]\nthreshold = \"30s\"\n\n[[sla]]\nname = \"support-month\"\nscope = {{ queues = [\"support\"] }}\nmeasure = \"answered_within\"\nthreshold = \"20s\"\ntarget = 0.8\nperiod = \"month\"\n"
    )
}

#[test]
fn scrape_counts_equal_the_calls_promtool_accepts_it_and_restarts_continue() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut d = Daemon::start(&config(port));
    send(&d, &events(now_ms(), "c"));
    let queues = expected(|q, _, _| q.to_string());
    // Folded after the reorder grace; wait until every call counts.
    wait_until("every call folded into the scrape", DEADLINE, || {
        let t = scrape(&addr);
        queues.iter().all(|(q, m)| {
            sample(&t, "callmetrics_queue_handled_total", &[("queue", q)])
                == Some(m.get("handled").copied().unwrap_or(0) as f64)
                && sample(&t, "callmetrics_queue_offered_total", &[("queue", q)])
                    == Some(m["offered"] as f64)
        })
    });
    let text = scrape(&addr);
    check_dim(&d, &text, "queue", &queues);
    check_dim(&d, &text, "channel", &expected(|_, c, _| c.to_string()));
    let agents = expected(|_, _, a| a.unwrap_or("").to_string());
    check_dim(
        &d,
        &text,
        "agent",
        &agents.into_iter().filter(|(k, _)| !k.is_empty()).collect(),
    );

    // Overflows by reason, per queue, against the calls' own reasons.
    for queue in ["support", VIP, "sales"] {
        for reason in ["timeout", "exit", "transferred", "callback"] {
            let hand = CALLS
                .iter()
                .filter(|(q, _, _, l)| {
                    *q == queue && matches!(l, Leave::Overflow(r) if *r == reason)
                })
                .count() as f64;
            assert_eq!(
                sample(
                    &text,
                    "callmetrics_queue_overflow_by_reason_total",
                    &[("queue", queue), ("reason", reason)]
                ),
                Some(hand),
                "overflow of {queue:?} by {reason}"
            );
        }
    }

    // `metrics --csv`: the JSON's columns; a name with a comma and a quote is quoted.
    let out = d.query(&["metrics", "--csv", "--window", "1h", "--by", "queue"]);
    assert!(out.status.success(), "{out:?}");
    let csv = String::from_utf8(out.stdout).expect("UTF-8 CSV");
    let header: Vec<&str> = csv.lines().next().expect("a header").split(',').collect();
    let offered = header
        .iter()
        .position(|h| *h == "offered")
        .expect("an offered column");
    let vip = csv
        .lines()
        .find(|l| l.contains("\"vip,\"\"x\""))
        .unwrap_or_else(|| panic!("no quoted vip row in\n{csv}"));
    // The vip row's quoted name holds one comma: its fields after it are shifted by one.
    let queue_col = header
        .iter()
        .position(|h| *h == "queue")
        .expect("a queue column");
    assert!(queue_col > offered);
    assert_eq!(vip.split(',').nth(offered), Some("3"), "{csv}");
    assert!(header.contains(&"service_levels_offered") && header.contains(&"bands_20000"));

    // The wait histogram: `le` inclusive (sales' 20 s wait is within le="20").
    let bucket = |q: &str, o: &str, le: &str| {
        sample(
            &text,
            "callmetrics_queue_wait_seconds_bucket",
            &[("queue", q), ("outcome", o), ("le", le)],
        )
    };
    assert_eq!(bucket("sales", "answered", "20"), Some(1.0));
    assert_eq!(bucket("sales", "answered", "15"), Some(0.0));
    assert_eq!(
        bucket(VIP, "answered", "30"),
        Some(1.0),
        "every threshold is a bound"
    );
    assert_eq!(bucket("support", "abandoned", "+Inf"), Some(2.0));
    assert_eq!(
        sample(
            &text,
            "callmetrics_queue_handle_seconds_count",
            &[("queue", "support")]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            "callmetrics_queue_threshold_seconds",
            &[("queue", VIP)]
        ),
        Some(30.0)
    );
    assert_eq!(
        sample(&text, "callmetrics_queue_waiting", &[("queue", "sales")]),
        Some(0.0)
    );

    // The objective over `support`: its value is answered within 20 s over answered, its
    // status one series at 1; the queue's staffing gauge is the figure `metrics --json` shows.
    let support = &queues["support"];
    let obj = [
        ("objective", "support-month"),
        ("measure", "answered_within"),
    ];
    assert_eq!(sample(&text, "callmetrics_sla_target", &obj), Some(0.8));
    let value = sample(&text, "callmetrics_sla_value", &obj).expect("an SLA value");
    let hand = support["answered_within"] as f64 / support["answered"] as f64;
    assert!((value - hand).abs() < 1e-9, "{value} against {hand}");
    let statuses: f64 = ["met", "at_risk", "missed", "no_data"]
        .iter()
        .map(|s| {
            sample(
                &text,
                "callmetrics_sla_status",
                &[("objective", "support-month"), ("status", s)],
            )
            .expect("every status has a series")
        })
        .sum();
    assert_eq!(statuses, 1.0);
    let row = d.metrics("1h", "queue");
    let row = row
        .iter()
        .find(|r| r["queue"] == "support")
        .expect("support");
    assert_eq!(
        sample(
            &text,
            "callmetrics_queue_agents_needed",
            &[("queue", "support")]
        ),
        row["agents_needed"].as_f64()
    );
    assert!(row["agents_needed"].as_u64().is_some(), "{row}");

    // The format, as Prometheus' own checker sees it.
    let promtool = Path::new("/usr/bin/promtool");
    assert!(promtool.exists(), "promtool is missing: `.ci/run` installs Debian's `prometheus` package (apt-get install -y prometheus)");
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = check.wait_with_output().expect("promtool ends");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The landing page and anything else.
    let (status, _, body) = get(&addr, "/").expect("GET /");
    assert!(
        status == 200 && body.contains("/metrics"),
        "{status} {body}"
    );
    assert_eq!(get(&addr, "/nothing").expect("GET /nothing").0, 404);

    // kill -9 and restart: the counters go on from where they were, neither reset nor doubled.
    d.kill();
    d.restart();
    let again = scrape(&addr);
    for (q, m) in &queues {
        for (json, prom, unit) in COUNTERS {
            let name = format!("callmetrics_queue_{prom}");
            let v = sample(&again, &name, &[("queue", q)]).map(|v| v * unit);
            assert_eq!(
                v,
                Some(m.get(json).copied().unwrap_or(0) as f64),
                "{name}{{queue={q:?}}} after kill -9"
            );
        }
    }
    assert_eq!(
        sample(
            &again,
            "callmetrics_queue_wait_seconds_bucket",
            &[("queue", "sales"), ("outcome", "answered"), ("le", "20")]
        ),
        Some(1.0)
    );
    // And they go on counting.
    send(&d, &events(now_ms(), "after-restart-"));
    wait_until("the second round counted", DEADLINE, || {
        sample(
            &scrape(&addr),
            "callmetrics_queue_offered_total",
            &[("queue", "support")],
        ) == Some(10.0)
    });
}

/// A Prometheus server of its own: its folder, port and process.
struct Prometheus {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let bin = Path::new("/usr/bin/prometheus");
        assert!(bin.exists(), "prometheus is missing: `.ci/run` installs Debian's `prometheus` package (apt-get install -y prometheus)");
        let dir = tempfile::tempdir().expect("a folder for Prometheus");
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: callmetrics\n    static_configs:\n      - targets: ['{target}']\n"),
        )
        .expect("write the Prometheus config");
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("create the log");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        wait_until("Prometheus ready", Duration::from_secs(60), || {
            matches!(get(&p.addr, "/-/ready"), Ok((200, _, _)))
        });
        p
    }

    /// An instant query's single value, if it has one.
    fn value(&self, promql: &str) -> Option<f64> {
        let q: String = promql
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (status, _, body) = get(&self.addr, &format!("/api/v1/query?query={q}")).ok()?;
        assert_eq!(status, 200, "{promql}: {body}");
        let v: Value = serde_json::from_str(&body).ok()?;
        let result = v["data"]["result"].as_array()?;
        (result.len() == 1).then(|| result[0]["value"][1].as_str()?.parse().ok())?
    }
}

#[test]
fn prometheus_computes_service_level_asa_abandon_rate_and_aht_as_the_cli() {
    let port = free_port();
    let target = format!("127.0.0.1:{port}");
    let d = Daemon::start(&config(port));
    send(&d, &events(now_ms(), "p"));
    let queues = expected(|q, _, _| q.to_string());
    let prom = Prometheus::start(&target);
    for (q, m) in &queues {
        let sel = format!("{{queue=\"{}\"}}", esc(q));
        let handled = m.get("handled").copied().unwrap_or(0) as f64;
        wait_until(
            &format!("Prometheus scraped every call of {q}"),
            Duration::from_secs(60),
            || {
                prom.value(&format!("callmetrics_queue_offered_total{sel}"))
                    == Some(m["offered"] as f64)
                    && prom.value(&format!("callmetrics_queue_handled_total{sel}")) == Some(handled)
            },
        );
    }
    let rows = d.metrics("1h", "queue");
    for q in queues.keys() {
        let row = rows
            .iter()
            .find(|r| r["queue"] == q.as_str())
            .expect("a row per queue");
        let t = threshold_s(q);
        let sel = format!("queue=\"{}\"", esc(q));
        // Service level by the default `offered` formula: A≤T / (A + Ab − S), A≤T from the buckets.
        let sl = format!(
            "sum(callmetrics_queue_wait_seconds_bucket{{{sel},outcome=\"answered\",le=\"{t}\"}}) / (sum(callmetrics_queue_answered_total{{{sel}}}) + sum(callmetrics_queue_abandoned_total{{{sel}}}) - sum(callmetrics_queue_short_abandoned_total{{{sel}}}))"
        );
        let asa = format!("sum(callmetrics_queue_answered_wait_seconds_total{{{sel}}}) / sum(callmetrics_queue_answered_total{{{sel}}})");
        let abandon = format!(
            "(sum(callmetrics_queue_abandoned_total{{{sel}}}) - sum(callmetrics_queue_short_abandoned_total{{{sel}}})) / (sum(callmetrics_queue_offered_total{{{sel}}}) - sum(callmetrics_queue_short_abandoned_total{{{sel}}}))"
        );
        let aht = format!("sum(callmetrics_queue_handle_seconds_sum{{{sel}}}) / sum(callmetrics_queue_handle_seconds_count{{{sel}}})");
        for (promql, json, unit) in [
            (sl, "service_level", 1.0),
            (asa, "asa_ms", 1000.0),
            (abandon, "abandon_rate", 1.0),
            (aht, "aht_ms", 1000.0),
        ] {
            let got = prom.value(&promql).map(|v| v * unit);
            let want = row[json].as_f64();
            // Ratios of the same exact counters: equal up to floating-point rounding (1e-9 relative).
            match (got, want) {
                (Some(g), Some(w)) => assert!(
                    (g - w).abs() <= 1e-9 * w.abs().max(1.0),
                    "{q} {json}: PromQL {g} vs metrics --json {w}\n{promql}"
                ),
                _ => panic!("{q} {json}: PromQL {got:?} vs metrics --json {want:?}\n{promql}"),
            }
        }
    }
}

#[test]
fn the_listener_is_bounded_silent_clients_are_cut_off_and_it_serves_again() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _d = Daemon::start(&config(port));
    // Four connections that never send a request take every slot…
    let silent: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(&addr).expect("connect"))
        .collect();
    thread::sleep(Duration::from_millis(300));
    // …so a fifth is closed at once, without an answer.
    let mut fifth = TcpStream::connect(&addr).expect("connect");
    fifth.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut buf = Vec::new();
    let _ = fifth.read_to_end(&mut buf);
    assert!(buf.is_empty(), "{}", String::from_utf8_lossy(&buf));
    // The silent ones are cut off once the head's read time (5 s) has passed.
    let started = Instant::now();
    for mut s in silent {
        s.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let _ = s.read_to_end(&mut Vec::new());
    }
    assert!(started.elapsed() < DEADLINE);
    // An oversized request head is refused; then scrapes work again.
    let mut big = TcpStream::connect(&addr).expect("connect");
    big.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let huge = "x".repeat(64 * 1024);
    let _ = write!(
        big,
        "GET /metrics HTTP/1.1\r\nHost: a\r\nX-Big: {huge}\r\n\r\n"
    );
    let mut answer = String::new();
    let _ = big.read_to_string(&mut answer);
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(scrape(&addr).contains("callmetrics_build_info"));
}
