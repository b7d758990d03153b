//! systemd integration: sockets passed by socket activation, and `sd_notify` messages
//! (READY, STATUS, WATCHDOG, RELOADING, STOPPING). Outside systemd every call here is a no-op.

use std::collections::HashMap;
use std::os::unix::net::UnixListener;
use std::time::Duration;

use sd_notify::NotifyState;
use tracing::{debug, warn};

/// Socket names (`FileDescriptorName=`); sockets under other names go by their order: first
/// events, then control. The admin socket, in a unit of its own (its mode differs), is named.
pub const EVENTS_FD_NAME: &str = "events";
pub const CONTROL_FD_NAME: &str = "control";
pub const ADMIN_FD_NAME: &str = "admin";

/// The name each passed socket goes by: its own when it is one of ours; else, in the order the
/// sockets under other names come, events then control (then `fdN`).
fn fd_names(names: &[String], count: usize) -> Vec<String> {
    let mut unnamed = [EVENTS_FD_NAME, CONTROL_FD_NAME].into_iter();
    (0..count)
        .map(|idx| match names.get(idx).map(String::as_str) {
            Some(n @ (EVENTS_FD_NAME | CONTROL_FD_NAME | ADMIN_FD_NAME)) => n.to_string(),
            _ => unnamed
                .next()
                .map_or_else(|| format!("fd{idx}"), str::to_string),
        })
        .collect()
}

/// Unix listeners passed by systemd (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`), by name.
pub fn activated_sockets() -> std::io::Result<HashMap<String, UnixListener>> {
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|v| v.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    let mut fds = listenfd::ListenFd::from_env();
    let mut out = HashMap::new();
    // systemd names every socket of one unit alike (the unit name unless FileDescriptorName=),
    // so the event and control sockets of callmetrics.socket go by the order of its
    // ListenStream= lines, wherever the admin socket's unit puts its own.
    for (idx, name) in fd_names(&names, fds.len()).into_iter().enumerate() {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str], count: usize) -> Vec<String> {
        let list: Vec<String> = list.iter().map(|s| (*s).to_string()).collect();
        fd_names(&list, count)
    }

    #[test]
    fn sockets_of_other_names_go_by_order_wherever_the_admin_socket_comes() {
        let unit = "callmetrics.socket";
        assert_eq!(names(&[unit, unit], 2), ["events", "control"]);
        assert_eq!(names(&[], 2), ["events", "control"]);
        assert_eq!(
            names(&["admin", unit, unit], 3),
            ["admin", "events", "control"]
        );
        assert_eq!(
            names(&[unit, "admin", unit], 3),
            ["events", "admin", "control"]
        );
        assert_eq!(
            names(&["control", "events", "admin"], 3),
            ["control", "events", "admin"]
        );
        assert_eq!(names(&[unit, unit, unit], 3), ["events", "control", "fd2"]);
    }
}
