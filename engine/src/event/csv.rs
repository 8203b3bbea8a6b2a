//! Events as CSV records (RFC 4180), written straight into a byte buffer: what an export in
//! CSV streams. The columns are [`CSV_COLUMNS`], in that order (documented in the README):
//! timestamps in RFC 3339 UTC with six fractional digits, absent values empty, `changes` and
//! `details` as their JSON text. A field is quoted, with its quotes doubled, only when it holds
//! a comma, a quote or a line break; records end in CRLF.
//!
//! ```
//! use auditlog_engine::event::{write_event_csv, Actor, Event, StoredEvent, CSV_COLUMNS};
//! let stored = StoredEvent {
//!     seq: 7,
//!     tenant_seq: 3,
//!     received_us: 1_000_000,
//!     event: Event {
//!         tenant: "acct_1".into(),
//!         actor: Actor { id: Some("u1".into()), ..Actor::default() },
//!         action: "delete".into(),
//!         details: Some(r#"{"why":"a, b"}"#.into()),
//!         ..Event::default()
//!     },
//! };
//! let mut out = CSV_COLUMNS.join(",").into_bytes();
//! out.extend_from_slice(b"\r\n");
//! write_event_csv(&stored.view(), &mut out);
//! let text = String::from_utf8(out).unwrap();
//! assert!(text.ends_with(
//!     ",u1,,user,,,delete,success,,,,,\"{\"\"why\"\":\"\"a, b\"\"}\"\r\n"
//! ));
//! assert!(text.starts_with("seq,timestamp,received,tenant,"));
//! ```

use super::model::EventRef;
use super::time::write_rfc3339_us;

/// CSV columns, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "seq",
    "timestamp",
    "received",
    "tenant",
    "tenant_seq",
    "id",
    "project",
    "actor_id",
    "actor_email",
    "actor_type",
    "actor_ip",
    "actor_user_agent",
    "action",
    "outcome",
    "resource_type",
    "resource_id",
    "resource_name",
    "changes",
    "details",
];

/// Bytes that make a field quoted.
const QUOTED: [bool; 256] = {
    let mut table = [false; 256];
    table[b',' as usize] = true;
    table[b'"' as usize] = true;
    table[b'\n' as usize] = true;
    table[b'\r' as usize] = true;
    table
};

/// Appends one RFC 4180 field: quoted (quotes doubled) when it holds a comma, quote or line
/// break.
pub fn write_csv_field(value: &str, out: &mut Vec<u8>) {
    let bytes = value.as_bytes();
    // Most fields are short ids and names: a plain loop beats memchr's setup on them.
    let plain = if bytes.len() <= 32 {
        !bytes.iter().any(|&byte| QUOTED[usize::from(byte)])
    } else {
        memchr::memchr3(b',', b'"', b'\n', bytes).is_none()
            && memchr::memchr(b'\r', bytes).is_none()
    };
    if plain {
        out.extend_from_slice(bytes);
        return;
    }
    out.push(b'"');
    let mut rest = bytes;
    while let Some(quote) = memchr::memchr(b'"', rest) {
        out.extend_from_slice(&rest[..=quote]);
        out.push(b'"');
        rest = &rest[quote + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

/// Appends the CSV record (CRLF-terminated) of an event, in [`CSV_COLUMNS`] order.
pub fn write_event_csv(event: &EventRef<'_>, out: &mut Vec<u8>) {
    super::json::write_u64(event.seq, out);
    out.push(b',');
    write_rfc3339_us(event.timestamp_us, out);
    out.push(b',');
    write_rfc3339_us(event.received_us, out);
    out.push(b',');
    write_csv_field(event.tenant, out);
    out.push(b',');
    super::json::write_u64(event.tenant_seq, out);
    for field in [
        event.id,
        event.project,
        event.actor_id,
        event.actor_email,
        Some(event.actor_type.as_str()),
        event.actor_ip,
        event.actor_user_agent,
        Some(event.action),
        Some(event.outcome.as_str()),
        Some(event.resource_type),
        event.resource_id,
        event.resource_name,
        event.changes,
        event.details,
    ] {
        out.push(b',');
        write_csv_field(field.unwrap_or_default(), out);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::write_csv_field;

    #[test]
    fn csv_fields_are_quoted_only_when_needed_with_quotes_doubled() {
        let cases = [
            ("plain", "plain"),
            ("", ""),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("\"", "\"\"\"\""),
            ("line\r\nbreak", "\"line\r\nbreak\""),
            ("cr\ronly", "\"cr\ronly\""),
            (r#"{"k":"v","n":[1,2]}"#, r#""{""k"":""v"",""n"":[1,2]}""#),
        ];
        for (value, expected) in cases {
            let mut out = Vec::new();
            write_csv_field(value, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), expected, "{value:?}");
        }
    }
}
