//! `POST /v1/events`: NDJSON or a JSON array, optionally gzip or zstd encoded (every member or
//! frame of a concatenated body is decoded; the size limit applies to the decoded bytes);
//! answers once the batch is durable.

use std::sync::Arc;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use auditlog_engine::event::{parse_batch_limited, ValidationContext};

use crate::auth::Principal;
use crate::error::{blocking, ApiError};
use crate::state::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct IngestAnswer {
    pub accepted: usize,
    pub duplicates: Vec<DuplicateAnswer>,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DuplicateAnswer {
    /// 1-based position of the event in the batch (its line for NDJSON).
    pub line: usize,
    /// Seq of the event already stored with the same `(tenant, id)`.
    pub seq: u64,
}

/// An ingest request acknowledged after this long is logged (at `warn`) with where its time
/// went.
const SLOW_INGEST: std::time::Duration = std::time::Duration::from_millis(50);

#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "events",
    request_body(
        description = "NDJSON (one event per line) or a JSON array of events; may be gzip or zstd \
                       encoded (Content-Encoding). At most 10,000 events and 16 MiB decoded",
        content(
            (Vec<crate::openapi::EventSchema> = "application/json"),
            ("application/x-ndjson")
        )
    ),
    responses(
        (status = 200, description = "Durable: accepted count, duplicates by line, seq range", body = IngestAnswer),
        (status = 400, description = "Bad request: the message names the parameter", body = crate::openapi::ErrorResponse),
        (status = 401, description = "Missing, malformed or unknown token", body = crate::openapi::ErrorResponse),
        (status = 403, description = "The token's role or tenants do not allow this", body = crate::openapi::ErrorResponse),
        (status = 408, description = "The body did not arrive within ingest_body_seconds (60)", body = crate::openapi::ErrorResponse),
        (status = 413, description = "Body or batch over its limit", body = crate::openapi::ErrorResponse),
        (status = 415, description = "A Content-Encoding other than gzip or zstd", body = crate::openapi::ErrorResponse),
        (status = 429, description = "The tail is full, or 256 MiB of ingest bodies are in flight; retry after Retry-After", body = crate::openapi::ErrorResponse),
        (status = 503, description = "The store refuses writes (disk full or failed I/O)", body = crate::openapi::ErrorResponse)
    )
)]
pub async fn ingest(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    state
        .metrics
        .ingest_requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if !matches!(
        principal.role,
        crate::auth::Role::Admin | crate::auth::Role::Ingest
    ) {
        return Err(ApiError::forbidden(
            "a read token cannot ingest; use an ingest or admin token",
        ));
    }
    let limit = state.config.batch_bytes_max;
    let encoding = BodyEncoding::of(&headers)?;
    let too_large = move || {
        ApiError::too_large(format!(
            "request body is larger than {limit} bytes (after decompression)"
        ))
    };
    // A compressed body is at most as large as what it decodes to, give or take the framing
    // of incompressible data: it is read up to the limit plus that slack.
    let read_limit = match encoding {
        BodyEncoding::Identity => limit,
        _ => limit + limit / 64 + 4096,
    };
    // Room for the body before it is read (its declared length, or the limit).
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    // (A body declared over the limit is still read up to it before the 413: a client that is
    // answered while it sends may not read the answer.)
    let kib = declared
        .unwrap_or(read_limit)
        .min(read_limit)
        .div_ceil(1024)
        .max(1);
    let kib = u32::try_from(kib.min(crate::state::INGEST_INFLIGHT_KIB)).unwrap_or(u32::MAX);
    // Held until the request's work is done (moved into it below): a client that disconnects
    // after sending its body does not free the room while its body is still decoded and
    // parsed. A compressed body takes more as it is decoded (see `BodyEncoding::decode`).
    let mut room = match tokio::time::timeout(
        std::time::Duration::from_secs(2),
        Arc::clone(&state.ingest_room).acquire_many_owned(kib),
    )
    .await
    {
        Ok(Ok(permit)) => permit,
        _ => return Err(ingest_busy()),
    };
    let body_timeout = std::time::Duration::from_secs(state.config.ingest_body_seconds);
    let read = tokio::time::timeout(body_timeout, to_bytes(body, read_limit));
    let raw = read
        .await
        .map_err(|_| {
            ApiError::new(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!(
                    "the request body did not arrive within {} s (ingest_body_seconds)",
                    body_timeout.as_secs()
                ),
            )
        })?
        .map_err(|error| {
            if std::error::Error::source(&error)
                .is_some_and(|s| s.to_string().contains("length limit"))
                || error.to_string().contains("length limit")
            {
                too_large()
            } else {
                ApiError::bad_request(format!("cannot read the request body: {error}"))
            }
        })?;
    let received = started.elapsed();
    let state_for_work = Arc::clone(&state);
    let answer = blocking(move || {
        let state = state_for_work;
        let queued = started.elapsed();
        let bytes = encoding
            .decode(raw, limit, &mut room, &state.ingest_room)
            .map_err(|error| match error {
                DecodeError::TooLarge => too_large(),
                DecodeError::Busy => ingest_busy(),
                DecodeError::Invalid(error) => ApiError::bad_request(format!(
                    "cannot decode the {} body: {error}",
                    encoding.name()
                )),
            })?;
        let context = ValidationContext::new(auditlog_engine::store::now_us(), &state.retention);
        // The parser stops at the limit, so an oversized batch is refused for its length (not
        // for a bad event further on) without parsing the rest.
        let limit = state.config.batch_events_max;
        let Some(events) = parse_batch_limited(&bytes, &context, limit)? else {
            return Err(ApiError::too_large(format!(
                "batch has more than {limit} events (the limit per request)"
            )));
        };
        let parsed = started.elapsed();
        if let Some((index, event)) = events
            .iter()
            .enumerate()
            .find(|(_, e)| !principal.may_ingest(&e.tenant))
        {
            let mut error = if event.tenant == crate::audit::SYSTEM_TENANT {
                ApiError::forbidden(format!(
                    "tenant {:?} holds the server's own audit events; no token may write it",
                    event.tenant
                ))
            } else {
                ApiError::forbidden(format!(
                    "this token may not write events of tenant {:?}",
                    event.tenant
                ))
            };
            error.line = Some(event_lines(&bytes).get(index).copied().unwrap_or(index + 1));
            error.field = Some("tenant".into());
            return Err(error);
        }
        let count = events.len();
        // Events sent without a timestamp were stamped with `context.now_us` by the parser.
        let hints = auditlog_engine::store::AppendHints {
            server_timestamp_us: Some(context.now_us),
            ..Default::default()
        };
        // A token revoked while its body arrived or was parsed stores nothing. (An append
        // already past this check when the revocation lands still completes: the check is
        // not held across the append, which may wait for room in the tail.)
        if !principal.still_valid(&state.tokens) {
            return Err(crate::auth::Principal::revoked_error());
        }
        // A failed WAL write is the store refusing writes from now on (the writer is
        // poisoned): the batch that met it gets the same 503 as those after it.
        let result = state
            .store
            .append_with(events, hints)
            .map_err(|error| ApiError::from_append(error, &state.store))?;
        let total = started.elapsed();
        let metrics = &state.metrics;
        metrics.ack_latency.record(total);
        metrics.ingest_body.record(received);
        metrics.ingest_queue.record(queued - received);
        metrics.ingest_parse.record(parsed - queued);
        metrics.ingest_store.record(total - parsed);
        if total >= SLOW_INGEST {
            // Where a slow acknowledgement spent its time: reading the body, waiting for a
            // blocking thread, parsing and validating, or in the store (idempotency checks,
            // the group commit's write and fsync).
            tracing::warn!(
                events = count,
                total_ms = total.as_secs_f64() * 1e3,
                body_ms = received.as_secs_f64() * 1e3,
                queued_ms = (queued - received).as_secs_f64() * 1e3,
                parse_ms = (parsed - queued).as_secs_f64() * 1e3,
                append_ms = (total - parsed).as_secs_f64() * 1e3,
                "slow ingest request"
            );
        }
        metrics
            .ingest_events
            .fetch_add(result.accepted as u64, std::sync::atomic::Ordering::Relaxed);
        metrics.ingest_duplicates.fetch_add(
            result.duplicates.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        // The body's line of each event, worked out only when the answer names some.
        let lines = (!result.duplicates.is_empty()).then(|| event_lines(&bytes));
        Ok(IngestAnswer {
            accepted: result.accepted,
            duplicates: result
                .duplicates
                .iter()
                .map(|d| DuplicateAnswer {
                    line: lines
                        .as_ref()
                        .and_then(|lines| lines.get(d.index).copied())
                        .unwrap_or(d.index + 1),
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

/// How an ingest body is encoded (`Content-Encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyEncoding {
    Identity,
    Gzip,
    Zstd,
}

enum DecodeError {
    TooLarge,
    /// No room in the in-flight bound for the decoded body within 2 s.
    Busy,
    Invalid(std::io::Error),
}

/// Grows `room` to cover `bytes` (at most the whole of `ingest_room`'s bound, which a body
/// larger than it then holds alone), waiting up to 2 s for the permits: tried, not queued for,
/// so that a body asking for much does not hold back the others' smaller asks, and done with
/// the thread's own sleeps (this runs on a blocking thread, which must not wait on the
/// runtime's timers: they stop first when the server shuts down).
fn take_room(
    room: &mut tokio::sync::OwnedSemaphorePermit,
    ingest_room: &Arc<tokio::sync::Semaphore>,
    bytes: usize,
) -> Result<(), DecodeError> {
    let wanted = bytes.div_ceil(1024).min(crate::state::INGEST_INFLIGHT_KIB);
    let held = room.num_permits();
    if wanted <= held {
        return Ok(());
    }
    let more = u32::try_from(wanted - held).unwrap_or(u32::MAX);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match Arc::clone(ingest_room).try_acquire_many_owned(more) {
            Ok(extra) => {
                room.merge(extra);
                return Ok(());
            }
            Err(tokio::sync::TryAcquireError::NoPermits)
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(_) => return Err(DecodeError::Busy),
        }
    }
}

/// The 429 of an ingest request that found no room among the bodies in flight.
fn ingest_busy() -> ApiError {
    ApiError::busy(
        format!(
            "{} MiB of ingest bodies are being received or parsed already: retry shortly",
            crate::state::INGEST_INFLIGHT_KIB >> 10
        ),
        1,
    )
}

impl BodyEncoding {
    /// Reads `Content-Encoding`: none, `identity`, `gzip` (or `x-gzip`) or `zstd`, in any case;
    /// anything else (several codings, `br`, `deflate`) is a 415 naming it.
    fn of(headers: &HeaderMap) -> Result<Self, ApiError> {
        let mut values = headers.get_all(header::CONTENT_ENCODING).iter();
        let Some(value) = values.next() else {
            return Ok(BodyEncoding::Identity);
        };
        // Codings on several header lines are applied in turn (RFC 9110): one is all we decode.
        if values.next().is_some() {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                "several Content-Encoding headers: send the body as is, gzip or zstd, once",
            ));
        }
        // A value that is not visible ASCII names no coding we know: refused, not taken as none.
        let text = value
            .to_str()
            .unwrap_or("\u{0}")
            .trim()
            .to_ascii_lowercase();
        match text.as_str() {
            "" | "identity" => Ok(BodyEncoding::Identity),
            "gzip" | "x-gzip" => Ok(BodyEncoding::Gzip),
            "zstd" => Ok(BodyEncoding::Zstd),
            _ => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                format!(
                    "Content-Encoding {:?} is not supported; send the body as is, gzip or zstd",
                    String::from_utf8_lossy(value.as_bytes())
                ),
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            BodyEncoding::Identity => "identity",
            BodyEncoding::Gzip => "gzip",
            BodyEncoding::Zstd => "zstd",
        }
    }

    /// The decoded body, at most `limit` bytes. Every gzip member and every zstd frame is
    /// decoded (`cat a.gz b.gz` is one valid gzip body, RFC 1952), so nothing is dropped.
    ///
    /// `room` holds the KiB of `ingest_room` taken for the body as it came; as the compressed
    /// and the decoded body together outgrow them, more are taken a MiB at a time (waiting up
    /// to 2 s, then [`DecodeError::Busy`]), so that bodies that compress well do not decode
    /// past the in-flight bound. Runs on a blocking thread (it may wait for room).
    fn decode(
        self,
        raw: Bytes,
        limit: usize,
        room: &mut tokio::sync::OwnedSemaphorePermit,
        ingest_room: &Arc<tokio::sync::Semaphore>,
    ) -> Result<Bytes, DecodeError> {
        use std::io::Read;
        let reader: Box<dyn Read + '_> = match self {
            BodyEncoding::Identity => return Ok(raw),
            BodyEncoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&raw[..])),
            BodyEncoding::Zstd => {
                Box::new(zstd::stream::read::Decoder::new(&raw[..]).map_err(DecodeError::Invalid)?)
            }
        };
        const STEP: usize = 1 << 20;
        let mut reader = reader.take(limit as u64 + 1);
        let mut decoded: Vec<u8> = Vec::new();
        loop {
            // The buffer is full: one byte more says whether the body goes on, before room
            // for another MiB is asked for (a body of whole MiB needs none).
            if decoded.len() == decoded.capacity() && !decoded.is_empty() {
                let mut probe = [0u8; 1];
                if auditlog_engine::io::read_full(&mut reader, &mut probe)
                    .map_err(DecodeError::Invalid)?
                    == 0
                {
                    return Ok(Bytes::from(decoded));
                }
                take_room(room, ingest_room, raw.len() + decoded.len() + STEP)?;
                decoded.reserve_exact(STEP);
                decoded.push(probe[0]);
            } else if decoded.capacity() == 0 {
                take_room(room, ingest_room, raw.len() + STEP)?;
                decoded.reserve_exact(STEP);
            }
            // Fill the buffer's free part (no growth: the room taken covers the capacity).
            let start = decoded.len();
            decoded.resize(decoded.capacity(), 0);
            let read = auditlog_engine::io::read_full(&mut reader, &mut decoded[start..])
                .map_err(DecodeError::Invalid)?;
            let full = start + read == decoded.len();
            decoded.truncate(start + read);
            if decoded.len() > limit {
                return Err(DecodeError::TooLarge);
            }
            if !full {
                return Ok(Bytes::from(decoded));
            }
        }
    }
}

/// The `line` an answer gives for each event of a batch: its line in an NDJSON body (blank
/// lines count, as in validation errors), its position in a JSON array.
///
/// ```text
/// {"...":1}        -> event 0: line 1
///                  (blank)
/// {"...":2}        -> event 1: line 3
/// ```
fn event_lines(body: &[u8]) -> Vec<usize> {
    // As the parser reads it: a leading byte order mark is not part of the body's JSON.
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let first = body.iter().position(|byte| !byte.is_ascii_whitespace());
    if first.is_some_and(|at| body[at] == b'[') {
        // Positions: the caller falls back to index + 1 past the end, which is all of them.
        return Vec::new();
    }
    body.split(|&byte| byte == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.trim_ascii().is_empty())
        .map(|(number, _)| number + 1)
        .collect()
}
