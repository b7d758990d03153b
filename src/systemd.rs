//! systemd integration: sockets passed by socket activation, and `sd_notify` messages
//! (READY, STATUS, WATCHDOG, RELOADING, STOPPING). Outside systemd every call here is a no-op.

use std::collections::HashMap;
use std::os::unix::net::UnixListener;
use std::time::Duration;

use sd_notify::NotifyState;
use tracing::{debug, warn};

/// Socket names (`FileDescriptorName=`); unnamed sockets go by order: first events, then control.
pub const EVENTS_FD_NAME: &str = "events";
pub const CONTROL_FD_NAME: &str = "control";

/// Unix listeners passed by systemd (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`), by name.
pub fn activated_sockets() -> std::io::Result<HashMap<String, UnixListener>> {
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|v| v.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    let mut fds = listenfd::ListenFd::from_env();
    let mut out = HashMap::new();
    for idx in 0..fds.len() {
        // systemd names every socket of one unit alike (the unit name unless FileDescriptorName=),
        // so names other than ours fall back to the order of the ListenStream= lines.
        let name = match names.get(idx).map(String::as_str) {
            Some(n) if n == EVENTS_FD_NAME || n == CONTROL_FD_NAME => n.to_string(),
            _ => [EVENTS_FD_NAME, CONTROL_FD_NAME]
                .get(idx)
                .map_or_else(|| format!("fd{idx}"), std::string::ToString::to_string),
        };
        if let Some(l) = fds.take_unix_listener(idx)? {
            l.set_nonblocking(true)?;
            out.insert(name, l);
        }
    }
    std::env::remove_var("LISTEN_FDNAMES");
    Ok(out)
}

fn send(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        warn!("cannot notify systemd: {e}");
    }
}

pub fn ready(status: &str) {
    debug!("notifying systemd: ready");
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

pub fn reloading() {
    send(&[NotifyState::Reloading]);
}

pub fn reloaded(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// How often to send WATCHDOG=1: half the interval systemd asked for, or `None` without a watchdog.
#[must_use]
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}
