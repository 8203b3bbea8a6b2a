//! Offline check of a data directory (`auditlog verify`): every checksum of every file the
//! store relies on, read only, with every damaged file named rather than stopping at the first.
//!
//! It takes the directory's lock, so it runs only while no server has the directory open, and
//! it changes nothing: a torn WAL tail, which the next open would cut, is reported as such (what
//! a crash leaves), not repaired. Damage is a segment whose chunk fails its checksum, a segment
//! the manifest lists but the directory lacks, or WAL damage that recovery would refuse.
//!
//! ```
//! use auditlog_engine::store::{Store, StoreOptions};
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(StoreOptions::new(dir.path())).unwrap();
//! store.close();
//! drop(store);
//! let report = auditlog_engine::verify::verify_dir(dir.path()).unwrap();
//! assert!(report.damage.is_empty());
//! ```

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::segment::Segment;
use crate::wal::reader::{scan, End};

/// What [`verify_dir`] found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Segments the manifest lists, and their rows, whose every chunk checked out.
    pub segments_ok: usize,
    pub rows_ok: u64,
    /// WAL files read whole, and the events they hold.
    pub wal_files: usize,
    pub wal_events: u64,
    /// A torn WAL tail (file, offset): what a crash leaves; the next open cuts it.
    pub torn: Option<(PathBuf, u64)>,
    /// Every damaged or missing file, each with its error (naming file and offset).
    pub damage: Vec<Error>,
}

/// Checks the data directory `dir` (see the module docs). Fails only when it cannot check at
/// all: not a data directory, locked by a running server, or its manifest unreadable.
pub fn verify_dir(dir: &Path) -> Result<VerifyReport> {
    // Nothing is created in a directory that is not a store's (the lock would be).
    if !dir.join("LOCK").exists() {
        return Err(Error::Config(format!(
            "{} is not a data directory (it has no LOCK file)",
            dir.display()
        )));
    }
    let _lock = crate::store::open::lock_directory(dir)?;
    let mut report = VerifyReport::default();
    let manifest = Manifest::load(dir)?.unwrap_or_default();
    for entry in &manifest.segments {
        let path = Manifest::partition_dir(dir, &entry.partition).join(entry.file_name());
        if !path.exists() {
            report.damage.push(Error::Corrupt {
                path,
                offset: 0,
                reason: "segment listed in the manifest is missing".into(),
            });
            continue;
        }
        match Segment::open(&path).and_then(|segment| segment.verify()) {
            Ok(()) => {
                report.segments_ok += 1;
                report.rows_ok += entry.rows;
            }
            Err(error) => report.damage.push(error),
        }
    }
    let files = crate::wal::recovery::list_files(&dir.join("wal"))?;
    let count = files.len();
    for (index, (_, path)) in files.into_iter().enumerate() {
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) => {
                report.damage.push(Error::io(&path, error));
                continue;
            }
        };
        match scan(&path, &bytes) {
            Ok(scanned) => {
                report.wal_files += 1;
                report.wal_events += scanned.batches.iter().map(|b| b.len() as u64).sum::<u64>();
                if let End::Torn { offset } = scanned.end {
                    if index + 1 == count {
                        report.torn = Some((path, offset));
                    } else {
                        report
                            .damage
                            .push(crate::wal::recovery::torn_before_the_newest(path, offset));
                    }
                }
            }
            Err(error) => report.damage.push(error),
        }
    }
    Ok(report)
}
