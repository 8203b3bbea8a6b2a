//! Helpers shared by the integration tests.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use auditlog_engine::io::{RealVfs, SyncHandle, Vfs, VfsFile};
use auditlog_engine::partition::RetentionConfig;
use auditlog_engine::store::{Store, StoreOptions};
use auditlog_engine::Durability;

/// The real file system without fsyncs: these tests are about reads, and fsyncs would make
/// them slow (and durability is the engine's tests' business).
struct NoSyncVfs;

struct NoSyncFile(Box<dyn VfsFile>);

struct NoSyncHandle;

impl SyncHandle for NoSyncHandle {
    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }
}

impl VfsFile for NoSyncFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_handle(&self) -> io::Result<Box<dyn SyncHandle>> {
        Ok(Box::new(NoSyncHandle))
    }
}

impl Vfs for NoSyncVfs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        Ok(Box::new(NoSyncFile(RealVfs.create(path)?)))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        Ok(Box::new(NoSyncFile(RealVfs.open_append(path)?)))
    }
    fn open_rewrite(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        Ok(Box::new(NoSyncFile(RealVfs.open_rewrite(path)?)))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealVfs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        RealVfs.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        RealVfs.remove_dir_all(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        RealVfs.create_dir_all(path)
    }
    fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }
}

/// A store driven by hand (no background thread), with tiny blocks so that a few events make
/// multi-block segments whose blocks are shared by tenants, merging at two segments, and
/// retention: `standard` 30 days, `extended` 365 days for the tenants in `extended`. With
/// `indexed`, segments get their filter and text indexes (the server's configuration); without,
/// queries scan (a store opened by a tool without the hook).
pub fn open_store(dir: &Path, extended: &[&str], indexed: bool) -> Store {
    open_store_tuned(dir, extended, indexed, |_| {})
}

/// [`open_store`] with more options changed by `tune`.
pub fn open_store_tuned(
    dir: &Path,
    extended: &[&str],
    indexed: bool,
    tune: impl FnOnce(&mut StoreOptions),
) -> Store {
    let mut retention = RetentionConfig::default();
    retention.class_days.insert("standard".into(), 30);
    retention.class_days.insert("extended".into(), 365);
    for tenant in extended {
        retention
            .tenant_classes
            .insert(tenant.to_string(), "extended".into());
    }
    let mut options = StoreOptions::new(dir);
    options.background = false;
    options.vfs = Arc::new(NoSyncVfs);
    options.durability = Durability::Interval(Duration::from_secs(3600));
    options.retention = retention;
    options.merge_segments_min = 2;
    options.encode.block_rows = 4;
    if indexed {
        options.segment_hook = Some(auditlog_index::SegmentIndexer::hook());
    }
    tune(&mut options);
    Store::open(options).unwrap()
}
