//! `auditlog loadgen`: realistic events (auditlog-gen) at a target rate over N connections;
//! prints events/s and acknowledgement latency percentiles (HdrHistogram) as a table and as JSON.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use auditlog_gen::{write_ndjson, GenConfig, Generator};
use hdrhistogram::Histogram;

use crate::client::Endpoint;

pub struct LoadOptions {
    /// Target events per second over all connections; 0: as fast as the server acknowledges.
    pub rate: u64,
    pub connections: usize,
    pub batch: usize,
    pub duration: Duration,
    pub tenants: usize,
    pub seed: u64,
}

pub fn run(endpoint: &Endpoint, options: &LoadOptions) -> anyhow::Result<()> {
    let histogram = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).context("histogram")?,
    ));
    let sent = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let busy = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let per_connection_rate = options.rate as f64 / options.connections.max(1) as f64;
    let simulated_rate = if options.rate == 0 {
        100_000.0
    } else {
        options.rate as f64
    };
    let threads: Vec<_> = (0..options.connections.max(1))
        .map(|connection| {
            let url = endpoint.url.clone();
            let token = endpoint.token.clone();
            let histogram = Arc::clone(&histogram);
            let (sent, errors, busy, stop) = (
                Arc::clone(&sent),
                Arc::clone(&errors),
                Arc::clone(&busy),
                Arc::clone(&stop),
            );
            let batch = options.batch;
            let duration = options.duration;
            let config = GenConfig {
                seed: options.seed + connection as u64,
                tenants: options.tenants,
                start_us: auditlog_engine::store::now_us(),
                ..GenConfig::default()
            }
            .with_rate(simulated_rate / options.connections.max(1) as f64);
            std::thread::spawn(move || {
                let endpoint = Endpoint { url, token };
                let mut generator = Generator::new(config);
                let mut events = Vec::new();
                let mut body = Vec::with_capacity(batch * 700);
                let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                    .expect("histogram bounds are valid");
                let mut batches = 0u64;
                while start.elapsed() < duration && !stop.load(Ordering::Relaxed) {
                    if per_connection_rate > 0.0 {
                        let due = Duration::from_secs_f64(
                            batches as f64 * batch as f64 / per_connection_rate,
                        );
                        if let Some(wait) = due.checked_sub(start.elapsed()) {
                            std::thread::sleep(wait);
                        }
                    }
                    generator.fill_into(&mut events, batch);
                    body.clear();
                    write_ndjson(&events, &mut body);
                    let began = Instant::now();
                    match endpoint.send("POST", "/v1/events", Some(&body)) {
                        Ok(_) => {
                            let _ = local.record(began.elapsed().as_micros().max(1) as u64);
                            sent.fetch_add(batch as u64, Ordering::Relaxed);
                        }
                        Err(error) => {
                            if error.to_string().contains("HTTP 429") {
                                busy.fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(Duration::from_millis(100));
                            } else {
                                errors.fetch_add(1, Ordering::Relaxed);
                                eprintln!("{error:#}");
                                std::thread::sleep(Duration::from_millis(100));
                            }
                        }
                    }
                    batches += 1;
                }
                if let Ok(mut shared) = histogram.lock() {
                    let _ = shared.add(&local);
                }
            })
        })
        .collect();
    let mut last = 0;
    while start.elapsed() < options.duration {
        std::thread::sleep(Duration::from_secs(1));
        let now = sent.load(Ordering::Relaxed);
        eprintln!(
            "{:>5.0} s  {:>9} events/s  {:>10} total",
            start.elapsed().as_secs_f64(),
            now - last,
            now
        );
        last = now;
    }
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        let _ = thread.join();
    }
    let seconds = start.elapsed().as_secs_f64();
    let total = sent.load(Ordering::Relaxed);
    let histogram = histogram
        .lock()
        .map_err(|_| anyhow::anyhow!("histogram lock"))?;
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "loadgen: {} connections, batches of {}, {:.0} s",
        options.connections, options.batch, seconds
    );
    println!("  events acknowledged   {total:>12}");
    println!("  events/s              {:>12.0}", total as f64 / seconds);
    println!("  ack latency p50       {:>12.2} ms", ms(0.5));
    println!("  ack latency p90       {:>12.2} ms", ms(0.9));
    println!("  ack latency p99       {:>12.2} ms", ms(0.99));
    println!("  ack latency p99.9     {:>12.2} ms", ms(0.999));
    println!(
        "  ack latency max       {:>12.2} ms",
        histogram.max() as f64 / 1000.0
    );
    println!(
        "  busy (429) answers    {:>12}",
        busy.load(Ordering::Relaxed)
    );
    println!(
        "  errors                {:>12}",
        errors.load(Ordering::Relaxed)
    );
    println!(
        "{}",
        serde_json::json!({
            "connections": options.connections,
            "batch": options.batch,
            "seconds": seconds,
            "events": total,
            "events_per_s": total as f64 / seconds,
            "ack_ms": { "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "p999": ms(0.999), "max": histogram.max() as f64 / 1000.0 },
            "busy": busy.load(Ordering::Relaxed),
            "errors": errors.load(Ordering::Relaxed),
        })
    );
    Ok(())
}
