//! Byte-level building blocks of the sealed segment format: constants, the column list, chunk
//! references, salted checksums, varints and a bounds-checked reader.
//!
//! Everything here is little-endian. `docs/FORMAT.md` ("Sealed segment") is the specification;
//! a change to any constant or layout in this file is a format change.

use std::path::Path;

use crate::error::{Error, Result};

/// First and last eight bytes of every sealed segment file.
pub const MAGIC: [u8; 8] = *b"AUDITSEG";
/// The format version this build writes and the highest it reads.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format version this build reads (v1 files are read, never written).
pub const FORMAT_VERSION_MIN: u32 = 1;
/// Name used in `BadMagic` / `UnsupportedVersion` errors.
pub const FILE_KIND: &str = "sealed segment";

/// magic (8) + version (4) + flags (4) + segment_id (8).
pub const HEADER_LEN: usize = 24;
const _: () = assert!(HEADER_LEN == 8 + 4 + 4 + 8);

/// Codec byte of a chunk: the stored bytes are the raw bytes.
pub const CODEC_RAW: u8 = 0;
/// Codec byte of a chunk: the stored bytes are one zstd frame (no content size, no checksum).
pub const CODEC_ZSTD: u8 = 1;

/// Codec byte of a chunk: `u32 frame_len`, one zstd frame of that many bytes, then raw bytes up
/// to the end of the chunk; the raw bytes are the frame's content followed by the raw tail.
/// Used when the end of a chunk is random (packed hex of request ids).
pub const CODEC_ZSTD_RAW_TAIL: u8 = 2;

/// Codec byte of a chunk (v2): one zstd frame compressed with the segment's text dictionary of
/// the chunk's column ([`TEXT_DICTIONARY_COLUMNS`]) as a raw-content zstd dictionary.
pub const CODEC_ZSTD_DICT: u8 = 3;
/// Codec byte of a chunk (v2): [`CODEC_ZSTD_RAW_TAIL`] whose frame is compressed with the
/// segment's text dictionary of the chunk's column.
pub const CODEC_ZSTD_DICT_RAW_TAIL: u8 = 4;

/// Whether a codec byte needs the segment's text dictionary of the chunk's column.
pub fn codec_uses_dictionary(codec: u8) -> bool {
    matches!(codec, CODEC_ZSTD_DICT | CODEC_ZSTD_DICT_RAW_TAIL)
}

/// First byte of a text chunk: one varint per row, then the bytes of every present value.
pub const TEXT_LAYOUT_PLAIN: u8 = 0;
/// First byte of a text chunk: the JSON-aware layout of `json_text.rs`.
pub const TEXT_LAYOUT_SHREDDED: u8 = 1;
/// First byte of a text chunk: every present value is one common prefix followed by a fixed
/// number of symbols from a small alphabet, bit-packed (random ids such as `evt_` + base32).
pub const TEXT_LAYOUT_PACKED: u8 = 2;

/// First byte of a `received` chunk: n zigzag varints of `received - timestamp`.
pub const RECEIVED_FROM_TIMESTAMP: u8 = 0;
/// First byte of a `received` chunk: nothing follows; each row's value is the value of the
/// segment's received run (in the block directory) that holds the row's `seq`.
pub const RECEIVED_FROM_SEQ_RUNS: u8 = 1;

/// Upper bound on the decoded size of any chunk. The encoder refuses to write a larger chunk and
/// the decoder refuses to allocate for one, so a damaged length cannot make a reader allocate
/// gigabytes.
pub const CHUNK_RAW_BYTES_MAX: u32 = 256 << 20;

/// A column of the segment, in file order. The discriminant is the column's index in every block's
/// chunk list and in the [`crate::segment::Columns`] bitset; it is part of the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Column {
    /// `tenant`: dictionary codes, delta-encoded (rows are tenant-sorted).
    Tenant = 0,
    /// `seq`: zigzag varint deltas.
    Seq = 1,
    /// `tenant_seq`: zigzag varint deltas.
    TenantSeq = 2,
    /// `timestamp` (µs): zigzag varint deltas.
    Timestamp = 3,
    /// `received` (µs): `received - timestamp`, or looked up by `seq` in the segment's received
    /// runs (received is a step function of seq: one value per group commit).
    Received = 4,
    /// `id` (idempotency key): plain or bit-packed text.
    Id = 5,
    /// `project`: dictionary codes.
    Project = 6,
    /// `actor.id`: dictionary codes.
    ActorId = 7,
    /// `actor.email`: dictionary codes.
    ActorEmail = 8,
    /// `actor.type`: one byte per row.
    ActorType = 9,
    /// `actor.ip`: dictionary codes.
    ActorIp = 10,
    /// `actor.user_agent`: dictionary codes.
    ActorUserAgent = 11,
    /// `action`: dictionary codes.
    Action = 12,
    /// `outcome`: one byte per row.
    Outcome = 13,
    /// `resource.type`: dictionary codes.
    ResourceType = 14,
    /// `resource.id`: dictionary codes.
    ResourceId = 15,
    /// `resource.name`: dictionary codes.
    ResourceName = 16,
    /// `changes` (compact JSON): plain text.
    Changes = 17,
    /// `details` (compact JSON): plain text.
    Details = 18,
}

/// Number of columns in a v1 segment.
pub const COLUMN_COUNT: usize = 19;

/// How a column's values are laid out in its chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// Unsigned 64-bit integers, zigzag varint deltas from the previous row (first from 0).
    DeltaU64,
    /// Signed 64-bit integers, zigzag varint deltas from the previous row (first from 0).
    DeltaI64,
    /// `received`: a mode byte, then ([`RECEIVED_FROM_TIMESTAMP`]) zigzag varints of
    /// `received - timestamp` of the same row, or ([`RECEIVED_FROM_SEQ_RUNS`]) nothing.
    ReceivedOffset,
    /// Segment dictionary codes (0 = absent), move-to-front coded over the last
    /// [`RECENT_CODES`] distinct codes of the block, varint per row (see [`RecentCodes`]);
    /// columns with a [`dictionary_parent`] store 0 for "same as the last row with this parent
    /// code" and the move-to-front value + 1 otherwise.
    Dictionary,
    /// Segment dictionary codes, zigzag varint deltas (used for the sorted tenant column).
    DictionaryDelta,
    /// One byte per row (an enum code).
    Byte,
    /// A layout byte, then for [`TEXT_LAYOUT_PLAIN`]: varint per row (0 = absent, n + 1 =
    /// present with n bytes), then the bytes of every present value, concatenated; for
    /// [`TEXT_LAYOUT_SHREDDED`]: the JSON-aware layout (`changes` and `details` only).
    Text,
}

impl Column {
    /// Every column in file order.
    pub const ALL: [Column; COLUMN_COUNT] = [
        Column::Tenant,
        Column::Seq,
        Column::TenantSeq,
        Column::Timestamp,
        Column::Received,
        Column::Id,
        Column::Project,
        Column::ActorId,
        Column::ActorEmail,
        Column::ActorType,
        Column::ActorIp,
        Column::ActorUserAgent,
        Column::Action,
        Column::Outcome,
        Column::ResourceType,
        Column::ResourceId,
        Column::ResourceName,
        Column::Changes,
        Column::Details,
    ];

    /// The column's index in file order.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The column with file index `index`.
    pub fn from_index(index: usize) -> Option<Column> {
        Column::ALL.get(index).copied()
    }

    /// The field's name as EVENT.md spells it.
    pub fn name(self) -> &'static str {
        match self {
            Column::Tenant => "tenant",
            Column::Seq => "seq",
            Column::TenantSeq => "tenant_seq",
            Column::Timestamp => "timestamp",
            Column::Received => "received",
            Column::Id => "id",
            Column::Project => "project",
            Column::ActorId => "actor.id",
            Column::ActorEmail => "actor.email",
            Column::ActorType => "actor.type",
            Column::ActorIp => "actor.ip",
            Column::ActorUserAgent => "actor.user_agent",
            Column::Action => "action",
            Column::Outcome => "outcome",
            Column::ResourceType => "resource.type",
            Column::ResourceId => "resource.id",
            Column::ResourceName => "resource.name",
            Column::Changes => "changes",
            Column::Details => "details",
        }
    }

    /// How the column is encoded.
    pub fn kind(self) -> ColumnKind {
        match self {
            Column::Tenant => ColumnKind::DictionaryDelta,
            Column::Seq | Column::TenantSeq => ColumnKind::DeltaU64,
            Column::Timestamp => ColumnKind::DeltaI64,
            Column::Received => ColumnKind::ReceivedOffset,
            Column::Id | Column::Changes | Column::Details => ColumnKind::Text,
            Column::ActorType | Column::Outcome => ColumnKind::Byte,
            Column::Project
            | Column::ActorId
            | Column::ActorEmail
            | Column::ActorIp
            | Column::ActorUserAgent
            | Column::Action
            | Column::ResourceType
            | Column::ResourceId
            | Column::ResourceName => ColumnKind::Dictionary,
        }
    }

    /// True for the columns whose values live in a segment-level dictionary.
    pub fn is_dictionary(self) -> bool {
        matches!(
            self.kind(),
            ColumnKind::Dictionary | ColumnKind::DictionaryDelta
        )
    }

    /// True for plain text columns (`id`, `changes`, `details`).
    pub fn is_text(self) -> bool {
        self.kind() == ColumnKind::Text
    }
}

/// The dictionary columns, in the order their dictionaries are stored.
pub const DICTIONARY_COLUMNS: [Column; 10] = [
    Column::Tenant,
    Column::Project,
    Column::ActorId,
    Column::ActorEmail,
    Column::ActorIp,
    Column::ActorUserAgent,
    Column::Action,
    Column::ResourceType,
    Column::ResourceId,
    Column::ResourceName,
];

/// Position of a dictionary column in [`DICTIONARY_COLUMNS`], `None` for other columns.
pub fn dictionary_slot(column: Column) -> Option<usize> {
    DICTIONARY_COLUMNS.iter().position(|c| *c == column)
}

/// The text columns that may have a segment-wide zstd dictionary (v2), in the order their
/// dictionaries are listed in the block directory: JSON documents whose shapes, keys and values
/// repeat from block to block, so a block's chunk compresses far better against a sample of
/// the whole segment than alone.
pub const TEXT_DICTIONARY_COLUMNS: [Column; 2] = [Column::Changes, Column::Details];

/// The position of `column` in [`TEXT_DICTIONARY_COLUMNS`].
pub fn text_dictionary_slot(column: Column) -> Option<usize> {
    TEXT_DICTIONARY_COLUMNS.iter().position(|c| *c == column)
}

/// The column a dictionary column is coded against: a row whose code equals the code the last
/// row with the same parent code had in this block (an actor's email, ip and user agent, a
/// resource's name, type and project) stores 0. The parent always decodes first.
pub fn dictionary_parent(column: Column) -> Option<Column> {
    match column {
        Column::ActorEmail | Column::ActorIp | Column::ActorUserAgent => Some(Column::ActorId),
        Column::Project | Column::ResourceType | Column::ResourceName => Some(Column::ResourceId),
        _ => None,
    }
}

/// The order in which a block's columns are decoded: every column after the columns it is
/// coded against (`received` after `seq` and `timestamp`, children after their parent).
pub const DECODE_ORDER: [Column; COLUMN_COUNT] = [
    Column::Tenant,
    Column::Seq,
    Column::TenantSeq,
    Column::Timestamp,
    Column::Received,
    Column::Id,
    Column::ActorId,
    Column::ResourceId,
    Column::Project,
    Column::ActorEmail,
    Column::ActorType,
    Column::ActorIp,
    Column::ActorUserAgent,
    Column::Action,
    Column::Outcome,
    Column::ResourceType,
    Column::ResourceName,
    Column::Changes,
    Column::Details,
];

/// Length of the move-to-front list of [`ColumnKind::Dictionary`] columns.
pub const RECENT_CODES: usize = 16;

/// Move-to-front coding of dictionary codes: one actor's session repeats its id, email, ip and
/// resource, so a recent code costs one small number instead of a large code. A value `v <
/// RECENT_CODES` names the `v`-th most recently used code of the block; `v >= RECENT_CODES` is
/// code `v - RECENT_CODES`, new to the list. Either way the code moves to the front.
#[derive(Debug, Clone, Default)]
pub struct RecentCodes {
    codes: [u32; RECENT_CODES],
    len: usize,
}

impl RecentCodes {
    #[inline]
    fn promote(&mut self, position: usize, code: u32) {
        // Positions are small (a session repeats its codes): a short loop beats a memmove call.
        let mut at = position;
        while at > 0 {
            self.codes[at] = self.codes[at - 1];
            at -= 1;
        }
        self.codes[0] = code;
    }

    /// The value to store for `code`.
    #[inline]
    pub fn encode(&mut self, code: u32) -> u64 {
        if let Some(position) = self.codes[..self.len].iter().position(|c| *c == code) {
            self.promote(position, code);
            return position as u64;
        }
        self.len = (self.len + 1).min(RECENT_CODES);
        self.promote(self.len - 1, code);
        RECENT_CODES as u64 + u64::from(code)
    }

    /// The code a stored value stands for; `None` for a position past the list.
    #[inline]
    pub fn decode(&mut self, value: u64) -> Option<u64> {
        if value < RECENT_CODES as u64 {
            let position = value as usize;
            if position >= self.len {
                return None;
            }
            let code = self.codes[position];
            self.promote(position, code);
            return Some(u64::from(code));
        }
        let code = value - RECENT_CODES as u64;
        self.len = (self.len + 1).min(RECENT_CODES);
        self.promote(self.len - 1, u32::try_from(code).ok()?);
        Some(code)
    }
}

/// Where a chunk is and how to check and decode it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChunkRef {
    /// Byte offset of the stored bytes from the start of the file.
    pub offset: u64,
    /// Number of stored bytes.
    pub stored_len: u32,
    /// Number of bytes after decoding the codec.
    pub raw_len: u32,
    /// Salted CRC32 of the stored bytes (see [`salted_crc`]).
    pub crc: u32,
    /// One of the `CODEC_*` bytes.
    pub codec: u8,
}

/// Serialized size of a [`ChunkRef`].
pub const CHUNK_REF_LEN: usize = 8 + 4 + 4 + 4 + 1;

impl ChunkRef {
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.stored_len.to_le_bytes());
        out.extend_from_slice(&self.raw_len.to_le_bytes());
        out.extend_from_slice(&self.crc.to_le_bytes());
        out.push(self.codec);
    }

    pub fn read(reader: &mut Reader<'_>) -> Result<ChunkRef> {
        Ok(ChunkRef {
            offset: reader.u64()?,
            stored_len: reader.u32()?,
            raw_len: reader.u32()?,
            crc: reader.u32()?,
            codec: reader.u8()?,
        })
    }

    /// Byte range of the stored bytes.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(u64::from(self.stored_len))
    }
}

/// CRC32 of `bytes` salted with the segment id: the eight little-endian id bytes are hashed
/// first, so a chunk copied from another segment does not verify.
pub fn salted_crc(segment_id: u64, bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&segment_id.to_le_bytes());
    hasher.update(bytes);
    hasher.finalize()
}

#[inline]
pub fn zigzag_encode(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

#[inline]
pub fn zigzag_decode(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// Appends `value` as an unsigned LEB128 varint (1 to 10 bytes).
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarintError {
    Truncated,
    Overlong,
}

impl VarintError {
    pub fn reason(self) -> &'static str {
        match self {
            VarintError::Truncated => "truncated varint",
            VarintError::Overlong => "varint longer than 10 bytes",
        }
    }
}

/// Reads one varint from `bytes` at `*position`, advancing it.
#[inline]
pub fn get_varint(bytes: &[u8], position: &mut usize) -> Result<u64, VarintError> {
    // Fast path: one byte (most codes and small deltas).
    if let Some(&byte) = bytes.get(*position) {
        if byte < 0x80 {
            *position += 1;
            return Ok(u64::from(byte));
        }
    }
    let mut value = 0u64;
    let mut shift = 0u32;
    loop {
        let Some(&byte) = bytes.get(*position) else {
            return Err(VarintError::Truncated);
        };
        *position += 1;
        if shift == 63 && byte > 1 {
            return Err(VarintError::Overlong);
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
        shift += 7;
        if shift > 63 {
            return Err(VarintError::Overlong);
        }
    }
}

/// A bounds-checked little-endian reader over a section of a file. Every failure becomes
/// `Error::Corrupt` naming the file and `base_offset` (the section's offset in the file).
pub struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
    path: &'a Path,
    base_offset: u64,
    what: &'a str,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8], path: &'a Path, base_offset: u64, what: &'a str) -> Self {
        Reader {
            bytes,
            position: 0,
            path,
            base_offset,
            what,
        }
    }

    pub fn corrupt(&self, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            path: self.path.to_path_buf(),
            offset: self.base_offset,
            reason: format!("{}: {}", self.what, reason.into()),
        }
    }

    pub fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        let end = self
            .position
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| {
                self.corrupt(format!(
                    "needs {len} bytes at position {} of {}",
                    self.position,
                    self.bytes.len()
                ))
            })?;
        let slice = &self.bytes[self.position..end];
        self.position = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let slice = self.take(N)?;
        let mut array = [0u8; N];
        array.copy_from_slice(slice);
        Ok(array)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    pub fn varint(&mut self) -> Result<u64> {
        get_varint(self.bytes, &mut self.position).map_err(|e| self.corrupt(e.reason()))
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_varint_round_trips_edges() {
        for value in [
            0u64,
            1,
            127,
            128,
            300,
            u32::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            let mut position = 0;
            assert_eq!(get_varint(&out, &mut position), Ok(value));
            assert_eq!(position, out.len());
        }
        let mut position = 0;
        assert_eq!(
            get_varint(&[0x80, 0x80], &mut position),
            Err(VarintError::Truncated)
        );
        let mut position = 0;
        assert_eq!(
            get_varint(&[0xff; 11], &mut position),
            Err(VarintError::Overlong)
        );
    }

    #[test]
    fn format_zigzag_round_trips_edges() {
        for value in [0i64, 1, -1, 63, -64, i64::MAX, i64::MIN] {
            assert_eq!(zigzag_decode(zigzag_encode(value)), value);
        }
        assert_eq!(zigzag_encode(-1), 1);
        assert_eq!(zigzag_encode(1), 2);
    }

    #[test]
    fn format_columns_are_in_index_order() {
        for (index, column) in Column::ALL.iter().enumerate() {
            assert_eq!(column.index(), index);
            assert_eq!(Column::from_index(index), Some(*column));
        }
        assert_eq!(Column::from_index(COLUMN_COUNT), None);
        for column in DICTIONARY_COLUMNS {
            assert!(column.is_dictionary());
        }
        let dictionary_count = Column::ALL.iter().filter(|c| c.is_dictionary()).count();
        assert_eq!(dictionary_count, DICTIONARY_COLUMNS.len());
    }
}
