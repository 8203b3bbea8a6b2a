//! A process-wide cache of facet counts per sealed segment, like a search engine's shard
//! request cache: a sealed segment never changes, so the counts of a field among its rows that
//! match a question stay true for the life of the segment instance.
//!
//! The page asks the same facets again and again as its reader moves between views (back to
//! "all actions", the search cleared); for the largest tenant of a 10M-event store, counting
//! the actor of 1.2M rows is ~30 ms a time, most of a view's server time. Only a segment that
//! lies wholly inside the query's time range is cached (its answer then does not depend on
//! the range's bounds, so "last 30 days" asked a minute later still hits on every day but the
//! oldest); the tail is always counted afresh.
//!
//! Entries are keyed by the [`SegmentIndex`](crate::SegmentIndex) instance (unique for the
//! life of the process, so a merged-away segment's counts are never used for a new one), the
//! field, the question (the query's filters and text, written canonically) and the exact
//! tenant codes read in the segment, so that a reader of tenant A can never be answered with
//! a count that holds B's rows. The cache holds at most [`CACHE_BYTES`] of keys and counts;
//! past it, the least recently used entries go.
//!
//! ```
//! use auditlog_index::facet_cache::CACHE_BYTES;
//! assert!(CACHE_BYTES >= 1 << 20);
//! ```

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;

use crate::query::Field;

/// Bytes of keys and counts the cache may hold.
pub const CACHE_BYTES: usize = 16 << 20;

/// What a segment's facet counts depend on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub instance: u64,
    pub field: Field,
    /// The query's filters and text, written canonically.
    pub question: Arc<str>,
    /// Dictionary codes of the tenants read in the segment, ascending.
    pub tenant_codes: Vec<u32>,
}

impl Key {
    fn bytes(&self) -> usize {
        std::mem::size_of::<Key>() + self.question.len() + self.tenant_codes.len() * 4
    }
}

/// Non-zero counts: (slot of the field's column, code, count).
pub(crate) type Counts = Arc<Vec<(u8, u32, u64)>>;

struct Entry {
    counts: Counts,
    bytes: usize,
    last_used: u64,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<Key, Entry>,
    bytes: usize,
    clock: u64,
}

static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(|| Mutex::new(Cache::default()));

/// The counts recorded for `key`, if any.
pub(crate) fn get(key: &Key) -> Option<Counts> {
    let mut cache = CACHE.lock();
    cache.clock += 1;
    let clock = cache.clock;
    let entry = cache.entries.get_mut(key)?;
    entry.last_used = clock;
    Some(Arc::clone(&entry.counts))
}

/// Records the counts of `key`, then evicts the least recently used entries past
/// [`CACHE_BYTES`].
pub(crate) fn insert(key: Key, counts: Counts) {
    let bytes = key.bytes() + counts.len() * std::mem::size_of::<(u8, u32, u64)>();
    if bytes > CACHE_BYTES / 4 {
        return;
    }
    let mut cache = CACHE.lock();
    cache.clock += 1;
    let last_used = cache.clock;
    let entry = Entry {
        counts,
        bytes,
        last_used,
    };
    if let Some(old) = cache.entries.insert(key, entry) {
        cache.bytes -= old.bytes;
    }
    cache.bytes += bytes;
    if cache.bytes > CACHE_BYTES {
        // Evict down to three quarters, oldest first (one sort per eviction round).
        let mut ages: Vec<(u64, Key)> = cache
            .entries
            .iter()
            .map(|(key, entry)| (entry.last_used, key.clone()))
            .collect();
        ages.sort_unstable_by_key(|(last_used, _)| *last_used);
        for (_, key) in ages {
            if cache.bytes <= CACHE_BYTES / 4 * 3 {
                break;
            }
            if let Some(old) = cache.entries.remove(&key) {
                cache.bytes -= old.bytes;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(instance: u64, tenants: Vec<u32>) -> Key {
        Key {
            instance,
            field: Field::Action,
            question: Arc::from("[]"),
            tenant_codes: tenants,
        }
    }

    #[test]
    fn an_entry_is_found_only_by_its_exact_key() {
        insert(key(u64::MAX - 1, vec![1, 2]), Arc::new(vec![(0, 3, 7)]));
        assert_eq!(
            get(&key(u64::MAX - 1, vec![1, 2])).as_deref(),
            Some(&vec![(0, 3, 7)])
        );
        assert!(get(&key(u64::MAX - 1, vec![1])).is_none());
        assert!(get(&key(u64::MAX - 2, vec![1, 2])).is_none());
    }

    #[test]
    fn the_cache_stays_within_its_bytes() {
        for instance in 0..200u64 {
            let tenants: Vec<u32> = (0..10_000).collect();
            insert(key(instance + (1 << 40), tenants), Arc::new(Vec::new()));
        }
        assert!(CACHE.lock().bytes <= CACHE_BYTES);
    }
}
