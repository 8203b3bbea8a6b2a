//! # auditlog-server: the HTTP and WebSocket API of the audit-log datastore
//!
//! What it does: exposes the engine (`auditlog-engine`) and search (`auditlog-index`) as a
//! service: batch ingest that answers once events are durable, filtered queries with cursors,
//! streamed CSV/NDJSON export, facets and a histogram for the page, a live WebSocket stream that
//! resumes from a seq, API tokens with roles and tenant scopes, and admin endpoints. The server
//! audits itself (token changes, exports, stream subscriptions) in the `auditlog.system` tenant.
//!
//! What it is not for: it holds no data of its own beyond the token file; every read is scoped
//! to the token's tenants before the index sees it (tenant isolation below the HTTP layer).
//! Store and index calls are blocking and run on `spawn_blocking` threads.
//!
//! Routes (all JSON errors are `{"error": {"code", "message", "line"?, "field"?}}`):
//!
//! ```text
//! POST   /v1/events               ingest (admin, ingest)
//! GET    /v1/events               query page (admin, read)
//! GET    /v1/events/{seq}         one event
//! GET    /v1/events/export        CSV or NDJSON, streamed
//! GET    /v1/facets               top values of a field
//! GET    /v1/histogram            counts per time bucket
//! GET    /v1/stream               WebSocket live feed
//! POST   /v1/tokens  GET /v1/tokens  DELETE /v1/tokens/{id}     (admin)
//! POST   /v1/admin/flush  GET /v1/admin/stats  GET /v1/admin/integrity  (admin)
//! GET    /v1/openapi.json         the OpenAPI 3 document (no token)
//! GET    /healthz  /readyz
//! ```
//!
//! [`ROUTES`] is the one list of them: the router checks each route it registers against it, and
//! tests check it against the OpenAPI document and the running server.

pub mod audit;
pub mod auth;
pub mod config;
pub mod connections;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod state;

use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::Router;
use tokio::sync::broadcast;

use auditlog_engine::Store;

pub use config::ServerConfig;
pub use state::AppState;

/// Errors of starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] auditlog_engine::Error),
    #[error("token file: {0}")]
    Tokens(std::io::Error),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Serve(std::io::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Every `(method, path)` the router serves, in axum's path syntax (also OpenAPI's).
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/events"),
    ("GET", "/v1/events"),
    ("GET", "/v1/events/{seq}"),
    ("GET", "/v1/events/export"),
    ("GET", "/v1/facets"),
    ("GET", "/v1/histogram"),
    ("GET", "/v1/stream"),
    ("POST", "/v1/tokens"),
    ("GET", "/v1/tokens"),
    ("DELETE", "/v1/tokens/{id}"),
    ("POST", "/v1/admin/flush"),
    ("GET", "/v1/admin/stats"),
    ("GET", "/v1/admin/integrity"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/metrics"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
];

/// The Audit Logs page and its assets: served by the same router, not part of the API (so
/// neither in [`ROUTES`] nor in the OpenAPI document).
pub const PAGE_ROUTES: &[&str] = &["/", "/app.js", "/app.css"];

/// `path`, after checking that each of `methods` on it is listed in [`ROUTES`]: a route added to
/// the router but not to the list fails every server start (and so every test).
fn listed(path: &'static str, methods: &[&str]) -> &'static str {
    for method in methods {
        assert!(
            ROUTES.contains(&(method, path)),
            "route {method} {path} is not listed in ROUTES"
        );
    }
    path
}

/// The router of the API over a shared state.
pub fn router(state: Arc<AppState>) -> Router {
    // The ingest handler decodes gzip and zstd bodies itself and applies its limit to the
    // decoded bytes.
    let ingest = Router::new()
        .route(
            listed("/v1/events", &["POST", "GET"]),
            post(routes::ingest::ingest).get(routes::events::list),
        )
        .layer(DefaultBodyLimit::disable());
    Router::new()
        .merge(ingest)
        .route(
            listed("/v1/events/export", &["GET"]),
            get(routes::events::export),
        )
        .route(
            listed("/v1/events/{seq}", &["GET"]),
            get(routes::events::get),
        )
        .route(listed("/v1/facets", &["GET"]), get(routes::events::facets))
        .route(
            listed("/v1/histogram", &["GET"]),
            get(routes::events::histogram),
        )
        .route(listed("/v1/stream", &["GET"]), get(routes::stream::stream))
        .route(
            listed("/v1/tokens", &["POST", "GET"]),
            post(routes::tokens::create).get(routes::tokens::list),
        )
        .route(
            listed("/v1/tokens/{id}", &["DELETE"]),
            delete(routes::tokens::revoke),
        )
        .route(
            listed("/v1/admin/flush", &["POST"]),
            post(routes::admin::flush),
        )
        .route(
            listed("/v1/admin/stats", &["GET"]),
            get(routes::admin::stats),
        )
        .route(
            listed("/v1/admin/integrity", &["GET"]),
            get(routes::admin::integrity),
        )
        .route(
            listed("/v1/openapi.json", &["GET"]),
            get(openapi::openapi_json),
        )
        .route(PAGE_ROUTES[0], get(routes::page::index))
        .route(PAGE_ROUTES[1], get(routes::page::app_js))
        .route(PAGE_ROUTES[2], get(routes::page::app_css))
        .route(listed("/metrics", &["GET"]), get(metrics::metrics))
        .route(listed("/healthz", &["GET"]), get(routes::admin::healthz))
        .route(listed("/readyz", &["GET"]), get(routes::admin::readyz))
        .fallback(routes::events::not_found)
        .method_not_allowed_fallback(routes::events::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            count_statuses,
        ))
        .with_state(state)
}

/// Counts 4xx and 5xx answers of every route for `/metrics`, and sets the headers every answer
/// carries.
async fn count_statuses(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut response = as_json_error(next.run(request).await).await;
    // Every answer: never sniffed into another type, never a Referer out of the page, never
    // cached unless the route says otherwise (event data is not for shared caches).
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::X_CONTENT_TYPE_OPTIONS,
        axum::http::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        axum::http::header::REFERRER_POLICY,
        axum::http::HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(axum::http::header::CACHE_CONTROL)
        .or_insert(axum::http::HeaderValue::from_static("no-store"));
    let status = response.status();
    if status.is_client_error() {
        state
            .metrics
            .rejected_4xx
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    } else if status.is_server_error() {
        state
            .metrics
            .failed_5xx
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    response
}

/// An error answer that did not come from a handler (axum's own rejections: a path parameter
/// that is not UTF-8, a JSON body over the default 2 MiB limit, ...) is plain text; it is
/// answered in the API's JSON error shape instead, with its text as the message, so that every
/// error a client sees has the same shape. Other answers pass through untouched.
///
/// ```text
/// 400 text/plain "Invalid URL: Invalid UTF-8 in `seq`"
///   -> 400 {"error":{"code":"bad_request","message":"Invalid URL: Invalid UTF-8 in `seq`"}}
/// ```
async fn as_json_error(response: axum::response::Response) -> axum::response::Response {
    let status = response.status();
    let plain_text = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain_text {
        return response;
    }
    let (parts, body) = response.into_parts();
    // Rejection texts are a line or two; a body over 4 KiB (none of axum's) is replaced by the
    // status's reason.
    let text = match axum::body::to_bytes(body, 4096).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
        status if status.is_server_error() => "internal",
        _ => "bad_request",
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let mut converted = crate::error::ApiError::new(status, code, message).into_response();
    // Headers the rejection set (e.g. `Allow`) stay, but not its type and length.
    for (name, value) in parts.headers.iter() {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            converted.headers_mut().insert(name.clone(), value.clone());
        }
    }
    converted
}

/// Says what the store's open found in the WAL: a torn tail is what a crash leaves, and the
/// records cut with it held events that, with sync durability (the default), no client was
/// answered for (they retry them).
fn log_recovery(report: &auditlog_engine::store::RecoveryReport) {
    if let Some((file, offset)) = &report.truncated {
        tracing::info!(
            file = %file.display(),
            offset,
            replayed_events = report.replayed_events,
            "cut the torn end of the write-ahead log (a crash interrupted a write)"
        );
    }
    if let Some(cut) = &report.discarded {
        tracing::warn!(
            records = cut.records,
            first_seq = cut.first_seq,
            last_seq = cut.last_seq,
            "write-ahead log records after the torn write were cut with it: they were never \
             known durable, so with sync durability no client was answered for them (a power \
             loss with fsyncs in flight leaves this; with interval durability they may have \
             been)"
        );
    }
}

/// How long a shutdown waits for requests in flight before it closes the store anyway.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Shortest first admin token accepted from `AUDITLOG_ADMIN_TOKEN`.
pub const ADMIN_TOKEN_CHARS_MIN: usize = 16;

/// Checks a first admin token given by the operator: an empty one (an unset variable that a
/// compose file expanded) would let anyone in with an empty `?token=`, and one with spaces or
/// control characters could never be sent back in a header.
///
/// ```
/// use auditlog_server::check_admin_token;
/// assert!(check_admin_token("alt_0123456789abcdef").is_ok());
/// assert!(check_admin_token("").unwrap_err().contains("empty"));
/// assert!(check_admin_token("short").unwrap_err().contains("16"));
/// ```
pub fn check_admin_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err(
            "AUDITLOG_ADMIN_TOKEN is set but empty; unset it to have a token generated".into(),
        );
    }
    if let Some(bad) = token.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "AUDITLOG_ADMIN_TOKEN holds {bad:?}; a token is printable ASCII without spaces"
        ));
    }
    if token.len() < ADMIN_TOKEN_CHARS_MIN {
        return Err(format!(
            "AUDITLOG_ADMIN_TOKEN has {} characters; it needs at least {ADMIN_TOKEN_CHARS_MIN}",
            token.len()
        ));
    }
    Ok(())
}

/// Opens the store and token file, creating the first admin token when there is none: taken
/// from `admin_token` (e.g. `AUDITLOG_ADMIN_TOKEN`, checked by [`check_admin_token`]) or
/// generated and returned to print once.
pub fn open_state(
    config: ServerConfig,
    admin_token: Option<String>,
) -> Result<(Arc<AppState>, Option<String>), ServeError> {
    config.check().map_err(ServeError::Config)?;
    // The given token is only used when there is no token yet: checked before anything is
    // created then, and not at all once tokens exist (an upgrade must not stop on a variable
    // it ignores).
    let tokens_exist = config.data_dir.join("tokens.json").exists();
    if let (Some(token), false) = (&admin_token, tokens_exist) {
        check_admin_token(token).map_err(ServeError::Config)?;
    }
    if let (Some(_), true) = (&admin_token, tokens_exist) {
        tracing::warn!(
            "AUDITLOG_ADMIN_TOKEN is set but ignored: it only makes the first admin token, and \
             tokens exist already (to replace an admin token, create another with POST \
             /v1/tokens and revoke the old one)"
        );
    }
    // Owner-only when created here: it holds every tenant's events.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.data_dir)
        .map_err(|source| ServeError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
    let options = config.store_options();
    options.retention.validate().map_err(ServeError::Config)?;
    let retention = options.retention.policy();
    let store = Arc::new(Store::open(options)?);
    log_recovery(store.recovery());
    let integrity = store.integrity();
    tracing::info!(
        entries = integrity.entries,
        head = %auditlog_engine::ledger::hex(&integrity.head),
        segments = integrity.segments,
        "integrity ledger (keep the head outside the data directory: GET /v1/admin/integrity)"
    );
    let tokens = auth::TokenStore::open(&config.data_dir).map_err(ServeError::Tokens)?;
    let mut shown = None;
    if tokens.is_empty() {
        if let Some(token) = &admin_token {
            check_admin_token(token).map_err(ServeError::Config)?;
        }
        let given = admin_token.is_some();
        let (_, secret) = tokens
            .create("admin", auth::Role::Admin, Vec::new(), admin_token)
            .map_err(ServeError::Tokens)?;
        if !given {
            shown = Some(secret);
        }
    }
    let (live, _) = broadcast::channel(config.stream_buffer_chunks);
    let sender = live.clone();
    store.subscribe(Box::new(move |chunk, tenants| {
        // No receiver is fine; a full channel drops the oldest for laggards (they resync).
        let _ = sender.send(routes::stream::LiveChunk {
            events: Arc::clone(chunk),
            tenants: Arc::clone(tenants),
        });
    }));
    let export_slots = config.exports_max;
    let stream_slots = config.streams_max;
    Ok((
        Arc::new(AppState {
            store,
            tokens,
            config,
            retention,
            metrics: metrics::ServerMetrics::default(),
            live,
            shutdown: tokio::sync::watch::Sender::new(false),
            export_slots: Arc::new(tokio::sync::Semaphore::new(export_slots)),
            stream_slots: Arc::new(tokio::sync::Semaphore::new(stream_slots)),
            ingest_room: Arc::new(tokio::sync::Semaphore::new(state::INGEST_INFLIGHT_KIB)),
        }),
        shown,
    ))
}

/// Binds the configured address; [`serve_on`] then serves on it. (Apart, so that the caller
/// can say where it listens only once it does: with port 0, the port chosen.)
pub async fn bind(state: &AppState) -> Result<tokio::net::TcpListener, ServeError> {
    let addr = state.config.listen;
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Listen { addr, source })
}

/// [`bind`], then [`serve_on`].
pub async fn serve(state: Arc<AppState>) -> Result<(), ServeError> {
    let listener = bind(&state).await?;
    serve_on(listener, state).await
}

/// Serves until ctrl-c or SIGTERM: stops accepting, finishes in-flight requests (at most
/// [`SHUTDOWN_GRACE`]; live streams end at once with close code 1001), closes the store
/// (flushing the commit pipeline), returns.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
) -> Result<(), ServeError> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "listening");
    }
    let signalled = Arc::new(tokio::sync::Notify::new());
    let on_signal = Arc::clone(&signalled);
    let shutdown_state = Arc::clone(&state);
    let header_read = std::time::Duration::from_secs(state.config.header_read_seconds);
    let server = connections::serve(
        listener,
        router(Arc::clone(&state)),
        header_read,
        async move {
            shutdown_signal().await;
            tracing::info!("shutting down: no new connections, finishing requests in flight");
            shutdown_state.shutdown.send_replace(true);
            // A second signal does not wait (what was acknowledged is in the WAL already).
            tokio::spawn(async {
                shutdown_signal().await;
                tracing::warn!("second signal: exiting without waiting for requests");
                std::process::exit(1);
            });
            on_signal.notify_one();
        },
    );
    // An export to a client that stopped reading would hold the shutdown for ever: past the
    // grace period the store is closed anyway (and the process exits).
    tokio::select! {
        result = server => result.map_err(ServeError::Serve)?,
        () = async {
            signalled.notified().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!(
                grace_s = SHUTDOWN_GRACE.as_secs(),
                "requests still running after the grace period: closing the store anyway"
            );
        }
    }
    // Live streams are their own tasks once upgraded: give them a moment to send their close
    // frames (1001) before the runtime goes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while state
        .metrics
        .stream_clients
        .load(std::sync::atomic::Ordering::Relaxed)
        > 0
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    state.store.close();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_registers_only_listed_routes() {
        let dir = tempfile::tempdir().unwrap();
        let config = ServerConfig {
            data_dir: dir.path().to_path_buf(),
            ..ServerConfig::default()
        };
        let (state, shown) = open_state(config, None).unwrap();
        assert!(shown.is_some_and(|secret| secret.starts_with("alt_")));
        // `listed` panics on a route missing from ROUTES.
        let _router = router(Arc::clone(&state));
        state.store.close();
    }

    #[test]
    fn an_empty_or_short_admin_token_from_the_environment_is_refused_before_anything_is_stored() {
        for (given, says) in [
            ("", "empty"),
            ("alt_short", "at least 16"),
            ("alt_0123456789 abcdef", "printable ASCII"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let config = ServerConfig {
                data_dir: dir.path().join("data"),
                ..ServerConfig::default()
            };
            let error = open_state(config, Some(given.to_string())).err().unwrap();
            assert!(matches!(error, ServeError::Config(_)), "{given:?}: {error}");
            assert!(error.to_string().contains(says), "{given:?}: {error}");
            assert!(
                !dir.path().join("data").exists(),
                "{given:?}: nothing created"
            );
        }
    }

    #[test]
    fn a_given_admin_token_is_not_checked_once_tokens_exist_it_is_ignored_then() {
        let dir = tempfile::tempdir().unwrap();
        let config = ServerConfig {
            data_dir: dir.path().to_path_buf(),
            ..ServerConfig::default()
        };
        let (state, shown) = open_state(config.clone(), None).unwrap();
        assert!(shown.is_some());
        state.store.close();
        drop(state);
        // A compose file that now expands an unset variable to "" still starts.
        let (state, shown) = open_state(config, Some(String::new())).unwrap();
        assert!(shown.is_none());
        assert_eq!(state.tokens.list().len(), 1);
        state.store.close();
    }
}
