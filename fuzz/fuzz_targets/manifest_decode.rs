//! The manifest decoder on arbitrary bytes: never panics; what it accepts re-encodes to the same
//! manifest.
#![no_main]

use auditlog_engine::manifest::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("MANIFEST");
    if let Ok(manifest) = Manifest::decode(path, data) {
        let again =
            Manifest::decode(path, &manifest.encode()).expect("re-encoded manifest decodes");
        assert_eq!(again, manifest);
    }
});
