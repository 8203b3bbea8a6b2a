//! Sealed segment encode and decode over realistic events (`auditlog-gen`), sweeping sizes.
//!
//! - `encode`: sort + columnar encode + zstd of a partition's events (what `Store::seal` does per
//!   partition, without the file write);
//! - `decode_all`: `Segment::read_all` into `StoredEvent` (export);
//! - `page`: what a filtered page query does in one segment: decode the filter columns (tenant,
//!   timestamp, seq) of one block, then build the 50 newest events of that block.
//!
//! `cargo bench -p auditlog-benches --bench segment`

use auditlog_engine::event::StoredEvent;
use auditlog_engine::segment::{encode_segment, Column, Columns, EncodeOptions, Segment};
use auditlog_gen::{GenConfig, Generator};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};

// The binaries that read and write segments (server, engine-report) use mimalloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DAY_US: i64 = 86_400_000_000;
const PAGE_EVENTS: usize = 50;

/// One UTC day of events as the store seals them: seq in acknowledgement order, received per
/// group commit of 100 events (a busy node), tenant_seq per tenant.
fn stored_events(count: usize) -> Vec<StoredEvent> {
    let mut generator = Generator::new(GenConfig {
        seed: 42,
        span_us: DAY_US,
        expected_events: count as u64,
        ..GenConfig::default()
    });
    let mut tenant_seqs = std::collections::HashMap::<String, u64>::new();
    let mut received_us = i64::MIN;
    generator
        .fill(count)
        .into_iter()
        .enumerate()
        .map(|(index, event)| {
            if index % 100 == 0 {
                received_us = received_us.max(event.timestamp_us + 2_000);
            }
            let tenant_seq = tenant_seqs.entry(event.tenant.to_string()).or_default();
            *tenant_seq += 1;
            StoredEvent {
                seq: index as u64 + 1,
                tenant_seq: *tenant_seq,
                received_us,
                event,
            }
        })
        .collect()
}

fn segment(criterion: &mut Criterion) {
    let options = EncodeOptions::default();
    for count in [10_000usize, 100_000] {
        let rows = stored_events(count);
        let encoded = encode_segment(1, &rows, &options).expect("encode");
        let segment = Segment::from_bytes("bench.seg", encoded.bytes).expect("open");

        let mut group = criterion.benchmark_group(format!("segment/{count}"));
        group.sample_size(10);
        group.throughput(Throughput::Elements(count as u64));
        group.bench_function("encode", |bencher| {
            bencher.iter(|| black_box(encode_segment(1, &rows, &options).expect("encode")));
        });
        group.bench_function("decode_all", |bencher| {
            bencher.iter_batched(
                || (),
                |()| black_box(segment.read_all().expect("decode")),
                BatchSize::PerIteration,
            );
        });
        group.finish();

        let mut group = criterion.benchmark_group(format!("segment/{count}"));
        group.throughput(Throughput::Elements(PAGE_EVENTS as u64));
        let filter = Columns::of(&[Column::Tenant, Column::Timestamp, Column::Seq]);
        let blocks = segment.blocks().len();
        let mut next = 0usize;
        group.bench_function("page", |bencher| {
            bencher.iter(|| {
                next = (next + 7) % blocks;
                let block = segment.read_block(next, filter).expect("filter columns");
                let rows = block.len();
                let page = segment
                    .read_rows(next, rows.saturating_sub(PAGE_EVENTS)..rows)
                    .expect("page rows");
                black_box((block.timestamps()[0], page))
            });
        });
        group.finish();
    }
}

criterion_group!(benches, segment);
criterion_main!(benches);
