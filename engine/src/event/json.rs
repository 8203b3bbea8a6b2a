//! Events back to EVENT.md JSON, written straight into a byte buffer.
//!
//! [`write_event_json`] writes the input shape of EVENT.md, so that parsing its output gives the
//! same [`Event`] back; [`write_stored_event_json`] adds what the store assigned (`seq`,
//! `tenant_seq`, `received`), and is what every read path returns. Output is compact, fields come
//! in EVENT.md's order, absent optional fields are left out, `actor.type` and `outcome` are always
//! written, timestamps are RFC 3339 UTC with six fractional digits, and `changes` / `details` are
//! embedded as the JSON they hold (not as strings).
//!
//! ```
//! use auditlog_engine::event::{write_stored_event_json, Actor, Event, Resource, StoredEvent};
//! let stored = StoredEvent {
//!     seq: 7,
//!     tenant_seq: 3,
//!     received_us: 1_000_000,
//!     event: Event {
//!         tenant: "acct_1".into(),
//!         actor: Actor { id: Some("u1".into()), ..Actor::default() },
//!         action: "delete".into(),
//!         resource: Resource { kind: "pod".into(), ..Resource::default() },
//!         details: Some(r#"{"why":"cleanup"}"#.into()),
//!         ..Event::default()
//!     },
//! };
//! let mut out = Vec::new();
//! write_stored_event_json(&stored, &mut out);
//! assert_eq!(
//!     String::from_utf8(out).unwrap(),
//!     concat!(
//!         r#"{"seq":7,"tenant_seq":3,"received":"1970-01-01T00:00:01.000000Z","#,
//!         r#""timestamp":"1970-01-01T00:00:00.000000Z","tenant":"acct_1","#,
//!         r#""actor":{"id":"u1","type":"user"},"action":"delete","outcome":"success","#,
//!         r#""resource":{"type":"pod"},"details":{"why":"cleanup"}}"#,
//!     )
//! );
//! ```

use super::model::{Event, EventRef, StoredEvent};
use super::time::write_rfc3339_us;

/// Appends the JSON object of `event` (EVENT.md's input shape, no `seq`) to `out`.
pub fn write_event_json(event: &Event, out: &mut Vec<u8>) {
    out.push(b'{');
    write_event_fields(&event.view(0, 0, 0), out);
    out.push(b'}');
}

/// Appends the JSON object of a stored event: `seq`, `tenant_seq`, `received`, then the event.
pub fn write_stored_event_json(stored: &StoredEvent, out: &mut Vec<u8>) {
    write_event_ref_json(&stored.view(), out);
}

/// [`write_stored_event_json`] for a borrowed event (same output).
pub fn write_event_ref_json(event: &EventRef<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"seq\":");
    write_u64(event.seq, out);
    out.extend_from_slice(b",\"tenant_seq\":");
    write_u64(event.tenant_seq, out);
    out.extend_from_slice(b",\"received\":\"");
    write_rfc3339_us(event.received_us, out);
    out.extend_from_slice(b"\",");
    write_event_fields(event, out);
    out.push(b'}');
}

/// Appends `value` as a JSON string literal (quotes included) to `out`.
///
/// Escapes `"`, `\` and the control characters below U+0020; everything else is copied as UTF-8.
/// Eight bytes are checked at a time: audit strings rarely hold anything to escape, and exports,
/// the live stream and the load generator write a dozen of them per event.
pub fn write_json_string(value: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(value.len() + 2);
    out.push(b'"');
    let bytes = value.as_bytes();
    let mut run_start = 0;
    let mut position = 0;
    while position < bytes.len() {
        // Skip whole words with nothing to escape.
        while let Some(word) = bytes.get(position..position + 8) {
            let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
            if word_needs_escape(word) {
                break;
            }
            position += 8;
        }
        // Then byte by byte through the flagged word (or the last few bytes).
        let end = (position + 8).min(bytes.len());
        while position < end {
            let byte = bytes[position];
            let escape: &[u8] = match byte {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0x08 => b"\\b",
                0x0c => b"\\f",
                0x00..=0x1f => &[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(byte >> 4)],
                    HEX[usize::from(byte & 0xf)],
                ],
                _ => {
                    position += 1;
                    continue;
                }
            };
            out.extend_from_slice(&bytes[run_start..position]);
            out.extend_from_slice(escape);
            position += 1;
            run_start = position;
        }
    }
    out.extend_from_slice(&bytes[run_start..]);
    out.push(b'"');
}

/// Whether any byte of `word` is below 0x20, `"` or `\` (exact: no false negatives, and a
/// false positive only costs the byte-by-byte check of that word).
#[inline]
fn word_needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let has_quote = quote.wrapping_sub(ONES) & !quote & HIGH;
    let has_backslash = backslash.wrapping_sub(ONES) & !backslash & HIGH;
    (below_space | has_quote | has_backslash) != 0
}

/// Writes the members of the event object (EVENT.md's input shape), without the braces.
fn write_event_fields(event: &EventRef<'_>, out: &mut Vec<u8>) {
    if let Some(id) = event.id {
        out.extend_from_slice(b"\"id\":");
        write_json_string(id, out);
        out.push(b',');
    }
    out.extend_from_slice(b"\"timestamp\":\"");
    write_rfc3339_us(event.timestamp_us, out);
    out.extend_from_slice(b"\",\"tenant\":");
    write_json_string(event.tenant, out);
    write_optional_string(b"project", event.project, out);

    out.extend_from_slice(b",\"actor\":{");
    let mut first = true;
    if let Some(id) = event.actor_id {
        out.extend_from_slice(b"\"id\":");
        write_json_string(id, out);
        first = false;
    }
    if let Some(email) = event.actor_email {
        if !first {
            out.push(b',');
        }
        out.extend_from_slice(b"\"email\":");
        write_json_string(email, out);
        first = false;
    }
    if !first {
        out.push(b',');
    }
    out.extend_from_slice(b"\"type\":\"");
    out.extend_from_slice(event.actor_type.as_str().as_bytes());
    out.push(b'"');
    write_optional_string(b"ip", event.actor_ip, out);
    write_optional_string(b"user_agent", event.actor_user_agent, out);

    out.extend_from_slice(b"},\"action\":");
    write_json_string(event.action, out);
    out.extend_from_slice(b",\"outcome\":\"");
    out.extend_from_slice(event.outcome.as_str().as_bytes());
    out.extend_from_slice(b"\",\"resource\":{\"type\":");
    write_json_string(event.resource_type, out);
    write_optional_string(b"id", event.resource_id, out);
    write_optional_string(b"name", event.resource_name, out);
    out.push(b'}');

    write_optional_json(b"changes", event.changes, out);
    write_optional_json(b"details", event.details, out);
}

/// Writes `,"name":"value"` when `value` is present and not empty.
fn write_optional_string(name: &[u8], value: Option<&str>, out: &mut Vec<u8>) {
    if let Some(value) = value.filter(|value| !value.is_empty()) {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name);
        out.extend_from_slice(b"\":");
        write_json_string(value, out);
    }
}

/// Writes `,"name":json` when `json` (already JSON text) is present and not empty.
fn write_optional_json(name: &[u8], json: Option<&str>, out: &mut Vec<u8>) {
    if let Some(json) = json.filter(|json| !json.is_empty()) {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name);
        out.extend_from_slice(b"\":");
        out.extend_from_slice(json.as_bytes());
    }
}

pub(crate) fn write_u64(mut value: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string_json(value: &str) -> String {
        let mut out = Vec::new();
        write_json_string(value, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_string_escapes_match_serde_json() {
        for value in [
            "",
            "plain",
            "q\"b\\",
            "\u{0}\u{1f}\n\r\t\u{8}\u{c}",
            "é✓😀\u{7f}",
            "a long run of text with nothing to escape at all",
            "sixteen bytes ok\"then a quote in the third word\\ and a backslash",
            "\u{1}234567\u{1f}abcdefgh\"",
        ] {
            assert_eq!(string_json(value), serde_json::to_string(value).unwrap());
        }
    }

    /// Every byte value at every position of a word, next to plain and multi-byte text.
    #[test]
    fn json_string_escapes_match_serde_json_at_every_offset() {
        for byte in 0u8..0x80 {
            for offset in 0..17 {
                for tail in ["", "x", "é✓😀 plain text"] {
                    let value = format!("{}{}{tail}", "a".repeat(offset), byte as char);
                    assert_eq!(
                        string_json(&value),
                        serde_json::to_string(&value).unwrap(),
                        "{value:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn json_u64_writes_decimal() {
        for value in [0, 9, 10, 1234567890, u64::MAX] {
            let mut out = Vec::new();
            write_u64(value, &mut out);
            assert_eq!(out, value.to_string().as_bytes());
        }
    }
}
