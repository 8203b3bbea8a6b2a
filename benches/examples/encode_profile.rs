//! Encoding ingest batches for the WAL alone: generated events in batches of 1,000, encoded the
//! way a WAL record carries them (`encode_events`, what `Store::append` does on the caller's
//! thread before it queues the batch), several rounds; prints ns per event and MB/s written.
//!
//! `cargo run --release -p auditlog-benches --example encode_profile -- 200000 5`

use std::time::Instant;

use auditlog_engine::store::now_us;
use auditlog_engine::wal::format::encode_events;
use auditlog_gen::{GenConfig, Generator};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let events: usize = args.next().map_or(200_000, |a| a.parse().expect("events"));
    let rounds: usize = args.next().map_or(5, |a| a.parse().expect("rounds"));
    let mut gen = Generator::new(GenConfig {
        start_us: now_us() - 86_400_000_000,
        ..GenConfig::default()
    });
    let batches: Vec<_> = (0..events / 1000).map(|_| gen.fill(1000)).collect();
    for _ in 0..rounds {
        let start = Instant::now();
        let mut bytes = 0;
        for batch in &batches {
            bytes += std::hint::black_box(encode_events(batch)).len();
        }
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "encoded {} events ({:.1} MB) in {seconds:.3} s: {:.0} ns/event, {:.0} MB/s",
            batches.len() * 1000,
            bytes as f64 / 1e6,
            seconds * 1e9 / (batches.len() * 1000) as f64,
            bytes as f64 / seconds / 1e6
        );
    }
}
