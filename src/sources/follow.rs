//! Following a log file the way `tail -F` does, but safely: only newline-terminated lines are
//! handed out, a file renamed away by logrotate is drained before the new one is opened, a
//! truncation (`copytruncate`) or a file replaced while the daemon was down is recognised, and
//! the lines a copy beside the file still holds are read from it. Blocking file I/O: the daemon
//! runs [`Tail::poll`] on a blocking thread (see `daemon/sources.rs`).
//!
//! A [`Position`] (device, inode, byte offset, fingerprint of the first line) is what the
//! daemon stores with the events of the lines before it; [`Tail::new`] resumes from one.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::fingerprint;

/// Most bytes of lines handed out by one poll: a few thousand lines, so one commit group holds
/// their events.
const MAX_CHUNK: usize = 128 << 10;
/// The first line is looked for within this many bytes (a `queue_log` line is ~100).
const FIRST_LINE_BYTES: usize = 4096;
/// Encoded [`Position`] version.
const POSITION_VERSION: u8 = 1;

/// Which file: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    fn of(m: &Metadata) -> FileId {
        FileId {
            dev: m.dev(),
            ino: m.ino(),
        }
    }
}

/// Where a followed file has been read to: stored with the events of the lines before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub file: FileId,
    /// Bytes of complete lines read.
    pub offset: u64,
    /// [`fingerprint`] of the file's first line: a file that reuses the inode is another file.
    pub first_line: Option<u64>,
    /// Epoch seconds of the last line read (0: none yet), for the lag after a restart.
    pub last_epoch: i64,
}

impl Position {
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(42);
        out.push(POSITION_VERSION);
        out.extend_from_slice(&self.file.dev.to_be_bytes());
        out.extend_from_slice(&self.file.ino.to_be_bytes());
        out.extend_from_slice(&self.offset.to_be_bytes());
        out.push(u8::from(self.first_line.is_some()));
        out.extend_from_slice(&self.first_line.unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&self.last_epoch.to_be_bytes());
        out
    }

    /// `None` for bytes this version did not write (the source then starts afresh).
    #[must_use]
    pub fn decode(b: &[u8]) -> Option<Position> {
        if b.len() != 42 || b[0] != POSITION_VERSION {
            return None;
        }
        let u = |i: usize| -> Option<u64> {
            Some(u64::from_be_bytes(b.get(i..i + 8)?.try_into().ok()?))
        };
        Some(Position {
            file: FileId {
                dev: u(1)?,
                ino: u(9)?,
            },
            offset: u(17)?,
            first_line: (b[25] == 1).then_some(u(26)?),
            last_epoch: i64::from_be_bytes(b.get(34..42)?.try_into().ok()?),
        })
    }
}

/// Something the follower noticed, for the log and the counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// The path names another file than the one being read (renamed away or removed): the old
    /// one is read on until it is quiet and the new one has data.
    RotationSeen,
    /// The old file was drained; the new one is read from its start.
    Rotated,
    /// Same file, but shorter than what was read (or another first line): truncated in place.
    Truncated { size: u64, offset: u64 },
    /// The file read before is no longer at the path, nor found beside it: it was replaced
    /// while the daemon was down (or its inode reused); the path is read from its start.
    Replaced,
    /// The file read before was found beside the path (rotated while the daemon was down): its
    /// rest is read first.
    FoundRotated { path: PathBuf },
    /// Lines read from a copy beside the path that the followed file no longer holds.
    ReadFromCopy { path: PathBuf, bytes: u64 },
    /// A last line without its newline, left in a file no longer written, was not read.
    Unterminated { bytes: u64 },
}

/// What one poll found.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Complete lines, each with its newline.
    pub lines: Vec<u8>,
    /// These lines were read before (up to the stored position): they rebuild the mapping's
    /// state, their events are already stored.
    pub replay: bool,
    /// The position after these lines; `None` while there is no file.
    pub position: Option<Position>,
    pub notes: Vec<Note>,
    /// More can be read at once.
    pub more: bool,
    /// No file at the path (and none being drained).
    pub waiting: bool,
    /// Bytes written but not yet read (both files during a rotation).
    pub backlog: u64,
}

/// The file being read.
#[derive(Debug)]
struct Current {
    file: File,
    id: FileId,
    offset: u64,
    first_line: Option<u64>,
    /// Its length at the previous poll: unchanged twice means quiet.
    last_len: u64,
    /// The path names another file now.
    rotated: bool,
}

/// Follows one path.
#[derive(Debug)]
pub struct Tail {
    path: PathBuf,
    current: Option<Current>,
    /// The stored position, until the file is first opened.
    resume: Option<Position>,
    /// Lines up to here are replayed (see [`Chunk::replay`]).
    replay_to: u64,
}

impl Tail {
    #[must_use]
    pub fn new(path: PathBuf, resume: Option<Position>) -> Tail {
        Tail {
            path,
            current: None,
            resume,
            replay_to: 0,
        }
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Looks at the file once: opens it, drains a rotated one, notices truncation, and reads
    /// complete lines (at most [`MAX_CHUNK`] bytes).
    pub fn poll(&mut self) -> io::Result<Chunk> {
        let mut chunk = Chunk::default();
        let path_meta = match std::fs::metadata(&self.path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if self.current.is_none() {
            if path_meta.is_none() {
                chunk.waiting = true;
                return Ok(chunk);
            }
            self.open(&mut chunk)?;
            chunk.more = true;
            chunk.position = self.position();
            // Resuming: the position stays the stored one until the replay has reached it.
            chunk.replay = self.replay_to > 0;
            return Ok(chunk);
        }
        let Some(cur) = self.current.as_mut() else {
            return Ok(chunk);
        };
        let len = cur.file.metadata()?.len();
        let path_id = path_meta.as_ref().map(FileId::of);
        let replay = cur.offset < self.replay_to;
        let limit = if replay { self.replay_to } else { u64::MAX };
        chunk.replay = replay;
        if path_id != Some(cur.id) {
            if !cur.rotated {
                cur.rotated = true;
                chunk.notes.push(Note::RotationSeen);
            }
            let read = read_lines(cur, len, limit, &mut chunk.lines)?;
            let quiet = read == 0 && len == cur.last_len;
            cur.last_len = len;
            let new_len = path_meta.as_ref().map_or(0, Metadata::len);
            chunk.backlog = len.saturating_sub(cur.offset) + new_len;
            if quiet && new_len > 0 {
                if len > cur.offset {
                    chunk.notes.push(Note::Unterminated {
                        bytes: len - cur.offset,
                    });
                }
                chunk.notes.push(Note::Rotated);
                self.current = None;
                self.open(&mut chunk)?;
                chunk.more = true;
            } else {
                chunk.more = read > 0;
            }
            chunk.position = self.position();
            return Ok(chunk);
        }
        let regrown = len != cur.last_len
            && cur.first_line.is_some()
            && first_line(&cur.file)? != cur.first_line;
        if len < cur.offset || regrown {
            chunk.notes.push(Note::Truncated {
                size: len,
                offset: cur.offset,
            });
            let (offset, first) = (cur.offset, cur.first_line);
            read_from_copy(&self.path, cur.id, offset, first, &mut chunk)?;
            cur.offset = 0;
            cur.first_line = None;
            cur.last_len = 0;
            self.replay_to = 0;
            chunk.more = true;
            chunk.position = self.position();
            return Ok(chunk);
        }
        let read = read_lines(cur, len, limit, &mut chunk.lines)?;
        cur.last_len = len;
        chunk.backlog = len.saturating_sub(cur.offset);
        chunk.more = read > 0 && (replay || chunk.backlog > 0);
        chunk.position = self.position();
        Ok(chunk)
    }

    /// Where the file being read is now (without `last_epoch`, which the caller keeps).
    fn position(&self) -> Option<Position> {
        self.current.as_ref().map(|c| Position {
            file: c.id,
            offset: c.offset,
            first_line: c.first_line,
            last_epoch: 0,
        })
    }

    /// Opens the path, resuming from the stored position when it names this file, or the file
    /// it was rotated to.
    fn open(&mut self, chunk: &mut Chunk) -> io::Result<()> {
        let file = File::open(&self.path)?;
        // The metadata of what was opened: the path may have changed since it was looked at.
        let opened = file.metadata()?;
        let id = FileId::of(&opened);
        let mut cur = Current {
            first_line: first_line(&file)?,
            file,
            id,
            offset: 0,
            last_len: 0,
            rotated: false,
        };
        self.replay_to = 0;
        if let Some(stored) = self.resume.take() {
            if stored.file == id
                && (stored.first_line.is_none() || stored.first_line == cur.first_line)
            {
                if opened.len() >= stored.offset {
                    // The same file: replay what was read, then go on.
                    self.replay_to = stored.offset;
                } else {
                    chunk.notes.push(Note::Truncated {
                        size: opened.len(),
                        offset: stored.offset,
                    });
                    read_from_copy(&self.path, id, stored.offset, stored.first_line, chunk)?;
                }
            } else if let Some((found, file)) =
                find_beside(&self.path, |_, m| FileId::of(m) == stored.file)
                    .and_then(|p| File::open(&p).ok().map(|f| (p, f)))
                    .filter(|(_, f)| {
                        stored.first_line.is_none()
                            || first_line(f).ok().flatten() == stored.first_line
                    })
            {
                // Rotated while the daemon was down: finish that file first.
                chunk.notes.push(Note::FoundRotated { path: found });
                cur = Current {
                    first_line: first_line(&file)?,
                    last_len: file.metadata()?.len(),
                    file,
                    id: stored.file,
                    offset: 0,
                    rotated: true,
                };
                self.replay_to = stored.offset;
            } else {
                // A copy beside (copytruncate while the daemon was down) may hold the rest.
                chunk.notes.push(Note::Replaced);
                read_from_copy(&self.path, id, stored.offset, stored.first_line, chunk)?;
            }
        }
        self.current = Some(cur);
        Ok(())
    }
}

/// Reads complete lines of `cur` from its offset, up to `len` and `limit`, at most
/// [`MAX_CHUNK`] bytes, into `out`; moves the offset past them. Returns the bytes read.
fn read_lines(cur: &mut Current, len: u64, limit: u64, out: &mut Vec<u8>) -> io::Result<u64> {
    let end = len.min(limit);
    if end <= cur.offset {
        return Ok(0);
    }
    let want = usize::try_from(end - cur.offset)
        .unwrap_or(MAX_CHUNK)
        .min(MAX_CHUNK);
    let start = out.len();
    out.resize(start + want, 0);
    let got = read_at(&cur.file, cur.offset, &mut out[start..])?;
    out.truncate(start + got);
    let complete = match out[start..].iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        // A line longer than a whole chunk is handed out in pieces (the mapping skips them).
        None if got == MAX_CHUNK => got,
        None => 0,
    };
    out.truncate(start + complete);
    if cur.offset == 0 && complete > 0 && cur.first_line.is_none() {
        cur.first_line = first_line(&cur.file)?;
    }
    cur.offset += complete as u64;
    Ok(complete as u64)
}

/// Reads into `buf` from `offset` until it is full or the file ends; returns the bytes read.
fn read_at(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The fingerprint of the file's first complete line, if it has one within
/// [`FIRST_LINE_BYTES`].
fn first_line(file: &File) -> io::Result<Option<u64>> {
    let mut buf = [0u8; FIRST_LINE_BYTES];
    let n = read_at(file, 0, &mut buf)?;
    Ok(buf[..n]
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| fingerprint(&buf[..=i])))
}

/// A file in the path's folder whose name starts with the path's (`queue_log.1`,
/// `queue_log-20261202`), other than the path, that `wanted` accepts.
fn find_beside(path: &Path, wanted: impl Fn(&Path, &Metadata) -> bool) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n != name && n.starts_with(name))
        })
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file() && wanted(p, &m)))
        .collect();
    // The shortest name first: `queue_log.1` before `queue_log.1.gz` or `queue_log.10`.
    found.sort_by_key(|p| (p.as_os_str().len(), p.clone()));
    found.into_iter().next()
}

/// After a truncation or a replacement: the lines from `offset` that a copy beside the path
/// (same first line, another file than `id`, at least `offset` long) still holds, such as the
/// copy `copytruncate` made just before truncating.
fn read_from_copy(
    path: &Path,
    id: FileId,
    offset: u64,
    first: Option<u64>,
    chunk: &mut Chunk,
) -> io::Result<()> {
    let Some(first) = first else {
        return Ok(());
    };
    let copy = find_beside(path, |p, m| {
        FileId::of(m) != id
            && m.len() > offset
            && File::open(p).is_ok_and(|f| first_line(&f).ok().flatten() == Some(first))
    });
    let Some(copy) = copy else {
        return Ok(());
    };
    let file = File::open(&copy)?;
    let len = file.metadata()?.len();
    let mut cur = Current {
        file,
        id,
        offset,
        first_line: Some(first),
        last_len: len,
        rotated: true,
    };
    let before = chunk.lines.len();
    // All of it, whatever its size: these lines exist nowhere else.
    while read_lines(&mut cur, len, u64::MAX, &mut chunk.lines)? > 0 {}
    let bytes = (chunk.lines.len() - before) as u64;
    if bytes > 0 {
        chunk.notes.push(Note::ReadFromCopy { path: copy, bytes });
    }
    Ok(())
}

/// What a source does now, as `status` shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceState {
    /// Reading the file as it grows.
    Following,
    /// No file at the path yet.
    #[default]
    WaitingForFile,
    /// The last attempt failed (reading the file, or storing its events); retried.
    Error,
    /// An event-socket source before its first connection is made.
    Connecting,
    /// An event-socket source connected, authenticated and subscribed.
    Connected,
    /// An event-socket source without a connection (the last error says why); it reconnects
    /// after a backoff.
    Disconnected,
}

/// One source as `status` (and `/metrics`) shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceStatus {
    pub name: String,
    pub kind: String,
    pub path: String,
    pub state: SourceState,
    /// The file being read (device and inode) and the bytes of it read and stored.
    pub device: u64,
    pub inode: u64,
    pub position: u64,
    /// Bytes written to the file (and a rotated one being drained) not yet read.
    pub backlog_bytes: u64,
    /// Lines read since the daemon started (lines replayed after a restart not counted).
    pub lines_read: u64,
    /// Events the lines mapped to, then how many were stored and refused (by reason).
    pub events_mapped: u64,
    pub events_stored: u64,
    pub events_refused: std::collections::BTreeMap<String, u64>,
    /// Lines that gave no event, by reason, then verb (`-` when the line has none).
    pub skipped: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>,
    pub rotations: u64,
    pub truncations: u64,
    /// Files replaced while the daemon was down (or their inode reused).
    pub replaced: u64,
    /// Epoch ms of the last line read.
    pub last_line_ms: Option<i64>,
    /// Now minus the last line's time, seconds (set when `status` is asked).
    pub lag_seconds: Option<f64>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    /// Event-socket sources: connections made after the first one.
    #[serde(default)]
    pub reconnects: u64,
    /// Since when the current connection is up (epoch ms); none while disconnected.
    #[serde(default)]
    pub connected_since_ms: Option<i64>,
    /// When the next connection attempt is due (epoch ms), while disconnected.
    #[serde(default)]
    pub next_attempt_ms: Option<i64>,
    /// Segments of this source open when its connection was lost (or the daemon stopped): the
    /// event socket does not replay what happened meanwhile. Each is then either continued (an
    /// event of it came after the reconnect), expired by the engine after `max_call_duration`,
    /// or still awaited.
    #[serde(default)]
    pub open_at_disconnect: u64,
    #[serde(default)]
    pub continued_after_reconnect: u64,
    #[serde(default)]
    pub expired_after_disconnect: u64,
    #[serde(default)]
    pub awaiting_after_disconnect: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    /// Polls until nothing more is read at once; the lines read (replayed ones apart).
    fn drain(t: &mut Tail) -> (String, Vec<Note>) {
        let (mut text, mut notes) = (String::new(), Vec::new());
        for _ in 0..100 {
            let c = t.poll().unwrap();
            if !c.replay {
                text.push_str(std::str::from_utf8(&c.lines).unwrap());
            }
            notes.extend(c.notes);
            if !c.more {
                break;
            }
        }
        (text, notes)
    }

    #[test]
    fn positions_round_trip() {
        let p = Position {
            file: FileId {
                dev: 7,
                ino: 1 << 40,
            },
            offset: 12_345,
            first_line: Some(u64::MAX),
            last_epoch: 1_796_119_200,
        };
        assert_eq!(Position::decode(&p.encode()), Some(p));
        let none = Position {
            first_line: None,
            ..p
        };
        assert_eq!(Position::decode(&none.encode()), Some(none));
        assert_eq!(Position::decode(&[2; 42]), None);
    }

    #[test]
    fn only_complete_lines_then_rotation_drains_the_old_file_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue_log");
        let mut t = Tail::new(path.clone(), None);
        assert!(t.poll().unwrap().waiting);
        append(&path, "a\nb");
        assert_eq!(drain(&mut t).0, "a\n");
        append(&path, "\nc\n");
        assert_eq!(drain(&mut t).0, "b\nc\n");
        std::fs::rename(&path, dir.path().join("queue_log.1")).unwrap();
        append(&path, "new1\n");
        append(&dir.path().join("queue_log.1"), "d\n");
        let (text, notes) = drain(&mut t);
        assert_eq!(text, "d\nnew1\n");
        assert_eq!(notes, [Note::RotationSeen, Note::Rotated]);
    }

    #[test]
    fn copytruncate_reads_the_rest_from_the_copy_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue_log");
        append(&path, "1 first\n2\n");
        let mut t = Tail::new(path.clone(), None);
        assert_eq!(drain(&mut t).0, "1 first\n2\n");
        append(&path, "3\n");
        std::fs::copy(&path, dir.path().join("queue_log.1")).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&path, "4 second file\n5\n");
        let (text, notes) = drain(&mut t);
        assert_eq!(text, "3\n4 second file\n5\n");
        assert!(
            notes.contains(&Note::Truncated {
                size: 16,
                offset: 10
            }),
            "{notes:?}"
        );
    }

    #[test]
    fn a_restart_replays_up_to_the_position_and_finds_a_rotated_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue_log");
        append(&path, "1\n2\n");
        let mut t = Tail::new(path.clone(), None);
        let c = t.poll().unwrap();
        let c2 = t.poll().unwrap();
        assert!(c.lines.is_empty() && c2.lines == b"1\n2\n");
        let pos = c2.position.unwrap();
        append(&path, "3\n");
        // Same file: lines up to the position come back as replay, then the rest.
        let mut again = Tail::new(path.clone(), Some(pos));
        let mut replayed = Vec::new();
        let mut fresh = Vec::new();
        for _ in 0..5 {
            let c = again.poll().unwrap();
            if c.replay {
                replayed.extend(c.lines);
            } else {
                fresh.extend(c.lines);
            }
        }
        assert_eq!(
            (replayed.as_slice(), fresh.as_slice()),
            (&b"1\n2\n"[..], &b"3\n"[..])
        );
        // Rotated while down: the old file's rest first, then the new file.
        std::fs::rename(&path, dir.path().join("queue_log.1")).unwrap();
        append(&path, "n1\n");
        let mut moved = Tail::new(path.clone(), Some(pos));
        let (text, notes) = drain(&mut moved);
        assert!(
            matches!(notes.first(), Some(Note::FoundRotated { .. })),
            "{notes:?}"
        );
        let (text2, _) = drain(&mut moved);
        assert_eq!(format!("{text}{text2}"), "3\nn1\n");
        // Gone altogether: said, and the new file is read from its start.
        std::fs::remove_file(dir.path().join("queue_log.1")).unwrap();
        let mut lost = Tail::new(path.clone(), Some(pos));
        let (text, notes) = drain(&mut lost);
        assert_eq!(text, "n1\n");
        assert_eq!(notes, [Note::Replaced]);
    }
}
