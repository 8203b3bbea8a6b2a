//! Rough timings of the scan-based executor (before bitmaps and tantivy), for the issue notes:
//!
//! ```sh
//! cargo run --release -p auditlog-index --example search_speed -- 1000000
//! ```
//!
//! Builds a store of N events (20 tenants, one tenant holds a third of them, 30 days), sealed,
//! then times typical page queries, counts, facets and histograms for the big tenant.

use std::time::{Duration, Instant};

use auditlog_engine::event::{Actor, ActorType, Event, Outcome, Resource};
use auditlog_engine::partition::MICROS_PER_DAY;
use auditlog_engine::store::{Store, StoreOptions};
use auditlog_engine::Durability;
use auditlog_index::{count, facets, histogram, parse, search, Field, Scope};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const NOW_US: i64 = 20_400 * MICROS_PER_DAY;

fn event(rng: &mut SmallRng) -> Event {
    let tenant = if rng.gen_bool(0.33) {
        0
    } else {
        rng.gen_range(1..20)
    };
    let actions = ["create", "update", "delete", "start", "stop", "login"];
    let names = [
        "llama-finetune-3",
        "mistral-7b",
        "sdxl-train",
        "whisper-eval",
    ];
    Event {
        id: None,
        timestamp_us: NOW_US - rng.gen_range(0..30 * MICROS_PER_DAY),
        tenant: format!("acct_{tenant:04}").into(),
        project: Some(format!("proj_{}", rng.gen_range(0..8)).into()),
        actor: Actor {
            id: Some(format!("user_{}", rng.gen_range(0..200)).into()),
            email: Some(format!("user{}@example.com", rng.gen_range(0..200)).into()),
            kind: ActorType::User,
            ip: Some(format!("203.0.113.{}", rng.gen_range(0..255)).into()),
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0".into()),
        },
        action: actions[rng.gen_range(0..actions.len())].into(),
        outcome: if rng.gen_bool(0.05) {
            Outcome::Failure
        } else {
            Outcome::Success
        },
        resource: Resource {
            kind: "pod".into(),
            id: Some(format!("pod_{:06x}", rng.gen_range(0..100_000)).into()),
            name: Some(
                format!(
                    "{}-{}",
                    names[rng.gen_range(0..names.len())],
                    rng.gen_range(0..50)
                )
                .into(),
            ),
        },
        changes: None,
        details: rng
            .gen_bool(0.3)
            .then(|| r#"{"region":"eu-west","reason":"scale up"}"#.into()),
    }
}

fn time<T>(label: &str, runs: u32, mut f: impl FnMut() -> T) -> T {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..runs {
        let start = Instant::now();
        out = Some(f());
        best = best.min(start.elapsed());
    }
    println!("{label:<58} {:>10.2} ms", best.as_secs_f64() * 1e3);
    out.expect("runs >= 1")
}

fn main() {
    let events: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut options = StoreOptions::new(dir.path());
    options.background = false;
    options.durability = Durability::Interval(Duration::from_secs(60));
    options.retention.class_days.insert("standard".into(), 365);
    let store = Store::open(options).expect("store opens");
    let mut rng = SmallRng::seed_from_u64(7);
    let start = Instant::now();
    let mut left = events;
    while left > 0 {
        let batch: Vec<Event> = (0..left.min(10_000)).map(|_| event(&mut rng)).collect();
        left -= batch.len();
        store.append(batch).expect("append");
        if store.stats().tail_events >= 200_000 {
            store.seal().expect("seal");
        }
    }
    store.seal().expect("seal");
    while store.merge().expect("merge") > 0 {}
    let stats = store.stats();
    println!(
        "{events} events in {} segments, built in {:.1} s",
        stats.segments,
        start.elapsed().as_secs_f64()
    );
    // Some unsealed events too, as in production.
    store
        .append((0..5_000).map(|_| event(&mut rng)).collect())
        .expect("append");

    let snapshot = store.snapshot();
    let scope = Scope::one("acct_0000");
    let query = |text: &str| {
        parse(text)
            .expect("query parses")
            .into_query(scope.clone(), NOW_US)
    };
    for text in [
        "",
        "action:delete",
        "-outcome:success",
        "llama-finetune-3",
        "llam* action:delete",
        "since:1d",
        "ip:203.0.113.7 user:user7@example.com",
    ] {
        let q = query(text);
        let page = time(&format!("search {text:?} (50 newest)"), 5, || {
            search(&snapshot, &q).expect("search")
        });
        if let Some(cursor) = page.next_cursor {
            let mut next = q.clone();
            next.cursor = Some(cursor.parse().expect("cursor"));
            time(&format!("search {text:?} (next page)"), 5, || {
                search(&snapshot, &next).expect("search")
            });
        }
    }
    for text in ["", "action:delete", "llama"] {
        let q = query(text);
        let n = time(&format!("count {text:?}"), 3, || {
            count(&snapshot, &q).expect("count")
        });
        println!("{:<58} {n:>10}", "  = events");
        time(&format!("facets action {text:?}"), 3, || {
            facets(&snapshot, &q, Field::Action, 10).expect("facets")
        });
        time(&format!("histogram 1h {text:?}"), 3, || {
            histogram(&snapshot, &q, 3_600_000_000).expect("histogram")
        });
    }
}
