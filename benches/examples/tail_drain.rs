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
use auditlog_engine::tail::{Chunk, Tail};
use auditlog_gen::{GenConfig, Generator};

/// 1,000 generated events stored from `first_seq` on: a group commit's chunk.
fn chunk(generator: &mut Generator, first_seq: u64) -> Chunk {
    let events = generator.fill(1000).into_iter().zip(first_seq..);
    Arc::new(
        events
            .map(|(event, seq)| StoredEvent {
                seq,
                tenant_seq: 1,
                received_us: 0,
                event,
            })
            .collect(),
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let events: u64 = args
        .next()
        .map_or(1_200_000, |a| a.parse().expect("events"));
    let rounds: usize = args.next().map_or(3, |a| a.parse().expect("rounds"));
    let mut generator = Generator::new(GenConfig::default());
    let chunks: Vec<Chunk> = (0..events / 1000)
        .map(|c| chunk(&mut generator, c * 1000 + 1))
        .collect();
    for round in 0..rounds {
        for seal_snapshot in [true, false] {
            let mut tail = Tail::default();
            for chunk in &chunks {
                // A copy, so that the drain returns the events' last references, as in a seal.
                tail.push(Arc::new(chunk.as_ref().clone()));
            }
            let upto = if seal_snapshot {
                tail.seal_snapshot().last_seq()
            } else {
                tail.snapshot().last_seq()
            }
            .expect("events");
            // Appended while the seal ran: the plain snapshot's generation now straddles `upto`.
            tail.push(chunk(&mut generator, upto + 1));
            let started = Instant::now();
            let drained = tail.drain_through(upto);
            let locked = started.elapsed();
            let started = Instant::now();
            drop(drained);
            let path = if seal_snapshot {
                "seal_snapshot"
            } else {
                "snapshot"
            };
            println!(
                "round {round}, {path}: drain {:.1} ms (under the lock), drop {:.1} ms (after it)",
                locked.as_secs_f64() * 1e3,
                started.elapsed().as_secs_f64() * 1e3
            );
        }
    }
}
