//! A process-wide cache of full-text row checks, per block of an indexed segment and query
//! text: which rows were checked, and which of them match.
//!
//! Checking a row's text means decoding its block's text columns and scanning them; for a
//! large tenant that is most of a text query's time, and the page asks several questions of
//! the same text at once (rows, count, each facet, the histogram), each with other filters.
//! The check does not depend on those filters, so the first question to reach a block checks
//! every row of its tenant run there and the others reuse the answer. An entry is locked
//! while it is being filled, so that questions running at the same time wait for one check
//! instead of each decoding the block.
//!
//! Entries are keyed by the text (the query's terms, canonically written), then by the
//! [`SegmentIndex`](crate::SegmentIndex) instance and the block number. At most [`TEXTS_MAX`]
//! texts are kept (the least recently used go first), and at most [`BLOCKS_MAX`] entries over
//! all texts: past it the least recently used quarter goes. Each entry is two bitsets of the
//! block's rows (about 1 KB for a block of 4,096 rows: ~40 MB at most). Entries of segment
//! instances that are gone (merged, expired, their index rebuilt) are never used again and go
//! that way too.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;

/// Query texts whose checks are kept.
pub const TEXTS_MAX: usize = 16;

/// Block entries kept over all texts.
pub const BLOCKS_MAX: usize = 32_768;

/// The rows of one block checked against one text, and those that matched.
#[derive(Debug)]
pub(crate) struct BlockChecks {
    checked: Vec<u64>,
    matched: Vec<u64>,
}

impl BlockChecks {
    fn new(rows: usize) -> BlockChecks {
        BlockChecks {
            checked: vec![0; rows.div_ceil(64)],
            matched: vec![0; rows.div_ceil(64)],
        }
    }

    fn bit(bits: &[u64], row: usize) -> bool {
        bits.get(row / 64)
            .is_some_and(|word| word >> (row % 64) & 1 == 1)
    }

    pub fn is_checked(&self, row: usize) -> bool {
        Self::bit(&self.checked, row)
    }

    /// Whether `row` matched; false for a row not checked.
    pub fn matches(&self, row: usize) -> bool {
        Self::bit(&self.matched, row)
    }

    /// Records the check of `row`.
    pub fn record(&mut self, row: usize, matches: bool) {
        let (word, bit) = (row / 64, 1u64 << (row % 64));
        if let Some(checked) = self.checked.get_mut(word) {
            *checked |= bit;
            if matches {
                self.matched[word] |= bit;
            }
        }
    }
}

type Entry = Arc<Mutex<BlockChecks>>;

#[derive(Default)]
struct TextEntries {
    /// (instance, block) -> the entry and when it was last asked for.
    blocks: HashMap<(u64, usize), (Entry, u64)>,
    last_used: u64,
}

#[derive(Default)]
struct Cache {
    texts: HashMap<Arc<str>, TextEntries>,
    clock: u64,
    /// Block entries over all texts.
    blocks: usize,
}

impl Cache {
    /// Drops the least recently used quarter of the block entries (and texts left without any).
    fn sweep(&mut self) {
        let mut stamps: Vec<u64> = self
            .texts
            .values()
            .flat_map(|entries| entries.blocks.values().map(|&(_, used)| used))
            .collect();
        if stamps.is_empty() {
            return;
        }
        let quarter = stamps.len() / 4;
        let (_, &mut cutoff, _) = stamps.select_nth_unstable(quarter);
        for entries in self.texts.values_mut() {
            entries.blocks.retain(|_, &mut (_, used)| used >= cutoff);
        }
        self.texts.retain(|_, entries| !entries.blocks.is_empty());
        self.blocks = self.texts.values().map(|e| e.blocks.len()).sum();
    }
}

static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(|| Mutex::new(Cache::default()));

/// The checks of block `block` (of `rows` rows) of the segment instance `instance` against
/// `text`, created empty when there are none. Lock it to read or fill it.
pub(crate) fn entry(text: &str, instance: u64, block: usize, rows: usize) -> Entry {
    let mut cache = CACHE.lock();
    cache.clock += 1;
    let clock = cache.clock;
    if !cache.texts.contains_key(text) {
        if cache.texts.len() >= TEXTS_MAX {
            let oldest = cache
                .texts
                .iter()
                .min_by_key(|(_, entries)| entries.last_used)
                .map(|(text, _)| Arc::clone(text));
            if let Some(oldest) = oldest {
                if let Some(gone) = cache.texts.remove(&oldest) {
                    cache.blocks -= gone.blocks.len();
                }
            }
        }
        cache.texts.insert(Arc::from(text), TextEntries::default());
    }
    let entries = cache.texts.get_mut(text).expect("inserted above");
    entries.last_used = clock;
    let mut added = false;
    let slot = entries.blocks.entry((instance, block)).or_insert_with(|| {
        added = true;
        (Arc::new(Mutex::new(BlockChecks::new(rows))), clock)
    });
    slot.1 = clock;
    let found = Arc::clone(&slot.0);
    if added {
        cache.blocks += 1;
        if cache.blocks > BLOCKS_MAX {
            // The entry just asked for is the most recent: it stays.
            cache.sweep();
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cache is process-wide: its tests run one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    #[test]
    fn checks_are_shared_per_text_and_block_and_old_texts_go() {
        let _serial = SERIAL.lock();
        let first = entry("t:shared-a", 1, 3, 100);
        first.lock().record(70, true);
        first.lock().record(71, false);
        let again = entry("t:shared-a", 1, 3, 100);
        let checks = again.lock();
        assert!(checks.is_checked(70) && checks.matches(70));
        assert!(checks.is_checked(71) && !checks.matches(71));
        assert!(!checks.is_checked(72) && !checks.matches(72));
        drop(checks);
        assert!(!entry("t:shared-a", 1, 4, 100).lock().is_checked(70));
        assert!(!entry("t:shared-b", 1, 3, 100).lock().is_checked(70));
        for n in 0..TEXTS_MAX {
            entry(&format!("t:other-{n}"), 1, 3, 100);
        }
        assert!(!entry("t:shared-a", 1, 3, 100).lock().is_checked(70));
    }

    /// Entries of one text do not pile up: those of segment instances no longer asked for
    /// (merged, expired) go once the cache holds `BLOCKS_MAX`, the recent ones stay.
    #[test]
    fn block_entries_stay_within_their_bound() {
        let _serial = SERIAL.lock();
        let recent = entry("t:bounded", u64::MAX, 0, 100);
        recent.lock().record(5, true);
        for instance in 0..(BLOCKS_MAX as u64 + 1_000) {
            entry("t:bounded", instance, 0, 64);
            if instance % 1_000 == 0 {
                // Asked for again now and then: stays among the recent.
                entry("t:bounded", u64::MAX, 0, 100);
            }
        }
        let cache = CACHE.lock();
        assert!(cache.blocks <= BLOCKS_MAX, "{}", cache.blocks);
        let counted: usize = cache.texts.values().map(|e| e.blocks.len()).sum();
        assert_eq!(counted, cache.blocks);
        drop(cache);
        assert!(entry("t:bounded", u64::MAX, 0, 100).lock().matches(5));
    }
}
