//! Reads a WAL file back: every intact record, and where (and why) the intact part ends.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::format::{
    decode_payload, decode_record_header, payload_checksum, FileHeader, HeaderError,
    FILE_HEADER_BYTES, RECORD_HEADER_BYTES,
};
use crate::error::{Error, Result};
use crate::event::StoredEvent;

/// How the readable part of a WAL file ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The last record ends exactly at the end of the file.
    Clean,
    /// From `offset` on the file holds a partial or damaged record and nothing valid after it:
    /// what a crash in the middle of a write leaves. Recovery cuts the file there.
    Torn { offset: u64 },
}

/// The content of one WAL file.
#[derive(Debug)]
pub struct Scan<P = ()> {
    pub header: FileHeader,
    /// Batches in file order, each with its events.
    pub batches: Vec<Vec<StoredEvent>>,
    /// What [`scan_with`]'s `prepare` made of each batch (same order).
    pub prepared: Vec<P>,
    /// Bytes of payload read (the replay-speed figure counts these).
    pub payload_bytes: u64,
    pub end: End,
}

impl<P> Scan<P> {
    /// Length of the intact prefix of the file.
    pub fn valid_len(&self, file_len: u64) -> u64 {
        match self.end {
            End::Clean => file_len,
            End::Torn { offset } => offset,
        }
    }
}

/// Scans the bytes of a WAL file. A damaged record followed by a valid one is corruption and an
/// error naming the file and offset; a damaged record with nothing valid after it is a torn tail.
pub fn scan(path: &Path, bytes: &[u8]) -> Result<Scan> {
    scan_with(path, bytes, 0, &|_| ())
}

/// [`scan`], and `prepare` called on each decoded batch's events past seq `skip_through`, on the
/// thread that decoded it while they are still in its cache (replay builds the tail's indexes
/// this way). Seqs ascend within a batch, so its events past `skip_through` are a suffix.
pub fn scan_with<P: Send>(
    path: &Path,
    bytes: &[u8],
    skip_through: u64,
    prepare: &(dyn Fn(&[StoredEvent]) -> P + Sync),
) -> Result<Scan<P>> {
    let header = match FileHeader::decode(bytes) {
        Ok(header) => header,
        Err(HeaderError::Truncated) => {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                offset: 0,
                reason: format!(
                    "wal file header truncated: {} of {FILE_HEADER_BYTES} bytes",
                    bytes.len()
                ),
            })
        }
        Err(HeaderError::BadMagic) => {
            return Err(Error::BadMagic {
                path: path.to_path_buf(),
                kind: "wal",
            })
        }
        Err(HeaderError::Checksum { expected, found }) => {
            return Err(Error::ChecksumMismatch {
                path: path.to_path_buf(),
                offset: 0,
                expected,
                found,
            })
        }
        Err(HeaderError::Version(found)) => {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                kind: "wal",
                found,
                supported: super::format::VERSION,
            })
        }
    };
    let salt = header.salt;
    let mut records: Vec<(usize, &[u8])> = Vec::new();
    let mut payload_bytes = 0u64;
    let mut pos = FILE_HEADER_BYTES;
    let end = loop {
        if pos == bytes.len() {
            break End::Clean;
        }
        match read_record(salt, bytes, pos) {
            Some((payload, next)) => {
                payload_bytes += payload.len() as u64;
                records.push((pos, payload));
                pos = next;
            }
            None => {
                if let Some(valid_at) = find_valid_record(salt, bytes, pos + 1) {
                    return Err(damaged_record(path, salt, bytes, pos, valid_at));
                }
                break End::Torn { offset: pos as u64 };
            }
        }
    };
    let (batches, prepared) = decode_records(path, &records, skip_through, prepare)?;
    Ok(Scan {
        header,
        batches,
        prepared,
        payload_bytes,
        end,
    })
}

/// Decoded batches and what `prepare` made of each.
type Decoded<P> = (Vec<Vec<StoredEvent>>, Vec<P>);

/// Decodes verified record payloads and prepares them, on every core when there are many:
/// framing and checksums are checked sequentially above, decoding (allocation-heavy) is what
/// costs.
fn decode_records<P: Send>(
    path: &Path,
    records: &[(usize, &[u8])],
    skip_through: u64,
    prepare: &(dyn Fn(&[StoredEvent]) -> P + Sync),
) -> Result<Decoded<P>> {
    let decode = |records: &[(usize, &[u8])]| -> Result<Decoded<P>> {
        let mut batches = Vec::with_capacity(records.len());
        let mut prepared = Vec::with_capacity(records.len());
        for &(offset, payload) in records {
            let batch = decode_payload(payload).map_err(|reason| Error::Corrupt {
                path: path.to_path_buf(),
                offset: offset as u64,
                reason,
            })?;
            let kept = batch.partition_point(|event| event.seq <= skip_through);
            prepared.push(prepare(&batch[kept..]));
            batches.push(batch);
        }
        Ok((batches, prepared))
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || records.len() < 16 {
        return decode(records);
    }
    // Records are handed out a few at a time, so a thread the scheduler held back does not
    // leave the others idle at the end of the file; the calling thread decodes too.
    const PIECE: usize = 8;
    let pieces = records.len().div_ceil(PIECE);
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let piece = next.fetch_add(1, Ordering::Relaxed);
            if piece >= pieces {
                return done;
            }
            let end = ((piece + 1) * PIECE).min(records.len());
            done.push((piece, decode(&records[piece * PIECE..end])));
        }
    };
    let mut parts: Vec<(usize, Result<Decoded<P>>)> = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut parts = work();
        for helper in helpers {
            parts.extend(
                helper
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            );
        }
        parts
    });
    parts.sort_unstable_by_key(|(piece, _)| *piece);
    let mut batches = Vec::with_capacity(records.len());
    let mut prepared = Vec::with_capacity(records.len());
    for (_, part) in parts {
        let (part_batches, part_prepared) = part?;
        batches.extend(part_batches);
        prepared.extend(part_prepared);
    }
    Ok((batches, prepared))
}

/// Reads the record at `pos` if it is whole and both its checksums hold.
fn read_record(salt: u64, bytes: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let header = decode_record_header(salt, bytes.get(pos..)?)?;
    let start = pos + RECORD_HEADER_BYTES;
    let end = start.checked_add(header.payload_len as usize)?;
    let payload = bytes.get(start..end)?;
    (payload_checksum(salt, payload) == header.payload_crc).then_some((payload, end))
}

fn find_valid_record(salt: u64, bytes: &[u8], from: usize) -> Option<usize> {
    // The header checksum makes this cheap: a payload is checksummed only where a header
    // verifies, and a header only where its length fits in the file.
    (from..bytes.len().saturating_sub(RECORD_HEADER_BYTES - 1))
        .filter(|&pos| {
            let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes"));
            len != 0 && (len as usize) <= bytes.len() - pos - RECORD_HEADER_BYTES
        })
        .find(|&pos| read_record(salt, bytes, pos).is_some())
}

fn damaged_record(path: &Path, salt: u64, bytes: &[u8], pos: usize, valid_at: usize) -> Error {
    if let Some(header) = decode_record_header(salt, &bytes[pos..]) {
        let start = pos + RECORD_HEADER_BYTES;
        if let Some(payload) = bytes.get(start..start + header.payload_len as usize) {
            return Error::ChecksumMismatch {
                path: path.to_path_buf(),
                offset: pos as u64,
                expected: header.payload_crc,
                found: payload_checksum(salt, payload),
            };
        }
    }
    Error::Corrupt {
        path: path.to_path_buf(),
        offset: pos as u64,
        reason: format!(
            "damaged wal record header, yet a valid record follows at offset {valid_at}"
        ),
    }
}
