//! The store step of an acknowledgement, in process: one producer appends batches at a paced
//! rate, as `auditlog loadgen --rate 30000 --batch 1000` does over HTTP, and the time of each
//! `Store::append` (idempotency checks, encoding, group commit, fsync, publishing) is reported
//! as p50 / p90 / p99 / max, beside the store's own WAL fsync mean. Without the HTTP body, the
//! parse and the generator on the same cores, it shows the commit path's latency with less
//! noise than the server's figure (`auditlog_ingest_store_seconds` is the same step there).
//!
//! `cargo run --release -p auditlog-benches --example append_latency -- 1000 1800 30 [--no-seal]`
//! (events per batch, batches, batches per second (0: back to back), and whether the store
//! seals in the background as the server does, the default, without the server's indexes). The
//! allocator is set as the server sets it (freed memory kept, no transparent huge pages). It
//! also counts the appends and the WAL fsyncs over 5 and 10 ms: slow appends without as many
//! slow fsyncs are not the disk's.

use std::time::{Duration, Instant};

use auditlog_engine::store::{now_us, Store, StoreOptions};
use auditlog_gen::{GenConfig, Generator};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The server's allocator settings (freed memory kept, no transparent huge pages), so that the
/// figure is the one `auditlog serve` would see.
#[path = "../../tools/cli/src/allocator.rs"]
#[allow(dead_code)]
mod allocator;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |index: usize, default: u64| -> u64 {
        args.get(index)
            .filter(|a| !a.starts_with("--"))
            .map_or(default, |a| a.parse().expect("a number"))
    };
    let batch = number(0, 1000) as usize;
    let batches = number(1, 1800) as usize;
    let per_second = number(2, 30);
    let seal = !args.iter().any(|a| a == "--no-seal");
    if let Err(why) = allocator::keep_freed_memory() {
        eprintln!("note: freed memory goes back to the kernel ({why:?})");
    }
    if let Err(error) = allocator::disable_huge_pages() {
        eprintln!("note: transparent huge pages stay allowed ({error})");
    }

    let mut gen = Generator::new(GenConfig {
        start_us: now_us() - 60_000_000,
        ..GenConfig::default()
    });
    let prepared: Vec<_> = (0..batches).map(|_| gen.fill(batch)).collect();
    let dir = tempfile::tempdir_in(".").expect("tempdir");
    let mut options = StoreOptions::new(dir.path());
    options.background = seal;
    if !seal {
        // Every event stays in the tail.
        options.tail_bytes_max = 64 << 30;
    }
    let store = Store::open(options).expect("open");

    let mut micros: Vec<u64> = Vec::with_capacity(batches);
    let period = (per_second > 0).then(|| Duration::from_secs_f64(1.0 / per_second as f64));
    let start = Instant::now();
    for (index, events) in prepared.into_iter().enumerate() {
        // Timed from when the batch was due (no coordinated omission), as loadgen does.
        let due = match period {
            Some(period) => {
                let due = start + period * index as u32;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                due
            }
            None => Instant::now(),
        };
        store.append(events).expect("append");
        micros.push(due.elapsed().as_micros() as u64);
    }
    let seconds = start.elapsed().as_secs_f64();
    micros.sort_unstable();
    let at =
        |q: f64| micros[((micros.len() as f64 * q) as usize).min(micros.len() - 1)] as f64 / 1e3;
    let fsync = &store.metrics().fsync;
    // Fsyncs over 5 ms (the histogram's buckets end at 5 ms and 10 ms) against appends over it.
    let (cumulative, total) = fsync.cumulative_with_total();
    let bucket = |us: u64| {
        let index = auditlog_engine::store::LATENCY_BUCKETS_US
            .iter()
            .position(|&b| b == us)
            .expect("a bucket bound");
        total - cumulative[index]
    };
    let over = |ms: u64| micros.iter().filter(|&&m| m > ms * 1000).count();
    println!(
        "appends over 5 ms: {}, over 10 ms: {}; WAL fsyncs over 5 ms: {}, over 10 ms: {}",
        over(5),
        over(10),
        bucket(5_000),
        bucket(10_000)
    );
    println!(
        "{batches} batches of {batch} in {seconds:.1} s ({:.0} events/s, sealing {}): append p50 {:.2} ms, p90 {:.2}, p99 {:.2}, max {:.2}; WAL fsync mean {:.2} ms over {}",
        (batches * batch) as f64 / seconds,
        if seal { "on" } else { "off" },
        at(0.50),
        at(0.90),
        at(0.99),
        at(1.0),
        fsync.sum_us() as f64 / fsync.count().max(1) as f64 / 1e3,
        fsync.count(),
    );
}
