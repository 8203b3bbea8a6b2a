//! Sealing the tail into segments, and merging a partition's small segments.
//!
//! Both write new segment files (`{id:016x}.seg.tmp`, fsync, rename), let the segment hook
//! build its companion files, fsync the directory, and only then publish a manifest that lists
//! them. The tail is drained and the WAL trimmed only after that manifest is durable; merged-away
//! segments are deleted only after the manifest no longer lists them. A crash at any point leaves
//! either the old or the new state, plus orphan files that the next open removes.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::publish::PublishFailure;
use super::{Inner, SealedSegment};
use crate::error::{Error, Result};
use crate::event::StoredEvent;
use crate::manifest::{segment_file_name, Manifest, SegmentEntry};
use crate::partition::PartitionKey;
use crate::segment::{encode_segment_refs, Segment};

/// Size tier of a segment for merging: segments of one tier are within 4x of each other.
fn tier(rows: u64) -> u32 {
    let mut tier = 0;
    let mut bound = 4096u64;
    while rows > bound {
        bound = bound.saturating_mul(4);
        tier += 1;
    }
    tier
}

impl Inner {
    /// Seals every event in the tail now; returns the sealed-through seq.
    pub(crate) fn seal(&self) -> Result<u64> {
        let _maintenance = self.maintenance.lock();
        let started = Instant::now();
        let before = self.state.read().manifest.sealed_through;
        let result = self.seal_locked();
        match &result {
            Ok(upto) => {
                self.metrics.seal.record(started.elapsed());
                // Seqs are consecutive: the tail held exactly the seqs after `before`.
                self.metrics.rows_sealed.fetch_add(
                    upto.saturating_sub(before),
                    std::sync::atomic::Ordering::Relaxed,
                );
                *self.seal_failure.lock() = None;
            }
            Err(error) => {
                self.metrics
                    .background_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                *self.seal_failure.lock() = Some(error.to_string());
            }
        }
        result
    }

    fn seal_locked(&self) -> Result<u64> {
        let (snapshot, mut manifest) = {
            let mut state = self.state.write();
            (state.tail.seal_snapshot(), state.manifest.clone())
        };
        let Some(upto) = snapshot.last_seq() else {
            return Ok(manifest.sealed_through);
        };
        let retention = &self.options.retention;
        let mut groups: BTreeMap<PartitionKey, Vec<&StoredEvent>> = BTreeMap::new();
        let mut tenant_seqs: HashMap<&str, u64> = HashMap::new();
        for event in snapshot.iter() {
            let class = retention.class_of(&event.event.tenant);
            groups
                .entry(PartitionKey::of(class, event.event.timestamp_us))
                .or_default()
                .push(event);
            let counter = tenant_seqs.entry(&event.event.tenant).or_insert(0);
            *counter = (*counter).max(event.tenant_seq);
        }
        let mut written: Vec<Arc<SealedSegment>> = Vec::with_capacity(groups.len());
        let mut deferred: Vec<u64> = Vec::new();
        let result = if self.defer_indexing() {
            self.write_segments_in_parallel(&groups, &mut manifest, &mut written, &mut deferred)
        } else {
            let started = Instant::now();
            let result = self.write_segments_pipelined(&groups, &mut manifest, &mut written);
            if result.is_ok() && self.options.segment_hook.is_some() {
                self.pacing
                    .lock()
                    .record_seal(snapshot.len() as u64, started.elapsed());
            }
            result
        };
        if let Err(error) = result {
            self.discard(&written);
            return Err(error);
        }
        for (tenant, seq) in tenant_seqs {
            let counter = manifest.tenant_seqs.entry(tenant.to_string()).or_insert(0);
            *counter = (*counter).max(seq);
        }
        manifest.sealed_through = upto;
        manifest
            .segments
            .extend(written.iter().map(|s| s.entry.clone()));
        let change = crate::ledger::Change {
            reason: crate::ledger::Reason::Seal,
            at_us: super::now_us(),
            added: written.iter().map(|s| s.digest()).collect(),
            removed: Vec::new(),
        };
        // Either way the ids are never given out again; segments of a manifest in doubt stay
        // (an open removes them if it is not in effect).
        if let Err(failure) = self.publish_segments(change, &mut manifest) {
            if let PublishFailure::NotPublished(_) = &failure {
                self.discard(&written);
            }
            self.state.write().manifest.next_segment_id = manifest.next_segment_id;
            return Err(failure.into_error());
        }
        let drained = {
            let mut state = self.state.write();
            let mut segments = (*state.segments).clone();
            segments.extend(written);
            state.segments = Arc::new(segments);
            state.manifest = manifest;
            state.tail.drain_through(upto)
        };
        if !deferred.is_empty() {
            self.metrics
                .segments_deferred
                .fetch_add(deferred.len() as u64, std::sync::atomic::Ordering::Relaxed);
            self.deferred_index
                .lock()
                .extend(deferred.into_iter().map(|id| (id, None)));
        }
        // The sealed events are freed here, with the lock released (unless a reader's
        // snapshot still holds them: then when it is done).
        drop(drained);
        {
            let _guard = self.tail_room_lock.lock();
            self.tail_room.notify_all();
        }
        let sealed_files = self.commit.lock().wal.take_sealed(upto);
        sealed_files.remove()?;
        Ok(upto)
    }

    /// The rows of each partition in runs that each make one segment within the format's
    /// chunk limit ([`crate::segment::split_for_chunk_limit`]): one run per partition unless
    /// its dictionaries would not fit in one segment.
    fn pieces<'g, 'e>(
        &self,
        groups: &'g BTreeMap<PartitionKey, Vec<&'e StoredEvent>>,
    ) -> Vec<(&'g PartitionKey, &'g [&'e StoredEvent])> {
        let limit = self.options.encode.chunk_bytes_max;
        groups
            .iter()
            .flat_map(|(partition, rows)| {
                crate::segment::split_for_chunk_limit(rows, limit)
                    .into_iter()
                    .map(move |run| (partition, run))
            })
            .collect()
    }

    /// Writes a segment per partition (or per piece of one: see [`Inner::pieces`]), one after
    /// the other: while the hook indexes one segment (on its own threads), the next one is
    /// encoded; at most one hook runs at a time.
    /// The segments written are left in `written` (also on failure, for the caller to discard).
    fn write_segments_pipelined(
        &self,
        groups: &BTreeMap<PartitionKey, Vec<&StoredEvent>>,
        manifest: &mut Manifest,
        written: &mut Vec<Arc<SealedSegment>>,
    ) -> Result<()> {
        std::thread::scope(|scope| {
            let mut in_flight: Option<std::thread::ScopedJoinHandle<'_, Result<SealedSegment>>> =
                None;
            let finish = |handle: std::thread::ScopedJoinHandle<'_, Result<SealedSegment>>,
                          written: &mut Vec<Arc<SealedSegment>>|
             -> Result<()> {
                let sealed = handle.join().expect("a segment hook thread panicked")?;
                written.push(Arc::new(sealed));
                Ok(())
            };
            for (partition, rows) in self.pieces(groups) {
                let segment_id = manifest.next_segment_id;
                manifest.next_segment_id += 1;
                let file = self.write_segment_file(segment_id, partition, rows);
                let previous = in_flight
                    .take()
                    .map(|handle| finish(handle, written))
                    .transpose();
                match (file, previous) {
                    (Ok(file), Ok(_)) => {
                        in_flight = Some(scope.spawn(move || self.index_segment(file, true)));
                    }
                    (Ok(file), Err(error)) => {
                        if let Some(dir) = file.path.parent() {
                            let _ = remove_segment_files(self, dir, segment_id);
                        }
                        return Err(error);
                    }
                    (Err(error), _) => return Err(error),
                }
            }
            match in_flight {
                Some(handle) => finish(handle, written),
                None => Ok(()),
            }
        })
    }

    /// The seal of a tail near its bound (see [`super::StoreOptions::index_deferral`]): the
    /// hook is left for later, and the segments are encoded on as many threads as there are
    /// cores, a partition past [`super::StoreOptions::seal_split_rows`] rows being split into
    /// segments of disjoint tenants so that one large partition uses them all. Ids of the
    /// segments written go to `deferred` as well as `written`.
    fn write_segments_in_parallel(
        &self,
        groups: &BTreeMap<PartitionKey, Vec<&StoredEvent>>,
        manifest: &mut Manifest,
        written: &mut Vec<Arc<SealedSegment>>,
        deferred: &mut Vec<u64>,
    ) -> Result<()> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let split_rows = self.options.seal_split_rows.max(1);
        let mut pieces: Vec<(u64, &PartitionKey, Vec<&StoredEvent>)> = Vec::new();
        for (partition, rows) in self.pieces(groups) {
            let parts = (rows.len() as u64 / split_rows).clamp(1, threads as u64) as usize;
            for part in split_by_tenant(rows, parts) {
                if !part.is_empty() {
                    pieces.push((manifest.next_segment_id, partition, part));
                    manifest.next_segment_id += 1;
                }
            }
        }
        let mut failure = None;
        for batch in pieces.chunks(threads) {
            let results: Vec<Result<SealedSegment>> = std::thread::scope(|scope| {
                let handles: Vec<_> = batch
                    .iter()
                    .map(|(segment_id, partition, rows)| {
                        scope.spawn(move || {
                            let file = self.write_segment_file(*segment_id, partition, rows)?;
                            self.index_segment(file, false)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("a segment writer thread panicked"))
                    .collect()
            });
            for result in results {
                match result {
                    Ok(sealed) => {
                        deferred.push(sealed.entry.segment_id);
                        written.push(Arc::new(sealed));
                    }
                    Err(error) => failure = failure.or(Some(error)),
                }
            }
            if let Some(error) = failure {
                return Err(error);
            }
        }
        Ok(())
    }

    /// Most bytes of decoded events (`decoded_size`) one merge holds: as many
    /// as the tail may, and no more than a chunk holds, so that the merged segment's
    /// dictionaries fit (see [`crate::segment::split_for_chunk_limit`]).
    fn merge_decoded_max(&self) -> u64 {
        self.options
            .tail_bytes_max
            .min(u64::from(self.options.encode.chunk_bytes_max))
    }

    /// Writes and checks one segment file; it is neither indexed nor published yet. Notes
    /// the rows' decoded size for the merges to choose by (see [`Inner::merge_pass`]).
    fn write_segment_file(
        &self,
        segment_id: u64,
        partition: &PartitionKey,
        rows: &[&StoredEvent],
    ) -> Result<SealedSegment> {
        let vfs = self.options.vfs.as_ref();
        let dir = Manifest::partition_dir(&self.options.dir, partition);
        crate::io::create_dir_all_durably(vfs, &dir).map_err(|e| Error::io(&dir, e))?;
        // Files of this id left by an attempt that failed before it was published (ids of
        // published segments are never given out again): a segment published without its
        // indexes must not find stale ones at the next open.
        remove_segment_files(self, &dir, segment_id)?;
        let encoded = encode_segment_refs(segment_id, rows, &self.options.encode)?;
        let decoded: u64 = rows.iter().map(|row| decoded_size(row)).sum();
        self.merge_decoded.lock().insert(segment_id, decoded);
        let name = segment_file_name(segment_id);
        let path = dir.join(&name);
        let tmp = dir.join(format!("{name}.tmp"));
        let mut file = vfs.create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        // Flushed as it goes, so the WAL's fsyncs do not queue behind the whole file.
        crate::io::write_durably(file.as_mut(), &encoded.bytes).map_err(|e| Error::io(&tmp, e))?;
        drop(file);
        vfs.rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        let segment = Segment::open(&path)?;
        let meta = &encoded.meta;
        let entry = SegmentEntry {
            segment_id,
            partition: partition.clone(),
            rows: meta.rows,
            bytes: encoded.bytes.len() as u64,
            min_timestamp_us: meta.min_timestamp_us,
            max_timestamp_us: meta.max_timestamp_us,
            min_seq: meta.min_seq,
            max_seq: meta.max_seq,
        };
        Ok(SealedSegment {
            entry,
            path,
            segment,
            sha256: crate::ledger::sha256(&encoded.bytes),
            attachment: None,
        })
    }

    /// The tail as [`super::pacing::Pacing`] sees it.
    pub(crate) fn tail_state(&self) -> super::pacing::TailState {
        let state = self.state.read();
        super::pacing::TailState {
            bytes: state.tail.bytes(),
            events: state.tail.len(),
            bytes_max: self.options.tail_bytes_max,
        }
    }

    /// Whether a seal of the tail as it is should leave its segments' indexes for later (see
    /// [`super::StoreOptions::index_deferral`] and [`super::pacing::Pacing::defer_indexing`]).
    fn defer_indexing(&self) -> bool {
        self.options.index_deferral
            && self.options.segment_hook.is_some()
            && self.pacing.lock().defer_indexing(&self.tail_state())
    }

    /// The oldest published segment whose indexes were left for later and whose last failed
    /// build (if any) `eligible` accepts (ids of segments merged or expired since are dropped
    /// on the way).
    pub(crate) fn next_deferred(
        &self,
        eligible: impl Fn(Option<Instant>) -> bool,
    ) -> Option<Arc<SealedSegment>> {
        loop {
            let id = self
                .deferred_index
                .lock()
                .iter()
                .find(|(_, &failed)| eligible(failed))
                .map(|(&id, _)| id)?;
            let found = self
                .state
                .read()
                .segments
                .iter()
                .find(|s| s.entry.segment_id == id)
                .cloned();
            match found {
                Some(sealed) => return Some(sealed),
                None => {
                    self.deferred_index.lock().remove(&id);
                }
            }
        }
    }

    /// Builds the indexes of the oldest segment published without them that `eligible`
    /// accepts (see [`Inner::next_deferred`] and [`super::StoreOptions::index_deferral`]) and
    /// swaps it for one that has them. Returns whether there was one; a failed build is
    /// noted on the segment, which stays published without indexes.
    pub(crate) fn index_deferred_segment(
        &self,
        eligible: impl Fn(Option<Instant>) -> bool,
    ) -> Result<bool> {
        let _maintenance = self.maintenance.lock();
        let Some(hook) = self.options.segment_hook.clone() else {
            self.deferred_index.lock().clear();
            return Ok(false);
        };
        let Some(sealed) = self.next_deferred(eligible) else {
            return Ok(false);
        };
        let id = sealed.entry.segment_id;
        match self.build_deferred_index(hook.as_ref(), &sealed) {
            Ok(()) => Ok(true),
            Err(error) => {
                if let Some(failed) = self.deferred_index.lock().get_mut(&id) {
                    *failed = Some(Instant::now());
                }
                Err(error)
            }
        }
    }

    /// [`Inner::index_deferred_segment`] for one segment: runs the hook, then swaps the
    /// segment for an instance with its attachment and drops it from the deferred ones.
    fn build_deferred_index(
        &self,
        hook: &dyn super::SegmentHook,
        sealed: &SealedSegment,
    ) -> Result<()> {
        let id = sealed.entry.segment_id;
        let started = Instant::now();
        let dir = sealed
            .path
            .parent()
            .expect("a segment file lives in a partition directory")
            .to_path_buf();
        let attachment = hook.segment_written(&dir, &sealed.entry, &sealed.segment)?;
        let vfs = self.options.vfs.as_ref();
        vfs.sync_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        self.pacing
            .lock()
            .record_index(sealed.entry.rows, started.elapsed());
        // A fresh instance: the build decoded every dictionary and read every block of the
        // one readers share (they keep it until they let go).
        let indexed = Arc::new(SealedSegment {
            entry: sealed.entry.clone(),
            path: sealed.path.clone(),
            segment: sealed.segment.without_dictionaries()?,
            sha256: sealed.sha256,
            attachment,
        });
        {
            let mut state = self.state.write();
            let swapped: Vec<Arc<SealedSegment>> = state
                .segments
                .iter()
                .map(|s| {
                    if s.entry.segment_id == id {
                        Arc::clone(&indexed)
                    } else {
                        Arc::clone(s)
                    }
                })
                .collect();
            state.segments = Arc::new(swapped);
        }
        self.deferred_index.lock().remove(&id);
        self.metrics.deferred_index.record(started.elapsed());
        Ok(())
    }

    /// Lets the segment hook build its companion files for a written segment (unless
    /// `run_hook` is false: see [`super::StoreOptions::index_deferral`]), then makes the
    /// directory durable; the segment is still not published.
    fn index_segment(&self, mut sealed: SealedSegment, run_hook: bool) -> Result<SealedSegment> {
        let dir = sealed
            .path
            .parent()
            .expect("a segment file lives in a partition directory")
            .to_path_buf();
        if let Some(hook) = self.options.segment_hook.as_ref().filter(|_| run_hook) {
            let started = Instant::now();
            if let Err(error) = hook
                .segment_written(&dir, &sealed.entry, &sealed.segment)
                .map(|attachment| sealed.attachment = attachment)
            {
                let _ = remove_segment_files(self, &dir, sealed.entry.segment_id);
                return Err(error);
            }
            self.pacing
                .lock()
                .record_index(sealed.entry.rows, started.elapsed());
        }
        let vfs = self.options.vfs.as_ref();
        vfs.sync_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        // The hook read every block to index it; queries map back the pages and decode again
        // the dictionaries they use.
        sealed.segment.release_pages();
        sealed.segment.release_dictionaries();
        Ok(sealed)
    }

    /// Writes, checks and indexes one segment file; it is not published yet.
    fn write_segment(
        &self,
        segment_id: u64,
        partition: &PartitionKey,
        rows: &[&StoredEvent],
    ) -> Result<Arc<SealedSegment>> {
        let file = self.write_segment_file(segment_id, partition, rows)?;
        Ok(Arc::new(self.index_segment(file, true)?))
    }

    /// Best-effort removal of segments written but not published (an open would remove them too).
    fn discard(&self, written: &[Arc<SealedSegment>]) {
        for sealed in written {
            if let Some(dir) = sealed.path.parent() {
                let _ = remove_segment_files(self, dir, sealed.entry.segment_id);
            }
        }
    }

    /// Merges, in every partition, segments of one size tier once there are
    /// `merge_segments_min` of them, smallest first, into one of at most `merge_rows_max`
    /// rows. Returns the number of merges made.
    ///
    /// A merge never exceeds `merge_rows_max`: a segment that cannot pair with another under
    /// it stays as it is. Each merge encodes and indexes its rows again, so under sustained
    /// ingest, seals of at least half of `merge_rows_max` rows (see
    /// [`super::StoreOptions::seal_bytes`]) are written once and never merged.
    ///
    /// A merge holds its rows decoded, and neither rows nor file bytes bound that memory
    /// when values are long and repetitive (a 60 KiB `details` may compress to a few hundred
    /// bytes): merges choose inputs whose decoded events (`decoded_size`) add up to at most
    /// [`Inner::merge_decoded_max`], by each segment's decoded size as its seal or merge
    /// measured it (`merge_decoded`). A segment whose size is unknown (written before
    /// this process opened the store) counts as 0 and is measured as the merge reads it: a
    /// merge that goes over then lets go of what it read (having held at most the bound plus
    /// that one segment, itself no larger than the tail that sealed it), measures the rest
    /// one at a time, and merges nothing, and the next pass chooses by the sizes it learnt.
    pub(crate) fn merge_pass(&self) -> Result<usize> {
        let _maintenance = self.maintenance.lock();
        let segments = Arc::clone(&self.state.read().segments);
        let mut by_partition: BTreeMap<(&PartitionKey, u32), Vec<&Arc<SealedSegment>>> =
            BTreeMap::new();
        // Expired partitions are left alone: they are about to go, and a retention pass may be
        // copying one to the archive without the maintenance lock.
        let now = super::now_us();
        let archiving = self.archiving.lock().clone();
        let failed: std::collections::HashSet<u64> = {
            let mut failed = self.merge_failed.lock();
            failed.retain(|_, at| at.elapsed() < super::MERGE_RETRY);
            failed.keys().copied().collect()
        };
        let decoded_max = self.merge_decoded_max();
        let decoded: HashMap<u64, u64> = {
            let live: std::collections::HashSet<u64> =
                segments.iter().map(|s| s.entry.segment_id).collect();
            let mut known = self.merge_decoded.lock();
            known.retain(|id, _| live.contains(id));
            known.clone()
        };
        let decoded_of =
            |sealed: &SealedSegment| decoded.get(&sealed.entry.segment_id).copied().unwrap_or(0);
        for sealed in segments.iter() {
            if sealed.entry.rows < self.options.merge_rows_max
                && decoded_of(sealed) <= decoded_max
                && !self.is_expired(&sealed.entry.partition, now)
                && !archiving.contains(&sealed.entry.partition)
                && !failed.contains(&sealed.entry.segment_id)
            {
                by_partition
                    .entry((&sealed.entry.partition, tier(sealed.entry.rows)))
                    .or_default()
                    .push(sealed);
            }
        }
        let mut merges = 0;
        let mut first_failure = None;
        for ((partition, _tier), mut group) in by_partition {
            if group.len() < self.options.merge_segments_min.max(2) {
                continue;
            }
            group.sort_by_key(|s| s.entry.rows);
            let mut chosen = Vec::new();
            let (mut rows, mut bytes, mut decoded_sum) = (0, 0, 0);
            for sealed in group {
                if rows + sealed.entry.rows > self.options.merge_rows_max
                    || bytes + sealed.entry.bytes > self.options.merge_bytes_max
                {
                    break;
                }
                // Sizes are not ordered like rows: a larger one is passed over, not the end.
                if decoded_sum + decoded_of(sealed) > decoded_max {
                    continue;
                }
                rows += sealed.entry.rows;
                bytes += sealed.entry.bytes;
                decoded_sum += decoded_of(sealed);
                chosen.push(Arc::clone(sealed));
            }
            if chosen.len() < 2 {
                continue;
            }
            let started = Instant::now();
            match self.merge_segments(partition, &chosen) {
                Ok(true) => {}
                // Over the bound: the next pass chooses again with the sizes now known.
                Ok(false) => continue,
                Err(error) => {
                    // Left alone for a while; the other partitions' merges go on.
                    let mut failed = self.merge_failed.lock();
                    for sealed in &chosen {
                        failed.insert(sealed.entry.segment_id, Instant::now());
                    }
                    first_failure.get_or_insert(error);
                    continue;
                }
            }
            self.metrics.merge.record(started.elapsed());
            self.metrics
                .rows_merged
                .fetch_add(rows, std::sync::atomic::Ordering::Relaxed);
            merges += 1;
            // Many partitions to merge (after a burst's split seals, or a backfill) would hold
            // the maintenance lock for minutes while the tail fills: once a seal is due, the
            // rest waits for the next pass.
            if self.state.read().tail.bytes() >= self.options.seal_bytes {
                break;
            }
        }
        match first_failure {
            Some(error) => Err(error),
            None => Ok(merges),
        }
    }

    /// Merges `chosen` into one segment; `Ok(false)` when their rows, decoded, would hold
    /// more than [`Inner::merge_decoded_max`] or not fit one segment (nothing is written
    /// then; see [`Inner::merge_pass`]).
    fn merge_segments(
        &self,
        partition: &PartitionKey,
        chosen: &[Arc<SealedSegment>],
    ) -> Result<bool> {
        let decoded_max = self.merge_decoded_max();
        let mut rows = Vec::new();
        let mut decoded_sum = 0;
        for sealed in chosen {
            let decoded = sealed.segment.read_all()?;
            let size: u64 = decoded.iter().map(decoded_size).sum();
            self.merge_decoded
                .lock()
                .insert(sealed.entry.segment_id, size);
            decoded_sum += size;
            if decoded_sum > decoded_max {
                // The rest are only measured (one at a time), for the next pass to choose by.
                rows = Vec::new();
            } else {
                rows.extend(decoded);
            }
        }
        if decoded_sum > decoded_max {
            return Ok(false);
        }
        let refs: Vec<&StoredEvent> = rows.iter().collect();
        // The bound keeps every dictionary within a chunk (a row's decoded size exceeds its
        // dictionary values' encoded bytes); should it not, these inputs are left alone for a
        // while rather than failing the encode at every pass.
        if crate::segment::split_for_chunk_limit(&refs, self.options.encode.chunk_bytes_max).len()
            > 1
        {
            let mut failed = self.merge_failed.lock();
            for sealed in chosen {
                failed.insert(sealed.entry.segment_id, Instant::now());
            }
            return Ok(false);
        }
        let mut manifest = self.state.read().manifest.clone();
        let segment_id = manifest.next_segment_id;
        manifest.next_segment_id += 1;
        let merged = self.write_segment(segment_id, partition, &refs)?;
        drop(refs);
        drop(rows);
        let removed: Vec<u64> = chosen.iter().map(|s| s.entry.segment_id).collect();
        manifest
            .segments
            .retain(|e| !removed.contains(&e.segment_id));
        manifest.segments.push(merged.entry.clone());
        let change = crate::ledger::Change {
            reason: crate::ledger::Reason::Merge,
            at_us: super::now_us(),
            added: vec![merged.digest()],
            removed: removed.clone(),
        };
        // As in `seal`: a manifest in doubt may be in effect, so nothing is deleted then.
        if let Err(failure) = self.publish_segments(change, &mut manifest) {
            if let PublishFailure::NotPublished(_) = &failure {
                self.discard(std::slice::from_ref(&merged));
            }
            self.state.write().manifest.next_segment_id = manifest.next_segment_id;
            return Err(failure.into_error());
        }
        {
            let mut state = self.state.write();
            let mut segments: Vec<_> = state
                .segments
                .iter()
                .filter(|s| !removed.contains(&s.entry.segment_id))
                .cloned()
                .collect();
            segments.push(merged);
            state.segments = Arc::new(segments);
            state.manifest = manifest;
        }
        // Readers holding the old segments keep their mappings; the files go now.
        for sealed in chosen {
            if let Some(dir) = sealed.path.parent() {
                remove_segment_files(self, dir, sealed.entry.segment_id)?;
            }
        }
        Ok(true)
    }
}

/// The memory a row decoded from a segment holds (as [`crate::tail::approx_bytes`] counts
/// it, at the texts' lengths): what a merge's bound counts.
fn decoded_size(row: &StoredEvent) -> u64 {
    (std::mem::size_of::<StoredEvent>() + row.event.heap_len_bytes()) as u64
}

/// `rows` in `parts` groups by tenant (a tenant's rows all in one group), in their order.
fn split_by_tenant<'a>(rows: &[&'a StoredEvent], parts: usize) -> Vec<Vec<&'a StoredEvent>> {
    if parts <= 1 {
        return vec![rows.to_vec()];
    }
    let mut out: Vec<Vec<&StoredEvent>> = (0..parts)
        .map(|_| Vec::with_capacity(rows.len() / parts + 1))
        .collect();
    let mut last: Option<(&str, usize)> = None;
    for &row in rows {
        let tenant = row.event.tenant.as_str();
        let part = match last {
            Some((previous, part)) if previous == tenant => part,
            _ => (crate::tail::tenant_hash(tenant) % parts as u64) as usize,
        };
        last = Some((tenant, part));
        out[part].push(row);
    }
    out
}

/// Removes a segment file and every companion file named `{segment_id:016x}.*` (and makes
/// the removal durable, when there was something to remove).
fn remove_segment_files(inner: &Inner, dir: &Path, segment_id: u64) -> Result<()> {
    let prefix = format!("{segment_id:016x}.");
    let vfs = inner.options.vfs.as_ref();
    let mut removed = false;
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let matches = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&prefix));
        if matches {
            if path.is_dir() {
                vfs.remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
            } else {
                vfs.remove_file(&path).map_err(|e| Error::io(&path, e))?;
            }
            removed = true;
        }
    }
    if removed {
        vfs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}
