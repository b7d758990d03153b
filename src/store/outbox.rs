//! The upstream outbox in sled: records waiting for sinks, each sink's cursor, dead letters, and
//! the copy of every shipped interval that corrections are computed against.
//!
//! All of it lives in one tree, `upstream`, so that new records and the shipped copies they
//! imply are written in one atomic batch. Keys: `o`+seq (record), `s`+bucket (shipped copy),
//! `c`+sink (cursor), `d`+sink+0+seq (dead letter), `m:*` (counters).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::trees::{apply_batch, seq_of};
use super::{Store, StoreError};

const RECORD: u8 = b'o';
const SHIPPED: u8 = b's';
const CURSOR: u8 = b'c';
const DEAD: u8 = b'd';
const META_NEXT: &[u8] = b"m:next_record";
const META_DROPPED: &[u8] = b"m:dropped";

/// Stored key → value pairs.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// A dead letter: a record a sink refused for good, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub reason: String,
    pub record: Vec<u8>,
}

/// Running totals of the outbox, kept in memory (rebuilt at open).
#[derive(Debug, Default)]
pub struct OutboxCounters {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
}

fn key(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(rest.len() + 1);
    k.push(prefix);
    k.extend_from_slice(rest);
    k
}

fn dead_key(sink: &str, seq: u64) -> Vec<u8> {
    let mut k = key(DEAD, sink.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn u64_of(v: Option<sled::IVec>) -> Result<u64, StoreError> {
    v.map_or(Ok(0), |v| seq_of(&v))
}

impl Store {
    pub(super) fn count_outbox(&self) -> Result<(), StoreError> {
        let (mut n, mut bytes) = (0u64, 0u64);
        for kv in self.t()?.upstream.scan_prefix([RECORD]) {
            let (_, v) = kv?;
            n += 1;
            bytes += v.len() as u64;
        }
        self.outbox.records.store(n, Ordering::SeqCst);
        self.outbox.bytes.store(bytes, Ordering::SeqCst);
        Ok(())
    }

    /// The sequence number the next record gets.
    pub fn next_record_seq(&self) -> Result<u64, StoreError> {
        Ok(u64_of(self.t()?.upstream.get(META_NEXT)?)?.max(1))
    }

    /// Hands every shipped copy to `f` (encoded bucket key, encoded aggregate), one at a time:
    /// at 1 M calls a day they are ~77 000 aggregates with their histograms, which collected at
    /// once held ~20 MiB at every start.
    pub fn for_each_shipped(
        &self,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        for kv in self.t()?.upstream.scan_prefix([SHIPPED]) {
            let (k, v) = kv?;
            f(&k[1..], &v)?;
        }
        Ok(())
    }

    pub fn shipped_copy(&self, bucket: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .t()?
            .upstream
            .get(key(SHIPPED, bucket))?
            .map(|v| v.to_vec()))
    }

    /// Atomically adds records (seq, encoded) and updates shipped copies (`None` removes one),
    /// then drops the oldest records while the outbox is over `max_bytes`. Returns how many
    /// records were dropped. Durable after the next flush.
    pub fn add_records(
        &self,
        records: &[(u64, Vec<u8>)],
        shipped: &[(Vec<u8>, Option<Vec<u8>>)],
        max_bytes: u64,
    ) -> Result<u64, StoreError> {
        self.add_records_with(records, shipped, sled::Batch::default(), max_bytes)
    }

    /// [`Store::add_records`], with what `batch` already holds (the history of the same
    /// intervals) written in the same atomic batch.
    pub(super) fn add_records_with(
        &self,
        records: &[(u64, Vec<u8>)],
        shipped: &[(Vec<u8>, Option<Vec<u8>>)],
        mut batch: sled::Batch,
        max_bytes: u64,
    ) -> Result<u64, StoreError> {
        let mut added = 0u64;
        let mut next = self.next_record_seq()?;
        for (seq, bytes) in records {
            batch.insert(key(RECORD, &seq.to_be_bytes()), bytes.as_slice());
            added += bytes.len() as u64;
            next = next.max(seq + 1);
        }
        for (k, v) in shipped {
            match v {
                Some(v) => batch.insert(key(SHIPPED, k), v.as_slice()),
                None => batch.remove(key(SHIPPED, k)),
            }
        }
        batch.insert(META_NEXT, &next.to_be_bytes());
        apply_batch(&self.t()?.upstream, batch)?;
        self.outbox
            .records
            .fetch_add(records.len() as u64, Ordering::SeqCst);
        self.outbox.bytes.fetch_add(added, Ordering::SeqCst);
        let mut dropped = 0;
        while self.outbox.bytes.load(Ordering::SeqCst) > max_bytes {
            let Some((k, v)) = self
                .t()?
                .upstream
                .scan_prefix([RECORD])
                .next()
                .transpose()?
            else {
                break;
            };
            self.t()?.upstream.remove(&k)?;
            self.outbox.records.fetch_sub(1, Ordering::SeqCst);
            self.outbox
                .bytes
                .fetch_sub(v.len() as u64, Ordering::SeqCst);
            dropped += 1;
        }
        if dropped > 0 {
            let total = u64_of(self.t()?.upstream.get(META_DROPPED)?)? + dropped;
            self.t()?
                .upstream
                .insert(META_DROPPED, &total.to_be_bytes())?;
        }
        Ok(dropped)
    }

    /// Records dropped so far because the outbox was full.
    pub fn dropped_records(&self) -> Result<u64, StoreError> {
        u64_of(self.t()?.upstream.get(META_DROPPED)?)
    }

    pub fn outbox_size(&self) -> (u64, u64) {
        (
            self.outbox.records.load(Ordering::SeqCst),
            self.outbox.bytes.load(Ordering::SeqCst),
        )
    }

    pub fn cursor(&self, sink: &str) -> Result<u64, StoreError> {
        u64_of(self.t()?.upstream.get(key(CURSOR, sink.as_bytes()))?)
    }

    /// Up to `limit` records after `after`, oldest first.
    pub fn records_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.t()?
            .upstream
            .range(key(RECORD, &(after + 1).to_be_bytes())..key(RECORD + 1, &[]))
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((seq_of(&k[1..])?, v.to_vec()))
            })
            .collect()
    }

    /// Waiting records after `after`: (count, bytes).
    pub fn backlog_after(&self, after: u64) -> Result<(u64, u64), StoreError> {
        let (mut n, mut bytes) = (0, 0);
        for kv in self
            .t()?
            .upstream
            .range(key(RECORD, &(after + 1).to_be_bytes())..key(RECORD + 1, &[]))
        {
            let (_, v) = kv?;
            n += 1;
            bytes += v.len() as u64;
        }
        Ok((n, bytes))
    }

    /// Moves a sink's cursor to `seq`, parks `dead` records for it, and deletes records every
    /// sink in `all_sinks` has passed; durable when this returns.
    pub fn advance_cursor(
        &self,
        sink: &str,
        seq: u64,
        dead: &[(u64, DeadLetter)],
        all_sinks: &[String],
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        batch.insert(key(CURSOR, sink.as_bytes()), &seq.to_be_bytes());
        for (s, letter) in dead {
            let bytes =
                rmp_serde::to_vec(letter).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            batch.insert(dead_key(sink, *s), bytes);
        }
        apply_batch(&self.t()?.upstream, batch)?;
        let mut lowest = seq;
        for other in all_sinks {
            lowest = lowest.min(if other == sink {
                seq
            } else {
                self.cursor(other)?
            });
        }
        let mut gone = sled::Batch::default();
        let (mut n, mut bytes) = (0u64, 0u64);
        for kv in self
            .t()?
            .upstream
            .range(key(RECORD, &0u64.to_be_bytes())..=key(RECORD, &lowest.to_be_bytes()))
        {
            let (k, v) = kv?;
            n += 1;
            bytes += v.len() as u64;
            gone.remove(k);
        }
        apply_batch(&self.t()?.upstream, gone)?;
        self.outbox.records.fetch_sub(n, Ordering::SeqCst);
        self.outbox.bytes.fetch_sub(bytes, Ordering::SeqCst);
        self.flush_blocking()?;
        Ok(())
    }

    /// Dead letters of a sink, oldest first.
    pub fn dead_letters(&self, sink: &str) -> Result<Vec<(u64, DeadLetter)>, StoreError> {
        let mut prefix = key(DEAD, sink.as_bytes());
        prefix.push(0);
        self.t()?
            .upstream
            .scan_prefix(&prefix)
            .map(|kv| {
                let (k, v) = kv?;
                let seq = seq_of(&k[prefix.len()..])?;
                let letter =
                    rmp_serde::from_slice(&v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok((seq, letter))
            })
            .collect()
    }

    pub fn dead_letter_count(&self, sink: &str) -> usize {
        let mut prefix = key(DEAD, sink.as_bytes());
        prefix.push(0);
        self.t()
            .map_or(0, |t| t.upstream.scan_prefix(&prefix).count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path) -> Store {
        Store::open(&dir.join("s"), 1 << 20, 1 << 30).unwrap()
    }

    #[test]
    fn records_leave_only_after_every_sink_passed_them() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let sinks = vec!["a".to_string(), "b".to_string()];
        s.add_records(
            &[
                (1, b"r1".to_vec()),
                (2, b"r2".to_vec()),
                (3, b"r3".to_vec()),
            ],
            &[],
            1 << 20,
        )
        .unwrap();
        assert_eq!(s.next_record_seq().unwrap(), 4);
        s.advance_cursor("a", 3, &[], &sinks).unwrap();
        assert_eq!(s.outbox_size().0, 3);
        assert_eq!(
            s.records_after(s.cursor("b").unwrap(), 10).unwrap().len(),
            3
        );
        let letter = DeadLetter {
            reason: "400".into(),
            record: b"r1".to_vec(),
        };
        s.advance_cursor("b", 2, &[(1, letter.clone())], &sinks)
            .unwrap();
        assert_eq!(s.records_after(2, 10).unwrap(), vec![(3, b"r3".to_vec())]);
        assert_eq!(s.outbox_size(), (1, 2));
        assert_eq!(s.dead_letters("b").unwrap(), vec![(1, letter)]);
        assert_eq!(s.dead_letter_count("a"), 0);
        drop(s);
        let s = open(dir.path());
        assert_eq!(s.outbox_size(), (1, 2));
        assert_eq!(s.cursor("b").unwrap(), 2);
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let recs: Vec<_> = (1..=10).map(|i| (i, vec![0u8; 100])).collect();
        let dropped = s
            .add_records(&recs, &[(b"k".to_vec(), Some(b"v".to_vec()))], 550)
            .unwrap();
        assert_eq!(dropped, 5);
        assert_eq!(s.dropped_records().unwrap(), 5);
        assert_eq!(
            s.records_after(0, 100).unwrap().first().map(|r| r.0),
            Some(6)
        );
        let mut shipped = Vec::new();
        s.for_each_shipped(|k, v| {
            shipped.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(shipped, vec![(b"k".to_vec(), b"v".to_vec())]);
    }
}
