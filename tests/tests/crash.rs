//! Crash test: a child process appends from 4 threads with background sealing, merging and WAL
//! deletion on, and is killed with SIGKILL at a random moment; the parent reopens the data
//! directory and checks every storage contract against the acknowledgements the child printed.
//! 20+ rounds run on the same directory, so each round also recovers the previous ones.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use auditlog_engine::store::{now_us, Store, StoreOptions};
use auditlog_tests::{check_store, Ack};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const ROUNDS: u32 = 22;

enum Line {
    Ready,
    Ack(Ack),
}

#[test]
fn crash_sigkill_keeps_every_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_us() as u64);
    eprintln!("crash test seed {seed} (set CRASH_SEED to replay the kill timings)");
    let mut rng = SmallRng::seed_from_u64(seed);
    // Fixed for the whole run so the checker rebuilds every event exactly.
    let base_us = now_us() - 60_000_000;
    let mut acks: Vec<Ack> = Vec::new();
    let started = Instant::now();
    for round in 0..ROUNDS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash_child"))
            .arg(dir.path())
            .arg(round.to_string())
            .arg(base_us.to_string())
            .arg(rng.gen::<u64>().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn crash_child");
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    // A line cut by the kill has no newline: it was not printed whole.
                    Ok(n) if n > 0 && line.ends_with('\n') => {
                        let text = line.trim_end();
                        let parsed = if text == "ready" {
                            Line::Ready
                        } else {
                            Line::Ack(
                                Ack::parse_line(text)
                                    .unwrap_or_else(|| panic!("bad line from child: {text:?}")),
                            )
                        };
                        if sender.send(parsed).is_err() {
                            break;
                        }
                    }
                    _ => break,
                }
            }
        });
        // Every 4th round dies early, possibly while it opens the store (recovery, orphan removal).
        let early = round % 4 == 3;
        let mut round_acks = Vec::new();
        if early {
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..60)));
        } else {
            // `ready` is the child's first line: the store is open, producers start.
            match receiver.recv_timeout(Duration::from_secs(20)) {
                Ok(Line::Ready) => {}
                Ok(Line::Ack(_)) => panic!("round {round}: ack before ready"),
                Err(_) => {
                    let _ = child.kill();
                    panic!("round {round}: crash_child never became ready");
                }
            }
            std::thread::sleep(Duration::from_millis(rng.gen_range(50..400)));
        }
        // Child::kill sends SIGKILL.
        child.kill().expect("kill crash_child");
        let status = child.wait().unwrap();
        reader.join().unwrap();
        for line in receiver.try_iter() {
            if let Line::Ack(ack) = line {
                round_acks.push(ack);
            }
        }
        assert!(
            status.code().is_none(),
            "round {round}: crash_child exited by itself: {status}"
        );

        let mut options = StoreOptions::new(dir.path());
        options.background = false;
        let store = Store::open(options)
            .unwrap_or_else(|e| panic!("round {round}: reopen after kill failed: {e}"));
        let stored = store.read_all().unwrap();
        let new_acks = round_acks.len();
        acks.extend(round_acks);
        let summary = check_store(&stored, &acks, base_us, false)
            .unwrap_or_else(|e| panic!("round {round} (seed {seed}): {e}"));
        let stats = store.stats();
        assert_eq!(
            stats.tail_events + stats.sealed_events,
            stored.len() as u64,
            "round {round}"
        );
        assert!(
            stats.last_seq >= stored.last().map_or(0, |e| e.seq),
            "round {round}"
        );
        for event in stored.iter().step_by(97) {
            assert_eq!(
                store.get(event.seq).unwrap().as_ref(),
                Some(event),
                "round {round}: get({})",
                event.seq
            );
        }
        eprintln!(
            "round {round}: {new_acks} new acks, {} events stored, {} segments, {} wal files, {} unacked batches stored",
            summary.stored_events, stats.segments, stats.wal_files, summary.unacked_batches_stored
        );
        drop(store);
    }
    assert!(
        acks.len() > 50,
        "too few acknowledged batches for the test to mean anything: {}",
        acks.len()
    );
    eprintln!("{ROUNDS} rounds in {:?}", started.elapsed());
}
