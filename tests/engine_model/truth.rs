//! What really happened, and the configuration both the engine and the model are given: queue
//! parameters as the model sees them, call segments with known timestamps, their events, and when
//! each event is delivered.

use std::collections::BTreeMap;

use callmetrics::config::{Config, Formula, Millis, QueueOverride, QueueParams, ZoneName};
use callmetrics::event::{EndReason, Event, EventKind};

use crate::{BANDS_MS, GRACE_MS, WRAPUP_TIMEOUT_MS};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    pub threshold_ms: i64,
    pub short_ms: i64,
    pub formula: Formula,
    pub target: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Override {
    pub threshold_ms: Option<i64>,
    pub short_ms: Option<i64>,
    pub formula: Option<Formula>,
    pub target: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct Model {
    pub defaults: Params,
    pub queues: BTreeMap<String, Override>,
}

impl Model {
    pub fn params(&self, queue: &str) -> Params {
        let d = self.defaults;
        match self.queues.get(queue) {
            None => d,
            Some(o) => Params {
                threshold_ms: o.threshold_ms.unwrap_or(d.threshold_ms),
                short_ms: o.short_ms.unwrap_or(d.short_ms),
                formula: o.formula.unwrap_or(d.formula),
                target: o.target.unwrap_or(d.target),
            },
        }
    }

    pub fn config(&self) -> Config {
        let mut cfg = Config::default();
        cfg.general.time_zone = ZoneName("UTC".into());
        let m = &mut cfg.metrics;
        m.windows = vec![
            Millis::secs(300),
            Millis::secs(900),
            Millis::secs(3600),
            Millis::secs(86_400),
        ];
        m.interval = Millis::secs(900);
        m.reorder_grace = Millis(GRACE_MS);
        m.wrapup_timeout = Millis(WRAPUP_TIMEOUT_MS);
        m.bands = BANDS_MS.iter().map(|&b| Millis(b as i64)).collect();
        // Duplicates may come hours later: remember finished calls long enough to recognise them.
        m.late_event_window = Millis::secs(48 * 3600);
        m.max_remembered_calls = 1_000_000;
        m.max_queues = 1000;
        m.max_agents = 1000;
        m.max_channels = 1000;
        cfg.limits.max_open_segments = 1_000_000;
        cfg.defaults = QueueParams {
            threshold: Millis(self.defaults.threshold_ms),
            target: self.defaults.target,
            short_abandon: Millis(self.defaults.short_ms),
            formula: self.defaults.formula,
        };
        for (q, o) in &self.queues {
            cfg.queues.insert(
                q.clone(),
                QueueOverride {
                    threshold: o.threshold_ms.map(Millis),
                    target: o.target,
                    short_abandon: o.short_ms.map(Millis),
                    formula: o.formula,
                },
            );
        }
        cfg
    }
}

// ---------------------------------------------------------------------------------------------
// Ground truth
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    Answered,
    Abandoned,
    Overflow,
}

/// One queue segment as it really happened.
#[derive(Debug, Clone)]
pub struct Seg {
    pub call_id: String,
    pub queue: String,
    pub channel: Option<String>,
    pub start: i64,
    pub answer: Option<i64>,
    pub agent: Option<String>,
    /// [hold, resume) intervals; the last may have no resume and then runs to the end.
    pub holds: Vec<(i64, Option<i64>)>,
    pub end: i64,
    pub reason: Option<EndReason>,
    pub wrapup: Option<i64>,
}

impl Seg {
    pub fn channel_key(&self) -> &str {
        self.channel.as_deref().unwrap_or("voice")
    }

    pub fn leave(&self) -> i64 {
        self.answer.unwrap_or(self.end)
    }

    pub fn wait_ms(&self) -> u64 {
        (self.leave() - self.start) as u64
    }

    pub fn outcome(&self) -> Out {
        match (self.answer, self.reason) {
            (Some(_), _) => Out::Answered,
            (None, None | Some(EndReason::Abandoned | EndReason::Completed)) => Out::Abandoned,
            (None, Some(_)) => Out::Overflow,
        }
    }

    pub fn hold_ms(&self) -> u64 {
        self.holds
            .iter()
            .map(|&(h, r)| (r.unwrap_or(self.end) - h) as u64)
            .sum()
    }

    pub fn talk_ms(&self) -> u64 {
        (self.end - self.answer.expect("answered") - self.hold_ms() as i64) as u64
    }

    pub fn acw_ms(&self) -> u64 {
        self.wrapup.map_or(0, |w| (w - self.end) as u64)
    }

    pub fn completion(&self) -> i64 {
        self.wrapup.unwrap_or(self.end)
    }

    /// The events of this segment: (kind, ts) plus labels.
    pub fn events(&self) -> Vec<Event> {
        let ev = |kind, ts| Event::new(kind, self.call_id.clone(), ts);
        let mut out = Vec::new();
        let mut start = ev(EventKind::Start, self.start);
        start.queue = Some(self.queue.clone());
        start.channel.clone_from(&self.channel);
        out.push(start);
        if let Some(a) = self.answer {
            let mut answer = ev(EventKind::Answer, a);
            answer.agent.clone_from(&self.agent);
            out.push(answer);
        }
        for &(h, r) in &self.holds {
            out.push(ev(EventKind::Hold, h));
            if let Some(r) = r {
                out.push(ev(EventKind::Resume, r));
            }
        }
        let mut end = ev(EventKind::End, self.end);
        end.reason = self.reason;
        out.push(end);
        if let Some(w) = self.wrapup {
            out.push(ev(EventKind::Wrapup, w));
        }
        out
    }
}

/// Event indices of one segment.
#[derive(Debug, Clone, Default)]
pub struct SegEvents {
    pub start: usize,
    pub answer: Option<usize>,
    pub end: usize,
    pub wrapup: Option<usize>,
    pub all: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct Truth {
    pub segs: Vec<Seg>,
    pub seg_ev: Vec<SegEvents>,
    /// Segment indices of each call, in order.
    pub call_segs: Vec<Vec<usize>>,
    pub events: Vec<Event>,
}

impl Truth {
    pub fn new(calls: Vec<Vec<Seg>>) -> Truth {
        let mut t = Truth {
            segs: Vec::new(),
            seg_ev: Vec::new(),
            call_segs: Vec::new(),
            events: Vec::new(),
        };
        for call in calls {
            let mut ids = Vec::new();
            for seg in call {
                let mut se = SegEvents::default();
                for e in seg.events() {
                    let i = t.events.len();
                    match e.kind {
                        EventKind::Start => se.start = i,
                        EventKind::Answer => se.answer = Some(i),
                        EventKind::End => se.end = i,
                        EventKind::Wrapup => se.wrapup = Some(i),
                        EventKind::Hold | EventKind::Resume | EventKind::Callback => {}
                    }
                    se.all.push(i);
                    t.events.push(e);
                }
                ids.push(t.segs.len());
                t.segs.push(seg);
                t.seg_ev.push(se);
            }
            t.call_segs.push(ids);
        }
        t
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    pub rx: i64,
    pub ev: usize,
}
