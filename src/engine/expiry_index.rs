//! The calls that may expire, ordered by when: so the per-minute scan looks only at the calls
//! whose expiry has come instead of decoding every open call (100 000 open e-mails would be
//! decoded each minute for days). One entry per pending call with an open segment or orphan
//! events, keyed by the call's hash; rebuilt from the pending calls on restore and reload, so
//! it is never stored.

use std::collections::{BTreeSet, HashMap};

/// When each call may next expire.
#[derive(Debug, Clone, Default)]
pub(super) struct ExpiryIndex {
    /// (due, call hash), earliest first.
    order: BTreeSet<(i64, u64)>,
    /// Call hash → its entry's due. Two calls sharing a 64-bit hash (odds of about 1 in 10^9
    /// among 100 000 calls) share an entry: at its due both are looked at and the entry set
    /// again; one may expire late if the other moved the entry later.
    due_of: HashMap<u64, i64>,
}

impl ExpiryIndex {
    /// Sets (or, with `None`, removes) the call's due.
    pub(super) fn set(&mut self, hash: u64, due: Option<i64>) {
        match due {
            Some(d) => {
                if let Some(old) = self.due_of.insert(hash, d) {
                    self.order.remove(&(old, hash));
                }
                self.order.insert((d, hash));
            }
            None => {
                if let Some(old) = self.due_of.remove(&hash) {
                    self.order.remove(&(old, hash));
                }
            }
        }
    }

    /// Removes and returns the hashes of the calls due at or before `at`, earliest first.
    pub(super) fn pop_due(&mut self, at: i64) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some(&(d, h)) = self.order.first() {
            if d > at {
                break;
            }
            self.order.pop_first();
            self.due_of.remove(&h);
            out.push(h);
        }
        out
    }

    /// The due of the call's entry, if it has one.
    pub(super) fn due_of(&self, hash: u64) -> Option<i64> {
        self.due_of.get(&hash).copied()
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.due_of.len()
    }

    pub(super) fn clear(&mut self) {
        self.order.clear();
        self.due_of.clear();
    }

    /// Gives memory back after a burst, as the pending calls do.
    pub(super) fn shrink(&mut self) {
        if self.due_of.capacity() > 4 * self.due_of.len() + 1024 {
            self.due_of.shrink_to(2 * self.due_of.len());
        }
    }

    /// Heap bytes, estimated: a B-tree entry of 16 bytes in nodes about two thirds full, plus
    /// node headers, about 32 bytes; a hash slot of 16 bytes and its control byte per unit of
    /// capacity.
    pub(super) fn heap_bytes(&self) -> usize {
        self.order.len() * 32 + self.due_of.capacity() * 17
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_come_out_in_due_order_once_and_a_move_replaces_the_entry() {
        let mut x = ExpiryIndex::default();
        x.set(1, Some(300));
        x.set(2, Some(100));
        x.set(3, Some(200));
        x.set(3, Some(50)); // moved earlier
        x.set(2, None); // finished
        assert_eq!(x.len(), 2);
        assert_eq!(x.pop_due(49), Vec::<u64>::new());
        assert_eq!(x.pop_due(250), [3]);
        assert_eq!(x.pop_due(1000), [1]);
        assert_eq!(x.len(), 0);
        assert!(x.pop_due(i64::MAX).is_empty());
    }
}
