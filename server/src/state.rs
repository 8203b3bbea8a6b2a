//! What every request handler shares.

use std::sync::Arc;

use auditlog_engine::event::RetentionPolicy;
use auditlog_engine::Store;

use crate::auth::TokenStore;
use crate::config::ServerConfig;

/// Shared state of the server.
pub struct AppState {
    pub store: Arc<Store>,
    pub tokens: TokenStore,
    pub config: ServerConfig,
    /// Per-tenant retention, for ingest validation.
    pub retention: RetentionPolicy,
    /// Request counters and latencies for `/metrics`.
    pub metrics: crate::metrics::ServerMetrics,
    /// Every committed chunk with its tenant index, for the live stream.
    pub live: tokio::sync::broadcast::Sender<crate::routes::stream::LiveChunk>,
    /// Set to true when the server starts shutting down: live streams end (close code 1001).
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// One permit per export that may run at once (`exports_max`): each holds a store
    /// snapshot and buffers up to tens of MB.
    pub export_slots: Arc<tokio::sync::Semaphore>,
    /// One permit per live stream that may be open at once (`streams_max`).
    pub stream_slots: Arc<tokio::sync::Semaphore>,
    /// KiB of ingest request bodies being read, decoded or parsed at once
    /// ([`INGEST_INFLIGHT_KIB`]): a body's declared length (or the limit, without one) is
    /// taken before it is read, more as a compressed body is decoded, and all of it is held
    /// until the request's work is done (whether or not its client is still there).
    pub ingest_room: Arc<tokio::sync::Semaphore>,
}

/// Most KiB of ingest bodies in flight at once (256 MiB, counted decoded): many slow or
/// stalled uploads, or bodies that decompress a hundredfold, cannot hold more memory than
/// that (the parsed events of those being parsed come on top, a few times their bodies).
/// Past it a request waits up to 2 s, then is answered 429.
pub const INGEST_INFLIGHT_KIB: usize = 256 << 10;
