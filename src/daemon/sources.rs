//! In-daemon sources (`[[sources]]`): one task each, following its file (on a blocking thread),
//! mapping the new lines to events and handing them to the committer together with the file
//! position after them, so both are stored in one write; what `status` shows of each source.
//!
//! After a restart the lines up to the stored position are read again without sending their
//! events, which rebuilds the mapping's per-call state (open visits, visit numbers), so a call
//! that began before the restart ends right after it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::{lock, wall_ms, Shared};
use crate::config::{LimitsConfig, SourceConfig, SourceKind};
use crate::event::Event;
use crate::ingest::{
    IngestCtx, ItemResult, MarkSubmission, Refusal, Submission, MAX_IN_FLIGHT_EVENTS,
};
use crate::sources::asterisk::{line, Mapper, Options, Skipped};
use crate::sources::follow::{Note, Position, SourceState, SourceStatus, Tail};
use crate::store::group::SourceMark;

/// Wait before storing a batch again after the store refused it (full, or failing).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A running source: its config and what `status` shows of it.
pub(super) struct SourceHandle {
    pub(super) cfg: SourceConfig,
    pub(super) status: Arc<Mutex<SourceStatus>>,
}

impl SourceHandle {
    pub(super) fn new(cfg: &SourceConfig) -> SourceHandle {
        SourceHandle {
            status: Arc::new(Mutex::new(SourceStatus {
                name: cfg.name.clone(),
                kind: cfg.kind.name().into(),
                path: cfg.target(),
                state: match cfg.kind {
                    SourceKind::AsteriskQueueLog => SourceState::WaitingForFile,
                    SourceKind::Freeswitch => SourceState::Connecting,
                },
                ..SourceStatus::default()
            })),
            cfg: cfg.clone(),
        }
    }
}

/// The sources as `status` shows them, with their lag as of now.
pub(super) fn statuses(shared: &Shared) -> Vec<SourceStatus> {
    let now = wall_ms();
    shared
        .sources
        .iter()
        .map(|s| {
            let mut st = lock(&s.status).clone();
            st.lag_seconds = st.last_line_ms.map(|ms| (now - ms).max(0) as f64 / 1000.0);
            st
        })
        .collect()
}

/// Starts a task per configured source.
pub(super) fn spawn(
    shared: &Arc<Shared>,
    ctx: &Arc<IngestCtx>,
    shutdown: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    shared
        .sources
        .iter()
        .map(|s| {
            let mark = lock(&shared.source_marks).get(&s.cfg.name).cloned();
            if s.cfg.kind == SourceKind::Freeswitch {
                return tokio::spawn(super::freeswitch::run(
                    s.cfg.clone(),
                    mark.as_deref().and_then(super::freeswitch::Mark::decode),
                    s.status.clone(),
                    shared.clone(),
                    ctx.clone(),
                    shutdown.clone(),
                ));
            }
            let resume = mark.as_deref().and_then(Position::decode);
            tokio::spawn(follow(
                s.cfg.clone(),
                resume,
                s.status.clone(),
                ctx.clone(),
                shared.limits.subscribe(),
                shutdown.clone(),
            ))
        })
        .collect()
}

/// One source's loop: poll the file, map and store what it added, until shutdown.
async fn follow(
    cfg: SourceConfig,
    resume: Option<Position>,
    status: Arc<Mutex<SourceStatus>>,
    ctx: Arc<IngestCtx>,
    limits: watch::Receiver<LimitsConfig>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = cfg.name.clone();
    if let Some(p) = resume {
        info!(
            source = %name,
            offset = p.offset,
            inode = p.file.ino,
            "source {name}: resuming {} at byte {}",
            cfg.path.display(),
            p.offset
        );
    }
    let mut tail = Some(Tail::new(cfg.path.clone(), resume));
    let mut mapper = Mapper::new(Options {
        source: cfg.name.clone(),
        withdraw: cfg.withdraw,
    });
    let mut stored = resume;
    let mut last_epoch = resume.map_or(0, |p| p.last_epoch);
    // Skips counted while replaying lines read before the restart, left out of `status`.
    let mut replay_skips: Option<Skipped> = None;
    let interval = Duration::from_millis(cfg.poll_interval.0.unsigned_abs());
    let mut more = true;
    let mut said_waiting = false;
    loop {
        if !more {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => {}
            }
        }
        if *shutdown.borrow() {
            break;
        }
        let Some(t) = tail.take() else { break };
        let Ok((t, polled)) = tokio::task::spawn_blocking(move || {
            let mut t = t;
            let r = t.poll();
            (t, r)
        })
        .await
        else {
            warn!(source = %name, "source {name}: the file reader stopped unexpectedly; the source stops");
            break;
        };
        tail = Some(t);
        let chunk = match polled {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("reading {}: {e}", cfg.path.display());
                warn!(source = %name, "source {name}: {msg}; retrying");
                fail(&status, msg);
                more = false;
                continue;
            }
        };
        more = chunk.more;
        if chunk.waiting {
            if !said_waiting {
                info!(source = %name, "source {name}: waiting for {} to exist", cfg.path.display());
                said_waiting = true;
            }
            let mut st = lock(&status);
            st.state = SourceState::WaitingForFile;
            continue;
        }
        said_waiting = false;
        note(&name, &chunk.notes, &status);
        if chunk.replay {
            let mut scratch = Vec::new();
            for l in lines(&chunk.lines) {
                mapper.line(l, &mut scratch);
                scratch.clear();
            }
            continue;
        }
        let skips_before = replay_skips
            .get_or_insert_with(|| mapper.skipped().clone())
            .clone();
        let mut events = Vec::new();
        let mut count = 0u64;
        for l in lines(&chunk.lines) {
            mapper.line(l, &mut events);
            count += 1;
            if let Ok(parsed) = line::parse(l) {
                last_epoch = last_epoch.max(parsed.epoch);
            }
        }
        let event_limits = limits.borrow().event_limits();
        let before = events.len();
        events.retain(|e| fits(e, &event_limits));
        let too_long = (before - events.len()) as u64;
        let Some(mut position) = chunk.position else {
            continue;
        };
        position.last_epoch = last_epoch;
        {
            let mut st = lock(&status);
            st.lines_read += count;
            st.events_mapped += before as u64;
            st.skipped = skipped_since(mapper.skipped(), &skips_before);
            if too_long > 0 {
                *st.skipped
                    .entry("too_long".into())
                    .or_default()
                    .entry("-".into())
                    .or_default() += too_long;
            }
            st.device = position.file.dev;
            st.inode = position.file.ino;
            st.backlog_bytes = chunk.backlog;
            if last_epoch > 0 {
                st.last_line_ms = Some(last_epoch.saturating_mul(1000));
            }
        }
        if events.is_empty() && stored.as_ref() == Some(&position) {
            following(&status, &position);
            continue;
        }
        // Stored with its position, whatever it takes: the lines are already mapped, so the
        // same events must go, or the mapping's state would no longer match the position.
        loop {
            match submit(&ctx, &events, &name, position.encode(), &mut shutdown).await {
                Ok(results) => {
                    let mut st = lock(&status);
                    for r in &results {
                        match r {
                            Ok(()) => st.events_stored += 1,
                            Err(refusal) => {
                                *st.events_refused.entry(refusal.label().into()).or_default() += 1;
                            }
                        }
                    }
                    drop(st);
                    stored = Some(position);
                    following(&status, &position);
                    break;
                }
                Err(Refusal::ShuttingDown) => return,
                Err(refusal) => {
                    warn!(source = %name, "source {name}: events not stored: {refusal}; retrying");
                    fail(&status, refusal.to_string());
                    tokio::select! {
                        () = tokio::time::sleep(RETRY_AFTER) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        }
    }
}

/// Hands events and the position after them to the committer; the per-event results once the
/// group holding both is durable, or why that group was refused.
pub(super) async fn submit(
    ctx: &IngestCtx,
    events: &[Event],
    name: &str,
    position: Vec<u8>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Vec<ItemResult>, Refusal> {
    let want = events.len().clamp(1, MAX_IN_FLIGHT_EVENTS) as u32;
    let in_flight = tokio::select! {
        p = ctx.in_flight.clone().acquire_many_owned(want) => p.map_err(|_| Refusal::ShuttingDown)?,
        _ = shutdown.changed() => return Err(Refusal::ShuttingDown),
    };
    let (reply, results) = oneshot::channel();
    let (stored_tx, stored) = oneshot::channel();
    let submission = Submission {
        events: events.to_vec(),
        reply,
        in_flight,
        mark: Some(MarkSubmission {
            mark: SourceMark {
                source: name.to_string(),
                position,
            },
            stored: stored_tx,
        }),
    };
    tokio::select! {
        sent = ctx.submit.send(submission) => sent.map_err(|_| Refusal::ShuttingDown)?,
        _ = shutdown.changed() => return Err(Refusal::ShuttingDown),
    }
    // Once handed over, the committer answers (it drains what it was given before stopping).
    stored.await.map_err(|_| Refusal::ShuttingDown)??;
    results.await.map_err(|_| Refusal::ShuttingDown)
}

/// The complete lines of a chunk, each with its newline.
fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes.split_inclusive(|&b| b == b'\n')
}

/// Whether an event keeps to the intake's string and tag limits (a long uniqueid or queue name
/// would be refused on the event socket too).
pub(super) fn fits(e: &Event, limits: &crate::event::EventLimits) -> bool {
    let max = limits.max_string_bytes;
    e.call_id.len() <= max
        && e.queue.as_ref().is_none_or(|q| q.len() <= max)
        && e.agent.as_ref().is_none_or(|a| a.len() <= max)
        && e.tags.len() <= limits.max_tags
        && e.tags.iter().all(|(k, v)| k.len() <= max && v.len() <= max)
}

/// Skip counts of `now` minus those of `before`, by reason then verb.
pub(super) fn skipped_since(
    now: &Skipped,
    before: &Skipped,
) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for ((reason, verb), n) in now {
        let n = n - before.get(&(*reason, verb.clone())).copied().unwrap_or(0);
        if n > 0 {
            out.entry((*reason).to_string())
                .or_default()
                .insert(verb.clone(), n);
        }
    }
    out
}

fn following(status: &Mutex<SourceStatus>, position: &Position) {
    let mut st = lock(status);
    st.state = SourceState::Following;
    st.position = position.offset;
    st.device = position.file.dev;
    st.inode = position.file.ino;
}

pub(super) fn fail(status: &Mutex<SourceStatus>, msg: String) {
    let mut st = lock(status);
    st.state = SourceState::Error;
    st.last_error = Some(msg);
    st.last_error_ms = Some(wall_ms());
}

/// Logs what the follower noticed and counts it.
fn note(name: &str, notes: &[Note], status: &Mutex<SourceStatus>) {
    for n in notes {
        match n {
            Note::RotationSeen => info!(
                source = %name,
                "source {name}: the file was rotated; reading the old one to its end before the new one"
            ),
            Note::Rotated => {
                info!(source = %name, "source {name}: the rotated file is done; reading the new file from its start");
                lock(status).rotations += 1;
            }
            Note::Truncated { size, offset } => {
                warn!(
                    source = %name,
                    "source {name}: the file was truncated ({size} bytes, {offset} read before; copytruncate?); reading it from its start"
                );
                lock(status).truncations += 1;
            }
            Note::Replaced => {
                warn!(
                    source = %name,
                    "source {name}: the file read before is gone (replaced while the daemon was down, and not found beside it); reading the new file from its start"
                );
                lock(status).replaced += 1;
            }
            Note::FoundRotated { path } => {
                info!(
                    source = %name,
                    "source {name}: the file read before was rotated while the daemon was down; reading the rest of {} first",
                    path.display()
                );
                lock(status).replaced += 1;
            }
            Note::ReadFromCopy { path, bytes } => info!(
                source = %name,
                "source {name}: read {bytes} bytes of lines the file no longer holds from its copy {}",
                path.display()
            ),
            Note::Unterminated { bytes } => warn!(
                source = %name,
                "source {name}: the rotated file ends with {bytes} bytes without a newline; not read"
            ),
        }
    }
}
