//! The tail: acknowledged events not yet sealed, in memory, readable at once.
//!
//! Events arrive in group-commit chunks of consecutive seqs; a chunk is immutable and shared
//! (`Arc`), so a reader's [`TailSnapshot`] costs one `Arc` clone per chunk, never a copy of the
//! events. Sealing takes a snapshot, writes segments, and then [`Tail::drain_through`] drops the
//! sealed chunks. The tail's size is tracked so the store can apply backpressure.
//!
//! ```
//! use auditlog_engine::tail::Tail;
//! use auditlog_engine::event::StoredEvent;
//! let mut tail = Tail::default();
//! tail.push(std::sync::Arc::new(vec![StoredEvent { seq: 1, ..Default::default() }]));
//! assert_eq!(tail.snapshot().iter().count(), 1);
//! ```

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::event::StoredEvent;

/// A group of consecutive events, shared by the tail, snapshots and subscribers. A `Vec` inside
/// the `Arc` (rather than `Arc<[_]>`) so that turning a decoded batch into a chunk moves it
/// instead of copying every event.
pub type Chunk = Arc<Vec<StoredEvent>>;

/// A rough count of the heap and inline bytes a stored event holds in memory.
pub fn approx_bytes(event: &StoredEvent) -> u64 {
    approx_event_bytes(&event.event)
}

/// [`approx_bytes`] of an event before it is stored (the same figure).
pub fn approx_event_bytes(e: &crate::event::Event) -> u64 {
    (std::mem::size_of::<StoredEvent>() + e.heap_bytes()) as u64
}

pub use crate::segment::key_hash;

/// Hasher for maps keyed by [`key_hash`] values, which are already well mixed.
#[derive(Default)]
pub struct KeyHashHasher(u64);

impl Hasher for KeyHashHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// Where each tenant's events are in one chunk: `(tenant hash, offset)` pairs sorted, so a
/// query for a few tenants visits only their events instead of scanning the whole tail.
///
/// ```
/// use auditlog_engine::event::StoredEvent;
/// use auditlog_engine::tail::TenantIndex;
/// let mut a = StoredEvent::default();
/// a.event.tenant = "a".into();
/// let mut b = a.clone();
/// b.event.tenant = "b".into();
/// let chunk = vec![a.clone(), b, a];
/// let index = TenantIndex::of(&chunk);
/// assert_eq!(index.offsets(&chunk, "a").collect::<Vec<_>>(), [0, 2]);
/// ```
#[derive(Debug, Default, Clone)]
pub struct TenantIndex(Vec<(u64, u32)>);

/// The hash [`TenantIndex`] files a tenant under.
pub fn tenant_hash(tenant: &str) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write(tenant.as_bytes());
    hasher.finish()
}

impl TenantIndex {
    /// The index of one chunk.
    pub fn of(chunk: &[StoredEvent]) -> TenantIndex {
        let mut entries: Vec<(u64, u32)> = Vec::with_capacity(chunk.len());
        let mut previous: Option<(&str, u64)> = None;
        for (offset, event) in chunk.iter().enumerate() {
            let tenant = event.event.tenant.as_str();
            // Batches often hold runs of one tenant: hash once per run.
            let hash = match previous {
                Some((last, hash)) if last == tenant => hash,
                _ => tenant_hash(tenant),
            };
            previous = Some((tenant, hash));
            entries.push((hash, offset as u32));
        }
        entries.sort_unstable();
        TenantIndex(entries)
    }

    /// Offsets in `chunk` (the chunk this index was built from) of `tenant`'s events, ascending.
    pub fn offsets<'a, 't>(
        &'a self,
        chunk: &'a [StoredEvent],
        tenant: &'t str,
    ) -> impl Iterator<Item = usize> + use<'a, 't> {
        let hash = tenant_hash(tenant);
        let start = self.0.partition_point(|(h, _)| *h < hash);
        self.0[start..]
            .iter()
            .take_while(move |(h, _)| *h == hash)
            .map(|(_, offset)| *offset as usize)
            .filter(move |&offset| chunk[offset].event.tenant == tenant)
    }
}

/// Sorts `(hash, value)` pairs by the low `bits` bits of the hash, stably (LSD radix sort, 11
/// bits a pass).
fn radix_sort_by_low_bits(pairs: &mut Vec<(u64, u64)>, bits: u32) {
    const RADIX_BITS: u32 = 11;
    let mut scratch = vec![(0u64, 0u64); pairs.len()];
    let mut shift = 0;
    while shift < bits {
        let width = RADIX_BITS.min(bits - shift);
        let mask = (1u64 << width) - 1;
        let mut counts = vec![0usize; 1 << width];
        for &(hash, _) in pairs.iter() {
            counts[((hash >> shift) & mask) as usize] += 1;
        }
        let mut next = 0;
        for count in counts.iter_mut() {
            let here = *count;
            *count = next;
            next += here;
        }
        for &pair in pairs.iter() {
            let slot = &mut counts[((pair.0 >> shift) & mask) as usize];
            scratch[*slot] = pair;
            *slot += 1;
        }
        std::mem::swap(pairs, &mut scratch);
        shift += width;
    }
}

/// A map keyed by idempotency-key hash.
pub type KeyMap<V> = HashMap<u64, V, BuildHasherDefault<KeyHashHasher>>;

/// The idempotency keys of a run of consecutive tail events: key hash -> seq (an exact check
/// follows). Two different keys with one 64-bit hash are astronomically rare; the second goes
/// to `collisions`.
#[derive(Default, Debug, PartialEq)]
pub struct KeyGeneration {
    keys: KeyMap<u64>,
    collisions: KeyMap<Vec<u64>>,
    /// Seqs of the first and last key inserted (0 while empty).
    first_seq: u64,
    last_seq: u64,
}

impl KeyGeneration {
    fn insert(&mut self, hash: u64, seq: u64) {
        if let Some(first) = self.keys.insert(hash, seq) {
            self.keys.insert(hash, first);
            self.collisions.entry(hash).or_default().push(seq);
        }
        if self.first_seq == 0 {
            self.first_seq = seq;
        }
        self.last_seq = seq;
    }

    fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Forgets the key of the event `seq`.
    fn remove(&mut self, hash: u64, seq: u64) {
        if self.keys.get(&hash) == Some(&seq) {
            self.keys.remove(&hash);
            // Promote a colliding key, if any, to the main map.
            if let Some(others) = self.collisions.get_mut(&hash) {
                if let Some(next) = others.pop() {
                    self.keys.insert(hash, next);
                }
                if others.is_empty() {
                    self.collisions.remove(&hash);
                }
            }
        } else if let Some(others) = self.collisions.get_mut(&hash) {
            others.retain(|&s| s != seq);
            if others.is_empty() {
                self.collisions.remove(&hash);
            }
        }
    }
}

/// Keys the first generation has room for before it grows (1 MiB of map).
const FIRST_GENERATION_KEYS: usize = 1 << 16;

/// What [`Tail::drain_through`] removed, to be dropped once the tail's lock is released.
#[must_use = "drained events and keys are returned to be dropped outside the tail's lock"]
pub struct Drained {
    pub chunks: Vec<Chunk>,
    pub keys: Vec<KeyGeneration>,
}

/// The unsealed events.
#[derive(Default)]
pub struct Tail {
    chunks: Vec<Chunk>,
    /// Approximate bytes of each chunk, parallel to `chunks`.
    chunk_bytes: Vec<u64>,
    /// Tenant index of each chunk, parallel to `chunks`.
    chunk_tenants: Vec<Arc<TenantIndex>>,
    /// Key hash of each event of each chunk (0 without `id`), parallel to `chunks`: draining a
    /// sealed chunk removes its keys without hashing them again.
    chunk_key_hashes: Vec<Box<[u64]>>,
    events: u64,
    bytes: u64,
    /// Idempotency keys of tail events, oldest generation first; new keys go to the last one. A
    /// seal starts a new generation when it takes its snapshot ([`Tail::seal_snapshot`]), so
    /// that draining what it sealed drops whole generations: removing a seal's million keys one
    /// by one (a cache miss each) held the lock that appends publish under for 100-300 ms.
    key_generations: Vec<KeyGeneration>,
}

impl Tail {
    /// Adds a chunk of consecutive events (seq order) that follows the current last one.
    pub fn push(&mut self, events: Chunk) {
        let bytes = events.iter().map(approx_bytes).sum();
        let hashes: Vec<u64> = events
            .iter()
            .map(|e| {
                e.event
                    .id
                    .as_ref()
                    .map_or(0, |id| key_hash(&e.event.tenant, id))
            })
            .collect();
        self.push_prepared(events, bytes, &hashes);
    }

    /// [`Tail::push`] with the chunk's approximate bytes and each event's key hash (0 for an
    /// event without `id`) computed beforehand, off the commit thread.
    pub fn push_prepared(&mut self, events: Chunk, bytes: u64, key_hashes: &[u64]) {
        let tenants = Arc::new(TenantIndex::of(&events));
        self.push_indexed(events, bytes, key_hashes, tenants);
    }

    /// [`Tail::push_prepared`] with the chunk's [`TenantIndex`] built beforehand too.
    pub fn push_indexed(
        &mut self,
        events: Chunk,
        bytes: u64,
        key_hashes: &[u64],
        tenants: Arc<TenantIndex>,
    ) {
        if events.is_empty() {
            return;
        }
        debug_assert_eq!(events.len(), key_hashes.len());
        debug_assert!(self.last_seq().is_none_or(|last| events[0].seq == last + 1));
        let generation = self.current_keys();
        for (event, &hash) in events.iter().zip(key_hashes) {
            if event.event.id.is_some() {
                generation.insert(hash, event.seq);
            }
        }
        self.append_chunk(events, bytes, key_hashes.into(), tenants);
    }

    /// The key generation new keys go to.
    fn current_keys(&mut self) -> &mut KeyGeneration {
        if self.key_generations.is_empty() {
            self.key_generations.push(KeyGeneration {
                keys: KeyMap::with_capacity_and_hasher(FIRST_GENERATION_KEYS, Default::default()),
                ..KeyGeneration::default()
            });
        }
        let last = self.key_generations.len() - 1;
        &mut self.key_generations[last]
    }

    /// Files a chunk and its per-chunk indexes (the keys are the caller's business).
    fn append_chunk(
        &mut self,
        events: Chunk,
        bytes: u64,
        key_hashes: Box<[u64]>,
        tenants: Arc<TenantIndex>,
    ) {
        self.bytes += bytes;
        self.events += events.len() as u64;
        self.chunks.push(events);
        self.chunk_bytes.push(bytes);
        self.chunk_tenants.push(tenants);
        self.chunk_key_hashes.push(key_hashes);
    }

    /// Adds replayed chunks (in seq order, into an empty tail), each with its approximate bytes,
    /// its events' key hashes and its [`TenantIndex`], and inserts all their keys at once in the
    /// order of the key map's buckets. Inserting millions of keys chunk by chunk misses the
    /// cache on almost every insert; in bucket order the inserts walk the map's memory in turn.
    pub fn push_replayed(&mut self, chunks: Vec<(Chunk, u64, Vec<u64>, Arc<TenantIndex>)>) {
        debug_assert!(self.is_empty() && self.key_generations.is_empty());
        let mut keys: Vec<(u64, u64)> = Vec::with_capacity(chunks.iter().map(|c| c.2.len()).sum());
        for (events, bytes, key_hashes, tenants) in chunks {
            if events.is_empty() {
                continue;
            }
            debug_assert_eq!(events.len(), key_hashes.len());
            for (event, &hash) in events.iter().zip(&key_hashes) {
                if event.event.id.is_some() {
                    keys.push((hash, event.seq));
                }
            }
            self.append_chunk(events, bytes, key_hashes.into_boxed_slice(), tenants);
        }
        let (Some(first_seq), Some(last_seq)) = (
            keys.iter().map(|k| k.1).min(),
            keys.iter().map(|k| k.1).max(),
        ) else {
            return;
        };
        let generation = self.current_keys();
        generation.keys.reserve(keys.len());
        // The map finds a key's bucket from its hash's low bits (the hasher passes key hashes
        // through): sorted by those, consecutive inserts land next to each other. The sort is
        // stable, so a key seen twice keeps its first seq in the map and the others in order.
        let buckets = (generation.keys.capacity() * 8 / 7 + 1).next_power_of_two() as u64;
        radix_sort_by_low_bits(&mut keys, buckets.trailing_zeros());
        for (hash, seq) in keys {
            generation.insert(hash, seq);
        }
        generation.first_seq = first_seq;
        generation.last_seq = last_seq;
    }

    pub fn last_seq(&self) -> Option<u64> {
        self.chunks.last().and_then(|c| c.last()).map(|e| e.seq)
    }

    pub fn first_seq(&self) -> Option<u64> {
        self.chunks.first().and_then(|c| c.first()).map(|e| e.seq)
    }

    /// Number of events held.
    pub fn len(&self) -> u64 {
        self.events
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Approximate memory held, in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The event with this seq, if the tail holds it.
    pub fn get(&self, seq: u64) -> Option<&StoredEvent> {
        let index = self
            .chunks
            .partition_point(|c| c.last().is_some_and(|e| e.seq < seq));
        let chunk = self.chunks.get(index)?;
        let first = chunk.first()?.seq;
        chunk.get(usize::try_from(seq.checked_sub(first)?).ok()?)
    }

    /// The seq of the tail event with idempotency key `(tenant, id)`, if any.
    pub fn find_key(&self, tenant: &str, id: &str) -> Option<u64> {
        self.find_key_hashed(key_hash(tenant, id), tenant, id)
    }

    /// [`Tail::find_key`] with the key's hash already computed.
    pub fn find_key_hashed(&self, hash: u64, tenant: &str, id: &str) -> Option<u64> {
        let matches = |seq: &u64| {
            self.get(*seq)
                .is_some_and(|e| e.event.tenant == tenant && e.event.id.as_deref() == Some(id))
        };
        // Newest first: a seal in progress leaves an older generation about to be drained.
        self.key_generations.iter().rev().find_map(|generation| {
            let first = generation.keys.get(&hash)?;
            if matches(first) {
                return Some(*first);
            }
            generation
                .collisions
                .get(&hash)?
                .iter()
                .copied()
                .find(|s| matches(s))
        })
    }

    /// [`Tail::snapshot`] for a seal: also starts a new key generation, so that draining what
    /// the seal covers drops the older ones whole.
    pub fn seal_snapshot(&mut self) -> TailSnapshot {
        if let Some(last) = self.key_generations.last().filter(|g| !g.is_empty()) {
            // Room for twice the last one's keys: growing a map of hundreds of thousands of
            // keys rehashes them all, under the lock appends publish under (sized just like
            // the last one, a seal that held a few more keys than the one before paid that).
            let keys = KeyMap::with_capacity_and_hasher(last.keys.len() * 2, Default::default());
            self.key_generations.push(KeyGeneration {
                keys,
                ..KeyGeneration::default()
            });
        }
        self.snapshot()
    }

    /// A consistent, cheap view of the events held now.
    pub fn snapshot(&self) -> TailSnapshot {
        TailSnapshot {
            chunks: self.chunks.clone(),
            tenants: self.chunk_tenants.clone(),
        }
    }

    /// Removes every event with `seq <= sealed_through` (they are in segments now) and returns
    /// them and their keys, for the caller to drop once it no longer holds the tail's lock
    /// (freeing a seal's worth of events takes milliseconds that appends and queries should not
    /// wait). Key generations holding only drained events go whole; keys of drained events in a
    /// generation that also holds later ones (a seal without [`Tail::seal_snapshot`]) are
    /// removed one by one.
    pub fn drain_through(&mut self, sealed_through: u64) -> Drained {
        let keep_from = self
            .chunks
            .partition_point(|c| c.last().is_some_and(|e| e.seq <= sealed_through));
        self.chunk_tenants.drain(..keep_from);
        for bytes in self.chunk_bytes.drain(..keep_from) {
            self.bytes = self.bytes.saturating_sub(bytes);
        }
        let chunks: Vec<Chunk> = self.chunks.drain(..keep_from).collect();
        let whole = self
            .key_generations
            .iter()
            .take_while(|g| g.last_seq <= sealed_through)
            .count();
        let keys: Vec<KeyGeneration> = self.key_generations.drain(..whole).collect();
        let straddling = self
            .key_generations
            .first_mut()
            .filter(|g| !g.is_empty() && g.first_seq <= sealed_through);
        match straddling {
            Some(generation) => {
                for (chunk, hashes) in chunks.iter().zip(self.chunk_key_hashes.drain(..keep_from)) {
                    self.events -= chunk.len() as u64;
                    for (event, &hash) in chunk.iter().zip(hashes.iter()) {
                        if event.seq >= generation.first_seq && event.event.id.is_some() {
                            generation.remove(hash, event.seq);
                        }
                    }
                }
            }
            None => {
                self.chunk_key_hashes.drain(..keep_from);
                self.events -= chunks.iter().map(|c| c.len() as u64).sum::<u64>();
            }
        }
        debug_assert!(self.first_seq().is_none_or(|first| first > sealed_through));
        Drained { chunks, keys }
    }
}

/// An immutable view of the tail at one instant, in seq order.
#[derive(Clone, Default)]
pub struct TailSnapshot {
    chunks: Vec<Chunk>,
    /// Parallel to `chunks`.
    tenants: Vec<Arc<TenantIndex>>,
}

impl TailSnapshot {
    /// Every event, in seq order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &StoredEvent> + '_ {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// Events with `seq >= from`, in seq order.
    pub fn iter_from(&self, from: u64) -> impl Iterator<Item = &StoredEvent> + '_ {
        let start = self
            .chunks
            .partition_point(|c| c.last().is_some_and(|e| e.seq < from));
        self.chunks[start..]
            .iter()
            .flat_map(|c| c.iter())
            .skip_while(move |e| e.seq < from)
    }

    /// `tenant`'s events with `seq >= from`, in seq order, found through each chunk's
    /// [`TenantIndex`] (the other tenants' events are not visited).
    pub fn iter_tenant_from<'a, 't>(
        &'a self,
        tenant: &'t str,
        from: u64,
    ) -> impl Iterator<Item = &'a StoredEvent> + use<'a, 't> {
        let start = self
            .chunks
            .partition_point(|c| c.last().is_some_and(|e| e.seq < from));
        self.chunks[start..]
            .iter()
            .zip(&self.tenants[start..])
            .flat_map(move |(chunk, index)| {
                index
                    .offsets(chunk, tenant)
                    .map(move |offset| &chunk[offset])
            })
            .filter(move |e| e.seq >= from)
    }

    /// The chunks (group commits) of this snapshot.
    pub fn chunks(&self) -> &[Chunk] {
        &self.chunks
    }

    pub fn len(&self) -> usize {
        self.chunks.iter().map(|c| c.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    pub fn last_seq(&self) -> Option<u64> {
        self.chunks.last().and_then(|c| c.last()).map(|e| e.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    #[test]
    fn radix_sort_by_low_bits_is_a_stable_sort_by_those_bits() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for bits in [0, 1, 5, 11, 12, 21, 22, 33] {
            // Few distinct low bits, so equal sort keys are common and stability shows.
            let pairs: Vec<(u64, u64)> = (0..5_000).map(|i| (next() & 0xffff_f0ff, i)).collect();
            let mut expected = pairs.clone();
            let mask = (1u64 << bits) - 1;
            expected.sort_by_key(|&(hash, _)| hash & mask);
            let mut sorted = pairs;
            radix_sort_by_low_bits(&mut sorted, bits);
            assert_eq!(sorted, expected, "{bits} bits");
        }
    }

    fn chunk(first_seq: u64, ids: &[Option<&str>]) -> Chunk {
        Arc::new(
            ids.iter()
                .enumerate()
                .map(|(i, id)| StoredEvent {
                    seq: first_seq + i as u64,
                    event: Event {
                        id: id.map(Into::into),
                        tenant: "acct_1".into(),
                        ..Event::default()
                    },
                    ..StoredEvent::default()
                })
                .collect(),
        )
    }

    /// Draining what a seal covers drops its key generations whole when the seal took its
    /// snapshot with `seal_snapshot`, and removes keys one by one when it did not; either way the
    /// drained keys are gone and the later ones still found.
    #[test]
    fn drain_through_forgets_exactly_the_drained_keys() {
        let key = |id: &str| key_hash("acct_1", id);
        let push = |tail: &mut Tail, chunk: Chunk| {
            let hashes: Vec<u64> = chunk
                .iter()
                .map(|e| e.event.id.as_deref().map_or(0, key))
                .collect();
            tail.push_prepared(chunk, 10, &hashes);
        };
        for with_seal_snapshot in [true, false] {
            let mut tail = Tail::default();
            push(&mut tail, chunk(1, &[Some("a"), None, Some("b")]));
            push(&mut tail, chunk(4, &[Some("c")]));
            let snapshot = if with_seal_snapshot {
                tail.seal_snapshot()
            } else {
                tail.snapshot()
            };
            let upto = snapshot.last_seq().unwrap_or_default();
            assert_eq!(upto, 4);
            // Appended while the seal runs.
            push(&mut tail, chunk(5, &[Some("d"), None]));
            assert_eq!(tail.find_key("acct_1", "a"), Some(1));
            let drained = tail.drain_through(upto);
            assert_eq!(drained.chunks.len(), 2);
            assert_eq!(drained.keys.len(), usize::from(with_seal_snapshot));
            assert_eq!(
                (tail.len(), tail.bytes(), tail.first_seq()),
                (2, 10, Some(5))
            );
            for id in ["a", "b", "c"] {
                assert_eq!(tail.find_key("acct_1", id), None, "{id}");
            }
            assert_eq!(tail.find_key("acct_1", "d"), Some(5));
            let keys: usize = tail.key_generations.iter().map(|g| g.keys.len()).sum();
            assert_eq!(keys, 1);
            // Everything sealed: nothing left, and new keys start a generation again.
            let snapshot = tail.seal_snapshot();
            let drained = tail.drain_through(snapshot.last_seq().unwrap_or_default());
            assert_eq!(drained.chunks.len(), 1);
            assert!(tail.is_empty() && tail.find_key("acct_1", "d").is_none());
            push(&mut tail, chunk(7, &[Some("a")]));
            assert_eq!(tail.find_key("acct_1", "a"), Some(7));
        }
    }

    /// `push_replayed` (all keys at once, in bucket order) leaves the same tail as pushing the
    /// chunks one by one, including a key repeated across chunks and two keys that share a hash.
    #[test]
    fn push_replayed_matches_pushing_chunk_by_chunk() {
        let chunks = [
            chunk(1, &[Some("a"), None, Some("b"), Some("c")]),
            chunk(5, &[Some("d"), Some("a"), Some("e")]),
            chunk(8, &[Some("f"), None, Some("g")]),
        ];
        let hashes = |chunk: &Chunk| -> Vec<u64> {
            chunk
                .iter()
                .map(|e| match e.event.id.as_deref() {
                    None => 0,
                    // "f" and "g" collide on purpose.
                    Some("g") => key_hash("acct_1", "f"),
                    Some(id) => key_hash("acct_1", id),
                })
                .collect()
        };
        let mut one_by_one = Tail::default();
        let mut replayed = Tail::default();
        let mut batches = Vec::new();
        for chunk in &chunks {
            let tenants = Arc::new(TenantIndex::of(chunk));
            one_by_one.push_indexed(Arc::clone(chunk), 100, &hashes(chunk), Arc::clone(&tenants));
            batches.push((Arc::clone(chunk), 100, hashes(chunk), tenants));
        }
        replayed.push_replayed(batches);
        for tail in [&one_by_one, &replayed] {
            assert_eq!(
                (tail.len(), tail.bytes(), tail.last_seq()),
                (10, 300, Some(10))
            );
            let found = |id: &str| {
                let hash = match id {
                    "g" => key_hash("acct_1", "f"),
                    _ => key_hash("acct_1", id),
                };
                tail.find_key_hashed(hash, "acct_1", id)
            };
            // The first of two events with one key is the one found.
            let expected = [
                ("a", Some(1)),
                ("b", Some(3)),
                ("c", Some(4)),
                ("d", Some(5)),
            ];
            for (id, seq) in expected {
                assert_eq!(found(id), seq, "{id}");
            }
            for (id, seq) in [("e", Some(7)), ("f", Some(8)), ("g", Some(10)), ("z", None)] {
                assert_eq!(found(id), seq, "{id}");
            }
        }
        assert_eq!(one_by_one.key_generations, replayed.key_generations);
    }
}
