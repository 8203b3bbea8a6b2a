//! The filter index of a sealed segment: for each exact-match field, the rows holding each value.
//!
//! One file per segment, `{segment_id:016x}.idx` beside the segment, written when the segment is
//! sealed or merged and removed with it (merge, retention). It is keyed by the segment's own
//! value codes ([`crate::codes`]): a query looks a value up in the segment dictionary once,
//! then reads that code's posting (the sorted row numbers holding it) from the index. Postings
//! of one filter are OR-ed, filters AND-ed, negations subtracted, all as [`RoaringBitmap`]s, so
//! a filtered page decodes only blocks that hold matching rows, and counts and facets come from
//! bitmap cardinalities.
//!
//! The tenant is not indexed: rows are sorted by tenant, so the segment already knows each
//! tenant's row range.
//!
//! # File layout (version 1, little-endian)
//!
//! ```text
//! offset  size  field
//! 0       8     magic "AUDLIDX\0"
//! 8       4     version (1)
//! 12      4     column count C
//! 16      8     segment id
//! 24      8     rows of the segment
//! 32      C*24  column table, per column:
//!                 u8  column id (the segment format's column number)
//!                 u8  granularity (0: postings hold row numbers, 1: block numbers)
//!                 u16 reserved (0)
//!                 u32 N: codes 1..=N have a posting
//!                 u64 offset of the column's section from the start of the file
//!                 u64 length of the section
//! ...     ...   sections, per column:
//!                 (N+1) u32 posting offsets, relative to the end of this table;
//!                 posting i (code i+1) is bytes [off[i], off[i+1])
//!                 postings
//! end-8   4     CRC-32 of every byte before it, the hasher seeded with the low 32 bits of
//!               the segment id XOR its high 32 bits (a file of another segment fails)
//! end-4   4     magic "IDX1"
//! ```
//!
//! A posting starts with a varint `count << 1 | kind`: kind 0 is followed by `count` varint
//! row numbers, the first absolute and each next as the delta from the previous one; kind 1 by
//! a bitmap in the portable Roaring format (whichever is smaller was written). An empty posting
//! (a value of the dictionary without rows, which a merge never makes but a reader accepts) is
//! the single byte 0.
//!
//! Example: a segment of 3 rows whose `action` column holds codes `[2, 1, 2]` has the action
//! section `[0, 2, 5]` (offsets) then `0x02 0x01` (code 1: one row, row 1) then
//! `0x04 0x00 0x02` (code 2: two rows, rows 0 and 2).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use auditlog_engine::segment::{get_varint, put_varint, Column, Columns, Segment};
use auditlog_engine::{Error, Result};
use memmap2::Mmap;
use roaring::RoaringBitmap;

use crate::codes::{max_code, Codes};

/// First bytes of a filter index file.
pub const MAGIC: [u8; 8] = *b"AUDLIDX\0";
/// Last bytes of a filter index file.
pub const END_MAGIC: [u8; 4] = *b"IDX1";
/// The version this code writes and reads.
pub const VERSION: u32 = 1;
const HEADER_LEN: usize = 32;
const TABLE_ENTRY_LEN: usize = 24;
const TRAILER_LEN: usize = 8;

/// The columns with a filter index, in the order they are written.
pub const FILTER_COLUMNS: [Column; 10] = [
    Column::Project,
    Column::Action,
    Column::Outcome,
    Column::ResourceType,
    Column::ResourceId,
    Column::ResourceName,
    Column::ActorId,
    Column::ActorEmail,
    Column::ActorIp,
    Column::ActorType,
];

/// What a column's postings number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// Row numbers: a posting is exactly the rows holding the value.
    Rows = 0,
    /// Block numbers: the blocks holding the value (a superset of its rows, checked row by
    /// row after decoding the column). For high-cardinality columns, whose values sit in few
    /// blocks each, this is several times smaller than rows. A reader accepts either
    /// granularity for any column.
    Blocks = 1,
}

/// The granularity each filter column is written with.
///
/// The user filter (`actor.id` or `actor.email`) is the page's most used one, so those two
/// keep exact row postings (about 1 B/event each at 10M events); resource ids and names and
/// IPs, rarer filters with many distinct values, are indexed by block.
pub fn granularity_of(column: Column) -> Granularity {
    match column {
        Column::ResourceId | Column::ResourceName | Column::ActorIp => Granularity::Blocks,
        _ => Granularity::Rows,
    }
}

/// A decoded posting.
#[derive(Debug, Clone, PartialEq)]
pub struct Posting {
    pub granularity: Granularity,
    /// Row or block numbers, per `granularity`.
    pub values: RoaringBitmap,
}

/// The file name of a segment's filter index.
pub fn file_name(segment_id: u64) -> String {
    format!("{segment_id:016x}.idx")
}

fn salt(segment_id: u64) -> u32 {
    (segment_id as u32) ^ ((segment_id >> 32) as u32)
}

/// Builds the filter index of `segment` (decoding only its filter columns).
pub fn build(segment: &Segment) -> Result<Vec<u8>> {
    build_with(segment, granularity_of)
}

/// [`build`] with another choice of granularity per column (a reader accepts any, so files
/// written under an earlier choice stay readable).
pub fn build_with(segment: &Segment, granularity_of: fn(Column) -> Granularity) -> Result<Vec<u8>> {
    let columns = FILTER_COLUMNS
        .iter()
        .fold(Columns::NONE, |set, c| set.with(*c));
    let mut postings: Vec<Vec<Vec<u32>>> = FILTER_COLUMNS
        .iter()
        .map(|&c| Ok(vec![Vec::new(); max_code(segment, c)? as usize + 1]))
        .collect::<Result<_>>()?;
    for block_index in 0..segment.blocks().len() {
        let block = segment.read_block(block_index, columns)?;
        let first = u32::try_from(block.first_row()).map_err(|_| too_many_rows(segment))?;
        for (slot, &column) in FILTER_COLUMNS.iter().enumerate() {
            let codes = Codes::of(&block, column);
            let by_block = granularity_of(column) == Granularity::Blocks;
            let lists = &mut postings[slot];
            for row in 0..codes.len() {
                let code = codes.get(row) as usize;
                if code != 0 {
                    let list = lists.get_mut(code).ok_or_else(|| Error::Corrupt {
                        path: segment.path().to_path_buf(),
                        offset: 0,
                        reason: format!("{} code {code} out of range", column.name()),
                    })?;
                    if !by_block {
                        list.push(first + row as u32);
                    } else if list.last() != Some(&(block_index as u32)) {
                        list.push(block_index as u32);
                    }
                }
            }
        }
    }
    let meta = segment.meta();
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(FILTER_COLUMNS.len() as u32).to_le_bytes());
    out.extend_from_slice(&meta.segment_id.to_le_bytes());
    out.extend_from_slice(&meta.rows.to_le_bytes());
    let table_start = out.len();
    out.resize(table_start + FILTER_COLUMNS.len() * TABLE_ENTRY_LEN, 0);
    let mut body = Vec::new();
    for (slot, (&column, lists)) in FILTER_COLUMNS.iter().zip(&postings).enumerate() {
        // Trailing codes without rows (enum columns) are left out.
        let codes = lists.iter().rposition(|l| !l.is_empty()).unwrap_or(0);
        let section_start = out.len();
        body.clear();
        let mut offsets = Vec::with_capacity(codes + 1);
        for list in &lists[1..=codes] {
            offsets.push(body.len() as u32);
            encode_posting(list, &mut body);
        }
        offsets.push(body.len() as u32);
        for offset in offsets {
            out.extend_from_slice(&offset.to_le_bytes());
        }
        out.extend_from_slice(&body);
        let entry = &mut out[table_start + slot * TABLE_ENTRY_LEN..][..TABLE_ENTRY_LEN];
        entry[0] = column as u8;
        entry[1] = granularity_of(column) as u8;
        entry[4..8].copy_from_slice(&(codes as u32).to_le_bytes());
        entry[8..16].copy_from_slice(&(section_start as u64).to_le_bytes());
        let len = (out.len() - section_start) as u64;
        out[table_start + slot * TABLE_ENTRY_LEN + 16..][..8].copy_from_slice(&len.to_le_bytes());
    }
    let mut hasher = crc32fast::Hasher::new_with_initial(salt(meta.segment_id));
    hasher.update(&out);
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
    out.extend_from_slice(&END_MAGIC);
    Ok(out)
}

fn too_many_rows(segment: &Segment) -> Error {
    Error::Corrupt {
        path: segment.path().to_path_buf(),
        offset: 0,
        reason: "more than 2^32 rows in one segment".into(),
    }
}

/// Writes `bytes` to `path` durably: a temporary file, flushed every MiB on the way
/// ([`auditlog_engine::io::PacedFile`]), then renamed (the caller fsyncs the directory).
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("idx.tmp");
    let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let mut file = auditlog_engine::io::PacedFile::new(file);
    file.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    file.finish().map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// The little-endian u32 at `at` (the caller checked the bounds).
fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// Appends one posting (sorted, distinct rows) in the smaller of its two encodings.
fn encode_posting(rows: &[u32], out: &mut Vec<u8>) {
    let count = rows.len() as u64;
    let mut delta_len = 0;
    let mut previous = 0;
    for &row in rows {
        delta_len += varint_len(u64::from(row - previous));
        previous = row;
    }
    if rows.len() > 16 {
        let bitmap = RoaringBitmap::from_sorted_iter(rows.iter().copied())
            .expect("postings are sorted and distinct");
        if bitmap.serialized_size() < delta_len {
            put_varint(out, (count << 1) | 1);
            bitmap
                .serialize_into(&mut *out)
                .expect("writing to a Vec cannot fail");
            return;
        }
    }
    put_varint(out, count << 1);
    let mut previous = 0;
    for &row in rows {
        put_varint(out, u64::from(row - previous));
        previous = row;
    }
}

struct ColumnSection {
    granularity: Granularity,
    codes: u32,
    /// Offset of the posting offsets in the file.
    offsets: usize,
    /// Offset of the first posting in the file.
    postings: usize,
    end: usize,
}

/// An open filter index (memory-mapped; checked when opened).
pub struct FilterIndex {
    path: PathBuf,
    map: Mmap,
    rows: u64,
    sections: Vec<Option<ColumnSection>>,
}

impl std::fmt::Debug for FilterIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterIndex")
            .field("path", &self.path)
            .field("bytes", &self.map.len())
            .finish()
    }
}

impl FilterIndex {
    /// Opens and checks the filter index of segment `segment_id` with `rows` rows.
    pub fn open(path: &Path, segment_id: u64, rows: u64) -> Result<FilterIndex> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: index files are immutable once renamed into place; they are only ever
        // deleted (readers keep the mapping), never rewritten.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let corrupt = |offset: usize, reason: String| Error::Corrupt {
            path: path.to_path_buf(),
            offset: offset as u64,
            reason,
        };
        let bytes = &map[..];
        if bytes.len() < HEADER_LEN + TRAILER_LEN || bytes[..8] != MAGIC {
            return Err(Error::BadMagic {
                path: path.to_path_buf(),
                kind: "filter index",
            });
        }
        let u32_at = |at: usize| le_u32(bytes, at);
        let u64_at = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(word)
        };
        let version = u32_at(8);
        if version != VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                kind: "filter index",
                found: version,
                supported: VERSION,
            });
        }
        let end = bytes.len() - TRAILER_LEN;
        if bytes[end + 4..] != END_MAGIC {
            return Err(corrupt(end + 4, "missing end magic (truncated?)".into()));
        }
        let mut hasher = crc32fast::Hasher::new_with_initial(salt(segment_id));
        hasher.update(&bytes[..end]);
        let (expected, found) = (u32_at(end), hasher.finalize());
        if expected != found {
            return Err(Error::ChecksumMismatch {
                path: path.to_path_buf(),
                offset: end as u64,
                expected,
                found,
            });
        }
        if u64_at(16) != segment_id || u64_at(24) != rows {
            return Err(corrupt(
                16,
                format!(
                    "index of segment {:016x} with {} rows, expected {segment_id:016x} with {rows}",
                    u64_at(16),
                    u64_at(24)
                ),
            ));
        }
        let columns = u32_at(12) as usize;
        let table_end = HEADER_LEN + columns * TABLE_ENTRY_LEN;
        if table_end > end {
            return Err(corrupt(12, format!("column count {columns} too large")));
        }
        let mut sections: Vec<Option<ColumnSection>> =
            (0..Column::ALL.len()).map(|_| None).collect();
        for slot in 0..columns {
            let at = HEADER_LEN + slot * TABLE_ENTRY_LEN;
            let column = bytes[at] as usize;
            let codes = u32_at(at + 4);
            let offset = u64_at(at + 8) as usize;
            let len = u64_at(at + 16) as usize;
            let offsets_len = (codes as usize + 1) * 4;
            let section_end = offset.checked_add(len).filter(|e| *e <= end);
            if column >= sections.len()
                || bytes[at + 1] > 1
                || offset < table_end
                || section_end.is_none()
                || len < offsets_len
            {
                return Err(corrupt(at, format!("bad column table entry {slot}")));
            }
            sections[column] = Some(ColumnSection {
                granularity: if bytes[at + 1] == 0 {
                    Granularity::Rows
                } else {
                    Granularity::Blocks
                },
                codes,
                offsets: offset,
                postings: offset + offsets_len,
                end: offset + len,
            });
        }
        // The checks read the whole file; queries map back the postings they use.
        auditlog_engine::io::release_mapped_pages(&map);
        Ok(FilterIndex {
            path: path.to_path_buf(),
            map,
            rows,
            sections,
        })
    }

    /// Drops this process's mapped pages of the file (they stay in the page cache; postings
    /// read later map theirs back).
    pub fn release_pages(&self) {
        auditlog_engine::io::release_mapped_pages(&self.map);
    }

    /// Bytes of the file.
    pub fn bytes(&self) -> u64 {
        self.map.len() as u64
    }

    /// Rows of the segment.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// True when the index holds `column`.
    pub fn has(&self, column: Column) -> bool {
        self.sections
            .get(column as usize)
            .is_some_and(Option::is_some)
    }

    /// How `column` is indexed; `None` when it is not.
    pub fn granularity(&self, column: Column) -> Option<Granularity> {
        self.sections
            .get(column as usize)?
            .as_ref()
            .map(|section| section.granularity)
    }

    /// The rows (or blocks, see [`Granularity`]) whose `column` holds `code`; `None` when the
    /// column is not indexed. A code the index does not know has none.
    pub fn posting(&self, column: Column, code: u32) -> Result<Option<Posting>> {
        let Some(Some(section)) = self.sections.get(column as usize) else {
            return Ok(None);
        };
        let granularity = section.granularity;
        let posting = |values| {
            Ok(Some(Posting {
                granularity,
                values,
            }))
        };
        if code == 0 || code > section.codes {
            return posting(RoaringBitmap::new());
        }
        let at = section.offsets + (code as usize - 1) * 4;
        let offset = |at: usize| le_u32(&self.map, at);
        let start = section.postings + offset(at) as usize;
        let end = section.postings + offset(at + 4) as usize;
        let corrupt = |reason: &str| Error::Corrupt {
            path: self.path.clone(),
            offset: start as u64,
            reason: format!("{} posting of code {code}: {reason}", column.name()),
        };
        if start > end || end > section.end {
            return Err(corrupt("offsets out of range"));
        }
        let bytes = &self.map[start..end];
        let mut position = 0;
        let header = get_varint(bytes, &mut position).map_err(|_| corrupt("bad header"))?;
        let count = header >> 1;
        if header & 1 == 1 {
            let bitmap = RoaringBitmap::deserialize_from(&bytes[position..])
                .map_err(|e| corrupt(&e.to_string()))?;
            if bitmap.len() != count {
                return Err(corrupt("row count mismatch"));
            }
            return posting(bitmap);
        }
        let mut rows = Vec::with_capacity(count.min(1 << 20) as usize);
        let mut row = 0u64;
        for i in 0..count {
            let delta = get_varint(bytes, &mut position).map_err(|_| corrupt("bad row"))?;
            if i > 0 && delta == 0 {
                return Err(corrupt("rows not ascending"));
            }
            row += delta;
            if row >= self.rows {
                return Err(corrupt("row out of range"));
            }
            rows.push(row as u32);
        }
        posting(RoaringBitmap::from_sorted_iter(rows).expect("checked ascending"))
    }

    /// Bytes of one column's section (for size reports).
    pub fn column_bytes(&self, column: Column) -> u64 {
        match self.sections.get(column as usize) {
            Some(Some(section)) => (section.end - section.offsets) as u64,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postings_round_trip_in_both_encodings() {
        for rows in [
            vec![],
            vec![7],
            vec![0, 1, 2, 3],
            (0..1000).map(|i| i * 3).collect::<Vec<u32>>(),
            (0..5000).collect::<Vec<u32>>(),
        ] {
            let mut out = Vec::new();
            encode_posting(&rows, &mut out);
            let mut position = 0;
            let header = get_varint(&out, &mut position).unwrap();
            assert_eq!(header >> 1, rows.len() as u64);
            let decoded: Vec<u32> = if header & 1 == 1 {
                RoaringBitmap::deserialize_from(&out[position..])
                    .unwrap()
                    .iter()
                    .collect()
            } else {
                let mut row = 0;
                (0..rows.len())
                    .map(|_| {
                        row += get_varint(&out, &mut position).unwrap() as u32;
                        row
                    })
                    .collect()
            };
            assert_eq!(decoded, rows);
        }
    }

    #[test]
    fn dense_postings_use_the_bitmap_form() {
        // 20,000 consecutive rows: 20,000 bytes of deltas, one 8 KiB bitmap container.
        let rows: Vec<u32> = (0..20_000).collect();
        let mut out = Vec::new();
        encode_posting(&rows, &mut out);
        assert_eq!(out[0] & 1, 1, "a run of 20,000 rows is smaller as a bitmap");
        assert!(out.len() < 9000, "{}", out.len());
    }

    #[test]
    fn varint_len_matches_put_varint() {
        for value in [0u64, 1, 127, 128, 16_383, 16_384, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value), "{value}");
        }
    }
}
