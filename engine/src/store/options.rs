//! Configuration of a [`super::Store`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::io::{RealVfs, Vfs};
use crate::partition::RetentionConfig;
use crate::segment::EncodeOptions;

use super::SegmentHook;

/// When `append` returns relative to `fdatasync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Every batch is fsynced before it is acknowledged (group commit shares the fsync). Default.
    Sync,
    /// Batches are acknowledged once written to the OS, and the WAL is fsynced at this interval:
    /// a power loss (not a process crash) can lose up to that interval of acknowledged events.
    Interval(Duration),
}

/// Everything a store can be tuned with. `StoreOptions::new(dir)` gives the defaults.
#[derive(Clone)]
pub struct StoreOptions {
    pub dir: PathBuf,
    pub vfs: Arc<dyn Vfs>,
    pub durability: Durability,
    pub retention: RetentionConfig,
    /// Where retention moves expired partitions; `None` deletes them.
    pub archive_dir: Option<PathBuf>,
    /// A WAL file is closed and a new one started past this size.
    pub wal_file_bytes: u64,
    /// Fsyncs of the WAL in flight at once (each on its own sync thread; at least 1). The group
    /// written while an fsync runs starts its own instead of waiting for it, and disks take
    /// concurrent fdatasyncs of a file faster than one after the other. Groups are still
    /// published and acknowledged in write order, and a group is acknowledged only once every
    /// group before it is durable too. Measure with `benches/examples/append_vs_disk.rs`.
    pub wal_syncs_in_flight: usize,
    /// Backpressure: `append` waits (then answers busy) while the tail holds more than this.
    pub tail_bytes_max: u64,
    /// How long `append` waits for room in the tail before answering [`crate::Error::Busy`].
    pub busy_wait: Duration,
    /// The background sealer seals once the tail holds this many bytes (the default, 128 MiB,
    /// is about 180,000 generated events, more than `merge_rows_max`: under sustained ingest a
    /// seal's segment is not merged and rewritten later; at 96 MiB, ~120,000 events, two seals
    /// in three were merged once when merges went up to 250,000 rows) ...
    pub seal_bytes: u64,
    /// ... or its oldest event is this old.
    pub seal_interval: Duration,
    /// Most events in one `append` call.
    pub batch_events_max: usize,
    /// A partition's segments of one size tier merge once there are this many.
    pub merge_segments_min: usize,
    /// Segments are not merged past this many rows. A merge holds its input rows in memory,
    /// decoded, and its encoder's columns (about 1.4 KiB a row), so this bounds the memory
    /// merging takes: ~220 MiB at the default, 160,000. With 250,000 the resident set of
    /// appending and sealing 20M events (`engine-report --rss-events 20000000`) peaked at
    /// 1,069-1,117 MiB, against 966 MiB at 160,000 and 907 at 100,000; the price is more
    /// small segments (167 at the end of that run against 125; 204 at 100,000).
    pub merge_rows_max: u64,
    /// Segments are not merged past this many bytes of input segment files either: rows
    /// with large `details` or `changes` decode to far more memory than generated events'
    /// ~1.4 KiB, and a merge holds all its rows decoded. Default 32 MiB of segment files:
    /// ~850,000 typical events (so `merge_rows_max` decides for them), ~30,000 rows of 8 KiB
    /// events (a few hundred MB decoded). Long repetitive values compress so well that file
    /// bytes do not bound the decoded size either: a merge also holds at most
    /// `tail_bytes_max` bytes of decoded events (see `Inner::merge_pass`).
    pub merge_bytes_max: u64,
    /// How often the retention thread checks for partitions past their retention.
    pub retention_interval: Duration,
    /// How often the background thread drops the process's mapped pages of every segment and
    /// index file (they stay in the OS page cache; reads map back what they touch), so that the
    /// resident set does not grow with everything ever read. `None`: never.
    pub page_release_interval: Option<Duration>,
    /// Most memory the segments' decoded dictionaries may hold: segments decode a dictionary
    /// when a read needs it, and every `page_release_interval` those used least recently are
    /// dropped past this budget (a read decodes again those it needs: all ten take 7-10 ms for
    /// a segment of 200,000 generated events). The default, 256 MiB, holds every dictionary of
    /// about 20M events.
    pub dictionary_budget_bytes: u64,
    /// Run the sealing, merging and retention threads (tests drive them by hand when false).
    pub background: bool,
    /// How much nicer (lower CPU priority, Linux) than the process the background thread
    /// runs, and with it the index builders it starts (threads inherit it): appends,
    /// acknowledgements, the live stream and queries get the CPU first, sealing takes what
    /// they leave (the tail's bound still stops appends if it falls too far behind). 0 leaves
    /// its priority alone; the result is capped at nice 19.
    pub background_nice: i32,
    /// Run the background thread, and the index builders it starts, under the idle
    /// scheduling policy (Linux `SCHED_IDLE`): it runs only on CPU time no other thread
    /// wants, and a woken ingest, stream or query thread takes the CPU from it at once. A nice
    /// value only lowers its share: a thread woken while both cores sealed waited for the next
    /// scheduler tick (~4 ms here) at each hop of the ingest path (HTTP worker, parsing
    /// thread, commit thread, sync thread). Best effort, like `background_nice`.
    pub background_idle: bool,
    /// Defer indexing while ingest outruns it: a seal that finds the tail at three quarters
    /// of `tail_bytes_max`, or that at the current ingest rate would let the tail fill before
    /// a seal with indexes could finish ([`super::pacing::Pacing::defer_indexing`]), publishes
    /// its segments before the `segment_hook` has built their companion files, and encodes
    /// them on every core. The background thread builds the deferred indexes later, one
    /// segment at a time, whenever a build fits before the next seal is due. Queries answer
    /// from such a segment exactly, by scanning it. Indexing costs more than the seal itself,
    /// so under a burst this lets sealing keep up with ingest instead of stalling it (60 s as
    /// fast as acknowledged through HTTP: 100,375 events/s without, 144,569-174,597 with; the
    /// 70 segments one run deferred, 9.1M rows, were indexed in the 41 s after). A store that keeps
    /// up never defers. Segments still unindexed at close (or whose companion files are
    /// missing or unreadable) get theirs from the background thread after the next open, so
    /// that opening does not wait for them (without a background thread, while it opens).
    pub index_deferral: bool,
    /// Such a seal splits a partition of more than this many rows into segments of disjoint
    /// tenants (up to one per core), so that a burst's single large partition is encoded on
    /// every core too.
    pub seal_split_rows: u64,
    pub encode: EncodeOptions,
    /// Builds companion files (indexes) for each new segment before it is published.
    pub segment_hook: Option<Arc<dyn SegmentHook>>,
}

impl StoreOptions {
    /// Defaults for a data directory.
    pub fn new(dir: impl AsRef<Path>) -> Self {
        Self {
            dir: dir.as_ref().to_path_buf(),
            vfs: Arc::new(RealVfs),
            durability: Durability::Sync,
            retention: RetentionConfig::default(),
            archive_dir: None,
            wal_file_bytes: 64 << 20,
            wal_syncs_in_flight: 2,
            tail_bytes_max: 256 << 20,
            busy_wait: Duration::from_secs(2),
            seal_bytes: 128 << 20,
            seal_interval: Duration::from_secs(10),
            batch_events_max: 10_000,
            merge_segments_min: 4,
            merge_rows_max: 160_000,
            merge_bytes_max: 32 << 20,
            retention_interval: Duration::from_secs(60),
            page_release_interval: Some(Duration::from_secs(10)),
            dictionary_budget_bytes: 256 << 20,
            background: true,
            background_nice: 10,
            background_idle: true,
            index_deferral: true,
            seal_split_rows: 65_536,
            encode: EncodeOptions::default(),
            segment_hook: None,
        }
    }
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("dir", &self.dir)
            .field("durability", &self.durability)
            .field("retention", &self.retention)
            .field("archive_dir", &self.archive_dir)
            .field("tail_bytes_max", &self.tail_bytes_max)
            .field("seal_bytes", &self.seal_bytes)
            .field("background", &self.background)
            .finish_non_exhaustive()
    }
}
