//! Answering a [`Query`] over a [`Snapshot`]: a page of events, a count, facets, a histogram.
//!
//! # Plan
//!
//! 1. **Scope**: the tenants to read are the query's scope narrowed by its `tenant` filter
//!    ([`Query::effective_tenants`]); no other tenant's rows are ever decoded.
//! 2. **Segments**: a sealed segment is skipped when its time span (manifest entry) misses the
//!    time range or lies wholly behind the cursor, when it holds none of the tenants, or when a
//!    filter's any-of values are all absent from its dictionary. Each wanted value is looked up
//!    in the segment dictionary once; a filter then works on integer codes.
//! 3. **Candidates** (segments with indexes, [`SegmentIndex`]): the tenants' row ranges are
//!    AND-ed with each filter's postings (OR of its values; none-of values subtracted) as
//!    roaring bitmaps. Row postings answer a filter exactly; block postings (high-cardinality
//!    fields) and the text index (asked the first time a block of the segment is decoded)
//!    narrow to candidate blocks, whose rows are then checked.
//! 4. **Rows**: a segment sorts its rows by `(tenant, timestamp, seq)`, so each tenant's rows
//!    are a contiguous, time-ordered run. A run walks its blocks in the query's order, skips
//!    blocks whose time span misses the range or that hold no candidate, stops at the first
//!    block past the range, and decodes only the columns still to check (timestamps only for
//!    blocks that straddle a bound, text columns only for blocks with rows left).
//! 5. **Merge**: the runs of every segment and the matching tail events (found through the
//!    tail's per-chunk tenant index) are merged by `(timestamp, seq)` with a heap, lazily: a
//!    run first offers the bound of its next block ([`Location::Pending`]) and decodes it only
//!    when the merge reaches that bound, so a page of the newest rows never decodes older
//!    segments. The page's rows are then built from whole decoded blocks, kept in the
//!    [`block_cache`] for the next query.
//!
//! `count`, `facets` and `histogram` visit the same rows without merging; they ignore the
//! query's cursor, order and limit. A block wholly inside the time range whose candidates need
//! no check is counted without decoding anything. Facets of a field indexed by row, when no
//! filter or text is left to check row by row, come from postings alone: per value of the
//! segment, the cardinality of its posting within the tenants' rows in the time range (found
//! by decoding timestamps only where a bound falls) and the other filters' candidates. Else
//! they count codes of the matching rows in vectors; either way values are resolved to text
//! once per segment.
//!
//! Freshness: a snapshot holds every event with `seq <= sealed_through` in exactly one
//! segment and every later acknowledged event in the tail, so each event is seen exactly once;
//! the tail is read from `sealed_through + 1` on.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;

use auditlog_engine::event::{EventRef, StoredEvent};
use auditlog_engine::manifest::SegmentEntry;
use auditlog_engine::segment::{Block, BlockMeta, Column, Columns, Segment};
use auditlog_engine::store::SealedSegment;
use auditlog_engine::Snapshot;
use roaring::RoaringBitmap;

use crate::block_cache;
use crate::codes::{code_value, max_code, value_code, Codes};
use crate::error::{Error, Result};
use crate::facet_cache;
use crate::filter::Granularity;
use crate::fulltext::TextCandidates;
use crate::query::{Cursor, Field, FieldFilter, Order, Query, LIMIT_MAX};
use crate::segment_index::SegmentIndex;
use crate::text::{TextMatcher, TEXT_DICTIONARY_COLUMNS};
use crate::text_cache;

/// Most values [`facets`] returns.
pub const FACET_SIZE_MAX: usize = LIMIT_MAX;
/// Up to this many tenants in scope, the tail is read through its tenant index; past it, scanned.
const TAIL_TENANT_LOOKUPS_MAX: usize = 64;
/// [`facets`] counts a segment's values from postings (one cardinality per value of the field
/// in the segment) rather than from its rows when it has at least this many matching rows per
/// value: a posting's cardinality within a row range costs about as much as counting this
/// many rows.
const ROWS_PER_POSTING_COUNT: u64 = 128;
/// Most buckets [`histogram`] returns.
pub const HISTOGRAM_BUCKETS_MAX: usize = 10_000;

/// One page of a search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// At most `limit` events, in the query's order.
    pub events: Vec<StoredEvent>,
    /// Where the next page starts ([`Cursor::encode`]); `None` when no matching event follows.
    pub next_cursor: Option<String>,
}

/// The page of events the query asks for.
pub fn search(snapshot: &Snapshot, query: &Query) -> Result<Page> {
    query.validate()?;
    let plan = Plan::new(query, true)?;
    if plan.tenants.is_empty() {
        return Ok(Page::default());
    }
    let matchers = plan.segment_matchers(snapshot)?;
    let order = query.order;

    let mut tail: Vec<&StoredEvent> = Vec::new();
    plan.tail_matches(snapshot, |event| tail.push(event));
    tail.sort_unstable_by(|a, b| compare_keys(order, key_of(a), key_of(b)));

    let mut merge = Merge::new(&plan, &matchers, &tail)?;
    let mut selected: Vec<Candidate> = Vec::with_capacity(query.limit + 1);
    while selected.len() <= query.limit {
        let Some((_, candidate)) = merge.pop(&plan, &matchers, &tail)? else {
            break;
        };
        selected.push(candidate);
    }
    let more = selected.len() > query.limit;
    selected.truncate(query.limit);

    // Build only the page's rows, each block decoded (or found in the cache) once.
    let mut blocks: HashMap<(usize, usize), Arc<Block>> = HashMap::new();
    let mut events: Vec<StoredEvent> = Vec::with_capacity(selected.len());
    for candidate in &selected {
        events.push(match candidate.location {
            Location::Sealed {
                matcher,
                block,
                row,
            } => {
                let decoded = match blocks.entry((matcher, block)) {
                    std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                    std::collections::hash_map::Entry::Vacant(entry) => {
                        entry.insert(matchers[matcher].read_whole(block)?)
                    }
                };
                decoded.event(row)
            }
            Location::Tail(index) => tail[index].clone(),
            Location::Pending => unreachable!("pending candidates are never selected"),
        });
    }
    let next_cursor = match events.last() {
        Some(last) if more => Some(Cursor::after(order, last, query.now_us).encode()),
        _ => None,
    };
    Ok(Page {
        events,
        next_cursor,
    })
}

/// How many events match the query (its cursor, order and limit aside).
pub fn count(snapshot: &Snapshot, query: &Query) -> Result<u64> {
    query.validate()?;
    let plan = Plan::new(query, false)?;
    let mut total = 0u64;
    plan.scan(snapshot, Columns::NONE, |visit| {
        total += match visit {
            Visit::Rows { rows, .. } => rows.len() as u64,
            Visit::Event(_) => 1,
        };
        Ok(())
    })?;
    Ok(total)
}

/// The `top_n` most frequent values of `field` among the events that match the query (its
/// cursor, order and limit aside), by count descending, then value ascending. Events without a
/// value for the field are not counted; [`Field::Actor`] counts the email, else the id.
pub fn facets(
    snapshot: &Snapshot,
    query: &Query,
    field: Field,
    top_n: usize,
) -> Result<Vec<(String, u64)>> {
    query.validate()?;
    if top_n == 0 || top_n > FACET_SIZE_MAX {
        return Err(Error::FacetSizeOutOfRange {
            found: top_n,
            max: FACET_SIZE_MAX,
        });
    }
    let plan = Plan::new(query, false)?;
    let columns = field_columns(field);
    // Values borrowed from the segments' dictionaries (alive as long as the snapshot).
    let mut counts: rustc_hash::FxHashMap<&str, u64> = rustc_hash::FxHashMap::default();
    if plan.tenants.is_empty() {
        return Ok(Vec::new());
    }
    // Per segment: counts by code for each of the field's columns (a vector indexed by code),
    // from the filter index's postings when it can, else from the rows; resolved to text once.
    // A segment wholly inside the time range keeps its counts in the facet cache.
    let question: Arc<str> = Arc::from(format!("{:?} {:?}", plan.filters, plan.text_key));
    let mut codes: Vec<Vec<u64>> = vec![Vec::new(); columns.len()];
    for matcher in plan.segment_matchers(snapshot)? {
        let key = matcher.facet_cache_key(field, &question);
        let found = match key.as_ref().and_then(facet_cache::get) {
            Some(found) => found,
            None => {
                let found = Arc::new(matcher.facet_codes(&plan, columns, &mut codes)?);
                if let Some(key) = key {
                    facet_cache::insert(key, Arc::clone(&found));
                }
                found
            }
        };
        for &(slot, code, n) in found.iter() {
            if let Some(value) = code_value(matcher.segment, columns[slot as usize], code)? {
                *counts.entry(value).or_default() += n;
            }
        }
    }
    plan.tail_matches(snapshot, |event| {
        if let Some(value) = field.facet_value_of(event) {
            *counts.entry(value).or_default() += 1;
        }
    });
    let mut out: Vec<(&str, u64)> = counts.into_iter().collect();
    out.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    out.truncate(top_n);
    Ok(out
        .into_iter()
        .map(|(value, n)| (value.to_string(), n))
        .collect())
}

/// Adds the codes of `rows` of a block to `codes` (one vector per column of the field, indexed
/// by code). With two columns (`actor`), a row counts the last non-absent one: the email
/// before the id.
fn count_codes(block: &Block, columns: &[Column], rows: &[usize], codes: &mut [Vec<u64>]) {
    match columns {
        [column] => {
            let by_code = &mut codes[0];
            match Codes::of(block, *column) {
                Codes::Dictionary(values) => {
                    for &row in rows {
                        by_code[values[row] as usize] += 1;
                    }
                }
                view => {
                    for &row in rows {
                        by_code[view.get(row) as usize] += 1;
                    }
                }
            }
        }
        [first, second] => {
            let (first, second) = (Codes::of(block, *first), Codes::of(block, *second));
            let (first_codes, second_codes) = codes.split_at_mut(1);
            let (first_codes, second_codes) = (&mut first_codes[0], &mut second_codes[0]);
            let mut add = |code_second: u32, code_first: u32| {
                if code_second != 0 {
                    second_codes[code_second as usize] += 1;
                } else if code_first != 0 {
                    first_codes[code_first as usize] += 1;
                }
            };
            match (first, second) {
                (Codes::Dictionary(a), Codes::Dictionary(b)) => {
                    for &row in rows {
                        add(b[row], a[row]);
                    }
                }
                (a, b) => {
                    for &row in rows {
                        add(b.get(row), a.get(row));
                    }
                }
            }
        }
        _ => unreachable!("field_columns gives a field one or two columns"),
    }
}

/// Counts of matching events (cursor, order and limit aside) per time bucket of `bucket_us`
/// microseconds, buckets aligned on the Unix epoch (`start = timestamp - timestamp mod
/// bucket_us`). Only non-empty buckets are returned, oldest first.
pub fn histogram(snapshot: &Snapshot, query: &Query, bucket_us: i64) -> Result<Vec<(i64, u64)>> {
    query.validate()?;
    if bucket_us <= 0 {
        return Err(Error::BucketWidth { found: bucket_us });
    }
    let plan = Plan::new(query, false)?;
    let mut buckets: BTreeMap<i64, u64> = BTreeMap::new();
    let mut add = |start: i64, n: u64| -> Result<()> {
        *buckets.entry(start).or_default() += n;
        if buckets.len() > HISTOGRAM_BUCKETS_MAX {
            return Err(Error::TooManyBuckets {
                limit: HISTOGRAM_BUCKETS_MAX,
            });
        }
        Ok(())
    };
    let bucket_of = |timestamp_us: i64| timestamp_us - timestamp_us.rem_euclid(bucket_us);
    plan.scan(
        snapshot,
        Columns::from(Column::Timestamp),
        |visit| match visit {
            Visit::Rows { block, rows, .. } => {
                let timestamps = block.expect("timestamps were asked for").timestamps();
                // Rows of a run are time-ordered: count runs of one bucket, then add them.
                let mut current: Option<(i64, u64)> = None;
                for &row in rows {
                    let start = bucket_of(timestamps[row]);
                    match &mut current {
                        Some((bucket, n)) if *bucket == start => *n += 1,
                        _ => {
                            if let Some((bucket, n)) = current.take() {
                                add(bucket, n)?;
                            }
                            current = Some((start, 1));
                        }
                    }
                }
                match current {
                    Some((bucket, n)) => add(bucket, n),
                    None => Ok(()),
                }
            }
            Visit::Event(event) => add(bucket_of(event.event.timestamp_us), 1),
        },
    )?;
    Ok(buckets.into_iter().collect())
}

/// The tail events a snapshot must add to its segments: those after `sealed_through`.
fn tail_events(snapshot: &Snapshot) -> impl Iterator<Item = &StoredEvent> + '_ {
    snapshot
        .tail
        .iter_from(snapshot.sealed_through.saturating_add(1))
}

fn key_of(event: &StoredEvent) -> (i64, u64) {
    (event.event.timestamp_us, event.seq)
}

/// `Less` when `a` comes first in `order`.
fn compare_keys(order: Order, a: (i64, u64), b: (i64, u64)) -> Ordering {
    match order {
        Order::OldestFirst => a.cmp(&b),
        Order::NewestFirst => b.cmp(&a),
    }
}

/// The segment columns holding a field's values; for [`Field::Actor`], the id then the email
/// (a facet takes the last non-absent one).
fn field_columns(field: Field) -> &'static [Column] {
    match field {
        Field::Tenant => &[Column::Tenant],
        Field::Project => &[Column::Project],
        Field::Action => &[Column::Action],
        Field::Outcome => &[Column::Outcome],
        Field::ResourceType => &[Column::ResourceType],
        Field::ResourceId => &[Column::ResourceId],
        Field::ResourceName => &[Column::ResourceName],
        Field::Actor => &[Column::ActorId, Column::ActorEmail],
        Field::ActorId => &[Column::ActorId],
        Field::ActorEmail => &[Column::ActorEmail],
        Field::ActorIp => &[Column::ActorIp],
        Field::ActorType => &[Column::ActorType],
    }
}

/// The columns full-text search reads: the dictionary ones, `details` and `changes`.
const TEXT_COLUMNS: Columns = TEXT_DICTIONARY_COLUMN_SET
    .with(Column::Details)
    .with(Column::Changes);
/// The dictionary-coded text columns.
const TEXT_DICTIONARY_COLUMN_SET: Columns = Columns::of(&TEXT_DICTIONARY_COLUMNS);

/// One field filter resolved against a segment: sorted codes per column.
struct Condition {
    /// `None`: no any-of set. Otherwise the row passes when one of its columns holds one of
    /// the codes (never empty: a segment where no wanted value exists is skipped).
    any: Option<Vec<(Column, Vec<u32>)>>,
    none: Vec<(Column, Vec<u32>)>,
}

impl Condition {
    /// `Ok(None)` when no wanted value exists in the segment.
    fn resolve(segment: &Segment, field: Field, filter: &FieldFilter) -> Result<Option<Condition>> {
        let codes = |values: &std::collections::BTreeSet<String>| {
            let mut sets = Vec::new();
            for &column in field_columns(field) {
                let mut codes = Vec::new();
                for value in values {
                    codes.extend(value_code(segment, column, value)?);
                }
                codes.sort_unstable();
                if !codes.is_empty() {
                    sets.push((column, codes));
                }
            }
            Ok::<_, auditlog_engine::Error>(sets)
        };
        let any = if filter.any_of.is_empty() {
            None
        } else {
            let any = codes(&filter.any_of)?;
            if any.is_empty() {
                return Ok(None);
            }
            Some(any)
        };
        Ok(Some(Condition {
            any,
            none: codes(&filter.none_of)?,
        }))
    }

    /// Narrows `rows` with the segment's filter index. Returns whether the condition is then
    /// fully applied (else it must still be checked row by row: a column not indexed, or
    /// indexed by block).
    fn apply(
        &self,
        segment: &Segment,
        index: &SegmentIndex,
        rows: &mut RoaringBitmap,
    ) -> Result<bool> {
        // The union of the postings, and whether it is exact; `None` when a column is not
        // indexed.
        let union = |sets: &[(Column, Vec<u32>)]| -> Result<Option<(RoaringBitmap, bool)>> {
            let mut union = RoaringBitmap::new();
            let mut exact = true;
            for (column, codes) in sets {
                for &code in codes {
                    match index.posting(segment, *column, code)? {
                        Some((posting, is_exact)) => {
                            union |= posting.as_ref();
                            exact &= is_exact;
                        }
                        None => return Ok(None),
                    }
                }
            }
            Ok(Some((union, exact)))
        };
        let mut applied = true;
        if let Some(any) = &self.any {
            match union(any)? {
                Some((bitmap, exact)) => {
                    *rows &= bitmap;
                    applied &= exact;
                }
                None => applied = false,
            }
        }
        if !self.none.is_empty() {
            match union(&self.none)? {
                // Only exact rows may be subtracted.
                Some((bitmap, true)) => *rows -= bitmap,
                _ => applied = false,
            }
        }
        Ok(applied)
    }

    fn is_trivial(&self) -> bool {
        self.any.is_none() && self.none.is_empty()
    }

    fn columns(&self) -> Columns {
        self.any
            .iter()
            .flatten()
            .chain(&self.none)
            .fold(Columns::NONE, |set, (column, _)| set.with(*column))
    }
}

/// What a query asks, prepared once.
struct Plan<'q> {
    query: &'q Query,
    /// Sorted tenant names to read.
    tenants: Vec<&'q str>,
    /// Filters other than `tenant` (which `tenants` already applies).
    filters: Vec<(Field, &'q FieldFilter)>,
    text: TextMatcher,
    /// The query's text terms written canonically, keying [`text_cache`]; `None` without text.
    text_key: Option<String>,
    /// The cursor to resume after (search only).
    cursor: Option<Cursor>,
    /// Whether decoded blocks go into the [`block_cache`] (not for large exports, which read
    /// many blocks once).
    fill_cache: bool,
    /// Whether sealed runs keep the block of their rows, with every column over them (an
    /// export), rather than only keys (a page's rows are read afterwards).
    materialize: bool,
}

impl<'q> Plan<'q> {
    fn new(query: &'q Query, use_cursor: bool) -> Result<Plan<'q>> {
        let mut tenants = query.effective_tenants();
        tenants.sort_unstable();
        Ok(Plan {
            query,
            tenants,
            filters: query
                .filters
                .iter()
                .filter(|(field, _)| *field != Field::Tenant)
                .collect(),
            text: TextMatcher::new(&query.text)?,
            text_key: (!query.text.is_empty()).then(|| format!("{:?}", query.text)),
            cursor: if use_cursor { query.cursor } else { None },
            fill_cache: true,
            materialize: false,
        })
    }

    /// Whether a row with this key is in the time range and after the cursor.
    fn admits(&self, key: (i64, u64)) -> bool {
        self.query.in_time_range(key.0) && self.cursor.is_none_or(|c| c.admits(key))
    }

    /// False when no row with a timestamp in `min..=max` can be admitted.
    fn span_may_match(&self, min: i64, max: i64) -> bool {
        let in_range = self.query.from_us.is_none_or(|from| max >= from)
            && self.query.to_us.is_none_or(|to| min < to);
        let after_cursor = self.cursor.is_none_or(|c| match c.order {
            Order::NewestFirst => min <= c.timestamp_us,
            Order::OldestFirst => max >= c.timestamp_us,
        });
        in_range && after_cursor
    }

    /// True when every timestamp in `min..=max` lies in the query's time range.
    fn span_in_time_range(&self, min: i64, max: i64) -> bool {
        self.query.from_us.is_none_or(|from| min >= from)
            && self.query.to_us.is_none_or(|to| max < to)
    }

    /// True when every row with a timestamp in `min..=max` is admitted (whatever its seq).
    fn span_admitted(&self, min: i64, max: i64) -> bool {
        let in_range = self.span_in_time_range(min, max);
        let after_cursor = self.cursor.is_none_or(|c| match c.order {
            Order::NewestFirst => max < c.timestamp_us,
            Order::OldestFirst => min > c.timestamp_us,
        });
        in_range && after_cursor
    }

    /// True when a block of a tenant run walked in `order` and every block after it lie past
    /// the time range (rows of a run are time-ordered, and the block holds some of them).
    fn block_past(&self, meta: &BlockMeta, order: Order) -> bool {
        match order {
            Order::OldestFirst => self
                .query
                .to_us
                .is_some_and(|to| meta.min_timestamp_us >= to),
            Order::NewestFirst => self
                .query
                .from_us
                .is_some_and(|from| meta.max_timestamp_us < from),
        }
    }

    fn entry_may_match(&self, entry: &SegmentEntry) -> bool {
        entry.rows > 0 && self.span_may_match(entry.min_timestamp_us, entry.max_timestamp_us)
    }

    /// Whether a tail event matches: scope, time, cursor, filters, text.
    fn matches_event(&self, event: &StoredEvent) -> bool {
        self.tenants
            .binary_search(&event.event.tenant.as_str())
            .is_ok()
            && self.admits(key_of(event))
            && self
                .filters
                .iter()
                .all(|(field, filter)| filter.accepts(field.values_of(event)))
            && self.text.matches_event(event)
    }

    /// Calls `found` with each matching tail event. With a few tenants in scope, only their
    /// events are visited (through each chunk's tenant index); else the tail is scanned.
    fn tail_matches<'s>(&self, snapshot: &'s Snapshot, mut found: impl FnMut(&'s StoredEvent)) {
        let from = snapshot.sealed_through.saturating_add(1);
        if self.tenants.len() <= TAIL_TENANT_LOOKUPS_MAX {
            for tenant in &self.tenants {
                for event in snapshot.tail.iter_tenant_from(tenant, from) {
                    if self.matches_event(event) {
                        found(event);
                    }
                }
            }
        } else {
            for event in tail_events(snapshot) {
                if self.matches_event(event) {
                    found(event);
                }
            }
        }
    }

    /// A matcher per segment that may hold matching rows, in snapshot order.
    fn segment_matchers<'s>(&self, snapshot: &'s Snapshot) -> Result<Vec<SegmentMatcher<'s>>> {
        let mut matchers = Vec::new();
        for sealed in snapshot.segments.iter() {
            if !self.entry_may_match(&sealed.entry) {
                continue;
            }
            if let Some(matcher) = SegmentMatcher::new(self, sealed)? {
                matchers.push(matcher);
            }
        }
        Ok(matchers)
    }

    /// Calls `visit` with the matching rows of every block (decoded with `extra` when any
    /// column had to be decoded) and with every matching tail event.
    fn scan<'s>(
        &self,
        snapshot: &'s Snapshot,
        extra: Columns,
        mut visit: impl FnMut(Visit<'_, 's>) -> Result<()>,
    ) -> Result<()> {
        if self.tenants.is_empty() {
            return Ok(());
        }
        for matcher in self.segment_matchers(snapshot)? {
            self.scan_segment(&matcher, extra, &mut visit)?;
        }
        let mut result = Ok(());
        self.tail_matches(snapshot, |event| {
            if result.is_ok() {
                result = visit(Visit::Event(event));
            }
        });
        result
    }

    /// [`Plan::scan`] over one segment (no tail).
    fn scan_segment<'s>(
        &self,
        matcher: &SegmentMatcher<'s>,
        extra: Columns,
        mut visit: impl FnMut(Visit<'_, 's>) -> Result<()>,
    ) -> Result<()> {
        for rows in &matcher.tenant_ranges {
            for block_index in matcher.segment.blocks_for_rows(rows.clone()) {
                let meta = &matcher.segment.blocks()[block_index];
                if !self.span_may_match(meta.min_timestamp_us, meta.max_timestamp_us) {
                    continue;
                }
                if let Some((block, matched)) =
                    matcher.match_block(self, block_index, rows, extra)?
                {
                    if !matched.is_empty() {
                        visit(Visit::Rows {
                            block: block.as_deref(),
                            rows: &matched,
                        })?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// What [`Plan::scan`] found.
enum Visit<'a, 's> {
    /// Matching rows of one block (indexes in the block, ascending).
    Rows {
        block: Option<&'a Block>,
        rows: &'a [usize],
    },
    /// A matching tail event.
    Event(&'s StoredEvent),
}

/// A segment prepared for one query.
struct SegmentMatcher<'s> {
    segment: &'s Segment,
    /// Row ranges of the tenants to read, in row order.
    tenant_ranges: Vec<Range<u64>>,
    /// With the segment's indexes, when they narrowed anything: the rows of `tenant_ranges`
    /// that pass the indexed filters (exactly for row postings, a superset for block ones).
    candidates: Option<RoaringBitmap>,
    /// Codes of the tenants in scope, ascending.
    tenant_codes: Vec<u32>,
    /// The segment's indexes when the query has text.
    text_index: Option<&'s SegmentIndex>,
    /// The rows the text index lets through, asked of it the first time a block of this
    /// segment is decoded (a page of the newest rows never asks older segments).
    text_rows: RefCell<Option<TextCandidates>>,
    /// The filters the index did not answer, checked row by row.
    conditions: Vec<Condition>,
    /// The segment's indexes, when it has them.
    indexes: Option<&'s SegmentIndex>,
    /// Every row of the segment lies in the query's time range (its cursor aside).
    within_time_range: bool,
    /// The segment's instance number in the decoded-block cache (indexed segments only).
    cache: Option<u64>,
    /// [`Plan::fill_cache`].
    fill_cache: bool,
    condition_columns: Columns,
    /// Text masks of dictionary values already seen: (column, code) -> mask.
    text_masks: RefCell<rustc_hash::FxHashMap<(Column, u32), u64>>,
    /// For an export over several tenants: blocks decoded whole, by index, shared by the
    /// tenants' runs while any of them holds one (a block holds rows of many small tenants,
    /// and each run would decode it again).
    shared_blocks: RefCell<rustc_hash::FxHashMap<usize, std::sync::Weak<Block>>>,
}

impl<'s> SegmentMatcher<'s> {
    /// `None` when the segment cannot hold a matching row.
    fn new(plan: &Plan<'_>, sealed: &'s SealedSegment) -> Result<Option<SegmentMatcher<'s>>> {
        let segment = &sealed.segment;
        let mut tenant_ranges = Vec::new();
        let mut tenant_codes = Vec::new();
        let Some(dictionary) = segment.dictionary(Column::Tenant)? else {
            return Ok(None);
        };
        if plan.tenants.len() * 16 <= dictionary.len() {
            for tenant in &plan.tenants {
                if let Some(code) = dictionary.code_of(tenant) {
                    tenant_codes.push(code);
                    tenant_ranges.extend(segment.tenant_code_rows(code));
                }
            }
        } else {
            // Both sorted: one merge walk (an admin's scope is every tenant, and a lookup per
            // tenant per segment was most of a tenant facet's time).
            let mut wanted = plan.tenants.iter().peekable();
            for (code, tenant) in dictionary.iter() {
                while wanted.next_if(|w| **w < tenant).is_some() {}
                match wanted.peek() {
                    None => break,
                    Some(w) if **w == tenant => {
                        tenant_codes.push(code);
                        tenant_ranges.extend(segment.tenant_code_rows(code));
                    }
                    Some(_) => {}
                }
            }
        }
        if tenant_ranges.is_empty() {
            return Ok(None);
        }
        tenant_ranges.sort_unstable_by_key(|range| range.start);
        tenant_codes.sort_unstable();
        let mut conditions = Vec::new();
        for (field, filter) in &plan.filters {
            let Some(condition) = Condition::resolve(segment, *field, filter)? else {
                return Ok(None);
            };
            if !condition.is_trivial() {
                conditions.push(condition);
            }
        }
        let mut candidates = None;
        let indexes = SegmentIndex::of(sealed);
        if let Some(index) = indexes.filter(|_| !conditions.is_empty()) {
            let mut rows = RoaringBitmap::new();
            for range in &tenant_ranges {
                rows.insert_range(range.start as u32..range.end as u32);
            }
            let mut narrowed = false;
            let mut unindexed = Vec::new();
            for condition in conditions {
                let before = rows.len();
                if !condition.apply(segment, index, &mut rows)? {
                    unindexed.push(condition);
                }
                narrowed |= rows.len() != before;
            }
            conditions = unindexed;
            if rows.is_empty() {
                return Ok(None);
            }
            if narrowed {
                candidates = Some(rows);
            }
        }
        let condition_columns = conditions
            .iter()
            .fold(Columns::NONE, |set, c| set | c.columns());
        let text_index = indexes.filter(|_| !plan.text.is_empty());
        let within_time_range =
            plan.span_in_time_range(sealed.entry.min_timestamp_us, sealed.entry.max_timestamp_us);
        Ok(Some(SegmentMatcher {
            segment,
            within_time_range,
            tenant_ranges,
            tenant_codes,
            text_index,
            text_rows: RefCell::new(None),
            candidates,
            conditions,
            indexes,
            cache: indexes.map(SegmentIndex::instance),
            fill_cache: plan.fill_cache,
            condition_columns,
            text_masks: RefCell::default(),
            shared_blocks: RefCell::default(),
        }))
    }

    /// The rows that may match: the index's candidates, else the tenants' rows.
    fn estimated_rows(&self) -> u64 {
        match &self.candidates {
            Some(candidates) => candidates.len(),
            None => self
                .tenant_ranges
                .iter()
                .map(|range| range.end - range.start)
                .sum(),
        }
    }

    /// `columns` of a block: from the decoded-block cache when the segment is indexed (the whole
    /// block when text columns are asked for, since they are most of a block).
    fn read_block(&self, block_index: usize, columns: Columns) -> Result<Arc<Block>> {
        let Some(instance) = self.cache else {
            return Ok(Arc::new(self.segment.read_block(block_index, columns)?));
        };
        if !self.fill_cache {
            return Ok(block_cache::read_uncached(
                instance,
                self.segment,
                block_index,
                columns,
            )?);
        }
        if columns.contains(Column::Details) || columns.contains(Column::Changes) {
            return Ok(block_cache::whole(instance, self.segment, block_index)?);
        }
        Ok(block_cache::read(
            instance,
            self.segment,
            block_index,
            columns,
        )?)
    }

    /// Counts by code of `column` over the matching rows, from the filter index's row postings
    /// alone: per code, the cardinality of its posting within the rows of the tenants in the
    /// time range (and the candidates of the other filters). Returns false, counting nothing,
    /// when it cannot (no index, `column` not indexed by row, filters or text left to check
    /// row by row) or when counting rows is cheaper (many codes, few rows).
    fn posting_counts(&self, plan: &Plan<'_>, column: Column, by_code: &mut [u64]) -> Result<bool> {
        let Some(index) = self.indexes else {
            return Ok(false);
        };
        if !plan.text.is_empty()
            || !self.conditions.is_empty()
            || index.filters.granularity(column) != Some(Granularity::Rows)
        {
            return Ok(false);
        }
        let mut ranges = Vec::with_capacity(self.tenant_ranges.len());
        let mut rows = 0;
        for tenant_rows in &self.tenant_ranges {
            let range = self.rows_in_time_range(plan, tenant_rows.clone())?;
            if !range.is_empty() {
                rows += range.end - range.start;
                ranges.push(range.start as u32..range.end as u32);
            }
        }
        let top = match column {
            Column::Outcome => 2,
            Column::ActorType => 3,
            _ => max_code(self.segment, column)?,
        };
        if u64::from(top) * ROWS_PER_POSTING_COUNT > rows {
            return Ok(false);
        }
        let admitted = self.candidates.as_ref().map(|candidates| {
            let mut admitted = RoaringBitmap::new();
            for range in &ranges {
                admitted.insert_range(range.clone());
            }
            admitted &= candidates;
            admitted
        });
        for code in 1..=top {
            let Some((posting, true)) = index.posting(self.segment, column, code)? else {
                unreachable!("the column is indexed by row");
            };
            by_code[code as usize] = match &admitted {
                Some(admitted) => posting.intersection_len(admitted),
                None => ranges
                    .iter()
                    .map(|range| posting.range_cardinality(range.clone()))
                    .sum(),
            };
        }
        Ok(true)
    }

    /// The facet cache's key for this segment's counts of `field`, when they can be kept: an
    /// indexed segment wholly inside the time range.
    fn facet_cache_key(&self, field: Field, question: &Arc<str>) -> Option<facet_cache::Key> {
        Some(facet_cache::Key {
            instance: self.cache.filter(|_| self.within_time_range)?,
            field,
            question: Arc::clone(question),
            tenant_codes: self.tenant_codes.clone(),
        })
    }

    /// This segment's non-zero counts of a facet's `columns` among the matching rows, as
    /// (column slot, code, count); `codes` is scratch space (a vector per column).
    fn facet_codes(
        &self,
        plan: &Plan<'_>,
        columns: &[Column],
        codes: &mut [Vec<u64>],
    ) -> Result<Vec<(u8, u32, u64)>> {
        for (column, by_code) in columns.iter().zip(codes.iter_mut()) {
            by_code.clear();
            by_code.resize(max_code(self.segment, *column)? as usize + 1, 0);
        }
        let counted = match columns {
            [Column::Tenant] => self.tenant_counts(plan, &mut codes[0])?,
            [column] => self.posting_counts(plan, *column, &mut codes[0])?,
            _ => false,
        };
        if !counted {
            let extra = columns.iter().fold(Columns::NONE, |set, c| set.with(*c));
            plan.scan_segment(self, extra, |visit| {
                let Visit::Rows { block, rows, .. } = visit else {
                    return Ok(());
                };
                let block = block.expect("facet columns were asked for");
                count_codes(block, columns, rows, codes);
                Ok(())
            })?;
        }
        let mut found = Vec::new();
        for (slot, by_code) in codes.iter().enumerate() {
            // Code 0 is "absent": not counted.
            for (code, &n) in by_code.iter().enumerate().skip(1) {
                if n != 0 {
                    found.push((slot as u8, code as u32, n));
                }
            }
        }
        Ok(found)
    }

    /// Counts by tenant code from the tenants' row runs, without decoding rows: a run's length
    /// within the time range, or its candidates' count there. False (nothing counted) when
    /// rows must be checked (text, or filters the index did not answer).
    fn tenant_counts(&self, plan: &Plan<'_>, by_code: &mut [u64]) -> Result<bool> {
        if !plan.text.is_empty() || !self.conditions.is_empty() {
            return Ok(false);
        }
        let mut runs = Vec::with_capacity(self.tenant_codes.len());
        for &code in &self.tenant_codes {
            if let Some(run) = self.segment.tenant_code_rows(code) {
                let range = self.rows_in_time_range(plan, run)?;
                if !range.is_empty() {
                    runs.push((range, code));
                }
            }
        }
        let Some(candidates) = &self.candidates else {
            for (range, code) in runs {
                by_code[code as usize] = range.end - range.start;
            }
            return Ok(true);
        };
        // One walk over the candidates beside the runs in row order (a rank query per run
        // costs more: thousands of small tenants share each bitmap container).
        runs.sort_unstable_by_key(|(range, _)| range.start);
        let mut runs = runs.iter().peekable();
        for row in candidates {
            let row = u64::from(row);
            while runs.next_if(|(range, _)| range.end <= row).is_some() {}
            let Some((range, code)) = runs.peek() else {
                break;
            };
            if row >= range.start {
                by_code[*code as usize] += 1;
            }
        }
        Ok(true)
    }

    /// The rows of a tenant's run `rows` whose timestamps lie in the query's time range (a
    /// run is time-ordered, so they are contiguous); timestamps are decoded only for the
    /// blocks where a bound falls.
    fn rows_in_time_range(&self, plan: &Plan<'_>, rows: Range<u64>) -> Result<Range<u64>> {
        if self.within_time_range {
            return Ok(rows);
        }
        let start = match plan.query.from_us {
            Some(from) => self.first_row_at(from, rows.clone())?,
            None => rows.start,
        };
        let end = match plan.query.to_us {
            Some(to) => self.first_row_at(to, rows)?,
            None => rows.end,
        };
        Ok(start..end.max(start))
    }

    /// The first row of the run `rows` with a timestamp at or after `bound` (`rows.end` if
    /// none).
    fn first_row_at(&self, bound: i64, rows: Range<u64>) -> Result<u64> {
        for block_index in self.segment.blocks_for_rows(rows.clone()) {
            let meta = &self.segment.blocks()[block_index];
            if meta.max_timestamp_us < bound {
                continue;
            }
            let block_rows = meta.row_range();
            let start = rows.start.max(block_rows.start);
            let end = rows.end.min(block_rows.end);
            if meta.min_timestamp_us >= bound {
                return Ok(start);
            }
            let block = self.read_block(block_index, Columns::from(Column::Timestamp))?;
            let local = (start - block_rows.start) as usize..(end - block_rows.start) as usize;
            let before = block.timestamps()[local.clone()].partition_point(|&t| t < bound);
            if before < local.len() {
                return Ok(start + before as u64);
            }
        }
        Ok(rows.end)
    }

    /// Block `block_index` with every column over `rows` (ascending, within the block): the
    /// whole block through the cache when this matcher fills it (a small export), else the
    /// cached whole block when there is one, else decoded with its text columns only over the
    /// rows' span ([`Segment::read_block_rows`]), not cached.
    fn read_rows_block(&self, block_index: usize, rows: &[usize]) -> Result<Arc<Block>> {
        if self.fill_cache && self.cache.is_some() {
            return self.read_whole(block_index);
        }
        if let Some(block) = self
            .cache
            .and_then(|instance| block_cache::get(instance, block_index, Columns::ALL))
        {
            return Ok(block);
        }
        let span = match (rows.first(), rows.last()) {
            (Some(&first), Some(&last)) => first..last + 1,
            _ => 0..0,
        };
        let block_rows = self.segment.blocks()[block_index].rows as usize;
        if self.tenant_ranges.len() == 1 || span.len() == block_rows {
            return Ok(Arc::new(self.segment.read_block_rows(block_index, span)?));
        }
        // Other tenants' runs may need this block too: decode it whole, once.
        let mut shared = self.shared_blocks.borrow_mut();
        if let Some(block) = shared.get(&block_index).and_then(std::sync::Weak::upgrade) {
            return Ok(block);
        }
        let block = Arc::new(self.segment.read_block_rows(block_index, 0..block_rows)?);
        if shared.len() >= SHARED_BLOCKS_SWEEP {
            shared.retain(|_, block| block.strong_count() > 0);
        }
        shared.insert(block_index, Arc::downgrade(&block));
        Ok(block)
    }

    /// A block with every column, through the cache when the segment is indexed.
    fn read_whole(&self, block_index: usize) -> Result<Arc<Block>> {
        self.read_block(block_index, Columns::ALL)
    }

    /// False when the index shows that no candidate row of `rows` lies in the block.
    fn block_may_match(&self, block_index: usize, rows: &Range<u64>) -> bool {
        let Some(candidates) = &self.candidates else {
            return true;
        };
        let block_rows = self.segment.blocks()[block_index].row_range();
        let start = rows.start.max(block_rows.start);
        let end = rows.end.min(block_rows.end);
        start < end && candidates.range(start as u32..end as u32).next().is_some()
    }

    /// The rows of block `block_index` inside `rows` that match the plan (time, cursor,
    /// filters, text), as indexes in the block, ascending; with the block decoded with at least
    /// `extra` (`None` when nothing had to be decoded and `extra` is empty).
    fn match_block(
        &self,
        plan: &Plan<'_>,
        block_index: usize,
        rows: &Range<u64>,
        extra: Columns,
    ) -> Result<Option<BlockMatch>> {
        let meta = &self.segment.blocks()[block_index];
        let block_rows = meta.row_range();
        let start = rows.start.max(block_rows.start);
        let end = rows.end.min(block_rows.end);
        if start >= end {
            return Ok(None);
        }
        let local = (start - block_rows.start) as usize..(end - block_rows.start) as usize;
        let mut matched: Vec<usize> = match &self.candidates {
            Some(candidates) => candidates
                .range(start as u32..end as u32)
                .map(|row| (u64::from(row) - block_rows.start) as usize)
                .collect(),
            None => local.clone().collect(),
        };
        if let Some(index) = self.text_index {
            let mut text_rows = self.text_rows.borrow_mut();
            if text_rows.is_none() {
                *text_rows = Some(index.text.candidates(
                    self.segment,
                    &plan.query.text,
                    &self.tenant_codes,
                )?);
            }
            if let Some(allowed) = text_rows.as_ref().and_then(|c| c.rows.as_ref()) {
                matched.retain(|&row| allowed.contains((block_rows.start + row as u64) as u32));
            }
        }
        if matched.is_empty() {
            return Ok(None);
        }
        let check_keys = !plan.span_admitted(meta.min_timestamp_us, meta.max_timestamp_us);
        let mut columns = extra | self.condition_columns;
        if check_keys {
            columns = columns.with(Column::Timestamp);
            if plan.cursor.is_some() {
                columns = columns.with(Column::Seq);
            }
        }
        let block = if columns.is_empty() {
            None
        } else {
            Some(self.read_block(block_index, columns)?)
        };
        if let Some(block) = &block {
            if check_keys {
                let timestamps = block.timestamps();
                if plan.cursor.is_some() {
                    let seqs = block.seqs();
                    matched.retain(|&row| plan.admits((timestamps[row], seqs[row])));
                } else {
                    matched.retain(|&row| plan.query.in_time_range(timestamps[row]));
                }
            }
            for condition in &self.conditions {
                if matched.is_empty() {
                    break;
                }
                let any: Option<Vec<(Codes<'_>, &[u32])>> = condition.any.as_ref().map(|any| {
                    any.iter()
                        .map(|(column, codes)| (Codes::of(block, *column), codes.as_slice()))
                        .collect()
                });
                let none: Vec<(Codes<'_>, &[u32])> = condition
                    .none
                    .iter()
                    .map(|(column, codes)| (Codes::of(block, *column), codes.as_slice()))
                    .collect();
                let holds = |views: &[(Codes<'_>, &[u32])], row: usize| {
                    views.iter().any(|(view, codes)| {
                        let code = view.get(row);
                        code != 0 && codes.binary_search(&code).is_ok()
                    })
                };
                matched.retain(|&row| {
                    any.as_ref().is_none_or(|any| holds(any, row)) && !holds(&none, row)
                });
            }
        }
        if !plan.text.is_empty() && !matched.is_empty() {
            match (self.cache, plan.text_key.as_deref()) {
                (Some(instance), Some(text)) => {
                    // Shared with the other questions of this text: every row of the run in
                    // the block is checked once (see `text_cache`).
                    let entry = text_cache::entry(text, instance, block_index, meta.rows as usize);
                    let mut checks = entry.lock();
                    if matched.iter().any(|&row| !checks.is_checked(row)) {
                        let unchecked: Vec<usize> = local
                            .clone()
                            .filter(|&row| !checks.is_checked(row))
                            .collect();
                        let found = self.check_text(plan, block_index, &block, &unchecked)?;
                        let mut found = found.iter().peekable();
                        for row in unchecked {
                            let matches = found.next_if_eq(&&row).is_some();
                            checks.record(row, matches);
                        }
                    }
                    matched.retain(|&row| checks.matches(row));
                }
                _ => matched = self.check_text(plan, block_index, &block, &matched)?,
            }
        }
        Ok(Some((block, matched)))
    }

    /// The rows of `rows` (ascending, within block `block_index`) whose text matches the
    /// plan's, decoding what the check needs (reusing `block` when it has it).
    fn check_text(
        &self,
        plan: &Plan<'_>,
        block_index: usize,
        block: &Option<Arc<Block>>,
        rows: &[usize],
    ) -> Result<Vec<usize>> {
        let block_start = self.segment.blocks()[block_index].first_row;
        // The text index's candidates: the rows outside them cannot match.
        let candidates = self.text_rows.borrow();
        let allowed = candidates.as_ref().and_then(|c| c.rows.as_ref());
        let mut rows: Vec<usize> = rows
            .iter()
            .copied()
            .filter(|&row| allowed.is_none_or(|a| a.contains((block_start + row as u64) as u32)))
            .collect();
        if rows.is_empty() {
            return Ok(rows);
        }
        // With the text index, only the rows whose JSON may hold a word of the query need
        // their JSON columns: the others are settled by their dictionary values.
        let json_rows = candidates.as_ref().map(|c| &c.json);
        let needs_json = |row: usize| {
            json_rows.is_none_or(|json| json.contains((block_start + row as u64) as u32))
        };
        let columns = if rows.iter().any(|&row| needs_json(row)) {
            TEXT_COLUMNS
        } else {
            TEXT_DICTIONARY_COLUMN_SET
        };
        let texts = match block {
            Some(block) if block.columns().contains_all(columns) => Arc::clone(block),
            _ => self.read_block(block_index, columns)?,
        };
        let mut cache = self.text_masks.borrow_mut();
        rows.retain(|&row| {
            let mut mask = 0;
            for column in TEXT_DICTIONARY_COLUMNS {
                let code = texts.codes(column)[row];
                if code == 0 {
                    continue;
                }
                mask |= *cache
                    .entry((column, code))
                    .or_insert_with(|| plan.text.field_mask(block_value(&texts, column, code)));
            }
            // The JSON columns are the costly ones to tokenize: skipped when the others
            // already settle the row, or when they cannot hold a word of the query.
            if plan.text.settled(mask) || !needs_json(row) {
                return plan.text.accepts(mask);
            }
            for column in [Column::Details, Column::Changes] {
                if let Some(value) = texts.str(column, row) {
                    mask |= plan.text.json_field_mask(value);
                }
            }
            plan.text.accepts(mask)
        });
        Ok(rows)
    }
}

/// The value of a nonzero dictionary code in a decoded block. A decoded block holds the
/// dictionaries of its columns and its codes were checked against them (`Block` decoding), so
/// a miss is a broken invariant, not damage to report: it panics rather than read as no value.
pub(crate) fn block_value(block: &Block, column: Column, code: u32) -> &str {
    block
        .dictionary(column)
        .and_then(|dictionary| dictionary.get(code))
        .unwrap_or_else(|| {
            panic!(
                "code {code} of column {} has no value in the block's dictionary",
                column.name()
            )
        })
}

/// A block's matching rows (indexes in the block, ascending), with the block when columns had
/// to be decoded.
type BlockMatch = (Option<Arc<Block>>, Vec<usize>);

/// Where a candidate row lives.
#[derive(Debug, Clone, Copy)]
enum Location {
    Sealed {
        matcher: usize,
        block: usize,
        row: usize,
    },
    /// Index in the sorted matching tail events.
    Tail(usize),
    /// Not a row: the bound of a sealed run's next block, not decoded yet. Its key is the
    /// best key any row of that block can have, so the block is decoded only when the merge
    /// reaches that key (a page of the newest rows never decodes older blocks).
    Pending,
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    key: (i64, u64),
    location: Location,
}

/// The rows of one tenant in one segment, yielded in the query's order.
struct SealedRun {
    matcher: usize,
    rows: Range<u64>,
    /// Blocks not walked yet.
    blocks: Range<usize>,
    buffered: VecDeque<Candidate>,
    /// A block announced by a [`Location::Pending`] candidate, to decode on the next call.
    pending: Option<usize>,
    /// Key of the last row yielded, to check the segment's sort order.
    last: Option<(i64, u64)>,
    /// When the plan exports: the block of the buffered rows (they all come from one block),
    /// with every column decoded over their span.
    rows_block: Option<Arc<Block>>,
}

enum Run {
    Sealed(SealedRun),
    /// The sorted matching tail events from this index on.
    Tail(usize),
}

impl Run {
    fn next(
        &mut self,
        plan: &Plan<'_>,
        matchers: &[SegmentMatcher<'_>],
        tail: &[&StoredEvent],
    ) -> Result<Option<Candidate>> {
        match self {
            Run::Tail(next) => Ok(tail.get(*next).map(|event| {
                *next += 1;
                Candidate {
                    key: key_of(event),
                    location: Location::Tail(*next - 1),
                }
            })),
            Run::Sealed(run) => run.next(plan, matchers),
        }
    }
}

/// The merge of every run of a query: yields the matching rows in the query's order.
struct Merge {
    runs: Vec<Run>,
    heap: BinaryHeap<HeapItem>,
    /// The run of the row yielded last, advanced at the next [`Merge::pop`] (so that its
    /// decoded block is still [`SealedRun::current`] while the caller reads the row).
    advance: Option<usize>,
}

impl Merge {
    /// A run per tenant range of each matcher, and one for `tail` (the matching tail events,
    /// sorted in the query's order).
    fn new(
        plan: &Plan<'_>,
        matchers: &[SegmentMatcher<'_>],
        tail: &[&StoredEvent],
    ) -> Result<Merge> {
        let mut runs: Vec<Run> = Vec::new();
        for (index, matcher) in matchers.iter().enumerate() {
            for rows in &matcher.tenant_ranges {
                runs.push(Run::Sealed(SealedRun {
                    matcher: index,
                    rows: rows.clone(),
                    blocks: matcher.segment.blocks_for_rows(rows.clone()),
                    buffered: VecDeque::new(),
                    pending: None,
                    last: None,
                    rows_block: None,
                }));
            }
        }
        runs.push(Run::Tail(0));
        let order = plan.query.order;
        let mut heap = BinaryHeap::with_capacity(runs.len());
        for (index, run) in runs.iter_mut().enumerate() {
            if let Some(candidate) = run.next(plan, matchers, tail)? {
                heap.push(HeapItem {
                    order,
                    run: index,
                    candidate,
                });
            }
        }
        Ok(Merge {
            runs,
            heap,
            advance: None,
        })
    }

    fn push_next(
        &mut self,
        run: usize,
        plan: &Plan<'_>,
        matchers: &[SegmentMatcher<'_>],
        tail: &[&StoredEvent],
    ) -> Result<()> {
        if let Some(candidate) = self.runs[run].next(plan, matchers, tail)? {
            self.heap.push(HeapItem {
                order: plan.query.order,
                run,
                candidate,
            });
        }
        Ok(())
    }

    /// The next matching row and its run; `None` when every run is done.
    fn pop(
        &mut self,
        plan: &Plan<'_>,
        matchers: &[SegmentMatcher<'_>],
        tail: &[&StoredEvent],
    ) -> Result<Option<(usize, Candidate)>> {
        if let Some(run) = self.advance.take() {
            self.push_next(run, plan, matchers, tail)?;
        }
        while let Some(item) = self.heap.pop() {
            if matches!(item.candidate.location, Location::Pending) {
                self.push_next(item.run, plan, matchers, tail)?;
                continue;
            }
            self.advance = Some(item.run);
            return Ok(Some((item.run, item.candidate)));
        }
        Ok(None)
    }
}

/// Every event a query matches, in the query's order, read from one snapshot in batches: what
/// an export streams. The query's `limit` is ignored (no row cap); its cursor is honoured.
///
/// Unlike [`search`], which reads only the rows of its page, an export decodes each block it
/// reaches once (shared by the tenant runs that need it), hands out its matching rows
/// borrowed from it ([`Export::next_batch_with`]) and drops it, without putting it in the
/// [`block_cache`] (a large tenant's blocks would evict every page's) unless the export is
/// small (at most [`SMALL_EXPORT_ROWS`] rows by estimate). Memory is at most one decoded block
/// per run (a tenant's rows in one segment) whatever the number of rows exported: a few
/// megabytes for one tenant; for a query over thousands of tenants it grows with tenants x
/// segments, as the merge has a run for each ([`crate::export_chunks`] bounds it by cutting
/// the export into time windows).
///
/// ```
/// # use auditlog_engine::event::{Actor, Event};
/// # use auditlog_engine::store::{Store, StoreOptions};
/// use auditlog_index::{Export, Query, Scope};
/// # let dir = tempfile::tempdir().unwrap();
/// # let store = Store::open(StoreOptions::new(dir.path())).unwrap();
/// # let event = Event {
/// #     tenant: "acct_1".into(),
/// #     timestamp_us: 1_795_000_000_000_000,
/// #     actor: Actor { id: Some("user_1".into()), ..Actor::default() },
/// #     action: "delete".into(),
/// #     ..Event::default()
/// # };
/// # store.append(vec![event]).unwrap();
/// let snapshot = store.snapshot();
/// let query = Query::new(Scope::one("acct_1"));
/// let mut export = Export::new(&snapshot, &query).unwrap();
/// let mut rows = 0;
/// loop {
///     let batch = export.next_batch(1000).unwrap();
///     if batch.is_empty() {
///         break;
///     }
///     rows += batch.len();
/// }
/// assert_eq!(rows, 1);
/// ```
pub struct Export<'a> {
    plan: Plan<'a>,
    matchers: Vec<SegmentMatcher<'a>>,
    tail: Vec<&'a StoredEvent>,
    merge: Option<Merge>,
}

impl<'a> Export<'a> {
    /// Plans the export (segments and tail events to read); reads no block yet.
    pub fn new(snapshot: &'a Snapshot, query: &'a Query) -> Result<Export<'a>> {
        query.validate()?;
        let mut plan = Plan::new(query, true)?;
        plan.fill_cache = false;
        plan.materialize = true;
        if plan.tenants.is_empty() {
            return Ok(Export {
                plan,
                matchers: Vec::new(),
                tail: Vec::new(),
                merge: None,
            });
        }
        let mut matchers = plan.segment_matchers(snapshot)?;
        // A small export (a small tenant's month: a block or two per day) goes through the
        // block cache like a page: its few blocks are likely the ones its pages show, and
        // decoding them again at each export would cost more than the rows.
        let rows: u64 = matchers.iter().map(SegmentMatcher::estimated_rows).sum();
        if rows <= SMALL_EXPORT_ROWS {
            for matcher in &mut matchers {
                matcher.fill_cache = true;
            }
        }
        let mut tail: Vec<&StoredEvent> = Vec::new();
        plan.tail_matches(snapshot, |event| tail.push(event));
        tail.sort_unstable_by(|a, b| compare_keys(query.order, key_of(a), key_of(b)));
        let merge = Merge::new(&plan, &matchers, &tail)?;
        Ok(Export {
            plan,
            matchers,
            tail,
            merge: Some(merge),
        })
    }

    /// The next at most `max` events (at least one unless the export is done: an empty batch
    /// means every matching event was returned).
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<StoredEvent>> {
        let mut events = Vec::with_capacity(max.min(LIMIT_MAX));
        self.next_batch_with(max, |event| events.push(event.to_stored()))?;
        Ok(events)
    }

    /// Hands the next at most `max` events to `write`, borrowed from their decoded block (no
    /// string is copied: what an export that writes CSV or NDJSON uses); returns how many, 0
    /// when the export is done.
    pub fn next_batch_with(
        &mut self,
        max: usize,
        mut write: impl FnMut(EventRef<'_>),
    ) -> Result<usize> {
        let Some(merge) = self.merge.as_mut() else {
            return Ok(0);
        };
        let mut written = 0;
        while written < max {
            let Some((run, candidate)) = merge.pop(&self.plan, &self.matchers, &self.tail)? else {
                self.merge = None;
                break;
            };
            match (candidate.location, &merge.runs[run]) {
                (Location::Sealed { row, .. }, Run::Sealed(sealed)) => write(
                    sealed
                        .rows_block
                        .as_ref()
                        .expect("a sealed row's block is kept while its rows are merged")
                        .event_ref(row),
                ),
                (Location::Tail(index), _) => write(self.tail[index].view()),
                _ => unreachable!("a sealed row from a sealed run, a tail row from the tail"),
            }
            written += 1;
        }
        Ok(written)
    }
}

/// Least estimated rows per tenant run in an export window when a segment has at least
/// [`MANY_RUNS`] tenant runs in it (see [`export_windows`]).
const ROWS_PER_RUN_PER_WINDOW: u64 = 1024;
const MANY_RUNS: u64 = 16;

/// Estimated rows up to which an [`Export`] reads through the [`block_cache`].
const SMALL_EXPORT_ROWS: u64 = 16_384;

/// Entries of [`SegmentMatcher::shared_blocks`] past which dropped blocks are swept out.
const SHARED_BLOCKS_SWEEP: usize = 256;

/// The time windows `[from, to)` an export of `query` splits into, in the query's order,
/// covering its whole time range without overlap, each holding about `window_rows` matching
/// rows at most by estimate (or [`ROWS_PER_RUN_PER_WINDOW`] per tenant run when there are
/// [`MANY_RUNS`] or more): per segment that may match, its rows of the tenants in scope (or its index
/// candidates) spread evenly over its time span. Concatenating the windows' exports
/// gives the query's export, since rows are ordered by timestamp first. See
/// [`crate::export::export_chunks`].
pub(crate) fn export_windows(
    snapshot: &Snapshot,
    query: &Query,
    window_rows: u64,
) -> Result<Vec<(Option<i64>, Option<i64>)>> {
    let plan = Plan::new(query, true)?;
    let (from, to) = (
        query.from_us.unwrap_or(i64::MIN),
        query.to_us.unwrap_or(i64::MAX),
    );
    // Per segment: [start, end) of its timestamps within the query's range, its rows and its
    // tenant runs.
    let mut spans: Vec<(i64, i64, u64, u64)> = Vec::new();
    if !plan.tenants.is_empty() {
        for sealed in snapshot.segments.iter() {
            if !plan.entry_may_match(&sealed.entry) {
                continue;
            }
            let Some(matcher) = SegmentMatcher::new(&plan, sealed)? else {
                continue;
            };
            let rows = matcher.estimated_rows();
            let start = sealed.entry.min_timestamp_us.max(from);
            let end = sealed.entry.max_timestamp_us.saturating_add(1).min(to);
            if start < end {
                spans.push((start, end, rows, matcher.tenant_ranges.len() as u64));
            }
        }
    }
    let cuts = window_cuts(&spans, window_rows);
    let mut bounds = vec![query.from_us];
    bounds.extend(
        cuts.into_iter()
            .filter(|&cut| cut > from && cut < to)
            .map(Some),
    );
    bounds.push(query.to_us);
    let mut windows: Vec<(Option<i64>, Option<i64>)> =
        bounds.windows(2).map(|pair| (pair[0], pair[1])).collect();
    if query.order == Order::NewestFirst {
        windows.reverse();
    }
    Ok(windows)
}

/// Where [`export_windows`] cuts, ascending, from the spans `(start, end, rows, tenant runs)`
/// of the segments that may match: where the estimated rows since the previous cut reach a
/// window's worth, so that a small export is one window (one merge, no threads) and a large one
/// is cut evenly.
///
/// ```text
/// one span [0, 100) of 1,000 rows, windows of 300 rows  ->  cuts at 30, 60, 90
/// ```
fn window_cuts(spans: &[(i64, i64, u64, u64)], window_rows: u64) -> Vec<i64> {
    let mut points: Vec<i64> = spans
        .iter()
        .flat_map(|&(start, end, ..)| [start, end])
        .collect();
    points.sort_unstable();
    points.dedup();
    let mut cuts = Vec::new();
    let mut carried = 0.0f64;
    for pair in points.windows(2) {
        let (start, end) = (pair[0], pair[1]);
        let width = (end as i128 - start as i128) as f64;
        let covering = || spans.iter().filter(|&&(s, e, ..)| s <= start && end <= e);
        let rows: f64 = covering()
            .map(|&(s, e, rows, _)| rows as f64 * width / (e as i128 - s as i128) as f64)
            .sum();
        // Every window decodes each block its runs reach: with many tenants a block holds
        // rows of many runs, so windows must hold more rows for a block to be decoded once
        // for many of its rows rather than again in every window.
        let runs = covering().map(|&(.., runs)| runs).max().unwrap_or(1);
        let floor = if runs >= MANY_RUNS {
            runs * ROWS_PER_RUN_PER_WINDOW
        } else {
            0
        };
        let window = window_rows.max(floor).max(1) as f64;
        // Rows into this interval where the next cut falls: at its start at the earliest,
        // when the rows carried from before it already exceed this interval's window (a
        // smaller one than the interval before had: fewer tenant runs cover it). Never before
        // its start, where the cut would fall behind the cuts already made and the windows
        // would overlap (rows exported twice).
        let mut next = (window - carried).max(0.0);
        while next < rows {
            cuts.push((start as i128 + (width * next / rows) as i128) as i64);
            next += window;
        }
        carried = rows - (next - window);
    }
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

impl SealedRun {
    fn next(
        &mut self,
        plan: &Plan<'_>,
        matchers: &[SegmentMatcher<'_>],
    ) -> Result<Option<Candidate>> {
        let order = plan.query.order;
        let matcher = &matchers[self.matcher];
        loop {
            if let Some(candidate) = self.buffered.pop_front() {
                if self
                    .last
                    .is_some_and(|last| !order.before(last, candidate.key))
                {
                    return Err(Error::Unsorted {
                        path: matcher.segment.path().to_path_buf(),
                        block: match candidate.location {
                            Location::Sealed { block, .. } => block,
                            Location::Tail(_) | Location::Pending => 0,
                        },
                    });
                }
                self.last = Some(candidate.key);
                return Ok(Some(candidate));
            }
            if let Some(block_index) = self.pending.take() {
                self.decode(plan, matcher, block_index)?;
                continue;
            }
            let next = match order {
                Order::OldestFirst => self.blocks.next(),
                Order::NewestFirst => self.blocks.next_back(),
            };
            let Some(block_index) = next else {
                return Ok(None);
            };
            let meta = &matcher.segment.blocks()[block_index];
            if plan.block_past(meta, order) {
                self.blocks = 0..0;
                return Ok(None);
            }
            if !plan.span_may_match(meta.min_timestamp_us, meta.max_timestamp_us) {
                continue;
            }
            if !matcher.block_may_match(block_index, &self.rows) {
                continue;
            }
            self.pending = Some(block_index);
            let bound = match order {
                Order::OldestFirst => (meta.min_timestamp_us, 0),
                Order::NewestFirst => (meta.max_timestamp_us, u64::MAX),
            };
            return Ok(Some(Candidate {
                key: bound,
                location: Location::Pending,
            }));
        }
    }

    /// Decodes a block's matching rows into `buffered`, in the query's order.
    fn decode(
        &mut self,
        plan: &Plan<'_>,
        matcher: &SegmentMatcher<'_>,
        block_index: usize,
    ) -> Result<()> {
        let columns = Column::Timestamp | Column::Seq;
        let Some((block, matched)) = matcher.match_block(plan, block_index, &self.rows, columns)?
        else {
            return Ok(());
        };
        let block = block.expect("timestamps and seqs were asked for");
        let (timestamps, seqs) = (block.timestamps(), block.seqs());
        let candidates = matched.iter().map(|&row| Candidate {
            key: (timestamps[row], seqs[row]),
            location: Location::Sealed {
                matcher: self.matcher,
                block: block_index,
                row,
            },
        });
        match plan.query.order {
            Order::OldestFirst => self.buffered.extend(candidates),
            Order::NewestFirst => self.buffered.extend(candidates.rev()),
        }
        if plan.materialize && !matched.is_empty() {
            self.rows_block = Some(matcher.read_rows_block(block_index, &matched)?);
        }
        Ok(())
    }
}

/// A run's next candidate in the merge heap (a max-heap: the row that comes first in the
/// query's order is the greatest).
struct HeapItem {
    order: Order,
    run: usize,
    candidate: Candidate,
}

impl PartialEq for HeapItem {
    fn eq(&self, other: &Self) -> bool {
        self.candidate.key == other.candidate.key
    }
}

impl Eq for HeapItem {}

impl PartialOrd for HeapItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for HeapItem {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_keys(self.order, other.candidate.key, self.candidate.key)
    }
}

#[cfg(test)]
mod tests {
    use super::window_cuts;

    #[test]
    fn window_cuts_spread_one_span_evenly() {
        assert_eq!(window_cuts(&[(0, 100, 1_000, 1)], 300), [30, 60, 90]);
        assert!(window_cuts(&[(0, 100, 1_000, 1)], 5_000).is_empty());
    }

    /// Rows carried from an interval covered by many tenant runs (a large window) into one
    /// covered by few (a smaller window) cut at that interval's start, never before it: a cut
    /// behind the earlier ones made windows overlap, and the export wrote their rows twice.
    #[test]
    fn window_cuts_ascend_when_the_window_shrinks() {
        let minute = 60_000_000i64;
        let t = 1_700_000_000_000_000i64;
        let spans = [
            (t, t + 60 * minute, 37_480, 20),
            (t + 30 * minute, t + 180 * minute, 100, 2),
        ];
        let cuts = window_cuts(&spans, 16_384);
        assert!(!cuts.is_empty());
        assert!(
            cuts.windows(2).all(|pair| pair[0] < pair[1]),
            "{cuts:?} ascend"
        );
        assert!(
            cuts.iter().all(|&cut| cut >= t && cut < t + 180 * minute),
            "{cuts:?} within the spans"
        );
    }

    /// Any spans: cuts ascend and stay within the spans' range.
    #[test]
    fn window_cuts_ascend_for_any_spans() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        for _ in 0..2_000 {
            let spans: Vec<(i64, i64, u64, u64)> = (0..1 + next(6))
                .map(|_| {
                    let start = next(1_000) as i64;
                    let end = start + 1 + next(1_000) as i64;
                    (start, end, next(100_000), 1 + next(40))
                })
                .collect();
            let window = 1 + next(20_000);
            let cuts = window_cuts(&spans, window);
            let low = spans.iter().map(|s| s.0).min().unwrap();
            let high = spans.iter().map(|s| s.1).max().unwrap();
            assert!(cuts.windows(2).all(|p| p[0] < p[1]), "{spans:?} {cuts:?}");
            assert!(
                cuts.iter().all(|&c| c >= low && c < high),
                "{spans:?} {cuts:?}"
            );
        }
    }
}
