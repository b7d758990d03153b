//! The task of a `freeswitch` source: connects to the event socket (reconnecting with
//! exponential backoff and jitter), maps each batch of `callcenter::info` events and stores
//! the events, waiting for the store's answer before reading on; what `status` shows of it.
//!
//! The event socket has no replay. A segment of this source open when the connection is lost
//! (or the daemon stops) may have ended unseen; it is tracked: an event of it after the
//! reconnect continues it, otherwise the engine expires it after `max_call_duration` like any
//! segment that never ends, and the source counts it as expired after a disconnect.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use super::sources::{fits, skipped_since, submit};
use super::{lock, wall_ms, Shared};
use crate::config::SourceConfig;
use crate::event::Event;
use crate::ingest::{IngestCtx, Refusal};
use crate::sources::follow::{SourceState, SourceStatus};
use crate::sources::freeswitch::client::{Client, ClientError};
use crate::sources::freeswitch::{Mapper, Skipped};

/// First wait before reconnecting; it doubles after each failed attempt, up to [`BACKOFF_CAP`].
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Most events stored in one group.
const MAX_BATCH: usize = 512;
/// How often segments open at a disconnect are looked up in the engine while any is awaited.
const ORPHAN_CHECK: Duration = Duration::from_secs(2);
/// Wait before storing a batch again after the store refused it (full, or failing).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What is stored with a `freeswitch` source's events: the time of the last event read, so the
/// lag is known again after a restart. The event socket has no position to resume from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mark {
    pub(super) last_event_ms: i64,
}

/// Tag of the encoded [`Mark`]: never the first byte of a file position.
const MARK_TAG: &[u8; 3] = b"FS1";

impl Mark {
    fn encode(self) -> Vec<u8> {
        let mut out = MARK_TAG.to_vec();
        out.extend_from_slice(&self.last_event_ms.to_be_bytes());
        out
    }

    pub(super) fn decode(b: &[u8]) -> Option<Mark> {
        let rest = b.strip_prefix(MARK_TAG)?;
        Some(Mark {
            last_event_ms: i64::from_be_bytes(rest.try_into().ok()?),
        })
    }
}

/// Exponential backoff with equal jitter: each wait is half the current step plus a random
/// part of the other half, so sources restarting together do not reconnect in step.
struct Backoff {
    step: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            step: BACKOFF_FIRST,
        }
    }

    fn next(&mut self) -> Duration {
        let half = self.step / 2;
        let wait = half + half.mul_f64(fastrand::f64());
        self.step = (self.step * 2).min(BACKOFF_CAP);
        wait
    }

    fn reset(&mut self) {
        self.step = BACKOFF_FIRST;
    }
}

/// Segments open at a disconnect, until each is continued or expired.
#[derive(Default)]
struct Orphans {
    ids: HashSet<String>,
    last_check: Option<tokio::time::Instant>,
}

impl Orphans {
    /// Adds the source's open segments now (after a disconnect, or at start); the new ones are
    /// counted.
    fn take_open(&mut self, shared: &Shared, prefix: &str, status: &Mutex<SourceStatus>) {
        let open = lock(&shared.engine).open_call_ids(prefix);
        let mut st = lock(status);
        for id in open {
            if self.ids.insert(id) {
                st.open_at_disconnect += 1;
            }
        }
        st.awaiting_after_disconnect = self.ids.len() as u64;
    }

    /// An event of a tracked segment came: continued.
    fn seen(&mut self, events: &[Event], status: &Mutex<SourceStatus>) {
        if self.ids.is_empty() {
            return;
        }
        let mut st = lock(status);
        for e in events {
            if self.ids.remove(&e.call_id) {
                st.continued_after_reconnect += 1;
            }
        }
        st.awaiting_after_disconnect = self.ids.len() as u64;
    }

    /// Tracked segments the engine no longer holds open were expired (their events come from
    /// this source only, and none came).
    fn check(&mut self, shared: &Shared, status: &Mutex<SourceStatus>) {
        if self.ids.is_empty() {
            return;
        }
        let now = tokio::time::Instant::now();
        if self.last_check.is_some_and(|t| now < t + ORPHAN_CHECK) {
            return;
        }
        self.last_check = Some(now);
        let engine = lock(&shared.engine);
        let before = self.ids.len();
        self.ids.retain(|id| engine.has_open_segment(id));
        drop(engine);
        let mut st = lock(status);
        st.expired_after_disconnect += (before - self.ids.len()) as u64;
        st.awaiting_after_disconnect = self.ids.len() as u64;
    }

    /// When the next check is due, if any segment is awaited.
    fn next_check(&self) -> Option<tokio::time::Instant> {
        if self.ids.is_empty() {
            return None;
        }
        Some(
            self.last_check
                .map_or_else(tokio::time::Instant::now, |t| t + ORPHAN_CHECK),
        )
    }
}

/// Reads the password: the file's text, trimmed. A file every user may read is refused: the
/// password gives control of FreeSWITCH (`api` commands), not only its events.
fn read_password(path: &Path) -> Result<String, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("password_file {}: {e}", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o004 != 0 {
        return Err(format!(
            "password_file {} is readable by every user (mode {:03o}); the event socket password controls FreeSWITCH: chmod o-r it",
            path.display(),
            mode & 0o777
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("password_file {}: {e}", path.display()))?;
    let pw = text.trim();
    if pw.is_empty() {
        return Err(format!("password_file {} is empty", path.display()));
    }
    Ok(pw.to_string())
}

/// One `freeswitch` source, until shutdown.
pub(super) async fn run(
    cfg: SourceConfig,
    resume: Option<Mark>,
    status: Arc<Mutex<SourceStatus>>,
    shared: Arc<Shared>,
    ctx: Arc<IngestCtx>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = cfg.name.clone();
    let address = cfg.address().to_string();
    let prefix = format!("{name}:");
    let mut last_event_ms = resume.map_or(0, |m| m.last_event_ms);
    if last_event_ms > 0 {
        lock(&status).last_line_ms = Some(last_event_ms);
    }
    let mut mapper = Mapper::new(&name);
    let mut orphans = Orphans::default();
    // Segments left open when the daemon stopped: it was disconnected too.
    orphans.take_open(&shared, &prefix, &status);
    let mut backoff = Backoff::new();
    let mut connections = 0u64;
    while !*shutdown.borrow() {
        let attempt = match cfg.password_file.as_deref().map(read_password) {
            Some(Ok(pw)) => {
                tokio::select! {
                    c = Client::connect(&address, &pw) => c.map_err(|e| e.to_string()),
                    _ = shutdown.changed() => break,
                }
            }
            Some(Err(e)) => Err(e),
            None => Err("no password_file configured".to_string()),
        };
        let ended = match attempt {
            Ok(mut client) => {
                connections += 1;
                backoff.reset();
                info!(source = %name, "source {name}: connected to {address}, subscribed to callcenter::info");
                {
                    let mut st = lock(&status);
                    st.state = SourceState::Connected;
                    st.connected_since_ms = Some(wall_ms());
                    st.next_attempt_ms = None;
                    if connections > 1 {
                        st.reconnects += 1;
                    }
                }
                let ended = read(
                    &mut client,
                    &name,
                    &mut mapper,
                    &mut orphans,
                    &mut last_event_ms,
                    &status,
                    &shared,
                    &ctx,
                    &mut shutdown,
                )
                .await;
                match ended {
                    Ok(()) => break,
                    Err(e) => {
                        // Whatever was open may end unseen while the connection is down.
                        orphans.take_open(&shared, &prefix, &status);
                        e
                    }
                }
            }
            Err(e) => e,
        };
        let wait = backoff.next();
        warn!(source = %name, "source {name}: {ended}; reconnecting in {:.1}s", wait.as_secs_f64());
        {
            let now = wall_ms();
            let mut st = lock(&status);
            st.state = if connections == 0 {
                SourceState::Connecting
            } else {
                SourceState::Disconnected
            };
            st.connected_since_ms = None;
            st.last_error = Some(ended);
            st.last_error_ms = Some(now);
            st.next_attempt_ms = Some(now + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
        }
        let until = tokio::time::Instant::now() + wait;
        loop {
            orphans.check(&shared, &status);
            let next = orphans.next_check().map_or(until, |t| t.min(until));
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                _ = shutdown.changed() => return,
            }
            if tokio::time::Instant::now() >= until {
                break;
            }
        }
    }
}

/// Reads, maps and stores events until the connection ends (`Err`, why) or shutdown (`Ok`).
#[allow(clippy::too_many_arguments)]
async fn read(
    client: &mut Client,
    name: &str,
    mapper: &mut Mapper,
    orphans: &mut Orphans,
    last_event_ms: &mut i64,
    status: &Mutex<SourceStatus>,
    shared: &Shared,
    ctx: &IngestCtx,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    loop {
        orphans.check(shared, status);
        let batch = tokio::select! {
            b = client.next_events(MAX_BATCH, orphans.next_check()) => b,
            _ = shutdown.changed() => return Ok(()),
        };
        let batch = match batch {
            Ok(b) => b,
            Err(ClientError::Disconnected(why)) => {
                return Err(format!("FreeSWITCH ended the connection: {why}"))
            }
            Err(e) => return Err(e.to_string()),
        };
        if batch.events.is_empty() && batch.unreadable == 0 {
            continue;
        }
        let mut events = Vec::with_capacity(batch.events.len());
        for headers in &batch.events {
            if let Some(ms) = mapper.event(headers, &mut events) {
                *last_event_ms = (*last_event_ms).max(ms);
            }
        }
        let limits = shared.limits.borrow().event_limits();
        let mapped = events.len();
        events.retain(|e| fits(e, &limits));
        let too_long = (mapped - events.len()) as u64;
        orphans.seen(&events, status);
        {
            let mut st = lock(status);
            st.lines_read += batch.events.len() as u64;
            st.events_mapped += mapped as u64;
            mapper.count_skipped("too_long", "-", too_long);
            mapper.count_skipped("unreadable", "-", batch.unreadable);
            st.skipped = skipped_since(mapper.skipped(), &Skipped::new());
            if *last_event_ms > 0 {
                st.last_line_ms = Some(*last_event_ms);
            }
        }
        if events.is_empty() {
            // Agent and count events only: nothing to store; the time of the last event goes
            // with the next call events (a write and a flush for each agent's state change
            // would be most of the disk writes of a busy box).
            continue;
        }
        let mark = Mark {
            last_event_ms: *last_event_ms,
        };
        // Stored before more is read: the store's answer is the only position there is.
        loop {
            match submit(ctx, &events, name, mark.encode(), shutdown).await {
                Ok(results) => {
                    let mut st = lock(status);
                    for r in &results {
                        match r {
                            Ok(()) => st.events_stored += 1,
                            Err(refusal) => {
                                *st.events_refused.entry(refusal.label().into()).or_default() += 1;
                            }
                        }
                    }
                    break;
                }
                Err(Refusal::ShuttingDown) => return Ok(()),
                Err(refusal) => {
                    warn!(source = %name, "source {name}: events not stored: {refusal}; retrying");
                    {
                        let mut st = lock(status);
                        st.last_error = Some(refusal.to_string());
                        st.last_error_ms = Some(wall_ms());
                    }
                    tokio::select! {
                        () = tokio::time::sleep(RETRY_AFTER) => {}
                        _ = shutdown.changed() => return Ok(()),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap_and_resets() {
        let mut b = Backoff::new();
        let steps = [1u64, 2, 4, 8, 16, 30, 30];
        for step in steps {
            let w = b.next();
            let step = Duration::from_secs(step);
            assert!(w >= step / 2 && w <= step, "{w:?} for a step of {step:?}");
        }
        b.reset();
        assert!(b.next() <= BACKOFF_FIRST);
    }

    #[test]
    fn marks_round_trip_and_file_positions_are_not_marks() {
        let m = Mark {
            last_event_ms: 1_796_119_200_123,
        };
        assert_eq!(Mark::decode(&m.encode()), Some(m));
        let position = crate::sources::follow::Position::default().encode();
        assert_eq!(Mark::decode(&position), None);
        assert_eq!(Mark::decode(b"FS1"), None);
    }

    #[test]
    fn the_password_is_trimmed_and_a_file_all_may_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "  ClueCon \n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(read_password(&p).unwrap(), "ClueCon");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_password(&p).unwrap_err();
        assert!(e.contains("readable by every user (mode 644)"), "{e}");
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        std::fs::set_permissions(
            dir.path().join("empty"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let e = read_password(&dir.path().join("empty")).unwrap_err();
        assert!(e.contains("is empty"), "{e}");
        let e = read_password(&dir.path().join("missing")).unwrap_err();
        assert!(e.contains("password_file"), "{e}");
    }
}
