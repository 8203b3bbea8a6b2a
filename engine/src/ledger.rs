//! The integrity ledger: a hash chain over every change to the set of sealed segments, so that
//! sealed data cannot be rewritten, removed or slipped in without it showing.
//!
//! CRC32 checksums catch damage, not deliberate change: whoever can write the data directory can
//! rewrite a segment and its checksums. The ledger records, for every publication that changes
//! the manifest's segments (a seal, a merge, a retention drop, and the adoption of a store's
//! segments when the ledger is first created), the SHA-256 of every segment file added and the
//! ids of those removed. Each entry's hash covers the previous entry's hash, so the newest hash
//! (the *head*) commits to the whole history. An operator who keeps the head somewhere the data
//! directory's writers cannot reach (a SIEM, a ticket, another machine: the server answers it at
//! `GET /v1/admin/integrity`) can later prove with `auditlog verify` that every segment file is
//! the one that was sealed, and that the history leading to that head was not rewritten.
//!
//! What it does not cover: events not yet sealed (the WAL and the tail: minutes of events at
//! most), and a rewrite of the whole history by someone who also replaces every head kept
//! outside. Archived segments keep their digests in the ledger and can be checked against it.
//!
//! File `LEDGER` in the data directory, appended to and fsynced before the manifest that
//! publishes the change is written (so the manifest never lists a segment the ledger lacks):
//!
//! ```text
//! header   magic "AUDITLDG" (8) | version u32 (1) | reserved u32 (0)
//! record   u32 body_len | u32 crc32(body) | body (postcard Entry) | [u8; 32] hash
//! hash     SHA-256("auditlog-ledger-v1" 0x00 || previous hash || body); the first entry's
//!          previous hash is 32 zero bytes
//! ```
//!
//! At open the ledger's live set (the segments added and not removed since) must equal the
//! manifest's segments; a last entry the manifest does not reflect (a crash between the two
//! writes) is cut, as is a torn last record. Anything else is reported as corruption.
//!
//! ```
//! use auditlog_engine::ledger::{Change, Ledger, Reason};
//! let dir = tempfile::tempdir().unwrap();
//! let vfs = auditlog_engine::io::RealVfs;
//! let mut ledger = Ledger::create(dir.path(), &vfs).unwrap();
//! let empty_head = ledger.head();
//! ledger.append(Change { reason: Reason::Seal, at_us: 1, added: vec![], removed: vec![] }).unwrap();
//! assert_eq!(ledger.entries(), 1);
//! assert_ne!(ledger.head(), empty_head);
//! let read = Ledger::read(&dir.path().join("LEDGER")).unwrap();
//! assert_eq!(read.head, ledger.head());
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::io::{Vfs, VfsFile};
use crate::partition::PartitionKey;

pub const MAGIC: &[u8; 8] = b"AUDITLDG";
pub const VERSION: u32 = 1;
pub const HEADER_BYTES: usize = 16;
pub const FILE_NAME: &str = "LEDGER";
/// Bytes around each record's body: length, crc, hash.
const RECORD_OVERHEAD: usize = 4 + 4 + 32;
/// Largest accepted entry body (a merge of thousands of segments stays far below).
const BODY_BYTES_MAX: u32 = 64 << 20;
const DOMAIN: &[u8] = b"auditlog-ledger-v1\0";

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// Lowercase hex of a digest.
pub fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a file's bytes.
pub fn file_sha256(path: &Path) -> Result<Hash> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).map_err(|e| Error::io(path, e))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher.finalize().into())
}

/// SHA-256 of bytes in memory (a segment just encoded).
pub fn sha256(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

/// Why the segments changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reason {
    /// The ledger was created over a store that already had segments (an upgrade).
    Adopt,
    Seal,
    Merge,
    /// Retention dropped (and perhaps archived) a partition's segments.
    Retention,
    /// Undoes the entry before it, whose manifest write failed: the store goes on without
    /// that change (its segments are never listed, or stay listed).
    Revert,
}

/// A segment as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentDigest {
    pub segment_id: u64,
    pub partition: PartitionKey,
    pub rows: u64,
    pub bytes: u64,
    pub min_seq: u64,
    pub max_seq: u64,
    pub min_timestamp_us: i64,
    pub max_timestamp_us: i64,
    /// SHA-256 of the segment file.
    pub sha256: Hash,
}

impl SegmentDigest {
    /// Whether the manifest's `entry` describes this segment as it was recorded: an entry
    /// edited behind the store's back (its rows, time range or partition) could hide events
    /// from queries or hand them to retention early.
    pub fn describes(&self, entry: &crate::manifest::SegmentEntry) -> bool {
        self.segment_id == entry.segment_id
            && self.partition == entry.partition
            && self.rows == entry.rows
            && self.bytes == entry.bytes
            && self.min_seq == entry.min_seq
            && self.max_seq == entry.max_seq
            && self.min_timestamp_us == entry.min_timestamp_us
            && self.max_timestamp_us == entry.max_timestamp_us
    }
}

/// The offset a ledger read error points at, for the errors of a record's checks.
fn damage_offset(error: &Error) -> Option<u64> {
    match error {
        Error::ChecksumMismatch { offset, .. } | Error::Corrupt { offset, .. } => Some(*offset),
        _ => None,
    }
}

/// Whether the record at `offset` is the file's last: its length reaches the end exactly, or
/// everything from it on is zeros (a lost append read back as zeros, its length field too).
fn is_last_record(bytes: &[u8], offset: u64) -> bool {
    let Some(rest) = usize::try_from(offset).ok().and_then(|at| bytes.get(at..)) else {
        return false;
    };
    if offset < HEADER_BYTES as u64 || rest.len() < 8 {
        return false;
    }
    let body_len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
    body_len + RECORD_OVERHEAD == rest.len() || rest.iter().all(|&byte| byte == 0)
}

/// Whether `live` records exactly the segments `published` lists, each as listed.
pub fn live_matches(
    live: &BTreeMap<u64, SegmentDigest>,
    published: &[crate::manifest::SegmentEntry],
) -> bool {
    live.len() == published.len()
        && published.iter().all(|entry| {
            live.get(&entry.segment_id)
                .is_some_and(|d| d.describes(entry))
        })
}

/// One change to the set of sealed segments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub reason: Reason,
    /// When it was recorded (UTC µs).
    pub at_us: i64,
    pub added: Vec<SegmentDigest>,
    /// Ids of the segments removed.
    pub removed: Vec<u64>,
}

/// What a record's body holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    /// 0 for the first entry.
    index: u64,
    change: Change,
}

/// The bytes of the record of entry `index` after the entry whose hash is `previous`, its hash,
/// and the entry.
fn encode_record(index: u64, previous: &Hash, change: Change) -> (Vec<u8>, Hash, Entry) {
    let entry = Entry { index, change };
    let body = postcard::to_stdvec(&entry).expect("ledger entry encodes");
    let hash = chain(previous, &body);
    let mut record = Vec::with_capacity(body.len() + RECORD_OVERHEAD);
    record.extend_from_slice(&(body.len() as u32).to_le_bytes());
    record.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    record.extend_from_slice(&body);
    record.extend_from_slice(&hash);
    (record, hash, entry)
}

/// The hash of an entry whose body is `body`, after the entry whose hash is `previous`.
fn chain(previous: &Hash, body: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    hasher.update(previous);
    hasher.update(body);
    hasher.finalize().into()
}

/// The whole ledger file, read and checked.
#[derive(Debug, Clone, Default)]
pub struct LedgerContents {
    pub changes: Vec<Change>,
    /// The hash after each entry (`hashes[i]` is the head once entry `i` was written).
    pub hashes: Vec<Hash>,
    /// The newest hash (32 zero bytes when empty).
    pub head: Hash,
    /// The segments added and not removed since, by id.
    pub live: BTreeMap<u64, SegmentDigest>,
    /// File offset just past each entry (`ends[i]`): where the file is cut to keep entries
    /// `0..=i`.
    ends: Vec<u64>,
    /// Offset of a torn last record (cut short by a crash), if any.
    pub torn_at: Option<u64>,
}

impl LedgerContents {
    fn apply(live: &mut BTreeMap<u64, SegmentDigest>, change: &Change) {
        for id in &change.removed {
            live.remove(id);
        }
        for added in &change.added {
            live.insert(added.segment_id, added.clone());
        }
    }

    /// Whether the last entry can be one a crash left unpublished (the process stopped between
    /// the ledger's fsync and the manifest's), given the manifest's `sealed_through`: a seal's
    /// segments hold only events past what the manifest had sealed before it, so a manifest
    /// that counts them as sealed yet does not list them was edited outside the store (their
    /// events taken away with the segment files), not left by a crash. A merge or retention
    /// entry left unpublished leaves its inputs listed, which the manifest then checks.
    pub fn last_may_be_unpublished(&self, sealed_through: u64) -> bool {
        match self.changes.last() {
            None => false,
            Some(change) if change.reason == Reason::Seal => change
                .added
                .iter()
                .all(|digest| digest.min_seq > sealed_through),
            Some(_) => true,
        }
    }

    /// The live set without the last entry's change.
    pub fn live_before_last(&self) -> BTreeMap<u64, SegmentDigest> {
        let mut live = BTreeMap::new();
        for change in &self.changes[..self.changes.len().saturating_sub(1)] {
            Self::apply(&mut live, change);
        }
        live
    }
}

/// The open ledger of a store: appends entries and knows the head.
pub struct Ledger {
    path: PathBuf,
    file: Box<dyn VfsFile>,
    entries: u64,
    head: Hash,
    live: BTreeMap<u64, SegmentDigest>,
    /// Length of the file through the last entry appended whole.
    len: u64,
    /// Set when an append failed and the file could not be cut back to `len` yet: the next
    /// append tries again first.
    poisoned: bool,
    /// What undoes the last entry: the ids it added and the digests of those it removed.
    undo: Option<(Vec<u64>, Vec<SegmentDigest>)>,
    /// Set when [`Ledger::revert_last`] could not append its entry: the next append tries
    /// again first.
    revert_pending: bool,
    /// Entry count and head as of the last manifest known written
    /// ([`Ledger::mark_published`]): what a restart keeps.
    published: (u64, Hash),
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.path)
            .field("entries", &self.entries)
            .field("head", &hex(&self.head))
            .finish()
    }
}

impl Ledger {
    /// Creates an empty ledger in `dir` (replacing none: the caller checked there is none),
    /// durably.
    pub fn create(dir: &Path, vfs: &dyn Vfs) -> Result<Ledger> {
        Ledger::create_with(dir, vfs, None)
    }

    /// Creates a ledger in `dir` whose first entry is `first` (if any), durably and at once:
    /// the file gets its name only with that entry in it, so that a crash can never leave an
    /// empty ledger beside a manifest that lists the segments the entry adopts.
    pub fn create_with(dir: &Path, vfs: &dyn Vfs, first: Option<Change>) -> Result<Ledger> {
        let path = dir.join(FILE_NAME);
        let tmp = dir.join(format!("{FILE_NAME}.tmp"));
        let mut file = vfs.create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut bytes = Vec::with_capacity(HEADER_BYTES);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        if let Some(change) = first {
            bytes.extend_from_slice(&encode_record(0, &[0; 32], change).0);
        }
        file.write_all(&bytes).map_err(|e| Error::io(&tmp, e))?;
        file.sync_data().map_err(|e| Error::io(&tmp, e))?;
        drop(file);
        vfs.rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        vfs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        let contents = Ledger::parse(&path, &bytes)?;
        Ledger::open_contents(&path, vfs, contents)
    }

    /// Opens the ledger file at `path` whose checked contents are `contents` (from
    /// [`Ledger::read`], cut to what the manifest published) for appending.
    fn open_contents(path: &Path, vfs: &dyn Vfs, contents: LedgerContents) -> Result<Ledger> {
        let file = vfs.open_append(path).map_err(|e| Error::io(path, e))?;
        Ok(Ledger {
            path: path.to_path_buf(),
            file,
            entries: contents.changes.len() as u64,
            head: contents.head,
            live: contents.live,
            len: contents.ends.last().copied().unwrap_or(HEADER_BYTES as u64),
            poisoned: false,
            undo: None,
            revert_pending: false,
            published: (contents.changes.len() as u64, contents.head),
        })
    }

    /// Opens the ledger of a data directory and reconciles it with the manifest's segments
    /// (`published`, compared field by field) and its `sealed_through`: a torn last record, or
    /// a last entry whose change the manifest does not show (the process stopped between the
    /// ledger's fsync and the manifest's: see [`LedgerContents::last_may_be_unpublished`]), is
    /// cut. `None` when the directory has no ledger yet.
    pub fn open(
        dir: &Path,
        vfs: &dyn Vfs,
        published: &[crate::manifest::SegmentEntry],
        sealed_through: u64,
    ) -> Result<Option<Ledger>> {
        let path = dir.join(FILE_NAME);
        if !path.exists() {
            return Ok(None);
        }
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        // A last record that fails its checks may be the append a power loss interrupted
        // (its sectors lost, read back as zeros): it is cut like a record cut short, but only
        // if the manifest never published its change; otherwise it is damage, reported.
        let (mut contents, damaged_last) = match Ledger::parse(&path, &bytes) {
            Ok(contents) => (contents, None),
            Err(error) => match damage_offset(&error) {
                Some(at) if is_last_record(&bytes, at) => {
                    let mut before = Ledger::parse(&path, &bytes[..at as usize])?;
                    before.torn_at = Some(at);
                    (before, Some(error))
                }
                _ => return Err(error),
            },
        };
        let mut cut_to = contents.torn_at;
        if let Some(error) = damaged_last {
            // Cut only if what is left agrees with the manifest, as is or without its own last
            // entry (a torn `Revert` after an entry the manifest never published: both go).
            if !live_matches(&contents.live, published)
                && (contents.changes.is_empty()
                    || !live_matches(&contents.live_before_last(), published))
            {
                return Err(error);
            }
        }
        if !live_matches(&contents.live, published) {
            let before = contents.live_before_last();
            if contents.changes.is_empty()
                || !live_matches(&before, published)
                || !contents.last_may_be_unpublished(sealed_through)
            {
                return Err(Error::Corrupt {
                    path,
                    offset: 0,
                    reason: format!(
                        "the integrity ledger's {} live segments are not the manifest's {} (or \
                         not as it lists them): the manifest was changed outside the store",
                        contents.live.len(),
                        published.len()
                    ),
                });
            }
            // The last entry was never published: cut it.
            contents.changes.pop();
            contents.hashes.pop();
            contents.ends.pop();
            contents.live = before;
            contents.head = contents.hashes.last().copied().unwrap_or([0; 32]);
            cut_to = Some(contents.ends.last().copied().unwrap_or(HEADER_BYTES as u64));
        }
        if let Some(length) = cut_to {
            let mut file = vfs.open_append(&path).map_err(|e| Error::io(&path, e))?;
            file.set_len(length).map_err(|e| Error::io(&path, e))?;
            file.sync_data().map_err(|e| Error::io(&path, e))?;
        }
        Ledger::open_contents(&path, vfs, contents).map(Some)
    }

    /// Reads and checks a ledger file: header, every record's crc and index, and the hash
    /// chain. A record cut short at the end is reported in `torn_at`, not as an error; a whole
    /// last record that fails a check is an error here (`verify` reports it), and only
    /// [`Ledger::open`] may cut it, when the manifest shows it was never published.
    pub fn read(path: &Path) -> Result<LedgerContents> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Ledger::parse(path, &bytes)
    }

    /// [`Ledger::read`] of bytes in memory; `path` names them in errors.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<LedgerContents> {
        let corrupt = |offset: u64, reason: String| Error::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason,
        };
        if bytes.len() < HEADER_BYTES || &bytes[..8] != MAGIC {
            if bytes.len() >= 8 && &bytes[..8] != MAGIC {
                return Err(Error::BadMagic {
                    path: path.to_path_buf(),
                    kind: "ledger",
                });
            }
            return Err(corrupt(0, "ledger shorter than its header".into()));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                kind: "ledger",
                found: version,
                supported: VERSION,
            });
        }
        let mut contents = LedgerContents::default();
        let mut offset = HEADER_BYTES;
        while offset < bytes.len() {
            let rest = &bytes[offset..];
            if rest.len() < 8 {
                contents.torn_at = Some(offset as u64);
                break;
            }
            let body_len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes"));
            let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
            if body_len > BODY_BYTES_MAX {
                return Err(corrupt(
                    offset as u64,
                    format!("ledger record of {body_len} bytes"),
                ));
            }
            let record_len = body_len as usize + RECORD_OVERHEAD;
            if rest.len() < record_len {
                contents.torn_at = Some(offset as u64);
                break;
            }
            let body = &rest[8..8 + body_len as usize];
            if crc32fast::hash(body) != crc {
                return Err(Error::ChecksumMismatch {
                    path: path.to_path_buf(),
                    offset: offset as u64,
                    expected: crc,
                    found: crc32fast::hash(body),
                });
            }
            let entry: Entry = postcard::from_bytes(body)
                .map_err(|e| corrupt(offset as u64, format!("bad ledger entry: {e}")))?;
            let index = contents.changes.len() as u64;
            if entry.index != index {
                return Err(corrupt(
                    offset as u64,
                    format!(
                        "ledger entry {} where entry {index} was expected",
                        entry.index
                    ),
                ));
            }
            let stored: Hash = rest[8 + body_len as usize..record_len]
                .try_into()
                .expect("32 bytes");
            let computed = chain(&contents.head, body);
            if stored != computed {
                return Err(corrupt(
                    offset as u64,
                    format!(
                        "ledger entry {index}: its hash does not follow from the entries before it \
                         (the history was changed)"
                    ),
                ));
            }
            LedgerContents::apply(&mut contents.live, &entry.change);
            contents.changes.push(entry.change);
            contents.hashes.push(computed);
            contents.head = computed;
            offset += record_len;
            contents.ends.push(offset as u64);
        }
        Ok(contents)
    }

    /// Appends `change` durably; the head moves on. After a failure the file is cut back to
    /// its last whole entry (now, or before the next append).
    pub fn append(&mut self, change: Change) -> Result<()> {
        if self.poisoned {
            self.cut_back()?;
        }
        if self.revert_pending {
            self.revert_last()?;
        }
        self.append_entry(change)
    }

    /// Undoes the last entry with a [`Reason::Revert`] entry: called when the manifest write
    /// that was to publish it failed, so that the ledger follows the store, which goes on
    /// without the change. (Should that manifest have reached the disk after all, the next
    /// open sees the revert as the one entry the manifest does not show, and cuts it.)
    pub fn revert_last(&mut self) -> Result<()> {
        let Some((added, removed)) = self.undo.take() else {
            self.revert_pending = false;
            return Ok(());
        };
        let change = Change {
            reason: Reason::Revert,
            at_us: crate::store::now_us(),
            added: removed.clone(),
            removed: added.clone(),
        };
        if self.poisoned {
            if let Err(error) = self.cut_back() {
                self.undo = Some((added, removed));
                self.revert_pending = true;
                return Err(error);
            }
        }
        match self.append_entry(change) {
            Ok(()) => {
                self.revert_pending = false;
                self.undo = None;
                Ok(())
            }
            Err(error) => {
                self.undo = Some((added, removed));
                self.revert_pending = true;
                Err(error)
            }
        }
    }

    /// Cuts the file back to its last whole entry (after a failed append).
    fn cut_back(&mut self) -> Result<()> {
        self.file
            .set_len(self.len)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::io(&self.path, e))?;
        self.poisoned = false;
        Ok(())
    }

    fn append_entry(&mut self, change: Change) -> Result<()> {
        let (record, hash, entry) = encode_record(self.entries, &self.head, change);
        let written = self
            .file
            .write_all(&record)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            self.poisoned = true;
            let _ = self.cut_back();
            return Err(Error::io(&self.path, e));
        }
        let removed: Vec<SegmentDigest> = entry
            .change
            .removed
            .iter()
            .filter_map(|id| self.live.get(id).cloned())
            .collect();
        let added: Vec<u64> = entry.change.added.iter().map(|d| d.segment_id).collect();
        LedgerContents::apply(&mut self.live, &entry.change);
        self.undo = Some((added, removed));
        self.entries += 1;
        self.head = hash;
        self.len += record.len() as u64;
        Ok(())
    }

    /// Notes that the manifest now on disk reflects every entry so far.
    pub fn mark_published(&mut self) {
        self.published = (self.entries, self.head);
    }

    /// Entry count and head as of the last manifest written: a head that a restart keeps
    /// (an entry whose manifest is not written yet may be cut by the next open).
    pub fn published(&self) -> (u64, Hash) {
        self.published
    }

    /// Number of entries.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// The newest hash (32 zero bytes for an empty ledger).
    pub fn head(&self) -> Hash {
        self.head
    }

    /// The digest the ledger holds for a live segment.
    pub fn digest(&self, segment_id: u64) -> Option<&SegmentDigest> {
        self.live.get(&segment_id)
    }
}
