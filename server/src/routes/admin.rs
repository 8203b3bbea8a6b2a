//! `POST /v1/admin/flush`, `GET /v1/admin/stats` (admin only), `/healthz`, `/readyz`.

use std::path::Path;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::auth::Principal;
use crate::error::{blocking, ApiError};
use crate::state::AppState;

pub async fn flush(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let sealed_through = blocking(move || Ok(state.store.seal()?)).await?;
    Ok(Json(serde_json::json!({ "sealed_through": sealed_through })).into_response())
}

fn bytes_by_kind(dir: &Path, totals: &mut [u64; 3]) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            bytes_by_kind(&path, totals);
            continue;
        }
        let len = entry.metadata().map_or(0, |m| m.len());
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(".wal") {
            totals[0] += len;
        } else if name.ends_with(".seg") {
            totals[1] += len;
        } else {
            totals[2] += len;
        }
    }
}

pub async fn stats(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let answer = blocking(move || {
        let stats = state.store.stats();
        let mut totals = [0u64; 3];
        bytes_by_kind(&state.config.data_dir, &mut totals);
        Ok(serde_json::json!({
            "events": stats.sealed_events + stats.tail_events,
            "last_seq": stats.last_seq,
            "tenants": stats.tenants,
            "partitions": stats.partitions,
            "segments": stats.segments,
            "tail_events": stats.tail_events,
            "bytes": {
                "wal": totals[0],
                "segments": totals[1],
                "other": totals[2],
            },
        }))
    })
    .await?;
    Ok(Json(answer).into_response())
}

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    // Ready when the store answers; a poisoned writer shows in ingest answers (503).
    let _ = state.store.stats();
    "ready".into_response()
}
