//! Reading: `GET /v1/events`, `GET /v1/events/{seq}`, `GET /v1/events/export`,
//! `GET /v1/facets`, `GET /v1/histogram`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes_body::json_response;

use auditlog_engine::event::{
    write_event_csv, write_event_ref_json, write_json_string, write_stored_event_json, CSV_COLUMNS,
};
use auditlog_index::{Field, Page};

use crate::auth::Principal;
use crate::error::{blocking, ApiError};
use crate::routes::params::{build_query, invalid_param, pairs, single_param, PAGE_KEYS};
use crate::state::AppState;

mod bytes_body {
    use axum::http::{header, HeaderValue};
    use axum::response::{IntoResponse, Response};

    /// A JSON body built by hand (events are written by the engine's serializer).
    pub fn json_response(body: Vec<u8>) -> Response {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response()
    }
}

/// The answer of `GET /v1/events`: the page, and the last seq of the snapshot it was read
/// from (`last_seq`), so that a client can follow the list with the live stream from the
/// next seq: `{"events":[...],"next_cursor":"..."|null,"last_seq":1234}`. The facets and
/// the histogram answer their `last_seq` too: a client that adds live events to their counts
/// adds only those after it.
fn page_json(page: &Page, last_seq: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(page.events.len() * 700 + 64);
    out.extend_from_slice(b"{\"events\":[");
    for (i, event) in page.events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_stored_event_json(event, &mut out);
    }
    out.extend_from_slice(b"],\"next_cursor\":");
    match &page.next_cursor {
        Some(cursor) => write_json_string(cursor, &mut out),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"last_seq\":");
    out.extend_from_slice(last_seq.to_string().as_bytes());
    out.push(b'}');
    out
}

/// `GET /v1/events`: one page of events matching the filters, and the cursor of the next.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    params(crate::openapi::FilterParams, crate::openapi::PageParams),
    responses(
        (status = 200, description = "One page, newest first unless order=oldest", body = crate::openapi::PageSchema),
        (status = 400, description = "Bad request: the message names the parameter", body = crate::openapi::ErrorResponse),
        (status = 401, description = "Missing, malformed or unknown token", body = crate::openapi::ErrorResponse),
        (status = 403, description = "The token's role or tenants do not allow this", body = crate::openapi::ErrorResponse)
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let body = blocking(move || {
        // The snapshot before the scope: an admin's scope (every tenant of the store, read in
        // `build_query`) then holds every tenant with events in the snapshot.
        let snapshot = state.store.snapshot();
        let last_seq = snapshot_last_seq(&snapshot);
        let Some(query) = build_query(&state, &principal, &pairs(raw.as_deref()), PAGE_KEYS)?
        else {
            return Ok(page_json(&Page::default(), last_seq));
        };
        let page = auditlog_index::search(&snapshot, &query)?;
        Ok(page_json(&page, last_seq))
    })
    .await?;
    Ok(json_response(body))
}

/// `GET /v1/events/{seq}`: one event, if the token may read its tenant.
#[utoipa::path(
    get,
    path = "/v1/events/{seq}",
    tag = "events",
    params(("seq" = u64, Path, description = "The event's seq")),
    responses(
        (status = 200, description = "The event", body = crate::openapi::StoredEventSchema),
        (status = 400, description = "Bad request: the message names the parameter", body = crate::openapi::ErrorResponse),
        (status = 401, description = "Missing, malformed or unknown token", body = crate::openapi::ErrorResponse),
        (status = 403, description = "The token's role does not allow this, or the token reads only some tenants and this seq is not one of their events (whether it exists is not said)", body = crate::openapi::ErrorResponse),
        (status = 404, description = "Not found (admin tokens)", body = crate::openapi::ErrorResponse)
    )
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(seq): Path<String>,
) -> Result<Response, ApiError> {
    principal.require_reader()?;
    let seq: u64 = seq
        .parse()
        .map_err(|_| ApiError::bad_request(format!("seq must be a number, found {seq:?}")))?;
    let body = blocking(move || {
        // A token limited to some tenants gets the same answer for a seq that is another
        // tenant's as for one that does not exist (or was dropped by retention): which seqs
        // other tenants hold, and whether their old partitions are still kept, is not its
        // business. An admin token tells them apart.
        let out_of_scope = || {
            ApiError::forbidden(format!(
                "no event with seq {seq} that this token may read (it reads only its own \
                 tenants' events)"
            ))
        };
        let Some(event) = state.store.get(seq)? else {
            return Err(match principal.role {
                crate::auth::Role::Admin => ApiError::not_found(format!("no event with seq {seq}")),
                _ => out_of_scope(),
            });
        };
        if !principal.may_read(&event.event.tenant) {
            return Err(out_of_scope());
        }
        let mut out = Vec::with_capacity(1024);
        write_stored_event_json(&event, &mut out);
        Ok(out)
    })
    .await?;
    Ok(json_response(body))
}

/// `GET /v1/events/export?format=csv|ndjson&...`: every matching event, oldest or newest first,
/// streamed in chunks from one snapshot (constant memory, no row cap; `limit` is refused).
#[utoipa::path(
    get,
    path = "/v1/events/export",
    tag = "events",
    params(
        crate::openapi::FilterParams,
        crate::openapi::PageParams,
        ("format" = Option<String>, Query, description = "`csv` (default) or `ndjson`"),
    ),
    responses(
        (status = 200, description = "Every matching event, streamed", content(
            ("text/csv"),
            ("application/x-ndjson")
        )),
        (status = 400, description = "Bad request: the message names the parameter", body = crate::openapi::ErrorResponse),
        (status = 401, description = "Missing, malformed or unknown token", body = crate::openapi::ErrorResponse),
        (status = 403, description = "The token's role or tenants do not allow this", body = crate::openapi::ErrorResponse),
        (status = 429, description = "exports_max exports are running; retry after Retry-After", body = crate::openapi::ErrorResponse)
    )
)]
pub async fn export(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    method: axum::http::Method,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = pairs(raw.as_deref());
    let format = single_param(&pairs, "format")?.unwrap_or("csv").to_string();
    if format != "csv" && format != "ndjson" {
        let mut error =
            ApiError::bad_request(format!("format must be csv or ndjson, found {format:?}"));
        error.field = Some("format".into());
        return Err(error);
    }
    if pairs.iter().any(|(k, _)| k == "limit") {
        let mut error = ApiError::bad_request(
            "an export streams every matching event and takes no limit; narrow it with from, to \
             or since",
        );
        error.field = Some("limit".into());
        return Err(error);
    }
    let check_state = Arc::clone(&state);
    let check_principal = principal.clone();
    let check_pairs = pairs.clone();
    // One snapshot for the whole export (a consistent cut, each block decoded once), taken
    // before the scope, as for the list.
    let (query, snapshot) = blocking(move || {
        let snapshot = check_state.store.snapshot();
        // In the list's order and from its cursor; `limit` was refused above.
        let keys = ["format", "cursor", "order"];
        build_query(&check_state, &check_principal, &check_pairs, &keys).map(|q| (q, snapshot))
    })
    .await?;
    if method == axum::http::Method::HEAD {
        // What a GET would answer, without exporting anything (nor recording an export).
        return Ok(export_response(Body::empty(), format == "csv"));
    }
    // Released when the export's worker ends (its snapshot with it).
    let Ok(slot) = Arc::clone(&state.export_slots).try_acquire_owned() else {
        return Err(ApiError::busy(
            format!(
                "{} exports are running, the most at once (exports_max); retry later",
                state.config.exports_max
            ),
            5,
        ));
    };
    state
        .metrics
        .exports
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    crate::audit::record_async(
        &state,
        &principal,
        "export",
        "audit_log",
        serde_json::json!({
            "format": format,
            "query": crate::audit::recorded_query(raw.as_deref())
        }),
    )
    .await?;

    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    // Set once the worker handed over the export's last row: only then does the body end
    // cleanly. Any other end (abandoned, revoked, a shutdown, a failure, a panic, the runtime
    // going away under the worker) ends it broken, so that the client cannot take what it
    // got for a complete file.
    let whole = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker_whole = Arc::clone(&whole);
    let stall = std::time::Duration::from_secs(state.config.export_stall_seconds);
    let runtime = tokio::runtime::Handle::current();
    let csv = format == "csv";
    let (token_id, revocations_at_auth) =
        (principal.token_id.clone(), principal.revocations_at_auth);
    let worker_state = Arc::clone(&state);
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let mut first = Vec::new();
        if csv {
            first.extend_from_slice(CSV_COLUMNS.join(",").as_bytes());
            first.extend_from_slice(b"\r\n");
        }
        if sender.blocking_send(Ok(first)).is_err() {
            return;
        }
        let Some(query) = query else {
            // Nothing can match: the header (CSV) is the whole export.
            worker_whole.store(true, std::sync::atomic::Ordering::SeqCst);
            return;
        };
        // Without waiting for room: a client that stopped reading must not hold the worker
        // (the body ends broken anyway, as the export is not whole).
        let fail = |error: auditlog_index::Error| {
            tracing::error!(%error, "export failed");
            let _ = sender.try_send(Err(std::io::Error::other(error.to_string())));
        };
        let write: &auditlog_index::export::RowWriter = if csv {
            &write_event_csv
        } else {
            &|event, out| {
                write_event_ref_json(event, out);
                out.push(b'\n');
            }
        };
        // Decoded and written on worker threads, window after window, handed out in order;
        // a send that fails means the client went away, and stops the export.
        let options = auditlog_index::ExportOptions::default();
        // A token revoked while its export runs stops it: the body ends with an error (the
        // client sees a broken download, not a complete-looking file).
        let tokens_seen = std::cell::Cell::new(revocations_at_auth);
        let revoked = || {
            let now = worker_state.tokens.revocations();
            now != tokens_seen.replace(now) && !worker_state.tokens.is_active(&token_id)
        };
        // Set when the sink stops the export before its end.
        let stopped = std::cell::Cell::new(false);
        let sink = &mut |chunk| {
            if revoked() {
                stopped.set(true);
                let _ = sender.try_send(Err(std::io::Error::other("token revoked")));
                return false;
            }
            // A server shutting down ends its exports at once (their bodies end broken, so
            // the client knows to run it again), as it ends its streams: waiting for a large
            // export would outlast the grace period of the process manager, which then kills
            // the process before the store is closed.
            if *worker_state.shutdown.borrow() {
                stopped.set(true);
                let _ = sender.try_send(Err(std::io::Error::other("server shutting down")));
                return false;
            }
            // A client that stops reading would otherwise hold the snapshot for ever; a
            // shutdown does not wait for a slow one either.
            let mut shutdown = worker_state.shutdown.subscribe();
            let sent = runtime.block_on(async {
                tokio::select! {
                    sent = tokio::time::timeout(stall, sender.send(Ok(chunk))) => Some(sent),
                    _ = shutdown.wait_for(|&down| down) => None,
                }
            });
            let Some(sent) = sent else {
                stopped.set(true);
                let _ = sender.try_send(Err(std::io::Error::other("server shutting down")));
                return false;
            };
            match sent {
                Ok(sent) => {
                    stopped.set(sent.is_err() || stopped.get());
                    sent.is_ok()
                }
                Err(_) => {
                    stopped.set(true);
                    worker_state
                        .metrics
                        .exports_abandoned
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(
                        seconds = stall.as_secs(),
                        "export abandoned: its client accepted nothing"
                    );
                    false
                }
            }
        };
        match auditlog_index::export_chunks(&snapshot, &query, &options, write, sink) {
            Ok(_) if !stopped.get() => {
                worker_whole.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            Ok(_) => {}
            Err(error) => fail(error),
        }
    });
    let stream = futures_util::stream::unfold(Some(receiver), move |receiver| {
        let whole = Arc::clone(&whole);
        async move {
            let mut receiver = receiver?;
            match receiver.recv().await {
                Some(item) => Some((item, Some(receiver))),
                None if !whole.load(std::sync::atomic::Ordering::SeqCst) => Some((
                    Err(std::io::Error::other(
                        "the export ended before its last row (the client stalled, the token \
                         was revoked, the server is shutting down, or the export failed)",
                    )),
                    None,
                )),
                None => None,
            }
        }
    });
    Ok(export_response(Body::from_stream(stream), csv))
}

/// An export's answer: `body` with its content type and a dated file name.
fn export_response(body: Body, csv: bool) -> Response {
    let stamp = auditlog_engine::event::time::format_rfc3339_us(auditlog_engine::store::now_us())
        .replace(':', "-");
    let (content_type, extension) = if csv {
        ("text/csv; charset=utf-8", "csv")
    } else {
        ("application/x-ndjson", "ndjson")
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&format!(
        "attachment; filename=\"auditlog-{stamp}.{extension}\""
    )) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// `GET /v1/facets?field=action&top=20&...`: top values of a field with counts.
#[utoipa::path(
    get,
    path = "/v1/facets",
    tag = "events",
    params(
        crate::openapi::FilterParams,
        ("field" = Option<String>, Query, description = "Field to count values of (default action)"),
        ("top" = Option<usize>, Query, description = "Most values returned (default 20)"),
    ),
    responses(
        (status = 200, description = "`{field, total, values: [{value, count}], last_seq}` (the counts are of the events up to `last_seq`)", content_type = "application/json"),
        (status = 400, description = "Bad request: the message names the parameter", body = crate::openapi::ErrorResponse),
        (status = 401, description = "Missing, malformed or unknown token", body = crate::openapi::ErrorResponse),
        (status = 403, description = "The token's role or tenants do not allow this", body = crate::openapi::ErrorResponse)
    )
)]
pub async fn facets(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let body = blocking(move || {
        let pairs = pairs(raw.as_deref());
        let field_name = single_param(&pairs, "field")?.unwrap_or("action");
        let field = Field::from_name(field_name)
            .ok_or_else(|| invalid_param("field", format!("unknown facet field {field_name:?}")))?;
        let top_max = auditlog_index::exec::FACET_SIZE_MAX;
        let top: usize = match single_param(&pairs, "top")? {
            Some(top) => top
                .parse()
                .ok()
                .filter(|top| (1..=top_max).contains(top))
                .ok_or_else(|| {
                    invalid_param(
                        "top",
                        format!("top must be a number in 1..={top_max}, found {top:?}"),
                    )
                })?,
            None => 20,
        };
        // One query and one snapshot: the total and the values agree. The snapshot first: an
        // admin's scope (the store's tenants, read in `build_query`) then holds its tenants.
        let snapshot = state.store.snapshot();
        let (values, total) = match build_query(&state, &principal, &pairs, &["field", "top"])? {
            Some(query) => (
                auditlog_index::facets(&snapshot, &query, field, top)?,
                auditlog_index::count(&snapshot, &query)?,
            ),
            None => (Vec::new(), 0),
        };
        let values: Vec<serde_json::Value> = values
            .into_iter()
            .map(|(value, count)| serde_json::json!({ "value": value, "count": count }))
            .collect();
        Ok(serde_json::to_vec(&serde_json::json!({
            "field": field.name(),
            "total": total,
            "values": values,
            "last_seq": snapshot_last_seq(&snapshot),
        }))
        .unwrap_or_default())
    })
    .await?;
    Ok(json_response(body))
}

/// `GET /v1/histogram?bucket=1h&...`: event counts per time bucket (UTC-aligned).
#[utoipa::path(
    get,
    path = "/v1/histogram",
    tag = "events",
    params(
        crate::openapi::FilterParams,
        ("bucket" = Option<String>, Query, description = "Bucket width: 5m, 1h (default), 1d"),
    ),
    responses(
        (status = 200, description = "`{bucket, buckets: [{start, count}], last_seq}` (the counts are of the events up to `last_seq`)", content_type = "application/json"),
        (status = 400, description = "Bad request: the message names the parameter", body = crate::openapi::ErrorResponse),
        (status = 401, description = "Missing, malformed or unknown token", body = crate::openapi::ErrorResponse),
        (status = 403, description = "The token's role or tenants do not allow this", body = crate::openapi::ErrorResponse)
    )
)]
pub async fn histogram(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let body = blocking(move || {
        let pairs = pairs(raw.as_deref());
        let bucket = single_param(&pairs, "bucket")?.unwrap_or("1h");
        let bucket_us = crate::routes::params::parse_duration_us(bucket)
            .filter(|&us| us > 0)
            .ok_or_else(|| {
                invalid_param(
                    "bucket",
                    format!(
                        "bucket must be a positive duration like 5m, 1h or 1d, found {bucket:?}"
                    ),
                )
            })?;
        // The snapshot before the scope, as for the list.
        let snapshot = state.store.snapshot();
        let buckets = match build_query(&state, &principal, &pairs, &["bucket"])? {
            Some(query) => auditlog_index::histogram(&snapshot, &query, bucket_us)?,
            None => Vec::new(),
        };
        let buckets: Vec<serde_json::Value> = buckets
            .into_iter()
            .map(|(start, count)| {
                serde_json::json!({
                    "start": auditlog_engine::event::time::format_rfc3339_us(start),
                    "count": count,
                })
            })
            .collect();
        Ok(serde_json::to_vec(&serde_json::json!({
            "bucket": bucket,
            "buckets": buckets,
            "last_seq": snapshot_last_seq(&snapshot),
        }))
        .unwrap_or_default())
    })
    .await?;
    Ok(json_response(body))
}

/// Answers 404 with the API's error body for unknown routes.
pub async fn not_found() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route").into_response()
}

/// Answers 405 with the API's error body for a known route asked with another method.
pub async fn method_not_allowed(method: axum::http::Method) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("this route does not take {method} (see /v1/openapi.json)"),
    )
    .into_response()
}

/// The last seq a snapshot holds (0 on an empty store): what an answer read from it counts.
fn snapshot_last_seq(snapshot: &auditlog_engine::store::Snapshot) -> u64 {
    snapshot
        .tail
        .last_seq()
        .unwrap_or(0)
        .max(snapshot.sealed_through)
}
