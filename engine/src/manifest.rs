//! The manifest: which sealed segments exist, up to which seq the WAL is sealed, and the
//! per-tenant counters. It is the single point of publication: a segment exists for readers and
//! for recovery only once a manifest listing it is durable.
//!
//! File `MANIFEST` in the data directory, replaced atomically (write `MANIFEST.tmp`, fsync,
//! rename, fsync the directory):
//!
//! ```text
//! magic "AUDITMAN" (8) | version u32 | body_crc u32 | body_len u64 | body (postcard ManifestBody)
//! ```
//!
//! ```
//! use auditlog_engine::manifest::Manifest;
//! let manifest = Manifest::default();
//! let bytes = manifest.encode();
//! let back = Manifest::decode(std::path::Path::new("MANIFEST"), &bytes).unwrap();
//! assert_eq!(back, manifest);
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::io::Vfs;
use crate::partition::PartitionKey;

pub const MAGIC: &[u8; 8] = b"AUDITMAN";
pub const VERSION: u32 = 1;
pub const HEADER_BYTES: usize = 24;
pub const FILE_NAME: &str = "MANIFEST";

/// One sealed segment as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentEntry {
    pub segment_id: u64,
    pub partition: PartitionKey,
    pub rows: u64,
    pub bytes: u64,
    pub min_timestamp_us: i64,
    pub max_timestamp_us: i64,
    pub min_seq: u64,
    pub max_seq: u64,
}

impl SegmentEntry {
    /// File name of the segment inside its partition directory; every companion file of the
    /// segment (index files) starts with the same `{segment_id:016x}.` prefix.
    pub fn file_name(&self) -> String {
        segment_file_name(self.segment_id)
    }
}

/// `{segment_id:016x}.seg`
pub fn segment_file_name(segment_id: u64) -> String {
    format!("{segment_id:016x}.seg")
}

/// The manifest's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Increases by one at every publication.
    pub generation: u64,
    /// Every event with `seq <= sealed_through` is in a listed segment (or was dropped by retention).
    pub sealed_through: u64,
    pub next_segment_id: u64,
    /// Last `tenant_seq` assigned to each tenant among sealed events.
    pub tenant_seqs: BTreeMap<String, u64>,
    pub segments: Vec<SegmentEntry>,
}

impl Manifest {
    pub fn encode(&self) -> Vec<u8> {
        let body = postcard::to_stdvec(self).expect("manifest encodes");
        let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    pub fn decode(path: &Path, bytes: &[u8]) -> Result<Self> {
        let corrupt = |offset: u64, reason: String| Error::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason,
        };
        if bytes.len() < HEADER_BYTES {
            return Err(corrupt(
                0,
                format!("manifest is {} bytes, shorter than its header", bytes.len()),
            ));
        }
        if &bytes[0..8] != MAGIC {
            return Err(Error::BadMagic {
                path: path.to_path_buf(),
                kind: "manifest",
            });
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                kind: "manifest",
                found: version,
                supported: VERSION,
            });
        }
        let expected = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
        let body_len = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
        let body = usize::try_from(body_len)
            .ok()
            .and_then(|len| bytes.get(HEADER_BYTES..HEADER_BYTES.checked_add(len)?))
            .ok_or_else(|| {
                corrupt(
                    16,
                    format!("manifest body length {body_len} exceeds the file"),
                )
            })?;
        let found = crc32fast::hash(body);
        if found != expected {
            return Err(Error::ChecksumMismatch {
                path: path.to_path_buf(),
                offset: HEADER_BYTES as u64,
                expected,
                found,
            });
        }
        postcard::from_bytes(body)
            .map_err(|e| corrupt(HEADER_BYTES as u64, format!("bad manifest body: {e}")))
    }

    /// Reads the manifest of a data directory; `None` when the store is new.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(FILE_NAME);
        match std::fs::read(&path) {
            Ok(bytes) => Self::decode(&path, &bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Publishes this manifest durably and atomically.
    pub fn store(&self, dir: &Path, vfs: &dyn Vfs) -> Result<()> {
        let tmp = dir.join("MANIFEST.tmp");
        let path = dir.join(FILE_NAME);
        let mut file = vfs.create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        file.write_all(&self.encode())
            .map_err(|e| Error::io(&tmp, e))?;
        file.sync_data().map_err(|e| Error::io(&tmp, e))?;
        drop(file);
        vfs.rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        vfs.sync_dir(dir).map_err(|e| Error::io(dir, e))
    }

    /// Directory of a partition below the data directory.
    pub fn partition_dir(data_dir: &Path, partition: &PartitionKey) -> PathBuf {
        data_dir.join("segments").join(partition.relative_dir())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_flipped_bit_is_reported() {
        let mut manifest = Manifest::default();
        manifest.tenant_seqs.insert("acct_1".into(), 7);
        let mut bytes = manifest.encode();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x10;
        let error = Manifest::decode(Path::new("MANIFEST"), &bytes).unwrap_err();
        assert!(
            matches!(error, Error::ChecksumMismatch { offset: 24, .. }),
            "{error}"
        );
    }

    #[test]
    fn manifest_unknown_version_is_an_error() {
        let mut bytes = Manifest::default().encode();
        bytes[8] = 9;
        let error = Manifest::decode(Path::new("MANIFEST"), &bytes).unwrap_err();
        assert!(
            matches!(error, Error::UnsupportedVersion { found: 9, .. }),
            "{error}"
        );
    }
}
