//! Tamper evidence: the integrity ledger catches what checksums cannot (a segment rewritten
//! with valid checksums, segments slipped into or out of the manifest, a rewritten history),
//! keeps up with the store through crashes between its writes and the manifest's, and adopts
//! the segments of a store from before it. The ledger file format is pinned by a golden file.

mod common;

use std::path::{Path, PathBuf};

use auditlog_engine::ledger::{self, Change, Ledger, Reason, SegmentDigest};
use auditlog_engine::manifest::Manifest;
use auditlog_engine::partition::PartitionKey;
use auditlog_engine::segment::{encode_segment, EncodeOptions};
use auditlog_engine::store::{Store, StoreOptions};
use auditlog_engine::verify::{verify_dir, verify_dir_expecting, ExpectedHead};
use auditlog_engine::Error;
use common::batch;

fn options(dir: &Path) -> StoreOptions {
    let mut options = StoreOptions::new(dir);
    options.background = false;
    options
}

/// A closed store with two sealed segments (one per seal).
fn store_with_two_segments(dir: &Path) -> (ExpectedHead, ExpectedHead) {
    let store = Store::open(options(dir)).unwrap();
    store.append(batch(0, 5)).unwrap();
    store.seal().unwrap();
    let first = store.integrity();
    store.append(batch(5, 5)).unwrap();
    store.seal().unwrap();
    let second = store.integrity();
    assert_eq!((first.entries, second.entries), (1, 2));
    assert_eq!(second.segments, 2);
    store.close();
    let head = |i: auditlog_engine::store::Integrity| ExpectedHead {
        entries: i.entries,
        head: i.head,
    };
    (head(first), head(second))
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let manifest = Manifest::load(dir).unwrap().unwrap();
    manifest
        .segments
        .iter()
        .map(|e| Manifest::partition_dir(dir, &e.partition).join(e.file_name()))
        .collect()
}

/// Changes the manifest of a closed store behind its back, as someone with write access to the
/// data directory could; returns what `edit` returned.
fn edit_manifest<T>(dir: &Path, edit: impl FnOnce(&mut Manifest) -> T) -> T {
    let mut manifest = Manifest::load(dir).unwrap().unwrap();
    let edited = edit(&mut manifest);
    manifest.generation += 1;
    manifest.store(dir, &auditlog_engine::io::RealVfs).unwrap();
    edited
}

fn damage(report: &auditlog_engine::verify::VerifyReport) -> String {
    report
        .damage
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn integrity_a_clean_store_verifies_against_its_recorded_heads() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = store_with_two_segments(dir.path());
    let report = verify_dir_expecting(dir.path(), &[first, second]).unwrap();
    assert!(report.damage.is_empty(), "{}", damage(&report));
    assert_eq!(report.digests_ok, 2);
    assert_eq!(report.ledger, Some((2, second.head)));
}

#[test]
fn integrity_a_segment_rewritten_with_valid_checksums_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    store_with_two_segments(dir.path());
    let path = &segment_files(dir.path())[0];
    // Someone with write access re-encodes the segment with one event changed: every CRC is
    // valid, so the checksums alone see nothing.
    let segment = auditlog_engine::segment::Segment::open(path).unwrap();
    let mut rows = segment.read_all().unwrap();
    let id = segment.meta().segment_id;
    drop(segment);
    rows[0].event.action = "delete".into();
    let forged = encode_segment(id, &rows, &EncodeOptions::default()).unwrap();
    std::fs::write(path, &forged.bytes).unwrap();
    auditlog_engine::segment::Segment::open(path)
        .unwrap()
        .verify()
        .unwrap();

    let report = verify_dir(dir.path()).unwrap();
    let found = damage(&report);
    assert_eq!(report.damage.len(), 1, "{found}");
    assert!(
        found.contains(&path.display().to_string()) && found.contains("SHA-256"),
        "{found}"
    );
    assert_eq!(report.digests_ok, 1);
}

#[test]
fn integrity_a_segment_dropped_from_the_manifest_by_hand_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    store_with_two_segments(dir.path());
    let gone = edit_manifest(dir.path(), |manifest| manifest.segments.remove(0));

    let report = verify_dir(dir.path()).unwrap();
    let found = damage(&report);
    assert!(
        found.contains("disagree") && found.contains(&format!("[{}]", gone.segment_id)),
        "{found}"
    );
    let Err(error) = Store::open(options(dir.path())) else {
        panic!("a store whose manifest lost a segment behind its back opened");
    };
    assert!(matches!(error, Error::Corrupt { .. }), "{error}");
}

/// The newest seal's segment deleted and taken out of the manifest by hand (the manifest
/// still counting its events as sealed, so the WAL does not bring them back): it looks like
/// the ledger's last entry was never published, which a crash between the ledger's and the
/// manifest's writes leaves, but a crash leaves the manifest's `sealed_through` before the
/// segment's events. Caught by verify, with or without the recorded head, and by open.
#[test]
fn integrity_the_newest_seal_removed_by_hand_is_not_taken_for_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let (_, second) = store_with_two_segments(dir.path());
    let files = segment_files(dir.path());
    let gone = edit_manifest(dir.path(), |manifest| manifest.segments.remove(1));
    std::fs::remove_file(&files[1]).unwrap();
    assert!(Manifest::load(dir.path()).unwrap().unwrap().sealed_through >= gone.max_seq);

    let report = verify_dir(dir.path()).unwrap();
    assert!(damage(&report).contains("disagree"), "{}", damage(&report));
    let report = verify_dir_expecting(dir.path(), &[second]).unwrap();
    assert!(!report.damage.is_empty());
    let Err(error) = Store::open(options(dir.path())) else {
        panic!("a store whose newest seal was removed behind its back opened");
    };
    assert!(matches!(error, Error::Corrupt { .. }), "{error}");
}

/// A crash between the ledger's and the manifest's writes leaves the last entry unpublished,
/// which a head recorded from the running store never counts: a head that does proves the
/// manifest showed that entry, and was changed since.
#[test]
fn integrity_a_recorded_head_proves_the_last_entry_was_published() {
    let dir = tempfile::tempdir().unwrap();
    let (_, second) = store_with_two_segments(dir.path());
    // The second seal's manifest entry taken back, and its seqs with it (as before the seal).
    edit_manifest(dir.path(), |manifest| {
        let gone = manifest.segments.remove(1);
        manifest.sealed_through = gone.min_seq - 1;
    });
    // Without a head it looks like a crash (the WAL holds those events again at open)...
    assert!(verify_dir(dir.path()).unwrap().damage.is_empty());
    // ... but the head recorded after the second seal counts it as published.
    let report = verify_dir_expecting(dir.path(), &[second]).unwrap();
    assert!(
        damage(&report).contains("counts as published"),
        "{}",
        damage(&report)
    );
}

#[test]
fn integrity_a_manifest_entry_edited_by_hand_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    store_with_two_segments(dir.path());
    // Rows set to 0 would hide the segment's events from queries; the segment file is intact.
    edit_manifest(dir.path(), |manifest| manifest.segments[0].rows = 0);
    let report = verify_dir(dir.path()).unwrap();
    let found = damage(&report);
    assert!(found.contains("listed otherwise than recorded"), "{found}");
    let Err(error) = Store::open(options(dir.path())) else {
        panic!("a store whose manifest entry was edited behind its back opened");
    };
    assert!(
        error.to_string().contains("changed outside the store"),
        "{error}"
    );
}

/// Two seals in a row that fail at any fsync (the second perhaps after the first's manifest
/// reached the disk while its directory fsync failed), then one that succeeds: the store
/// reopens with every event once, and the ledger agrees with it.
#[test]
fn integrity_failed_seals_at_any_fsync_leave_a_store_that_reopens_whole() {
    use auditlog_engine::io::{Fault, FaultyVfs};
    for first in 1..=8u64 {
        for second in 1..=8u64 {
            let dir = tempfile::tempdir().unwrap();
            let vfs = FaultyVfs::new();
            let mut opts = options(dir.path());
            opts.vfs = std::sync::Arc::new(vfs.clone());
            let store = Store::open(opts.clone()).unwrap();
            let sent = batch(0, 9);
            store.append(sent[0..3].to_vec()).unwrap();
            store.seal().unwrap();
            store.append(sent[3..6].to_vec()).unwrap();
            vfs.fail_sync(first, Fault::Io);
            let _ = store.seal();
            vfs.heal();
            store
                .append(sent[6..9].to_vec())
                .unwrap_or_else(|e| panic!("{first}/{second}: {e}"));
            vfs.fail_sync(second, Fault::Io);
            let _ = store.seal();
            vfs.heal();
            // A WAL fsync may have been the one to fail: the writer is poisoned then, and only
            // a reopen tells what was acknowledged.
            let _ = store.seal();
            let head = store.integrity();
            drop(store);
            let store = Store::open(opts.clone())
                .unwrap_or_else(|e| panic!("fsyncs {first} then {second}: {e}"));
            // No power loss here: every batch acknowledged (all three) is there, once, in
            // order, as sent.
            let events = store.read_all().unwrap();
            let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
            assert_eq!(seqs, (1..=9).collect::<Vec<u64>>(), "{first}/{second}");
            for (stored, sent) in events.iter().zip(&sent) {
                assert_eq!(&stored.event, sent, "{first}/{second}");
                assert_eq!(stored.tenant_seq, stored.seq, "{first}/{second}");
            }
            store.seal().unwrap();
            store.close();
            drop(store);
            let report = verify_dir_expecting(
                dir.path(),
                &[ExpectedHead {
                    entries: head.entries,
                    head: head.head,
                }],
            )
            .unwrap();
            assert!(
                report.damage.is_empty(),
                "{first}/{second}: {}",
                damage(&report)
            );
        }
    }
}

#[test]
fn integrity_a_rewritten_history_does_not_reach_the_recorded_head() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = store_with_two_segments(dir.path());
    // The whole ledger replaced: a new store adopts the segments as they are now, so the
    // directory is self-consistent again, but its history no longer passes through the heads
    // kept outside.
    std::fs::remove_file(dir.path().join(ledger::FILE_NAME)).unwrap();
    let store = Store::open(options(dir.path())).unwrap();
    assert_eq!(store.integrity().entries, 1, "adopted");
    store.close();
    drop(store);
    assert!(verify_dir(dir.path()).unwrap().damage.is_empty());
    let report = verify_dir_expecting(dir.path(), &[first, second]).unwrap();
    let found = damage(&report);
    assert_eq!(report.damage.len(), 2, "{found}");
    assert!(found.contains("rewritten"), "{found}");
}

/// A seal's change that the manifest never shows: what the ledger holds when the process
/// stopped between the ledger's fsync and the manifest's.
fn unpublished_change() -> Change {
    Change {
        reason: Reason::Seal,
        at_us: 1,
        added: vec![SegmentDigest {
            segment_id: 99,
            partition: PartitionKey::of("standard", 0),
            rows: 1,
            bytes: 1,
            min_seq: 100,
            max_seq: 100,
            min_timestamp_us: 0,
            max_timestamp_us: 0,
            sha256: [7; 32],
        }],
        removed: vec![],
    }
}

#[test]
fn integrity_an_entry_the_manifest_never_published_is_cut_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (_, second) = store_with_two_segments(dir.path());
    // The process stopped between the ledger's fsync and the manifest's: the ledger holds one
    // entry more than was published.
    let published = Manifest::load(dir.path()).unwrap().unwrap().segments;
    let vfs = auditlog_engine::io::RealVfs;
    let mut ledger = Ledger::open(dir.path(), &vfs, &published, 0)
        .unwrap()
        .unwrap();
    ledger.append(unpublished_change()).unwrap();
    drop(ledger);
    // verify sees what a crash leaves, not damage.
    assert!(verify_dir(dir.path()).unwrap().damage.is_empty());
    let store = Store::open(options(dir.path())).unwrap();
    let integrity = store.integrity();
    assert_eq!((integrity.entries, integrity.head), (2, second.head));
    store.append(batch(10, 3)).unwrap();
    store.seal().unwrap();
    assert_eq!(store.integrity().entries, 3);
    store.close();
    drop(store);
    let report = verify_dir_expecting(dir.path(), &[second]).unwrap();
    assert!(report.damage.is_empty(), "{}", damage(&report));
    assert_eq!(report.digests_ok, 3);
}

#[test]
fn integrity_merges_and_retention_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.merge_segments_min = 2;
    let store = Store::open(opts.clone()).unwrap();
    let day = auditlog_engine::partition::MICROS_PER_DAY;
    let now = auditlog_engine::store::now_us();
    let old: Vec<_> = batch(0, 4)
        .into_iter()
        .map(|mut e| {
            e.timestamp_us = now - 200 * day;
            e
        })
        .collect();
    store.append(old).unwrap();
    store.seal().unwrap();
    for round in 0..2 {
        store.append(batch(10 + round * 5, 5)).unwrap();
        store.seal().unwrap();
    }
    assert!(store.merge().unwrap() >= 1);
    let report = store.expire(now).unwrap();
    assert_eq!(report.partitions.len(), 1);
    let integrity = store.integrity();
    assert_eq!(integrity.entries, 5, "3 seals, 1 merge, 1 retention");
    store.close();
    drop(store);
    let contents = Ledger::read(&dir.path().join(ledger::FILE_NAME)).unwrap();
    let reasons: Vec<Reason> = contents.changes.iter().map(|c| c.reason).collect();
    assert_eq!(
        reasons,
        [
            Reason::Seal,
            Reason::Seal,
            Reason::Seal,
            Reason::Merge,
            Reason::Retention
        ]
    );
    let report = verify_dir(dir.path()).unwrap();
    assert!(report.damage.is_empty(), "{}", damage(&report));
    assert_eq!(report.digests_ok, 1);
}

fn golden_changes() -> Vec<Change> {
    let digest = |segment_id: u64, byte: u8| SegmentDigest {
        segment_id,
        partition: PartitionKey::of("standard", 1_795_000_000_000_000),
        rows: 5,
        bytes: 1234,
        min_seq: segment_id * 10,
        max_seq: segment_id * 10 + 4,
        min_timestamp_us: 1_795_000_000_000_000,
        max_timestamp_us: 1_795_000_000_000_000 + segment_id as i64,
        sha256: [byte; 32],
    };
    vec![
        Change {
            reason: Reason::Seal,
            at_us: 1_795_000_000_000_000,
            added: vec![digest(1, 0xa1), digest(2, 0xa2)],
            removed: vec![],
        },
        Change {
            reason: Reason::Merge,
            at_us: 1_795_000_001_000_000,
            added: vec![digest(3, 0xa3)],
            removed: vec![1, 2],
        },
    ]
}

/// A power loss during the ledger's append can leave its last record whole in length but with
/// its sectors lost (read back as zeros, length field included or not): open cuts it when the
/// manifest never published its change, and reports it when the manifest did; `Ledger::read`
/// (what `verify` uses) reports it either way.
#[test]
fn integrity_a_last_ledger_record_lost_to_a_power_loss_is_cut_only_if_never_published() {
    let dir = tempfile::tempdir().unwrap();
    let (_, second) = store_with_two_segments(dir.path());
    let published = Manifest::load(dir.path()).unwrap().unwrap().segments;
    let vfs = auditlog_engine::io::RealVfs;
    let path = dir.path().join(ledger::FILE_NAME);
    let before = std::fs::read(&path).unwrap();
    let mut ledger = Ledger::open(dir.path(), &vfs, &published, 0)
        .unwrap()
        .unwrap();
    ledger.append(unpublished_change()).unwrap();
    drop(ledger);
    let appended = std::fs::read(&path).unwrap();
    assert!(appended.len() > before.len() + 48);
    // Zeros from the appended record's length field, and from its body (length and crc kept).
    for zeros_from in [before.len(), before.len() + 8] {
        let mut damaged = appended.clone();
        damaged[zeros_from..].fill(0);
        std::fs::write(&path, &damaged).unwrap();
        assert!(Ledger::read(&path).is_err(), "verify reports it");
        let ledger = Ledger::open(dir.path(), &vfs, &published, 0)
            .unwrap()
            .unwrap();
        assert_eq!((ledger.entries(), ledger.head()), (2, second.head));
        drop(ledger);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "cut back to the last whole entry"
        );
    }
    // The last record of a change the manifest published, damaged: reported, not cut.
    let mut damaged = before.clone();
    let last = second_entry_offset(&before);
    damaged[last + 8..].fill(0);
    std::fs::write(&path, &damaged).unwrap();
    let error = Ledger::open(dir.path(), &vfs, &published, 0).unwrap_err();
    assert!(
        matches!(error, Error::ChecksumMismatch { offset, .. } if offset == last as u64),
        "{error}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), damaged, "left as found");
}

/// The head of the golden ledger: SHA-256 chained over its two entries.
const GOLDEN_HEAD: &str = "3e2c223752559c0a5b97cac925c382415c90f3b47b79ddde611578e8df34f6e2";

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1/ledger")
}

/// The golden ledger: two entries, read back exactly with the pinned head, the same bytes
/// written again, and its corrupt twin (a flipped bit in the second entry's body) reported at
/// that entry's offset.
#[test]
fn integrity_golden_ledger_v1_reads_back_exactly() {
    let dir = fixture_dir();
    let vfs = auditlog_engine::io::RealVfs;
    let written = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::create(written.path(), &vfs).unwrap();
    for change in golden_changes() {
        ledger.append(change).unwrap();
    }
    let bytes = std::fs::read(written.path().join(ledger::FILE_NAME)).unwrap();
    if std::env::var_os("AUDITLOG_WRITE_GOLDEN").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("LEDGER"), &bytes).unwrap();
        let mut corrupt = bytes.clone();
        let second = second_entry_offset(&bytes);
        corrupt[second + 12] ^= 0x04;
        std::fs::write(dir.join("LEDGER-corrupt"), &corrupt).unwrap();
    }
    assert_eq!(bytes, std::fs::read(dir.join("LEDGER")).unwrap());
    let contents = Ledger::read(&dir.join("LEDGER")).unwrap();
    assert_eq!(contents.changes, golden_changes());
    assert_eq!(contents.head, ledger.head());
    assert_eq!(ledger::hex(&contents.head), GOLDEN_HEAD);
    assert_eq!(contents.live.keys().copied().collect::<Vec<_>>(), [3]);

    let error = Ledger::read(&dir.join("LEDGER-corrupt")).unwrap_err();
    let second = second_entry_offset(&bytes) as u64;
    assert!(
        matches!(error, Error::ChecksumMismatch { offset, .. } if offset == second),
        "{error}"
    );
}

/// Offset of the second record: after the header and the first record.
fn second_entry_offset(bytes: &[u8]) -> usize {
    let first_len = u32::from_le_bytes(bytes[16..20].try_into().unwrap()) as usize;
    16 + 8 + first_len + 32
}

/// A record whose body was changed and whose crc was fixed up still breaks the chain: its hash
/// no longer follows.
#[test]
fn integrity_a_forged_entry_with_a_fixed_crc_breaks_the_chain() {
    let mut bytes = std::fs::read(fixture_dir().join("LEDGER")).unwrap();
    let second = second_entry_offset(&bytes);
    let body_len = u32::from_le_bytes(bytes[second..second + 4].try_into().unwrap()) as usize;
    let body = second + 8;
    // The merge's `at_us` varint sits early in the body; any byte of it will do.
    bytes[body + 3] ^= 0x01;
    let crc = crc32fast::hash(&bytes[body..body + body_len]);
    bytes[second + 4..second + 8].copy_from_slice(&crc.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("LEDGER");
    std::fs::write(&path, &bytes).unwrap();
    let error = Ledger::read(&path).unwrap_err().to_string();
    assert!(error.contains("does not follow"), "{error}");
}

/// A crash between retention's move of a partition to the archive and the manifest that drops
/// it: `verify` given the archive reports the segment as archived (checked against the ledger),
/// not as missing; the next open finishes the move.
#[test]
fn integrity_verify_tells_an_unfinished_archive_move_from_a_missing_segment() {
    use auditlog_engine::verify::{verify_dir_with, VerifyOptions};
    let dir = tempfile::tempdir().unwrap();
    let archive = tempfile::tempdir().unwrap();
    // Events of three days ago: past the retention of a day the last open below is given
    // (only an expired partition is ever moved to the archive).
    let day = auditlog_engine::partition::MICROS_PER_DAY;
    let store = Store::open(options(dir.path())).unwrap();
    for from in [0, 5] {
        let mut events = batch(from, 5);
        for event in &mut events {
            event.timestamp_us = (auditlog_engine::store::now_us() / day - 3) * day;
        }
        store.append(events).unwrap();
        store.seal().unwrap();
    }
    drop(store);
    let manifest = Manifest::load(dir.path()).unwrap().unwrap();
    let entry = &manifest.segments[0];
    let live = Manifest::partition_dir(dir.path(), &entry.partition);
    let target = archive.path().join(entry.partition.relative_dir());
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::rename(&live, &target).unwrap();

    let missing = verify_dir(dir.path()).unwrap();
    assert!(damage(&missing).contains("missing"), "{}", damage(&missing));
    let options = VerifyOptions {
        expected: &[],
        archive_dir: Some(archive.path()),
    };
    let report = verify_dir_with(dir.path(), &options).unwrap();
    assert!(report.damage.is_empty(), "{}", damage(&report));
    assert!(!report.archive_pending.is_empty());

    // A stand-in in the archive (same name and length, other bytes) is not taken for it.
    let archived = target.join(entry.file_name());
    let mut bytes = std::fs::read(&archived).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&archived, &bytes).unwrap();
    let report = verify_dir_with(dir.path(), &options).unwrap();
    let listed_path = live.join(entry.file_name());
    assert!(!report.archive_pending.contains(&listed_path));
    assert!(damage(&report).contains("missing"), "{}", damage(&report));
    bytes[last] ^= 0xff;
    std::fs::write(&archived, &bytes).unwrap();

    // The next open finishes the move.
    let mut opts = options_with_archive(dir.path(), archive.path());
    opts.background = false;
    opts.retention.class_days.insert("standard".into(), 1);
    let store = Store::open(opts).unwrap();
    store.close();
    drop(store);
    let report = verify_dir_with(dir.path(), &options).unwrap();
    assert!(report.damage.is_empty(), "{}", damage(&report));
    assert!(report.archive_pending.is_empty());
}

fn options_with_archive(dir: &Path, archive: &Path) -> StoreOptions {
    let mut options = options(dir);
    options.archive_dir = Some(archive.to_path_buf());
    options
}
