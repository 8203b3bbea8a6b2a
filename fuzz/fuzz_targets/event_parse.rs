//! EVENT.md parsing and validation on arbitrary bodies: never panics; every accepted event
//! written back as JSON parses to the same event.
#![no_main]

use auditlog_engine::event::{parse_batch, write_event_json, RetentionPolicy, ValidationContext};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let retention = RetentionPolicy::new(90);
    let context = ValidationContext::new(1_795_000_000_000_000, &retention);
    if let Ok(events) = parse_batch(data, &context) {
        for event in events {
            let mut json = Vec::new();
            write_event_json(&event, &mut json);
            let again = parse_batch(&json, &context).expect("written event parses");
            assert_eq!(again, vec![event]);
        }
    }
});
