//! Writing a sealed segment: sort, build dictionaries, encode each column of each block, compress,
//! checksum, and append the dictionaries, the key filter, the block directory and the footer.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::StoredEvent;

use super::bloom;
use super::dictionary::{Dictionary, DictionaryBuilder, SortedValues};
use super::footer::{Footer, Header};
use super::format::{
    dictionary_parent, dictionary_slot, put_varint, salted_crc, text_dictionary_slot,
    zigzag_encode, ChunkRef, Column, ColumnKind, RecentCodes, CHUNK_RAW_BYTES_MAX, CODEC_RAW,
    CODEC_ZSTD, CODEC_ZSTD_DICT, CODEC_ZSTD_DICT_RAW_TAIL, CODEC_ZSTD_RAW_TAIL, COLUMN_COUNT,
    DICTIONARY_COLUMNS, FORMAT_VERSION, RECEIVED_FROM_SEQ_RUNS, RECEIVED_FROM_TIMESTAMP,
    TEXT_DICTIONARY_COLUMNS, TEXT_LAYOUT_PACKED, TEXT_LAYOUT_PLAIN, TEXT_LAYOUT_SHREDDED,
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
    /// Rows sampled evenly over the segment to make each text dictionary (`changes`,
    /// `details`): the sample is encoded like a block and its bytes, less the random tail,
    /// become a raw-content zstd dictionary that every block's chunk of the column is
    /// compressed against. 0 turns text dictionaries off.
    #[serde(default)]
    pub text_dictionary_rows: usize,
    /// Fewest blocks a segment needs for text dictionaries: below it a dictionary (stored once,
    /// about one block's chunk) costs more than it saves.
    #[serde(default)]
    pub text_dictionary_min_blocks: usize,
    /// Largest decoded chunk the encoder writes: at most, and by default,
    /// [`CHUNK_RAW_BYTES_MAX`], the format's limit (a lower figure is for tests). A segment
    /// whose dictionary of one column would be larger is refused (`BatchTooLarge`); sealing
    /// cuts a partition's rows with [`split_for_chunk_limit`] so that it never meets that.
    #[serde(default = "chunk_bytes_max_default")]
    pub chunk_bytes_max: u32,
}

fn chunk_bytes_max_default() -> u32 {
    CHUNK_RAW_BYTES_MAX
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            block_rows: 2048,
            zstd_level: 1,
            text_zstd_level: 6,
            dictionary_zstd_level: 9,
            filter_bits_per_key: 10,
            text_dictionary_rows: 2048,
            text_dictionary_min_blocks: 4,
            chunk_bytes_max: CHUNK_RAW_BYTES_MAX,
        }
    }
}

/// The value of each dictionary column of `event` ([`DICTIONARY_COLUMNS`] order).
fn dictionary_values(event: &crate::event::Event) -> [Option<&str>; DICTIONARY_COLUMNS.len()] {
    [
        Some(event.tenant.as_str()),
        event.project.as_deref(),
        event.actor.id.as_deref(),
        event.actor.email.as_deref(),
        event.actor.ip.as_deref(),
        event.actor.user_agent.as_deref(),
        Some(event.action.as_str()),
        Some(event.resource.kind.as_str()),
        event.resource.id.as_deref(),
        event.resource.name.as_deref(),
    ]
}

/// Cuts `rows` into consecutive runs, in their order, each of which encodes as one segment
/// whose dictionaries fit in chunks of `chunk_bytes_max` bytes: a dictionary chunk holds every
/// distinct value of its column, and EVENT.md lets a value be as long as the event (64 KiB for
/// `actor.id`), so a few thousand distinct long values would make a chunk the format refuses.
/// The bound counts every row's value (distinct or not, with room for its length's varint),
/// so it is never exceeded, at the cost of cutting some inputs whose distinct values would
/// have fit: typical events (values under ~110 bytes) reach it only past two million rows in
/// one partition, and below that one run is returned.
///
/// ```
/// use auditlog_engine::segment::split_for_chunk_limit;
/// let rows = Vec::new();
/// assert!(split_for_chunk_limit(&rows, 1 << 20).is_empty());
/// ```
pub fn split_for_chunk_limit<'r, 'e>(
    rows: &'r [&'e StoredEvent],
    chunk_bytes_max: u32,
) -> Vec<&'r [&'e StoredEvent]> {
    let limit = u64::from(chunk_bytes_max.min(CHUNK_RAW_BYTES_MAX));
    let mut runs = Vec::new();
    let mut start = 0;
    let mut sums = [0u64; DICTIONARY_COLUMNS.len()];
    for (index, row) in rows.iter().enumerate() {
        let values = dictionary_values(&row.event);
        let sizes = values.map(|value| value.map_or(0, |v| v.len() as u64 + 10));
        let over = sums
            .iter()
            .zip(&sizes)
            .any(|(sum, size)| sum + size > limit);
        if over && index > start {
            runs.push(&rows[start..index]);
            start = index;
            sums = [0; DICTIONARY_COLUMNS.len()];
        }
        for (sum, size) in sums.iter_mut().zip(sizes) {
            *sum += size;
        }
    }
    if start < rows.len() {
        runs.push(&rows[start..]);
    }
    runs
}

/// Largest accepted `block_rows`.
pub const BLOCK_ROWS_MAX: usize = 1 << 20;

/// The bytes of a sealed segment file and what the manifest records about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedSegment {
    pub bytes: Vec<u8>,
    pub meta: SegmentMeta,
}

/// What the encoder keeps of one input row: its dictionary codes, numbers, enums and text
/// values. Rows are first collected in input order (a sequential walk over the events, whose
/// strings were allocated in that order), then gathered into sorted order once, so that every
/// column encoder walks a dense array instead of chasing pointers in permutation order.
#[derive(Clone, Copy)]
struct Row<'r> {
    /// First-seen dictionary ids (input order), then final dictionary codes (sorted order).
    codes: [u32; DICTIONARY_COLUMNS.len()],
    timestamp_us: i64,
    seq: u64,
    tenant_seq: u64,
    received_us: i64,
    /// `id`, `changes`, `details`.
    texts: [Option<&'r str>; 3],
    actor_type: u8,
    outcome: u8,
}

impl<'r> Row<'r> {
    #[inline]
    fn collect(row: &'r StoredEvent, builders: &mut [DictionaryBuilder; 10]) -> Row<'r> {
        let event = &row.event;
        let values = dictionary_values(event);
        let mut codes = [0u32; DICTIONARY_COLUMNS.len()];
        for ((code, builder), value) in codes.iter_mut().zip(builders.iter_mut()).zip(values) {
            *code = builder.push(value);
        }
        Row {
            codes,
            timestamp_us: event.timestamp_us,
            seq: row.seq,
            tenant_seq: row.tenant_seq,
            received_us: row.received_us,
            texts: [
                event.id.as_deref(),
                event.changes.as_deref(),
                event.details.as_deref(),
            ],
            actor_type: event.actor.kind.code(),
            outcome: event.outcome.code(),
        }
    }
}

/// Starts loading the dictionary strings of `row` (each a separate allocation).
#[inline(always)]
fn prefetch_strings(row: &StoredEvent) {
    let event = &row.event;
    let optional = |value: &Option<crate::event::Text>| {
        if let Some(value) = value {
            prefetch(value.as_ptr());
        }
    };
    prefetch(event.tenant.as_ptr());
    optional(&event.project);
    optional(&event.actor.id);
    optional(&event.actor.email);
    optional(&event.actor.ip);
    optional(&event.actor.user_agent);
    prefetch(event.action.as_ptr());
    prefetch(event.resource.kind.as_ptr());
    optional(&event.resource.id);
    optional(&event.resource.name);
}

/// Position of a text column in [`Row::texts`].
fn text_slot(column: Column) -> usize {
    match column {
        Column::Id => 0,
        Column::Changes => 1,
        _ => 2,
    }
}

/// Compresses and checksums chunks and appends them to the file.
struct ChunkWriter {
    segment_id: u64,
    /// [`EncodeOptions::chunk_bytes_max`], at most [`CHUNK_RAW_BYTES_MAX`].
    chunk_bytes_max: u32,
    compressor: zstd::bulk::Compressor<'static>,
    /// For chunks compressed against a text dictionary.
    dictionary_context: zstd::zstd_safe::CCtx<'static>,
    compressed: Vec<u8>,
}

/// A text column's segment dictionary, ready to compress with.
struct TextDictionary {
    /// The raw dictionary bytes, stored in the dictionary section.
    raw: Vec<u8>,
    prepared: zstd::zstd_safe::CDict<'static>,
}

impl ChunkWriter {
    fn new(segment_id: u64, chunk_bytes_max: u32) -> Result<Self> {
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
            chunk_bytes_max: chunk_bytes_max.min(CHUNK_RAW_BYTES_MAX),
            compressor,
            dictionary_context: zstd::zstd_safe::CCtx::try_create().ok_or_else(|| {
                zstd_error(
                    segment_id,
                    std::io::Error::other("zstd could not make a context"),
                )
            })?,
            compressed: Vec::new(),
        })
    }

    /// Appends `raw` to `out`, zstd-compressed at `level` when that makes it smaller
    /// (`level == None`: stored raw).
    fn write(&mut self, out: &mut Vec<u8>, raw: &[u8], level: Option<i32>) -> Result<ChunkRef> {
        self.write_with_tail(out, raw, level, 0, None)
    }

    /// [`ChunkWriter::write`] where the last `tail_len` bytes of `raw` are random and are stored
    /// outside the zstd frame ([`CODEC_ZSTD_RAW_TAIL`]); with a `dictionary`, the frame is
    /// compressed against it (at the dictionary's level) and the codec says so.
    fn write_with_tail(
        &mut self,
        out: &mut Vec<u8>,
        raw: &[u8],
        level: Option<i32>,
        tail_len: usize,
        dictionary: Option<&TextDictionary>,
    ) -> Result<ChunkRef> {
        if raw.len() as u64 > u64::from(self.chunk_bytes_max) {
            return Err(Error::BatchTooLarge {
                what: "segment chunk bytes (lower block_rows, or split the rows)",
                found: raw.len() as u64,
                limit: u64::from(self.chunk_bytes_max),
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
                match dictionary {
                    None => {
                        self.compressor
                            .compress_to_buffer(head, &mut self.compressed)
                            .map_err(|e| zstd_error(self.segment_id, e))?;
                    }
                    Some(dictionary) => {
                        self.dictionary_context
                            .compress_using_cdict(&mut self.compressed, head, &dictionary.prepared)
                            .map_err(|code| {
                                let name = zstd::zstd_safe::get_error_name(code);
                                zstd_error(self.segment_id, std::io::Error::other(name))
                            })?;
                    }
                }
                if tail_len > 0 {
                    let frame_len = self.compressed.len() as u32;
                    self.compressed.splice(0..0, frame_len.to_le_bytes());
                    self.compressed
                        .extend_from_slice(&raw[raw.len() - tail_len..]);
                }
                if self.compressed.len() < raw.len() {
                    codec = match (tail_len > 0, dictionary.is_some()) {
                        (false, false) => CODEC_ZSTD,
                        (true, false) => CODEC_ZSTD_RAW_TAIL,
                        (false, true) => CODEC_ZSTD_DICT,
                        (true, true) => CODEC_ZSTD_DICT_RAW_TAIL,
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

    // One walk over the input: every dictionary column's first-seen ids and the row's fields.
    let mut builders: [DictionaryBuilder; 10] =
        std::array::from_fn(|_| DictionaryBuilder::default());
    let mut input: Vec<Row<'_>> = Vec::with_capacity(rows.len());
    for (index, row) in rows.iter().enumerate() {
        if let Some(ahead) = rows.get(index + 4) {
            prefetch_strings(ahead);
        }
        input.push(Row::collect(row, &mut builders));
    }
    // Codes are final once each dictionary is sorted: remaps[slot][first-seen id] = code.
    let mut dictionary_values: Vec<SortedValues> = Vec::with_capacity(DICTIONARY_COLUMNS.len());
    let mut remaps: Vec<Vec<u32>> = Vec::with_capacity(DICTIONARY_COLUMNS.len());
    for builder in builders {
        let (values, remap) = builder.finish();
        dictionary_values.push(values);
        remaps.push(remap);
    }

    // The permutation: (tenant code, timestamp, seq) orders like (tenant, timestamp, seq) since
    // dictionary codes follow the sorted values.
    let tenant_remap = &remaps[0];
    let mut order: Vec<(u32, i64, u64, u32)> = input
        .iter()
        .enumerate()
        .map(|(i, row)| {
            (
                tenant_remap[row.codes[0] as usize],
                row.timestamp_us,
                row.seq,
                i as u32,
            )
        })
        .collect();
    order.sort_unstable();
    let runs = received_runs(&input);
    // Gathered once into sorted order, with final codes.
    let mut sorted: Vec<Row<'_>> = Vec::with_capacity(input.len());
    for (position, entry) in order.iter().enumerate() {
        if let Some(ahead) = order.get(position + 8) {
            prefetch(&input[ahead.3 as usize]);
        }
        let mut row = input[entry.3 as usize];
        for (code, remap) in row.codes.iter_mut().zip(&remaps) {
            *code = remap[*code as usize];
        }
        sorted.push(row);
    }
    drop(order);
    drop(input);
    drop(remaps);

    let mut tenant_row_counts = vec![0u64; dictionary_values[0].len()];
    for row in &sorted {
        // Tenant codes are >= 1: the tenant is always present.
        if let Some(count) = (row.codes[0] as usize)
            .checked_sub(1)
            .and_then(|index| tenant_row_counts.get_mut(index))
        {
            *count += 1;
        }
    }

    // Segments come out at about 40 bytes an event; pages never touched are never faulted in,
    // so a generous reservation costs nothing and saves copying the file while it grows.
    let mut out = Vec::with_capacity(rows.len() * 64 + (1 << 16));
    Header {
        version: FORMAT_VERSION,
        flags: 0,
        segment_id,
    }
    .write(&mut out);

    let context = ColumnContext {
        received_from_seq: runs.is_some(),
        dictionary_lens: std::array::from_fn(|slot| dictionary_values[slot].len()),
    };
    let text_dictionaries = build_text_dictionaries(segment_id, &sorted, &context, options)?;
    let mut scratch = Scratch::default();
    let mut writer = ChunkWriter::new(segment_id, options.chunk_bytes_max)?;
    let mut raw = Vec::new();
    let mut blocks = Vec::with_capacity(rows.len().div_ceil(options.block_rows));
    let mut first_row = 0u64;
    let mut key_hashes: Vec<u64> = Vec::with_capacity(sorted.len());
    let mut tenant_state: Option<(u32, u64)> = None;
    for (block_index, block) in sorted.chunks(options.block_rows).enumerate() {
        let mut entry = BlockEntry {
            rows: block.len() as u32,
            first_row,
            min_timestamp_us: i64::MAX,
            max_timestamp_us: i64::MIN,
            min_seq: u64::MAX,
            max_seq: u64::MIN,
            first_tenant_code: block[0].codes[0],
            last_tenant_code: block[block.len() - 1].codes[0],
            chunks: [ChunkRef::default(); COLUMN_COUNT],
        };
        for row in block {
            entry.min_timestamp_us = entry.min_timestamp_us.min(row.timestamp_us);
            entry.max_timestamp_us = entry.max_timestamp_us.max(row.timestamp_us);
            entry.min_seq = entry.min_seq.min(row.seq);
            entry.max_seq = entry.max_seq.max(row.seq);
        }
        // Rows are tenant-sorted: the tenant's part of each key hash is computed once per tenant.
        // The ids are hashed here, while the block's rows are in cache.
        for row in block {
            let Some(id) = row.texts[0] else { continue };
            let state = match tenant_state {
                Some((code, state)) if code == row.codes[0] => state,
                _ => {
                    let tenant = dictionary_values[0]
                        .get((row.codes[0] as usize).wrapping_sub(1))
                        .unwrap_or_default();
                    let state = bloom::key_hash_tenant(tenant);
                    tenant_state = Some((row.codes[0], state));
                    state
                }
            };
            key_hashes.push(bloom::key_hash_id(state, id));
        }
        scratch.generation = block_index as u32 + 1;
        for column in Column::ALL {
            raw.clear();
            let tail_len = encode_column(column, block, &context, &mut scratch, &mut raw);
            let level = if column.is_text() {
                options.text_zstd_level
            } else {
                options.zstd_level
            };
            let dictionary =
                text_dictionary_slot(column).and_then(|slot| text_dictionaries[slot].as_ref());
            entry.chunks[column.index()] =
                writer.write_with_tail(&mut out, &raw, Some(level), tail_len, dictionary)?;
        }
        first_row += block.len() as u64;
        blocks.push(entry);
    }

    let dictionary_offset = out.len() as u64;
    let mut dictionary_chunks = Vec::with_capacity(DICTIONARY_COLUMNS.len());
    for values in &dictionary_values {
        raw.clear();
        Dictionary::encode(values.iter(), &mut raw);
        let chunk = writer.write(&mut out, &raw, Some(options.dictionary_zstd_level))?;
        dictionary_chunks.push((values.len() as u32, chunk));
    }
    // Text dictionaries follow the column dictionaries in the dictionary section.
    let mut text_dictionary_chunks = [ChunkRef::default(); TEXT_DICTIONARY_COLUMNS.len()];
    for (chunk, dictionary) in text_dictionary_chunks.iter_mut().zip(&text_dictionaries) {
        if let Some(dictionary) = dictionary {
            *chunk = writer.write(
                &mut out,
                &dictionary.raw,
                Some(options.dictionary_zstd_level),
            )?;
        }
    }
    let dictionary_len = out.len() as u64 - dictionary_offset;

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
    raw.extend_from_slice(&(TEXT_DICTIONARY_COLUMNS.len() as u32).to_le_bytes());
    for (column, chunk) in TEXT_DICTIONARY_COLUMNS.iter().zip(&text_dictionary_chunks) {
        raw.push(*column as u8);
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

/// A text dictionary is built only when at least one sampled row in this many has the column...
const TEXT_DICTIONARY_PRESENT_RATIO: usize = 8;
/// ... and their texts add up to at least this many bytes.
const TEXT_DICTIONARY_TEXT_BYTES_MIN: usize = 64;
/// Largest text dictionary (its first bytes are kept).
const TEXT_DICTIONARY_BYTES_MAX: usize = 1 << 20;

/// The text dictionaries of a segment ([`TEXT_DICTIONARY_COLUMNS`] order; `None`: that column's
/// chunks are compressed alone): [`EncodeOptions::text_dictionary_rows`] rows sampled evenly over
/// the sorted rows (at most a block's rows), encoded as one block of the column, less the random
/// tail (packed request ids, which no later chunk can match), at most
/// [`TEXT_DICTIONARY_BYTES_MAX`]. A column present in fewer than one sampled row in
/// [`TEXT_DICTIONARY_PRESENT_RATIO`], or with under [`TEXT_DICTIONARY_TEXT_BYTES_MIN`] bytes of
/// text in the sample, gets none.
fn build_text_dictionaries(
    segment_id: u64,
    sorted: &[Row<'_>],
    context: &ColumnContext,
    options: &EncodeOptions,
) -> Result<[Option<TextDictionary>; TEXT_DICTIONARY_COLUMNS.len()]> {
    let mut dictionaries: [Option<TextDictionary>; TEXT_DICTIONARY_COLUMNS.len()] =
        Default::default();
    let blocks = sorted.len().div_ceil(options.block_rows);
    // No larger than a block: the sample encodes like one, within the chunk size limit.
    let wanted = options
        .text_dictionary_rows
        .min(options.block_rows)
        .min(sorted.len());
    if wanted == 0 || blocks < options.text_dictionary_min_blocks.max(1) {
        return Ok(dictionaries);
    }
    let sample: Vec<Row<'_>> = (0..wanted)
        .map(|i| sorted[i * sorted.len() / wanted])
        .collect();
    for (slot, column) in TEXT_DICTIONARY_COLUMNS.into_iter().enumerate() {
        // A column most rows lack gains little and would cost every reader a prepared
        // dictionary (tens of KiB) per segment.
        let present: Vec<&str> = sample
            .iter()
            .filter_map(|row| row.texts[text_slot(column)])
            .collect();
        let present_bytes: usize = present.iter().map(|text| text.len()).sum();
        if present.len() * TEXT_DICTIONARY_PRESENT_RATIO < sample.len()
            || present_bytes < TEXT_DICTIONARY_TEXT_BYTES_MIN
        {
            continue;
        }
        let mut scratch = Scratch::default();
        let mut raw = Vec::new();
        let tail_len = encode_column(column, &sample, context, &mut scratch, &mut raw);
        raw.truncate(raw.len() - tail_len.min(raw.len()));
        // Any prefix of the bytes is as valid a raw-content dictionary.
        raw.truncate(TEXT_DICTIONARY_BYTES_MAX);
        // Never mistaken for a formatted zstd dictionary: those start with magic 0xEC30A437
        // (bytes 37 A4 30 EC), a text chunk with its layout byte (0, 1 or 2).
        debug_assert!(raw[0] <= TEXT_LAYOUT_PACKED);
        let prepared = zstd::zstd_safe::CDict::try_create(&raw, options.text_zstd_level)
            .ok_or_else(|| {
                zstd_error(
                    segment_id,
                    std::io::Error::other("zstd could not prepare a text dictionary"),
                )
            })?;
        dictionaries[slot] = Some(TextDictionary { raw, prepared });
    }
    Ok(dictionaries)
}

/// What every column encoder of a segment needs.
struct ColumnContext {
    /// True when `received` is stored as the segment's received runs.
    received_from_seq: bool,
    /// Number of values of each dictionary, in [`DICTIONARY_COLUMNS`] order.
    dictionary_lens: [usize; DICTIONARY_COLUMNS.len()],
}

/// Appends the raw (uncompressed) encoding of `column` for the rows of `block` (in sorted
/// order). Returns how many bytes at the end are random (not worth compressing).
fn encode_column<'r>(
    column: Column,
    block: &[Row<'r>],
    context: &ColumnContext,
    scratch: &mut Scratch<'r>,
    raw: &mut Vec<u8>,
) -> usize {
    raw.reserve(block.len() * 2);
    match column.kind() {
        ColumnKind::DeltaU64 => {
            let mut previous = 0u64;
            for row in block {
                let current = match column {
                    Column::Seq => row.seq,
                    _ => row.tenant_seq,
                };
                put_varint(raw, zigzag_encode(current.wrapping_sub(previous) as i64));
                previous = current;
            }
        }
        ColumnKind::DeltaI64 => {
            let mut previous = 0i64;
            for row in block {
                put_varint(raw, zigzag_encode(row.timestamp_us.wrapping_sub(previous)));
                previous = row.timestamp_us;
            }
        }
        ColumnKind::ReceivedOffset => {
            if context.received_from_seq {
                raw.push(RECEIVED_FROM_SEQ_RUNS);
            } else {
                raw.push(RECEIVED_FROM_TIMESTAMP);
                for row in block {
                    put_varint(
                        raw,
                        zigzag_encode(row.received_us.wrapping_sub(row.timestamp_us)),
                    );
                }
            }
        }
        ColumnKind::DictionaryDelta | ColumnKind::Dictionary => {
            let slot = dictionary_slot(column).unwrap_or_default();
            if column.kind() == ColumnKind::DictionaryDelta {
                let mut previous = 0i64;
                for row in block {
                    let code = i64::from(row.codes[slot]);
                    put_varint(raw, zigzag_encode(code - previous));
                    previous = code;
                }
            } else if let Some(parent) = dictionary_parent(column) {
                let parent_slot = dictionary_slot(parent).unwrap_or_default();
                let mut recent = RecentCodes::default();
                // Per parent code: (block generation, child code of the last row with it).
                let last = &mut scratch.last_child[slot];
                last.resize(context.dictionary_lens[parent_slot] + 1, (0, 0));
                let generation = scratch.generation;
                for row in block {
                    let code = row.codes[slot];
                    let seen = &mut last[row.codes[parent_slot] as usize];
                    if *seen == (generation, code) {
                        raw.push(0);
                    } else {
                        *seen = (generation, code);
                        put_varint(raw, recent.encode(code) + 1);
                    }
                }
            } else {
                let mut recent = RecentCodes::default();
                for row in block {
                    put_varint(raw, recent.encode(row.codes[slot]));
                }
            }
        }
        ColumnKind::Byte => {
            raw.extend(block.iter().map(|row| match column {
                Column::ActorType => row.actor_type,
                _ => row.outcome,
            }));
        }
        ColumnKind::Text => {
            let slot = text_slot(column);
            let values = &mut scratch.texts;
            values.clear();
            values.extend(block.iter().map(|row| row.texts[slot]));
            if column == Column::Id {
                raw.push(TEXT_LAYOUT_PACKED);
                if let Some(tail_len) = packed_text::encode(values, raw) {
                    return tail_len;
                }
                raw.clear();
            } else {
                raw.push(TEXT_LAYOUT_SHREDDED);
                if let Some(tail_len) = scratch.json.encode(values, raw) {
                    return tail_len;
                }
                raw.clear();
            }
            raw.push(TEXT_LAYOUT_PLAIN);
            for value in values.iter() {
                let length = match value {
                    Some(text) => text.len() as u64 + 1,
                    None => 0,
                };
                put_varint(raw, length);
            }
            for text in values.iter().flatten() {
                raw.extend_from_slice(text.as_bytes());
            }
        }
    }
    0
}

/// Buffers reused across the blocks of a segment.
#[derive(Default)]
struct Scratch<'r> {
    /// Number of the block being encoded (from 1), stamping [`Scratch::last_child`] entries so
    /// they need no clearing between blocks.
    generation: u32,
    /// Per dictionary slot, per parent code: (generation, child code of the last row with that
    /// parent) for the conditional dictionary coding.
    last_child: [Vec<(u32, u32)>; DICTIONARY_COLUMNS.len()],
    /// The values of the text column being encoded.
    texts: Vec<Option<&'r str>>,
    json: json_text::Encoder<'r>,
}

/// Hints the CPU to start loading `value` (rows are gathered in permutation order, so the
/// hardware prefetcher cannot guess the next address). A hint only: it never faults.
#[inline(always)]
pub(crate) fn prefetch<T>(address: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` reads nothing architecturally and cannot fault, whatever the
    // address; SSE is part of the x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

/// The received runs of a segment, when they are cheaper than per-row offsets from the
/// timestamp: `(first seq of the run, received)` with seq ascending, consecutive runs differing in
/// received. Received is assigned per group commit, so it is a step function of seq.
fn received_runs(rows: &[Row<'_>]) -> Option<Vec<(u64, i64)>> {
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
        .map(|r| varint_len(zigzag_encode(r.received_us.wrapping_sub(r.timestamp_us))))
        .sum();
    (runs_bytes < offsets_bytes).then_some(runs)
}

#[inline]
fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}
