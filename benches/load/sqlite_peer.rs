//! The peer a call center would otherwise build: PBX events in one `SQLite` table and one SQL query
//! for the per-queue figures, ingested and queried here so the bench can set it beside the daemon.
//!
//! `ingest` writes `peer.db` in a folder the way a PBX hook would (WAL, `synchronous=FULL`, 256
//! events per transaction, indexes on `(call_id, type, ts)` and `(type, ts)` made before the first
//! insert); `query` runs [`QUEUE_METRICS_SQL`] over the last 24 h; `check_against` recomputes the
//! same figures from the generated calls in plain Rust so the bench can prove the SQL right.
//! `SQLite`'s other settings are left at their defaults (4 KiB pages, 2 MB page cache, no mmap),
//! as an application that only asked for WAL and `synchronous=FULL` would have them.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rusqlite::{params, Connection, OpenFlags};

/// File name of the peer's database inside the folder given to `ingest` and `query`.
const DB_FILE: &str = "peer.db";
/// Events per write transaction, as a batching PBX hook would commit them.
const EVENTS_PER_TX: usize = 256;
/// The trailing window of the query: 24 h in ms (the `86400000` in the SQL).
const WINDOW_MS: i64 = 86_400_000;
/// Answered within this many ms of the start counts for the service level (the `20000` in the SQL).
const SERVICE_LEVEL_MS: i64 = 20_000;

/// Schema and indexes, made before the first insert as an application would have them.
const SCHEMA_SQL: &str = "
CREATE TABLE events(call_id TEXT, type TEXT, ts INTEGER, queue TEXT, agent TEXT, channel TEXT);
CREATE INDEX events_call_type_ts ON events(call_id, type, ts);
CREATE INDEX events_type_ts ON events(type, ts);
";

/// One event row: `queue` and `channel` on `start`, `agent` on `answer`, NULL elsewhere.
const INSERT_SQL: &str =
    "INSERT INTO events(call_id, type, ts, queue, agent, channel) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// The peer's one query; `?1` is now (epoch ms), the window is `(?1 - 24 h, ?1]`.
///
/// - `calls`: the `(type, ts)` index finds the `answer`, `end` and `wrapup` rows inside the window,
///   which name every call that can count; the `(call_id, type, ts)` index then fetches all rows
///   of those calls in call order, and conditional aggregation grouped by `call_id` folds each
///   call into one row: queue and start time (from `start`), answer, end and wrapup times (NULL
///   when the call has no such row).
/// - `flagged`: what each call counts for, with the attribution of the figures: answered at its
///   answer time; abandoned (no answer at all) at its end time; completed, for AHT, at its wrapup
///   or, without one, its end. wait = answer − start; handle = (end − answer) + (wrapup − end, 0
///   without wrapup). Times after `?1` are outside the window, so a call is judged as of `?1`.
/// - the outer select: per queue, offered = answered + abandoned, answered within 20 000 ms,
///   abandoned, ASA = mean wait of the answered, AHT = mean handle of the completed (`AVG` skips
///   the NULLs of the other calls; NULL when none). A queue with anything in the window has a
///   row, also when only a completion fell in it (offered 0, ASA NULL).
///
/// It was measured beside the self-join form (answered / abandoned / completed parts each driven
/// by the `(type, ts)` index, other rows looked up per call): same rows, about 1.5x faster.
pub const QUEUE_METRICS_SQL: &str = "
WITH calls AS (
    SELECT MAX(CASE WHEN type = 'start' THEN queue END) AS queue,
           MAX(CASE WHEN type = 'start' THEN ts END) AS s,
           MAX(CASE WHEN type = 'answer' THEN ts END) AS a,
           MAX(CASE WHEN type = 'end' THEN ts END) AS e,
           MAX(CASE WHEN type = 'wrapup' THEN ts END) AS w
    FROM events
    WHERE call_id IN (SELECT call_id FROM events
                      WHERE type IN ('answer', 'end', 'wrapup')
                        AND ts > ?1 - 86400000 AND ts <= ?1)
    GROUP BY call_id
),
flagged AS (
    SELECT queue, a - s AS wait, (e - a) + COALESCE(w - e, 0) AS handle,
           CASE WHEN a > ?1 - 86400000 AND a <= ?1 THEN 1 ELSE 0 END AS is_answered,
           CASE WHEN a IS NULL AND e > ?1 - 86400000 AND e <= ?1 THEN 1 ELSE 0 END AS is_abandoned,
           CASE WHEN a IS NOT NULL AND COALESCE(w, e) > ?1 - 86400000 AND COALESCE(w, e) <= ?1
                THEN 1 ELSE 0 END AS is_completed
    FROM calls
)
SELECT queue,
       SUM(is_answered) + SUM(is_abandoned) AS offered,
       SUM(CASE WHEN is_answered = 1 AND wait <= 20000 THEN 1 ELSE 0 END) AS answered_within_20s,
       SUM(is_abandoned) AS abandoned,
       AVG(CASE WHEN is_answered = 1 THEN wait END) AS asa_ms,
       AVG(CASE WHEN is_completed = 1 THEN handle END) AS aht_ms
FROM flagged
WHERE is_answered = 1 OR is_abandoned = 1 OR is_completed = 1
GROUP BY queue
ORDER BY queue
";

/// One call as the bench generated it (times in epoch ms).
#[derive(Debug, Clone, Copy)]
pub struct PeerCall<'a> {
    /// Unique id of the call (one queue visit per call).
    pub call_id: &'a str,
    /// Queue the call waited in (written on `start`).
    pub queue: &'a str,
    /// Channel of the call (written on `start`).
    pub channel: &'a str,
    /// Agent who answered; Some when answered (written on `answer`).
    pub agent: Option<&'a str>,
    /// When the call entered the queue.
    pub start_ms: i64,
    /// When an agent answered; None for an abandoned call.
    pub answer_ms: Option<i64>,
    /// When the call ended (hang-up or abandon).
    pub end_ms: i64,
    /// When after-call work ended; Some only for answered calls.
    pub wrapup_ms: Option<i64>,
}

/// One queue's row of the SQL query.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerRow {
    /// Queue name (from the `start` row).
    pub queue: String,
    /// Segments that left the queue in the window: answered + abandoned.
    pub offered: u64,
    /// Answered in the window with answer − start ≤ 20 000 ms.
    pub answered_within_20s: u64,
    /// Ended in the window without an answer.
    pub abandoned: u64,
    /// Mean answer − start of the calls answered in the window; None without any.
    pub asa_ms: Option<f64>,
    /// Mean handle time of the answered calls completed in the window; None without any.
    pub aht_ms: Option<f64>,
}

/// What one `ingest` cost.
#[derive(Debug, Clone, Copy)]
pub struct PeerIngest {
    /// Event rows inserted.
    pub events: u64,
    /// Wall time from the first `BEGIN` to the last `COMMIT`.
    pub seconds: f64,
    /// Bytes this process caused to be written to storage over the same span (`/proc/self/io`
    /// `write_bytes` delta: page-granular, whole process, the filesystem journal not included).
    pub bytes_written: u64,
    /// Size of the database and its WAL file after the last commit, before the connection closes.
    pub db_bytes: u64,
}

/// A failure outside `SQLite`, reported as a `SQLite` error of `code` with its explanation.
fn failure(code: std::os::raw::c_int, message: String) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), Some(message))
}

/// An I/O failure outside `SQLite`, reported as `SQLite`'s own I/O error with what failed.
fn io_error(what: &str, err: &std::io::Error) -> rusqlite::Error {
    failure(rusqlite::ffi::SQLITE_IOERR, format!("{what}: {err}"))
}

/// `write_bytes` of `/proc/self/io`: bytes this process has caused to be sent to storage.
fn proc_write_bytes() -> rusqlite::Result<u64> {
    let text = std::fs::read_to_string("/proc/self/io")
        .map_err(|e| io_error("reading /proc/self/io", &e))?;
    text.lines()
        .find_map(|line| line.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            io_error(
                "reading /proc/self/io",
                &std::io::Error::other("no write_bytes line"),
            )
        })
}

/// Size of a file, 0 when it does not exist.
fn file_len(path: &Path) -> rusqlite::Result<u64> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_error(&format!("stat {}", path.display()), &e)),
    }
}

/// The database file and its `-wal` and `-shm` companions.
fn db_files(dir: &Path) -> [PathBuf; 3] {
    let db = dir.join(DB_FILE);
    let wal = dir.join(format!("{DB_FILE}-wal"));
    let shm = dir.join(format!("{DB_FILE}-shm"));
    [db, wal, shm]
}

/// Event kinds in the order a call's events happen; a call's events at equal times go in this order.
const KINDS: [&str; 4] = ["start", "answer", "end", "wrapup"];

/// Inserts every event of `calls` (start, answer when answered, end, wrapup when present), 256 per transaction.
///
/// Makes a fresh `peer.db` in `dir` (an earlier one there is removed). Events go in in time order,
/// as a PBX hook writes them live; `call_id`s must be unique.
pub fn ingest(dir: &Path, calls: &[PeerCall<'_>]) -> rusqlite::Result<PeerIngest> {
    for path in db_files(dir) {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_error(&format!("removing {}", path.display()), &e));
            }
            _ => {}
        }
    }
    let [db_path, wal_path, _] = db_files(dir);
    let mut conn = Connection::open(&db_path)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(failure(
            rusqlite::ffi::SQLITE_ERROR,
            format!("journal_mode WAL refused (got {mode})"),
        ));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(SCHEMA_SQL)?;

    // (time, call, kind) of every event, in the order they happened.
    let mut order: Vec<(i64, u32, u8)> = Vec::with_capacity(calls.len() * 4);
    for (i, c) in calls.iter().enumerate() {
        let i = u32::try_from(i)
            .map_err(|_| failure(rusqlite::ffi::SQLITE_TOOBIG, "over 2^32 calls".to_string()))?;
        order.push((c.start_ms, i, 0));
        if let Some(a) = c.answer_ms {
            order.push((a, i, 1));
        }
        order.push((c.end_ms, i, 2));
        if let Some(w) = c.wrapup_ms {
            order.push((w, i, 3));
        }
    }
    order.sort_unstable();

    let written_before = proc_write_bytes()?;
    let started = Instant::now();
    for chunk in order.chunks(EVENTS_PER_TX) {
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(INSERT_SQL)?;
            for &(ts, i, kind) in chunk {
                let c = &calls[i as usize];
                let (queue, agent, channel) = match kind {
                    0 => (Some(c.queue), None, Some(c.channel)),
                    1 => (None, c.agent, None),
                    _ => (None, None, None),
                };
                insert.execute(params![
                    c.call_id,
                    KINDS[usize::from(kind)],
                    ts,
                    queue,
                    agent,
                    channel
                ])?;
            }
        }
        tx.commit()?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let bytes_written = proc_write_bytes()?.saturating_sub(written_before);
    let db_bytes = file_len(&db_path)? + file_len(&wal_path)?;
    conn.close().map_err(|(_, e)| e)?;
    Ok(PeerIngest {
        events: order.len() as u64,
        seconds,
        bytes_written,
        db_bytes,
    })
}

/// A count column as u64.
fn count(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let v: i64 = row.get(idx)?;
    u64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, v))
}

/// Runs the per-queue query over the last 24 h before `now_ms` `runs` times; returns each run's wall time in ms and the rows of the last run.
///
/// Each run's time covers preparing (cached after the first run), stepping and reading all rows;
/// `runs` = 0 runs nothing and returns no rows.
pub fn query(dir: &Path, now_ms: i64, runs: usize) -> rusqlite::Result<(Vec<f64>, Vec<PeerRow>)> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(dir.join(DB_FILE), flags)?;
    let mut times = Vec::with_capacity(runs);
    let mut rows = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let mut stmt = conn.prepare_cached(QUEUE_METRICS_SQL)?;
        rows = stmt
            .query_map(params![now_ms], |r| {
                Ok(PeerRow {
                    queue: r.get(0)?,
                    offered: count(r, 1)?,
                    answered_within_20s: count(r, 2)?,
                    abandoned: count(r, 3)?,
                    asa_ms: r.get(4)?,
                    aht_ms: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok((times, rows))
}

/// Whether two means agree within 1e-9 relative (both absent counts as agreeing).
fn same_mean(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()),
        _ => false,
    }
}

/// Recomputes the query's figures from `calls` in plain Rust and compares them with `rows`: counts exactly, ASA and AHT within 1e-9 relative.
pub fn check_against(calls: &[PeerCall<'_>], now_ms: i64, rows: &[PeerRow]) -> Result<(), String> {
    let in_window = |t: i64| t > now_ms.saturating_sub(WINDOW_MS) && t <= now_ms;
    // queue -> (answered, within, abandoned, wait sum, handled, handle sum)
    let mut want: BTreeMap<&str, (u64, u64, u64, i128, u64, i128)> = BTreeMap::new();
    let mut ids = HashSet::with_capacity(calls.len());
    for c in calls {
        if !ids.insert(c.call_id) {
            return Err(format!("call_id {} appears twice", c.call_id));
        }
        if let Some(a) = c.answer_ms.filter(|&a| in_window(a)) {
            let q = want.entry(c.queue).or_default();
            q.0 += 1;
            q.1 += u64::from(a - c.start_ms <= SERVICE_LEVEL_MS);
            q.3 += i128::from(a - c.start_ms);
        }
        if c.answer_ms.is_none() && in_window(c.end_ms) {
            want.entry(c.queue).or_default().2 += 1;
        }
        if let Some(a) = c.answer_ms {
            if in_window(c.wrapup_ms.unwrap_or(c.end_ms)) {
                let handle = (c.end_ms - a) + c.wrapup_ms.map_or(0, |w| w - c.end_ms);
                let q = want.entry(c.queue).or_default();
                q.4 += 1;
                q.5 += i128::from(handle);
            }
        }
    }
    let mean = |sum: i128, n: u64| (n > 0).then(|| sum as f64 / n as f64);
    let want: BTreeMap<&str, PeerRow> = want
        .into_iter()
        .map(|(q, (ans, within, abn, waits, handled, handles))| {
            let row = PeerRow {
                queue: q.to_string(),
                offered: ans + abn,
                answered_within_20s: within,
                abandoned: abn,
                asa_ms: mean(waits, ans),
                aht_ms: mean(handles, handled),
            };
            (q, row)
        })
        .collect();
    let mut got: BTreeMap<&str, &PeerRow> = BTreeMap::new();
    for r in rows {
        if got.insert(r.queue.as_str(), r).is_some() {
            return Err(format!("queue {} has two rows", r.queue));
        }
    }
    let mut problems = Vec::new();
    for (q, w) in &want {
        match got.get(q) {
            None => problems.push(format!("queue {q}: no row, expected {w:?}")),
            Some(g) => {
                let counts_match = g.offered == w.offered
                    && g.answered_within_20s == w.answered_within_20s
                    && g.abandoned == w.abandoned;
                if !counts_match || !same_mean(g.asa_ms, w.asa_ms) || !same_mean(g.aht_ms, w.aht_ms)
                {
                    problems.push(format!("queue {q}: got {g:?}, expected {w:?}"));
                }
            }
        }
    }
    for q in got.keys().filter(|q| !want.contains_key(*q)) {
        problems.push(format!("queue {q}: unexpected row"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        let n = problems.len();
        problems.truncate(5);
        Err(format!("{n} queue(s) differ: {}", problems.join("; ")))
    }
}
