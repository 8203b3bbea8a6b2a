//! The search issue's figures in one run, on realistic events from `auditlog-gen`, against
//! SQLite on the same events in the same run:
//!
//! 1. **Load**: N events generated and appended in batches of 1,000 (with `--skip-sqlite` only
//!    the two measured tenants' events are kept in memory, so 100M events fit), then sealed
//!    (timed: events/s, segment hook included) and merged until nothing is left to merge, so
//!    every query reads sealed
//!    segments with a warm page cache. Bytes on disk per event by file kind under the partition
//!    directories: `*.seg` (segment data), `*.idx` (filter index), `*.text/` (full-text index).
//! 2. **Queries**, for the largest tenant and for the median one, each timed per call
//!    (`Instant`) after a few warm-ups; p50 and p99 in ms:
//!    a. filtered page: tenant, the 7 days ending at the tenant's newest event, its most common
//!    (action, resource type) pair in those days, newest 50;
//!    b. page of one user's events by actor email (the tenant's median-active user), newest 50;
//!    c. full text, newest 50: a word of one of the tenant's resource names (`finetune` of
//!    `llama-finetune-3`), and a prefix of that name (`llam*`);
//!    d. facets by action over 30 days, top 20;
//!    e. count of (a);
//!    f. histogram of 1-hour buckets over the 7 days;
//!    g. export order scan: every row of the tenant over 30 days, decoded, through
//!    [`export_chunks`] (default worker threads, chunks of 1,000 rows), reported as rows/s as
//!    well.
//!
//!    Values are picked from the generated events so that every query returns rows; the table
//!    shows the rows returned and how many events match (our `count` of the same query).
//! 3. **SQLite** (bundled, through rusqlite) unless `--skip-sqlite`: one table with a column per
//!    event field, the composite indexes a careful user would create ((tenant, timestamp),
//!    (tenant, action, timestamp), (tenant, resource_type, timestamp), (tenant, actor_email,
//!    timestamp)), `ANALYZE`d, and a contentless FTS5 table over the same text fields as ours.
//!    The same questions in SQL, timed the same way; the ratio column is sqlite / ours (above 1:
//!    we are faster), and `same` says whether both answered exactly the same rows, counts or
//!    buckets.
//!
//! ```text
//! cargo run --release -p auditlog-benches --bin search-report -- --events 1000000 --dir /tmp/search-bench
//! cargo run --release -p auditlog-benches --bin search-report -- --events 200000 --repeat 50 --skip-sqlite
//! ```
//!
//! Flags: `--events N` (default 1,000,000), `--dir DIR` (the store goes in `DIR/store`, SQLite
//! in `DIR/sqlite.db`; both must not exist yet; default a temporary directory under the current
//! one, removed at the end), `--repeat K` (timed calls per query, default 200), `--skip-sqlite`.
//!
//! Choices that shape the figures:
//!
//! - A query stops repeating once it has run for [`QUERY_BUDGET`] and at least
//!   [`MIN_REPEATS`] times (the export of a large tenant takes long); the `n` column says how
//!   many timed calls there were.
//! - Ours: background sealing is off (sealing and merging are called here, to time them) and the
//!   WAL is fsynced every 100 ms instead of before each ack (durability does not change what is
//!   measured; it only makes the load faster). Each timed call takes a fresh snapshot, as a
//!   server request does.
//! - SQLite: `journal_mode=WAL`, `synchronous=OFF` for the load (one transaction, prepared
//!   statements; the four indexes are built after the rows are in, which is faster than
//!   maintaining them row by row), then `ANALYZE`; a 1 GiB page cache so that it too answers
//!   from memory. Page queries read every column of the returned rows, as ours decodes whole
//!   events. The FTS5 table is contentless (`content=''`): an audit log is append-only, so its
//!   inability to update or delete rows costs nothing, and every value is read from the events
//!   table anyway, so a second copy of the text (a regular FTS5 table) or the trigger plumbing of
//!   an external-content table would only add size. It indexes the fields our full text
//!   searches (`resource.name`, `resource.id`, `actor.email`, `actor.id`, `action`, `project`,
//!   user agent, `details`, `changes`) with `unicode61 remove_diacritics 0`, which splits words
//!   where our tokenizer splits atoms, so both find the same rows. It has no prefix index
//!   (`prefix=`), so `llam*` walks the term range.
//!
//! Prints the machine, the command line, a table per tenant and, last, one JSON line with every
//! figure.

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use auditlog_engine::event::time::format_rfc3339_us;
use auditlog_engine::event::Event;
use auditlog_engine::store::{now_us, Durability, Store, StoreOptions};
use auditlog_gen::{GenConfig, Generator};
use auditlog_index::export::RowWriter;
use auditlog_index::{
    count, export_chunks, facets, histogram, search, ExportOptions, Field, Order, Query, Scope,
    TextTerm,
};
use rusqlite::{params, Connection};

// As in engine-report and the server: glibc malloc is slow at freeing many small strings.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DAY_US: i64 = 86_400_000_000;
const HOUR_US: i64 = 3_600_000_000;
/// Events per `append` call.
const BATCH_EVENTS: usize = 1000;
/// Untimed calls before the timed ones (caches, branch predictors, SQLite's statement cache).
const WARMUPS: usize = 3;
/// A query repeats at least this many times ...
const MIN_REPEATS: usize = 5;
/// ... and stops repeating once it has run this long.
const QUERY_BUDGET: Duration = Duration::from_secs(10);
/// Rows per page of the export scan (the API's maximum).
const EXPORT_PAGE_ROWS: usize = 1000;
/// Rows per page of the page queries.
const PAGE_ROWS: usize = 50;
const FACET_TOP: usize = 20;

struct Args {
    events: usize,
    dir: Option<PathBuf>,
    repeat: usize,
    skip_sqlite: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        events: 1_000_000,
        dir: None,
        repeat: 200,
        skip_sqlite: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--events" => args.events = value().parse().expect("--events N"),
            "--dir" => args.dir = Some(PathBuf::from(value())),
            "--repeat" => args.repeat = value().parse::<usize>().expect("--repeat K").max(1),
            "--skip-sqlite" => args.skip_sqlite = true,
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// `events` events spread over the 30 days before now, as a month of a platform's traffic.
/// Events appended between two seals.
const SEAL_EVERY: usize = 500_000;

fn generator(events: usize) -> Generator {
    let span_us = 30 * DAY_US;
    Generator::new(GenConfig {
        seed: 1,
        start_us: now_us() - span_us,
        span_us,
        expected_events: events as u64,
        ..GenConfig::default()
    })
}

/// Bytes on disk by file kind, summed over every partition directory.
#[derive(Default)]
struct DiskBytes {
    segments: u64,
    filter_index: u64,
    text_index: u64,
    other: u64,
}

fn tree_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => tree_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Walks `segments/{class}/{day}/`: `*.seg` files, `*.idx` files, `*.text/` directories.
fn disk_bytes(dir: &Path, out: &mut DiskBytes) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            if name.ends_with(".text") {
                out.text_index += tree_bytes(&path);
            } else {
                disk_bytes(&path, out);
            }
        } else if name.ends_with(".seg") {
            out.segments += meta.len();
        } else if name.ends_with(".idx") {
            out.filter_index += meta.len();
        } else {
            out.other += meta.len();
        }
    }
}

/// The concrete values one tenant's queries use, picked from the generated events.
struct Picks {
    tenant: String,
    /// The tenant's events (all time).
    events: u64,
    /// Time ranges end here (exclusive): one microsecond after the tenant's newest event.
    end_us: i64,
    /// The most common (action, resource type) pair of the tenant in the last 7 days.
    action: String,
    resource_type: String,
    /// The tenant's user with the median number of events among those with any.
    email: String,
    email_events: u64,
    /// A word of a frequent resource name of the tenant (`finetune`) ...
    word: String,
    /// ... and a prefix of that name, without the `*` (`llam`).
    prefix: String,
    /// The resource name the word and prefix come from.
    name: String,
}

/// Splits like the tokenizer does: lowercase runs of alphanumerics.
fn atoms(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|atom| !atom.is_empty())
        .map(str::to_lowercase)
}

fn pick(generator: &Generator, batches: &[Vec<Event>], tenant: &str) -> Picks {
    let events: Vec<&Event> = batches
        .iter()
        .flatten()
        .filter(|event| event.tenant == tenant)
        .collect();
    assert!(!events.is_empty(), "tenant {tenant} has no events");
    let end_us = events.iter().map(|e| e.timestamp_us).max().expect("events") + 1;
    let in_days = |event: &Event, days: i64| event.timestamp_us >= end_us - days * DAY_US;

    let mut pairs: HashMap<(&str, &str), u64> = HashMap::new();
    for event in events.iter().filter(|e| in_days(e, 7)) {
        *pairs
            .entry((event.action.as_str(), event.resource.kind.as_str()))
            .or_default() += 1;
    }
    let ((action, resource_type), _) = most_common(pairs).expect("the newest event is in range");

    let users: HashSet<&str> = generator
        .users(tenant)
        .expect("a generated tenant")
        .iter()
        .map(|user| user.email.as_str())
        .collect();
    let mut by_email: HashMap<&str, u64> = HashMap::new();
    for event in &events {
        if let Some(email) = event.actor.email.as_deref().filter(|e| users.contains(e)) {
            *by_email.entry(email).or_default() += 1;
        }
    }
    let mut active: Vec<(&str, u64)> = by_email.into_iter().collect();
    active.sort_unstable_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(b.0)));
    let (email, email_events) = *active
        .get(active.len() / 2)
        .unwrap_or_else(|| panic!("no user of {tenant} acted"));

    // A resource name with alphabetic words of 4+ letters, preferring names with two of them
    // (`llama-finetune-3` over `data-vol-7`), then the most frequent name stem.
    let mut stems: HashMap<Vec<String>, (u64, String)> = HashMap::new();
    for event in events.iter().filter(|e| in_days(e, 30)) {
        let Some(name) = event.resource.name.as_deref() else {
            continue;
        };
        let words: Vec<String> = atoms(name)
            .filter(|atom| atom.len() >= 4 && atom.chars().all(char::is_alphabetic))
            .collect();
        if !words.is_empty() {
            let slot = stems.entry(words).or_insert((0, name.to_string()));
            slot.0 += 1;
        }
    }
    let (words, (_, name)) = stems
        .into_iter()
        .max_by(|a, b| {
            (a.0.len() >= 2, a.1 .0)
                .cmp(&(b.0.len() >= 2, b.1 .0))
                .then_with(|| b.0.cmp(&a.0))
        })
        .unwrap_or_else(|| panic!("no resource name of {tenant} has a word"));
    // The longest word (the last of equals) is the word; the first word's start the prefix,
    // shorter than the word it comes from so that it is a real prefix.
    let word = words
        .iter()
        .rev()
        .max_by_key(|w| w.len())
        .expect("a word")
        .clone();
    let first = &words[0];
    let prefix: String = first.chars().take((first.len() - 1).min(4)).collect();

    Picks {
        tenant: tenant.to_string(),
        events: events.len() as u64,
        end_us,
        action: action.to_string(),
        resource_type: resource_type.to_string(),
        email: email.to_string(),
        email_events,
        word,
        prefix,
        name,
    }
}

/// The key with the highest count (the smallest key among equals).
fn most_common<K: Ord>(counts: HashMap<K, u64>) -> Option<(K, u64)> {
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
}

/// What a query answered, comparable across the two systems.
#[derive(Debug, PartialEq)]
enum Answer {
    /// The seqs of the returned rows, in order.
    Rows(Vec<u64>),
    Count(u64),
    Facets(Vec<(String, u64)>),
    Buckets(Vec<(i64, u64)>),
}

impl Answer {
    /// Rows for a page or export, the value of a count, values of facets, non-empty buckets.
    fn rows(&self) -> u64 {
        match self {
            Answer::Rows(seqs) => seqs.len() as u64,
            Answer::Count(n) => *n,
            Answer::Facets(values) => values.len() as u64,
            Answer::Buckets(buckets) => buckets.len() as u64,
        }
    }
}

struct Timing {
    /// Timed calls, fastest first.
    samples: Vec<Duration>,
    /// What the first call answered.
    answer: Answer,
}

impl Timing {
    /// Nearest-rank percentile, in ms.
    fn percentile_ms(&self, q: f64) -> f64 {
        let rank = (self.samples.len() as f64 * q).ceil() as usize;
        self.samples[rank.clamp(1, self.samples.len()) - 1].as_secs_f64() * 1e3
    }
}

/// Runs `query` [`WARMUPS`] times untimed, then up to `repeat` times timed.
fn measure(repeat: usize, mut query: impl FnMut() -> Answer) -> Timing {
    let answer = query();
    for _ in 1..WARMUPS {
        black_box(query());
    }
    let mut samples = Vec::with_capacity(repeat);
    let started = Instant::now();
    while samples.len() < repeat {
        let start = Instant::now();
        let answer = query();
        samples.push(start.elapsed());
        // Dropped outside the timed span, for both systems alike.
        drop(black_box(answer));
        if samples.len() >= MIN_REPEATS && started.elapsed() > QUERY_BUDGET {
            break;
        }
    }
    samples.sort_unstable();
    Timing { samples, answer }
}

/// One row of the report table.
struct Line {
    key: &'static str,
    label: String,
    /// Events matching the query (our `count`), page size aside.
    matching: u64,
    ours: Timing,
    sqlite: Option<Timing>,
}

// ---- ours ----------------------------------------------------------------------------------

fn tenant_query(picks: &Picks, days: i64) -> Query {
    let mut query = Query::new(Scope::one(picks.tenant.as_str()));
    query.from_us = Some(picks.end_us - days * DAY_US);
    query.to_us = Some(picks.end_us);
    query
}

fn ours_page(store: &Store, query: &Query) -> Answer {
    let page = search(&store.snapshot(), query).expect("search");
    Answer::Rows(page.events.iter().map(|event| event.seq).collect())
}

/// Every row of the query, newest first, decoded, through [`export_chunks`] with its default
/// worker threads (what the export route does; each row's fields are resolved into an
/// `EventRef`, of which this keeps the seq).
fn ours_export(store: &Store, query: &Query) -> Answer {
    let snapshot = store.snapshot();
    let mut query = query.clone();
    query.order = Order::NewestFirst;
    query.cursor = None;
    let write: &RowWriter = &|event, out| {
        black_box(event);
        out.extend_from_slice(&event.seq.to_le_bytes());
    };
    let mut seqs = Vec::new();
    export_chunks(
        &snapshot,
        &query,
        &ExportOptions::default(),
        write,
        &mut |chunk| {
            seqs.extend(
                chunk
                    .chunks_exact(8)
                    .map(|seq| u64::from_le_bytes(seq.try_into().expect("8 bytes"))),
            );
            true
        },
    )
    .expect("export");
    Answer::Rows(seqs)
}

// ---- SQLite --------------------------------------------------------------------------------

const SQL_SCHEMA: &str = "
CREATE TABLE events (
    seq           INTEGER PRIMARY KEY,
    timestamp_us  INTEGER NOT NULL,
    tenant        TEXT NOT NULL,
    project       TEXT,
    action        TEXT NOT NULL,
    outcome       TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id   TEXT,
    resource_name TEXT,
    actor_id      TEXT,
    actor_email   TEXT,
    actor_ip      TEXT,
    user_agent    TEXT,
    details       TEXT,
    changes       TEXT
);
CREATE VIRTUAL TABLE events_fts USING fts5(
    resource_name, resource_id, actor_email, actor_id, action, project, user_agent, details,
    changes,
    content = '',
    tokenize = 'unicode61 remove_diacritics 0'
);";

const SQL_INDEXES: &str = "
CREATE INDEX events_tenant_time ON events (tenant, timestamp_us);
CREATE INDEX events_tenant_action_time ON events (tenant, action, timestamp_us);
CREATE INDEX events_tenant_type_time ON events (tenant, resource_type, timestamp_us);
CREATE INDEX events_tenant_email_time ON events (tenant, actor_email, timestamp_us);
ANALYZE;";

/// Every column, in [`SqlRow::read`]'s order.
const SQL_COLUMNS: &str = "seq, timestamp_us, tenant, project, action, outcome, resource_type, \
     resource_id, resource_name, actor_id, actor_email, actor_ip, user_agent, details, changes";
const SQL_COLUMNS_E: &str = "e.seq, e.timestamp_us, e.tenant, e.project, e.action, e.outcome, \
     e.resource_type, e.resource_id, e.resource_name, e.actor_id, e.actor_email, e.actor_ip, \
     e.user_agent, e.details, e.changes";

/// A row read whole, as ours decodes whole events.
#[allow(dead_code)] // read to be decoded, not looked at
struct SqlRow {
    seq: i64,
    timestamp_us: i64,
    tenant: String,
    project: Option<String>,
    action: String,
    outcome: String,
    resource_type: String,
    resource_id: Option<String>,
    resource_name: Option<String>,
    actor_id: Option<String>,
    actor_email: Option<String>,
    actor_ip: Option<String>,
    user_agent: Option<String>,
    details: Option<String>,
    changes: Option<String>,
}

impl SqlRow {
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<SqlRow> {
        Ok(SqlRow {
            seq: row.get(0)?,
            timestamp_us: row.get(1)?,
            tenant: row.get(2)?,
            project: row.get(3)?,
            action: row.get(4)?,
            outcome: row.get(5)?,
            resource_type: row.get(6)?,
            resource_id: row.get(7)?,
            resource_name: row.get(8)?,
            actor_id: row.get(9)?,
            actor_email: row.get(10)?,
            actor_ip: row.get(11)?,
            user_agent: row.get(12)?,
            details: row.get(13)?,
            changes: row.get(14)?,
        })
    }
}

/// Loads every event (with the seq the store gave it) in one transaction; returns the seconds
/// the rows, the FTS5 index and the B-tree indexes took.
fn sqlite_load(conn: &mut Connection, batches: &[Vec<Event>], first_seqs: &[u64]) -> f64 {
    let start = Instant::now();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF; PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -1048576;",
    )
    .expect("pragmas");
    conn.execute_batch(SQL_SCHEMA).expect("schema");
    let transaction = conn.transaction().expect("begin");
    {
        let mut insert_row = transaction
            .prepare(&format!(
                "INSERT INTO events ({SQL_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
            ))
            .expect("prepare insert");
        let mut insert_text = transaction
            .prepare(
                "INSERT INTO events_fts (rowid, resource_name, resource_id, actor_email, \
                 actor_id, action, project, user_agent, details, changes) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .expect("prepare fts insert");
        for (batch, &first_seq) in batches.iter().zip(first_seqs) {
            for (offset, e) in batch.iter().enumerate() {
                let seq = (first_seq + offset as u64) as i64;
                insert_row
                    .execute(params![
                        seq,
                        e.timestamp_us,
                        e.tenant.as_str(),
                        e.project.as_deref(),
                        e.action.as_str(),
                        e.outcome.as_str(),
                        e.resource.kind.as_str(),
                        e.resource.id.as_deref(),
                        e.resource.name.as_deref(),
                        e.actor.id.as_deref(),
                        e.actor.email.as_deref(),
                        e.actor.ip.as_deref(),
                        e.actor.user_agent.as_deref(),
                        e.details.as_deref(),
                        e.changes.as_deref(),
                    ])
                    .expect("insert row");
                insert_text
                    .execute(params![
                        seq,
                        e.resource.name.as_deref(),
                        e.resource.id.as_deref(),
                        e.actor.email.as_deref(),
                        e.actor.id.as_deref(),
                        e.action.as_str(),
                        e.project.as_deref(),
                        e.actor.user_agent.as_deref(),
                        e.details.as_deref(),
                        e.changes.as_deref(),
                    ])
                    .expect("insert text");
            }
        }
    }
    transaction.commit().expect("commit");
    conn.execute_batch(SQL_INDEXES).expect("indexes");
    let seconds = start.elapsed().as_secs_f64();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA synchronous = NORMAL;")
        .expect("checkpoint");
    seconds
}

fn sqlite_rows(conn: &Connection, sql: &str, params: &[&dyn rusqlite::ToSql]) -> Vec<SqlRow> {
    let mut statement = conn.prepare_cached(sql).expect("prepare");
    let rows = statement.query_map(params, SqlRow::read).expect("query");
    rows.map(|row| row.expect("row")).collect()
}

fn sqlite_page(conn: &Connection, sql: &str, params: &[&dyn rusqlite::ToSql]) -> Answer {
    let rows = sqlite_rows(conn, sql, params);
    let seqs = rows.iter().map(|row| row.seq as u64).collect();
    black_box(rows);
    Answer::Rows(seqs)
}

fn sqlite_pairs<K: rusqlite::types::FromSql>(
    conn: &Connection,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Vec<(K, u64)> {
    let mut statement = conn.prepare_cached(sql).expect("prepare");
    let rows = statement
        .query_map(params, |row| {
            Ok((row.get::<_, K>(0)?, row.get::<_, i64>(1)? as u64))
        })
        .expect("query");
    rows.map(|row| row.expect("row")).collect()
}

/// One statement stepped to the end (SQLite streams it from the (tenant, timestamp) index),
/// rows read in batches of [`EXPORT_PAGE_ROWS`] as ours are.
fn sqlite_export(conn: &Connection, picks: &Picks) -> Answer {
    let sql = format!(
        "SELECT {SQL_COLUMNS} FROM events \
         WHERE tenant = ?1 AND timestamp_us >= ?2 AND timestamp_us < ?3 \
         ORDER BY timestamp_us DESC, seq DESC"
    );
    let from_us = picks.end_us - 30 * DAY_US;
    let mut statement = conn.prepare_cached(&sql).expect("prepare");
    let mut rows = statement
        .query_map(params![picks.tenant, from_us, picks.end_us], SqlRow::read)
        .expect("query");
    let mut seqs = Vec::new();
    let mut batch = Vec::with_capacity(EXPORT_PAGE_ROWS);
    loop {
        batch.clear();
        batch.extend(
            rows.by_ref()
                .take(EXPORT_PAGE_ROWS)
                .map(|row| row.expect("row")),
        );
        if batch.is_empty() {
            break;
        }
        seqs.extend(batch.iter().map(|row| row.seq as u64));
        black_box(&batch);
    }
    Answer::Rows(seqs)
}

// ---- the report ----------------------------------------------------------------------------

fn run_tenant(
    store: &Store,
    sqlite: Option<&Connection>,
    picks: &Picks,
    repeat: usize,
) -> Vec<Line> {
    let mut lines = Vec::new();
    let snapshot_count = |query: &Query| count(&store.snapshot(), query).expect("count");
    let mut line = |key: &'static str,
                    label: String,
                    counted: &Query,
                    ours: &mut dyn FnMut() -> Answer,
                    theirs: Option<&mut dyn FnMut(&Connection) -> Answer>| {
        let matching = snapshot_count(counted);
        let ours = measure(repeat, ours);
        let sqlite = match (sqlite, theirs) {
            (Some(conn), Some(theirs)) => Some(measure(repeat, || theirs(conn))),
            _ => None,
        };
        lines.push(Line {
            key,
            label,
            matching,
            ours,
            sqlite,
        });
    };

    let from_7d = picks.end_us - 7 * DAY_US;
    let from_30d = picks.end_us - 30 * DAY_US;

    // a. filtered page
    let mut filtered = tenant_query(picks, 7);
    filtered
        .filters
        .include(Field::Action, picks.action.as_str());
    filtered
        .filters
        .include(Field::ResourceType, picks.resource_type.as_str());
    filtered.limit = PAGE_ROWS;
    let sql = format!(
        "SELECT {SQL_COLUMNS} FROM events WHERE tenant = ?1 AND action = ?2 \
         AND resource_type = ?3 AND timestamp_us >= ?4 AND timestamp_us < ?5 \
         ORDER BY timestamp_us DESC, seq DESC LIMIT {PAGE_ROWS}"
    );
    line(
        "filtered_page",
        format!(
            "a. page action:{} type:{} 7d",
            picks.action, picks.resource_type
        ),
        &filtered,
        &mut || ours_page(store, &filtered),
        Some(&mut |conn: &Connection| {
            sqlite_page(
                conn,
                &sql,
                params![
                    picks.tenant,
                    picks.action,
                    picks.resource_type,
                    from_7d,
                    picks.end_us
                ],
            )
        }),
    );

    // b. page by actor email, all time
    let mut by_email = Query::new(Scope::one(picks.tenant.as_str()));
    by_email
        .filters
        .include(Field::ActorEmail, picks.email.as_str());
    by_email.limit = PAGE_ROWS;
    let sql = format!(
        "SELECT {SQL_COLUMNS} FROM events WHERE tenant = ?1 AND actor_email = ?2 \
         ORDER BY timestamp_us DESC, seq DESC LIMIT {PAGE_ROWS}"
    );
    line(
        "email_page",
        format!("b. page email:{}", picks.email),
        &by_email,
        &mut || ours_page(store, &by_email),
        Some(&mut |conn: &Connection| sqlite_page(conn, &sql, params![picks.tenant, picks.email])),
    );

    // c. full text, a word and a prefix, all time
    let text_sql = format!(
        "SELECT {SQL_COLUMNS_E} FROM events_fts JOIN events AS e ON e.seq = events_fts.rowid \
         WHERE events_fts MATCH ?1 AND e.tenant = ?2 \
         ORDER BY e.timestamp_us DESC, e.seq DESC LIMIT {PAGE_ROWS}"
    );
    for (key, term, fts) in [
        (
            "text_word",
            TextTerm::word(picks.word.as_str()),
            format!("\"{}\"", picks.word),
        ),
        (
            "text_prefix",
            TextTerm::prefix(picks.prefix.as_str()),
            format!("{}*", picks.prefix),
        ),
    ] {
        let mut text = Query::new(Scope::one(picks.tenant.as_str()));
        text.text.push(term);
        text.limit = PAGE_ROWS;
        line(
            key,
            format!("c. text {fts} (from {})", picks.name),
            &text,
            &mut || ours_page(store, &text),
            Some(&mut |conn: &Connection| sqlite_page(conn, &text_sql, params![fts, picks.tenant])),
        );
    }

    // d. facets by action, 30 days
    let month = tenant_query(picks, 30);
    line(
        "facets_action",
        format!("d. facets action top {FACET_TOP} 30d"),
        &month,
        &mut || {
            Answer::Facets(
                facets(&store.snapshot(), &month, Field::Action, FACET_TOP).expect("facets"),
            )
        },
        Some(&mut |conn: &Connection| {
            Answer::Facets(sqlite_pairs(
                conn,
                &format!(
                    "SELECT action, count(*) AS n FROM events \
                     WHERE tenant = ?1 AND timestamp_us >= ?2 AND timestamp_us < ?3 \
                     GROUP BY action ORDER BY n DESC, action LIMIT {FACET_TOP}"
                ),
                params![picks.tenant, from_30d, picks.end_us],
            ))
        }),
    );

    // e. count of (a)
    line(
        "count",
        "e. count of a".to_string(),
        &filtered,
        &mut || Answer::Count(count(&store.snapshot(), &filtered).expect("count")),
        Some(&mut |conn: &Connection| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT count(*) FROM events WHERE tenant = ?1 AND action = ?2 \
                     AND resource_type = ?3 AND timestamp_us >= ?4 AND timestamp_us < ?5",
                )
                .expect("prepare");
            let n: i64 = statement
                .query_row(
                    params![
                        picks.tenant,
                        picks.action,
                        picks.resource_type,
                        from_7d,
                        picks.end_us
                    ],
                    |row| row.get(0),
                )
                .expect("count");
            Answer::Count(n as u64)
        }),
    );

    // f. histogram, 1-hour buckets, 7 days
    let week = tenant_query(picks, 7);
    line(
        "histogram",
        "f. histogram 1h buckets 7d".to_string(),
        &week,
        &mut || Answer::Buckets(histogram(&store.snapshot(), &week, HOUR_US).expect("histogram")),
        Some(&mut |conn: &Connection| {
            Answer::Buckets(sqlite_pairs(
                conn,
                &format!(
                    "SELECT timestamp_us - timestamp_us % {HOUR_US} AS bucket, count(*) \
                     FROM events WHERE tenant = ?1 AND timestamp_us >= ?2 AND timestamp_us < ?3 \
                     GROUP BY bucket ORDER BY bucket"
                ),
                params![picks.tenant, from_7d, picks.end_us],
            ))
        }),
    );

    // g. export order scan, 30 days
    line(
        "export",
        format!("g. export 30d, chunks of {EXPORT_PAGE_ROWS}"),
        &month,
        &mut || ours_export(store, &month),
        Some(&mut |conn: &Connection| sqlite_export(conn, picks)),
    );
    lines
}

fn print_table(picks: &Picks, rank: &str, lines: &[Line]) {
    println!();
    println!(
        "{rank} tenant {}: {} events; ranges end at {} (its newest event)",
        picks.tenant,
        picks.events,
        format_rfc3339_us(picks.end_us)
    );
    println!(
        "  (b) {} has {} events; (c) text from the resource name {:?}",
        picks.email, picks.email_events, picks.name
    );
    println!(
        "  {:<44} {:>6} {:>8} {:>4} {:>9} {:>9} {:>10} {:>9} {:>8} {:>8}  same",
        "query",
        "rows",
        "matching",
        "n",
        "ours p50",
        "p99",
        "sqlite p50",
        "p99",
        "ratio50",
        "ratio99"
    );
    for line in lines {
        let ours = &line.ours;
        let (sqlite_cells, same) = match &line.sqlite {
            Some(sqlite) => (
                format!(
                    "{:>10.3} {:>9.3} {:>8.2} {:>8.2}",
                    sqlite.percentile_ms(0.5),
                    sqlite.percentile_ms(0.99),
                    sqlite.percentile_ms(0.5) / ours.percentile_ms(0.5),
                    sqlite.percentile_ms(0.99) / ours.percentile_ms(0.99)
                ),
                if sqlite.answer == ours.answer {
                    "yes".to_string()
                } else {
                    format!("NO (sqlite: {} rows)", sqlite.answer.rows())
                },
            ),
            None => (
                format!("{:>10} {:>9} {:>8} {:>8}", "-", "-", "-", "-"),
                "-".into(),
            ),
        };
        println!(
            "  {:<44} {:>6} {:>8} {:>4} {:>9.3} {:>9.3} {sqlite_cells}  {same}",
            truncate(&line.label, 44),
            ours.answer.rows(),
            line.matching,
            ours.samples.len(),
            ours.percentile_ms(0.5),
            ours.percentile_ms(0.99),
        );
    }
    if let Some(export) = lines.iter().find(|line| line.key == "export") {
        let rate = |timing: &Timing| timing.answer.rows() as f64 / timing.percentile_ms(0.5) * 1e3;
        print!(
            "  export rate at p50: ours {:.0} rows/s",
            rate(&export.ours)
        );
        match &export.sqlite {
            Some(sqlite) => println!(", sqlite {:.0} rows/s", rate(sqlite)),
            None => println!(),
        }
    }
}

fn truncate(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        text.to_string()
    } else {
        let mut out: String = text.chars().take(chars - 1).collect();
        out.push('~');
        out
    }
}

fn lines_json(lines: &[Line]) -> String {
    let cells: Vec<String> = lines
        .iter()
        .map(|line| {
            let sqlite = line.sqlite.as_ref().map_or(String::new(), |sqlite| {
                format!(
                    ",\"sqlite_p50_ms\":{:.4},\"sqlite_p99_ms\":{:.4},\"same\":{}",
                    sqlite.percentile_ms(0.5),
                    sqlite.percentile_ms(0.99),
                    sqlite.answer == line.ours.answer
                )
            });
            format!(
                "\"{}\":{{\"rows\":{},\"matching\":{},\"ours_p50_ms\":{:.4},\"ours_p99_ms\":{:.4}{sqlite}}}",
                line.key,
                line.ours.answer.rows(),
                line.matching,
                line.ours.percentile_ms(0.5),
                line.ours.percentile_ms(0.99)
            )
        })
        .collect();
    format!("{{{}}}", cells.join(","))
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU".to_string(), |m| m.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_gib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / (1 << 20) as f64);
    format!(
        "{cores} cores available ({model}), {memory_gib:.1} GiB RAM, SQLite {}",
        rusqlite::version()
    )
}

fn main() {
    let args = parse_args();
    println!("search report");
    println!("  machine: {}", machine());
    println!(
        "  command: {}",
        std::env::args().collect::<Vec<_>>().join(" ")
    );

    // Kept until the end of main: the temporary directory is removed when it drops.
    let temporary = match &args.dir {
        Some(_) => None,
        None => Some(tempfile::tempdir_in(".").expect("tempdir")),
    };
    let base = match (&args.dir, &temporary) {
        (Some(dir), _) => dir.clone(),
        (None, temporary) => temporary.as_ref().expect("a tempdir").path().to_path_buf(),
    };
    let store_dir = base.join("store");
    let sqlite_path = base.join("sqlite.db");
    for path in [&store_dir, &sqlite_path] {
        assert!(
            !path.exists(),
            "{} exists already: remove it or pick another --dir",
            path.display()
        );
    }
    std::fs::create_dir_all(&base).expect("create --dir");
    println!("  data: {}", base.display());

    // 1. Generate, load, seal, merge. The events are generated batch by batch as they are
    // appended; SQLite needs them all again afterwards, the picks only the two measured
    // tenants' (so that a `--skip-sqlite` run holds only those: 100M events fit).
    let mut generator = generator(args.events);
    let measured = [
        generator.largest_tenant().to_string(),
        generator.median_tenant().to_string(),
    ];
    let mut batches: Vec<Vec<Event>> = Vec::with_capacity(args.events.div_ceil(BATCH_EVENTS));
    let total_events = args.events as u64;
    let mut options = StoreOptions::new(&store_dir);
    options.segment_hook = Some(auditlog_index::SegmentIndexer::hook());
    options.background = false;
    options.tail_bytes_max = u64::MAX;
    options.durability = Durability::Interval(Duration::from_millis(100));
    let hook = if options.segment_hook.is_some() {
        "segment hook included"
    } else {
        "no segment hook: indexes not built"
    };
    let store = Store::open(options).expect("open store");
    let mut first_seqs = Vec::with_capacity(args.events.div_ceil(BATCH_EVENTS));
    // Sealed every SEAL_EVERY events, as the background sealer would (it seals at 64 MiB of
    // tail), so the tail does not hold a second copy of every event; small segments then merge.
    let mut append_seconds = 0.0;
    let mut seal_seconds = 0.0;
    let mut unsealed = 0;
    let mut generate_seconds = 0.0;
    let mut left = args.events;
    while left > 0 {
        let start = Instant::now();
        let batch = generator.fill(left.min(BATCH_EVENTS));
        generate_seconds += start.elapsed().as_secs_f64();
        left -= batch.len();
        let start = Instant::now();
        let result = store.append(batch.clone()).expect("append");
        append_seconds += start.elapsed().as_secs_f64();
        assert_eq!(result.accepted, batch.len(), "generated events are unique");
        first_seqs.push(result.first_seq.expect("a stored batch"));
        unsealed += batch.len();
        if args.skip_sqlite {
            let mut kept: Vec<Event> = batch
                .into_iter()
                .filter(|event| measured.iter().any(|m| *m == event.tenant))
                .collect();
            // The filtered collect reuses the batch's buffer: without this, every batch kept
            // its whole capacity (~450 bytes per generated event).
            kept.shrink_to_fit();
            batches.push(kept);
        } else {
            batches.push(batch);
        }
        if unsealed >= SEAL_EVERY {
            let start = Instant::now();
            store.seal().expect("seal");
            seal_seconds += start.elapsed().as_secs_f64();
            unsealed = 0;
        }
    }
    let start = Instant::now();
    store.seal().expect("seal");
    seal_seconds += start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut merges = 0;
    loop {
        let made = store.merge().expect("merge");
        if made == 0 {
            break;
        }
        merges += made;
    }
    let merge_seconds = start.elapsed().as_secs_f64();
    let stats = store.stats();
    assert_eq!(stats.tail_events, 0, "every event is sealed");
    assert_eq!(stats.sealed_events, total_events);
    let mut disk = DiskBytes::default();
    disk_bytes(&store_dir.join("segments"), &mut disk);
    let per_event = |bytes: u64| bytes as f64 / total_events as f64;

    println!(
        "  store: {total_events} events generated in {generate_seconds:.1} s, appended in {append_seconds:.1} s; {} segments in {} partitions",
        stats.segments, stats.partitions
    );
    println!(
        "  seal                        {:>10.0} events/s  ({seal_seconds:.2} s, {hook})",
        total_events as f64 / seal_seconds
    );
    {
        use std::sync::atomic::Ordering::Relaxed;
        let counters = &auditlog_index::segment_index::BUILD_COUNTERS;
        let rows = counters.rows.load(Relaxed).max(1) as f64;
        let filter_s = counters.filter_nanos.load(Relaxed) as f64 / 1e9;
        let text_s = counters.text_nanos.load(Relaxed) as f64 / 1e9;
        println!(
            "  index build (seal + merges)  {:>9.0} rows: bitmaps {:.2} s ({:.0} rows/s), tantivy {:.2} s ({:.0} rows/s), on two threads",
            rows,
            filter_s,
            rows / filter_s.max(1e-9),
            text_s,
            rows / text_s.max(1e-9)
        );
    }
    println!("  merge                       {merge_seconds:>10.2} s  ({merges} merges)");
    println!(
        "  segments (*.seg)            {:>10.1} B/event",
        per_event(disk.segments)
    );
    println!(
        "  filter index (*.idx)        {:>10.1} B/event",
        per_event(disk.filter_index)
    );
    println!(
        "  full-text index (*.text/)   {:>10.1} B/event",
        per_event(disk.text_index)
    );
    println!(
        "  index overhead              {:>10.1} B/event",
        per_event(disk.filter_index + disk.text_index)
    );
    {
        // The filter index by column.
        let snapshot = store.snapshot();
        let mut by_column: Vec<(auditlog_engine::segment::Column, u64)> =
            auditlog_index::filter::FILTER_COLUMNS
                .iter()
                .map(|&column| (column, 0))
                .collect();
        for sealed in snapshot.segments.iter() {
            if let Some(index) = auditlog_index::SegmentIndex::of(sealed) {
                for (column, bytes) in &mut by_column {
                    *bytes += index.filters.column_bytes(*column);
                }
            }
        }
        let parts: Vec<String> = by_column
            .iter()
            .map(|(column, bytes)| format!("{} {:.2}", column.name(), per_event(*bytes)))
            .collect();
        println!("    by column (B/event): {}", parts.join(", "));
    }
    if disk.other > 0 {
        println!(
            "  other files                 {:>10.1} B/event",
            per_event(disk.other)
        );
    }

    // 2. SQLite, loaded with the same events and seqs.
    let mut sqlite = None;
    let mut sqlite_json = String::new();
    if !args.skip_sqlite {
        let mut conn = Connection::open(&sqlite_path).expect("open sqlite");
        let seconds = sqlite_load(&mut conn, &batches, &first_seqs);
        // The WAL is checkpointed and truncated after the load; count it in case it is not.
        let bytes: u64 = [sqlite_path.clone(), base.join("sqlite.db-wal")]
            .iter()
            .map(|path| std::fs::metadata(path).map_or(0, |m| m.len()))
            .sum();
        println!(
            "  sqlite load + indexes       {:>10.0} events/s  ({seconds:.1} s), {:.1} B/event on disk",
            total_events as f64 / seconds,
            per_event(bytes)
        );
        sqlite_json = format!(
            ",\"sqlite_load_events_per_s\":{:.0},\"sqlite_bytes_per_event\":{:.2}",
            total_events as f64 / seconds,
            per_event(bytes)
        );
        sqlite = Some(conn);
    }

    // 3. Queries.
    let tenants = [("largest", &measured[0]), ("median", &measured[1])];
    let mut json_tenants = Vec::new();
    for (rank, tenant) in &tenants {
        let picks = pick(&generator, &batches, tenant);
        let lines = run_tenant(&store, sqlite.as_ref(), &picks, args.repeat);
        print_table(&picks, rank, &lines);
        json_tenants.push(format!(
            "\"{rank}\":{{\"tenant\":\"{tenant}\",\"events\":{},\"queries\":{}}}",
            picks.events,
            lines_json(&lines)
        ));
    }

    println!();
    println!(
        "{{\"events\":{total_events},\"seal_events_per_s\":{:.0},\"merge_s\":{merge_seconds:.3},\"seg_bytes_per_event\":{:.2},\"idx_bytes_per_event\":{:.2},\"text_bytes_per_event\":{:.2}{sqlite_json},\"tenants\":{{{}}}}}",
        total_events as f64 / seal_seconds,
        per_event(disk.segments),
        per_event(disk.filter_index),
        per_event(disk.text_index),
        json_tenants.join(",")
    );
}
