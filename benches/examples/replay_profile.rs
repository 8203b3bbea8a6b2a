//! Profiling aid: fills a WAL with realistic events, then reopens the store (replays) N times.
//! `cargo run --release -p auditlog-benches --example replay_profile -- 400000 5`

use std::time::Instant;

use auditlog_engine::store::{now_us, Store, StoreOptions};
use auditlog_gen::{GenConfig, Generator};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let events: usize = args.next().map_or(400_000, |a| a.parse().expect("events"));
    let rounds: usize = args.next().map_or(5, |a| a.parse().expect("rounds"));
    let dir = tempfile::tempdir_in("/tmp").expect("tempdir");
    let mut options = StoreOptions::new(dir.path());
    options.background = false;
    options.tail_bytes_max = u64::MAX;
    {
        let store = Store::open(options.clone()).expect("open");
        let mut gen = Generator::new(GenConfig {
            start_us: now_us() - 86_400_000_000,
            ..GenConfig::default()
        });
        for _ in 0..events / 1000 {
            store.append(gen.fill(1000)).expect("append");
        }
    }
    let wal_bytes: u64 = std::fs::read_dir(dir.path().join("wal"))
        .expect("wal dir")
        .map(|e| e.expect("entry").metadata().expect("meta").len())
        .sum();
    for _ in 0..rounds {
        let start = Instant::now();
        let store = Store::open(options.clone()).expect("reopen");
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "replayed {} events, {:.1} MB in {:.3} s: {:.1} MB/s",
            store.stats().tail_events,
            wal_bytes as f64 / 1e6,
            seconds,
            wal_bytes as f64 / seconds / 1e6
        );
    }
}
