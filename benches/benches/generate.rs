//! Events per second of the realistic event generator, and of NDJSON serialization of its
//! output: the load generator must never be the bottleneck of an ingest benchmark.

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

    group.bench_function("fill_and_write_ndjson", |bencher| {
        let mut generator = Generator::new(GenConfig::default());
        let mut out = Vec::with_capacity(BATCH_EVENTS * 700);
        bencher.iter(|| {
            out.clear();
            let events = generator.fill(BATCH_EVENTS);
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

    let mut construct = c_group(criterion);
    construct.bench_function("new_2000_tenants", |bencher| {
        bencher.iter(|| black_box(Generator::new(GenConfig::default())));
    });
    construct.finish();
}

fn c_group(criterion: &mut Criterion) -> criterion::BenchmarkGroup<'_, criterion::measurement::WallTime> {
    let mut group = criterion.benchmark_group("generator_setup");
    group.sample_size(10);
    group
}

criterion_group!(benches, generate);
criterion_main!(benches);
