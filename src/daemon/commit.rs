//! Group commit: the events of every connection that arrived while the previous flush ran are
//! admitted, written as one log group and flushed together, and only then applied to the engine,
//! so the engine never holds an event the store refused. Also the engine's clock (moved on here
//! only, so a replay sees the same sequence of events and times), the checkpoints that fold the
//! log into the store's slices, and recovery from them.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use super::{lock, wall_ms, DaemonError, Shared};
use crate::config::Config;
use crate::engine::{Engine, Rejection, StatePart};
use crate::event::{Event, EventKind};
use crate::ingest::{ItemResult, Refusal, Submission};
use crate::store::group::SourceMark;
use crate::store::{group, Store, StoreError};

/// Most events grouped into one store write and flush.
const MAX_GROUP_EVENTS: usize = 8_192;
/// How often the engine's clock moves on when no events arrive.
const TICK: Duration = Duration::from_secs(1);
/// Quiet time before a bloated store is compacted (near the cap it is compacted at once).
const IDLE_BEFORE_COMPACTION: Duration = Duration::from_secs(10);
/// Bytes written or deleted since sled was opened after which a quiet store is reopened.
const REOPEN_AFTER_CHURN: u64 = 16 << 20;

/// When the last checkpoint was written, and how many events were logged since.
pub(super) struct CheckpointState {
    pub(super) last: Instant,
    pub(super) events_since: u64,
    /// The log replayed at start is not in a checkpoint yet: the committer writes one
    /// [`AFTER_REPLAY_WAIT`] after the daemon is ready (see `run`), then reopens the store.
    pub(super) after_replay: bool,
}

/// How long after ready the replayed log is checkpointed: the allocator returns freed pages
/// within a second (`dirty_decay_ms` in `.cargo/config.toml`), so what recovery and the reopen
/// before ready freed is back with the system first, rather than under the checkpoint's own
/// allocations (measured at 1 M calls: 64.3 MiB peak with the checkpoint at the first turn).
const AFTER_REPLAY_WAIT: Duration = Duration::from_secs(2);

/// What a start rebuilds from the store.
pub(super) struct Recovery {
    pub(super) engine: Engine,
    /// Events replayed from the log.
    pub(super) replayed: u64,
    /// The last log group applied.
    pub(super) last: u64,
    /// Each in-daemon source's position as of that group (source name → position).
    pub(super) marks: SourceMarks,
}

/// Source name → its position as stored with the last of its events.
pub(super) type SourceMarks = BTreeMap<String, Vec<u8>>;

/// Rebuilds the engine from the last checkpoint and replays the logged groups after it; migrates
/// a store of the first layout. The sources' positions are the checkpoint's, then each replayed
/// group's.
pub(super) async fn recover_engine(cfg: &Config, store: &Store) -> Result<Recovery, DaemonError> {
    if store.needs_migration()? {
        let (engine, replayed, last) = migrate(cfg, store).await?;
        return Ok(Recovery {
            engine,
            replayed,
            last,
            marks: SourceMarks::new(),
        });
    }
    let r = store.recover()?;
    let mut marks = store.source_marks()?;
    let mut engine = Engine::restore(cfg, r.slices, r.state.as_deref())?;
    let mut replayed = 0u64;
    let mut last = r.checkpoint_seq;
    for g in store.groups_after(r.checkpoint_seq) {
        let (seq, bytes) = g?;
        let g = group::decode(&bytes)?;
        let events: Vec<&Event> = g.events.iter().collect();
        engine.apply_group(&events, g.rx_ms);
        replayed += g.events.len() as u64;
        last = seq;
        for m in g.marks {
            marks.insert(m.source, m.position);
        }
    }
    Ok(Recovery {
        engine,
        replayed,
        last,
        marks,
    })
}

/// Rebuilds the engine from a store of the first layout and rewrites it in this layout.
async fn migrate(cfg: &Config, store: &Store) -> Result<(Engine, u64, u64), DaemonError> {
    let old = store.legacy()?;
    info!(
        buckets = old.buckets.len(),
        "the store was written by an earlier version; migrating it to the current layout"
    );
    let mut engine = Engine::from_legacy(cfg, old.buckets, old.volatile.as_deref())?;
    let mut replayed = 0u64;
    let mut last = old.checkpoint_seq;
    for (seq, events) in store.legacy_groups_after(old.checkpoint_seq)? {
        for e in &events {
            engine.apply(&e.event, e.rx_ms);
        }
        replayed += events.len() as u64;
        last = seq;
    }
    let cp = engine.checkpoint();
    store
        .write_migrated_checkpoint(last, cp.slices, &cp.state)
        .await?;
    info!(replayed, "store migrated");
    Ok((engine, 0, last))
}

/// A request to write a checkpoint now (the `flush` command), answered once it is written.
pub(super) type CheckpointRequest = oneshot::Sender<Result<(), StoreError>>;

/// Groups submissions from every connection into one store write and one flush, then replies;
/// moves the engine's clock on when idle; writes checkpoints when due or asked. The only task
/// that changes the engine, so a checkpoint streamed from it is consistent.
pub(super) async fn commit_loop(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Submission>,
    mut asked: mpsc::Receiver<CheckpointRequest>,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_group = Instant::now();
    loop {
        tokio::select! {
            first = rx.recv() => {
                last_group = Instant::now();
                let Some(first) = first else { break };
                let mut count = first.events.len();
                let mut subs = vec![first];
                while count < MAX_GROUP_EVENTS {
                    match rx.try_recv() {
                        Ok(s) => {
                            count += s.events.len();
                            subs.push(s);
                        }
                        Err(_) => break,
                    }
                }
                commit_group(&shared, subs).await;
            }
            Some(reply) = asked.recv() => {
                let r = checkpoint(&shared).await;
                let _ = reply.send(r);
            }
            _ = tick.tick() => {
                {
                    let mut engine = lock(&shared.engine);
                    let now = wall_ms().max(engine.now_ms());
                    engine.advance(now);
                }
                // A large file that is mostly garbage is rewritten once events pause (rewriting
                // it during a bulk load would copy a store that is still growing).
                if last_group.elapsed() >= IDLE_BEFORE_COMPACTION {
                    maybe_compact(&shared, false);
                    maybe_reopen(&shared);
                }
            }
        }
        if checkpoint_due(&shared) {
            let after_replay = lock(&shared.checkpoint).after_replay;
            match checkpoint(&shared).await {
                // Recovery and this checkpoint read and rewrote much of the store, which sled
                // keeps in memory: give it back.
                Ok(()) if after_replay => reopen(&shared),
                Ok(()) => {}
                Err(e) => {
                    error!("checkpoint failed: {e}; events stay in the log and will be replayed");
                }
            }
        }
    }
}

/// Compacts the store when that gives back a lot of room (see `Store::compaction_worthwhile`);
/// with `near_cap_only`, only when the store is near its cap.
pub(super) fn maybe_compact(shared: &Shared, near_cap_only: bool) {
    let size = *lock(&shared.store_size);
    if !shared.store.compaction_worthwhile(size, near_cap_only) {
        return;
    }
    // Every store operation waits meanwhile; on a worker of the multi-threaded runtime.
    match tokio::task::block_in_place(|| shared.store.compact()) {
        Ok((before, after)) => info!(
            before_bytes = before,
            after_bytes = after,
            "store compacted: sled reuses freed space poorly, so the live data was rewritten"
        ),
        Err(e) => warn!("store compaction skipped: {e}"),
    }
    *lock(&shared.store_size) = shared.store.size_on_disk();
}

/// Reopens the store once a lot was written or deleted since it was opened, to give back the
/// memory sled keeps after a burst (see `Store::reopen`).
fn maybe_reopen(shared: &Shared) {
    if shared.store.churn_bytes() >= REOPEN_AFTER_CHURN {
        reopen(shared);
    }
}

/// Reopens the store (see `Store::reopen`), saying so in the debug log.
pub(super) fn reopen(shared: &Shared) {
    let started = Instant::now();
    match tokio::task::block_in_place(|| shared.store.reopen()) {
        Ok(()) => debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "store reopened to give back the memory sled held after a burst of writes"
        ),
        Err(e) => warn!("store not reopened: {e}"),
    }
}

async fn commit_group(shared: &Shared, subs: Vec<Submission>) {
    // A fresh reading (a stat of sled's files): the cap must hold to the group.
    *lock(&shared.store_size) = shared.store.size_on_disk();
    let mut room = shared.store.check_room(*lock(&shared.store_size));
    if matches!(room, Err(StoreError::Full { .. })) {
        maybe_compact(shared, true);
        room = shared.store.check_room(*lock(&shared.store_size));
    }
    let mut results: Vec<Vec<ItemResult>> = subs
        .iter()
        .map(|s| Vec::with_capacity(s.events.len()))
        .collect();
    let mut admitted: Vec<(usize, usize)> = Vec::new();
    let max_ahead = lock(&shared.cfg).limits.max_clock_ahead.0;
    let rx_ms = {
        let mut engine = lock(&shared.engine);
        let rx_ms = wall_ms().max(engine.now_ms());
        let mut starts = 0usize;
        for (si, sub) in subs.iter().enumerate() {
            for (ei, ev) in sub.events.iter().enumerate() {
                if let Err(e) = &room {
                    results[si].push(Err(refusal(e)));
                    continue;
                }
                // Receipt is the only clock an event can be checked against; a `ts` far ahead
                // of it would sit as a call waiting for a negative time.
                if ev.ts_ms > rx_ms.saturating_add(max_ahead) {
                    results[si].push(Err(Refusal::ClockAhead {
                        ahead_ms: ev.ts_ms - rx_ms,
                        max_ms: max_ahead,
                    }));
                    continue;
                }
                match engine.admit(ev, starts) {
                    Ok(()) => {
                        starts += usize::from(ev.kind == EventKind::Start);
                        admitted.push((si, ei));
                        results[si].push(Ok(()));
                    }
                    Err(Rejection::OpenSegmentLimit(open)) => {
                        results[si].push(Err(Refusal::OpenSegmentLimit { open }));
                    }
                }
            }
        }
        rx_ms
    };
    // A source's position goes into the group with its events, even when it has none left (its
    // lines were skipped or its events refused one by one): the lines are done with either way.
    let marks: Vec<SourceMark> = if room.is_ok() {
        subs.iter()
            .filter_map(|s| s.mark.as_ref().map(|m| m.mark.clone()))
            .collect()
    } else {
        Vec::new()
    };
    let mut stored: Result<(), Refusal> = room.as_ref().copied().map_err(refusal);
    if !admitted.is_empty() || !marks.is_empty() {
        let events = admitted.iter().map(|&(si, ei)| &subs[si].events[ei]);
        match persist(shared, rx_ms, events.clone(), &marks).await {
            Ok(seq) => {
                let events: Vec<&Event> = events.collect();
                let mut engine = lock(&shared.engine);
                engine.apply_group(&events, rx_ms);
                // Under the engine lock, so a checkpoint never sees the events without their seq,
                // nor a source's position without the events it covers.
                shared.applied_seq.store(seq, Ordering::SeqCst);
                {
                    let mut held = lock(&shared.source_marks);
                    for m in marks {
                        held.insert(m.source, m.position);
                    }
                }
                drop(engine);
                // A group of marks alone counts as one, so that a checkpoint folds it in time.
                lock(&shared.checkpoint).events_since += admitted.len().max(1) as u64;
            }
            Err(e) => {
                stored = Err(refusal(&e));
                error!(
                    "storing {} events failed: {e}; they were refused",
                    admitted.len()
                );
                for &(si, ei) in &admitted {
                    results[si][ei] = Err(refusal(&e));
                }
                if shared.store.failed().is_some() {
                    shared.store_failed.notify_one();
                }
            }
        }
    }
    // Refusals are counted by the connection, which sees validation errors too.
    let accepted = results.iter().flatten().filter(|r| r.is_ok()).count() as u64;
    for (sub, r) in subs.into_iter().zip(results) {
        // The connection may be gone; its events are stored all the same.
        let _ = sub.reply.send(r);
        if let Some(m) = sub.mark {
            let _ = m.stored.send(stored.clone());
        }
    }
    shared.ingest.update(|c| c.events_accepted += accepted);
}

/// What a client is told when the store refuses.
fn refusal(e: &StoreError) -> Refusal {
    match e {
        StoreError::Full { size, max } => Refusal::StoreFull {
            size: *size,
            max: *max,
        },
        StoreError::DiskFull {
            path,
            free,
            reserve,
        } => Refusal::DiskFull {
            path: path.display().to_string(),
            free: *free,
            reserve: *reserve,
        },
        other => Refusal::Store(other.to_string()),
    }
}

/// Writes one group (events and source marks) and flushes it; returns its sequence number.
async fn persist<'a>(
    shared: &Shared,
    rx_ms: i64,
    events: impl IntoIterator<Item = &'a Event> + Clone,
    marks: &[SourceMark],
) -> Result<u64, StoreError> {
    let bytes = group::encode_with_marks(rx_ms, events, marks);
    let seq = shared.store.append(&bytes)?;
    shared.store.flush().await?;
    Ok(seq)
}

/// After `checkpoint_events` events, or `checkpoint_interval` after the last one when anything
/// changed meanwhile (events, or calls folded as time passed: a checkpoint of calls still in
/// their grace would otherwise stand until the next event).
fn checkpoint_due(shared: &Shared) -> bool {
    let (events, interval) = {
        let cfg = lock(&shared.cfg);
        (cfg.store.checkpoint_events, cfg.store.checkpoint_interval.0)
    };
    let (since, last, after_replay) = {
        let c = lock(&shared.checkpoint);
        (c.events_since, c.last, c.after_replay)
    };
    (after_replay && last.elapsed() >= AFTER_REPLAY_WAIT)
        || since >= events
        || (last.elapsed().as_millis() as i64 >= interval
            && (since > 0 || lock(&shared.engine).has_changes()))
}

/// Writes the engine's changed slices and state as one atomic checkpoint, then trims the log.
///
/// Streamed slice by slice, so memory holds one slice (and the rest of the state) at a time: the
/// engine does not change meanwhile, since only the committer task changes it and this runs
/// there (or before it starts, or after it stopped).
pub(super) async fn checkpoint(shared: &Shared) -> Result<(), StoreError> {
    // One checkpoint at a time: a later one written first would be overwritten by an older one.
    let _gate = shared.checkpoint_gate.lock().await;
    // Near the cap, give back sled's garbage first. A checkpoint itself always goes ahead (it is
    // what frees the log): intake stops early enough to leave it room (`Store::reserve_bytes`).
    *lock(&shared.store_size) = shared.store.size_on_disk();
    maybe_compact(shared, true);
    let (seq, marks, dirty, rest_estimate) = {
        let mut engine = lock(&shared.engine);
        // Taken under the engine lock, between groups: it includes every applied group, and the
        // sources' positions as of the last of them.
        (
            shared.applied_seq.load(Ordering::SeqCst),
            lock(&shared.source_marks).clone(),
            engine.take_dirty(),
            engine.state_bytes().pending_bytes + engine.state_bytes().remembered_bytes,
        )
    };
    let result = write_streamed(shared, seq, &marks, &dirty, rest_estimate).await;
    match &result {
        Ok(()) => {
            let mut c = lock(&shared.checkpoint);
            c.last = Instant::now();
            c.events_since = 0;
            c.after_replay = false;
        }
        Err(e) => {
            warn!("checkpoint not written: {e}");
            lock(&shared.engine).mark_dirty(dirty);
        }
    }
    result
}

async fn write_streamed(
    shared: &Shared,
    seq: u64,
    marks: &SourceMarks,
    dirty: &[(crate::engine::Tier, i64)],
    rest_estimate: u64,
) -> Result<(), StoreError> {
    let estimate = shared.store.reserve_bytes() / 2 + rest_estimate;
    let mut w = shared.store.begin_checkpoint(estimate)?;
    for &(tier, start) in dirty {
        let (key, value) = lock(&shared.engine).encode_slice(tier, start);
        w.slice(&key, value.as_deref()).await?;
    }
    // The rest of the state in pieces of about 1 MiB (the calls held during a bulk load are many).
    let mut part = Some(StatePart::Head);
    let mut piece = Vec::with_capacity(1 << 20);
    while let Some(p) = part {
        piece.clear();
        part = lock(&shared.engine).encode_state_part(p, 1 << 20, &mut piece);
        w.state_piece(&piece).await?;
    }
    w.commit_with_marks(seq, marks).await
}
