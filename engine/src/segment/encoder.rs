//! Writing a sealed segment: sort, build dictionaries, encode each column of each block, compress,
//! checksum, and append the dictionaries, the key filter, the block directory and the footer.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::StoredEvent;

use super::bloom;
use super::dictionary::{Dictionary, DictionaryBuilder, FxHasher};
use super::footer::{Footer, Header};
use super::format::{
    dictionary_parent, dictionary_slot, put_varint, salted_crc, zigzag_encode, ChunkRef, Column,
    ColumnKind, RecentCodes, CHUNK_RAW_BYTES_MAX, CODEC_RAW, CODEC_ZSTD, CODEC_ZSTD_RAW_TAIL,
    COLUMN_COUNT, DICTIONARY_COLUMNS, FORMAT_VERSION, RECEIVED_FROM_SEQ_RUNS,
    RECEIVED_FROM_TIMESTAMP, TEXT_LAYOUT_PACKED, TEXT_LAYOUT_PLAIN, TEXT_LAYOUT_SHREDDED,
};
use super::SegmentMeta;
use super::{json_text, packed_text};

/// How to encode a segment. The defaults were chosen by measurement on realistic events
/// (`engine/examples/segment_size.rs`, numbers in `docs/FORMAT.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodeOptions {
    /// Rows per block: the unit a reader decodes. A page query decodes one or two blocks, so
    /// small blocks answer pages faster; large blocks compress text better.
    pub block_rows: usize,
    /// zstd level of the numeric, code and enum columns.
    pub zstd_level: i32,
    /// zstd level of the text columns (`id`, `changes`, `details`).
    pub text_zstd_level: i32,
    /// zstd level of the dictionaries (written once per segment, read at open).
    pub dictionary_zstd_level: i32,
    /// Bits per key of the idempotency-key Bloom filter (10 gives about 1% false positives).
    pub filter_bits_per_key: u32,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            block_rows: 2048,
            zstd_level: 1,
            text_zstd_level: 3,
            dictionary_zstd_level: 9,
            filter_bits_per_key: 10,
        }
    }
}

/// Largest accepted `block_rows`.
pub const BLOCK_ROWS_MAX: usize = 1 << 20;

/// The bytes of a sealed segment file and what the manifest records about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedSegment {
    pub bytes: Vec<u8>,
    pub meta: SegmentMeta,
}

type StringField = fn(&StoredEvent) -> Option<&str>;

/// Accessor of each dictionary column, in [`DICTIONARY_COLUMNS`] order.
const DICTIONARY_FIELDS: [StringField; 10] = [
    |row| Some(row.event.tenant.as_str()),
    |row| row.event.project.as_deref(),
    |row| row.event.actor.id.as_deref(),
    |row| row.event.actor.email.as_deref(),
    |row| row.event.actor.ip.as_deref(),
    |row| row.event.actor.user_agent.as_deref(),
    |row| Some(row.event.action.as_str()),
    |row| Some(row.event.resource.kind.as_str()),
    |row| row.event.resource.id.as_deref(),
    |row| row.event.resource.name.as_deref(),
];

fn text_field(column: Column, row: &StoredEvent) -> Option<&str> {
    match column {
        Column::Id => row.event.id.as_deref(),
        Column::Changes => row.event.changes.as_deref(),
        Column::Details => row.event.details.as_deref(),
        _ => None,
    }
}

/// Compresses and checksums chunks and appends them to the file.
struct ChunkWriter {
    segment_id: u64,
    compressor: zstd::bulk::Compressor<'static>,
    compressed: Vec<u8>,
}

impl ChunkWriter {
    fn new(segment_id: u64) -> Result<Self> {
        let mut compressor =
            zstd::bulk::Compressor::new(3).map_err(|e| zstd_error(segment_id, e))?;
        // The directory records the raw length and the crc; the frame needs neither.
        compressor
            .set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(false))
            .map_err(|e| zstd_error(segment_id, e))?;
        compressor
            .set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(false))
            .map_err(|e| zstd_error(segment_id, e))?;
        Ok(ChunkWriter {
            segment_id,
            compressor,
            compressed: Vec::new(),
        })
    }

    /// Appends `raw` to `out`, zstd-compressed at `level` when that makes it smaller
    /// (`level == None`: stored raw).
    fn write(&mut self, out: &mut Vec<u8>, raw: &[u8], level: Option<i32>) -> Result<ChunkRef> {
        self.write_with_tail(out, raw, level, 0)
    }

    /// [`ChunkWriter::write`] where the last `tail_len` bytes of `raw` are random and are stored
    /// outside the zstd frame ([`CODEC_ZSTD_RAW_TAIL`]).
    fn write_with_tail(
        &mut self,
        out: &mut Vec<u8>,
        raw: &[u8],
        level: Option<i32>,
        tail_len: usize,
    ) -> Result<ChunkRef> {
        if raw.len() as u64 > u64::from(CHUNK_RAW_BYTES_MAX) {
            return Err(Error::BatchTooLarge {
                what: "segment chunk bytes (lower block_rows)",
                found: raw.len() as u64,
                limit: u64::from(CHUNK_RAW_BYTES_MAX),
            });
        }
        let mut codec = CODEC_RAW;
        if let Some(level) = level {
            if !raw.is_empty() {
                self.compressor
                    .set_compression_level(level)
                    .map_err(|e| zstd_error(self.segment_id, e))?;
                let tail_len = tail_len.min(raw.len());
                let head = &raw[..raw.len() - tail_len];
                self.compressed.clear();
                self.compressed
                    .reserve(zstd::zstd_safe::compress_bound(head.len()) + 4 + tail_len);
                self.compressor
                    .compress_to_buffer(head, &mut self.compressed)
                    .map_err(|e| zstd_error(self.segment_id, e))?;
                if tail_len > 0 {
                    let frame_len = self.compressed.len() as u32;
                    self.compressed.splice(0..0, frame_len.to_le_bytes());
                    self.compressed
                        .extend_from_slice(&raw[raw.len() - tail_len..]);
                }
                if self.compressed.len() < raw.len() {
                    codec = if tail_len > 0 {
                        CODEC_ZSTD_RAW_TAIL
                    } else {
                        CODEC_ZSTD
                    };
                }
            }
        }
        let stored: &[u8] = if codec != CODEC_RAW {
            &self.compressed
        } else {
            raw
        };
        let chunk = ChunkRef {
            offset: out.len() as u64,
            stored_len: stored.len() as u32,
            raw_len: raw.len() as u32,
            crc: salted_crc(self.segment_id, stored),
            codec,
        };
        out.extend_from_slice(stored);
        Ok(chunk)
    }
}

fn zstd_error(segment_id: u64, source: std::io::Error) -> Error {
    Error::Io {
        path: PathBuf::from(format!("segment {segment_id} (zstd compression)")),
        source,
    }
}

/// Per-block summary kept for the directory.
struct BlockEntry {
    rows: u32,
    first_row: u64,
    min_timestamp_us: i64,
    max_timestamp_us: i64,
    min_seq: u64,
    max_seq: u64,
    first_tenant_code: u32,
    last_tenant_code: u32,
    chunks: [ChunkRef; COLUMN_COUNT],
}

/// Encodes `rows` (in any order) as a sealed segment file. The rows are sorted by
/// `(tenant, timestamp, seq)`; their content is stored exactly (`Some("")` stays `Some("")`).
pub fn encode_segment(
    segment_id: u64,
    rows: &[StoredEvent],
    options: &EncodeOptions,
) -> Result<EncodedSegment> {
    let refs: Vec<&StoredEvent> = rows.iter().collect();
    encode_segment_refs(segment_id, &refs, options)
}

/// [`encode_segment`] over borrowed rows, so a caller that groups events (sealing groups the
/// tail by partition) need not clone them.
pub fn encode_segment_refs(
    segment_id: u64,
    rows: &[&StoredEvent],
    options: &EncodeOptions,
) -> Result<EncodedSegment> {
    if options.block_rows == 0 || options.block_rows > BLOCK_ROWS_MAX {
        return Err(Error::Config(format!(
            "segment block_rows is {}, must be in 1..={BLOCK_ROWS_MAX}",
            options.block_rows
        )));
    }
    if rows.len() as u64 > u64::from(u32::MAX) {
        return Err(Error::BatchTooLarge {
            what: "segment rows",
            found: rows.len() as u64,
            limit: u64::from(u32::MAX),
        });
    }

    // Dictionaries, built over the input order; codes are final (sorted values).
    let mut dictionary_values: Vec<Vec<&str>> = Vec::with_capacity(DICTIONARY_COLUMNS.len());
    let mut dictionary_codes: Vec<Vec<u32>> = Vec::with_capacity(DICTIONARY_COLUMNS.len());
    for field in DICTIONARY_FIELDS {
        let mut builder = DictionaryBuilder::with_capacity(rows.len());
        for row in rows {
            builder.push(field(row));
        }
        let (values, codes) = builder.finish();
        dictionary_values.push(values);
        dictionary_codes.push(codes);
    }
    let tenant_codes = &dictionary_codes[0];

    // The permutation: (tenant code, timestamp, seq) orders like (tenant, timestamp, seq) since
    // dictionary codes follow the sorted values.
    let mut order: Vec<(u32, i64, u64, u32)> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| (tenant_codes[i], row.event.timestamp_us, row.seq, i as u32))
        .collect();
    order.sort_unstable();
    let permutation: Vec<u32> = order.iter().map(|entry| entry.3).collect();
    drop(order);

    let mut tenant_row_counts = vec![0u64; dictionary_values[0].len()];
    for &code in tenant_codes {
        // Tenant codes are >= 1: the tenant is always present.
        if let Some(count) = (code as usize)
            .checked_sub(1)
            .and_then(|index| tenant_row_counts.get_mut(index))
        {
            *count += 1;
        }
    }

    let mut out = Vec::with_capacity(rows.len() * 40 + 4096);
    Header {
        version: FORMAT_VERSION,
        flags: 0,
        segment_id,
    }
    .write(&mut out);

    let runs = received_runs(rows);
    let context = ColumnContext {
        rows,
        dictionary_codes: &dictionary_codes,
        received_from_seq: runs.is_some(),
    };
    let mut scratch = Scratch::default();
    let mut writer = ChunkWriter::new(segment_id)?;
    let mut raw = Vec::new();
    let mut blocks = Vec::with_capacity(rows.len().div_ceil(options.block_rows));
    let mut first_row = 0u64;
    for block in permutation.chunks(options.block_rows) {
        let mut entry = BlockEntry {
            rows: block.len() as u32,
            first_row,
            min_timestamp_us: i64::MAX,
            max_timestamp_us: i64::MIN,
            min_seq: u64::MAX,
            max_seq: u64::MIN,
            first_tenant_code: tenant_codes[block[0] as usize],
            last_tenant_code: tenant_codes[block[block.len() - 1] as usize],
            chunks: [ChunkRef::default(); COLUMN_COUNT],
        };
        for &i in block {
            let row = &rows[i as usize];
            entry.min_timestamp_us = entry.min_timestamp_us.min(row.event.timestamp_us);
            entry.max_timestamp_us = entry.max_timestamp_us.max(row.event.timestamp_us);
            entry.min_seq = entry.min_seq.min(row.seq);
            entry.max_seq = entry.max_seq.max(row.seq);
        }
        for column in Column::ALL {
            raw.clear();
            let tail_len = encode_column(column, block, &context, &mut scratch, &mut raw);
            let level = if column.is_text() {
                options.text_zstd_level
            } else {
                options.zstd_level
            };
            entry.chunks[column.index()] =
                writer.write_with_tail(&mut out, &raw, Some(level), tail_len)?;
        }
        first_row += block.len() as u64;
        blocks.push(entry);
    }

    let dictionary_offset = out.len() as u64;
    let mut dictionary_chunks = Vec::with_capacity(DICTIONARY_COLUMNS.len());
    for values in &dictionary_values {
        raw.clear();
        Dictionary::encode(values.iter().copied(), &mut raw);
        let chunk = writer.write(&mut out, &raw, Some(options.dictionary_zstd_level))?;
        dictionary_chunks.push((values.len() as u32, chunk));
    }
    let dictionary_len = out.len() as u64 - dictionary_offset;

    let key_hashes: Vec<u64> = rows
        .iter()
        .filter_map(|row| {
            row.event
                .id
                .as_deref()
                .map(|id| bloom::key_hash(&row.event.tenant, id))
        })
        .collect();
    raw.clear();
    bloom::build(&key_hashes, options.filter_bits_per_key, &mut raw);
    let filter = writer.write(&mut out, &raw, None)?;

    raw.clear();
    raw.extend_from_slice(&(COLUMN_COUNT as u32).to_le_bytes());
    raw.extend_from_slice(&(DICTIONARY_COLUMNS.len() as u32).to_le_bytes());
    for (column, (count, chunk)) in DICTIONARY_COLUMNS.iter().zip(&dictionary_chunks) {
        raw.push(*column as u8);
        raw.extend_from_slice(&count.to_le_bytes());
        chunk.write(&mut raw);
    }
    raw.extend_from_slice(&(tenant_row_counts.len() as u32).to_le_bytes());
    for count in &tenant_row_counts {
        put_varint(&mut raw, *count);
    }
    let runs = runs.unwrap_or_default();
    raw.extend_from_slice(&(runs.len() as u32).to_le_bytes());
    let mut previous = (0u64, 0i64);
    for &(seq, received) in &runs {
        put_varint(&mut raw, seq.wrapping_sub(previous.0));
        put_varint(&mut raw, zigzag_encode(received.wrapping_sub(previous.1)));
        previous = (seq, received);
    }
    raw.extend_from_slice(&(blocks.len() as u32).to_le_bytes());
    for block in &blocks {
        raw.extend_from_slice(&block.rows.to_le_bytes());
        raw.extend_from_slice(&block.first_row.to_le_bytes());
        raw.extend_from_slice(&block.min_timestamp_us.to_le_bytes());
        raw.extend_from_slice(&block.max_timestamp_us.to_le_bytes());
        raw.extend_from_slice(&block.min_seq.to_le_bytes());
        raw.extend_from_slice(&block.max_seq.to_le_bytes());
        raw.extend_from_slice(&block.first_tenant_code.to_le_bytes());
        raw.extend_from_slice(&block.last_tenant_code.to_le_bytes());
        for chunk in &block.chunks {
            chunk.write(&mut raw);
        }
    }
    let directory = writer.write(&mut out, &raw, Some(options.zstd_level))?;

    let (min_timestamp_us, max_timestamp_us, min_seq, max_seq) = if blocks.is_empty() {
        (0, 0, 0, 0)
    } else {
        blocks.iter().fold(
            (i64::MAX, i64::MIN, u64::MAX, u64::MIN),
            |(min_ts, max_ts, min_seq, max_seq), b| {
                (
                    min_ts.min(b.min_timestamp_us),
                    max_ts.max(b.max_timestamp_us),
                    min_seq.min(b.min_seq),
                    max_seq.max(b.max_seq),
                )
            },
        )
    };
    let footer = Footer {
        segment_id,
        row_count: rows.len() as u64,
        block_count: blocks.len() as u32,
        column_count: COLUMN_COUNT as u32,
        min_timestamp_us,
        max_timestamp_us,
        min_seq,
        max_seq,
        directory,
        dictionary_offset,
        dictionary_len,
        filter,
        version: FORMAT_VERSION,
    };
    footer.write(&mut out);

    let meta = SegmentMeta {
        segment_id,
        rows: rows.len() as u64,
        min_timestamp_us,
        max_timestamp_us,
        min_seq,
        max_seq,
        bytes: out.len() as u64,
    };
    Ok(EncodedSegment { bytes: out, meta })
}

/// What every column encoder of a segment needs.
struct ColumnContext<'r> {
    rows: &'r [&'r StoredEvent],
    dictionary_codes: &'r [Vec<u32>],
    /// True when `received` is stored as the segment's received runs.
    received_from_seq: bool,
}

/// Appends the raw (uncompressed) encoding of `column` for the rows `block` (input indexes in
/// sorted order). Returns how many bytes at the end are random (not worth compressing).
fn encode_column(
    column: Column,
    block: &[u32],
    context: &ColumnContext<'_>,
    scratch: &mut Scratch,
    raw: &mut Vec<u8>,
) -> usize {
    let rows = context.rows;
    let dictionary_codes = context.dictionary_codes;
    match column.kind() {
        ColumnKind::DeltaU64 => {
            let value = |row: &StoredEvent| match column {
                Column::Seq => row.seq,
                _ => row.tenant_seq,
            };
            let mut previous = 0u64;
            for &i in block {
                let current = value(&rows[i as usize]);
                put_varint(raw, zigzag_encode(current.wrapping_sub(previous) as i64));
                previous = current;
            }
        }
        ColumnKind::DeltaI64 => {
            let mut previous = 0i64;
            for &i in block {
                let current = rows[i as usize].event.timestamp_us;
                put_varint(raw, zigzag_encode(current.wrapping_sub(previous)));
                previous = current;
            }
        }
        ColumnKind::ReceivedOffset => {
            if context.received_from_seq {
                raw.push(RECEIVED_FROM_SEQ_RUNS);
            } else {
                raw.push(RECEIVED_FROM_TIMESTAMP);
                for &i in block {
                    let row = &rows[i as usize];
                    put_varint(
                        raw,
                        zigzag_encode(row.received_us.wrapping_sub(row.event.timestamp_us)),
                    );
                }
            }
        }
        ColumnKind::DictionaryDelta | ColumnKind::Dictionary => {
            let slot = dictionary_slot(column).unwrap_or_default();
            let codes = &dictionary_codes[slot];
            if column.kind() == ColumnKind::DictionaryDelta {
                let mut previous = 0i64;
                for &i in block {
                    let code = i64::from(codes[i as usize]);
                    put_varint(raw, zigzag_encode(code - previous));
                    previous = code;
                }
            } else if let Some(parent) = dictionary_parent(column) {
                let parent_codes = &dictionary_codes[dictionary_slot(parent).unwrap_or_default()];
                let mut recent = RecentCodes::default();
                let last = &mut scratch.last_child;
                last.clear();
                for &i in block {
                    let code = codes[i as usize];
                    let parent_code = parent_codes[i as usize];
                    match last.insert(parent_code, code) {
                        Some(previous) if previous == code => raw.push(0),
                        _ => put_varint(raw, recent.encode(code) + 1),
                    }
                }
            } else {
                let mut recent = RecentCodes::default();
                for &i in block {
                    put_varint(raw, recent.encode(codes[i as usize]));
                }
            }
        }
        ColumnKind::Byte => {
            for &i in block {
                let event = &rows[i as usize].event;
                raw.push(match column {
                    Column::ActorType => event.actor.kind.code(),
                    _ => event.outcome.code(),
                });
            }
        }
        ColumnKind::Text => {
            let values = block.iter().map(|&i| text_field(column, &rows[i as usize]));
            if column == Column::Id {
                raw.push(TEXT_LAYOUT_PACKED);
                if let Some(tail_len) = packed_text::encode(values.clone(), block.len(), raw) {
                    return tail_len;
                }
                raw.clear();
            } else {
                raw.push(TEXT_LAYOUT_SHREDDED);
                if let Some(tail_len) = json_text::encode(values.clone(), raw) {
                    return tail_len;
                }
                raw.clear();
            }
            raw.push(TEXT_LAYOUT_PLAIN);
            for value in values.clone() {
                let length = match value {
                    Some(text) => text.len() as u64 + 1,
                    None => 0,
                };
                put_varint(raw, length);
            }
            for text in values.flatten() {
                raw.extend_from_slice(text.as_bytes());
            }
        }
    }
    0
}

/// Buffers reused across blocks.
#[derive(Default)]
struct Scratch {
    /// Per parent code, the child code of the last row with it (conditional dictionary coding).
    last_child: HashMap<u32, u32, BuildHasherDefault<FxHasher>>,
}

/// The received runs of a segment, when they are cheaper than per-row offsets from the
/// timestamp: `(first seq of the run, received)` with seq ascending, consecutive runs differing in
/// received. Received is assigned per group commit, so it is a step function of seq.
fn received_runs(rows: &[&StoredEvent]) -> Option<Vec<(u64, i64)>> {
    let mut pairs: Vec<(u64, i64)> = rows.iter().map(|r| (r.seq, r.received_us)).collect();
    if !pairs.windows(2).all(|w| w[0].0 < w[1].0) {
        pairs.sort_unstable();
    }
    let mut runs: Vec<(u64, i64)> = Vec::new();
    let mut runs_bytes = 0usize;
    let mut previous = (0u64, 0i64);
    for (index, &(seq, received)) in pairs.iter().enumerate() {
        if index > 0 && pairs[index - 1].0 == seq && pairs[index - 1].1 != received {
            // One seq with two receive times: not a function of seq.
            return None;
        }
        if runs.last().is_some_and(|last| last.1 == received) {
            continue;
        }
        runs_bytes += varint_len(seq.wrapping_sub(previous.0))
            + varint_len(zigzag_encode(received.wrapping_sub(previous.1)));
        previous = (seq, received);
        runs.push((seq, received));
    }
    let offsets_bytes: usize = rows
        .iter()
        .map(|r| {
            varint_len(zigzag_encode(
                r.received_us.wrapping_sub(r.event.timestamp_us),
            ))
        })
        .sum();
    (runs_bytes < offsets_bytes).then_some(runs)
}

#[inline]
fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}
