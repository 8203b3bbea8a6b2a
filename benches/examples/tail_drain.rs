//! How long draining a sealed tail holds the store's state lock: a tail of N events with
//! idempotency keys (in chunks of 1,000, as group commits leave them) is drained through its
//! last seq, with one more chunk appended meanwhile, after a `seal_snapshot` (the seal's path: whole key generations dropped after the
//! lock) and after a plain `snapshot` (keys removed one by one, as every seal did before);
//! prints the time inside `drain_through` and the time to drop what it returned.
//!
//! `cargo run --release -p auditlog-benches --example tail_drain -- 1200000 3`

use std::sync::Arc;
use std::time::Instant;

use auditlog_engine::event::StoredEvent;
use auditlog_engine::segment::key_hash;
use auditlog_engine::tail::Tail;
use auditlog_gen::{GenConfig, Generator};

fn main() {
    let mut args = std::env::args().skip(1);
    let events: usize = args
        .next()
        .map_or(1_200_000, |a| a.parse().expect("events"));
    let rounds: usize = args.next().map_or(3, |a| a.parse().expect("rounds"));
    let mut generator = Generator::new(GenConfig::default());
    let chunks: Vec<Vec<StoredEvent>> = (0..events / 1000)
        .map(|c| {
            generator
                .fill(1000)
                .into_iter()
                .enumerate()
                .map(|(i, event)| StoredEvent {
                    seq: (c * 1000 + i + 1) as u64,
                    tenant_seq: 1,
                    received_us: 0,
                    event,
                })
                .collect()
        })
        .collect();
    for round in 0..rounds {
        for seal_snapshot in [true, false] {
            let mut tail = Tail::default();
            for chunk in &chunks {
                let hashes: Vec<u64> = chunk
                    .iter()
                    .map(|e| {
                        e.event
                            .id
                            .as_ref()
                            .map_or(0, |id| key_hash(&e.event.tenant, id))
                    })
                    .collect();
                tail.push_prepared(Arc::new(chunk.clone()), 0, &hashes);
            }
            let upto = if seal_snapshot {
                tail.seal_snapshot().last_seq()
            } else {
                tail.snapshot().last_seq()
            }
            .expect("events");
            // Appended while the seal ran: the plain snapshot's generation now straddles `upto`.
            let later: Vec<StoredEvent> = generator
                .fill(1000)
                .into_iter()
                .enumerate()
                .map(|(i, event)| StoredEvent {
                    seq: upto + 1 + i as u64,
                    tenant_seq: 1,
                    received_us: 0,
                    event,
                })
                .collect();
            let hashes: Vec<u64> = later
                .iter()
                .map(|e| {
                    e.event
                        .id
                        .as_ref()
                        .map_or(0, |id| key_hash(&e.event.tenant, id))
                })
                .collect();
            tail.push_prepared(Arc::new(later), 0, &hashes);
            let started = Instant::now();
            let drained = tail.drain_through(upto);
            let locked = started.elapsed();
            let started = Instant::now();
            drop(drained);
            println!(
                "round {round}, {}: drain {:.1} ms (under the lock), drop {:.1} ms (after it)",
                if seal_snapshot {
                    "seal_snapshot"
                } else {
                    "snapshot"
                },
                locked.as_secs_f64() * 1e3,
                started.elapsed().as_secs_f64() * 1e3
            );
        }
    }
}
