//! Measures sealed segments on realistic events (`auditlog-gen`): encode speed, size per event
//! and per column, the ratio to `zstd -3` of the same events as NDJSON, and decode speed.
//!
//! ```text
//! cargo run --release -p auditlog-engine --example segment_size -- [events] [options]
//!   --block-rows N   rows per block (default: EncodeOptions::default())
//!   --level N        zstd level of numeric/code columns
//!   --text-level N   zstd level of id/changes/details
//!   --dict-level N   zstd level of the dictionaries
//!   --text-dictionary-rows N   rows sampled for the text dictionaries (0: none)
//!   --sweep          compare block sizes 256..8192 and a few level choices
//!   --profile WHAT   only run WHAT five times, for perf: `encode`, `decode` (read_all),
//!                    `page` (filter columns + read_rows of 50), `rows`, `block` (all columns)
//! ```
//!
//! The events are one UTC day of a 2000-tenant platform (one partition), in acknowledgement
//! order, as the store seals them.

use std::time::{Duration, Instant};

use auditlog_engine::event::{write_stored_event_json, StoredEvent};
use auditlog_engine::segment::{encode_segment, Column, Columns, EncodeOptions, Segment};
use auditlog_gen::{GenConfig, Generator};

const DAY_US: i64 = 86_400_000_000;

fn stored_events(count: usize, seed: u64) -> Vec<StoredEvent> {
    let mut generator = Generator::new(GenConfig {
        seed,
        span_us: DAY_US,
        expected_events: count as u64,
        ..GenConfig::default()
    });
    let mut tenant_seqs = std::collections::HashMap::<String, u64>::new();
    let mut received_us = i64::MIN;
    let mut lag_state = seed | 1;
    generator
        .fill(count)
        .into_iter()
        .enumerate()
        .map(|(index, event)| {
            // The server's clock: a little after the event's own timestamp, never backwards.
            lag_state ^= lag_state << 13;
            lag_state ^= lag_state >> 7;
            lag_state ^= lag_state << 17;
            received_us = received_us.max(event.timestamp_us + 300 + (lag_state % 4000) as i64);
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

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let started = Instant::now();
        let value = f();
        best = best.min(started.elapsed());
        last = Some(value);
    }
    (best, last.expect("at least one run"))
}

/// CPU time of this process (the machine may be busy with other work).
fn cpu_seconds() -> f64 {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `time` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut time) };
    time.tv_sec as f64 + time.tv_nsec as f64 * 1e-9
}

struct Measured {
    bytes: usize,
    encode: Duration,
    decode_all: Duration,
    block_all_columns: Duration,
    segment: Segment,
}

fn measure(rows: &[StoredEvent], options: &EncodeOptions, runs: usize) -> Measured {
    let (encode, encoded) = best_of(runs, || {
        encode_segment(1, rows, options).expect("encode succeeds")
    });
    let bytes = encoded.bytes.len();
    let segment = Segment::from_bytes("measure.seg", encoded.bytes).expect("segment opens");
    let (decode_all, decoded) = best_of(runs, || segment.read_all().expect("decode succeeds"));
    assert_eq!(decoded.len(), rows.len());
    // A page query: the last block of a tenant, every column, materialized.
    let blocks = segment.blocks().len();
    let probes = blocks.min(200);
    let started = Instant::now();
    for probe in 0..probes {
        let block = segment
            .read_block(probe * blocks / probes, Columns::ALL)
            .expect("block decodes");
        std::hint::black_box(block.events().take(50).count());
    }
    let block_all_columns = started.elapsed() / probes.max(1) as u32;
    Measured {
        bytes,
        encode,
        decode_all,
        block_all_columns,
        segment,
    }
}

fn main() {
    let mut arguments = std::env::args().skip(1).peekable();
    let mut count = 1_000_000usize;
    let mut options = EncodeOptions::default();
    let mut sweep = false;
    let mut profile: Option<String> = None;
    while let Some(argument) = arguments.next() {
        let mut value = || -> i64 {
            arguments
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{argument} needs a number"))
        };
        match argument.as_str() {
            "--block-rows" => options.block_rows = value() as usize,
            "--level" => options.zstd_level = value() as i32,
            "--text-level" => options.text_zstd_level = value() as i32,
            "--dict-level" => options.dictionary_zstd_level = value() as i32,
            "--text-dictionary-rows" => options.text_dictionary_rows = value() as usize,
            "--sweep" => sweep = true,
            "--profile" => profile = arguments.next(),
            other => count = other.parse().expect("events is a number"),
        }
    }

    let started = Instant::now();
    let rows = stored_events(count, 42);
    eprintln!(
        "generated {count} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    if let Some(what) = profile {
        // Only the named path, repeated, for `perf record`.
        let encoded = encode_segment(1, &rows, &options).expect("encode succeeds");
        let segment = Segment::from_bytes("profile.seg", encoded.bytes).expect("segment opens");
        let started = Instant::now();
        let cpu_started = cpu_seconds();
        for _ in 0..5 {
            match what.as_str() {
                "encode" => drop(std::hint::black_box(
                    encode_segment(1, &rows, &options).expect("encode succeeds"),
                )),
                "decode" => drop(std::hint::black_box(
                    segment.read_all().expect("decode succeeds"),
                )),
                "page" => {
                    let filter = Columns::of(&[Column::Tenant, Column::Timestamp, Column::Seq]);
                    for index in 0..segment.blocks().len() {
                        let block = segment.read_block(index, filter).expect("decodes");
                        let rows = block.len();
                        std::hint::black_box(
                            segment
                                .read_rows(index, rows.saturating_sub(50)..rows)
                                .expect("decodes"),
                        );
                    }
                }
                "rows" => {
                    for index in 0..segment.blocks().len() {
                        let rows = segment.blocks()[index].rows as usize;
                        std::hint::black_box(
                            segment
                                .read_rows(index, rows.saturating_sub(50)..rows)
                                .expect("decodes"),
                        );
                    }
                }
                "block" => {
                    for index in 0..segment.blocks().len() {
                        std::hint::black_box(
                            segment.read_block(index, Columns::ALL).expect("decodes"),
                        );
                    }
                }
                other => panic!("--profile takes encode, decode, page, rows or block, not {other}"),
            }
        }
        println!(
            "{what}: {:.4} s per run, {:.4} s cpu",
            started.elapsed().as_secs_f64() / 5.0,
            (cpu_seconds() - cpu_started) / 5.0
        );
        return;
    }

    let mut ndjson = Vec::with_capacity(count * 700);
    for row in &rows {
        write_stored_event_json(row, &mut ndjson);
        ndjson.push(b'\n');
    }
    let zstd3 = zstd::bulk::compress(&ndjson, 3)
        .expect("zstd compresses")
        .len();
    let per_event = |bytes: usize| bytes as f64 / count as f64;
    println!("events: {count} (one UTC day, 2000 tenants, auditlog-gen seed 42)");
    println!(
        "ndjson (stored events): {:.1} bytes/event; zstd -3 of it: {:.1} bytes/event",
        per_event(ndjson.len()),
        per_event(zstd3)
    );

    if sweep {
        println!(
            "\n{:>10} {:>6} {:>6} {:>6} {:>10} {:>10} {:>12} {:>14}",
            "block_rows",
            "level",
            "text",
            "dict",
            "bytes/ev",
            "vs zstd-3",
            "encode ev/s",
            "decode rows/s"
        );
        let mut configurations = Vec::new();
        for block_rows in [256, 512, 1024, 2048, 4096, 8192] {
            configurations.push(EncodeOptions {
                block_rows,
                ..options.clone()
            });
        }
        for (level, text_level) in [(1, 1), (3, 6), (6, 6), (3, 9)] {
            configurations.push(EncodeOptions {
                zstd_level: level,
                text_zstd_level: text_level,
                ..options.clone()
            });
        }
        for configuration in configurations {
            let measured = measure(&rows, &configuration, 2);
            println!(
                "{:>10} {:>6} {:>6} {:>6} {:>10.2} {:>10.3} {:>12.0} {:>14.0}   block+50 events: {:.0} µs",
                configuration.block_rows,
                configuration.zstd_level,
                configuration.text_zstd_level,
                configuration.dictionary_zstd_level,
                per_event(measured.bytes),
                measured.bytes as f64 / zstd3 as f64,
                count as f64 / measured.encode.as_secs_f64(),
                count as f64 / measured.decode_all.as_secs_f64(),
                measured.block_all_columns.as_secs_f64() * 1e6,
            );
        }
        return;
    }

    let measured = measure(&rows, &options, 3);
    println!("options: {options:?}");
    println!(
        "sealed: {:.2} bytes/event ({} bytes), {:.3} of zstd -3 NDJSON",
        per_event(measured.bytes),
        measured.bytes,
        measured.bytes as f64 / zstd3 as f64
    );
    println!(
        "encode (sort + columns + zstd): {:.0} events/s ({:.2} s)",
        count as f64 / measured.encode.as_secs_f64(),
        measured.encode.as_secs_f64()
    );
    println!(
        "decode read_all into StoredEvent: {:.0} rows/s ({:.2} s)",
        count as f64 / measured.decode_all.as_secs_f64(),
        measured.decode_all.as_secs_f64()
    );
    println!(
        "one block, all columns, 50 events built: {:.0} µs",
        measured.block_all_columns.as_secs_f64() * 1e6
    );
    let segment = &measured.segment;
    let filter_columns = Columns::of(&[Column::Tenant, Column::Timestamp, Column::Seq]);
    let (scan, _) = best_of(3, || {
        for index in 0..segment.blocks().len() {
            std::hint::black_box(segment.read_block(index, filter_columns).expect("decodes"));
        }
    });
    println!(
        "decode tenant+timestamp+seq only: {:.0} rows/s",
        count as f64 / scan.as_secs_f64()
    );
    let probe = &rows[rows.len() / 2];
    let id = probe.event.id.as_deref().unwrap_or("none");
    let (lookup, found) = best_of(3, || {
        segment.find_key(&probe.event.tenant, id).expect("finds")
    });
    println!(
        "find_key of a present key: {:.0} µs (found: {})",
        lookup.as_secs_f64() * 1e6,
        found.is_some()
    );

    println!("\nper column (bytes/event: chunks + dictionary):");
    let mut total = 0u64;
    for column in Column::ALL {
        let chunks = segment.column_stored_bytes(column);
        let dictionary = segment.dictionary_stored_bytes(column);
        total += chunks + dictionary;
        let distinct = segment
            .dictionary(column)
            .expect("dictionary decodes")
            .map(|d| format!("{} values", d.len()))
            .unwrap_or_default();
        println!(
            "  {:<18} {:>7.3} = {:>7.3} + {:>6.3}  {distinct}",
            column.name(),
            per_event((chunks + dictionary) as usize),
            per_event(chunks as usize),
            per_event(dictionary as usize)
        );
    }
    let filter = segment.filter_stored_bytes();
    let directory = segment.directory_stored_bytes();
    println!("  {:<18} {:>7.3}", "key filter", per_event(filter as usize));
    println!(
        "  {:<18} {:>7.3}",
        "block directory",
        per_event(directory as usize)
    );
    let rest = measured.bytes as u64 - total - filter - directory;
    println!(
        "  {:<18} {:>7.3}",
        "header + footer",
        per_event(rest as usize)
    );
}
