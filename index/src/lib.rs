//! # auditlog-index: search over the audit-log store
//!
//! What it does: answers the questions of the Audit Logs page and the API over an engine
//! [`Snapshot`](auditlog_engine::Snapshot) — sealed segments plus the in-memory tail, so an
//! event is searchable as soon as it is acknowledged, and seen exactly once across the
//! tail/sealed boundary and across merges.
//!
//! - [`query`]: the model. A [`Query`] is a tenant [`Scope`] (from the credential, never from
//!   the caller's text), a time range, per-field any-of/none-of [`Filters`], full-text
//!   [`TextTerm`]s, an [`Order`], a `limit` and an opaque [`Cursor`] that resumes exactly.
//! - [`parse`](mod@parse): the query language of the search bar and the API's `q` parameter
//!   (`action:delete -outcome:failure "llama finetune" since:24h`), with errors that name the
//!   position, what was expected and what was found. The grammar is in the module docs.
//! - [`exec`]: [`search`] (a page and the next cursor), [`count`], [`facets`] and
//!   [`histogram`], planned as: prune segments by time, scope and dictionaries; AND the filter
//!   postings of each segment into candidate rows; walk each tenant's time-ordered rows block
//!   by block in the query's order, decoding a block only when the merge of all runs and the
//!   tail reaches it; check row by row only what the indexes could not answer exactly.
//!   [`Export`] is the same merge without a row cap, handing out borrowed rows.
//! - [`export`](mod@export): [`export_chunks`] runs an export on several threads in time
//!   windows and hands its output out in order, in bounded memory.
//! - [`segment_index`]: the indexes of a sealed segment, built by the engine's segment hook
//!   ([`SegmentIndexer`]) when the segment is sealed or merged: the [`filter`] index (rows or
//!   blocks per value of each exact-match field) and the [`fulltext`] index (tantivy, one
//!   document per block and tenant run). [`block_cache`] keeps decoded blocks, [`text_cache`]
//!   the rows of a block that a query text was checked against.
//! - [`tokenize`] and [`text`]: the tokenizer (atoms plus whole hyphenated/dotted tokens) and
//!   what a text term matches, shared by the index builder and the row check.
//!
//! A store opened without the hook (a tool reading a data directory) is still answered
//! exactly: segments without indexes are scanned block by block. Results are ordered by time,
//! not ranked by relevance.
//!
//! Limits: `limit` is 1..=1000 ([`query::LIMIT_MAX`]); at most 32 text terms, 256 values per
//! field, 1024 bytes per value; a query text is at most 4096 bytes; facets return at most 1000
//! values; a histogram at most 10,000 non-empty buckets. `count`, `facets` and `histogram`
//! ignore the cursor. A query reads one snapshot, synchronously, on the caller's thread (an
//! [`export_chunks`] also on its worker threads); the server runs it on a blocking thread.
//!
//! ```
//! use auditlog_engine::event::{Actor, Event, Resource};
//! use auditlog_engine::store::{now_us, Store, StoreOptions};
//! use auditlog_index::{parse, search, Scope};
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(StoreOptions::new(dir.path())).unwrap();
//! let event = Event {
//!     timestamp_us: now_us(),
//!     tenant: "acct_1".into(),
//!     actor: Actor { email: Some("alice@example.com".into()), ..Actor::default() },
//!     action: "delete".into(),
//!     resource: Resource { kind: "pod".into(), name: Some("llama-finetune-3".into()), ..Resource::default() },
//!     ..Event::default()
//! };
//! store.append(vec![event]).unwrap();
//! let query = parse("action:delete llama-finetune user:alice@example.com")
//!     .unwrap()
//!     .into_query(Scope::one("acct_1"), now_us());
//! let page = search(&store.snapshot(), &query).unwrap();
//! assert_eq!(page.events.len(), 1);
//! assert_eq!(page.next_cursor, None);
//! ```

pub mod block_cache;
pub mod codes;
pub mod error;
pub mod exec;
pub mod export;
pub mod facet_cache;
pub mod filter;
pub mod fulltext;
pub mod paced_directory;
pub mod parse;
pub mod query;
pub mod segment_index;
pub mod text;
pub mod text_cache;
pub mod tokenize;

pub use error::{Error, Result};
pub use exec::{count, facets, histogram, search, Export, Page};
pub use export::{export_chunks, ExportOptions};
pub use parse::{parse, ParseError, ParsedQuery};
pub use query::{Cursor, Field, FieldFilter, Filters, Order, Query, Scope, TextKind, TextTerm};
pub use segment_index::{SegmentIndex, SegmentIndexer};
