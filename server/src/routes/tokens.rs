//! `POST /v1/tokens`, `GET /v1/tokens`, `DELETE /v1/tokens/{id}` (admin only).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::auth::{Principal, Role, TokenRecord};
use crate::error::{blocking, ApiError};
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub tenants: Vec<String>,
}

/// A token as listed: never its secret or hash.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub tenants: Vec<String>,
    pub created: String,
}

/// A new token: the only answer that carries its secret.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub tenants: Vec<String>,
    pub created: String,
    /// The secret: send it as `Authorization: Bearer <token>`; it is not stored.
    pub token: String,
}

/// `GET /v1/tokens`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
}

impl From<TokenRecord> for TokenView {
    fn from(record: TokenRecord) -> Self {
        Self {
            id: record.id,
            name: record.name,
            role: record.role,
            tenants: record.tenants,
            created: record.created,
        }
    }
}

/// Most bytes of a token request's body (a name, a role and up to a few hundred tenants).
const TOKEN_REQUEST_BYTES_MAX: usize = 64 << 10;

#[utoipa::path(
    post,
    path = "/v1/tokens",
    tag = "tokens",
    request_body = CreateToken,
    responses(
        (status = 201, description = "The token and its secret (shown once)", body = CreatedToken),
        (status = 400, description = "Bad request: the message names the parameter", body = crate::openapi::ErrorResponse),
        (status = 401, description = "Missing, malformed or unknown token", body = crate::openapi::ErrorResponse),
        (status = 403, description = "The token's role or tenants do not allow this", body = crate::openapi::ErrorResponse),
        (status = 408, description = "The body did not arrive within ingest_body_seconds (60)", body = crate::openapi::ErrorResponse),
        (status = 413, description = "The body is over 64 KiB", body = crate::openapi::ErrorResponse)
    )
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    // Small, and bounded in time like an ingest body: a client trickling it would otherwise
    // hold the request (and an admin's authentication from before any revocation) for ever.
    let seconds = state.config.ingest_body_seconds;
    let body = tokio::time::timeout(
        std::time::Duration::from_secs(seconds),
        axum::body::to_bytes(body, TOKEN_REQUEST_BYTES_MAX),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!("the request body did not arrive within {seconds} s (ingest_body_seconds)"),
        )
    })?
    .map_err(|error| {
        let over = std::error::Error::source(&error)
            .is_some_and(|s| s.to_string().contains("length limit"))
            || error.to_string().contains("length limit");
        if over {
            ApiError::too_large(format!(
                "a token request is at most {TOKEN_REQUEST_BYTES_MAX} bytes"
            ))
        } else {
            ApiError::bad_request(format!("cannot read the token request: {error}"))
        }
    })?;
    let request: CreateToken = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("token request: {e}")))?;
    if request.name.trim().is_empty() || request.name.len() > 128 {
        return Err(ApiError::bad_request("name must be 1..128 bytes"));
    }
    if request.role == Role::Read && request.tenants.is_empty() {
        return Err(ApiError::bad_request(
            "a read token must be limited to at least one tenant",
        ));
    }
    if request.role == Role::Admin && !request.tenants.is_empty() {
        return Err(ApiError::bad_request(
            "an admin token cannot be limited to tenants",
        ));
    }
    let answer = blocking(move || {
        if !principal.still_valid(&state.tokens) {
            return Err(Principal::revoked_error());
        }
        // On the record before the token exists: a token is never usable without its
        // creation recorded (a crash, or the creator's revocation, between the two leaves a
        // record of a token never made).
        let (record, secret) =
            crate::auth::TokenStore::new_token(&request.name, request.role, request.tenants, None);
        crate::audit::record(
            &state,
            &principal,
            "token_created",
            "api_token",
            Some(record.id.clone()),
            serde_json::json!({ "name": record.name, "role": record.role, "tenants": record.tenants }),
        )?;
        // Checked again under the token store's lock: a revocation answered in between wins.
        let inserted = state
            .tokens
            .insert_by(record.clone(), Some(&principal.token_id))
            .map_err(ApiError::internal)?;
        if !inserted {
            return Err(Principal::revoked_error());
        }
        Ok(CreatedToken {
            id: record.id,
            name: record.name,
            role: record.role,
            tenants: record.tenants,
            created: record.created,
            token: secret,
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/tokens",
    tag = "tokens",
    responses(
        (status = 200, description = "Every token, without secrets", body = TokenList),
        (status = 401, description = "Missing, malformed or unknown token", body = crate::openapi::ErrorResponse),
        (status = 403, description = "The token's role or tenants do not allow this", body = crate::openapi::ErrorResponse)
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let tokens: Vec<TokenView> = state
        .tokens
        .list()
        .into_iter()
        .map(TokenView::from)
        .collect();
    Ok(Json(TokenList { tokens }).into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/tokens/{id}",
    tag = "tokens",
    params(("id" = String, Path, description = "The token's id (tok_...)")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Missing, malformed or unknown token", body = crate::openapi::ErrorResponse),
        (status = 403, description = "The token's role or tenants do not allow this", body = crate::openapi::ErrorResponse),
        (status = 404, description = "Not found", body = crate::openapi::ErrorResponse),
        (status = 409, description = "The last admin token cannot be revoked", body = crate::openapi::ErrorResponse)
    )
)]
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    blocking(move || {
        let revoked = state
            .tokens
            .revoke_by(&id, Some(&principal.token_id))
            .map_err(ApiError::internal)?;
        let removed = match revoked {
            crate::auth::Revoked::Revoked(removed) => removed,
            crate::auth::Revoked::ByRevoked => return Err(Principal::revoked_error()),
            crate::auth::Revoked::NotFound => {
                return Err(ApiError::not_found(format!("no token with id {id:?}")))
            }
            crate::auth::Revoked::LastAdmin => {
                return Err(ApiError::new(
                    axum::http::StatusCode::CONFLICT,
                    "last_admin",
                    format!(
                        "{id} is the last admin token; create another admin token before \
                         revoking it"
                    ),
                ))
            }
        };
        // The revocation stands whether or not it can be recorded (it takes access away; a
        // store refusing writes must not keep a leaked token alive), but the answer says
        // when the record failed.
        crate::audit::record(
            &state,
            &principal,
            "token_revoked",
            "api_token",
            Some(removed.id.clone()),
            serde_json::json!({ "name": removed.name, "role": removed.role }),
        )
        .map_err(|mut error| {
            error.message = format!(
                "{id} is revoked, but its revocation could not be recorded: {}",
                error.message
            );
            error
        })?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
