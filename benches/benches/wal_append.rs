//! Durable append in process: producers x batch size, every batch fsynced before its ack
//! (group commit shares the fsync). Reports events/s. The whole-engine figures, with the disk's
//! own bandwidth measured in the same run, are in the `engine-report` binary.
//!
//! `cargo bench -p auditlog-benches --bench wal_append`

use std::sync::Arc;
use std::time::{Duration, Instant};

use auditlog_engine::event::Event;
use auditlog_engine::store::{now_us, Store, StoreOptions};
use auditlog_gen::{GenConfig, Generator};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn batches(count: usize, size: usize, seed: u64) -> Vec<Vec<Event>> {
    let mut generator = Generator::new(GenConfig {
        seed,
        start_us: now_us() - 86_400_000_000,
        ..GenConfig::default()
    });
    (0..count).map(|_| generator.fill(size)).collect()
}

fn wal_append(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("wal_append");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for &(producers, batch) in &[(1usize, 1000usize), (4, 100), (4, 1000)] {
        let per_iteration = producers * batch * 4;
        group.throughput(Throughput::Elements(per_iteration as u64));
        group.bench_function(format!("{producers}_producers_batch_{batch}"), |bencher| {
            let dir = tempfile::tempdir_in(".").expect("tempdir");
            let mut options = StoreOptions::new(dir.path());
            options.background = false;
            options.tail_bytes_max = u64::MAX;
            let store = Arc::new(Store::open(options).expect("open"));
            let mut seed = 0;
            bencher.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    seed += 1;
                    let work: Vec<Vec<Vec<Event>>> = (0..producers)
                        .map(|p| batches(4, batch, seed * 100 + p as u64))
                        .collect();
                    let start = Instant::now();
                    auditlog_benches::append_concurrently(&store, work);
                    total += start.elapsed();
                    // Keep the tail from growing across iterations.
                    store.seal().expect("seal");
                }
                total
            });
        });
    }
    group.finish();
}

criterion_group!(benches, wal_append);
criterion_main!(benches);
