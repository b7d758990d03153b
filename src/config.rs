//! TOML configuration: strict parsing (unknown keys rejected), defaults, and validation whose
//! messages name the key and, where the file has it, the line.
//!
//! The sections and their defaults are here; the checks are in `config/validate.rs`, the errors
//! and their line numbers in `config/problems.rs`.

mod alerts;
mod problems;
mod sla;
mod tag_dims;
mod validate;
mod wait_rules;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::event::EventLimits;
pub use crate::units::{Formula, Millis, QueueParams, ZoneName};
pub use alerts::{
    AlertRuleConfig, AlertingConfig, LevelConfig, ReceiverConfig, ReceiverKind, MAX_LEVELS,
};
use problems::ValueLines;
pub use problems::{ConfigError, Problem};
pub use sla::{
    HistoryConfig, HoursConfig, Measure, Period, ScopeConfig, SlaConfig, Target, WaitClock,
    DEFAULT_KEEP_PERIODS, MAX_KEEP_PERIODS,
};
pub use wait_rules::{ChannelRules, QueueTable, ResolvedWait, WaitFields, MAX_WAIT_RULE_MS};

/// The folder the daemon uses when started without `--config`: no root needed.
pub const LOCAL_DIR: &str = "callmetrics-data";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneralConfig {
    /// Time zone for `today` and interval alignment.
    pub time_zone: ZoneName,
    /// Log level (or levels by module, see `cli::log_filter`) when neither `--log-level` nor
    /// `RUST_LOG` is given.
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

/// The optional Prometheus `/metrics` listener (see `exposition`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExpositionConfig {
    /// `address:port` of the HTTP listener; empty = off.
    pub listen: String,
    /// Allows a non-loopback `listen` address: the figures then reach whoever reaches the port.
    pub allow_remote: bool,
}

/// Permission bits from an octal string such as "0660" (validated in `Config::validate`; an
/// invalid string, which a loaded config never holds, gives the strict 0o600).
fn mode_bits(mode: &str) -> u32 {
    u32::from_str_radix(mode.trim_start_matches("0o"), 8).unwrap_or(0o600)
}

impl IngestConfig {
    #[must_use]
    pub fn mode_bits(&self) -> u32 {
        mode_bits(&self.socket_mode)
    }
}

/// The file name of the admin socket when `control.admin_socket` is left out: it sits beside
/// the control socket.
pub const ADMIN_SOCKET_NAME: &str = "admin.sock";

/// The two control sockets: `socket` answers read-only requests (status, metrics, calls,
/// outbox) to anyone who may write to it; `admin_socket` also takes the mutating ones (flush,
/// reload), so its mode is tighter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    pub socket: PathBuf,
    pub socket_mode: String,
    /// The admin socket; `None` (left out) puts `admin.sock` beside `socket`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_socket: Option<PathBuf>,
    /// Octal permission bits of the admin socket: its owner (the daemon's user) only, by default.
    pub admin_socket_mode: String,
}

impl ControlConfig {
    #[must_use]
    pub fn mode_bits(&self) -> u32 {
        mode_bits(&self.socket_mode)
    }

    #[must_use]
    pub fn admin_mode_bits(&self) -> u32 {
        mode_bits(&self.admin_socket_mode)
    }

    /// The admin socket: as configured, else `admin.sock` beside the control socket.
    #[must_use]
    pub fn admin_socket_path(&self) -> PathBuf {
        match &self.admin_socket {
            Some(p) => p.clone(),
            None => beside(&self.socket),
        }
    }
}

/// `admin.sock` in the folder of `control_socket`: where the admin socket is when nothing says
/// otherwise.
#[must_use]
pub fn beside(control_socket: &Path) -> PathBuf {
    control_socket.with_file_name(ADMIN_SOCKET_NAME)
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            socket: "/run/callmetrics/control.sock".into(),
            socket_mode: "0660".into(),
            admin_socket: None,
            admin_socket_mode: "0600".into(),
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
    /// How far an event's `ts` may be ahead of this host's clock when it arrives.
    #[serde(with = "crate::units::duration_text")]
    pub max_clock_ahead: Millis,
    /// Longest a line or frame may take to arrive once its first byte has; a connection that
    /// leaves one half-sent longer is closed, so it cannot hold its slot busy for ever.
    #[serde(with = "crate::units::duration_text")]
    pub partial_input_timeout: Millis,
    /// Most callback requests held open (over every `callbacks_within` objective); over it, an
    /// `end` with reason `callback` is still taken but opens no request, counted in status.
    pub max_open_callbacks: usize,
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
            max_clock_ahead: Millis::secs(300),
            partial_input_timeout: Millis::secs(30),
            max_open_callbacks: 100_000,
        }
    }
}

impl LimitsConfig {
    #[must_use]
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
    /// POST batches of records (JSON or `MessagePack`).
    Http,
    /// Influx line protocol to an `InfluxDB` v1/v2 or `VictoriaMetrics` write endpoint.
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
    /// "<http://127.0.0.1:8428/write>" or ".../api/v2/write?org=o&bucket=b&precision=ms").
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

/// What an in-daemon source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// An Asterisk `queue_log` file, followed as it grows and across rotations.
    AsteriskQueueLog,
    /// FreeSWITCH `mod_callcenter` events, read from its inbound event socket.
    Freeswitch,
}

impl SourceKind {
    /// The name the config and `status` use.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::AsteriskQueueLog => "asterisk_queue_log",
            SourceKind::Freeswitch => "freeswitch",
        }
    }
}

/// Where a `freeswitch` source connects when `address` is not given: `mod_event_socket`'s
/// default listener.
pub const DEFAULT_EVENT_SOCKET: &str = "127.0.0.1:8021";

/// One `[[sources]]` entry: a PBX source the daemon reads itself (see docs/sources.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Unique name; prefixes the source's call ids (`<name>:<uniqueid>`) and keys its stored
    /// position.
    pub name: String,
    pub kind: SourceKind,
    /// `asterisk_queue_log`: the file followed, e.g. `/var/log/asterisk/queue_log`.
    #[serde(default)]
    pub path: PathBuf,
    /// `freeswitch`: the event socket's `host:port` ([`DEFAULT_EVENT_SOCKET`] when absent).
    #[serde(default)]
    pub address: Option<String>,
    /// `freeswitch`: a file holding the event socket's password (surrounding whitespace
    /// trimmed); it must not be readable by every user.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// What a `WITHDRAW` line ends a segment as: `exit` or `callback`.
    #[serde(default)]
    pub withdraw: crate::sources::asterisk::WithdrawAs,
    /// How often the file is looked at for new lines.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: Millis,
}

fn default_poll_interval() -> Millis {
    Millis(250)
}

impl SourceConfig {
    /// Where a `freeswitch` source connects.
    #[must_use]
    pub fn address(&self) -> &str {
        self.address.as_deref().unwrap_or(DEFAULT_EVENT_SOCKET)
    }

    /// What `status` shows the source reads: the file, or the event socket's address.
    #[must_use]
    pub fn target(&self) -> String {
        match self.kind {
            SourceKind::AsteriskQueueLog => self.path.display().to_string(),
            SourceKind::Freeswitch => self.address().to_string(),
        }
    }
}

/// Per-queue overrides: any key left out takes the `[defaults]` value. Read from the whole
/// `[queues.NAME]` table ([`QueueTable`], strict), whose wait rules go to `Config::queue_waits`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "QueueTable")]
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
    pub exposition: ExpositionConfig,
    /// PBX sources read inside the daemon (`[[sources]]`).
    pub sources: Vec<SourceConfig>,
    /// Service-level objectives (`[[sla]]`, docs/sla.md).
    pub sla: Vec<SlaConfig>,
    /// How long interval history is kept.
    pub history: HistoryConfig,
    /// Alert receivers and evaluation (`[alerting]`, docs/alerts.md).
    pub alerting: AlertingConfig,
    /// Breach alert rules (`[[alerts]]`, docs/alerts.md).
    pub alerts: Vec<AlertRuleConfig>,
    /// Per-channel wait rules (`[channels.NAME]`, docs/slow-channels.md).
    pub channels: BTreeMap<String, ChannelRules>,
    /// The wait rules of `[queues.NAME]` tables (docs/slow-channels.md): read from the same
    /// tables as `queues`, kept apart so a `QueueOverride` stays four plain fields.
    #[serde(skip)]
    pub queue_waits: BTreeMap<String, WaitFields>,
}

impl Config {
    /// The config used by `callmetrics run` without `--config`: everything under `dir`.
    #[must_use]
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
        let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', "\n  "),
        })?;
        cfg.queue_waits = wait_rules::queue_wait_fields(text);
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
    #[must_use]
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
}

/// The commented settings of config/agent.toml from the line `marker` on, uncommented: section
/// headers and `key = value` lines (their trailing comments cut), prose left out. The shipped
/// examples' tests parse this to check the examples mean what they say.
#[cfg(test)]
fn shipped_examples_from(marker: &str) -> String {
    let shipped = include_str!("../config/agent.toml");
    let from = shipped
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in agent.toml"));
    let mut text = String::new();
    for line in shipped[from..].lines() {
        let Some(body) = line.strip_prefix("# ") else {
            continue;
        };
        let is_setting = body.starts_with('[')
            || body
                .split_once(" = ")
                .is_some_and(|(k, _)| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        if is_setting {
            text.push_str(body.split("  #").next().unwrap_or(body));
            text.push('\n');
        }
    }
    text
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
        assert_eq!(cfg.control, ControlConfig::default());
        assert_eq!(cfg.ingest, IngestConfig::default());
    }

    #[test]
    fn one_path_for_both_sockets_is_refused_naming_the_key() {
        let err = parse(
            "[ingest]\nsocket = \"/run/cm/one.sock\"\n[control]\nsocket = \"/run/cm/one.sock\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("control.socket")
                && err.contains("line 4")
                && err.contains("a socket each"),
            "{err}"
        );
        parse("[ingest]\nsocket = \"/run/cm/events.sock\"\n[control]\nsocket = \"/run/cm/control.sock\"\n")
            .unwrap();
    }

    #[test]
    fn the_admin_socket_defaults_beside_the_control_socket_with_mode_0600() {
        let cfg = parse("").unwrap();
        assert_eq!(
            cfg.control.admin_socket_path(),
            Path::new("/run/callmetrics/admin.sock")
        );
        assert_eq!(cfg.control.admin_mode_bits(), 0o600);
        let cfg = parse("[control]\nsocket = \"/srv/cm/ctl.sock\"\n").unwrap();
        assert_eq!(
            cfg.control.admin_socket_path(),
            Path::new("/srv/cm/admin.sock")
        );
        let local = Config::local(Path::new("here"));
        assert_eq!(
            local.control.admin_socket_path(),
            Path::new("here/admin.sock")
        );
        let cfg = parse(
            "[control]\nadmin_socket = \"/run/cm/root-only.sock\"\nadmin_socket_mode = \"0660\"\n",
        )
        .unwrap();
        assert_eq!(
            cfg.control.admin_socket_path(),
            Path::new("/run/cm/root-only.sock")
        );
        assert_eq!(cfg.control.admin_mode_bits(), 0o660);
    }

    #[test]
    fn a_bad_admin_socket_mode_is_refused_naming_the_key_and_line() {
        for mode in ["rw-------", "0800", "01777", ""] {
            let err = parse(&format!(
                "[control]\nsocket = \"/run/cm/c.sock\"\nadmin_socket_mode = {mode:?}\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("control.admin_socket_mode")
                    && err.contains("line 3")
                    && err.contains("octal file mode"),
                "{mode}: {err}"
            );
        }
        let err = parse("[control]\nadmin_socket_mode = 600\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("admin_socket_mode"), "{err}");
    }

    #[test]
    fn an_admin_socket_shared_with_another_is_refused_naming_the_key() {
        for (text, other, line) in [
            (
                "[ingest]\nsocket = \"/run/cm/a.sock\"\n[control]\nadmin_socket = \"/run/cm/a.sock\"\n",
                "ingest.socket",
                Some(4),
            ),
            (
                "[control]\nsocket = \"/run/cm/c.sock\"\nadmin_socket = \"/run/cm/c.sock\"\n",
                "control.socket",
                Some(3),
            ),
            // Left out, it goes beside the control socket: here onto the control socket itself.
            (
                "[control]\nsocket = \"/run/cm/admin.sock\"\n",
                "control.socket",
                None,
            ),
        ] {
            let Err(ConfigError::Invalid { problems, .. }) = parse(text) else {
                panic!("accepted: {text}");
            };
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].key, "control.admin_socket");
            assert_eq!(problems[0].line, line, "{text}");
            assert!(
                problems[0].message.contains(other)
                    && problems[0].message.contains("socket of its own"),
                "{problems:?}"
            );
        }
        let err = parse("[control]\nadmin_socket = \"\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("control.admin_socket") && err.contains("not a socket file path"),
            "{err}"
        );
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
        let err = parse("[limits]\nmax_connections = 5000000000\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("limits.max_connections")
                && err.contains("line 2")
                && err.contains("65536"),
            "{err}"
        );
        let err = parse("[ingest]\ntcp = \"0.0.0.0:7000\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("loopback"), "{err}");
    }

    #[test]
    fn exposition_is_off_by_default_and_loopback_unless_allowed() {
        assert_eq!(parse("").unwrap().exposition.listen, "");
        let err = parse("[exposition]\nlisten = \"0.0.0.0:9464\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("exposition.listen")
                && err.contains("line 2")
                && err.contains("allow_remote"),
            "{err}"
        );
        let err = parse("[exposition]\nlisten = \"localhost\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("exposition.listen") && err.contains("address:port"),
            "{err}"
        );
        let ok = parse("[exposition]\nlisten = \"0.0.0.0:9464\"\nallow_remote = true\n").unwrap();
        assert!(ok.exposition.allow_remote);
        let err = parse("[exposition]\nport = 9464\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("port"), "{err}");
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

    /// The (key, line) of each problem of an invalid config, and their messages.
    fn problem_keys(text: &str) -> (Vec<(String, Option<usize>)>, Vec<String>) {
        let Err(ConfigError::Invalid { problems, .. }) = parse(text) else {
            panic!("accepted: {text}")
        };
        problems
            .into_iter()
            .map(|p| ((p.key, p.line), p.message))
            .unzip()
    }

    #[test]
    fn sources_are_strict_and_their_names_unique_and_plain() {
        let ok = parse(
            "[[sources]]\nname = \"pbx1\"\nkind = \"asterisk_queue_log\"\npath = \"/var/log/asterisk/queue_log\"\n",
        )
        .unwrap();
        assert_eq!(ok.sources.len(), 1);
        assert_eq!(ok.sources[0].poll_interval, Millis(250));
        assert_eq!(
            ok.sources[0].withdraw,
            crate::sources::asterisk::WithdrawAs::Exit
        );
        let unknown = parse(
            "[[sources]]\nname = \"a\"\nkind = \"asterisk_queue_log\"\npath = \"/q\"\nfollow = true\n",
        )
        .unwrap_err()
        .to_string();
        assert!(unknown.contains("follow"), "{unknown}");
        let kind = parse("[[sources]]\nname = \"a\"\nkind = \"asterisk\"\npath = \"/q\"\n")
            .unwrap_err()
            .to_string();
        assert!(kind.contains("asterisk_queue_log"), "{kind}");
        let text = "[[sources]]\nname = \"a:b\"\nkind = \"asterisk_queue_log\"\npath = \"/q\"\n\n[[sources]]\nname = \"c\"\nkind = \"asterisk_queue_log\"\npath = \"\"\npoll_interval = \"1ms\"\n\n[[sources]]\nname = \"c\"\nkind = \"asterisk_queue_log\"\npath = \"/r\"\n";
        assert_eq!(
            problem_keys(text).0,
            [
                ("sources.0.name".to_string(), Some(2)),
                ("sources.1.path".to_string(), Some(9)),
                ("sources.1.poll_interval".to_string(), Some(10)),
                ("sources.2.name".to_string(), Some(13)),
            ]
        );
    }

    #[test]
    fn freeswitch_sources_need_a_password_file_and_no_path() {
        let ok = parse(
            "[[sources]]\nname = \"fs1\"\nkind = \"freeswitch\"\npassword_file = \"/etc/callmetrics/esl.pass\"\n",
        )
        .unwrap();
        assert_eq!(ok.sources[0].address(), DEFAULT_EVENT_SOCKET);
        assert_eq!(ok.sources[0].target(), "127.0.0.1:8021");
        let text = "[[sources]]\nname = \"a\"\nkind = \"freeswitch\"\npath = \"/q\"\naddress = \"nohost\"\n\n[[sources]]\nname = \"b\"\nkind = \"asterisk_queue_log\"\npath = \"/q\"\npassword_file = \"/p\"\n";
        let (keys, messages) = problem_keys(text);
        assert_eq!(
            keys,
            [
                ("sources.0.path".to_string(), Some(4)),
                ("sources.0.address".to_string(), Some(5)),
                ("sources.0.password_file".to_string(), None),
                ("sources.1.password_file".to_string(), Some(11)),
            ]
        );
        assert!(messages[2].contains("needs password_file"), "{messages:?}");
    }

    #[test]
    fn durations_display_as_written() {
        for s in ["5m", "1h", "20s", "250ms"] {
            assert_eq!(s.parse::<Millis>().unwrap().to_string(), s);
        }
    }
}
