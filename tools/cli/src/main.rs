//! `auditlog`: the audit-log datastore's server and command-line client.
//!
//! ```text
//! auditlog serve [--config FILE] [--data-dir DIR] [--listen ADDR] [--retention-days N]
//! ```
//!
//! Configuration precedence: defaults, then the TOML file, then `AUDITLOG_*` environment
//! variables, then flags. On first start the server creates an admin token and prints it once
//! (or takes it from `AUDITLOG_ADMIN_TOKEN`); only its hash is stored.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

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
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
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
            let admin_token = std::env::var("AUDITLOG_ADMIN_TOKEN").ok();
            let (state, shown) = auditlog_server::open_state(settings, admin_token)
                .context("cannot start the store")?;
            if let Some(secret) = shown {
                println!("admin token (shown once, store it now): {secret}");
            }
            println!("listening on http://{}", state.config.listen);
            let runtime = tokio::runtime::Runtime::new().context("tokio runtime")?;
            runtime
                .block_on(auditlog_server::serve(state))
                .context("server failed")?;
            Ok(())
        }
    }
}
