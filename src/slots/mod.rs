//! Connection slots under a cap, where a newcomer finding every slot taken makes the connection
//! idle longest give its slot up, so quiet connections held for hours cannot lock clients out.
//!
//! Each connection holds a [`Slot`] and reports its work on it: [`Slot::begin`] when the first
//! byte of a message arrives, [`Slot::finish`] once the replies to messages are written. A
//! connection with no message begun and no reply owed is idle. To make room, [`Slots::take`]
//! asks the connection idle longest (see [`choice`]) to leave; that connection gives its slot up
//! only where it waits for the next message ([`Slot::evicted`]), so nothing it began or owes is
//! cut short. If it begins a message first, the request lapses and the newcomer asks another.
//!
//! Used by the event sockets (`limits.max_connections`) and the control socket.

pub mod choice;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How long a connection must have been idle before it can be asked to make room: a connection
/// pausing between the messages of a steady stream is not idle in any sense that matters.
pub const MIN_IDLE: Duration = Duration::from_secs(1);

/// A table of connection slots with a cap.
#[derive(Debug)]
pub struct Slots {
    max: usize,
    min_idle: Duration,
    table: Mutex<Table>,
    /// Woken whenever a slot frees or an eviction request lapses: newcomers waiting for room
    /// look again.
    changed: Notify,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    entries: HashMap<u64, Entry>,
}

#[derive(Debug)]
struct Entry {
    /// Messages begun whose replies are not all written yet.
    work: usize,
    /// When `work` last dropped to zero (or the connection arrived).
    idle_since: Instant,
    /// A newcomer asked this connection to make room; cleared if it begins a message first.
    asked_to_leave: bool,
    /// Wakes the connection's [`Slot::evicted`] wait.
    wake: Arc<Notify>,
}

impl Slots {
    /// A table of `max` slots, whose connections can be asked to make room once idle `min_idle`.
    #[must_use]
    pub fn new(max: usize, min_idle: Duration) -> Arc<Slots> {
        Arc::new(Slots {
            max,
            min_idle,
            table: Mutex::default(),
            changed: Notify::new(),
        })
    }

    /// The cap.
    #[must_use]
    pub fn max(&self) -> usize {
        self.max
    }

    /// Takes a slot: a free one at once, or, when all are taken, the slot of the connection idle
    /// longest once it has left, waiting at most `wait` for that. `None` when no connection is
    /// idle enough to leave, or none left in time: the newcomer is to be refused.
    pub async fn take(self: &Arc<Self>, wait: Duration) -> Option<Slot> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut asked = None;
        loop {
            // Registered before looking, so a slot freed in between still wakes this wait.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.step(Instant::now(), &mut asked) {
                Step::Taken(slot) => return Some(slot),
                Step::Full => return None,
                Step::Waiting => {}
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                // Nobody needs the room any more: the connection asked may stay.
                if let Some(id) = asked {
                    if let Some(e) = self.lock().entries.get_mut(&id) {
                        e.asked_to_leave = false;
                    }
                }
                return None;
            }
        }
    }

    /// One look at the table: take a free slot, or keep waiting for the connection already
    /// asked to leave, or ask the one idle longest.
    fn step(self: &Arc<Self>, now: Instant, asked: &mut Option<u64>) -> Step {
        let mut table = self.lock();
        if table.entries.len() < self.max {
            // Room came from elsewhere: withdraw the request, if it still stands.
            if let Some(e) = asked.take().and_then(|id| table.entries.get_mut(&id)) {
                e.asked_to_leave = false;
            }
            let id = table.next_id;
            table.next_id += 1;
            let wake = Arc::new(Notify::new());
            table.entries.insert(
                id,
                Entry {
                    work: 0,
                    idle_since: now,
                    asked_to_leave: false,
                    wake: Arc::clone(&wake),
                },
            );
            return Step::Taken(Slot {
                slots: Arc::clone(self),
                id,
                wake,
            });
        }
        if let Some(id) = *asked {
            if table.entries.get(&id).is_some_and(|e| e.asked_to_leave) {
                return Step::Waiting;
            }
        }
        // Connections already asked by another newcomer are that newcomer's room.
        let candidates = table.entries.iter().map(|(&id, e)| choice::Entry {
            id,
            idle_since: e.idle_since,
            busy: e.work > 0 || e.asked_to_leave,
        });
        let Some(id) = choice::longest_idle(candidates, now, self.min_idle) else {
            return Step::Full;
        };
        if let Some(e) = table.entries.get_mut(&id) {
            e.asked_to_leave = true;
            e.wake.notify_one();
        }
        *asked = Some(id);
        Step::Waiting
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A poisoned lock only means a thread panicked while updating plain fields.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Frees slot `id` if it is still held, waking newcomers waiting for room.
    fn release(&self, id: u64) {
        if self.lock().entries.remove(&id).is_some() {
            self.changed.notify_waiters();
        }
    }
}

enum Step {
    Taken(Slot),
    Waiting,
    Full,
}

/// One connection's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    wake: Arc<Notify>,
}

impl Slot {
    /// The cap of the table this slot is in.
    #[must_use]
    pub fn cap(&self) -> usize {
        self.slots.max
    }

    /// The first byte of a message arrived: the connection is busy until its reply is written.
    /// A request to make room lapses, so the message is never cut short.
    pub fn begin(&self) {
        let mut table = self.slots.lock();
        let Some(e) = table.entries.get_mut(&self.id) else {
            return;
        };
        e.work += 1;
        if std::mem::take(&mut e.asked_to_leave) {
            drop(table);
            // The newcomer that asked looks for another connection to ask.
            self.slots.changed.notify_waiters();
        }
    }

    /// `n` messages begun are done: their replies are written, or they needed none.
    pub fn finish(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut table = self.slots.lock();
        if let Some(e) = table.entries.get_mut(&self.id) {
            e.work = e.work.saturating_sub(n);
            if e.work == 0 {
                e.idle_since = Instant::now();
            }
        }
    }

    /// Resolves once this connection has been asked to make room and has given its slot up;
    /// await it only between messages. After it resolves, the connection is to say why and close.
    pub async fn evicted(&self) {
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.leave_if_asked() {
                return;
            }
            woken.await;
        }
    }

    /// Gives the slot up if a newcomer asked for it and the connection is idle, in one step under
    /// the lock, so that a message begun meanwhile keeps the slot.
    fn leave_if_asked(&self) -> bool {
        let mut table = self.slots.lock();
        // Asked only while idle, and `begin` withdraws the request, so `work` is 0 here; checked
        // anyway, as leaving with work owed would lose replies.
        let leave = table
            .entries
            .get(&self.id)
            .is_some_and(|e| e.asked_to_leave && e.work == 0);
        if leave {
            table.entries.remove(&self.id);
            drop(table);
            self.slots.changed.notify_waiters();
        }
        leave
    }
}

impl Slot {
    /// A slot in a table of its own, for tests of one connection.
    #[cfg(test)]
    #[must_use]
    pub(crate) fn alone() -> Slot {
        match Slots::new(1, MIN_IDLE).step(Instant::now(), &mut None) {
            Step::Taken(slot) => slot,
            Step::Waiting | Step::Full => unreachable!("a new table has a free slot"),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn free_slots_are_taken_at_once_and_a_full_busy_table_refuses_at_once() {
        let slots = Slots::new(2, Duration::ZERO);
        let a = slots.take(WAIT).await.unwrap();
        let b = slots.take(WAIT).await.unwrap();
        a.begin();
        b.begin();
        let started = Instant::now();
        assert!(slots.take(WAIT).await.is_none());
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "no wait when nobody can leave"
        );
        drop(a);
        assert!(slots.take(WAIT).await.is_some());
    }

    #[tokio::test]
    async fn the_idle_connection_leaves_and_the_newcomer_gets_its_slot() {
        let slots = Slots::new(2, Duration::ZERO);
        let idle = slots.take(WAIT).await.unwrap();
        let busy = slots.take(WAIT).await.unwrap();
        busy.begin();
        let waiting = tokio::spawn({
            let slots = Arc::clone(&slots);
            async move { slots.take(WAIT).await }
        });
        tokio::time::timeout(WAIT, idle.evicted())
            .await
            .expect("the idle connection is asked to leave");
        let newcomer = waiting.await.unwrap();
        assert!(newcomer.is_some());
        // The busy one was not asked; once done and the table full again, a third is refused
        // while the newcomer and the busy one stay busy.
        newcomer.as_ref().unwrap().begin();
        assert!(slots.take(Duration::from_millis(50)).await.is_none());
        drop(idle);
        busy.finish(1);
    }

    #[tokio::test]
    async fn a_message_begun_after_the_request_keeps_the_slot() {
        let slots = Slots::new(1, Duration::ZERO);
        let conn = slots.take(WAIT).await.unwrap();
        let waiting = tokio::spawn({
            let slots = Arc::clone(&slots);
            async move { slots.take(Duration::from_millis(300)).await }
        });
        // Let the newcomer ask, then begin a message before the connection looks.
        tokio::time::sleep(Duration::from_millis(50)).await;
        conn.begin();
        assert!(
            !conn.leave_if_asked(),
            "a connection with a message begun must not leave"
        );
        assert!(waiting.await.unwrap().is_none(), "no idle connection left");
        assert!(!conn.leave_if_asked());
    }

    #[tokio::test]
    async fn a_lapsed_request_is_withdrawn_when_the_newcomer_gives_up() {
        let slots = Slots::new(1, Duration::ZERO);
        let conn = slots.take(WAIT).await.unwrap();
        conn.begin();
        assert!(slots.take(Duration::from_millis(20)).await.is_none());
        conn.finish(1);
        // Asked, but the newcomer gives up before the connection looks: it may stay.
        assert!(slots.take(Duration::from_millis(20)).await.is_none());
        assert!(!conn.leave_if_asked());
    }

    #[tokio::test]
    async fn connections_idle_less_than_the_minimum_stay() {
        let slots = Slots::new(1, Duration::from_secs(60));
        let _conn = slots.take(WAIT).await.unwrap();
        assert!(slots.take(WAIT).await.is_none());
    }
}
