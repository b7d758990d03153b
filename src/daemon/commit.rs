//! Group commit: the events of every connection that arrived while the previous flush ran are
//! applied, written as one log value and flushed together, then all their replies are sent.
//! Also the checkpoints that fold the log into the store's aggregates, and recovery from them.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::error;

use super::{lock, wall_ms, DaemonError, Shared};
use crate::config::Config;
use crate::engine::{Applied, Engine, Rejection};
use crate::event::Event;
use crate::ingest::{ItemResult, Refusal, Submission};
use crate::store::{Store, StoreError};

/// Most events grouped into one store write and flush.
const MAX_GROUP_EVENTS: usize = 16_384;
/// An accepted event as the log keeps it: when the engine took it, and the event.
#[derive(Debug, Serialize, Deserialize)]
struct StoredEvent {
    rx_ms: i64,
    event: Event,
}

/// When the last checkpoint was written, and how many events were logged since.
pub(super) struct CheckpointState {
    pub(super) last: Instant,
    pub(super) events_since: u64,
}

/// Rebuilds the engine from the last checkpoint and replays the logged groups after it.
pub(super) fn recover_engine(cfg: &Config, store: &Store) -> Result<(Engine, u64), DaemonError> {
    let r = store.recover()?;
    let mut engine = Engine::restore(cfg, r.buckets, r.volatile.as_deref())?;
    let mut replayed = 0u64;
    for group in store.groups_after(r.checkpoint_seq) {
        let (_, bytes) = group?;
        let events: Vec<StoredEvent> =
            rmp_serde::from_slice(&bytes).map_err(|e| DaemonError::Decode(e.to_string()))?;
        for se in events {
            // Rejections cannot happen here: only accepted events were logged, in order.
            let _ = engine.apply(&se.event, se.rx_ms);
            replayed += 1;
        }
    }
    Ok((engine, replayed))
}

/// Groups submissions from every connection into one store write and one flush, then replies.
pub(super) async fn commit_loop(shared: Arc<Shared>, mut rx: mpsc::Receiver<Submission>) {
    while let Some(first) = rx.recv().await {
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
        if checkpoint_due(&shared) {
            if let Err(e) = checkpoint(&shared).await {
                error!("checkpoint failed: {e}; events stay in the log and will be replayed");
            }
        }
    }
}

async fn commit_group(shared: &Shared, subs: Vec<Submission>) {
    let room = shared
        .store
        .check_room(*lock(&shared.store_size))
        .map_err(|e| match e {
            StoreError::Full { size, max } => Refusal::StoreFull { size, max },
            other => Refusal::Store(other.to_string()),
        });
    let mut results: Vec<Vec<ItemResult>> = Vec::with_capacity(subs.len());
    let mut stored = Vec::new();
    let mut accepted_positions = Vec::new();
    {
        let mut engine = lock(&shared.engine);
        let now = wall_ms();
        for (si, sub) in subs.iter().enumerate() {
            let mut r = Vec::with_capacity(sub.events.len());
            for (ei, ev) in sub.events.iter().enumerate() {
                if let Err(e) = &room {
                    r.push(Err(e.clone()));
                    continue;
                }
                match engine.apply(ev, now) {
                    Ok(Applied::Accepted) => {
                        stored.push(StoredEvent {
                            rx_ms: engine.now_ms(),
                            event: ev.clone(),
                        });
                        accepted_positions.push((si, ei));
                        r.push(Ok(()));
                    }
                    Ok(Applied::Duplicate | Applied::Late) => r.push(Ok(())),
                    Err(Rejection::OpenSegmentLimit(open)) => {
                        r.push(Err(Refusal::OpenSegmentLimit { open }))
                    }
                }
            }
            results.push(r);
        }
    }
    if !stored.is_empty() {
        if let Err(e) = persist(shared, &stored).await {
            error!("storing {} events failed: {e}", stored.len());
            for (si, ei) in &accepted_positions {
                results[*si][*ei] = Err(Refusal::Store(e.to_string()));
            }
            // The engine took events the store may not hold: rebuild it from what is durable.
            let cfg = lock(&shared.cfg).clone();
            match recover_engine(&cfg, &shared.store) {
                Ok((engine, _)) => *lock(&shared.engine) = engine,
                Err(e) => error!("rebuilding state from the store failed: {e}"),
            }
        } else {
            lock(&shared.checkpoint).events_since += stored.len() as u64;
        }
    }
    // Refusals are counted by the connection, which sees validation errors too.
    let accepted = results.iter().flatten().filter(|r| r.is_ok()).count() as u64;
    for (sub, r) in subs.into_iter().zip(results) {
        // The connection may be gone; its events are stored all the same.
        let _ = sub.reply.send(r);
    }
    shared.ingest.update(|c| c.events_accepted += accepted);
}

async fn persist(shared: &Shared, stored: &[StoredEvent]) -> Result<(), StoreError> {
    let bytes = rmp_serde::to_vec(stored).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    shared.store.append(&bytes)?;
    shared.store.flush().await?;
    Ok(())
}

fn checkpoint_due(shared: &Shared) -> bool {
    let cfg = lock(&shared.cfg);
    let c = lock(&shared.checkpoint);
    c.events_since >= cfg.store.checkpoint_events
        || (c.events_since > 0
            && c.last.elapsed().as_millis() as i64 >= cfg.store.checkpoint_interval.0)
}

/// Writes the engine's changed buckets and state as one atomic checkpoint, then trims the log.
pub(super) async fn checkpoint(shared: &Shared) -> Result<(), StoreError> {
    let (seq, cp) = {
        let mut engine = lock(&shared.engine);
        // Taken under the engine lock, right after a whole group: it includes every logged group.
        (
            shared.store.next_seq().saturating_sub(1),
            engine.checkpoint(),
        )
    };
    let result = shared
        .store
        .write_checkpoint(seq, cp.buckets, &cp.volatile)
        .await;
    match &result {
        Ok(()) => {
            let mut c = lock(&shared.checkpoint);
            c.last = Instant::now();
            c.events_since = 0;
        }
        Err(_) => lock(&shared.engine).mark_all_dirty(),
    }
    result
}
