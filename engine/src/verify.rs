//! Offline check of a data directory (`auditlog verify`): every checksum of every file the
//! store relies on, read only, with every damaged file named rather than stopping at the first.
//!
//! It takes the directory's lock, so it runs only while no server has the directory open, and
//! it changes nothing: a torn WAL tail, which the next open would cut, is reported as such (what
//! a crash leaves), not repaired. Damage is a segment whose chunk fails its checksum, a segment
//! the manifest lists but the directory lacks, WAL damage that recovery would refuse, and
//! anything the integrity ledger ([`crate::ledger`]) disproves: a broken hash chain, a segment
//! file whose SHA-256 is not the one recorded when it was written, segments added or removed
//! outside the store, or a history that no longer leads to a head recorded earlier
//! ([`verify_dir_expecting`]).
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
    /// The integrity ledger's entry count and head, when it could be read (`None`: a store
    /// from before the ledger, which its next open creates).
    pub ledger: Option<(u64, crate::ledger::Hash)>,
    /// Segment files whose SHA-256 matched the ledger's record.
    pub digests_ok: usize,
    /// Segments the manifest lists that retention already moved to the archive (given with
    /// [`VerifyOptions::archive_dir`]): a crash between the move and the manifest write leaves
    /// that, and the next open finishes it. Each archived file was checked against the
    /// ledger's SHA-256 (its length, without a ledger).
    pub archive_pending: Vec<PathBuf>,
}

/// What [`verify_dir_with`] checks besides the directory itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyOptions<'a> {
    /// Heads recorded earlier that the ledger's history must pass through.
    pub expected: &'a [ExpectedHead],
    /// The store's archive directory, where a segment missing from its partition may be.
    pub archive_dir: Option<&'a Path>,
}

/// A head recorded earlier: the ledger held `entries` entries and its head was `head`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedHead {
    pub entries: u64,
    pub head: crate::ledger::Hash,
}

/// Checks the data directory `dir` (see the module docs). Fails only when it cannot check at
/// all: not a data directory, locked by a running server, or its manifest unreadable.
pub fn verify_dir(dir: &Path) -> Result<VerifyReport> {
    verify_dir_expecting(dir, &[])
}

/// [`verify_dir`], also checking that the ledger's history still passes through each of
/// `expected` (heads an operator recorded earlier, e.g. from `GET /v1/admin/integrity`).
pub fn verify_dir_expecting(dir: &Path, expected: &[ExpectedHead]) -> Result<VerifyReport> {
    verify_dir_with(
        dir,
        &VerifyOptions {
            expected,
            archive_dir: None,
        },
    )
}

/// [`verify_dir`] with [`VerifyOptions`].
pub fn verify_dir_with(dir: &Path, options: &VerifyOptions<'_>) -> Result<VerifyReport> {
    let expected = options.expected;
    // Nothing is created in a directory that is not a store's (the lock would be).
    if !dir.join("LOCK").exists() {
        return Err(Error::Config(format!(
            "{} is not a data directory (it has no LOCK file)",
            dir.display()
        )));
    }
    let _lock = crate::store::open::lock_directory(dir)?;
    let mut report = VerifyReport::default();
    let loaded = Manifest::load(dir)?;
    if loaded.is_none() {
        crate::store::open::check_store_without_manifest(dir)?;
    }
    let manifest = loaded.unwrap_or_default();
    // Segments already reported (missing or failing a checksum) are not hashed again.
    let mut damaged = std::collections::BTreeSet::new();
    // The ledger's records, to tell an archived segment from a stand-in (read again, with
    // every check, below).
    let recorded = crate::ledger::Ledger::read(&dir.join(crate::ledger::FILE_NAME))
        .map(|contents| contents.live)
        .unwrap_or_default();
    for entry in &manifest.segments {
        let path = Manifest::partition_dir(dir, &entry.partition).join(entry.file_name());
        let archived = options.archive_dir.map(|archive| {
            archive
                .join(entry.partition.relative_dir())
                .join(entry.file_name())
        });
        let in_archive =
            archived
                .as_deref()
                .is_some_and(|archived| match recorded.get(&entry.segment_id) {
                    Some(digest) => crate::ledger::file_sha256(archived)
                        .is_ok_and(|found| found == digest.sha256),
                    None => std::fs::metadata(archived).is_ok_and(|m| m.len() == entry.bytes),
                });
        if !path.exists() && in_archive {
            report.archive_pending.push(path);
            damaged.insert(entry.segment_id);
            continue;
        }
        if !path.exists() {
            report.damage.push(Error::Corrupt {
                path,
                offset: 0,
                reason: "segment listed in the manifest is missing".into(),
            });
            damaged.insert(entry.segment_id);
            continue;
        }
        match Segment::open(&path).and_then(|segment| segment.verify()) {
            Ok(()) => {
                report.segments_ok += 1;
                report.rows_ok += entry.rows;
            }
            Err(error) => {
                report.damage.push(error);
                damaged.insert(entry.segment_id);
            }
        }
    }
    check_ledger(dir, &manifest, &damaged, expected, &mut report);
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

/// The integrity ledger against the manifest and the segment files (see the module docs).
fn check_ledger(
    dir: &Path,
    manifest: &Manifest,
    damaged: &std::collections::BTreeSet<u64>,
    expected: &[ExpectedHead],
    report: &mut VerifyReport,
) {
    use crate::ledger::{file_sha256, hex, Ledger, FILE_NAME};
    let path = dir.join(FILE_NAME);
    if !path.exists() {
        if !expected.is_empty() {
            report.damage.push(Error::Corrupt {
                path,
                offset: 0,
                reason: "the integrity ledger is missing, and heads were expected".into(),
            });
        }
        return;
    }
    let contents = match Ledger::read(&path) {
        Ok(contents) => contents,
        Err(error) => {
            report.damage.push(error);
            return;
        }
    };
    report.ledger = Some((contents.changes.len() as u64, contents.head));
    let corrupt = |reason: String| Error::Corrupt {
        path: path.clone(),
        offset: 0,
        reason,
    };
    for head in expected {
        let index = head.entries.checked_sub(1);
        let found = match index {
            None => Some([0u8; 32]),
            Some(index) => contents.hashes.get(index as usize).copied(),
        };
        if found != Some(head.head) {
            report.damage.push(corrupt(format!(
                "the ledger's history does not pass through the head {} recorded at {} entries \
                 (it has {} entries{}): the history was rewritten",
                hex(&head.head),
                head.entries,
                contents.changes.len(),
                found.map_or(String::new(), |f| format!(
                    ", whose head there is {}",
                    hex(&f)
                ))
            )));
        }
    }
    // A last entry the manifest does not show yet is what a crash between the two writes
    // leaves (the next open cuts it); any other difference was made outside the store.
    let before_last = contents.live_before_last();
    let live = if crate::ledger::live_matches(&contents.live, &manifest.segments) {
        &contents.live
    } else if !contents.changes.is_empty()
        && crate::ledger::live_matches(&before_last, &manifest.segments)
        && contents.last_may_be_unpublished(manifest.sealed_through)
    {
        // A head recorded from the running store (`GET /v1/admin/integrity`) counts only
        // published entries: one that counts the last entry proves the manifest showed it.
        let entries = contents.changes.len() as u64;
        if expected.iter().any(|head| head.entries >= entries) {
            report.damage.push(corrupt(format!(
                "the manifest does not show the ledger's last entry ({entries}), which a head \
                 recorded earlier counts as published: the manifest was changed outside the store"
            )));
        }
        &before_last
    } else {
        let listed: std::collections::BTreeSet<u64> =
            manifest.segments.iter().map(|e| e.segment_id).collect();
        let recorded: std::collections::BTreeSet<u64> = contents.live.keys().copied().collect();
        let extra: Vec<u64> = listed.difference(&recorded).copied().collect();
        let missing: Vec<u64> = recorded.difference(&listed).copied().collect();
        let edited: Vec<u64> = manifest
            .segments
            .iter()
            .filter(|e| {
                contents
                    .live
                    .get(&e.segment_id)
                    .is_some_and(|d| !d.describes(e))
            })
            .map(|e| e.segment_id)
            .collect();
        report.damage.push(corrupt(format!(
            "the manifest and the integrity ledger disagree: segments {extra:?} are listed but \
             were never recorded, segments {missing:?} were recorded but are not listed, \
             segments {edited:?} are listed otherwise than recorded (rows, time range, \
             partition)"
        )));
        &contents.live
    };
    for entry in &manifest.segments {
        let Some(recorded) = live.get(&entry.segment_id) else {
            continue;
        };
        if damaged.contains(&entry.segment_id) {
            continue;
        }
        let file = Manifest::partition_dir(dir, &entry.partition).join(entry.file_name());
        match file_sha256(&file) {
            Ok(found) if found == recorded.sha256 => report.digests_ok += 1,
            Ok(found) => report.damage.push(Error::Corrupt {
                path: file,
                offset: 0,
                reason: format!(
                    "the file's SHA-256 is {}, the integrity ledger recorded {} when the segment \
                     was written: the file was changed",
                    hex(&found),
                    hex(&recorded.sha256)
                ),
            }),
            Err(error) => report.damage.push(error),
        }
    }
}
