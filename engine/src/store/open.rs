//! Opening a data directory: lock, manifest, segments, orphan cleanup, WAL replay.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::hash::BuildHasherDefault;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};

use super::commit::{CommitState, Queue, SyncQueue};
use super::{Inner, SealedSegment, State, StoreOptions};
use crate::error::{Error, Result};
use crate::event::{StoredEvent, Text};
use crate::manifest::Manifest;
use crate::segment::FxHasher;
use crate::segment::Segment;
use crate::tail::{approx_bytes, key_hash, Chunk, Tail, TenantIndex};
use crate::wal::{recover_with, WalWriter};

pub(crate) fn lock_directory(dir: &Path) -> Result<File> {
    use std::os::fd::AsRawFd;
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    // SAFETY: flock on a descriptor we own; it is released when the file is closed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(Error::Locked {
            path: dir.to_path_buf(),
        });
    }
    Ok(file)
}

pub(crate) fn open_inner(options: StoreOptions) -> Result<Inner> {
    options.retention.validate().map_err(Error::Config)?;
    let dir = options.dir.clone();
    let vfs = Arc::clone(&options.vfs);
    crate::io::open_dir_durably(vfs.as_ref(), &dir).map_err(|e| Error::io(&dir, e))?;
    let lock_file = lock_directory(&dir)?;

    let loaded = Manifest::load(&dir)?;
    if loaded.is_none() {
        check_store_without_manifest(&dir)?;
    }
    let mut manifest = loaded.unwrap_or_else(|| Manifest {
        next_segment_id: 1,
        ..Manifest::default()
    });
    // A class the configuration no longer names would otherwise be expired at the default
    // class's retention: a renamed or removed `extended` class would lose months of data to
    // the next retention pass. The operator decides instead.
    if let Some(entry) = manifest.segments.iter().find(|e| {
        !options
            .retention
            .class_days
            .contains_key(&e.partition.class)
    }) {
        return Err(Error::Config(format!(
            "the store holds partitions of retention class {:?} (first: {}), which the \
             configuration does not define; add it back to the retention classes with the \
             days its data must be kept",
            entry.partition.class,
            entry.partition.relative_dir().display()
        )));
    }

    restore_set_aside(&dir, vfs.as_ref())?;
    let mut ledger = crate::ledger::Ledger::open(
        &dir,
        vfs.as_ref(),
        &manifest.segments,
        manifest.sealed_through,
    )?;

    // Segments the manifest lists. One missing because retention moved its partition to the
    // archive just before a crash is finished off here; any other missing segment is corruption.
    let mut segments = Vec::with_capacity(manifest.segments.len());
    let mut archived = Vec::new();
    // Segments whose companion files are missing are built in the background when it can.
    let build_later = options.background && options.index_deferral;
    let mut deferred = super::DeferredIndex::new();
    for entry in &manifest.segments {
        let partition_dir = Manifest::partition_dir(&dir, &entry.partition);
        let path = partition_dir.join(entry.file_name());
        if !path.exists() {
            // The archived file must be this segment, not another store's that shares the
            // archive directory and the segment id, nor a stand-in: the SHA-256 the ledger
            // recorded when it was written (its length, for a store from before the ledger).
            let in_archive = options.archive_dir.as_ref().is_some_and(|archive| {
                let archived = archive
                    .join(entry.partition.relative_dir())
                    .join(entry.file_name());
                match ledger.as_ref().and_then(|l| l.digest(entry.segment_id)) {
                    Some(recorded) => crate::ledger::file_sha256(&archived)
                        .is_ok_and(|found| found == recorded.sha256),
                    None => std::fs::metadata(archived).is_ok_and(|m| m.len() == entry.bytes),
                }
            });
            // Only a partition past its retention is ever moved there: a copy of a segment
            // of a live partition was moved by hand, and dropping it from the manifest would
            // take its events out of every query before their time.
            let expired = options
                .retention
                .is_expired(&entry.partition, crate::store::now_us());
            if in_archive && expired {
                archived.push(entry.segment_id);
                continue;
            }
            return Err(Error::Corrupt {
                path,
                offset: 0,
                reason: if in_archive {
                    "segment listed in the manifest is missing; a copy of it is in the archive \
                     directory, but its partition is not past its retention (moved by hand?): \
                     move it back"
                        .into()
                } else {
                    "segment listed in the manifest is missing".into()
                },
            });
        }
        let segment = Segment::open(&path)?;
        let attachment = match (&options.segment_hook, path.parent()) {
            (Some(hook), Some(partition_dir)) if build_later => {
                let opened = hook.segment_opened_or_missing(partition_dir, entry, &segment)?;
                if opened.is_none() {
                    deferred.insert(entry.segment_id, None);
                }
                opened
            }
            (Some(hook), Some(partition_dir)) => {
                hook.segment_opened(partition_dir, entry, &segment)?
            }
            _ => None,
        };
        // The digest the ledger recorded when the segment was written (checked against the
        // file by `auditlog verify`, not here: open does not read whole segments), or the
        // file's own for a ledger about to be created over existing segments.
        let sha256 = match ledger.as_ref().and_then(|l| l.digest(entry.segment_id)) {
            Some(digest) => digest.sha256,
            None => crate::ledger::file_sha256(&path)?,
        };
        segments.push(Arc::new(SealedSegment {
            entry: entry.clone(),
            path,
            segment,
            sha256,
            attachment,
        }));
    }
    if !archived.is_empty() {
        manifest
            .segments
            .retain(|e| !archived.contains(&e.segment_id));
        manifest.generation += 1;
        if let Some(ledger) = ledger.as_mut() {
            ledger.append(crate::ledger::Change {
                reason: crate::ledger::Reason::Retention,
                at_us: crate::store::now_us(),
                added: Vec::new(),
                removed: archived.clone(),
            })?;
        }
        manifest.store(&dir, vfs.as_ref())?;
    }
    // A store from before the ledger: it starts by adopting the segments it has.
    let ledger = match ledger {
        Some(ledger) => ledger,
        None => {
            let adopt = (!segments.is_empty()).then(|| crate::ledger::Change {
                reason: crate::ledger::Reason::Adopt,
                at_us: crate::store::now_us(),
                added: segments.iter().map(|s| s.digest()).collect(),
                removed: Vec::new(),
            });
            crate::ledger::Ledger::create_with(&dir, vfs.as_ref(), adopt)?
        }
    };
    remove_orphans(&dir, &manifest, &options)?;

    let wal_dir = dir.join("wal");
    let recovered = recover_with(&wal_dir, &vfs, manifest.sealed_through, &prepare_replayed)?;
    let recovery = super::RecoveryReport {
        replayed_events: recovered.batches.iter().map(|b| b.len() as u64).sum(),
        truncated: recovered.truncated.clone(),
        discarded: recovered.discarded,
    };
    let chunks: Vec<Chunk> = recovered.batches.into_iter().map(Arc::new).collect();
    // The tail (chunks, key map, tenant indexes) and the tenants' last seqs are independent:
    // build them side by side.
    let (tail, tenant_seqs) = std::thread::scope(|scope| {
        let fold = scope.spawn(|| last_tenant_seqs(&manifest.tenant_seqs, &chunks));
        let mut tail = Tail::default();
        tail.push_replayed(
            chunks
                .iter()
                .zip(recovered.prepared)
                .map(|(chunk, prepared)| {
                    (
                        Arc::clone(chunk),
                        prepared.bytes,
                        prepared.key_hashes,
                        Arc::new(prepared.tenants),
                    )
                })
                .collect(),
        );
        let tenant_seqs = fold
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (tail, tenant_seqs)
    });
    let next_seq = recovered.last_seq.max(manifest.sealed_through) + 1;
    let wal = WalWriter::open(
        &wal_dir,
        Arc::clone(&vfs),
        next_seq,
        options.wal_file_bytes,
        recovered.files,
    )?;

    let poison = wal.poison();
    Ok(Inner {
        state: RwLock::new(State {
            tail,
            segments: Arc::new(segments),
            manifest,
        }),
        queue: Mutex::new(Queue::default()),
        queue_ready: Condvar::new(),
        queue_room: Condvar::new(),
        commit: Mutex::new(CommitState::new(wal, next_seq, tenant_seqs)),
        sync_queue: Mutex::new(SyncQueue::default()),
        sync_ready: Condvar::new(),
        sync_room: Condvar::new(),
        sync_turn: Condvar::new(),
        published_seq: AtomicU64::new(next_seq - 1),
        acknowledged_seq: AtomicU64::new(next_seq - 1),
        maintenance: Mutex::new(()),
        ledger: Mutex::new(ledger),
        manifest_in_doubt: AtomicBool::new(false),
        retention_pass: Mutex::new(()),
        deferred_index: Mutex::new(deferred),
        merge_failed: Mutex::new(HashMap::new()),
        merge_decoded: Mutex::new(HashMap::new()),
        archiving: Mutex::new(std::collections::HashSet::new()),
        pacing: Mutex::new(super::pacing::Pacing::default()),
        tail_room_lock: Mutex::new(()),
        tail_room: Condvar::new(),
        subscribers: RwLock::new(Vec::new()),
        metrics: super::StoreMetrics::default(),
        shutdown: AtomicBool::new(false),
        background_lock: Mutex::new(()),
        background_wake: Condvar::new(),
        recovery,
        poison,
        seal_failure: Mutex::new(None),
        _lock_file: lock_file,
        options,
    })
}

/// Each tenant's last `tenant_seq`: the manifest's (tenants of sealed events), raised by the
/// replayed events (tenant_seq grows with seq, so a tenant's last replayed event holds its
/// highest).
fn last_tenant_seqs(sealed: &BTreeMap<String, u64>, chunks: &[Chunk]) -> HashMap<String, u64> {
    // Keyed by the tenant's own (inline) text rather than a `&str` into an event: comparing
    // keys then stays in the map instead of missing the cache on an event read long before.
    let mut last: HashMap<Text, u64, BuildHasherDefault<FxHasher>> = HashMap::default();
    for event in chunks.iter().flat_map(|chunk| chunk.iter()) {
        match last.get_mut(event.event.tenant.as_str()) {
            Some(seq) => *seq = event.tenant_seq,
            None => {
                last.insert(event.event.tenant.clone(), event.tenant_seq);
            }
        }
    }
    let mut tenant_seqs: HashMap<String, u64> =
        sealed.iter().map(|(t, s)| (t.clone(), *s)).collect();
    for (tenant, seq) in last {
        match tenant_seqs.get_mut(tenant.as_str()) {
            Some(counter) => *counter = (*counter).max(seq),
            None => {
                tenant_seqs.insert(tenant.into_string(), seq);
            }
        }
    }
    tenant_seqs
}

/// What [`Tail::push_indexed`] needs of one replayed batch, computed by
/// [`prepare_replayed`] on the thread that decoded the batch.
struct PreparedBatch {
    /// Approximate bytes in memory.
    bytes: u64,
    /// Each event's key hash (0: no `id`).
    key_hashes: Vec<u64>,
    tenants: TenantIndex,
}

fn prepare_replayed(batch: &[StoredEvent]) -> PreparedBatch {
    let mut bytes = 0;
    let mut key_hashes = Vec::with_capacity(batch.len());
    for event in batch {
        bytes += approx_bytes(event);
        key_hashes.push(
            event
                .event
                .id
                .as_ref()
                .map_or(0, |id| key_hash(&event.event.tenant, id)),
        );
    }
    PreparedBatch {
        bytes,
        key_hashes,
        tenants: TenantIndex::of(batch),
    }
}

/// Removes files a crash left behind: segments (and their index files) written but never
/// published, or unpublished by a merge or retention, and partition directories left empty.
/// Their events are still in the WAL or in the published segments.
fn remove_orphans(dir: &Path, manifest: &Manifest, options: &StoreOptions) -> Result<()> {
    let listed = listed_stems(manifest);
    let vfs = options.vfs.as_ref();
    for day in partition_dirs(dir)? {
        if remove_unlisted(vfs, &day, &listed)? == 0 {
            vfs.remove_dir_all(&day).map_err(|e| Error::io(&day, e))?;
        }
    }
    Ok(())
}

/// A store without a MANIFEST is new, or crashed during its first seal (the WAL is trimmed
/// only once a manifest lists the seal, so it still starts at seq 1, and the segment files
/// the first seal left are orphans, removed before the WAL is replayed). Sealed segment files
/// beside a WAL that no longer starts at seq 1 mean the MANIFEST was lost: opening as a new
/// store would remove the segments as orphans and their events with them, so the open (and
/// `verify`) refuses, naming what to restore, and changes nothing.
pub(crate) fn check_store_without_manifest(dir: &Path) -> Result<()> {
    let mut segment_files = Vec::new();
    for partition in partition_dirs(dir)? {
        for entry in std::fs::read_dir(&partition).map_err(|e| Error::io(&partition, e))? {
            let path = entry.map_err(|e| Error::io(&partition, e))?.path();
            if path.extension().is_some_and(|e| e == "seg") {
                segment_files.push(path);
            }
        }
    }
    let Some(first_file) = segment_files.iter().min() else {
        return Ok(());
    };
    let wal = crate::wal::recovery::list_files(&dir.join("wal"))?;
    if wal.first().is_some_and(|(first_seq, _)| *first_seq == 1) {
        return Ok(());
    }
    Err(Error::Corrupt {
        path: dir.join(crate::manifest::FILE_NAME),
        offset: 0,
        reason: format!(
            "the manifest is missing, but the store holds {} sealed segment file(s) (first: {}) \
             whose events the WAL no longer has: restore MANIFEST (from a backup) before \
             opening; nothing was changed",
            segment_files.len(),
            first_file.display()
        ),
    })
}

/// Every directory under `segments/{class}/` of a data directory: the partition directories
/// (and any set aside by retention), none when there is no `segments/` yet.
fn partition_dirs(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let root = dir.join("segments");
    let classes = match std::fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&root, e)),
    };
    let mut dirs = Vec::new();
    for class in classes {
        let class = class.map_err(|e| Error::io(&root, e))?.path();
        if !class.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&class).map_err(|e| Error::io(&class, e))? {
            let path = entry.map_err(|e| Error::io(&class, e))?.path();
            if path.is_dir() {
                dirs.push(path);
            }
        }
    }
    Ok(dirs)
}

/// Puts back a partition directory a retention pass set aside (`{class}/.{day}.dropping`, see
/// `retention::finish_copy`) and did not get to remove before the process stopped, when its
/// place is free: its copy in the archive is whole, and the open below finishes the move when
/// the partition is past its retention and the archive is there; otherwise (the archive
/// directory unmounted, the retention lengthened since) the store opens with the partition
/// where it was, instead of refusing to open over segments it set aside itself.
fn restore_set_aside(dir: &Path, vfs: &dyn crate::io::Vfs) -> Result<()> {
    for aside in partition_dirs(dir)? {
        let name = aside
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(day) = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".dropping"))
        else {
            continue;
        };
        let place = aside.with_file_name(day);
        if !place.exists() {
            vfs.rename(&aside, &place)
                .map_err(|e| Error::io(&aside, e))?;
            let class = aside.parent().unwrap_or(dir);
            vfs.sync_dir(class).map_err(|e| Error::io(class, e))?;
        }
    }
    Ok(())
}

/// The `{segment_id:016x}` prefix of every file of the segments `manifest` lists.
pub(crate) fn listed_stems(manifest: &Manifest) -> HashSet<String> {
    manifest
        .segments
        .iter()
        .map(|e| format!("{:016x}", e.segment_id))
        .collect()
}

/// Removes from the partition directory `day` every file and directory whose name does not
/// start with a listed segment's `{id:016x}.` (what a seal or merge that failed before its
/// publication left); returns how many entries are kept.
pub(crate) fn remove_unlisted(
    vfs: &dyn crate::io::Vfs,
    day: &Path,
    listed: &HashSet<String>,
) -> Result<usize> {
    let mut kept = 0;
    for file in std::fs::read_dir(day).map_err(|e| Error::io(day, e))? {
        let file = file.map_err(|e| Error::io(day, e))?.path();
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let stem = name.split('.').next().unwrap_or_default();
        if listed.contains(stem) {
            kept += 1;
            continue;
        }
        if file.is_dir() {
            vfs.remove_dir_all(&file).map_err(|e| Error::io(&file, e))?;
        } else {
            vfs.remove_file(&file).map_err(|e| Error::io(&file, e))?;
        }
    }
    Ok(kept)
}
