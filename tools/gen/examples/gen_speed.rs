//! Generation speed alone:
//! `cargo run --release -p auditlog-gen --example gen_speed -- [events] [batch] [tenants] [fill|fill_into|both]`.
//!
//! Measures `fill` (fresh events) and `fill_into` (recycled events, as a load generator would
//! use it), in wall-clock and on-CPU time (the latter excludes time spent waiting for a core on
//! a busy machine).

use std::time::Instant;

use auditlog_gen::{GenConfig, Generator};

fn main() {
    let mut arguments = std::env::args().skip(1);
    let count: usize = arguments
        .next()
        .and_then(|text| text.parse().ok())
        .unwrap_or(2_000_000);
    let batch: usize = arguments
        .next()
        .and_then(|text| text.parse().ok())
        .unwrap_or(10_000);
    let tenants: usize = arguments
        .next()
        .and_then(|text| text.parse().ok())
        .unwrap_or(2000);
    let mode = arguments.next().unwrap_or_else(|| "both".to_string());
    let batches = (count / batch).max(1);
    let generated = (batches * batch) as f64;

    if mode != "fill_into" {
        fill(batch, batches, tenants, generated);
    }
    if mode != "fill" {
        fill_into(batch, batches, tenants, generated);
    }
}

fn fill(batch: usize, batches: usize, tenants: usize, generated: f64) {
    let mut generator = Generator::new(GenConfig {
        tenants,
        ..GenConfig::default()
    });
    std::hint::black_box(generator.fill(batch));
    let (wall, cpu) = measure(|| {
        for _ in 0..batches {
            std::hint::black_box(generator.fill(batch));
        }
    });
    report("fill", batch, generated, wall, cpu);
}

fn fill_into(batch: usize, batches: usize, tenants: usize, generated: f64) {
    let mut generator = Generator::new(GenConfig {
        tenants,
        ..GenConfig::default()
    });
    let mut events = Vec::new();
    generator.fill_into(&mut events, batch);
    let (wall, cpu) = measure(|| {
        for _ in 0..batches {
            generator.fill_into(&mut events, batch);
            std::hint::black_box(&events);
        }
    });
    report("fill_into", batch, generated, wall, cpu);
}

fn measure(work: impl FnOnce()) -> (f64, Option<f64>) {
    let started = Instant::now();
    let cpu_started = thread_cpu_ns();
    work();
    let cpu = thread_cpu_ns()
        .zip(cpu_started)
        .map(|(end, start)| (end - start) as f64 / 1e9);
    (started.elapsed().as_secs_f64(), cpu)
}

fn report(name: &str, batch: usize, generated: f64, wall: f64, cpu: Option<f64>) {
    print!(
        "{name} (batches of {batch}): {:.0} events/s wall",
        generated / wall
    );
    if let Some(cpu) = cpu {
        print!(
            ", {:.0} events/s on-CPU ({:.0} ns/event)",
            generated / cpu,
            cpu * 1e9 / generated
        );
    }
    println!();
}

/// Time this thread spent on a CPU (Linux).
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}
