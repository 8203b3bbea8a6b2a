//! `GET /metrics`: Prometheus text exposition of the server's and the store's counters: ingest
//! rate, acknowledgement and fsync latency histograms, segments and bytes, queries, stream
//! clients, rejected requests.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use auditlog_engine::store::{LatencyHistogram, LATENCY_BUCKETS_US};
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// Counters the handlers update.
#[derive(Debug, Default)]
pub struct ServerMetrics {
    pub ingest_requests: AtomicU64,
    pub ingest_events: AtomicU64,
    pub ingest_duplicates: AtomicU64,
    /// Requests answered 4xx (bad input, auth) or 5xx, any route.
    pub rejected_4xx: AtomicU64,
    pub failed_5xx: AtomicU64,
    /// From request to durable acknowledgement, per ingest request.
    pub ack_latency: LatencyHistogram,
    /// The parts of an acknowledged ingest request's time: reading the body, waiting for a
    /// blocking thread, parsing and validating, and the store's append (idempotency checks,
    /// group commit write and fsync). They tell where an acknowledgement's time goes.
    pub ingest_body: LatencyHistogram,
    pub ingest_queue: LatencyHistogram,
    pub ingest_parse: LatencyHistogram,
    pub ingest_store: LatencyHistogram,
    pub queries: AtomicU64,
    pub exports: AtomicU64,
    /// Exports abandoned because their client accepted nothing for `export_stall_seconds`.
    pub exports_abandoned: AtomicU64,
    pub stream_clients: AtomicI64,
    /// Live-stream clients closed because they accepted nothing for `stream_stall_seconds`.
    pub stream_stalled: AtomicU64,
}

fn histogram(out: &mut String, name: &str, help: &str, histogram: &LatencyHistogram) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    // Buckets, +Inf and _count from one read of the buckets, so they agree.
    let (cumulative, total) = histogram.cumulative_with_total();
    for (bound, count) in LATENCY_BUCKETS_US.iter().zip(cumulative) {
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"{}\"}} {count}",
            *bound as f64 / 1e6
        );
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
    let _ = writeln!(out, "{name}_sum {}", histogram.sum_us() as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {total}");
}

fn counter(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}

/// Renders every metric.
pub fn render(state: &AppState) -> String {
    let m = &state.metrics;
    let store = state.store.metrics();
    let stats = state.store.stats();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::with_capacity(4096);
    counter(
        &mut out,
        "auditlog_ingest_requests_total",
        "counter",
        "Ingest requests received.",
        load(&m.ingest_requests),
    );
    counter(
        &mut out,
        "auditlog_ingest_events_total",
        "counter",
        "Events acknowledged through the API.",
        load(&m.ingest_events),
    );
    counter(
        &mut out,
        "auditlog_ingest_duplicates_total",
        "counter",
        "Events acknowledged as duplicates of stored ones.",
        load(&m.ingest_duplicates),
    );
    counter(
        &mut out,
        "auditlog_requests_rejected_total",
        "counter",
        "Requests answered with a 4xx status.",
        load(&m.rejected_4xx),
    );
    counter(
        &mut out,
        "auditlog_requests_failed_total",
        "counter",
        "Requests answered with a 5xx status.",
        load(&m.failed_5xx),
    );
    histogram(
        &mut out,
        "auditlog_ack_latency_seconds",
        "Ingest request to durable acknowledgement.",
        &m.ack_latency,
    );
    for (name, help, part) in [
        (
            "auditlog_ingest_body_seconds",
            "Reading an acknowledged ingest request's body.",
            &m.ingest_body,
        ),
        (
            "auditlog_ingest_queue_seconds",
            "An acknowledged ingest request waiting for a blocking thread.",
            &m.ingest_queue,
        ),
        (
            "auditlog_ingest_parse_seconds",
            "Parsing and validating an acknowledged ingest batch.",
            &m.ingest_parse,
        ),
        (
            "auditlog_ingest_store_seconds",
            "The store's append of an acknowledged batch (idempotency checks, group commit).",
            &m.ingest_store,
        ),
    ] {
        histogram(&mut out, name, help, part);
    }
    histogram(
        &mut out,
        "auditlog_fsync_latency_seconds",
        "WAL fdatasync latency.",
        &store.fsync,
    );
    histogram(
        &mut out,
        "auditlog_seal_duration_seconds",
        "Sealing the tail into segments.",
        &store.seal,
    );
    histogram(
        &mut out,
        "auditlog_merge_duration_seconds",
        "Merging a partition's segments into one.",
        &store.merge,
    );
    histogram(
        &mut out,
        "auditlog_deferred_index_duration_seconds",
        "Building the indexes of a segment later: one sealed without them, or found without them at start.",
        &store.deferred_index,
    );
    counter(
        &mut out,
        "auditlog_background_failures_total",
        "counter",
        "Seals, merges and retention passes that failed (each is retried; /readyz names a failing seal).",
        load(&store.background_failures),
    );
    counter(
        &mut out,
        "auditlog_retention_skipped_clock_total",
        "counter",
        "Retention passes skipped because the wall clock ran more than an hour ahead of the time elapsed since start (nothing is dropped by a clock stepped forward).",
        load(&store.retention_skipped_clock),
    );
    counter(
        &mut out,
        "auditlog_segments_index_deferred_total",
        "counter",
        "Segments sealed with their indexes left for later, the tail being near its bound.",
        load(&store.segments_deferred),
    );
    counter(
        &mut out,
        "auditlog_rows_sealed_total",
        "counter",
        "Rows written into segments by seals.",
        load(&store.rows_sealed),
    );
    counter(
        &mut out,
        "auditlog_rows_merged_total",
        "counter",
        "Rows rewritten by merges (encoded and indexed again).",
        load(&store.rows_merged),
    );
    counter(
        &mut out,
        "auditlog_store_events_appended_total",
        "counter",
        "Events appended since the store opened.",
        load(&store.events_appended),
    );
    counter(
        &mut out,
        "auditlog_events",
        "gauge",
        "Events stored (sealed plus tail).",
        stats.sealed_events + stats.tail_events,
    );
    counter(
        &mut out,
        "auditlog_tail_events",
        "gauge",
        "Acknowledged events not yet sealed.",
        stats.tail_events,
    );
    counter(
        &mut out,
        "auditlog_tail_bytes",
        "gauge",
        "Approximate memory held by the tail.",
        stats.tail_bytes,
    );
    counter(
        &mut out,
        "auditlog_segments",
        "gauge",
        "Sealed segments.",
        stats.segments,
    );
    counter(
        &mut out,
        "auditlog_segments_unindexed",
        "gauge",
        "Sealed segments whose indexes are still to be built (queries scan them).",
        stats.unindexed_segments,
    );
    counter(
        &mut out,
        "auditlog_segment_bytes",
        "gauge",
        "Bytes of sealed segments.",
        stats.segment_bytes,
    );
    counter(
        &mut out,
        "auditlog_partitions",
        "gauge",
        "Time partitions.",
        stats.partitions,
    );
    counter(
        &mut out,
        "auditlog_wal_files",
        "gauge",
        "Write-ahead log files.",
        stats.wal_files,
    );
    counter(
        &mut out,
        "auditlog_queries_total",
        "counter",
        "Queries (list, facets, histogram).",
        load(&m.queries),
    );
    counter(
        &mut out,
        "auditlog_exports_total",
        "counter",
        "Exports started.",
        load(&m.exports),
    );
    counter(
        &mut out,
        "auditlog_exports_abandoned_total",
        "counter",
        "Exports abandoned because their client accepted nothing for export_stall_seconds.",
        load(&m.exports_abandoned),
    );
    counter(
        &mut out,
        "auditlog_stream_clients",
        "gauge",
        "Connected live-stream clients.",
        m.stream_clients.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "auditlog_stream_clients_stalled_total",
        "counter",
        "Live-stream clients closed because they accepted nothing for stream_stall_seconds.",
        load(&m.stream_stalled),
    );
    out
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "admin",
    security(()),
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain"))
)]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let body = tokio::task::spawn_blocking(move || render(&state))
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}
