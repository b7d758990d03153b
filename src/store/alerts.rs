//! Alert state and its notifications in sled, beside the interval outbox in the `upstream` tree:
//! the phase of each (rule, queue) alert, the notifications waiting for each receiver, the ones
//! a receiver refused for good, and the last resolved alerts. A phase change and the
//! notifications it causes are written in one atomic batch, flushed before delivery sees them.
//!
//! Keys: `a`+rule+0+queue (phase), `n`+receiver+0+seq (waiting), `x`+receiver+0+seq (parked),
//! `r`+seq (resolved), `m:next_alert`.

use super::outbox::DeadLetter;
use super::trees::{apply_batch, seq_of};
use super::{Store, StoreError};

const STATE: u8 = b'a';
const NOTICE: u8 = b'n';
const PARKED: u8 = b'x';
const RESOLVED: u8 = b'r';
const META_NEXT: &[u8] = b"m:next_alert";

/// One evaluation's durable effect: an alert's new phase (`None` removes it), the encoded
/// notifications for each receiver under `seq`, and a resolved alert to keep for display.
#[derive(Debug, Default)]
pub struct AlertWrite {
    pub state_key: Vec<u8>,
    pub state: Option<Vec<u8>>,
    pub seq: u64,
    pub notices: Vec<(String, Vec<u8>)>,
    pub resolved: Option<Vec<u8>>,
}

fn prefixed(prefix: u8, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 2);
    k.push(prefix);
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k
}

fn seq_key(prefix: u8, name: &str, seq: u64) -> Vec<u8> {
    let mut k = prefixed(prefix, name);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

impl Store {
    /// Every stored alert phase: (key as written, value).
    pub fn alert_states(&self) -> Result<super::outbox::Pairs, StoreError> {
        self.t()?
            .upstream
            .scan_prefix([STATE])
            .map(|kv| {
                let (k, v) = kv?;
                Ok((k[1..].to_vec(), v.to_vec()))
            })
            .collect()
    }

    /// The sequence number the next notification gets.
    pub fn next_alert_seq(&self) -> Result<u64, StoreError> {
        Ok(match self.t()?.upstream.get(META_NEXT)? {
            Some(v) => seq_of(&v)?,
            None => 1,
        })
    }

    /// Writes `w` atomically and flushes it, then keeps only the newest `keep_resolved`
    /// resolved alerts.
    pub fn write_alert(&self, w: &AlertWrite, keep_resolved: usize) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let mut state_key = vec![STATE];
        state_key.extend_from_slice(&w.state_key);
        match &w.state {
            Some(v) => batch.insert(state_key, v.as_slice()),
            None => batch.remove(state_key),
        }
        for (receiver, bytes) in &w.notices {
            batch.insert(seq_key(NOTICE, receiver, w.seq), bytes.as_slice());
        }
        if let Some(r) = &w.resolved {
            let mut k = vec![RESOLVED];
            k.extend_from_slice(&w.seq.to_be_bytes());
            batch.insert(k, r.as_slice());
        }
        if !w.notices.is_empty() || w.resolved.is_some() {
            batch.insert(META_NEXT, &(w.seq + 1).to_be_bytes());
        }
        let t = self.t()?;
        apply_batch(&t.upstream, batch)?;
        let resolved: Vec<_> = t
            .upstream
            .scan_prefix([RESOLVED])
            .keys()
            .collect::<Result<_, _>>()?;
        if resolved.len() > keep_resolved {
            let mut trim = sled::Batch::default();
            for k in &resolved[..resolved.len() - keep_resolved] {
                trim.remove(k);
            }
            apply_batch(&t.upstream, trim)?;
        }
        drop(t);
        self.flush_blocking()?;
        Ok(())
    }

    /// Up to `limit` notifications waiting for `receiver`, oldest first.
    pub fn alert_notices(
        &self,
        receiver: &str,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let prefix = prefixed(NOTICE, receiver);
        self.t()?
            .upstream
            .scan_prefix(&prefix)
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((seq_of(&k[prefix.len()..])?, v.to_vec()))
            })
            .collect()
    }

    /// `receiver` is done with notification `seq`: delivered, or refused for good (`parked`
    /// gives the reason, and it is kept as a dead letter). Durable when this returns.
    pub fn finish_alert_notice(
        &self,
        receiver: &str,
        seq: u64,
        parked: Option<&str>,
    ) -> Result<(), StoreError> {
        let key = seq_key(NOTICE, receiver, seq);
        let t = self.t()?;
        let mut batch = sled::Batch::default();
        if let Some(reason) = parked {
            let record = t
                .upstream
                .get(&key)?
                .map(|v| v.to_vec())
                .unwrap_or_default();
            let letter = DeadLetter {
                reason: reason.to_string(),
                record,
            };
            let bytes =
                rmp_serde::to_vec(&letter).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            batch.insert(seq_key(PARKED, receiver, seq), bytes);
        }
        batch.remove(key);
        apply_batch(&t.upstream, batch)?;
        drop(t);
        self.flush_blocking()?;
        Ok(())
    }

    /// Notifications waiting for `receiver`: (count, bytes).
    pub fn alert_backlog(&self, receiver: &str) -> Result<(u64, u64), StoreError> {
        let (mut n, mut bytes) = (0, 0);
        for kv in self.t()?.upstream.scan_prefix(prefixed(NOTICE, receiver)) {
            let (_, v) = kv?;
            n += 1;
            bytes += v.len() as u64;
        }
        Ok((n, bytes))
    }

    /// Notifications `receiver` refused for good, oldest first.
    pub fn alert_dead_letters(&self, receiver: &str) -> Result<Vec<(u64, DeadLetter)>, StoreError> {
        let prefix = prefixed(PARKED, receiver);
        self.t()?
            .upstream
            .scan_prefix(&prefix)
            .map(|kv| {
                let (k, v) = kv?;
                let letter =
                    rmp_serde::from_slice(&v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok((seq_of(&k[prefix.len()..])?, letter))
            })
            .collect()
    }

    /// The resolved alerts kept, newest first.
    pub fn resolved_alerts(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out: Vec<Vec<u8>> = self
            .t()?
            .upstream
            .scan_prefix([RESOLVED])
            .values()
            .map(|v| Ok(v?.to_vec()))
            .collect::<Result<_, StoreError>>()?;
        out.reverse();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_and_its_notices_survive_a_reopen_and_leave_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let open = || Store::open(&dir.path().join("s"), 1 << 20, 1 << 30).unwrap();
        let s = open();
        assert_eq!(s.next_alert_seq().unwrap(), 1);
        s.write_alert(
            &AlertWrite {
                state_key: b"r\0q".to_vec(),
                state: Some(b"firing".to_vec()),
                seq: 1,
                notices: vec![
                    ("am".into(), b"n1".to_vec()),
                    ("hook".into(), b"h1".to_vec()),
                ],
                resolved: None,
            },
            2,
        )
        .unwrap();
        for seq in 2..=4 {
            s.write_alert(
                &AlertWrite {
                    state_key: b"r\0q".to_vec(),
                    state: None,
                    seq,
                    notices: vec![("hook".into(), vec![b'h', seq as u8])],
                    resolved: Some(vec![seq as u8]),
                },
                2,
            )
            .unwrap();
        }
        drop(s);
        let s = open();
        assert_eq!(s.next_alert_seq().unwrap(), 5);
        assert!(s.alert_states().unwrap().is_empty());
        assert_eq!(s.resolved_alerts().unwrap(), vec![vec![4u8], vec![3u8]]);
        assert_eq!(
            s.alert_notices("am", 10).unwrap(),
            vec![(1, b"n1".to_vec())]
        );
        assert_eq!(s.alert_backlog("hook").unwrap(), (4, 8));
        s.finish_alert_notice("hook", 1, None).unwrap();
        s.finish_alert_notice("hook", 2, Some("HTTP 400")).unwrap();
        assert_eq!(
            s.alert_notices("hook", 10).unwrap().first().map(|n| n.0),
            Some(3)
        );
        let dead = s.alert_dead_letters("hook").unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(
            (dead[0].0, dead[0].1.record.as_slice()),
            (2, &[b'h', 2][..])
        );
        assert_eq!(s.alert_backlog("am").unwrap(), (1, 2));
        // The interval outbox does not see any of it.
        assert_eq!(s.outbox_size(), (0, 0));
    }
}
