//! The write-ahead log: every acknowledged batch is in it, framed and checksummed, until it is
//! sealed into a segment. `format` is the byte layout, `payload` decodes a record's events, `writer`
//! appends and rotates, `reader` scans a file, `recovery` replays the directory on open.

pub mod format;
pub mod payload;
pub mod reader;
pub mod recovery;
pub mod writer;

pub use recovery::{recover, recover_with, Recovered};
pub use writer::WalWriter;
