//! Model-based test of search: random appends, seals, merges and retention drops on a real
//! store, and after them random queries (scope, time range, filters and negations, text terms,
//! both orders, small limits) whose answers must equal a naive scan of `store.read_all()`:
//!
//! - `search`, paged through its cursors until exhausted: the pages, concatenated, are exactly
//!   the model's ordered result (no repeat, no gap), every page but the last is full;
//! - `count`, `facets` (every field, small `top_n`, ties by value) and `histogram`.
//!
//! The naive evaluator below is written from the query model's documentation, as plainly as
//! possible, and shares no code with the executor (not even the tokenizer).
//!
//! A second property pages through a query while appends, seals and merges go on between the
//! pages: every event that matched before paging began comes back exactly once, in order.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use auditlog_engine::event::{
    format_compact, write_event_ref_json, write_stored_event_json, Actor, ActorType, Event,
    Outcome, Resource, StoredEvent, Text,
};
use auditlog_engine::partition::MICROS_PER_DAY;
use auditlog_engine::store::Store;
use auditlog_index::export::RowWriter;
use auditlog_index::{
    count, export_chunks, facets, histogram, search, Cursor, Export, ExportOptions, Field, Order,
    Query, Scope, TextKind, TextTerm,
};
use proptest::prelude::*;

const NOW_US: i64 = 20_400 * MICROS_PER_DAY + MICROS_PER_DAY / 2;
const TENANTS: usize = 4;
const HOUR_US: i64 = 3_600_000_000;

fn tenant_name(tenant: usize) -> String {
    format!("acct_{tenant}")
}

fn open_store(dir: &std::path::Path, indexed: bool) -> Store {
    common::open_store(dir, &["acct_3"], indexed)
}

#[derive(Debug, Clone)]
struct EventSpec {
    tenant: usize,
    age_days: i64,
    /// 0..3: a few fixed microseconds of the day (equal timestamps, ordered by seq); else any.
    time_of_day: i64,
    variant: u32,
}

fn event_spec() -> impl Strategy<Value = EventSpec> {
    (
        0..TENANTS,
        prop_oneof![3 => 0i64..3, 2 => 0i64..45, 1 => 360i64..370],
        prop_oneof![0i64..3, 0i64..MICROS_PER_DAY],
        any::<u32>(),
    )
        .prop_map(|(tenant, age_days, time_of_day, variant)| EventSpec {
            tenant,
            age_days,
            time_of_day,
            variant,
        })
}

fn pick<'a>(values: &[&'a str], v: u32, shift: u32) -> &'a str {
    values[((v >> shift) as usize) % values.len()]
}

fn build_event(spec: &EventSpec) -> Event {
    let v = spec.variant;
    let day_start = (NOW_US.div_euclid(MICROS_PER_DAY) - spec.age_days) * MICROS_PER_DAY;
    let bit = |shift: u32| (v >> shift) & 1 == 1;
    let names = [
        "llama-finetune-3",
        "Llama-Train",
        "mistral-7b",
        "llama_finetune.v2",
        "finetune-llama",
    ];
    let emails = [
        "alice@example.com",
        "bob@corp.example.org",
        "Carol@Example.com",
        "dave+ops@example.com",
    ];
    let has_email = bit(3);
    Event {
        id: None,
        timestamp_us: day_start + spec.time_of_day,
        tenant: tenant_name(spec.tenant).into(),
        project: bit(0).then(|| pick(&["proj_0", "proj_1", "proj_ml-research"], v, 1).into()),
        actor: Actor {
            id: (!has_email || bit(4))
                .then(|| pick(&["user_0", "user_1", "user_2", "user_3"], v, 5).into()),
            email: has_email.then(|| pick(&emails, v, 7).into()),
            kind: [ActorType::User, ActorType::ApiToken, ActorType::System][(v >> 9) as usize % 3],
            ip: bit(11).then(|| pick(&["203.0.113.7", "203.0.113.8", "2001:db8::1"], v, 12).into()),
            user_agent: bit(14).then(|| {
                pick(
                    &["Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0", "curl/8.5.0"],
                    v,
                    15,
                )
                .into()
            }),
        },
        action: pick(
            &["create", "update", "delete", "login", "token_created"],
            v,
            16,
        )
        .into(),
        outcome: if (v >> 19).is_multiple_of(5) {
            Outcome::Failure
        } else {
            Outcome::Success
        },
        resource: Resource {
            kind: pick(&["pod", "vm", "storage"], v, 20).into(),
            id: bit(22).then(|| pick(&["pod_0", "pod_1", "pod_2", "vm_9"], v, 23).into()),
            name: bit(25).then(|| pick(&names, v, 26).into()),
        },
        changes: bit(29)
            .then(|| format_compact!(r#"[{{"field":"gpu_count","old":{},"new":4}}]"#, v % 4)),
        details: bit(30).then(|| {
            pick(
                &[
                    r#"{"region":"eu-west","reason":"scale up"}"#,
                    r#"{"note":"ÜNÏCODE ΣΑΣ"}"#,
                    r#"{"reason":"up scale"}"#,
                ],
                v,
                27,
            )
            .into()
        }),
    }
}

/// Values each field is filtered on (some of them never stored).
fn field_vocabulary(field: Field) -> &'static [&'static str] {
    match field {
        Field::Tenant => &["acct_0", "acct_1", "acct_2", "acct_3", "acct_9"],
        Field::Project => &["proj_0", "proj_1", "proj_ml-research", "proj_x"],
        Field::Action => &[
            "create",
            "update",
            "delete",
            "login",
            "token_created",
            "stop",
        ],
        Field::Outcome => &["success", "failure"],
        Field::ResourceType => &["pod", "vm", "storage", "account"],
        Field::ResourceId => &["pod_0", "pod_1", "pod_2", "vm_9", "pod"],
        Field::ResourceName => &["llama-finetune-3", "Llama-Train", "mistral-7b", "llama"],
        Field::Actor => &[
            "user_0",
            "user_1",
            "alice@example.com",
            "Carol@Example.com",
            "carol@example.com",
        ],
        Field::ActorId => &["user_0", "user_1", "user_2", "user_3"],
        Field::ActorEmail => &["alice@example.com", "bob@corp.example.org", "example.com"],
        Field::ActorIp => &["203.0.113.7", "203.0.113.8", "2001:db8::1", "203.0.113"],
        Field::ActorType => &["user", "api_token", "system"],
    }
}

fn text_vocabulary() -> Vec<TextTerm> {
    vec![
        TextTerm::word("llama"),
        TextTerm::word("finetune"),
        TextTerm::word("llama-finetune"),
        TextTerm::word("llama-finetune-3"),
        TextTerm::word("finetune-llama"),
        TextTerm::prefix("llam"),
        TextTerm::prefix("llama-fine"),
        TextTerm::word("alice@example.com"),
        TextTerm::word("example.com"),
        TextTerm::word("ALICE"),
        TextTerm::word("carol"),
        TextTerm::phrase("scale up"),
        TextTerm::word("gpu_count"),
        TextTerm::word("eu-west"),
        TextTerm::prefix("ün"),
        TextTerm::word("σασ"),
        TextTerm::word("x86_64"),
        TextTerm::word("delete"),
        TextTerm::prefix("curl/8"),
        TextTerm::word("proj"),
        TextTerm::prefix("user_"),
        TextTerm::word("zzz"),
    ]
}

#[derive(Debug, Clone)]
struct QuerySpec {
    /// Bit i: tenant i is in scope; bit 4: the never-stored `acct_9` too.
    scope: u8,
    /// Bounds in µs before `NOW_US`.
    from_ago_us: Option<i64>,
    to_ago_us: Option<i64>,
    /// (field, value, negated)
    filters: Vec<(usize, usize, bool)>,
    /// (term, negated)
    text: Vec<(usize, bool)>,
    oldest_first: bool,
    limit: usize,
    facet_field: usize,
    facet_top: usize,
    bucket_us: i64,
}

fn query_spec() -> impl Strategy<Value = QuerySpec> {
    // Bounds near the data: most events are 0..3 days old, and many sit on the first
    // microseconds of a day (equal timestamps).
    let bound = prop_oneof![
        3 => Just(None),
        2 => (0i64..100).prop_map(|hours| Some(hours * HOUR_US)),
        1 => (0i64..50 * 24).prop_map(|hours| Some(hours * HOUR_US)),
        2 => (0i64..4, 0i64..4).prop_map(|(days, us)| {
            Some(NOW_US - ((NOW_US.div_euclid(MICROS_PER_DAY) - days) * MICROS_PER_DAY + us))
        }),
    ];
    (
        1u8..32,
        bound.clone(),
        bound,
        prop::collection::vec(
            (0..Field::ALL.len(), 0usize..8, prop::bool::weighted(0.3)),
            0..3,
        ),
        prop::collection::vec((0usize..64, prop::bool::weighted(0.25)), 0..3),
        any::<bool>(),
        prop_oneof![1usize..4, 4usize..12, Just(1000)],
        0..Field::ALL.len(),
        1usize..5,
        prop_oneof![
            Just(HOUR_US),
            Just(MICROS_PER_DAY),
            Just(7 * MICROS_PER_DAY),
            Just(17 * 60 * 1_000_000)
        ],
    )
        .prop_map(
            |(
                scope,
                from_ago_us,
                to_ago_us,
                filters,
                text,
                oldest_first,
                limit,
                facet_field,
                facet_top,
                bucket_us,
            )| QuerySpec {
                scope,
                from_ago_us,
                to_ago_us,
                filters,
                text,
                oldest_first,
                limit,
                facet_field,
                facet_top,
                bucket_us,
            },
        )
}

fn build_query(spec: &QuerySpec) -> Query {
    let mut tenants: Vec<String> = (0..TENANTS)
        .filter(|t| spec.scope & (1 << t) != 0)
        .map(tenant_name)
        .collect();
    if spec.scope & 16 != 0 || tenants.is_empty() {
        tenants.push("acct_9".into());
    }
    let mut query = Query::new(Scope::new(tenants).unwrap());
    query.from_us = spec.from_ago_us.map(|ago| NOW_US - ago);
    query.to_us = spec.to_ago_us.map(|ago| NOW_US - ago + 1);
    for &(field, value, negated) in &spec.filters {
        let field = Field::ALL[field];
        let vocabulary = field_vocabulary(field);
        let value = vocabulary[value % vocabulary.len()];
        if negated {
            query.filters.exclude(field, value);
        } else {
            query.filters.include(field, value);
        }
    }
    let vocabulary = text_vocabulary();
    for &(term, negated) in &spec.text {
        let term = vocabulary[term % vocabulary.len()].clone();
        query.text.push(if negated { term.negate() } else { term });
    }
    query.order = if spec.oldest_first {
        Order::OldestFirst
    } else {
        Order::NewestFirst
    };
    query.limit = spec.limit;
    query
}

// ---- The naive evaluator -------------------------------------------------------------------

fn naive_atoms(text: &str) -> Vec<String> {
    let lower: String = text.chars().flat_map(char::to_lowercase).collect();
    lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|atom| !atom.is_empty())
        .map(str::to_string)
        .collect()
}

fn naive_term_matches_field(term: &TextTerm, field: &str) -> bool {
    let wanted = naive_atoms(&term.text);
    let have = naive_atoms(field);
    if wanted.is_empty() || have.len() < wanted.len() {
        return false;
    }
    for start in 0..=have.len() - wanted.len() {
        let mut all = true;
        for (i, atom) in wanted.iter().enumerate() {
            let candidate = &have[start + i];
            let last = i == wanted.len() - 1;
            let ok = if last && term.kind == TextKind::Prefix {
                candidate.starts_with(atom.as_str())
            } else {
                candidate == atom
            };
            if !ok {
                all = false;
                break;
            }
        }
        if all {
            return true;
        }
    }
    false
}

fn naive_text_fields(e: &Event) -> Vec<&str> {
    let mut fields = vec![e.action.as_str()];
    for value in [
        &e.resource.name,
        &e.resource.id,
        &e.actor.email,
        &e.actor.id,
        &e.project,
        &e.actor.user_agent,
        &e.details,
        &e.changes,
    ]
    .into_iter()
    .flatten()
    {
        fields.push(value.as_str());
    }
    fields
}

fn naive_values(field: Field, e: &Event) -> Vec<Text> {
    let mut out = Vec::new();
    match field {
        Field::Tenant => out.push(e.tenant.clone()),
        Field::Project => out.extend(e.project.clone()),
        Field::Action => out.push(e.action.clone()),
        Field::Outcome => out.push(
            match e.outcome {
                Outcome::Success => "success",
                Outcome::Failure => "failure",
            }
            .into(),
        ),
        Field::ResourceType => out.push(e.resource.kind.clone()),
        Field::ResourceId => out.extend(e.resource.id.clone()),
        Field::ResourceName => out.extend(e.resource.name.clone()),
        Field::Actor => {
            out.extend(e.actor.id.clone());
            out.extend(e.actor.email.clone());
        }
        Field::ActorId => out.extend(e.actor.id.clone()),
        Field::ActorEmail => out.extend(e.actor.email.clone()),
        Field::ActorIp => out.extend(e.actor.ip.clone()),
        Field::ActorType => out.push(
            match e.actor.kind {
                ActorType::User => "user",
                ActorType::ApiToken => "api_token",
                ActorType::System => "system",
            }
            .into(),
        ),
    }
    out
}

fn naive_matches(query: &Query, stored: &StoredEvent) -> bool {
    let e = &stored.event;
    if !query.tenants.contains(&e.tenant) {
        return false;
    }
    if let Some(from) = query.from_us {
        if e.timestamp_us < from {
            return false;
        }
    }
    if let Some(to) = query.to_us {
        if e.timestamp_us >= to {
            return false;
        }
    }
    for (field, filter) in query.filters.iter() {
        let values = naive_values(field, e);
        if !filter.any_of.is_empty() && !values.iter().any(|v| filter.any_of.contains(v.as_str())) {
            return false;
        }
        if values.iter().any(|v| filter.none_of.contains(v.as_str())) {
            return false;
        }
    }
    let fields = naive_text_fields(e);
    for term in &query.text {
        let found = fields.iter().any(|f| naive_term_matches_field(term, f));
        if found == term.negated {
            return false;
        }
    }
    true
}

fn naive_result(query: &Query, all: &[StoredEvent]) -> Vec<StoredEvent> {
    let mut out: Vec<StoredEvent> = all
        .iter()
        .filter(|e| naive_matches(query, e))
        .cloned()
        .collect();
    out.sort_by_key(|e| (e.event.timestamp_us, e.seq));
    if query.order == Order::NewestFirst {
        out.reverse();
    }
    out
}

fn naive_facets(matching: &[StoredEvent], field: Field, top: usize) -> Vec<(String, u64)> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    for stored in matching {
        let e = &stored.event;
        let value = match field {
            Field::Actor => e.actor.email.clone().or(e.actor.id.clone()),
            _ => naive_values(field, e).into_iter().next(),
        };
        if let Some(value) = value {
            *counts.entry(value.to_string()).or_insert(0) += 1;
        }
    }
    let mut out: Vec<(String, u64)> = counts.into_iter().collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    out.truncate(top);
    out
}

fn naive_histogram(matching: &[StoredEvent], bucket_us: i64) -> Vec<(i64, u64)> {
    let mut buckets: BTreeMap<i64, u64> = BTreeMap::new();
    for e in matching {
        let start = e.event.timestamp_us.div_euclid(bucket_us) * bucket_us;
        *buckets.entry(start).or_insert(0) += 1;
    }
    buckets.into_iter().collect()
}

// ---- Checks ---------------------------------------------------------------------------------

fn seqs(events: &[StoredEvent]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

/// Pages through `query` to the end; checks page sizes and cursors on the way.
fn all_pages(store: &Store, query: &Query) -> Result<Vec<StoredEvent>, TestCaseError> {
    let mut query = query.clone();
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let page =
            search(&store.snapshot(), &query).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(page.events.len() <= query.limit);
        out.extend(page.events.iter().cloned());
        match page.next_cursor {
            None => return Ok(out),
            Some(cursor) => {
                prop_assert_eq!(
                    page.events.len(),
                    query.limit,
                    "a page before the last is full"
                );
                let cursor = Cursor::decode(&cursor).unwrap();
                prop_assert_eq!(
                    cursor,
                    Cursor::after(query.order, page.events.last().unwrap(), None)
                );
                query.cursor = Some(cursor);
            }
        }
    }
    Err(TestCaseError::fail("paging does not end"))
}

fn check_query(store: &Store, spec: &QuerySpec) -> Result<(), TestCaseError> {
    let query = build_query(spec);
    let all = store.read_all().unwrap();
    let expected = naive_result(&query, &all);
    let found = all_pages(store, &query)?;
    prop_assert_eq!(seqs(&found), seqs(&expected), "search pages of {:?}", query);
    prop_assert_eq!(&found, &expected, "events of {:?}", query);

    let snapshot = store.snapshot();
    // The export: every row in order, in batches of a size unrelated to the page's, resuming
    // after the cursor when there is one.
    let mut export = Export::new(&snapshot, &query).unwrap();
    let mut exported = Vec::new();
    loop {
        let batch = export.next_batch(spec.bucket_us as usize % 7 + 1).unwrap();
        if batch.is_empty() {
            break;
        }
        exported.extend(batch);
    }
    prop_assert_eq!(&exported, &expected, "export of {:?}", query);
    // The parallel export: tiny time windows, so that most queries span several, written as
    // NDJSON in order.
    let mut expected_ndjson = Vec::new();
    for event in &expected {
        write_stored_event_json(event, &mut expected_ndjson);
        expected_ndjson.push(b'\n');
    }
    let options = ExportOptions {
        threads: spec.facet_top % 3 + 1,
        window_rows: spec.bucket_us as u64 % 5 + 1,
    };
    let write: &RowWriter = &|event, out| {
        write_event_ref_json(event, out);
        out.push(b'\n');
    };
    let mut ndjson = Vec::new();
    let rows = export_chunks(&snapshot, &query, &options, write, &mut |chunk| {
        ndjson.extend_from_slice(&chunk);
        true
    })
    .unwrap();
    prop_assert_eq!(rows, expected.len() as u64);
    prop_assert!(
        ndjson == expected_ndjson,
        "parallel export ({:?}) of {:?}",
        options,
        query
    );
    if let Some(first) = expected.first() {
        let mut resumed = query.clone();
        resumed.cursor = Some(Cursor::after(query.order, first, None));
        let mut export = Export::new(&snapshot, &resumed).unwrap();
        let rest = export.next_batch(usize::MAX).unwrap();
        prop_assert_eq!(
            &rest[..],
            &expected[1..],
            "export after a cursor, {:?}",
            query
        );
    }
    prop_assert_eq!(count(&snapshot, &query).unwrap(), expected.len() as u64);
    let field = Field::ALL[spec.facet_field];
    prop_assert_eq!(
        facets(&snapshot, &query, field, spec.facet_top).unwrap(),
        naive_facets(&expected, field, spec.facet_top),
        "facets of {} for {:?}",
        field,
        query
    );
    prop_assert_eq!(
        histogram(&snapshot, &query, spec.bucket_us).unwrap(),
        naive_histogram(&expected, spec.bucket_us),
        "histogram for {:?}",
        query
    );
    // Count, facets and histogram ignore the cursor.
    let mut resumed = query.clone();
    resumed.cursor = expected
        .first()
        .map(|e| Cursor::after(query.order, e, None));
    prop_assert_eq!(count(&snapshot, &resumed).unwrap(), expected.len() as u64);
    Ok(())
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<EventSpec>),
    Seal,
    Merge,
    /// `expire(NOW_US + days)`
    Expire(i64),
    /// Close and open the store again (indexes are opened, or rebuilt, from disk).
    Reopen,
    Query(QuerySpec),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(event_spec(), 1..16).prop_map(Op::Append),
        3 => Just(Op::Seal),
        2 => Just(Op::Merge),
        1 => (0i64..40).prop_map(Op::Expire),
        1 => Just(Op::Reopen),
        3 => query_spec().prop_map(Op::Query),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn query_model_every_answer_matches_a_naive_scan(
        ops in prop::collection::vec(op(), 1..24),
        finals in prop::collection::vec(query_spec(), 1..6),
        indexed in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open_store(dir.path(), indexed);
        for op in &ops {
            match op {
                Op::Append(specs) => {
                    store.append(specs.iter().map(build_event).collect()).unwrap();
                }
                Op::Seal => {
                    store.seal().unwrap();
                }
                Op::Merge => {
                    store.merge().unwrap();
                }
                Op::Expire(days) => {
                    store.expire(NOW_US + days * MICROS_PER_DAY).unwrap();
                }
                Op::Reopen => {
                    store.close();
                    drop(store);
                    store = open_store(dir.path(), indexed);
                }
                Op::Query(spec) => check_query(&store, spec)?,
            }
        }
        for spec in &finals {
            check_query(&store, spec)?;
        }
    }
}

#[derive(Debug, Clone)]
enum Between {
    Append(Vec<EventSpec>),
    Seal,
    Merge,
    Nothing,
}

fn between() -> impl Strategy<Value = Between> {
    prop_oneof![
        3 => prop::collection::vec(event_spec(), 1..8).prop_map(Between::Append),
        2 => Just(Between::Seal),
        1 => Just(Between::Merge),
        2 => Just(Between::Nothing),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn search_cursor_resumes_exactly_while_ingest_goes_on(
        initial in prop::collection::vec(event_spec(), 1..60),
        seal_first in any::<bool>(),
        spec in query_spec(),
        changes in prop::collection::vec(between(), 1..30),
        indexed in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path(), indexed);
        store.append(initial.iter().map(build_event).collect()).unwrap();
        if seal_first {
            store.seal().unwrap();
        }
        let mut query = build_query(&spec);
        query.limit = query.limit.min(5);
        let before = naive_result(&query, &store.read_all().unwrap());
        let mut pages: Vec<StoredEvent> = Vec::new();
        // The drawn changes, one per page, then none: with pages of one event and appends of
        // up to seven, cycling them could keep new events ahead of the cursor for as long as
        // the test runs (a CI run once paged for over ten minutes).
        let mut changes = changes.iter().chain(std::iter::repeat(&Between::Nothing));
        loop {
            let page = search(&store.snapshot(), &query).unwrap();
            pages.extend(page.events.iter().cloned());
            let Some(cursor) = page.next_cursor else { break };
            query.cursor = Some(Cursor::decode(&cursor).unwrap());
            match changes.next().unwrap() {
                Between::Append(specs) => {
                    store.append(specs.iter().map(build_event).collect()).unwrap();
                }
                Between::Seal => {
                    store.seal().unwrap();
                }
                Between::Merge => {
                    store.merge().unwrap();
                }
                Between::Nothing => {}
            }
        }
        let keys: Vec<(i64, u64)> = pages.iter().map(|e| (e.event.timestamp_us, e.seq)).collect();
        for pair in keys.windows(2) {
            prop_assert!(query.order.before(pair[0], pair[1]), "out of order or repeated: {:?}", pair);
        }
        let returned: BTreeSet<u64> = pages.iter().map(|e| e.seq).collect();
        for event in &before {
            prop_assert!(returned.contains(&event.seq), "event {} was skipped", event.seq);
        }
        let mut query_without_cursor = query.clone();
        query_without_cursor.cursor = None;
        for event in &pages {
            prop_assert!(naive_matches(&query_without_cursor, event), "event {} does not match", event.seq);
        }
    }
}
