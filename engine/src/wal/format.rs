//! Byte layout of WAL segment files (`wal/{first_seq:020}.wal`), specified in `docs/FORMAT.md`.
//!
//! ```text
//! file      := header record*
//! header    := magic "AUDITWAL" (8) | version u32 | header_crc u32 | first_seq u64 | salt u64   (32 bytes)
//! record v2 := payload_len u32 | payload_crc u32 | durable_through u64 | header_crc u32 | payload
//! record v1 := payload_len u32 | payload_crc u32 | header_crc u32 | payload
//! ```
//!
//! `header_crc` of the file is CRC32 over bytes 0..12 and 16..32. Each record's `payload_crc` is
//! CRC32 over `salt (8 bytes LE) ‖ payload` and its `header_crc` CRC32 over the salt and the
//! record header's other fields: the salt is random per file, so a stale record left in a reused
//! file never verifies, and the separate header checksum lets recovery search past a damaged
//! record for a valid one.
//!
//! `durable_through` (version 2, the version written) is how much of the file the writer knew to
//! be durable when it framed the record, a lower bound: the end of the newest group whose
//! `fdatasync` had completed and been published. Group commit keeps more than one fsync in
//! flight, and a power loss may keep any of the sectors written since the last completed fsync
//! and lose others, so a damaged record can be followed by whole ones that were never
//! acknowledged either. Recovery cuts the file at a damaged record when no record after it
//! (whole, or with only its header intact) says the damaged record was already durable (a torn
//! tail), and reports corruption when one does. Version 1 files (no such field) are still read,
//! with the stricter rule of version 1: any valid record after a damaged one is corruption.
//!
//! A payload is one appended batch: `postcard(BatchHeader)` followed by `postcard(Vec<Event>)`,
//! decoded by the hand-written reader in [`super::payload`].
//!
//! ```
//! use auditlog_engine::wal::format::{encode_record, decode_record_header, VERSION};
//! let mut out = Vec::new();
//! encode_record(42, 32, b"payload", &mut out);
//! let header = decode_record_header(VERSION, 42, &out).unwrap();
//! assert_eq!((header.payload_len, header.durable_through), (7, Some(32)));
//! assert_eq!(out.len(), header.bytes() + 7);
//! ```

use serde::{Deserialize, Serialize};

pub use super::payload::decode_payload;
use crate::event::Event;

pub const MAGIC: &[u8; 8] = b"AUDITWAL";
/// The version written; [`VERSION_1`] files are still read.
pub const VERSION: u32 = 2;
/// The first version: records without `durable_through`.
pub const VERSION_1: u32 = 1;
pub const FILE_HEADER_BYTES: usize = 32;
/// Bytes of a record header in the version written ([`VERSION`]).
pub const RECORD_HEADER_BYTES: usize = 20;
/// Bytes of a record header in a [`VERSION_1`] file.
pub const RECORD_HEADER_BYTES_V1: usize = 12;
/// No record is larger than this (a batch is limited well below it); a larger length is corrupt.
pub const RECORD_PAYLOAD_MAX_BYTES: u32 = 256 << 20;

const _: () = assert!(FILE_HEADER_BYTES == 8 + 4 + 4 + 8 + 8);
const _: () = assert!(RECORD_HEADER_BYTES == 4 + 4 + 8 + 4);
const _: () = assert!(RECORD_HEADER_BYTES_V1 == 4 + 4 + 4);

/// Bytes of a record header in a file of `version` (one [`FileHeader::decode`] accepted).
pub fn record_header_bytes(version: u32) -> usize {
    if version == VERSION_1 {
        RECORD_HEADER_BYTES_V1
    } else {
        RECORD_HEADER_BYTES
    }
}

/// The fixed header at the start of every WAL file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    pub version: u32,
    /// Seq of the first event this file may hold (its name too).
    pub first_seq: u64,
    /// Random per file; salts every record checksum.
    pub salt: u64,
}

impl FileHeader {
    pub fn encode(&self) -> [u8; FILE_HEADER_BYTES] {
        let mut out = [0u8; FILE_HEADER_BYTES];
        out[0..8].copy_from_slice(MAGIC);
        out[8..12].copy_from_slice(&self.version.to_le_bytes());
        out[16..24].copy_from_slice(&self.first_seq.to_le_bytes());
        out[24..32].copy_from_slice(&self.salt.to_le_bytes());
        let crc = Self::checksum(&out);
        out[12..16].copy_from_slice(&crc.to_le_bytes());
        out
    }

    fn checksum(bytes: &[u8; FILE_HEADER_BYTES]) -> u32 {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&bytes[0..12]);
        hasher.update(&bytes[16..32]);
        hasher.finalize()
    }

    /// Decodes and checks a header; the error says what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<FileHeader, HeaderError> {
        let bytes: &[u8; FILE_HEADER_BYTES] = bytes
            .get(..FILE_HEADER_BYTES)
            .and_then(|b| b.try_into().ok())
            .ok_or(HeaderError::Truncated)?;
        if &bytes[0..8] != MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let stored = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
        let computed = Self::checksum(bytes);
        if stored != computed {
            return Err(HeaderError::Checksum {
                expected: stored,
                found: computed,
            });
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != VERSION && version != VERSION_1 {
            return Err(HeaderError::Version(version));
        }
        Ok(FileHeader {
            version,
            first_seq: u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes")),
            salt: u64::from_le_bytes(bytes[24..32].try_into().expect("8 bytes")),
        })
    }
}

/// Why a file header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    Truncated,
    BadMagic,
    Checksum { expected: u32, found: u32 },
    Version(u32),
}

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub payload_len: u32,
    pub payload_crc: u32,
    /// Version 2: the file was durable through this offset when the record was framed.
    pub durable_through: Option<u64>,
}

impl RecordHeader {
    /// Bytes of this header in its file.
    pub fn bytes(&self) -> usize {
        match self.durable_through {
            Some(_) => RECORD_HEADER_BYTES,
            None => RECORD_HEADER_BYTES_V1,
        }
    }
}

fn salted_crc(salt: u64, parts: &[&[u8]]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&salt.to_le_bytes());
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize()
}

/// Appends one framed record (the version written) to `out`; `durable_through` is how much of
/// the file is known durable (see the module docs).
pub fn encode_record(salt: u64, durable_through: u64, payload: &[u8], out: &mut Vec<u8>) {
    encode_record_parts(salt, durable_through, &[payload], out);
}

/// Appends one framed record whose payload is `parts` one after the other (the same bytes as
/// [`encode_record`] of their concatenation, without building it).
///
/// ```
/// use auditlog_engine::wal::format::{encode_record, encode_record_parts};
/// let (mut whole, mut parts) = (Vec::new(), Vec::new());
/// encode_record(7, 32, b"header+events", &mut whole);
/// encode_record_parts(7, 32, &[b"header", b"+events"], &mut parts);
/// assert_eq!(whole, parts);
/// ```
pub fn encode_record_parts(salt: u64, durable_through: u64, parts: &[&[u8]], out: &mut Vec<u8>) {
    let len: usize = parts.iter().map(|part| part.len()).sum();
    out.reserve(RECORD_HEADER_BYTES + len);
    encode_record_header(salt, durable_through, parts, out);
    for part in parts {
        out.extend_from_slice(part);
    }
}

/// Appends only the header of the record [`encode_record_parts`] frames: for a writer that
/// writes the payload's parts from where they are (`writev`) right after it.
///
/// ```
/// use auditlog_engine::wal::format::{encode_record_header, encode_record_parts};
/// let (mut whole, mut header) = (Vec::new(), Vec::new());
/// encode_record_parts(7, 32, &[b"header", b"+events"], &mut whole);
/// encode_record_header(7, 32, &[b"header", b"+events"], &mut header);
/// assert_eq!(whole, [&header[..], b"header+events"].concat());
/// ```
pub fn encode_record_header(salt: u64, durable_through: u64, parts: &[&[u8]], out: &mut Vec<u8>) {
    let len: usize = parts.iter().map(|part| part.len()).sum();
    let payload_len = u32::try_from(len).expect("record payload fits u32");
    let payload_crc = salted_crc(salt, parts);
    let header_crc = salted_crc(
        salt,
        &[
            &payload_len.to_le_bytes(),
            &payload_crc.to_le_bytes(),
            &durable_through.to_le_bytes(),
        ],
    );
    out.extend_from_slice(&payload_len.to_le_bytes());
    out.extend_from_slice(&payload_crc.to_le_bytes());
    out.extend_from_slice(&durable_through.to_le_bytes());
    out.extend_from_slice(&header_crc.to_le_bytes());
}

/// Appends one version 1 record (no `durable_through`) to `out`. The writer no longer writes
/// version 1; this pins its bytes in the golden-file tests and builds v1 files for recovery tests.
pub fn encode_record_v1(salt: u64, payload: &[u8], out: &mut Vec<u8>) {
    let payload_len = u32::try_from(payload.len()).expect("record payload fits u32");
    let payload_crc = salted_crc(salt, &[payload]);
    let header_crc = salted_crc(
        salt,
        &[&payload_len.to_le_bytes(), &payload_crc.to_le_bytes()],
    );
    out.extend_from_slice(&payload_len.to_le_bytes());
    out.extend_from_slice(&payload_crc.to_le_bytes());
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Decodes the header of a record in a file of `version`, or `None` when its checksum or length
/// is wrong (or `bytes` is too short for it).
pub fn decode_record_header(version: u32, salt: u64, bytes: &[u8]) -> Option<RecordHeader> {
    let header_bytes = record_header_bytes(version);
    let bytes = bytes.get(..header_bytes)?;
    let payload_len = u32::from_le_bytes(bytes[0..4].try_into().ok()?);
    let payload_crc = u32::from_le_bytes(bytes[4..8].try_into().ok()?);
    // The length first: it is cheaper, and recovery tries this at every offset of a torn
    // tail (up to a recycled file's worth of stale bytes).
    if payload_len == 0 || payload_len > RECORD_PAYLOAD_MAX_BYTES {
        return None;
    }
    let crc_at = header_bytes - 4;
    let header_crc = u32::from_le_bytes(bytes[crc_at..header_bytes].try_into().ok()?);
    if salted_crc(salt, &[&bytes[..crc_at]]) != header_crc {
        return None;
    }
    let durable_through = (header_bytes == RECORD_HEADER_BYTES)
        .then(|| u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")));
    Some(RecordHeader {
        payload_len,
        payload_crc,
        durable_through,
    })
}

/// CRC of a payload as stored in its record header.
pub fn payload_checksum(salt: u64, payload: &[u8]) -> u32 {
    salted_crc(salt, &[payload])
}

/// What the writer assigns to a batch; the first part of every record payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchHeader {
    /// Seq of the first event; the i-th event has `first_seq + i`.
    pub first_seq: u64,
    pub received_us: i64,
    /// The per-tenant counter of each event, in event order.
    pub tenant_seqs: Vec<u64>,
}

/// Builds a record payload from a batch header and the batch's events already encoded with
/// [`encode_events`].
pub fn encode_payload(header: &BatchHeader, encoded_events: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&encode_batch_header(header));
    out.extend_from_slice(encoded_events);
}

/// The first part of a record payload (see [`encode_payload`]).
pub fn encode_batch_header(header: &BatchHeader) -> Vec<u8> {
    // postcard into a Vec cannot fail for these types.
    postcard::to_stdvec(header).expect("batch header encodes")
}

/// Encodes events the way a payload carries them (postcard `Vec<Event>`).
pub fn encode_events(events: &[Event]) -> Vec<u8> {
    // Sized for the strings plus a few bytes of lengths, tags and varints per field, so the
    // buffer is not grown (and copied) on the way.
    let capacity: usize = events.iter().map(|e| e.text_len() + 48).sum::<usize>() + 8;
    postcard::serialize_with_flavor(events, VecFlavor(Vec::with_capacity(capacity)))
        .expect("events encode")
}

/// postcard output into a `Vec` given with its capacity, each string copied with
/// `extend_from_slice`. postcard's `to_extend` copies through `Extend` instead: 324 against
/// 280 ns per realistic event (`benches/examples/encode_profile.rs`). The bytes are the same.
struct VecFlavor(Vec<u8>);

impl postcard::ser_flavors::Flavor for VecFlavor {
    type Output = Vec<u8>;

    #[inline(always)]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    #[inline(always)]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}
