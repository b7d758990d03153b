//! Why a store operation failed, and which failures leave sled unable to write.

use std::path::PathBuf;

use thiserror::Error;

use super::SCHEMA_VERSION;

/// Why a store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot open the store at {path}: {source} (check that the folder exists, is writable by this user, and no other callmetrics uses it)")]
    Open { path: PathBuf, source: sled::Error },
    #[error("store I/O error: {0}")]
    Io(#[from] sled::Error),
    #[error(
        "the store at {path} has schema version {found}, this build reads version {SCHEMA_VERSION}"
    )]
    Schema { path: PathBuf, found: u32 },
    #[error("the store holds a damaged record: {0}")]
    Corrupt(String),
    #[error("store full: {size} bytes on disk reached store.max_bytes = {max}")]
    Full { size: u64, max: u64 },
    #[error("disk full: {free} bytes free on the file system of {path}, {reserve} needed in reserve; free some space")]
    DiskFull {
        path: PathBuf,
        free: u64,
        reserve: u64,
    },
    #[error("the store failed a write earlier ({0}) and takes no more; restart the daemon once the cause is fixed")]
    Failed(String),
}

impl StoreError {
    /// The store's database is not open: reopening it after a compaction or a refresh failed.
    pub(super) fn closed() -> StoreError {
        StoreError::Failed("the store could not be reopened after a compaction".into())
    }

    /// Whether this error leaves sled unable to write until it is reopened.
    pub(super) fn poisons(&self) -> bool {
        matches!(self, StoreError::Io(_))
    }
}
