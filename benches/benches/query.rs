//! Query execution in process (issue 3's figures), for the largest tenant and a median one:
//!
//! - `page_filtered`: tenant + action + resource type, last 7 days, newest 50;
//! - `page_email`: tenant + one user's email, last 30 days, newest 50;
//! - `page_text`: tenant + a word of a frequent resource name, last 30 days, newest 50;
//! - `facets_action`: top 20 actions over 30 days;
//! - `count` and `histogram` (hourly buckets) over 30 days;
//! - `export`: every row of the tenant over 30 days, decoded ([`export_chunks`], default
//!   threads; throughput in rows).
//!
//! By default it generates a store of `AUDITLOG_BENCH_EVENTS` (500,000) realistic events over
//! 30 days in a temporary directory, sealed with every index. To measure a large store made
//! once (e.g. by `search-report --events 10000000 --dir D`), point it there and name the
//! tenants:
//!
//! ```text
//! cargo bench -p auditlog-benches --bench query
//! AUDITLOG_BENCH_STORE=/tmp/sr10m/store AUDITLOG_BENCH_TENANTS=acct_0924,acct_0512 \
//!     cargo bench -p auditlog-benches --bench query
//! ```
//!
//! Each timed call takes a fresh snapshot, as a server request does; blocks are cached as in
//! the server (warm cache after criterion's warm-up).

use std::collections::HashMap;
use std::time::Duration;

use auditlog_engine::store::{now_us, Store, StoreOptions};
use auditlog_gen::{GenConfig, Generator};
use auditlog_index::export::RowWriter;
use auditlog_index::{
    count, export_chunks, facets, histogram, search, ExportOptions, Field, Order, Query, Scope,
    SegmentIndexer, TextTerm,
};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DAY_US: i64 = 86_400_000_000;
const HOUR_US: i64 = 3_600_000_000;

/// The store and the tenants to measure (largest first), kept alive with its directory.
struct Setup {
    store: Store,
    tenants: Vec<String>,
    _dir: Option<tempfile::TempDir>,
}

fn open(dir: &std::path::Path) -> Store {
    let mut options = StoreOptions::new(dir);
    options.background = false;
    options.segment_hook = Some(SegmentIndexer::hook());
    Store::open(options).expect("open the store")
}

fn setup() -> Setup {
    if let Ok(path) = std::env::var("AUDITLOG_BENCH_STORE") {
        let tenants = std::env::var("AUDITLOG_BENCH_TENANTS")
            .expect("AUDITLOG_BENCH_TENANTS=largest,median with AUDITLOG_BENCH_STORE")
            .split(',')
            .map(str::to_owned)
            .collect();
        return Setup {
            store: open(path.as_ref()),
            tenants,
            _dir: None,
        };
    }
    let events: usize = std::env::var("AUDITLOG_BENCH_EVENTS")
        .map_or(500_000, |n| n.parse().expect("AUDITLOG_BENCH_EVENTS"));
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open(dir.path());
    let span_us = 30 * DAY_US;
    let mut generator = Generator::new(GenConfig {
        seed: 7,
        start_us: now_us() - span_us,
        span_us,
        expected_events: events as u64,
        ..GenConfig::default()
    });
    let mut per_tenant: HashMap<String, u64> = HashMap::new();
    let mut left = events;
    while left > 0 {
        let batch = generator.fill(left.min(10_000));
        left -= batch.len();
        for event in &batch {
            *per_tenant.entry(event.tenant.to_string()).or_default() += 1;
        }
        store.append(batch).expect("append");
    }
    store.seal().expect("seal");
    let mut sizes: Vec<(String, u64)> = per_tenant.into_iter().collect();
    sizes.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let tenants = vec![sizes[0].0.clone(), sizes[sizes.len() / 2].0.clone()];
    Setup {
        store,
        tenants,
        _dir: Some(dir),
    }
}

fn over_days(tenant: &str, days: i64) -> Query {
    let mut query = Query::new(Scope::one(tenant));
    query.from_us = Some(now_us() - days * DAY_US);
    query.limit = 50;
    query
}

/// The values the queries filter on, read from the store: the tenant's most common action of
/// the week and its most common resource type with it, its median user by email, and a word
/// of 4+ letters of its newest resource names.
struct Picks {
    action: String,
    resource_type: String,
    email: String,
    word: String,
}

fn pick(store: &Store, tenant: &str) -> Picks {
    let snapshot = store.snapshot();
    let top =
        |query: &Query, field: Field, n: usize| facets(&snapshot, query, field, n).expect("facets");
    let week = over_days(tenant, 7);
    let action = top(&week, Field::Action, 1)[0].0.clone();
    let mut with_action = week.clone();
    with_action.filters.include(Field::Action, action.as_str());
    let resource_type = top(&with_action, Field::ResourceType, 1)[0].0.clone();
    let emails = top(&over_days(tenant, 30), Field::ActorEmail, 1000);
    let email = emails[emails.len() / 2].0.clone();
    let page = search(&snapshot, &over_days(tenant, 30)).expect("page");
    let word = page
        .events
        .iter()
        .filter_map(|event| event.event.resource.name.as_deref())
        .flat_map(|name| name.split(|c: char| !c.is_ascii_alphabetic()))
        .find(|word| word.len() >= 4)
        .unwrap_or("delete")
        .to_lowercase();
    Picks {
        action,
        resource_type,
        email,
        word,
    }
}

fn queries(criterion: &mut Criterion) {
    let setup = setup();
    let store = &setup.store;
    for (rank, tenant) in setup.tenants.iter().enumerate() {
        let size = if rank == 0 { "largest" } else { "median" };
        let picks = pick(store, tenant);
        eprintln!(
            "{size} tenant {tenant}: action {}, resource type {}, email {}, word {}",
            picks.action, picks.resource_type, picks.email, picks.word
        );
        let month = over_days(tenant, 30);
        let mut group = criterion.benchmark_group(format!("query/{size}"));
        group.measurement_time(Duration::from_secs(5));

        let mut filtered = over_days(tenant, 7);
        filtered
            .filters
            .include(Field::Action, picks.action.as_str())
            .include(Field::ResourceType, picks.resource_type.as_str());
        let mut email = month.clone();
        email
            .filters
            .include(Field::ActorEmail, picks.email.as_str());
        let mut text = month.clone();
        text.text.push(TextTerm::word(picks.word.as_str()));
        for (name, query) in [
            ("page_filtered", &filtered),
            ("page_email", &email),
            ("page_text", &text),
        ] {
            group.bench_function(name, |b| {
                b.iter(|| black_box(search(&store.snapshot(), query).expect("search")))
            });
        }
        group.bench_function("facets_action", |b| {
            b.iter(|| {
                black_box(facets(&store.snapshot(), &month, Field::Action, 20).expect("facets"))
            })
        });
        group.bench_function("count", |b| {
            b.iter(|| black_box(count(&store.snapshot(), &month).expect("count")))
        });
        group.bench_function("histogram", |b| {
            b.iter(|| black_box(histogram(&store.snapshot(), &month, HOUR_US).expect("histogram")))
        });

        let rows = count(&store.snapshot(), &month).expect("count");
        group.throughput(Throughput::Elements(rows));
        group.sample_size(10);
        let mut newest_first = month.clone();
        newest_first.order = Order::NewestFirst;
        let write: &RowWriter = &|event, _| {
            black_box(event);
        };
        group.bench_function("export", |b| {
            b.iter(|| {
                let exported = export_chunks(
                    &store.snapshot(),
                    &newest_first,
                    &ExportOptions::default(),
                    write,
                    &mut |chunk| {
                        black_box(chunk);
                        true
                    },
                )
                .expect("export");
                assert_eq!(exported, rows);
            })
        });
        group.finish();
    }
}

criterion_group!(benches, queries);
criterion_main!(benches);
