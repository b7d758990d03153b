//! Driving the engine: delivering events, restarting from a checkpoint in a real store, and
//! checking every window × dimension against the oracle and the restored engine at chosen moments.

use callmetrics::config::Config;
use callmetrics::engine::{Applied, DimKind, Engine, EngineStats, MetricsQuery};
use callmetrics::event::Event;
use callmetrics::store::Store;

use crate::comparison::compare_dim;
use crate::model::{ambiguous, oracle};
use crate::truth::{Delivery, Model, Truth};
use crate::BASE_MS;

const WINDOWS: [&str; 5] = ["5m", "15m", "1h", "24h", "today"];
const DIMS: [DimKind; 4] = [
    DimKind::All,
    DimKind::Queue,
    DimKind::Channel,
    DimKind::Agent,
];

pub struct Harness<'a> {
    pub truth: &'a Truth,
    pub model: &'a Model,
    pub cfg: Config,
    pub a: Engine,
    /// Restored from a checkpoint of `a`, fed the same deliveries since.
    pub b: Option<Engine>,
    pub first_rx: Vec<Option<i64>>,
    pub deliveries: u64,
    pub compared: usize,
    pub skipped: usize,
}

pub fn query(window: &str, dim: DimKind) -> MetricsQuery {
    MetricsQuery {
        window: Some(window.to_string()),
        by: dim,
        key: None,
    }
}

impl<'a> Harness<'a> {
    pub fn new(truth: &'a Truth, model: &'a Model) -> Self {
        let cfg = model.config();
        Harness {
            truth,
            model,
            a: Engine::new(&cfg),
            cfg,
            b: None,
            first_rx: vec![None; truth.events.len()],
            deliveries: 0,
            compared: 0,
            skipped: 0,
        }
    }

    pub fn deliver(&mut self, d: Delivery) -> Result<Applied, String> {
        let ev = &self.truth.events[d.ev];
        self.a
            .admit(ev, 0)
            .map_err(|e| format!("engine refused {}: {e}", show_event(ev)))?;
        let ra = self.a.apply(ev, d.rx);
        if let Some(b) = &mut self.b {
            let rb = b.apply(ev, d.rx);
            if rb != ra {
                return Err(format!(
                    "{}: engine {ra:?}, restored engine {rb:?}",
                    show_event(ev)
                ));
            }
        }
        self.deliveries += 1;
        if self.first_rx[d.ev].is_none() {
            self.first_rx[d.ev] = Some(d.rx);
            if ra != Applied::Accepted {
                return Err(format!(
                    "first delivery of {} at rx {}: {ra:?}",
                    show_event(ev),
                    d.rx
                ));
            }
        } else if !matches!(ra, Applied::Duplicate | Applied::Late) {
            return Err(format!(
                "re-delivery of {} at rx {}: {ra:?}",
                show_event(ev),
                d.rx
            ));
        }
        Ok(ra)
    }

    /// Writes a checkpoint of the engine into a real store and starts a second engine from what
    /// the store gives back; from then on both take the same deliveries and must answer alike.
    fn restart(&mut self) -> Result<(), String> {
        let cp = self.a.checkpoint();
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let store = Store::open(&dir.path().join("store"), 1 << 20, 1 << 30)
            .map_err(|e| format!("store: {e}"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(store.write_checkpoint(1, cp.slices, &cp.state))
            .map_err(|e| format!("writing the checkpoint: {e}"))?;
        let r = store.recover().map_err(|e| format!("recover: {e}"))?;
        let b = Engine::restore(&self.cfg, r.slices, r.state.as_deref())
            .map_err(|e| format!("restore: {e}"))?;
        self.b = Some(b);
        Ok(())
    }

    pub fn check(&mut self, now: i64) -> Result<(), String> {
        // A read-only query at `now` answers what advancing to `now` and asking does.
        let ahead: Vec<_> = WINDOWS
            .iter()
            .flat_map(|w| DIMS.iter().map(move |d| (*w, *d)))
            .map(|(w, d)| self.a.metrics_at(&query(w, d), now))
            .collect();
        self.a.advance(now);
        let after: Vec<_> = WINDOWS
            .iter()
            .flat_map(|w| DIMS.iter().map(move |d| (*w, *d)))
            .map(|(w, d)| self.a.metrics(&query(w, d)))
            .collect();
        if ahead != after {
            return Err(format!(
                "at now {now}: metrics_at(now) differs from advance(now) + metrics"
            ));
        }
        if self.a.now_ms() != now {
            return Err(format!(
                "engine time {} after advance({now})",
                self.a.now_ms()
            ));
        }
        if let Some(b) = &mut self.b {
            b.advance(now);
            // Counters must agree; the memory accounting (`state`) depends on allocations.
            let counted = |e: &Engine| EngineStats {
                state: Default::default(),
                ..e.stats()
            };
            if counted(&self.a) != counted(b) {
                return Err(format!(
                    "stats differ after restore at now {now}:\n  engine   {:?}\n  restored {:?}",
                    self.a.stats(),
                    b.stats()
                ));
            }
            for w in WINDOWS {
                for dim in DIMS {
                    let (ra, rb) = (self.a.metrics(&query(w, dim)), b.metrics(&query(w, dim)));
                    if ra != rb {
                        return Err(format!(
                            "restored engine differs at now {now}, {w} by {dim:?}:\n  engine   {ra:?}\n  restored {rb:?}"
                        ));
                    }
                }
            }
        }
        if ambiguous(self.truth, &self.first_rx, now) {
            self.skipped += 1;
            return Ok(());
        }
        self.compared += 1;
        let mut diffs = Vec::new();
        for w in WINDOWS {
            let o = oracle(self.truth, self.model, &self.first_rx, now, w);
            for dim in DIMS {
                let rows = self
                    .a
                    .metrics(&query(w, dim))
                    .map_err(|e| format!("query {w}: {e}"))?;
                diffs.extend(compare_dim(&rows, &o, self.model, w, dim));
                if dim == DimKind::Queue {
                    // A key filter answers exactly that queue's row.
                    for r in &rows {
                        let q = MetricsQuery {
                            key: Some(r.key.clone()),
                            ..query(w, dim)
                        };
                        if self.a.metrics(&q).as_deref() != Ok(std::slice::from_ref(r)) {
                            diffs.push(format!(
                                "{w} by queue with key {:?} is not that row alone",
                                r.key
                            ));
                        }
                    }
                }
            }
        }
        // No window named means the first configured one.
        let unnamed = MetricsQuery {
            window: None,
            by: DimKind::All,
            key: None,
        };
        if self.a.metrics(&unnamed) != self.a.metrics(&query("5m", DimKind::All)) {
            diffs.push(
                "a query without a window does not answer the first configured window (5m)".into(),
            );
        }
        if diffs.is_empty() {
            Ok(())
        } else {
            diffs.truncate(12);
            Err(format!(
                "at now {now} ({}):\n  {}",
                rel(now),
                diffs.join("\n  ")
            ))
        }
    }

    /// Final check once everything is folded, plus the engine's counters.
    pub fn finish(&mut self, now: i64) -> Result<(), String> {
        self.check(now)?;
        let n = self.truth.events.len() as u64;
        for (name, e) in
            std::iter::once(("engine", &self.a)).chain(self.b.iter().map(|b| ("restored", b)))
        {
            let s = e.stats();
            let problems = [
                (
                    s.accepted != n,
                    format!("accepted {} != {n} distinct events", s.accepted),
                ),
                (
                    s.accepted + s.duplicates + s.late != self.deliveries,
                    format!(
                        "accepted {} + duplicates {} + late {} != {} deliveries",
                        s.accepted, s.duplicates, s.late, self.deliveries
                    ),
                ),
                (s.rejected_open_segment_limit != 0, "rejections".into()),
                (
                    s.expired_segments + s.expired_orphan_events != 0,
                    "expiries".into(),
                ),
                (
                    s.open_segments + s.open_calls != 0,
                    format!(
                        "not everything folded: {} open segments, {} open calls",
                        s.open_segments, s.open_calls
                    ),
                ),
            ];
            for (bad, what) in problems {
                if bad {
                    return Err(format!("{name} stats: {what} ({s:?})"));
                }
            }
        }
        Ok(())
    }
}

fn rel(t: i64) -> String {
    jiff::Timestamp::from_millisecond(t).map_or_else(|_| t.to_string(), |ts| format!("{ts:.3}"))
}

fn show_event(e: &Event) -> String {
    let mut s = format!("{} {} ts={}", e.call_id, e.kind.name(), rel(e.ts_ms));
    for (k, v) in [
        ("queue", &e.queue),
        ("channel", &e.channel),
        ("agent", &e.agent),
    ] {
        if let Some(v) = v {
            s.push_str(&format!(" {k}={v}"));
        }
    }
    if let Some(r) = e.reason {
        s.push_str(&format!(" reason={}", r.name()));
    }
    s
}

pub fn show_run(truth: &Truth, model: &Model, deliveries: &[Delivery]) -> String {
    let mut s = format!(
        "defaults {:?}\nqueues {:?}\ndeliveries (rx: event):\n",
        model.defaults, model.queues
    );
    for d in deliveries {
        s.push_str(&format!(
            "  {}: {}\n",
            rel(d.rx),
            show_event(&truth.events[d.ev])
        ));
    }
    s
}

pub struct Built {
    pub model: Model,
    pub truth: Truth,
    pub deliveries: Vec<Delivery>,
    pub moments: Vec<(usize, i64)>,
    pub restart: Option<usize>,
}

/// Runs one scenario; returns (moments compared with the model, moments skipped).
pub fn run(b: &Built) -> Result<(usize, usize), String> {
    let mut h = Harness::new(&b.truth, &b.model);
    let mut mi = 0;
    for (i, d) in b.deliveries.iter().enumerate() {
        if b.restart == Some(i) {
            h.restart()?;
        }
        h.deliver(*d)?;
        while mi < b.moments.len() && b.moments[mi].0 == i + 1 {
            h.check(b.moments[mi].1)?;
            mi += 1;
        }
    }
    let last = b.deliveries.last().map_or(BASE_MS, |d| d.rx);
    h.finish(last + 200_000)?;
    Ok((h.compared, h.skipped))
}
