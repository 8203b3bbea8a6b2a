//! Server configuration: defaults, then a TOML file, then environment, then flags (the CLI
//! applies the last two).
//!
//! ```toml
//! data_dir = "/var/lib/auditlog"
//! listen = "0.0.0.0:7700"
//! retention_days = 90
//! archive_dir = "/mnt/archive/auditlog"
//! batch_events_max = 10000
//! batch_bytes_max = 16777216
//! background_nice = 10
//! background_idle = true
//! release_memory = false
//! huge_pages = false
//!
//! [retention_classes]
//! extended = 365
//!
//! [tenant_classes]
//! acct_0042 = "extended"
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use auditlog_engine::partition::RetentionConfig;
use auditlog_engine::StoreOptions;
use serde::Deserialize;

/// Everything `auditlog serve` can be configured with.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Retention of the default class (`standard`), in days.
    pub retention_days: u32,
    /// More retention classes: name -> days.
    pub retention_classes: HashMap<String, u32>,
    /// Tenants in a class other than the default: tenant -> class.
    pub tenant_classes: HashMap<String, String>,
    /// Where expired partitions are moved; absent: they are deleted.
    pub archive_dir: Option<PathBuf>,
    /// Most events in one ingest request (413 beyond).
    pub batch_events_max: usize,
    /// Most bytes of one ingest request after decompression (413 beyond).
    pub batch_bytes_max: usize,
    /// How much nicer (lower CPU priority) than the server sealing, merging and index
    /// building run, so that ingest acknowledgements, the live stream and queries come first
    /// (0: the same priority). See the engine's `StoreOptions::background_nice`.
    pub background_nice: i32,
    /// Run sealing, merging and index building only on CPU time nothing else wants (Linux
    /// `SCHED_IDLE`), so that a woken ingest or query thread takes the CPU from them at once.
    /// See the engine's `StoreOptions::background_idle`.
    pub background_idle: bool,
    /// Give memory freed by the server back to the operating system (after the allocator's
    /// delay of about a second) instead of keeping it for the next seal. Off by default: each
    /// seal frees the sealed tail (hundreds of MB under load) and allocates as much again a few
    /// seconds later, and on virtual machines whose kernel reports free pages to the host
    /// (virtio-balloon free page reporting, as on Firecracker and most clouds) every such
    /// return stalls the virtual disk for 50-300 ms, and with it the WAL's fsync and every
    /// acknowledgement waiting on it. Kept memory stays bounded by the tail's limit; turn this
    /// on where resident memory matters more than acknowledgement latency.
    pub release_memory: bool,
    /// Let the kernel back the server's memory with transparent huge pages (2 MiB) where the
    /// allocator asks for them. Off by default: on a virtual machine whose host has taken back
    /// the guest's free memory (free page reporting, ballooning), the first touch of a huge
    /// page faults in 512 pages from the host at once and stalls the touching thread for about
    /// 10 ms, and the ingest path's threads touch new memory whenever the tail grows past its
    /// high-water mark (a fresh server's first seconds: acknowledgements of 15-250 ms).
    pub huge_pages: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./auditlog-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            retention_days: 90,
            retention_classes: HashMap::new(),
            tenant_classes: HashMap::new(),
            archive_dir: None,
            batch_events_max: 10_000,
            batch_bytes_max: 16 << 20,
            background_nice: 10,
            background_idle: true,
            release_memory: false,
            huge_pages: false,
        }
    }
}

impl ServerConfig {
    /// Reads a TOML configuration file; unknown keys are an error naming them.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read configuration {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("configuration {}: {e}", path.display()))
    }

    /// The engine's retention configuration.
    pub fn retention(&self) -> RetentionConfig {
        let mut retention = RetentionConfig::default();
        retention
            .class_days
            .insert(retention.default_class.clone(), self.retention_days);
        for (class, days) in &self.retention_classes {
            retention.class_days.insert(class.clone(), *days);
        }
        retention.tenant_classes = self.tenant_classes.clone();
        retention
    }

    /// The engine's options for this configuration.
    pub fn store_options(&self) -> StoreOptions {
        let mut options = StoreOptions::new(&self.data_dir);
        options.retention = self.retention();
        options.archive_dir = self.archive_dir.clone();
        options.batch_events_max = self.batch_events_max;
        options.background_nice = self.background_nice;
        options.background_idle = self.background_idle;
        // Every segment gets its filter and full-text indexes (built, or rebuilt, on open).
        options.segment_hook = Some(auditlog_index::SegmentIndexer::hook());
        options
    }
}
