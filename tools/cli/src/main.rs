//! `auditlog`: the audit-log datastore's server and command-line client.
//!
//! ```text
//! auditlog serve [--config FILE] [--data-dir DIR] [--listen ADDR] [--retention-days N]
//! auditlog ingest FILE|-            NDJSON or a JSON array, in batches, with a progress bar
//! auditlog query [filters]          matching events as NDJSON, page after page
//! auditlog tail [filters]           the live stream
//! auditlog export [filters] --format csv|ndjson [--output FILE]
//! auditlog token create|list|revoke
//! auditlog loadgen --rate N --connections N --duration S
//! auditlog verify [--data-dir DIR] [--expect-head N:HEX]...  every checksum and the integrity
//!                                   ledger of a stopped server's data, read only
//! ```
//!
//! Client commands take `--url` (`AUDITLOG_URL`, default http://127.0.0.1:7700) and `--token`
//! (`AUDITLOG_TOKEN`).
//!
//! Configuration precedence: defaults, then the TOML file, then `AUDITLOG_*` environment
//! variables, then flags. On first start the server creates an admin token and prints it once
//! (or takes it from `AUDITLOG_ADMIN_TOKEN`); only its hash is stored.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

mod allocator;
mod client;
mod loadgen;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "auditlog", version, about = "Self-hosted audit-log datastore")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (HTTP API, live stream, the Audit Logs page).
    Serve {
        /// TOML configuration file.
        #[arg(long, env = "AUDITLOG_CONFIG")]
        config: Option<PathBuf>,
        /// Data directory [default: ./auditlog-data].
        #[arg(long, env = "AUDITLOG_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Address to listen on [default: 127.0.0.1:7700].
        #[arg(long, env = "AUDITLOG_LISTEN")]
        listen: Option<SocketAddr>,
        /// Retention of the default class, in days [default: 90].
        #[arg(long, env = "AUDITLOG_RETENTION_DAYS")]
        retention_days: Option<u32>,
        /// Directory that expired partitions are moved to (deleted when unset).
        #[arg(long, env = "AUDITLOG_ARCHIVE_DIR")]
        archive_dir: Option<PathBuf>,
        /// How much nicer than the server sealing and index building run [default: 10].
        #[arg(long, env = "AUDITLOG_BACKGROUND_NICE")]
        background_nice: Option<i32>,
        /// Run sealing and index building only on CPU time nothing else wants (see
        /// `background_idle` in the configuration) [default: true].
        #[arg(long, env = "AUDITLOG_BACKGROUND_IDLE")]
        background_idle: Option<bool>,
        /// Give freed memory back to the operating system instead of keeping it for the next
        /// seal (see `release_memory` in the configuration) [default: false].
        #[arg(long, env = "AUDITLOG_RELEASE_MEMORY")]
        release_memory: Option<bool>,
        /// Allow transparent huge pages for the server's memory (see `huge_pages` in the
        /// configuration) [default: false].
        #[arg(long, env = "AUDITLOG_HUGE_PAGES")]
        huge_pages: Option<bool>,
        /// Most memory, in bytes, that acknowledged events not yet sealed may hold before
        /// ingest waits and then answers busy (see `tail_bytes_max` in the configuration)
        /// [default: 268435456, 256 MiB].
        #[arg(long, env = "AUDITLOG_TAIL_BYTES_MAX")]
        tail_bytes_max: Option<u64>,
    },
    /// Send events, NDJSON or a JSON array, from a file (or - for stdin).
    Ingest {
        #[command(flatten)]
        server: ServerArgs,
        input: String,
        /// Events per request (1..=10000, the server's default limit per batch).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        batch: u64,
    },
    /// Print matching events as NDJSON.
    Query {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        filters: FilterArgs,
        /// Events per page.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
        limit: u64,
        /// Pages to fetch at most; when they stop before the last, the cursor to go on
        /// with is printed (on standard error).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        pages: u64,
        /// Go on from this cursor (what an earlier run printed).
        #[arg(long)]
        cursor: Option<String>,
        /// `newest` first (the default) or `oldest` first.
        #[arg(long, value_parser = ["newest", "oldest"])]
        order: Option<String>,
    },
    /// Follow the live stream.
    Tail {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        filters: FilterArgs,
        /// Resume from this seq (stored events first, then live ones).
        #[arg(long)]
        from_seq: Option<u64>,
    },
    /// Export every matching event.
    Export {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        filters: FilterArgs,
        /// `csv` or `ndjson`.
        #[arg(long, default_value = "csv", value_parser = ["csv", "ndjson"])]
        format: String,
        /// `newest` first (the default) or `oldest` first.
        #[arg(long, value_parser = ["newest", "oldest"])]
        order: Option<String>,
        /// File to write (standard output when absent).
        #[arg(long)]
        output: Option<String>,
    },
    /// Manage API tokens (admin).
    Token {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Check a data directory offline: every checksum of every segment and WAL file, and the
    /// integrity ledger (every segment file's SHA-256, the hash chain, the manifest), read
    /// only (the server must be stopped). Exits 1 when anything is damaged, missing or
    /// changed.
    Verify {
        /// The data directory.
        #[arg(long, default_value = "./auditlog-data")]
        data_dir: std::path::PathBuf,
        /// A ledger head recorded earlier (`GET /v1/admin/integrity`), as ENTRIES:HEX: the
        /// ledger's history must still pass through it. Repeatable.
        #[arg(long = "expect-head", value_parser = parse_expected_head)]
        expect_head: Vec<auditlog_engine::verify::ExpectedHead>,
        /// The server's archive directory: a segment retention moved there just before a
        /// crash (the next start finishes the move) is then reported as such, not as missing.
        #[arg(long, env = "AUDITLOG_ARCHIVE_DIR")]
        archive_dir: Option<std::path::PathBuf>,
    },
    /// Generate realistic load and report events/s and ack latency.
    Loadgen {
        #[command(flatten)]
        server: ServerArgs,
        /// Target events/s over all connections (0: as fast as acknowledged).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Connections, each sending its batches one after another (1..=1024).
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
        connections: u64,
        /// Events per request (1..=10000, the server's default limit per batch).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        batch: u64,
        /// Seconds to measure (at least 1).
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
        duration: u64,
        /// Seconds of load before the measured ones, left out of the figures.
        #[arg(long, default_value_t = 0)]
        warmup: u64,
        /// Tenants the generated events spread over (at least 1).
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
        tenants: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Live-stream subscribers to open (one per tenant, the largest tenants first), each
        /// timing events from the store's receive time to their arrival (needs an admin token).
        #[arg(long, default_value_t = 0)]
        subscribers: usize,
    },
}

#[derive(Args)]
struct ServerArgs {
    /// Server URL.
    #[arg(long, env = "AUDITLOG_URL", default_value = "http://127.0.0.1:7700")]
    url: String,
    /// API token.
    #[arg(long, env = "AUDITLOG_TOKEN")]
    token: String,
}

impl ServerArgs {
    fn endpoint(self) -> client::Endpoint {
        client::Endpoint::new(self.url, self.token)
    }
}

#[derive(Args)]
struct FilterArgs {
    /// Query language (`action:delete -outcome:failure llama*`; it may start with `-`).
    #[arg(long, short, allow_hyphen_values = true)]
    q: Option<String>,
    /// Tenant to read (repeatable; a read token reads its own tenants only).
    #[arg(long)]
    tenant: Vec<String>,
    /// Action, e.g. `delete` (repeatable: any of them).
    #[arg(long)]
    action: Vec<String>,
    /// Resource type, e.g. `pod` (repeatable).
    #[arg(long)]
    resource_type: Vec<String>,
    /// Actor id or email (repeatable).
    #[arg(long)]
    actor: Vec<String>,
    /// Project (repeatable).
    #[arg(long)]
    project: Vec<String>,
    /// `success` or `failure`.
    #[arg(long, value_parser = ["success", "failure"])]
    outcome: Option<String>,
    /// 24h, 7d, 30d, ...
    #[arg(long)]
    since: Option<String>,
    /// From this time on: RFC 3339 or YYYY-MM-DD.
    #[arg(long)]
    from: Option<String>,
    /// Up to this time (exclusive): RFC 3339 or YYYY-MM-DD.
    #[arg(long)]
    to: Option<String>,
}

impl FilterArgs {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        for (key, values) in [
            ("tenant", &self.tenant),
            ("action", &self.action),
            ("resource_type", &self.resource_type),
            ("actor", &self.actor),
            ("project", &self.project),
        ] {
            pairs.extend(values.iter().map(|v| (key, v.clone())));
        }
        for (key, value) in [
            ("q", &self.q),
            ("outcome", &self.outcome),
            ("since", &self.since),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if let Some(value) = value {
                pairs.push((key, value.clone()));
            }
        }
        pairs
    }
}

#[derive(Subcommand)]
pub enum TokenAction {
    /// Create a token (its secret is printed once).
    Create {
        #[arg(long)]
        name: String,
        /// admin, ingest or read.
        #[arg(long)]
        role: String,
        /// Tenants the token is limited to (repeat).
        #[arg(long)]
        tenants: Vec<String>,
    },
    List,
    Revoke {
        id: String,
    },
}

/// `--expect-head ENTRIES:HEX`.
fn parse_expected_head(text: &str) -> Result<auditlog_engine::verify::ExpectedHead, String> {
    let (entries, hex) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not ENTRIES:HEX (e.g. 12:4b49fc5f...)"))?;
    let entries: u64 = entries
        .parse()
        .map_err(|_| format!("{entries:?} is not a number of ledger entries"))?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{hex:?} is not a SHA-256 in 64 hex digits"));
    }
    let mut head = [0u8; 32];
    for (i, byte) in head.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex digits checked");
    }
    Ok(auditlog_engine::verify::ExpectedHead { entries, head })
}

/// `auditlog verify`: prints what [`auditlog_engine::verify::verify_dir_expecting`] found;
/// exits 1 on damage.
fn verify(
    data_dir: &std::path::Path,
    expected: &[auditlog_engine::verify::ExpectedHead],
    archive_dir: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let options = auditlog_engine::verify::VerifyOptions {
        expected,
        archive_dir,
    };
    let report = auditlog_engine::verify::verify_dir_with(data_dir, &options)
        .with_context(|| format!("cannot check {}", data_dir.display()))?;
    for path in &report.archive_pending {
        println!(
            "archived, not yet dropped from the manifest (the next start finishes it if the \
             partition is past its retention, and refuses to start otherwise: a segment of a \
             live partition moved by hand, to be moved back): {}",
            path.display()
        );
    }
    println!(
        "segments: {} ok ({} rows); write-ahead log: {} files, {} events",
        report.segments_ok, report.rows_ok, report.wal_files, report.wal_events
    );
    match report.ledger {
        Some((entries, head)) => println!(
            "integrity ledger: {entries} entries, head {entries}:{}; {} segment files match \
             their recorded SHA-256; {} earlier head(s) checked",
            auditlog_engine::ledger::hex(&head),
            report.digests_ok,
            expected.len()
        ),
        None => println!("integrity ledger: none yet (the next start creates it)"),
    }
    if let Some((file, offset)) = &report.torn {
        println!(
            "torn write-ahead log tail in {} at byte {offset} (a crash; the next start cuts it)",
            file.display()
        );
    }
    if report.damage.is_empty() {
        println!("no damage found");
        return Ok(());
    }
    for damage in &report.damage {
        println!("damaged: {damage}");
    }
    anyhow::bail!("{} damaged or missing file(s)", report.damage.len())
}

fn main() {
    match run() {
        Ok(()) => {}
        // `auditlog query ... | head`: a reader that stops early ends the command quietly, as
        // it ends any Unix filter, not with an error and a failing status. (SIGPIPE stays
        // ignored, Rust's default: TLS writes go through writev, which has no MSG_NOSIGNAL,
        // so its default action would kill `tail` or `ingest` when a server resets a TLS
        // connection, instead of letting them reconnect or say where to resend from.)
        Err(error) if client::stdout_closed(&error) => {}
        Err(error) => {
            eprintln!("Error: {error:?}");
            std::process::exit(1);
        }
    }
}

fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tantivy=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve {
            config,
            data_dir,
            listen,
            retention_days,
            archive_dir,
            background_nice,
            background_idle,
            release_memory,
            huge_pages,
            tail_bytes_max,
        } => {
            let mut settings = match &config {
                Some(path) => {
                    auditlog_server::ServerConfig::from_file(path).map_err(anyhow::Error::msg)?
                }
                None => auditlog_server::ServerConfig::default(),
            };
            if let Some(dir) = data_dir {
                settings.data_dir = dir;
            }
            if let Some(listen) = listen {
                settings.listen = listen;
            }
            if let Some(days) = retention_days {
                settings.retention_days = days;
            }
            if let Some(dir) = archive_dir {
                settings.archive_dir = Some(dir);
            }
            if let Some(nice) = background_nice {
                settings.background_nice = nice;
            }
            if let Some(idle) = background_idle {
                settings.background_idle = idle;
            }
            if let Some(release) = release_memory {
                settings.release_memory = release;
            }
            if !settings.release_memory {
                if let Err(why) = allocator::keep_freed_memory() {
                    tracing::warn!(?why, "freed memory goes back to the operating system");
                }
            }
            if let Some(allow) = huge_pages {
                settings.huge_pages = allow;
            }
            if let Some(bytes) = tail_bytes_max {
                settings.tail_bytes_max = bytes;
            }
            settings.check().map_err(anyhow::Error::msg)?;
            if !settings.huge_pages {
                if let Err(error) = allocator::disable_huge_pages() {
                    tracing::warn!(%error, "transparent huge pages stay allowed");
                }
            }
            let admin_token = std::env::var("AUDITLOG_ADMIN_TOKEN").ok();
            let (state, shown) = auditlog_server::open_state(settings, admin_token)
                .context("cannot start the store")?;
            if let Some(secret) = shown {
                println!("admin token (shown once, store it now): {secret}");
            }
            let runtime = tokio::runtime::Runtime::new().context("tokio runtime")?;
            runtime
                .block_on(async {
                    let listener = auditlog_server::bind(&state).await?;
                    // Said once it is true: with port 0, the port the system chose.
                    let addr = listener
                        .local_addr()
                        .map_err(auditlog_server::ServeError::Serve)?;
                    println!("listening on http://{addr}");
                    auditlog_server::serve_on(listener, state).await
                })
                .context("server failed")?;
            Ok(())
        }
        Command::Ingest {
            server,
            input,
            batch,
        } => client::ingest(&server.endpoint(), &input, batch as usize),
        Command::Query {
            server,
            filters,
            limit,
            pages,
            cursor,
            order,
        } => {
            let mut pairs = filters.pairs();
            pairs.push(("limit", limit.to_string()));
            pairs.extend(order.map(|order| ("order", order)));
            client::query(&server.endpoint(), &pairs, pages as usize, cursor)
        }
        Command::Tail {
            server,
            filters,
            from_seq,
        } => client::tail(&server.endpoint(), &filters.pairs(), from_seq),
        Command::Export {
            server,
            filters,
            format,
            order,
            output,
        } => client::export(
            &server.endpoint(),
            &filters
                .pairs()
                .into_iter()
                .chain(order.map(|order| ("order", order)))
                .collect::<Vec<_>>(),
            &format,
            output.as_deref(),
        ),
        Command::Token { server, action } => client::token(&server.endpoint(), action),
        Command::Verify {
            data_dir,
            expect_head,
            archive_dir,
        } => verify(&data_dir, &expect_head, archive_dir.as_deref()),
        Command::Loadgen {
            server,
            rate,
            connections,
            batch,
            duration,
            warmup,
            tenants,
            seed,
            subscribers,
        } => loadgen::run(
            &server.endpoint(),
            &loadgen::LoadOptions {
                rate,
                connections: connections as usize,
                batch: batch as usize,
                duration: std::time::Duration::from_secs(duration),
                warmup: std::time::Duration::from_secs(warmup),
                tenants: tenants as usize,
                seed,
                subscribers,
            },
        ),
    }
}
