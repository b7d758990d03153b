//! Decoding benchmark (`cargo bench --bench decode`): what turning received bytes into validated
//! events costs one core, the typed decoder (`ingest::decode`) side by side with the
//! `serde_json::Value` path it replaced (`src/ingest/reference.rs`, compiled into this bench only).
//!
//! Realistic events: complete calls of `start` (queue, channel), `answer` (agent), `end` and
//! `wrapup`, call ids like `json_16conn-3-123456`, timestamps in epoch milliseconds, encoded as
//! clients send them: single JSON lines, JSON batches of 100 and `MessagePack` batches of 100. Each
//! case is timed for decoding and validation alone, then with the reply built and encoded too.
//! Prints events/s on one thread (best of several rounds), old and new, and the ratio.
//!
//! Knobs (environment): `CALLMETRICS_BENCH_DECODE_EVENTS` (events per round, default 400 000),
//! `CALLMETRICS_BENCH_DECODE_ROUNDS` (default 5), `CALLMETRICS_BENCH_DECODE_PATHS` (`old`,
//! `new` or `both`, the default; one path alone is for profilers). An argument (`cargo bench
//! --bench decode -- MessagePack`) runs only the cases whose label contains it.

use std::hint::black_box;
use std::time::{Duration, Instant};

use callmetrics::event::{Event, EventKind, EventLimits};
use callmetrics::ingest::decode::{decode_json, decode_msgpack, Decoded};
use callmetrics::ingest::framing::Framing;
use callmetrics::ingest::reply::{encode_reply, Reply};
use serde_json::Value;

// The reference decoder names `crate::event` and `crate::ingest`: point them at the library.
mod event {
    pub use callmetrics::event::*;
}
mod ingest {
    pub use callmetrics::ingest::*;
}
#[allow(dead_code)]
#[path = "../src/ingest/reference.rs"]
mod reference;

const BATCH: usize = 100;
const MAX_BATCH_EVENTS: usize = 4096;

/// The generator's seed: every run decodes the same events.
const SEED: u64 = 7;

/// The four events of one answered call, spread over the last day before `now`.
fn call_events(rng: &mut fastrand::Rng, call_id: &str, now: i64) -> [Event; 4] {
    let wrapup = now - rng.i64(0..23 * 3_600_000);
    let end = wrapup - rng.i64(0..60_000);
    let answer = end - 30_000 - rng.i64(0..570_000);
    let start = answer - rng.i64(0..60_000);
    let mut s = Event::new(EventKind::Start, call_id, start);
    s.queue = Some(format!("q{}", rng.u32(0..100)));
    s.channel = Some(["voice", "chat", "email"][rng.usize(0..3)].to_string());
    let mut a = Event::new(EventKind::Answer, call_id, answer);
    a.agent = Some(format!("a{}", rng.u32(0..500)));
    [
        s,
        a,
        Event::new(EventKind::End, call_id, end),
        Event::new(EventKind::Wrapup, call_id, wrapup),
    ]
}

fn events(n: usize) -> Vec<Value> {
    let now = 1_795_341_600_000;
    let mut rng = fastrand::Rng::with_seed(SEED);
    let mut out = Vec::with_capacity(n + 4);
    let mut k = 0;
    while out.len() < n {
        let call_id = format!("json_16conn-{}-{}", k % 16, 100_000 + k / 16);
        out.extend(
            call_events(&mut rng, &call_id, now)
                .iter()
                .map(Event::to_json),
        );
        k += 1;
    }
    out.truncate(n);
    out
}

/// One way of decoding a line or frame: to the events and errors the connection submits.
type DecodeFn = fn(&[u8], &EventLimits, usize) -> Result<Decoded, String>;

/// A case: its label, its inputs, events per input, their framing, the old and the new decoder.
type Case<'a> = (&'a str, &'a [Vec<u8>], usize, Framing, DecodeFn, DecodeFn);

/// Decodes every input; checks every event came out valid (a bench of errors would be no bench).
fn decode_all(decode: DecodeFn, inputs: &[Vec<u8>], limits: &EventLimits) -> usize {
    let mut valid = 0;
    for input in inputs {
        match decode(input, limits, MAX_BATCH_EVENTS) {
            Ok(Decoded::One(Ok(event))) => {
                black_box(&event);
                valid += 1;
            }
            Ok(Decoded::Batch(items)) => {
                for event in items.into_iter().flatten() {
                    black_box(&event);
                    valid += 1;
                }
            }
            other => panic!("a realistic event failed: {other:?}"),
        }
    }
    valid
}

/// The reply each input gets when all its events are stored, as the connection writes it.
fn reply_all(
    typed: bool,
    framing: Framing,
    inputs: &[Vec<u8>],
    per_input: usize,
    out: &mut Vec<u8>,
) {
    for _ in inputs {
        if typed {
            let reply = if per_input == 1 {
                Reply::Ok
            } else {
                Reply::Batch {
                    total: per_input,
                    failed: Vec::new(),
                }
            };
            encode_reply(framing, &reply, out);
        } else {
            let value = reference::reply_value(per_input > 1, vec![Ok(()); per_input]);
            reference::encode_reply(framing, &value, out);
        }
        black_box(&out);
    }
}

/// The best of `rounds` runs of `f`.
fn best(rounds: usize, mut f: impl FnMut()) -> Duration {
    (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let n = env_usize("CALLMETRICS_BENCH_DECODE_EVENTS", 400_000);
    let rounds = env_usize("CALLMETRICS_BENCH_DECODE_ROUNDS", 5).max(1);
    let paths = std::env::var("CALLMETRICS_BENCH_DECODE_PATHS").unwrap_or_default();
    let (run_old, run_new) = (paths != "new", paths != "old");
    // `cargo bench` passes `--bench`; any other argument filters the cases.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let limits = EventLimits::default();
    let evs = events(n);

    let lines: Vec<Vec<u8>> = evs
        .iter()
        .map(|e| serde_json::to_vec(e).expect("encode JSON"))
        .collect();
    let json_batches: Vec<Vec<u8>> = evs
        .chunks(BATCH)
        .map(|c| serde_json::to_vec(&Value::Array(c.to_vec())).expect("encode JSON"))
        .collect();
    let frames: Vec<Vec<u8>> = evs
        .chunks(BATCH)
        .map(|c| rmp_serde::to_vec_named(&Value::Array(c.to_vec())).expect("encode frame"))
        .collect();
    let bytes = |inputs: &[Vec<u8>]| inputs.iter().map(Vec::len).sum::<usize>() as f64 / n as f64;
    println!(
        "{n} events ({:.0} B/event as JSON lines, {:.0} as JSON batches, {:.0} as MessagePack \
         batches), best of {rounds} rounds, one thread",
        bytes(&lines),
        bytes(&json_batches),
        bytes(&frames)
    );

    let cases: [Case; 3] = [
        (
            "JSON lines, 1 event each",
            &lines,
            1,
            Framing::JsonLines,
            reference::decode_json,
            decode_json,
        ),
        (
            "JSON lines, batches of 100",
            &json_batches,
            BATCH,
            Framing::JsonLines,
            reference::decode_json,
            decode_json,
        ),
        (
            "MessagePack frames, batches of 100",
            &frames,
            BATCH,
            Framing::MsgPack,
            reference::decode_msgpack,
            decode_msgpack,
        ),
    ];
    println!(
        "\n{:<46} {:>14} {:>14} {:>8}",
        "events/s per core", "Value (old)", "typed (new)", "ratio"
    );
    let mut out = Vec::new();
    for (label, inputs, per_input, framing, old, new) in cases {
        if filter.as_ref().is_some_and(|f| !label.contains(f.as_str())) {
            continue;
        }
        for with_reply in [false, true] {
            let mut run = |decode: DecodeFn, typed: bool| {
                best(rounds, || {
                    assert_eq!(decode_all(decode, inputs, &limits), n);
                    if with_reply {
                        reply_all(typed, framing, inputs, per_input, &mut out);
                    }
                })
            };
            let old_eps = run_old.then(|| n as f64 / run(old, false).as_secs_f64());
            let new_eps = run_new.then(|| n as f64 / run(new, true).as_secs_f64());
            let shown = |eps: Option<f64>| eps.map_or("-".into(), |e| format!("{e:.0}"));
            let ratio = match (old_eps, new_eps) {
                (Some(o), Some(n)) => format!("{:.1}x", n / o),
                _ => "-".into(),
            };
            let what = if with_reply {
                "  + reply encoded"
            } else {
                "  decode + validate"
            };
            if !with_reply {
                println!("{label}");
            }
            println!(
                "{what:<46} {:>14} {:>14} {ratio:>8}",
                shown(old_eps),
                shown(new_eps)
            );
        }
    }
}
