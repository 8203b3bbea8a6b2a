//! A sealed segment from arbitrary bytes: opening, verifying and decoding every block never
//! panics, whatever the bytes.
#![no_main]

use auditlog_engine::segment::{Columns, Segment};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(segment) = Segment::from_bytes("fuzz.seg", data.to_vec()) {
        let _ = segment.verify();
        for index in 0..segment.blocks().len() {
            if let Ok(block) = segment.read_block(index, Columns::ALL) {
                for row in 0..block.len() {
                    let _ = block.event(row);
                }
            }
        }
        let _ = segment.read_all();
        let _ = segment.find_key("acct_1", "evt_1");
    }
});
