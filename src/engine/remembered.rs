//! Finished calls remembered for `late_event_window`, by hash, so that late duplicates of them
//! are recognised; bounded by `max_remembered_calls`, forgotten oldest first.

use std::collections::{HashMap, VecDeque};

use super::varint::{put_i64, put_u64, DecodeError, Reader};

/// Finished calls: hash → (latest timestamp folded, forget at), with the order to forget them.
#[derive(Debug, Clone, Default)]
pub struct Remembered {
    map: HashMap<u64, (i64, i64)>,
    queue: VecDeque<(i64, u64)>,
}

impl Remembered {
    /// From the map and the order to forget it in (the first layout's form).
    pub fn from_parts(map: HashMap<u64, (i64, i64)>, queue: VecDeque<(i64, u64)>) -> Self {
        Remembered { map, queue }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn heap_bytes(&self) -> usize {
        self.map.capacity() * 25 + self.queue.capacity() * 16
    }

    /// True when `ts` is no later than what was folded of the call: a late event.
    pub fn covers(&self, hash: u64, ts: i64) -> bool {
        self.map.get(&hash).is_some_and(|(t, _)| ts <= *t)
    }

    /// Remembers a finished call until `until`, keeping at most `max` calls.
    pub fn remember(&mut self, hash: u64, ts: i64, until: i64, max: usize) {
        let entry = self.map.entry(hash).or_insert((ts, until));
        *entry = (entry.0.max(ts), until);
        self.queue.push_back((until, hash));
        while self.map.len() > max {
            match self.queue.pop_front() {
                Some((_, h)) => {
                    self.map.remove(&h);
                }
                None => break,
            }
        }
    }

    pub fn next_forget(&self) -> Option<i64> {
        self.queue.front().map(|(t, _)| *t)
    }

    /// Forgets the oldest entry (due at `at`) unless it was remembered again since.
    pub fn forget_front(&mut self, at: i64) {
        if let Some((_, h)) = self.queue.pop_front() {
            if self.map.get(&h).is_some_and(|(_, until)| *until <= at) {
                self.map.remove(&h);
            }
        }
    }

    /// Gives memory back once fewer calls are remembered than the capacity held.
    pub fn shrink(&mut self) {
        if self.map.capacity() > 4 * self.map.len() + 1024 {
            self.map.shrink_to(2 * self.map.len());
            self.queue.shrink_to(2 * self.queue.len());
        }
    }

    /// The compact form: the forget queue in order (its times as small deltas, hashes as eight
    /// bytes), each entry with its call's latest timestamp when it is the call's current one.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.queue.len() as u64);
        let mut prev = 0i64;
        for (until, h) in &self.queue {
            put_i64(out, until.wrapping_sub(prev));
            prev = *until;
            out.extend_from_slice(&h.to_le_bytes());
            match self.map.get(h) {
                Some((ts, u)) if u == until => {
                    out.push(1);
                    put_i64(out, until.wrapping_sub(*ts));
                }
                _ => out.push(0),
            }
        }
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Remembered, DecodeError> {
        let mut m = Remembered::default();
        let n = r.usize()?;
        if n > r.rest().len() {
            return Err(DecodeError::Truncated);
        }
        let mut prev = 0i64;
        for _ in 0..n {
            let until = prev.wrapping_add(r.i64()?);
            prev = until;
            let mut h = [0u8; 8];
            for b in &mut h {
                *b = r.u8()?;
            }
            let h = u64::from_le_bytes(h);
            if r.u8()? == 1 {
                let ts = until.wrapping_sub(r.i64()?);
                m.map.insert(h, (ts, until));
            }
            m.queue.push_back((until, h));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::pending::call_hash;

    #[test]
    fn remembered_calls_round_trip_compactly() {
        let mut r = Remembered::default();
        for i in 0..30_000u64 {
            let h = call_hash(&format!("call-{i}"));
            r.remember(
                h,
                1_795_300_000_000 + i as i64,
                1_795_300_600_000 + i as i64 * 3,
                25_000,
            );
        }
        // Remembered again later: its first queue entry is stale.
        let h = call_hash("call-29000");
        r.remember(h, 1_795_300_100_000, 1_795_400_000_000, 25_000);
        let mut out = Vec::new();
        r.encode(&mut out);
        assert!(out.len() < 25_001 * 14, "{} bytes", out.len());
        let back = Remembered::decode(&mut Reader::new(&out)).unwrap();
        assert_eq!(back.map, r.map);
        assert_eq!(back.queue, r.queue);
    }
}
