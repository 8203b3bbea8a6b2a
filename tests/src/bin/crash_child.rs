//! The process the crash test kills: opens a store with background sealing on, runs producer
//! threads that append generated batches (some of them retries), and prints one line per
//! acknowledged append to stdout: `ack <round> <producer> <counter> <first> <last> <accepted>
//! <dups>` (see [`auditlog_tests::Ack::to_line`]). It prints `ready` once the store is open.
//!
//! Usage: `crash_child <dir> <round> <base_us> <seed>`. It runs until killed (or 30 s).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditlog_engine::store::{Store, StoreOptions};
use auditlog_tests::{Ack, BatchId};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const PRODUCERS: u32 = 4;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: crash_child <dir> <round> <base_us> <seed>");
        std::process::exit(2);
    }
    let dir = &args[1];
    let round: u32 = args[2].parse().expect("round is a number");
    let base_us: i64 = args[3].parse().expect("base_us is a number");
    let seed: u64 = args[4].parse().expect("seed is a number");

    let mut options = StoreOptions::new(dir);
    options.background = true;
    options.seal_bytes = 256 << 10;
    options.seal_interval = Duration::from_millis(200);
    // Small WAL files, so that rotation and deletion of sealed WAL files happen during a run.
    options.wal_file_bytes = 128 << 10;
    let store = match Store::open(options) {
        Ok(store) => Arc::new(store),
        Err(error) => {
            eprintln!("crash_child: open failed: {error}");
            std::process::exit(1);
        }
    };
    emit("ready");

    let deadline = Instant::now() + Duration::from_secs(30);
    let threads: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || produce(&store, round, producer, base_us, seed, deadline))
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
}

fn emit(line: &str) {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    // The parent may be gone; nothing to do about it then.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn produce(store: &Store, round: u32, producer: u32, base_us: i64, seed: u64, deadline: Instant) {
    let mut rng = SmallRng::seed_from_u64(seed ^ (u64::from(producer) << 48) ^ u64::from(round));
    let mut next_counter = 0u32;
    while Instant::now() < deadline {
        let retry = rng.gen_ratio(1, 8);
        let batch = if retry && next_counter > 0 && rng.gen_bool(0.5) {
            // Retry of a batch this producer already had acknowledged in this round.
            BatchId {
                round,
                producer,
                counter: rng.gen_range(0..next_counter),
            }
        } else if retry && round > 0 {
            // Retry of a batch of the killed previous run: it may have been stored, or not, or
            // never sent at all.
            BatchId {
                round: round - 1,
                producer,
                counter: rng.gen_range(0..40),
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
            Ok(result) => {
                emit(&Ack::new(batch, &result).to_line());
                // Paced so that the sealer keeps up in a debug build and a run stays small.
                std::thread::sleep(Duration::from_millis(rng.gen_range(1..8)));
            }
            Err(error) => {
                eprintln!("crash_child: append of {batch} failed: {error}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}
