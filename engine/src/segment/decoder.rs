//! Reading a sealed segment: [`Segment::open`] checks the header, footer and directory and loads
//! the dictionaries; blocks are decoded on demand, only the columns asked for.

use std::cell::RefCell;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use zstd::zstd_safe::DDict;

use crate::error::{Error, Result};
use crate::event::StoredEvent;

use super::block::{
    decode_block, with_dependencies, Block, BlockSource, ChunkDecoder, Dictionaries,
};
use super::bloom::{self, FilterShape};
use super::dictionary::Dictionary;
use super::footer::{Footer, Header, FOOTER_LEN};
use super::format::{
    codec_uses_dictionary, dictionary_slot, text_dictionary_slot, zigzag_decode, ChunkRef, Column,
    Reader, CHUNK_RAW_BYTES_MAX, CODEC_RAW, CODEC_ZSTD, CODEC_ZSTD_DICT, CODEC_ZSTD_DICT_RAW_TAIL,
    CODEC_ZSTD_RAW_TAIL, COLUMN_COUNT, DICTIONARY_COLUMNS, HEADER_LEN, TEXT_DICTIONARY_COLUMNS,
    TEXT_LAYOUT_PACKED,
};
use super::{Columns, SegmentMeta};

/// What the block directory says about one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockMeta {
    /// Number of rows (at least 1).
    pub rows: u32,
    /// Segment row number of the first row.
    pub first_row: u64,
    pub min_timestamp_us: i64,
    pub max_timestamp_us: i64,
    pub min_seq: u64,
    pub max_seq: u64,
    /// Tenant dictionary codes of the first and last row (rows are tenant-sorted, so every
    /// tenant of the block lies between them).
    pub first_tenant_code: u32,
    pub last_tenant_code: u32,
}

impl BlockMeta {
    /// Segment row numbers of the block.
    pub fn row_range(&self) -> Range<u64> {
        self.first_row..self.first_row + u64::from(self.rows)
    }
}

enum Data {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Data {
    fn bytes(&self) -> &[u8] {
        match self {
            Data::Mapped(map) => map,
            Data::Owned(bytes) => bytes,
        }
    }
}

/// An open sealed segment. Cheap to query concurrently (`&self` everywhere, `Send + Sync`).
pub struct Segment {
    path: PathBuf,
    data: Data,
    meta: SegmentMeta,
    footer: Footer,
    blocks: Vec<BlockMeta>,
    chunks: Vec<[ChunkRef; COLUMN_COUNT]>,
    dictionaries: Arc<Dictionaries>,
    dictionary_chunks: [ChunkRef; DICTIONARY_COLUMNS.len()],
    /// The text dictionaries' chunks (v2; `raw_len == 0`: none), [`TEXT_DICTIONARY_COLUMNS`]
    /// order, and the dictionaries prepared for zstd on first use.
    text_dictionary_chunks: [ChunkRef; TEXT_DICTIONARY_COLUMNS.len()],
    text_dictionaries: [OnceLock<DDict<'static>>; TEXT_DICTIONARY_COLUMNS.len()],
    /// Row ranges of the tenants: tenant code `c` holds rows `starts[c - 1]..starts[c]`.
    tenant_row_starts: Vec<u64>,
    /// `(first seq, received)` of each received run, seq ascending; empty when the segment
    /// stores received relative to the timestamp.
    received_runs: Vec<(u64, i64)>,
    filter_shape: FilterShape,
    /// [`DICTIONARY_CLOCK`] when a read last needed this segment's dictionaries.
    dictionaries_used: AtomicU64,
}

/// Ticks once per block read that needs dictionaries, across segments: orders segments by how
/// recently their dictionaries were used.
static DICTIONARY_CLOCK: AtomicU64 = AtomicU64::new(1);

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("path", &self.path)
            .field("meta", &self.meta)
            .field("blocks", &self.blocks.len())
            .finish()
    }
}

thread_local! {
    static CHUNK_DECODER: RefCell<Option<ChunkDecoder>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's chunk decoder (a zstd context and a scratch buffer).
fn with_decoder<T>(path: &Path, f: impl FnOnce(&mut ChunkDecoder) -> Result<T>) -> Result<T> {
    CHUNK_DECODER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            let decoder = match slot.as_mut() {
                Some(decoder) => decoder,
                None => slot.insert(ChunkDecoder::new(path)?),
            };
            f(decoder)
        }
        // Re-entered from inside `f`: use a private decoder.
        Err(_) => f(&mut ChunkDecoder::new(path)?),
    })
}

impl Segment {
    /// Opens and memory-maps a sealed segment file, checking its header, footer, directory,
    /// dictionaries and key filter.
    pub fn open(path: impl AsRef<Path>) -> Result<Segment> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len < (HEADER_LEN + FOOTER_LEN) as u64 {
            // Too short to map usefully; read it to tell bad magic from truncation.
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            return Segment::from_bytes(path, bytes);
        }
        Segment::parse(path.to_path_buf(), Data::Mapped(map_file(path, &file)?))
    }

    /// Reads a segment held in memory; `path` only names it in errors.
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Segment> {
        Segment::parse(path.into(), Data::Owned(bytes))
    }

    fn parse(path: PathBuf, data: Data) -> Result<Segment> {
        let bytes = data.bytes();
        let header = Header::read(bytes, &path)?;
        if header.flags != 0 {
            return Err(Error::Corrupt {
                path,
                offset: 12,
                reason: format!("unknown header flags {:#x}", header.flags),
            });
        }
        let footer = Footer::read(bytes, &path, &header)?;
        let segment_id = header.segment_id;
        let file_len = bytes.len() as u64;
        let footer_offset = Footer::offset_in(file_len);
        let corrupt_footer = |reason: String| Error::Corrupt {
            path: path.clone(),
            offset: footer_offset,
            reason: format!("footer: {reason}"),
        };
        if footer.column_count as usize != COLUMN_COUNT {
            return Err(corrupt_footer(format!(
                "{} columns, the format has {COLUMN_COUNT}",
                footer.column_count
            )));
        }
        let dictionary_end = footer
            .dictionary_offset
            .saturating_add(footer.dictionary_len);
        let sections_in_order = footer.dictionary_offset >= HEADER_LEN as u64
            && dictionary_end <= footer.filter.offset
            && footer.filter.end() <= footer.directory.offset
            && footer.directory.end() <= footer_offset;
        if !sections_in_order {
            return Err(corrupt_footer(
                "dictionary, filter and directory offsets are out of order or out of the file"
                    .into(),
            ));
        }
        if footer.min_timestamp_us > footer.max_timestamp_us || footer.min_seq > footer.max_seq {
            return Err(corrupt_footer("min is above max".into()));
        }

        with_decoder(&path, |decoder| {
            let what = || "block directory".to_string();
            let stored = ChunkDecoder::stored(bytes, &footer.directory, segment_id, &path, &what)?;
            let raw = decoder.raw(stored, &footer.directory, &path, &what)?;
            let directory = parse_directory(raw, &path, &footer)?;

            // Every dictionary is decoded and checked now, so that damage is reported at open;
            // only the tenant dictionary (small, and what every lookup starts from) is kept.
            // The others are decoded again when a read first needs them.
            let mut counts = [0u32; DICTIONARY_COLUMNS.len()];
            let mut tenants = None;
            for (slot, (column, count, chunk)) in directory.dictionaries.iter().enumerate() {
                let name = format!("dictionary of column {}", column.name());
                if chunk.offset < footer.dictionary_offset || chunk.end() > dictionary_end {
                    return Err(Error::Corrupt {
                        path: path.clone(),
                        offset: chunk.offset,
                        reason: format!("{name}: lies outside the dictionary section"),
                    });
                }
                let dictionary =
                    decode_dictionary(decoder, bytes, segment_id, &path, *column, *count, chunk)?;
                counts[slot] = *count;
                if slot == 0 {
                    tenants = Some(dictionary);
                }
            }
            let dictionaries = Dictionaries::new(counts);
            if let Some(tenants) = tenants {
                dictionaries.load(0, tenants);
            }
            let tenant_count = u64::from(dictionaries.count(0));
            for block in &directory.blocks {
                if block.first_tenant_code > block.last_tenant_code
                    || block.last_tenant_code as u64 > tenant_count
                    || block.first_tenant_code == 0
                {
                    return Err(Error::Corrupt {
                        path: path.clone(),
                        offset: footer.directory.offset,
                        reason: format!(
                            "block directory: block at row {} has tenant codes {}..={} of {tenant_count}",
                            block.first_row, block.first_tenant_code, block.last_tenant_code
                        ),
                    });
                }
            }
            if directory.tenant_row_starts.len() as u64 != tenant_count + 1 {
                return Err(Error::Corrupt {
                    path: path.clone(),
                    offset: footer.directory.offset,
                    reason: format!(
                        "block directory: {} tenant row counts for {tenant_count} tenants",
                        directory.tenant_row_starts.len().saturating_sub(1)
                    ),
                });
            }

            for (column, chunk) in TEXT_DICTIONARY_COLUMNS.iter().zip(&directory.text_dictionaries) {
                if chunk.raw_len == 0 {
                    continue;
                }
                if chunk.offset < footer.dictionary_offset || chunk.end() > dictionary_end {
                    return Err(Error::Corrupt {
                        path: path.clone(),
                        offset: chunk.offset,
                        reason: format!(
                            "text dictionary of column {}: lies outside the dictionary section",
                            column.name()
                        ),
                    });
                }
                decode_text_dictionary(decoder, bytes, segment_id, &path, *column, chunk)?;
            }

            let filter_what = || "key filter".to_string();
            if footer.filter.codec != CODEC_RAW {
                return Err(corrupt_footer("key filter must be stored raw".into()));
            }
            let filter = ChunkDecoder::stored(bytes, &footer.filter, segment_id, &path, &filter_what)?;
            let filter_shape = bloom::parse(filter, &path, footer.filter.offset)?;

            let mut dictionary_chunks = [ChunkRef::default(); DICTIONARY_COLUMNS.len()];
            for (slot, (_, _, chunk)) in directory.dictionaries.iter().enumerate() {
                dictionary_chunks[slot] = *chunk;
            }
            Ok(Segment {
                meta: SegmentMeta {
                    segment_id,
                    rows: footer.row_count,
                    min_timestamp_us: footer.min_timestamp_us,
                    max_timestamp_us: footer.max_timestamp_us,
                    min_seq: footer.min_seq,
                    max_seq: footer.max_seq,
                    bytes: file_len,
                },
                footer,
                blocks: directory.blocks,
                chunks: directory.chunks,
                dictionaries: Arc::new(dictionaries),
                dictionary_chunks,
                text_dictionary_chunks: directory.text_dictionaries,
                text_dictionaries: Default::default(),
                tenant_row_starts: directory.tenant_row_starts,
                received_runs: directory.received_runs,
                filter_shape,
                path: path.clone(),
                data: Data::Owned(Vec::new()),
                dictionaries_used: AtomicU64::new(0),
            })
        })
        .map(|mut segment| {
            segment.data = data;
            segment
        })
    }

    /// The file's path (or the name given to [`Segment::from_bytes`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn meta(&self) -> &SegmentMeta {
        &self.meta
    }

    /// The format version the file was written in (1 or 2).
    pub fn format_version(&self) -> u32 {
        self.footer.version
    }

    /// Whether the blocks' chunks of text column `column` are compressed against a text
    /// dictionary of this segment (v2, `changes` and `details` only).
    pub fn has_text_dictionary(&self, column: Column) -> bool {
        text_dictionary_slot(column)
            .is_some_and(|slot| self.text_dictionary_chunks[slot].raw_len != 0)
    }

    /// The block directory, in row order.
    pub fn blocks(&self) -> &[BlockMeta] {
        &self.blocks
    }

    /// The segment dictionary of a dictionary column, decoded on first use and kept while the
    /// segment is open (or until [`Segment::release_dictionaries`]; the tenants' is decoded at
    /// open and always kept). `Ok(None)` for a column without one. An error names the file and
    /// offset when the dictionary cannot be decoded: it was checked at open, so the file
    /// changed since, and no read may go on as if the column's values were absent.
    ///
    /// ```no_run
    /// use auditlog_engine::segment::{Column, Segment};
    /// # fn main() -> auditlog_engine::Result<()> {
    /// let segment = Segment::open("data/segments/00000000000000000001.seg")?;
    /// if let Some(actions) = segment.dictionary(Column::Action)? {
    ///     println!("{} actions, login has code {:?}", actions.len(), actions.code_of("login"));
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn dictionary(&self, column: Column) -> Result<Option<&Dictionary>> {
        let Some(slot) = dictionary_slot(column) else {
            return Ok(None);
        };
        if slot != 0 {
            self.touch_dictionaries();
        }
        if self.dictionaries.loaded(slot).is_none() {
            with_decoder(&self.path, |decoder| self.load_dictionary(decoder, slot))?;
        }
        Ok(self.dictionaries.loaded(slot))
    }

    /// Drops the decoded dictionaries but the tenants' (reads decode them again): called once
    /// the seal or merge that wrote the segment has indexed it, so that a segment nobody reads
    /// costs no dictionary memory.
    pub fn release_dictionaries(&mut self) {
        self.dictionaries = Arc::new(self.dictionaries.tenants_only());
        self.text_dictionaries = Default::default();
    }

    /// Another instance of this open segment with no decoded dictionary but the tenants': the
    /// store swaps it in to give back the memory of dictionaries not used lately, while readers
    /// holding this instance keep theirs. The file is mapped again and nothing is checked again
    /// (open did).
    pub fn without_dictionaries(&self) -> Result<Segment> {
        let data = match &self.data {
            Data::Mapped(_) => {
                let file = File::open(&self.path).map_err(|e| Error::io(&self.path, e))?;
                Data::Mapped(map_file(&self.path, &file)?)
            }
            Data::Owned(bytes) => Data::Owned(bytes.clone()),
        };
        Ok(Segment {
            path: self.path.clone(),
            data,
            meta: self.meta,
            footer: self.footer,
            blocks: self.blocks.clone(),
            chunks: self.chunks.clone(),
            dictionaries: Arc::new(self.dictionaries.tenants_only()),
            dictionary_chunks: self.dictionary_chunks,
            text_dictionary_chunks: self.text_dictionary_chunks,
            text_dictionaries: Default::default(),
            tenant_row_starts: self.tenant_row_starts.clone(),
            received_runs: self.received_runs.clone(),
            filter_shape: self.filter_shape,
            dictionaries_used: AtomicU64::new(0),
        })
    }

    /// Memory held by the decoded dictionaries other than the tenants' (which stays loaded),
    /// text dictionaries included.
    pub fn dictionary_bytes(&self) -> u64 {
        let columns: u64 = (1..DICTIONARY_COLUMNS.len())
            .filter_map(|slot| self.dictionaries.loaded(slot))
            .map(|d| d.text_bytes() as u64 + 4 * d.len() as u64)
            .sum();
        let texts: u64 = self
            .text_dictionaries
            .iter()
            .filter_map(OnceLock::get)
            .map(|d| d.sizeof() as u64)
            .sum();
        columns + texts
    }

    /// The prepared text dictionary of `slot`, loaded on first use; `None` when the segment
    /// has none for that column.
    fn text_dictionary(
        &self,
        decoder: &mut ChunkDecoder,
        slot: usize,
    ) -> Result<Option<&DDict<'static>>> {
        let chunk = &self.text_dictionary_chunks[slot];
        if chunk.raw_len == 0 {
            return Ok(None);
        }
        if let Some(loaded) = self.text_dictionaries[slot].get() {
            return Ok(Some(loaded));
        }
        let column = TEXT_DICTIONARY_COLUMNS[slot];
        let raw = decode_text_dictionary(
            decoder,
            self.data.bytes(),
            self.meta.segment_id,
            &self.path,
            column,
            chunk,
        )?;
        let prepared = DDict::try_create(raw).ok_or_else(|| {
            // Allocation failed: the file was checked when `raw` was decoded.
            Error::io(
                &self.path,
                std::io::Error::other(format!(
                    "zstd could not prepare the text dictionary of column {}",
                    column.name()
                )),
            )
        })?;
        // Another thread may have loaded it meanwhile: either copy is the same.
        let _ = self.text_dictionaries[slot].set(prepared);
        Ok(self.text_dictionaries[slot].get())
    }

    /// When a read last needed this segment's dictionaries, on a clock shared by all segments
    /// (larger is more recent; 0: never since open).
    pub fn dictionaries_last_used(&self) -> u64 {
        self.dictionaries_used.load(Ordering::Relaxed)
    }

    fn touch_dictionaries(&self) {
        let tick = DICTIONARY_CLOCK.fetch_add(1, Ordering::Relaxed);
        self.dictionaries_used.store(tick, Ordering::Relaxed);
    }

    /// Whether the dictionary of `column` is decoded (tests).
    #[cfg(test)]
    pub(crate) fn dictionary_loaded(&self, column: Column) -> bool {
        dictionary_slot(column).is_some_and(|slot| self.dictionaries.loaded(slot).is_some())
    }

    /// Decodes the dictionary of `slot` unless it is loaded.
    fn load_dictionary(&self, decoder: &mut ChunkDecoder, slot: usize) -> Result<()> {
        if self.dictionaries.loaded(slot).is_some() {
            return Ok(());
        }
        let column = DICTIONARY_COLUMNS[slot];
        let dictionary = decode_dictionary(
            decoder,
            self.data.bytes(),
            self.meta.segment_id,
            &self.path,
            column,
            self.dictionaries.count(slot),
            &self.dictionary_chunks[slot],
        )?;
        self.dictionaries.load(slot, dictionary);
        Ok(())
    }

    /// Drops this process's mapping of the segment's pages, keeping them in the page cache
    /// (see [`crate::io::release_mapped_pages`]): called after the seal or merge that wrote
    /// the segment has read all of it to index it.
    pub fn release_pages(&self) {
        if let Data::Mapped(map) = &self.data {
            crate::io::release_mapped_pages(map);
        }
    }

    /// Decodes `columns` of block `block_index`, checking each chunk's checksum.
    ///
    /// # Panics
    /// When `block_index >= self.blocks().len()`.
    pub fn read_block(&self, block_index: usize, columns: Columns) -> Result<Block> {
        with_decoder(&self.path, |decoder| {
            self.decode_block(decoder, block_index, columns)
        })
    }

    fn decode_block(
        &self,
        decoder: &mut ChunkDecoder,
        block_index: usize,
        columns: Columns,
    ) -> Result<Block> {
        self.decode_block_rows(decoder, block_index, columns, 0..usize::MAX)
    }

    /// [`Segment::decode_block`] with the text columns decoded for `text_rows` only: the block
    /// must not leave this module unless `text_rows` covers it.
    fn decode_block_rows(
        &self,
        decoder: &mut ChunkDecoder,
        block_index: usize,
        columns: Columns,
        text_rows: Range<usize>,
    ) -> Result<Block> {
        let meta = &self.blocks[block_index];
        let columns = with_dependencies(columns, !self.received_runs.is_empty());
        let mut touched = false;
        for (slot, column) in DICTIONARY_COLUMNS.iter().enumerate() {
            if columns.contains(*column) {
                self.load_dictionary(decoder, slot)?;
                touched |= slot != 0;
            }
        }
        let mut text_dictionaries = [None; TEXT_DICTIONARY_COLUMNS.len()];
        for (slot, column) in TEXT_DICTIONARY_COLUMNS.iter().enumerate() {
            if columns.contains(*column) {
                text_dictionaries[slot] = self.text_dictionary(decoder, slot)?;
                touched |= text_dictionaries[slot].is_some();
            }
        }
        if touched {
            self.touch_dictionaries();
        }
        let source = BlockSource {
            path: &self.path,
            file: self.data.bytes(),
            segment_id: self.meta.segment_id,
            index: block_index,
            first_row: meta.first_row,
            rows: meta.rows as usize,
            chunks: &self.chunks[block_index],
            dictionaries: &self.dictionaries,
            text_dictionaries,
            received_runs: &self.received_runs,
        };
        decode_block(&source, decoder, columns, text_rows)
    }

    /// Block `block_index` with every column, its text columns (ids, changes, details)
    /// decoded only over `rows` (numbered within the block): what reads that materialize a
    /// few rows of a block use ([`Block::event_ref`] then works for the rows of that span).
    ///
    /// # Panics
    /// When `block_index >= self.blocks().len()`.
    pub fn read_block_rows(&self, block_index: usize, rows: Range<usize>) -> Result<Block> {
        let block_rows = self.blocks[block_index].rows as usize;
        let rows = rows.start.min(block_rows)..rows.end.min(block_rows);
        with_decoder(&self.path, |decoder| {
            self.decode_block_rows(decoder, block_index, Columns::ALL, rows)
        })
    }

    /// The events of rows `rows` (numbered within the block) of block `block_index`: what a page
    /// query builds once its filter columns picked the rows. Only those rows are materialized.
    ///
    /// # Panics
    /// When `block_index >= self.blocks().len()`.
    pub fn read_rows(&self, block_index: usize, rows: Range<usize>) -> Result<Vec<StoredEvent>> {
        let block = self.read_block_rows(block_index, rows.clone())?;
        let rows = rows.start.min(block.len())..rows.end.min(block.len());
        Ok(rows.map(|row| block.event(row)).collect())
    }

    /// The events of `rows` (numbered within the block, ascending) of block `block_index`, in
    /// that order: the text columns are decoded only from the first to the last of them, and
    /// only they are materialized.
    ///
    /// # Panics
    /// When `block_index >= self.blocks().len()` or a row is out of the block.
    pub fn read_rows_at(&self, block_index: usize, rows: &[usize]) -> Result<Vec<StoredEvent>> {
        let (Some(&first), Some(&last)) = (rows.iter().min(), rows.iter().max()) else {
            return Ok(Vec::new());
        };
        let block = self.read_block_rows(block_index, first..last + 1)?;
        Ok(rows.iter().map(|&row| block.event(row)).collect())
    }

    /// Every event, in (tenant, timestamp, seq) order.
    pub fn read_all(&self) -> Result<Vec<StoredEvent>> {
        with_decoder(&self.path, |decoder| {
            let mut events = Vec::with_capacity(self.meta.rows.min(1 << 24) as usize);
            for index in 0..self.blocks.len() {
                let block = self.decode_block(decoder, index, Columns::ALL)?;
                events.extend(block.events());
            }
            Ok(events)
        })
    }

    /// False when the segment certainly holds no event with key `(tenant, id)`; true when it
    /// may (about 1% false positives at 10 bits per key). Reads no rows.
    pub fn may_contain_key(&self, tenant: &str, id: &str) -> bool {
        self.may_contain_key_hash(bloom::key_hash(tenant, id))
    }

    /// [`Segment::may_contain_key`] for a hash already computed with [`super::key_hash`].
    pub fn may_contain_key_hash(&self, hash: u64) -> bool {
        let filter = usize::try_from(self.footer.filter.offset)
            .ok()
            .and_then(|start| {
                self.data
                    .bytes()
                    .get(start..start + self.footer.filter.stored_len as usize)
            })
            .unwrap_or_default();
        bloom::may_contain(filter, self.filter_shape, hash)
    }

    /// The `seq` of the stored event with idempotency key `(tenant, id)`, if this segment holds
    /// it: the filter first, then an exact check of the `id` column over the tenant's rows.
    pub fn find_key(&self, tenant: &str, id: &str) -> Result<Option<u64>> {
        Ok(self.find_keys(tenant, &[id])?.pop().flatten())
    }

    /// [`Segment::find_key`] for several ids of one tenant at once, each answer at the id's
    /// position: the ids the filter lets through are checked in one pass over the tenant's
    /// blocks (a batch's filter false positives of a large tenant would each decode all of its
    /// blocks otherwise).
    ///
    /// ```
    /// # use auditlog_engine::event::{Actor, Event, StoredEvent};
    /// # use auditlog_engine::segment::{encode_segment, EncodeOptions, Segment};
    /// let rows: Vec<StoredEvent> = (0..3)
    ///     .map(|i| StoredEvent {
    ///         seq: i + 1,
    ///         event: Event {
    ///             id: Some(format!("evt_{i}").into()),
    ///             tenant: "acct_1".into(),
    ///             actor: Actor { id: Some("u1".into()), ..Actor::default() },
    ///             action: "delete".into(),
    ///             ..Event::default()
    ///         },
    ///         ..StoredEvent::default()
    ///     })
    ///     .collect();
    /// let encoded = encode_segment(1, &rows, &EncodeOptions::default()).unwrap();
    /// let segment = Segment::from_bytes("example.seg", encoded.bytes).unwrap();
    /// let found = segment.find_keys("acct_1", &["evt_2", "evt_9", "evt_0"]).unwrap();
    /// assert_eq!(found, vec![Some(3), None, Some(1)]);
    /// ```
    pub fn find_keys(&self, tenant: &str, ids: &[&str]) -> Result<Vec<Option<u64>>> {
        let hashes: Vec<u64> = ids.iter().map(|id| bloom::key_hash(tenant, id)).collect();
        self.find_keys_hashed(tenant, ids, &hashes)
    }

    /// [`Segment::find_keys`] with each id's [`super::key_hash`] already computed (a batch is
    /// checked against every segment of its partition: the hashes are computed once).
    pub fn find_keys_hashed(
        &self,
        tenant: &str,
        ids: &[&str],
        hashes: &[u64],
    ) -> Result<Vec<Option<u64>>> {
        let mut found = vec![None; ids.len()];
        // A segment without the tenant's rows is ruled out before any filter probe.
        let Some(rows) = self.tenant_rows(tenant) else {
            return Ok(found);
        };
        let mut wanted: std::collections::HashMap<&str, Vec<usize>> = Default::default();
        for (position, (id, &hash)) in ids.iter().zip(hashes).enumerate() {
            if self.may_contain_key_hash(hash) {
                wanted.entry(id).or_default().push(position);
            }
        }
        if wanted.is_empty() {
            return Ok(found);
        }
        with_decoder(&self.path, |decoder| {
            for index in self.blocks_for_rows(rows.clone()) {
                let block_rows = self.blocks[index].row_range();
                let start = (rows.start.max(block_rows.start) - block_rows.start) as usize;
                let end = (rows.end.min(block_rows.end) - block_rows.start) as usize;
                // Ids of the tenant's rows only: a small tenant has a few rows of a block of
                // thousands, and a Bloom false positive lands here for every segment.
                let block =
                    self.decode_block_rows(decoder, index, Column::Id | Column::Seq, start..end)?;
                for row in start..end {
                    let Some(positions) =
                        block.str(Column::Id, row).and_then(|id| wanted.remove(id))
                    else {
                        continue;
                    };
                    for position in positions {
                        found[position] = Some(block.seqs()[row]);
                    }
                    if wanted.is_empty() {
                        return Ok(());
                    }
                }
            }
            Ok(())
        })?;
        Ok(found)
    }

    /// The event with this `seq`, if the segment holds it. Blocks whose seq range excludes it are
    /// skipped; the `seq` column of the others is decoded, and the whole block only on a hit.
    pub fn find_seq(&self, seq: u64) -> Result<Option<StoredEvent>> {
        if self.meta.rows == 0 || seq < self.meta.min_seq || seq > self.meta.max_seq {
            return Ok(None);
        }
        with_decoder(&self.path, |decoder| {
            for (index, meta) in self.blocks.iter().enumerate() {
                if seq < meta.min_seq || seq > meta.max_seq {
                    continue;
                }
                let seqs = self.decode_block(decoder, index, Columns::from(Column::Seq))?;
                if let Some(row) = seqs.seqs().iter().position(|s| *s == seq) {
                    let block = self.decode_block(decoder, index, Columns::ALL)?;
                    return Ok(Some(block.event(row)));
                }
            }
            Ok(None)
        })
    }

    /// Appends to `out` every event with `from <= seq < to`, in segment order (not seq order).
    pub fn collect_seq_range(&self, from: u64, to: u64, out: &mut Vec<StoredEvent>) -> Result<()> {
        self.collect_seq_range_in(from, to, None, out)
    }

    /// [`Segment::collect_seq_range`] of the rows in `rows` only (segment row ranges, as
    /// [`Segment::tenant_rows`] gives them; `None`: every row): blocks outside them are not
    /// decoded at all.
    pub fn collect_seq_range_in(
        &self,
        from: u64,
        to: u64,
        rows: Option<&[Range<u64>]>,
        out: &mut Vec<StoredEvent>,
    ) -> Result<()> {
        self.visit_seq_range(from, to, rows, |decoder, index, wanted| {
            let block = self.decode_block(decoder, index, Columns::ALL)?;
            out.extend(wanted.iter().map(|&(row, _)| block.event(row)));
            Ok(())
        })
    }

    /// The seqs of [`Segment::collect_seq_range_in`]'s events, decoding only the `seq` column.
    pub fn seqs_in(
        &self,
        from: u64,
        to: u64,
        rows: Option<&[Range<u64>]>,
        out: &mut Vec<u64>,
    ) -> Result<()> {
        self.visit_seq_range(from, to, rows, |_, _, wanted| {
            out.extend(wanted.iter().map(|&(_, seq)| seq));
            Ok(())
        })
    }

    /// Calls `visit` with each block that holds rows with `from <= seq < to` within `rows`
    /// (`None`: every row), and those rows (index in the block, seq), having decoded only the
    /// blocks' `seq` column.
    fn visit_seq_range(
        &self,
        from: u64,
        to: u64,
        rows: Option<&[Range<u64>]>,
        mut visit: impl FnMut(&mut ChunkDecoder, usize, &[(usize, u64)]) -> Result<()>,
    ) -> Result<()> {
        if self.meta.rows == 0 || from >= to || to <= self.meta.min_seq || from > self.meta.max_seq
        {
            return Ok(());
        }
        let in_rows = |row: u64| rows.is_none_or(|ranges| ranges.iter().any(|r| r.contains(&row)));
        with_decoder(&self.path, |decoder| {
            let mut wanted = Vec::new();
            for (index, meta) in self.blocks.iter().enumerate() {
                if to <= meta.min_seq || from > meta.max_seq {
                    continue;
                }
                let block_rows = meta.row_range();
                if let Some(ranges) = rows {
                    if !ranges
                        .iter()
                        .any(|r| r.start < block_rows.end && block_rows.start < r.end)
                    {
                        continue;
                    }
                }
                let seqs = self.decode_block(decoder, index, Columns::from(Column::Seq))?;
                wanted.clear();
                for (row, &seq) in seqs.seqs().iter().enumerate() {
                    if (from..to).contains(&seq) && in_rows(block_rows.start + row as u64) {
                        wanted.push((row, seq));
                    }
                }
                if !wanted.is_empty() {
                    visit(decoder, index, &wanted)?;
                }
            }
            Ok(())
        })
    }

    /// Segment row numbers of `tenant`'s events (contiguous: rows are tenant-sorted), `None` when
    /// the segment holds none.
    pub fn tenant_rows(&self, tenant: &str) -> Option<Range<u64>> {
        // The tenants' dictionary is decoded at open and never released.
        self.tenant_code_rows(self.dictionaries.get(Column::Tenant)?.code_of(tenant)?)
    }

    /// [`Segment::tenant_rows`] by tenant dictionary code.
    pub fn tenant_code_rows(&self, code: u32) -> Option<Range<u64>> {
        let end = *self.tenant_row_starts.get(code as usize)?;
        let start = *self
            .tenant_row_starts
            .get((code as usize).checked_sub(1)?)?;
        (start < end).then_some(start..end)
    }

    /// Indexes of the blocks that hold any of `rows`.
    pub fn blocks_for_rows(&self, rows: Range<u64>) -> Range<usize> {
        if rows.start >= rows.end {
            return 0..0;
        }
        let first = self
            .blocks
            .partition_point(|block| block.row_range().end <= rows.start);
        let end = self
            .blocks
            .partition_point(|block| block.first_row < rows.end);
        first..end.max(first)
    }

    /// Checks every chunk's checksum in file order (blocks, dictionaries, key filter, directory)
    /// and then decodes every block; the first problem is returned with the file and offset.
    pub fn verify(&self) -> Result<()> {
        let bytes = self.data.bytes();
        let segment_id = self.meta.segment_id;
        for (index, chunks) in self.chunks.iter().enumerate() {
            for column in Column::ALL {
                let what = || format!("block {index} column {}", column.name());
                ChunkDecoder::stored(
                    bytes,
                    &chunks[column.index()],
                    segment_id,
                    &self.path,
                    &what,
                )?;
            }
        }
        for (column, chunk) in DICTIONARY_COLUMNS.iter().zip(&self.dictionary_chunks) {
            let what = || format!("dictionary of column {}", column.name());
            ChunkDecoder::stored(bytes, chunk, segment_id, &self.path, &what)?;
        }
        for (column, chunk) in TEXT_DICTIONARY_COLUMNS
            .iter()
            .zip(&self.text_dictionary_chunks)
        {
            if chunk.raw_len != 0 {
                let what = || format!("text dictionary of column {}", column.name());
                ChunkDecoder::stored(bytes, chunk, segment_id, &self.path, &what)?;
            }
        }
        let what = || "key filter".to_string();
        ChunkDecoder::stored(bytes, &self.footer.filter, segment_id, &self.path, &what)?;
        let what = || "block directory".to_string();
        ChunkDecoder::stored(bytes, &self.footer.directory, segment_id, &self.path, &what)?;
        with_decoder(&self.path, |decoder| {
            for index in 0..self.blocks.len() {
                self.decode_block(decoder, index, Columns::ALL)?;
            }
            Ok(())
        })
    }

    /// Stored (compressed) bytes of `column` over all blocks, excluding its dictionary.
    pub fn column_stored_bytes(&self, column: Column) -> u64 {
        self.chunks
            .iter()
            .map(|chunks| u64::from(chunks[column.index()].stored_len))
            .sum()
    }

    /// Stored bytes of `column`'s dictionary, text dictionaries included (0 for columns
    /// without one).
    pub fn dictionary_stored_bytes(&self, column: Column) -> u64 {
        let values = dictionary_slot(column)
            .map(|slot| u64::from(self.dictionary_chunks[slot].stored_len))
            .unwrap_or(0);
        let text = text_dictionary_slot(column)
            .map(|slot| u64::from(self.text_dictionary_chunks[slot].stored_len))
            .unwrap_or(0);
        values + text
    }

    /// Stored bytes of the key filter.
    pub fn filter_stored_bytes(&self) -> u64 {
        u64::from(self.footer.filter.stored_len)
    }

    /// Stored bytes of the block directory.
    pub fn directory_stored_bytes(&self) -> u64 {
        u64::from(self.footer.directory.stored_len)
    }
}

/// The parsed block directory.
struct Directory {
    dictionaries: Vec<(Column, u32, ChunkRef)>,
    text_dictionaries: [ChunkRef; TEXT_DICTIONARY_COLUMNS.len()],
    tenant_row_starts: Vec<u64>,
    received_runs: Vec<(u64, i64)>,
    blocks: Vec<BlockMeta>,
    chunks: Vec<[ChunkRef; COLUMN_COUNT]>,
}

/// Maps a segment file for reading.
fn map_file(path: &Path, file: &File) -> Result<memmap2::Mmap> {
    // SAFETY: sealed segments are immutable once written: nothing writes or truncates a
    // published file (retention unlinks whole files, which keeps an existing mapping valid).
    let map = unsafe { memmap2::Mmap::map(file) }.map_err(|e| Error::io(path, e))?;
    // Reads touch a few chunks at a time: no read-ahead of the whole file and no huge pages, so
    // resident memory follows what queries use (advice only; failures ignored).
    #[cfg(target_os = "linux")]
    {
        let _ = map.advise(memmap2::Advice::Random);
        let _ = map.advise(memmap2::Advice::NoHugePage);
    }
    Ok(map)
}

/// Reads, checks and decompresses the text dictionary of `column` stored in `chunk`.
fn decode_text_dictionary<'d>(
    decoder: &'d mut ChunkDecoder,
    file: &'d [u8],
    segment_id: u64,
    path: &Path,
    column: Column,
    chunk: &ChunkRef,
) -> Result<&'d [u8]> {
    let name = format!("text dictionary of column {}", column.name());
    let what = || name.clone();
    let stored = ChunkDecoder::stored(file, chunk, segment_id, path, &what)?;
    let raw = decoder.raw(stored, chunk, path, &what)?;
    // A text chunk's layout byte first: zstd would take bytes starting with its dictionary
    // magic for a formatted dictionary, which the format does not allow.
    if raw
        .first()
        .is_none_or(|layout| *layout > TEXT_LAYOUT_PACKED)
    {
        return Err(Error::Corrupt {
            path: path.to_path_buf(),
            offset: chunk.offset,
            reason: format!("{name}: does not start with a text layout byte"),
        });
    }
    Ok(raw)
}

/// Reads, checks and decodes the dictionary of `column` stored in `chunk`.
fn decode_dictionary(
    decoder: &mut ChunkDecoder,
    file: &[u8],
    segment_id: u64,
    path: &Path,
    column: Column,
    count: u32,
    chunk: &ChunkRef,
) -> Result<Dictionary> {
    let name = format!("dictionary of column {}", column.name());
    let what = || name.clone();
    let stored = ChunkDecoder::stored(file, chunk, segment_id, path, &what)?;
    let raw = decoder.raw(stored, chunk, path, &what)?;
    Dictionary::decode(raw, count, path, chunk.offset, &name)
}

fn parse_directory(raw: &[u8], path: &Path, footer: &Footer) -> Result<Directory> {
    let mut reader = Reader::new(raw, path, footer.directory.offset, "block directory");
    let column_count = reader.u32()?;
    if column_count as usize != COLUMN_COUNT {
        return Err(reader.corrupt(format!("{column_count} columns, expected {COLUMN_COUNT}")));
    }
    let dictionary_count = reader.u32()?;
    if dictionary_count as usize != DICTIONARY_COLUMNS.len() {
        return Err(reader.corrupt(format!("{dictionary_count} dictionaries")));
    }
    let mut dictionaries = Vec::with_capacity(DICTIONARY_COLUMNS.len());
    for expected in DICTIONARY_COLUMNS {
        let column = reader.u8()?;
        if column != expected as u8 {
            return Err(reader.corrupt(format!(
                "dictionary of column {column} where column {} was expected",
                expected as u8
            )));
        }
        let count = reader.u32()?;
        let chunk = read_chunk_ref(&mut reader, false)?;
        dictionaries.push((expected, count, chunk));
    }

    // v2: the text dictionaries (a chunk ref of zeros: none).
    let mut text_dictionaries = [ChunkRef::default(); TEXT_DICTIONARY_COLUMNS.len()];
    if footer.version >= 2 {
        let count = reader.u32()?;
        if count as usize != TEXT_DICTIONARY_COLUMNS.len() {
            return Err(reader.corrupt(format!("{count} text dictionaries")));
        }
        for (slot, expected) in TEXT_DICTIONARY_COLUMNS.into_iter().enumerate() {
            let column = reader.u8()?;
            if column != expected as u8 {
                return Err(reader.corrupt(format!(
                    "text dictionary of column {column} where column {} was expected",
                    expected as u8
                )));
            }
            let chunk = read_chunk_ref(&mut reader, false)?;
            if chunk.raw_len == 0 && chunk != ChunkRef::default() {
                return Err(reader.corrupt(format!(
                    "empty text dictionary of column {} with a non-zero chunk ref",
                    expected.name()
                )));
            }
            text_dictionaries[slot] = chunk;
        }
    }

    let tenant_count = reader.u32()?;
    if tenant_count as usize > reader.remaining() {
        return Err(reader.corrupt(format!("{tenant_count} tenants cannot fit")));
    }
    let mut tenant_row_starts = Vec::with_capacity(tenant_count as usize + 1);
    tenant_row_starts.push(0u64);
    let mut total = 0u64;
    for _ in 0..tenant_count {
        total = total.saturating_add(reader.varint()?);
        tenant_row_starts.push(total);
    }
    if total != footer.row_count {
        return Err(reader.corrupt(format!(
            "tenant row counts add up to {total}, the footer says {}",
            footer.row_count
        )));
    }

    let run_count = reader.u32()?;
    if run_count as usize > reader.remaining() / 2 || u64::from(run_count) > footer.row_count {
        return Err(reader.corrupt(format!("{run_count} received runs cannot fit")));
    }
    let mut received_runs: Vec<(u64, i64)> = Vec::with_capacity(run_count as usize);
    let mut previous = (0u64, 0i64);
    for index in 0..run_count {
        let seq = previous.0.wrapping_add(reader.varint()?);
        let received = previous.1.wrapping_add(zigzag_decode(reader.varint()?));
        if index > 0 && seq <= previous.0 {
            return Err(reader.corrupt(format!("received run {index} does not ascend in seq")));
        }
        previous = (seq, received);
        received_runs.push(previous);
    }

    let block_count = reader.u32()?;
    if block_count != footer.block_count {
        return Err(reader.corrupt(format!(
            "{block_count} blocks, the footer says {}",
            footer.block_count
        )));
    }
    let entry_len = 4 + 8 * 5 + 4 + 4 + COLUMN_COUNT * super::format::CHUNK_REF_LEN;
    if (block_count as usize).saturating_mul(entry_len) != reader.remaining() {
        return Err(reader.corrupt(format!(
            "{block_count} blocks need {} bytes, {} remain",
            (block_count as usize).saturating_mul(entry_len),
            reader.remaining()
        )));
    }
    let mut blocks = Vec::with_capacity(block_count as usize);
    let mut chunks = Vec::with_capacity(block_count as usize);
    let mut next_row = 0u64;
    for index in 0..block_count {
        let block = BlockMeta {
            rows: reader.u32()?,
            first_row: reader.u64()?,
            min_timestamp_us: reader.i64()?,
            max_timestamp_us: reader.i64()?,
            min_seq: reader.u64()?,
            max_seq: reader.u64()?,
            first_tenant_code: reader.u32()?,
            last_tenant_code: reader.u32()?,
        };
        // At most what an encoder writes: every decode sizes its buffers by a block's rows.
        if block.rows as usize > super::encoder::BLOCK_ROWS_MAX {
            return Err(reader.corrupt(format!(
                "block {index} has {} rows, more than {} (the most a block holds)",
                block.rows,
                super::encoder::BLOCK_ROWS_MAX
            )));
        }
        if block.rows == 0 || block.first_row != next_row {
            return Err(reader.corrupt(format!(
                "block {index} starts at row {} with {} rows, expected row {next_row}",
                block.first_row, block.rows
            )));
        }
        if block.min_timestamp_us > block.max_timestamp_us || block.min_seq > block.max_seq {
            return Err(reader.corrupt(format!("block {index}: min is above max")));
        }
        next_row += u64::from(block.rows);
        let mut refs = [ChunkRef::default(); COLUMN_COUNT];
        for (column, chunk) in Column::ALL.into_iter().zip(refs.iter_mut()) {
            // Only a text column with a text dictionary may be compressed against it.
            let has_dictionary = text_dictionary_slot(column)
                .is_some_and(|slot| text_dictionaries[slot].raw_len != 0);
            *chunk = read_chunk_ref(&mut reader, has_dictionary)?;
            if chunk.offset < HEADER_LEN as u64 || chunk.end() > footer.dictionary_offset {
                return Err(reader.corrupt(format!(
                    "block {index}: a chunk at offset {} lies outside the block section",
                    chunk.offset
                )));
            }
        }
        blocks.push(block);
        chunks.push(refs);
    }
    if next_row != footer.row_count {
        return Err(reader.corrupt(format!(
            "blocks hold {next_row} rows, the footer says {}",
            footer.row_count
        )));
    }
    Ok(Directory {
        dictionaries,
        text_dictionaries,
        tenant_row_starts,
        received_runs,
        blocks,
        chunks,
    })
}

/// Reads a chunk ref and checks its codec and size; `dictionary_allowed`: the chunk's column
/// has a text dictionary, so the codecs that use one are valid.
fn read_chunk_ref(reader: &mut Reader<'_>, dictionary_allowed: bool) -> Result<ChunkRef> {
    let chunk = ChunkRef::read(reader)?;
    if !matches!(
        chunk.codec,
        CODEC_RAW | CODEC_ZSTD | CODEC_ZSTD_RAW_TAIL | CODEC_ZSTD_DICT | CODEC_ZSTD_DICT_RAW_TAIL
    ) {
        return Err(reader.corrupt(format!("unknown codec {}", chunk.codec)));
    }
    if codec_uses_dictionary(chunk.codec) && !dictionary_allowed {
        return Err(reader.corrupt(format!(
            "codec {} needs a text dictionary this chunk's column does not have",
            chunk.codec
        )));
    }
    if chunk.raw_len > CHUNK_RAW_BYTES_MAX {
        return Err(reader.corrupt(format!("chunk of {} decoded bytes", chunk.raw_len)));
    }
    Ok(chunk)
}
