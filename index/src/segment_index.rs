//! The indexes of one sealed segment, built when the engine writes the segment and attached to
//! it when the store opens: [`SegmentIndexer`] is the engine's [`SegmentHook`].
//!
//! ```
//! use auditlog_engine::store::{Store, StoreOptions};
//! let dir = tempfile::tempdir().unwrap();
//! let mut options = StoreOptions::new(dir.path());
//! options.segment_hook = Some(auditlog_index::SegmentIndexer::hook());
//! let store = Store::open(options).unwrap();
//! // Every segment sealed or merged from now on gets `{id}.idx` and `{id}.text/` beside it,
//! // and queries over `store.snapshot()` use them.
//! # drop(store);
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use auditlog_engine::manifest::SegmentEntry;
use auditlog_engine::segment::{Column, Segment};
use auditlog_engine::store::{Attachment, SealedSegment, SegmentHook};
use auditlog_engine::Result;
use parking_lot::Mutex;
use roaring::RoaringBitmap;

use crate::filter::{self, FilterIndex, Granularity};
use crate::fulltext::{self, TextIndex};

/// A posting as rows, and whether it is exact (row granularity) or a superset (blocks).
type RowPosting = (Arc<RoaringBitmap>, bool);

/// The open indexes of one segment.
#[derive(Debug)]
pub struct SegmentIndex {
    pub filters: FilterIndex,
    pub text: TextIndex,
    /// Postings decoded so far, by (column, code). Bounded by the filter index itself: each
    /// posting is decoded at most once.
    postings: Mutex<HashMap<(Column, u32), RowPosting>>,
    /// This open segment's number in the decoded-block cache.
    instance: u64,
}

impl SegmentIndex {
    fn new(filters: FilterIndex, text: TextIndex) -> SegmentIndex {
        SegmentIndex {
            filters,
            text,
            postings: Mutex::new(HashMap::new()),
            instance: crate::block_cache::new_instance(),
        }
    }

    /// This open segment's number in the decoded-block cache ([`crate::block_cache`]).
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// The indexes attached to a sealed segment, if its store indexes segments.
    pub fn of(sealed: &SealedSegment) -> Option<&SegmentIndex> {
        sealed.attachment.as_ref()?.downcast_ref::<SegmentIndex>()
    }

    /// The rows whose `column` may hold `code` ([`FilterIndex::posting`], block postings
    /// turned into the blocks' rows), decoded once and then shared, and whether they are exact
    /// (row postings) or a superset to check row by row (block postings); `None` when the
    /// column is not indexed.
    pub fn posting(
        &self,
        segment: &Segment,
        column: Column,
        code: u32,
    ) -> Result<Option<RowPosting>> {
        // Exactness is the file's granularity, not today's choice of it: an index written
        // under another choice stays readable.
        if let Some((found, exact)) = self.postings.lock().get(&(column, code)) {
            return Ok(Some((Arc::clone(found), *exact)));
        }
        let Some(posting) = self.filters.posting(column, code)? else {
            return Ok(None);
        };
        let exact = posting.granularity == Granularity::Rows;
        let bitmap = if exact {
            posting.values
        } else {
            let mut rows = RoaringBitmap::new();
            for block in &posting.values {
                if let Some(meta) = segment.blocks().get(block as usize) {
                    let range = meta.row_range();
                    rows.insert_range(range.start as u32..range.end as u32);
                }
            }
            rows
        };
        let bitmap = Arc::new(bitmap);
        self.postings
            .lock()
            .insert((column, code), (Arc::clone(&bitmap), exact));
        Ok(Some((bitmap, exact)))
    }
}

/// Time and bytes spent building indexes since the process started (for reports and metrics).
#[derive(Debug, Default)]
pub struct BuildCounters {
    pub segments: AtomicU64,
    pub rows: AtomicU64,
    pub filter_nanos: AtomicU64,
    pub text_nanos: AtomicU64,
    pub filter_bytes: AtomicU64,
    pub text_bytes: AtomicU64,
    pub rebuilt: AtomicU64,
}

/// The process-wide build counters.
pub static BUILD_COUNTERS: BuildCounters = BuildCounters {
    segments: AtomicU64::new(0),
    rows: AtomicU64::new(0),
    filter_nanos: AtomicU64::new(0),
    text_nanos: AtomicU64::new(0),
    filter_bytes: AtomicU64::new(0),
    text_bytes: AtomicU64::new(0),
    rebuilt: AtomicU64::new(0),
};

/// Builds a segment's filter index and text index (on two threads) and opens them.
#[derive(Debug, Default, Clone, Copy)]
pub struct SegmentIndexer;

impl SegmentIndexer {
    /// The hook to put in [`StoreOptions::segment_hook`](auditlog_engine::StoreOptions).
    pub fn hook() -> Arc<dyn SegmentHook> {
        Arc::new(SegmentIndexer)
    }

    /// Opens the indexes written beside a segment.
    fn open(partition_dir: &Path, entry: &SegmentEntry) -> Result<SegmentIndex> {
        let id = entry.segment_id;
        let filters =
            FilterIndex::open(&partition_dir.join(filter::file_name(id)), id, entry.rows)?;
        let text = TextIndex::open(&partition_dir.join(fulltext::dir_name(id)))?;
        Ok(SegmentIndex::new(filters, text))
    }

    fn build(&self, dir: &Path, entry: &SegmentEntry, segment: &Segment) -> Result<SegmentIndex> {
        let id = entry.segment_id;
        let filter_path = dir.join(filter::file_name(id));
        let text_dir = dir.join(fulltext::dir_name(id));
        let (filters, text) = std::thread::scope(|scope| {
            let text = scope.spawn(|| {
                let started = Instant::now();
                let result = fulltext::build(segment, &text_dir);
                let nanos = started.elapsed().as_nanos() as u64;
                BUILD_COUNTERS
                    .text_nanos
                    .fetch_add(nanos, Ordering::Relaxed);
                result
            });
            let started = Instant::now();
            let filters = filter::build(segment)
                .and_then(|bytes| filter::write_file(&filter_path, &bytes).map(|()| bytes.len()));
            BUILD_COUNTERS
                .filter_nanos
                .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
            let text = text.join().expect("the text index builder panicked");
            (filters, text)
        });
        let filter_bytes = filters?;
        text?;
        let index = SegmentIndex::new(
            FilterIndex::open(&filter_path, id, entry.rows)?,
            TextIndex::open(&text_dir)?,
        );
        BUILD_COUNTERS.segments.fetch_add(1, Ordering::Relaxed);
        BUILD_COUNTERS.rows.fetch_add(entry.rows, Ordering::Relaxed);
        BUILD_COUNTERS
            .filter_bytes
            .fetch_add(filter_bytes as u64, Ordering::Relaxed);
        BUILD_COUNTERS
            .text_bytes
            .fetch_add(index.text.bytes(), Ordering::Relaxed);
        Ok(index)
    }
}

impl SegmentHook for SegmentIndexer {
    fn segment_written(
        &self,
        partition_dir: &Path,
        entry: &SegmentEntry,
        segment: &Segment,
    ) -> Result<Option<Attachment>> {
        let index = self.build(partition_dir, entry, segment)?;
        Ok(Some(Arc::new(index)))
    }

    fn segment_opened(
        &self,
        partition_dir: &Path,
        entry: &SegmentEntry,
        segment: &Segment,
    ) -> Result<Option<Attachment>> {
        let id = entry.segment_id;
        let index = match Self::open(partition_dir, entry) {
            Ok(index) => index,
            Err(error) => {
                // Indexes are derived data: a missing (a seal under a burst left them for
                // later and the store closed first, an older store, a crash before they were
                // written) or damaged index is built from the segment.
                tracing::warn!(
                    segment = %format!("{id:016x}"),
                    dir = %partition_dir.display(),
                    %error,
                    "building the missing or unreadable indexes of a segment"
                );
                BUILD_COUNTERS.rebuilt.fetch_add(1, Ordering::Relaxed);
                let index = self.build(partition_dir, entry, segment)?;
                std::fs::File::open(partition_dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| auditlog_engine::Error::io(partition_dir, e))?;
                index
            }
        };
        Ok(Some(Arc::new(index)))
    }

    fn segment_opened_or_missing(
        &self,
        partition_dir: &Path,
        entry: &SegmentEntry,
        _segment: &Segment,
    ) -> Result<Option<Attachment>> {
        match Self::open(partition_dir, entry) {
            Ok(index) => Ok(Some(Arc::new(index))),
            Err(error) => {
                // Built in the background; queries scan the segment until then.
                tracing::warn!(
                    segment = %format!("{:016x}", entry.segment_id),
                    dir = %partition_dir.display(),
                    %error,
                    "the indexes of a segment are missing or unreadable; building them in the background"
                );
                Ok(None)
            }
        }
    }

    fn release_pages(&self, attachment: &Attachment) {
        if let Some(index) = attachment.downcast_ref::<SegmentIndex>() {
            index.filters.release_pages();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditlog_engine::event::{Actor, Event, StoredEvent};
    use auditlog_engine::segment::{encode_segment, EncodeOptions};

    /// An index written when `actor.email` was indexed by block is still read as a superset,
    /// also when the posting comes from the cache the second time.
    #[test]
    fn posting_exactness_follows_the_file_not_the_current_choice() {
        let events: Vec<StoredEvent> = (1..=10u64)
            .map(|seq| StoredEvent {
                seq,
                tenant_seq: seq,
                received_us: 1,
                event: Event {
                    timestamp_us: seq as i64,
                    tenant: "acct_1".into(),
                    actor: Actor {
                        email: Some(format!("u{}@example.com", seq % 2).into()),
                        ..Actor::default()
                    },
                    action: "login".into(),
                    ..Event::default()
                },
            })
            .collect();
        let encoded = encode_segment(3, &events, &EncodeOptions::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let segment = Segment::from_bytes(dir.path().join("s.seg"), encoded.bytes).unwrap();
        let blocks = |column| match column {
            Column::ActorEmail => Granularity::Blocks,
            _ => Granularity::Rows,
        };
        let path = dir.path().join(filter::file_name(3));
        filter::write_file(&path, &filter::build_with(&segment, blocks).unwrap()).unwrap();
        let text_dir = dir.path().join(fulltext::dir_name(3));
        fulltext::build(&segment, &text_dir).unwrap();
        let index = SegmentIndex::new(
            FilterIndex::open(&path, 3, 10).unwrap(),
            TextIndex::open(&text_dir).unwrap(),
        );
        let code = segment
            .dictionary(Column::ActorEmail)
            .unwrap()
            .unwrap()
            .code_of("u0@example.com")
            .unwrap();
        for _ in 0..2 {
            let (rows, exact) = index
                .posting(&segment, Column::ActorEmail, code)
                .unwrap()
                .unwrap();
            assert!(!exact, "a block posting is a superset");
            assert_eq!(rows.len(), 10, "every row of the one block");
        }
        let code = segment
            .dictionary(Column::Action)
            .unwrap()
            .unwrap()
            .code_of("login")
            .unwrap();
        let (rows, exact) = index
            .posting(&segment, Column::Action, code)
            .unwrap()
            .unwrap();
        assert!(exact);
        assert_eq!(rows.len(), 10);
    }
}
