//! [`Alertmanager`]: a real Prometheus Alertmanager (Debian's `prometheus-alertmanager` package)
//! on a free loopback port with its own storage folder and a minimal config whose one route
//! sends every alert group, resolved ones too, to a webhook the test gives (so the test sees
//! what Alertmanager itself concluded, not only what its API lists now).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::victoria::http;
use super::POLL;

/// Where the Debian package installs it.
const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

/// An Alertmanager process; killed on drop.
pub struct Alertmanager {
    child: Child,
    pub addr: std::net::SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Alertmanager {
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("am.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Starts it with every alert its own group (`group_by: ['...']`), notified to `webhook`
    /// after 1 s and on every change after that (resolved included), and waits until its API
    /// answers. Clustering is off (no gossip port).
    pub fn start(webhook: &str) -> Alertmanager {
        assert!(
            Path::new(ALERTMANAGER).exists(),
            "{ALERTMANAGER} is missing: this test needs a real Alertmanager. `.ci/run` installs Debian's \
             `prometheus-alertmanager` package (apt-get install -y prometheus-alertmanager); install it and run again"
        );
        let dir = tempfile::tempdir().expect("a folder for Alertmanager");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: test\n  group_by: ['...']\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
                 receivers:\n  - name: test\n    webhook_configs:\n      - url: '{webhook}'\n        send_resolved: true\n"
            ),
        )
        .expect("write the Alertmanager config");
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], super::free_port()).into();
        let log = std::fs::File::create(dir.path().join("am.log")).expect("create the log");
        let child = Command::new(ALERTMANAGER)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("start prometheus-alertmanager");
        let mut am = Alertmanager { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = am.child.try_wait().expect("poll alertmanager") {
                panic!(
                    "alertmanager exited with {status}; its log:\n{}",
                    am.log_tail()
                );
            }
            if let Ok((200, _)) = http(addr, "GET", "/-/ready", "") {
                return am;
            }
            assert!(
                Instant::now() < deadline,
                "alertmanager did not get ready within 30s; its log:\n{}",
                am.log_tail()
            );
            thread::sleep(POLL);
        }
    }

    /// `http://127.0.0.1:PORT`: what the daemon's receiver `url` is.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The alerts its API lists now (`GET /api/v2/alerts`: active ones; resolved ones are gone).
    pub fn alerts(&self) -> Vec<Value> {
        let (status, text) =
            http(self.addr, "GET", "/api/v2/alerts", "").expect("ask alertmanager for its alerts");
        assert_eq!(status, 200, "GET /api/v2/alerts answered {status}: {text}");
        match serde_json::from_str(&text) {
            Ok(Value::Array(a)) => a,
            other => panic!("GET /api/v2/alerts gave {other:?}"),
        }
    }
}
