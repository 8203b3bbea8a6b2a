//! Segments sealed while the tail was near its bound are published before their indexes are
//! built (`StoreOptions::index_deferral`): queries over a mix of such segments, indexed ones
//! and the tail answer exactly as they do once every index is built.

mod common;

use auditlog_engine::event::{Actor, Event, Outcome, Resource};
use auditlog_engine::partition::MICROS_PER_DAY;
use auditlog_engine::store::Store;
use auditlog_index::{count, facets, histogram, parse, search, Field, Scope};

const DAY0_US: i64 = 20_400 * MICROS_PER_DAY;

fn event(n: u64) -> Event {
    let tenant = ["big", "big", "mid", "small"][(n % 4) as usize];
    Event {
        timestamp_us: DAY0_US + (n * 7919 % 86_000) as i64 * 1_000_000,
        tenant: tenant.into(),
        actor: Actor {
            email: Some(format!("user{}@example.com", n % 7).into()),
            ..Actor::default()
        },
        action: ["create", "delete", "start", "stop"][(n % 4) as usize].into(),
        outcome: if n.is_multiple_of(13) {
            Outcome::Failure
        } else {
            Outcome::Success
        },
        resource: Resource {
            kind: ["pod", "vm", "volume"][(n / 3 % 3) as usize].into(),
            name: Some(format!("llama-{}", n % 5).into()),
            ..Resource::default()
        },
        details: Some(format!(r#"{{"region":"eu-{}","gpu":"h100"}}"#, n % 3).into()),
        ..Event::default()
    }
}

/// Every answer the page asks for, for a few queries, as text.
fn answers(store: &Store) -> Vec<String> {
    let snapshot = store.snapshot();
    let mut out = Vec::new();
    for scope in [Scope::one("big"), Scope::new(["mid", "small"]).unwrap()] {
        for text in [
            "",
            "action:delete",
            "llama-3",
            "eu-1 -outcome:failure",
            "type:vm h100",
            "user2@example.com",
        ] {
            let query = parse(text)
                .unwrap()
                .into_query(scope.clone(), DAY0_US + MICROS_PER_DAY);
            let mut paged = query.clone();
            paged.limit = 40;
            let mut seqs = Vec::new();
            loop {
                let page = search(&snapshot, &paged).unwrap();
                seqs.extend(page.events.iter().map(|e| e.seq));
                match page.next_cursor {
                    Some(cursor) => paged.cursor = Some(cursor.parse().unwrap()),
                    None => break,
                }
            }
            let counted = count(&snapshot, &query).unwrap();
            assert_eq!(counted, seqs.len() as u64, "{text:?}");
            out.push(format!("{text:?}: {seqs:?}"));
            for field in [Field::Action, Field::Actor, Field::ResourceType] {
                let values = facets(&snapshot, &query, field, 100).unwrap();
                out.push(format!("{text:?} facets {field}: {values:?}"));
            }
            let buckets = histogram(&snapshot, &query, 3_600_000_000).unwrap();
            out.push(format!("{text:?} histogram: {buckets:?}"));
        }
    }
    out
}

#[test]
fn deferred_segments_answer_as_indexed_ones_do() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open_store_tuned(dir.path(), &[], true, |options| {
        options.tail_bytes_max = 512 << 10;
    });
    let mut n = 0;
    let mut fill = |store: &Store, bytes: u64| {
        while store.stats().tail_bytes < bytes {
            store.append((n..n + 50).map(event).collect()).unwrap();
            n += 50;
        }
    };
    // A deferred segment, an indexed one, another deferred one, and a tail.
    fill(&store, 384 << 10);
    store.seal().unwrap();
    fill(&store, 1);
    store.seal().unwrap();
    fill(&store, 384 << 10);
    store.seal().unwrap();
    fill(&store, 1);
    assert_eq!(store.stats().unindexed_segments, 2);

    let deferred = answers(&store);
    assert!(deferred
        .iter()
        .any(|a| a.starts_with("\"llama-3\": [") && a.len() > 100));
    assert_eq!(store.index_deferred().unwrap(), 2);
    assert_eq!(store.stats().unindexed_segments, 0);
    let indexed = answers(&store);
    assert_eq!(deferred, indexed);
    // The deferred segments now have their indexes (files beside the segment).
    let snapshot = store.snapshot();
    assert!(snapshot
        .segments
        .iter()
        .all(|s| auditlog_index::SegmentIndex::of(s).is_some()));
}

/// Files under `dir` (recursively, text index directories left out) named `*{suffix}`.
fn files_ending(dir: &std::path::Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            if !path.to_string_lossy().ends_with(".text") {
                found.extend(files_ending(&path, suffix));
            }
        } else if path.to_string_lossy().ends_with(suffix) {
            found.push(path);
        }
    }
    found
}

/// A segment whose filter index is gone: a store with a background thread opens at once and
/// builds it there (queries scanning the segment meanwhile); a store without one builds it
/// while it opens. Either way the answers are the same as before.
#[test]
fn missing_indexes_are_built_in_the_background_after_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open_store(dir.path(), &[], true);
    store.append((0..400).map(event).collect()).unwrap();
    store.seal().unwrap();
    store.append((400..800).map(event).collect()).unwrap();
    let expected = answers(&store);
    drop(store);
    for background in [true, false] {
        let indexes = files_ending(dir.path(), ".idx");
        assert_eq!(indexes.len(), 1);
        std::fs::remove_file(&indexes[0]).unwrap();
        let rebuilt = || {
            auditlog_index::segment_index::BUILD_COUNTERS
                .rebuilt
                .load(std::sync::atomic::Ordering::SeqCst)
        };
        let rebuilt_before = rebuilt();
        let store = common::open_store_tuned(dir.path(), &[], true, |options| {
            options.background = background;
            options.seal_interval = std::time::Duration::from_secs(3600);
            // The events are from 2025: the background thread's retention pass must keep them.
            options
                .retention
                .class_days
                .insert("standard".into(), 36_500);
        });
        // Built while opening only without a background thread.
        assert_eq!(rebuilt() - rebuilt_before, u64::from(!background));
        assert_eq!(answers(&store), expected, "background {background}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while store.stats().unindexed_segments > 0 {
            assert!(std::time::Instant::now() < deadline, "never indexed");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let snapshot = store.snapshot();
        assert!(snapshot
            .segments
            .iter()
            .all(|s| auditlog_index::SegmentIndex::of(s).is_some()));
        assert_eq!(files_ending(dir.path(), ".idx").len(), 1);
        assert_eq!(answers(&store), expected, "background {background}");
        drop(snapshot);
        drop(store);
    }
}
