//! `auditlog loadgen`: realistic events (auditlog-gen) at a target rate over N connections;
//! prints events/s and acknowledgement latency percentiles (HdrHistogram) as a table and as JSON.
//!
//! At a target rate each batch is due at a fixed time, and its latency is counted from then
//! (not from when the connection was free to send it), so a slow answer also counts against
//! the batches it held back; each batch is made before it is due. The clock starts once every
//! connection has built its generator and made its first batch (a few hundred ms, which the
//! first batches' latencies used to count). As fast as acknowledged
//! (`--rate 0`), latency is counted from the send. A busy answer (429) is waited out (its
//! `Retry-After`) and the same batch sent again, its latency still counted from when it was
//! due; at a target rate every batch due within the run is sent and counted, also when a stall
//! near the end makes it late. The command fails (after printing the figures) when a batch
//! failed, none was acknowledged or a stream subscriber failed: such figures are not a
//! measurement.
//!
//! With `--warmup S` the load runs S seconds longer, first: what is sent then is acknowledged
//! like the rest but left out of the rate and the percentiles (reported on its own line), so
//! that the figures describe a server past its start (threads spawned, memory faulted in).
//!
//! With `--subscribers N` it is also a stream probe: N live-stream subscribers (`batch=true`),
//! one per tenant, the N most active tenants of the load, open before the load starts; each
//! records, for every event it receives, the time from the event's `received` stamp (set by
//! the store when the event's group commit began, before its WAL write and fsync) to its
//! arrival. The load generator and the subscribers run on this machine, so the clock is one.
//!
//! It also reads the server's `/metrics` when the measured window opens and when it closes,
//! and prints what the server measured in between: its own acknowledgement time (from the
//! request's start to the answer, without the network and the client) and its WAL fsyncs,
//! each as a mean and how many took over 10 ms. A slow acknowledgement tail next to as many
//! slow fsyncs is the disk's; without them, it is the server's or the machine's. With a token
//! that may not read `/metrics` that part is left out.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
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
    /// Sent before the measured `duration` and left out of its figures (see the module docs).
    pub warmup: Duration,
    pub tenants: usize,
    pub seed: u64,
    /// Live-stream subscribers to open (see the module docs).
    pub subscribers: usize,
}

/// Highest acknowledgement latency the histograms hold, in µs (an hour); a longer one is
/// counted as this (`saturating_record`): with latency counted from when a batch was due, an
/// overloaded server's grows without bound, and dropping those would flatter the percentiles.
const ACK_LATENCY_MAX_US: u64 = 3_600_000_000;

/// How long after it was due a batch the server keeps answering busy (429) is given up on
/// (counted as an error).
const BUSY_GIVE_UP: Duration = Duration::from_secs(60);

/// How long past the run's end a paced connection still sends the batches that fell due
/// within it.
const LATE_GRACE: Duration = Duration::from_secs(30);

pub fn run(endpoint: &Endpoint, options: &LoadOptions) -> anyhow::Result<()> {
    let histogram = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, ACK_LATENCY_MAX_US, 3).context("histogram")?,
    ));
    let sent = Arc::new(AtomicU64::new(0));
    let warm_sent = Arc::new(AtomicU64::new(0));
    let warm_histogram = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, ACK_LATENCY_MAX_US, 3).context("histogram")?,
    ));
    let errors = Arc::new(AtomicU64::new(0));
    let busy = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let configs: Vec<GenConfig> = (0..options.connections.max(1))
        .map(|connection| GenConfig {
            seed: options.seed + connection as u64,
            tenants: options.tenants,
            start_us: auditlog_engine::store::now_us(),
            ..GenConfig::default()
        })
        .collect();
    let probe = if options.subscribers > 0 {
        Some(Probe::start(
            endpoint,
            &configs,
            options.subscribers,
            &stop,
        )?)
    } else {
        None
    };
    // Generators are built (tenants, users, resources) before the clock starts: the first
    // batches are due at once, and their latency must not count that setup. Their clocks
    // advance at the target rate (100,000 events/s when unpaced).
    let simulated_rate_per_connection = if options.rate == 0 {
        100_000.0
    } else {
        options.rate as f64
    } / options.connections.max(1) as f64;
    let mut generators: Vec<Option<Generator>> = configs
        .iter()
        .map(|config| {
            Some(Generator::new(
                config.clone().with_rate(simulated_rate_per_connection),
            ))
        })
        .collect();
    // Every connection makes its first batch and says so, then the clock starts for all at
    // once. Channels rather than a barrier: a connection that fails first drops its sender,
    // which ends the run with an error instead of leaving the others waiting.
    let mut readies = Vec::new();
    let mut clocks = Vec::new();
    let warmup = options.warmup;
    let run_for = options.warmup + options.duration;
    let per_connection_rate = options.rate as f64 / options.connections.max(1) as f64;
    let threads: Vec<_> = (0..options.connections.max(1))
        .map(|connection| {
            let url = endpoint.url.clone();
            let token = endpoint.token.clone();
            let histogram = Arc::clone(&histogram);
            let (warm_histogram, warm_sent) = (Arc::clone(&warm_histogram), Arc::clone(&warm_sent));
            let (sent, errors, busy, stop) = (
                Arc::clone(&sent),
                Arc::clone(&errors),
                Arc::clone(&busy),
                Arc::clone(&stop),
            );
            let batch = options.batch;
            let connections = options.connections.max(1);
            let mut generator = generators[connection]
                .take()
                .expect("one generator per connection");
            let (ready, readied) = std::sync::mpsc::channel::<()>();
            let (clock, clock_of) = std::sync::mpsc::channel::<Instant>();
            readies.push(readied);
            clocks.push(clock);
            std::thread::spawn(move || {
                let endpoint = Endpoint::new(url, token);
                let mut events = Vec::new();
                let mut body = Vec::with_capacity(batch * 700);
                let mut local = Histogram::<u64>::new_with_bounds(1, ACK_LATENCY_MAX_US, 3)
                    .expect("histogram bounds are valid");
                let mut warm = local.clone();
                let mut batches = 0u64;
                generator.fill_into(&mut events, batch);
                write_ndjson(&events, &mut body);
                let mut made = true;
                let _ = ready.send(());
                let Ok(start) = clock_of.recv() else {
                    return;
                };
                // At a target rate, every batch due within the run is sent and counted, however
                // late the server lets it go (stopping at the clock would leave out the batches a
                // stall near the end held back); unpaced, the run ends with the clock.
                let due_of = |batches: u64| {
                    let phase = connection as f64 / connections as f64;
                    Duration::from_secs_f64(
                        (batches as f64 + phase) * batch as f64 / per_connection_rate,
                    )
                };
                while !stop.load(Ordering::Relaxed)
                    && if per_connection_rate > 0.0 {
                        due_of(batches) < run_for
                    } else {
                        start.elapsed() < run_for
                    }
                {
                    // A server that stopped answering (down, hung) would keep a paced run
                    // going long after its end, a timeout per batch: past a grace period the
                    // batches still due are counted as failed, unsent.
                    if per_connection_rate > 0.0 && start.elapsed() > run_for + LATE_GRACE {
                        let mut left = 0u64;
                        while due_of(batches + left) < run_for {
                            left += 1;
                        }
                        errors.fetch_add(left, Ordering::Relaxed);
                        eprintln!(
                            "{left} batches still due {} s after the run's end: counted as \
                             failed, not sent",
                            LATE_GRACE.as_secs()
                        );
                        break;
                    }
                    // The batch is made before its send is due, so that making it is not
                    // counted as the server's time.
                    if !made {
                        generator.fill_into(&mut events, batch);
                        body.clear();
                        write_ndjson(&events, &mut body);
                    }
                    made = false;
                    let mut began = Instant::now();
                    if per_connection_rate > 0.0 {
                        // Connections are spread over the period (connection i starts i/N of
                        // it late): independent clients do not all send at the same instant.
                        let due = due_of(batches);
                        if let Some(wait) = due.checked_sub(start.elapsed()) {
                            std::thread::sleep(wait);
                        }
                        // Latency counts from when the batch was due, not from when it could
                        // be sent: a batch held back by a slow answer to the one before waited
                        // for the server too (no coordinated omission).
                        began = start + due;
                    }
                    let measured = began.duration_since(start) >= warmup;
                    // The answer is read to its end, so that the next batch goes over the
                    // same connection. A busy answer (429) is waited out and the same batch
                    // sent again, its latency still counted from when it was due: dropping it
                    // would leave the slowest batches out of the percentiles.
                    let sent_batch = loop {
                        let sent = endpoint
                            .send("POST", "/v1/events", Some(&body))
                            .and_then(|response| Ok(response.into_string()?));
                        let retry_after = match &sent {
                            Err(error) => error
                                .downcast_ref::<crate::client::ApiFailure>()
                                .filter(|failure| failure.status == 429)
                                .map(|failure| failure.retry_after.unwrap_or(0)),
                            Ok(_) => None,
                        };
                        match retry_after {
                            Some(seconds) if began.elapsed() < BUSY_GIVE_UP => {
                                busy.fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(
                                    Duration::from_secs(seconds)
                                        .clamp(Duration::from_millis(100), Duration::from_secs(5)),
                                );
                            }
                            _ => break sent,
                        }
                    };
                    match sent_batch {
                        Ok(_) => {
                            let micros = began.elapsed().as_micros().max(1) as u64;
                            if measured {
                                local.saturating_record(micros);
                                sent.fetch_add(batch as u64, Ordering::Relaxed);
                            } else {
                                warm.saturating_record(micros);
                                warm_sent.fetch_add(batch as u64, Ordering::Relaxed);
                            }
                        }
                        Err(error) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            eprintln!("{error:#}");
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                    batches += 1;
                }
                if let Ok(mut shared) = histogram.lock() {
                    let _ = shared.add(&local);
                }
                if let Ok(mut shared) = warm_histogram.lock() {
                    let _ = shared.add(&warm);
                }
            })
        })
        .collect();
    let all_ready = readies.iter().all(|readied| readied.recv().is_ok());
    let start = Instant::now();
    if let Some(probe) = &probe {
        probe.measure_from(auditlog_engine::store::now_us() + options.warmup.as_micros() as i64);
    }
    if !all_ready {
        stop.store(true, Ordering::Relaxed);
    }
    for clock in clocks {
        let _ = clock.send(start);
    }
    if !all_ready {
        for thread in threads {
            let _ = thread.join();
        }
        anyhow::bail!("a load connection failed while making its first batch");
    }
    let mut last = 0;
    let mut server_before = warmup.is_zero().then(|| ServerFigures::read(endpoint));
    while start.elapsed() < run_for {
        // A second at a time, and the end of the warm-up exactly.
        let elapsed = start.elapsed();
        let tick = Duration::from_secs(elapsed.as_secs() + 1) - elapsed;
        let to_warm = warmup.saturating_sub(elapsed);
        if server_before.is_none() && !to_warm.is_zero() && to_warm < tick {
            std::thread::sleep(to_warm);
            server_before = Some(ServerFigures::read(endpoint));
            continue;
        }
        std::thread::sleep(tick.min(run_for.saturating_sub(elapsed)));
        if server_before.is_none() && start.elapsed() >= warmup {
            server_before = Some(ServerFigures::read(endpoint));
        }
        let now = sent.load(Ordering::Relaxed) + warm_sent.load(Ordering::Relaxed);
        eprintln!(
            "{:>5.0} s  {:>9} events/s  {:>10} total",
            start.elapsed().as_secs_f64(),
            now - last,
            now
        );
        last = now;
    }
    // The connections end once every batch due in the run is answered (see above); then the
    // stream probe stops.
    for thread in threads {
        let _ = thread.join();
    }
    stop.store(true, Ordering::Relaxed);
    let server = match (server_before, ServerFigures::read(endpoint)) {
        (Some(Some(before)), Some(after)) => Some(after.since(&before)),
        _ => None,
    };
    let stream = probe.map(Probe::finish).transpose()?;
    let errors = errors.load(Ordering::Relaxed);
    let seconds = start.elapsed().saturating_sub(warmup).as_secs_f64();
    let total = sent.load(Ordering::Relaxed);
    let warm = warm_histogram
        .lock()
        .map_err(|_| anyhow::anyhow!("histogram lock"))?;
    let warm_ms = |q: f64| warm.value_at_quantile(q) as f64 / 1000.0;
    let histogram = histogram
        .lock()
        .map_err(|_| anyhow::anyhow!("histogram lock"))?;
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    let target = if options.rate == 0 {
        "as fast as acknowledged".to_string()
    } else {
        format!("target {} events/s", options.rate)
    };
    println!(
        "loadgen: {} connections, batches of {}, {:.0} s, {target}, {} tenants, seed {}",
        options.connections, options.batch, seconds, options.tenants, options.seed
    );
    if !warmup.is_zero() {
        println!(
            "  warm-up, not counted  {:>12} events in {:.0} s, ack p99 {:.2} ms, max {:.2} ms",
            warm_sent.load(Ordering::Relaxed),
            warmup.as_secs_f64(),
            warm_ms(0.99),
            warm.max() as f64 / 1000.0
        );
    }
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
    println!("  errors                {errors:>12}");
    match &server {
        Some(server) => {
            println!(
                "  server ack (its own)  {:>12.2} ms mean, {} of {} over 10 ms",
                server.ack.mean_ms(),
                server.ack.over_10ms(),
                server.ack.count
            );
            println!(
                "  server WAL fsync      {:>12.2} ms mean, {} of {} over 10 ms",
                server.fsync.mean_ms(),
                server.fsync.over_10ms(),
                server.fsync.count
            );
        }
        None => println!("  server figures         not read (GET /metrics failed)"),
    }
    if let Some(stream) = &stream {
        println!(
            "  stream: {} subscribers ({:.1}% of the load), {} events delivered, {} resyncs",
            stream.subscribers,
            stream.share * 100.0,
            stream.delivered,
            stream.resyncs
        );
        println!("  stream latency p50    {:>12.2} ms", stream.p50_ms);
        println!("  stream latency p99    {:>12.2} ms", stream.p99_ms);
        println!("  stream latency max    {:>12.2} ms", stream.max_ms);
        for failure in &stream.failures {
            println!("  stream subscriber failed: {failure}");
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "stream": stream.as_ref().map(|s| serde_json::json!({
                "subscribers": s.subscribers,
                "share": s.share,
                "delivered": s.delivered,
                "resyncs": s.resyncs,
                "failed": s.failures.len(),
                "latency_ms": { "p50": s.p50_ms, "p99": s.p99_ms, "max": s.max_ms },
            })),
            "rate": options.rate,
            "tenants": options.tenants,
            "seed": options.seed,
            "connections": options.connections,
            "batch": options.batch,
            "seconds": seconds,
            "warmup": {
                "seconds": warmup.as_secs_f64(),
                "events": warm_sent.load(Ordering::Relaxed),
                "ack_ms": { "p99": warm_ms(0.99), "max": warm.max() as f64 / 1000.0 },
            },
            "events": total,
            "events_per_s": total as f64 / seconds,
            "ack_ms": { "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "p999": ms(0.999), "max": histogram.max() as f64 / 1000.0 },
            "busy": busy.load(Ordering::Relaxed),
            "errors": errors,
            "server": server.as_ref().map(|s| serde_json::json!({
                "ack": s.ack.to_json(),
                "fsync": s.fsync.to_json(),
            })),
        })
    );
    // Figures of a run that failed are not a measurement: a script checking them must know.
    if total == 0 {
        anyhow::bail!("no batch was acknowledged: the percentiles above measure nothing");
    }
    if errors > 0 {
        anyhow::bail!("{errors} batch(es) failed (see the errors above)");
    }
    if let Some(failed) = stream.as_ref().map(|s| s.failures.len()).filter(|&n| n > 0) {
        anyhow::bail!("{failed} stream subscriber(s) failed: the stream figures are partial");
    }
    Ok(())
}

/// One latency histogram of the server's `/metrics` (cumulative since it started, or the
/// difference of two readings).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct ServerHistogram {
    count: u64,
    sum_seconds: f64,
    /// Observations of at most 10 ms (the `le="0.01"` bucket).
    within_10ms: u64,
}

impl ServerHistogram {
    /// Reads histogram `name` from Prometheus text; `None` when a series is missing.
    fn parse(metrics: &str, name: &str) -> Option<ServerHistogram> {
        let value = |series: &str| -> Option<&str> {
            metrics.lines().find_map(|line| {
                let rest = line.strip_prefix(series)?;
                rest.strip_prefix(' ').map(str::trim)
            })
        };
        Some(ServerHistogram {
            count: value(&format!("{name}_count"))?.parse().ok()?,
            sum_seconds: value(&format!("{name}_sum"))?.parse().ok()?,
            within_10ms: value(&format!("{name}_bucket{{le=\"0.01\"}}"))?
                .parse()
                .ok()?,
        })
    }

    fn since(&self, before: &ServerHistogram) -> ServerHistogram {
        ServerHistogram {
            count: self.count.saturating_sub(before.count),
            sum_seconds: (self.sum_seconds - before.sum_seconds).max(0.0),
            within_10ms: self.within_10ms.saturating_sub(before.within_10ms),
        }
    }

    fn mean_ms(&self) -> f64 {
        self.sum_seconds * 1e3 / self.count.max(1) as f64
    }

    fn over_10ms(&self) -> u64 {
        self.count.saturating_sub(self.within_10ms)
    }

    fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "count": self.count,
            "mean_ms": self.mean_ms(),
            "over_10ms": self.over_10ms(),
        })
    }
}

/// What the server measured about ingest: see the module docs.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ServerFigures {
    ack: ServerHistogram,
    fsync: ServerHistogram,
}

impl ServerFigures {
    /// `None` when `/metrics` cannot be read or lacks the histograms.
    fn read(endpoint: &Endpoint) -> Option<ServerFigures> {
        let text = endpoint
            .send("GET", "/metrics", None)
            .ok()?
            .into_string()
            .ok()?;
        Self::parse(&text)
    }

    fn parse(metrics: &str) -> Option<ServerFigures> {
        Some(ServerFigures {
            ack: ServerHistogram::parse(metrics, "auditlog_ack_latency_seconds")?,
            fsync: ServerHistogram::parse(metrics, "auditlog_fsync_latency_seconds")?,
        })
    }

    fn since(&self, before: &ServerFigures) -> ServerFigures {
        ServerFigures {
            ack: self.ack.since(&before.ack),
            fsync: self.fsync.since(&before.fsync),
        }
    }
}

/// The stream probe's subscribers.
struct Probe {
    threads: Vec<std::thread::JoinHandle<anyhow::Result<()>>>,
    /// Events received (`received`, UTC µs) before this are the warm-up's and not counted;
    /// none is counted until the run's clock starts ([`Probe::measure_from`]).
    measured_from_us: Arc<AtomicI64>,
    histogram: Arc<Mutex<Histogram<u64>>>,
    delivered: Arc<AtomicU64>,
    resyncs: Arc<AtomicU64>,
    share: f64,
}

/// What the probe measured.
struct StreamFigures {
    subscribers: usize,
    share: f64,
    delivered: u64,
    resyncs: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Why each subscriber that failed did (the figures count the others).
    failures: Vec<String>,
}

impl Probe {
    /// Subscribes to the `count` tenants with the largest expected share of the load made by
    /// generators of `configs` (one per connection), and waits until every handshake is done.
    fn start(
        endpoint: &Endpoint,
        configs: &[GenConfig],
        count: usize,
        stop: &Arc<AtomicBool>,
    ) -> anyhow::Result<Probe> {
        let generators: Vec<Generator> = configs.iter().cloned().map(Generator::new).collect();
        let mut shares: Vec<(String, f64)> = generators[0]
            .tenant_names()
            .map(|tenant| {
                let share = generators
                    .iter()
                    .filter_map(|generator| generator.tenant_share(tenant))
                    .sum::<f64>()
                    / generators.len() as f64;
                (tenant.to_string(), share)
            })
            .collect();
        shares.sort_by(|a, b| b.1.total_cmp(&a.1));
        shares.truncate(count);
        let share = shares.iter().map(|(_, share)| share).sum();
        let histogram = Arc::new(Mutex::new(
            Histogram::<u64>::new_with_bounds(1, ACK_LATENCY_MAX_US, 3).context("histogram")?,
        ));
        let delivered = Arc::new(AtomicU64::new(0));
        let resyncs = Arc::new(AtomicU64::new(0));
        let measured_from_us = Arc::new(AtomicI64::new(i64::MAX));
        let base = endpoint
            .url
            .trim_end_matches('/')
            .replacen("http://", "ws://", 1);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
        let threads = shares
            .into_iter()
            .map(|(tenant, _)| {
                let url = format!(
                    "{base}/v1/stream?tenant={tenant}&batch=true&token={}",
                    endpoint.token
                );
                let measured_from_us = Arc::clone(&measured_from_us);
                let (histogram, delivered, resyncs, stop, ready) = (
                    Arc::clone(&histogram),
                    Arc::clone(&delivered),
                    Arc::clone(&resyncs),
                    Arc::clone(stop),
                    ready_tx.clone(),
                );
                std::thread::spawn(move || -> anyhow::Result<()> {
                    let connected = tungstenite::connect(url.as_str())
                        .with_context(|| format!("subscribing to {tenant}"));
                    let mut socket = match connected {
                        Ok((socket, _)) => {
                            let _ = ready.send(Ok(()));
                            socket
                        }
                        Err(error) => {
                            let _ = ready.send(Err(anyhow::anyhow!("{error:#}")));
                            return Err(error);
                        }
                    };
                    if let tungstenite::stream::MaybeTlsStream::Plain(stream) = socket.get_mut() {
                        stream.set_read_timeout(Some(Duration::from_millis(200)))?;
                    }
                    let mut local = Histogram::<u64>::new_with_bounds(1, ACK_LATENCY_MAX_US, 3)?;
                    while !stop.load(Ordering::Relaxed) {
                        let message = match socket.read() {
                            Ok(tungstenite::Message::Text(text)) => text,
                            Ok(_) => continue,
                            Err(tungstenite::Error::Io(error))
                                if matches!(
                                    error.kind(),
                                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                ) =>
                            {
                                continue
                            }
                            Err(error) => return Err(error.into()),
                        };
                        let arrived = auditlog_engine::store::now_us();
                        let value: serde_json::Value = serde_json::from_str(&message)?;
                        match value["type"].as_str() {
                            Some("events") => {
                                for event in value["events"].as_array().into_iter().flatten() {
                                    let received = event["received"].as_str().unwrap_or_default();
                                    if let Ok(received) =
                                        auditlog_engine::event::time::parse_rfc3339_us(received)
                                    {
                                        if received < measured_from_us.load(Ordering::Relaxed) {
                                            continue;
                                        }
                                        let _ = local.record((arrived - received).max(1) as u64);
                                        delivered.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                            }
                            Some("resync") => {
                                resyncs.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            _ => {}
                        }
                    }
                    if let Ok(mut shared) = histogram.lock() {
                        let _ = shared.add(&local);
                    }
                    Ok(())
                })
            })
            .collect::<Vec<_>>();
        drop(ready_tx);
        for _ in 0..threads.len() {
            ready_rx
                .recv()
                .context("a stream subscriber ended before its handshake")??;
        }
        Ok(Probe {
            threads,
            measured_from_us,
            histogram,
            delivered,
            resyncs,
            share,
        })
    }

    /// Counts the events received from `us` (UTC µs) on: the end of the warm-up.
    fn measure_from(&self, us: i64) {
        self.measured_from_us.store(us, Ordering::Relaxed);
    }

    /// Joins the subscribers (after `stop` was set) and reads the figures.
    fn finish(self) -> anyhow::Result<StreamFigures> {
        let subscribers = self.threads.len();
        let mut failures = Vec::new();
        for thread in self.threads {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(error)) => failures.push(format!("{error:#}")),
                Err(_) => failures.push("it panicked".to_string()),
            }
        }
        let histogram = self
            .histogram
            .lock()
            .map_err(|_| anyhow::anyhow!("histogram lock"))?;
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        Ok(StreamFigures {
            subscribers,
            share: self.share,
            delivered: self.delivered.load(Ordering::Relaxed),
            resyncs: self.resyncs.load(Ordering::Relaxed),
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            max_ms: histogram.max() as f64 / 1000.0,
            failures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(ack: [u64; 2], ack_sum: f64, fsync: [u64; 2], fsync_sum: f64) -> String {
        format!(
            "# TYPE auditlog_ack_latency_seconds histogram\n\
             auditlog_ack_latency_seconds_bucket{{le=\"0.005\"}} 1\n\
             auditlog_ack_latency_seconds_bucket{{le=\"0.01\"}} {}\n\
             auditlog_ack_latency_seconds_bucket{{le=\"+Inf\"}} {}\n\
             auditlog_ack_latency_seconds_sum {ack_sum}\n\
             auditlog_ack_latency_seconds_count {}\n\
             auditlog_fsync_latency_seconds_bucket{{le=\"0.01\"}} {}\n\
             auditlog_fsync_latency_seconds_sum {fsync_sum}\n\
             auditlog_fsync_latency_seconds_count {}\n",
            ack[0], ack[1], ack[1], fsync[0], fsync[1]
        )
    }

    #[test]
    fn server_figures_are_the_difference_of_two_readings() {
        let before = ServerFigures::parse(&metrics([10, 10], 0.05, [10, 11], 0.02)).unwrap();
        let after = ServerFigures::parse(&metrics([106, 110], 0.65, [108, 112], 0.12)).unwrap();
        assert_eq!(
            before.ack,
            ServerHistogram {
                count: 10,
                sum_seconds: 0.05,
                within_10ms: 10
            }
        );
        let window = after.since(&before);
        assert_eq!(window.ack.count, 100);
        assert_eq!(window.ack.over_10ms(), 4);
        assert!((window.ack.mean_ms() - 6.0).abs() < 1e-9);
        assert_eq!(window.fsync.count, 101);
        assert_eq!(window.fsync.over_10ms(), 3);
        assert!((window.fsync.mean_ms() - 100.0 / 101.0).abs() < 1e-9);
    }

    #[test]
    fn server_figures_need_both_histograms() {
        let text = metrics([1, 1], 0.001, [1, 1], 0.001);
        let without_fsync: String = text
            .lines()
            .filter(|line| !line.starts_with("auditlog_fsync_latency_seconds_count"))
            .map(|line| format!("{line}\n"))
            .collect();
        assert!(ServerFigures::parse(&text).is_some());
        assert_eq!(ServerFigures::parse(&without_fsync), None);
        // A longer series name that starts with the same text is not taken for it.
        assert_eq!(
            ServerHistogram::parse("x_count_total 5\nx_sum 1\nx_bucket{le=\"0.01\"} 1\n", "x"),
            None
        );
    }
}
