//! Replays the WAL on open: every intact batch past the sealed seq, a torn tail cut off.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::FILE_HEADER_BYTES;
use super::reader::{scan_with, Discarded, End};
use super::writer::{dir_entries, parse_file_name};
use crate::error::{Error, Result};
use crate::event::StoredEvent;
use crate::io::Vfs;

/// What recovery found in the WAL directory.
#[derive(Debug)]
pub struct Recovered<P = ()> {
    /// Events with `seq > sealed_through`, in seq order, in the batches they were appended in
    /// (kept apart so they become tail chunks without one large copy).
    pub batches: Vec<Vec<StoredEvent>>,
    /// What [`recover_with`]'s `prepare` made of each of `batches` (same order).
    pub prepared: Vec<P>,
    /// The highest seq found in the WAL (0 when it holds none).
    pub last_seq: u64,
    /// WAL files kept on disk, oldest first.
    pub files: Vec<(u64, PathBuf)>,
    /// Payload bytes decoded (for the replay-speed figure).
    pub payload_bytes: u64,
    /// Where a torn tail was cut, if one was.
    pub truncated: Option<(PathBuf, u64)>,
    /// Valid records cut with that torn tail because none knew the damaged record durable
    /// (see [`Discarded`]): with `Durability::Sync`, events no caller was answered for.
    pub discarded: Option<Discarded>,
}

impl<P> Default for Recovered<P> {
    fn default() -> Self {
        Recovered {
            batches: Vec::new(),
            prepared: Vec::new(),
            last_seq: 0,
            files: Vec::new(),
            payload_bytes: 0,
            truncated: None,
            discarded: None,
        }
    }
}

impl<P> Recovered<P> {
    /// Every replayed event, in seq order (a copy; for tests and tools).
    pub fn events(&self) -> Vec<StoredEvent> {
        self.batches.iter().flatten().cloned().collect()
    }
}

/// A damaged end of a WAL file that is not the newest: every older file was fsynced whole
/// before the next was started, so this is damage, not a crash's torn write.
pub(crate) fn torn_before_the_newest(path: PathBuf, offset: u64) -> Error {
    Error::Corrupt {
        path,
        offset,
        reason: "damaged record at the end of a wal file that is not the newest".into(),
    }
}

/// Lists WAL files, oldest first.
pub fn list_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut files: Vec<(u64, PathBuf)> = dir_entries(dir)?
        .into_iter()
        .filter_map(|(name, path)| Some((parse_file_name(&name)?, path)))
        .collect();
    files.sort();
    Ok(files)
}

/// Reads every WAL file in `dir`. Only the newest file may end in a torn record, which is cut off
/// (through `vfs`, so the cut is durable); damage anywhere else is an error naming file and offset.
pub fn recover(dir: &Path, vfs: &Arc<dyn Vfs>, sealed_through: u64) -> Result<Recovered> {
    recover_with(dir, vfs, sealed_through, &|_| ())
}

/// [`recover`], with `prepare` called on every replayed batch (its events past `sealed_through`)
/// on the thread that decoded it: what the store's tail needs of a batch is computed while the
/// batch is still in that core's cache, and on every core.
pub fn recover_with<P: Send>(
    dir: &Path,
    vfs: &Arc<dyn Vfs>,
    sealed_through: u64,
    prepare: &(dyn Fn(&[StoredEvent]) -> P + Sync),
) -> Result<Recovered<P>> {
    let mut files = list_files(dir)?;
    let mut recovered = Recovered::default();
    let mut expected_seq: Option<u64> = None;
    let count = files.len();
    let mut keep = Vec::with_capacity(count);
    let mut cut: Option<(PathBuf, u64)> = None;
    // A file all of whose seqs are sealed (the next file starts at or before the first seq
    // not sealed) is not read: the next seal deletes it. Such a file can also be one whose
    // deletion failed after an earlier seal, with newer files deleted since: read, it would
    // look like a gap in the log.
    let next_firsts: Vec<Option<u64>> = (0..count)
        .map(|index| files.get(index + 1).map(|(first, _)| *first))
        .collect();
    let mut buffer = Vec::new();
    for (index, (first_seq, path)) in files.drain(..).enumerate() {
        let is_last = index + 1 == count;
        if next_firsts[index].is_some_and(|next| next <= sealed_through.saturating_add(1)) {
            keep.push((first_seq, path));
            continue;
        }
        // The newest file is first made durable and dropped from the page cache (see
        // `settle_newest`), so it comes from the disk, where a bad sector is likeliest: it is
        // read (one buffer serves, each file being at most `wal_file_bytes`, 64 MiB by
        // default), so that a sector the disk cannot read is an error naming the file and the
        // offset. Older files are mapped, which spares copying every byte of the log, and
        // populated with MADV_POPULATE_READ, which reports a page that cannot be read as an
        // error where touching it would raise SIGBUS; on any such error the file is read
        // instead, which names the offset (or succeeds, if the kernel lacks the advice). A
        // page checked so and then reclaimed under memory pressure before the scan reaches
        // it is read again from the disk: that read could still fail as a SIGBUS, a far
        // narrower window than mapping without the check.
        let map = if is_last {
            settle_newest(vfs, &path)?;
            None
        } else {
            map_populated(&path)?
        };
        let bytes: &[u8] = match &map {
            Some(map) => map,
            None => {
                read_into(&path, &mut buffer)?;
                &buffer
            }
        };
        if is_last && bytes.len() < FILE_HEADER_BYTES {
            // A crash while the newest file was being created: it never held a record.
            vfs.remove_file(&path).map_err(|e| Error::io(&path, e))?;
            vfs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
            recovered.truncated = Some((path, 0));
            continue;
        }
        let scanned = scan_with(&path, bytes, sealed_through, prepare)?;
        if scanned.header.first_seq != first_seq {
            return Err(Error::Corrupt {
                path,
                offset: 16,
                reason: format!(
                    "wal header says first seq {} but the file is named for {first_seq}",
                    scanned.header.first_seq
                ),
            });
        }
        if let End::Torn { offset } = scanned.end {
            if !is_last {
                return Err(torn_before_the_newest(path, offset));
            }
            // Cut only once every check of the log passed: a log refused as corrupt is left
            // as it was found.
            cut = Some((path.clone(), offset));
            recovered.discarded = scanned.discarded;
        }
        recovered.payload_bytes += scanned.payload_bytes;
        let mut batch_offset_seq = first_seq;
        for (batch, prepared) in scanned.batches.into_iter().zip(scanned.prepared) {
            let Some(first) = batch.first() else { continue };
            if first.seq < batch_offset_seq {
                return Err(Error::Corrupt {
                    path,
                    offset: 0,
                    reason: format!("batch seq {} goes backwards in the wal", first.seq),
                });
            }
            if let Some(expected) = expected_seq {
                if first.seq != expected {
                    return Err(Error::Corrupt {
                        path,
                        offset: 0,
                        reason: format!(
                            "wal seq gap: expected batch starting at seq {expected}, found {}",
                            first.seq
                        ),
                    });
                }
            }
            let last = batch.last().map_or(first.seq, |e| e.seq);
            expected_seq = Some(last + 1);
            batch_offset_seq = last + 1;
            recovered.last_seq = last;
            if last > sealed_through {
                let mut batch = batch;
                // The same suffix `prepare` saw.
                batch.retain(|e| e.seq > sealed_through);
                recovered.batches.push(batch);
                recovered.prepared.push(prepared);
            }
        }
        keep.push((first_seq, path));
    }
    if let Some(first) = recovered.batches.first().and_then(|b| b.first()) {
        if first.seq != sealed_through + 1 {
            return Err(Error::Corrupt {
                path: dir.to_path_buf(),
                offset: 0,
                reason: format!(
                    "wal starts at seq {} but the manifest has sealed only through seq {sealed_through}",
                    first.seq
                ),
            });
        }
    }
    if let Some((path, offset)) = cut {
        let mut file = vfs.open_append(&path).map_err(|e| Error::io(&path, e))?;
        file.set_len(offset).map_err(|e| Error::io(&path, e))?;
        file.sync_data().map_err(|e| Error::io(&path, e))?;
        recovered.truncated = Some((path, offset));
    }
    recovered.files = keep;
    Ok(recovered)
}

/// `path` mapped and every page of it read in, or `None` when the kernel could not populate
/// the mapping (a page it cannot read, or no MADV_POPULATE_READ before Linux 5.14) or the
/// system has no such advice: the caller then reads the file.
#[cfg(target_os = "linux")]
fn map_populated(path: &Path) -> Result<Option<memmap2::Mmap>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    if file.metadata().map_err(|e| Error::io(path, e))?.len() == 0 {
        return Ok(None);
    }
    // SAFETY: WAL files are only appended to by this process, which is not writing yet.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    Ok(map.advise(memmap2::Advice::PopulateRead).ok().map(|()| map))
}

#[cfg(not(target_os = "linux"))]
fn map_populated(_path: &Path) -> Result<Option<memmap2::Mmap>> {
    Ok(None)
}

/// Reads the whole file at `path` into `bytes` (replacing what it held); a read error of the
/// disk (EIO) is corruption at the offset it failed at.
fn read_into(path: &Path, bytes: &mut Vec<u8>) -> Result<()> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let length = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let length = usize::try_from(length).map_err(|_| {
        Error::io(
            path,
            std::io::Error::other("the wal file is larger than this machine can address"),
        )
    })?;
    bytes.clear();
    bytes.reserve(length);
    // `read_to_end` retries on EINTR and reads into the spare capacity without zeroing it;
    // on an error, what was read before it is in `bytes`.
    match file.read_to_end(bytes) {
        Ok(_) => Ok(()),
        // A sector the disk cannot read is damage, at its offset; anything else (out of
        // memory, a file system gone) is the environment's.
        Err(e) if e.raw_os_error() == Some(libc::EIO) => Err(Error::Corrupt {
            path: path.to_path_buf(),
            offset: bytes.len() as u64,
            reason: format!("the disk could not read the wal file here: {e}"),
        }),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Makes the newest WAL file's bytes durable, and then reads them from the disk, before the
/// replay builds on them.
///
/// The process that wrote it may have died (SIGKILL, a crash) with a group written but its
/// fsync not done: those bytes are in the page cache only, and replaying them makes them
/// visible and puts new seqs after them, so they must be on disk first (an older file was
/// fsynced whole before the next was started). If instead an fsync failed (EIO) before the
/// restart, Linux may have marked the pages it could not write clean, keeping them cached: a
/// new fsync then succeeds without writing them, so the file's cached pages are dropped and
/// the replay reads what the disk holds (a torn tail there is cut as usual).
fn settle_newest(vfs: &Arc<dyn Vfs>, path: &Path) -> Result<()> {
    let mut file = vfs.open_append(path).map_err(|e| Error::io(path, e))?;
    file.sync_data().map_err(|e| Error::io(path, e))?;
    drop(file);
    crate::io::drop_cached_pages(path);
    Ok(())
}
