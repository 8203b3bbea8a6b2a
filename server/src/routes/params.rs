//! Query-string parameters shared by list, export, facets, histogram and stream: the filters of
//! the page, turned into an index `Query` scoped to what the token may read.
//!
//! `tenant` (repeated), `from`/`to` (RFC 3339 or `YYYY-MM-DD`), `since` (`24h`, `7d`, `30d`,
//! any `<n>s|m|h|d|w`; the durations and times of the query language, same parser),
//! repeated `action`, `resource_type`, `actor`, `project`, `outcome`, `q` (the query language);
//! for the paged list and its export only ([`PAGE_KEYS`]) `limit`, `cursor`, `order`
//! (`newest`|`oldest`).

use auditlog_engine::event::time::parse_rfc3339_us;
pub use auditlog_index::parse::parse_duration_us;
use auditlog_index::parse::parse_time_us;
use auditlog_index::{Cursor, Field, Order, Query, Scope};

use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::state::AppState;

/// The parameters every filtered endpoint accepts.
const FILTER_KEYS: &[&str] = &[
    "tenant",
    "from",
    "to",
    "since",
    "action",
    "resource_type",
    "actor",
    "project",
    "outcome",
    "q",
    "token",
];

/// The paging parameters: endpoints that answer a list (`GET /v1/events` and its export) pass
/// them as extra keys; the others (facets, histogram, stream) count or send every matching
/// event and refuse them with a 400 naming the parameter rather than ignore them.
pub const PAGE_KEYS: &[&str] = &["limit", "cursor", "order"];

/// Builds the query of a request. `None` when the caller may read nothing yet (an admin on an
/// empty store): the answer is empty.
pub fn build_query(
    state: &AppState,
    principal: &Principal,
    pairs: &[(String, String)],
    extra_keys: &[&str],
) -> Result<Option<Query>, ApiError> {
    let (query, any_tenant) = build_query_or_placeholder(state, principal, pairs, extra_keys)?;
    Ok(any_tenant.then_some(query))
}

/// [`build_query`], but with its filters even when the caller may read no tenant yet (an admin
/// on an empty store): the scope is then a placeholder, and `false` says so. The live stream
/// of such an admin matches every tenant's events as they come, with the filters.
pub fn build_query_or_placeholder(
    state: &AppState,
    principal: &Principal,
    pairs: &[(String, String)],
    extra_keys: &[&str],
) -> Result<(Query, bool), ApiError> {
    principal.require_reader()?;
    state
        .metrics
        .queries
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    for (key, value) in pairs {
        // An empty value is no value, as for every parameter.
        if PAGE_KEYS.contains(&key.as_str()) && value.is_empty() {
            continue;
        }
        if PAGE_KEYS.contains(&key.as_str()) && !extra_keys.contains(&key.as_str()) {
            let mut error = ApiError::bad_request(format!(
                "{key} applies to the paged list (/v1/events) and its export only: this \
                 endpoint counts every matching event"
            ));
            error.field = Some(key.clone());
            return Err(error);
        }
        if !FILTER_KEYS.contains(&key.as_str()) && !extra_keys.contains(&key.as_str()) {
            let mut error = ApiError::bad_request(format!(
                "unknown query parameter {key:?}; known: {}",
                FILTER_KEYS
                    .iter()
                    .chain(extra_keys)
                    .filter(|k| **k != "token")
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            error.field = Some(key.clone());
            return Err(error);
        }
    }
    let values = |key: &str| -> Vec<&str> {
        pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
            .collect()
    };
    let single = |key: &str| -> Result<Option<&str>, ApiError> {
        let found = values(key);
        if found.len() > 1 {
            let mut error = ApiError::bad_request(format!("parameter {key:?} may appear once"));
            error.field = Some(key.to_string());
            return Err(error);
        }
        Ok(found.first().copied())
    };
    let invalid = |key: &str, message: String| {
        let mut error = ApiError::bad_request(message);
        error.field = Some(key.to_string());
        error
    };

    // Scope: what the token may read, narrowed by `tenant`; asking for more is refused.
    let requested: Vec<String> = values("tenant").into_iter().map(str::to_string).collect();
    for tenant in &requested {
        if !principal.may_read(tenant) {
            return Err(ApiError::forbidden(format!(
                "this token may not read tenant {tenant:?}"
            )));
        }
    }
    let tenants: Vec<String> = if !requested.is_empty() {
        requested
    } else if principal.role == Role::Admin {
        state.store.tenants()
    } else {
        principal.tenants.clone()
    };
    let (scope, any_tenant) = match Scope::new(tenants) {
        Ok(scope) => (scope, true),
        Err(_) => (Scope::one("-"), false),
    };
    let mut query = Query::new(scope);
    // A later page resolves relative bounds (`since`) against its first page's clock, which
    // its cursor carries: every page is cut from the same window.
    let cursor = match single("cursor")? {
        Some(text) => Some(Cursor::decode(text).map_err(|error| {
            let mut error = ApiError::from(error);
            error.field = Some("cursor".into());
            error
        })?),
        None => None,
    };
    let now = cursor
        .and_then(|cursor| cursor.now_us)
        .unwrap_or_else(auditlog_engine::store::now_us);

    for (key, field) in [
        ("action", Field::Action),
        ("resource_type", Field::ResourceType),
        ("actor", Field::Actor),
        ("project", Field::Project),
        ("outcome", Field::Outcome),
    ] {
        for value in values(key) {
            query.filters.include(field, value);
        }
    }
    // RFC 3339 or a date; what is wrong with a bad value is RFC 3339's account of it.
    let time = |key: &str, text: &str| {
        parse_time_us(text).ok_or_else(|| {
            // A date is read as its midnight: the reason is that reading's (a day out of
            // range, say), not "too short for RFC 3339".
            let is_date =
                text.len() == 10 && text.as_bytes()[4] == b'-' && text.as_bytes()[7] == b'-';
            let read = if is_date {
                format!("{text}T00:00:00Z")
            } else {
                text.to_string()
            };
            let reason = parse_rfc3339_us(&read)
                .err()
                .map_or_else(String::new, |e| e.to_string());
            invalid(
                key,
                format!("{key}: {reason}: {text:?} (RFC 3339 or YYYY-MM-DD)"),
            )
        })
    };
    // The lower bound is the latest of an absolute one (`from`, `from:` in `q`) and a relative
    // one (`since`, `since:` in `q`), kept apart for the cursor below.
    let mut absolute_from = None;
    let mut relative_from: Option<i64> = None;
    if let Some(from) = single("from")? {
        absolute_from = Some(time("from", from)?);
        query.from_us = absolute_from;
    }
    if let Some(to) = single("to")? {
        query.to_us = Some(time("to", to)?);
    }
    if let Some(since) = single("since")? {
        let us = parse_duration_us(since).ok_or_else(|| {
            invalid(
                "since",
                format!("since must be a duration like 24h, 7d or 30d, found {since:?}"),
            )
        })?;
        let from = now.saturating_sub(us);
        relative_from = Some(from);
        query.from_us = Some(query.from_us.map_or(from, |f| f.max(from)));
    }
    if let Some(q) = single("q")? {
        let parsed = auditlog_index::parse(q).map_err(auditlog_index::Error::from)?;
        absolute_from = absolute_from.max(parsed.from_us);
        let since = parsed.since_us.map(|us| now.saturating_sub(us));
        relative_from = relative_from.max(since);
        parsed.apply(&mut query, now);
        // `tenant:` in `q` narrows the scope like the parameter, and is refused like it when
        // it names a tenant the token may not read (a 403, not an empty page).
        if let Some(filter) = query.filters.get(Field::Tenant) {
            if let Some(tenant) = filter.any_of.iter().find(|t| !principal.may_read(t)) {
                let mut error = ApiError::forbidden(format!(
                    "this token may not read tenant {tenant:?} (asked for in q)"
                ));
                error.field = Some("q".into());
                return Err(error);
            }
        }
    }
    // `outcome` takes two values: another is a mistake to name, not an empty page.
    for outcome in values("outcome") {
        if auditlog_engine::event::Outcome::parse(outcome).is_none() {
            return Err(invalid(
                "outcome",
                format!("outcome must be success or failure, found {outcome:?}"),
            ));
        }
    }
    if let Some(limit) = single("limit")? {
        query.limit = limit
            .parse()
            .map_err(|_| invalid("limit", format!("limit must be a number, found {limit:?}")))?;
    }
    if let Some(order) = single("order")? {
        query.order = match order {
            "newest" | "desc" => Order::NewestFirst,
            "oldest" | "asc" => Order::OldestFirst,
            other => {
                return Err(invalid(
                    "order",
                    format!("order must be newest or oldest, found {other:?}"),
                ))
            }
        };
    }
    // The clock goes into the next cursor, unless this page continues a listing whose cursor
    // had none (issued before cursors carried it): that listing keeps the fallback below to
    // its end, since a clock from its middle would cut the rows before it off later pages.
    if relative_from.is_some() && cursor.is_none_or(|cursor| cursor.now_us.is_some()) {
        query.now_us = Some(now);
    }
    query.cursor = cursor;
    // A cursor without the first page's clock (issued before cursors carried it) leaves a
    // relative bound moving with the clock: paging oldest first, a later page's bound could
    // pass the cursor and skip the rows between. The cursor bounds the page instead, but only
    // where the relative bound was the binding one: never below an absolute `from` (a cursor is
    // not tied to its query, so one from another query would otherwise widen this one's range).
    if let (Some(cursor), Some(relative)) = (&query.cursor, relative_from) {
        if cursor.order == Order::OldestFirst && cursor.now_us.is_none() {
            let yielded = relative.min(cursor.timestamp_us);
            query.from_us = Some(absolute_from.map_or(yielded, |absolute| absolute.max(yielded)));
        }
    }
    if let (Some(from), Some(to)) = (query.from_us, query.to_us) {
        if from > to {
            return Err(invalid(
                "from",
                format!(
                    "from ({}) is after to ({}): the range holds nothing",
                    auditlog_engine::event::time::format_rfc3339_us(from),
                    auditlog_engine::event::time::format_rfc3339_us(to)
                ),
            ));
        }
    }
    query.validate()?;
    Ok((query, any_tenant))
}

/// The value of a parameter that may appear once (`None` when absent or empty); given twice
/// with values, a 400 naming it, as for the filter parameters.
///
/// ```
/// use auditlog_server::routes::params::single_param;
/// let pairs = vec![("top".to_string(), "5".to_string()), ("top".to_string(), "9".to_string())];
/// assert_eq!(single_param(&pairs[..1], "top").unwrap(), Some("5"));
/// assert_eq!(single_param(&pairs, "top").unwrap_err().field.as_deref(), Some("top"));
/// ```
pub fn single_param<'p>(
    pairs: &'p [(String, String)],
    key: &str,
) -> Result<Option<&'p str>, ApiError> {
    // An empty value is no value, as for the filters (`format=&format=csv` is one format).
    let mut found = pairs
        .iter()
        .filter(|(k, v)| k == key && !v.is_empty())
        .map(|(_, v)| v.as_str());
    let first = found.next();
    if found.next().is_some() {
        let mut error = ApiError::bad_request(format!("parameter {key:?} may appear once"));
        error.field = Some(key.to_string());
        return Err(error);
    }
    Ok(first)
}

/// A 400 naming the parameter `key`.
pub fn invalid_param(key: &str, message: String) -> ApiError {
    let mut error = ApiError::bad_request(message);
    error.field = Some(key.to_string());
    error
}

/// The raw query string's pairs.
pub fn pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(crate::auth::form_pairs).unwrap_or_default()
}
