//! The live stream's resume path: a store of N generated events (sealed), then one tenant's
//! whole history read back from seq 1 in pages of 1,000 the way `GET /v1/stream?from_seq=1`
//! does, for the largest tenant and for a median one: through the tenant's rows
//! (`read_from_seq_of`, what the stream does for a subscription of few tenants) and through
//! every tenant's events, filtered afterwards (`read_from_seq`, what it did before). Then
//! every tenant's events (an admin's stream) in pages of 1,000 and of 10,000. Prints the
//! seconds each takes.
//!
//! `cargo run --release -p auditlog-benches --example stream_resume -- 600000`

use std::collections::HashMap;
use std::time::Instant;

use auditlog_engine::store::{now_us, Store, StoreOptions};
use auditlog_gen::{GenConfig, Generator};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PAGE: usize = 1000;

fn main() {
    let events: usize = std::env::args()
        .nth(1)
        .map_or(600_000, |a| a.parse().expect("events"));
    let dir = tempfile::tempdir_in(".").expect("tempdir");
    let mut options = StoreOptions::new(dir.path());
    options.background = false;
    options.tail_bytes_max = u64::MAX;
    let store = Store::open(options).expect("open");
    let mut gen = Generator::new(GenConfig {
        start_us: now_us() - 3_600_000_000,
        ..GenConfig::default()
    });
    let mut per_tenant: HashMap<String, usize> = HashMap::new();
    for _ in 0..events / 1000 {
        let batch = gen.fill(1000);
        for event in &batch {
            *per_tenant.entry(event.tenant.to_string()).or_default() += 1;
        }
        store.append(batch).expect("append");
    }
    store.seal().expect("seal");
    let mut tenants: Vec<(String, usize)> = per_tenant.into_iter().collect();
    tenants.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let stats = store.stats();
    println!(
        "{} events, {} tenants, {} segments",
        stats.sealed_events,
        tenants.len(),
        stats.segments
    );
    // An admin's stream (every tenant): pages of 1,000 and of 10,000.
    for page in [PAGE, 10 * PAGE] {
        let started = Instant::now();
        let mut from = 1;
        let mut read = 0;
        loop {
            let events = store.read_from_seq(from, page).expect("read");
            read += events.len();
            let Some(last) = events.last() else { break };
            from = last.seq + 1;
            if events.len() < page {
                break;
            }
        }
        assert_eq!(read, events);
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "every tenant, pages of {page}: {seconds:.3} s, {:.0} events/s",
            read as f64 / seconds
        );
    }
    for (label, (tenant, count)) in [
        ("largest", tenants[0].clone()),
        ("median", tenants[tenants.len() / 2].clone()),
    ] {
        let scope = [tenant.clone()];
        let started = Instant::now();
        let scoped = read_all(|from| {
            store
                .read_from_seq_of(from, PAGE, Some(&scope))
                .map(|page| page.events)
        });
        let scoped_seconds = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut filtered = 0;
        let mut from = 1;
        loop {
            let page = store.read_from_seq(from, PAGE).expect("read");
            let Some(last) = page.last() else { break };
            from = last.seq + 1;
            filtered += page.iter().filter(|e| e.event.tenant == tenant).count();
            if page.len() < PAGE {
                break;
            }
        }
        let filtered_seconds = started.elapsed().as_secs_f64();
        assert_eq!(scoped, count, "scoped read of {tenant}");
        assert_eq!(filtered, count, "filtered read of {tenant}");
        println!(
            "{label} tenant ({count} events): its rows {scoped_seconds:.3} s, \
             every tenant's filtered {filtered_seconds:.3} s ({:.0}x)",
            filtered_seconds / scoped_seconds
        );
    }
}

/// Events read page by page from seq 1 until a short page.
fn read_all(
    mut page_from: impl FnMut(u64) -> auditlog_engine::Result<Vec<auditlog_engine::event::StoredEvent>>,
) -> usize {
    let mut from = 1;
    let mut total = 0;
    loop {
        let page = page_from(from).expect("read");
        total += page.len();
        let Some(last) = page.last() else { break };
        from = last.seq + 1;
        if page.len() < PAGE {
            break;
        }
    }
    total
}
