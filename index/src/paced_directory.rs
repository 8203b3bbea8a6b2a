//! A tantivy [`Directory`] that builds a text index on disk like [`MmapDirectory`], except that
//! the files it writes are flushed to disk every MiB as they are written
//! ([`auditlog_engine::io::PacedFile`]) instead of once when tantivy finishes each one: the
//! WAL's fsyncs then never queue behind megabytes of index data (see
//! [`auditlog_engine::io::BACKGROUND_FLUSH_BYTES`]).
//!
//! ```
//! use auditlog_index::paced_directory::PacedDirectory;
//! use tantivy::schema::{Schema, TEXT};
//! let dir = tempfile::tempdir().unwrap();
//! let mut schema = Schema::builder();
//! schema.add_text_field("body", TEXT);
//! let directory = PacedDirectory::open(dir.path()).unwrap();
//! let index = tantivy::Index::create(directory, schema.build(), Default::default()).unwrap();
//! assert!(index.searchable_segment_ids().unwrap().is_empty());
//! ```

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use auditlog_engine::io::PacedFile;
use tantivy::directory::error::{DeleteError, OpenDirectoryError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    AntiCallToken, Directory, FileHandle, MmapDirectory, TerminatingWrite, WatchCallback,
    WatchHandle, WritePtr,
};

/// [`MmapDirectory`] with paced writes (see the module docs).
#[derive(Debug, Clone)]
pub struct PacedDirectory {
    root: PathBuf,
    inner: MmapDirectory,
}

impl PacedDirectory {
    /// Opens an existing directory.
    pub fn open(root: &Path) -> Result<Self, OpenDirectoryError> {
        Ok(Self {
            root: root.to_path_buf(),
            inner: MmapDirectory::open(root)?,
        })
    }
}

/// A file tantivy writes: flushed every MiB, synced when tantivy terminates it.
struct PacedWriter(Option<PacedFile>);

impl Write for PacedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.0 {
            Some(file) => file.write(buf),
            None => Err(io::Error::other("write after terminate")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        // As MmapDirectory's writer: data reaches the file on every write; durability comes
        // from the pacing and `terminate`.
        Ok(())
    }
}

impl TerminatingWrite for PacedWriter {
    fn terminate_ref(&mut self, _: AntiCallToken) -> io::Result<()> {
        match self.0.take() {
            Some(file) => file.finish().map(drop),
            None => Ok(()),
        }
    }
}

impl Directory for PacedDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        self.inner.get_file_handle(path)
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        self.inner.delete(path)
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        self.inner.exists(path)
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        // As MmapDirectory: a new file (tantivy never rewrites one); durable once terminated
        // and the directory synced.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.root.join(path))
            .map_err(|error| {
                if error.kind() == io::ErrorKind::AlreadyExists {
                    OpenWriteError::FileAlreadyExists(path.to_path_buf())
                } else {
                    OpenWriteError::wrap_io_error(error, path.to_path_buf())
                }
            })?;
        Ok(BufWriter::new(Box::new(PacedWriter(Some(PacedFile::new(
            file,
        ))))))
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        self.inner.atomic_read(path)
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.inner.atomic_write(path, data)
    }

    fn sync_directory(&self) -> io::Result<()> {
        self.inner.sync_directory()
    }

    fn watch(&self, watch_callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        self.inner.watch(watch_callback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_files_are_whole_and_refused_twice() {
        let dir = tempfile::tempdir().unwrap();
        let directory = PacedDirectory::open(dir.path()).unwrap();
        let bytes: Vec<u8> = (0..(3 << 20) + 17).map(|i| (i % 251) as u8).collect();
        let mut writer = directory.open_write(Path::new("a.bin")).unwrap();
        writer.write_all(&bytes).unwrap();
        writer.terminate().unwrap();
        assert_eq!(std::fs::read(dir.path().join("a.bin")).unwrap(), bytes);
        let read = directory.open_read(Path::new("a.bin")).unwrap();
        assert_eq!(read.read_bytes().unwrap().as_slice(), &bytes[..]);
        assert!(matches!(
            directory.open_write(Path::new("a.bin")),
            Err(OpenWriteError::FileAlreadyExists(_))
        ));
    }
}
