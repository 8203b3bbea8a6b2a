//! Power-loss test, in process: the store writes through a `FaultyVfs`; at a random instant the
//! device "dies" (every later write and fsync fails), the store is dropped, and the power goes:
//! every file keeps the bytes its last successful fsync made durable, and of what was written
//! after it either nothing (`crash`) or a random choice of 512-byte sectors (`crash_torn`, in
//! half the rounds where the device died: a device that reorders writes, which with group commit's fsyncs in flight leaves
//! damaged records followed by whole ones). The directory is then reopened with the real file
//! system and checked against the acknowledgements.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditlog_engine::io::{Fault, FaultyVfs};
use auditlog_engine::store::{now_us, Durability, Store, StoreOptions};
use auditlog_tests::{check_store, Ack, BatchId};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const PRODUCERS: u32 = 4;

fn seed() -> u64 {
    let seed = std::env::var("POWER_LOSS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_us() as u64);
    eprintln!("power-loss test seed {seed} (set POWER_LOSS_SEED to replay)");
    seed
}

fn options(dir: &std::path::Path, vfs: &FaultyVfs, durability: Durability) -> StoreOptions {
    let mut options = StoreOptions::new(dir);
    options.vfs = Arc::new(vfs.clone());
    options.durability = durability;
    options.background = true;
    options.seal_bytes = 64 << 10;
    options.seal_interval = Duration::from_millis(50);
    options.wal_file_bytes = 64 << 10;
    options
}

/// Appends generated batches from [`PRODUCERS`] threads for `run`, or until the device fails.
/// Returns the acknowledgements.
fn produce(store: &Arc<Store>, round: u32, base_us: i64, seed: u64, run: Duration) -> Vec<Ack> {
    let acks = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let (store, acks, stop) = (Arc::clone(store), Arc::clone(&acks), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut rng =
                    SmallRng::seed_from_u64(seed ^ u64::from(producer) << 40 ^ u64::from(round));
                let mut next_counter = 0;
                while !stop.load(Ordering::Relaxed) {
                    let batch = if next_counter > 0 && rng.gen_ratio(1, 8) {
                        BatchId {
                            round,
                            producer,
                            counter: rng.gen_range(0..next_counter),
                        }
                    } else if round > 0 && rng.gen_ratio(1, 10) {
                        BatchId {
                            round: round - 1,
                            producer,
                            counter: rng.gen_range(0..30),
                        }
                    } else {
                        next_counter += 1;
                        BatchId {
                            round,
                            producer,
                            counter: next_counter - 1,
                        }
                    };
                    match store.append(batch.events(base_us)) {
                        Ok(result) => acks.lock().unwrap().push(Ack::new(batch, &result)),
                        // The device is gone: a real client would stop here too.
                        Err(_) => break,
                    }
                    std::thread::sleep(Duration::from_millis(rng.gen_range(0..4)));
                }
            })
        })
        .collect();
    let deadline = Instant::now() + run;
    while Instant::now() < deadline && threads.iter().any(|t| !t.is_finished()) {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    Arc::try_unwrap(acks).unwrap().into_inner().unwrap()
}

/// Runs `rounds` power losses on one directory; returns (acks, events lost) summed over rounds.
fn run_power_losses(durability: Durability, rounds: u32, lost_suffix_ok: bool) -> (usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let seed = seed();
    let mut rng = SmallRng::seed_from_u64(seed);
    let base_us = now_us() - 60_000_000;
    let mut acks: Vec<Ack> = Vec::new();
    let mut total_acks = 0;
    let mut total_lost = 0;
    for round in 0..rounds {
        let vfs = FaultyVfs::new();
        let store = Arc::new(
            Store::open(options(dir.path(), &vfs, durability))
                .unwrap_or_else(|e| panic!("round {round}: open failed: {e}")),
        );
        // Two rounds in three the device dies at a random write or fsync; in the others the power
        // goes while everything still works.
        if round % 3 != 2 {
            vfs.fail_write(rng.gen_range(5..300), Fault::Io);
            vfs.fail_sync(rng.gen_range(5..150), Fault::Io);
        }
        let round_acks = produce(
            &store,
            round,
            base_us,
            rng.gen(),
            Duration::from_millis(rng.gen_range(50..250)),
        );
        total_acks += round_acks.len();
        acks.extend(round_acks);
        drop(Arc::try_unwrap(store).ok().expect("producers are done"));
        // Of the rounds where the device died (with writes not yet fsynced), every other one
        // keeps a random part of them.
        if round % 3 == 1 {
            vfs.crash_torn(rng.gen()).unwrap();
        } else {
            vfs.crash().unwrap();
        }

        let mut reopen = StoreOptions::new(dir.path());
        reopen.background = false;
        let store = Store::open(reopen).unwrap_or_else(|e| {
            panic!("round {round} (seed {seed}): reopen after power loss failed: {e}")
        });
        let stored = store.read_all().unwrap();
        let summary = check_store(&stored, &acks, base_us, lost_suffix_ok)
            .unwrap_or_else(|e| panic!("round {round} (seed {seed}): {e}"));
        let stats = store.stats();
        assert_eq!(
            stats.tail_events + stats.sealed_events,
            stored.len() as u64,
            "round {round}"
        );
        eprintln!(
            "round {round}: {} events stored, {} segments, {} acked events lost, {} unacked batches stored, tail cut {:?}, whole records cut with it {:?}",
            summary.stored_events, stats.segments, summary.acked_events_lost, summary.unacked_batches_stored,
            store.recovery().truncated.as_ref().map(|(_, offset)| offset), store.recovery().discarded
        );
        total_lost += summary.acked_events_lost;
        // Acknowledged events lost (interval durability only) leave their seqs free for reuse.
        let max_seq = stored.last().map_or(0, |e| e.seq);
        acks.retain(|ack| {
            ack.expected_seqs()
                .is_ok_and(|seqs| seqs.iter().all(|&s| s <= max_seq))
        });
        drop(store);
    }
    assert!(
        total_acks > 20,
        "too few acknowledged batches for the test to mean anything: {total_acks}"
    );
    (total_acks, total_lost)
}

#[test]
fn power_loss_with_sync_durability_keeps_every_acknowledged_event() {
    let (_acks, lost) = run_power_losses(Durability::Sync, 9, false);
    assert_eq!(lost, 0);
}

#[test]
fn power_loss_with_interval_durability_loses_only_a_suffix() {
    run_power_losses(Durability::Interval(Duration::from_millis(20)), 6, true);
}
