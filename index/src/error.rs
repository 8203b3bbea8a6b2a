//! The crate's error type. Messages are lowercase, name the object, and end without a period.
//! Every variant but [`Error::Engine`] and [`Error::Unsorted`] is the caller's mistake (a 4xx).

use std::path::PathBuf;

use crate::parse::ParseError;
use crate::query::Field;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while parsing, checking or answering a query.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the store failed (I/O, a damaged segment).
    #[error(transparent)]
    Engine(#[from] auditlog_engine::Error),
    /// The query text does not follow the query language.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A scope must name at least one tenant.
    #[error("the query's scope names no tenant")]
    EmptyScope,
    #[error("limit {found} is out of range 1..={max}")]
    LimitOutOfRange { found: usize, max: usize },
    #[error("facet size {found} is out of range 1..={max}")]
    FacetSizeOutOfRange { found: usize, max: usize },
    #[error("too many text terms: {found}, limit {limit}")]
    TooManyTextTerms { found: usize, limit: usize },
    #[error("text term {text:?} has no letter or digit")]
    EmptyTextTerm { text: String },
    #[error("too many values for field {field}: {found}, limit {limit}")]
    TooManyValues {
        field: Field,
        found: usize,
        limit: usize,
    },
    #[error("{what} is {found} bytes long, limit {limit}")]
    ValueTooLong {
        what: String,
        found: usize,
        limit: usize,
    },
    #[error("unknown field {name:?}")]
    UnknownField { name: String },
    #[error("invalid cursor: {reason}")]
    InvalidCursor { reason: String },
    #[error("the cursor is for {cursor} order, the query asks for {query}")]
    CursorOrderMismatch {
        cursor: &'static str,
        query: &'static str,
    },
    #[error("histogram bucket width {found} µs must be positive")]
    BucketWidth { found: i64 },
    #[error(
        "the histogram has more than {limit} buckets; choose wider buckets or a shorter time range"
    )]
    TooManyBuckets { limit: usize },
    /// A segment's rows are not in (tenant, timestamp, seq) order: the file breaks the format.
    #[error("segment {path} has rows out of (tenant, timestamp, seq) order in block {block}")]
    Unsorted { path: PathBuf, block: usize },
}
