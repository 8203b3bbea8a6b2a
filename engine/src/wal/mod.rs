//! The write-ahead log: every acknowledged batch is in it, framed and checksummed, until it is
//! sealed into a segment. `format` is the byte layout, `writer` appends and rotates, `reader` scans
//! a file, `recovery` replays the directory on open.

pub mod format;
pub mod reader;
pub mod recovery;
pub mod writer;

pub use recovery::{recover, Recovered};
pub use writer::WalWriter;
