//! Injected ENOSPC and EIO on write and on fsync: a clear error, a poisoned writer, and nothing
//! acknowledged lost after reopen.

use std::sync::Arc;

mod common;

use auditlog_engine::event::Event;
use auditlog_engine::io::{Fault, FaultyVfs};
use auditlog_engine::store::{now_us, Store, StoreOptions};
use auditlog_engine::Error;
use common::batch;

fn open(dir: &std::path::Path, vfs: &FaultyVfs) -> Store {
    let mut options = StoreOptions::new(dir);
    options.background = false;
    options.vfs = Arc::new(vfs.clone());
    Store::open(options).unwrap()
}

fn check_fault(fault: Fault, on_sync: bool) {
    let dir = tempfile::tempdir().unwrap();
    let vfs = FaultyVfs::new();
    let store = open(dir.path(), &vfs);
    store.append(batch(0, 10)).unwrap();
    store.seal().unwrap();
    store.append(batch(10, 10)).unwrap();
    let acknowledged = store.read_all().unwrap();
    assert_eq!(store.write_failure(), None);

    if on_sync {
        vfs.fail_sync(1, fault);
    } else {
        vfs.fail_write(1, fault);
    }
    let error = store.append(batch(20, 10)).unwrap_err();
    let text = error.to_string();
    match fault {
        Fault::NoSpace => {
            assert!(matches!(error, Error::DiskFull { .. }), "{text}");
            assert!(text.starts_with("disk full while writing"), "{text}");
        }
        Fault::Io => {
            assert!(matches!(error, Error::Io { .. }), "{text}");
            assert!(text.contains("Input/output error"), "{text}");
        }
        Fault::Panic => unreachable!("check_fault takes returned faults"),
    }
    assert!(text.contains(".wal"), "the error names the file: {text}");
    // What a readiness probe reads, without waiting on the commit path.
    let failure = store.write_failure().expect("the store refuses writes");
    assert!(failure.contains(".wal"), "{failure}");
    // Nothing of the failed batch is visible.
    assert_eq!(store.read_all().unwrap(), acknowledged);

    // The writer is poisoned: every later append fails, even once the disk is healthy again.
    vfs.heal();
    let error = store.append(batch(30, 1)).unwrap_err();
    assert!(matches!(error, Error::Poisoned { .. }), "{error}");
    assert!(error.to_string().contains("reopen the store"), "{error}");
    drop(store);

    // A power loss right now keeps only what was fsynced.
    vfs.crash().unwrap();
    let store = open(dir.path(), &vfs);
    assert_eq!(store.read_all().unwrap(), acknowledged);
    let result = store.append(batch(20, 10)).unwrap();
    assert_eq!(result.accepted, 10);
    assert_eq!(result.first_seq, Some(21));
}

#[test]
fn fault_enospc_on_write_poisons_and_loses_nothing_acknowledged() {
    check_fault(Fault::NoSpace, false);
}

#[test]
fn fault_eio_on_write_poisons_and_loses_nothing_acknowledged() {
    check_fault(Fault::Io, false);
}

#[test]
fn fault_enospc_on_fsync_poisons_and_loses_nothing_acknowledged() {
    check_fault(Fault::NoSpace, true);
}

#[test]
fn fault_eio_on_fsync_poisons_and_loses_nothing_acknowledged() {
    check_fault(Fault::Io, true);
}

/// A process restarted after an fsync failed (or after it died with a group written but not
/// yet fsynced) finds that group's bytes in the page cache. The open makes them durable before
/// it builds on them: a power loss after the restart then keeps every event acknowledged after
/// it, instead of leaving a log whose older file lost its end (which the next open refuses as
/// damage) under newer acknowledged events.
#[test]
fn fault_a_restart_after_a_failed_fsync_builds_only_on_durable_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let vfs = FaultyVfs::new();
    let store = open(dir.path(), &vfs);
    store.append(batch(0, 10)).unwrap();
    vfs.fail_sync(1, Fault::Io);
    store.append(batch(10, 10)).unwrap_err();
    vfs.heal();
    drop(store);

    // The restart, no power loss: the failed group is still in the page cache.
    let store = open(dir.path(), &vfs);
    let after_restart = store.read_all().unwrap();
    assert!(after_restart.len() >= 10, "{}", after_restart.len());
    let result = store.append(batch(20, 10)).unwrap();
    assert_eq!(result.accepted, 10);
    let acknowledged = store.read_all().unwrap();
    drop(store);

    vfs.crash().unwrap();
    let store = open(dir.path(), &vfs);
    assert_eq!(store.read_all().unwrap(), acknowledged);
}

/// Four producers append while an fsync fails, with two fsyncs in flight (the default): every
/// append after a producer's first error fails too, readers see exactly the acknowledged
/// batches, and a power loss keeps every one of them.
#[test]
fn fault_eio_on_fsync_under_concurrent_producers_acknowledges_only_durable_batches() {
    for round in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let vfs = FaultyVfs::new();
        let store = Arc::new(open(dir.path(), &vfs));
        assert!(store.options().wal_syncs_in_flight >= 2);
        let producers: Vec<_> = (0..4u64)
            .map(|producer| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    let mut acknowledged = Vec::new();
                    let mut failed = false;
                    for n in 0..200u64 {
                        let first = producer * 1_000_000 + n * 10;
                        match store.append(batch(first, 10)) {
                            Ok(result) => {
                                assert!(!failed, "a batch was acknowledged after an error");
                                assert_eq!(result.accepted, 10);
                                acknowledged.push(result.first_seq.unwrap());
                            }
                            Err(_) => failed = true,
                        }
                    }
                    assert!(failed, "the injected fault reached every producer");
                    acknowledged
                })
            })
            .collect();
        // Let some batches through, then fail an fsync (and every later one).
        while vfs.counts().1 < 5 + round {
            std::thread::yield_now();
        }
        vfs.fail_sync(1, Fault::Io);
        let mut acknowledged: Vec<u64> = producers
            .into_iter()
            .flat_map(|p| p.join().unwrap())
            .collect();
        acknowledged.sort_unstable();
        let visible: Vec<u64> = store.read_all().unwrap().iter().map(|e| e.seq).collect();
        drop(store);
        vfs.heal();
        vfs.crash().unwrap();
        let store = open(dir.path(), &vfs);
        let recovered: Vec<u64> = store.read_all().unwrap().iter().map(|e| e.seq).collect();
        // Readers saw exactly the acknowledged batches, and all of them survived.
        let acknowledged_seqs: Vec<u64> = acknowledged.iter().flat_map(|&f| f..f + 10).collect();
        assert_eq!(visible, acknowledged_seqs, "round {round}");
        assert!(
            acknowledged_seqs.iter().all(|seq| recovered.contains(seq)),
            "round {round}: acknowledged {acknowledged:?}, recovered {recovered:?}"
        );
        // A failed batch may survive too (an fsync that succeeded covered its pages before its
        // own failed; a retry with the same ids is then answered as duplicates), but only
        // whole, and only after the acknowledged ones: the log has no gap.
        assert_eq!(recovered.len() % 10, 0, "round {round}: {recovered:?}");
        assert!(
            recovered
                .iter()
                .enumerate()
                .all(|(i, &seq)| seq == i as u64 + 1),
            "round {round}: {recovered:?}"
        );
    }
}

#[test]
fn fault_enospc_while_sealing_keeps_the_tail_and_ingest_going() {
    let dir = tempfile::tempdir().unwrap();
    let vfs = FaultyVfs::new();
    let store = open(dir.path(), &vfs);
    store.append(batch(0, 50)).unwrap();
    let acknowledged = store.read_all().unwrap();
    vfs.fail_write(1, Fault::NoSpace);
    let error = store.seal().unwrap_err();
    assert!(matches!(error, Error::DiskFull { .. }), "{error}");
    // Said until a seal succeeds (readiness probes and busy answers read it).
    let failure = store.seal_failure().expect("a failed seal is said");
    assert!(failure.contains("disk full"), "{failure}");
    assert_eq!(
        store
            .metrics()
            .background_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    vfs.heal();
    assert_eq!(store.read_all().unwrap(), acknowledged);
    assert_eq!(store.stats().segments, 0);
    // Sealing failed before the WAL was touched: appends go on, and a later seal works.
    store.append(batch(50, 5)).unwrap();
    store.seal().unwrap();
    assert_eq!(store.seal_failure(), None);
    assert_eq!(store.read_all().unwrap().len(), 55);
    drop(store);
    let store = open(dir.path(), &vfs);
    assert_eq!(store.read_all().unwrap().len(), 55);
}

#[test]
fn fault_a_full_tail_behind_failing_seals_says_why_it_is_busy() {
    // The tail fills because seals fail, not because they are slow: the busy answer names the
    // cause (the server answers it with 503, not 429 and a retry in a second).
    let dir = tempfile::tempdir().unwrap();
    let vfs = FaultyVfs::new();
    let mut options = StoreOptions::new(dir.path());
    options.background = false;
    options.vfs = Arc::new(vfs.clone());
    options.tail_bytes_max = 64 << 10;
    options.busy_wait = std::time::Duration::from_millis(50);
    let store = Store::open(options).unwrap();
    store.append(batch(0, 10)).unwrap();
    vfs.fail_write(1, Fault::NoSpace);
    store.seal().unwrap_err();
    vfs.heal();
    let mut n = 10;
    let error = loop {
        match store.append(batch(n, 50)) {
            Ok(_) => n += 50,
            Err(error) => break error,
        }
        assert!(n < 100_000, "never got busy");
    };
    assert!(
        matches!(&error, Error::Busy { seal_failure: Some(cause), .. } if cause.contains("disk full")),
        "{error}"
    );
    assert!(error.to_string().contains("sealing fails"), "{error}");
    // Once a seal succeeds, room comes back and the cause is gone.
    store.seal().unwrap();
    assert_eq!(store.seal_failure(), None);
    store.append(batch(n, 1)).unwrap();
}

#[test]
fn fault_eio_on_each_fsync_while_sealing_leaves_a_consistent_state() {
    // Sealing fsyncs new directories, the segment file, its directory and the manifest: fail
    // each in turn, then lose power, and the store must come back with every acknowledged event.
    for n in 1..=8 {
        let dir = tempfile::tempdir().unwrap();
        let vfs = FaultyVfs::new();
        let store = open(dir.path(), &vfs);
        store.append(batch(0, 50)).unwrap();
        let acknowledged = store.read_all().unwrap();
        vfs.fail_sync(n, Fault::Io);
        let sealed = store.seal();
        vfs.heal();
        if let Err(error) = &sealed {
            assert!(
                error.to_string().starts_with("i/o error on"),
                "fsync {n}: {error}"
            );
        }
        assert_eq!(store.read_all().unwrap(), acknowledged, "fsync {n}");
        drop(store);
        vfs.crash().unwrap();
        let store = open(dir.path(), &vfs);
        assert_eq!(store.read_all().unwrap(), acknowledged, "fsync {n}");
        store.seal().unwrap();
        store.append(batch(50, 1)).unwrap();
        assert_eq!(store.read_all().unwrap().len(), 51, "fsync {n}");
    }
}

/// A hook that writes a companion file per segment and fails for the `fail_at`-th call (from 1).
struct FlakyHook {
    calls: std::sync::atomic::AtomicUsize,
    fail_at: usize,
}

impl auditlog_engine::store::SegmentHook for FlakyHook {
    fn segment_written(
        &self,
        partition_dir: &std::path::Path,
        entry: &auditlog_engine::manifest::SegmentEntry,
        _segment: &auditlog_engine::segment::Segment,
    ) -> auditlog_engine::Result<Option<auditlog_engine::store::Attachment>> {
        let call = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let path = partition_dir.join(format!("{:016x}.extra", entry.segment_id));
        std::fs::write(&path, b"x").unwrap();
        if call == self.fail_at {
            return Err(Error::io(
                &path,
                std::io::Error::other("injected hook failure"),
            ));
        }
        Ok(None)
    }

    fn segment_opened(
        &self,
        _partition_dir: &std::path::Path,
        _entry: &auditlog_engine::manifest::SegmentEntry,
        _segment: &auditlog_engine::segment::Segment,
    ) -> auditlog_engine::Result<Option<auditlog_engine::store::Attachment>> {
        Ok(None)
    }
}

/// Files under `dir` whose name ends with one of `suffixes`.
fn files_ending(dir: &std::path::Path, suffixes: &[&str]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_ending(&path, suffixes));
        } else if suffixes.iter().any(|s| path.to_string_lossy().ends_with(s)) {
            found.push(path);
        }
    }
    found
}

/// A seal writing several partitions indexes one segment while it encodes the next; when the
/// hook fails for any of them, the seal fails, publishes nothing, leaves no segment or
/// companion file behind, and keeps every event readable; the next seal publishes them all.
#[test]
fn store_a_failing_segment_hook_fails_the_seal_and_leaves_nothing_behind() {
    for fail_at in 1..=4 {
        let dir = tempfile::tempdir().unwrap();
        let mut options = StoreOptions::new(dir.path());
        options.background = false;
        options.segment_hook = Some(Arc::new(FlakyHook {
            calls: std::sync::atomic::AtomicUsize::new(0),
            fail_at,
        }));
        let store = Store::open(options).unwrap();
        // Four partitions: four UTC days.
        let events: Vec<Event> = (0..4u64)
            .flat_map(|day| {
                batch(day * 100, 25).into_iter().map(move |mut e| {
                    e.timestamp_us -= day as i64 * 86_400_000_000;
                    e
                })
            })
            .collect();
        store.append(events).unwrap();
        let before = store.read_all().unwrap();

        let error = store.seal().unwrap_err();
        assert!(
            error.to_string().contains("injected hook failure"),
            "call {fail_at}: {error}"
        );
        assert_eq!(store.read_all().unwrap(), before, "call {fail_at}");
        assert_eq!(store.snapshot().segments.len(), 0, "call {fail_at}");
        let segments = dir.path().join("segments");
        assert_eq!(
            files_ending(&segments, &[".seg", ".seg.tmp", ".extra"]),
            Vec::<std::path::PathBuf>::new(),
            "call {fail_at}: files left behind"
        );

        store.seal().unwrap();
        assert_eq!(store.snapshot().segments.len(), 4, "call {fail_at}");
        assert_eq!(store.read_all().unwrap(), before, "call {fail_at}");
    }
}

/// The position in `log` of the first `op` at or after `from`.
fn position(
    log: &[auditlog_engine::io::DirectoryOp],
    op: &auditlog_engine::io::DirectoryOp,
    from: usize,
) -> Option<usize> {
    log[from..].iter().position(|o| o == op).map(|i| from + i)
}

/// A fresh store makes the entries of its data directory and of `wal/` durable before it
/// acknowledges anything: acknowledged events live there until a seal, and a new directory
/// whose parent was not fsynced may vanish in a power loss with all it holds.
#[test]
fn fresh_store_makes_its_directories_durable_before_any_append() {
    use auditlog_engine::io::DirectoryOp::{CreateAll, Sync};
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("data");
    let vfs = FaultyVfs::new();
    let store = open(&dir, &vfs);
    let log = vfs.directory_log();
    let data = position(&log, &CreateAll(dir.clone()), 0).expect("data dir created");
    position(&log, &Sync(base.path().to_path_buf()), data).expect("its parent fsynced");
    let wal = position(&log, &CreateAll(dir.join("wal")), 0).expect("wal dir created");
    position(&log, &Sync(dir.clone()), wal).expect("the data dir fsynced after it");
    store.append(batch(0, 3)).unwrap();
}

/// A store with retention of 1 day for `standard` and `archive` as its archive directory, and
/// its first segment: 5 events of three days ago, sealed. Returns the store, the expired
/// partition's directory, and where the archive puts it.
fn store_with_an_expired_partition(
    dir: &std::path::Path,
    archive: &std::path::Path,
    vfs: &FaultyVfs,
) -> (Store, std::path::PathBuf, std::path::PathBuf) {
    let mut options = StoreOptions::new(dir);
    options.background = false;
    options.vfs = Arc::new(vfs.clone());
    options.archive_dir = Some(archive.to_path_buf());
    options.retention.class_days.insert("standard".into(), 1);
    let store = Store::open(options).unwrap();
    store.append(aged(0, 5)).unwrap();
    store.seal().unwrap();
    let live = store.snapshot().segments[0]
        .path
        .parent()
        .unwrap()
        .to_path_buf();
    // The archive keeps the partition's path under `segments/`.
    let target = archive.join(live.strip_prefix(dir.join("segments")).unwrap());
    (store, live, target)
}

/// [`batch`] with timestamps three days old (the start of that day: one partition).
fn aged(from: u64, count: u64) -> Vec<Event> {
    aged_by(from, count, 3)
}

/// [`batch`] with timestamps `days` days old (the start of that day: one partition).
fn aged_by(from: u64, count: u64, days: i64) -> Vec<Event> {
    let day = auditlog_engine::partition::MICROS_PER_DAY;
    let old = (now_us() / day - days) * day;
    batch(from, count)
        .into_iter()
        .map(|mut e| {
            e.timestamp_us = old;
            e
        })
        .collect()
}

/// Retention resuming an archive move that an earlier pass left part way (the target
/// partition directory exists, its entry perhaps never made durable) fsyncs the archive's
/// class directory before it removes the live partition: a power loss in between leaves the
/// partition in one place or both, never in neither.
#[test]
fn resumed_archive_move_makes_the_copy_durable_before_removing_the_source() {
    use auditlog_engine::io::DirectoryOp::{Rename, Sync};
    let dir = tempfile::tempdir().unwrap();
    let archive = tempfile::tempdir().unwrap();
    let vfs = FaultyVfs::new();
    let (store, live, target) = store_with_an_expired_partition(dir.path(), archive.path(), &vfs);
    std::fs::create_dir_all(&target).unwrap();
    let report = store.expire(now_us()).unwrap();
    assert_eq!(report.rows, 5);
    assert!(!live.exists());
    assert_eq!(
        std::fs::read_dir(&target).unwrap().count(),
        1,
        "the segment file"
    );
    let log = vfs.directory_log();
    // The live partition leaves its place in one step (set aside, then removed).
    let aside = live.with_file_name(format!(
        ".{}.dropping",
        live.file_name().unwrap().to_string_lossy()
    ));
    let removed = position(&log, &Rename(live.clone(), aside), 0).expect("live partition removed");
    let class_dir = target.parent().unwrap().to_path_buf();
    let synced = log[..removed]
        .iter()
        .rposition(|op| op == &Sync(class_dir.clone()))
        .expect("the archive's class directory fsynced before the removal");
    let copied = log[..removed]
        .iter()
        .rposition(|op| op == &Sync(target.clone()))
        .expect("the copy fsynced");
    assert!(copied < synced, "{log:?}");
}

/// Two stores sharing an archive directory (or a store created again, its segment ids starting
/// over) archive the same partition under the same file names: the second never overwrites what
/// the first archived; its partition stays live and the pass reports why. A copy an earlier pass
/// cut short (a prefix of the file) is still completed.
#[test]
fn archive_never_overwrites_another_stores_file_of_the_same_name() {
    let archive = tempfile::tempdir().unwrap();
    let vfs = FaultyVfs::new();
    let first_dir = tempfile::tempdir().unwrap();
    let (first, _, target) =
        store_with_an_expired_partition(first_dir.path(), archive.path(), &vfs);
    first.expire(now_us()).unwrap();
    let segment = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .unwrap();
    let archived = std::fs::read(&segment).unwrap();

    // Another store, same segment id, different events, same partition.
    let second_dir = tempfile::tempdir().unwrap();
    let mut options = StoreOptions::new(second_dir.path());
    options.background = false;
    options.vfs = Arc::new(vfs.clone());
    options.archive_dir = Some(archive.path().to_path_buf());
    options.retention.class_days.insert("standard".into(), 1);
    let second = Store::open(options).unwrap();
    second.append(aged(100, 7)).unwrap();
    // And a later expired day, which the refused one must not hold back.
    second.append(aged_by(200, 4, 2)).unwrap();
    second.seal().unwrap();
    let error = second.expire(now_us()).unwrap_err().to_string();
    assert!(error.contains("already holds a different file"), "{error}");
    assert_eq!(std::fs::read(&segment).unwrap(), archived, "overwritten");
    let left: Vec<u64> = second.read_all().unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(
        left,
        (1..=7).collect::<Vec<_>>(),
        "the refused partition stays live, the later one is dropped"
    );

    // A prefix left by a copy cut short is this file's own: the next pass completes it.
    let third_dir = tempfile::tempdir().unwrap();
    let (third, live, target) =
        store_with_an_expired_partition(third_dir.path(), archive.path(), &vfs);
    let _ = (first, second);
    std::fs::remove_dir_all(&target).unwrap();
    std::fs::create_dir_all(&target).unwrap();
    let own = std::fs::read(live.join(segment.file_name().unwrap())).unwrap();
    std::fs::write(
        target.join(segment.file_name().unwrap()),
        &own[..own.len() / 2],
    )
    .unwrap();
    assert_eq!(third.expire(now_us()).unwrap().rows, 5);
    assert_eq!(
        std::fs::read(target.join(segment.file_name().unwrap())).unwrap(),
        own
    );
}

/// An index file (derived from its segment) in the archive that differs from the live one is
/// not another store's file: the live one was rebuilt after a crash cut an earlier move short.
/// It is copied over, and the move finishes; the live partition is set aside in one step
/// before it is removed.
#[test]
fn archive_copies_a_rebuilt_index_file_over_an_earlier_copy() {
    use auditlog_engine::io::DirectoryOp::{RemoveAll, Rename};
    let dir = tempfile::tempdir().unwrap();
    let archive = tempfile::tempdir().unwrap();
    let vfs = FaultyVfs::new();
    vfs.other_device(archive.path());
    let (store, live, target) = store_with_an_expired_partition(dir.path(), archive.path(), &vfs);
    let segment = std::fs::read_dir(&live)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .unwrap();
    let index = segment.with_extension("idx");
    std::fs::write(&index, b"rebuilt after the crash").unwrap();
    std::fs::create_dir_all(&target).unwrap();
    std::fs::copy(&segment, target.join(segment.file_name().unwrap())).unwrap();
    std::fs::write(
        target.join(index.file_name().unwrap()),
        b"built at the seal",
    )
    .unwrap();

    assert_eq!(store.expire(now_us()).unwrap().rows, 5);
    assert!(!live.exists());
    assert_eq!(
        std::fs::read(target.join(index.file_name().unwrap())).unwrap(),
        b"rebuilt after the crash"
    );
    let aside = live.with_file_name(format!(
        ".{}.dropping",
        live.file_name().unwrap().to_string_lossy()
    ));
    let log = vfs.directory_log();
    let set_aside = position(&log, &Rename(live.clone(), aside.clone()), 0).expect("set aside");
    position(&log, &RemoveAll(aside.clone()), set_aside).expect("then removed");
    assert!(!aside.exists());
}

/// Files a failed seal or merge left in an expiring partition (not listed: their rows are in
/// listed segments too) are not archived, where a restore would bring them back as duplicates.
#[test]
fn archive_takes_only_the_segments_the_manifest_lists() {
    let dir = tempfile::tempdir().unwrap();
    let archive = tempfile::tempdir().unwrap();
    let vfs = FaultyVfs::new();
    let (store, live, target) = store_with_an_expired_partition(dir.path(), archive.path(), &vfs);
    let listed: Vec<String> = std::fs::read_dir(&live)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    std::fs::write(live.join("00000000000000ff.seg"), b"left by a failed merge").unwrap();
    std::fs::create_dir(live.join("00000000000000ff.text")).unwrap();
    assert_eq!(store.expire(now_us()).unwrap().rows, 5);
    let mut archived: Vec<String> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    archived.sort();
    let mut listed = listed;
    listed.sort();
    assert_eq!(archived, listed);
}

/// A new WAL file gets its name only once its header is durable: it is written as `.tmp` and
/// renamed, and an open removes a `.tmp` file a crash left behind.
#[test]
fn new_wal_file_is_named_only_once_its_header_is_durable() {
    use auditlog_engine::io::DirectoryOp::Rename;
    let dir = tempfile::tempdir().unwrap();
    let vfs = FaultyVfs::new();
    let store = open(dir.path(), &vfs);
    store.append(batch(0, 3)).unwrap();
    let wal = dir.path().join("wal");
    let first = wal.join(format!("{:020}.wal", 1));
    assert!(first.exists());
    let renamed = vfs.directory_log().contains(&Rename(
        wal.join(format!("{:020}.wal.tmp", 1)),
        first.clone(),
    ));
    assert!(renamed, "{:?}", vfs.directory_log());
    drop(store);
    let stray = wal.join(format!("{:020}.wal.tmp", 999));
    std::fs::write(&stray, b"header never fsynced").unwrap();
    let store = open(dir.path(), &vfs);
    assert!(!stray.exists());
    assert_eq!(store.read_all().unwrap().len(), 3);
}

/// Archiving to another file system copies the partition without the maintenance lock: seals
/// go on while the copy is stopped half way, a segment a seal adds to the expiring partition
/// meanwhile is copied too, and then the source goes.
#[test]
fn archive_copy_across_file_systems_does_not_hold_seals_back() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let archive = tempfile::tempdir().unwrap();
    let vfs = FaultyVfs::new();
    vfs.other_device(archive.path());
    let (store, live, target) = store_with_an_expired_partition(dir.path(), archive.path(), &vfs);
    let store = Arc::new(store);

    let gate = vfs.hold_creates_under(archive.path());
    let expiring = Arc::clone(&store);
    let pass = std::thread::spawn(move || expiring.expire(now_us()));
    assert!(
        gate.wait_reached(Duration::from_secs(30)),
        "the copy never started"
    );
    // The copy is stopped: a seal of new events, and of one more of the expiring day's, runs.
    let (done, sealed) = std::sync::mpsc::channel();
    let sealing = Arc::clone(&store);
    std::thread::spawn(move || {
        sealing.append(batch(100, 3)).unwrap();
        sealing.append(aged(200, 2)).unwrap();
        done.send(sealing.seal()).unwrap();
    });
    let seal = sealed.recv_timeout(Duration::from_secs(30));
    gate.open();
    seal.expect("a seal waited for the archive copy").unwrap();
    let report = pass.join().unwrap().unwrap();

    assert_eq!(report.rows, 7, "both segments of the expired day");
    assert!(!live.exists());
    let archived = std::fs::read_dir(&target)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count();
    assert_eq!(archived, 2);
    let left: Vec<u64> = store.read_all().unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(left, [6, 7, 8]);
}

/// With the background threads on, a retention pass copying a partition to another file
/// system (stopped here half way) does not hold back the seals that keep the tail's memory
/// bounded: they run on another thread.
#[test]
fn archive_copy_across_file_systems_runs_beside_background_seals() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let archive = tempfile::tempdir().unwrap();
    let vfs = FaultyVfs::new();
    vfs.other_device(archive.path());
    // The expired partition, sealed by a store without background threads.
    let (store, live, _) = store_with_an_expired_partition(dir.path(), archive.path(), &vfs);
    drop(store);
    let gate = vfs.hold_creates_under(archive.path());
    let mut options = StoreOptions::new(dir.path());
    options.vfs = Arc::new(vfs.clone());
    options.archive_dir = Some(archive.path().to_path_buf());
    options.retention.class_days.insert("standard".into(), 1);
    options.seal_interval = Duration::from_millis(50);
    let store = Store::open(options).unwrap();
    assert!(
        gate.wait_reached(Duration::from_secs(30)),
        "the retention pass never started its copy"
    );
    let segments = store.stats().segments;
    store.append(batch(100, 3)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.stats().segments == segments {
        assert!(
            Instant::now() < deadline,
            "no seal while the archive copy was held"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(live.exists(), "the copy is still held");
    gate.open();
    let deadline = Instant::now() + Duration::from_secs(30);
    while live.exists() {
        assert!(Instant::now() < deadline, "the partition was never dropped");
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<u64> = store.read_all().unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(left, [6, 7, 8]);
}

/// Retention moves only partitions past their retention to the archive: a listed segment of a
/// live partition found there (moved by hand) is missing, not archived, and the open says so
/// instead of dropping its events from the store.
#[test]
fn open_refuses_a_live_partitions_segment_found_in_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let archive = tempfile::tempdir().unwrap();
    let mut options = StoreOptions::new(dir.path());
    options.background = false;
    options.archive_dir = Some(archive.path().to_path_buf());
    let store = Store::open(options.clone()).unwrap();
    store.append(batch(0, 4)).unwrap();
    store.seal().unwrap();
    let segment = store.snapshot().segments[0].path.clone();
    drop(store);
    let relative = segment.strip_prefix(dir.path().join("segments")).unwrap();
    let moved = archive.path().join(relative);
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    std::fs::rename(&segment, &moved).unwrap();
    let error = Store::open(options.clone())
        .err()
        .expect("refused")
        .to_string();
    assert!(error.contains("not past its retention"), "{error}");
    std::fs::rename(&moved, &segment).unwrap();
    assert_eq!(Store::open(options).unwrap().read_all().unwrap().len(), 4);
}

/// The store's one WAL file and its records: (offset, `durable_through`) each.
fn wal_records(dir: &std::path::Path) -> (std::path::PathBuf, Vec<(u64, u64)>) {
    use auditlog_engine::wal::format::{decode_record_header, FileHeader, VERSION};
    let wal = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|e| e == "wal"))
        .unwrap();
    let bytes = std::fs::read(&wal).unwrap();
    let salt = FileHeader::decode(&bytes).unwrap().salt;
    let mut records = Vec::new();
    let mut pos = 32;
    while pos < bytes.len() {
        let header = decode_record_header(VERSION, salt, &bytes[pos..]).unwrap();
        records.push((pos as u64, header.durable_through.unwrap()));
        pos += header.bytes() + header.payload_len as usize;
    }
    (wal, records)
}

/// A store (two fsyncs in flight, writing through `vfs`) that acknowledged batch A (seqs 1-20),
/// then wrote batches B (21-40) and C (41-60) while the disk held both their fsyncs at the
/// returned gate; the threads appending B and C are returned too.
#[allow(clippy::type_complexity)]
fn two_fsyncs_held(
    dir: &std::path::Path,
    vfs: &FaultyVfs,
) -> (
    Arc<Store>,
    Arc<auditlog_engine::io::Gate>,
    Vec<std::thread::JoinHandle<auditlog_engine::Result<auditlog_engine::store::AppendResult>>>,
) {
    use std::time::Duration;
    let mut options = StoreOptions::new(dir);
    options.background = false;
    options.vfs = Arc::new(vfs.clone());
    options.wal_syncs_in_flight = 2;
    let store = Arc::new(Store::open(options).unwrap());
    store.append(batch(0, 20)).unwrap();
    let gate = vfs.hold_file_syncs();
    let append = |from| {
        let store = Arc::clone(&store);
        std::thread::spawn(move || store.append(batch(from, 20)))
    };
    let b = append(20);
    assert!(gate.wait_reached_by(1, Duration::from_secs(30)));
    let c = append(40);
    assert!(gate.wait_reached_by(2, Duration::from_secs(30)));
    (store, gate, vec![b, c])
}

#[test]
fn power_loss_with_two_fsyncs_in_flight_cuts_only_what_no_caller_was_answered_for() {
    use auditlog_engine::wal::reader::Discarded;

    let dir = tempfile::tempdir().unwrap();
    let vfs = FaultyVfs::new();
    let (store, gate, appends) = two_fsyncs_held(dir.path(), &vfs);
    let acknowledged = store.read_all().unwrap();
    // The power goes before either fsync completes: neither caller is answered with success.
    vfs.fail_sync(1, Fault::Io);
    vfs.fail_write(1, Fault::Io);
    gate.open();
    for append in appends {
        assert!(append.join().unwrap().is_err());
    }
    drop(Arc::try_unwrap(store).ok().expect("appends are done"));

    // The file holds the three groups' records; the disk kept the last one's sectors and lost
    // the first sectors of the one before, as a device that reorders writes may.
    let (wal, records) = wal_records(dir.path());
    assert_eq!(records.len(), 3, "{records:?}");
    let (group_b, group_c) = (records[1].0, records[2].0);
    // Both were framed knowing only the first group durable.
    assert_eq!(records[1].1, group_b);
    assert_eq!(records[2].1, group_b);
    vfs.crash_keeping(512, |path, sector| path != wal || sector + 512 > group_c)
        .unwrap();
    vfs.heal();

    // Before `durable_through`, this file (a damaged record, then a valid one) stopped the open
    // as corruption.
    let store = open(dir.path(), &vfs);
    assert_eq!(store.read_all().unwrap(), acknowledged);
    assert_eq!(store.recovery().truncated, Some((wal.clone(), group_b)));
    assert_eq!(
        store.recovery().discarded,
        Some(Discarded {
            records: 1,
            first_seq: 41,
            last_seq: 60
        })
    );
    assert_eq!(std::fs::metadata(&wal).unwrap().len(), group_b);
    // The callers retry: nothing of theirs was stored, so nothing is a duplicate.
    let retried = store.append(batch(20, 40)).unwrap();
    assert_eq!((retried.accepted, retried.duplicates.len()), (40, 0));
    assert_eq!(retried.first_seq, Some(21));
}

#[test]
fn records_framed_after_concurrent_fsyncs_complete_vouch_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let vfs = FaultyVfs::new();
    let (store, gate, appends) = two_fsyncs_held(dir.path(), &vfs);
    // Both fsyncs complete, in whatever order the threads get there: both callers are answered.
    gate.open();
    for append in appends {
        append.join().unwrap().unwrap();
    }
    store.append(batch(60, 20)).unwrap();
    drop(Arc::try_unwrap(store).ok().expect("appends are done"));

    let (wal, records) = wal_records(dir.path());
    assert_eq!(records.len(), 4, "{records:?}");
    // D was framed knowing B and C durable: its mark is the end of C.
    assert_eq!(records[3].1, records[3].0);

    // The disk later damages B: a later record vouches for it, so it is corruption, reported
    // with file and offset, and nothing is cut.
    let mut bytes = std::fs::read(&wal).unwrap();
    let length = bytes.len();
    bytes[records[1].0 as usize + 40] ^= 0x08;
    std::fs::write(&wal, &bytes).unwrap();
    let mut options = StoreOptions::new(dir.path());
    options.background = false;
    let error = Store::open(options)
        .err()
        .expect("damage to acknowledged events");
    assert!(
        matches!(&error, Error::ChecksumMismatch { offset, .. } if *offset == records[1].0),
        "{error}"
    );
    assert!(
        error.to_string().contains(&wal.display().to_string()),
        "{error}"
    );
    assert_eq!(std::fs::metadata(&wal).unwrap().len(), length as u64);
}

/// `store.append(events)` on a thread, waited for at most 20 s: a caller left waiting for ever
/// fails the test instead of hanging it.
fn append_within(
    store: &Arc<Store>,
    events: Vec<Event>,
) -> auditlog_engine::Result<auditlog_engine::store::AppendResult> {
    let (answer, answered) = std::sync::mpsc::channel();
    let store = Arc::clone(store);
    std::thread::spawn(move || {
        let _ = answer.send(store.append(events));
    });
    answered
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the append is answered within 20 s")
}

/// A panic in the commit pipeline (here in the commit thread's WAL write, or in a sync
/// thread's fsync, after the group was handed over) answers the group's callers with an error
/// and poisons the writer, instead of leaving them, every later caller and the store's close
/// waiting for ever; after a power loss a reopen has every acknowledged event.
#[test]
fn fault_a_panic_in_the_commit_pipeline_fails_its_callers_and_poisons_the_writer() {
    for on_sync in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let vfs = FaultyVfs::new();
        let store = Arc::new(open(dir.path(), &vfs));
        append_within(&store, batch(0, 10)).unwrap();
        let acknowledged = store.read_all().unwrap();

        if on_sync {
            vfs.fail_sync(1, Fault::Panic);
        } else {
            vfs.fail_write(1, Fault::Panic);
        }
        let error = append_within(&store, batch(10, 10)).unwrap_err();
        assert!(matches!(error, Error::Poisoned { .. }), "{error}");
        assert!(error.to_string().contains("panic"), "{error}");
        assert!(store
            .write_failure()
            .is_some_and(|cause| cause.contains("panic")));
        vfs.heal();
        let error = append_within(&store, batch(20, 1)).unwrap_err();
        assert!(error.to_string().contains("panic"), "{error}");
        assert_eq!(store.read_all().unwrap(), acknowledged, "on_sync {on_sync}");
        let (closed, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(store);
            let _ = closed.send(());
        });
        done.recv_timeout(std::time::Duration::from_secs(20))
            .expect("the store closes within 20 s");

        vfs.crash().unwrap();
        let store = open(dir.path(), &vfs);
        assert_eq!(store.read_all().unwrap(), acknowledged, "on_sync {on_sync}");
        let result = store.append(batch(10, 10)).unwrap();
        assert_eq!(result.accepted, 10);
        assert_eq!(result.first_seq, Some(11));
    }
}

/// A seal whose manifest write failed part way (renamed but not known durable: "in doubt")
/// leaves a manifest on disk that may list its segment while the store goes on without it.
/// Retention removes the files the in-memory manifest does not list before it archives a
/// partition: it must settle the manifest first, or a restart after a retention pass that
/// failed later finds the manifest on disk listing a segment that was deleted. For each fsync
/// of the seal failing in turn, and then each of the retention pass's, the store reopens.
#[test]
fn fault_retention_after_a_seal_in_doubt_leaves_a_store_that_reopens() {
    for (n, m) in (1..=8).flat_map(|n| (0..=6).map(move |m| (n, m))) {
        let dir = tempfile::tempdir().unwrap();
        let archive = tempfile::tempdir().unwrap();
        let vfs = FaultyVfs::new();
        let options = || {
            let mut options = StoreOptions::new(dir.path());
            options.background = false;
            options.vfs = Arc::new(vfs.clone());
            options.archive_dir = Some(archive.path().to_path_buf());
            options.retention.class_days.insert("standard".into(), 1);
            options
        };
        // Events three days old: past the retention of a day.
        let store = Store::open(options()).unwrap();
        store.append(aged(0, 20)).unwrap();
        store.seal().unwrap();
        store.append(aged(20, 20)).unwrap();
        vfs.fail_sync(n, Fault::Io);
        let _ = store.seal();
        vfs.heal();
        if m > 0 {
            vfs.fail_sync(m, Fault::Io);
        }
        let _ = store.expire(now_us());
        vfs.heal();
        drop(store);
        let store = Store::open(options()).unwrap_or_else(|error| {
            panic!("seal fsync {n}, retention fsync {m}: the store does not reopen: {error}")
        });
        // Every acknowledged event is somewhere, once: still in the store, or archived.
        let mut ids: Vec<String> = store
            .read_all()
            .unwrap()
            .into_iter()
            .filter_map(|e| e.event.id.map(|id| id.to_string()))
            .collect();
        for path in walk_files(archive.path()) {
            if path.extension().is_some_and(|x| x == "seg") {
                let segment = auditlog_engine::segment::Segment::open(&path).unwrap();
                ids.extend(
                    segment
                        .read_all()
                        .unwrap()
                        .into_iter()
                        .filter_map(|e| e.event.id.map(|id| id.to_string())),
                );
            }
        }
        ids.sort();
        let mut expected: Vec<String> = (0..40).map(|i| format!("evt_{i}")).collect();
        expected.sort();
        assert_eq!(ids, expected, "seal fsync {n}, retention fsync {m}");
        drop(store);
    }
}

/// Every file under `dir`, recursively.
fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}
