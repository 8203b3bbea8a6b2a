//! Opens a store and prints the resident set after the open: what the published segments cost
//! in memory before any read (decoded dictionaries, block directories, key filters).
//! `cargo run --release -p auditlog-benches --example open_rss -- STORE_DIR`

use auditlog_engine::segment::Column;
use auditlog_engine::store::{Store, StoreOptions};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let dir = std::env::args().nth(1).expect("store directory");
    let before = status_kib("RssAnon:");
    let mut options = StoreOptions::new(&dir);
    options.background = false;
    let store = Store::open(options).expect("open");
    let stats = store.stats();
    let anon = status_kib("RssAnon:") - before;
    println!(
        "{} events in {} segments: anonymous memory after open {} MiB ({:.1} B/event), file-backed {} MiB",
        stats.sealed_events,
        stats.segments,
        anon >> 10,
        anon as f64 * 1024.0 / stats.sealed_events.max(1) as f64,
        status_kib("RssFile:") >> 10
    );
    let mut by_column = std::collections::BTreeMap::<&str, (u64, u64)>::new();
    let started = std::time::Instant::now();
    let snapshot = store.snapshot();
    for sealed in snapshot.segments.iter() {
        for column in Column::ALL {
            if let Some(dictionary) = sealed.segment.dictionary(column).expect("dictionary") {
                let entry = by_column.entry(column.name()).or_default();
                entry.0 += dictionary.len() as u64;
                entry.1 += dictionary.text_bytes() as u64 + 4 * dictionary.len() as u64;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let total: u64 = by_column.values().map(|v| v.1).sum();
    println!(
        "decoding every dictionary: {:.0} ms, {:.1} ms per segment",
        seconds * 1000.0,
        seconds * 1000.0 / snapshot.segments.len().max(1) as f64
    );
    println!(
        "dictionaries, all decoded (reads decode those they use): {} MiB ({:.1} B/event)",
        total >> 20,
        total as f64 / stats.sealed_events.max(1) as f64
    );
    for (column, (values, bytes)) in by_column {
        println!(
            "  {column:<18} {values:>10} values {:>8.1} MiB",
            bytes as f64 / (1 << 20) as f64
        );
    }
}
