//! Counters the store keeps for monitoring (the server exposes them on `/metrics`).
//!
//! ```
//! use auditlog_engine::store::LatencyHistogram;
//! let histogram = LatencyHistogram::default();
//! histogram.record(std::time::Duration::from_micros(700));
//! assert_eq!(histogram.count(), 1);
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in microseconds (Prometheus `le` labels).
pub const LATENCY_BUCKETS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000,
];

/// A lock-free latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Per bucket (not cumulative); the last slot counts what exceeds every bound.
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl LatencyHistogram {
    pub fn record(&self, duration: Duration) {
        let us = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        let index = LATENCY_BUCKETS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn sum_us(&self) -> u64 {
        self.sum_us.load(Ordering::Relaxed)
    }

    /// Cumulative counts per bound of [`LATENCY_BUCKETS_US`] (Prometheus `_bucket` series).
    pub fn cumulative(&self) -> [u64; LATENCY_BUCKETS_US.len()] {
        self.cumulative_with_total().0
    }

    /// [`LatencyHistogram::cumulative`] and the count of every slot, from the same reads of the
    /// buckets: the `+Inf` bucket (and `_count`) of a Prometheus histogram, which is never below
    /// the last bounded bucket even while other threads record (`count()` is a separate
    /// counter, read at another moment).
    ///
    /// ```
    /// use auditlog_engine::store::LatencyHistogram;
    /// use std::time::Duration;
    /// let histogram = LatencyHistogram::default();
    /// histogram.record(Duration::from_micros(10));
    /// histogram.record(Duration::from_secs(3600)); // past every bound
    /// let (cumulative, total) = histogram.cumulative_with_total();
    /// assert_eq!((cumulative[cumulative.len() - 1], total), (1, 2));
    /// ```
    pub fn cumulative_with_total(&self) -> ([u64; LATENCY_BUCKETS_US.len()], u64) {
        let mut out = [0; LATENCY_BUCKETS_US.len()];
        let mut running = 0;
        for (slot, bucket) in out.iter_mut().zip(&self.buckets) {
            running += bucket.load(Ordering::Relaxed);
            *slot = running;
        }
        let total = running + self.buckets[LATENCY_BUCKETS_US.len()].load(Ordering::Relaxed);
        (out, total)
    }
}

/// What the store measures about itself.
#[derive(Debug, Default)]
pub struct StoreMetrics {
    /// Each WAL fdatasync of the commit pipeline.
    pub fsync: LatencyHistogram,
    /// Each seal (tail to segments).
    pub seal: LatencyHistogram,
    /// Each merge of a partition's segments into one.
    pub merge: LatencyHistogram,
    /// Rows written by seals, and rows rewritten by merges: their ratio is the write
    /// amplification of merging (each merged row is encoded and indexed again).
    pub rows_sealed: AtomicU64,
    pub rows_merged: AtomicU64,
    /// Events acknowledged since the store was opened.
    pub events_appended: AtomicU64,
    /// Segments sealed with their indexes left for later (`StoreOptions::index_deferral`) ...
    pub segments_deferred: AtomicU64,
    /// ... and each later build of such a segment's indexes, or of a segment's that were
    /// missing at open (those are not counted above: its count can exceed the one above).
    pub deferred_index: LatencyHistogram,
    /// Seals, merges and retention passes that failed (each is retried; see
    /// `Store::seal_failure`).
    pub background_failures: AtomicU64,
    /// Retention passes skipped because the wall clock ran ahead of the time elapsed since
    /// the store opened by more than an hour (a clock stepped forward would otherwise drop
    /// partitions that are not old), for at most a day; see `Inner::retention_loop`.
    pub retention_skipped_clock: AtomicU64,
}
