//! The fixed-size header at the start of a sealed segment and the fixed-size footer at its end.
//!
//! ```text
//! header (24 bytes)
//!   0  [u8; 8] magic "AUDITSEG"
//!   8  u32     format version (2; 1 is still read)
//!  12  u32     flags (0; readers reject others)
//!  16  u64     segment id
//!
//! footer (132 bytes, at file_len - 132)
//!   0  u64      segment id (equals the header's)
//!   8  u64      row count
//!  16  u32      block count
//!  20  u32      column count (19 in v1)
//!  24  i64      min timestamp (µs)        32  i64  max timestamp (µs)
//!  40  u64      min seq                   48  u64  max seq
//!  56  ChunkRef block directory (21 bytes: u64 offset, u32 stored len, u32 raw len, u32 crc, u8 codec)
//!  77  u64      dictionary section offset 85  u64  dictionary section length
//!  93  ChunkRef key filter (21 bytes)
//! 114  u16      reserved (0)
//! 116  u32      format version (equals the header's)
//! 120  u32      salted crc32 of footer bytes 0..120
//! 124  [u8; 8]  magic "AUDITSEG"
//! ```

use std::path::Path;

use crate::error::{Error, Result};

use super::format::{
    salted_crc, ChunkRef, Reader, CHUNK_REF_LEN, FILE_KIND, FORMAT_VERSION, FORMAT_VERSION_MIN,
    HEADER_LEN, MAGIC,
};

/// Size of the footer.
pub const FOOTER_LEN: usize = 132;
/// Offset of the footer's crc field; the crc covers the bytes before it.
const FOOTER_CRC_AT: usize = 120;
const _: () = assert!(FOOTER_CRC_AT == 8 * 7 + CHUNK_REF_LEN + 16 + CHUNK_REF_LEN + 2 + 4);
const _: () = assert!(FOOTER_LEN == FOOTER_CRC_AT + 4 + MAGIC.len());

/// The decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub flags: u32,
    pub segment_id: u64,
}

impl Header {
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&self.segment_id.to_le_bytes());
    }

    /// Reads and checks the header: magic first, then the version.
    pub fn read(file: &[u8], path: &Path) -> Result<Header> {
        let Some(magic) = file.get(..MAGIC.len()) else {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                offset: file.len() as u64,
                reason: format!(
                    "truncated: {} bytes cannot hold a sealed segment header",
                    file.len()
                ),
            });
        };
        if magic != MAGIC {
            return Err(Error::BadMagic {
                path: path.to_path_buf(),
                kind: FILE_KIND,
            });
        }
        let bytes = file.get(..HEADER_LEN).ok_or_else(|| Error::Corrupt {
            path: path.to_path_buf(),
            offset: file.len() as u64,
            reason: format!("truncated: header needs {HEADER_LEN} bytes"),
        })?;
        let mut reader = Reader::new(bytes, path, 0, "header");
        reader.take(MAGIC.len())?;
        let version = reader.u32()?;
        if !(FORMAT_VERSION_MIN..=FORMAT_VERSION).contains(&version) {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                kind: FILE_KIND,
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let flags = reader.u32()?;
        let segment_id = reader.u64()?;
        Ok(Header {
            version,
            flags,
            segment_id,
        })
    }
}

/// The decoded footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    pub segment_id: u64,
    pub row_count: u64,
    pub block_count: u32,
    pub column_count: u32,
    pub min_timestamp_us: i64,
    pub max_timestamp_us: i64,
    pub min_seq: u64,
    pub max_seq: u64,
    pub directory: ChunkRef,
    pub dictionary_offset: u64,
    pub dictionary_len: u64,
    pub filter: ChunkRef,
    pub version: u32,
}

impl Footer {
    pub fn write(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&self.segment_id.to_le_bytes());
        out.extend_from_slice(&self.row_count.to_le_bytes());
        out.extend_from_slice(&self.block_count.to_le_bytes());
        out.extend_from_slice(&self.column_count.to_le_bytes());
        out.extend_from_slice(&self.min_timestamp_us.to_le_bytes());
        out.extend_from_slice(&self.max_timestamp_us.to_le_bytes());
        out.extend_from_slice(&self.min_seq.to_le_bytes());
        out.extend_from_slice(&self.max_seq.to_le_bytes());
        self.directory.write(out);
        out.extend_from_slice(&self.dictionary_offset.to_le_bytes());
        out.extend_from_slice(&self.dictionary_len.to_le_bytes());
        self.filter.write(out);
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        debug_assert_eq!(out.len() - start, FOOTER_CRC_AT);
        let crc = salted_crc(self.segment_id, &out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&MAGIC);
        debug_assert_eq!(out.len() - start, FOOTER_LEN);
    }

    /// Reads and checks the footer at the end of `file` (whose header is already checked).
    pub fn read(file: &[u8], path: &Path, header: &Header) -> Result<Footer> {
        let corrupt = |offset: u64, reason: String| Error::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason,
        };
        let file_len = file.len();
        if file_len < HEADER_LEN + FOOTER_LEN {
            return Err(corrupt(
                file_len as u64,
                format!("truncated: {file_len} bytes cannot hold header and footer"),
            ));
        }
        let start = file_len - FOOTER_LEN;
        let bytes = &file[start..];
        if bytes[FOOTER_LEN - MAGIC.len()..] != MAGIC {
            return Err(corrupt(
                (file_len - MAGIC.len()) as u64,
                "footer magic missing (truncated or partly written file)".into(),
            ));
        }
        let mut reader = Reader::new(bytes, path, start as u64, "footer");
        let segment_id = reader.u64()?;
        let row_count = reader.u64()?;
        let block_count = reader.u32()?;
        let column_count = reader.u32()?;
        let min_timestamp_us = reader.i64()?;
        let max_timestamp_us = reader.i64()?;
        let min_seq = reader.u64()?;
        let max_seq = reader.u64()?;
        let directory = ChunkRef::read(&mut reader)?;
        let dictionary_offset = reader.u64()?;
        let dictionary_len = reader.u64()?;
        let filter = ChunkRef::read(&mut reader)?;
        let _reserved = reader.take(2)?;
        let version = reader.u32()?;
        let stored_crc = reader.u32()?;
        // Salted with the header's id: a footer copied from another segment fails here.
        let crc = salted_crc(header.segment_id, &bytes[..FOOTER_CRC_AT]);
        if crc != stored_crc {
            return Err(Error::ChecksumMismatch {
                path: path.to_path_buf(),
                offset: start as u64,
                expected: stored_crc,
                found: crc,
            });
        }
        if segment_id != header.segment_id {
            return Err(corrupt(
                start as u64,
                format!(
                    "footer names segment {segment_id}, header names {}",
                    header.segment_id
                ),
            ));
        }
        if version != header.version {
            return Err(corrupt(
                start as u64,
                format!(
                    "footer version {version} differs from header version {}",
                    header.version
                ),
            ));
        }
        Ok(Footer {
            segment_id,
            row_count,
            block_count,
            column_count,
            min_timestamp_us,
            max_timestamp_us,
            min_seq,
            max_seq,
            directory,
            dictionary_offset,
            dictionary_len,
            filter,
            version,
        })
    }

    /// Offset of the footer in a file of `file_len` bytes.
    pub fn offset_in(file_len: u64) -> u64 {
        file_len.saturating_sub(FOOTER_LEN as u64)
    }
}
