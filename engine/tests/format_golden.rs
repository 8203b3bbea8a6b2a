//! Golden files pin the WAL (v1 and v2) and manifest (v1) formats: the files under
//! tests/fixtures/v1 and v2 were written once (run with AUDITLOG_WRITE_GOLDEN=1 to rewrite them
//! after a deliberate format change, which must also bump the version and update
//! docs/FORMAT.md); every build must read them back exactly, write the same bytes for the same
//! content, and report their corrupt twins. The v1 WAL is no longer written but still read (its
//! files are never rewritten).

use std::path::{Path, PathBuf};

use auditlog_engine::event::{Actor, ActorType, Event, Outcome, Resource, StoredEvent};
use auditlog_engine::manifest::{Manifest, SegmentEntry};
use auditlog_engine::partition::PartitionKey;
use auditlog_engine::wal::format::{
    encode_events, encode_payload, encode_record, encode_record_v1, BatchHeader, FileHeader,
    FILE_HEADER_BYTES, RECORD_HEADER_BYTES, VERSION, VERSION_1,
};
use auditlog_engine::wal::reader::{scan, Discarded, End};
use auditlog_engine::Error;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1")
}

fn fixtures_v2() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2")
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

/// The payloads of the golden WAL files: seq 1 (one event) and seq 2 (one event).
fn golden_payloads() -> Vec<Vec<u8>> {
    golden_events()
        .into_iter()
        .enumerate()
        .map(|(i, event)| {
            let header = BatchHeader {
                first_seq: 1 + i as u64,
                received_us: 1_795_742_434_000_000,
                tenant_seqs: vec![1],
            };
            let mut payload = Vec::new();
            encode_payload(&header, &encode_events(&[event]), &mut payload);
            payload
        })
        .collect()
}

fn wal_header(version: u32) -> Vec<u8> {
    FileHeader {
        version,
        first_seq: 1,
        salt: SALT,
    }
    .encode()
    .to_vec()
}

/// A v1 WAL file with the two records.
fn golden_wal() -> Vec<u8> {
    let mut out = wal_header(VERSION_1);
    for payload in golden_payloads() {
        encode_record_v1(SALT, &payload, &mut out);
    }
    out
}

/// A v2 WAL file with the two records, the second framed after the first was fsynced (its
/// `durable_through` is the end of the first) when `second_knew_first_durable`, else while the
/// first's fsync was still in flight (`durable_through` 32, the header).
fn golden_wal_v2(second_knew_first_durable: bool) -> Vec<u8> {
    let mut out = wal_header(VERSION);
    let payloads = golden_payloads();
    encode_record(SALT, FILE_HEADER_BYTES as u64, &payloads[0], &mut out);
    let durable = if second_knew_first_durable {
        out.len() as u64
    } else {
        FILE_HEADER_BYTES as u64
    };
    encode_record(SALT, durable, &payloads[1], &mut out);
    out
}

/// Where the golden v2 files' first record's payload gets its flipped bit.
const V2_FLIPPED_BYTE: usize = FILE_HEADER_BYTES + RECORD_HEADER_BYTES + 5;

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
    // The v1 WAL files are not rewritten: v1 is no longer written, only read, so its golden
    // files stay as v1 wrote them (small-corrupt.wal has a payload bit of the first record
    // flipped, byte 32 + 12 + 5).
    let v2 = fixtures_v2().join("wal");
    std::fs::create_dir_all(&v2).unwrap();
    std::fs::write(v2.join("small.wal"), golden_wal_v2(true)).unwrap();
    let mut corrupt = golden_wal_v2(true);
    corrupt[V2_FLIPPED_BYTE] ^= 0x01;
    std::fs::write(v2.join("small-corrupt.wal"), &corrupt).unwrap();
    let mut torn = golden_wal_v2(false);
    torn[V2_FLIPPED_BYTE] ^= 0x01;
    std::fs::write(v2.join("small-torn.wal"), &torn).unwrap();
    let manifest = golden_manifest().encode();
    std::fs::write(fixtures().join("manifest/MANIFEST"), &manifest).unwrap();
    let mut corrupt = manifest.clone();
    corrupt[30] ^= 0x80;
    std::fs::write(fixtures().join("manifest/MANIFEST-corrupt"), &corrupt).unwrap();
}

/// Reads a golden WAL file: its bytes are what this build writes for the content (`expected`),
/// and it scans back cleanly to the golden events.
fn assert_golden_wal_reads_back(path: &Path, expected: &[u8], version: u32) {
    write_golden_if_asked();
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(bytes, expected, "the v{version} WAL encoding changed");
    let scanned = scan(path, &bytes).unwrap();
    assert_eq!((scanned.end, scanned.discarded), (End::Clean, None));
    assert_eq!(scanned.header.salt, SALT);
    assert_eq!(scanned.header.version, version);
    let events: Vec<StoredEvent> = scanned.batches.into_iter().flatten().collect();
    assert_eq!(events, golden_stored());
}

/// A corrupt twin: its first record's damage is reported at its offset (32), with the file.
fn assert_corrupt_twin_reported(path: &Path) {
    write_golden_if_asked();
    let bytes = std::fs::read(path).unwrap();
    let error = scan(path, &bytes).unwrap_err();
    assert!(
        matches!(error, Error::ChecksumMismatch { offset: 32, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("small-corrupt.wal"), "{error}");
}

#[test]
fn golden_wal_v1_reads_back_exactly() {
    assert_golden_wal_reads_back(&fixtures().join("wal/small.wal"), &golden_wal(), VERSION_1);
}

#[test]
fn golden_wal_v1_corrupt_twin_is_reported_with_offset() {
    // Version 1 has no durable marks: a valid record after a damaged one is corruption.
    assert_corrupt_twin_reported(&fixtures().join("wal/small-corrupt.wal"));
}

/// The events the golden WAL files hold, as stored.
fn golden_stored() -> Vec<StoredEvent> {
    golden_events()
        .into_iter()
        .enumerate()
        .map(|(i, event)| StoredEvent {
            seq: 1 + i as u64,
            tenant_seq: 1,
            received_us: 1_795_742_434_000_000,
            event,
        })
        .collect()
}

#[test]
fn golden_wal_v2_reads_back_exactly() {
    assert_golden_wal_reads_back(
        &fixtures_v2().join("wal/small.wal"),
        &golden_wal_v2(true),
        VERSION,
    );
}

#[test]
fn golden_wal_v2_corrupt_twin_is_reported_with_offset() {
    // The second record was framed once the first was durable: the first one's damage is
    // damage to acknowledged data, not a torn write.
    assert_corrupt_twin_reported(&fixtures_v2().join("wal/small-corrupt.wal"));
}

#[test]
fn golden_wal_v2_torn_twin_is_cut_at_the_damaged_record() {
    // The same damage, but the second record was framed while the first one's fsync was in
    // flight: a power loss kept the second's page and not the first's. Neither was answered.
    write_golden_if_asked();
    let path = fixtures_v2().join("wal/small-torn.wal");
    let bytes = std::fs::read(&path).unwrap();
    let mut expected = golden_wal_v2(false);
    expected[V2_FLIPPED_BYTE] ^= 0x01;
    assert_eq!(bytes, expected, "the v2 WAL encoding changed");
    let scanned = scan(&path, &bytes).unwrap();
    assert_eq!(scanned.end, End::Torn { offset: 32 });
    assert_eq!(
        scanned.discarded,
        Some(Discarded {
            records: 1,
            first_seq: 2,
            last_seq: 2
        })
    );
    assert!(scanned.batches.is_empty());
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

/// The WAL's event encoder is postcard's `Vec<Event>` encoding, byte for byte, on realistic
/// events as well as on the golden ones.
#[test]
fn encoded_events_are_postcards_bytes() {
    let mut gen = auditlog_gen::Generator::new(auditlog_gen::GenConfig::default());
    for events in [Vec::new(), golden_events(), gen.fill(1), gen.fill(1000)] {
        let expected = postcard::to_stdvec(&events).unwrap();
        assert_eq!(encode_events(&events), expected, "{} events", events.len());
    }
}
