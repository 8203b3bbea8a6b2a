//! Prints what the generator produces: speed, NDJSON bytes per event, zstd -3 bytes per event,
//! the action mix and the tenant skew.
//!
//! `cargo run --release -p auditlog-gen --example stats -- [events] [seed]`

use std::collections::HashMap;
use std::time::Instant;

use auditlog_engine::event::Outcome;
use auditlog_gen::{write_ndjson, GenConfig, Generator};

fn main() {
    let mut arguments = std::env::args().skip(1);
    let count: usize = arguments
        .next()
        .and_then(|text| text.parse().ok())
        .unwrap_or(1_000_000);
    let seed: u64 = arguments
        .next()
        .and_then(|text| text.parse().ok())
        .unwrap_or(42);

    let started = Instant::now();
    let mut generator = Generator::new(GenConfig {
        seed,
        expected_events: count as u64,
        ..GenConfig::default()
    });
    let setup = started.elapsed();

    // Time generation the way a load generator uses it: batches of 10k, dropped after use.
    let mut timing = Generator::new(GenConfig {
        seed: seed ^ 1,
        expected_events: count as u64,
        ..GenConfig::default()
    });
    let _ = timing.fill(10_000);
    let started = Instant::now();
    let cpu_started = thread_cpu_ns();
    for _ in 0..count.div_ceil(10_000) {
        std::hint::black_box(timing.fill(10_000));
    }
    let generate = started.elapsed();
    let generate_cpu_ns = thread_cpu_ns()
        .zip(cpu_started)
        .map(|(end, start)| end - start);
    let count = count.div_ceil(10_000) * 10_000;
    let events = generator.fill(count);

    let started = Instant::now();
    let mut ndjson = Vec::with_capacity(count * 600);
    write_ndjson(&events, &mut ndjson);
    let serialize = started.elapsed();

    let started = Instant::now();
    let whole = zstd::bulk::compress(&ndjson, 3).expect("zstd compresses");
    let compress = started.elapsed();
    // Segment-sized chunks: 1 MiB of NDJSON each, compressed independently.
    let chunked: usize = ndjson
        .chunks(1 << 20)
        .map(|chunk| {
            zstd::bulk::compress(chunk, 3)
                .expect("zstd compresses")
                .len()
        })
        .sum();

    println!("events: {count}, tenants: {}", generator.config().tenants);
    println!("setup: {:.1} ms", setup.as_secs_f64() * 1e3);
    println!(
        "generate: {:.0} events/s ({:.0} ns/event)",
        count as f64 / generate.as_secs_f64(),
        generate.as_nanos() as f64 / count as f64
    );
    if let Some(cpu_ns) = generate_cpu_ns {
        println!(
            "generate, on-CPU time only: {:.0} events/s ({:.0} ns/event)",
            count as f64 / (cpu_ns as f64 / 1e9),
            cpu_ns as f64 / count as f64
        );
    }
    println!(
        "write_ndjson: {:.0} events/s",
        count as f64 / serialize.as_secs_f64()
    );
    println!(
        "ndjson: {:.1} bytes/event",
        ndjson.len() as f64 / count as f64
    );
    println!(
        "zstd -3 whole stream: {:.1} bytes/event (ratio {:.2}, {:.0} MB/s)",
        whole.len() as f64 / count as f64,
        ndjson.len() as f64 / whole.len() as f64,
        ndjson.len() as f64 / compress.as_secs_f64() / 1e6
    );
    println!(
        "zstd -3 per 1 MiB chunk: {:.1} bytes/event",
        chunked as f64 / count as f64
    );

    let mut lines: Vec<usize> = ndjson
        .split(|&byte| byte == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| line.len())
        .collect();
    lines.sort_unstable();
    let quantile = |q: f64| lines[((lines.len() - 1) as f64 * q) as usize];
    println!(
        "line bytes: p5 {} p25 {} p50 {} p75 {} p95 {} max {}",
        quantile(0.05),
        quantile(0.25),
        quantile(0.5),
        quantile(0.75),
        quantile(0.95),
        lines[lines.len() - 1]
    );

    let mut actions: HashMap<&str, usize> = HashMap::new();
    let mut tenants: HashMap<&str, usize> = HashMap::new();
    let mut actor_types: HashMap<&str, usize> = HashMap::new();
    let mut resource_types: HashMap<&str, usize> = HashMap::new();
    let mut failures = 0;
    let mut failed_logins = 0;
    let mut with_changes = 0;
    let mut out_of_order = 0;
    for (index, event) in events.iter().enumerate() {
        *actions.entry(&event.action).or_default() += 1;
        *tenants.entry(&event.tenant).or_default() += 1;
        *actor_types.entry(event.actor.kind.as_str()).or_default() += 1;
        *resource_types.entry(&event.resource.kind).or_default() += 1;
        failures += usize::from(event.outcome == Outcome::Failure);
        failed_logins += usize::from(event.outcome == Outcome::Failure && event.action == "login");
        with_changes += usize::from(event.changes.is_some());
        out_of_order +=
            usize::from(index > 0 && event.timestamp_us < events[index - 1].timestamp_us);
    }
    let share = |n: usize| 100.0 * n as f64 / count as f64;
    let print_sorted = |title: &str, map: &HashMap<&str, usize>| {
        let mut rows: Vec<_> = map.iter().collect();
        rows.sort_by(|a, b| b.1.cmp(a.1));
        let text: Vec<String> = rows
            .iter()
            .map(|(name, &n)| format!("{name} {:.1}%", share(n)))
            .collect();
        println!("{title}: {}", text.join(", "));
    };
    print_sorted("actions", &actions);
    print_sorted("actor types", &actor_types);
    print_sorted("resource types", &resource_types);
    println!(
        "failures: {:.2}% (failed logins {:.2}% of logins), with changes: {:.1}%, out of order: {:.1}%",
        share(failures),
        100.0 * failed_logins as f64 / actions.get("login").copied().unwrap_or(1) as f64,
        share(with_changes),
        share(out_of_order)
    );
    let mut sizes: Vec<usize> = tenants.values().copied().collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    let largest = generator.largest_tenant();
    let median = generator.median_tenant();
    println!(
        "tenants seen: {}, top 1: {:.1}%, top 10: {:.1}%, largest {largest}: {} events, median {median}: {} events",
        sizes.len(),
        share(sizes[0]),
        share(sizes.iter().take(10).sum()),
        tenants.get(largest).copied().unwrap_or(0),
        tenants.get(median).copied().unwrap_or(0)
    );
    let first = events.first().map_or(0, |event| event.timestamp_us);
    let last = events.last().map_or(0, |event| event.timestamp_us);
    println!(
        "simulated span: {:.2} days",
        (last - first) as f64 / 86_400e6
    );
    println!(
        "example: {}",
        String::from_utf8_lossy(
            ndjson
                .split(|&byte| byte == b'\n')
                .nth(3)
                .unwrap_or_default()
        )
    );
}

/// Time this thread spent on a CPU (Linux): the machine may be busy with other work.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}
