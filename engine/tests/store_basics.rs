//! The store end to end in process: append, read back, seal, merge, reopen, idempotency,
//! retention, backpressure.

use std::collections::HashMap;
use std::time::Duration;

use auditlog_engine::event::{Actor, Event, Resource};
use auditlog_engine::partition::MICROS_PER_DAY;
use auditlog_engine::store::{now_us, AppendHints, Store, StoreOptions};
use auditlog_engine::Error;

fn event(tenant: &str, n: u64, timestamp_us: i64) -> Event {
    Event {
        id: Some(format!("evt_{n}").into()),
        timestamp_us,
        tenant: tenant.into(),
        project: n.is_multiple_of(2).then(|| "proj_ml".into()),
        actor: Actor {
            id: Some(format!("user_{}", n % 7).into()),
            email: Some(format!("u{}@example.com", n % 7).into()),
            ..Actor::default()
        },
        action: ["create", "update", "delete"][(n % 3) as usize].into(),
        resource: Resource {
            kind: "pod".into(),
            id: Some(format!("pod_{n}").into()),
            name: Some(format!("llama-{n}").into()),
        },
        changes: (n % 3 == 1).then(|| r#"[{"field":"gpu_count","old":1,"new":4}]"#.into()),
        details: Some(format!(r#"{{"n":{n}}}"#).into()),
        ..Event::default()
    }
}

fn options(dir: &std::path::Path) -> StoreOptions {
    let mut options = StoreOptions::new(dir);
    options.background = false;
    options
}

#[test]
fn store_append_is_readable_at_once_and_after_seal_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_us();
    let store = Store::open(options(dir.path())).unwrap();
    let batch: Vec<Event> = (0..100)
        .map(|n| event(&format!("acct_{}", n % 3), n, now - n as i64))
        .collect();
    let result = store.append(batch.clone()).unwrap();
    assert_eq!(
        (result.accepted, result.first_seq, result.last_seq),
        (100, Some(1), Some(100))
    );
    let before = store.read_all().unwrap();
    assert_eq!(before.len(), 100);
    assert_eq!(store.get(42).unwrap().unwrap().event, batch[41]);
    store.seal().unwrap();
    assert_eq!(store.read_all().unwrap(), before);
    assert_eq!(store.get(42).unwrap().unwrap().event, batch[41]);
    assert_eq!(
        store
            .read_from_seq(95, 3)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        vec![95, 96, 97]
    );
    let more: Vec<Event> = (100..150).map(|n| event("acct_1", n, now)).collect();
    store.append(more).unwrap();
    let all = store.read_all().unwrap();
    drop(store);
    let store = Store::open(options(dir.path())).unwrap();
    assert_eq!(store.read_all().unwrap(), all);
    // tenant_seq counts each tenant's events without gaps, across seal and reopen.
    let mut per_tenant: HashMap<String, Vec<u64>> = HashMap::new();
    for e in &all {
        per_tenant
            .entry(e.event.tenant.to_string())
            .or_default()
            .push(e.tenant_seq);
    }
    for seqs in per_tenant.values() {
        assert_eq!(seqs, &(1..=seqs.len() as u64).collect::<Vec<_>>());
    }
    let next = store.append(vec![event("acct_1", 999, now)]).unwrap();
    assert_eq!(next.first_seq, Some(151));
    assert_eq!(
        store.get(151).unwrap().unwrap().tenant_seq,
        per_tenant["acct_1"].len() as u64 + 1
    );
}

#[test]
fn store_retried_batch_is_acknowledged_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_us();
    let store = Store::open(options(dir.path())).unwrap();
    let batch: Vec<Event> = (0..10).map(|n| event("acct_1", n, now)).collect();
    store.append(batch.clone()).unwrap();
    // Retry while in the tail.
    let retry = store.append(batch.clone()).unwrap();
    assert_eq!(retry.accepted, 0);
    assert_eq!(retry.duplicates.len(), 10);
    assert_eq!(retry.duplicates[3].seq, 4);
    store.seal().unwrap();
    // Retry once sealed, mixed with new events, and a duplicate inside the batch itself.
    let mut mixed = batch[5..].to_vec();
    mixed.push(event("acct_1", 77, now));
    mixed.push(event("acct_1", 77, now));
    mixed.push(event("acct_2", 3, now)); // same id, other tenant: not a duplicate
    let result = store.append(mixed).unwrap();
    assert_eq!(result.accepted, 2);
    assert_eq!(
        result
            .duplicates
            .iter()
            .map(|d| d.index)
            .collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4, 6]
    );
    assert_eq!(result.duplicates[5].seq, 11);
    assert_eq!(store.read_all().unwrap().len(), 12);
    drop(store);
    let store = Store::open(options(dir.path())).unwrap();
    let again = store.append(batch).unwrap();
    assert_eq!(again.accepted, 0);
}

/// Retries racing their originals: four producers send the same batches at the same time, so
/// a retry meets its original in the same commit group, in a group written but not yet durable
/// (two fsyncs are in flight), or in the tail. Every event is stored once, and every duplicate
/// names the seq of the stored event with its key.
#[test]
fn store_concurrent_retries_store_each_event_once() {
    const PRODUCERS: usize = 4;
    const BATCHES: u64 = 40;
    const BATCH: u64 = 50;
    let dir = tempfile::tempdir().unwrap();
    let now = now_us();
    let store = std::sync::Arc::new(Store::open(options(dir.path())).unwrap());
    let start = std::sync::Arc::new(std::sync::Barrier::new(PRODUCERS));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|_| {
            let store = std::sync::Arc::clone(&store);
            let start = std::sync::Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                (0..BATCHES)
                    .map(|b| {
                        let batch: Vec<Event> = (b * BATCH..(b + 1) * BATCH)
                            .map(|n| event(&format!("acct_{}", n % 5), n, now))
                            .collect();
                        (batch.clone(), store.append(batch).unwrap())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<Vec<_>> = producers.into_iter().map(|p| p.join().unwrap()).collect();
    let stored = store.read_all().unwrap();
    assert_eq!(stored.len() as u64, BATCHES * BATCH);
    let mut keys: Vec<_> = stored
        .iter()
        .map(|e| (e.event.tenant.to_string(), e.event.id.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(
        keys.len() as u64,
        BATCHES * BATCH,
        "an event was stored twice"
    );
    for b in 0..BATCHES as usize {
        let accepted: usize = results.iter().map(|r| r[b].1.accepted).sum();
        assert_eq!(
            accepted as u64, BATCH,
            "batch {b}: events accepted over all producers"
        );
        for (batch, result) in results.iter().map(|r| &r[b]) {
            assert_eq!(result.accepted + result.duplicates.len(), batch.len());
            for duplicate in &result.duplicates {
                let original = store
                    .get(duplicate.seq)
                    .unwrap()
                    .expect("named seq is stored");
                assert_eq!(original.event, batch[duplicate.index]);
            }
        }
    }
}

/// The precise idempotency contract: a retry (the same event, so the same timestamp) is caught
/// however late; an `id` reused for an event of another day is caught while the first one is
/// unsealed, and once it is sealed only within its partition (the day of its timestamp).
#[test]
fn store_sealed_keys_are_looked_up_in_the_retried_events_partition() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_us();
    let store = Store::open(options(dir.path())).unwrap();
    let first = event("acct_1", 1, now);
    let mut other_day = first.clone();
    other_day.timestamp_us = now - 3 * MICROS_PER_DAY;
    store.append(vec![first.clone()]).unwrap();
    // Unsealed: any timestamp is caught.
    assert_eq!(store.append(vec![other_day.clone()]).unwrap().accepted, 0);
    store.seal().unwrap();
    // Sealed: the retry is caught, also after a reopen.
    assert_eq!(
        store.append(vec![first.clone()]).unwrap().duplicates.len(),
        1
    );
    drop(store);
    let store = Store::open(options(dir.path())).unwrap();
    assert_eq!(store.append(vec![first]).unwrap().duplicates.len(), 1);
    // The same id on an event of another day is a different event there.
    assert_eq!(store.append(vec![other_day]).unwrap().accepted, 1);
}

#[test]
fn store_merge_keeps_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_us();
    let store = Store::open(options(dir.path())).unwrap();
    append_sealed_rounds(&store, 6, now);
    let before = store.read_all().unwrap();
    assert_eq!(store.stats().segments, 6);
    assert_eq!(store.merge().unwrap(), 1);
    assert_eq!(store.stats().segments, 1);
    assert_eq!(store.read_all().unwrap(), before);
    drop(store);
    let store = Store::open(options(dir.path())).unwrap();
    assert_eq!(store.read_all().unwrap(), before);
    let files: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
}

/// A merge that fails (one of its segments cannot be read) leaves those segments alone for a
/// while and does not hold back the other partitions' merges, which it used to stop at every
/// pass for good.
#[test]
fn store_a_failing_merge_does_not_stop_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_us();
    let store = Store::open(options(dir.path())).unwrap();
    append_sealed_rounds(&store, 6, now - 2 * MICROS_PER_DAY);
    append_sealed_rounds(&store, 6, now);
    assert_eq!(store.stats().segments, 12);
    // Damage a block of one of the older day's segments (its footer stays whole).
    let older = store
        .snapshot()
        .segments
        .iter()
        .find(|s| s.entry.min_timestamp_us < now - MICROS_PER_DAY)
        .unwrap()
        .path
        .clone();
    let mut bytes = std::fs::read(&older).unwrap();
    bytes[64] ^= 0xff;
    std::fs::write(&older, &bytes).unwrap();
    assert!(store.merge().is_err(), "the damaged merge is reported");
    assert_eq!(store.stats().segments, 7, "today's six were merged");
    // Left alone now: the next pass does not try it again at once.
    assert_eq!(store.merge().unwrap(), 0);
}

/// Merges stop at `merge_bytes_max` of input segment files too (rows with large `details`
/// decode to much more memory than their row count says).
#[test]
fn store_merges_stay_within_merge_bytes_max() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_us();
    let store = Store::open(options(dir.path())).unwrap();
    append_sealed_rounds(&store, 6, now);
    let largest = store
        .snapshot()
        .segments
        .iter()
        .map(|s| s.entry.bytes)
        .max()
        .unwrap();
    drop(store);
    let mut opts = options(dir.path());
    opts.merge_bytes_max = largest * 2 + largest / 2;
    let store = Store::open(opts).unwrap();
    assert_eq!(store.merge().unwrap(), 1);
    assert_eq!(store.stats().segments, 5, "two segments merged, not six");
}

/// A merge holds its rows decoded, and long repetitive values compress so well that neither
/// rows nor file bytes bound that: it holds at most `tail_bytes_max` of decoded events. Six
/// segments of about 850 KB each decoded (a few KB each on disk) under a 2 MiB bound merge in
/// pairs, never three or more in one merge. After a reopen their sizes are unknown until a
/// merge reads them: the first pass measures and merges nothing rather than going over.
#[test]
fn store_merges_hold_at_most_tail_bytes_max_of_decoded_rows() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_us();
    let mut opts = options(dir.path());
    opts.tail_bytes_max = 2 << 20;
    opts.merge_segments_min = 2;
    let store = Store::open(opts.clone()).unwrap();
    let blob = "a".repeat(16_000);
    for round in 0..6u64 {
        let batch: Vec<Event> = (0..50)
            .map(|n| Event {
                details: Some(format!(r#"{{"blob":"{blob}","n":{n}}}"#).into()),
                ..event("acct_1", round * 100 + n, now)
            })
            .collect();
        store.append(batch).unwrap();
        store.seal().unwrap();
    }
    let before = store.read_all().unwrap();
    let snapshot = store.snapshot();
    let file_bytes: u64 = snapshot.segments.iter().map(|s| s.entry.bytes).sum();
    assert!(
        file_bytes < 200_000,
        "compressible rows: {file_bytes} bytes"
    );
    drop(snapshot);
    let mut merges = 0;
    while store.merge().unwrap() > 0 {
        merges += 1;
        assert!(merges <= 6, "merges go on without end");
    }
    assert_eq!(merges, 3);
    let rows = |store: &Store| -> Vec<u64> {
        store
            .snapshot()
            .segments
            .iter()
            .map(|s| s.entry.rows)
            .collect()
    };
    assert_eq!(rows(&store), vec![100, 100, 100], "pairs only");
    assert_eq!(store.read_all().unwrap(), before);
    drop(store);
    let store = Store::open(opts).unwrap();
    assert_eq!(
        store.merge().unwrap(),
        0,
        "three unknown sizes: measured, not merged"
    );
    assert_eq!(store.merge().unwrap(), 0, "no two fit together");
    assert_eq!(rows(&store), vec![100, 100, 100]);
    assert_eq!(store.read_all().unwrap(), before);
}

/// EVENT.md lets `actor.id` be as long as the event allows, and a segment's dictionary of a
/// column is one chunk of at most `chunk_bytes_max` bytes (256 MiB in the format): a seal
/// whose partition has more distinct long values than fit cuts the partition into several
/// segments instead of failing (and failing again at every attempt while the tail fills).
/// Shown here with a 64 KiB chunk limit and 2 KB ids.
#[test]
fn store_seal_splits_a_partition_whose_dictionaries_would_not_fit_one_segment() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_us();
    let mut opts = options(dir.path());
    opts.encode.chunk_bytes_max = 64 << 10;
    let encode = opts.encode.clone();
    let store = Store::open(opts.clone()).unwrap();
    let events: Vec<Event> = (0..100u64)
        .map(|n| {
            let mut event = event("acct_1", n, now);
            event.actor.id = Some(format!("{n:04}{}", "x".repeat(2000)).into());
            event
        })
        .collect();
    store.append(events.clone()).unwrap();
    // One segment of them all is refused by the encoder: the split is what makes it work.
    let stored = store.read_all().unwrap();
    let whole = auditlog_engine::segment::encode_segment(99, &stored, &encode);
    assert!(
        matches!(whole, Err(Error::BatchTooLarge { .. })),
        "{:?}",
        whole.map(|_| ())
    );
    store.seal().unwrap();
    let segments = store.stats().segments;
    assert!(segments >= 4, "{segments} segments");
    assert_eq!(store.read_all().unwrap(), stored);
    // Merges do not put the pieces back together (which the encoder would refuse).
    assert_eq!(store.merge().unwrap(), 0);
    assert_eq!(store.stats().segments, segments);
    // Retried, every event is found in whichever piece holds it.
    let retried = store.append(events).unwrap();
    assert_eq!(retried.accepted, 0);
    assert_eq!(retried.duplicates.len(), 100);
    assert_eq!(store.read_all().unwrap(), stored);
    drop(store);
    let store = Store::open(opts).unwrap();
    assert_eq!(store.read_all().unwrap(), stored);
    assert!(store
        .read_all()
        .unwrap()
        .iter()
        .all(|e| e.event.actor.id.as_ref().unwrap().len() == 2004));
}

/// A store whose MANIFEST was lost (deleted by hand, a partial restore) is not opened as a
/// new one: that would remove its sealed segments as orphans, and their events with them, as
/// the WAL no longer holds them. The open and `verify` refuse, naming the manifest, and leave
/// every file as it was; with the manifest back, the store opens whole.
#[test]
fn store_without_its_manifest_refuses_to_open_and_removes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_us();
    // Small WAL files, so that the seals trim the WAL: the first events are only in segments.
    let options = |dir: &std::path::Path| {
        let mut opts = options(dir);
        opts.wal_file_bytes = 4 << 10;
        opts
    };
    let store = Store::open(options(dir.path())).unwrap();
    append_sealed_rounds(&store, 3, now);
    let wal_first = auditlog_engine::wal::recovery::list_files(&dir.path().join("wal")).unwrap();
    assert!(
        wal_first.first().is_none_or(|(seq, _)| *seq > 1),
        "{wal_first:?}"
    );
    let before = store.read_all().unwrap();
    drop(store);
    let manifest = dir.path().join("MANIFEST");
    let kept = std::fs::read(&manifest).unwrap();
    std::fs::remove_file(&manifest).unwrap();
    let files_before = walk(dir.path());
    match Store::open(options(dir.path())) {
        Err(Error::Corrupt { path, reason, .. }) => {
            assert_eq!(path, manifest);
            assert!(reason.contains("manifest is missing"), "{reason}");
        }
        other => panic!("opened without its manifest: {:?}", other.map(|_| ())),
    }
    assert!(matches!(
        auditlog_engine::verify::verify_dir(dir.path()),
        Err(Error::Corrupt { .. })
    ));
    assert_eq!(walk(dir.path()), files_before, "nothing was changed");
    std::fs::write(&manifest, kept).unwrap();
    let store = Store::open(options(dir.path())).unwrap();
    assert_eq!(store.read_all().unwrap(), before);
}

/// A partition directory a retention pass set aside (`.{day}.dropping`) and did not remove
/// before the process stopped is put back when nothing took its place: the store opens with
/// it (here there is no archive to finish the move with).
#[test]
fn store_open_puts_back_a_partition_set_aside_by_retention() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(options(dir.path())).unwrap();
    store.append(vec![event("acct_1", 1, now_us())]).unwrap();
    store.seal().unwrap();
    let before = store.read_all().unwrap();
    let live = store.snapshot().segments[0]
        .path
        .parent()
        .unwrap()
        .to_path_buf();
    drop(store);
    let aside = live.with_file_name(format!(
        ".{}.dropping",
        live.file_name().unwrap().to_string_lossy()
    ));
    std::fs::rename(&live, &aside).unwrap();
    let store = Store::open(options(dir.path())).unwrap();
    assert_eq!(store.read_all().unwrap(), before);
    assert!(live.exists() && !aside.exists());
}

#[test]
fn store_merge_pass_yields_to_a_due_seal_between_merges() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_us();
    let day = MICROS_PER_DAY;
    let mut opts = options(dir.path());
    opts.seal_bytes = 1;
    opts.merge_segments_min = 2;
    let store = Store::open(opts).unwrap();
    // Three partitions (days) of two segments each.
    for round in 0..2u64 {
        let events: Vec<Event> = (0..3)
            .flat_map(|d| (0..4).map(move |n| (d, round * 100 + d * 10 + n)))
            .map(|(d, n)| event("acct_1", n, now - d as i64 * day))
            .collect();
        store.append(events).unwrap();
        store.seal().unwrap();
    }
    assert_eq!(store.stats().segments, 6);
    // A seal is due (the tail holds more than seal_bytes): the pass stops after one merge.
    store.append(vec![event("acct_1", 999, now)]).unwrap();
    assert_eq!(store.merge().unwrap(), 1);
    assert_eq!(store.stats().segments, 5);
    // Once sealed, the next pass merges the rest.
    store.seal().unwrap();
    assert_eq!(store.merge().unwrap(), 2);
    assert_eq!(store.read_all().unwrap().len(), 25);
}

#[test]
fn store_merges_stay_within_merge_rows_max_and_are_counted() {
    use std::sync::atomic::Ordering::Relaxed;
    let dir = tempfile::tempdir().unwrap();
    let now = now_us();
    let mut options = options(dir.path());
    options.merge_rows_max = 120;
    options.merge_segments_min = 2;
    let store = Store::open(options).unwrap();
    append_sealed_rounds(&store, 4, now);
    let before = store.read_all().unwrap();
    // 50+50 twice; then the two segments of 100 would make 200 > 120: left as they are.
    let mut merges = 0;
    loop {
        match store.merge().unwrap() {
            0 => break,
            made => merges += made,
        }
    }
    assert_eq!(merges, 2);
    assert_eq!(store.stats().segments, 2);
    assert_eq!(store.read_all().unwrap(), before);
    let metrics = store.metrics();
    assert_eq!(metrics.rows_sealed.load(Relaxed), 200);
    assert_eq!(metrics.rows_merged.load(Relaxed), 200);
    assert_eq!(metrics.merge.count(), 2);
    assert_eq!(metrics.seal.count(), 4);
}

#[test]
fn store_sealed_duplicates_are_looked_up_by_client_timestamp_or_in_the_whole_partition() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_us();
    let today = now - now.rem_euclid(MICROS_PER_DAY);
    let hour = 3_600_000_000;
    let store = Store::open(options(dir.path())).unwrap();
    // Three segments of today's partition, an hour apart.
    let mut seqs = HashMap::new();
    for round in 0..3u64 {
        let batch: Vec<Event> = (0..20)
            .map(|n| {
                event(
                    "acct_1",
                    round * 100 + n,
                    today + round as i64 * hour + n as i64,
                )
            })
            .collect();
        let answer = store.append(batch).unwrap();
        for n in 0..20 {
            seqs.insert(round * 100 + n, answer.first_seq.unwrap() + n);
        }
        store.seal().unwrap();
    }
    assert_eq!(store.stats().segments, 3);

    // A retry (same event, same timestamp) of a row of each segment: duplicates.
    let retries: Vec<Event> = [5u64, 107, 219]
        .iter()
        .map(|&n| {
            event(
                "acct_1",
                n,
                today + (n / 100) as i64 * hour + (n % 100) as i64,
            )
        })
        .collect();
    let answer = store.append(retries).unwrap();
    assert_eq!(answer.accepted, 0);
    let found: Vec<u64> = answer.duplicates.iter().map(|d| d.seq).collect();
    assert_eq!(found, vec![seqs[&5], seqs[&107], seqs[&219]]);

    // Sent without a timestamp, the retry was stamped with the receiving time: the original
    // is looked for in every segment of the partition and found.
    let stamped_at = today + 10 * hour;
    let restamped = event("acct_1", 7, stamped_at);
    let hints = AppendHints {
        server_timestamp_us: Some(stamped_at),
        ..Default::default()
    };
    let answer = store.append_with(vec![restamped.clone()], hints).unwrap();
    assert_eq!(answer.accepted, 0, "{answer:?}");
    assert_eq!(answer.duplicates[0].seq, seqs[&7]);

    // The same id with another client timestamp is another event once the first is sealed
    // (a retry re-sends the same event; see AppendHints).
    let answer = store.append(vec![restamped]).unwrap();
    assert_eq!(answer.accepted, 1);
}

#[test]
fn store_a_server_stamped_retry_finds_its_original_sealed_the_day_before() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_us();
    let today = now - now.rem_euclid(MICROS_PER_DAY);
    let hour = 3_600_000_000;
    let store = Store::open(options(dir.path())).unwrap();
    // Sent without a timestamp at 23:00 UTC yesterday, and sealed.
    let stamped = today - hour;
    let answer = store
        .append_with(
            vec![event("acct_1", 1, stamped)],
            AppendHints {
                server_timestamp_us: Some(stamped),
                ..Default::default()
            },
        )
        .unwrap();
    let seq = answer.first_seq.unwrap();
    store.seal().unwrap();
    assert_eq!(store.stats().tail_events, 0);
    // The client retries after midnight: the retry is stamped again, on today's partition.
    let restamped = today + hour;
    let retry = event("acct_1", 1, restamped);
    let answer = store
        .append_with(
            vec![retry.clone()],
            AppendHints {
                server_timestamp_us: Some(restamped),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(answer.accepted, 0, "{answer:?}");
    assert_eq!(answer.duplicates[0].seq, seq);
    // The same id with a client timestamp on another day is another event (a retry re-sends
    // the same event).
    assert_eq!(store.append(vec![retry]).unwrap().accepted, 1);
}

#[test]
fn store_a_retry_finds_its_original_sealed_under_the_tenants_former_retention_class() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_us();
    let store = Store::open(options(dir.path())).unwrap();
    let original = event("acct_1", 1, now);
    let seq = store
        .append(vec![original.clone()])
        .unwrap()
        .first_seq
        .unwrap();
    store.seal().unwrap();
    drop(store);
    // The tenant is moved to a longer retention class: its next events go to that class's
    // partitions, its earlier ones stay where they were sealed.
    let mut moved = options(dir.path());
    moved.retention.class_days.insert("extended".into(), 365);
    moved
        .retention
        .tenant_classes
        .insert("acct_1".into(), "extended".into());
    let store = Store::open(moved).unwrap();
    assert_eq!(store.stats().tail_events, 0);
    let answer = store.append(vec![original.clone()]).unwrap();
    assert_eq!(answer.accepted, 0, "{answer:?}");
    assert_eq!(answer.duplicates[0].seq, seq);
    // A new event of the tenant is stored, under its new class.
    assert_eq!(
        store
            .append(vec![event("acct_1", 2, now)])
            .unwrap()
            .accepted,
        1
    );
    store.seal().unwrap();
    assert_eq!(store.stats().partitions, 2);
    // And after both are sealed, a retry of each is still caught.
    let answer = store
        .append(vec![original, event("acct_1", 2, now)])
        .unwrap();
    assert_eq!(answer.accepted, 0, "{answer:?}");
}

/// Appends `rounds` batches of 50 events of `acct_1` at `now`, sealing after each (one
/// segment per round).
fn append_sealed_rounds(store: &Store, rounds: u64, now: i64) {
    for round in 0..rounds {
        let batch: Vec<Event> = (0..50)
            .map(|n| event("acct_1", round * 100 + n, now))
            .collect();
        store.append(batch).unwrap();
        store.seal().unwrap();
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn store_retention_archives_then_drops_old_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let archive = tempfile::tempdir().unwrap();
    let now = now_us();
    let mut opts = options(dir.path());
    opts.archive_dir = Some(archive.path().to_path_buf());
    opts.retention.class_days.insert("standard".into(), 30);
    opts.retention.class_days.insert("extended".into(), 365);
    opts.retention
        .tenant_classes
        .insert("acct_big".into(), "extended".into());
    let store = Store::open(opts.clone()).unwrap();
    let old = now - 40 * MICROS_PER_DAY;
    store
        .append((0..20).map(|n| event("acct_1", n, old)).collect())
        .unwrap();
    store
        .append((20..30).map(|n| event("acct_big", n, old)).collect())
        .unwrap();
    store
        .append((30..40).map(|n| event("acct_1", n, now)).collect())
        .unwrap();
    store.seal().unwrap();
    let report = store.expire(now).unwrap();
    assert_eq!(report.partitions.len(), 1);
    assert_eq!(report.rows, 20);
    assert!(report.archived);
    let left = store.read_all().unwrap();
    assert_eq!(left.len(), 20);
    assert!(left
        .iter()
        .all(|e| e.event.tenant == "acct_big" || e.event.timestamp_us == now));
    let archived = walk(archive.path());
    assert!(
        archived
            .iter()
            .any(|p| p.to_string_lossy().contains("standard/")),
        "{archived:?}"
    );
    drop(store);
    let store = Store::open(opts.clone()).unwrap();
    assert_eq!(store.read_all().unwrap().len(), 20);
    drop(store);

    // The configuration loses the `extended` class (renamed, or deleted by mistake): its data
    // would be expired at the default class's 30 days by the next pass. Open refuses instead,
    // naming the class.
    let mut renamed = opts.clone();
    renamed.retention.class_days.remove("extended");
    renamed.retention.tenant_classes.clear();
    let Err(error) = Store::open(renamed) else {
        panic!("a store holding an unconfigured class opened")
    };
    let error = error.to_string();
    assert!(
        error.contains("\"extended\"") && error.contains("retention class"),
        "{error}"
    );
    let store = Store::open(opts).unwrap();
    assert_eq!(store.read_all().unwrap().len(), 20);
}

#[test]
fn store_retention_days_are_bounded_and_never_overflow_into_expiry() {
    // Days past 100 years are refused (a huge "keep forever" number used to overflow the
    // microsecond arithmetic and expire every partition at once).
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.retention
        .class_days
        .insert("standard".into(), 200_000_000);
    let Err(error) = Store::open(opts.clone()) else {
        panic!("200,000,000 retention days were accepted")
    };
    let error = error.to_string();
    assert!(
        error.contains("200000000") && error.contains("36500"),
        "{error}"
    );

    // The longest allowed retention keeps a 40-day-old partition.
    opts.retention.class_days.insert("standard".into(), 36_500);
    let store = Store::open(opts).unwrap();
    let now = now_us();
    let old = now - 40 * MICROS_PER_DAY;
    store
        .append((0..10).map(|n| event("acct_1", n, old)).collect())
        .unwrap();
    store.seal().unwrap();
    assert!(store.expire(now).unwrap().partitions.is_empty());
    assert!(store
        .expire(now + 36_000 * MICROS_PER_DAY)
        .unwrap()
        .partitions
        .is_empty());
    assert_eq!(store.read_all().unwrap().len(), 10);
}

#[test]
fn store_backpressure_answers_busy_when_the_tail_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.tail_bytes_max = 64 << 10;
    opts.busy_wait = Duration::from_millis(50);
    let store = Store::open(opts).unwrap();
    let now = now_us();
    let mut n = 0;
    let error = loop {
        match store.append((n..n + 50).map(|i| event("acct_1", i, now)).collect()) {
            Ok(_) => n += 50,
            Err(error) => break error,
        }
        assert!(n < 100_000, "never got busy");
    };
    assert!(matches!(error, Error::Busy { .. }), "{error}");
    assert!(error.to_string().contains("store busy"), "{error}");
    // A small event that must be recorded whatever the load (the server's record of an
    // access) goes in past the bound; the next ordinary batch is still refused.
    let urgent = AppendHints {
        skip_tail_bound: true,
        ..Default::default()
    };
    let recorded = store
        .append_with(vec![event("auditlog.system", 0, now)], urgent)
        .unwrap();
    assert_eq!(recorded.accepted, 1);
    assert!(matches!(
        store.append(vec![event("acct_1", n + 500_000, now)]),
        Err(Error::Busy { .. })
    ));
    store.seal().unwrap();
    store
        .append(vec![event("acct_1", n + 1_000_000, now)])
        .unwrap();
}

#[test]
fn store_batch_over_the_limit_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.batch_events_max = 10;
    let store = Store::open(opts).unwrap();
    let error = store
        .append((0..11).map(|n| event("acct_1", n, now_us())).collect())
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "batch too large: event count is 11, limit 10"
    );
    assert!(store.read_all().unwrap().is_empty());
}

#[test]
fn store_second_open_of_a_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _store = Store::open(options(dir.path())).unwrap();
    let error = Store::open(options(dir.path())).err().unwrap();
    assert!(matches!(error, Error::Locked { .. }), "{error}");
}

#[test]
fn store_flipped_bit_in_a_sealed_segment_is_reported_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(options(dir.path())).unwrap();
    store
        .append((0..200).map(|n| event("acct_1", n, now_us())).collect())
        .unwrap();
    store.seal().unwrap();
    drop(store);
    let segment = walk(dir.path())
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[100] ^= 0x20;
    std::fs::write(&segment, &bytes).unwrap();
    let error = match Store::open(options(dir.path())) {
        Ok(store) => store.verify().unwrap_err(),
        Err(error) => error,
    };
    let text = error.to_string();
    assert!(error.is_corruption(), "{text}");
    assert!(text.contains(&segment.display().to_string()), "{text}");
    assert!(text.contains("offset"), "{text}");
}

/// Field `field` (1-based, as proc(5) numbers them) of the `stat` of each of this process's
/// threads named `name`. Threads of other tests come and go: one that vanished is skipped.
#[cfg(target_os = "linux")]
fn thread_stat_fields(name: &str, field: usize) -> Vec<i64> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let task = task.path();
            let comm = std::fs::read_to_string(task.join("comm")).ok()?;
            if comm.trim() != name {
                return None;
            }
            let stat = std::fs::read_to_string(task.join("stat")).ok()?;
            // Fields after the command name (which is in parentheses and may hold spaces).
            let rest = &stat[stat.rfind(')')? + 2..];
            rest.split(' ').nth(field - 3)?.parse().ok()
        })
        .collect()
}

/// The scheduling policies of this process's threads named `name` (field 41 of `stat`).
#[cfg(target_os = "linux")]
fn thread_policies(name: &str) -> Vec<i64> {
    thread_stat_fields(name, 41)
}

/// The nice value of this process's thread named `name` (field 19 of its `stat`).
#[cfg(target_os = "linux")]
fn thread_nice(name: &str) -> Option<i64> {
    thread_stat_fields(name, 19).first().copied()
}

/// Runs test `name` again in a process of its own, where no other test's store runs threads
/// of the same names, and returns `false`; in that process, returns `true` (go on with it).
#[cfg(target_os = "linux")]
fn alone_in_own_process(name: &str) -> bool {
    const CHILD: &str = "AUDITLOG_TEST_ALONE";
    if std::env::var_os(CHILD).is_some() {
        return true;
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--test-threads", "1", "--nocapture"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{name} in its own process:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The filter matched it: it ran, it was not skipped.
    assert!(stdout.contains("1 passed"), "{stdout}");
    false
}

#[cfg(target_os = "linux")]
#[test]
fn store_background_thread_runs_nicer_than_the_rest_by_the_configured_amount() {
    if !alone_in_own_process(
        "store_background_thread_runs_nicer_than_the_rest_by_the_configured_amount",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut options = StoreOptions::new(dir.path());
    options.background_nice = 7;
    let store = Store::open(options).unwrap();
    // Appends run on the caller's thread and the commit thread, at the process's priority;
    // the background thread lowers its own as it starts. (A thread takes its name once it
    // runs: both are looked for a while.)
    let mut found = (None, Vec::new());
    for _ in 0..200 {
        found = (
            thread_nice("auditlog-commit"),
            thread_stat_fields("auditlog-seal", 19),
        );
        if let (Some(base), nices) = &found {
            if nices.contains(&(base + 7).min(19)) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let (base, nices) = found;
    let base = base.expect("the commit thread's nice value");
    let want = (base + 7).min(19);
    assert!(
        nices == vec![want],
        "the background thread's nice value: {want}, found {nices:?}"
    );
    drop(store);
}

/// The background thread runs under SCHED_IDLE by default (woken ingest threads preempt it at
/// once), and at the process's policy when `background_idle` is off. Run in a process of its
/// own, so that the threads looked at are this test's store's.
#[cfg(target_os = "linux")]
#[test]
fn store_background_thread_takes_the_idle_policy_unless_told_not_to() {
    if !alone_in_own_process("store_background_thread_takes_the_idle_policy_unless_told_not_to") {
        return;
    }
    for idle in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut options = StoreOptions::new(dir.path());
        options.background_idle = idle;
        let store = Store::open(options).unwrap();
        let want = i64::from(if idle {
            libc::SCHED_IDLE
        } else {
            libc::SCHED_OTHER
        });
        // A thread takes its name once it runs: both are looked for a while.
        let other = i64::from(libc::SCHED_OTHER);
        let (mut found, mut commit) = (Vec::new(), Vec::new());
        for _ in 0..200 {
            found = thread_policies("auditlog-seal");
            commit = thread_policies("auditlog-commit");
            if found == vec![want] && commit == vec![other] {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            found,
            vec![want],
            "idle {idle}: the background thread's policy"
        );
        assert_eq!(
            commit,
            vec![other],
            "the commit thread keeps the process's policy"
        );
        drop(store);
    }
}

/// A store whose background thread releases memory every 20 ms and seals only when asked.
fn releasing_options(dir: &std::path::Path) -> StoreOptions {
    let mut options = StoreOptions::new(dir);
    options.seal_interval = std::time::Duration::from_secs(3600);
    options.page_release_interval = Some(std::time::Duration::from_millis(20));
    options
}

/// Resident KiB of this process's mappings of files whose path ends with `suffix`; `None` when
/// no such file is mapped.
#[cfg(target_os = "linux")]
fn mapped_rss_kib(suffix: &str) -> Option<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut in_file = false;
    let mut total = None;
    for line in smaps.lines() {
        if let Some(rss) = line.strip_prefix("Rss:") {
            if in_file {
                let kib: u64 = rss.trim().trim_end_matches(" kB").trim().parse().unwrap();
                *total.get_or_insert(0) += kib;
            }
        } else if line.split_whitespace().next().is_some_and(|range| {
            range.contains('-') && range.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
        }) {
            in_file = line.trim_end().ends_with(suffix);
        }
    }
    total
}

#[cfg(target_os = "linux")]
#[test]
fn store_background_releases_mapped_segment_pages_and_reads_map_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(releasing_options(dir.path())).unwrap();
    let now = now_us();
    let batch: Vec<Event> = (0..5000)
        .map(|n| event(&format!("acct_{}", n % 7), n, now - n as i64))
        .collect();
    store.append(batch).unwrap();
    store.seal().unwrap();
    let segment_name = format!("{:016x}.seg", 1);
    let expected = store.read_all().unwrap();
    assert_eq!(expected.len(), 5000);
    // Reading every row maps the file's pages; the background thread then drops them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        store.read_all().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let resident = mapped_rss_kib(&segment_name).expect("the segment file is mapped");
        if resident == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "segment pages still resident: {resident} KiB"
        );
    }
    // Reads map the pages back and see the same rows.
    assert_eq!(store.read_all().unwrap(), expected);
}

#[test]
fn store_keeps_decoded_dictionaries_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = releasing_options(dir.path());
    options.dictionary_budget_bytes = 0;
    let store = Store::open(options).unwrap();
    let now = now_us();
    for round in 0..2u64 {
        let batch: Vec<Event> = (0..3000)
            .map(|n| {
                event(
                    &format!("acct_{}", n % 7),
                    round * 10_000 + n,
                    now - n as i64,
                )
            })
            .collect();
        store.append(batch).unwrap();
        store.seal().unwrap();
    }
    // Reading every row decodes every dictionary of both segments.
    let held = store.snapshot();
    let expected = store.read_all().unwrap();
    assert_eq!(expected.len(), 6000);
    assert!(held
        .segments
        .iter()
        .all(|s| s.segment.dictionary_bytes() > 0));
    // Past the budget (0 here) the background thread swaps in instances without them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store
        .snapshot()
        .segments
        .iter()
        .any(|s| s.segment.dictionary_bytes() > 0)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "dictionaries still held"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // A snapshot taken before keeps its instances, and new reads decode again.
    assert!(held
        .segments
        .iter()
        .all(|s| s.segment.dictionary_bytes() > 0));
    drop(held);
    assert_eq!(store.read_all().unwrap(), expected);
}

/// Counts the hook's calls; each attachment is the segment's id. Fails while `fail` is set,
/// and always for the segment whose id is in `fail_id` (0: none).
#[derive(Default)]
struct CountingHook {
    written: std::sync::atomic::AtomicUsize,
    opened: std::sync::atomic::AtomicUsize,
    fail: std::sync::atomic::AtomicBool,
    fail_id: std::sync::atomic::AtomicU64,
}

impl auditlog_engine::store::SegmentHook for CountingHook {
    fn segment_written(
        &self,
        _partition_dir: &std::path::Path,
        entry: &auditlog_engine::manifest::SegmentEntry,
        _segment: &auditlog_engine::segment::Segment,
    ) -> auditlog_engine::Result<Option<auditlog_engine::store::Attachment>> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst)
            || self.fail_id.load(std::sync::atomic::Ordering::SeqCst) == entry.segment_id
        {
            return Err(Error::Io {
                path: "index".into(),
                source: std::io::Error::other("injected index failure"),
            });
        }
        self.written
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(Some(std::sync::Arc::new(entry.segment_id)))
    }

    fn segment_opened(
        &self,
        _partition_dir: &std::path::Path,
        entry: &auditlog_engine::manifest::SegmentEntry,
        _segment: &auditlog_engine::segment::Segment,
    ) -> auditlog_engine::Result<Option<auditlog_engine::store::Attachment>> {
        self.opened
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(Some(std::sync::Arc::new(entry.segment_id)))
    }
}

/// Appends batches of 20 events until the tail holds at least `bytes`; returns the next `n`.
fn fill_tail(store: &Store, mut n: u64, bytes: u64, now: i64) -> u64 {
    while store.stats().tail_bytes < bytes {
        store
            .append((n..n + 20).map(|i| event("acct_1", i, now)).collect())
            .unwrap();
        n += 20;
    }
    n
}

/// A tail bound of 256 KiB (a seal defers indexing once it holds 192 KiB) and `hook`, for the
/// deferred-indexing tests; `options` then changes what a test needs.
fn deferring_options(
    dir: &std::path::Path,
    hook: &std::sync::Arc<CountingHook>,
    background: bool,
) -> StoreOptions {
    let mut opts = if background {
        StoreOptions::new(dir)
    } else {
        options(dir)
    };
    opts.tail_bytes_max = 256 << 10;
    opts.segment_hook = Some(hook.clone());
    opts
}

/// Which segments (by id) have an attachment, in snapshot order.
fn attached(store: &Store) -> Vec<(u64, bool)> {
    store
        .snapshot()
        .segments
        .iter()
        .map(|s| (s.entry.segment_id, s.attachment.is_some()))
        .collect()
}

/// A seal that finds the tail at three quarters of its bound publishes its segment before the
/// hook runs (unless `index_deferral` is off); the events read the same; a later seal of a
/// small tail runs the hook at once; `index_deferred` (or the next open) runs it for the
/// deferred one, which is then swapped for an instance with its attachment.
#[test]
fn store_defers_indexing_while_the_tail_is_near_its_bound_and_catches_up_later() {
    use std::sync::atomic::Ordering::SeqCst;
    let now = now_us();
    for deferral in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let hook = std::sync::Arc::new(CountingHook::default());
        let open = || {
            let mut opts = deferring_options(dir.path(), &hook, false);
            opts.index_deferral = deferral;
            Store::open(opts).unwrap()
        };
        let store = open();
        let n = fill_tail(&store, 0, 192 << 10, now);
        let before = store.read_all().unwrap();
        store.seal().unwrap();
        assert_eq!(store.read_all().unwrap(), before, "deferral {deferral}");
        let stats = store.stats();
        let deferred_now = u64::from(deferral);
        assert_eq!(stats.unindexed_segments, deferred_now);
        assert_eq!(hook.written.load(SeqCst), 1 - deferred_now as usize);
        assert_eq!(attached(&store), [(1, !deferral)]);
        assert_eq!(store.metrics().segments_deferred.load(SeqCst), deferred_now);

        // A small tail: indexed as it is sealed, whatever came before.
        fill_tail(&store, n, 1, now);
        store.seal().unwrap();
        assert_eq!(attached(&store), [(1, !deferral), (2, true)]);
        let all = store.read_all().unwrap();

        assert_eq!(store.index_deferred().unwrap(), deferred_now as usize);
        assert_eq!(attached(&store), [(1, true), (2, true)]);
        assert_eq!(hook.written.load(SeqCst), 2);
        assert_eq!(store.stats().unindexed_segments, 0);
        assert_eq!(store.read_all().unwrap(), all);
        assert_eq!(store.index_deferred().unwrap(), 0, "nothing left");
        drop(store);

        // Left deferred at close: the next open gives it its attachment (through the hook's
        // `segment_opened`, which builds missing companion files).
        let store = open();
        let n = fill_tail(&store, 1_000_000, 192 << 10, now);
        store.seal().unwrap();
        assert_eq!(store.stats().unindexed_segments, deferred_now);
        drop(store);
        let opened_before = hook.opened.load(SeqCst);
        let store = open();
        assert_eq!(hook.opened.load(SeqCst), opened_before + 3);
        assert_eq!(attached(&store), [(1, true), (2, true), (3, true)]);
        assert_eq!(store.stats().unindexed_segments, 0);
        assert_eq!(
            store.read_all().unwrap().len() as u64,
            n - 1_000_000 + all.len() as u64
        );
    }
}

/// A deferred segment that a merge rewrites is not indexed twice: the merge's output gets its
/// attachment as merges always do, and the deferred id is dropped.
#[test]
fn store_merged_deferred_segment_is_dropped_from_the_deferred_ones() {
    use std::sync::atomic::Ordering::SeqCst;
    let now = now_us();
    let dir = tempfile::tempdir().unwrap();
    let hook = std::sync::Arc::new(CountingHook::default());
    let mut opts = deferring_options(dir.path(), &hook, false);
    opts.merge_segments_min = 2;
    let store = Store::open(opts).unwrap();
    let n = fill_tail(&store, 0, 192 << 10, now);
    store.seal().unwrap();
    fill_tail(&store, n, 1, now);
    store.seal().unwrap();
    assert_eq!(attached(&store), [(1, false), (2, true)]);
    let all = store.read_all().unwrap();
    assert_eq!(store.merge().unwrap(), 1);
    assert_eq!(attached(&store), [(3, true)]);
    assert_eq!(store.stats().unindexed_segments, 0);
    assert_eq!(store.index_deferred().unwrap(), 0);
    assert_eq!(
        hook.written.load(SeqCst),
        2,
        "the seal of segment 2 and the merge"
    );
    assert_eq!(store.read_all().unwrap(), all);
}

/// With the background thread on, deferred indexes are built once seals stop deferring.
#[test]
fn store_background_builds_deferred_indexes_once_seals_stop_deferring() {
    let now = now_us();
    let dir = tempfile::tempdir().unwrap();
    let hook = std::sync::Arc::new(CountingHook::default());
    let mut opts = deferring_options(dir.path(), &hook, true);
    // Seals only when told to.
    opts.seal_bytes = u64::MAX;
    opts.seal_interval = Duration::from_secs(3600);
    let store = Store::open(opts).unwrap();
    fill_tail(&store, 0, 192 << 10, now);
    store.seal().unwrap();
    assert_eq!(attached(&store), [(1, false)]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while store.stats().unindexed_segments > 0 {
        assert!(std::time::Instant::now() < deadline, "never indexed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(attached(&store), [(1, true)]);
}

/// A segment whose deferred build keeps failing does not hold back the others: the background
/// thread leaves it for a while and builds the next one, and `index_deferred` tries every
/// segment before it reports the failure.
#[test]
fn store_deferred_segment_that_keeps_failing_does_not_hold_back_the_others() {
    use std::sync::atomic::Ordering::SeqCst;
    let now = now_us();
    for background in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let hook = std::sync::Arc::new(CountingHook::default());
        let mut opts = deferring_options(dir.path(), &hook, background);
        // Seals only when told to.
        opts.seal_bytes = u64::MAX;
        opts.seal_interval = Duration::from_secs(3600);
        let store = Store::open(opts).unwrap();
        hook.fail_id.store(1, SeqCst);
        let n = fill_tail(&store, 0, 192 << 10, now);
        store.seal().unwrap();
        fill_tail(&store, n, 192 << 10, now);
        store.seal().unwrap();
        if background {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while attached(&store) != [(1, false), (2, true)] {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{:?}",
                    attached(&store)
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        } else {
            assert_eq!(attached(&store), [(1, false), (2, false)]);
            let error = store.index_deferred().unwrap_err();
            assert!(
                error.to_string().contains("injected index failure"),
                "{error}"
            );
            assert_eq!(attached(&store), [(1, false), (2, true)]);
        }
        assert_eq!(store.stats().unindexed_segments, 1);
        // Once the cause is gone, an explicit call builds the one left at once.
        hook.fail_id.store(0, SeqCst);
        assert_eq!(store.index_deferred().unwrap(), 1);
        assert_eq!(attached(&store), [(1, true), (2, true)]);
        assert_eq!(store.stats().unindexed_segments, 0);
    }
}

/// Files of a segment id left by an attempt that was never published (a seal that failed
/// after the hook wrote them) are removed when the id is written again, so a segment sealed
/// without its indexes does not open with stale ones.
#[test]
fn store_segment_written_again_under_a_reused_id_leaves_no_stale_companion() {
    let now = now_us();
    let dir = tempfile::tempdir().unwrap();
    let hook = std::sync::Arc::new(CountingHook::default());
    let store = Store::open(deferring_options(dir.path(), &hook, false)).unwrap();
    let n = fill_tail(&store, 0, 1, now);
    store.seal().unwrap();
    let partition_dir = store.snapshot().segments[0]
        .path
        .parent()
        .unwrap()
        .to_path_buf();
    let stale = [
        partition_dir.join(format!("{:016x}.idx", 2)),
        partition_dir.join(format!("{:016x}.text", 2)),
    ];
    std::fs::write(&stale[0], b"stale filter index").unwrap();
    std::fs::create_dir(&stale[1]).unwrap();
    std::fs::write(stale[1].join("meta.json"), b"{}").unwrap();
    fill_tail(&store, n, 192 << 10, now);
    store.seal().unwrap();
    assert_eq!(attached(&store), [(1, true), (2, false)]);
    for path in &stale {
        assert!(!path.exists(), "{} is still there", path.display());
    }
}

/// A seal under pressure splits a partition past `seal_split_rows` into segments of disjoint
/// tenants, one per core, encoded at once; every event is read back once, and each segment
/// gets its indexes later like any deferred one.
#[test]
fn store_seal_under_pressure_splits_a_large_partition_by_tenant() {
    let now = now_us();
    let dir = tempfile::tempdir().unwrap();
    let hook = std::sync::Arc::new(CountingHook::default());
    let mut opts = deferring_options(dir.path(), &hook, false);
    opts.seal_split_rows = 10;
    let store = Store::open(opts).unwrap();
    let mut n = 0;
    while store.stats().tail_bytes < 192 << 10 {
        let batch = (n..n + 20)
            .map(|i| event(&format!("acct_{}", i % 13), i, now))
            .collect();
        store.append(batch).unwrap();
        n += 20;
    }
    let before = store.read_all().unwrap();
    store.seal().unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let snapshot = store.snapshot();
    let segments = &snapshot.segments;
    assert!(segments.len() <= cores && segments.len() >= cores.min(2).min(13));
    let mut owner: HashMap<String, u64> = HashMap::new();
    for sealed in segments.iter() {
        assert!(sealed.attachment.is_none());
        for row in sealed.segment.read_all().unwrap() {
            let id = *owner
                .entry(row.event.tenant.to_string())
                .or_insert(sealed.entry.segment_id);
            assert_eq!(
                id, sealed.entry.segment_id,
                "tenant {} in two segments",
                row.event.tenant
            );
        }
    }
    assert_eq!(owner.len(), 13);
    assert_eq!(store.read_all().unwrap(), before);
    assert_eq!(store.stats().unindexed_segments, segments.len() as u64);
    assert_eq!(store.index_deferred().unwrap(), segments.len());
    assert_eq!(store.read_all().unwrap(), before);
}

/// A deferred build that fails leaves the segment unindexed and readable, and a later build
/// gives it its indexes.
#[test]
fn store_failed_deferred_index_build_leaves_the_segment_readable_and_is_retried() {
    use std::sync::atomic::Ordering::SeqCst;
    let now = now_us();
    let dir = tempfile::tempdir().unwrap();
    let hook = std::sync::Arc::new(CountingHook::default());
    let store = Store::open(deferring_options(dir.path(), &hook, false)).unwrap();
    fill_tail(&store, 0, 192 << 10, now);
    let before = store.read_all().unwrap();
    store.seal().unwrap();
    hook.fail.store(true, SeqCst);
    let error = store.index_deferred().unwrap_err();
    assert!(
        error.to_string().contains("injected index failure"),
        "{error}"
    );
    assert_eq!(attached(&store), [(1, false)]);
    assert_eq!(store.stats().unindexed_segments, 1);
    assert_eq!(store.read_all().unwrap(), before);
    hook.fail.store(false, SeqCst);
    assert_eq!(store.index_deferred().unwrap(), 1);
    assert_eq!(attached(&store), [(1, true)]);
    assert_eq!(store.read_all().unwrap(), before);
}

/// A sealed WAL file whose deletion failed, left behind while later seals deleted newer files,
/// is not read at the next open (it would look like a gap in the log): the store opens with
/// every event once, and the next seal deletes the leftover.
#[test]
fn store_opens_past_a_leftover_sealed_wal_file() {
    let now = now_us();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.wal_file_bytes = 16 << 10;
    let wal_files = |dir: &std::path::Path| -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(dir.join("wal"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "wal"))
            .collect();
        files.sort();
        files
    };
    let store = Store::open(opts.clone()).unwrap();
    let mut n = 0;
    while wal_files(dir.path()).len() < 4 {
        store
            .append((n..n + 20).map(|i| event("acct_1", i, now)).collect())
            .unwrap();
        n += 20;
    }
    // The oldest file, as a failed deletion would leave it.
    let oldest = wal_files(dir.path())[0].clone();
    let leftover = std::fs::read(&oldest).unwrap();
    store.seal().unwrap();
    while wal_files(dir.path()).len() < 4 {
        store
            .append((n..n + 20).map(|i| event("acct_1", i, now)).collect())
            .unwrap();
        n += 20;
    }
    store.seal().unwrap();
    let before = store.read_all().unwrap();
    assert_eq!(before.len() as u64, n);
    drop(store);
    assert!(!oldest.exists());
    std::fs::write(&oldest, leftover).unwrap();

    let store = Store::open(opts.clone()).unwrap();
    assert_eq!(store.read_all().unwrap(), before);
    store
        .append((n..n + 20).map(|i| event("acct_1", i, now)).collect())
        .unwrap();
    store.seal().unwrap();
    assert!(!oldest.exists(), "the next seal deletes the leftover");
    drop(store);
    let store = Store::open(opts).unwrap();
    assert_eq!(store.read_all().unwrap().len() as u64, n + 20);
}

/// Reading from a seq before a gap that retention left (a dropped day's seqs) steps over the
/// gap to the next stored events, a window of `limit` seqs at a time; and an append's events
/// count as acknowledged (`acknowledged_seq`) once it has returned.
#[test]
fn store_reads_from_a_seq_across_a_retention_gap() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.retention.class_days.insert("standard".into(), 1);
    let store = Store::open(opts).unwrap();
    let now = now_us();
    let old = (now / MICROS_PER_DAY - 3) * MICROS_PER_DAY;
    for b in 0..30 {
        store
            .append(
                (b * 100..(b + 1) * 100)
                    .map(|n| event("acct_1", n, old))
                    .collect(),
            )
            .unwrap();
    }
    let recent = store
        .append((5000..5010).map(|n| event("acct_1", n, now)).collect())
        .unwrap();
    assert_eq!(recent.first_seq, Some(3001));
    // Set just after the answers go out: the caller may see its answer a moment before.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while store.acknowledged_seq() < 3010 {
        assert!(std::time::Instant::now() < deadline, "never acknowledged");
        std::thread::yield_now();
    }
    store.seal().unwrap();
    assert_eq!(store.expire(now).unwrap().rows, 3000);
    for from in [0, 1, 1500, 3000, 3001, 3005] {
        let seqs: Vec<u64> = store
            .read_from_seq(from, 4)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        let first = from.max(3001);
        assert_eq!(seqs, (first..first + 4).collect::<Vec<_>>(), "from {from}");
    }
    assert!(store.read_from_seq(3011, 4).unwrap().is_empty());
    assert_eq!(store.get(3005).unwrap().unwrap().seq, 3005);
    assert_eq!(store.get(42).unwrap(), None, "dropped by retention");
}
