//! Profiling aid: opens an existing store (e.g. the one `search-report --dir D` leaves in
//! `D/store`) and times [`Export`] of one tenant's last 30 days, decoded and written as CSV
//! (into memory; mode `csv`), or only borrowed (`refs`) or as owned events (`owned`), `runs`
//! times, on one thread or through [`export_chunks`] with `threads` workers.
//! `cargo run --release -p auditlog-benches --example export_profile -- /tmp/sr10m/store acct_0924 5 csv 2`

use std::time::Instant;

use auditlog_engine::event::write_event_csv;
use auditlog_engine::store::{now_us, Store, StoreOptions};
use auditlog_index::export::RowWriter;
use auditlog_index::{export_chunks, Export, ExportOptions, Query, Scope, SegmentIndexer};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("store directory");
    let tenant = args.next().expect("tenant");
    let runs: usize = args.next().map_or(5, |a| a.parse().expect("runs"));
    let mode = args.next().unwrap_or_else(|| "csv".into());
    let threads: usize = args.next().map_or(1, |a| a.parse().expect("threads"));
    let mut options = StoreOptions::new(&dir);
    options.background = false;
    options.segment_hook = Some(SegmentIndexer::hook());
    let store = Store::open(options).expect("open");
    let mut query = Query::new(Scope::one(tenant.as_str()));
    query.from_us = Some(now_us() - 30 * 86_400_000_000);
    for run in 0..runs {
        let snapshot = store.snapshot();
        let start = Instant::now();
        let rows = if threads > 1 {
            // Through the parallel export: chunks written by `threads` workers, in order.
            let write: &RowWriter = match mode.as_str() {
                "csv" => &write_event_csv,
                "refs" => &|event, _| {
                    std::hint::black_box(event);
                },
                _ => panic!("with threads, mode is csv or refs"),
            };
            let options = ExportOptions {
                threads,
                ..ExportOptions::default()
            };
            export_chunks(&snapshot, &query, &options, write, &mut |chunk| {
                std::hint::black_box(chunk);
                true
            })
            .expect("export") as usize
        } else {
            single(&snapshot, &query, &mode)
        };
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "run {run}: {rows} rows in {seconds:.3} s: {:.0} rows/s",
            rows as f64 / seconds
        );
    }
}

/// One [`Export`] on this thread.
fn single(
    snapshot: &auditlog_engine::Snapshot,
    query: &auditlog_index::Query,
    mode: &str,
) -> usize {
    let mut export = Export::new(snapshot, query).expect("export");
    let mut rows = 0usize;
    let mut csv = Vec::with_capacity(1 << 20);
    loop {
        csv.clear();
        let written = match mode {
            "csv" => export.next_batch_with(1000, |event| write_event_csv(&event, &mut csv)),
            "refs" => export.next_batch_with(1000, |event| {
                std::hint::black_box(event);
            }),
            "owned" => export.next_batch(1000).map(|batch| batch.len()),
            _ => panic!("mode is csv, refs or owned"),
        }
        .expect("batch");
        if written == 0 {
            return rows;
        }
        rows += written;
        std::hint::black_box(&csv);
    }
}
