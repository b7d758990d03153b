//! Calls, their events, and the figures they must produce per queue and interval, computed here
//! independently of the agent; and the same figures read back from records.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{json, Value};

use crate::support::now_ms;
use crate::INTERVAL_MS;

#[derive(Debug, Clone)]
pub enum Outcome {
    Answered {
        /// Talk time (excluding hold).
        talk: i64,
        /// Hold: offset after the answer, length.
        hold: Option<(i64, i64)>,
        /// After-call work; `None` = no wrap-up event (completes at the end, after the timeout).
        acw: Option<i64>,
    },
    Abandoned,
    /// Left the queue unanswered with reason `timeout`.
    Overflow,
}

#[derive(Debug, Clone)]
pub struct Call {
    pub id: String,
    pub queue: String,
    pub start: i64,
    pub wait: i64,
    pub outcome: Outcome,
}

impl Call {
    /// When the call left the queue (answer, abandon or overflow): where its queue figures count.
    pub fn leave(&self) -> i64 {
        self.start + self.wait
    }

    fn end(&self) -> i64 {
        match &self.outcome {
            Outcome::Answered { talk, hold, .. } => {
                self.leave() + talk + hold.map_or(0, |(_, len)| len)
            }
            _ => self.leave(),
        }
    }

    /// When an answered call completed (wrap-up, else end): where its handle figures count.
    pub fn completion(&self) -> Option<i64> {
        match &self.outcome {
            Outcome::Answered { acw, .. } => Some(self.end() + acw.unwrap_or(0)),
            _ => None,
        }
    }

    pub fn events(&self) -> Vec<Value> {
        let mut out = vec![json!({
            "type": "start", "call_id": self.id, "queue": self.queue, "ts": self.start
        })];
        match &self.outcome {
            Outcome::Answered { hold, acw, .. } => {
                let answer = self.leave();
                out.push(json!({
                    "type": "answer", "call_id": self.id, "agent": format!("agent-{}", self.queue), "ts": answer
                }));
                if let Some((off, len)) = hold {
                    out.push(json!({"type": "hold", "call_id": self.id, "ts": answer + off}));
                    out.push(
                        json!({"type": "resume", "call_id": self.id, "ts": answer + off + len}),
                    );
                }
                out.push(json!({"type": "end", "call_id": self.id, "ts": self.end()}));
                if let Some(acw) = acw {
                    out.push(json!({"type": "wrapup", "call_id": self.id, "ts": self.end() + acw}));
                }
            }
            Outcome::Abandoned => out.push(json!({
                "type": "end", "call_id": self.id, "ts": self.end(), "reason": "abandoned"
            })),
            Outcome::Overflow => out.push(json!({
                "type": "end", "call_id": self.id, "ts": self.end(), "reason": "timeout"
            })),
        }
        out
    }
}

/// Start of the interval holding `ts` (UTC, the default time zone).
pub fn interval_of(ts: i64) -> i64 {
    ts - ts.rem_euclid(INTERVAL_MS)
}

/// Start of the interval `k` intervals before the current one.
pub fn past_interval(k: i64) -> i64 {
    interval_of(now_ms()) - k * INTERVAL_MS
}

/// Random calls starting in each of `intervals`, `per_interval` each, over `queues`. With
/// `contained`, every event of a call stays inside the interval it starts in; otherwise a call
/// may leave the queue or complete in the next interval.
pub fn make_calls(
    prefix: &str,
    seed: u64,
    queues: &[&str],
    intervals: &[i64],
    per_interval: usize,
    contained: bool,
) -> Vec<Call> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::new();
    for &iv in intervals {
        for i in 0..per_interval {
            let queue = if i < queues.len() {
                queues[i]
            } else {
                queues[rng.usize(0..queues.len())]
            };
            let (start_span, wait_max, talk_max, acw_max) = if contained {
                (600_000, 60_000, 120_000, 30_000)
            } else {
                (INTERVAL_MS - 1, 90_000, 300_000, 60_000)
            };
            let start = iv + rng.i64(0..start_span);
            let wait = rng.i64(0..wait_max);
            let outcome = match rng.u8(0..10) {
                0..=5 => {
                    let talk = rng.i64(1_000..talk_max);
                    let hold =
                        (rng.u8(0..3) == 0).then(|| (rng.i64(0..talk), rng.i64(1_000..30_000)));
                    let acw = (rng.u8(0..4) != 0).then(|| rng.i64(0..acw_max));
                    Outcome::Answered { talk, hold, acw }
                }
                6..=8 => Outcome::Abandoned,
                _ => Outcome::Overflow,
            };
            out.push(Call {
                id: format!("{prefix}-{}-{i}", out.len()),
                queue: queue.to_string(),
                start,
                wait,
                outcome,
            });
        }
    }
    out
}

/// The counters and sums compared between calls, the agent and the receivers.
pub const FIELDS: [&str; 10] = [
    "offered",
    "answered",
    "abandoned",
    "overflow",
    "handled",
    "wait_sum_ms",
    "abandon_wait_sum_ms",
    "talk_sum_ms",
    "hold_sum_ms",
    "acw_sum_ms",
];

#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals([u64; FIELDS.len()]);

impl fmt::Debug for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(FIELDS.iter().zip(self.0.iter()))
            .finish()
    }
}

impl Totals {
    /// From a record or a metrics row: every field must be there, as an integer.
    pub fn from_json(v: &Value) -> Totals {
        let mut t = Totals::default();
        for (i, name) in FIELDS.iter().enumerate() {
            t.0[i] = v[name]
                .as_u64()
                .unwrap_or_else(|| panic!("`{name}` is not an unsigned integer in {v}"));
        }
        t
    }

    pub fn get(&self, name: &str) -> u64 {
        let i = FIELDS
            .iter()
            .position(|f| *f == name)
            .expect("a known field");
        self.0[i]
    }

    pub fn add(&mut self, name: &str, n: u64) {
        let i = FIELDS
            .iter()
            .position(|f| *f == name)
            .expect("a known field");
        self.0[i] += n;
    }

    pub fn plus(mut self, o: &Totals) -> Totals {
        for (a, b) in self.0.iter_mut().zip(o.0.iter()) {
            *a += b;
        }
        self
    }

    pub fn minus(mut self, o: &Totals) -> Totals {
        for (i, (a, b)) in self.0.iter_mut().zip(o.0.iter()).enumerate() {
            *a = a
                .checked_sub(*b)
                .unwrap_or_else(|| panic!("`{}`: {a} - {b} is negative", FIELDS[i]));
        }
        self
    }
}

/// (queue, interval start) → totals.
pub type ByInterval = BTreeMap<(String, i64), Totals>;

/// What the calls must add up to, per queue and interval, by the documented attribution: queue
/// figures where the call left the queue, handle figures where it completed.
pub fn expected(calls: &[Call]) -> ByInterval {
    let mut out = ByInterval::new();
    for c in calls {
        let leave = out
            .entry((c.queue.clone(), interval_of(c.leave())))
            .or_default();
        leave.add("offered", 1);
        let wait = c.wait as u64;
        match &c.outcome {
            Outcome::Answered { .. } => {
                leave.add("answered", 1);
                leave.add("wait_sum_ms", wait);
            }
            Outcome::Abandoned => {
                leave.add("abandoned", 1);
                leave.add("abandon_wait_sum_ms", wait);
            }
            Outcome::Overflow => leave.add("overflow", 1),
        }
        if let (Some(done), Outcome::Answered { talk, hold, acw }) = (c.completion(), &c.outcome) {
            let h = out.entry((c.queue.clone(), interval_of(done))).or_default();
            h.add("handled", 1);
            h.add("talk_sum_ms", *talk as u64);
            h.add("hold_sum_ms", hold.map_or(0, |(_, len)| len) as u64);
            h.add("acw_sum_ms", acw.unwrap_or(0) as u64);
        }
    }
    out
}

pub fn per_queue(m: &ByInterval) -> BTreeMap<String, Totals> {
    let mut out: BTreeMap<String, Totals> = BTreeMap::new();
    for ((q, _), t) in m {
        let e = out.entry(q.clone()).or_default();
        *e = e.plus(t);
    }
    out
}

/// Record JSON (http sink) summed per queue and interval.
pub fn records_by_interval<'a>(records: impl IntoIterator<Item = &'a Value>) -> ByInterval {
    let mut out = ByInterval::new();
    for r in records {
        assert_eq!(r["dimension"], "queue", "{r}");
        let q = r["queue"]
            .as_str()
            .unwrap_or_else(|| panic!("record without queue: {r}"))
            .to_string();
        let iv = r["interval_start_ms"]
            .as_i64()
            .unwrap_or_else(|| panic!("record without interval_start_ms: {r}"));
        assert_eq!(r["interval_ms"], INTERVAL_MS, "{r}");
        assert_eq!(iv, interval_of(iv), "interval start not aligned: {r}");
        let e = out.entry((q, iv)).or_default();
        *e = e.plus(&Totals::from_json(r));
    }
    out
}
