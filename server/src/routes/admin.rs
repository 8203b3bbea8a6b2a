//! `POST /v1/admin/flush`, `GET /v1/admin/stats`, `GET /v1/admin/integrity` (admin only),
//! `/healthz`, `/readyz`.

use std::path::Path;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::auth::Principal;
use crate::error::{blocking, ApiError};
use crate::state::AppState;

#[utoipa::path(
    post,
    path = "/v1/admin/flush",
    tag = "admin",
    responses(
        (status = 200, description = "`{sealed_through}`: every event so far is in segments", content_type = "application/json"),
        (status = 401, description = "Missing, malformed or unknown token", body = crate::openapi::ErrorResponse),
        (status = 403, description = "The token's role or tenants do not allow this", body = crate::openapi::ErrorResponse),
        (status = 500, description = "The seal failed on an I/O error, named in the message (the background retries it)", body = crate::openapi::ErrorResponse),
        (status = 503, description = "The store refuses writes (disk full, or a failed WAL write or fsync)", body = crate::openapi::ErrorResponse)
    )
)]
pub async fn flush(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let sealed_through = blocking(move || Ok(state.store.seal()?)).await?;
    Ok(Json(serde_json::json!({ "sealed_through": sealed_through })).into_response())
}

/// Bytes on disk under `dir`: [WAL, segment data, filter bitmaps, text index, other].
fn bytes_by_kind(dir: &Path, totals: &mut [u64; 5], in_text_index: bool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            let text = in_text_index || path.extension().is_some_and(|e| e == "text" || e == "tmp");
            bytes_by_kind(&path, totals, text);
            continue;
        }
        let len = entry.metadata().map_or(0, |m| m.len());
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if in_text_index {
            totals[3] += len;
        } else if name.ends_with(".wal") || name.ends_with(".spare") || name.ends_with(".wal.tmp") {
            // Sealed WAL files kept to be written over are the WAL's disk too.
            totals[0] += len;
        } else if name.ends_with(".seg") {
            totals[1] += len;
        } else if name.ends_with(".idx") {
            totals[2] += len;
        } else {
            totals[4] += len;
        }
    }
}

#[utoipa::path(
    get,
    path = "/v1/admin/stats",
    tag = "admin",
    responses(
        (status = 200, description = "Event, tenant, partition and segment counts, bytes by kind", content_type = "application/json"),
        (status = 401, description = "Missing, malformed or unknown token", body = crate::openapi::ErrorResponse),
        (status = 403, description = "The token's role or tenants do not allow this", body = crate::openapi::ErrorResponse)
    )
)]
pub async fn stats(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let answer = blocking(move || {
        let stats = state.store.stats();
        let mut totals = [0u64; 5];
        bytes_by_kind(&state.config.data_dir, &mut totals, false);
        Ok(serde_json::json!({
            "events": stats.sealed_events + stats.tail_events,
            "last_seq": stats.last_seq,
            "tenants": stats.tenants,
            "partitions": stats.partitions,
            "segments": stats.segments,
            "tail_events": stats.tail_events,
            "unindexed_segments": stats.unindexed_segments,
            "bytes": {
                "wal": totals[0],
                "segments": totals[1],
                "bitmaps": totals[2],
                "text_index": totals[3],
                "other": totals[4],
            },
        }))
    })
    .await?;
    Ok(Json(answer).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/admin/integrity",
    tag = "admin",
    responses(
        (status = 200, description = "The integrity ledger's head: `{entries, head, segments, verify}`. Keep `entries` and `head` where the data directory's writers cannot reach; `verify` is the command that later proves no sealed segment changed since", content_type = "application/json"),
        (status = 401, description = "Missing, malformed or unknown token", body = crate::openapi::ErrorResponse),
        (status = 403, description = "The token's role or tenants do not allow this", body = crate::openapi::ErrorResponse)
    )
)]
pub async fn integrity(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    // The ledger's lock is held by a seal across its fsync: waited for off the runtime.
    let store = Arc::clone(&state.store);
    let integrity = blocking(move || Ok(store.integrity())).await?;
    let head = auditlog_engine::ledger::hex(&integrity.head);
    Ok(Json(serde_json::json!({
        "entries": integrity.entries,
        "head": head,
        "segments": integrity.segments,
        "verify": format!(
            "auditlog verify --data-dir {} --expect-head {}:{head}",
            state.config.data_dir.display(),
            integrity.entries
        ),
    }))
    .into_response())
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "admin",
    security(()),
    responses((status = 200, description = "The process answers", content_type = "text/plain"))
)]
pub async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "admin",
    security(()),
    responses(
        (status = 200, description = "The store takes writes", content_type = "text/plain"),
        (status = 503, description = "The store refuses writes (a failed WAL write or fsync: disk full, I/O error) until the server is restarted, or its seals fail (it retries them)", body = crate::openapi::ErrorResponse)
    )
)]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    // The listener binds only once the store is open (WAL replayed), so answering at all means
    // started. A failed WAL write or fsync makes every ingest answer 503 until a restart: such
    // a node should leave the load balancer's rotation. Reads still work; /healthz stays 200.
    // Seals that keep failing (a full disk) will fill the tail, and then ingest answers 503
    // too: not ready either.
    let failure = match (state.store.write_failure(), state.store.seal_failure()) {
        (Some(cause), _) => Some(format!("the store refuses writes: {cause}")),
        (None, Some(cause)) => Some(format!("sealing fails: {cause}")),
        (None, None) => None,
    };
    match failure {
        None => "ready".into_response(),
        Some(message) => ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            message,
        )
        .into_response(),
    }
}
