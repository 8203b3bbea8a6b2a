//! Ingest parsing alone: generated events as NDJSON bodies of 1,000 events, parsed and validated
//! by `parse_batch` (what `POST /v1/events` does before it appends) on one thread, several
//! rounds; prints µs per event and MB/s of JSON per round.
//!
//! `cargo run --release -p auditlog-benches --example parse_profile -- 200000 5`

use std::time::Instant;

use auditlog_engine::event::{parse_batch, write_event_json, RetentionPolicy, ValidationContext};
use auditlog_engine::store::now_us;
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
    let bodies: Vec<Vec<u8>> = (0..events / 1000)
        .map(|_| {
            let mut body = Vec::new();
            for event in gen.fill(1000) {
                write_event_json(&event, &mut body);
                body.push(b'\n');
            }
            body
        })
        .collect();
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    let retention = RetentionPolicy::new(365);
    for _ in 0..rounds {
        let ctx = ValidationContext::new(now_us(), &retention);
        let start = Instant::now();
        let mut parsed = 0;
        for body in &bodies {
            parsed += parse_batch(body, &ctx).expect("valid batch").len();
        }
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "parsed {parsed} events ({:.1} MB of NDJSON) in {seconds:.3} s: {:.2} µs/event, {:.0} MB/s",
            bytes as f64 / 1e6,
            seconds * 1e6 / parsed as f64,
            bytes as f64 / seconds / 1e6
        );
    }
}
