//! Free space on the store's file system, and the clean-up of what a start cut short by a full
//! disk leaves behind.

use std::path::{Path, PathBuf};

use super::StoreError;

/// sled's log segment size (its default); a write may need a fresh one.
pub const SEGMENT_BYTES: u64 = 512 * 1024;
/// Free space needed to open the store: sled pads its last segment and writes a snapshot at open.
pub const OPEN_RESERVE: u64 = 2 * SEGMENT_BYTES + (1 << 20);

/// Bytes free for this user on the file system holding `path` (or its nearest existing parent).
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let mut p = path;
    while !p.exists() {
        match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => p = parent,
            _ => {
                p = Path::new(".");
                break;
            }
        }
    }
    let st = rustix::fs::statvfs(p)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Refuses when fewer than `reserve` bytes are free. A file system that cannot say passes.
pub fn check_free(path: &Path, reserve: u64) -> Result<(), StoreError> {
    match free_bytes(path) {
        Ok(free) if free < reserve => Err(StoreError::DiskFull {
            path: path.to_owned(),
            free,
            reserve,
        }),
        _ => Ok(()),
    }
}

/// Removes snapshot files sled left half-written (`snap.*.generating`): sled picks the newest
/// snapshot name at open, and an empty one from a start cut short by a full disk would make every
/// later open fail with "Read corrupted data" although the data itself is intact.
pub fn remove_unfinished_snapshots(path: &Path) {
    let Ok(dir) = std::fs::read_dir(path) else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => tracing::warn!(
                    "removed {} left by a start that ran out of disk space",
                    entry.path().display()
                ),
                Err(e) => tracing::warn!("cannot remove {}: {e}", entry.path().display()),
            }
        }
    }
}

/// The folder a compaction writes the new store into, and the one the old store is moved to.
pub fn compaction_paths(path: &Path) -> (PathBuf, PathBuf) {
    let name = path
        .file_name()
        .map_or_else(|| "store".into(), |n| n.to_string_lossy().into_owned());
    (
        path.with_file_name(format!("{name}.compacting")),
        path.with_file_name(format!("{name}.old")),
    )
}

/// Completes or undoes a compaction a crash interrupted. The new store is complete (written,
/// flushed and synced) before the old one is moved aside, so: if the store is missing, the new
/// one takes its place; a new one next to an intact store was cut short and goes; an old one
/// left aside goes.
pub fn finish_interrupted_compaction(path: &Path) {
    let (fresh, old) = compaction_paths(path);
    if !path.exists() && fresh.exists() {
        match std::fs::rename(&fresh, path) {
            Ok(()) => tracing::warn!(
                "completed a compaction of {} that a stop interrupted",
                path.display()
            ),
            Err(e) => tracing::error!(
                "cannot complete an interrupted compaction of {}: {e}",
                path.display()
            ),
        }
    }
    for leftover in [fresh, old] {
        if leftover.exists() {
            if let Err(e) = std::fs::remove_dir_all(&leftover) {
                tracing::warn!("cannot remove {}: {e}", leftover.display());
            }
        }
    }
}

/// Makes every file of `dir` and the folder itself durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            sync_dir(&path)?;
        } else {
            std::fs::File::open(&path)?.sync_all()?;
        }
    }
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_read_for_missing_folders_too() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(&dir.path().join("not/yet/there")).unwrap();
        assert!(free > 0);
        assert!(matches!(
            check_free(dir.path(), u64::MAX),
            Err(StoreError::DiskFull { .. })
        ));
        assert!(check_free(dir.path(), 0).is_ok());
    }

    #[test]
    fn half_written_snapshots_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("snap.0000000000001234.generating"), b"").unwrap();
        std::fs::write(dir.path().join("snap.0000000000001000"), b"x").unwrap();
        remove_unfinished_snapshots(dir.path());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["snap.0000000000001000".to_string()]);
    }
}
