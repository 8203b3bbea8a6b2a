//! Retention: archive, then drop, whole partitions past their class's retention.
//!
//! Order, for crash safety: (1) with an archive directory, the partition directory is renamed
//! into it (copied across file systems); (2) a manifest without the partition is published;
//! (3) without an archive, the directory is removed. A crash after (1) is finished at the next
//! open (a listed segment found in the archive is dropped from the manifest); after (2) the
//! leftover directory is an orphan that open removes. Dropping is a rename or an unlink: its cost
//! does not depend on the partition's size, and it takes the state lock only to swap the segment
//! list, so ingest and queries in flight go on (readers keep their mappings of deleted files).
//!
//! Passes run on a thread of their own (not the sealing thread). An archive on another file
//! system is a copy, which takes time in proportion to the partition, a piece at a time: it
//! runs without the maintenance lock, so seals and index builds go on meanwhile
//! (merges leave expired partitions alone); under the lock again, what was added since (a seal's
//! segment, an index built late) is copied too before the source is removed.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::Inner;
use crate::error::{Error, Result};
use crate::io::read_full;
use crate::manifest::Manifest;
use crate::partition::PartitionKey;

/// What a retention pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub partitions: Vec<PartitionKey>,
    pub segments: u64,
    pub rows: u64,
    pub bytes: u64,
    pub archived: bool,
}

impl Inner {
    pub(crate) fn expire(&self, now_us: i64) -> Result<RetentionReport> {
        // One pass at a time: a pass leaves the maintenance lock while it copies.
        let _pass = self.retention_pass.lock();
        let manifest = self.state.read().manifest.clone();
        let expired: BTreeSet<PartitionKey> = manifest
            .segments
            .iter()
            .map(|e| &e.partition)
            .filter(|p| self.is_expired(p, now_us))
            .cloned()
            .collect();
        let mut report = RetentionReport {
            archived: self.options.archive_dir.is_some(),
            ..RetentionReport::default()
        };
        // A partition that cannot be dropped (its archive refused, a full disk) stays live and
        // is tried again at the next pass; the partitions after it are dropped meanwhile.
        let mut first_failure = None;
        for partition in expired {
            if self.shutdown.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            if let Err(error) = self.drop_partition(&partition, &mut report) {
                first_failure.get_or_insert(error);
            }
        }
        match first_failure {
            Some(error) => Err(error),
            None => Ok(report),
        }
    }

    /// Whether `partition` is past its class's retention at `now_us`.
    pub(crate) fn is_expired(&self, partition: &PartitionKey, now_us: i64) -> bool {
        self.options.retention.is_expired(partition, now_us)
    }

    fn drop_partition(&self, partition: &PartitionKey, report: &mut RetentionReport) -> Result<()> {
        let vfs = self.options.vfs.as_ref();
        let live = Manifest::partition_dir(&self.options.dir, partition);
        let mut maintenance = self.maintenance.lock();
        // A manifest in doubt (written part way by a failed publication) may list segments the
        // in-memory one does not: it is settled before unlisted files are removed below.
        self.settle_manifest()?;
        if let Some(archive) = &self.options.archive_dir {
            // Only what the manifest lists goes to the archive: files a failed seal or merge
            // left (their rows are in listed segments too) would come back as duplicates from
            // a restored archive. Nothing writes here while the lock is held.
            if live.exists() {
                let listed = super::open::listed_stems(&self.state.read().manifest);
                super::open::remove_unlisted(vfs, &live, &listed)?;
            }
            let target = archive.join(partition.relative_dir());
            if live.exists() && !rename_dir(vfs, &live, &target)? {
                // Another file system, or a move an earlier pass left part way: copy without
                // the lock, then what was added meanwhile with it, then remove the source.
                // Each copy takes the files of the segments listed when it starts: a seal
                // that runs meanwhile and fails before its publication leaves files that
                // must not reach the archive (their rows are sealed again later).
                let listed = super::open::listed_stems(&self.state.read().manifest);
                self.archiving.lock().insert(partition.clone());
                drop(maintenance);
                let copied = copy_dir(vfs, &live, &target, false, &listed, &self.shutdown);
                maintenance = self.maintenance.lock();
                self.archiving.lock().remove(partition);
                copied?;
                // A publication that failed part way while the lock was let go may have left
                // a manifest on disk listing a segment written here meanwhile: settled again
                // before what is listed is copied and the source removed.
                self.settle_manifest()?;
                let listed = super::open::listed_stems(&self.state.read().manifest);
                copy_dir(vfs, &live, &target, true, &listed, &self.shutdown)?;
                finish_copy(vfs, &live, &target)?;
            }
        }
        let mut manifest = self.state.read().manifest.clone();
        for entry in manifest
            .segments
            .iter()
            .filter(|e| &e.partition == partition)
        {
            report.segments += 1;
            report.rows += entry.rows;
            report.bytes += entry.bytes;
        }
        let removed: Vec<u64> = manifest
            .segments
            .iter()
            .filter(|e| &e.partition == partition)
            .map(|e| e.segment_id)
            .collect();
        manifest.segments.retain(|e| &e.partition != partition);
        let change = crate::ledger::Change {
            reason: crate::ledger::Reason::Retention,
            at_us: super::now_us(),
            added: Vec::new(),
            removed,
        };
        self.publish_segments(change, &mut manifest)
            .map_err(super::publish::PublishFailure::into_error)?;
        {
            let mut state = self.state.write();
            let segments: Vec<_> = state
                .segments
                .iter()
                .filter(|s| &s.entry.partition != partition)
                .cloned()
                .collect();
            state.segments = Arc::new(segments);
            state.manifest = manifest;
        }
        if live.exists() {
            vfs.remove_dir_all(&live).map_err(|e| Error::io(&live, e))?;
        }
        if let Some(parent) = live.parent() {
            vfs.sync_dir(parent).map_err(|e| Error::io(parent, e))?;
        }
        report.partitions.push(partition.clone());
        drop(maintenance);
        Ok(())
    }
}

/// Moves a directory durably by renaming it, when `to` does not exist yet and both are on one
/// file system; returns false (having done nothing) when it must be copied instead.
fn rename_dir(vfs: &dyn crate::io::Vfs, from: &Path, to: &Path) -> Result<bool> {
    let parent = to.parent().unwrap_or(to);
    crate::io::create_dir_all_durably(vfs, parent).map_err(|e| Error::io(parent, e))?;
    // An earlier pass that stopped part way (it crashed, or the disk filled) left `to`: the
    // copy merges into it file by file.
    if to.exists() {
        return Ok(false);
    }
    match vfs.rename(from, to) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => return Ok(false),
        Err(e) => return Err(Error::io(to, e)),
    }
    sync_parents(vfs, from, to).map(|()| true)
}

/// After [`copy_dir`]: removes the source once the copy and its entry in the archive are
/// durable, so a power loss at any point leaves the partition in one place or the other (or
/// both).
///
/// The source is first renamed aside (`{class}/.{day}.dropping`), in one step, and only then
/// removed: a crash in the middle of removing it file by file would otherwise leave a
/// partition whose segment is still there without its index files, which the next open
/// rebuilds (other bytes than the archived copy's). An open puts back what is left aside
/// when its place is free (see `open::restore_set_aside`), and finishes the move from there.
fn finish_copy(vfs: &dyn crate::io::Vfs, from: &Path, to: &Path) -> Result<()> {
    let parent = to.parent().unwrap_or(to);
    // `to` itself may be new, or left by a pass that never made its entry durable.
    vfs.sync_dir(parent).map_err(|e| Error::io(parent, e))?;
    let aside = set_aside_name(from);
    if aside.exists() {
        vfs.remove_dir_all(&aside)
            .map_err(|e| Error::io(&aside, e))?;
    }
    vfs.rename(from, &aside).map_err(|e| Error::io(from, e))?;
    sync_parents(vfs, from, to)?;
    vfs.remove_dir_all(&aside)
        .map_err(|e| Error::io(&aside, e))?;
    sync_parents(vfs, from, to)
}

/// Where [`finish_copy`] puts a partition directory before removing it: `.{day}.dropping`
/// beside it.
pub(crate) fn set_aside_name(partition_dir: &Path) -> std::path::PathBuf {
    let name = partition_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    partition_dir.with_file_name(format!(".{name}.dropping"))
}

fn sync_parents(vfs: &dyn crate::io::Vfs, from: &Path, to: &Path) -> Result<()> {
    let parent = to.parent().unwrap_or(to);
    vfs.sync_dir(parent).map_err(|e| Error::io(parent, e))?;
    if let Some(from_parent) = from.parent() {
        vfs.sync_dir(from_parent)
            .map_err(|e| Error::io(from_parent, e))?;
    }
    Ok(())
}

/// Refuses, before anything is copied, a copy of `from` into `to` that would overwrite a file
/// of `to` that is not a prefix of its source (what an earlier, cut short copy of the same file
/// leaves). Anything else is another file under the same name (an archive directory shared
/// with another store, or a store created again with segment ids starting over), which the
/// archive must keep.
///
/// With `only_new` (the copy under the maintenance lock, after the first), only files the copy
/// would write over are compared (those whose length differs from the source's): the others
/// were compared or written by the first copy, and reading them again would hold seals back.
fn refuse_foreign_files(
    from: &Path,
    to: &Path,
    only_new: bool,
    closing: &AtomicBool,
) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(to) else {
        return Ok(());
    };
    for entry in entries {
        let target = entry.map_err(|e| Error::io(to, e))?.path();
        let Some(name) = target.file_name() else {
            continue;
        };
        let source = from.join(name);
        if target.is_dir() {
            if source.is_dir() {
                refuse_foreign_files(&source, &target, only_new, closing)?;
            }
            continue;
        }
        // Only segment files are compared: index files are derived from their segment, and
        // one rebuilt since an earlier copy (the source's were lost in a crash) differs
        // without being another store's; it is copied over.
        if !source.is_file() || source.extension().is_none_or(|e| e != "seg") {
            continue;
        }
        let length = |path: &Path| std::fs::metadata(path).map(|m| m.len());
        let existing = length(&target).map_err(|e| Error::io(&target, e))?;
        if only_new && existing == length(&source).map_err(|e| Error::io(&source, e))? {
            continue;
        }
        if !is_prefix_of(&target, &source, closing)? {
            return Err(foreign_file(&target));
        }
    }
    Ok(())
}

/// Whether the file `prefix` holds the first bytes of `file` (or all of it), read a piece at a
/// time.
fn is_prefix_of(prefix: &Path, file: &Path, closing: &AtomicBool) -> Result<bool> {
    let mut short = std::fs::File::open(prefix).map_err(|e| Error::io(prefix, e))?;
    let mut long = std::fs::File::open(file).map_err(|e| Error::io(file, e))?;
    let (mut a, mut b) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        if closing.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        let read = read_full(&mut short, &mut a).map_err(|e| Error::io(prefix, e))?;
        if read == 0 {
            return Ok(true);
        }
        let other = read_full(&mut long, &mut b[..read]).map_err(|e| Error::io(file, e))?;
        if other < read || a[..read] != b[..read] {
            return Ok(false);
        }
    }
}

fn foreign_file(target: &Path) -> Error {
    Error::io(
        target,
        std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "the archive already holds a different file of this name (is the archive directory \
             shared with another store?); it is not overwritten and the partition stays live",
        ),
    )
}

/// Copies `from` into `to` durably, file by file, over what `to` holds, except the
/// temporaries of files being written (`*.tmp`). With `only_new`, files this pass already
/// copied (in `to` with the same length) are left alone: segment and index files never change
/// once written, so a second call copies only what was added since.
/// Every call first refuses to overwrite another segment file of the same name
/// ([`refuse_foreign_files`]): one may appear between the two calls.
/// Only the files of `listed` segments (their `{id:016x}` stems) are copied from `from`
/// itself. A store closing stops the copy between files (the next open's pass goes on from
/// there).
fn copy_dir(
    vfs: &dyn crate::io::Vfs,
    from: &Path,
    to: &Path,
    only_new: bool,
    listed: &HashSet<String>,
    closing: &AtomicBool,
) -> Result<()> {
    refuse_foreign_files(from, to, only_new, closing)?;
    copy_tree(vfs, from, to, only_new, Some(listed), closing)
}

fn copy_tree(
    vfs: &dyn crate::io::Vfs,
    from: &Path,
    to: &Path,
    only_new: bool,
    listed: Option<&HashSet<String>>,
    closing: &AtomicBool,
) -> Result<()> {
    crate::io::create_dir_all_durably(vfs, to).map_err(|e| Error::io(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| Error::io(from, e))? {
        let source = entry.map_err(|e| Error::io(from, e))?.path();
        let Some(name) = source.file_name() else {
            continue;
        };
        let text = name.to_string_lossy();
        if text.ends_with(".tmp") {
            continue;
        }
        if listed.is_some_and(|listed| !listed.contains(text.split('.').next().unwrap_or_default()))
        {
            continue;
        }
        let target = to.join(name);
        if closing.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        if source.is_dir() {
            copy_tree(vfs, &source, &target, only_new, None, closing)?;
            continue;
        }
        let copied = |source: &Path, target: &Path| -> Option<bool> {
            Some(std::fs::metadata(target).ok()?.len() == std::fs::metadata(source).ok()?.len())
        };
        if only_new && copied(&source, &target) == Some(true) {
            continue;
        }
        copy_file(vfs, &source, &target, closing)?;
    }
    vfs.sync_dir(to).map_err(|e| Error::io(to, e))
}

/// Copies one file durably a piece at a time (a segment file can be hundreds of MB; the
/// pieces are flushed and paced like every background write, see `io::write_durably`).
fn copy_file(
    vfs: &dyn crate::io::Vfs,
    source: &Path,
    target: &Path,
    closing: &AtomicBool,
) -> Result<()> {
    let mut input = std::fs::File::open(source).map_err(|e| Error::io(source, e))?;
    let mut file = vfs.create(target).map_err(|e| Error::io(target, e))?;
    let mut piece = vec![0u8; 1 << 20];
    let mut copied = 0u64;
    loop {
        // A store closing does not wait for a large file (the next pass copies it again).
        if closing.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        let read = read_full(&mut input, &mut piece).map_err(|e| Error::io(source, e))?;
        if read == 0 && copied > 0 {
            return Ok(());
        }
        // An empty source still gets its (empty, durable) copy.
        crate::io::write_durably(file.as_mut(), &piece[..read])
            .map_err(|e| Error::io(target, e))?;
        if read == 0 {
            return Ok(());
        }
        copied += read as u64;
    }
}
