//! TOML configuration: strict parsing (unknown keys rejected), defaults, and validation whose
//! messages name the key and, where the file has it, the line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::event::EventLimits;
pub use crate::units::{Formula, Millis, QueueParams, ZoneName};

/// The folder the daemon uses when started without `--config`: no root needed.
pub const LOCAL_DIR: &str = "callmetrics-data";

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// Every value that is out of range or inconsistent, one line each.
    #[error("{}", problems_text(.path, .problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

/// One invalid value: its dotted key (array items by index, e.g. `upstream.sinks.1.url`), the
/// line the file writes it on (`None` for a default the file leaves out), and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub line: Option<usize>,
    pub message: String,
}

fn problems_text(path: &Path, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|p| match p.line {
            Some(line) => format!(
                "{}: line {line}: `{}`: {}",
                path.display(),
                p.key,
                p.message
            ),
            None => format!("{}: `{}`: {}", path.display(), p.key, p.message),
        })
        .collect();
    lines.join("\n")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneralConfig {
    /// Time zone for `today` and interval alignment.
    pub time_zone: ZoneName,
    /// Log level when neither `--log-level` nor `RUST_LOG` is given.
    pub log_level: String,
}

impl Default for GeneralConfig {
    fn default() -> Self {
        GeneralConfig {
            time_zone: ZoneName("UTC".into()),
            log_level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    pub socket: PathBuf,
    /// Octal permission bits of the event socket, e.g. "0660".
    pub socket_mode: String,
    /// Optional TCP listener, loopback only, e.g. "127.0.0.1:7071"; empty = off.
    pub tcp: String,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            socket: "/run/callmetrics/events.sock".into(),
            socket_mode: "0660".into(),
            tcp: String::new(),
        }
    }
}

/// Permission bits from an octal string such as "0660" (validated in `Config::validate`).
fn mode_bits(mode: &str) -> u32 {
    u32::from_str_radix(mode.trim_start_matches("0o"), 8).unwrap_or(0o660)
}

impl IngestConfig {
    pub fn mode_bits(&self) -> u32 {
        mode_bits(&self.socket_mode)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    pub socket: PathBuf,
    pub socket_mode: String,
}

impl ControlConfig {
    pub fn mode_bits(&self) -> u32 {
        mode_bits(&self.socket_mode)
    }
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            socket: "/run/callmetrics/control.sock".into(),
            socket_mode: "0660".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub path: PathBuf,
    /// sled page cache, bytes.
    pub cache_bytes: u64,
    /// Refuse new events once the store is this large on disk, bytes.
    pub max_bytes: u64,
    /// Write a checkpoint of the aggregates at least this often while events arrive.
    pub checkpoint_interval: Millis,
    /// ... or after this many events, whichever comes first.
    pub checkpoint_events: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: "/var/lib/callmetrics/store".into(),
            cache_bytes: 8 << 20,
            max_bytes: 1 << 30,
            checkpoint_interval: Millis::secs(60),
            checkpoint_events: 500_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_line_bytes: usize,
    pub max_frame_bytes: usize,
    pub max_string_bytes: usize,
    pub max_tags: usize,
    pub max_batch_events: usize,
    pub max_connections: usize,
    pub max_open_segments: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_line_bytes: 64 * 1024,
            max_frame_bytes: 1 << 20,
            max_string_bytes: 128,
            max_tags: 16,
            max_batch_events: 4096,
            max_connections: 256,
            max_open_segments: 100_000,
        }
    }
}

impl LimitsConfig {
    pub fn event_limits(&self) -> EventLimits {
        EventLimits {
            max_string_bytes: self.max_string_bytes,
            max_tags: self.max_tags,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Trailing windows; up to 1h in whole minutes, longer ones in whole intervals.
    pub windows: Vec<Millis>,
    /// Fixed interval length, aligned in `general.time_zone`; must divide one hour.
    pub interval: Millis,
    /// Answered-within thresholds reported as `bands`.
    pub bands: Vec<Millis>,
    /// A segment with no end after this long is closed as expired.
    pub max_call_duration: Millis,
    /// How long a finished segment stays open to late, out-of-order events before it is folded in.
    pub reorder_grace: Millis,
    /// How long an answered, ended segment waits for `wrapup` before it completes with no ACW.
    pub wrapup_timeout: Millis,
    /// How long a finished call is remembered so late duplicates are recognised.
    pub late_event_window: Millis,
    /// Most finished calls remembered for that.
    pub max_remembered_calls: usize,
    pub max_queues: usize,
    pub max_agents: usize,
    pub max_channels: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            windows: vec![
                Millis::secs(300),
                Millis::secs(900),
                Millis::secs(3600),
                Millis::secs(86_400),
            ],
            interval: Millis::secs(900),
            bands: [10, 20, 30, 60, 120]
                .into_iter()
                .map(Millis::secs)
                .collect(),
            max_call_duration: Millis::secs(4 * 3600),
            reorder_grace: Millis::secs(2),
            wrapup_timeout: Millis::secs(120),
            late_event_window: Millis::secs(600),
            max_remembered_calls: 25_000,
            max_queues: 1000,
            max_agents: 5000,
            max_channels: 64,
        }
    }
}

/// Shipping of closed intervals to central receivers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// This host's name in records; empty = derived from /etc/machine-id.
    pub host_id: String,
    /// An interval is closed into records this long after it ends (late events after that
    /// produce correction records).
    pub close_after: Millis,
    /// Dimensions shipped: `queue` always makes sense; `agent`, `channel` and `all` on demand.
    pub dimensions: Vec<String>,
    /// The outbox is bounded: past this many bytes the oldest records are dropped (and counted).
    pub max_outbox_bytes: u64,
    pub sinks: Vec<SinkConfig>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            host_id: String::new(),
            close_after: Millis::secs(300),
            dimensions: vec!["queue".into()],
            max_outbox_bytes: 256 << 20,
            sinks: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// POST batches of records (JSON or MessagePack).
    Http,
    /// Influx line protocol to an InfluxDB v1/v2 or VictoriaMetrics write endpoint.
    Influx,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    Json,
    Msgpack,
}

/// One receiver of interval records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Unique name; keys this sink's cursor in the outbox.
    pub name: String,
    pub kind: SinkKind,
    /// http(s) URL of the endpoint (for influx, the full write URL with its query, e.g.
    /// "http://127.0.0.1:8428/write" or ".../api/v2/write?org=o&bucket=b&precision=ms").
    pub url: String,
    #[serde(default = "default_format")]
    pub format: BodyFormat,
    #[serde(default)]
    pub gzip: bool,
    /// File holding a token sent as `Authorization: Bearer <token>`; empty = none.
    #[serde(default)]
    pub token_file: String,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Millis,
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Millis,
    /// Most records in one request.
    #[serde(default = "default_batch_records")]
    pub batch_records: usize,
    /// How long to wait for a fuller batch before sending a partial one.
    #[serde(default = "default_linger")]
    pub linger: Millis,
    /// Longest wait between retries.
    #[serde(default = "default_backoff_cap")]
    pub backoff_cap: Millis,
}

fn default_format() -> BodyFormat {
    BodyFormat::Json
}
fn default_connect_timeout() -> Millis {
    Millis::secs(5)
}
fn default_request_timeout() -> Millis {
    Millis::secs(30)
}
fn default_batch_records() -> usize {
    500
}
fn default_linger() -> Millis {
    Millis(1000)
}
fn default_backoff_cap() -> Millis {
    Millis::secs(300)
}

/// Per-queue overrides: any key left out takes the `[defaults]` value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueOverride {
    pub threshold: Option<Millis>,
    pub target: Option<f64>,
    pub short_abandon: Option<Millis>,
    pub formula: Option<Formula>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub general: GeneralConfig,
    pub ingest: IngestConfig,
    pub control: ControlConfig,
    pub store: StoreConfig,
    pub limits: LimitsConfig,
    pub metrics: MetricsConfig,
    pub defaults: QueueParams,
    pub queues: BTreeMap<String, QueueOverride>,
    pub upstream: UpstreamConfig,
}

impl Config {
    /// The config used by `callmetrics run` without `--config`: everything under `dir`.
    pub fn local(dir: &Path) -> Config {
        let mut c = Config::default();
        c.ingest.socket = dir.join("events.sock");
        c.control.socket = dir.join("control.sock");
        c.store.path = dir.join("store");
        c
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates config text; `path` only labels the messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', "\n  "),
        })?;
        let problems = cfg.validate();
        if problems.is_empty() {
            return Ok(cfg);
        }
        let lines = ValueLines::new(text);
        Err(ConfigError::Invalid {
            path: path.to_owned(),
            problems: problems
                .into_iter()
                .map(|(key, message)| Problem {
                    line: lines.line_of(&key),
                    key,
                    message,
                })
                .collect(),
        })
    }

    /// The queue's own service-level parameters.
    pub fn queue_params(&self, queue: &str) -> QueueParams {
        let mut p = self.defaults;
        if let Some(o) = self.queues.get(queue) {
            p.threshold = o.threshold.unwrap_or(p.threshold);
            p.target = o.target.unwrap_or(p.target);
            p.short_abandon = o.short_abandon.unwrap_or(p.short_abandon);
            p.formula = o.formula.unwrap_or(p.formula);
        }
        p
    }

    /// Cross-field checks: every (dotted key, message) found, none when the config is valid.
    fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, msg: String| problems.push((key.to_string(), msg));
        for (key, mode) in [
            ("ingest.socket_mode", &self.ingest.socket_mode),
            ("control.socket_mode", &self.control.socket_mode),
        ] {
            match u32::from_str_radix(mode.trim_start_matches("0o"), 8) {
                Ok(bits) if bits <= 0o777 => {}
                _ => bad(
                    key,
                    format!("`{mode}` is not an octal file mode such as \"0660\""),
                ),
            }
        }
        if !self.ingest.tcp.is_empty() {
            match self.ingest.tcp.parse::<std::net::SocketAddr>() {
                Ok(a) if a.ip().is_loopback() => {}
                Ok(a) => {
                    bad(
                        "ingest.tcp",
                        format!("{a} is not a loopback address; events are only taken on 127.0.0.1 or [::1]"),
                    )
                }
                Err(_) => bad("ingest.tcp", format!("`{}` is not an address:port", self.ingest.tcp)),
            }
        }
        let limits = [
            ("limits.max_line_bytes", self.limits.max_line_bytes),
            ("limits.max_frame_bytes", self.limits.max_frame_bytes),
            ("limits.max_string_bytes", self.limits.max_string_bytes),
            ("limits.max_batch_events", self.limits.max_batch_events),
            ("limits.max_connections", self.limits.max_connections),
            ("limits.max_open_segments", self.limits.max_open_segments),
            ("metrics.max_queues", self.metrics.max_queues),
            ("metrics.max_agents", self.metrics.max_agents),
            ("metrics.max_channels", self.metrics.max_channels),
        ];
        for (key, v) in limits {
            if v == 0 {
                bad(key, "must be at least 1".into());
            }
        }
        if self.store.cache_bytes < 1 << 20 {
            bad(
                "store.cache_bytes",
                "must be at least 1048576 (1 MiB)".into(),
            );
        }
        if self.store.max_bytes < 16 << 20 {
            bad(
                "store.max_bytes",
                "must be at least 16777216 (16 MiB)".into(),
            );
        }
        if self.store.checkpoint_interval.0 < 1000 {
            bad("store.checkpoint_interval", "must be at least 1s".into());
        }
        let m = &self.metrics;
        let iv = m.interval.0;
        let interval_ok = iv >= 60_000 && 3_600_000 % iv == 0 && iv % 60_000 == 0;
        if !interval_ok {
            bad(
                "metrics.interval",
                format!("{} must be a whole number of minutes that divides one hour (e.g. 5m, 15m, 30m, 1h)", m.interval),
            );
        }
        if m.windows.is_empty() {
            bad("metrics.windows", "needs at least one window".into());
        }
        for w in &m.windows {
            let ok = if w.0 <= crate::units::FINE_SPAN_MS {
                w.0 > 0 && w.0 % crate::units::FINE_BUCKET_MS == 0
            } else {
                // Against an invalid interval a long window cannot be judged (that one error is
                // enough), and a zero interval must not be divided by.
                !interval_ok || (w.0 % iv == 0 && w.0 <= 7 * 86_400_000)
            };
            if !ok {
                bad(
                    "metrics.windows",
                    format!("window {w}: windows up to 1h must be whole minutes, longer ones whole intervals ({}) up to 7 days", m.interval),
                );
            }
        }
        if m.bands.is_empty() || m.bands.len() > 16 {
            bad("metrics.bands", "needs 1 to 16 thresholds".into());
        }
        if m.max_call_duration.0 < 60_000 {
            bad("metrics.max_call_duration", "must be at least 1m".into());
        }
        if m.reorder_grace.0 > 600_000 {
            bad("metrics.reorder_grace", "must be at most 10m".into());
        }
        let up = &self.upstream;
        for d in &up.dimensions {
            if !["queue", "agent", "channel", "all"].contains(&d.as_str()) {
                bad(
                    "upstream.dimensions",
                    format!("`{d}` is not one of queue, agent, channel, all"),
                );
            }
        }
        if up.max_outbox_bytes < 1 << 20 {
            bad(
                "upstream.max_outbox_bytes",
                "must be at least 1048576 (1 MiB)".into(),
            );
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, s) in up.sinks.iter().enumerate() {
            let key = |k: &str| format!("upstream.sinks.{i}.{k}");
            if s.name.is_empty() || !names.insert(s.name.as_str()) {
                bad(
                    &key("name"),
                    format!("sink name `{}` is empty or used twice", s.name),
                );
            }
            if !(s.url.starts_with("http://") || s.url.starts_with("https://")) {
                bad(
                    &key("url"),
                    format!(
                        "sink `{}`: `{}` is not an http:// or https:// URL",
                        s.name, s.url
                    ),
                );
            }
            if s.batch_records == 0 || s.batch_records > 100_000 {
                bad(
                    &key("batch_records"),
                    format!("sink `{}`: must be 1 to 100000", s.name),
                );
            }
            if s.backoff_cap.0 < 1000 {
                bad(
                    &key("backoff_cap"),
                    format!("sink `{}`: must be at least 1s", s.name),
                );
            }
            if s.request_timeout.0 < 100 || s.connect_timeout.0 < 100 {
                bad(
                    &key("request_timeout"),
                    format!("sink `{}`: timeouts must be at least 100ms", s.name),
                );
            }
        }
        for (prefix, p) in std::iter::once(("defaults".to_string(), self.defaults)).chain(
            self.queues
                .keys()
                .map(|q| (format!("queues.{q}"), self.queue_params(q))),
        ) {
            if !(0.0..=1.0).contains(&p.target) {
                bad(
                    &format!("{prefix}.target"),
                    format!("{} must be a fraction from 0 to 1 (0.8 = 80 %)", p.target),
                );
            }
        }
        problems
    }
}

/// The lines a config text writes its values on, from the spans the TOML parser keeps (parsed
/// once, however many problems are looked up).
struct ValueLines<'t> {
    text: &'t str,
    root: Option<toml::Spanned<toml::de::DeTable<'t>>>,
}

impl<'t> ValueLines<'t> {
    fn new(text: &'t str) -> Self {
        ValueLines {
            text,
            root: toml::de::DeTable::parse(text).ok(),
        }
    }

    /// The 1-based line on which the text writes the value of `key` (dotted; array items by
    /// index); `None` when the file leaves the key out.
    fn line_of(&self, key: &str) -> Option<usize> {
        use toml::de::{DeTable, DeValue};
        let mut table: &DeTable<'_> = self.root.as_ref()?.get_ref();
        let mut span = None;
        let mut parts = key.split('.').peekable();
        while let Some(part) = parts.next() {
            let (_, value) = table.iter().find(|(k, _)| k.get_ref() == part)?;
            let mut value = value;
            // An array of tables: the next part is the item's index.
            while let DeValue::Array(items) = value.get_ref() {
                let i: usize = parts.next()?.parse().ok()?;
                value = items.get(i)?;
            }
            span = Some(value.span());
            match value.get_ref() {
                DeValue::Table(t) => table = t,
                _ if parts.peek().is_some() => return None,
                _ => {}
            }
        }
        let start = span?.start;
        Some(self.text.get(..start)?.matches('\n').count() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("agent.toml"))
    }

    #[test]
    fn the_shipped_example_is_valid_and_equals_the_defaults() {
        let text = include_str!("../config/agent.toml");
        let cfg = parse(text).unwrap();
        assert_eq!(cfg.metrics, MetricsConfig::default());
        assert_eq!(cfg.limits, LimitsConfig::default());
        assert_eq!(cfg.store, StoreConfig::default());
        assert_eq!(cfg.defaults, QueueParams::default());
        assert_eq!(cfg.general, GeneralConfig::default());
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_line() {
        let err = parse("[metrics]\ninterval = \"15m\"\nwindow = [\"5m\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("window"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn bad_values_name_key_and_line() {
        let err = parse("[defaults]\nthreshold = \"20 parsecs\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("threshold"), "{err}");
        let err = parse("[general]\ntime_zone = \"Mars/Olympus\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Mars/Olympus") && err.contains("line 2"),
            "{err}"
        );
        let err = parse("[metrics]\n\ninterval = \"7m\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("metrics.interval") && err.contains("line 3"),
            "{err}"
        );
        let err = parse("[queues.vip]\ntarget = 80\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("queues.vip.target") && err.contains("line 2"),
            "{err}"
        );
        let err = parse("[ingest]\ntcp = \"0.0.0.0:7000\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("loopback"), "{err}");
    }

    #[test]
    fn every_problem_is_shown_at_its_own_line() {
        let text = "[metrics]\ninterval = \"7m\"\n\n[[upstream.sinks]]\nname = \"a\"\nurl = \"http://a/\"\n\n[[upstream.sinks]]\nname = \"b\"\nurl = \"ftp://b/\"\nbatch_records = 0\n";
        let text = &text.replace("url =", "kind = \"http\"\nurl =");
        let Err(ConfigError::Invalid { problems, .. }) = parse(text) else {
            panic!("the config should be refused");
        };
        let found: Vec<(&str, Option<usize>)> =
            problems.iter().map(|p| (p.key.as_str(), p.line)).collect();
        // The second sink's `url` is on line 12, not on the first sink's line 7.
        assert_eq!(
            found,
            [
                ("metrics.interval", Some(2)),
                ("upstream.sinks.1.url", Some(12)),
                ("upstream.sinks.1.batch_records", Some(13)),
            ]
        );
        let text = parse(text).unwrap_err().to_string();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(
            text.lines().all(|l| l.starts_with("agent.toml: line ")),
            "{text}"
        );
    }

    #[test]
    fn a_default_left_out_of_the_file_is_named_without_a_line() {
        assert_eq!(
            ValueLines::new("[store]\npath = \"x\"\n").line_of("store.max_bytes"),
            None
        );
        assert_eq!(
            ValueLines::new("[store]\npath = \"x\"\n").line_of("store.path"),
            Some(2)
        );
        assert_eq!(
            ValueLines::new("[queues.vip]\n\ntarget = 2\n").line_of("queues.vip.target"),
            Some(3)
        );
    }

    #[test]
    fn queue_overrides_fall_back_to_defaults() {
        let cfg = parse("[defaults]\nthreshold = \"30s\"\n[queues.vip]\nformula = \"answered\"\n")
            .unwrap();
        let p = cfg.queue_params("vip");
        assert_eq!(p.threshold, Millis::secs(30));
        assert_eq!(p.formula, Formula::Answered);
        assert_eq!(cfg.queue_params("other").formula, Formula::Offered);
    }

    #[test]
    fn durations_display_as_written() {
        for s in ["5m", "1h", "20s", "250ms"] {
            assert_eq!(s.parse::<Millis>().unwrap().to_string(), s);
        }
    }
}
