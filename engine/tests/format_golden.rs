//! Golden files pin the v1 WAL and manifest formats: the files under tests/fixtures/v1 were
//! written once (run with AUDITLOG_WRITE_GOLDEN=1 to rewrite them after a deliberate format
//! change, which must also bump the version and update docs/FORMAT.md); every build must read
//! them back exactly, write the same bytes for the same content, and report their corrupt twins.

use std::path::{Path, PathBuf};

use auditlog_engine::event::{Actor, ActorType, Event, Outcome, Resource, StoredEvent};
use auditlog_engine::manifest::{Manifest, SegmentEntry};
use auditlog_engine::partition::PartitionKey;
use auditlog_engine::wal::format::{
    encode_events, encode_payload, encode_record, BatchHeader, FileHeader, VERSION,
};
use auditlog_engine::wal::reader::{scan, End};
use auditlog_engine::Error;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1")
}

fn golden_events() -> Vec<Event> {
    vec![
        Event {
            id: Some("evt_5f2c9a".into()),
            timestamp_us: 1_795_742_432_123_456,
            tenant: "acct_0042".into(),
            project: Some("proj_ml-research".into()),
            actor: Actor {
                id: Some("user_913".into()),
                email: Some("alice@example.com".into()),
                kind: ActorType::User,
                ip: Some("203.0.113.7".into()),
                user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0".into()),
            },
            action: "update".into(),
            outcome: Outcome::Success,
            resource: Resource {
                kind: "pod".into(),
                id: Some("pod_8fj2k".into()),
                name: Some("llama-finetune-3".into()),
            },
            changes: Some(r#"[{"field":"gpu_count","old":1,"new":4}]"#.into()),
            details: Some(r#"{"region":"eu-west","reason":"scale up"}"#.into()),
        },
        Event {
            id: None,
            timestamp_us: 1_795_742_433_000_000,
            tenant: "acct_0007".into(),
            project: None,
            actor: Actor {
                id: None,
                email: Some("bob@example.org".into()),
                kind: ActorType::ApiToken,
                ip: Some("2001:db8::1".into()),
                user_agent: None,
            },
            action: "login".into(),
            outcome: Outcome::Failure,
            resource: Resource {
                kind: "account".into(),
                id: None,
                name: None,
            },
            changes: None,
            details: None,
        },
    ]
}

const SALT: u64 = 0x5eed_1234_abcd_0001;

/// A WAL file with two records: seq 1 (one event) and seq 2 (one event).
fn golden_wal() -> Vec<u8> {
    let mut out = FileHeader {
        version: VERSION,
        first_seq: 1,
        salt: SALT,
    }
    .encode()
    .to_vec();
    for (i, event) in golden_events().into_iter().enumerate() {
        let header = BatchHeader {
            first_seq: 1 + i as u64,
            received_us: 1_795_742_434_000_000,
            tenant_seqs: vec![1],
        };
        let mut payload = Vec::new();
        encode_payload(&header, &encode_events(&[event]), &mut payload);
        encode_record(SALT, &payload, &mut out);
    }
    out
}

fn golden_manifest() -> Manifest {
    let mut manifest = Manifest {
        generation: 3,
        sealed_through: 2,
        next_segment_id: 2,
        ..Manifest::default()
    };
    manifest.tenant_seqs.insert("acct_0042".into(), 1);
    manifest.tenant_seqs.insert("acct_0007".into(), 1);
    manifest.segments.push(SegmentEntry {
        segment_id: 1,
        partition: PartitionKey {
            class: "standard".into(),
            day: 20_784,
        },
        rows: 2,
        bytes: 1234,
        min_timestamp_us: 1_795_742_432_123_456,
        max_timestamp_us: 1_795_742_433_000_000,
        min_seq: 1,
        max_seq: 2,
    });
    manifest
}

fn write_golden_if_asked() {
    if std::env::var_os("AUDITLOG_WRITE_GOLDEN").is_none() {
        return;
    }
    let wal = golden_wal();
    std::fs::write(fixtures().join("wal/small.wal"), &wal).unwrap();
    let mut corrupt = wal.clone();
    corrupt[32 + 12 + 5] ^= 0x01; // a payload bit of the first record
    std::fs::write(fixtures().join("wal/small-corrupt.wal"), &corrupt).unwrap();
    let manifest = golden_manifest().encode();
    std::fs::write(fixtures().join("manifest/MANIFEST"), &manifest).unwrap();
    let mut corrupt = manifest.clone();
    corrupt[30] ^= 0x80;
    std::fs::write(fixtures().join("manifest/MANIFEST-corrupt"), &corrupt).unwrap();
}

#[test]
fn golden_wal_v1_reads_back_exactly() {
    write_golden_if_asked();
    let path = fixtures().join("wal/small.wal");
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes, golden_wal(), "the v1 WAL encoding changed");
    let scanned = scan(&path, &bytes).unwrap();
    assert_eq!(scanned.end, End::Clean);
    assert_eq!(scanned.header.salt, SALT);
    let events: Vec<StoredEvent> = scanned.batches.into_iter().flatten().collect();
    let expected: Vec<StoredEvent> = golden_events()
        .into_iter()
        .enumerate()
        .map(|(i, event)| StoredEvent {
            seq: 1 + i as u64,
            tenant_seq: 1,
            received_us: 1_795_742_434_000_000,
            event,
        })
        .collect();
    assert_eq!(events, expected);
}

#[test]
fn golden_wal_v1_corrupt_twin_is_reported_with_offset() {
    write_golden_if_asked();
    let path = fixtures().join("wal/small-corrupt.wal");
    let bytes = std::fs::read(&path).unwrap();
    let error = scan(&path, &bytes).unwrap_err();
    assert!(
        matches!(error, Error::ChecksumMismatch { offset: 32, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("small-corrupt.wal"), "{error}");
}

#[test]
fn golden_manifest_v1_reads_back_exactly() {
    write_golden_if_asked();
    let path = fixtures().join("manifest/MANIFEST");
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        bytes,
        golden_manifest().encode(),
        "the v1 manifest encoding changed"
    );
    assert_eq!(Manifest::decode(&path, &bytes).unwrap(), golden_manifest());
}

#[test]
fn golden_manifest_v1_corrupt_twin_is_reported() {
    write_golden_if_asked();
    let path = fixtures().join("manifest/MANIFEST-corrupt");
    let bytes = std::fs::read(&path).unwrap();
    let error = Manifest::decode(&path, &bytes).unwrap_err();
    assert!(
        matches!(error, Error::ChecksumMismatch { offset: 24, .. }),
        "{error}"
    );
}
