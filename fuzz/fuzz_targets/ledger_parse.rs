//! The integrity ledger's reader on arbitrary bytes: never panics, and what it accepts is
//! consistent: one hash per entry, the head the last of them.
#![no_main]

use auditlog_engine::ledger::Ledger;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(contents) = Ledger::parse(std::path::Path::new("LEDGER"), data) {
        assert_eq!(contents.hashes.len(), contents.changes.len());
        assert_eq!(
            contents.hashes.last().copied().unwrap_or([0; 32]),
            contents.head
        );
    }
});
