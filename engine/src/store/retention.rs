//! Retention: archive, then drop, whole partitions past their class's retention.
//!
//! Order, for crash safety: (1) with an archive directory, the partition directory is renamed
//! into it (copied across file systems); (2) a manifest without the partition is published;
//! (3) without an archive, the directory is removed. A crash after (1) is finished at the next
//! open (a listed segment found in the archive is dropped from the manifest); after (2) the
//! leftover directory is an orphan that open removes. Dropping is a rename or an unlink: its cost
//! does not depend on the partition's size, and it takes the state lock only to swap the segment
//! list, so ingest and queries in flight go on (readers keep their mappings of deleted files).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use super::Inner;
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::partition::{PartitionKey, MICROS_PER_DAY};

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
        let _maintenance = self.maintenance.lock();
        let manifest = self.state.read().manifest.clone();
        let retention = &self.options.retention;
        let expired: BTreeSet<PartitionKey> = manifest
            .segments
            .iter()
            .map(|e| &e.partition)
            .filter(|p| {
                let days = i64::from(retention.days_of_class(&p.class));
                p.end_us().saturating_add(days * MICROS_PER_DAY) <= now_us
            })
            .cloned()
            .collect();
        let mut report = RetentionReport {
            archived: self.options.archive_dir.is_some(),
            ..RetentionReport::default()
        };
        for partition in expired {
            self.drop_partition(&partition, &mut report)?;
        }
        Ok(report)
    }

    fn drop_partition(&self, partition: &PartitionKey, report: &mut RetentionReport) -> Result<()> {
        let vfs = self.options.vfs.as_ref();
        let live = Manifest::partition_dir(&self.options.dir, partition);
        if let Some(archive) = &self.options.archive_dir {
            let target = archive.join(partition.relative_dir());
            if live.exists() {
                move_dir(vfs, &live, &target)?;
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
        manifest.segments.retain(|e| &e.partition != partition);
        manifest.generation += 1;
        manifest.store(&self.options.dir, vfs)?;
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
        Ok(())
    }
}

/// Moves a directory durably: a rename on one file system, else copy, fsync, remove. The
/// source is removed only once the copy and its entry in the archive are durable, so a power
/// loss at any point leaves the partition in one place or the other (or both).
fn move_dir(vfs: &dyn crate::io::Vfs, from: &Path, to: &Path) -> Result<()> {
    let parent = to.parent().unwrap_or(to);
    crate::io::create_dir_all_durably(vfs, parent).map_err(|e| Error::io(parent, e))?;
    // An earlier pass that stopped part way (it crashed, or the disk filled) left `to`:
    // merge into it file by file.
    let copy = to.exists()
        || match vfs.rename(from, to) {
            Ok(()) => false,
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => true,
            Err(e) => return Err(Error::io(to, e)),
        };
    if copy {
        copy_dir(vfs, from, to)?;
        // `to` itself may be new, or left by a pass that never made its entry durable.
        vfs.sync_dir(parent).map_err(|e| Error::io(parent, e))?;
        vfs.remove_dir_all(from).map_err(|e| Error::io(from, e))?;
    }
    vfs.sync_dir(parent).map_err(|e| Error::io(parent, e))?;
    if let Some(from_parent) = from.parent() {
        vfs.sync_dir(from_parent)
            .map_err(|e| Error::io(from_parent, e))?;
    }
    Ok(())
}

fn copy_dir(vfs: &dyn crate::io::Vfs, from: &Path, to: &Path) -> Result<()> {
    crate::io::create_dir_all_durably(vfs, to).map_err(|e| Error::io(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| Error::io(from, e))? {
        let source = entry.map_err(|e| Error::io(from, e))?.path();
        let Some(name) = source.file_name() else {
            continue;
        };
        let target = to.join(name);
        if source.is_dir() {
            copy_dir(vfs, &source, &target)?;
            continue;
        }
        let bytes = std::fs::read(&source).map_err(|e| Error::io(&source, e))?;
        let mut file = vfs.create(&target).map_err(|e| Error::io(&target, e))?;
        crate::io::write_durably(file.as_mut(), &bytes).map_err(|e| Error::io(&target, e))?;
    }
    vfs.sync_dir(to).map_err(|e| Error::io(to, e))
}
