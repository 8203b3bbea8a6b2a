//! `POST /v1/events`: NDJSON or a JSON array, optionally gzip or zstd encoded; answers once the
//! batch is durable.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use auditlog_engine::event::{parse_batch, ValidationContext};

use crate::auth::Principal;
use crate::error::{blocking, ApiError};
use crate::state::AppState;

#[derive(Serialize)]
pub struct IngestAnswer {
    pub accepted: usize,
    pub duplicates: Vec<DuplicateAnswer>,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
}

#[derive(Serialize)]
pub struct DuplicateAnswer {
    /// 1-based position of the event in the batch (its line for NDJSON).
    pub line: usize,
    /// Seq of the event already stored with the same `(tenant, id)`.
    pub seq: u64,
}

pub async fn ingest(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    body: Body,
) -> Result<Response, ApiError> {
    if !matches!(
        principal.role,
        crate::auth::Role::Admin | crate::auth::Role::Ingest
    ) {
        return Err(ApiError::forbidden(
            "a read token cannot ingest; use an ingest or admin token",
        ));
    }
    let limit = state.config.batch_bytes_max;
    let bytes = to_bytes(body, limit).await.map_err(|error| {
        if std::error::Error::source(&error).is_some_and(|s| s.to_string().contains("length limit"))
            || error.to_string().contains("length limit")
        {
            ApiError::too_large(format!(
                "request body is larger than {limit} bytes (after decompression)"
            ))
        } else {
            ApiError::bad_request(format!("cannot read the request body: {error}"))
        }
    })?;
    let state_for_work = Arc::clone(&state);
    let answer = blocking(move || {
        let state = state_for_work;
        let context = ValidationContext::new(auditlog_engine::store::now_us(), &state.retention);
        let events = parse_batch(&bytes, &context)?;
        if events.len() > state.config.batch_events_max {
            return Err(ApiError::too_large(format!(
                "batch has {} events, limit {}",
                events.len(),
                state.config.batch_events_max
            )));
        }
        if let Some((index, event)) = events
            .iter()
            .enumerate()
            .find(|(_, e)| !principal.may_ingest(&e.tenant))
        {
            let mut error = ApiError::forbidden(format!(
                "this token may not write events of tenant {:?}",
                event.tenant
            ));
            error.line = Some(index + 1);
            error.field = Some("tenant".into());
            return Err(error);
        }
        let result = state.store.append(events)?;
        Ok(IngestAnswer {
            accepted: result.accepted,
            duplicates: result
                .duplicates
                .iter()
                .map(|d| DuplicateAnswer {
                    line: d.index + 1,
                    seq: d.seq,
                })
                .collect(),
            first_seq: result.first_seq,
            last_seq: result.last_seq,
        })
    })
    .await?;
    Ok(Json(answer).into_response())
}
