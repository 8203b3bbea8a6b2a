//! Group commit, pipelined: `append` callers queue their batches; a commit thread writes them to
//! the WAL in groups and sync threads make each group durable, publish it and answer.
//!
//! The commit thread takes every batch queued since its last write, drops idempotent duplicates
//! (against this group, groups written but not yet published, the tail, and segments sealed since
//! the caller looked), assigns `seq`, `tenant_seq` and `received`, frames one record per batch,
//! issues one vectored `write` for the whole group (the batches' events as their callers encoded
//! them, not copied: a caller encodes its batch after queuing it, while the commit thread plans
//! the group, which waits for the encoding only to write) and hands the group to the sync threads at once; only then does it build
//! what publishing the group needs (its tail chunk of stored events, their tenant index), while
//! the fsync runs. A sync thread takes every group written so far and issues one `fdatasync`
//! covering them; then, in the order the groups were taken, it puts their events in the tail
//! (visible to readers), tells the subscribers, and only then wakes the callers. While a sync
//! thread waits for the disk, the
//! commit thread already writes the next group and another sync thread starts its fsync
//! (`StoreOptions::wal_syncs_in_flight`, 2 by default): the disk is kept busy, a group does not
//! wait for the previous group's fsync to finish before its own starts, and the CPU work of a
//! group overlaps the previous group's fsync.
//!
//! A failed write or fsync poisons the writer: the groups not yet acknowledged fail, nothing of
//! them becomes visible, and every later append fails until the store is reopened.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::{AppendResult, Duplicate, Inner};
use crate::error::{Error, Result};
use crate::event::{Event, StoredEvent};
use crate::io::SyncHandle;
use crate::tail::{Chunk, KeyMap, TenantIndex};
use crate::wal::format::{
    encode_batch_header, encode_events, encode_record_header, BatchHeader, RECORD_HEADER_BYTES,
};
use crate::wal::writer::{DurableMark, Poison};
use crate::wal::WalWriter;

/// Most memory of batches waiting for the commit thread (their events' approximate size in the
/// tail); callers wait beyond it.
pub(crate) const QUEUE_BYTES_MAX: usize = 64 << 20;

/// Keys of a group's map kept between groups (1 MiB of table); a larger map left by a burst is
/// dropped once groups are small again.
const GROUP_KEYS_KEPT: usize = 1 << 15;

/// Most groups written and waiting for their fsync; the commit thread waits beyond it.
const SYNC_QUEUE_GROUPS_MAX: usize = 8;

/// A batch waiting to be committed.
pub(crate) struct Request {
    /// Shared with the caller while it encodes them; the caller lets go before it fills
    /// `encoded`.
    pub events: Arc<Vec<Event>>,
    /// The events encoded as a record payload carries them, by the caller after it queued the
    /// request: the commit thread plans the batch meanwhile, and waits for it only to write.
    pub encoded: Arc<EncodedSlot>,
    /// Idempotency-key hash of each event, 0 for an event without `id` (caller-computed).
    pub key_hashes: Vec<u64>,
    /// Approximate memory of the events once in the tail (caller-computed).
    pub bytes: u64,
    /// Keys already found in sealed segments by the caller: event index -> seq.
    pub sealed_duplicates: Vec<Duplicate>,
    /// The caller checked sealed segments with ids up to this one; newer ones are checked here.
    pub checked_segment_id_max: u64,
    /// [`super::AppendHints::server_timestamp_us`]: where sealed copies may be.
    pub server_timestamp_us: Option<i64>,
    pub reply: Answer,
}

/// A value one thread hands to another that waits for it: a batch's encoding (caller to
/// commit thread), a written group's body (commit thread to sync thread), an append's answer
/// (sync thread to caller).
pub(crate) struct Handoff<T> {
    slot: Mutex<Option<T>>,
    ready: Condvar,
}

impl<T> Default for Handoff<T> {
    fn default() -> Self {
        Handoff {
            slot: Mutex::new(None),
            ready: Condvar::new(),
        }
    }
}

impl<T> Handoff<T> {
    fn put(&self, value: T) {
        *self.slot.lock() = Some(value);
        self.ready.notify_all();
    }

    /// Waits for the value.
    pub fn take(&self) -> T {
        let mut slot = self.slot.lock();
        loop {
            if let Some(value) = slot.take() {
                return value;
            }
            self.ready.wait(&mut slot);
        }
    }
}

/// The giving side of a [`Handoff`] of an `Option`: hands over `None` if it is dropped before
/// it handed anything (its thread panicked), so that the taker does not wait for ever.
pub(crate) struct FillOnDrop<T>(Option<Arc<Handoff<Option<T>>>>);

impl<T> FillOnDrop<T> {
    pub fn new(handoff: Arc<Handoff<Option<T>>>) -> Self {
        FillOnDrop(Some(handoff))
    }

    pub fn fill(mut self, value: T) {
        if let Some(handoff) = self.0.take() {
            handoff.put(Some(value));
        }
    }
}

impl<T> Drop for FillOnDrop<T> {
    fn drop(&mut self) {
        if let Some(handoff) = self.0.take() {
            handoff.put(None);
        }
    }
}

/// Where a caller leaves its batch's encoding for the commit thread. `None` means the caller
/// gave up (it panicked while encoding): the commit thread encodes the events itself.
pub(crate) type EncodedSlot = Handoff<Option<Vec<u8>>>;

/// Where the commit pipeline leaves a request's answer.
pub(crate) type Reply = Handoff<Result<AppendResult>>;

/// The pipeline's side of a [`Reply`]: answered once, by [`Answer::send`]. One dropped
/// unanswered (the commit thread panicked while it held it) answers with an error, so that no
/// caller waits for ever.
pub(crate) struct Answer {
    reply: Option<Arc<Reply>>,
    /// Poisoned before an unanswered drop answers, so that a caller woken by it finds the store
    /// refusing writes ([`super::Store::write_failure`]).
    poison: Poison,
}

impl Answer {
    pub fn new(reply: Arc<Reply>, poison: Poison) -> Self {
        Answer {
            reply: Some(reply),
            poison,
        }
    }

    pub fn send(mut self, result: Result<AppendResult>) {
        if let Some(reply) = self.reply.take() {
            reply.put(result);
        }
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        if let Some(reply) = self.reply.take() {
            let error = Error::Poisoned {
                cause: "the commit pipeline failed before answering (a panic)".into(),
            };
            self.poison.set(&error);
            reply.put(Err(error));
        }
    }
}

/// The queue between callers and the commit thread.
#[derive(Default)]
pub(crate) struct Queue {
    pub requests: Vec<Request>,
    pub bytes: usize,
    pub closed: bool,
}

/// A group written to the WAL, waiting to be made durable and published. It is handed to the
/// sync threads as soon as it is written, so that its fsync starts at once; what publishing it
/// needs ([`GroupBody`]) follows while the fsync runs.
pub(crate) struct WrittenGroup {
    /// Fsyncs the file the group was written to (named in errors).
    sync: Arc<dyn SyncHandle>,
    file: std::path::PathBuf,
    /// The file's durable mark, raised to `end` once an fsync covering the group completes.
    durable: DurableMark,
    /// Length of the file once the group was written.
    end: u64,
    needs_sync: bool,
    body: Arc<BodySlot>,
}

/// What publishing a written group needs, built by the commit thread while the group's fsync
/// runs.
struct GroupBody {
    /// The stored events, in seq order (empty when every event was a duplicate).
    chunk: Chunk,
    key_hashes: Vec<u64>,
    bytes: u64,
    /// The chunk's tenant index, for the tail and the subscribers.
    tenants: Arc<TenantIndex>,
    replies: Vec<(Answer, AppendResult)>,
}

/// Where the commit thread leaves a written group's [`GroupBody`] for the sync thread that
/// publishes it. `None` means the commit thread gave up on the body (it panicked): the take
/// then fails (its callers were answered with an error as their [`Answer`]s were dropped).
type BodySlot = Handoff<Option<GroupBody>>;

/// The queue between the commit thread and the sync threads.
#[derive(Default)]
pub(crate) struct SyncQueue {
    pub groups: VecDeque<WrittenGroup>,
    pub closed: bool,
    /// Sync threads between taking groups and publishing them.
    pub syncing: usize,
    /// Tickets number the takes of groups in write order ...
    pub next_ticket: u64,
    /// ... and this one publishes next.
    pub turn: u64,
    /// Why an earlier take's fsync failed: every later take fails too.
    pub failed: Option<String>,
}

/// State only the commit thread changes while it writes (the sealer borrows the WAL briefly).
pub(crate) struct CommitState {
    pub wal: WalWriter,
    pub next_seq: u64,
    /// Last `tenant_seq` assigned per tenant.
    pub tenant_seqs: HashMap<String, u64>,
    /// Groups written but perhaps not yet published, oldest first, with each event's key hash
    /// (0: no `id`), and their keys (key hash -> seq), so a retry racing its original is still
    /// caught.
    pub inflight: VecDeque<(Chunk, Vec<u64>)>,
    pub inflight_keys: KeyMap<u64>,
    /// Keys stored by earlier batches of the group being planned: key hash -> (request, event,
    /// seq). Kept between groups, emptied, so that its table is not grown (rehashed, its new
    /// memory faulted in) from nothing for every group.
    group_keys: KeyMap<(usize, usize, u64)>,
}

impl CommitState {
    pub fn new(wal: WalWriter, next_seq: u64, tenant_seqs: HashMap<String, u64>) -> Self {
        Self {
            wal,
            next_seq,
            tenant_seqs,
            inflight: VecDeque::new(),
            inflight_keys: KeyMap::default(),
            group_keys: KeyMap::default(),
        }
    }

    /// Forgets in-flight groups the tail now holds (`published` is the tail's last seq).
    fn prune_inflight(&mut self, published: u64) {
        while let Some((chunk, _)) = self.inflight.front() {
            if chunk.last().is_some_and(|e| e.seq > published) {
                break;
            }
            let (chunk, hashes) = self.inflight.pop_front().expect("front exists");
            for (event, hash) in chunk.iter().zip(hashes) {
                if event.event.id.is_some() && self.inflight_keys.get(&hash) == Some(&event.seq) {
                    self.inflight_keys.remove(&hash);
                }
            }
        }
    }

    /// The seq of an in-flight event with this key, checked exactly.
    fn find_inflight(&self, hash: u64, tenant: &str, id: &str) -> Option<u64> {
        let seq = *self.inflight_keys.get(&hash)?;
        let index = self
            .inflight
            .partition_point(|(c, _)| c.last().is_some_and(|e| e.seq < seq));
        let (chunk, _) = self.inflight.get(index)?;
        let event = chunk.get(usize::try_from(seq - chunk.first()?.seq).ok()?)?;
        (event.event.tenant == tenant && event.event.id.as_deref() == Some(id)).then_some(seq)
    }
}

impl Inner {
    /// Runs `work`; if it panics, poisons the writer with `cause` (the panic's own message went
    /// to stderr) instead of letting the panic end the thread.
    fn survive_panic(&self, cause: &str, work: impl FnOnce()) {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).is_err() {
            self.poison.set(&Error::Poisoned {
                cause: cause.into(),
            });
        }
    }

    /// The commit thread's loop: runs until the queue is closed and drained, then closes the
    /// sync queue.
    pub(crate) fn commit_loop(self: &Arc<Self>) {
        let interval = match self.options.durability {
            super::Durability::Sync => None,
            super::Durability::Interval(interval) => Some(interval),
        };
        let mut last_sync = Instant::now();
        loop {
            let requests = {
                let mut queue = self.queue.lock();
                while queue.requests.is_empty() && !queue.closed {
                    match interval {
                        Some(interval) => {
                            let timeout = interval.saturating_sub(last_sync.elapsed());
                            if self
                                .queue_ready
                                .wait_for(&mut queue, timeout.max(Duration::from_millis(1)))
                                .timed_out()
                            {
                                break;
                            }
                        }
                        None => self.queue_ready.wait(&mut queue),
                    }
                }
                if queue.requests.is_empty() && queue.closed {
                    break;
                }
                queue.bytes = 0;
                std::mem::take(&mut queue.requests)
            };
            self.queue_room.notify_all();
            // A panic here (a bug) fails the group's callers (their answers are dropped) and
            // poisons the writer: nothing more is written until the store is reopened, which
            // recovers what the WAL holds. The thread lives on to answer later callers.
            self.survive_panic("the commit thread panicked", || {
                if let Some(interval) = interval {
                    if last_sync.elapsed() >= interval {
                        let mut commit = self.commit.lock();
                        if commit.wal.unsynced_bytes() > 0 {
                            // A failed interval sync poisons the writer; the next group
                            // reports it.
                            let _ = commit.wal.sync();
                        }
                        last_sync = Instant::now();
                    }
                }
                if !requests.is_empty() {
                    self.commit_group(requests, interval.is_none());
                }
            });
        }
        self.survive_panic("the commit thread panicked", || {
            let mut commit = self.commit.lock();
            if commit.wal.unsynced_bytes() > 0 && interval.is_some() {
                let _ = commit.wal.sync();
            }
        });
        self.sync_queue.lock().closed = true;
        self.sync_ready.notify_all();
    }

    /// Plans, frames and writes one group, then hands it to the sync thread.
    fn commit_group(self: &Arc<Self>, requests: Vec<Request>, sync: bool) {
        let mut commit = self.commit.lock();
        if let Err(error) = commit.wal.check_poisoned() {
            for request in requests {
                request.reply.send(Err(clone_error(&error)));
            }
            return;
        }
        let received_us = now_us();
        let first_seq_of_group = commit.next_seq;
        let mut next_seq = first_seq_of_group;
        // Keys stored by earlier batches of this group: key hash -> (request, event, seq).
        let mut group_keys = std::mem::take(&mut commit.group_keys);
        let events: usize = requests.iter().map(|r| r.events.len()).sum();
        if group_keys.capacity() > (4 * events).max(GROUP_KEYS_KEPT) {
            // After a burst of large groups: not kept at its largest for the store's life.
            group_keys = KeyMap::default();
        }
        group_keys.clear();
        group_keys.reserve(events);
        let mut planned: Vec<Planned> = Vec::with_capacity(requests.len());
        {
            let state = self.state.read();
            // Under the state lock, the published seq and the tail agree.
            commit.prune_inflight(self.published_seq.load(Ordering::Acquire));
            for request in requests {
                let request_index = planned.len();
                // Segments sealed after the caller looked: usually none.
                let newer: Vec<_> = state
                    .segments
                    .iter()
                    .filter(|s| s.entry.segment_id > request.checked_segment_id_max)
                    .cloned()
                    .collect();
                // Their copies of the batch's keys, looked up before anything of the request is
                // planned: a segment that cannot be read fails the request (as the caller's own
                // lookup would have), instead of letting a duplicate through.
                let in_newer = match self.find_in_newer(&newer, &request) {
                    Ok(found) => found,
                    Err(error) => {
                        request.reply.send(Err(error));
                        continue;
                    }
                };
                let mut duplicates = request.sealed_duplicates;
                // Indexes the caller found in sealed segments, ascending.
                let sealed: Vec<usize> = duplicates.iter().map(|d| d.index).collect();
                let mut known = sealed.into_iter().peekable();
                let mut keep = Vec::with_capacity(request.events.len());
                let mut tenant_seqs = Vec::with_capacity(request.events.len());
                for (index, event) in request.events.iter().enumerate() {
                    if known.next_if_eq(&index).is_some() {
                        continue;
                    }
                    if let Some(id) = &event.id {
                        let hash = request.key_hashes[index];
                        let in_group = group_keys.get(&hash).and_then(|&(r, e, seq)| {
                            let other = if r == request_index {
                                &request.events[e]
                            } else {
                                &planned[r].events[e]
                            };
                            (other.tenant == event.tenant && other.id == event.id).then_some(seq)
                        });
                        let existing = in_group
                            .or_else(|| commit.find_inflight(hash, &event.tenant, id))
                            .or_else(|| state.tail.find_key_hashed(hash, &event.tenant, id))
                            .or_else(|| in_newer.get(index).copied().flatten());
                        if let Some(seq) = existing {
                            duplicates.push(Duplicate { index, seq });
                            continue;
                        }
                        group_keys
                            .entry(hash)
                            .or_insert((request_index, index, next_seq));
                    }
                    keep.push(index);
                    next_seq += 1;
                    let counter = match commit.tenant_seqs.get_mut(event.tenant.as_str()) {
                        Some(counter) => counter,
                        None => commit
                            .tenant_seqs
                            .entry(event.tenant.to_string())
                            .or_insert(0),
                    };
                    *counter += 1;
                    tenant_seqs.push(*counter);
                }
                duplicates.sort_by_key(|d| d.index);
                planned.push(Planned {
                    events: request.events,
                    encoded: request.encoded,
                    key_hashes: request.key_hashes,
                    bytes: request.bytes,
                    keep,
                    tenant_seqs,
                    duplicates,
                    reply: request.reply,
                });
            }
        }

        commit.group_keys = group_keys;
        let stored_count = next_seq - first_seq_of_group;
        let result = if stored_count == 0 {
            Ok(())
        } else {
            self.write_group(&mut commit, &planned, first_seq_of_group, received_us, sync)
        };
        if let Err(error) = result {
            // Nothing of the group is acknowledged. The writer is poisoned now, so the advanced
            // tenant counters are never used: a reopen recomputes them from what is durable.
            debug_assert!(commit.wal.check_poisoned().is_err());
            drop(commit);
            for plan in planned {
                plan.reply.send(Err(clone_error(&error)));
            }
            return;
        }
        commit.next_seq = next_seq;
        let body = Arc::new(BodySlot::default());
        let group = WrittenGroup {
            sync: commit.wal.sync_handle(),
            file: commit.wal.path().to_path_buf(),
            durable: commit.wal.durable_mark(),
            end: commit.wal.current_file_bytes(),
            needs_sync: sync && stored_count > 0,
            body: Arc::clone(&body),
        };
        drop(commit);
        // The fsync starts now; the rest of this group's work overlaps it.
        let guard = FillOnDrop::new(body);
        {
            let mut queue = self.sync_queue.lock();
            while queue.groups.len() >= SYNC_QUEUE_GROUPS_MAX {
                self.sync_room.wait(&mut queue);
            }
            queue.groups.push_back(group);
        }
        self.sync_ready.notify_one();

        let mut stored = Vec::with_capacity(stored_count as usize);
        let mut key_hashes = Vec::with_capacity(stored_count as usize);
        let mut bytes = 0;
        let mut replies = Vec::with_capacity(planned.len());
        let mut seq = first_seq_of_group;
        for plan in planned {
            let first = seq;
            let accepted = plan.keep.len();
            // Duplicates are rare: count the whole request's memory.
            bytes += plan.bytes;
            key_hashes.extend(plan.keep.iter().map(|&i| plan.key_hashes[i]));
            // The caller let go of the events before it handed over their encoding, which the
            // write waited for; a clone is only the fallback of a caller that panicked.
            let kept = if accepted == 0 {
                Vec::new()
            } else {
                let events =
                    Arc::try_unwrap(plan.events).unwrap_or_else(|shared| (*shared).clone());
                kept_events(events, &plan.keep)
            };
            for (event, &tenant_seq) in kept.into_iter().zip(&plan.tenant_seqs) {
                stored.push(StoredEvent {
                    seq,
                    tenant_seq,
                    received_us,
                    event,
                });
                seq += 1;
            }
            replies.push((
                plan.reply,
                AppendResult {
                    accepted,
                    first_seq: (accepted > 0).then_some(first),
                    last_seq: (accepted > 0).then_some(seq - 1),
                    duplicates: plan.duplicates,
                },
            ));
        }
        let chunk: Chunk = Arc::new(stored);
        if !chunk.is_empty() {
            // Before the next group is planned (by this thread): a retry of these events in it
            // is caught, whether or not this group is published by then.
            let mut commit = self.commit.lock();
            for (event, &hash) in chunk.iter().zip(&key_hashes) {
                if event.event.id.is_some() {
                    commit.inflight_keys.insert(hash, event.seq);
                }
            }
            commit
                .inflight
                .push_back((Arc::clone(&chunk), key_hashes.clone()));
        }
        let tenants = Arc::new(TenantIndex::of(&chunk));
        guard.fill(GroupBody {
            chunk,
            key_hashes,
            bytes,
            tenants,
            replies,
        });
    }

    /// A sync thread's loop, until the commit thread closes the queue and it is drained: take
    /// every group written so far, fsync, then (in the order the groups were taken) publish and
    /// answer. `StoreOptions::wal_syncs_in_flight` threads run it, so the next groups' fsync
    /// is already under way while the disk finishes the previous one.
    pub(crate) fn sync_loop(self: &Arc<Self>, poison: Poison) {
        let syncs_in_flight = self.options.wal_syncs_in_flight.max(1);
        loop {
            let (ticket, groups) = {
                let mut queue = self.sync_queue.lock();
                loop {
                    if !queue.groups.is_empty() && queue.syncing < syncs_in_flight {
                        break;
                    }
                    if queue.groups.is_empty() && queue.closed {
                        return;
                    }
                    self.sync_ready.wait(&mut queue);
                }
                queue.syncing += 1;
                let ticket = queue.next_ticket;
                queue.next_ticket += 1;
                let groups: Vec<WrittenGroup> = queue.groups.drain(..).collect();
                (ticket, groups)
            };
            self.sync_room.notify_all();
            // A panic in the fsync or while taking the bodies (a bug) fails this take (its
            // callers' answers are dropped) and poisons the writer; the turn still passes on.
            let (synced, bodies) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.sync_and_take_bodies(&groups, &poison)
            }))
            .unwrap_or_else(|_| {
                let error = Error::Poisoned {
                    cause: "a WAL sync thread panicked".into(),
                };
                poison.set(&error);
                (Err(error), Vec::new())
            });
            // Publish in the order the groups were written: wait for the groups taken before.
            let synced = {
                let mut queue = self.sync_queue.lock();
                while queue.turn != ticket {
                    self.sync_turn.wait(&mut queue);
                }
                match synced {
                    Err(error) => {
                        queue.failed = Some(error.to_string());
                        Err(error)
                    }
                    // After a failed fsync the kernel may have dropped the failed groups'
                    // pages, and this later fsync, though it succeeded, cannot vouch for the
                    // log before its groups: they fail too. (A write failure after this fsync
                    // poisons the writer but does not undo it: these groups are published.)
                    Ok(()) => match &queue.failed {
                        Some(cause) => Err(Error::Poisoned {
                            cause: cause.clone(),
                        }),
                        None => {
                            // Records framed from now on say these groups are durable (see
                            // wal::format): recovery then reports damage to them as corruption
                            // instead of cutting it as a torn write.
                            if let Some(newest) = groups.iter().rev().find(|g| g.needs_sync) {
                                newest.durable.raise(newest.end);
                            }
                            Ok(())
                        }
                    },
                }
            };
            // A panic while publishing (a subscriber's, say) fails the callers not answered yet
            // and poisons the writer; the turn still passes on.
            self.survive_panic("a WAL sync thread panicked while publishing", || {
                self.publish(bodies, synced)
            });
            {
                let mut queue = self.sync_queue.lock();
                queue.turn += 1;
                queue.syncing -= 1;
            }
            self.sync_turn.notify_all();
            self.sync_ready.notify_all();
        }
    }

    /// One fdatasync of the newest group's file (it covers every group before it: a rotation
    /// fsyncs the file it closes), then what publishing needs, built by the commit thread
    /// during the fsync. A missing body (the commit thread panicked while building it) fails
    /// this take and poisons the writer: its seqs can never be published in order.
    fn sync_and_take_bodies(
        &self,
        groups: &[WrittenGroup],
        poison: &Poison,
    ) -> (Result<()>, Vec<GroupBody>) {
        let mut synced = match groups.iter().rev().find(|g| g.needs_sync) {
            Some(newest) => poison.check().and_then(|()| {
                let started = Instant::now();
                let synced = newest.sync.sync_data();
                self.metrics.fsync.record(started.elapsed());
                crate::io::note_foreground_sync();
                synced.map_err(|e| {
                    let error = Error::io(&newest.file, e);
                    poison.set(&error);
                    error
                })
            }),
            None => poison.check(),
        };
        let mut bodies = Vec::with_capacity(groups.len());
        for group in groups {
            match group.body.take() {
                Some(body) => bodies.push(body),
                None if synced.is_ok() => {
                    let error = Error::Poisoned {
                        cause: "the commit thread failed while building a written group".into(),
                    };
                    poison.set(&error);
                    synced = Err(error);
                }
                None => {}
            }
        }
        (synced, bodies)
    }

    /// Puts synced groups in the tail, tells the subscribers and answers the callers; or, when
    /// the sync failed, answers them with the error.
    fn publish(&self, bodies: Vec<GroupBody>, synced: Result<()>) {
        if let Err(error) = synced {
            for body in bodies {
                for (reply, _) in body.replies {
                    reply.send(Err(clone_error(&error)));
                }
            }
            return;
        }
        {
            let mut state = self.state.write();
            for body in &bodies {
                if let Some(last) = body.chunk.last() {
                    state.tail.push_indexed(
                        Arc::clone(&body.chunk),
                        body.bytes,
                        &body.key_hashes,
                        Arc::clone(&body.tenants),
                    );
                    self.published_seq.store(last.seq, Ordering::Release);
                }
            }
        }
        let appended: usize = bodies.iter().map(|b| b.chunk.len()).sum();
        self.metrics
            .events_appended
            .fetch_add(appended as u64, Ordering::Relaxed);
        let subscribers = self.subscribers.read();
        for body in bodies {
            let last = body.chunk.last().map(|e| e.seq);
            if last.is_some() {
                for subscriber in subscribers.iter() {
                    subscriber(&body.chunk, &body.tenants);
                }
            }
            for (reply, result) in body.replies {
                reply.send(Ok(result));
            }
            // After the answers: a seq at most this one was answered before anyone reads it.
            if let Some(last) = last {
                self.acknowledged_seq.store(last, Ordering::Release);
            }
        }
    }

    /// The seq of each of `request`'s events whose key is in one of `newer` (segments sealed
    /// after the caller looked); empty when there are none.
    fn find_in_newer(
        &self,
        newer: &[Arc<super::SealedSegment>],
        request: &Request,
    ) -> Result<Vec<Option<u64>>> {
        if newer.is_empty() {
            return Ok(Vec::new());
        }
        request
            .events
            .iter()
            .map(|event| {
                let Some(id) = &event.id else { return Ok(None) };
                let stamped_here = request.server_timestamp_us == Some(event.timestamp_us);
                super::find_key_in(newer, &event.tenant, id, |s| {
                    self.may_hold_copy(&s.entry.partition, event, stamped_here)
                })
            })
            .collect()
    }

    /// Frames the group's records and writes them with one vectored `write` (fsynced here only
    /// in the tests' direct path; the pipeline fsyncs on the sync thread).
    fn write_group(
        &self,
        commit: &mut CommitState,
        planned: &[Planned],
        first_seq: u64,
        received_us: i64,
        _sync: bool,
    ) -> Result<()> {
        commit.wal.rotate_if_full(first_seq)?;
        let salt = commit.wal.salt();
        let durable_through = commit.wal.durable_through();
        // Each caller's encoding (usually finished while the group was planned). A batch with
        // duplicates has its kept events encoded again here; the others are written from
        // where the caller encoded them.
        let encodings: Vec<Vec<u8>> = planned
            .iter()
            .map(|plan| {
                let encoded = plan.encoded.take();
                if !plan.keep.is_empty() && plan.keep.len() != plan.events.len() {
                    let kept: Vec<Event> =
                        plan.keep.iter().map(|&i| plan.events[i].clone()).collect();
                    encode_events(&kept)
                } else {
                    encoded.unwrap_or_else(|| encode_events(&plan.events))
                }
            })
            .collect();
        // Per record: its frame and batch headers in one small buffer, then its events.
        let mut records: Vec<(Vec<u8>, &[u8])> = Vec::with_capacity(planned.len());
        let mut seq = first_seq;
        for (plan, events) in planned.iter().zip(&encodings) {
            if plan.keep.is_empty() {
                continue;
            }
            let header = encode_batch_header(&BatchHeader {
                first_seq: seq,
                received_us,
                tenant_seqs: plan.tenant_seqs.clone(),
            });
            let mut head = Vec::with_capacity(RECORD_HEADER_BYTES + header.len());
            encode_record_header(salt, durable_through, &[&header, events], &mut head);
            head.extend_from_slice(&header);
            records.push((head, events));
            seq += plan.keep.len() as u64;
        }
        let parts: Vec<&[u8]> = records
            .iter()
            .flat_map(|(head, events)| [&head[..], events])
            .collect();
        commit.wal.write_parts(&parts)
    }
}

struct Planned {
    events: Arc<Vec<Event>>,
    encoded: Arc<EncodedSlot>,
    key_hashes: Vec<u64>,
    bytes: u64,
    keep: Vec<usize>,
    tenant_seqs: Vec<u64>,
    duplicates: Vec<Duplicate>,
    reply: Answer,
}

/// The events at `keep` (ascending indexes) of a batch.
fn kept_events(events: Vec<Event>, keep: &[usize]) -> Vec<Event> {
    if keep.len() == events.len() {
        // No duplicates (the usual case): every event moves once.
        return events;
    }
    let mut events: Vec<Option<Event>> = events.into_iter().map(Some).collect();
    keep.iter()
        .map(|&index| events[index].take().expect("each index kept once"))
        .collect()
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Errors are not `Clone` (they hold `io::Error`); every caller of a failed group gets an
/// equivalent one.
pub(crate) fn clone_error(error: &Error) -> Error {
    match error {
        Error::DiskFull { path } => Error::DiskFull { path: path.clone() },
        Error::Poisoned { cause } => Error::Poisoned {
            cause: cause.clone(),
        },
        Error::Io { path, source } => Error::Io {
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        other => Error::Poisoned {
            cause: other.to_string(),
        },
    }
}
