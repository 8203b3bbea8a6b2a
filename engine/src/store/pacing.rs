//! When sealing should leave indexing for later, and when to catch up: from the ingest rate
//! and what sealing and indexing have cost per row lately.
//!
//! Building the filter and text indexes costs more than the rest of a seal (sort, encode,
//! compress): on this machine seals with every index took 2.1 s for ~240,000 rows each at
//! 30,000 events/s, and seals without them 1.5-1.6 s for ~250,000 rows each (on both cores)
//! under a burst that kept both cores busy.
//! While ingest is faster than sealing with indexes keeps up with, the tail fills and appends
//! stall; sealing without indexes drains it faster, and the indexes are built later, when
//! ingest leaves time for them.
//! [`Pacing`] makes both calls from measurements, so that a store that keeps up never defers,
//! a burst defers at once, and the deferred indexes are built as soon as a build fits before
//! the next seal is due.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use auditlog_engine::store::pacing::{Pacing, TailState};
//! let mut pacing = Pacing::default();
//! let start = Instant::now();
//! // 150,000 events/s for two seconds.
//! pacing.sample_at(start, 0);
//! pacing.sample_at(start + Duration::from_secs(2), 300_000);
//! let tail = TailState { bytes: 128 << 20, events: 180_000, bytes_max: 256 << 20 };
//! assert!(pacing.defer_indexing(&tail));
//! // Nothing arriving: a full seal fits.
//! pacing.sample_at(start + Duration::from_secs(9), 300_000);
//! assert!(!pacing.defer_indexing(&tail));
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How far back the ingest rate looks.
const RATE_WINDOW: Duration = Duration::from_secs(3);

/// Costs assumed before any seal measured them (this machine at 30,000 events/s: seals with
/// every index took 2.1 s for ~240,000 rows, ~9 µs a row; rounded up, and indexing taken as
/// two thirds of it).
const SEAL_NS_PER_ROW_DEFAULT: f64 = 12_000.0;
const INDEX_NS_PER_ROW_DEFAULT: f64 = 8_000.0;

/// Weight of the newest measurement in the running costs.
const COST_WEIGHT: f64 = 0.3;

/// The tail as the decisions see it.
#[derive(Debug, Clone, Copy)]
pub struct TailState {
    pub bytes: u64,
    pub events: u64,
    /// `StoreOptions::tail_bytes_max`.
    pub bytes_max: u64,
}

impl TailState {
    fn bytes_per_event(&self) -> f64 {
        if self.events == 0 {
            // A generated event holds ~700 bytes in the tail.
            700.0
        } else {
            self.bytes as f64 / self.events as f64
        }
    }
}

/// The ingest rate and the per-row costs of sealing and indexing, measured as the store runs.
#[derive(Debug)]
pub struct Pacing {
    /// (when, events appended since the store opened), oldest first, over [`RATE_WINDOW`].
    samples: VecDeque<(Instant, u64)>,
    /// Wall time per row of a seal with indexes.
    seal_ns_per_row: f64,
    /// Time per row of the hook's indexing alone.
    index_ns_per_row: f64,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            samples: VecDeque::new(),
            seal_ns_per_row: SEAL_NS_PER_ROW_DEFAULT,
            index_ns_per_row: INDEX_NS_PER_ROW_DEFAULT,
        }
    }
}

impl Pacing {
    /// Records how many events had been appended at `now`.
    pub fn sample_at(&mut self, now: Instant, appended: u64) {
        self.samples.push_back((now, appended));
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|(at, _)| now.duration_since(*at) >= RATE_WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// Events appended per second over the last samples (0 before two samples).
    pub fn rate(&self) -> f64 {
        match (self.samples.front(), self.samples.back()) {
            (Some((first, from)), Some((last, to))) if last > first => {
                to.saturating_sub(*from) as f64 / last.duration_since(*first).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    /// Records a seal with indexes of `rows` rows (sort, encode, compress, write, index).
    pub fn record_seal(&mut self, rows: u64, took: Duration) {
        if rows > 0 {
            let measured = took.as_nanos() as f64 / rows as f64;
            self.seal_ns_per_row += COST_WEIGHT * (measured - self.seal_ns_per_row);
        }
    }

    /// Records the hook's indexing of `rows` rows.
    pub fn record_index(&mut self, rows: u64, took: Duration) {
        if rows > 0 {
            let measured = took.as_nanos() as f64 / rows as f64;
            self.index_ns_per_row += COST_WEIGHT * (measured - self.index_ns_per_row);
        }
    }

    /// Whether a seal of the whole tail should leave indexing for later: it should when the
    /// tail is at three quarters of its bound already, or when, at the current ingest rate,
    /// the tail would reach 90 % of its bound before a seal with indexes could finish.
    pub fn defer_indexing(&self, tail: &TailState) -> bool {
        if tail.bytes >= tail.bytes_max / 4 * 3 {
            return true;
        }
        let seconds = tail.events as f64 * self.seal_ns_per_row / 1e9;
        let growth = self.rate() * seconds * tail.bytes_per_event();
        tail.bytes as f64 + growth >= tail.bytes_max as f64 * 0.9
    }

    /// Whether indexing `rows` rows now would finish before the tail, at the current ingest
    /// rate, reaches `seal_bytes` (when the next seal is due).
    pub fn catch_up_fits(&self, rows: u64, tail: &TailState, seal_bytes: u64) -> bool {
        let seconds = rows as f64 * self.index_ns_per_row / 1e9;
        let growth = self.rate() * seconds * tail.bytes_per_event();
        (tail.bytes as f64 + growth) < seal_bytes as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(pacing: &mut Pacing, start: Instant, seconds: f64, appended: u64) {
        pacing.sample_at(start + Duration::from_secs_f64(seconds), appended);
    }

    #[test]
    fn rate_looks_back_over_the_window_only() {
        let mut pacing = Pacing::default();
        let start = Instant::now();
        assert_eq!(pacing.rate(), 0.0);
        at(&mut pacing, start, 0.0, 0);
        assert_eq!(pacing.rate(), 0.0);
        // 10,000/s for 10 s, then 100,000/s for 3 s: only the last 3 s count.
        for second in 1..=10 {
            at(&mut pacing, start, second as f64, second * 10_000);
        }
        for second in 11..=13 {
            at(
                &mut pacing,
                start,
                second as f64,
                100_000 + (second - 10) * 100_000,
            );
        }
        assert!((pacing.rate() - 100_000.0).abs() < 1.0, "{}", pacing.rate());
        assert!(pacing.samples.len() <= 5);
    }

    #[test]
    fn defers_when_a_full_seal_would_let_the_tail_fill() {
        let mut pacing = Pacing::default();
        // Measured: 9 µs/row to seal with indexes, 6 µs/row to index.
        for _ in 0..50 {
            pacing.record_seal(100_000, Duration::from_millis(900));
            pacing.record_index(100_000, Duration::from_millis(600));
        }
        let tail = TailState {
            bytes: 128 << 20,
            events: 190_000,
            bytes_max: 256 << 20,
        };
        let start = Instant::now();
        let rate = |per_second: u64| {
            let mut pacing = Pacing {
                samples: VecDeque::new(),
                ..pacing_clone(&pacing)
            };
            at(&mut pacing, start, 0.0, 0);
            at(&mut pacing, start, 2.0, 2 * per_second);
            pacing
        };
        // A full seal takes 1.7 s: 60,000/s adds ~72 MiB (fits), 150,000/s ~180 MiB (not).
        assert!(!rate(60_000).defer_indexing(&tail));
        assert!(rate(150_000).defer_indexing(&tail));
        // Three quarters full: always.
        let full = TailState {
            bytes: 200 << 20,
            ..tail
        };
        assert!(rate(0).defer_indexing(&full));
        // Catching up on 200,000 rows (1.2 s of indexing) fits at 20,000/s, not at 200,000/s.
        let small = TailState {
            bytes: 8 << 20,
            events: 12_000,
            bytes_max: 256 << 20,
        };
        assert!(rate(20_000).catch_up_fits(200_000, &small, 128 << 20));
        assert!(!rate(200_000).catch_up_fits(200_000, &small, 128 << 20));
    }

    fn pacing_clone(pacing: &Pacing) -> Pacing {
        Pacing {
            samples: pacing.samples.clone(),
            seal_ns_per_row: pacing.seal_ns_per_row,
            index_ns_per_row: pacing.index_ns_per_row,
        }
    }
}
