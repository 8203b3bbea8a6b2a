//! The query language on arbitrary text: never panics; an error's position lies within the
//! input; what parses turns into a query that validates or is refused with an error value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match auditlog_index::parse(text) {
        Ok(parsed) => {
            let query = parsed.into_query(auditlog_index::Scope::one("acct_1"), 1_795_000_000_000_000);
            let _ = query.validate();
        }
        Err(error) => assert!(error.position <= text.len(), "{error}"),
    }
});
