//! The offline check of a data directory (`auditlog verify`): clean, damaged, in use.

use std::path::{Path, PathBuf};

mod common;

use auditlog_engine::store::{Store, StoreOptions};
use auditlog_engine::verify::verify_dir;
use auditlog_engine::Error;
use common::batch;

fn options(dir: &Path) -> StoreOptions {
    let mut options = StoreOptions::new(dir);
    options.background = false;
    options
}

/// A closed store with one sealed segment of 500 events and 20 events in the WAL.
fn closed_store(dir: &Path) -> PathBuf {
    let store = Store::open(options(dir)).unwrap();
    store.append(batch(0, 500)).unwrap();
    store.seal().unwrap();
    store.append(batch(500, 20)).unwrap();
    store.close();
    drop(store);
    let mut segments = Vec::new();
    let mut stack = vec![dir.join("segments")];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "seg") {
                segments.push(path);
            }
        }
    }
    assert_eq!(segments.len(), 1);
    segments.pop().unwrap()
}

#[test]
fn verify_reads_a_clean_store_and_names_a_damaged_segment() {
    let dir = tempfile::tempdir().unwrap();
    let segment = closed_store(dir.path());
    let report = verify_dir(dir.path()).unwrap();
    assert!(report.damage.is_empty(), "{:?}", report.damage);
    assert_eq!((report.segments_ok, report.rows_ok), (1, 500));
    assert!(report.wal_events >= 20, "{report:?}");
    assert_eq!(report.torn, None);

    // A flipped bit in the middle of the segment (inside a column chunk).
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 3;
    bytes[middle] ^= 0x10;
    std::fs::write(&segment, &bytes).unwrap();
    let report = verify_dir(dir.path()).unwrap();
    assert_eq!(report.segments_ok, 0);
    assert_eq!(report.damage.len(), 1, "{:?}", report.damage);
    let text = report.damage[0].to_string();
    assert!(text.contains(&segment.display().to_string()), "{text}");
    // Nothing was changed: the same damage is found again.
    assert_eq!(std::fs::read(&segment).unwrap(), bytes);
}

#[test]
fn verify_reports_a_missing_segment_and_a_torn_wal_tail_without_repairing() {
    let dir = tempfile::tempdir().unwrap();
    let segment = closed_store(dir.path());
    std::fs::remove_file(&segment).unwrap();
    // A crash in the middle of a write: a partial record at the end of the newest WAL file.
    let wal = auditlog_engine::wal::recovery::list_files(&dir.path().join("wal"))
        .unwrap()
        .pop()
        .unwrap()
        .1;
    let mut bytes = std::fs::read(&wal).unwrap();
    let whole = bytes.len() as u64;
    bytes.extend_from_slice(&[7, 0, 0, 0, 1, 2]);
    std::fs::write(&wal, &bytes).unwrap();
    let report = verify_dir(dir.path()).unwrap();
    assert_eq!(report.damage.len(), 1, "{:?}", report.damage);
    assert!(
        report.damage[0].to_string().contains("missing"),
        "{}",
        report.damage[0]
    );
    assert_eq!(report.torn, Some((wal.clone(), whole)));
    assert_eq!(std::fs::read(&wal).unwrap().len() as u64, whole + 6);
}

#[test]
fn verify_refuses_a_directory_that_is_not_a_store_and_creates_nothing_there() {
    let dir = tempfile::tempdir().unwrap();
    let error = verify_dir(dir.path()).unwrap_err();
    assert!(
        error.to_string().contains("not a data directory"),
        "{error}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn verify_refuses_a_directory_a_store_has_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(options(dir.path())).unwrap();
    let error = verify_dir(dir.path()).unwrap_err();
    assert!(matches!(error, Error::Locked { .. }), "{error}");
    drop(store);
}
