//! WAL framing and recovery: torn tails are cut exactly, damage elsewhere is reported.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use auditlog_engine::event::{Actor, Event, Resource, StoredEvent};
use auditlog_engine::io::{RealVfs, Vfs};
use auditlog_engine::wal::format::{encode_events, encode_payload, encode_record, BatchHeader};
use auditlog_engine::wal::{recover, WalWriter};
use auditlog_engine::Error;

fn event(n: u64) -> Event {
    Event {
        id: Some(format!("evt_{n}")),
        timestamp_us: 1_795_000_000_000_000 + n as i64,
        tenant: format!("acct_{}", n % 3),
        actor: Actor {
            id: Some(format!("user_{n}")),
            ..Actor::default()
        },
        action: "update".into(),
        resource: Resource {
            kind: "pod".into(),
            id: Some(format!("pod_{n}")),
            name: Some("llama-finetune-3".into()),
        },
        details: Some(format!(r#"{{"n":{n}}}"#)),
        ..Event::default()
    }
}

/// Writes `batches` batches of 3 events into a fresh WAL; returns the file and each record's
/// start offset.
fn write_wal(dir: &Path, batches: u64) -> (PathBuf, Vec<u64>, Vec<StoredEvent>) {
    let vfs: Arc<dyn Vfs> = Arc::new(RealVfs);
    let mut writer = WalWriter::open(dir, vfs, 1, 1 << 30, Vec::new()).unwrap();
    let mut offsets = Vec::new();
    let mut offset = 32u64;
    let mut all = Vec::new();
    let mut seq = 1;
    for _ in 0..batches {
        let events: Vec<Event> = (seq..seq + 3).map(event).collect();
        let header = BatchHeader {
            first_seq: seq,
            received_us: 7,
            tenant_seqs: (seq..seq + 3).collect(),
        };
        let mut payload = Vec::new();
        encode_payload(&header, &encode_events(&events), &mut payload);
        let mut record = Vec::new();
        encode_record(writer.salt(), &payload, &mut record);
        writer.write(&record, true).unwrap();
        offsets.push(offset);
        offset += record.len() as u64;
        for (i, event) in events.into_iter().enumerate() {
            all.push(StoredEvent {
                seq: seq + i as u64,
                tenant_seq: seq + i as u64,
                received_us: 7,
                event,
            });
        }
        seq += 3;
    }
    (dir.join(format!("{:020}.wal", 1)), offsets, all)
}

fn vfs() -> Arc<dyn Vfs> {
    Arc::new(RealVfs)
}

#[test]
fn wal_round_trip_reads_every_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, written) = write_wal(dir.path(), 4);
    let recovered = recover(dir.path(), &vfs(), 0).unwrap();
    assert_eq!(recovered.events(), written);
    assert_eq!(recovered.last_seq, 12);
    assert!(recovered.truncated.is_none());
}

#[test]
fn wal_skips_events_already_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, written) = write_wal(dir.path(), 4);
    let recovered = recover(dir.path(), &vfs(), 6).unwrap();
    assert_eq!(recovered.events(), written[6..].to_vec());
}

#[test]
fn wal_torn_tail_cut_at_every_byte_is_truncated_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets, written) = write_wal(dir.path(), 3);
    let original = std::fs::read(&path).unwrap();
    let last_start = *offsets.last().unwrap() as usize;
    for cut in last_start..original.len() {
        std::fs::write(&path, &original[..cut]).unwrap();
        let recovered = recover(dir.path(), &vfs(), 0).unwrap();
        assert_eq!(
            recovered.events(),
            written[..6].to_vec(),
            "cut at byte {cut}"
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            last_start as u64,
            "cut at {cut}"
        );
        if cut > last_start {
            assert_eq!(recovered.truncated, Some((path.clone(), last_start as u64)));
        }
    }
}

#[test]
fn wal_flipped_bit_in_last_record_is_truncated_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets, written) = write_wal(dir.path(), 3);
    let original = std::fs::read(&path).unwrap();
    let last_start = *offsets.last().unwrap() as usize;
    for byte in last_start..original.len() {
        for bit in [0u8, 3, 7] {
            let mut damaged = original.clone();
            damaged[byte] ^= 1 << bit;
            std::fs::write(&path, &damaged).unwrap();
            let recovered = recover(dir.path(), &vfs(), 0)
                .unwrap_or_else(|e| panic!("byte {byte} bit {bit}: {e}"));
            assert_eq!(
                recovered.events(),
                written[..6].to_vec(),
                "byte {byte} bit {bit}"
            );
            assert_eq!(std::fs::metadata(&path).unwrap().len(), last_start as u64);
        }
    }
}

#[test]
fn wal_flipped_bit_in_middle_record_is_reported_with_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets, _) = write_wal(dir.path(), 3);
    let original = std::fs::read(&path).unwrap();
    let middle = offsets[1] as usize;
    for byte in [
        middle,
        middle + 5,
        middle + 11,
        middle + 20,
        offsets[2] as usize - 1,
    ] {
        let mut damaged = original.clone();
        damaged[byte] ^= 0x04;
        std::fs::write(&path, &damaged).unwrap();
        let error = recover(dir.path(), &vfs(), 0).unwrap_err();
        match &error {
            Error::ChecksumMismatch {
                path: p, offset, ..
            }
            | Error::Corrupt {
                path: p, offset, ..
            } => {
                assert_eq!(p, &path);
                assert_eq!(*offset, offsets[1], "byte {byte}: {error}");
            }
            other => panic!("byte {byte}: unexpected {other}"),
        }
        assert!(error.to_string().contains(&path.display().to_string()));
        // Nothing was cut: the damage is reported, not repaired.
        assert_eq!(std::fs::read(&path).unwrap().len(), original.len());
    }
}

#[test]
fn wal_repeated_last_record_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets, _) = write_wal(dir.path(), 2);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes[offsets[1] as usize..].to_vec();
    bytes.extend_from_slice(&last);
    std::fs::write(&path, &bytes).unwrap();
    let error = recover(dir.path(), &vfs(), 0).unwrap_err();
    assert!(matches!(error, Error::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains("seq"), "{error}");
}

#[test]
fn wal_bad_magic_and_unknown_version_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, _) = write_wal(dir.path(), 1);
    let original = std::fs::read(&path).unwrap();
    let mut bad_magic = original.clone();
    bad_magic[0] = b'X';
    std::fs::write(&path, &bad_magic).unwrap();
    let error = recover(dir.path(), &vfs(), 0).unwrap_err();
    assert!(
        matches!(error, Error::BadMagic { kind: "wal", .. }),
        "{error}"
    );

    let header = auditlog_engine::wal::format::FileHeader::decode(&original).unwrap();
    let encoded = auditlog_engine::wal::format::FileHeader {
        version: 2,
        ..header
    }
    .encode();
    let mut other_version = original.clone();
    other_version[..32].copy_from_slice(&encoded);
    std::fs::write(&path, &other_version).unwrap();
    let error = recover(dir.path(), &vfs(), 0).unwrap_err();
    assert!(
        matches!(
            error,
            Error::UnsupportedVersion {
                found: 2,
                kind: "wal",
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn wal_empty_newest_file_from_a_crash_during_creation_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, written) = write_wal(dir.path(), 2);
    std::fs::write(dir.path().join(format!("{:020}.wal", 7)), b"AUDIT").unwrap();
    let recovered = recover(dir.path(), &vfs(), 0).unwrap();
    assert_eq!(recovered.events(), written);
    assert!(!dir.path().join(format!("{:020}.wal", 7)).exists());
}
