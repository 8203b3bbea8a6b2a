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
//! Helpers shared by several benchmarks and reports live here: concurrent producers, the disk
//! probe the append figures are compared with, and the size of a directory tree.
//!
//! ```no_run
//! let dir = std::env::temp_dir();
//! let bytes_per_second = auditlog_benches::disk_bandwidth(&dir, 1 << 20, 64 << 20);
//! println!("{:.0} MB/s, {} bytes", bytes_per_second / 1e6, auditlog_benches::dir_bytes(&dir));
//! ```

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use auditlog_engine::event::Event;
use auditlog_engine::store::Store;

/// One thread per producer, each appending its batches in order (each `append` returns once
/// durable); returns when every producer is done. Panics on an append error.
pub fn append_concurrently(store: &Arc<Store>, producers: Vec<Vec<Vec<Event>>>) {
    let threads: Vec<_> = producers
        .into_iter()
        .map(|mine| {
            let store = Arc::clone(store);
            std::thread::spawn(move || {
                for batch in mine {
                    store.append(batch).expect("append");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("producer");
    }
}

/// The disk's own sequential write bandwidth with fdatasync, in bytes per second: `total` bytes
/// written to a growing file in `chunk`-byte writes, each followed by `fdatasync` (what the WAL
/// does, with the disk to itself). The probe file is removed afterwards.
pub fn disk_bandwidth(dir: &Path, chunk: usize, total: usize) -> f64 {
    let path = dir.join("disk-probe");
    let mut file = std::fs::File::create(&path).expect("create probe file");
    let buffer = vec![0x5au8; chunk];
    let start = Instant::now();
    let mut written = 0;
    while written < total {
        file.write_all(&buffer).expect("write probe");
        file.sync_data().expect("fdatasync probe");
        written += chunk;
    }
    let seconds = start.elapsed().as_secs_f64();
    drop(file);
    let _ = std::fs::remove_file(&path);
    written as f64 / seconds
}

/// Bytes of every file under `dir`, recursively (0 when it does not exist).
pub fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            total += if path.is_dir() {
                dir_bytes(&path)
            } else {
                entry.metadata().map_or(0, |m| m.len())
            };
        }
    }
    total
}
