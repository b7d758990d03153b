//! An alert rule and the state machine of one (rule, queue) alert: ok → pending → firing at
//! level 1 → level 2 → … → resolved. Pure: the time and the value are passed in, nothing is
//! read or written, so a restart is a stored state stepped on from where it stood.

use serde::{Deserialize, Serialize};

/// The figure a rule watches, per queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Watch {
    /// The queue's service level (its own formula and T) over a trailing window; a fraction.
    ServiceLevel,
    /// (Ab − S) / (Q − S) over a trailing window; a fraction.
    AbandonRate,
    /// Average speed of answer over a trailing window; ms.
    Asa,
    /// Average handle time over a trailing window; ms.
    Aht,
    /// The longest wait of the calls waiting now (0 when none waits); ms.
    LongestWaitNow,
    /// Calls waiting now; a count.
    WaitingNow,
    /// Callback requests of the queue still open past their deadline now; a count.
    CallbacksOverdue,
}

impl Watch {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Watch::ServiceLevel => "service_level",
            Watch::AbandonRate => "abandon_rate",
            Watch::Asa => "asa",
            Watch::Aht => "aht",
            Watch::LongestWaitNow => "longest_wait_now",
            Watch::WaitingNow => "waiting_now",
            Watch::CallbacksOverdue => "callbacks_overdue",
        }
    }

    /// Computed over a trailing window (else real time).
    #[must_use]
    pub fn windowed(self) -> bool {
        !matches!(
            self,
            Watch::LongestWaitNow | Watch::WaitingNow | Watch::CallbacksOverdue
        )
    }

    /// Its values are counts (of calls, of requests).
    #[must_use]
    pub fn counts(self) -> bool {
        matches!(self, Watch::WaitingNow | Watch::CallbacksOverdue)
    }

    /// Its values are durations in ms.
    #[must_use]
    pub fn takes_duration(self) -> bool {
        matches!(self, Watch::Asa | Watch::Aht | Watch::LongestWaitNow)
    }

    /// The unit of its values, as notifications name it.
    #[must_use]
    pub fn unit(self) -> &'static str {
        if self.takes_duration() {
            "ms"
        } else if self == Watch::WaitingNow {
            "calls"
        } else if self == Watch::CallbacksOverdue {
            "requests"
        } else {
            "fraction"
        }
    }
}

/// Which side of the line is a breach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Below,
    Above,
}

/// One escalation level: when it is reached (after level 1 fired) and who is told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Level {
    pub after_ms: i64,
    pub receivers: Vec<String>,
    pub severity: String,
}

/// A checked rule, the objective's defaults filled in (see `config::AlertRuleConfig::compile`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    pub objective: Option<String>,
    pub watch: Watch,
    /// The trailing window of a windowed figure.
    pub window: Option<crate::units::Millis>,
    pub queues: Vec<String>,
    pub direction: Direction,
    /// The line, in the figure's unit (fraction, ms or calls).
    pub threshold: f64,
    /// How far past the line, on the good side, the value must come back to resolve.
    pub hysteresis: f64,
    /// How long the breach must hold before level 1.
    pub for_ms: i64,
    /// Level 1 first; `after_ms` strictly increasing from 0.
    pub levels: Vec<Level>,
}

impl Rule {
    /// Whether `v` is on the wrong side of the line.
    #[must_use]
    pub fn breached(&self, v: f64) -> bool {
        match self.direction {
            Direction::Below => v < self.threshold,
            Direction::Above => v > self.threshold,
        }
    }

    /// Whether `v` is back past the line by the hysteresis (exactly at it counts; "exactly"
    /// up to the rounding of the sum, so that 0.8 + 0.05 is met by 0.85).
    #[must_use]
    pub fn recovered(&self, v: f64) -> bool {
        let slack = 1e-9 * (1.0 + self.threshold.abs());
        self.margin(v) >= self.hysteresis - slack
    }

    /// How far `v` is on the good side of the line (negative: breached by that much).
    #[must_use]
    pub fn margin(&self, v: f64) -> f64 {
        match self.direction {
            Direction::Below => v - self.threshold,
            Direction::Above => self.threshold - v,
        }
    }

    /// How many levels are due `since_fired_ms` after level 1 fired (at least 1).
    fn levels_due(&self, since_fired_ms: i64) -> usize {
        self.levels
            .iter()
            .filter(|l| l.after_ms <= since_fired_ms)
            .count()
            .max(1)
    }

    /// Advances an alert's phase to `now` with the value seen then (`None`: no value, e.g. no
    /// call in the window; it neither starts, confirms nor ends a breach, and an open alert
    /// keeps escalating). Returns what changed that receivers are told.
    pub fn step(&self, phase: &mut Phase, now: i64, value: Option<f64>) -> Option<Transition> {
        match phase.clone() {
            Phase::Ok => {
                if value.is_some_and(|v| self.breached(v)) {
                    *phase = Phase::Pending { since_ms: now };
                    return self.step(phase, now, value);
                }
                None
            }
            Phase::Pending { since_ms } => {
                if !value.is_some_and(|v| self.breached(v)) {
                    *phase = Phase::Ok;
                    return None;
                }
                if now - since_ms < self.for_ms {
                    return None;
                }
                *phase = Phase::Firing {
                    breach_ms: since_ms,
                    fired_ms: now,
                    level_ms: vec![now],
                };
                // Later levels count from this instant (their `after` is above 0), so the
                // next step escalates them.
                Some(Transition::Fired)
            }
            Phase::Firing {
                breach_ms,
                fired_ms,
                mut level_ms,
            } => {
                if value.is_some_and(|v| self.recovered(v)) {
                    *phase = Phase::Ok;
                    return Some(Transition::Resolved {
                        levels: level_ms.len(),
                        fired_ms,
                    });
                }
                let from = level_ms.len();
                let due = self.levels_due(now - fired_ms).min(self.levels.len());
                if due <= from {
                    return None;
                }
                level_ms.resize(due, now);
                *phase = Phase::Firing {
                    breach_ms,
                    fired_ms,
                    level_ms,
                };
                Some(Transition::Escalated { from, to: due })
            }
        }
    }

    /// Who is told of a transition, and of which levels: receivers in the order the levels
    /// name them, each once.
    #[must_use]
    pub fn routes(&self, t: &Transition) -> Vec<(String, Vec<usize>)> {
        let levels = match *t {
            Transition::Fired => 1..=1,
            Transition::Escalated { from, to } => from + 1..=to,
            Transition::Resolved { levels, .. } => 1..=levels,
        };
        let mut out: Vec<(String, Vec<usize>)> = Vec::new();
        for l in levels {
            let Some(level) = self.levels.get(l - 1) else {
                continue;
            };
            for r in &level.receivers {
                match out.iter_mut().find(|(n, _)| n == r) {
                    Some((_, ls)) => ls.push(l),
                    None => out.push((r.clone(), vec![l])),
                }
            }
        }
        out
    }
}

/// Where one (rule, queue) alert stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Not breached.
    #[default]
    Ok,
    /// Breached since `since_ms`, for less than the rule's `for`.
    Pending { since_ms: i64 },
    /// Firing: the breach began at `breach_ms`, level 1 fired at `fired_ms`, and level `i + 1`
    /// was reached at `level_ms[i]`.
    Firing {
        breach_ms: i64,
        fired_ms: i64,
        level_ms: Vec<i64>,
    },
}

impl Phase {
    /// The level reached, 0 unless firing.
    #[must_use]
    pub fn level(&self) -> usize {
        match self {
            Phase::Firing { level_ms, .. } => level_ms.len(),
            _ => 0,
        }
    }
}

/// A change receivers are told of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Level 1 fired.
    Fired,
    /// Levels `from + 1 ..= to` were reached.
    Escalated { from: usize, to: usize },
    /// The value came back past the hysteresis; `levels` had been reached.
    Resolved { levels: usize, fired_ms: i64 },
}

#[cfg(test)]
#[path = "rule_tests.rs"]
mod tests;
