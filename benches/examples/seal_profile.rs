//! Profiling aid: appends realistic events (untimed), then times `Store::seal` alone; with
//! `indexes`, the seal also builds every index (filter bitmaps and full text), as the server's
//! does.
//! `cargo run --release -p auditlog-benches --example seal_profile -- 400000 [indexes]`

use std::time::Instant;

use auditlog_engine::store::{now_us, Store, StoreOptions};
use auditlog_gen::{GenConfig, Generator};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let events: usize = std::env::args()
        .nth(1)
        .map_or(400_000, |a| a.parse().expect("events"));
    let indexes = std::env::args().nth(2).as_deref() == Some("indexes");
    let dir = tempfile::tempdir_in("/tmp").expect("tempdir");
    let mut options = StoreOptions::new(dir.path());
    if indexes {
        options.segment_hook = Some(auditlog_index::SegmentIndexer::hook());
    }
    options.background = false;
    options.tail_bytes_max = u64::MAX;
    let store = Store::open(options).expect("open");
    let mut gen = Generator::new(GenConfig {
        start_us: now_us() - 86_400_000_000,
        ..GenConfig::default()
    });
    for _ in 0..events / 1000 {
        store.append(gen.fill(1000)).expect("append");
    }
    let start = Instant::now();
    store.seal().expect("seal");
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "sealed {events} events in {seconds:.3} s: {:.0} events/s, {} segments{}",
        events as f64 / seconds,
        store.stats().segments,
        if indexes { ", every index built" } else { "" }
    );
}
