//! Reads a WAL file back: every intact record, and where (and why) the intact part ends.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::format::{
    decode_payload, decode_record_header, payload_checksum, BatchHeader, FileHeader, HeaderError,
    FILE_HEADER_BYTES,
};
use crate::error::{Error, Result};
use crate::event::StoredEvent;

/// How the readable part of a WAL file ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The last record ends exactly at the end of the file.
    Clean,
    /// From `offset` on the file holds a partial or damaged record, and after it nothing valid
    /// or only records that were never known durable ([`Scan::discarded`]): what a crash in the
    /// middle of a write leaves. Recovery cuts the file there.
    Torn { offset: u64 },
}

/// Valid records found after a torn record and cut with it (version 2 files only).
///
/// A power loss keeps some of the sectors written since the last completed `fdatasync` and not
/// others, in any order, so a damaged record can be followed by whole ones. When none of them
/// was framed after the damaged record was known durable (their `durable_through` is at most its
/// offset), the damaged record and everything after it was, as far as the file can tell, still
/// waiting for its fsync, and the file is cut at the damaged record. With `Durability::Sync`
/// no caller was answered for them, unless the disk damaged data after an fsync of it completed
/// and before any surviving record was framed (the file cannot tell that from a torn write);
/// with `Durability::Interval` they may have been answered, as that mode allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Discarded {
    /// Valid records cut.
    pub records: usize,
    /// Seqs of their events, first and last.
    pub first_seq: u64,
    pub last_seq: u64,
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
    /// Valid records cut with a torn tail, if any.
    pub discarded: Option<Discarded>,
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

/// Scans the bytes of a WAL file. A damaged record with nothing valid after it is a torn tail;
/// so is one followed only by records that did not know it durable (version 2, see
/// [`Discarded`]). A damaged record followed by a valid record that knew it durable (or by any
/// valid record, in a version 1 file) is corruption: an error naming the file and offset.
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
    let (version, salt) = (header.version, header.salt);
    let mut records: Vec<(usize, &[u8])> = Vec::new();
    let mut payload_bytes = 0u64;
    let mut pos = FILE_HEADER_BYTES;
    let mut discarded = None;
    let end = loop {
        if pos == bytes.len() {
            break End::Clean;
        }
        match read_record(version, salt, bytes, pos) {
            Some((payload, next, _)) => {
                payload_bytes += payload.len() as u64;
                records.push((pos, payload));
                pos = next;
            }
            None => {
                discarded = after_damage(path, version, salt, bytes, pos)?;
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
        discarded,
    })
}

/// Looks past the damaged record at `pos`: nothing valid, or only records that did not know
/// `pos` durable, make a torn tail (with what it cuts); any other is corruption.
///
/// A record vouches for the damaged one by its `durable_through` even when only its header
/// survived (the header checksum covers the mark): a power loss can tear the record framed after
/// an fsync as well as the ones before. A header alone is believed only if its mark could have
/// been written by the writer (at least the file header, at most its own offset), so that noise
/// that happens to pass a 32-bit checksum is not taken for one.
fn after_damage(
    path: &Path,
    version: u32,
    salt: u64,
    bytes: &[u8],
    pos: usize,
) -> Result<Option<Discarded>> {
    let header_bytes = super::format::record_header_bytes(version);
    let mut discarded: Option<Discarded> = None;
    let mut at = pos + 1;
    while at + header_bytes <= bytes.len() {
        let Some(header) = decode_record_header(version, salt, &bytes[at..]) else {
            at += 1;
            continue;
        };
        let whole = read_record(version, salt, bytes, at);
        let vouches = match (header.durable_through, &whole) {
            // Version 1 records say nothing of durability: any whole record is corruption.
            (None, Some(_)) => true,
            (None, None) => false,
            (Some(durable), Some(_)) => durable > pos as u64,
            (Some(durable), None) => {
                durable > pos as u64 && durable >= FILE_HEADER_BYTES as u64 && durable <= at as u64
            }
        };
        if vouches {
            return Err(damaged_record(path, version, salt, bytes, pos, at));
        }
        let Some((payload, next, _)) = whole else {
            at += 1;
            continue;
        };
        // Framed before the damaged record's fsync completed: cut with it.
        let (first, count) = postcard::take_from_bytes::<BatchHeader>(payload)
            .map(|(header, _)| (header.first_seq, header.tenant_seqs.len() as u64))
            .unwrap_or((0, 0));
        let last = first.saturating_add(count.saturating_sub(1));
        let so_far = discarded.get_or_insert(Discarded {
            records: 0,
            first_seq: first,
            last_seq: last,
        });
        so_far.records += 1;
        so_far.last_seq = so_far.last_seq.max(last);
        at = next;
    }
    Ok(discarded)
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

/// Reads the record at `pos` if it is whole and both its checksums hold: its payload, where the
/// next record starts, and its `durable_through` (version 2).
fn read_record(
    version: u32,
    salt: u64,
    bytes: &[u8],
    pos: usize,
) -> Option<(&[u8], usize, Option<u64>)> {
    let header = decode_record_header(version, salt, bytes.get(pos..)?)?;
    let start = pos + header.bytes();
    let end = start.checked_add(header.payload_len as usize)?;
    let payload = bytes.get(start..end)?;
    (payload_checksum(salt, payload) == header.payload_crc).then_some((
        payload,
        end,
        header.durable_through,
    ))
}

fn damaged_record(
    path: &Path,
    version: u32,
    salt: u64,
    bytes: &[u8],
    pos: usize,
    valid_at: usize,
) -> Error {
    if let Some(header) = decode_record_header(version, salt, &bytes[pos..]) {
        let start = pos + header.bytes();
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
        reason: if version == super::format::VERSION_1 {
            format!("damaged wal record header, yet a valid record follows at offset {valid_at}")
        } else {
            format!(
                "damaged wal record header, yet the record at offset {valid_at} was written \
                 after it was durable"
            )
        },
    }
}
