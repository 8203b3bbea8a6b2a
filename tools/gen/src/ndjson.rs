//! NDJSON output of events, in the EVENT.md wire shape.
//!
//! A local serializer until the engine's `write_event_json` lands: same field order as EVENT.md,
//! absent optional fields omitted, `changes` and `details` copied as the JSON text they already
//! are, strings escaped by serde_json.

use auditlog_engine::event::Event;

use crate::text::push_rfc3339_us;

/// Appends `events` to `out`, one compact JSON object per line, each line ending in `\n`.
pub fn write_ndjson(events: &[Event], out: &mut Vec<u8>) {
    for event in events {
        write_event(event, out);
        out.push(b'\n');
    }
}

fn write_event(event: &Event, out: &mut Vec<u8>) {
    out.push(b'{');
    let mut first = true;
    if let Some(id) = &event.id {
        string_field(out, &mut first, "id", id);
    }
    key(out, &mut first, "timestamp");
    out.push(b'"');
    push_rfc3339_us(out, event.timestamp_us);
    out.push(b'"');
    string_field(out, &mut first, "tenant", &event.tenant);
    if let Some(project) = &event.project {
        string_field(out, &mut first, "project", project);
    }

    key(out, &mut first, "actor");
    out.push(b'{');
    let mut actor_first = true;
    let actor = &event.actor;
    if let Some(id) = &actor.id {
        string_field(out, &mut actor_first, "id", id);
    }
    if let Some(email) = &actor.email {
        string_field(out, &mut actor_first, "email", email);
    }
    string_field(out, &mut actor_first, "type", actor.kind.as_str());
    if let Some(ip) = &actor.ip {
        string_field(out, &mut actor_first, "ip", ip);
    }
    if let Some(user_agent) = &actor.user_agent {
        string_field(out, &mut actor_first, "user_agent", user_agent);
    }
    out.push(b'}');

    string_field(out, &mut first, "action", &event.action);
    string_field(out, &mut first, "outcome", event.outcome.as_str());

    key(out, &mut first, "resource");
    out.push(b'{');
    let mut resource_first = true;
    string_field(out, &mut resource_first, "type", &event.resource.kind);
    if let Some(id) = &event.resource.id {
        string_field(out, &mut resource_first, "id", id);
    }
    if let Some(name) = &event.resource.name {
        string_field(out, &mut resource_first, "name", name);
    }
    out.push(b'}');

    if let Some(changes) = &event.changes {
        key(out, &mut first, "changes");
        out.extend_from_slice(changes.as_bytes());
    }
    if let Some(details) = &event.details {
        key(out, &mut first, "details");
        out.extend_from_slice(details.as_bytes());
    }
    out.push(b'}');
}

fn key(out: &mut Vec<u8>, first: &mut bool, name: &str) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

fn string_field(out: &mut Vec<u8>, first: &mut bool, name: &str, value: &str) {
    key(out, first, name);
    if value.bytes().all(|byte| byte >= 0x20 && byte != b'"' && byte != b'\\') {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    } else {
        // Writing JSON into a Vec cannot fail.
        serde_json::to_writer(&mut *out, value).expect("string serializes to JSON");
    }
}
