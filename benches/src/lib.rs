//! # auditlog-benches: criterion benchmarks of the datastore's hot paths
//!
//! The benchmarks live in `benches/benches/*.rs`, one file per hot path (event generation, and
//! later WAL append, segment encode/decode, bitmap filters, full-text queries). They all draw
//! their input from the `auditlog-gen` crate, so that figures are measured on realistic
//! multi-tenant events rather than on synthetic constants.
//!
//! Run one with `cargo bench -p auditlog-benches --bench generate`. Record the machine (CPU model,
//! core count, disk) with every figure you quote.
//!
//! This library is intentionally empty: helpers shared by several benchmarks go here.
