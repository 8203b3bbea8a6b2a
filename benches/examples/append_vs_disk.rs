//! Durable append against the disk's own fsync'd sequential bandwidth, alternated so that both
//! see the same moment of a shared, noisy disk: each round writes the disk probe (the same
//! writes as engine-report: 4 batches' worth per `fdatasync`, to a growing file), then appends
//! the round's events from 4 producers into a fresh store once per `wal_syncs_in_flight`
//! setting. Prints every round and the medians of rates and ratios.
//!
//! `cargo run --release -p auditlog-benches --example append_vs_disk -- 400000 7 1,2,4`
//! (events per round, rounds, settings of `StoreOptions::wal_syncs_in_flight`; add
//! `--allocator-defaults` to leave the allocator as it comes)
//!
//! The allocator is set as `auditlog serve` sets it (freed memory kept, no transparent huge
//! pages; see `tools/cli/src/allocator.rs`). With mimalloc's defaults each round gives the memory
//! of its batches back and faults it in again, zeroing 2 MiB huge pages, which was 18 % of the
//! commit and sync threads' samples (`perf`).

use std::sync::Arc;
use std::time::Instant;

use auditlog_benches::{dir_bytes, disk_bandwidth};
use auditlog_engine::event::Event;
use auditlog_engine::store::{now_us, Store, StoreOptions};
use auditlog_gen::{GenConfig, Generator};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PRODUCERS: usize = 4;
const BATCH: usize = 1000;

/// The server's allocator settings, so that the figure is the one `auditlog serve` would see.
#[path = "../../tools/cli/src/allocator.rs"]
#[allow(dead_code)]
mod allocator;

fn main() {
    let all: Vec<String> = std::env::args().skip(1).collect();
    if all.iter().any(|a| a == "--allocator-defaults") {
        println!("allocator: mimalloc's defaults (freed memory returned, huge pages allowed)");
    } else {
        let kept = allocator::keep_freed_memory();
        let huge = allocator::disable_huge_pages();
        println!("allocator as auditlog serve sets it: freed memory kept {kept:?}, huge pages off {huge:?}");
    }
    let mut args = all.into_iter().filter(|a| !a.starts_with("--"));
    let events: usize = args.next().map_or(400_000, |a| a.parse().expect("events"));
    let rounds: usize = args.next().map_or(7, |a| a.parse().expect("rounds"));
    let settings: Vec<usize> = args.next().map_or(vec![1, 2, 4], |a| {
        a.split(',').map(|s| s.parse().expect("setting")).collect()
    });
    let base = tempfile::tempdir_in(".").expect("tempdir");
    let mut gen = Generator::new(GenConfig {
        start_us: now_us() - 86_400_000_000,
        ..GenConfig::default()
    });
    let per_producer = events / PRODUCERS / BATCH;
    let batches: Vec<Vec<Vec<Event>>> = (0..PRODUCERS)
        .map(|_| (0..per_producer).map(|_| gen.fill(BATCH)).collect())
        .collect();
    let total = (per_producer * PRODUCERS * BATCH) as f64;

    let mut disk = Vec::new();
    let mut append: Vec<Vec<(f64, f64)>> = vec![Vec::new(); settings.len()];
    for round in 0..rounds {
        let mut line = format!("round {round}:");
        let mut group_bytes = 0;
        let mut measured = Vec::new();
        for (slot, &syncs) in settings.iter().enumerate() {
            let dir = base.path().join(format!("store-{round}-{syncs}"));
            let mut options = StoreOptions::new(&dir);
            options.background = false;
            options.tail_bytes_max = u64::MAX;
            options.wal_syncs_in_flight = syncs;
            let store = Arc::new(Store::open(options).expect("open"));
            let copies = batches.clone();
            let cpu_before = cpu_seconds();
            let start = Instant::now();
            auditlog_benches::append_concurrently(&store, copies);
            let seconds = start.elapsed().as_secs_f64();
            let cores_busy = (cpu_seconds() - cpu_before) / seconds;
            let fsync = &store.metrics().fsync;
            let fsyncs = fsync.count();
            let fsync_ms = fsync.sum_us() as f64 / fsyncs.max(1) as f64 / 1e3;
            drop(store);
            let wal_bytes = dir_bytes(&dir.join("wal"));
            group_bytes = wal_bytes as usize / (per_producer * PRODUCERS);
            let rate = total / seconds;
            let wal_rate = wal_bytes as f64 / seconds;
            measured.push((slot, rate, wal_rate, fsyncs, fsync_ms, cores_busy));
            std::fs::remove_dir_all(&dir).expect("remove store");
        }
        let disk_rate = disk_bandwidth(base.path(), group_bytes * PRODUCERS, 256 << 20);
        disk.push(disk_rate);
        line += &format!(" disk {:.0} MB/s;", disk_rate / 1e6);
        for (slot, rate, wal_rate, fsyncs, fsync_ms, cores_busy) in measured {
            append[slot].push((rate, wal_rate / disk_rate));
            line += &format!(
                " {} in flight: {:.0} events/s, {:.0} MB/s = {:.0} % ({} fsyncs of {:.1} ms, {:.2} cores busy);",
                settings[slot],
                rate,
                wal_rate / 1e6,
                wal_rate / disk_rate * 100.0,
                fsyncs,
                fsync_ms,
                cores_busy
            );
        }
        println!("{line}");
    }
    println!("median disk: {:.0} MB/s", median(disk.clone()) / 1e6);
    for (slot, results) in append.iter().enumerate() {
        println!(
            "wal_syncs_in_flight {}: median {:.0} events/s, median append/disk {:.0} %",
            settings[slot],
            median(results.iter().map(|r| r.0).collect()),
            median(results.iter().map(|r| r.1).collect()) * 100.0
        );
    }
}

/// CPU time (user and system) of the whole process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
