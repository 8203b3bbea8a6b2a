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
