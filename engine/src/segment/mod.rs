//! Sealed segments: the immutable, columnar, compressed, checksummed files that hold the events
//! of one time partition (UTC day x retention class).
//!
//! The store calls [`encode_segment`] when it seals the tail and when it merges small segments;
//! it writes the returned bytes through its [`crate::io::Vfs`] and publishes the [`SegmentMeta`] in
//! the manifest. Readers open a file with [`Segment::open`] (memory-mapped) and decode only what
//! they need: [`Segment::read_block`] takes a [`Columns`] set, so a filter over timestamps and
//! tenants never decompresses `details`.
//!
//! Layout in one breath: header, then for each block of `block_rows` rows one chunk per column,
//! then the segment-level dictionaries, the idempotency-key Bloom filter, the block directory and a
//! fixed-size footer. Rows are sorted by `(tenant, timestamp, seq)`, so one tenant's rows are
//! contiguous ([`Segment::tenant_rows`]) and its newest rows sit at the end of its range. Every
//! chunk carries a CRC32 salted with the segment id. `docs/FORMAT.md` ("Sealed segment") is the
//! byte-level specification.
//!
//! What it is not for: it holds no per-value bitmaps and no full-text index (the `auditlog-index`
//! crate builds those from blocks and dictionaries), and it never changes a file once written.
//!
//! Limits: a decoded chunk is at most [`CHUNK_RAW_BYTES_MAX`] bytes (the encoder refuses larger
//! blocks); a segment holds at most `u32::MAX` blocks and distinct values per column.
//!
//! ```
//! use auditlog_engine::event::{Actor, Event, StoredEvent, Resource};
//! use auditlog_engine::segment::{encode_segment, Columns, Column, EncodeOptions, Segment};
//! let rows: Vec<StoredEvent> = (1..=3)
//!     .map(|seq| StoredEvent {
//!         seq,
//!         tenant_seq: seq,
//!         received_us: 1_795_000_000_000_000 + seq as i64,
//!         event: Event {
//!             id: Some(format!("evt_{seq}").into()),
//!             timestamp_us: 1_795_000_000_000_000 + seq as i64,
//!             tenant: "acct_0042".into(),
//!             actor: Actor { id: Some("user_913".into()), ..Actor::default() },
//!             action: "login".into(),
//!             resource: Resource { kind: "account".into(), ..Resource::default() },
//!             ..Event::default()
//!         },
//!     })
//!     .collect();
//! let encoded = encode_segment(7, &rows, &EncodeOptions::default()).unwrap();
//! let segment = Segment::from_bytes("memory.seg", encoded.bytes).unwrap();
//! assert_eq!(segment.read_all().unwrap(), rows);
//! let block = segment.read_block(0, Columns::of(&[Column::Seq])).unwrap();
//! assert_eq!(block.seqs(), &[1, 2, 3]);
//! assert_eq!(segment.find_key("acct_0042", "evt_2").unwrap(), Some(2));
//! ```

mod block;
mod bloom;
mod decoder;
mod dictionary;
mod encoder;
mod footer;
mod format;
mod json_text;
mod packed_text;

use serde::{Deserialize, Serialize};

pub use block::Block;
pub use bloom::key_hash;
pub use decoder::{BlockMeta, Segment};
pub use dictionary::Dictionary;
pub(crate) use dictionary::FxHasher;
pub use encoder::{
    encode_segment, encode_segment_refs, split_for_chunk_limit, EncodeOptions, EncodedSegment,
};
pub use footer::FOOTER_LEN;
pub use format::{get_varint, put_varint, VarintError};
pub use format::{
    Column, ColumnKind, CHUNK_RAW_BYTES_MAX, COLUMN_COUNT, FORMAT_VERSION, FORMAT_VERSION_MIN,
    HEADER_LEN, MAGIC,
};

/// What the manifest records about a sealed segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMeta {
    pub segment_id: u64,
    /// Number of events.
    pub rows: u64,
    /// Smallest and largest event timestamp (0 and 0 for an empty segment).
    pub min_timestamp_us: i64,
    pub max_timestamp_us: i64,
    /// Smallest and largest `seq` (0 and 0 for an empty segment).
    pub min_seq: u64,
    pub max_seq: u64,
    /// File size.
    pub bytes: u64,
}

/// A set of columns to decode: a bitset indexed by [`Column::index`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Columns(u32);

impl Columns {
    pub const NONE: Columns = Columns(0);
    pub const ALL: Columns = Columns((1u32 << COLUMN_COUNT) - 1);

    /// The set holding exactly `columns`.
    pub const fn of(columns: &[Column]) -> Columns {
        let mut bits = 0u32;
        let mut i = 0;
        while i < columns.len() {
            bits |= 1u32 << (columns[i] as u32);
            i += 1;
        }
        Columns(bits)
    }

    /// This set plus `column`.
    pub const fn with(self, column: Column) -> Columns {
        Columns(self.0 | (1u32 << (column as u32)))
    }

    pub const fn contains(self, column: Column) -> bool {
        self.0 & (1u32 << (column as u32)) != 0
    }

    /// True when every column of `other` is in this set.
    pub const fn contains_all(self, other: Columns) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The columns of the set, in file order.
    pub fn iter(self) -> impl Iterator<Item = Column> {
        Column::ALL.into_iter().filter(move |c| self.contains(*c))
    }
}

impl From<Column> for Columns {
    fn from(column: Column) -> Columns {
        Columns::NONE.with(column)
    }
}

impl std::ops::BitOr for Columns {
    type Output = Columns;
    fn bitor(self, other: Columns) -> Columns {
        Columns(self.0 | other.0)
    }
}

impl std::ops::BitOr<Column> for Columns {
    type Output = Columns;
    fn bitor(self, column: Column) -> Columns {
        self.with(column)
    }
}

impl std::ops::BitOr for Column {
    type Output = Columns;
    fn bitor(self, other: Column) -> Columns {
        Columns::from(self).with(other)
    }
}

#[cfg(test)]
mod tests;
