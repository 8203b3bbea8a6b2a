//! Group commit: one thread owns the WAL writer; `append` callers queue their batches and wait.
//!
//! The commit thread takes every batch queued since its last write, drops idempotent duplicates,
//! assigns `seq`, `tenant_seq` and `received`, frames one record per batch, issues one `write` and
//! one `fdatasync` for the whole group, puts the events in the tail (visible to readers), tells
//! the subscribers, and only then wakes the callers. A failed write or fsync poisons the writer:
//! the whole group fails and nothing of it is acknowledged or visible.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::{AppendResult, Duplicate, Inner};
use crate::error::{Error, Result};
use crate::event::{Event, StoredEvent};
use crate::tail::KeyMap;
use crate::wal::format::{encode_events, encode_payload, encode_record, BatchHeader};
use crate::wal::WalWriter;

/// Most bytes of encoded batches waiting for the commit thread; callers wait beyond it.
pub(crate) const QUEUE_BYTES_MAX: usize = 64 << 20;

/// A batch waiting to be committed.
pub(crate) struct Request {
    pub events: Vec<Event>,
    /// The events encoded as a record payload carries them (done by the caller, in parallel).
    pub encoded: Vec<u8>,
    /// Idempotency-key hash of each event, 0 for an event without `id` (caller-computed).
    pub key_hashes: Vec<u64>,
    /// Approximate memory of the events once in the tail (caller-computed).
    pub bytes: u64,
    /// Keys already found in sealed segments by the caller: event index -> seq.
    pub sealed_duplicates: Vec<Duplicate>,
    /// The caller checked sealed segments with ids up to this one; newer ones are checked here.
    pub checked_segment_id_max: u64,
    pub reply: Arc<Reply>,
}

/// Where the commit thread leaves a request's answer.
#[derive(Default)]
pub(crate) struct Reply {
    slot: Mutex<Option<Result<AppendResult>>>,
    ready: Condvar,
}

impl Reply {
    pub fn send(&self, result: Result<AppendResult>) {
        *self.slot.lock() = Some(result);
        self.ready.notify_one();
    }

    pub fn wait(&self) -> Result<AppendResult> {
        let mut slot = self.slot.lock();
        loop {
            if let Some(result) = slot.take() {
                return result;
            }
            self.ready.wait(&mut slot);
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

/// State only the commit thread changes while it writes (the sealer borrows the WAL briefly).
pub(crate) struct CommitState {
    pub wal: WalWriter,
    pub next_seq: u64,
    /// Last `tenant_seq` assigned per tenant.
    pub tenant_seqs: HashMap<String, u64>,
}

impl Inner {
    /// The commit thread's loop: runs until the queue is closed and drained.
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
            if let Some(interval) = interval {
                if last_sync.elapsed() >= interval {
                    let mut commit = self.commit.lock();
                    if commit.wal.unsynced_bytes() > 0 {
                        // A failed interval sync poisons the writer; the next group reports it.
                        let _ = commit.wal.sync();
                    }
                    last_sync = Instant::now();
                }
            }
            if !requests.is_empty() {
                self.commit_group(requests, interval.is_none());
            }
        }
        let mut commit = self.commit.lock();
        if commit.wal.unsynced_bytes() > 0 {
            let _ = commit.wal.sync();
        }
    }

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
        let mut group_keys: KeyMap<(usize, usize, u64)> = KeyMap::default();
        let mut planned: Vec<Planned> = Vec::with_capacity(requests.len());
        {
            let state = self.state.read();
            for request in requests {
                let request_index = planned.len();
                // Segments sealed after the caller looked: usually none.
                let newer: Vec<_> = state
                    .segments
                    .iter()
                    .filter(|s| s.entry.segment_id > request.checked_segment_id_max)
                    .cloned()
                    .collect();
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
                            .or_else(|| state.tail.find_key_hashed(hash, &event.tenant, id))
                            .or_else(|| {
                                super::find_key_in(&newer, &event.tenant, id, |_| true)
                                    .ok()
                                    .flatten()
                            });
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
                    let counter = match commit.tenant_seqs.get_mut(&event.tenant) {
                        Some(counter) => counter,
                        None => commit.tenant_seqs.entry(event.tenant.clone()).or_insert(0),
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

        let stored_count: u64 = planned.iter().map(|p| p.keep.len() as u64).sum();
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
        commit.next_seq = first_seq_of_group + stored_count;
        drop(commit);

        let mut stored = Vec::with_capacity(stored_count as usize);
        let mut stored_hashes = Vec::with_capacity(stored_count as usize);
        let mut stored_bytes = 0;
        let mut results = Vec::with_capacity(planned.len());
        let mut seq = first_seq_of_group;
        for plan in planned {
            let first = seq;
            let accepted = plan.keep.len();
            // Duplicates are rare: count the whole request's memory.
            stored_bytes += plan.bytes;
            stored_hashes.extend(plan.keep.iter().map(|&i| plan.key_hashes[i]));
            let mut events: Vec<Option<Event>> = plan.events.into_iter().map(Some).collect();
            for (&index, &tenant_seq) in plan.keep.iter().zip(&plan.tenant_seqs) {
                let event = events[index].take().expect("each index kept once");
                stored.push(StoredEvent {
                    seq,
                    tenant_seq,
                    received_us,
                    event,
                });
                seq += 1;
            }
            results.push((
                plan.reply,
                AppendResult {
                    accepted,
                    first_seq: (accepted > 0).then_some(first),
                    last_seq: (accepted > 0).then_some(seq - 1),
                    duplicates: plan.duplicates,
                },
            ));
        }
        if !stored.is_empty() {
            let chunk = self.publish_commit(stored, stored_bytes, &stored_hashes);
            for subscriber in self.subscribers.read().iter() {
                subscriber(&chunk);
            }
        }
        for (reply, result) in results {
            reply.send(Ok(result));
        }
    }

    fn write_group(
        &self,
        commit: &mut CommitState,
        planned: &[Planned],
        first_seq: u64,
        received_us: i64,
        sync: bool,
    ) -> Result<()> {
        commit.wal.rotate_if_full(first_seq)?;
        let salt = commit.wal.salt();
        let mut records = Vec::with_capacity(planned.iter().map(|p| p.encoded.len() + 64).sum());
        let mut payload = Vec::new();
        let mut seq = first_seq;
        for plan in planned {
            if plan.keep.is_empty() {
                continue;
            }
            let header = BatchHeader {
                first_seq: seq,
                received_us,
                tenant_seqs: plan.tenant_seqs.clone(),
            };
            payload.clear();
            if plan.keep.len() == plan.events.len() {
                encode_payload(&header, &plan.encoded, &mut payload);
            } else {
                let kept: Vec<Event> = plan.keep.iter().map(|&i| plan.events[i].clone()).collect();
                encode_payload(&header, &encode_events(&kept), &mut payload);
            }
            encode_record(salt, &payload, &mut records);
            seq += plan.keep.len() as u64;
        }
        commit.wal.write(&records, sync)
    }
}

struct Planned {
    events: Vec<Event>,
    encoded: Vec<u8>,
    key_hashes: Vec<u64>,
    bytes: u64,
    keep: Vec<usize>,
    tenant_seqs: Vec<u64>,
    duplicates: Vec<Duplicate>,
    reply: Arc<Reply>,
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
