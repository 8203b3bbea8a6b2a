//! A process-wide cache of whole decoded blocks of indexed segments, so that the blocks a page
//! shows (the newest of a tenant, usually) are decompressed once, not at every query.
//!
//! Entries are keyed by the [`SegmentIndex`](crate::SegmentIndex)'s instance number (unique
//! for the life of the process, so a merged-away segment's blocks are never confused with a new
//! one's), the block number and the set of columns decoded. A request is served by an entry of
//! exactly its columns or by the whole block. The cache holds at most [`CACHE_BYTES`] of
//! estimated decoded size; past it, the least recently used entries go.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use auditlog_engine::segment::{Block, Column, Columns, Segment};
use auditlog_engine::Result;
use parking_lot::Mutex;

/// Estimated decoded bytes the cache may hold.
pub const CACHE_BYTES: u64 = 128 << 20;

static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

/// A number no other segment instance of this process has.
pub(crate) fn new_instance() -> u64 {
    NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed)
}

struct Entry {
    block: Arc<Block>,
    bytes: u64,
    last_used: u64,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<(u64, usize, Columns), Entry>,
    bytes: u64,
    clock: u64,
    hits: u64,
    misses: u64,
}

static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(|| Mutex::new(Cache::default()));

/// Hits and misses since the process started.
pub fn stats() -> (u64, u64) {
    let cache = CACHE.lock();
    (cache.hits, cache.misses)
}

fn estimated_bytes(block: &Block) -> u64 {
    let rows = block.len() as u64;
    let columns = block.columns();
    let mut text = 0u64;
    for column in [Column::Details, Column::Changes] {
        if columns.contains(column) {
            for row in 0..block.len() {
                text += block.str(column, row).map_or(0, |s| s.len() as u64);
            }
        }
    }
    // Numbers and codes: about 8 bytes per row and column; text as its length.
    rows * 8 * columns.iter().count() as u64 + text
}

/// The cached block with `columns` (or the whole block), if present.
pub(crate) fn get(instance: u64, block_index: usize, columns: Columns) -> Option<Arc<Block>> {
    let mut cache = CACHE.lock();
    cache.clock += 1;
    let clock = cache.clock;
    let mut found = None;
    for key in [
        (instance, block_index, columns),
        (instance, block_index, Columns::ALL),
    ] {
        if let Some(entry) = cache.entries.get_mut(&key) {
            entry.last_used = clock;
            found = Some(Arc::clone(&entry.block));
            break;
        }
    }
    if found.is_some() {
        cache.hits += 1;
    }
    found
}

/// The block with `columns`, from the cache or decoded (and then cached).
pub(crate) fn read(
    instance: u64,
    segment: &Segment,
    block_index: usize,
    columns: Columns,
) -> Result<Arc<Block>> {
    if let Some(block) = get(instance, block_index, columns) {
        return Ok(block);
    }
    let block = Arc::new(segment.read_block(block_index, columns)?);
    let bytes = estimated_bytes(&block);
    let mut cache = CACHE.lock();
    cache.misses += 1;
    if bytes > CACHE_BYTES / 8 {
        return Ok(block);
    }
    cache.clock += 1;
    let clock = cache.clock;
    if let Some(old) = cache.entries.insert(
        (instance, block_index, columns),
        Entry {
            block: Arc::clone(&block),
            bytes,
            last_used: clock,
        },
    ) {
        cache.bytes -= old.bytes;
    }
    cache.bytes += bytes;
    if cache.bytes > CACHE_BYTES {
        // Evict the least recently used quarter of the entries (amortizes the sort).
        let mut by_age: Vec<(u64, (u64, usize, Columns))> = cache
            .entries
            .iter()
            .map(|(key, entry)| (entry.last_used, *key))
            .collect();
        by_age.sort_unstable_by_key(|(age, _)| *age);
        let evict = (by_age.len() / 4).max(1);
        for (_, key) in by_age.into_iter().take(evict) {
            if let Some(entry) = cache.entries.remove(&key) {
                cache.bytes -= entry.bytes;
            }
        }
    }
    Ok(block)
}

/// The block with `columns`, from the cache or decoded, without caching it (for scans that read
/// many blocks once: they would evict what pages reuse).
pub(crate) fn read_uncached(
    instance: u64,
    segment: &Segment,
    block_index: usize,
    columns: Columns,
) -> Result<Arc<Block>> {
    if let Some(block) = get(instance, block_index, columns) {
        return Ok(block);
    }
    Ok(Arc::new(segment.read_block(block_index, columns)?))
}

/// The whole block (every column), from the cache or decoded.
pub(crate) fn whole(instance: u64, segment: &Segment, block_index: usize) -> Result<Arc<Block>> {
    read(instance, segment, block_index, Columns::ALL)
}
