//! Helpers shared by the engine's integration tests (`mod common;` in each that uses them).

use auditlog_engine::event::{Actor, Event, Resource};
use auditlog_engine::store::now_us;

/// `count` update events of `acct_1` from number `from`, each with its own idempotency key.
pub fn batch(from: u64, count: u64) -> Vec<Event> {
    (from..from + count)
        .map(|n| Event {
            id: Some(format!("evt_{n}").into()),
            timestamp_us: now_us(),
            tenant: "acct_1".into(),
            actor: Actor {
                id: Some("user_1".into()),
                ..Actor::default()
            },
            action: "update".into(),
            resource: Resource {
                kind: "vm".into(),
                id: Some(format!("vm_{n}").into()),
                name: None,
            },
            ..Event::default()
        })
        .collect()
}
