//! Facets counted from postings (a segment with many rows per value) agree with a naive count,
//! with time bounds falling inside blocks, with other filters, for every field indexed by row,
//! and with events of the same tenant in the tail and in unindexed stores.

mod common;

use std::collections::HashMap;

use auditlog_engine::event::{Actor, ActorType, Event, Outcome, Resource, StoredEvent};
use auditlog_engine::partition::MICROS_PER_DAY;
use auditlog_index::{facets, Field, Query, Scope};

const DAY0_US: i64 = 20_400 * MICROS_PER_DAY;
const ACTIONS: [&str; 4] = ["create", "delete", "start", "stop"];
const TYPES: [&str; 3] = ["pod", "vm", "volume"];

/// Three tenants over two days (one partition each), rows of a tenant spread over the day.
fn events(round: u64) -> Vec<Event> {
    (0..3000u64)
        .map(|i| {
            let n = i + round * 3000;
            let tenant = ["big", "big", "mid", "small"][(n % 4) as usize];
            Event {
                timestamp_us: DAY0_US
                    + (n % 2) as i64 * MICROS_PER_DAY
                    + (n * 7919 % 86_000) as i64 * 1_000_000,
                tenant: tenant.into(),
                project: Some(format!("proj-{}", n % 5).into()),
                actor: Actor {
                    id: Some(format!("user_{}", n % 7).into()),
                    kind: if n.is_multiple_of(11) {
                        ActorType::System
                    } else {
                        ActorType::User
                    },
                    ..Actor::default()
                },
                action: ACTIONS[(n * n % 4) as usize].into(),
                outcome: if n.is_multiple_of(13) {
                    Outcome::Failure
                } else {
                    Outcome::Success
                },
                resource: Resource {
                    kind: TYPES[(n / 3 % 3) as usize].into(),
                    ..Resource::default()
                },
                ..Event::default()
            }
        })
        .collect()
}

fn naive(all: &[StoredEvent], query: &Query, field: Field) -> Vec<(String, u64)> {
    let tenants = query.effective_tenants();
    let mut counts: HashMap<String, u64> = HashMap::new();
    for stored in all {
        let e = &stored.event;
        if !tenants.contains(&e.tenant.as_str()) || !query.in_time_range(e.timestamp_us) {
            continue;
        }
        if !query.filters.accepts(stored) {
            continue;
        }
        if let Some(value) = field.facet_value_of(stored) {
            *counts.entry(value.to_string()).or_default() += 1;
        }
    }
    let mut out: Vec<(String, u64)> = counts.into_iter().collect();
    out.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

#[test]
fn facets_from_postings_match_a_naive_count() {
    for indexed in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let store = common::open_store(dir.path(), &[], indexed);
        store.append(events(0)).unwrap();
        store.seal().unwrap();
        store.append(events(1)).unwrap();
        store.seal().unwrap();
        // And some in the tail.
        store.append(events(2)[..500].to_vec()).unwrap();
        let all = store.read_all().unwrap();
        let snapshot = store.snapshot();

        let mut queries = Vec::new();
        for scope in [Scope::one("big"), Scope::new(["big", "small"]).unwrap()] {
            for (from, to) in [
                (None, None),
                (
                    Some(DAY0_US + 3_600_000_000 * 5 + 17),
                    Some(DAY0_US + MICROS_PER_DAY + 3_600_000_000 * 7),
                ),
                (Some(DAY0_US + MICROS_PER_DAY / 2), None),
                (None, Some(DAY0_US + 1)),
            ] {
                let mut query = Query::new(scope.clone());
                query.from_us = from;
                query.to_us = to;
                queries.push(query.clone());
                let mut filtered = query.clone();
                filtered
                    .filters
                    .include(Field::ResourceType, "vm")
                    .include(Field::ResourceType, "pod");
                queries.push(filtered.clone());
                filtered.filters.exclude(Field::Outcome, "failure");
                queries.push(filtered);
            }
        }
        // Twice: the second pass is answered from the facet cache for the segments wholly
        // inside a query's time range, and must not mix scopes (same filters, other tenants).
        for query in queries.iter().chain(&queries) {
            for field in [
                Field::Action,
                Field::ResourceType,
                Field::Outcome,
                Field::ActorType,
                Field::Project,
                Field::Actor,
                Field::Tenant,
            ] {
                assert_eq!(
                    facets(&snapshot, query, field, 100).unwrap(),
                    naive(&all, query, field),
                    "facets of {field} for {query:?} (indexed: {indexed})"
                );
            }
        }
    }
}
