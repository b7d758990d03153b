//! The `[[alerts]]` rules and the `[alerting]` section (receivers, evaluation and re-send
//! periods): their types, defaults and checks (each problem named by its dotted key,
//! `alerts.N.field` or `alerting.receivers.N.field`). docs/alerts.md says what they mean.

use serde::{Deserialize, Serialize};

use super::{Measure, Millis, SlaConfig, Target};
use crate::alerts::rule::{Direction, Level, Rule, Watch};

/// Most escalation levels a rule may have.
pub const MAX_LEVELS: usize = 9;
/// Longest `for`, level delay, evaluation or re-send period: one week / one hour.
const MAX_DELAY_MS: i64 = 7 * 86_400_000;
const MAX_PERIOD_MS: i64 = 3_600_000;

/// How alerts are evaluated and sent, and where (`[alerting]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingConfig {
    /// How often every rule is evaluated against the engine's figures.
    pub evaluate_every: Millis,
    /// How often firing alerts are sent again to an Alertmanager (which forgets an alert whose
    /// `endsAt` passes without a refresh; each send sets `endsAt` three periods ahead).
    pub resend_every: Millis,
    /// How many resolved alerts `callmetrics alerts` keeps to show.
    pub keep_resolved: usize,
    pub receivers: Vec<ReceiverConfig>,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        AlertingConfig {
            evaluate_every: Millis::secs(10),
            resend_every: Millis::secs(60),
            keep_resolved: 20,
            receivers: Vec::new(),
        }
    }
}

/// What a receiver speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiverKind {
    /// A Prometheus Alertmanager: `POST <url>/api/v2/alerts`.
    Alertmanager,
    /// Any HTTP endpoint: one JSON document per notification, `POST <url>`.
    Webhook,
}

impl ReceiverKind {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ReceiverKind::Alertmanager => "alertmanager",
            ReceiverKind::Webhook => "webhook",
        }
    }
}

/// One `[[alerting.receivers]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// Unique name, used by the rules' levels.
    pub name: String,
    pub kind: ReceiverKind,
    /// `alertmanager`: its base address (`http://127.0.0.1:9093`); `webhook`: the full URL.
    pub url: String,
    /// File holding a token sent as `Authorization: Bearer <token>`; empty = none.
    #[serde(default)]
    pub token_file: String,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Millis,
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Millis,
    /// Longest wait between retries.
    #[serde(default = "default_backoff_cap")]
    pub backoff_cap: Millis,
}

fn default_connect_timeout() -> Millis {
    Millis::secs(5)
}
fn default_request_timeout() -> Millis {
    Millis::secs(10)
}
fn default_backoff_cap() -> Millis {
    Millis::secs(60)
}

/// One escalation level of a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelConfig {
    /// How long after level 1 fired (the rule still firing) this level is reached; level 1's is
    /// 0 (its delay is the rule's `for`).
    #[serde(default = "zero")]
    pub after: Millis,
    /// Receivers (by name) told when this level is reached and when the alert resolves.
    pub receivers: Vec<String>,
    /// The `severity` label; `warning` for level 1, `critical` above when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
}

fn zero() -> Millis {
    Millis(0)
}

/// One `[[alerts]]` rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRuleConfig {
    /// Unique name: the `alertname` label.
    pub name: String,
    /// An `[[sla]]` objective by name: its target and queues are the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla: Option<String>,
    /// The figure watched; from the objective's measure when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<Watch>,
    /// A configured trailing window, for the windowed figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Millis>,
    /// The queues watched, each on its own; the objective's when left out.
    #[serde(default)]
    pub queues: Vec<String>,
    /// Breached while the value is below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<Target>,
    /// Breached while the value is above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<Target>,
    /// How long the breach must hold before level 1 fires.
    #[serde(rename = "for", default = "zero")]
    pub for_: Millis,
    /// How far back past the line the value must come before the alert resolves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hysteresis: Option<Target>,
    pub levels: Vec<LevelConfig>,
}

/// The figure an objective's measure corresponds to, if an alert can watch it.
fn watch_of(m: Measure) -> Option<Watch> {
    match m {
        Measure::ServiceLevel => Some(Watch::ServiceLevel),
        Measure::AbandonRateMax => Some(Watch::AbandonRate),
        Measure::AsaMax => Some(Watch::Asa),
        Measure::AhtMax => Some(Watch::Aht),
        Measure::AnsweredWithin => None,
        Measure::CallbacksWithin => Some(Watch::CallbacksOverdue),
    }
}

/// A threshold as a number in the watched figure's unit (fraction, ms or count), or why not.
fn number(w: Watch, t: Target) -> Result<f64, String> {
    match (w.takes_duration(), t) {
        (true, Target::Duration(d)) => Ok(d.0 as f64),
        (false, Target::Fraction(x)) if w.counts() => {
            if x >= 0.0 && x.fract() == 0.0 {
                Ok(x)
            } else {
                Err(format!(
                    "`{}` counts {}: write a whole number, not {x}",
                    w.name(),
                    w.unit()
                ))
            }
        }
        (false, Target::Fraction(x)) => {
            if (0.0..=1.0).contains(&x) {
                Ok(x)
            } else {
                Err(format!("{x} must be a fraction from 0 to 1 (0.8 = 80 %)"))
            }
        }
        (true, Target::Fraction(x)) => Err(format!(
            "`{}` is a duration: write e.g. \"30s\", not {x}",
            w.name()
        )),
        (false, Target::Duration(d)) => Err(format!(
            "`{}` is {}: write a number, not \"{d}\"",
            w.name(),
            if w.counts() {
                "a count"
            } else {
                "a fraction (0.8 = 80 %)"
            }
        )),
    }
}

impl AlertRuleConfig {
    /// The rule with the objective's defaults filled in, or every (key relative to the entry,
    /// message) that stops it.
    pub fn compile(
        &self,
        sla: &[SlaConfig],
        windows: &[Millis],
        receivers: &[ReceiverConfig],
    ) -> Result<Rule, Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut bad = |key: &str, msg: String| out.push((key.to_string(), msg));
        if self.name.is_empty() || self.name.len() > 64 {
            bad("name", "must be 1 to 64 bytes".into());
        }
        let objective = self.sla.as_ref().and_then(|n| {
            let found = sla.iter().find(|s| &s.name == n);
            if found.is_none() {
                bad(
                    "sla",
                    format!(
                        "no [[sla]] objective is named `{n}` (configured: {})",
                        names(sla.iter().map(|s| s.name.as_str()))
                    ),
                );
            }
            found
        });
        let watch = match (self.watch, objective) {
            (Some(w), _) => Some(w),
            (None, Some(o)) => {
                let w = watch_of(o.measure);
                if w.is_none() {
                    bad("watch", format!("objective `{}` measures {}, which no alert figure matches; set watch (service_level, abandon_rate, asa, aht, longest_wait_now, waiting_now or callbacks_overdue)", o.name, o.measure.name()));
                }
                w
            }
            (None, None) => {
                bad("watch", "say what the rule watches: service_level, abandon_rate, asa, aht, longest_wait_now, waiting_now or callbacks_overdue (or name an sla objective)".into());
                None
            }
        };
        let queues = if !self.queues.is_empty() {
            self.queues.clone()
        } else if let Some(o) = objective {
            o.scope.queues.clone()
        } else {
            Vec::new()
        };
        if queues.is_empty() {
            bad(
                "queues",
                "name the queues watched (each is alerted on its own)".into(),
            );
        }
        if let Some(w) = watch {
            match (w.windowed(), self.window) {
                (true, None) => bad(
                    "window",
                    format!(
                        "`{}` is computed over a trailing window: name one of metrics.windows ({})",
                        w.name(),
                        list(windows)
                    ),
                ),
                (true, Some(win)) if !windows.contains(&win) => bad(
                    "window",
                    format!(
                        "{win} is not a configured window; metrics.windows has {}",
                        list(windows)
                    ),
                ),
                (false, Some(_)) => bad(
                    "window",
                    format!("`{}` is a real-time figure and has no window", w.name()),
                ),
                _ => {}
            }
        }
        let (direction, line) = match (self.below, self.above) {
            (Some(_), Some(_)) => {
                bad("above", "give either below or above, not both".into());
                (Direction::Below, None)
            }
            (Some(t), None) => (Direction::Below, Some(("below", t))),
            (None, Some(t)) => (Direction::Above, Some(("above", t))),
            (None, None) => {
                if watch == Some(Watch::CallbacksOverdue) {
                    // An objective's target is a share of requests, not a count overdue.
                    bad(
                        "above",
                        "`callbacks_overdue` counts requests past their deadline: give the line, e.g. above = 0".into(),
                    );
                    (Direction::Above, None)
                } else if let Some(o) = objective {
                    let dir = if matches!(
                        o.measure,
                        Measure::ServiceLevel | Measure::AnsweredWithin | Measure::CallbacksWithin
                    ) {
                        Direction::Below
                    } else {
                        Direction::Above
                    };
                    (dir, Some(("sla", o.target)))
                } else {
                    bad(
                        "below",
                        "give the line: below = … or above = … (or name an sla objective)".into(),
                    );
                    (Direction::Below, None)
                }
            }
        };
        let mut threshold = 0.0;
        let mut hysteresis = 0.0;
        if let (Some(w), Some((key, t))) = (watch, line) {
            match number(w, t) {
                Ok(x) => threshold = x,
                Err(m) if key == "sla" => bad(
                    "watch",
                    format!("the objective's target {t} does not fit: {m}; give below or above"),
                ),
                Err(m) => bad(key, m),
            }
            if let Some(h) = self.hysteresis {
                match number(w, h) {
                    Ok(x) => hysteresis = x,
                    Err(m) => bad("hysteresis", m),
                }
            }
        }
        if self.for_.0 > MAX_DELAY_MS {
            bad("for", format!("{} is longer than a week", self.for_));
        }
        if self.levels.is_empty() {
            bad(
                "levels",
                "give at least one level: [[alerts.levels]] with receivers = [\"…\"]".into(),
            );
        }
        if self.levels.len() > MAX_LEVELS {
            bad("levels", format!("at most {MAX_LEVELS} levels"));
        }
        let mut levels = Vec::with_capacity(self.levels.len());
        let mut previous = -1i64;
        for (i, l) in self.levels.iter().enumerate() {
            let key = |k: &str| format!("levels.{i}.{k}");
            if i == 0 && l.after.0 != 0 {
                bad(&key("after"), "level 1 fires as soon as the rule's `for` has passed; leave its after out (delay it with for)".into());
            } else if i > 0 && l.after.0 <= previous {
                bad(
                    &key("after"),
                    format!(
                        "{} must be later than the level before ({})",
                        l.after,
                        Millis(previous)
                    ),
                );
            } else if l.after.0 > MAX_DELAY_MS {
                bad(&key("after"), format!("{} is longer than a week", l.after));
            }
            previous = l.after.0;
            if l.receivers.is_empty() {
                bad(&key("receivers"), "name at least one receiver".into());
            }
            for (j, r) in l.receivers.iter().enumerate() {
                if !receivers.iter().any(|c| &c.name == r) {
                    bad(
                        &format!("levels.{i}.receivers.{j}"),
                        format!(
                            "no [[alerting.receivers]] is named `{r}` (configured: {})",
                            names(receivers.iter().map(|c| c.name.as_str()))
                        ),
                    );
                }
            }
            if let Some(s) = &l.severity {
                if s.is_empty() || s.len() > 32 {
                    bad(&key("severity"), "must be 1 to 32 bytes".into());
                }
            }
            levels.push(Level {
                after_ms: l.after.0,
                receivers: l.receivers.clone(),
                severity: l
                    .severity
                    .clone()
                    .unwrap_or_else(|| if i == 0 { "warning" } else { "critical" }.into()),
            });
        }
        match (out.is_empty(), watch) {
            (true, Some(watch)) => Ok(Rule {
                name: self.name.clone(),
                objective: self.sla.clone(),
                watch,
                window: self.window.filter(|_| watch.windowed()),
                queues,
                direction,
                threshold,
                hysteresis,
                for_ms: self.for_.0,
                levels,
            }),
            _ => Err(out),
        }
    }
}

/// Names for a message: `a, b`, or `none`.
fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = it.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn list(windows: &[Millis]) -> String {
    windows
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every (dotted key, message) wrong with the alert rules and receivers.
pub(super) fn problems(
    rules: &[AlertRuleConfig],
    alerting: &AlertingConfig,
    sla: &[SlaConfig],
    windows: &[Millis],
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (key, m) in [
        ("alerting.evaluate_every", alerting.evaluate_every),
        ("alerting.resend_every", alerting.resend_every),
    ] {
        if m.0 < 1000 || m.0 > MAX_PERIOD_MS {
            out.push((key.to_string(), format!("{m} must be from 1s to 1h")));
        }
    }
    if alerting.keep_resolved > 1000 {
        out.push((
            "alerting.keep_resolved".into(),
            format!("{} is more than 1000", alerting.keep_resolved),
        ));
    }
    for (i, r) in alerting.receivers.iter().enumerate() {
        let key = |k: &str| format!("alerting.receivers.{i}.{k}");
        if r.name.is_empty() || r.name.len() > 64 || r.name.contains('\0') {
            out.push((key("name"), "must be 1 to 64 bytes".into()));
        }
        if alerting.receivers[..i].iter().any(|o| o.name == r.name) {
            out.push((
                key("name"),
                format!("`{}` names another receiver too", r.name),
            ));
        }
        if !(r.url.starts_with("http://") || r.url.starts_with("https://")) {
            out.push((
                key("url"),
                format!(
                    "`{}` is not an http(s) URL",
                    crate::upstream::redact::redact_url(&r.url)
                ),
            ));
        }
        for (k, m) in [
            ("connect_timeout", r.connect_timeout),
            ("request_timeout", r.request_timeout),
            ("backoff_cap", r.backoff_cap),
        ] {
            if m.0 < 100 || m.0 > MAX_PERIOD_MS {
                out.push((key(k), format!("{m} must be from 100ms to 1h")));
            }
        }
    }
    for (i, rule) in rules.iter().enumerate() {
        if rules[..i].iter().any(|o| o.name == rule.name) {
            out.push((
                format!("alerts.{i}.name"),
                format!("`{}` names another rule too", rule.name),
            ));
        }
        if let Err(p) = rule.compile(sla, windows, &alerting.receivers) {
            out.extend(p.into_iter().map(|(k, m)| (format!("alerts.{i}.{k}"), m)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{Config, ConfigError};
    use super::*;

    const RECEIVERS: &str = r#"
[alerting]
evaluate_every = "5s"

[[alerting.receivers]]
name = "am"
kind = "alertmanager"
url = "http://127.0.0.1:9093"

[[alerting.receivers]]
name = "hook"
kind = "webhook"
url = "https://hooks.example/cc"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("{RECEIVERS}{text}"), Path::new("agent.toml"))
    }

    fn problems(text: &str) -> Vec<(String, Option<usize>, String)> {
        match parse(text) {
            Err(ConfigError::Invalid { problems, .. }) => problems
                .into_iter()
                .map(|p| (p.key, p.line, p.message))
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    fn rule(cfg: &Config, i: usize) -> Rule {
        cfg.alerts[i]
            .compile(&cfg.sla, &cfg.metrics.windows, &cfg.alerting.receivers)
            .unwrap()
    }

    #[test]
    fn a_rule_takes_its_objectives_target_and_queues() {
        let cfg = parse(
            r#"
[[sla]]
name = "gold"
scope = { queues = ["support", "vip"] }
measure = "asa_max"
target = "30s"
period = "month"

[[alerts]]
name = "gold-asa"
sla = "gold"
window = "15m"
for = "5m"
hysteresis = "5s"
levels = [
  { receivers = ["am"] },
  { after = "15m", receivers = ["am", "hook"], severity = "page" },
]

[[alerts]]
name = "queue-full"
watch = "waiting_now"
queues = ["support"]
above = 10
hysteresis = 2
levels = [{ receivers = ["hook"] }]
"#,
        )
        .unwrap();
        let r = rule(&cfg, 0);
        assert_eq!(r.watch, Watch::Asa);
        assert_eq!(r.queues, ["support", "vip"]);
        assert_eq!(
            (r.direction, r.threshold, r.hysteresis, r.for_ms),
            (Direction::Above, 30_000.0, 5_000.0, 300_000)
        );
        assert_eq!(r.window, Some(Millis::secs(900)));
        assert_eq!(
            r.levels
                .iter()
                .map(|l| (l.after_ms, l.severity.as_str()))
                .collect::<Vec<_>>(),
            [(0, "warning"), (900_000, "page")]
        );
        let r = rule(&cfg, 1);
        assert_eq!(
            (r.watch, r.window, r.threshold, r.hysteresis),
            (Watch::WaitingNow, None, 10.0, 2.0)
        );
        assert_eq!(cfg.alerting.evaluate_every, Millis::secs(5));
    }

    #[test]
    fn overdue_callbacks_take_the_objectives_queues_and_need_a_count() {
        const CALLBACKS: &str = r#"
[[sla]]
name = "same-day"
scope = { queues = ["support"] }
measure = "callbacks_within"
promise = "same_business_day"
target = 0.95
period = "day"
"#;
        let cfg = parse(&format!(
            "{CALLBACKS}\n[[alerts]]\nname = \"late-callbacks\"\nsla = \"same-day\"\nabove = 2\nhysteresis = 1\nlevels = [{{ receivers = [\"am\"] }}]\n"
        ))
        .unwrap();
        let r = rule(&cfg, 0);
        assert_eq!(
            (r.watch, r.window, r.direction, r.threshold, r.hysteresis),
            (Watch::CallbacksOverdue, None, Direction::Above, 2.0, 1.0)
        );
        assert_eq!(r.queues, ["support"]);
        let got = problems(&format!(
            "{CALLBACKS}\n[[alerts]]\nname = \"a\"\nsla = \"same-day\"\nlevels = [{{ receivers = [\"am\"] }}]\n\n[[alerts]]\nname = \"b\"\nsla = \"same-day\"\nabove = 1.5\nlevels = [{{ receivers = [\"am\"] }}]\n"
        ));
        let keys: Vec<&str> = got.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(keys, ["alerts.0.above", "alerts.1.above"], "{got:?}");
        assert!(got[1].2.contains("counts requests"), "{got:?}");
    }

    #[test]
    fn each_mistake_is_named_by_its_key_and_line() {
        let got = problems(
            r#"
[[alerts]]
name = "sl"
watch = "service_level"
window = "7m"
queues = ["support"]
below = 80
levels = [{ receivers = ["am"] }, { after = "0s", receivers = ["pager"] }]

[[alerts]]
name = "sl"
watch = "longest_wait_now"
window = "5m"
above = 0.5
levels = []
"#,
        );
        let keys: Vec<&str> = got.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(
            keys,
            [
                "alerts.0.window",
                "alerts.0.below",
                "alerts.0.levels.1.after",
                "alerts.0.levels.1.receivers.0",
                "alerts.1.name",
                "alerts.1.queues",
                "alerts.1.window",
                "alerts.1.above",
                "alerts.1.levels",
            ],
            "{got:#?}"
        );
        let msg = |k: &str| &got.iter().find(|p| p.0 == k).unwrap().2;
        assert_eq!(
            msg("alerts.0.window"),
            "7m is not a configured window; metrics.windows has 5m, 15m, 1h, 24h"
        );
        assert_eq!(
            msg("alerts.0.levels.1.receivers.0"),
            "no [[alerting.receivers]] is named `pager` (configured: am, hook)"
        );
        assert!(msg("alerts.1.above").contains("is a duration"));
        // Lines count from the file's start: 13 lines of receivers, then the rule's.
        assert_eq!(got[0].1, Some(18));
    }

    #[test]
    fn unknown_keys_and_bad_receivers_are_refused() {
        let err = parse("[[alerts]]\nname = \"x\"\nwatch = \"asa\"\nthreshold = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `threshold`"), "{err}");
        let got = problems(
            "[[alerting.receivers]]\nname = \"am\"\nkind = \"webhook\"\nurl = \"ftp://x\"\nbackoff_cap = \"10ms\"\n",
        );
        let keys: Vec<&str> = got.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(
            keys,
            [
                "alerting.receivers.2.name",
                "alerting.receivers.2.url",
                "alerting.receivers.2.backoff_cap"
            ]
        );
    }

    /// The commented `[alerting]` and `[[alerts]]` examples of config/agent.toml, uncommented
    /// (with the `[[sla]]` examples before them), are a valid config meaning what they say.
    #[test]
    fn the_shipped_commented_examples_are_valid() {
        let text = super::super::shipped_examples_from("# [[sla]]");
        let cfg = Config::parse(&text, Path::new("agent.toml")).unwrap();
        assert_eq!(
            AlertingConfig {
                receivers: Vec::new(),
                ..cfg.alerting.clone()
            },
            AlertingConfig::default()
        );
        let sl = rule(&cfg, 0);
        assert_eq!(sl.queues, ["support", "sales"]);
        assert_eq!(
            (sl.direction, sl.threshold, sl.hysteresis, sl.for_ms),
            (Direction::Below, 0.85, 0.03, 300_000)
        );
        assert_eq!(sl.levels[1].after_ms, 900_000);
        assert_eq!(sl.levels[0].severity, "warning");
        let wait = rule(&cfg, 1);
        assert_eq!((wait.threshold, wait.hysteresis), (120_000.0, 30_000.0));
        let overdue = rule(&cfg, 2);
        assert_eq!(
            (overdue.watch, overdue.direction, overdue.threshold),
            (Watch::CallbacksOverdue, Direction::Above, 0.0)
        );
        assert_eq!(overdue.queues, ["support"]);
    }
}
