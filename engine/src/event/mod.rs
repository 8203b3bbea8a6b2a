//! The audit event: model, JSON parsing and validation, JSON output.
//!
//! - the Rust types of EVENT.md's event ([`Event`], [`StoredEvent`]);
//! - [`parse_batch`] / [`parse_event`]: ingest bodies (NDJSON or a JSON array) to validated
//!   events, failing with a [`ValidationError`] that names the line, the field and the rule;
//! - [`write_event_json`] / [`write_stored_event_json`]: events back to EVENT.md JSON;
//! - [`write_event_csv`]: events as the export's CSV records ([`CSV_COLUMNS`]);
//! - [`EventRef`]: a stored event borrowed where it lives, for the writers above;
//! - [`time`]: RFC 3339 timestamps to and from UTC microseconds.
//!
//! ```
//! use auditlog_engine::event::{parse_batch, write_event_json, RetentionPolicy, ValidationContext};
//! let retention = RetentionPolicy::new(365);
//! let ctx = ValidationContext::new(1_795_000_000_000_000, &retention);
//! let body = br#"[{"tenant":"acct_1","actor":{"id":"u1"},"action":"delete","resource":{"type":"pod"},"details":{ "a" : 1 }}]"#;
//! let events = parse_batch(body, &ctx).unwrap();
//! assert_eq!(events[0].details.as_deref(), Some(r#"{"a":1}"#));
//! let mut json = Vec::new();
//! write_event_json(&events[0], &mut json);
//! assert_eq!(parse_batch(&json, &ctx).unwrap(), events);
//! ```

pub mod csv;
pub mod json;
mod model;
pub mod parse;
pub mod time;

pub use compact_str::format_compact;
pub use csv::{write_csv_field, write_event_csv, CSV_COLUMNS};
pub use json::{
    write_event_json, write_event_ref_json, write_json_string, write_stored_event_json,
};
pub use model::{
    Actor, ActorType, Event, EventRef, Outcome, Resource, StoredEvent, Text, TimestampUs,
};
pub use parse::{
    parse_batch, parse_batch_limited, parse_event, RetentionPolicy, ValidationContext,
    ValidationError, ACTION_BYTES_MAX, DETAILS_DEPTH_MAX, EMAIL_BYTES_MAX, EVENT_BYTES_MAX,
    FUTURE_TOLERANCE_US, ID_BYTES_MAX, PROJECT_BYTES_MAX, RESOURCE_ID_BYTES_MAX,
    RESOURCE_TYPE_BYTES_MAX, TENANT_BYTES_MAX, USER_AGENT_BYTES_MAX,
};
