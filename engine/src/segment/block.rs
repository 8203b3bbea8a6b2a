//! A decoded block: the rows of one block, with only the requested columns decoded.
//!
//! [`Block`] is what the search crate works with: typed slices for the numeric columns,
//! dictionary codes plus the segment [`Dictionary`] for the low-cardinality strings (so a filter
//! compares integers, not strings), and [`Block::event`] to materialize a row as a
//! [`StoredEvent`] once every column is decoded.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use crate::error::{Error, Result};
use crate::event::{ActorType, EventRef, Outcome, StoredEvent};

use std::ops::Range;

use super::dictionary::Dictionary;
use super::format::{
    codec_uses_dictionary, dictionary_parent, dictionary_slot, get_varint, salted_crc,
    text_dictionary_slot, zigzag_decode, ChunkRef, Column, ColumnKind, RecentCodes,
    CHUNK_RAW_BYTES_MAX, CODEC_RAW, CODEC_ZSTD, CODEC_ZSTD_DICT, CODEC_ZSTD_DICT_RAW_TAIL,
    CODEC_ZSTD_RAW_TAIL, DECODE_ORDER, DICTIONARY_COLUMNS, RECEIVED_FROM_SEQ_RUNS,
    RECEIVED_FROM_TIMESTAMP, TEXT_LAYOUT_PACKED, TEXT_LAYOUT_PLAIN, TEXT_LAYOUT_SHREDDED,
};
use super::Columns;
use super::{json_text, packed_text};

/// The segment's dictionaries, in [`DICTIONARY_COLUMNS`] order, shared by its blocks. Each is
/// decoded the first time a read needs it (the segment loads a block's dictionaries before it
/// decodes the block), so a segment nobody reads holds only its value counts in memory.
#[derive(Debug, Default)]
pub(crate) struct Dictionaries {
    slots: [OnceLock<Dictionary>; DICTIONARY_COLUMNS.len()],
    /// Values of each dictionary, known from the block directory without decoding it.
    counts: [u32; DICTIONARY_COLUMNS.len()],
}

/// What an unloaded dictionary reads as (no value).
static NO_VALUES: Dictionary = Dictionary::EMPTY;

impl Dictionaries {
    pub fn new(counts: [u32; DICTIONARY_COLUMNS.len()]) -> Dictionaries {
        Dictionaries {
            slots: Default::default(),
            counts,
        }
    }

    /// The same dictionaries with only the tenants' loaded (the others decode again on use).
    pub fn tenants_only(&self) -> Dictionaries {
        let fresh = Dictionaries::new(self.counts);
        if let Some(tenants) = self.loaded(0) {
            fresh.load(0, tenants.clone());
        }
        fresh
    }

    /// Number of values of the dictionary in `slot`, loaded or not.
    pub fn count(&self, slot: usize) -> u32 {
        self.counts[slot]
    }

    /// The dictionary in `slot` if it is loaded.
    pub fn loaded(&self, slot: usize) -> Option<&Dictionary> {
        self.slots[slot].get()
    }

    /// Stores the decoded dictionary of `slot` (a no-op if another reader got there first: both
    /// decoded the same bytes).
    pub fn load(&self, slot: usize, dictionary: Dictionary) {
        let _ = self.slots[slot].set(dictionary);
    }

    /// The loaded dictionary of `column`, `None` for columns without one.
    pub fn get(&self, column: Column) -> Option<&Dictionary> {
        dictionary_slot(column).and_then(|slot| self.loaded(slot))
    }

    /// The dictionary of `slot`, read as empty if it is not loaded: blocks only read the
    /// dictionaries of the columns they were decoded with, which are loaded.
    fn slot(&self, slot: usize) -> &Dictionary {
        self.loaded(slot).unwrap_or(&NO_VALUES)
    }
}

/// The text columns in slot order.
const TEXT_COLUMNS: [Column; 3] = [Column::Id, Column::Changes, Column::Details];

fn text_slot(column: Column) -> Option<usize> {
    TEXT_COLUMNS.iter().position(|c| *c == column)
}

/// Marks an absent value in [`TextColumn::spans`].
const ABSENT: u32 = u32::MAX;

/// One decoded text column: the values of the block (or of the rows a caller asked for),
/// concatenated, with each row's span.
#[derive(Debug, Default, Clone)]
struct TextColumn {
    text: String,
    /// Block row of `spans[0]`: 0 unless only some rows were decoded.
    first_row: usize,
    /// `(start, end)` in `text`; `(ABSENT, ABSENT)` when the row has no value.
    spans: Vec<(u32, u32)>,
}

impl TextColumn {
    #[inline]
    fn get(&self, row: usize) -> Option<&str> {
        let (start, end) = *self.spans.get(row.checked_sub(self.first_row)?)?;
        if start == ABSENT {
            return None;
        }
        self.text.get(start as usize..end as usize)
    }
}

/// The rows of one block, with the columns that were asked for decoded.
///
/// Accessors of a column that was not decoded panic (that is a bug in the caller, not bad data);
/// check [`Block::columns`] when unsure.
#[derive(Debug, Clone)]
pub struct Block {
    index: usize,
    first_row: u64,
    rows: usize,
    columns: Columns,
    dictionaries: Arc<Dictionaries>,
    seqs: Vec<u64>,
    tenant_seqs: Vec<u64>,
    timestamps: Vec<i64>,
    received: Vec<i64>,
    codes: [Vec<u32>; DICTIONARY_COLUMNS.len()],
    actor_types: Vec<ActorType>,
    outcomes: Vec<Outcome>,
    texts: [TextColumn; TEXT_COLUMNS.len()],
}

impl Block {
    /// The block's index in the segment.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Segment row number of the block's first row (rows are numbered in sorted order).
    pub fn first_row(&self) -> u64 {
        self.first_row
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The decoded columns (`Received` brings `Timestamp` with it).
    pub fn columns(&self) -> Columns {
        self.columns
    }

    #[track_caller]
    fn require(&self, column: Column) {
        assert!(
            self.columns.contains(column),
            "column {} was not decoded in block {}",
            column.name(),
            self.index
        );
    }

    #[track_caller]
    pub fn seqs(&self) -> &[u64] {
        self.require(Column::Seq);
        &self.seqs
    }

    #[track_caller]
    pub fn tenant_seqs(&self) -> &[u64] {
        self.require(Column::TenantSeq);
        &self.tenant_seqs
    }

    /// Event timestamps, UTC microseconds.
    #[track_caller]
    pub fn timestamps(&self) -> &[i64] {
        self.require(Column::Timestamp);
        &self.timestamps
    }

    /// Receive times, UTC microseconds.
    #[track_caller]
    pub fn received(&self) -> &[i64] {
        self.require(Column::Received);
        &self.received
    }

    /// Tenant dictionary codes (ascending: rows are tenant-sorted).
    #[track_caller]
    pub fn tenant_codes(&self) -> &[u32] {
        self.codes(Column::Tenant)
    }

    /// Dictionary codes of a dictionary column (0 = absent); see [`Block::dictionary`].
    #[track_caller]
    pub fn codes(&self, column: Column) -> &[u32] {
        self.require(column);
        let slot = dictionary_slot(column)
            .unwrap_or_else(|| panic!("column {} has no dictionary", column.name()));
        &self.codes[slot]
    }

    /// The segment dictionary of `column`, `None` for columns without one (or whose
    /// dictionary the segment has not decoded: those of the block's columns always are).
    pub fn dictionary(&self, column: Column) -> Option<&Dictionary> {
        self.dictionaries.get(column)
    }

    #[track_caller]
    pub fn actor_types(&self) -> &[ActorType] {
        self.require(Column::ActorType);
        &self.actor_types
    }

    #[track_caller]
    pub fn outcomes(&self) -> &[Outcome] {
        self.require(Column::Outcome);
        &self.outcomes
    }

    /// The value of any string column (dictionary or text) at `row`; `None` when absent.
    #[track_caller]
    pub fn str(&self, column: Column, row: usize) -> Option<&str> {
        self.require(column);
        if let Some(slot) = text_slot(column) {
            return self.texts[slot].get(row);
        }
        let slot = dictionary_slot(column)
            .unwrap_or_else(|| panic!("column {} is not a string column", column.name()));
        self.dictionaries
            .slot(slot)
            .get(*self.codes[slot].get(row)?)
    }

    /// Materializes `row` as a [`StoredEvent`]; every column must have been decoded.
    #[track_caller]
    pub fn event(&self, row: usize) -> StoredEvent {
        self.event_ref(row).to_stored()
    }

    /// `row` borrowed from the block's columns, copying no string; every column must have
    /// been decoded (for the text columns, at least over `row`).
    #[track_caller]
    pub fn event_ref(&self, row: usize) -> EventRef<'_> {
        assert!(
            self.columns.contains_all(Columns::ALL),
            "block {} was decoded without every column",
            self.index
        );
        let dictionary = |slot: usize| self.dictionaries.slot(slot).get(self.codes[slot][row]);
        EventRef {
            seq: self.seqs[row],
            tenant_seq: self.tenant_seqs[row],
            received_us: self.received[row],
            id: self.texts[0].get(row),
            timestamp_us: self.timestamps[row],
            tenant: dictionary(0).unwrap_or_default(),
            project: dictionary(1),
            actor_id: dictionary(2),
            actor_email: dictionary(3),
            actor_type: self.actor_types[row],
            actor_ip: dictionary(4),
            actor_user_agent: dictionary(5),
            action: dictionary(6).unwrap_or_default(),
            outcome: self.outcomes[row],
            resource_type: dictionary(7).unwrap_or_default(),
            resource_id: dictionary(8),
            resource_name: dictionary(9),
            changes: self.texts[1].get(row),
            details: self.texts[2].get(row),
        }
    }

    /// Every row as a [`StoredEvent`], in segment order.
    pub fn events(&self) -> impl Iterator<Item = StoredEvent> + '_ {
        (0..self.rows).map(|row| self.event(row))
    }
}

/// Per parent code: (stamp, child code of the last row with that parent code), for decoding
/// parent-coded dictionary columns without a hash map. Entries whose stamp is not the current
/// one are stale, so the table is never cleared between columns.
#[derive(Default)]
pub(crate) struct LastChild {
    entries: Vec<(u32, u32)>,
    stamp: u32,
}

impl LastChild {
    /// Readies the table for a column whose parent dictionary has `parent_len` values; returns
    /// the stamp of this column's entries.
    fn start(&mut self, parent_len: usize) -> u32 {
        if self.entries.len() <= parent_len {
            self.entries.resize(parent_len + 1, (0, 0));
        }
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.entries.fill((0, 0));
            self.stamp = 1;
        }
        self.stamp
    }
}

/// Checks and decompresses chunks; one per thread is reused across blocks.
pub(crate) struct ChunkDecoder {
    decompressor: zstd::bulk::Decompressor<'static>,
    /// For chunks compressed against a segment's text dictionary.
    dictionary_context: zstd::zstd_safe::DCtx<'static>,
    buffer: Vec<u8>,
    last_child: LastChild,
}

/// Largest scratch buffer kept between calls.
const SCRATCH_BYTES_KEPT: usize = 8 << 20;

impl ChunkDecoder {
    pub fn new(path: &Path) -> Result<Self> {
        Ok(ChunkDecoder {
            decompressor: zstd::bulk::Decompressor::new().map_err(|e| Error::io(path, e))?,
            dictionary_context: zstd::zstd_safe::DCtx::try_create().ok_or_else(|| {
                Error::io(path, std::io::Error::other("zstd could not make a context"))
            })?,
            buffer: Vec::new(),
            last_child: LastChild::default(),
        })
    }

    /// The stored bytes of `chunk` after bounds and checksum checks.
    pub fn stored<'f>(
        file: &'f [u8],
        chunk: &ChunkRef,
        segment_id: u64,
        path: &Path,
        what: &dyn Fn() -> String,
    ) -> Result<&'f [u8]> {
        let stored = usize::try_from(chunk.offset)
            .ok()
            .and_then(|start| file.get(start..start.checked_add(chunk.stored_len as usize)?))
            .ok_or_else(|| Error::Corrupt {
                path: path.to_path_buf(),
                offset: chunk.offset,
                reason: format!(
                    "{}: {} bytes at offset {} lie outside the {}-byte file",
                    what(),
                    chunk.stored_len,
                    chunk.offset,
                    file.len()
                ),
            })?;
        let crc = salted_crc(segment_id, stored);
        if crc != chunk.crc {
            return Err(Error::ChecksumMismatch {
                path: path.to_path_buf(),
                offset: chunk.offset,
                expected: chunk.crc,
                found: crc,
            });
        }
        Ok(stored)
    }

    /// The raw bytes of a chunk whose stored bytes passed [`ChunkDecoder::stored`] (a chunk
    /// whose codec needs no text dictionary).
    pub fn raw<'s>(
        &'s mut self,
        stored: &'s [u8],
        chunk: &ChunkRef,
        path: &Path,
        what: &dyn Fn() -> String,
    ) -> Result<&'s [u8]> {
        ChunkDecoder::raw_with(
            &mut self.decompressor,
            &mut self.dictionary_context,
            &mut self.buffer,
            stored,
            chunk,
            None,
            path,
            what,
        )
    }

    /// [`ChunkDecoder::raw`] on the decoder's parts, so the caller may borrow its other scratch;
    /// `dictionary` is the segment's text dictionary of the chunk's column, if it has one.
    #[allow(clippy::too_many_arguments)]
    fn raw_with<'s>(
        decompressor: &mut zstd::bulk::Decompressor<'static>,
        dictionary_context: &mut zstd::zstd_safe::DCtx<'static>,
        buffer: &'s mut Vec<u8>,
        stored: &'s [u8],
        chunk: &ChunkRef,
        dictionary: Option<&zstd::zstd_safe::DDict<'static>>,
        path: &Path,
        what: &dyn Fn() -> String,
    ) -> Result<&'s [u8]> {
        let corrupt = |reason: String| Error::Corrupt {
            path: path.to_path_buf(),
            offset: chunk.offset,
            reason: format!("{}: {reason}", what()),
        };
        match chunk.codec {
            CODEC_RAW => {
                if stored.len() != chunk.raw_len as usize {
                    return Err(corrupt(format!(
                        "raw chunk of {} bytes claims {} bytes",
                        stored.len(),
                        chunk.raw_len
                    )));
                }
                Ok(stored)
            }
            CODEC_ZSTD | CODEC_ZSTD_RAW_TAIL | CODEC_ZSTD_DICT | CODEC_ZSTD_DICT_RAW_TAIL => {
                let dictionary = if codec_uses_dictionary(chunk.codec) {
                    let Some(dictionary) = dictionary else {
                        return Err(corrupt(format!(
                            "codec {} needs a text dictionary the segment does not have",
                            chunk.codec
                        )));
                    };
                    Some(dictionary)
                } else {
                    None
                };
                let has_tail =
                    matches!(chunk.codec, CODEC_ZSTD_RAW_TAIL | CODEC_ZSTD_DICT_RAW_TAIL);
                let (frame, tail) = if has_tail {
                    let Some((length, rest)) = stored.split_first_chunk::<4>() else {
                        return Err(corrupt("chunk too short for its frame length".into()));
                    };
                    let length = u32::from_le_bytes(*length) as usize;
                    if length > rest.len() {
                        return Err(corrupt(format!(
                            "frame of {length} bytes in a chunk of {}",
                            stored.len()
                        )));
                    }
                    rest.split_at(length)
                } else {
                    (stored, &[][..])
                };
                if chunk.raw_len > CHUNK_RAW_BYTES_MAX {
                    return Err(corrupt(format!(
                        "decoded length {} exceeds the limit {CHUNK_RAW_BYTES_MAX}",
                        chunk.raw_len
                    )));
                }
                let buffer_slot = buffer;
                if buffer_slot.capacity() > SCRATCH_BYTES_KEPT
                    && (chunk.raw_len as usize) < SCRATCH_BYTES_KEPT
                {
                    *buffer_slot = Vec::new();
                }
                buffer_slot.clear();
                buffer_slot.reserve(chunk.raw_len as usize);
                let head_len = (chunk.raw_len as usize)
                    .checked_sub(tail.len())
                    .ok_or_else(|| corrupt("raw tail longer than the chunk".into()))?;
                let written = match dictionary {
                    None => decompressor
                        .decompress_to_buffer(frame, buffer_slot)
                        .map_err(|e| corrupt(format!("zstd: {e}")))?,
                    Some(dictionary) => dictionary_context
                        .decompress_using_ddict(buffer_slot, frame, dictionary)
                        .map_err(|code| {
                            corrupt(format!("zstd: {}", zstd::zstd_safe::get_error_name(code)))
                        })?,
                };
                if written != head_len {
                    return Err(corrupt(format!(
                        "decompressed to {written} bytes, the directory says {head_len}"
                    )));
                }
                buffer_slot.extend_from_slice(tail);
                if buffer_slot.len() != chunk.raw_len as usize {
                    return Err(corrupt(format!(
                        "decoded to {} bytes, the directory says {}",
                        buffer_slot.len(),
                        chunk.raw_len
                    )));
                }
                Ok(buffer_slot)
            }
            other => Err(corrupt(format!("unknown codec {other}"))),
        }
    }
}

/// What `decode_block` needs to know about the file.
pub(crate) struct BlockSource<'a> {
    pub path: &'a Path,
    pub file: &'a [u8],
    pub segment_id: u64,
    pub index: usize,
    pub first_row: u64,
    pub rows: usize,
    pub chunks: &'a [ChunkRef],
    pub dictionaries: &'a Arc<Dictionaries>,
    /// The segment's text dictionaries that this decode may need, loaded
    /// ([`super::format::TEXT_DICTIONARY_COLUMNS`] order).
    pub text_dictionaries: [Option<&'a zstd::zstd_safe::DDict<'static>>; 2],
    /// The segment's received runs `(first seq, received)`, seq ascending (empty when the
    /// segment stores received relative to the timestamp).
    pub received_runs: &'a [(u64, i64)],
}

/// `columns` plus every column they are coded against.
pub(crate) fn with_dependencies(columns: Columns, received_from_seq: bool) -> Columns {
    let mut columns = columns;
    if columns.contains(Column::Received) {
        columns = columns.with(if received_from_seq {
            Column::Seq
        } else {
            Column::Timestamp
        });
    }
    for column in DICTIONARY_COLUMNS {
        if columns.contains(column) {
            if let Some(parent) = dictionary_parent(column) {
                columns = columns.with(parent);
            }
        }
    }
    columns
}

/// Decodes the `columns` of one block. Text columns are decoded for the rows `text_rows` only
/// (a [`Block`] decoded with fewer than all rows must not be handed out: its other rows' texts
/// read as absent).
pub(crate) fn decode_block(
    source: &BlockSource<'_>,
    decoder: &mut ChunkDecoder,
    columns: Columns,
    text_rows: Range<usize>,
) -> Result<Block> {
    let columns = with_dependencies(columns, !source.received_runs.is_empty());
    let mut block = Block {
        index: source.index,
        first_row: source.first_row,
        rows: source.rows,
        columns,
        dictionaries: Arc::clone(source.dictionaries),
        seqs: Vec::new(),
        tenant_seqs: Vec::new(),
        timestamps: Vec::new(),
        received: Vec::new(),
        codes: Default::default(),
        actor_types: Vec::new(),
        outcomes: Vec::new(),
        texts: Default::default(),
    };
    // Every column is decoded after the columns it is coded against.
    for column in DECODE_ORDER.into_iter().filter(|c| columns.contains(*c)) {
        let chunk = source
            .chunks
            .get(column.index())
            .ok_or_else(|| Error::Corrupt {
                path: source.path.to_path_buf(),
                offset: 0,
                reason: format!(
                    "block {} has no chunk for column {}",
                    source.index,
                    column.name()
                ),
            })?;
        let what = || format!("block {} column {}", source.index, column.name());
        let stored =
            ChunkDecoder::stored(source.file, chunk, source.segment_id, source.path, &what)?;
        let ChunkDecoder {
            decompressor,
            dictionary_context,
            buffer,
            last_child,
        } = &mut *decoder;
        let dictionary =
            text_dictionary_slot(column).and_then(|slot| source.text_dictionaries[slot]);
        let raw = ChunkDecoder::raw_with(
            decompressor,
            dictionary_context,
            buffer,
            stored,
            chunk,
            dictionary,
            source.path,
            &what,
        )?;
        let mut values = ColumnReader {
            raw,
            position: 0,
            rows: source.rows,
            path: source.path,
            offset: chunk.offset,
            what: &what,
        };
        match column.kind() {
            ColumnKind::DeltaU64 => {
                let decoded = values.deltas_u64()?;
                match column {
                    Column::Seq => block.seqs = decoded,
                    _ => block.tenant_seqs = decoded,
                }
            }
            ColumnKind::DeltaI64 => block.timestamps = values.deltas_i64()?,
            ColumnKind::ReceivedOffset => {
                block.received =
                    values.received(&block.timestamps, &block.seqs, source.received_runs)?;
            }
            ColumnKind::Dictionary | ColumnKind::DictionaryDelta => {
                let slot = dictionary_slot(column).unwrap_or_default();
                let dictionary_len = u64::from(source.dictionaries.count(slot));
                // Columns a valid event always has: code 0 (absent) means damage.
                let required = matches!(
                    column,
                    Column::Tenant | Column::Action | Column::ResourceType
                );
                let parent = dictionary_parent(column)
                    .and_then(dictionary_slot)
                    .map(|parent| std::mem::take(&mut block.codes[parent]));
                let parent_len = dictionary_parent(column)
                    .and_then(dictionary_slot)
                    .map_or(0, |parent| source.dictionaries.count(parent) as usize);
                let decoded = values.codes(
                    column.kind() == ColumnKind::DictionaryDelta,
                    parent.as_deref().map(|codes| (codes, parent_len)),
                    dictionary_len,
                    required,
                    last_child,
                );
                if let (Some(codes), Some(parent)) =
                    (parent, dictionary_parent(column).and_then(dictionary_slot))
                {
                    block.codes[parent] = codes;
                }
                block.codes[slot] = decoded?;
            }
            ColumnKind::Byte => {
                let bytes = values.take_all_bytes()?;
                if column == Column::ActorType {
                    block.actor_types = bytes
                        .iter()
                        .map(|&code| ActorType::from_code(code))
                        .collect::<Option<_>>()
                        .ok_or_else(|| values.corrupt("unknown actor type code".into()))?;
                } else {
                    block.outcomes = bytes
                        .iter()
                        .map(|&code| Outcome::from_code(code))
                        .collect::<Option<_>>()
                        .ok_or_else(|| values.corrupt("unknown outcome code".into()))?;
                }
            }
            ColumnKind::Text => {
                let slot = text_slot(column).unwrap_or_default();
                block.texts[slot] = values.text(text_rows.clone())?;
            }
        }
    }
    Ok(block)
}

/// Reads the values of one raw chunk; every failure names the chunk's file offset.
struct ColumnReader<'a> {
    raw: &'a [u8],
    position: usize,
    rows: usize,
    path: &'a Path,
    offset: u64,
    what: &'a dyn Fn() -> String,
}

impl<'a> ColumnReader<'a> {
    fn corrupt(&self, reason: String) -> Error {
        Error::Corrupt {
            path: self.path.to_path_buf(),
            offset: self.offset,
            reason: format!("{}: {reason}", (self.what)()),
        }
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64> {
        // Fast path: one byte (codes, small deltas).
        if let Some(&byte) = self.raw.get(self.position) {
            if byte < 0x80 {
                self.position += 1;
                return Ok(u64::from(byte));
            }
        }
        self.varint_slow()
    }

    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64> {
        get_varint(self.raw, &mut self.position).map_err(|e| self.corrupt(e.reason().into()))
    }

    fn finish(&self) -> Result<()> {
        if self.position != self.raw.len() {
            return Err(self.corrupt(format!(
                "{} trailing bytes after {} rows",
                self.raw.len() - self.position,
                self.rows
            )));
        }
        Ok(())
    }

    fn deltas_u64(&mut self) -> Result<Vec<u64>> {
        let mut values = Vec::with_capacity(self.rows);
        let mut previous = 0u64;
        for _ in 0..self.rows {
            previous = previous.wrapping_add(zigzag_decode(self.varint()?) as u64);
            values.push(previous);
        }
        self.finish()?;
        Ok(values)
    }

    fn deltas_i64(&mut self) -> Result<Vec<i64>> {
        let mut values = Vec::with_capacity(self.rows);
        let mut previous = 0i64;
        for _ in 0..self.rows {
            previous = previous.wrapping_add(zigzag_decode(self.varint()?));
            values.push(previous);
        }
        self.finish()?;
        Ok(values)
    }

    fn received(
        &mut self,
        timestamps: &[i64],
        seqs: &[u64],
        runs: &[(u64, i64)],
    ) -> Result<Vec<i64>> {
        let mode = *self
            .raw
            .first()
            .ok_or_else(|| self.corrupt("empty received chunk".into()))?;
        self.position = 1;
        let mut values = Vec::with_capacity(self.rows);
        match mode {
            RECEIVED_FROM_TIMESTAMP => {
                if timestamps.len() != self.rows {
                    return Err(self.corrupt("timestamps missing for received".into()));
                }
                for timestamp in timestamps {
                    values.push(timestamp.wrapping_add(zigzag_decode(self.varint()?)));
                }
            }
            RECEIVED_FROM_SEQ_RUNS => {
                if seqs.len() != self.rows || runs.is_empty() {
                    return Err(self.corrupt("received runs or seqs missing".into()));
                }
                // Rows of one tenant ascend in seq mostly: try the last run found first.
                let mut run = 0usize;
                for &seq in seqs {
                    let fits = |run: usize| {
                        runs[run].0 <= seq && runs.get(run + 1).is_none_or(|next| seq < next.0)
                    };
                    if !fits(run) {
                        if run + 1 < runs.len() && fits(run + 1) {
                            run += 1;
                        } else {
                            run = runs
                                .partition_point(|r| r.0 <= seq)
                                .checked_sub(1)
                                .ok_or_else(|| {
                                    self.corrupt(format!("seq {seq} precedes every received run"))
                                })?;
                        }
                    }
                    values.push(runs[run].1);
                }
            }
            other => return Err(self.corrupt(format!("unknown received mode {other}"))),
        }
        self.finish()?;
        Ok(values)
    }

    /// `parent`: the parent column's codes and dictionary length. `last_child` is scratch space
    /// kept between calls: per parent code, (stamp, code of the last row with that parent).
    fn codes(
        &mut self,
        delta: bool,
        parent: Option<(&[u32], usize)>,
        dictionary_len: u64,
        required: bool,
        last_child: &mut LastChild,
    ) -> Result<Vec<u32>> {
        let mut codes = Vec::with_capacity(self.rows);
        let mut previous = 0u64;
        let mut recent = RecentCodes::default();
        if parent.is_some_and(|(p, _)| p.len() != self.rows) {
            return Err(self.corrupt("parent column missing".into()));
        }
        let stamp = match parent {
            Some((_, parent_len)) => last_child.start(parent_len),
            None => 0,
        };
        for row in 0..self.rows {
            let value = self.varint()?;
            let code = if delta {
                previous.wrapping_add(zigzag_decode(value) as u64)
            } else if let Some((parent, _)) = parent {
                // Parent codes were checked against the parent dictionary's length.
                let entry = &mut last_child.entries[parent[row] as usize];
                match value.checked_sub(1) {
                    None => {
                        if entry.0 != stamp {
                            return Err(self.corrupt("a repeated code has no earlier row".into()));
                        }
                        u64::from(entry.1)
                    }
                    Some(value) => {
                        let Some(code) = recent.decode(value) else {
                            return Err(
                                self.corrupt(format!("recent-code position {value} is unused"))
                            );
                        };
                        *entry = (stamp, code as u32);
                        code
                    }
                }
            } else {
                let Some(code) = recent.decode(value) else {
                    return Err(self.corrupt(format!("recent-code position {value} is unused")));
                };
                code
            };
            previous = code;
            if code > dictionary_len || (required && code == 0) {
                return Err(self.corrupt(format!(
                    "dictionary code {code} out of range 1..={dictionary_len}"
                )));
            }
            codes.push(code as u32);
        }
        self.finish()?;
        Ok(codes)
    }

    fn take_all_bytes(&mut self) -> Result<&'a [u8]> {
        if self.raw.len() != self.rows {
            return Err(self.corrupt(format!("{} bytes for {} rows", self.raw.len(), self.rows)));
        }
        self.position = self.raw.len();
        Ok(self.raw)
    }

    fn text(&mut self, wanted: Range<usize>) -> Result<TextColumn> {
        let layout = *self
            .raw
            .first()
            .ok_or_else(|| self.corrupt("empty text chunk".into()))?;
        self.position = 1;
        match layout {
            TEXT_LAYOUT_PLAIN => self.plain_text(),
            TEXT_LAYOUT_SHREDDED | TEXT_LAYOUT_PACKED => {
                let wanted = wanted.start.min(self.rows)..wanted.end.min(self.rows);
                let part = wanted.len() as f64 / self.rows.max(1) as f64;
                let mut bytes = Vec::with_capacity((self.raw.len() as f64 * 3.0 * part) as usize);
                let mut spans = Vec::with_capacity(wanted.len());
                if layout == TEXT_LAYOUT_SHREDDED {
                    json_text::decode_rows(
                        &self.raw[1..],
                        self.rows,
                        wanted.clone(),
                        &mut bytes,
                        &mut spans,
                    )
                    .map_err(|reason| self.corrupt(format!("shredded json: {reason}")))?;
                } else {
                    packed_text::decode_rows(
                        &self.raw[1..],
                        self.rows,
                        wanted.clone(),
                        &mut bytes,
                        &mut spans,
                    )
                    .map_err(|reason| self.corrupt(format!("packed text: {reason}")))?;
                }
                if bytes.len() >= ABSENT as usize {
                    return Err(self.corrupt("text too long".into()));
                }
                let spans = spans
                    .into_iter()
                    .map(|span| match span {
                        Some((start, end)) => (start as u32, end as u32),
                        None => (ABSENT, ABSENT),
                    })
                    .collect();
                self.position = self.raw.len();
                let mut column = self.text_column(bytes, spans)?;
                column.first_row = wanted.start;
                Ok(column)
            }
            other => Err(self.corrupt(format!("unknown text layout {other}"))),
        }
    }

    fn plain_text(&mut self) -> Result<TextColumn> {
        let mut spans = Vec::with_capacity(self.rows);
        let mut end = 0u64;
        for _ in 0..self.rows {
            let value = self.varint()?;
            if value == 0 {
                spans.push((ABSENT, ABSENT));
            } else {
                let start = end;
                end = end.saturating_add(value - 1);
                if end >= u64::from(ABSENT) {
                    return Err(self.corrupt("text lengths overflow".into()));
                }
                spans.push((start as u32, end as u32));
            }
        }
        let raw: &'a [u8] = self.raw;
        let bytes = raw.get(self.position..).unwrap_or_default();
        if bytes.len() as u64 != end {
            return Err(self.corrupt(format!(
                "text lengths add up to {end} bytes, {} are stored",
                bytes.len()
            )));
        }
        self.position = self.raw.len();
        self.text_column(bytes.to_vec(), spans)
    }

    fn text_column(&self, bytes: Vec<u8>, spans: Vec<(u32, u32)>) -> Result<TextColumn> {
        let text =
            String::from_utf8(bytes).map_err(|_| self.corrupt("text is not valid utf-8".into()))?;
        for &(start, end) in &spans {
            if start != ABSENT
                && !(text.is_char_boundary(start as usize) && text.is_char_boundary(end as usize))
            {
                return Err(self.corrupt("a text value splits a utf-8 character".into()));
            }
        }
        Ok(TextColumn {
            text,
            first_row: 0,
            spans,
        })
    }
}
