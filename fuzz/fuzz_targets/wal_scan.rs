//! The WAL scanner on arbitrary bytes: never panics; whatever it accepts decodes to events whose
//! seqs follow each other within a batch.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.wal");
    if let Ok(scan) = auditlog_engine::wal::reader::scan(path, data) {
        for batch in &scan.batches {
            for pair in batch.windows(2) {
                assert_eq!(pair[0].seq + 1, pair[1].seq);
            }
        }
    }
});
