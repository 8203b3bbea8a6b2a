//! All file writes of the engine go through [`Vfs`], so tests can inject faults.
//!
//! [`RealVfs`] is the operating system. [`FaultyVfs`] wraps it and can fail the n-th write or
//! fsync with `ENOSPC` or `EIO`, and can produce a *crash image*: every file written through it
//! truncated to the bytes that were durable (synced) at the moment of the crash, which is what a
//! power loss leaves behind in the worst case (redb's crash-consistency test does the same).
//!
//! Reads do not go through the trait: they use `std::fs` and `memmap2` directly, since reading
//! never changes what is durable.
//!
//! ```
//! use auditlog_engine::io::{FaultyVfs, Fault, Vfs};
//! let dir = tempfile::tempdir().unwrap();
//! let vfs = FaultyVfs::new();
//! vfs.fail_write(1, Fault::NoSpace); // the next write fails with ENOSPC
//! let mut file = vfs.create(&dir.path().join("f")).unwrap();
//! assert!(file.write_all(b"x").is_err());
//! ```

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A file opened for writing.
pub trait VfsFile: Send {
    /// Writes the whole buffer where the last write ended: at the end of the file, or for a
    /// file opened with [`Vfs::open_rewrite`], over it from its first byte on.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// [`VfsFile::write_all`] of the buffers one after the other: the WAL writes a group's
    /// records straight from the batches' encoded events (one `writev` per 1,024 buffers),
    /// without first copying them into one buffer. The default copies them into one buffer
    /// and writes that.
    fn write_all_parts(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        self.write_all(&parts.concat())
    }
    /// `fdatasync`: makes every byte written so far durable.
    fn sync_data(&mut self) -> io::Result<()>;
    /// Truncates or extends the file (used to cut a torn WAL tail).
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// A second handle that can `fdatasync` this file from another thread while this one goes
    /// on writing (the WAL pipelines the fsync of one group with the write of the next).
    fn sync_handle(&self) -> io::Result<Box<dyn SyncHandle>>;
}

/// Makes a file durable from another thread (see [`VfsFile::sync_handle`]).
pub trait SyncHandle: Send + Sync {
    /// `fdatasync`: every byte written to the file so far, through any handle, is durable after.
    fn sync_data(&self) -> io::Result<()>;
}

impl SyncHandle for File {
    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }
}

/// The file-system operations the engine performs when it changes what is on disk.
pub trait Vfs: Send + Sync + 'static {
    /// Creates (or truncates) a file for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn VfsFile>>;
    /// Opens an existing file for appending.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn VfsFile>>;
    /// Opens an existing file for writing over it from its first byte, keeping its length and
    /// its blocks (a recycled WAL file: see `wal::writer::SPARE_FILES`). Bytes past what is
    /// written stay as they were.
    fn open_rewrite(&self, path: &Path) -> io::Result<Box<dyn VfsFile>>;
    /// Atomically renames a file (the publication step of manifests and segments).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// fsyncs a directory so that creations, renames and removals in it are durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// Reads until `buffer` is full or the input ends (retrying reads a signal interrupted);
/// returns how many bytes were read.
///
/// ```
/// let mut input: &[u8] = b"abc";
/// let mut buffer = [0u8; 8];
/// assert_eq!(auditlog_engine::io::read_full(&mut input, &mut buffer).unwrap(), 3);
/// ```
pub fn read_full(reader: &mut impl io::Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Creates `dir` and its missing ancestors, and makes each new entry durable (fsyncs the parent
/// of every directory it created, the outermost first): until then a power loss may take a new
/// directory away with everything later written into it.
///
/// ```
/// use auditlog_engine::io::{create_dir_all_durably, RealVfs};
/// let base = tempfile::tempdir().unwrap();
/// create_dir_all_durably(&RealVfs, &base.path().join("a/b")).unwrap();
/// assert!(base.path().join("a/b").is_dir());
/// ```
pub fn create_dir_all_durably(vfs: &dyn Vfs, dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut next = Some(dir);
    while let Some(path) = next.filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
        missing.push(path);
        next = path.parent();
    }
    vfs.create_dir_all(dir)?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
            vfs.sync_dir(parent)?;
        }
    }
    Ok(())
}

/// [`create_dir_all_durably`], and when `dir` was there already, its entry in its parent is
/// made durable anyway: a process that died after it created `dir` but before it synced the
/// parent left an entry a power loss may still take away. For the directories a store opens
/// (its data and WAL directories), once per open.
pub fn open_dir_durably(vfs: &dyn Vfs, dir: &Path) -> io::Result<()> {
    let existed = dir.is_dir();
    create_dir_all_durably(vfs, dir)?;
    if existed {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            vfs.sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Asks the kernel to drop `path`'s clean cached pages (`POSIX_FADV_DONTNEED`), so that the
/// next read of them comes from the disk. Best effort: a file that cannot be opened or advised
/// is left as it is (the read then sees the page cache, as without this call).
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("f");
/// std::fs::write(&path, b"abc").unwrap();
/// auditlog_engine::io::drop_cached_pages(&path);
/// assert_eq!(std::fs::read(&path).unwrap(), b"abc");
/// ```
pub fn drop_cached_pages(path: &Path) {
    #[cfg(target_os = "linux")]
    if let Ok(file) = std::fs::File::open(path) {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is open for the call; the advice changes no memory of ours.
        unsafe {
            libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = path;
}

/// How many bytes a background writer (a seal's or merge's segment file, the index files)
/// leaves unsynced at most before it flushes them.
///
/// Why: the WAL's `fdatasync` waits for whatever else the disk was given before it. A seal
/// that writes a 20 MiB file and flushes it at the end queues all of it at once, and a group
/// commit's fsync behind it took 20-270 ms instead of 2. Flushed every MiB, the disk never
/// holds more than a MiB of background data ahead of the WAL
/// (`benches/fsync_interference.py`: a WAL-like fsync beside a 24 MiB writer, p99 43-52 ms
/// with one flush per file, 21-26 ms flushed every MiB); in pieces of 256 KiB paced by
/// [`pace_background_write`], p90 2.8 ms and p99 13-14 ms against 5.5 and 16-20 ms flushed
/// every MiB at full speed in the same hour (`fsync_interference.py grow rate` / `pieces`).
pub const BACKGROUND_FLUSH_BYTES: usize = 256 << 10;

/// The rate background writers keep to while the WAL is busy (see [`pace_background_write`]).
pub const BACKGROUND_BYTES_PER_SECOND: u64 = 32 << 20;

/// How long after the WAL's last fsync background writes are still paced.
const FOREGROUND_QUIET: Duration = Duration::from_millis(250);

/// When the WAL last fsynced, in nanoseconds after [`pacer_epoch`] (0: never).
static LAST_FOREGROUND_SYNC_NS: AtomicU64 = AtomicU64::new(0);
/// When the next background piece may be written.
static NEXT_BACKGROUND_PIECE: Mutex<Option<Instant>> = Mutex::new(None);

fn pacer_epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Called by the WAL after each fsync: background writes are paced for a while after.
pub fn note_foreground_sync() {
    let ns = pacer_epoch().elapsed().as_nanos().max(1);
    LAST_FOREGROUND_SYNC_NS.store(u64::try_from(ns).unwrap_or(u64::MAX), Ordering::Relaxed);
}

/// Called by background writers after each flushed piece of `bytes`: while the WAL is busy
/// (it fsynced in the last 250 ms), waits so that background writes, all threads together,
/// stay at [`BACKGROUND_BYTES_PER_SECOND`]; otherwise returns at once.
///
/// Why: on the virtual disk this was measured on, an fdatasync costs in proportion to all the
/// data written since the last one, whoever wrote it. A seal wrote its files at the disk's
/// full speed (a 9 MB segment in 25-36 ms, timed in the server at 30,000 events/s), and every
/// group commit's fsync during that time carried megabytes of it. At 32 MiB/s (arithmetic,
/// not measured) a seal of 200,000 events, about 13 MB with its indexes, takes up to 0.4 s
/// longer, and a WAL fsync every 3 ms carries at most about 100 KiB of it.
pub fn pace_background_write(bytes: usize) {
    let last = LAST_FOREGROUND_SYNC_NS.load(Ordering::Relaxed);
    if last == 0 {
        return;
    }
    let now = Instant::now();
    let since_epoch = now.saturating_duration_since(pacer_epoch());
    if since_epoch.saturating_sub(Duration::from_nanos(last)) > FOREGROUND_QUIET {
        return;
    }
    let cost = Duration::from_secs_f64(bytes as f64 / BACKGROUND_BYTES_PER_SECOND as f64);
    let start = {
        let mut next = NEXT_BACKGROUND_PIECE.lock();
        let start = next.filter(|&at| at > now).unwrap_or(now);
        *next = Some(start + cost);
        start
    };
    let wait = start.saturating_duration_since(now);
    if !wait.is_zero() {
        std::thread::sleep(wait);
    }
}

/// Writes `bytes` to `file` and makes them durable, flushing every
/// [`BACKGROUND_FLUSH_BYTES`] on the way, paced by [`pace_background_write`] (see there for
/// why).
///
/// ```
/// use auditlog_engine::io::{write_durably, RealVfs, Vfs};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("f");
/// let mut file = RealVfs.create(&path).unwrap();
/// write_durably(file.as_mut(), &vec![7u8; 3 << 20]).unwrap();
/// assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 << 20);
/// ```
pub fn write_durably(file: &mut dyn VfsFile, bytes: &[u8]) -> io::Result<()> {
    for piece in bytes.chunks(BACKGROUND_FLUSH_BYTES) {
        file.write_all(piece)?;
        file.sync_data()?;
        pace_background_write(piece.len());
    }
    if bytes.is_empty() {
        file.sync_data()?;
    }
    Ok(())
}

/// A [`Write`] over a plain file that flushes to disk every [`BACKGROUND_FLUSH_BYTES`]
/// written, paced by [`pace_background_write`] (for files written outside [`Vfs`], such as the
/// index crate's); `finish` makes the rest durable.
///
/// ```
/// use std::io::Write;
/// use auditlog_engine::io::PacedFile;
/// let dir = tempfile::tempdir().unwrap();
/// let mut file = PacedFile::new(std::fs::File::create(dir.path().join("f")).unwrap());
/// file.write_all(b"some bytes").unwrap();
/// file.finish().unwrap();
/// ```
#[derive(Debug)]
pub struct PacedFile {
    file: File,
    unsynced: usize,
}

impl PacedFile {
    pub fn new(file: File) -> Self {
        Self { file, unsynced: 0 }
    }

    /// `fdatasync`s what is left and returns the file.
    pub fn finish(mut self) -> io::Result<File> {
        self.file.sync_data()?;
        self.unsynced = 0;
        Ok(self.file)
    }
}

impl Write for PacedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = BACKGROUND_FLUSH_BYTES - self.unsynced;
        let written = self.file.write(&buf[..buf.len().min(room)])?;
        self.unsynced += written;
        if self.unsynced >= BACKGROUND_FLUSH_BYTES {
            self.file.sync_data()?;
            pace_background_write(self.unsynced);
            self.unsynced = 0;
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Drops this process's mapping of every page of `map` (`MADV_DONTNEED`) without dropping
/// them from the kernel's page cache: the next read maps them again (a minor fault, or a read
/// from disk if the kernel has reclaimed them). Called once a seal, merge or index check has
/// read a whole immutable file through its mapping, so resident memory follows what queries
/// touch rather than every file written (on this kernel a touched byte of a fresh file maps
/// about 2 MB of it). Advice only: failures are ignored.
///
/// Only for read-only mappings of files nobody writes while mapped (sealed segments and their
/// index files): then the pages dropped hold exactly the file's bytes, and reads after the
/// call see the same bytes.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("f");
/// std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
/// let file = std::fs::File::open(&path).unwrap();
/// let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
/// assert_eq!(map[4096], 7);
/// auditlog_engine::io::release_mapped_pages(&map);
/// assert_eq!(map[4096], 7); // mapped again on read
/// ```
pub fn release_mapped_pages(map: &memmap2::Mmap) {
    #[cfg(unix)]
    {
        // SAFETY: `map` is a read-only mapping (`Mmap`, never `MmapMut`) of a file that is not
        // written while mapped, so no page holds anything but the file's bytes: dropping the
        // pages loses nothing, and later reads fault the same bytes back in.
        let _ = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
    }
    #[cfg(not(unix))]
    let _ = map;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealVfs;

struct RealFile(File);

impl VfsFile for RealFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn write_all_parts(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        // At most IOV_MAX (1024 on Linux) buffers per call; a short write goes on from where
        // it stopped.
        let mut slices: Vec<io::IoSlice> = parts
            .iter()
            .filter(|part| !part.is_empty())
            .map(|part| io::IoSlice::new(part))
            .collect();
        let mut slices = &mut slices[..];
        while !slices.is_empty() {
            let count = slices.len().min(1024);
            match self.0.write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => io::IoSlice::advance_slices(&mut slices, written),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_handle(&self) -> io::Result<Box<dyn SyncHandle>> {
        Ok(Box::new(SharedSync::of(&self.0)?))
    }
}

/// Open file descriptions a [`SharedSync`] holds: one per fsync that may run at once (the WAL
/// keeps up to `wal_syncs_in_flight` in flight, 2 by default); more than this many at once
/// wait for the first description.
const SYNC_DESCRIPTIONS: usize = 4;

/// A [`SyncHandle`] whose concurrent fsyncs each see a failed writeback.
///
/// Linux reports a writeback error once per open file description (errseq): of two fsyncs
/// through one description (or `dup`s of it) running at once, one may get the EIO and the
/// other 0, although the failed pages were the other's group; that group would then be
/// acknowledged and lost at the next power loss. Here each fsync runs on a description of its
/// own, opened again through `/proc/self/fd` when the handle is made (before the data it will
/// cover is written: a description reports every error after its open), and the handle keeps
/// the first failure: every fsync after it fails too, so a group whose fsync "succeeded" on a
/// description that another fsync had already advanced past the error is not acknowledged
/// either. Without `/proc`, the descriptions are `dup`s of the file's, and the kept failure is
/// the only guard.
struct SharedSync {
    descriptions: Vec<Mutex<File>>,
    failed: Mutex<Option<(io::ErrorKind, String)>>,
}

impl SharedSync {
    fn of(file: &File) -> io::Result<Self> {
        let again = || -> io::Result<File> {
            #[cfg(target_os = "linux")]
            {
                use std::os::fd::AsRawFd;
                let path = format!("/proc/self/fd/{}", file.as_raw_fd());
                if let Ok(reopened) = File::open(path) {
                    return Ok(reopened);
                }
            }
            file.try_clone()
        };
        let descriptions = (0..SYNC_DESCRIPTIONS)
            .map(|_| again().map(Mutex::new))
            .collect::<io::Result<_>>()?;
        Ok(SharedSync {
            descriptions,
            failed: Mutex::new(None),
        })
    }
}

impl SyncHandle for SharedSync {
    fn sync_data(&self) -> io::Result<()> {
        // A free description, or (more fsyncs at once than descriptions) a wait for the first.
        let description = self
            .descriptions
            .iter()
            .find_map(|d| d.try_lock())
            .unwrap_or_else(|| self.descriptions[0].lock());
        // The failure is recorded before the description is let go of: an fsync that takes it
        // next finds it.
        let result = description.sync_data();
        let mut failed = self.failed.lock();
        if let Err(error) = &result {
            failed.get_or_insert_with(|| (error.kind(), error.to_string()));
        }
        drop(description);
        match (result, failed.as_ref()) {
            (Err(error), _) => Err(error),
            (Ok(()), Some((kind, message))) => Err(io::Error::new(
                *kind,
                format!("an earlier fsync of this file failed: {message}"),
            )),
            (Ok(()), None) => Ok(()),
        }
    }
}

impl Vfs for RealVfs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(RealFile(file)))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Box::new(RealFile(file)))
    }
    fn open_rewrite(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        let file = OpenOptions::new().write(true).open(path)?;
        Ok(Box::new(RealFile(file)))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
}

/// The error a [`FaultyVfs`] injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `ENOSPC`: the disk is full.
    NoSpace,
    /// `EIO`: the device failed.
    Io,
    /// Not an error: the call panics, as a bug in the code around it would (for tests of what a
    /// panic on the write path leaves behind).
    Panic,
}

impl Fault {
    fn error(self) -> io::Error {
        match self {
            Fault::NoSpace => io::Error::from_raw_os_error(libc::ENOSPC),
            Fault::Io => io::Error::from_raw_os_error(libc::EIO),
            Fault::Panic => panic!("injected panic (FaultyVfs, Fault::Panic)"),
        }
    }
}

#[derive(Default)]
struct FaultState {
    /// Fail when this many more writes have been attempted (1 = the next one).
    write_countdown: Option<(u64, Fault)>,
    sync_countdown: Option<(u64, Fault)>,
    /// Per file: bytes known durable (synced) and bytes written so far.
    files: HashMap<PathBuf, (u64, u64)>,
    /// Files opened with [`Vfs::open_rewrite`]: a power loss leaves their length and garbles
    /// what was written over them since the last fsync (the old or the new bytes may be there).
    rewritten: HashSet<PathBuf>,
    /// Directory operations in the order they were made ([`FaultyVfs::directory_log`]).
    directory_log: Vec<DirectoryOp>,
    /// The path of every open file, which a rename changes (a WAL file is renamed while its
    /// writer keeps it open).
    handles: Vec<std::sync::Weak<Mutex<PathBuf>>>,
    /// Renames into this directory fail with `EXDEV`, as into another file system.
    other_device: Option<PathBuf>,
    /// Creating a file under this directory waits at the gate ([`FaultyVfs::hold_creates_under`]).
    held_creates: Option<(PathBuf, Arc<Gate>)>,
    /// Fsyncs of files wait at this gate ([`FaultyVfs::hold_file_syncs`]).
    held_syncs: Option<Arc<Gate>>,
}

/// A point where a thread of the code under test stops until the test lets it go.
#[derive(Default)]
pub struct Gate {
    /// (threads that reached it, open)
    state: Mutex<(usize, bool)>,
    changed: parking_lot::Condvar,
}

impl Gate {
    /// Waits until a thread is stopped at the gate; false after `timeout` without one.
    pub fn wait_reached(&self, timeout: std::time::Duration) -> bool {
        self.wait_reached_by(1, timeout)
    }

    /// Waits until `threads` threads have reached the gate; false after `timeout` without.
    pub fn wait_reached_by(&self, threads: usize, timeout: std::time::Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock();
        while state.0 < threads {
            if self.changed.wait_until(&mut state, deadline).timed_out() {
                return state.0 >= threads;
            }
        }
        true
    }

    /// Lets every thread through, now and later.
    pub fn open(&self) {
        self.state.lock().1 = true;
        self.changed.notify_all();
    }

    fn pass(&self) {
        let mut state = self.state.lock();
        state.0 += 1;
        self.changed.notify_all();
        while !state.1 {
            self.changed.wait(&mut state);
        }
    }
}

impl FaultState {
    /// A path for an open file's handle, kept up to date by [`Vfs::rename`].
    fn handle(&mut self, path: &Path) -> Arc<Mutex<PathBuf>> {
        let handle = Arc::new(Mutex::new(path.to_path_buf()));
        self.handles.retain(|h| h.strong_count() > 0);
        self.handles.push(Arc::downgrade(&handle));
        handle
    }
}

/// A directory operation [`FaultyVfs`] records, for tests of what is made durable when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryOp {
    CreateAll(PathBuf),
    Sync(PathBuf),
    Rename(PathBuf, PathBuf),
    RemoveAll(PathBuf),
}

/// A [`Vfs`] over the real file system that injects faults and records what is durable.
#[derive(Clone, Default)]
pub struct FaultyVfs {
    state: Arc<Mutex<FaultState>>,
    writes: Arc<AtomicU64>,
    syncs: Arc<AtomicU64>,
}

impl FaultyVfs {
    pub fn new() -> Self {
        Self::default()
    }

    /// The `n`-th write from now (1 = the next) fails with `fault`, and so does every later one
    /// until [`FaultyVfs::heal`].
    pub fn fail_write(&self, n: u64, fault: Fault) {
        self.state.lock().write_countdown = Some((n.max(1), fault));
    }

    /// The `n`-th fsync from now (1 = the next) fails with `fault`, and every later one too.
    pub fn fail_sync(&self, n: u64, fault: Fault) {
        self.state.lock().sync_countdown = Some((n.max(1), fault));
    }

    /// Stops injecting faults.
    pub fn heal(&self) {
        let mut state = self.state.lock();
        state.write_countdown = None;
        state.sync_countdown = None;
    }

    /// From now on, renames into `dir` fail with `EXDEV`, as when `dir` is on another file
    /// system.
    pub fn other_device(&self, dir: &Path) {
        self.state.lock().other_device = Some(dir.to_path_buf());
    }

    /// From now on, creating a file under `dir` stops at the returned gate until it is opened.
    pub fn hold_creates_under(&self, dir: &Path) -> Arc<Gate> {
        let gate = Arc::new(Gate::default());
        self.state.lock().held_creates = Some((dir.to_path_buf(), Arc::clone(&gate)));
        gate
    }

    /// From now on, every fsync of a file (not of a directory) stops at the returned gate, before
    /// it reaches the disk, until the gate is opened.
    pub fn hold_file_syncs(&self) -> Arc<Gate> {
        let gate = Arc::new(Gate::default());
        self.state.lock().held_syncs = Some(Arc::clone(&gate));
        gate
    }

    /// Every directory creation, directory fsync, rename and directory removal so far, in
    /// order: a power loss keeps a new entry only if its directory was fsynced after it.
    pub fn directory_log(&self) -> Vec<DirectoryOp> {
        self.state.lock().directory_log.clone()
    }

    /// Number of writes and fsyncs attempted so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.writes.load(Ordering::Relaxed),
            self.syncs.load(Ordering::Relaxed),
        )
    }

    /// Simulates a power loss: every file written through this vfs is cut back to the length it
    /// had at its last successful fsync. Call it after the writer is dropped.
    ///
    /// A file being written over ([`Vfs::open_rewrite`]) keeps its length: the bytes written
    /// over it since its last fsync are replaced by garbage, as a device may leave either the old
    /// or the new bytes there.
    pub fn crash(&self) -> io::Result<()> {
        self.crash_keeping(CRASH_SECTOR_BYTES, |_, _| false)
    }

    /// A power loss that keeps some of what was written since the last fsync: each 512-byte
    /// sector of it reached the disk or not, at random (seeded), independently of the others,
    /// as a device that reorders writes leaves them.
    pub fn crash_torn(&self, seed: u64) -> io::Result<()> {
        let mut state = seed | 1;
        self.crash_keeping(CRASH_SECTOR_BYTES, move |_, _| {
            // xorshift64: enough for a coin per sector.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state & 1 == 1
        })
    }

    /// A power loss where `keep(path, sector_start)` says which sectors (`sector_bytes` each,
    /// counted from the file's last durable length) of what was written since the last fsync
    /// reached the disk. A sector that did not holds zeros in a file that was growing (the file
    /// ends after the last sector that reached the disk) and garbage in a file being written over.
    pub fn crash_keeping(
        &self,
        sector_bytes: u64,
        mut keep: impl FnMut(&Path, u64) -> bool,
    ) -> io::Result<()> {
        let state = self.state.lock();
        let mut files: Vec<_> = state.files.iter().collect();
        files.sort();
        for (path, &(durable, written)) in files {
            if !path.exists() {
                continue;
            }
            let rewritten = state.rewritten.contains(path);
            let mut file = OpenOptions::new().read(true).write(true).open(path)?;
            let mut end = durable;
            let mut sector = durable;
            while sector < written {
                let sector_end = (sector + sector_bytes).min(written);
                if keep(path, sector) {
                    end = sector_end;
                } else {
                    let lost: Vec<u8> = (sector..sector_end)
                        .map(|i| {
                            if rewritten {
                                (i as u8).wrapping_mul(167) ^ 0x5a
                            } else {
                                0
                            }
                        })
                        .collect();
                    file.seek(io::SeekFrom::Start(sector))?;
                    file.write_all(&lost)?;
                }
                sector = sector_end;
            }
            if !rewritten {
                file.set_len(end)?;
            }
        }
        Ok(())
    }

    fn check(countdown: &mut Option<(u64, Fault)>) -> io::Result<()> {
        if let Some((remaining, fault)) = countdown {
            if *remaining <= 1 {
                *remaining = 1;
                return Err(fault.error());
            }
            *remaining -= 1;
        }
        Ok(())
    }
}

struct FaultyFile {
    inner: RealFile,
    path: Arc<Mutex<PathBuf>>,
    vfs: FaultyVfs,
}

struct FaultySyncHandle {
    file: File,
    path: Arc<Mutex<PathBuf>>,
    vfs: FaultyVfs,
}

/// The sector a simulated power loss keeps or loses whole ([`FaultyVfs::crash_torn`]).
const CRASH_SECTOR_BYTES: u64 = 512;

impl FaultyVfs {
    /// An fsync of the file at `path` (kept up to date by renames): makes durable what was
    /// written before it was called, not what is written while it waits at a held gate or runs.
    fn sync_file(
        &self,
        path: &Mutex<PathBuf>,
        sync: impl FnOnce() -> io::Result<()>,
    ) -> io::Result<()> {
        let written_at_call = {
            let state = self.state.lock();
            state.files.get(&*path.lock()).map_or(0, |entry| entry.1)
        };
        let held = self.state.lock().held_syncs.clone();
        if let Some(gate) = held {
            gate.pass();
        }
        self.syncs.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state.lock();
        FaultyVfs::check(&mut state.sync_countdown)?;
        sync()?;
        let path = path.lock().clone();
        let entry = state.files.entry(path).or_default();
        entry.0 = entry.0.max(written_at_call.min(entry.1));
        Ok(())
    }
}

impl SyncHandle for FaultySyncHandle {
    fn sync_data(&self) -> io::Result<()> {
        self.vfs.sync_file(&self.path, || self.file.sync_data())
    }
}

impl VfsFile for FaultyFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.vfs.writes.fetch_add(1, Ordering::Relaxed);
        let mut state = self.vfs.state.lock();
        FaultyVfs::check(&mut state.write_countdown)?;
        self.inner.write_all(buf)?;
        let path = self.path.lock().clone();
        state.files.entry(path).or_default().1 += buf.len() as u64;
        Ok(())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        let inner = &mut self.inner;
        self.vfs.sync_file(&self.path, || inner.sync_data())
    }
    fn sync_handle(&self) -> io::Result<Box<dyn SyncHandle>> {
        Ok(Box::new(FaultySyncHandle {
            file: self.inner.0.try_clone()?,
            path: Arc::clone(&self.path),
            vfs: self.vfs.clone(),
        }))
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)?;
        let mut state = self.vfs.state.lock();
        let path = self.path.lock().clone();
        let entry = state.files.entry(path).or_default();
        entry.1 = len;
        entry.0 = entry.0.min(len);
        Ok(())
    }
}

impl Vfs for FaultyVfs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        let held = match &self.state.lock().held_creates {
            Some((dir, gate)) if path.starts_with(dir) => Some(Arc::clone(gate)),
            _ => None,
        };
        if let Some(gate) = held {
            gate.pass();
        }
        let inner = RealFile(
            OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(path)?,
        );
        let mut state = self.state.lock();
        state.files.insert(path.to_path_buf(), (0, 0));
        state.rewritten.remove(path);
        let path = state.handle(path);
        drop(state);
        Ok(Box::new(FaultyFile {
            inner,
            path,
            vfs: self.clone(),
        }))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        let file = OpenOptions::new().append(true).open(path)?;
        let len = file.metadata()?.len();
        let mut state = self.state.lock();
        state.files.entry(path.to_path_buf()).or_insert((len, len));
        let path = state.handle(path);
        Ok(Box::new(FaultyFile {
            inner: RealFile(file),
            path,
            vfs: self.clone(),
        }))
    }
    fn open_rewrite(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        let file = OpenOptions::new().write(true).open(path)?;
        let mut state = self.state.lock();
        state.files.insert(path.to_path_buf(), (0, 0));
        state.rewritten.insert(path.to_path_buf());
        let path = state.handle(path);
        Ok(Box::new(FaultyFile {
            inner: RealFile(file),
            path,
            vfs: self.clone(),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if self
            .state
            .lock()
            .other_device
            .as_ref()
            .is_some_and(|dir| to.starts_with(dir) != from.starts_with(dir))
        {
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        }
        std::fs::rename(from, to)?;
        let mut state = self.state.lock();
        state
            .directory_log
            .push(DirectoryOp::Rename(from.to_path_buf(), to.to_path_buf()));
        state.rewritten.remove(to);
        if let Some(entry) = state.files.remove(from) {
            state.files.insert(to.to_path_buf(), entry);
        }
        if state.rewritten.remove(from) {
            state.rewritten.insert(to.to_path_buf());
        }
        for handle in state.handles.iter().filter_map(std::sync::Weak::upgrade) {
            let mut path = handle.lock();
            if *path == from {
                *path = to.to_path_buf();
            }
        }
        Ok(())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)?;
        let mut state = self.state.lock();
        state.files.remove(path);
        state.rewritten.remove(path);
        Ok(())
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)?;
        let mut state = self.state.lock();
        state
            .directory_log
            .push(DirectoryOp::RemoveAll(path.to_path_buf()));
        state.files.retain(|p, _| !p.starts_with(path));
        state.rewritten.retain(|p| !p.starts_with(path));
        Ok(())
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)?;
        self.state
            .lock()
            .directory_log
            .push(DirectoryOp::CreateAll(path.to_path_buf()));
        Ok(())
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        FaultyVfs::check(&mut self.state.lock().sync_countdown)?;
        File::open(path)?.sync_all()?;
        self.state
            .lock()
            .directory_log
            .push(DirectoryOp::Sync(path.to_path_buf()));
        Ok(())
    }
}

#[cfg(test)]
mod directory_tests {
    use super::*;

    /// Each directory created gets its entry made durable, the outermost first; an existing
    /// one is left alone.
    #[test]
    fn new_directories_are_made_durable_outermost_first() {
        let base = tempfile::tempdir().unwrap();
        let vfs = FaultyVfs::new();
        let deep = base.path().join("a/b");
        create_dir_all_durably(&vfs, &deep).unwrap();
        assert_eq!(
            vfs.directory_log(),
            [
                DirectoryOp::CreateAll(deep.clone()),
                DirectoryOp::Sync(base.path().to_path_buf()),
                DirectoryOp::Sync(base.path().join("a")),
            ]
        );
        create_dir_all_durably(&vfs, &deep).unwrap();
        assert_eq!(vfs.directory_log().len(), 4, "{:?}", vfs.directory_log());
    }
}

#[cfg(test)]
mod pacer_tests {
    use super::*;

    /// Background pieces wait their turn while the WAL is busy, and not once it has been quiet.
    /// (Only lower bounds on time are asserted: a sleep never ends early.)
    #[test]
    fn background_writes_are_paced_only_while_the_wal_is_busy() {
        note_foreground_sync();
        let started = Instant::now();
        for _ in 0..4 {
            pace_background_write(BACKGROUND_FLUSH_BYTES * 4);
        }
        // Four pieces of 1 MiB at 32 MiB/s: the last starts at least 3/32 s after the first.
        assert!(started.elapsed() >= Duration::from_millis(90));
        std::thread::sleep(FOREGROUND_QUIET + Duration::from_millis(50));
        let started = Instant::now();
        for _ in 0..100 {
            pace_background_write(BACKGROUND_FLUSH_BYTES * 4);
        }
        // Unpaced, 100 MiB would have taken three seconds.
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}

#[cfg(test)]
mod write_tests {
    use super::*;

    /// A vectored write puts the parts one after the other, past the 1,024 buffers one
    /// `writev` takes and with empty parts among them, on the real and the faulty file system.
    #[test]
    fn parts_are_written_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let owned: Vec<Vec<u8>> = (0..3000u32)
            .map(|i| match i % 5 {
                0 => Vec::new(),
                _ => i.to_le_bytes().repeat(i as usize % 7 + 1),
            })
            .collect();
        let parts: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        let vfss: [Arc<dyn Vfs>; 2] = [Arc::new(RealVfs), Arc::new(FaultyVfs::default())];
        for (index, vfs) in vfss.iter().enumerate() {
            let path = dir.path().join(format!("parts-{index}"));
            let mut file = vfs.create(&path).unwrap();
            file.write_all(b"head:").unwrap();
            file.write_all_parts(&parts).unwrap();
            file.write_all_parts(&[]).unwrap();
            drop(file);
            assert_eq!(
                std::fs::read(&path).unwrap(),
                [&b"head:"[..], &parts.concat()].concat()
            );
        }
    }
}

#[cfg(test)]
mod sync_tests {
    use super::*;

    /// The WAL's fsync handle holds open file descriptions of its own (on Linux), so that each
    /// concurrent fsync is told of a failed writeback, and it syncs what any handle wrote.
    #[test]
    fn a_sync_handle_has_descriptions_of_its_own_and_syncs_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let file = File::create(&path).unwrap();
        let shared = SharedSync::of(&file).unwrap();
        assert_eq!(shared.descriptions.len(), SYNC_DESCRIPTIONS);
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // A description of its own: its file offset is its own, unlike a `dup`'s.
            let mut written = &file;
            written.write_all(b"0123456789").unwrap();
            let description = shared.descriptions[0].lock();
            // SAFETY: lseek on an open descriptor reads its offset and touches no memory.
            let offset = |f: &File| unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_CUR) };
            assert_eq!(offset(&file), 10);
            assert_eq!(offset(&description), 0);
        }
        std::thread::scope(|scope| {
            for _ in 0..6 {
                scope.spawn(|| shared.sync_data().unwrap());
            }
        });
        assert!(shared.failed.lock().is_none());
    }
}
