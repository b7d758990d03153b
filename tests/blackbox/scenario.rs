//! The scenario written as data: calls with their segments (queue, answer, holds, end, wrap-up)
//! as offsets from a base time, and the events they send.

use serde_json::{json, Value};

use crate::s;
use crate::support::now_ms;

/// One visit of a call to a queue; times are offsets (ms) from the scenario's base time.
#[derive(Debug, Clone)]
pub struct Seg {
    pub queue: &'static str,
    pub start: i64,
    pub answer: Option<(i64, &'static str)>,
    pub holds: Vec<(i64, i64)>,
    /// `None` = still in the queue (no end sent).
    pub end: Option<(i64, Option<&'static str>)>,
    pub wrapup: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct CallSpec {
    id: &'static str,
    pub segs: Vec<Seg>,
}

pub fn seg(queue: &'static str, start: i64) -> Seg {
    Seg {
        queue,
        start,
        answer: None,
        holds: Vec::new(),
        end: None,
        wrapup: None,
    }
}

impl Seg {
    pub fn answer(mut self, at: i64, agent: &'static str) -> Seg {
        self.answer = Some((at, agent));
        self
    }
    pub fn holds(mut self, holds: &[(i64, i64)]) -> Seg {
        self.holds = holds.to_vec();
        self
    }
    pub fn end(mut self, at: i64, reason: Option<&'static str>) -> Seg {
        self.end = Some((at, reason));
        self
    }
    pub fn wrapup(mut self, at: i64) -> Seg {
        self.wrapup = Some(at);
        self
    }
}

pub fn call(id: &'static str, segs: Vec<Seg>) -> CallSpec {
    CallSpec { id, segs }
}

/// The scenario: answered calls with holds and wrap-ups, short and long abandons (and the edges
/// wait = S and wait = T), an overflow by `timeout`, an unanswered `completed` end, two transfers
/// (answered, and unanswered) making two segments of one call in two queues, and one call still
/// waiting. Every answered segment gets a wrap-up, so every handle figure is final at once.
pub fn scenario() -> Vec<CallSpec> {
    vec![
        // Answered within T after 12 s, 30 s on hold, 30 s of after-call work.
        call(
            "a1",
            vec![seg("support", s(0))
                .answer(s(12), "alice")
                .holds(&[(s(60), s(90))])
                .end(s(200), None)
                .wrapup(s(230))],
        ),
        // Answered after 35 s: beyond T. Explicit `completed`.
        call(
            "a2",
            vec![seg("support", s(10))
                .answer(s(45), "bob")
                .end(s(150), Some("completed"))
                .wrapup(s(160))],
        ),
        // Answered after exactly T (within: inclusive), two holds.
        call(
            "a3",
            vec![seg("sales", s(20))
                .answer(s(40), "carol")
                .holds(&[(s(60), s(70)), (s(80), s(85))])
                .end(s(300), None)
                .wrapup(s(320))],
        ),
        // Abandoned after 3 s: short.
        call(
            "ab1",
            vec![seg("support", s(30)).end(s(33), Some("abandoned"))],
        ),
        // Abandoned after exactly S, no reason (abandoned by default): not short.
        call("ab2", vec![seg("support", s(40)).end(s(45), None)]),
        // Abandoned after 95 s: long, beyond T.
        call(
            "ab3",
            vec![seg("sales", s(50)).end(s(145), Some("abandoned"))],
        ),
        // `completed` without an answer counts as abandoned (18 s: within T).
        call(
            "ab4",
            vec![seg("support", s(60)).end(s(78), Some("completed"))],
        ),
        // Left unanswered by timeout after 40 s: overflow.
        call(
            "of1",
            vec![seg("support", s(70)).end(s(110), Some("timeout"))],
        ),
        // Answered in sales by alice, transferred to support (alice's wrap-up comes while the call
        // waits there), answered by bob.
        call(
            "tr1",
            vec![
                seg("sales", s(100))
                    .answer(s(106), "alice")
                    .end(s(160), Some("transferred"))
                    .wrapup(s(170)),
                seg("support", s(160))
                    .answer(s(185), "bob")
                    .holds(&[(s(200), s(230))])
                    .end(s(400), None)
                    .wrapup(s(415)),
            ],
        ),
        // Unanswered in sales, transferred after 8 s (overflow there), answered in support.
        call(
            "tr2",
            vec![
                seg("sales", s(120)).end(s(128), Some("transferred")),
                seg("support", s(128))
                    .answer(s(150), "carol")
                    .end(s(250), None)
                    .wrapup(s(255)),
            ],
        ),
        // Still waiting: in `calls`, in `waiting_now`, not yet offered.
        call("w1", vec![seg("support", s(600))]),
    ]
}

/// The base time of a scenario: 15 minutes ago, so every event lies in the past and inside `1h`.
pub fn base_now() -> i64 {
    let b = now_ms() - 15 * 60_000;
    b - b % 1000
}

/// A timestamp as epoch ms, or (for `rfc`) as an RFC 3339 string: both are valid `ts`.
fn ts(ms: i64, rfc: bool) -> Value {
    if rfc {
        Value::String(
            jiff::Timestamp::from_millisecond(ms)
                .expect("valid timestamp")
                .to_string(),
        )
    } else {
        json!(ms)
    }
}

/// The events of the scenario, in source-time order (a stable sort: at a transfer instant the old
/// segment's end precedes the new start). Answers carry RFC 3339 timestamps, the rest epoch ms.
pub fn events(calls: &[CallSpec], base: i64) -> Vec<Value> {
    let mut evs: Vec<(i64, Value)> = Vec::new();
    for c in calls {
        for sg in &c.segs {
            let at = |off: i64| base + off;
            evs.push((
                at(sg.start),
                json!({"type": "start", "call_id": c.id, "queue": sg.queue, "ts": at(sg.start)}),
            ));
            if let Some((t, agent)) = sg.answer {
                evs.push((
                    at(t),
                    json!({"type": "answer", "call_id": c.id, "agent": agent, "ts": ts(at(t), true)}),
                ));
            }
            for &(h, r) in &sg.holds {
                evs.push((at(h), json!({"type": "hold", "call_id": c.id, "ts": at(h)})));
                evs.push((
                    at(r),
                    json!({"type": "resume", "call_id": c.id, "ts": at(r)}),
                ));
            }
            if let Some((t, reason)) = sg.end {
                let mut e = json!({"type": "end", "call_id": c.id, "ts": at(t)});
                if let Some(r) = reason {
                    e["reason"] = json!(r);
                }
                evs.push((at(t), e));
            }
            if let Some(w) = sg.wrapup {
                evs.push((
                    at(w),
                    json!({"type": "wrapup", "call_id": c.id, "ts": at(w)}),
                ));
            }
        }
    }
    evs.sort_by_key(|(t, _)| *t);
    evs.into_iter().map(|(_, e)| e).collect()
}
