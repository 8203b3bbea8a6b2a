//! The engine's error type. Messages are lowercase, name the object, and end without a period.

use std::path::PathBuf;

use crate::event::ValidationError;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O call failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The disk is full: new writes are refused, nothing acknowledged is lost.
    #[error("disk full while writing {path}: new writes are refused until space is freed and the store reopened")]
    DiskFull { path: PathBuf },
    /// Stored bytes do not match their checksum.
    #[error("checksum mismatch in {path} at offset {offset}: expected {expected:#010x}, found {found:#010x}")]
    ChecksumMismatch {
        path: PathBuf,
        offset: u64,
        expected: u32,
        found: u32,
    },
    /// Stored bytes are structurally wrong (bad length, bad code, truncated file).
    #[error("corrupt file {path} at offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// A file does not start with the expected magic.
    #[error("{path} is not a {kind} file (bad magic)")]
    BadMagic { path: PathBuf, kind: &'static str },
    /// A file was written by a format version this build cannot read.
    #[error(
        "{path} has {kind} format version {found}, this build reads versions up to {supported}"
    )]
    UnsupportedVersion {
        path: PathBuf,
        kind: &'static str,
        found: u32,
        supported: u32,
    },
    /// An earlier write or fsync failed; the writer refuses everything until the store is reopened.
    #[error("the write-ahead log is poisoned by an earlier failure ({cause}); reopen the store to recover")]
    Poisoned { cause: String },
    /// Sealing has fallen behind and the tail is at its memory bound (backpressure); with
    /// `seal_failure`, because seals fail (a full disk, say), not because they are slow.
    #[error(
        "store busy: {unsealed_events} events ({unsealed_bytes} bytes) wait to be sealed, limit {limit_bytes} bytes; {}",
        match seal_failure { Some(cause) => format!("sealing fails: {cause}"), None => "retry later".to_string() }
    )]
    Busy {
        unsealed_events: u64,
        unsealed_bytes: u64,
        limit_bytes: u64,
        seal_failure: Option<String>,
    },
    /// A batch exceeds a configured limit.
    #[error("batch too large: {what} is {found}, limit {limit}")]
    BatchTooLarge {
        what: &'static str,
        found: u64,
        limit: u64,
    },
    /// An event failed validation; nothing of its batch was stored.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
    /// Another process holds the data directory.
    #[error("data directory {path} is locked by another process")]
    Locked { path: PathBuf },
    /// A configuration value is wrong.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    /// Wraps an I/O error with the path it concerns, telling a full disk apart.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.raw_os_error() == Some(libc::ENOSPC)
            || source.kind() == std::io::ErrorKind::StorageFull
        {
            Error::DiskFull { path }
        } else {
            Error::Io { path, source }
        }
    }

    /// True for errors that mean stored data is damaged (as opposed to an environment failure).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Error::ChecksumMismatch { .. }
                | Error::Corrupt { .. }
                | Error::BadMagic { .. }
                | Error::UnsupportedVersion { .. }
        )
    }
}
