//! Every error of the API, mapped to HTTP in one place. 4xx answers carry a precise message;
//! 5xx answers are logged and say only "internal error".
//!
//! Body: `{"error": {"code": "invalid_event", "message": "...", "line": 3, "field": "actor.ip"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub line: Option<usize>,
    pub field: Option<String>,
    pub retry_after_seconds: Option<u32>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            line: None,
            field: None,
            retry_after_seconds: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }

    /// 429 `busy`, to be asked again after `retry_after_seconds` (the `Retry-After` header).
    pub fn busy(message: impl Into<String>, retry_after_seconds: u32) -> Self {
        let mut busy = Self::new(StatusCode::TOO_MANY_REQUESTS, "busy", message);
        busy.retry_after_seconds = Some(retry_after_seconds);
        busy
    }

    /// A server-side failure: logged in full, answered without detail.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&Body {
            error: Inner {
                code: self.code,
                message: &self.message,
                line: self.line,
                field: self.field.as_deref(),
            },
        })
        .unwrap_or_default();
        let mut response = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        if let Some(seconds) = self.retry_after_seconds {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<auditlog_engine::event::ValidationError> for ApiError {
    fn from(error: auditlog_engine::event::ValidationError) -> Self {
        let mut api = ApiError::new(StatusCode::BAD_REQUEST, "invalid_event", error.to_string());
        api.line = (error.line > 0).then_some(error.line);
        api.field = error.field;
        api
    }
}

impl From<auditlog_engine::Error> for ApiError {
    fn from(error: auditlog_engine::Error) -> Self {
        use auditlog_engine::Error as E;
        match error {
            E::Invalid(invalid) => invalid.into(),
            // Sealing fails (a full disk): retrying soon will not help; the node is unavailable
            // for writes until an operator makes room.
            E::Busy {
                seal_failure: Some(_),
                ..
            } => {
                tracing::error!(%error, "store refuses writes");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!("{error}; nothing acknowledged is lost"),
                )
            }
            E::Busy { .. } => ApiError::busy(error.to_string(), 1),
            E::BatchTooLarge { .. } => ApiError::too_large(error.to_string()),
            E::DiskFull { .. } | E::Poisoned { .. } | E::Closed => {
                tracing::error!(%error, "store refuses writes");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the store refuses writes (disk full or failed i/o); nothing acknowledged is lost",
                )
            }
            other => ApiError::internal(other),
        }
    }
}

impl ApiError {
    /// The answer to a failed append: as [`From`] does, but an I/O error is a 503 either way.
    /// When the store now refuses writes (a failed WAL write or fsync poisoned it) the batch
    /// may be stored or not; otherwise the error came from reading sealed segments for the
    /// idempotency check, before anything of the batch was written.
    pub fn from_append(error: auditlog_engine::Error, store: &auditlog_engine::Store) -> Self {
        match error {
            auditlog_engine::Error::Io { .. } => {
                tracing::error!(%error, "append failed");
                let message = if store.write_failure().is_some() {
                    format!(
                        "the store refuses writes ({error}); nothing acknowledged is lost, and \
                         this batch may be stored or not: resend it (events with an id are \
                         reported as duplicates)"
                    )
                } else {
                    format!("an I/O error stopped this batch before it was stored ({error}); retry")
                };
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
            other => other.into(),
        }
    }
}

impl From<auditlog_index::Error> for ApiError {
    fn from(error: auditlog_index::Error) -> Self {
        use auditlog_index::Error as E;
        match error {
            E::Engine(engine) => engine.into(),
            E::Unsorted { .. } => ApiError::internal(error),
            E::Parse(parse) => {
                let mut api =
                    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", parse.to_string());
                api.field = Some("q".into());
                api
            }
            other => {
                // The parameter to blame, where one is.
                let field = match &other {
                    E::LimitOutOfRange { .. } => Some("limit"),
                    E::InvalidCursor { .. } | E::CursorOrderMismatch { .. } => Some("cursor"),
                    E::TooManyTextTerms { .. } | E::EmptyTextTerm { .. } => Some("q"),
                    E::FacetSizeOutOfRange { .. } => Some("top"),
                    E::BucketWidth { .. } | E::TooManyBuckets { .. } => Some("bucket"),
                    _ => None,
                };
                let mut api =
                    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", other.to_string());
                api.field = field.map(str::to_string);
                api
            }
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(error: tokio::task::JoinError) -> Self {
        ApiError::internal(error)
    }
}

/// Runs blocking store or index work off the async threads.
pub async fn blocking<T, F>(work: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work).await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_is_429_to_retry_unless_seals_fail_which_is_503() {
        let busy = |seal_failure: Option<&str>| {
            ApiError::from(auditlog_engine::Error::Busy {
                unsealed_events: 10,
                unsealed_bytes: 1 << 20,
                limit_bytes: 1 << 20,
                seal_failure: seal_failure.map(str::to_string),
            })
        };
        let slow = busy(None);
        assert_eq!(slow.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(slow.retry_after_seconds, Some(1));
        let failing = busy(Some("disk full while writing /data/x.seg"));
        assert_eq!(failing.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            failing.message.contains("sealing fails: disk full"),
            "{}",
            failing.message
        );
        assert_eq!(failing.retry_after_seconds, None);
    }
}
