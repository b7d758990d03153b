//! Validation: the checks serde cannot make (ranges, formats, cross-field rules), each naming
//! the dotted key it is about.

use super::{Config, SourceKind, DEFAULT_EVENT_SOCKET};

impl Config {
    /// Cross-field checks: every (dotted key, message) found, none when the config is valid.
    pub(super) fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, msg: String| problems.push((key.to_string(), msg));
        for (key, mode) in [
            ("ingest.socket_mode", &self.ingest.socket_mode),
            ("control.socket_mode", &self.control.socket_mode),
            ("control.admin_socket_mode", &self.control.admin_socket_mode),
        ] {
            match u32::from_str_radix(mode.trim_start_matches("0o"), 8) {
                Ok(bits) if bits <= 0o777 => {}
                _ => bad(
                    key,
                    format!("`{mode}` is not an octal file mode such as \"0660\""),
                ),
            }
        }
        if self.ingest.socket == self.control.socket {
            bad(
                "control.socket",
                format!(
                    "{} is also ingest.socket; events and control need a socket each",
                    self.control.socket.display()
                ),
            );
        }
        let admin = self.control.admin_socket_path();
        for (other, path) in [
            ("ingest.socket", &self.ingest.socket),
            ("control.socket", &self.control.socket),
        ] {
            if admin == *path {
                bad(
                    "control.admin_socket",
                    format!(
                        "{} is also {other}; the admin socket needs a socket of its own, so that writing to the others does not allow flush or reload",
                        admin.display()
                    ),
                );
            }
        }
        if admin.as_os_str().is_empty() || admin.file_name().is_none() {
            bad(
                "control.admin_socket",
                format!("`{}` is not a socket file path", admin.display()),
            );
        }
        if !self.ingest.tcp.is_empty() {
            match self.ingest.tcp.parse::<std::net::SocketAddr>() {
                Ok(a) if a.ip().is_loopback() => {}
                Ok(a) => {
                    bad(
                        "ingest.tcp",
                        format!("{a} is not a loopback address; events are only taken on 127.0.0.1 or [::1]"),
                    );
                }
                Err(_) => bad(
                    "ingest.tcp",
                    format!("`{}` is not an address:port", self.ingest.tcp),
                ),
            }
        }
        if !self.exposition.listen.is_empty() {
            match self.exposition.listen.parse::<std::net::SocketAddr>() {
                Ok(a) if a.ip().is_loopback() || self.exposition.allow_remote => {}
                Ok(a) => bad(
                    "exposition.listen",
                    format!("{a} is not a loopback address; set exposition.allow_remote = true to serve /metrics beyond this host"),
                ),
                Err(_) => bad(
                    "exposition.listen",
                    format!(
                        "`{}` is not an address:port such as \"127.0.0.1:9464\"",
                        self.exposition.listen
                    ),
                ),
            }
        }
        // (key, value, most allowed). The ceilings are far above any real use, and keep a typo
        // (an extra digit or three) from sizing buffers and tables beyond the machine, the same
        // on 32- and 64-bit targets.
        let limits = [
            (
                "limits.max_line_bytes",
                self.limits.max_line_bytes,
                64 << 20,
            ),
            (
                "limits.max_frame_bytes",
                self.limits.max_frame_bytes,
                64 << 20,
            ),
            (
                "limits.max_string_bytes",
                self.limits.max_string_bytes,
                65_536,
            ),
            (
                "limits.max_batch_events",
                self.limits.max_batch_events,
                1_000_000,
            ),
            (
                "limits.max_connections",
                self.limits.max_connections,
                65_536,
            ),
            (
                "limits.max_open_segments",
                self.limits.max_open_segments,
                10_000_000,
            ),
            (
                "limits.max_open_callbacks",
                self.limits.max_open_callbacks,
                10_000_000,
            ),
            ("metrics.max_queues", self.metrics.max_queues, 1_000_000),
            ("metrics.max_agents", self.metrics.max_agents, 1_000_000),
            ("metrics.max_channels", self.metrics.max_channels, 1_000_000),
        ];
        for (key, v, most) in limits {
            if v == 0 {
                bad(key, "must be at least 1".into());
            } else if v > most {
                bad(key, format!("{v} is more than the most allowed, {most}"));
            }
        }
        if self.limits.max_clock_ahead.0 < 1000 {
            bad("limits.max_clock_ahead", "must be at least 1s".into());
        }
        let partial = self.limits.partial_input_timeout;
        if partial.0 < 1000 || partial.0 > 3_600_000 {
            bad(
                "limits.partial_input_timeout",
                format!("{partial} must be from 1s to 1h"),
            );
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
            // `tag` ships the tag buckets, kept only for history.tag_dimensions' names.
            if !["queue", "agent", "channel", "all", "tag"].contains(&d.as_str()) {
                bad(
                    "upstream.dimensions",
                    format!("`{d}` is not one of queue, agent, channel, all, tag"),
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
        let mut names = std::collections::BTreeSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            let key = |k: &str| format!("sources.{i}.{k}");
            let plain = s
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
            if s.name.is_empty() || s.name.len() > 32 || !plain {
                bad(
                    &key("name"),
                    format!("source name `{}` must be 1 to 32 letters, digits, `_`, `-` or `.` (it prefixes the source's call ids as `name:id`)", s.name),
                );
            } else if !names.insert(s.name.as_str()) {
                bad(
                    &key("name"),
                    format!("source name `{}` is used twice; each source needs its own, so their call ids never collide", s.name),
                );
            }
            match s.kind {
                SourceKind::AsteriskQueueLog => {
                    if s.path.file_name().is_none() {
                        bad(
                            &key("path"),
                            format!(
                                "source `{}`: `{}` is not a file path",
                                s.name,
                                s.path.display()
                            ),
                        );
                    }
                    for (k, set) in [
                        ("address", s.address.is_some()),
                        ("password_file", s.password_file.is_some()),
                    ] {
                        if set {
                            bad(&key(k), format!("source `{}`: {k} is for kind `freeswitch`; an asterisk_queue_log source reads `path`", s.name));
                        }
                    }
                }
                SourceKind::Freeswitch => {
                    if !s.path.as_os_str().is_empty() {
                        bad(&key("path"), format!("source `{}`: a freeswitch source reads no file; give `address` (default {DEFAULT_EVENT_SOCKET}) and `password_file`", s.name));
                    }
                    let address = s.address();
                    let port = address.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>()));
                    if !matches!(port, Some((h, Ok(p))) if !h.is_empty() && p > 0) {
                        bad(&key("address"), format!("source `{}`: `{address}` is not host:port (e.g. {DEFAULT_EVENT_SOCKET})", s.name));
                    }
                    if s.password_file
                        .as_ref()
                        .is_none_or(|p| p.file_name().is_none())
                    {
                        bad(&key("password_file"), format!("source `{}`: a freeswitch source needs password_file, a file holding the event socket's password", s.name));
                    }
                }
            }
            if s.poll_interval.0 < 50 || s.poll_interval.0 > 10_000 {
                bad(
                    &key("poll_interval"),
                    format!(
                        "source `{}`: {} must be from 50ms to 10s",
                        s.name, s.poll_interval
                    ),
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
        problems.extend(super::sla::problems(&self.sla, &self.general.time_zone));
        problems.extend(self.wait_rule_problems());
        problems.extend(self.history.problems());
        problems.extend(super::alerts::problems(
            &self.alerts,
            &self.alerting,
            &self.sla,
            &self.metrics.windows,
        ));
        problems
    }
}
