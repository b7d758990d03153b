//! The `freeswitch` source against the real daemon and a scripted event-socket server on
//! loopback that speaks `mod_event_socket`'s wire protocol: `auth/request`, `command/reply`
//! with `Reply-Text`, `text/event-plain` frames with `Content-Length` and URL-encoded headers,
//! `api/response` to the daemon's probes, `text/disconnect-notice`. Frames are written in small
//! pieces, so the daemon reads them split anywhere.
//!
//! The figures of `metrics --json` are compared with the calls each script models: counted by
//! hand for the fixture (`tests/fixtures/freeswitch/callcenter.events`, its calls listed in its
//! comment lines), computed from the call table for the reconnect scenario.

mod support;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{free_port, now_ms, scrape_metrics, Daemon};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpListener;

const PASSWORD: &str = "ClueCon-7f3a";
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/freeswitch/callcenter.events"
);

/// What the server does on one connection after the handshake.
#[derive(Debug, Clone)]
enum Step {
    /// A `text/event-plain` frame with this plain body.
    Event(String),
    /// Raw bytes (half a frame, say).
    Raw(String),
    /// A `text/disconnect-notice` frame.
    Notice,
    /// Close the connection (after a notice, or mid-stream without one).
    Close,
}

/// What the server saw.
#[derive(Debug, Default)]
struct Seen {
    /// Connections accepted.
    connections: usize,
    /// Passwords of `auth` commands, in order.
    auths: Vec<String>,
    /// Every other command, in order.
    commands: Vec<String>,
    /// Connections whose script was written to its end.
    scripts_done: usize,
}

/// A scripted event-socket server: an authenticated connection plays the queued scripts in turn
/// (a script may close it; the next connection plays the next), waits for more while none is
/// queued, and answers probes.
struct EslServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    scripts: Arc<Mutex<VecDeque<Vec<Step>>>>,
    _rt: tokio::runtime::Runtime,
}

impl EslServer {
    fn start(password: &str) -> EslServer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime for the scripted server");
        let listener = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("listen on loopback");
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let scripts = Arc::new(Mutex::new(VecDeque::new()));
        let (s2, q2, pw) = (seen.clone(), scripts.clone(), password.to_string());
        rt.spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                s2.lock().unwrap().connections += 1;
                tokio::spawn(serve(sock, pw.clone(), s2.clone(), q2.clone()));
            }
        });
        EslServer {
            addr,
            seen,
            scripts,
            _rt: rt,
        }
    }

    fn queue(&self, script: Vec<Step>) {
        self.scripts.lock().unwrap().push_back(script);
    }

    fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap())
    }
}

/// Writes `bytes` in pieces of 1 to 61 bytes, pausing now and then, so frames arrive split.
async fn write_split(w: &mut OwnedWriteHalf, bytes: &[u8]) -> std::io::Result<()> {
    let mut at = 0;
    let mut n = 1;
    while at < bytes.len() {
        let end = (at + n).min(bytes.len());
        w.write_all(&bytes[at..end]).await?;
        w.flush().await?;
        at = end;
        n = n * 7 % 61 + 1;
        if n % 5 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    Ok(())
}

/// Reads one command (ended by an empty line); `None` at the end of the stream.
async fn command(r: &mut tokio::net::tcp::OwnedReadHalf, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\n\n") {
            let cmd = String::from_utf8_lossy(&buf[..i]).trim().to_string();
            buf.drain(..i + 2);
            return Some(cmd);
        }
        let mut chunk = [0u8; 1024];
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn reply(text: &str) -> Vec<u8> {
    format!("Content-Type: command/reply\nReply-Text: {text}\n\n").into_bytes()
}

fn notice() -> Vec<u8> {
    let msg = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n";
    format!(
        "Content-Type: text/disconnect-notice\nContent-Length: {}\n\n{msg}",
        msg.len()
    )
    .into_bytes()
}

/// One connection, as `mod_event_socket` serves an inbound client.
async fn serve(
    sock: tokio::net::TcpStream,
    password: String,
    seen: Arc<Mutex<Seen>>,
    scripts: Arc<Mutex<VecDeque<Vec<Step>>>>,
) {
    let (mut r, mut w) = sock.into_split();
    let mut buf = Vec::new();
    if w.write_all(b"Content-Type: auth/request\n\n")
        .await
        .is_err()
    {
        return;
    }
    let Some(auth) = command(&mut r, &mut buf).await else {
        return;
    };
    let given = auth.strip_prefix("auth ").unwrap_or("").to_string();
    seen.lock().unwrap().auths.push(given.clone());
    if given != password {
        let _ = w.write_all(&reply("-ERR invalid")).await;
        let _ = w.write_all(&notice()).await;
        return;
    }
    let _ = w.write_all(&reply("+OK accepted")).await;
    let Some(sub) = command(&mut r, &mut buf).await else {
        return;
    };
    seen.lock().unwrap().commands.push(sub.clone());
    if sub == "event plain CUSTOM callcenter::info" {
        let _ = w
            .write_all(&reply("+OK event listener enabled plain"))
            .await;
    } else {
        let _ = w.write_all(&reply("-ERR no keywords supplied")).await;
        return;
    }
    let w = Arc::new(tokio::sync::Mutex::new(w));
    // Later commands (the daemon's `api version` probes) are answered as they come.
    let (w2, seen2) = (w.clone(), seen.clone());
    let reader = tokio::spawn(async move {
        while let Some(cmd) = command(&mut r, &mut buf).await {
            seen2.lock().unwrap().commands.push(cmd.clone());
            let body = if cmd == "api version" {
                "FreeSWITCH Version 1.10.12-release (scripted)\n".to_string()
            } else {
                "-ERR command not found\n".to_string()
            };
            let frame = format!(
                "Content-Type: api/response\nContent-Length: {}\n\n{body}",
                body.len()
            );
            if w2.lock().await.write_all(frame.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    // Scripts queued now or later are played in turn; the connection stays open between them.
    while !reader.is_finished() {
        let script = scripts.lock().unwrap().pop_front();
        let Some(script) = script else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        for step in script {
            let mut w = w.lock().await;
            let written = match step {
                Step::Event(body) => {
                    let frame = format!(
                        "Content-Length: {}\nContent-Type: text/event-plain\n\n{body}",
                        body.len()
                    );
                    write_split(&mut w, frame.as_bytes()).await
                }
                Step::Raw(bytes) => write_split(&mut w, bytes.as_bytes()).await,
                Step::Notice => write_split(&mut w, &notice()).await,
                Step::Close => {
                    let _ = w.shutdown().await;
                    reader.abort();
                    seen.lock().unwrap().scripts_done += 1;
                    return;
                }
            };
            if written.is_err() {
                return;
            }
        }
        seen.lock().unwrap().scripts_done += 1;
    }
}

/// `switch_url_encode`: what `mod_event_socket` does to each header value of a plain event.
fn url_encode(s: &str) -> String {
    const UNSAFE: &[u8] = b"\r\n \"#%&+:;<=>?@[\\]^`{|}";
    s.bytes()
        .map(|b| {
            if (b' '..=b'~').contains(&b) && !UNSAFE.contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A plain `callcenter::info` event at `ms` with these `CC-*` (and channel) headers.
fn plain(ms: i64, headers: &[(&str, &str)]) -> String {
    let mut h = vec![
        ("Event-Name".to_string(), "CUSTOM".to_string()),
        (
            "Core-UUID".to_string(),
            "5e0c7a52-9d2e-4c1b-8f3a-1b2c3d4e5f60".to_string(),
        ),
        (
            "Event-Date-Timestamp".to_string(),
            (ms * 1000 + 789).to_string(),
        ),
        ("Event-Subclass".to_string(), "callcenter::info".to_string()),
    ];
    h.extend(
        headers
            .iter()
            .map(|(n, v)| ((*n).to_string(), (*v).to_string())),
    );
    let mut out = String::new();
    for (n, v) in &h {
        out.push_str(&format!("{n}: {}\n", url_encode(v)));
    }
    out.push('\n');
    out
}

/// The fixture's events, their times moved by `shift_us`.
fn fixture_events(shift_us: i64) -> Vec<String> {
    let text = std::fs::read_to_string(FIXTURE).expect("read the FreeSWITCH fixture");
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.strip_prefix("Event-Date-Timestamp: ") {
            Some(us) => format!(
                "Event-Date-Timestamp: {}\n",
                us.parse::<i64>().expect("a timestamp in the fixture") + shift_us
            ),
            None => format!("{l}\n"),
        })
        .collect();
    body.split_terminator("\n\n")
        .map(|e| format!("{}\n\n", e.trim_start_matches('\n')))
        .collect()
}

/// The latest `Event-Date-Timestamp` of the fixture, in microseconds.
fn fixture_last_us() -> i64 {
    std::fs::read_to_string(FIXTURE)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("Event-Date-Timestamp: "))
        .map(|v| v.parse::<i64>().unwrap())
        .max()
        .unwrap()
}

fn password_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

fn source_config(name: &str, addr: SocketAddr, password_file: &Path) -> String {
    format!(
        "\n[[sources]]\nname = \"{name}\"\nkind = \"freeswitch\"\naddress = \"{addr}\"\npassword_file = {password_file:?}\n"
    )
}

/// A daemon with `extra` config (sources and more), wrap-up timeout 1 s.
fn daemon(extra: impl Fn(&Path) -> String) -> Daemon {
    let mut d = Daemon::configure("");
    let text = extra(d.dir.path());
    d.rewrite_config(&format!("\n[metrics]\nwrapup_timeout = \"1s\"\n{text}"));
    d.restart();
    d
}

const KEYS: [&str; 10] = [
    "offered",
    "answered",
    "answered_within",
    "abandoned",
    "short_abandoned",
    "overflow",
    "wait_sum_ms",
    "wait_max_ms",
    "handled",
    "talk_sum_ms",
];

/// The figures of one queue over 24 h.
fn figures(d: &Daemon, queue: &str) -> Option<[i64; 10]> {
    d.metrics("24h", "queue")
        .iter()
        .find(|r| r["queue"] == queue)
        .map(|r| KEYS.map(|k| r[k].as_i64().unwrap_or(-1)))
}

fn wait_figures(d: &Daemon, queue: &str, want: [i64; 10]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = figures(d, queue);
        if got == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{queue}: {got:?} != {want:?} ({KEYS:?})\n{}",
            d.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_fixture_read_from_the_event_socket_gives_its_calls_figures() {
    let server = EslServer::start(PASSWORD);
    // The fixture's last event two seconds ago.
    let shift = (now_ms() - 2_000) * 1000 - fixture_last_us();
    let events = fixture_events(shift);
    assert_eq!(events.len(), 28, "events in the fixture");
    server.queue(events.into_iter().map(Step::Event).collect());
    let port = free_port();
    let d = daemon(|dir| {
        let pw = password_file(dir, "esl.pass", &format!("  {PASSWORD}\n"), 0o600);
        format!(
            "\n[exposition]\nlisten = \"127.0.0.1:{port}\"\n{}",
            source_config("fs1", server.addr, &pw)
        )
    });

    // By hand from the fixture's comment (T = 20 s, S = 5 s): answered calls 1 (8.5 s, talk
    // 60.001 s) and 5 (21 s, talk 40.001 s), abandoned call 2 (15.25 s), overflow calls 3
    // (timeout, 60 s), 4 (exit, 12.5 s) and 6 (transferred, 5 s).
    wait_figures(
        &d,
        "support@default",
        [6, 2, 1, 1, 0, 3, 29_500, 60_000, 2, 100_002],
    );
    let by_agent: Vec<(String, i64)> = d
        .metrics("24h", "agent")
        .iter()
        .map(|r| {
            (
                r["agent"].as_str().unwrap().to_string(),
                r["answered"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by_agent,
        [
            ("1000@default".to_string(), 1),
            ("1002@default".to_string(), 1)
        ]
    );
    let s = d.wait_source("fs1", Duration::from_secs(10), "every event stored", |s| {
        s["events_stored"] == 14
    });
    assert_eq!(s["state"], "connected", "{s}");
    assert_eq!(s["kind"], "freeswitch", "{s}");
    assert_eq!(s["path"], server.addr.to_string(), "{s}");
    assert_eq!(s["lines_read"], 28, "{s}");
    assert_eq!(s["events_mapped"], 14, "{s}");
    assert_eq!(s["reconnects"], 0, "{s}");
    assert_eq!(
        s["skipped"],
        serde_json::json!({"agent_or_count": {
            "agent-offering": 3, "agent-state-change": 3, "agent-status-change": 3,
            "bridge-agent-end": 2, "bridge-agent-fail": 1, "members-count": 2
        }}),
        "{s}"
    );
    // The lag counts from the last event's time (2 s ago when the script was made).
    let lag = s["lag_seconds"].as_f64().expect("a lag");
    assert!((2.0..60.0).contains(&lag), "lag {lag}: {s}");
    server.seen(|seen| {
        assert_eq!(seen.auths, [PASSWORD], "the password, trimmed");
        assert_eq!(seen.commands[0], "event plain CUSTOM callcenter::info");
    });
    let st = d.status();
    assert_eq!(st["engine"]["duplicates"], 0, "{st}");
    let text = scrape_metrics(port);
    for line in [
        "callmetrics_source_lines_total{source=\"fs1\"} 28",
        "callmetrics_source_connected{source=\"fs1\"} 1",
        "callmetrics_source_reconnects_total{source=\"fs1\"} 0",
    ] {
        assert!(text.contains(line), "no `{line}` in\n{text}");
    }
}

/// One call of the reconnect scenario, times in ms after the base.
struct Call {
    member: &'static str,
    start: i64,
    /// Answer time and agent.
    answer: Option<(i64, &'static str)>,
    /// End time and its `member-queue-end` headers.
    end: Option<(i64, &'static [(&'static str, &'static str)])>,
    /// Outcome the end stands for: "completed", "abandoned", "overflow".
    outcome: &'static str,
    /// Events up to this index (start, answer, end) go on the first connection, the rest on the
    /// second.
    before_drop: usize,
}

const TERMINATED: &[(&str, &str)] = &[
    ("CC-Cause", "Terminated"),
    ("CC-Hangup-Cause", "NORMAL_CLEARING"),
];
const HUNG_UP: &[(&str, &str)] = &[
    ("CC-Cause", "Cancel"),
    ("CC-Cancel-Reason", "BREAK_OUT"),
    ("Answer-State", "hangup"),
    ("Hangup-Cause", "ORIGINATOR_CANCEL"),
];
const TIMED_OUT: &[(&str, &str)] = &[("CC-Cause", "Cancel"), ("CC-Cancel-Reason", "TIMEOUT")];

fn calls() -> Vec<Call> {
    vec![
        // Answered and ended before the drop.
        Call {
            member: "aaaa0001",
            start: 0,
            answer: Some((5_000, "a1@default")),
            end: Some((35_000, TERMINATED)),
            outcome: "completed",
            before_drop: 3,
        },
        // Abandoned before the drop.
        Call {
            member: "aaaa0002",
            start: 2_000,
            answer: None,
            end: Some((10_000, HUNG_UP)),
            outcome: "abandoned",
            before_drop: 2,
        },
        // Waiting at the drop; answered and ended after the reconnect: continued.
        Call {
            member: "aaaa0003",
            start: 4_000,
            answer: Some((50_000, "a1@default")),
            end: Some((70_000, TERMINATED)),
            outcome: "completed",
            before_drop: 1,
        },
        // Waiting at the drop, never heard of again: expires.
        Call {
            member: "aaaa0004",
            start: 6_000,
            answer: None,
            end: None,
            outcome: "expired",
            before_drop: 1,
        },
        // Talking at the drop, its end lost: answered, then expires.
        Call {
            member: "aaaa0005",
            start: 8_000,
            answer: Some((12_000, "a2@default")),
            end: None,
            outcome: "expired",
            before_drop: 2,
        },
        // A whole call after the reconnect.
        Call {
            member: "aaaa0006",
            start: 72_000,
            answer: None,
            end: Some((80_000, TIMED_OUT)),
            outcome: "overflow",
            before_drop: 0,
        },
    ]
}

/// The events of every call as (time, plain body), split at the drop.
/// Plain event bodies with their times (ms after the base).
type Timed = Vec<(i64, String)>;

fn scenario(base: i64) -> (Timed, Timed) {
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for c in calls() {
        let mut evs = vec![(
            c.start,
            plain(
                base + c.start,
                &[
                    ("CC-Queue", "sales@default"),
                    ("CC-Action", "member-queue-start"),
                    ("CC-Member-UUID", c.member),
                ],
            ),
        )];
        if let Some((t, agent)) = c.answer {
            evs.push((
                t,
                plain(
                    base + t,
                    &[
                        ("CC-Queue", "sales@default"),
                        ("CC-Action", "bridge-agent-start"),
                        ("CC-Agent", agent),
                        ("CC-Member-UUID", c.member),
                    ],
                ),
            ));
        }
        if let Some((t, extra)) = c.end {
            let mut h = vec![
                ("CC-Queue", "sales@default"),
                ("CC-Action", "member-queue-end"),
                ("CC-Member-UUID", c.member),
            ];
            h.extend_from_slice(extra);
            evs.push((t, plain(base + t, &h)));
        }
        for (i, e) in evs.into_iter().enumerate() {
            if i < c.before_drop {
                first.push(e);
            } else {
                second.push(e);
            }
        }
    }
    first.sort_by_key(|e| e.0);
    second.sort_by_key(|e| e.0);
    (first, second)
}

/// The figures the call table gives (T = 20 s, S = 5 s), in [`KEYS`] order: an answer counts
/// when it comes, whether or not the end is lost; a call never answered nor ended counts
/// nowhere (it expires).
fn expected(calls: &[Call]) -> [i64; 10] {
    let mut f = [0i64; 10];
    for c in calls {
        let wait = match (c.answer, c.end) {
            (Some((a, _)), _) => {
                f[1] += 1;
                f[2] += i64::from(a - c.start <= 20_000);
                f[6] += a - c.start;
                if let (Some((e, _)), "completed") = (c.end, c.outcome) {
                    f[8] += 1;
                    f[9] += e - a;
                }
                a - c.start
            }
            (None, Some((e, _))) => {
                match c.outcome {
                    "abandoned" => {
                        f[3] += 1;
                        f[4] += i64::from(e - c.start < 5_000);
                    }
                    _ => f[5] += 1,
                }
                e - c.start
            }
            (None, None) => continue,
        };
        f[7] = f[7].max(wait);
    }
    f[0] = f[1] + f[3] + f[5];
    f
}

#[test]
fn a_dropped_connection_is_made_again_and_what_it_left_open_expires() {
    let server = EslServer::start(PASSWORD);
    // Calls 100 s old: with max_call_duration 1m, a segment left open expires at the engine's
    // next scan once quiet for 10 s; those continued within seconds are not touched.
    let base = now_ms() - 100_000;
    let (first, second) = scenario(base);
    let mut script1: Vec<Step> = first.into_iter().map(|(_, b)| Step::Event(b)).collect();
    // Mid-stream: half of an agent's event, then the connection drops without a notice.
    let half = plain(
        base + 20_000,
        &[
            ("CC-Agent", "a2@default"),
            ("CC-Action", "agent-state-change"),
            ("CC-Agent-State", "Idle"),
        ],
    );
    script1.push(Step::Raw(format!(
        "Content-Length: {}\nContent-Type: text/event-plain\n\n{}",
        half.len(),
        &half[..half.len() / 2]
    )));
    script1.push(Step::Close);
    let mut script2: Vec<Step> = second.into_iter().map(|(_, b)| Step::Event(b)).collect();
    script2.push(Step::Event(plain(
        base + 81_000,
        &[
            ("CC-Queue", "sales@default"),
            ("CC-Action", "member-queue-frobnicate"),
            ("CC-Member-UUID", "aaaa0007"),
        ],
    )));
    script2.push(Step::Notice);
    script2.push(Step::Close);
    server.queue(script1);
    server.queue(script2);
    let port = free_port();
    let d = daemon(|dir| {
        let pw = password_file(dir, "esl.pass", PASSWORD, 0o600);
        format!(
            "max_call_duration = \"1m\"\n\n[exposition]\nlisten = \"127.0.0.1:{port}\"\n{}",
            source_config("fs1", server.addr, &pw)
        )
    });

    // Dropped mid-stream, then ended by a notice: two reconnects, the third connection stays.
    let s = d.wait_source("fs1", Duration::from_secs(30), "two reconnects", |s| {
        s["reconnects"] == 2 && s["state"] == "connected" && s["continued_after_reconnect"] == 1
    });
    assert_eq!(server.seen(|s| (s.connections, s.scripts_done)), (3, 2));
    let last_error = s["last_error"].as_str().unwrap_or("");
    assert!(
        last_error.contains("FreeSWITCH ended the connection: Disconnected, goodbye."),
        "{s}"
    );
    // Open when the first connection dropped: calls 3, 4 and 5; 3 came back.
    assert_eq!(s["open_at_disconnect"], 3, "{s}");
    let calls = calls();
    let events: usize = calls
        .iter()
        .map(|c| 1 + usize::from(c.answer.is_some()) + usize::from(c.end.is_some()))
        .sum();
    assert_eq!(s["events_mapped"], events as u64, "{s}");
    assert_eq!(
        s["skipped"]["unknown_action"]["member-queue-frobnicate"], 1,
        "{s}"
    );
    // The half event was never read.
    assert_eq!(s["lines_read"], events as u64 + 1, "{s}");

    // The two left open expire at the engine's scan (every minute) and are counted as such.
    let s = d.wait_source("fs1", Duration::from_secs(90), "two expired", |s| {
        s["expired_after_disconnect"] == 2
    });
    assert_eq!(s["awaiting_after_disconnect"], 0, "{s}");
    assert_eq!(d.status()["engine"]["expired_segments"], 2);
    wait_figures(&d, "sales@default", expected(&calls));
    let text = scrape_metrics(port);
    for line in [
        "callmetrics_source_reconnects_total{source=\"fs1\"} 2",
        "callmetrics_source_expired_after_disconnect_total{source=\"fs1\"} 2",
        "callmetrics_source_connected{source=\"fs1\"} 1",
    ] {
        assert!(text.contains(line), "no `{line}` in\n{text}");
    }
    let out = d.query(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("2 reconnects; open at a disconnect 3: 1 continued, 2 expired, 0 awaited"),
        "{text}"
    );
}

#[test]
fn a_wrong_password_or_a_readable_password_file_is_an_error_in_status() {
    let server = EslServer::start(PASSWORD);
    let readable = Arc::new(Mutex::new(PathBuf::new()));
    let r2 = readable.clone();
    let d = daemon(move |dir| {
        let wrong = password_file(dir, "wrong.pass", "not-the-password\n", 0o600);
        let open = password_file(dir, "open.pass", PASSWORD, 0o644);
        *r2.lock().unwrap() = open.clone();
        format!(
            "{}{}",
            source_config("fsbad", server.addr, &wrong),
            source_config("fsopen", server.addr, &open)
        )
    });
    let s = d.wait_source("fsbad", Duration::from_secs(15), "the refusal", |s| {
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("refused the password"))
    });
    assert_eq!(s["state"], "connecting", "never connected: {s}");
    assert!(s["next_attempt_ms"].as_i64().is_some(), "{s}");
    let s = d.source("fsopen");
    let e = s["last_error"].as_str().unwrap_or("");
    assert!(e.contains("readable by every user (mode 644)"), "{s}");
    // Tried again with backoff, the daemon alive; the readable file's password never sent.
    d.wait_source("fsbad", Duration::from_secs(15), "a second attempt", |_| {
        server.seen(|s| s.auths.len() >= 2)
    });
    server.seen(|s| {
        assert!(
            s.auths.iter().all(|a| a == "not-the-password"),
            "{:?}",
            s.auths
        );
    });
    assert!(d.is_running());
    let out = d.query(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("fsbad (freeswitch"), "{text}");
    assert!(
        text.contains("not connected yet, next attempt in"),
        "{text}"
    );
    // Made private, the file is read at the next attempt: no restart needed.
    std::fs::set_permissions(
        &*readable.lock().unwrap(),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let s = d.wait_source("fsopen", Duration::from_secs(40), "connected", |s| {
        s["state"] == "connected"
    });
    assert_eq!(s["reconnects"], 0, "{s}");
}

#[test]
fn after_a_restart_the_lag_is_known_and_a_call_left_open_is_continued() {
    let server = EslServer::start(PASSWORD);
    let base = now_ms() - 60_000;
    let q = ("CC-Queue", "support@default");
    let start = |ms: i64, member: &str| {
        Step::Event(plain(
            base + ms,
            &[
                q,
                ("CC-Action", "member-queue-start"),
                ("CC-Member-UUID", member),
            ],
        ))
    };
    let answer = |ms: i64, member: &str| {
        Step::Event(plain(
            base + ms,
            &[
                q,
                ("CC-Action", "bridge-agent-start"),
                ("CC-Agent", "a1@default"),
                ("CC-Member-UUID", member),
            ],
        ))
    };
    let ended = |ms: i64, member: &str| {
        let mut h = vec![
            q,
            ("CC-Action", "member-queue-end"),
            ("CC-Member-UUID", member),
        ];
        h.extend_from_slice(TERMINATED);
        Step::Event(plain(base + ms, &h))
    };
    // Call y whole (wait 2 s, talk 10 s), call x answered (wait 3 s) and still talking.
    server.queue(vec![
        start(0, "y"),
        start(1_000, "x"),
        answer(2_000, "y"),
        answer(4_000, "x"),
        ended(12_000, "y"),
    ]);
    let mut d = daemon(|dir| {
        let pw = password_file(dir, "esl.pass", PASSWORD, 0o600);
        source_config("fs1", server.addr, &pw)
    });
    d.wait_source("fs1", Duration::from_secs(30), "five events stored", |s| {
        s["events_stored"] == 5
    });
    d.terminate();
    d.restart();
    // Connected again, nothing read yet: x is tracked, the lag counts from y's end.
    let s = d.wait_source("fs1", Duration::from_secs(30), "connected", |s| {
        s["state"] == "connected"
    });
    assert_eq!(s["lines_read"], 0, "{s}");
    assert_eq!(s["open_at_disconnect"], 1, "{s}");
    assert_eq!(s["awaiting_after_disconnect"], 1, "{s}");
    let lag = s["lag_seconds"]
        .as_f64()
        .expect("the lag from the stored time");
    let want = (now_ms() - (base + 12_000)) as f64 / 1000.0;
    assert!(
        (want - 5.0..=want + 1.0).contains(&lag),
        "lag {lag}, about {want}: {s}"
    );
    // x ends now: continued, and counted with y.
    server.queue(vec![ended(20_000, "x")]);
    let s = d.wait_source("fs1", Duration::from_secs(30), "x continued", |s| {
        s["continued_after_reconnect"] == 1
    });
    assert_eq!(s["awaiting_after_disconnect"], 0, "{s}");
    assert_eq!(s["reconnects"], 0, "a new daemon's first connection: {s}");
    // offered, answered, within, abandoned, short, overflow, wait sum, max, handled, talk.
    wait_figures(
        &d,
        "support@default",
        [2, 2, 2, 0, 0, 0, 5_000, 3_000, 2, 26_000],
    );
    assert_eq!(d.status()["engine"]["duplicates"], 0);
}
