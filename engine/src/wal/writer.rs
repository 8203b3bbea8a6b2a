//! Appends framed records to the current WAL file, rotates files, recycles or deletes sealed
//! ones.
//!
//! The writer is single-threaded by construction (the store's commit thread owns it); group
//! commit happens above it: the commit thread hands it the records of many batches at once and
//! it issues one `write` and one `fdatasync` for all of them.
//!
//! Poisoning: after a failed write or fsync nothing more is written (the page cache may have
//! dropped the data, and a retried fsync can report success for lost pages). Every later call
//! fails with [`Error::Poisoned`] until the store is reopened and recovery reads what is durable.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::format::{FileHeader, FILE_HEADER_BYTES, VERSION};
use crate::error::{Error, Result};
use crate::io::{SyncHandle, Vfs, VfsFile};

/// Why the writer refuses to write, shared with whoever fsyncs for it.
#[derive(Clone, Default)]
pub struct Poison(Arc<Mutex<Option<String>>>);

impl Poison {
    /// Fails with [`Error::Poisoned`] once poisoned.
    pub fn check(&self) -> Result<()> {
        match &*self.0.lock() {
            Some(cause) => Err(Error::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// The first failure, if there was one.
    pub fn cause(&self) -> Option<String> {
        self.0.lock().clone()
    }

    /// Records the first failure; later ones keep the first cause.
    pub fn set(&self, error: &Error) {
        let mut cause = self.0.lock();
        if cause.is_none() {
            *cause = Some(error.to_string());
        }
    }
}

/// How many sealed WAL files are kept, renamed `{first_seq:020}.spare`, to be written over by
/// the next files instead of deleted (more are deleted).
///
/// Why: writing over blocks a file already has costs the disk less than growing a file. No
/// block is allocated and the size does not change, so an `fdatasync` writes the data and a
/// flush, not the inode too (and on ext4 mounted with `discard`, not a discard per fsync
/// either): on this machine 360 KB writes each fdatasync'd went at 400-480 MB/s with a p50
/// fsync of 0.63-0.74 ms written over a file, against 244-294 MB/s and 1.0-1.2 ms appended
/// (a Python probe, two rounds of each). And a deleted 64 MiB file is discarded all at once.
/// Stale records past the end of what a recycled file holds were framed with the file's
/// earlier salt, so they never verify: recovery sees the end of the new records as a torn tail.
/// A file is cut to what it holds when the writer moves on from it ([`WalWriter::rotate`],
/// [`WalWriter::trim`]), so only the newest file can end in stale bytes.
pub const SPARE_FILES: usize = 2;

/// Suffix of a new WAL file until its header is durable (see [`WalWriter::start_file`]).
const NEW_FILE_SUFFIX: &str = ".tmp";

/// The entries of `dir` as (file name, path), in no particular order; none when `dir` does
/// not exist. Names that are not UTF-8 are left out (no file of ours has one).
pub(super) fn dir_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if let Ok(name) = entry.file_name().into_string() {
            out.push((name, entry.path()));
        }
    }
    Ok(out)
}

/// Lists the spare files in `dir` (see [`SPARE_FILES`]), oldest first.
fn list_spares(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut spares: Vec<PathBuf> = dir_entries(dir)?
        .into_iter()
        .filter(|(name, _)| name.ends_with(".spare"))
        .map(|(_, path)| path)
        .collect();
    spares.sort();
    Ok(spares)
}

/// File name of the WAL file whose first event has `first_seq`.
pub fn file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.wal")
}

/// Parses a WAL file name back into its first seq.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    (digits.len() == 20).then(|| digits.parse().ok()).flatten()
}

/// A WAL file just started by [`WalWriter::start_file`], its header durable.
struct Started {
    file: Box<dyn VfsFile>,
    path: PathBuf,
    salt: u64,
    /// It was a spare: past what is written to it, it holds stale bytes.
    recycled: bool,
}

/// The WAL writer.
pub struct WalWriter {
    dir: PathBuf,
    vfs: Arc<dyn Vfs>,
    file: Box<dyn VfsFile>,
    /// Fsyncs the current file from the commit pipeline's sync thread.
    sync_handle: Arc<dyn SyncHandle>,
    path: PathBuf,
    salt: u64,
    file_bytes: u64,
    rotate_bytes: u64,
    /// Every WAL file on disk, oldest first: (first seq, path). The last is the current one.
    files: VecDeque<(u64, PathBuf)>,
    /// Sealed files kept to be written over (see [`SPARE_FILES`]); filled by
    /// [`SealedFiles::remove`] outside the commit lock, emptied by rotations.
    spares: Arc<Mutex<Vec<PathBuf>>>,
    /// The current file was a spare: past `file_bytes` it holds stale bytes.
    recycled: bool,
    poison: Poison,
    /// Bytes written since the last fsync (interval durability leaves some unsynced).
    unsynced_bytes: u64,
    /// How much of the current file is known durable: raised by [`WalWriter::sync`] and by
    /// whoever fsyncs through [`WalWriter::sync_handle`] ([`DurableMark::raise`]); framed into
    /// every record as its `durable_through` (see [`super::format`]).
    durable: DurableMark,
}

/// How much of one WAL file is known durable (the end of the last write an `fdatasync` that
/// has completed covered), shared by the writer and the threads that fsync for it.
///
/// ```
/// use auditlog_engine::wal::writer::DurableMark;
/// let mark = DurableMark::new(32);
/// mark.raise(500);
/// mark.raise(400); // an fsync that finished later but covered less
/// assert_eq!(mark.get(), 500);
/// ```
#[derive(Clone, Debug)]
pub struct DurableMark(Arc<AtomicU64>);

impl DurableMark {
    /// A mark at `offset` (a new file: its header, fsynced before the file got its name).
    pub fn new(offset: u64) -> Self {
        DurableMark(Arc::new(AtomicU64::new(offset)))
    }

    /// Records that the file is durable through `offset`; the mark never goes back.
    pub fn raise(&self, offset: u64) {
        self.0.fetch_max(offset, Ordering::AcqRel);
    }

    /// The offset through which the file is known durable.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

fn random_salt() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish()
}

/// Removes `paths` (files of `dir`) and then fsyncs `dir` once, if there were any.
fn remove_durably(vfs: &dyn Vfs, dir: &Path, paths: &[PathBuf]) -> Result<()> {
    for path in paths {
        vfs.remove_file(path).map_err(|e| Error::io(path, e))?;
    }
    if !paths.is_empty() {
        vfs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}

impl WalWriter {
    /// Starts a writer whose next record goes to a new file starting at `next_seq`.
    /// `existing` lists the WAL files already on disk (oldest first) that still hold unsealed
    /// events; they are kept until [`WalWriter::remove_sealed`] deletes them.
    pub fn open(
        dir: &Path,
        vfs: Arc<dyn Vfs>,
        next_seq: u64,
        rotate_bytes: u64,
        existing: Vec<(u64, PathBuf)>,
    ) -> Result<Self> {
        // Durably: acknowledged events live in this directory until they are sealed.
        crate::io::open_dir_durably(vfs.as_ref(), dir).map_err(|e| Error::io(dir, e))?;
        // New files a crash stopped before they got their names.
        let unfinished: Vec<PathBuf> = dir_entries(dir)?
            .into_iter()
            .filter(|(name, _)| name.ends_with(NEW_FILE_SUFFIX))
            .map(|(_, path)| path)
            .collect();
        remove_durably(vfs.as_ref(), dir, &unfinished)?;
        let mut spares = list_spares(dir)?;
        if spares.len() > SPARE_FILES {
            let extra: Vec<PathBuf> = spares.drain(..spares.len() - SPARE_FILES).collect();
            remove_durably(vfs.as_ref(), dir, &extra)?;
        }
        let spares = Arc::new(Mutex::new(spares));
        // A file named for `next_seq` or a later seq holds no event (recovery found none at
        // or past `next_seq`). One named for `next_seq` is replaced by the new file of the
        // same name. One named for a later seq (its events were never durable, and a crash
        // took the file before it back to before them) is removed first: left, it would sort
        // after the new file, and a later recovery would take it for the newest and skip the
        // new file's events as sealed.
        let (existing, empty): (Vec<_>, Vec<_>) = existing
            .into_iter()
            .partition(|(first, _)| *first < next_seq);
        let later: Vec<PathBuf> = empty
            .into_iter()
            .filter(|(first, _)| *first > next_seq)
            .map(|(_, path)| path)
            .collect();
        remove_durably(vfs.as_ref(), dir, &later)?;
        let existing = existing.into_iter();
        let Started {
            file,
            path,
            salt,
            recycled,
        } = Self::start_file(dir, vfs.as_ref(), &spares, next_seq)?;
        let sync_handle = file.sync_handle().map_err(|e| Error::io(&path, e))?.into();
        let mut files: VecDeque<_> = existing.collect();
        files.push_back((next_seq, path.clone()));
        Ok(Self {
            dir: dir.to_path_buf(),
            vfs,
            file,
            sync_handle,
            path,
            salt,
            file_bytes: FILE_HEADER_BYTES as u64,
            rotate_bytes,
            files,
            spares,
            recycled,
            poison: Poison::default(),
            unsynced_bytes: 0,
            durable: DurableMark::new(FILE_HEADER_BYTES as u64),
        })
    }

    /// Starts the file for events from `first_seq`: a spare written over when there is one,
    /// else a new file (created as `{name}.tmp`). Either way the header is durable before the
    /// file has its name, so a crash in between leaves a spare or a `.tmp` file (removed at the
    /// next open), never a `.wal` file whose header is missing or disagrees with its name.
    fn start_file(
        dir: &Path,
        vfs: &dyn Vfs,
        spares: &Mutex<Vec<PathBuf>>,
        first_seq: u64,
    ) -> Result<Started> {
        let path = dir.join(file_name(first_seq));
        let salt = random_salt();
        let header = FileHeader {
            version: VERSION,
            first_seq,
            salt,
        };
        let spare = spares.lock().pop();
        let recycled = spare.is_some();
        let written = spare
            .clone()
            .unwrap_or_else(|| dir.join(format!("{}{NEW_FILE_SUFFIX}", file_name(first_seq))));
        let mut file = match &spare {
            Some(spare) => vfs.open_rewrite(spare).map_err(|e| Error::io(spare, e))?,
            None => vfs.create(&written).map_err(|e| Error::io(&written, e))?,
        };
        file.write_all(&header.encode())
            .map_err(|e| Error::io(&written, e))?;
        file.sync_data().map_err(|e| Error::io(&written, e))?;
        vfs.rename(&written, &path)
            .map_err(|e| Error::io(&written, e))?;
        vfs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Started {
            file,
            path,
            salt,
            recycled,
        })
    }

    /// The current file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The salt that records for the current file must be framed with.
    pub fn salt(&self) -> u64 {
        self.salt
    }

    /// Fails when an earlier write or fsync failed.
    pub fn check_poisoned(&self) -> Result<()> {
        self.poison.check()
    }

    /// The writer's poison, for a thread that fsyncs through [`WalWriter::sync_handle`].
    pub fn poison(&self) -> Poison {
        self.poison.clone()
    }

    /// A handle that fsyncs the current file from another thread. After a rotation it still
    /// refers to the old file, which the rotation made durable.
    pub fn sync_handle(&self) -> Arc<dyn SyncHandle> {
        Arc::clone(&self.sync_handle)
    }

    fn poisoned(&mut self, error: Error) -> Error {
        self.poison.set(&error);
        error
    }

    /// Starts a new file when the current one is full. Call before framing records with
    /// [`WalWriter::salt`], passing the seq of the first event the next records will hold.
    pub fn rotate_if_full(&mut self, next_seq: u64) -> Result<()> {
        self.check_poisoned()?;
        if self.file_bytes < self.rotate_bytes {
            return Ok(());
        }
        self.rotate(next_seq)
    }

    /// Closes the current file (durably) and starts a new one at `next_seq`.
    pub fn rotate(&mut self, next_seq: u64) -> Result<()> {
        self.check_poisoned()?;
        if self.unsynced_bytes > 0 {
            self.sync()?;
        }
        self.trim()?;
        let created = Self::start_file(&self.dir, self.vfs.as_ref(), &self.spares, next_seq)
            .and_then(|started| {
                let handle = started
                    .file
                    .sync_handle()
                    .map_err(|e| Error::io(&started.path, e))?;
                Ok((started, handle))
            });
        match created {
            Ok((
                Started {
                    file,
                    path,
                    salt,
                    recycled,
                },
                handle,
            )) => {
                self.file = file;
                self.sync_handle = handle.into();
                self.path = path.clone();
                self.salt = salt;
                self.recycled = recycled;
                self.file_bytes = FILE_HEADER_BYTES as u64;
                self.durable = DurableMark::new(FILE_HEADER_BYTES as u64);
                self.files.push_back((next_seq, path));
                Ok(())
            }
            Err(error) => Err(self.poisoned(error)),
        }
    }

    /// Writes framed records (one `write`), then fsyncs when `sync` is true.
    pub fn write(&mut self, records: &[u8], sync: bool) -> Result<()> {
        self.check_poisoned()?;
        if let Err(e) = self.file.write_all(records) {
            let error = Error::io(&self.path, e);
            return Err(self.poisoned(error));
        }
        self.file_bytes += records.len() as u64;
        self.unsynced_bytes += records.len() as u64;
        if sync {
            self.sync()?;
        }
        Ok(())
    }

    /// [`WalWriter::write`] of framed records given as parts, written one after the other with
    /// one vectored write (the parts are not copied into one buffer first).
    pub fn write_parts(&mut self, parts: &[&[u8]]) -> Result<()> {
        self.check_poisoned()?;
        if let Err(e) = self.file.write_all_parts(parts) {
            let error = Error::io(&self.path, e);
            return Err(self.poisoned(error));
        }
        let bytes: u64 = parts.iter().map(|part| part.len() as u64).sum();
        self.file_bytes += bytes;
        self.unsynced_bytes += bytes;
        Ok(())
    }

    /// `fdatasync` of the current file.
    pub fn sync(&mut self) -> Result<()> {
        self.check_poisoned()?;
        if let Err(e) = self.file.sync_data() {
            let error = Error::io(&self.path, e);
            return Err(self.poisoned(error));
        }
        self.unsynced_bytes = 0;
        self.durable.raise(self.file_bytes);
        Ok(())
    }

    /// How much of the current file is known durable: the `durable_through` of the records
    /// framed for it now.
    pub fn durable_through(&self) -> u64 {
        self.durable.get()
    }

    /// The current file's durable mark, for a thread that fsyncs through
    /// [`WalWriter::sync_handle`] to raise once its fsync has completed.
    pub fn durable_mark(&self) -> DurableMark {
        self.durable.clone()
    }

    /// Cuts a recycled current file to the bytes written to it (durably), so that no stale
    /// bytes follow its last record; a no-op for a file that was new. The writer does it before
    /// moving to the next file; the store does it on close, so a clean reopen finds no torn tail.
    pub fn trim(&mut self) -> Result<()> {
        self.check_poisoned()?;
        if !self.recycled {
            return Ok(());
        }
        let cut = self
            .file
            .set_len(self.file_bytes)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = cut {
            let error = Error::io(&self.path, e);
            return Err(self.poisoned(error));
        }
        self.recycled = false;
        Ok(())
    }

    /// Bytes written but not yet fsynced.
    pub fn unsynced_bytes(&self) -> u64 {
        self.unsynced_bytes
    }

    /// Takes out of the writer's list every WAL file all of whose events have
    /// `seq <= sealed_through`, for the caller to delete ([`SealedFiles::remove`]). The current
    /// file is never taken.
    pub fn take_sealed(&mut self, sealed_through: u64) -> SealedFiles {
        let mut files = Vec::new();
        while self.files.len() > 1 {
            // A file holds seqs from its first_seq up to the next file's first_seq - 1.
            let next_first = self.files[1].0;
            if next_first > sealed_through + 1 {
                break;
            }
            let (_, path) = self.files.pop_front().expect("len > 1");
            files.push(path);
        }
        SealedFiles {
            dir: self.dir.clone(),
            vfs: Arc::clone(&self.vfs),
            files,
            spares: Arc::clone(&self.spares),
        }
    }

    /// Number of WAL files on disk.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Total bytes of the current file.
    pub fn current_file_bytes(&self) -> u64 {
        self.file_bytes
    }
}

/// WAL files whose events are all sealed, taken from the writer's list by
/// [`WalWriter::take_sealed`], to be kept as spares or deleted with [`SealedFiles::remove`]
/// once the caller no longer holds the commit lock (a rename or unlink and a directory fsync
/// take milliseconds that acknowledgements should not wait). A file left behind by a failed
/// removal is read and skipped by the next open, then removed by its first seal.
#[must_use = "the sealed WAL files stay on disk until removed"]
pub struct SealedFiles {
    dir: PathBuf,
    vfs: Arc<dyn Vfs>,
    files: Vec<PathBuf>,
    spares: Arc<Mutex<Vec<PathBuf>>>,
}

impl SealedFiles {
    /// Renames files to spares while the writer has fewer than [`SPARE_FILES`] and deletes the
    /// rest, makes that durable, and only then hands the spares to the writer.
    pub fn remove(self) -> Result<()> {
        let room = SPARE_FILES.saturating_sub(self.spares.lock().len());
        let mut kept = Vec::new();
        for path in &self.files {
            if kept.len() < room {
                let spare = path.with_extension("spare");
                self.vfs
                    .rename(path, &spare)
                    .map_err(|e| Error::io(path, e))?;
                kept.push(spare);
            } else {
                self.vfs.remove_file(path).map_err(|e| Error::io(path, e))?;
            }
        }
        if !self.files.is_empty() {
            self.vfs
                .sync_dir(&self.dir)
                .map_err(|e| Error::io(&self.dir, e))?;
        }
        self.spares.lock().extend(kept);
        Ok(())
    }
}
