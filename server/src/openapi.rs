//! The OpenAPI 3 document of the API (`GET /v1/openapi.json`), generated from the handlers'
//! `#[utoipa::path]` annotations and the schemas below.
//!
//! Events are written by the engine's own serializer, not by serde, so their schemas here
//! ([`EventSchema`], [`StoredEventSchema`]) are descriptions of the wire shape of EVENT.md kept
//! beside the code; the error body, ingest answer and token shapes derive from the types the
//! handlers answer with. Every route of [`crate::ROUTES`] appears in the document (a test checks
//! it in both directions).

use std::sync::OnceLock;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

/// The API's document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "auditlog",
        description = "Self-hosted audit-log datastore: batch ingest, filtered queries, export, \
                       facets, histogram, live WebSocket stream, API tokens. Authenticate with \
                       `Authorization: Bearer <token>` (the stream also takes `?token=`)."
    ),
    paths(
        crate::routes::ingest::ingest,
        crate::routes::events::list,
        crate::routes::events::get,
        crate::routes::events::export,
        crate::routes::events::facets,
        crate::routes::events::histogram,
        crate::routes::stream::stream,
        crate::routes::tokens::create,
        crate::routes::tokens::list,
        crate::routes::tokens::revoke,
        crate::routes::admin::flush,
        crate::routes::admin::stats,
        crate::routes::admin::integrity,
        crate::routes::admin::healthz,
        crate::routes::admin::readyz,
        crate::metrics::metrics,
        openapi_json,
    ),
    components(schemas(ErrorResponse, ErrorDetail, EventSchema, StoredEventSchema, PageSchema)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "events", description = "Ingest and read audit events"),
        (name = "tokens", description = "API tokens (admin)"),
        (name = "admin", description = "Operations"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every error answer: `{"error": {"code", "message", "line"?, "field"?}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable code: `invalid_event`, `invalid_query`, `bad_request`, `unauthorized`,
    /// `forbidden`, `not_found`, `method_not_allowed`, `too_large`, `unsupported_encoding`,
    /// `unsupported_media_type`, `unprocessable`, `websocket_required`, `last_admin`, `busy`,
    /// `unavailable`, `not_ready`, `internal`.
    pub code: String,
    /// What is wrong, naming the line, field or limit.
    pub message: String,
    /// 1-based line (NDJSON) or position (JSON array) of the offending event.
    pub line: Option<usize>,
    /// Dotted path of the offending field or query parameter.
    pub field: Option<String>,
}

/// Who did it (EVENT.md).
#[derive(Serialize, ToSchema)]
pub struct ActorSchema {
    pub id: Option<String>,
    pub email: Option<String>,
    /// `user` (default), `api_token`, `system`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// What it was done to (EVENT.md).
#[derive(Serialize, ToSchema)]
pub struct ResourceSchema {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Option<String>,
    pub name: Option<String>,
}

/// One change of an update.
#[derive(Serialize, ToSchema)]
pub struct ChangeSchema {
    pub field: String,
    pub old: Option<serde_json::Value>,
    pub new: Option<serde_json::Value>,
}

/// An audit event as sent (EVENT.md); at most 64 KiB as JSON; unknown fields are refused.
#[derive(Serialize, ToSchema)]
#[schema(as = Event)]
pub struct EventSchema {
    /// Idempotency key, unique per tenant.
    pub id: Option<String>,
    /// RFC 3339 with offset; absent: the time of receipt.
    pub timestamp: Option<String>,
    pub tenant: String,
    pub project: Option<String>,
    pub actor: ActorSchema,
    pub action: String,
    /// `success` (default) or `failure`.
    pub outcome: Option<String>,
    pub resource: ResourceSchema,
    pub changes: Option<Vec<ChangeSchema>>,
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
}

/// An event as stored: the sent fields plus what the server assigns.
#[derive(Serialize, ToSchema)]
#[schema(as = StoredEvent)]
pub struct StoredEventSchema {
    pub seq: u64,
    /// RFC 3339 UTC, microseconds.
    pub received: String,
    /// RFC 3339 UTC, microseconds.
    pub timestamp: String,
    pub tenant: String,
    pub id: Option<String>,
    pub project: Option<String>,
    pub actor: ActorSchema,
    pub action: String,
    pub outcome: String,
    pub resource: ResourceSchema,
    pub changes: Option<Vec<ChangeSchema>>,
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
}

/// One page of a query.
#[derive(Serialize, ToSchema)]
#[schema(as = Page)]
pub struct PageSchema {
    pub events: Vec<StoredEventSchema>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
    /// The last seq the answer was read up to (0 on an empty store): what was acknowledged
    /// after it follows with `/v1/stream?from_seq=<last_seq + 1>`, without gap or duplicate.
    pub last_seq: u64,
}

/// Filters shared by the read endpoints and the stream.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct FilterParams {
    /// Tenants to read (repeatable); must be within the token's tenants.
    pub tenant: Option<Vec<String>>,
    /// RFC 3339, inclusive.
    pub from: Option<String>,
    /// RFC 3339, exclusive.
    pub to: Option<String>,
    /// A duration back from now: `30m`, `24h`, `7d`, `4w`.
    pub since: Option<String>,
    /// Repeatable.
    pub action: Option<Vec<String>>,
    /// Repeatable.
    pub resource_type: Option<Vec<String>>,
    /// Actor id or email (repeatable).
    pub actor: Option<Vec<String>>,
    /// Repeatable.
    pub project: Option<Vec<String>>,
    /// `success` or `failure`.
    pub outcome: Option<Vec<String>>,
    /// The query language (free text and `field:value` terms).
    pub q: Option<String>,
}

/// Paging of the read endpoints (not the stream, which sends every matching event in seq
/// order and refuses these).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PageParams {
    /// Events per page (`GET /v1/events`); an export takes none.
    pub limit: Option<usize>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// `newest` (default) or `oldest`.
    pub order: Option<String>,
}

/// `GET /v1/openapi.json`: this document (no token needed).
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "admin",
    security(()),
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json"))
)]
pub async fn openapi_json() -> Response {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let text = DOCUMENT.get_or_init(|| ApiDoc::openapi().to_json().unwrap_or_default());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        text.clone(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_lists_every_route_and_nothing_else() {
        let document = ApiDoc::openapi();
        let mut documented = Vec::new();
        for (path, item) in &document.paths.paths {
            for (method, operation) in [
                ("GET", &item.get),
                ("POST", &item.post),
                ("PUT", &item.put),
                ("DELETE", &item.delete),
                ("PATCH", &item.patch),
            ] {
                if let Some(operation) = operation {
                    assert!(
                        !operation.responses.responses.is_empty(),
                        "{method} {path} has no responses"
                    );
                    documented.push((method, path.as_str()));
                }
            }
        }
        for route in crate::ROUTES {
            assert!(
                documented.contains(route),
                "route {route:?} missing from the OpenAPI document"
            );
        }
        for operation in &documented {
            assert!(
                crate::ROUTES.contains(operation),
                "{operation:?} documented but not in ROUTES"
            );
        }
    }
}
