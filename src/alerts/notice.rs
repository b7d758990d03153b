//! A notification as it waits in the outbox for one receiver, and the bodies it becomes: a JSON
//! document for a webhook, a list of alerts for an Alertmanager (API v2). docs/alerts.md shows
//! both.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::rule::{Direction, Rule, Transition};

/// What a notification says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeStatus {
    Firing,
    Resolved,
}

/// One level as a receiver is told of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoticeLevel {
    pub level: usize,
    pub severity: String,
    /// When this level was reached.
    pub starts_ms: i64,
}

/// One notification to one receiver; `seq` is shared by the copies other receivers get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub seq: u64,
    pub host_id: String,
    pub rule: String,
    pub objective: Option<String>,
    pub queue: String,
    pub watch: String,
    pub window: Option<String>,
    pub status: NoticeStatus,
    /// The highest level reached.
    pub level: usize,
    /// The levels this receiver is told of (those routed to it).
    pub levels: Vec<NoticeLevel>,
    pub value: Option<f64>,
    pub threshold: f64,
    pub direction: Direction,
    pub hysteresis: f64,
    pub unit: String,
    /// When level 1 fired.
    pub fired_ms: i64,
    /// When this change happened (the resolution time for a resolved one).
    pub at_ms: i64,
}

impl Notice {
    /// The notices of one transition, one per receiver it routes to; `seq` is the caller's.
    #[must_use]
    #[allow(clippy::too_many_arguments)] // the facts of one evaluation, each used once
    pub fn of(
        rule: &Rule,
        queue: &str,
        t: &Transition,
        level_ms: &[i64],
        fired_ms: i64,
        value: Option<f64>,
        now: i64,
        seq: u64,
        host_id: &str,
    ) -> Vec<(String, Notice)> {
        let (status, level) = match *t {
            Transition::Fired => (NoticeStatus::Firing, 1),
            Transition::Escalated { to, .. } => (NoticeStatus::Firing, to),
            Transition::Resolved { levels, .. } => (NoticeStatus::Resolved, levels),
        };
        rule.routes(t)
            .into_iter()
            .map(|(receiver, levels)| {
                let levels = levels
                    .into_iter()
                    .map(|l| NoticeLevel {
                        level: l,
                        severity: rule.levels[l - 1].severity.clone(),
                        starts_ms: level_ms.get(l - 1).copied().unwrap_or(fired_ms),
                    })
                    .collect();
                let notice = Notice {
                    seq,
                    host_id: host_id.to_string(),
                    rule: rule.name.clone(),
                    objective: rule.objective.clone(),
                    queue: queue.to_string(),
                    watch: rule.watch.name().to_string(),
                    window: rule.window.map(|w| w.to_string()),
                    status,
                    level,
                    levels,
                    value,
                    threshold: rule.threshold,
                    direction: rule.direction,
                    hysteresis: rule.hysteresis,
                    unit: rule.watch.unit().to_string(),
                    fired_ms,
                    at_ms: now,
                };
                (receiver, notice)
            })
            .collect()
    }

    /// `<host_id>:alert-<seq>`: the same for every receiver and every retry of this change.
    #[must_use]
    pub fn idempotency_key(&self) -> String {
        format!("{}:alert-{}", self.host_id, self.seq)
    }

    /// How far the value is on the good side of the line (negative: breached by that much).
    #[must_use]
    pub fn margin(&self) -> Option<f64> {
        self.value.map(|v| match self.direction {
            Direction::Below => v - self.threshold,
            Direction::Above => self.threshold - v,
        })
    }

    /// One line for people: what, where, how far off.
    #[must_use]
    pub fn summary(&self) -> String {
        let show = |v: f64| show_value(v, &self.unit);
        let value = self.value.map_or("no value".to_string(), show);
        let figure = match &self.window {
            Some(w) => format!("{} over {w}", self.watch),
            None => self.watch.clone(),
        };
        let side = match self.direction {
            Direction::Below => "below",
            Direction::Above => "above",
        };
        match self.status {
            NoticeStatus::Firing => format!(
                "{figure} of queue {} is {value}, {side} {} (level {})",
                self.queue,
                show(self.threshold),
                self.level
            ),
            NoticeStatus::Resolved => format!(
                "{figure} of queue {} is back at {value} (line {}, hysteresis {})",
                self.queue,
                show(self.threshold),
                show(self.hysteresis)
            ),
        }
    }

    /// The webhook body: one JSON document.
    #[must_use]
    pub fn webhook_json(&self) -> Value {
        let top = self.levels.iter().max_by_key(|l| l.level);
        json!({
            "idempotency_key": self.idempotency_key(),
            "seq": self.seq,
            "host_id": self.host_id,
            "rule": self.rule,
            "objective": self.objective,
            "queue": self.queue,
            "watch": self.watch,
            "window": self.window,
            "status": self.status,
            "level": self.level,
            "levels": self.levels.iter().map(|l| l.level).collect::<Vec<_>>(),
            "severity": top.map(|l| l.severity.as_str()),
            "value": self.value,
            "threshold": self.threshold,
            "direction": self.direction,
            "hysteresis": self.hysteresis,
            "margin": self.margin(),
            "unit": self.unit,
            "fired_at": rfc3339(self.fired_ms),
            "at": rfc3339(self.at_ms),
            "summary": self.summary(),
        })
    }

    /// The Alertmanager body: one alert per level told, labelled by level. A firing alert's
    /// `endsAt` is `expires_ms` (a refresh is due before then); a resolved one's is the time
    /// it resolved.
    #[must_use]
    pub fn alertmanager_json(&self, expires_ms: i64) -> Value {
        let ends = match self.status {
            NoticeStatus::Firing => expires_ms,
            NoticeStatus::Resolved => self.at_ms,
        };
        let margin = self.margin().map(|m| show_value(m, &self.unit));
        Value::Array(
            self.levels
                .iter()
                .map(|l| {
                    json!({
                        "labels": {
                            "alertname": self.rule,
                            "host": self.host_id,
                            "objective": self.objective.as_deref().unwrap_or(&self.rule),
                            "queue": self.queue,
                            "level": l.level.to_string(),
                            "severity": l.severity,
                        },
                        "annotations": {
                            "value": self.value.map_or(String::new(), |v| show_value(v, &self.unit)),
                            "target": show_value(self.threshold, &self.unit),
                            "margin": margin.clone().unwrap_or_default(),
                            "summary": self.summary(),
                        },
                        "startsAt": rfc3339(l.starts_ms),
                        "endsAt": rfc3339(ends),
                    })
                })
                .collect(),
        )
    }
}

/// A value as people read it: a fraction as a percentage, ms as seconds, calls as a count.
#[must_use]
pub fn show_value(v: f64, unit: &str) -> String {
    match unit {
        "fraction" => format!("{:.1} %", v * 100.0),
        "ms" => format!("{:.1} s", v / 1000.0),
        _ => format!("{v}"),
    }
}

/// Epoch ms as RFC 3339 in UTC (what both receivers read).
#[must_use]
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::rule::{Level, Watch};

    fn rule() -> Rule {
        Rule {
            name: "long-waits".into(),
            objective: None,
            watch: Watch::LongestWaitNow,
            window: None,
            queues: vec!["support".into()],
            direction: Direction::Above,
            threshold: 120_000.0,
            hysteresis: 30_000.0,
            for_ms: 0,
            levels: vec![
                Level {
                    after_ms: 0,
                    receivers: vec!["am".into()],
                    severity: "warning".into(),
                },
                Level {
                    after_ms: 900_000,
                    receivers: vec!["am".into(), "hook".into()],
                    severity: "page".into(),
                },
            ],
        }
    }

    #[test]
    fn a_resolve_tells_each_receiver_of_its_levels() {
        let t = Transition::Resolved {
            levels: 2,
            fired_ms: 1_000,
        };
        let got = Notice::of(
            &rule(),
            "support",
            &t,
            &[1_000, 901_000],
            1_000,
            Some(60_000.0),
            1_000_000,
            7,
            "pbx",
        );
        assert_eq!(got.len(), 2);
        let (am, n) = &got[0];
        assert_eq!(am, "am");
        assert_eq!(n.levels.len(), 2);
        let body = n.alertmanager_json(0);
        let alerts = body.as_array().unwrap();
        assert_eq!(alerts.len(), 2);
        assert_eq!(alerts[1]["labels"]["level"], "2");
        assert_eq!(alerts[1]["labels"]["severity"], "page");
        assert_eq!(alerts[1]["labels"]["objective"], "long-waits");
        assert_eq!(alerts[1]["startsAt"], "1970-01-01T00:15:01Z");
        assert_eq!(alerts[1]["endsAt"], "1970-01-01T00:16:40Z");
        assert_eq!(alerts[0]["annotations"]["margin"], "60.0 s");
        let (hook, n) = &got[1];
        assert_eq!(hook, "hook");
        let doc = n.webhook_json();
        assert_eq!(doc["idempotency_key"], "pbx:alert-7");
        assert_eq!(doc["status"], "resolved");
        assert_eq!(doc["levels"], json!([2]));
        assert_eq!(doc["level"], 2);
        assert_eq!(doc["margin"], 60_000.0);
        assert_eq!(
            doc["summary"],
            "longest_wait_now of queue support is back at 60.0 s (line 120.0 s, hysteresis 30.0 s)"
        );
    }
}
