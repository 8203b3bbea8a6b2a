//! The store: opens a data directory, appends batches durably, seals, merges, expires, reads.
//!
//! ```
//! use auditlog_engine::event::{Actor, Event, Resource};
//! use auditlog_engine::store::{Store, StoreOptions};
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(StoreOptions::new(dir.path())).unwrap();
//! let event = Event {
//!     timestamp_us: auditlog_engine::store::now_us(),
//!     tenant: "acct_1".into(),
//!     actor: Actor { id: Some("user_1".into()), ..Actor::default() },
//!     action: "login".into(),
//!     resource: Resource { kind: "account".into(), ..Resource::default() },
//!     ..Event::default()
//! };
//! let result = store.append(vec![event]).unwrap();
//! assert_eq!(result.first_seq, Some(1));
//! assert_eq!(store.get(1).unwrap().unwrap().tenant_seq, 1);
//! ```
//!
//! Layout of a data directory:
//!
//! ```text
//! LOCK                                  flock'ed by the owning process
//! MANIFEST                              published segments, sealed seq, tenant counters
//! wal/{first_seq:020}.wal               write-ahead log files
//! wal/{first_seq:020}.spare             sealed WAL files kept to be written over
//! segments/{class}/{yyyy-mm-dd}/{id:016x}.seg   sealed segments (+ index files {id:016x}.*)
//! ```

mod commit;
mod metrics;
pub(crate) mod open;
mod options;
pub mod pacing;
mod publish;
mod retention;
mod seal;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

pub use commit::now_us;
pub use metrics::{LatencyHistogram, StoreMetrics, LATENCY_BUCKETS_US};
pub use options::{Durability, StoreOptions};
pub use retention::RetentionReport;

use crate::error::{Error, Result};
use crate::event::{Event, StoredEvent};
use crate::manifest::{Manifest, SegmentEntry};
use crate::segment::Segment;
use crate::tail::{key_hash, Chunk, Tail, TailSnapshot, TenantIndex};
use commit::{CommitState, Queue, Reply, Request, SyncQueue, QUEUE_BYTES_MAX};

/// What a [`SegmentHook`] attaches to an open segment (the search crate's open indexes); readers
/// find it in [`SealedSegment::attachment`] and downcast it.
pub type Attachment = Arc<dyn std::any::Any + Send + Sync>;

/// Builds and opens companion files of a segment (the search crate's indexes). Files it writes
/// must be inside `partition_dir` and named `{segment_id:016x}.*` (files or directories), so
/// that merging, retention and orphan cleanup handle them with the segment; it must make them
/// durable itself (the store fsyncs the directory afterwards).
pub trait SegmentHook: Send + Sync {
    /// Called for a new segment (seal or merge) before it is published; a failure fails the
    /// seal or merge, which leaves the store as it was.
    fn segment_written(
        &self,
        partition_dir: &std::path::Path,
        entry: &SegmentEntry,
        segment: &Segment,
    ) -> Result<Option<Attachment>>;

    /// Called for each published segment when the store opens: opens (or, when missing or
    /// unreadable, rebuilds) its companion files.
    fn segment_opened(
        &self,
        partition_dir: &std::path::Path,
        entry: &SegmentEntry,
        segment: &Segment,
    ) -> Result<Option<Attachment>>;

    /// Called instead of [`SegmentHook::segment_opened`] when the store can build missing
    /// companion files in the background (a background thread and
    /// [`StoreOptions::index_deferral`]): opens them when they are there and readable, and
    /// otherwise returns `Ok(None)`, and the store builds them later with
    /// [`SegmentHook::segment_written`] (as for a seal that deferred them), so that opening
    /// after a burst does not wait for them. The default opens or rebuilds them at once.
    fn segment_opened_or_missing(
        &self,
        partition_dir: &std::path::Path,
        entry: &SegmentEntry,
        segment: &Segment,
    ) -> Result<Option<Attachment>> {
        self.segment_opened(partition_dir, entry, segment)
    }

    /// Drops the process's mapped pages of the attachment's files (as
    /// [`crate::io::release_mapped_pages`] does), called with the segment's own pages every
    /// [`StoreOptions::page_release_interval`]. The default does nothing.
    fn release_pages(&self, _attachment: &Attachment) {}
}

/// Called with every committed chunk of events, in seq order, before the appenders are answered,
/// with the chunk's [`TenantIndex`] (the tail's own): a subscriber that wants a few tenants'
/// events visits only theirs.
///
/// ```
/// # use auditlog_engine::store::Subscriber;
/// let print: Subscriber = Box::new(|chunk, tenants| {
///     let acme = tenants.offsets(chunk, "acme").count();
///     println!("{} events, {acme} of them acme's", chunk.len());
/// });
/// ```
pub type Subscriber = Box<dyn Fn(&Chunk, &Arc<TenantIndex>) + Send + Sync>;

/// An event of a batch that was not stored because its `(tenant, id)` key already was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duplicate {
    /// Position of the event in the batch (0-based).
    pub index: usize,
    /// Seq of the stored event with the same key.
    pub seq: u64,
}

/// The answer to [`Store::append`], given once the batch is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendResult {
    /// Events stored (the batch less its duplicates).
    pub accepted: usize,
    /// Seq range of the stored events (consecutive); `None` when nothing was stored.
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub duplicates: Vec<Duplicate>,
}

/// What the caller of [`Store::append_with`] knows about a batch beyond its events.
///
/// ```
/// use auditlog_engine::store::AppendHints;
/// // The HTTP layer stamps events sent without a timestamp with the time it received them.
/// let hints = AppendHints {
///     server_timestamp_us: Some(1_795_000_000_000_000),
///     ..AppendHints::default()
/// };
/// assert!(AppendHints::default().server_timestamp_us.is_none());
/// # let _ = hints;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendHints {
    /// Events whose `timestamp_us` equals this were given it by the caller's receiving layer
    /// (the client sent none), so a retry of such an event carries another timestamp; every
    /// other timestamp is the client's, the same in a retry. `None`: every timestamp is the
    /// client's (as with [`Store::append`]).
    ///
    /// It decides where sealed copies are looked for (idempotency): a retry re-sends the same
    /// event, so an event with a client timestamp can only duplicate a sealed row of a segment
    /// whose time range holds that timestamp; a server-stamped one is looked for in every
    /// segment of its day and of the day before (its original was stamped earlier), in the
    /// partitions of every retention class (a tenant may have moved between classes).
    pub server_timestamp_us: Option<i64>,
    /// A few small events the caller must record whatever the load (a server's record of
    /// access to the log): they do not wait for room in the tail, which they may exceed by
    /// their own size. For anything else, leave it false: the tail's bound is what keeps
    /// memory bounded.
    pub skip_tail_bound: bool,
}

/// A sealed segment published in the manifest, open for reading.
pub struct SealedSegment {
    pub entry: SegmentEntry,
    pub path: PathBuf,
    pub segment: Segment,
    /// SHA-256 of the segment file, as the integrity ledger records it.
    pub sha256: crate::ledger::Hash,
    /// What the store's [`SegmentHook`] opened for this segment, if any.
    pub attachment: Option<Attachment>,
}

impl SealedSegment {
    /// The segment as the integrity ledger records it.
    pub fn digest(&self) -> crate::ledger::SegmentDigest {
        crate::ledger::SegmentDigest {
            segment_id: self.entry.segment_id,
            partition: self.entry.partition.clone(),
            rows: self.entry.rows,
            bytes: self.entry.bytes,
            min_seq: self.entry.min_seq,
            max_seq: self.entry.max_seq,
            min_timestamp_us: self.entry.min_timestamp_us,
            max_timestamp_us: self.entry.max_timestamp_us,
            sha256: self.sha256,
        }
    }
}

/// What [`Store::integrity`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Integrity {
    /// Entries in the integrity ledger.
    pub entries: u64,
    /// The hash of the newest entry (32 zero bytes when there is none).
    pub head: crate::ledger::Hash,
    /// Sealed segments live now.
    pub segments: usize,
}

/// A consistent view of the store: every event with `seq <= sealed_through` is in `segments`
/// and every later acknowledged one in `tail`, each exactly once.
#[derive(Clone)]
pub struct Snapshot {
    pub segments: Arc<Vec<Arc<SealedSegment>>>,
    pub tail: TailSnapshot,
    pub sealed_through: u64,
}

/// A page of [`Store::read_from_seq_of`].
#[derive(Debug, Clone, PartialEq)]
pub struct SeqPage {
    /// The events, in seq order.
    pub events: Vec<StoredEvent>,
    /// Every matching event with a seq from the read's `from` through this one is in `events`:
    /// the last event's seq when the page is full, the store's last seq when it is short (so a
    /// reader of a few tenants knows how far it has read past their last event).
    pub read_through: u64,
}

/// Counters for the admin API and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub last_seq: u64,
    pub sealed_events: u64,
    pub tail_events: u64,
    pub tail_bytes: u64,
    pub segments: u64,
    pub partitions: u64,
    pub tenants: u64,
    pub segment_bytes: u64,
    pub wal_files: u64,
    /// Segments whose indexes are still to be built by the background thread: left for later
    /// by a seal under a burst, or missing at open (see `StoreOptions::index_deferral`).
    pub unindexed_segments: u64,
}

pub(crate) struct State {
    pub tail: Tail,
    pub segments: Arc<Vec<Arc<SealedSegment>>>,
    pub manifest: Manifest,
}

/// The UTC day whose partitions hold a sealed copy of `event`: a retry re-sends the same event,
/// so with the same timestamp, and only that day's segments (not every segment of the store,
/// whose Bloom filters' false positives would each cost a decode) are searched for its key.
/// The tail and in-flight events are searched whatever their timestamp.
fn key_day(event: &Event) -> i32 {
    crate::partition::day_of(event.timestamp_us)
}

pub(crate) fn find_key_in(
    segments: &[Arc<SealedSegment>],
    tenant: &str,
    id: &str,
    wanted: impl Fn(&SealedSegment) -> bool,
) -> Result<Option<u64>> {
    for sealed in segments.iter().filter(|s| wanted(s)) {
        // A segment without the tenant's rows (another class's, or a day the tenant was quiet)
        // is ruled out by its tenant dictionary before the filter is probed.
        if sealed.segment.tenant_rows(tenant).is_some()
            && sealed.segment.may_contain_key(tenant, id)
        {
            if let Some(seq) = sealed.segment.find_key(tenant, id)? {
                return Ok(Some(seq));
            }
        }
    }
    Ok(None)
}

pub(crate) struct Inner {
    pub options: StoreOptions,
    pub state: RwLock<State>,
    pub queue: Mutex<Queue>,
    pub queue_ready: Condvar,
    pub queue_room: Condvar,
    pub commit: Mutex<CommitState>,
    /// Groups written by the commit thread, waiting for the sync thread.
    pub sync_queue: Mutex<SyncQueue>,
    pub sync_ready: Condvar,
    pub sync_room: Condvar,
    /// Wakes the sync threads waiting for their turn to publish.
    pub sync_turn: Condvar,
    /// Last seq in the tail; changed only under the state write lock.
    pub published_seq: AtomicU64,
    /// The last seq whose append was answered (after it was published and its subscribers
    /// told): see [`Store::acknowledged_seq`].
    pub acknowledged_seq: AtomicU64,
    /// Held by whoever changes the set of segments (seal, merge, retention, deferred indexing).
    pub maintenance: Mutex<()>,
    /// The integrity ledger: appended to (under `maintenance`) before every manifest write
    /// that changes the segments.
    pub ledger: Mutex<crate::ledger::Ledger>,
    /// A manifest write failed part way: the next publication writes the in-memory manifest
    /// again first (see `publish.rs`).
    pub manifest_in_doubt: AtomicBool,
    /// Held by a retention pass from start to end (it leaves `maintenance` while it copies a
    /// partition to an archive on another file system).
    pub retention_pass: Mutex<()>,
    /// Ids of published segments whose hook has not run yet (see
    /// `StoreOptions::index_deferral`), each with when its last build failed; ids of segments
    /// merged or expired since are dropped when next looked at.
    pub deferred_index: Mutex<DeferredIndex>,
    /// Segments whose merge failed (one cannot be read, say), with when: merges leave them
    /// for [`MERGE_RETRY`] and go on with the others, instead of failing the same merge
    /// again at every pass while every partition after it waits.
    pub merge_failed: Mutex<HashMap<u64, Instant>>,
    /// Bytes the rows of a segment take decoded (as `crate::tail::approx_bytes` counts them,
    /// at the texts' lengths), for the
    /// segments this process wrote (sealed or merged) or a merge read: merges choose their
    /// inputs so that these stay within a bound (see `Inner::merge_pass`).
    pub merge_decoded: Mutex<HashMap<u64, u64>>,
    /// Partitions a retention pass is copying to the archive (without the maintenance lock):
    /// merges leave them alone, whatever the clock says.
    pub archiving: Mutex<std::collections::HashSet<crate::partition::PartitionKey>>,
    /// The ingest rate and sealing costs that decide when to defer indexing.
    pub pacing: Mutex<pacing::Pacing>,
    pub tail_room_lock: Mutex<()>,
    pub tail_room: Condvar,
    pub subscribers: RwLock<Vec<Subscriber>>,
    pub metrics: StoreMetrics,
    pub shutdown: AtomicBool,
    pub background_lock: Mutex<()>,
    pub background_wake: Condvar,
    /// What the open found in the WAL.
    pub recovery: RecoveryReport,
    /// The WAL writer's poison (shared with it): read without the commit lock.
    pub poison: crate::wal::writer::Poison,
    /// Why the last seal failed, until one succeeds (see [`Store::seal_failure`]).
    pub seal_failure: Mutex<Option<String>>,
    pub _lock_file: File,
}

/// What opening the store found in the WAL (see [`Store::recovery`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Events replayed into the tail (acknowledged, not yet sealed).
    pub replayed_events: u64,
    /// Where a torn tail was cut: the file and the length it was cut to.
    pub truncated: Option<(std::path::PathBuf, u64)>,
    /// Valid records cut with that tail: they were framed after the damaged record, before any
    /// fsync known to cover it had completed, so with [`Durability::Sync`] none of their events
    /// was acknowledged (see `wal::reader::Discarded` for the one case the file cannot tell).
    /// What a power loss with group commit's fsyncs in flight leaves.
    pub discarded: Option<crate::wal::reader::Discarded>,
}

/// How long the background thread leaves a segment whose deferred index build failed before
/// it tries that one again (the other deferred segments are built meanwhile).
const CATCH_UP_RETRY: Duration = Duration::from_secs(10);

/// How long merges leave a segment whose merge failed before trying it again.
pub(crate) const MERGE_RETRY: Duration = Duration::from_secs(600);

/// Time since the machine booted, counting time suspended (Linux `CLOCK_BOOTTIME`): a
/// machine or VM that sleeps for hours has its wall clock move on by as much, which is not
/// the clock running ahead. Elsewhere, the monotonic clock.
fn since_boot() -> Duration {
    #[cfg(target_os = "linux")]
    {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the timespec it is given.
        if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) } == 0 {
            return Duration::new(
                now.tv_sec.max(0) as u64,
                now.tv_nsec.clamp(0, 999_999_999) as u32,
            );
        }
    }
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// Whether the wall clock reads more than [`CLOCK_AHEAD_MAX`] past `started_wall` plus
/// `elapsed` (the time since it was read, suspended time included: see [`since_boot`]).
fn clock_ran_ahead(started_wall: i64, elapsed: Duration, wall: i64) -> bool {
    let expected =
        started_wall.saturating_add(i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX));
    let ahead_max = i64::try_from(CLOCK_AHEAD_MAX.as_micros()).unwrap_or(i64::MAX);
    wall.saturating_sub(expected) > ahead_max
}

/// How far the wall clock may run ahead of the time elapsed since the retention thread
/// started before its passes are skipped (see `Inner::retention_loop`): NTP steps are
/// seconds; an hour is a clock gone wrong.
pub(crate) const CLOCK_AHEAD_MAX: Duration = Duration::from_secs(3600);

/// How long the wall clock must stay more than [`CLOCK_AHEAD_MAX`] ahead before retention
/// takes it as right (see `Inner::retention_loop`): a day, long enough for a wrong clock to
/// be noticed (`auditlog_retention_skipped_clock_total`) and set right.
pub(crate) const CLOCK_AHEAD_TRUSTED: Duration = Duration::from_secs(24 * 3600);

/// Segments published without their indexes: id -> when the last build of them failed.
pub(crate) type DeferredIndex = std::collections::BTreeMap<u64, Option<Instant>>;

/// An open data directory. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Store {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Store {
    /// Opens (or creates) a data directory: reads the manifest, opens and checks every segment,
    /// replays the WAL past the sealed seq (cutting a torn tail) and starts the commit thread and,
    /// unless disabled, the background thread (sealing, merging, deferred index builds) and the
    /// retention thread.
    pub fn open(options: StoreOptions) -> Result<Self> {
        let inner = Arc::new(open::open_inner(options)?);
        let mut threads = Vec::new();
        // A thread named `name` running `work` on the store.
        let spawn = |name: &str, work: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(work)
                .map_err(|e| Error::io(name, e))
        };
        let commit_inner = Arc::clone(&inner);
        threads.push(spawn(
            "auditlog-commit",
            Box::new(move || commit_inner.commit_loop()),
        )?);
        let poison = inner.commit.lock().wal.poison();
        for _ in 0..inner.options.wal_syncs_in_flight.max(1) {
            let (sync_inner, poison) = (Arc::clone(&inner), poison.clone());
            threads.push(spawn(
                "auditlog-sync",
                Box::new(move || sync_inner.sync_loop(poison)),
            )?);
        }
        if inner.options.background {
            let background_inner = Arc::clone(&inner);
            threads.push(spawn(
                "auditlog-seal",
                Box::new(move || background_inner.background_loop()),
            )?);
            // Its own thread: archiving a partition to another file system copies it, which
            // takes time in proportion to its size, and seals must go on meanwhile (the tail
            // fills in seconds under load).
            let retention_inner = Arc::clone(&inner);
            threads.push(spawn(
                "auditlog-retain",
                Box::new(move || retention_inner.retention_loop()),
            )?);
        }
        Ok(Self {
            inner,
            threads: Mutex::new(threads),
        })
    }

    /// What this open found in the WAL: events replayed, a torn tail cut and what was cut with
    /// it. A server logs it at start.
    ///
    /// ```
    /// use auditlog_engine::store::{Store, StoreOptions};
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(StoreOptions::new(dir.path())).unwrap();
    /// assert_eq!(store.recovery().replayed_events, 0);
    /// assert!(store.recovery().truncated.is_none());
    /// ```
    pub fn recovery(&self) -> &RecoveryReport {
        &self.inner.recovery
    }

    /// Why the store refuses writes, if it does: the first failed WAL write or fsync (disk
    /// full, I/O error), until the store is reopened. Cheap (no lock the commit path holds), for
    /// readiness probes.
    ///
    /// ```
    /// use auditlog_engine::store::{Store, StoreOptions};
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(StoreOptions::new(dir.path())).unwrap();
    /// assert_eq!(store.write_failure(), None);
    /// ```
    pub fn write_failure(&self) -> Option<String> {
        self.inner.poison.cause()
    }

    /// Where the integrity ledger stands ([`crate::ledger`]): keep `head` with `entries`
    /// somewhere the data directory's writers cannot reach, and `auditlog verify
    /// --expect-head` proves later that no sealed segment was changed since.
    ///
    /// ```
    /// use auditlog_engine::store::{Store, StoreOptions};
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(StoreOptions::new(dir.path())).unwrap();
    /// let before = store.integrity();
    /// assert_eq!((before.entries, before.segments), (0, 0));
    /// # let event = auditlog_engine::event::Event { tenant: "t".into(), action: "create".into(),
    /// #     resource: auditlog_engine::event::Resource { kind: "pod".into(), ..Default::default() },
    /// #     timestamp_us: auditlog_engine::store::now_us(), ..Default::default() };
    /// store.append(vec![event]).unwrap();
    /// store.seal().unwrap();
    /// let after = store.integrity();
    /// assert_eq!((after.entries, after.segments), (1, 1));
    /// assert_ne!(after.head, before.head);
    /// ```
    pub fn integrity(&self) -> Integrity {
        let ledger = self.inner.ledger.lock();
        let (entries, head) = ledger.published();
        Integrity {
            entries,
            head,
            segments: self.inner.state.read().segments.len(),
        }
    }

    /// Why the last seal failed, until a seal succeeds (a full disk, say): the tail cannot
    /// drain, and once it is full appends fail with [`Error::Busy`] carrying this cause. The
    /// background thread keeps retrying.
    pub fn seal_failure(&self) -> Option<String> {
        self.inner.seal_failure.lock().clone()
    }

    /// Fsync and seal latencies, events appended.
    pub fn metrics(&self) -> &StoreMetrics {
        &self.inner.metrics
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    /// Appends a batch of validated events and returns once it is durable (or, with
    /// [`Durability::Interval`], written). Events whose `(tenant, id)` is already stored are
    /// reported as duplicates and not stored again. Either the whole batch (less duplicates) is
    /// acknowledged, or an error is returned and none of it is visible.
    ///
    /// Every event's timestamp is taken as the client's (see [`AppendHints`]).
    pub fn append(&self, events: Vec<Event>) -> Result<AppendResult> {
        self.append_with(events, AppendHints::default())
    }

    /// [`Store::append`] with what the caller knows about the batch's timestamps.
    pub fn append_with(&self, events: Vec<Event>, hints: AppendHints) -> Result<AppendResult> {
        let inner = &self.inner;
        if events.len() > inner.options.batch_events_max {
            return Err(Error::BatchTooLarge {
                what: "event count",
                found: events.len() as u64,
                limit: inner.options.batch_events_max as u64,
            });
        }
        if events.is_empty() {
            return Ok(AppendResult {
                accepted: 0,
                first_seq: None,
                last_seq: None,
                duplicates: Vec::new(),
            });
        }
        if !hints.skip_tail_bound {
            inner.wait_for_tail_room()?;
        }
        let key_hashes: Vec<u64> = events
            .iter()
            .map(|e| e.id.as_ref().map_or(0, |id| key_hash(&e.tenant, id)))
            .collect();
        let (sealed_duplicates, checked_segment_id_max) =
            inner.sealed_duplicates(&events, &key_hashes, hints)?;
        let bytes = events.iter().map(crate::tail::approx_event_bytes).sum();
        let events = Arc::new(events);
        let encoded = Arc::new(commit::EncodedSlot::default());
        let reply = Arc::new(Reply::default());
        {
            let mut queue = inner.queue.lock();
            while queue.bytes > QUEUE_BYTES_MAX && !queue.closed {
                inner.queue_room.wait(&mut queue);
            }
            if queue.closed {
                return Err(Error::Closed);
            }
            queue.bytes += bytes as usize;
            queue.requests.push(Request {
                events: Arc::clone(&events),
                encoded: Arc::clone(&encoded),
                key_hashes,
                bytes,
                sealed_duplicates,
                checked_segment_id_max,
                server_timestamp_us: hints.server_timestamp_us,
                reply: commit::Answer::new(Arc::clone(&reply), inner.poison.clone()),
            });
        }
        inner.queue_ready.notify_one();
        // Encoded while the commit thread plans the batch (idempotency checks, seqs); it waits
        // for the encoding only to write. The events are let go of first, so that the commit
        // thread then owns them alone.
        let guard = commit::FillOnDrop::new(encoded);
        let payload = crate::wal::format::encode_events(&events);
        drop(events);
        guard.fill(payload);
        reply.take()
    }

    /// The last seq whose append has been answered (set after the answers). An event with a
    /// greater seq is answered after this call, and is either broadcast to the subscribers
    /// registered after it or already in the tail: a live feed that starts after this seq,
    /// subscribes, then reads the stored events from it, misses no event answered after it
    /// started.
    pub fn acknowledged_seq(&self) -> u64 {
        self.inner.acknowledged_seq.load(Ordering::Acquire)
    }

    /// A consistent view for reading.
    pub fn snapshot(&self) -> Snapshot {
        let state = self.inner.state.read();
        Snapshot {
            segments: Arc::clone(&state.segments),
            tail: state.tail.snapshot(),
            sealed_through: state.manifest.sealed_through,
        }
    }

    /// The event with this seq, if stored.
    pub fn get(&self, seq: u64) -> Result<Option<StoredEvent>> {
        let snapshot = self.snapshot();
        if seq > snapshot.sealed_through {
            // The snapshot's tail, not the live one: a seal since may have drained it.
            return Ok(snapshot
                .tail
                .iter_from(seq)
                .next()
                .filter(|e| e.seq == seq)
                .cloned());
        }
        for sealed in snapshot.segments.iter() {
            if (sealed.entry.min_seq..=sealed.entry.max_seq).contains(&seq) {
                if let Some(event) = sealed.segment.find_seq(seq)? {
                    return Ok(Some(event));
                }
            }
        }
        Ok(None)
    }

    /// Up to `limit` stored events with `seq >= from`, in seq order (the stream's resume path).
    pub fn read_from_seq(&self, from: u64, limit: usize) -> Result<Vec<StoredEvent>> {
        Ok(self.read_from_seq_of(from, limit, None)?.events)
    }

    /// [`Store::read_from_seq`] of the events of `tenants` only (`None`: every tenant). A
    /// segment's rows are sorted by tenant, so a tenant's events lie in one run of rows: only
    /// the blocks of that run are decoded, where reading every tenant's events and dropping
    /// the others' decoded every block of the segment for each page.
    ///
    /// ```
    /// use auditlog_engine::event::{Actor, Event, Resource};
    /// use auditlog_engine::store::{Store, StoreOptions};
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(StoreOptions::new(dir.path())).unwrap();
    /// let event = |tenant: &str| Event {
    ///     tenant: tenant.into(),
    ///     actor: Actor { id: Some("u1".into()), ..Actor::default() },
    ///     action: "login".into(),
    ///     resource: Resource { kind: "account".into(), ..Resource::default() },
    ///     ..Event::default()
    /// };
    /// store.append(vec![event("a"), event("b"), event("a")]).unwrap();
    /// let tenants = ["a".to_string()];
    /// let seqs: Vec<u64> = store
    ///     .read_from_seq_of(2, 10, Some(&tenants))
    ///     .unwrap()
    ///     .events
    ///     .iter()
    ///     .map(|e| e.seq)
    ///     .collect();
    /// assert_eq!(seqs, [3]);
    /// ```
    pub fn read_from_seq_of(
        &self,
        from: u64,
        limit: usize,
        tenants: Option<&[String]>,
    ) -> Result<SeqPage> {
        let snapshot = self.snapshot();
        let mut out = Vec::new();
        // Each segment's rows of the tenants (`None`: all of them; an empty list: none).
        let rows: Vec<Option<Vec<std::ops::Range<u64>>>> = snapshot
            .segments
            .iter()
            .map(|sealed| {
                tenants.map(|tenants| {
                    let mut rows: Vec<_> = tenants
                        .iter()
                        .filter_map(|tenant| sealed.segment.tenant_rows(tenant))
                        .collect();
                    rows.sort_unstable_by_key(|r| r.start);
                    rows
                })
            })
            .collect();
        let holds_rows = |index: usize| rows[index].as_ref().is_none_or(|r| !r.is_empty());
        // Windows of seqs. The seqs of a window's events come first (only the `seq` column
        // is decoded): past `limit` of them, the window ends at the `limit`-th, so that its
        // events, decoded next, are never more than `limit`. A window is `limit` seqs wide at
        // first, twice as wide after one that found less than half of `limit` (a tenant with
        // few of the store's events), up to `WINDOW_SEQS_MAX` seqs (or `limit`), which bounds
        // the seqs held to 8 MiB. Sealed seqs have gaps where retention dropped partitions: a
        // window starts at the first seq a segment may hold at or after `low`, so a gap is
        // stepped over, not walked through.
        const WINDOW_SEQS_MAX: u64 = 1 << 20;
        let limit_seqs = (limit as u64).max(1);
        let mut width = limit_seqs;
        let mut low = from;
        let mut seqs = Vec::new();
        while out.len() < limit && low <= snapshot.sealed_through {
            let Some(start) = snapshot
                .segments
                .iter()
                .enumerate()
                .filter(|(index, s)| s.entry.max_seq >= low && holds_rows(*index))
                .map(|(_, s)| s.entry.min_seq.max(low))
                .min()
            else {
                break;
            };
            low = start;
            let mut high = low.saturating_add(width).min(snapshot.sealed_through + 1);
            if low >= high {
                break;
            }
            let overlapping = |index: usize, high: u64| {
                let entry = &snapshot.segments[index].entry;
                entry.max_seq >= low && entry.min_seq < high && holds_rows(index)
            };
            seqs.clear();
            for (index, sealed) in snapshot.segments.iter().enumerate() {
                if overlapping(index, high) {
                    sealed
                        .segment
                        .seqs_in(low, high, rows[index].as_deref(), &mut seqs)?;
                }
            }
            let wanted = limit - out.len();
            let found = seqs.len();
            if found > wanted {
                let (_, last, _) = seqs.select_nth_unstable(wanted - 1);
                high = *last + 1;
            }
            let mut window = Vec::with_capacity(found.min(wanted));
            for (index, sealed) in snapshot.segments.iter().enumerate() {
                if overlapping(index, high) {
                    sealed.segment.collect_seq_range_in(
                        low,
                        high,
                        rows[index].as_deref(),
                        &mut window,
                    )?;
                }
            }
            window.sort_unstable_by_key(|e| e.seq);
            out.extend(window);
            low = high;
            if (found as u64).saturating_mul(2) < limit_seqs {
                width = width.saturating_mul(2).min(WINDOW_SEQS_MAX.max(limit_seqs));
            }
        }
        if out.len() < limit {
            let rest = limit - out.len();
            let tail_from = from.max(snapshot.sealed_through + 1);
            match tenants {
                None => out.extend(snapshot.tail.iter_from(tail_from).take(rest).cloned()),
                // Through each chunk's tenant index: other tenants' events are not visited.
                Some(tenants) => {
                    let mut found: Vec<&StoredEvent> = tenants
                        .iter()
                        .flat_map(|tenant| {
                            snapshot.tail.iter_tenant_from(tenant, tail_from).take(rest)
                        })
                        .collect();
                    found.sort_unstable_by_key(|e| e.seq);
                    // A tenant named twice gives its events twice.
                    found.dedup_by_key(|e| e.seq);
                    out.extend(found.into_iter().take(rest).cloned());
                }
            }
        }
        // A short page holds every matching event the snapshot has from `from` on.
        let read_through = match out.last() {
            Some(last) if out.len() == limit => last.seq,
            _ => snapshot
                .tail
                .last_seq()
                .unwrap_or(0)
                .max(snapshot.sealed_through)
                .max(from.saturating_sub(1)),
        };
        Ok(SeqPage {
            events: out,
            read_through,
        })
    }

    /// Every stored event in seq order (tests and offline tools; reads everything).
    pub fn read_all(&self) -> Result<Vec<StoredEvent>> {
        let snapshot = self.snapshot();
        let mut out = Vec::new();
        for sealed in snapshot.segments.iter() {
            out.extend(sealed.segment.read_all()?);
        }
        out.sort_unstable_by_key(|e| e.seq);
        out.extend(snapshot.tail.iter().cloned());
        Ok(out)
    }

    /// Registers a function called with every committed chunk, in seq order, before appenders are
    /// answered. It runs on the commit thread: it must not block.
    pub fn subscribe(&self, subscriber: Subscriber) {
        self.inner.subscribers.write().push(subscriber);
    }

    /// Seals every event acknowledged so far into segments now. Returns the sealed seq.
    pub fn seal(&self) -> Result<u64> {
        self.inner.seal()
    }

    /// Builds now the indexes that seals left for later (see
    /// [`StoreOptions::index_deferral`]); the background thread otherwise does it once seals
    /// stop deferring. Returns how many segments got theirs, or the first build's error once
    /// every segment was tried (a segment that fails does not keep the others from theirs).
    pub fn index_deferred(&self) -> Result<usize> {
        let started = Instant::now();
        let mut built = 0;
        let mut first_error = None;
        // Each segment once: one that fails in this call is marked as failed after `started`.
        let not_tried = |failed: Option<Instant>| failed.is_none_or(|at| at < started);
        loop {
            match self.inner.index_deferred_segment(not_tried) {
                Ok(true) => built += 1,
                Ok(false) => break,
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(built),
        }
    }

    /// Runs one merge pass; returns how many merges it made.
    pub fn merge(&self) -> Result<usize> {
        self.inner.merge_pass()
    }

    /// Archives then drops partitions past their retention, as of `now_us`.
    pub fn expire(&self, now_us: i64) -> Result<RetentionReport> {
        self.inner.expire(now_us)
    }

    /// Checks every chunk checksum of every sealed segment; the first damage found is the error.
    pub fn verify(&self) -> Result<()> {
        for sealed in self.snapshot().segments.iter() {
            sealed.segment.verify()?;
        }
        Ok(())
    }

    /// Every tenant that has an acknowledged event (sorted).
    pub fn tenants(&self) -> Vec<String> {
        let mut tenants: Vec<String> = self
            .inner
            .commit
            .lock()
            .tenant_seqs
            .keys()
            .cloned()
            .collect();
        tenants.sort_unstable();
        tenants
    }

    pub fn stats(&self) -> Stats {
        // Lock order is commit, then state (the commit thread holds commit while it reads the
        // state); never take commit while holding state.
        let (wal_files, tenants) = {
            let commit = self.inner.commit.lock();
            (
                commit.wal.file_count() as u64,
                commit.tenant_seqs.len() as u64,
            )
        };
        let deferred = self.inner.deferred_index.lock().clone();
        let state = self.inner.state.read();
        let partitions: HashSet<_> = state.segments.iter().map(|s| &s.entry.partition).collect();
        Stats {
            unindexed_segments: state
                .segments
                .iter()
                .filter(|s| deferred.contains_key(&s.entry.segment_id))
                .count() as u64,
            // Acknowledged (visible) events only; seqs being fsynced are not counted yet.
            last_seq: self.inner.published_seq.load(Ordering::Acquire),
            sealed_events: state.segments.iter().map(|s| s.entry.rows).sum(),
            tail_events: state.tail.len(),
            tail_bytes: state.tail.bytes(),
            segments: state.segments.len() as u64,
            partitions: partitions.len() as u64,
            tenants,
            segment_bytes: state.segments.iter().map(|s| s.entry.bytes).sum(),
            wal_files,
        }
    }

    /// Stops the threads after the queued batches are committed. Dropping the store does the same.
    pub fn close(&self) {
        self.inner.queue.lock().closed = true;
        self.inner.queue_ready.notify_all();
        self.inner.queue_room.notify_all();
        self.inner.shutdown.store(true, Ordering::SeqCst);
        {
            let _guard = self.inner.background_lock.lock();
            self.inner.background_wake.notify_all();
        }
        self.inner.tail_room.notify_all();
        for thread in self.threads.lock().drain(..) {
            let _ = thread.join();
        }
        // A recycled WAL file is cut to its records, so that a clean reopen finds no stale
        // bytes after them. A failure leaves them for recovery to cut, as after a crash.
        let _ = self.inner.commit.lock().wal.trim();
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

impl Inner {
    fn wait_for_tail_room(&self) -> Result<()> {
        let limit = self.options.tail_bytes_max;
        let deadline = Instant::now() + self.options.busy_wait;
        let mut guard = self.tail_room_lock.lock();
        loop {
            let (events, bytes) = {
                let state = self.state.read();
                (state.tail.len(), state.tail.bytes())
            };
            if bytes < limit {
                return Ok(());
            }
            if self.shutdown.load(Ordering::SeqCst) {
                return Err(Error::Closed);
            }
            self.wake_background();
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Busy {
                    unsealed_events: events,
                    unsealed_bytes: bytes,
                    limit_bytes: limit,
                    seal_failure: self.seal_failure.lock().clone(),
                });
            }
            self.tail_room
                .wait_for(&mut guard, (deadline - now).min(Duration::from_millis(50)));
        }
    }

    /// Finds the batch's keys in sealed segments (the slow part of the idempotency check, done
    /// on the caller's thread); the commit thread checks the tail and newer segments.
    fn sealed_duplicates(
        &self,
        events: &[Event],
        key_hashes: &[u64],
        hints: AppendHints,
    ) -> Result<(Vec<Duplicate>, u64)> {
        let segments = Arc::clone(&self.state.read().segments);
        let checked_max = segments
            .iter()
            .map(|s| s.entry.segment_id)
            .max()
            .unwrap_or(0);
        let mut duplicates = Vec::new();
        if segments.is_empty() {
            return Ok((duplicates, checked_max));
        }
        // Per (day, tenant), the batch's ids: each segment of the day is asked for all of a
        // tenant's ids in one pass over that tenant's blocks. An id whose event has
        // the client's timestamp is asked only of segments whose time range holds it (see
        // `AppendHints`): under sustained ingest a day's partition gains a segment every few
        // seconds, and asking each of them costs filter probes and, for ~1% of ids per
        // segment (filter false positives), a decode of the tenant's ids there.
        type Keys<'e> = (Vec<usize>, Vec<&'e str>, Vec<u64>, Vec<Option<i64>>);
        let mut groups: HashMap<(i32, &str), Keys<'_>> = HashMap::new();
        for (index, event) in events.iter().enumerate() {
            if let Some(id) = &event.id {
                let group = groups
                    .entry((key_day(event), event.tenant.as_str()))
                    .or_default();
                group.0.push(index);
                group.1.push(id);
                group.2.push(key_hashes[index]);
                let stamped_here = hints.server_timestamp_us == Some(event.timestamp_us);
                group.3.push((!stamped_here).then_some(event.timestamp_us));
            }
        }
        for ((day, tenant), (indexes, ids, hashes, times)) in &groups {
            let mut found: Vec<Option<u64>> = vec![None; ids.len()];
            let stamped = times.iter().any(Option::is_none);
            // Every retention class's partition of the day: a tenant moved to another class
            // has its earlier events under the old one. A segment without the tenant's rows
            // costs one dictionary lookup (`find_keys_hashed`).
            for sealed in segments.iter().filter(|s| {
                s.entry.partition.day == *day || (stamped && s.entry.partition.day + 1 == *day)
            }) {
                let day_before = sealed.entry.partition.day != *day;
                let range = sealed.entry.min_timestamp_us..=sealed.entry.max_timestamp_us;
                // A client timestamp is in its own day's segments, in those whose range holds
                // it; a server-stamped event's original may be anywhere in its day or the day
                // before (see `may_hold_copy`).
                let open: Vec<usize> = (0..ids.len())
                    .filter(|&i| {
                        found[i].is_none()
                            && match times[i] {
                                Some(t) => !day_before && range.contains(&t),
                                None => true,
                            }
                    })
                    .collect();
                if open.is_empty() {
                    continue;
                }
                let asked: Vec<&str> = open.iter().map(|&i| ids[i]).collect();
                let asked_hashes: Vec<u64> = open.iter().map(|&i| hashes[i]).collect();
                for (slot, seq) in open.into_iter().zip(sealed.segment.find_keys_hashed(
                    tenant,
                    &asked,
                    &asked_hashes,
                )?) {
                    found[slot] = seq;
                }
            }
            for (&index, seq) in indexes.iter().zip(found) {
                if let Some(seq) = seq {
                    duplicates.push(Duplicate { index, seq });
                }
            }
        }
        duplicates.sort_unstable_by_key(|duplicate| duplicate.index);
        Ok((duplicates, checked_max))
    }

    /// Whether a sealed copy of `event` may be in `partition`: one of its day's partitions
    /// ([`key_day`], any retention class: a tenant moved to another class has its earlier
    /// events under the old one), or, for an event the receiving layer stamped
    /// (`stamped_here`, see [`AppendHints`]), also one of the day before: its retry is stamped
    /// again, later, so the original may lie on the previous UTC day. A retry within 24 hours
    /// of the original is always found; a later one of an event sent without a timestamp only
    /// if it falls on the same or the next day.
    pub(crate) fn may_hold_copy(
        &self,
        partition: &crate::partition::PartitionKey,
        event: &Event,
        stamped_here: bool,
    ) -> bool {
        let own = key_day(event);
        partition.day == own || (stamped_here && partition.day + 1 == own)
    }

    /// Drops this process's mapped pages of every published segment and, through the hook, of
    /// their index files: they stay in the OS page cache, and reads map back what they touch,
    /// so the resident set holds what was read lately rather than everything ever read
    /// (idempotency probes and queries touch pages all over the files, and the kernel maps
    /// whole large folios around each touch).
    fn release_pages(&self) {
        let segments = Arc::clone(&self.state.read().segments);
        for sealed in segments.iter() {
            sealed.segment.release_pages();
            if let (Some(hook), Some(attachment)) = (&self.options.segment_hook, &sealed.attachment)
            {
                hook.release_pages(attachment);
            }
        }
    }

    /// Keeps the segments' decoded dictionaries within `dictionary_budget_bytes`: past it, the
    /// segments whose dictionaries were used least recently are replaced in the segment list by
    /// instances without them ([`Segment::without_dictionaries`]). Readers holding the old
    /// instances keep using them; the memory goes when the last of them lets go.
    fn trim_dictionaries(&self) {
        let _maintenance = self.maintenance.lock();
        let segments = Arc::clone(&self.state.read().segments);
        let mut loaded: Vec<(u64, u64, &Arc<SealedSegment>)> = segments
            .iter()
            .map(|s| {
                let segment = &s.segment;
                (
                    segment.dictionaries_last_used(),
                    segment.dictionary_bytes(),
                    s,
                )
            })
            .filter(|(_, bytes, _)| *bytes > 0)
            .collect();
        let mut total: u64 = loaded.iter().map(|(_, bytes, _)| bytes).sum();
        if total <= self.options.dictionary_budget_bytes {
            return;
        }
        loaded.sort_by_key(|(used, _, _)| *used);
        let mut fresh: HashMap<u64, Arc<SealedSegment>> = HashMap::new();
        for (_, bytes, sealed) in loaded {
            if total <= self.options.dictionary_budget_bytes {
                break;
            }
            // A segment that cannot be mapped again keeps its dictionaries (retried next time).
            if let Ok(segment) = sealed.segment.without_dictionaries() {
                fresh.insert(
                    sealed.entry.segment_id,
                    Arc::new(SealedSegment {
                        entry: sealed.entry.clone(),
                        path: sealed.path.clone(),
                        segment,
                        sha256: sealed.sha256,
                        attachment: sealed.attachment.clone(),
                    }),
                );
                total -= bytes;
            }
        }
        let mut state = self.state.write();
        let swapped: Vec<Arc<SealedSegment>> = state
            .segments
            .iter()
            .map(|s| {
                fresh
                    .remove(&s.entry.segment_id)
                    .unwrap_or_else(|| Arc::clone(s))
            })
            .collect();
        state.segments = Arc::new(swapped);
    }

    pub(crate) fn wake_background(&self) {
        let _guard = self.background_lock.lock();
        self.background_wake.notify_all();
    }

    fn background_loop(self: &Arc<Self>) {
        lower_thread_priority(self.options.background_nice);
        if self.options.background_idle {
            idle_thread_policy();
        }
        let mut last_release = Instant::now();
        while !self.shutdown.load(Ordering::SeqCst) {
            let appended = self.metrics.events_appended.load(Ordering::Relaxed);
            self.pacing.lock().sample_at(Instant::now(), appended);
            let (bytes, oldest_age) = {
                let state = self.state.read();
                let age = state
                    .tail
                    .snapshot()
                    .chunks()
                    .first()
                    .and_then(|c| c.first())
                    .map(|e| Duration::from_micros((now_us() - e.received_us).max(0) as u64));
                (state.tail.bytes(), age)
            };
            let due = bytes >= self.options.seal_bytes
                || oldest_age.is_some_and(|age| age >= self.options.seal_interval)
                || bytes >= self.options.tail_bytes_max / 2;
            let mut worked = false;
            if due {
                // Errors are kept for the next append to see through poisoning or are retried;
                // a failed seal leaves the tail and WAL as they were.
                worked |= self.seal().is_ok();
            }
            match self.merge_pass() {
                Ok(merged) => worked |= merged > 0,
                Err(_) => {
                    self.metrics
                        .background_failures
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            // Indexes left for later: one segment at a time, when no seal is due and the build
            // would finish before the next one is (checked again at each turn of the loop).
            // A segment whose build failed (say, on a full disk) is left for CATCH_UP_RETRY,
            // the others are built meanwhile; queries scan it until then.
            let retry_due =
                |failed: Option<Instant>| failed.is_none_or(|at| at.elapsed() >= CATCH_UP_RETRY);
            if !due {
                if let Some(next) = self.next_deferred(retry_due) {
                    let tail = self.tail_state();
                    let fits = self.pacing.lock().catch_up_fits(
                        next.entry.rows,
                        &tail,
                        self.options.seal_bytes,
                    );
                    if fits {
                        worked |= self.index_deferred_segment(retry_due).unwrap_or(false);
                    }
                }
            }
            if self
                .options
                .page_release_interval
                .is_some_and(|interval| last_release.elapsed() >= interval)
            {
                self.release_pages();
                self.trim_dictionaries();
                last_release = Instant::now();
            }
            if !worked {
                let mut guard = self.background_lock.lock();
                if self.shutdown.load(Ordering::SeqCst) {
                    break;
                }
                self.background_wake
                    .wait_for(&mut guard, Duration::from_millis(200));
            }
        }
    }
}

impl Inner {
    /// The retention thread's loop: a pass at once, then every `retention_interval`, until
    /// the store closes (which also stops a pass between the files it copies).
    ///
    /// Dropping is the one thing the store does that cannot be undone (without an archive),
    /// and it goes by the wall clock: a clock stepped forward (a bad NTP answer, a wrong
    /// hardware clock) would drop every partition that much younger than its retention. A
    /// pass is skipped, and counted (`retention_skipped_clock`), while the wall clock is more
    /// than [`CLOCK_AHEAD_MAX`] ahead of where the boot clock (which counts time suspended)
    /// says it should be since the thread started. A clock that stays that far ahead for
    /// [`CLOCK_AHEAD_TRUSTED`] (a VM restored from a snapshot and then set right, a machine
    /// without a hardware clock that started before NTP) is taken as right from then on, as
    /// is any clock at the next start.
    fn retention_loop(self: &Arc<Self>) {
        lower_thread_priority(self.options.background_nice);
        if self.options.background_idle {
            idle_thread_policy();
        }
        let (mut started_wall, mut started) = (now_us(), since_boot());
        // When the clock was first seen ahead, while it stays so.
        let mut ahead_since: Option<Duration> = None;
        while !self.shutdown.load(Ordering::SeqCst) {
            let wall = now_us();
            let now = since_boot();
            let ahead = clock_ran_ahead(started_wall, now.saturating_sub(started), wall);
            if !ahead {
                ahead_since = None;
            } else if now.saturating_sub(*ahead_since.get_or_insert(now)) >= CLOCK_AHEAD_TRUSTED {
                (started_wall, started, ahead_since) = (wall, now, None);
            }
            let pass = if ahead_since.is_some() {
                self.metrics
                    .retention_skipped_clock
                    .fetch_add(1, Ordering::Relaxed);
                Ok(RetentionReport::default())
            } else {
                self.expire(wall)
            };
            match pass {
                Ok(_) | Err(Error::Closed) => {}
                Err(_) => {
                    // Retried at the next pass; counted where operators look.
                    self.metrics
                        .background_failures
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            let next = Instant::now() + self.options.retention_interval;
            let mut guard = self.background_lock.lock();
            while !self.shutdown.load(Ordering::SeqCst) {
                let now = Instant::now();
                if now >= next {
                    break;
                }
                self.background_wake.wait_for(&mut guard, next - now);
            }
        }
    }
}

/// Makes the calling thread `by` nicer (lower CPU priority) than it is; Linux keeps a nice
/// value per thread, and threads started from it inherit it. Best effort: on failure, or
/// elsewhere than Linux, the priority stays as it was.
fn lower_thread_priority(by: i32) {
    if by <= 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid takes no argument; getpriority and setpriority only read their
        // integer arguments.
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            let current = libc::getpriority(libc::PRIO_PROCESS, tid);
            libc::setpriority(libc::PRIO_PROCESS, tid, current.saturating_add(by).min(19));
        }
    }
}

/// Puts the calling thread under the idle scheduling policy (see
/// `StoreOptions::background_idle`); threads it starts inherit it. Best effort, Linux only.
fn idle_thread_policy() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param for SCHED_IDLE.
        unsafe {
            libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
        }
    }
}

#[cfg(test)]
mod clock_tests {
    use std::time::Duration;

    #[test]
    fn retention_notices_a_wall_clock_stepped_forward() {
        let hour = 3_600_000_000i64;
        let start = 1_800_000_000_000_000i64;
        let minute = Duration::from_secs(60);
        // In step, a few seconds off either way, or set back: passes go on.
        assert!(!super::clock_ran_ahead(start, minute, start + 60_000_000));
        assert!(!super::clock_ran_ahead(
            start,
            minute,
            start + 60_000_000 + 5_000_000
        ));
        assert!(!super::clock_ran_ahead(start, minute, start - hour));
        // More than an hour ahead of the elapsed time: skipped.
        assert!(super::clock_ran_ahead(
            start,
            minute,
            start + 60_000_000 + hour + 1
        ));
        assert!(super::clock_ran_ahead(
            start,
            minute,
            start + 365 * 24 * hour
        ));
    }
}
