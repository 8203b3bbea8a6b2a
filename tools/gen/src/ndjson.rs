//! NDJSON output of events, in the EVENT.md wire shape.

use auditlog_engine::event::{write_event_json, Event};

/// Appends `events` to `out`, one compact JSON object per line (the engine's
/// [`write_event_json`]), each line ending in `\n`: an ingest body as clients send it.
pub fn write_ndjson(events: &[Event], out: &mut Vec<u8>) {
    for event in events {
        write_event_json(event, out);
        out.push(b'\n');
    }
}
