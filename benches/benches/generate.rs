//! Events per second of the realistic event generator, and of NDJSON serialization of its
//! output: the load generator must never be the bottleneck of an ingest benchmark.
//!
//! `next_event` allocates a fresh event (about 13 strings) each time; `fill_into_recycled`
//! overwrites the buffers of a reused batch, which is how a load generator should call it.

use auditlog_gen::{write_ndjson, GenConfig, Generator};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const BATCH_EVENTS: usize = 10_000;

fn generate(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("generate");
    group.throughput(Throughput::Elements(BATCH_EVENTS as u64));

    group.bench_function("next_event", |bencher| {
        let mut generator = Generator::new(GenConfig::default());
        bencher.iter(|| {
            for _ in 0..BATCH_EVENTS {
                black_box(generator.next_event());
            }
        });
    });

    // What a load generator does: refill recycled events (no allocation), serialize, send.
    group.bench_function("fill_into_recycled", |bencher| {
        let mut generator = Generator::new(GenConfig::default());
        let mut events = Vec::new();
        generator.fill_into(&mut events, BATCH_EVENTS);
        bencher.iter(|| {
            generator.fill_into(&mut events, BATCH_EVENTS);
            black_box(&events);
        });
    });

    group.bench_function("fill_into_and_write_ndjson", |bencher| {
        let mut generator = Generator::new(GenConfig::default());
        let mut events = Vec::new();
        let mut out = Vec::with_capacity(BATCH_EVENTS * 700);
        bencher.iter(|| {
            out.clear();
            generator.fill_into(&mut events, BATCH_EVENTS);
            write_ndjson(&events, &mut out);
            black_box(out.len());
        });
    });

    group.bench_function("write_ndjson", |bencher| {
        let events = Generator::new(GenConfig::default()).fill(BATCH_EVENTS);
        bencher.iter_batched_ref(
            || Vec::with_capacity(BATCH_EVENTS * 700),
            |out| write_ndjson(black_box(&events), out),
            BatchSize::SmallInput,
        );
    });
    group.finish();

    let mut construct = setup_group(criterion);
    construct.bench_function("new_2000_tenants", |bencher| {
        bencher.iter(|| black_box(Generator::new(GenConfig::default())));
    });
    construct.finish();
}

fn setup_group(
    criterion: &mut Criterion,
) -> criterion::BenchmarkGroup<'_, criterion::measurement::WallTime> {
    let mut group = criterion.benchmark_group("generator_setup");
    group.sample_size(10);
    group
}

criterion_group!(benches, generate);
criterion_main!(benches);
