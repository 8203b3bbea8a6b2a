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
//! tail_bytes_max = 268435456
//! stream_buffer_chunks = 1024
//! export_stall_seconds = 120
//! ingest_body_seconds = 60
//! header_read_seconds = 30
//! stream_stall_seconds = 30
//! exports_max = 8
//! streams_max = 1024
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

use auditlog_engine::partition::{RetentionConfig, RETENTION_DAYS_MAX};
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
    /// Most memory, in bytes, that acknowledged events not yet sealed may hold (the store's
    /// tail). Past it, ingest waits for sealing and then answers 429 (busy): the tail absorbs
    /// a burst faster than sealing and indexing keep up with, and this is how large a burst it
    /// absorbs. Through a burst the server's resident memory peaked at about twice this plus
    /// 200-300 MB (README). Default 256 MiB; at least 16 MiB. See the engine's
    /// `StoreOptions::tail_bytes_max`.
    pub tail_bytes_max: u64,
    /// Group commits the live stream keeps for subscribers that are behind (each holds one
    /// commit's events, shared by every subscriber). A subscriber more than this behind in the
    /// live phase is told to resync and closed; one that fell behind while it sent stored
    /// events reads the missed commits from the store instead. Default 1024; at least 2.
    pub stream_buffer_chunks: usize,
    /// An export whose client accepts nothing for this long is abandoned (its body ends
    /// broken): until then it holds the store snapshot it started from, which keeps that
    /// moment's tail and segments in memory and on disk. Default 120; at least 1.
    pub export_stall_seconds: u64,
    /// An ingest request whose body has not arrived whole after this long is answered 408
    /// (a client trickling its bytes, or gone without closing): it would otherwise hold its
    /// memory and a task for ever. Default 60; 1..=3600.
    pub ingest_body_seconds: u64,
    /// A connection whose request head (or, idle between requests, whose next head) has not
    /// arrived whole after this long is closed: a client holding connections open without
    /// sending would otherwise hold a socket and a task each for ever (see
    /// [`crate::connections`]). Default 30; 1..=3600.
    pub header_read_seconds: u64,
    /// A live-stream client that takes longer than this to accept one message (at most 1,000
    /// events: it stopped reading, or its connection is half open) is closed, so that it holds
    /// neither its connection nor the broadcast's commits for ever. Default 30; at least 1.
    pub stream_stall_seconds: u64,
    /// Exports that may run at once; one more is answered 429 with Retry-After. Each holds a
    /// store snapshot and buffers up to about 80 MB (4 windows of 19 chunks of 1 MiB) when its
    /// events are large. Default 8; at least 1.
    pub exports_max: usize,
    /// Live streams that may be open at once; one more is answered 429 with Retry-After.
    /// Each holds a place in the broadcast and, while it catches up, a page of stored events
    /// (1,000 events for a stream of a few tenants, 10,000 for an admin's of all: about 7 MB
    /// of typical events, 64 KiB each at most). Default 1024; 1..=65536.
    pub streams_max: usize,
}

/// The smallest `tail_bytes_max` accepted: a batch of 10,000 events holds up to ~10 MB in the
/// tail, and a limit near that would answer busy at once.
pub const TAIL_BYTES_MIN: u64 = 16 << 20;

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
            tail_bytes_max: StoreOptions::new("").tail_bytes_max,
            stream_buffer_chunks: crate::routes::stream::BROADCAST_CHUNKS,
            export_stall_seconds: 120,
            ingest_body_seconds: 60,
            header_read_seconds: 30,
            stream_stall_seconds: 30,
            exports_max: 8,
            streams_max: 1024,
        }
    }
}

impl ServerConfig {
    /// Reads a TOML configuration file; unknown keys are an error naming them. The values are
    /// checked ([`ServerConfig::check`]) once the environment and the flags, which win over
    /// the file, are applied: a flag may mend a value the file has out of range.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read configuration {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("configuration {}: {e}", path.display()))
    }

    /// Checks the values a file, the environment or flags may have set out of range.
    pub fn check(&self) -> Result<(), String> {
        if self.tail_bytes_max < TAIL_BYTES_MIN {
            return Err(format!(
                "tail_bytes_max is {}, the least accepted is {TAIL_BYTES_MIN} (16 MiB)",
                self.tail_bytes_max
            ));
        }
        // Upper bounds too: a value past them would make the server fail (or exhaust memory)
        // after it had started, past the point where a first start prints its admin token.
        let ranges: [(&str, u64, u64, u64); 10] = [
            ("exports_max", self.exports_max as u64, 1, 1024),
            ("streams_max", self.streams_max as u64, 1, 65_536),
            ("ingest_body_seconds", self.ingest_body_seconds, 1, 3600),
            ("header_read_seconds", self.header_read_seconds, 1, 3600),
            ("export_stall_seconds", self.export_stall_seconds, 1, 86_400),
            ("stream_stall_seconds", self.stream_stall_seconds, 1, 86_400),
            (
                "stream_buffer_chunks",
                self.stream_buffer_chunks as u64,
                2,
                1 << 16,
            ),
            (
                "batch_events_max",
                self.batch_events_max as u64,
                1,
                1_000_000,
            ),
            (
                "batch_bytes_max",
                self.batch_bytes_max as u64,
                1 << 10,
                1 << 30,
            ),
            (
                "tail_bytes_max",
                self.tail_bytes_max,
                TAIL_BYTES_MIN,
                1 << 40,
            ),
        ];
        for (name, value, least, most) in ranges {
            if !(least..=most).contains(&value) {
                return Err(format!("{name} is {value}, must be {least}..={most}"));
            }
        }
        if !(0..=19).contains(&self.background_nice) {
            return Err(format!(
                "background_nice is {}, must be 0..=19 (how much nicer than the server the \
                 background threads run; a negative value would need privileges to raise their \
                 priority)",
                self.background_nice
            ));
        }
        if !(1..=RETENTION_DAYS_MAX).contains(&self.retention_days) {
            return Err(format!(
                "retention_days (or --retention-days) is {}, must be 1..={RETENTION_DAYS_MAX} \
                 (100 years)",
                self.retention_days
            ));
        }
        let default_class = RetentionConfig::default().default_class;
        if self.retention_classes.contains_key(&default_class) {
            // It would silently win over --retention-days and AUDITLOG_RETENTION_DAYS.
            return Err(format!(
                "retention_classes sets {default_class:?}, the default class: set its days with \
                 retention_days (or --retention-days) instead"
            ));
        }
        self.retention().validate()
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
        options.tail_bytes_max = self.tail_bytes_max;
        // Every segment gets its filter and full-text indexes (built when sealed, or later in
        // the background: after a burst, or when missing at open).
        options.segment_hook = Some(auditlog_index::SegmentIndexer::hook());
        options
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_classes_may_not_override_retention_days() {
        let mut config = ServerConfig::default();
        config.retention_classes.insert("extended".into(), 365);
        assert_eq!(config.check(), Ok(()));
        config.retention_classes.insert("standard".into(), 365);
        let error = config.check().unwrap_err();
        assert!(error.contains("retention_days"), "{error}");
    }

    #[test]
    fn retention_days_are_bounded() {
        let mut config = ServerConfig {
            retention_days: 200_000_000,
            ..ServerConfig::default()
        };
        let error = config.check().unwrap_err();
        assert!(
            error.contains("retention_days") && error.contains("36500"),
            "{error}"
        );
        config.retention_days = 36_500;
        assert_eq!(config.check(), Ok(()));
        config.retention_classes.insert("extended".into(), 40_000);
        let error = config.check().unwrap_err();
        assert!(
            error.contains("\"extended\"") && error.contains("36500"),
            "{error}"
        );
    }

    #[test]
    fn tail_bytes_max_reaches_the_store_and_is_checked() {
        let defaults = ServerConfig::default();
        assert_eq!(defaults.check(), Ok(()));
        assert_eq!(defaults.store_options().tail_bytes_max, 256 << 20);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auditlog.toml");
        std::fs::write(&path, "tail_bytes_max = 1073741824\n").unwrap();
        let config = ServerConfig::from_file(&path).unwrap();
        assert_eq!(config.store_options().tail_bytes_max, 1 << 30);

        // Read as written; checked once the environment and flags are applied.
        std::fs::write(&path, "tail_bytes_max = 1000000\n").unwrap();
        let error = ServerConfig::from_file(&path).unwrap().check().unwrap_err();
        assert!(error.contains("tail_bytes_max is 1000000"), "{error}");
        assert!(error.contains("16777216"), "{error}");
        // Upper bounds, each naming its setting.
        for (text, name) in [
            ("exports_max = 4611686018427387904\n", "exports_max"),
            (
                "stream_buffer_chunks = 1000000000\n",
                "stream_buffer_chunks",
            ),
            ("batch_events_max = 0\n", "batch_events_max"),
            ("batch_bytes_max = 0\n", "batch_bytes_max"),
        ] {
            std::fs::write(&path, text).unwrap();
            let error = ServerConfig::from_file(&path).unwrap().check().unwrap_err();
            assert!(error.starts_with(name), "{text}: {error}");
        }
        let small = ServerConfig {
            tail_bytes_max: TAIL_BYTES_MIN - 1,
            ..ServerConfig::default()
        };
        let state = crate::open_state(
            ServerConfig {
                data_dir: dir.path().join("data"),
                ..small
            },
            None,
        );
        let Err(error) = state else {
            panic!("a tail limit below the minimum started a server")
        };
        assert!(error.to_string().contains("tail_bytes_max"), "{error}");
        assert!(!dir.path().join("data").exists(), "nothing is created");
    }
}
