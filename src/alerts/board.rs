//! The alert board: every open (rule, queue) alert, stepped by each evaluation and kept in the
//! store. A phase change and the notifications it causes go to the store in one atomic write
//! before the board changes, so the board only ever holds what the store holds: after a restart
//! (even `kill -9`) an open alert is neither forgotten nor announced again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::notice::Notice;
use super::rule::{Phase, Rule, Transition};
use super::{AlertView, AlertsReport};
use crate::store::alerts::AlertWrite;
use crate::store::{Store, StoreError};

/// What the store keeps of an open alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Stored {
    phase: Phase,
    value: Option<f64>,
}

/// One open alert in memory: its phase and the last value seen.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    phase: Phase,
    value: Option<f64>,
}

/// The store key of a (rule, queue) alert.
fn state_key(rule: &str, queue: &str) -> Vec<u8> {
    let mut k = rule.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(queue.as_bytes());
    k
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    rmp_serde::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Every rule and its open alerts.
#[derive(Debug)]
pub struct Board {
    rules: Vec<Rule>,
    host_id: String,
    keep_resolved: usize,
    /// Open (pending or firing) alerts by (rule index, queue).
    open: BTreeMap<(usize, String), Entry>,
}

impl Board {
    /// The board as the store left it. Alerts of rules or queues no longer configured are
    /// removed from the store; their names are returned for the log.
    pub fn load(
        rules: Vec<Rule>,
        host_id: String,
        keep_resolved: usize,
        store: &Store,
    ) -> Result<(Board, Vec<String>), StoreError> {
        let mut board = Board {
            rules,
            host_id,
            keep_resolved,
            open: BTreeMap::new(),
        };
        let mut forgotten = Vec::new();
        for (key, value) in store.alert_states()? {
            let mut parts = key.splitn(2, |b| *b == 0);
            let rule = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            let queue = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            let stored: Option<Stored> = rmp_serde::from_slice(&value).ok();
            let index = board
                .rules
                .iter()
                .position(|r| r.name == rule && r.queues.contains(&queue));
            if let (Some(i), Some(s)) = (index, stored) {
                board.open.insert(
                    (i, queue),
                    Entry {
                        phase: s.phase,
                        value: s.value,
                    },
                );
            } else {
                store.write_alert(
                    &AlertWrite {
                        state_key: key.clone(),
                        ..AlertWrite::default()
                    },
                    keep_resolved,
                )?;
                forgotten.push(format!("{rule} (queue {queue})"));
            }
        }
        Ok((board, forgotten))
    }

    #[must_use]
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Steps the alert of `rule` (an index into [`Board::rules`]) for `queue` to `now` with
    /// `value`; a change is written to the store (with its notifications) before the board
    /// takes it. Returns the receivers that got a notification.
    pub fn evaluate(
        &mut self,
        store: &Store,
        rule: usize,
        queue: &str,
        now: i64,
        value: Option<f64>,
    ) -> Result<Vec<String>, StoreError> {
        let Some(r) = self.rules.get(rule) else {
            return Ok(Vec::new());
        };
        let key = (rule, queue.to_string());
        let before = self.open.get(&key).map_or(Phase::Ok, |e| e.phase.clone());
        let mut phase = before.clone();
        let transition = r.step(&mut phase, now, value);
        if phase == before {
            if let Some(e) = self.open.get_mut(&key) {
                e.value = value;
            }
            return Ok(Vec::new());
        }
        let mut write = AlertWrite {
            state_key: state_key(&r.name, queue),
            state: match phase {
                Phase::Ok => None,
                _ => Some(encode(&Stored {
                    phase: phase.clone(),
                    value,
                })?),
            },
            ..AlertWrite::default()
        };
        let mut receivers = Vec::new();
        if let Some(t) = transition {
            write.seq = store.next_alert_seq()?;
            let (level_ms, fired_ms) = match (&phase, &before) {
                (
                    Phase::Firing {
                        level_ms, fired_ms, ..
                    },
                    _,
                )
                | (
                    _,
                    Phase::Firing {
                        level_ms, fired_ms, ..
                    },
                ) => (level_ms.clone(), *fired_ms),
                _ => (vec![now], now),
            };
            for (receiver, notice) in Notice::of(
                r,
                queue,
                &t,
                &level_ms,
                fired_ms,
                value,
                now,
                write.seq,
                &self.host_id,
            ) {
                write.notices.push((receiver.clone(), encode(&notice)?));
                receivers.push(receiver);
            }
            if let Transition::Resolved { levels, fired_ms } = t {
                let mut view = self.view(rule, queue, &before, value);
                view.state = "resolved".into();
                view.level = levels;
                view.since_ms = fired_ms;
                view.resolved_ms = Some(now);
                write.resolved = Some(encode(&view)?);
            }
        }
        store.write_alert(&write, self.keep_resolved)?;
        match phase {
            Phase::Ok => {
                self.open.remove(&key);
            }
            phase => {
                self.open.insert(key, Entry { phase, value });
            }
        }
        Ok(receivers)
    }

    fn view(&self, rule: usize, queue: &str, phase: &Phase, value: Option<f64>) -> AlertView {
        let r = &self.rules[rule];
        let (state, since_ms, level_since_ms) = match phase {
            Phase::Ok => ("ok", 0, None),
            Phase::Pending { since_ms } => ("pending", *since_ms, None),
            Phase::Firing {
                fired_ms, level_ms, ..
            } => ("firing", *fired_ms, level_ms.last().copied()),
        };
        let level = phase.level();
        AlertView {
            rule: r.name.clone(),
            objective: r.objective.clone(),
            queue: queue.to_string(),
            watch: r.watch.name().to_string(),
            window: r.window.map(|w| w.to_string()),
            state: state.to_string(),
            level,
            severity: level
                .checked_sub(1)
                .and_then(|i| r.levels.get(i))
                .map(|l| l.severity.clone()),
            since_ms,
            level_since_ms,
            resolved_ms: None,
            value,
            threshold: r.threshold,
            direction: r.direction,
            hysteresis: r.hysteresis,
            unit: r.watch.unit().to_string(),
        }
    }

    /// Open alerts (firing first, highest level first, then pending) and the resolved ones the
    /// store keeps.
    pub fn report(&self, store: &Store) -> Result<AlertsReport, StoreError> {
        let mut open: Vec<AlertView> = self
            .open
            .iter()
            .map(|((rule, queue), e)| self.view(*rule, queue, &e.phase, e.value))
            .collect();
        open.sort_by(|a, b| {
            (b.level, a.since_ms, &a.rule, &a.queue).cmp(&(a.level, b.since_ms, &b.rule, &b.queue))
        });
        let resolved = store
            .resolved_alerts()?
            .iter()
            .filter_map(|bytes| rmp_serde::from_slice(bytes).ok())
            .collect();
        Ok(AlertsReport { open, resolved })
    }

    /// The firing alerts `receiver` is told of, as refreshes (seq 0) sent at `now`: for an
    /// Alertmanager, which forgets an alert whose `endsAt` passes.
    #[must_use]
    pub fn firing_for(&self, receiver: &str, now: i64) -> Vec<Notice> {
        let mut out = Vec::new();
        for ((rule, queue), e) in &self.open {
            let Phase::Firing {
                fired_ms, level_ms, ..
            } = &e.phase
            else {
                continue;
            };
            let r = &self.rules[*rule];
            let t = Transition::Escalated {
                from: 0,
                to: level_ms.len(),
            };
            out.extend(
                Notice::of(
                    r,
                    queue,
                    &t,
                    level_ms,
                    *fired_ms,
                    e.value,
                    now,
                    0,
                    &self.host_id,
                )
                .into_iter()
                .filter(|(name, _)| name == receiver)
                .map(|(_, n)| n),
            );
        }
        out
    }

    /// How many alerts are firing, by (rule, queue, level): the `/metrics` gauge.
    #[must_use]
    pub fn firing(&self) -> Vec<(String, String, usize)> {
        self.open
            .iter()
            .filter(|(_, e)| e.phase.level() > 0)
            .map(|((rule, queue), e)| {
                (
                    self.rules[*rule].name.clone(),
                    queue.clone(),
                    e.phase.level(),
                )
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "board_tests.rs"]
mod tests;
