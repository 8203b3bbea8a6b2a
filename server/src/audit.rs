//! The server audits itself: token creation and revocation, exports and stream subscriptions
//! are recorded as events of the system tenant, so access to the audit log is on the record.

use auditlog_engine::event::{Actor, ActorType, Event, Outcome, Resource};

use crate::auth::Principal;
use crate::state::AppState;

/// Tenant of the server's own events. Only the server writes it: no token may ingest into it,
/// so its record of token changes and access cannot be forged.
pub const SYSTEM_TENANT: &str = "auditlog.system";

/// A request's query string as a self-audit event records it: every parameter as sent, less
/// `token` (the stream and exports take the secret there, and a record must never hold it: a
/// token that may read the system tenant would find other tokens' secrets in it).
///
/// ```
/// use auditlog_server::audit::recorded_query;
/// assert_eq!(
///     recorded_query(Some("tenant=acct_1&token=alt_s3cret&q=login&%74oken=alt_again")),
///     "tenant=acct_1&q=login"
/// );
/// assert_eq!(recorded_query(None), "");
/// ```
pub fn recorded_query(raw: Option<&str>) -> String {
    raw.unwrap_or_default()
        .split('&')
        .filter(|part| {
            !part.is_empty()
                && !crate::auth::form_pairs(part)
                    .iter()
                    .any(|(key, _)| key == "token")
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Records one self-audit event, durably, before the access it records is given: a failure
/// is the caller's to refuse that access with (503: the store refuses writes), so nothing is
/// read, streamed or granted off the record. The event does not wait for room in the tail
/// (`AppendHints::skip_tail_bound`): a client keeping ingest at the tail's bound must not be
/// able to hold every reader off, nor an access go unrecorded.
pub fn record(
    state: &AppState,
    principal: &Principal,
    action: &str,
    resource_type: &str,
    resource_id: Option<String>,
    details: serde_json::Value,
) -> Result<(), crate::error::ApiError> {
    let event = Event {
        id: None,
        timestamp_us: auditlog_engine::store::now_us(),
        tenant: SYSTEM_TENANT.into(),
        project: None,
        actor: Actor {
            id: Some(principal.token_id.as_str().into()),
            kind: ActorType::ApiToken,
            ..Actor::default()
        },
        action: action.into(),
        outcome: Outcome::Success,
        resource: Resource {
            kind: resource_type.into(),
            id: resource_id.map(Into::into),
            name: None,
        },
        changes: None,
        details: Some(details.to_string().into()),
    };
    let hints = auditlog_engine::store::AppendHints {
        skip_tail_bound: true,
        ..Default::default()
    };
    match state.store.append_with(vec![event], hints) {
        Ok(_) => Ok(()),
        Err(error) => {
            tracing::error!(%error, action, "could not record a self-audit event");
            let mut refused = crate::error::ApiError::from_append(error, &state.store);
            refused.message = format!(
                "the server could not put this access on its own record, so it is refused: {}",
                refused.message
            );
            Err(refused)
        }
    }
}

/// [`record`] from an async handler: the append (and its fsync) runs on a blocking thread.
pub async fn record_async(
    state: &std::sync::Arc<AppState>,
    principal: &Principal,
    action: &'static str,
    resource_type: &'static str,
    details: serde_json::Value,
) -> Result<(), crate::error::ApiError> {
    let state = std::sync::Arc::clone(state);
    let principal = principal.clone();
    tokio::task::spawn_blocking(move || {
        record(&state, &principal, action, resource_type, None, details)
    })
    .await
    .map_err(crate::error::ApiError::internal)?
}
