//! `callmetrics import --format asterisk-queue-log FILE…`: backfills history from PBX logs
//! through the daemon's event socket, with progress, a summary, and a ledger of what was imported
//! so the same file imported twice counts once.
//!
//! Files are read in the order given, lines in file order, on a blocking thread; their events go
//! as JSON batches (one array per line) through [`super::send::send_to`], which pipelines them
//! and waits for every reply. The ledger records, per file (recognised by its first complete
//! line), how many bytes of complete lines were acknowledged; it is written only once they all
//! were. See docs/sources.md for why the ledger and not the engine's duplicate check.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::error::CliError;
use super::send::send_to;
use crate::sources::asterisk::{Mapper, Options, Skipped};

/// Events per batch line, and the bytes after which a batch line is closed early: well under the
/// daemon's default `limits.max_batch_events` (4096) and `limits.max_line_bytes` (64 KiB).
const BATCH_EVENTS: usize = 256;
const BATCH_BYTES: usize = 48 * 1024;

/// What one import run did, over all its files.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub lines: u64,
    /// Lines passed over because the ledger says they were imported before.
    pub already_imported: u64,
    pub events: u64,
    pub accepted: u64,
    pub refused: u64,
    /// The daemon's reasons for refusing, with counts.
    pub refusals: BTreeMap<String, u64>,
    /// Files ending in a line without its newline (still being written): that line is not read.
    pub half_written_last_lines: u64,
    pub skipped: Skipped,
}

/// Where the ledger lives and what to import.
pub struct ImportJob<'a> {
    pub event_socket: &'a Path,
    pub ledger: &'a Path,
    pub files: &'a [PathBuf],
    pub options: Options,
}

/// Runs an import and prints its summary; exit status 1 when any event was refused.
pub async fn import(job: ImportJob<'_>) -> Result<ExitCode, CliError> {
    let summary = import_files(job, &Progress::new()).await?;
    print_summary(&summary, &mut io::stdout())?;
    Ok(ExitCode::from(u8::from(summary.refused > 0)))
}

/// Imports every file in order; returns the totals.
pub async fn import_files(
    job: ImportJob<'_>,
    progress: &Progress,
) -> Result<ImportSummary, CliError> {
    let mut ledger = Ledger::load(job.ledger)?;
    let mut summary = ImportSummary::default();
    let mut mapper = Mapper::new(job.options);
    for path in job.files {
        let name = path.display().to_string();
        let total = std::fs::metadata(path)
            .map_err(|source| CliError::Input {
                path: name.clone(),
                source,
            })?
            .len();
        progress.start_file(&name, total);
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(8);
        let sizes = Arc::new(Mutex::new(VecDeque::new()));
        let read = {
            let path = path.clone();
            let ledger = ledger.clone();
            let sizes = sizes.clone();
            let counters = progress.counters.clone();
            tokio::task::spawn_blocking(move || {
                let res = read_file(&path, &ledger, &mut mapper, &tx, &sizes, &counters);
                (res, mapper)
            })
        };
        let (pipe_rd, mut pipe_wr) = tokio::io::duplex(256 * 1024);
        let pump = tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                if pipe_wr.write_all(&batch).await.is_err() {
                    break;
                }
            }
            // Dropping the write half ends the input `send_to` reads.
        });
        let mut tally = Tally::new(sizes);
        let sent = send_to(job.event_socket, pipe_rd, &name, &mut tally).await;
        pump.abort();
        let (read_res, back) = read
            .await
            .map_err(|e| CliError::EventSocket(format!("the reading task failed: {e}")))?;
        mapper = back;
        let file = read_res?;
        sent?;
        summary.lines += file.lines;
        summary.already_imported += file.already_imported;
        summary.events += file.events;
        summary.half_written_last_lines += u64::from(file.half_written);
        summary.accepted += tally.accepted;
        summary.refused += tally.refused;
        for (k, v) in tally.refusals {
            *summary.refusals.entry(k).or_default() += v;
        }
        if let Some(fp) = file.fingerprint {
            // Every event of the file's complete lines has its reply now: only then is it
            // recorded, so an interrupted import is repeated, never lost.
            ledger.record(fp, file.end_offset);
            ledger.save(job.ledger)?;
        }
        progress.end_file();
    }
    summary.skipped = mapper.skipped().clone();
    Ok(summary)
}

/// What reading one file found.
struct FileRead {
    fingerprint: Option<u64>,
    /// Bytes (of the decompressed text) of complete lines.
    end_offset: u64,
    lines: u64,
    already_imported: u64,
    events: u64,
    half_written: bool,
}

/// Reads `path` (plain or gzip, told by its first bytes), maps its lines and sends the events
/// in batch lines through `tx`, recording each batch's size in `sizes` for the replies.
fn read_file(
    path: &Path,
    ledger: &Ledger,
    mapper: &mut Mapper,
    tx: &mpsc::Sender<Vec<u8>>,
    sizes: &Mutex<VecDeque<usize>>,
    counters: &Counters,
) -> Result<FileRead, CliError> {
    let name = path.display().to_string();
    let in_err = |source| CliError::Input {
        path: name.clone(),
        source,
    };
    let file = File::open(path).map_err(in_err)?;
    let counted = CountingReader {
        inner: file,
        counters,
    };
    let mut buffered = BufReader::with_capacity(1 << 20, counted);
    let gz = buffered
        .fill_buf()
        .map_err(in_err)?
        .starts_with(&[0x1f, 0x8b]);
    let mut reader: Box<dyn BufRead> = if gz {
        Box::new(BufReader::with_capacity(
            1 << 20,
            flate2::bufread::MultiGzDecoder::new(buffered),
        ))
    } else {
        Box::new(buffered)
    };
    let mut out = FileRead {
        fingerprint: None,
        end_offset: 0,
        lines: 0,
        already_imported: 0,
        events: 0,
        half_written: false,
    };
    let mut done_before = 0;
    let mut line = Vec::with_capacity(512);
    let mut events = Vec::new();
    let mut batch = Batch::default();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(in_err)?;
        if n == 0 {
            break;
        }
        if !line.ends_with(b"\n") {
            // Asterisk is still writing it: the follower reads it once it is whole.
            out.half_written = true;
            break;
        }
        if out.fingerprint.is_none() {
            let fp = crate::sources::fingerprint(&line);
            out.fingerprint = Some(fp);
            done_before = ledger.imported(fp);
        }
        out.end_offset += n as u64;
        out.lines += 1;
        counters.lines.fetch_add(1, Ordering::Relaxed);
        if out.end_offset <= done_before {
            out.already_imported += 1;
            continue;
        }
        events.clear();
        mapper.line(&line, &mut events);
        for e in &events {
            batch.push(&e.to_json());
            out.events += 1;
            if batch.full() {
                send_batch(&mut batch, tx, sizes)?;
            }
        }
    }
    if !batch.is_empty() {
        send_batch(&mut batch, tx, sizes)?;
    }
    // A file imported further before than it now holds (replaced by a shorter one with the same
    // first line) keeps its larger mark.
    out.end_offset = out.end_offset.max(done_before);
    Ok(out)
}

fn send_batch(
    batch: &mut Batch,
    tx: &mpsc::Sender<Vec<u8>>,
    sizes: &Mutex<VecDeque<usize>>,
) -> Result<(), CliError> {
    let (bytes, n) = batch.take();
    sizes
        .lock()
        .map_err(|_| CliError::EventSocket("the reply tally failed".into()))?
        .push_back(n);
    tx.blocking_send(bytes).map_err(|_| {
        CliError::EventSocket(
            "the connection to the daemon ended before every event was sent".into(),
        )
    })
}

/// A JSON array of events being built, one line on the wire.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    n: usize,
}

impl Batch {
    fn push(&mut self, event: &serde_json::Value) {
        self.bytes.push(if self.n == 0 { b'[' } else { b',' });
        // Writing a Value into a Vec cannot fail: its keys are strings and a Vec takes any bytes.
        let _ = serde_json::to_writer(&mut self.bytes, event);
        self.n += 1;
    }
    fn full(&self) -> bool {
        self.n >= BATCH_EVENTS || self.bytes.len() >= BATCH_BYTES
    }
    fn is_empty(&self) -> bool {
        self.n == 0
    }
    fn take(&mut self) -> (Vec<u8>, usize) {
        self.bytes.extend_from_slice(b"]\n");
        let n = std::mem::take(&mut self.n);
        (std::mem::take(&mut self.bytes), n)
    }
}

/// Files imported before: fingerprint → bytes of complete lines acknowledged.
#[derive(Debug, Default, Clone)]
struct Ledger {
    files: BTreeMap<u64, u64>,
}

impl Ledger {
    fn load(path: &Path) -> Result<Ledger, CliError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Ledger::default()),
            Err(source) => {
                return Err(CliError::Input {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        let mut files = BTreeMap::new();
        for (i, l) in text.lines().enumerate() {
            if l.starts_with('#') || l.trim().is_empty() {
                continue;
            }
            let mut parts = l.split_whitespace();
            let parsed = (|| {
                let fp = u64::from_str_radix(parts.next()?, 16).ok()?;
                let off = parts.next()?.parse::<u64>().ok()?;
                Some((fp, off))
            })();
            let Some((fp, off)) = parsed else {
                return Err(CliError::EventSocket(format!(
                    "the import ledger {} line {} is not `<fingerprint> <bytes>`: fix or remove it (removing it re-imports everything)",
                    path.display(),
                    i + 1
                )));
            };
            files.insert(fp, off);
        }
        Ok(Ledger { files })
    }

    fn imported(&self, fp: u64) -> u64 {
        self.files.get(&fp).copied().unwrap_or(0)
    }

    fn record(&mut self, fp: u64, offset: u64) {
        let e = self.files.entry(fp).or_default();
        *e = (*e).max(offset);
    }

    /// Writes the ledger whole to a temporary file, syncs it, then renames it over the old one.
    fn save(&self, path: &Path) -> Result<(), CliError> {
        let fail = |e: io::Error| {
            CliError::EventSocket(format!(
                "cannot record the import in {}: {e} (run as the daemon's user, or pass --ledger PATH)",
                path.display()
            ))
        };
        let mut text = String::from(
            "# callmetrics import ledger: fingerprint of a file's first line, bytes of it imported\n",
        );
        for (fp, off) in &self.files {
            text.push_str(&format!("{fp:016x} {off}\n"));
        }
        let tmp = path.with_extension("tmp");
        let mut f = File::create(&tmp).map_err(fail)?;
        f.write_all(text.as_bytes()).map_err(fail)?;
        f.sync_all().map_err(fail)?;
        std::fs::rename(&tmp, path).map_err(fail)
    }
}

/// Reads the daemon's replies (one per batch line), counting accepted and refused events.
struct Tally {
    sizes: Arc<Mutex<VecDeque<usize>>>,
    partial: Vec<u8>,
    accepted: u64,
    refused: u64,
    refusals: BTreeMap<String, u64>,
}

#[derive(Deserialize)]
struct Reply {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    failed: Option<Vec<Failed>>,
}

#[derive(Deserialize)]
struct Failed {
    error: String,
}

impl Tally {
    fn new(sizes: Arc<Mutex<VecDeque<usize>>>) -> Self {
        Tally {
            sizes,
            partial: Vec::new(),
            accepted: 0,
            refused: 0,
            refusals: BTreeMap::new(),
        }
    }

    fn reply(&mut self, line: &[u8]) {
        let n = self
            .sizes
            .lock()
            .ok()
            .and_then(|mut s| s.pop_front())
            .unwrap_or(1) as u64;
        match serde_json::from_slice::<Reply>(line) {
            Ok(r) if r.ok => self.accepted += n,
            Ok(Reply {
                failed: Some(failed),
                ..
            }) => {
                let refused = failed.len() as u64;
                self.refused += refused;
                self.accepted += n.saturating_sub(refused);
                for f in failed {
                    *self.refusals.entry(f.error).or_default() += 1;
                }
            }
            Ok(r) => {
                self.refused += n;
                let why = r.error.unwrap_or_else(|| "no reason given".into());
                *self.refusals.entry(why).or_default() += n;
            }
            Err(_) => {
                self.refused += n;
                *self
                    .refusals
                    .entry("an unreadable reply".into())
                    .or_default() += n;
            }
        }
    }
}

impl Write for Tally {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.partial.extend_from_slice(buf);
        while let Some(i) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            self.reply(&line);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Counts the file's bytes as they are read (compressed bytes for a `.gz`), for the ETA.
struct CountingReader<'a> {
    inner: File,
    counters: &'a Counters,
}

impl Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[derive(Debug, Default)]
pub struct Counters {
    lines: AtomicU64,
    bytes: AtomicU64,
}

/// The progress display: a line redrawn in place on a terminal (at most 10 times a second), a log
/// line every 5 seconds otherwise.
pub struct Progress {
    counters: Arc<Counters>,
    state: Arc<Mutex<Option<(String, u64, Instant)>>>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Shows progress on standard error, as a redrawn line when it is a terminal.
    #[must_use]
    pub fn new() -> Self {
        let mut p = Progress::silent();
        let tty = io::stderr().is_terminal();
        let (counters, state) = (p.counters.clone(), p.state.clone());
        let every = if tty {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(5)
        };
        p.ticker = Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Ok(s) = state.lock() else { return };
                let Some((name, total, since)) = s.as_ref() else {
                    continue;
                };
                let line = progress_line(name, *total, since.elapsed(), &counters);
                if tty {
                    eprint!("\r\x1b[K{line}");
                } else {
                    eprintln!("{line}");
                }
            }
        }));
        p
    }

    /// No display (tests, benches).
    #[must_use]
    pub fn silent() -> Self {
        Progress {
            counters: Arc::default(),
            state: Arc::default(),
            ticker: None,
        }
    }

    fn start_file(&self, name: &str, total: u64) {
        self.counters.lines.store(0, Ordering::Relaxed);
        self.counters.bytes.store(0, Ordering::Relaxed);
        if let Ok(mut s) = self.state.lock() {
            *s = Some((name.to_string(), total, Instant::now()));
        }
    }

    fn end_file(&self) {
        if let Ok(mut s) = self.state.lock() {
            if self.ticker.is_some() && io::stderr().is_terminal() {
                if let Some((name, total, since)) = s.as_ref() {
                    eprintln!(
                        "\r\x1b[K{}",
                        progress_line(name, *total, since.elapsed(), &self.counters)
                    );
                }
            }
            *s = None;
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::silent()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(t) = &self.ticker {
            t.abort();
        }
    }
}

fn progress_line(name: &str, total: u64, elapsed: Duration, c: &Counters) -> String {
    let lines = c.lines.load(Ordering::Relaxed);
    let bytes = c.bytes.load(Ordering::Relaxed).min(total);
    let secs = elapsed.as_secs_f64().max(1e-3);
    let rate = lines as f64 / secs;
    let pct = if total == 0 {
        100.0
    } else {
        bytes as f64 * 100.0 / total as f64
    };
    let eta = if bytes == 0 {
        "?".to_string()
    } else {
        format!("{:.0}s", secs * (total - bytes) as f64 / bytes as f64)
    };
    format!("{name}: {lines} lines, {rate:.0} lines/s, {pct:.0}%, ETA {eta}")
}

/// The end-of-run report.
pub fn print_summary(s: &ImportSummary, out: &mut impl Write) -> io::Result<()> {
    writeln!(
        out,
        "{} lines read ({} imported before, skipped), {} events sent: {} accepted, {} refused",
        s.lines, s.already_imported, s.events, s.accepted, s.refused
    )?;
    if s.half_written_last_lines > 0 {
        writeln!(
            out,
            "{} file(s) end in a half-written line, not read",
            s.half_written_last_lines
        )?;
    }
    for ((reason, verb), n) in &s.skipped {
        writeln!(out, "skipped {n} line(s): {reason} {verb}")?;
    }
    for (why, n) in &s.refusals {
        writeln!(out, "refused {n} event(s): {why}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_round_trips_and_keeps_the_larger_mark() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("imports.ledger");
        let mut l = Ledger::load(&p).unwrap();
        l.record(7, 100);
        l.record(7, 50);
        l.record(9, 1);
        l.save(&p).unwrap();
        let back = Ledger::load(&p).unwrap();
        assert_eq!(back.imported(7), 100);
        assert_eq!(back.imported(9), 1);
        assert_eq!(back.imported(8), 0);
        std::fs::write(&p, "zz\n").unwrap();
        assert!(Ledger::load(&p).unwrap_err().to_string().contains("line 1"));
    }

    #[test]
    fn replies_count_events_per_batch() {
        let sizes = Arc::new(Mutex::new(VecDeque::from([3, 2, 4])));
        let mut t = Tally::new(sizes);
        t.write_all(b"{\"ok\":true,\"accepted\":3}\n{\"ok\":false,\"accepted\":1,\"error\":\"1 of 2 events refused\",")
            .unwrap();
        t.write_all(b"\"failed\":[{\"index\":0,\"error\":\"field `ts`: bad\"}]}\n{\"ok\":false,\"error\":\"line too long\"}\n")
            .unwrap();
        assert_eq!((t.accepted, t.refused), (4, 5));
        assert_eq!(t.refusals["field `ts`: bad"], 1);
        assert_eq!(t.refusals["line too long"], 4);
    }
}
