//! The oracle: every metrics row recomputed by brute force from the ground truth, without any of
//! the engine's own helpers, and the moments where what has arrived is transiently misleading.

use std::collections::{BTreeMap, BTreeSet};

use callmetrics::config::Formula;
use callmetrics::engine::DimKind;

use crate::truth::{Model, Out, Params, Seg, Truth};
use crate::{BANDS_MS, DAY, WRAPUP_TIMEOUT_MS};

const MINUTE: i64 = 60_000;
const INTERVAL: i64 = 900_000;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ORow {
    pub offered: u64,
    pub answered: u64,
    pub answered_within: u64,
    pub abandoned: u64,
    pub abandoned_within: u64,
    pub short_abandoned: u64,
    pub overflow: u64,
    pub handled: u64,
    pub wait_sum_ms: u64,
    pub wait_max_ms: u64,
    pub abandon_wait_sum_ms: u64,
    pub talk_sum_ms: u64,
    pub hold_sum_ms: u64,
    pub acw_sum_ms: u64,
    pub bands: [u64; 5],
    pub waits: Vec<u64>,
    pub handles: Vec<u64>,
    pub waiting_now: u64,
    pub longest_wait_now_ms: Option<u64>,
    pub talking_now: u64,
    pub in_acw_now: u64,
}

impl ORow {
    fn add_queue(&mut self, s: &Seg, p: &Params) {
        let wait = s.wait_ms();
        let within = u64::from(wait <= p.threshold_ms as u64);
        self.offered += 1;
        self.wait_max_ms = self.wait_max_ms.max(wait);
        self.waits.push(wait);
        match s.outcome() {
            Out::Answered => {
                self.answered += 1;
                self.answered_within += within;
                self.wait_sum_ms += wait;
                for (i, b) in BANDS_MS.iter().enumerate() {
                    self.bands[i] += u64::from(wait <= *b);
                }
            }
            Out::Abandoned => {
                self.abandoned += 1;
                self.abandoned_within += within;
                self.short_abandoned += u64::from(wait < p.short_ms as u64);
                self.abandon_wait_sum_ms += wait;
            }
            Out::Overflow => self.overflow += 1,
        }
    }

    fn add_handle(&mut self, s: &Seg) {
        let (talk, hold, acw) = (s.talk_ms(), s.hold_ms(), s.acw_ms());
        self.handled += 1;
        self.talk_sum_ms += talk;
        self.hold_sum_ms += hold;
        self.acw_sum_ms += acw;
        self.handles.push(talk + hold + acw);
    }

    pub fn service_level(&self, f: Formula) -> Option<f64> {
        let a = self.answered as i64;
        let at = self.answered_within as i64;
        let ab = self.abandoned as i64;
        let abt = self.abandoned_within as i64;
        let s = self.short_abandoned as i64;
        let fl = self.overflow as i64;
        let q = self.offered as i64;
        let (num, den) = match f {
            Formula::Answered => (at, a),
            Formula::Offered => (at, a + ab - s),
            Formula::OfferedWithOverflow => (at, a + ab - s + fl),
            Formula::AbandonNegative => (at, q),
            Formula::AbandonPositive => (at + abt, q),
            Formula::AbandonIgnored => (at, q - abt),
            Formula::AsteriskSl2 => (at + abt, a + ab),
        };
        div(num as f64, den as f64)
    }
}

pub fn div(num: f64, den: f64) -> Option<f64> {
    if den == 0.0 {
        None
    } else {
        Some(num / den)
    }
}

fn floor_to(t: i64, unit: i64) -> i64 {
    t - t.rem_euclid(unit)
}

/// Whether attribution time `ts` falls in `window` at `now` (UTC, 1-min and 15-min buckets).
fn in_window(window: &str, now: i64, ts: i64) -> bool {
    let (first, last, bucket) = match window {
        "today" => (
            floor_to(now, DAY),
            floor_to(now, INTERVAL),
            floor_to(ts, INTERVAL),
        ),
        "24h" => {
            let last = floor_to(now, INTERVAL);
            (last + INTERVAL - DAY, last, floor_to(ts, INTERVAL))
        }
        w => {
            let len = match w {
                "5m" => 5 * MINUTE,
                "15m" => 15 * MINUTE,
                "1h" => 60 * MINUTE,
                other => panic!("unknown window {other}"),
            };
            let last = floor_to(now, MINUTE);
            (last + MINUTE - len, last, floor_to(ts, MINUTE))
        }
    };
    first <= bucket && bucket <= last
}

pub type Key = (DimKind, String);

pub struct Oracle {
    pub rows: BTreeMap<Key, ORow>,
    pub seen: BTreeSet<Key>,
}

/// Every row of every dimension for `window` at `now`, given the first receive time of each event.
pub fn oracle(
    truth: &Truth,
    model: &Model,
    first_rx: &[Option<i64>],
    now: i64,
    window: &str,
) -> Oracle {
    let mut o = Oracle {
        rows: BTreeMap::new(),
        seen: BTreeSet::new(),
    };
    let dl = |e: usize| first_rx[e].is_some();
    for (seg, ev) in truth.segs.iter().zip(&truth.seg_ev) {
        if !dl(ev.start) {
            continue;
        }
        let answer_in = ev.answer.is_some_and(dl);
        let mut keys: Vec<Key> = vec![
            (DimKind::All, "all".to_string()),
            (DimKind::Queue, seg.queue.clone()),
            (DimKind::Channel, seg.channel_key().to_string()),
        ];
        if answer_in {
            if let Some(a) = &seg.agent {
                keys.push((DimKind::Agent, a.clone()));
            }
        }
        o.seen.extend(keys.iter().cloned());
        let p = model.params(&seg.queue);
        // Queue part: counted where the segment left the queue.
        if dl(ev.answer.unwrap_or(ev.end)) && in_window(window, now, seg.leave()) {
            for k in &keys {
                o.rows.entry(k.clone()).or_default().add_queue(seg, &p);
            }
        }
        // Handle part: counted at completion: at its wrap-up once every event of the segment
        // arrived, or, while no wrap-up arrived, once the wrap-up timeout has passed since its end
        // in the source's clock (then without after-call work, ending at the end).
        let end_rx = first_rx[ev.end];
        let wrapup_in = ev.wrapup.is_some_and(dl);
        let timed_out = now >= seg.end + WRAPUP_TIMEOUT_MS;
        if seg.answer.is_some() {
            let without_wrapup = Seg {
                wrapup: None,
                ..seg.clone()
            };
            let handled = if wrapup_in {
                ev.all.iter().all(|&e| dl(e)).then_some(seg)
            } else {
                (answer_in && end_rx.is_some() && timed_out).then_some(&without_wrapup)
            };
            if let Some(h) = handled.filter(|h| in_window(window, now, h.completion())) {
                for k in &keys {
                    o.rows.entry(k.clone()).or_default().add_handle(h);
                }
            }
        }
        // Real time.
        for k in &keys {
            let r = o.rows.entry(k.clone()).or_default();
            match (answer_in, end_rx) {
                (false, None) => {
                    let w = (now - seg.start) as u64;
                    r.waiting_now += 1;
                    r.longest_wait_now_ms = Some(r.longest_wait_now_ms.map_or(w, |m| m.max(w)));
                }
                (true, None) => r.talking_now += 1,
                (true, Some(_)) if !wrapup_in && !timed_out => r.in_acw_now += 1,
                _ => {}
            }
        }
    }
    o
}

/// True when the events received so far are transiently misleading (see the module docs).
pub fn ambiguous(truth: &Truth, first_rx: &[Option<i64>], now: i64) -> bool {
    let dl = |e: usize| first_rx[e].is_some();
    truth.call_segs.iter().any(|segs| {
        let any_start = segs.iter().any(|&s| dl(truth.seg_ev[s].start));
        let misplaced_transfer_end = segs.windows(2).any(|w| {
            let (prev, next) = (&truth.seg_ev[w[0]], &truth.seg_ev[w[1]]);
            dl(prev.start)
                && !dl(prev.end)
                && dl(next.start)
                && dl(next.end)
                && truth.segs[w[1]].end == truth.segs[w[1]].start
        });
        misplaced_transfer_end
            || segs.iter().any(|&s| {
                let ev = &truth.seg_ev[s];
                let started = dl(ev.start);
                (segs.len() > 1 && !started && any_start && ev.all.iter().any(|&e| dl(e)))
                    || (started && ev.answer.is_some_and(|a| !dl(a)) && dl(ev.end))
                    || (ev.wrapup.is_some_and(dl) && !ev.all.iter().all(|&e| dl(e)))
                    || (dl(ev.end)
                        && now >= truth.segs[s].end + WRAPUP_TIMEOUT_MS
                        && ev.all.iter().any(|&e| !dl(e) && Some(e) != ev.wrapup))
            })
    })
}
