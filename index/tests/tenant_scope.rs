//! Tenant isolation: a query scoped to tenant A never returns, counts, facets or buckets an event
//! of tenant B, whatever its filters and text say, with B's events in the tail, in segments and
//! in blocks shared with A's rows.

mod common;

use auditlog_engine::event::{Actor, Event, Resource};
use auditlog_engine::partition::MICROS_PER_DAY;
use auditlog_engine::store::Store;
use auditlog_index::{count, facets, histogram, parse, search, Field, Order, Query, Scope};

const NOW_US: i64 = 20_400 * MICROS_PER_DAY;

fn event(tenant: &str, n: i64, name: &str) -> Event {
    Event {
        timestamp_us: NOW_US + n,
        tenant: tenant.into(),
        actor: Actor {
            email: Some(format!("{tenant}@example.com").into()),
            ..Actor::default()
        },
        action: "delete".into(),
        resource: Resource {
            kind: "pod".into(),
            name: Some(name.into()),
            ..Resource::default()
        },
        ..Event::default()
    }
}

/// Tenants `a` and `b` interleaved in time; some sealed (tiny blocks shared by both), the rest
/// in the tail. `b`'s events alone mention `secret-b`.
fn store_with_two_tenants(dir: &std::path::Path) -> Store {
    let store = common::open_store(dir, &[], true);
    for round in 0..3 {
        let batch: Vec<Event> = (0..10)
            .flat_map(|i| {
                let n = round * 100 + i;
                [event("a", n, "llama-a"), event("b", n, "secret-b")]
            })
            .collect();
        store.append(batch).unwrap();
        if round < 2 {
            store.seal().unwrap();
        }
    }
    store
}

fn scoped_to_a(text: &str) -> Query {
    parse(text)
        .unwrap()
        .into_query(Scope::one("a"), NOW_US + MICROS_PER_DAY)
}

fn assert_only_a(store: &Store, query: &Query) {
    let snapshot = store.snapshot();
    let mut paged = query.clone();
    paged.limit = 7;
    loop {
        let page = search(&snapshot, &paged).unwrap();
        assert!(
            page.events.iter().all(|e| e.event.tenant == "a"),
            "{query:?}"
        );
        match page.next_cursor {
            Some(cursor) => paged.cursor = Some(cursor.parse().unwrap()),
            None => break,
        }
    }
    for field in Field::ALL {
        let values = facets(&snapshot, query, field, 100).unwrap();
        assert!(
            values.iter().all(|(value, _)| !value.contains('b')),
            "facet {field} of {query:?}: {values:?}"
        );
    }
    let counted = count(&snapshot, query).unwrap();
    let bucketed: u64 = histogram(&snapshot, query, 1)
        .unwrap()
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert_eq!(bucketed, counted, "{query:?}");
    let a_only = store
        .read_all()
        .unwrap()
        .into_iter()
        .filter(|e| e.event.tenant == "a")
        .count() as u64;
    assert!(counted <= a_only, "{query:?}");
}

#[test]
fn scope_tenant_filter_cannot_reach_another_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_two_tenants(dir.path());
    assert!(!store.snapshot().tail.is_empty() && !store.snapshot().segments.is_empty());
    let snapshot = store.snapshot();
    for text in [
        "tenant:b",
        "-tenant:a",
        "secret-b",
        "tenant:b secret-b",
        "actor:b@example.com",
        "email:b@example.com",
        "name:secret-b",
    ] {
        let query = scoped_to_a(text);
        assert_eq!(count(&snapshot, &query).unwrap(), 0, "{text}");
        assert_eq!(search(&snapshot, &query).unwrap().events, [], "{text}");
        assert_eq!(
            facets(&snapshot, &query, Field::Tenant, 10).unwrap(),
            [],
            "{text}"
        );
        assert_only_a(&store, &query);
    }
}

#[test]
fn scope_returns_every_event_of_the_tenant_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_two_tenants(dir.path());
    let snapshot = store.snapshot();
    for text in [
        "",
        "tenant:a",
        "tenant:a tenant:b",
        "-tenant:b",
        "delete",
        "llama",
        "type:pod",
    ] {
        let query = scoped_to_a(text);
        assert_eq!(count(&snapshot, &query).unwrap(), 30, "{text}");
        assert_eq!(
            facets(&snapshot, &query, Field::Tenant, 10).unwrap(),
            [("a".to_string(), 30)],
            "{text}"
        );
        assert_only_a(&store, &query);
    }
    let mut query = scoped_to_a("");
    query.order = Order::OldestFirst;
    query.limit = 1000;
    let events = search(&snapshot, &query).unwrap().events;
    assert_eq!(events.len(), 30);
    assert!(events.iter().all(|e| e.event.tenant == "a"));

    // Both tenants in scope: both come back, and a filter narrows to one.
    let both = Scope::new(["a", "b"]).unwrap();
    let query = parse("").unwrap().into_query(both.clone(), NOW_US);
    assert_eq!(count(&snapshot, &query).unwrap(), 60);
    let query = parse("tenant:b").unwrap().into_query(both, NOW_US);
    assert_eq!(
        facets(&snapshot, &query, Field::Tenant, 10).unwrap(),
        [("b".to_string(), 30)]
    );
}

/// `details` are stored as sent, JSON escapes included (Python's `json.dumps` escapes every
/// non-ASCII character): search reads them decoded, in the tail and through a sealed segment's
/// full-text index alike.
#[test]
fn text_search_reads_json_escapes_decoded_in_the_tail_and_in_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open_store(dir.path(), &[], true);
    let with_details = |n: i64| {
        let mut event = event("a", n, "pod-1");
        event.details = Some(r#"{"note":"caf\u00e9 rollback\nreason","who":"Zo\u00eb"}"#.into());
        event
    };
    store
        .append(vec![with_details(1), event("a", 2, "pod-2")])
        .unwrap();
    store.seal().unwrap();
    store.append(vec![with_details(3)]).unwrap();
    let snapshot = store.snapshot();
    let found = |text: &str| -> Vec<i64> {
        let mut times: Vec<i64> = search(&snapshot, &scoped_to_a(text))
            .unwrap()
            .events
            .iter()
            .map(|e| e.event.timestamp_us - NOW_US)
            .collect();
        times.sort_unstable();
        times
    };
    assert_eq!(found("café"), [1, 3]);
    assert_eq!(found("zoë"), [1, 3]);
    assert_eq!(found("\"rollback reason\""), [1, 3]);
    assert!(found("nreason").is_empty());
    assert!(found("u00e9").is_empty());
    assert_eq!(count(&snapshot, &scoped_to_a("café")).unwrap(), 2);
}
