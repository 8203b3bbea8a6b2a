//! Scratch measurements of column compression choices (temporary).
use auditlog_gen::{GenConfig, Generator};
use std::time::Instant;

fn main() {
    let count: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let mut generator = Generator::new(GenConfig { seed: 42, span_us: 86_400_000_000, expected_events: count as u64, ..GenConfig::default() });
    let mut events = generator.fill(count);
    for e in events.iter().take(5) { println!("{:?}\n", e.details); println!("{:?}\n", e.changes); }
    events.sort_by(|a, b| (&a.tenant, a.timestamp_us).cmp(&(&b.tenant, b.timestamp_us)));
    let details: Vec<&str> = events.iter().map(|e| e.details.as_deref().unwrap_or("")).collect();
    let total: usize = details.iter().map(|d| d.len()).sum();
    println!("details raw {:.1} bytes/event", total as f64 / count as f64);
    for block in [1024usize, 4096, 16384] {
        for level in [3, 6, 9, 15, 19] {
            let started = Instant::now();
            let mut size = 0;
            for chunk in details.chunks(block) {
                let joined: Vec<u8> = chunk.concat().into_bytes();
                size += zstd::bulk::compress(&joined, level).unwrap().len();
            }
            println!("block {block} level {level}: {:.2} bytes/event  {:.0} MB/s", size as f64 / count as f64, total as f64 / started.elapsed().as_secs_f64() / 1e6);
        }
    }
    // trained dictionary
    for dict_size in [16 << 10, 64 << 10, 112 << 10] {
        let samples: Vec<&[u8]> = details.iter().step_by(std::cmp::max(1, count / 20000)).map(|d| d.as_bytes()).collect();
        let started = Instant::now();
        let dict = zstd::dict::from_samples(&samples, dict_size).unwrap();
        let train = started.elapsed();
        for level in [3, 9] {
            let mut compressor = zstd::bulk::Compressor::with_dictionary(level, &dict).unwrap();
            let started = Instant::now();
            let mut size = 0;
            for chunk in details.chunks(1024) {
                let joined: Vec<u8> = chunk.concat().into_bytes();
                size += compressor.compress(&joined).unwrap().len();
            }
            let dict_c = zstd::bulk::compress(&dict, 19).unwrap().len();
            println!("dict {dict_size} (compressed {dict_c}, train {:.0} ms) level {level} block 1024: {:.2} bytes/event + dict {:.3}  {:.0} MB/s", train.as_secs_f64()*1e3, size as f64 / count as f64, dict_c as f64 / count as f64, total as f64 / started.elapsed().as_secs_f64() / 1e6);
        }
    }
}
