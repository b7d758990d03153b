//! The bench's calls: 100 queues, 500 agents, 3 channels, complete calls (start, answer or
//! abandon, end, wrap-up when answered) spread over a time range, from a seeded generator, and
//! their encodings as JSON lines and `MessagePack` batches.

use serde::Serialize;

pub const QUEUES: u32 = 100;
pub const AGENTS: u32 = 500;
pub const CHANNELS: [&str; 3] = ["voice", "chat", "email"];

/// One generated call (times in epoch ms).
#[derive(Debug, Clone)]
pub struct Call {
    pub id: String,
    pub queue: String,
    pub channel: &'static str,
    pub agent: Option<String>,
    pub start: i64,
    pub answer: Option<i64>,
    pub end: i64,
    pub wrapup: Option<i64>,
}

impl Call {
    pub fn events(&self) -> usize {
        if self.answer.is_some() {
            4
        } else {
            2
        }
    }
}

/// `n` calls with ids `prefix-i`, leaving their queue within `from..until` (epoch ms); 85 % are
/// answered (wait up to 60 s, talk 30 s to 10 min, wrap-up up to 60 s), the rest abandoned.
pub fn calls(seed: u64, prefix: &str, n: usize, from: i64, until: i64) -> Vec<Call> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n)
        .map(|i| {
            let leave = rng.i64(from..until);
            let wait = rng.i64(0..60_000);
            let start = leave - wait;
            let queue = format!("q{}", rng.u32(0..QUEUES));
            let channel = CHANNELS[rng.usize(0..CHANNELS.len())];
            let id = format!("{prefix}-{i}");
            if rng.u8(0..100) < 85 {
                let end = leave + rng.i64(30_000..600_000);
                Call {
                    id,
                    queue,
                    channel,
                    agent: Some(format!("a{}", rng.u32(0..AGENTS))),
                    start,
                    answer: Some(leave),
                    end,
                    wrapup: Some(end + rng.i64(0..60_000)),
                }
            } else {
                Call {
                    id,
                    queue,
                    channel,
                    agent: None,
                    start,
                    answer: None,
                    end: leave,
                    wrapup: None,
                }
            }
        })
        .collect()
}

/// An event as a client sends it (only the fields it has).
#[derive(Serialize)]
struct Wire<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    call_id: &'a str,
    ts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    queue: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

fn wire(c: &Call) -> Vec<Wire<'_>> {
    let base = |kind, ts| Wire {
        kind,
        call_id: &c.id,
        ts,
        queue: None,
        channel: None,
        agent: None,
        reason: None,
    };
    let mut out = vec![Wire {
        queue: Some(&c.queue),
        channel: Some(c.channel),
        ..base("start", c.start)
    }];
    if let Some(a) = c.answer {
        out.push(Wire {
            agent: c.agent.as_deref(),
            ..base("answer", a)
        });
    }
    out.push(Wire {
        reason: Some(if c.answer.is_some() {
            "completed"
        } else {
            "abandoned"
        }),
        ..base("end", c.end)
    });
    if let Some(w) = c.wrapup {
        out.push(base("wrapup", w));
    }
    out
}

/// A connection's worth of input: the bytes to send and the replies they will get.
pub struct Payload {
    pub bytes: Vec<u8>,
    pub messages: usize,
    pub events: usize,
    /// Events in each message, in order.
    pub per_message: Vec<usize>,
}

/// One JSON line per event.
pub fn json_lines(calls: &[Call]) -> Payload {
    let mut bytes = Vec::with_capacity(calls.len() * 380);
    let mut events = 0;
    for c in calls {
        for w in wire(c) {
            // Serializing a plain struct of strings and integers to a Vec cannot fail.
            serde_json::to_writer(&mut bytes, &w).expect("encode an event");
            bytes.push(b'\n');
            events += 1;
        }
    }
    Payload {
        bytes,
        messages: events,
        events,
        per_message: vec![1; events],
    }
}

/// Frames of a 4-byte big-endian length and a `MessagePack` array of `batch` events.
pub fn msgpack_batches(calls: &[Call], batch: usize) -> Payload {
    let all: Vec<Wire<'_>> = calls.iter().flat_map(wire).collect();
    let mut bytes = Vec::with_capacity(all.len() * 80);
    let mut per_message = Vec::new();
    for chunk in all.chunks(batch) {
        // As above: plain data always encodes.
        let body = rmp_serde::encode::to_vec_named(chunk).expect("encode a batch");
        bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&body);
        per_message.push(chunk.len());
    }
    Payload {
        bytes,
        messages: per_message.len(),
        events: all.len(),
        per_message,
    }
}

/// Splits calls over `n` connections (calls of one id stay on one connection).
pub fn split(calls: &[Call], n: usize) -> Vec<&[Call]> {
    let per = calls.len().div_ceil(n.max(1)).max(1);
    calls.chunks(per).collect()
}
