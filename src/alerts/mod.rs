//! Breach alerts: rules over the engine's per-queue figures ([`rule`], a pure state machine with
//! escalation levels and hysteresis), their durable state and notifications ([`board`], written
//! through the store), the figures they watch ([`figures`]), and delivery to Alertmanager and
//! webhook receivers through the store's outbox with retries and parking ([`deliver`]).
//! docs/alerts.md is the user's description.

pub mod board;
pub mod deliver;
pub mod figures;
pub mod notice;
pub mod rule;

use serde::{Deserialize, Serialize};

pub use board::Board;
pub use rule::{Direction, Phase, Rule, Transition, Watch};

/// One alert as `callmetrics alerts` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertView {
    pub rule: String,
    pub objective: Option<String>,
    pub queue: String,
    pub watch: String,
    pub window: Option<String>,
    /// `pending`, `firing` or `resolved`.
    pub state: String,
    /// The level reached (0 while pending).
    pub level: usize,
    pub severity: Option<String>,
    /// When the breach began (pending), level 1 fired (firing and resolved).
    pub since_ms: i64,
    /// When the current level was reached.
    pub level_since_ms: Option<i64>,
    /// When it resolved.
    pub resolved_ms: Option<i64>,
    /// The last value seen (at resolution, for a resolved one).
    pub value: Option<f64>,
    pub threshold: f64,
    pub direction: Direction,
    pub hysteresis: f64,
    /// `fraction`, `ms`, `calls` or `requests`.
    pub unit: String,
}

/// The answer to `alerts`: open (firing, then pending) and the last resolved, newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertsReport {
    pub open: Vec<AlertView>,
    pub resolved: Vec<AlertView>,
}
