//! # auditlog-engine: the storage engine of the audit-log datastore
//!
//! What it does: keeps audit events durably, append-only and in order. An [`Store::append`] call
//! validates nothing itself (the [`event`] module parses and validates EVENT.md JSON); it assigns
//! `seq`, `tenant_seq` and `received`, group-commits the batch to the write-ahead log ([`wal`]) and
//! returns once the batch is durable. Acknowledged events live in the in-memory [`tail`] until a
//! background pass seals them into immutable, compressed, columnar [`segment`]s grouped in time
//! partitions (UTC day x retention class) listed by the [`manifest`]. A retention pass archives and
//! drops whole partitions.
//!
//! What it is not for: it knows nothing of HTTP, tokio or full-text search; the `auditlog-index`
//! crate builds indexes over the segments it seals, and the server exposes it. It never updates
//! or deletes a single event.
//!
//! Limits: one process owns a data directory (a lock file enforces it); the tail is bounded in
//! memory, and `append` answers [`Error::Busy`] when sealing falls behind; a batch holds at most
//! [`StoreOptions::batch_events_max`] events.
//!
//! On-disk formats are specified in `docs/FORMAT.md` at the repository root.

pub mod error;
pub mod event;
pub mod io;
pub mod ledger;
pub mod manifest;
pub mod partition;
pub mod segment;
pub mod store;
pub mod tail;
pub mod verify;
pub mod wal;

pub use error::{Error, Result};
pub use store::{AppendResult, Durability, Snapshot, Store, StoreOptions};
