//! The storage issue's figures in one run, on realistic events from `auditlog-gen`:
//!
//! 1. the disk's own sequential write bandwidth with `fdatasync` after each group-sized write;
//! 2. durable append: N producers, batches of B events, every batch fsynced before its ack;
//! 3. WAL replay speed (reopen of the store with everything still in the WAL; the median of
//!    three reopens);
//! 4. sealing speed (sort + columnar encode + zstd + write), one thread;
//! 5. sealed bytes per event, per column, against `zstd -3` of the same events as NDJSON (the
//!    stored events, which carry what the segments hold; and the events as sent, against the
//!    segments less the columns the store assigns);
//! 6. dropping a partition (retention) and its time.
//!
//! `--rss-events N` runs a separate mode instead: N events appended by 4 producers with
//! background sealing on and the default tail bound, reporting peak resident memory.
//!
//! ```text
//! cargo run --release -p auditlog-benches --bin engine-report -- --events 1200000
//! cargo run --release -p auditlog-benches --bin engine-report -- --rss-events 20000000
//! ```
//!
//! Prints a table and, last, one JSON line with every figure.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditlog_benches::{dir_bytes, disk_bandwidth};
use auditlog_engine::event::{write_event_json, write_stored_event_json, Event};
use auditlog_engine::segment::Column;
use auditlog_engine::store::{now_us, Store, StoreOptions};
use auditlog_gen::{GenConfig, Generator};

// The server binary uses mimalloc too: glibc malloc is slow at freeing, on the commit and seal
// threads, the many small strings that producer threads allocated.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// And like `auditlog serve` by default, this keeps the memory it frees instead of giving it
// back to the kernel (see there: on this VM every return stalls the disk, and memory taken
// back from the host is slow to fault in again). The same file, so the setting cannot drift.
#[path = "../../../tools/cli/src/allocator.rs"]
mod allocator;

struct Args {
    events: usize,
    producers: usize,
    batch: usize,
    dir: Option<String>,
    rss_events: Option<u64>,
    /// `--release-memory`: give freed memory back to the kernel (the allocator's default, and
    /// `auditlog serve --release-memory true`): a lower resident set, slower on this VM.
    release_memory: bool,
    /// `--no-huge-pages`: turn transparent huge pages off, as `auditlog serve` does by default
    /// (see `tools/cli/src/allocator.rs`). Left on by default here: the append figure holds
    /// all its events unsealed, and first-touching that heap 4 KiB at a time (each page a fault
    /// to this VM's host) halved it: 350,000-451,000 events/s against 794,000-910,000.
    no_huge_pages: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        events: 1_200_000,
        producers: 4,
        batch: 1000,
        dir: None,
        rss_events: None,
        release_memory: false,
        no_huge_pages: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--events" => args.events = value().parse().expect("--events N"),
            "--producers" => args.producers = value().parse().expect("--producers N"),
            "--batch" => args.batch = value().parse().expect("--batch N"),
            "--dir" => args.dir = Some(value()),
            "--rss-events" => args.rss_events = Some(value().parse().expect("--rss-events N")),
            "--release-memory" => args.release_memory = true,
            "--no-huge-pages" => args.no_huge_pages = true,
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

fn generator(seed: u64) -> Generator {
    // Events spread over the last 30 days, as a platform's live traffic would be over a month.
    let span_us = 30 * 86_400_000_000;
    Generator::new(GenConfig {
        seed,
        start_us: now_us() - span_us,
        span_us,
        ..GenConfig::default()
    })
}

/// CPU time of the whole process (every thread, user and system), in seconds.
fn process_cpu_seconds() -> f64 {
    cpu_seconds(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// CPU time of the calling thread, in seconds (immune to other processes on a busy machine).
fn thread_cpu_seconds() -> f64 {
    cpu_seconds(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn cpu_seconds(clock: libc::clockid_t) -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A `/proc/self/status` field in KiB (0 when absent).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or(0)
}

/// Reopens timed for the replay figure (the median is reported).
const REPLAY_ROUNDS: usize = 3;

fn main() {
    let args = parse_args();
    if args.release_memory {
        eprintln!("freed memory goes back to the kernel (--release-memory)");
    } else if let Err(why) = allocator::keep_freed_memory() {
        eprintln!("note: freed memory goes back to the kernel ({why:?})");
    } else {
        eprintln!("freed memory is kept, as auditlog serve does by default");
    }
    if !args.no_huge_pages {
        eprintln!(
            "transparent huge pages allowed (auditlog serve turns them off: --no-huge-pages)"
        );
    } else if let Err(error) = allocator::disable_huge_pages() {
        eprintln!("note: transparent huge pages stay allowed ({error})");
    } else {
        eprintln!("transparent huge pages off (--no-huge-pages), as auditlog serve does");
    }
    let base = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).expect("create --dir");
            tempfile::tempdir_in(dir).expect("tempdir in --dir")
        }
        None => tempfile::tempdir_in(".").expect("tempdir"),
    };
    if let Some(events) = args.rss_events {
        rss_mode(base.path(), events, args.producers, args.batch);
        return;
    }
    let dir = base.path().join("store");

    // Realistic events, generated before timing.
    let per_producer = args.events / args.producers / args.batch;
    let mut gen = generator(1);
    let batches: Vec<Vec<Vec<Event>>> = (0..args.producers)
        .map(|_| (0..per_producer).map(|_| gen.fill(args.batch)).collect())
        .collect();
    let total_events = (per_producer * args.batch * args.producers) as u64;
    let mut ndjson = Vec::new();
    for event in batches.iter().flatten().flatten() {
        write_event_json(event, &mut ndjson);
        ndjson.push(b'\n');
    }
    let ndjson_bytes = ndjson.len() as u64;
    let zstd3_bytes = zstd::bulk::compress(&ndjson, 3).expect("zstd").len() as u64;
    drop(ndjson);

    // 1. Durable append.
    let mut options = StoreOptions::new(&dir);
    options.background = false;
    options.tail_bytes_max = u64::MAX;
    let store = Arc::new(Store::open(options.clone()).expect("open store"));
    let start = Instant::now();
    let append_cpu_start = process_cpu_seconds();
    let threads: Vec<_> = batches
        .into_iter()
        .map(|mine| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut latencies = Vec::with_capacity(mine.len());
                for batch in mine {
                    let t = Instant::now();
                    store.append(batch).expect("append");
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("producer"))
        .collect();
    let append_seconds = start.elapsed().as_secs_f64();
    let append_cpu_seconds = process_cpu_seconds() - append_cpu_start;
    latencies.sort();
    let wal_bytes = dir_bytes(&dir.join("wal"));
    let append_rate = total_events as f64 / append_seconds;
    let wal_rate = wal_bytes as f64 / append_seconds;
    let group_bytes = (wal_bytes as usize / latencies.len().max(1)).max(4096);
    let fsyncs = store.metrics().fsync.count();
    drop(store);

    // The disk's own bandwidth, same run, same file system, writes the size of our records.
    let disk_rate = disk_bandwidth(base.path(), group_bytes * args.producers, 512 << 20);

    // 2. WAL replay: the median of three reopens (a single one swung 270-440 MB/s on this
    // shared machine), each store dropped before the next.
    let mut replays: Vec<(f64, f64)> = (0..REPLAY_ROUNDS)
        .map(|_| {
            let start = Instant::now();
            let cpu = process_cpu_seconds();
            let store = Store::open(options.clone()).expect("reopen store");
            let seconds = start.elapsed().as_secs_f64();
            // Every thread's: the decoding threads and the tail builder do most of it.
            let cpu_seconds = process_cpu_seconds() - cpu;
            assert_eq!(store.stats().tail_events, total_events);
            (seconds, cpu_seconds)
        })
        .collect();
    replays.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (replay_seconds, replay_cpu_seconds) = replays[REPLAY_ROUNDS / 2];
    let store = Store::open(options.clone()).expect("reopen store");
    let replay_rate = wal_bytes as f64 / replay_seconds;

    // 3. Sealing.
    let start = Instant::now();
    let cpu = thread_cpu_seconds();
    store.seal().expect("seal");
    let seal_seconds = start.elapsed().as_secs_f64();
    let seal_cpu_seconds = thread_cpu_seconds() - cpu;
    let seal_rate = total_events as f64 / seal_seconds;
    let snapshot = store.snapshot();
    let segment_bytes: u64 = snapshot.segments.iter().map(|s| s.entry.bytes).sum();
    let per_event = segment_bytes as f64 / total_events as f64;
    let mut columns: Vec<(String, f64)> = Column::ALL
        .iter()
        .map(|&column| {
            let bytes: u64 = snapshot
                .segments
                .iter()
                .map(|s| {
                    s.segment.column_stored_bytes(column)
                        + s.segment.dictionary_stored_bytes(column)
                })
                .sum();
            (
                column.name().to_string(),
                bytes as f64 / total_events as f64,
            )
        })
        .collect();
    let other: u64 = snapshot
        .segments
        .iter()
        .map(|s| s.segment.filter_stored_bytes() + s.segment.directory_stored_bytes())
        .sum();
    columns.push((
        "key filter + directory".into(),
        other as f64 / total_events as f64,
    ));
    let partitions = store.stats().partitions;
    drop(snapshot);
    // The like-for-like comparison: the stored events as NDJSON (as an export writes them, with
    // the seq, tenant_seq and received the segments also hold), compressed by zstd -3.
    let stored_zstd3_bytes = {
        let mut ndjson = Vec::new();
        for event in store.read_all().expect("read back") {
            write_stored_event_json(&event, &mut ndjson);
            ndjson.push(b'\n');
        }
        zstd::bulk::compress(&ndjson, 3).expect("zstd").len() as u64
    };
    // The columns the store assigns, which the events as sent do not carry.
    let assigned_per_event: f64 = columns
        .iter()
        .filter(|(name, _)| matches!(name.as_str(), "seq" | "tenant_seq" | "received"))
        .map(|(_, bytes)| bytes)
        .sum();

    // 4. Dropping every partition (retention far in the future).
    let start = Instant::now();
    let report = store
        .expire(now_us() + 400 * 86_400_000_000)
        .expect("expire");
    let drop_seconds = start.elapsed().as_secs_f64();
    let drop_per_partition_ms = drop_seconds * 1000.0 / report.partitions.len().max(1) as f64;
    drop(store);

    let p = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q) as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "engine report: {total_events} events, {} producers, batches of {}",
        args.producers, args.batch
    );
    println!(
        "  ndjson                      {:>10.1} B/event",
        ndjson_bytes as f64 / total_events as f64
    );
    println!(
        "  ndjson zstd -3              {:>10.1} B/event",
        zstd3_bytes as f64 / total_events as f64
    );
    println!(
        "  durable append              {:>10.0} events/s  ({:.1} MB/s of WAL)",
        append_rate,
        wal_rate / 1e6
    );
    println!(
        "  append latency p50/p99      {:>10.2} / {:.2} ms per batch",
        p(0.5),
        p(0.99)
    );
    println!(
        "  CPU while appending         {:>10.2} µs/event  ({:.0} % of one core)",
        append_cpu_seconds * 1e6 / total_events as f64,
        append_cpu_seconds / append_seconds * 100.0
    );
    println!(
        "  fdatasyncs while appending  {:>10}  ({:.0} KiB of WAL each, {:.1} batches)",
        fsyncs,
        wal_bytes as f64 / fsyncs.max(1) as f64 / 1024.0,
        latencies.len() as f64 / fsyncs.max(1) as f64
    );
    println!(
        "  disk seq write + fdatasync  {:>10.1} MB/s  ({} KiB writes)",
        disk_rate / 1e6,
        group_bytes * args.producers / 1024
    );
    println!(
        "  append / disk bandwidth     {:>10.0} %",
        wal_rate / disk_rate * 100.0
    );
    println!(
        "  WAL replay                  {:>10.1} MB/s  ({:.0} events/s; {:.1} MB/s of CPU time)",
        replay_rate / 1e6,
        total_events as f64 / replay_seconds,
        wal_bytes as f64 / replay_cpu_seconds / 1e6
    );
    println!(
        "  seal (1 thread)             {:>10.0} events/s  into {partitions} partitions ({:.0} events/s of CPU time)",
        seal_rate,
        total_events as f64 / seal_cpu_seconds
    );
    println!(
        "  sealed size                 {:>10.1} B/event  ({:.3} of zstd -3 of the stored events as NDJSON, {:.1} B/event)",
        per_event,
        segment_bytes as f64 / stored_zstd3_bytes as f64,
        stored_zstd3_bytes as f64 / total_events as f64
    );
    println!(
        "  sealed, less seq/tenant_seq/received {:>5.1} B/event  ({:.3} of zstd -3 of the events as sent)",
        per_event - assigned_per_event,
        (per_event - assigned_per_event) * total_events as f64 / zstd3_bytes as f64
    );
    for (name, bytes) in &columns {
        println!("    {name:<26}{bytes:>10.2} B/event");
    }
    println!(
        "  drop partition              {:>10.1} ms per partition ({} partitions, {} rows)",
        drop_per_partition_ms,
        report.partitions.len(),
        report.rows
    );
    println!(
        "  peak RSS                    {:>10.0} MiB (events generated up front included)",
        peak_rss_bytes() as f64 / (1 << 20) as f64
    );
    let columns_json: Vec<String> = columns
        .iter()
        .map(|(name, bytes)| format!("\"{name}\":{bytes:.3}"))
        .collect();
    println!(
        "{{\"events\":{total_events},\"append_events_per_s\":{append_rate:.0},\"append_p50_ms\":{:.3},\"append_p99_ms\":{:.3},\"wal_mb_per_s\":{:.1},\"disk_mb_per_s\":{:.1},\"replay_mb_per_s\":{:.1},\"replay_cpu_mb_per_s\":{:.1},\"seal_cpu_events_per_s\":{:.0},\"seal_events_per_s\":{seal_rate:.0},\"sealed_bytes_per_event\":{per_event:.2},\"zstd3_ndjson_bytes_per_event\":{:.2},\"zstd3_stored_ndjson_bytes_per_event\":{:.2},\"drop_partition_ms\":{drop_per_partition_ms:.2},\"columns\":{{{}}}}}",
        p(0.5),
        p(0.99),
        wal_rate / 1e6,
        disk_rate / 1e6,
        replay_rate / 1e6,
        wal_bytes as f64 / replay_cpu_seconds / 1e6,
        total_events as f64 / seal_cpu_seconds,
        zstd3_bytes as f64 / total_events as f64,
        stored_zstd3_bytes as f64 / total_events as f64,
        columns_json.join(",")
    );
}

/// Appends `events` events with background sealing on and default bounds; reports peak RSS.
fn rss_mode(base: &Path, events: u64, producers: usize, batch: usize) {
    let mut options = StoreOptions::new(base.join("store"));
    options.busy_wait = Duration::from_secs(30);
    let store = Arc::new(Store::open(options).expect("open store"));
    let per_producer = events / producers as u64 / batch as u64;
    let start = Instant::now();
    let threads: Vec<_> = (0..producers)
        .map(|p| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut gen = generator(100 + p as u64);
                let mut busy = 0u64;
                for _ in 0..per_producer {
                    let mut batch_events = gen.fill(batch);
                    loop {
                        match store.append(batch_events) {
                            Ok(_) => break,
                            Err(auditlog_engine::Error::Busy { .. }) => {
                                busy += 1;
                                batch_events = gen.fill(batch);
                            }
                            Err(e) => panic!("append: {e}"),
                        }
                    }
                }
                busy
            })
        })
        .collect();
    // Every 5 s: resident memory split into anonymous (heap) and file-backed (mapped segment
    // pages, which the kernel can drop and refault from its page cache), and the peaks.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (store, done) = (Arc::clone(&store), Arc::clone(&done));
        std::thread::spawn(move || {
            let (mut anon_peak, mut file_peak) = (0u64, 0u64);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let (anon, file) = (status_kib("RssAnon:"), status_kib("RssFile:"));
                anon_peak = anon_peak.max(anon);
                file_peak = file_peak.max(file);
                if start.elapsed().as_millis() % 5000 < 200 {
                    let stats = store.stats();
                    eprintln!(
                        "{:>6.0} s {:>10} events  rss anon {:>5} MiB  file {:>5} MiB  tail {:>4} MiB",
                        start.elapsed().as_secs_f64(),
                        stats.sealed_events + stats.tail_events,
                        anon >> 10,
                        file >> 10,
                        stats.tail_bytes >> 20,
                    );
                }
            }
            (anon_peak, file_peak)
        })
    };
    let busy: u64 = threads
        .into_iter()
        .map(|t| t.join().expect("producer"))
        .sum();
    let seconds = start.elapsed().as_secs_f64();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (anon_peak, file_peak) = sampler.join().expect("sampler");
    println!(
        "  peak anonymous {:.0} MiB, peak file-backed {:.0} MiB (sampled every 200 ms)",
        anon_peak as f64 / 1024.0,
        file_peak as f64 / 1024.0
    );
    store.seal().expect("final seal");
    let stats = store.stats();
    println!(
        "rss mode: {} events in {seconds:.1} s ({:.0} events/s with sealing, {busy} busy answers), {} segments, peak RSS {:.0} MiB",
        stats.sealed_events,
        stats.sealed_events as f64 / seconds,
        stats.segments,
        peak_rss_bytes() as f64 / (1 << 20) as f64
    );
}
