//! Format-level tests of sealed segments: round trips of arbitrary rows, corruption anywhere is
//! reported (never a panic, never silently accepted), and golden files pin format versions 1
//! (read only: no longer written) and 2.
//!
//! Regenerate the v2 golden files (only when the format version changes; the v1 files are never
//! rewritten): `AUDITLOG_WRITE_GOLDEN=1 cargo test -p auditlog-engine --test segment_format`

use std::path::{Path, PathBuf};

use auditlog_engine::event::{Actor, ActorType, Event, Outcome, Resource, StoredEvent, Text};
use auditlog_engine::segment::{
    encode_segment, Column, Columns, EncodeOptions, Segment, HEADER_LEN,
};
use auditlog_engine::Error;
use proptest::prelude::*;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1/segment")
}

fn fixture_dir_v2() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2/segment")
}

/// The rows of the golden file: fixed, covering absent fields, unicode, both enums, JSON details.
fn golden_rows() -> Vec<StoredEvent> {
    let base = 1_795_000_000_000_000i64;
    let event = |seq: u64, tenant: &str, offset_us: i64, action: &str| {
        StoredEvent {
        seq,
        tenant_seq: seq,
        received_us: base + offset_us + 250,
        event: Event {
            id: Some(format!("evt_{seq:04}").into()),
            timestamp_us: base + offset_us,
            tenant: tenant.into(),
            project: Some("proj_ml-research".into()),
            actor: Actor {
                id: Some("user_913".into()),
                email: Some("alice@example.com".into()),
                kind: ActorType::User,
                ip: Some("203.0.113.7".into()),
                user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0".into()),
            },
            action: action.into(),
            outcome: Outcome::Success,
            resource: Resource {
                kind: "pod".into(),
                id: Some("pod_8fj2k".into()),
                name: Some("llama-finetune-3".into()),
            },
            changes: None,
            details: Some(format!(
                r#"{{"region":"eu-west","request_id":"req_37d15c54cb5ae1{seq:02}","duration_ms":{}}}"#,
                seq * 17
            ).into()),
        },
    }
    };
    let mut rows = vec![
        event(1, "acct_0042", 0, "create"),
        event(2, "acct_0042", 1_000, "start"),
        event(3, "acct_0007", 500, "login"),
        event(4, "acct_0042", 2_000, "update"),
        event(5, "acct_0007", 900, "login"),
    ];
    rows[3].event.changes = Some(r#"[{"field":"gpu_count","old":1,"new":4}]"#.into());
    rows[2].event.outcome = Outcome::Failure;
    rows[2].event.actor = Actor {
        id: None,
        email: Some("zoë@exämple.com".into()),
        kind: ActorType::ApiToken,
        ip: Some("2001:db8::1".into()),
        user_agent: None,
    };
    rows[2].event.resource = Resource {
        kind: "account".into(),
        id: None,
        name: None,
    };
    rows[2].event.project = None;
    rows[4].event.id = None;
    rows[4].event.details = Some(r#"{"note":"ünïcödé ✓","nested":{"a":[1,2.5,"x"]}}"#.into());
    rows[4].event.actor.kind = ActorType::System;
    rows
}

fn sorted(mut rows: Vec<StoredEvent>) -> Vec<StoredEvent> {
    rows.sort_by(|a, b| {
        (&a.event.tenant, a.event.timestamp_us, a.seq).cmp(&(
            &b.event.tenant,
            b.event.timestamp_us,
            b.seq,
        ))
    });
    rows
}

fn small_options() -> EncodeOptions {
    EncodeOptions {
        block_rows: 2,
        ..EncodeOptions::default()
    }
}

/// Text dictionaries however few the blocks: the v2 golden file has a `details` dictionary
/// sampled from 2 rows (and none for `changes`, which neither sampled row has).
fn dictionary_options() -> EncodeOptions {
    EncodeOptions {
        block_rows: 2,
        text_dictionary_rows: 2,
        text_dictionary_min_blocks: 1,
        ..EncodeOptions::default()
    }
}

/// The golden corrupt twin: one bit flipped inside a column chunk of block 0.
fn corrupt_twin(bytes: &[u8]) -> (Vec<u8>, usize) {
    let position = HEADER_LEN + 3;
    let mut corrupt = bytes.to_vec();
    corrupt[position] ^= 0x10;
    (corrupt, position)
}

/// Reads a golden segment back: its rows, keys, tenants and checksums.
fn assert_golden_reads_back(segment: &Segment, blocks: usize) {
    assert_eq!(segment.meta().segment_id, 0x5e6);
    assert_eq!(segment.meta().rows, 5);
    assert_eq!(segment.meta().min_seq, 1);
    assert_eq!(segment.meta().max_seq, 5);
    assert_eq!(segment.blocks().len(), blocks);
    assert_eq!(segment.read_all().unwrap(), sorted(golden_rows()));
    segment.verify().unwrap();
    assert_eq!(segment.find_key("acct_0042", "evt_0004").unwrap(), Some(4));
    assert_eq!(segment.tenant_rows("acct_0007"), Some(0..2));
}

#[test]
fn segment_golden_v1_reads_exact_rows() {
    // Written by the v1 encoder (block_rows 2, no text dictionaries) and never rewritten: v1 is
    // no longer written, only read.
    let segment = Segment::open(fixture_dir().join("small.seg")).unwrap();
    assert_eq!(segment.format_version(), 1);
    assert_golden_reads_back(&segment, 3);
}

#[test]
fn segment_golden_v2_reads_exact_rows() {
    let dir = fixture_dir_v2();
    let path = dir.join("small.seg");
    let corrupt_path = dir.join("small-corrupt.seg");
    if std::env::var_os("AUDITLOG_WRITE_GOLDEN").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        let encoded = encode_segment(0x5e6, &golden_rows(), &dictionary_options()).unwrap();
        std::fs::write(&path, &encoded.bytes).unwrap();
        let (corrupt, _) = corrupt_twin(&encoded.bytes);
        std::fs::write(&corrupt_path, corrupt).unwrap();
    }
    let segment = Segment::open(&path).unwrap();
    assert_eq!(segment.format_version(), 2);
    assert_golden_reads_back(&segment, 3);
    assert!(segment.has_text_dictionary(Column::Details));
    assert!(!segment.has_text_dictionary(Column::Changes));
    // Encoding is deterministic: today's encoder writes the same bytes.
    let encoded = encode_segment(0x5e6, &golden_rows(), &dictionary_options()).unwrap();
    assert_eq!(encoded.bytes, std::fs::read(&path).unwrap());
}

#[test]
fn segment_golden_v1_corrupt_twin_names_the_chunk_offset() {
    // The flipped byte (27) lies in block 0's `seq` chunk, stored at offset 26 right after the
    // 2-byte `tenant` chunk (two rows) that follows the 24-byte header.
    assert_corrupt_twin_names_the_chunk_offset(&fixture_dir().join("small-corrupt.seg"), 26);
}

#[test]
fn segment_golden_v2_corrupt_twin_names_the_chunk_offset() {
    // As in v1: the flipped byte (27) lies in block 0's `seq` chunk, at offset 26.
    assert_corrupt_twin_names_the_chunk_offset(&fixture_dir_v2().join("small-corrupt.seg"), 26);
}

fn assert_corrupt_twin_names_the_chunk_offset(path: &Path, chunk_offset: u64) {
    let segment = Segment::open(path).unwrap();
    let error = segment.verify().unwrap_err();
    match error {
        Error::ChecksumMismatch {
            path: error_path,
            offset,
            ..
        } => {
            assert_eq!(error_path, path.to_path_buf());
            assert_eq!(offset, chunk_offset);
        }
        other => panic!("expected a checksum mismatch, got {other}"),
    }
    let error = segment.read_all().unwrap_err();
    assert!(
        matches!(error, Error::ChecksumMismatch { offset, .. } if offset == chunk_offset),
        "{error}"
    );
}

fn write_temp(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0000000000000001.seg");
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

#[test]
fn segment_every_flipped_bit_is_reported() {
    assert_every_flipped_bit_is_reported(&small_options());
}

#[test]
fn segment_every_flipped_bit_is_reported_with_text_dictionaries() {
    assert_every_flipped_bit_is_reported(&dictionary_options());
}

fn assert_every_flipped_bit_is_reported(options: &EncodeOptions) {
    let encoded = encode_segment(7, &golden_rows(), options).unwrap();
    let (_dir, path) = write_temp(&encoded.bytes);
    for position in 0..encoded.bytes.len() {
        for bit in [0u8, 5] {
            let mut bytes = encoded.bytes.clone();
            bytes[position] ^= 1 << bit;
            std::fs::write(&path, &bytes).unwrap();
            let result = Segment::open(&path).and_then(|segment| segment.verify());
            let error =
                result.expect_err(&format!("flip at byte {position} bit {bit} went unnoticed"));
            assert!(error.is_corruption(), "byte {position}: {error}");
            if let Error::ChecksumMismatch {
                path: p, offset, ..
            }
            | Error::Corrupt {
                path: p, offset, ..
            } = &error
            {
                assert_eq!(p, &path);
                assert!(*offset <= bytes.len() as u64, "byte {position}: {error}");
            }
            if position >= HEADER_LEN && position < encoded.bytes.len() - 200 {
                // Inside the data: the chunk holding the byte is named, starting at or before it.
                if let Error::ChecksumMismatch { offset, .. } = error {
                    assert!(
                        offset <= position as u64,
                        "byte {position} reported at {offset}"
                    );
                }
            }
        }
    }
}

#[test]
fn segment_truncated_file_is_corrupt_not_panic() {
    let encoded = encode_segment(7, &golden_rows(), &small_options()).unwrap();
    for length in 0..encoded.bytes.len() {
        let error = Segment::from_bytes("cut.seg", encoded.bytes[..length].to_vec()).unwrap_err();
        assert!(
            matches!(error, Error::Corrupt { ref path, .. } if path == Path::new("cut.seg")),
            "length {length}: {error}"
        );
    }
}

#[test]
fn segment_bad_magic_and_unknown_version_are_errors() {
    let encoded = encode_segment(7, &golden_rows(), &small_options()).unwrap();
    let mut bad_magic = encoded.bytes.clone();
    bad_magic[0] = b'X';
    let error = Segment::from_bytes("m.seg", bad_magic).unwrap_err();
    assert!(matches!(error, Error::BadMagic { .. }), "{error}");

    let mut future = encoded.bytes.clone();
    future[8..12].copy_from_slice(&3u32.to_le_bytes());
    let error = Segment::from_bytes("v.seg", future).unwrap_err();
    assert!(
        matches!(
            error,
            Error::UnsupportedVersion {
                found: 3,
                supported: 2,
                ..
            }
        ),
        "{error}"
    );
    let mut ancient = encoded.bytes.clone();
    ancient[8..12].copy_from_slice(&0u32.to_le_bytes());
    let error = Segment::from_bytes("v.seg", ancient).unwrap_err();
    assert!(
        matches!(error, Error::UnsupportedVersion { found: 0, .. }),
        "{error}"
    );
    let (_dir, path) = write_temp(b"not a segment at all, but long enough to have a header");
    assert!(matches!(
        Segment::open(&path).unwrap_err(),
        Error::BadMagic { .. }
    ));
}

#[test]
fn segment_chunk_from_another_segment_fails_its_checksum() {
    let one = encode_segment(1, &golden_rows(), &small_options()).unwrap();
    let two = encode_segment(2, &golden_rows(), &small_options()).unwrap();
    // Same rows, same layout: only the salt differs. Splice segment 2's first chunk into 1.
    let mut spliced = one.bytes.clone();
    spliced[HEADER_LEN..HEADER_LEN + 16].copy_from_slice(&two.bytes[HEADER_LEN..HEADER_LEN + 16]);
    if spliced != one.bytes {
        let segment = Segment::from_bytes("s.seg", spliced).unwrap();
        assert!(matches!(
            segment.verify().unwrap_err(),
            Error::ChecksumMismatch { .. }
        ));
    }
    assert_ne!(
        one.bytes[one.bytes.len() - 12..],
        two.bytes[two.bytes.len() - 12..]
    );
}

#[test]
fn segment_partial_decode_and_keys_from_file() {
    let rows = golden_rows();
    let encoded = encode_segment(9, &rows, &small_options()).unwrap();
    let (_dir, path) = write_temp(&encoded.bytes);
    let segment = Segment::open(&path).unwrap();
    let block = segment
        .read_block(0, Column::Tenant | Column::Details)
        .unwrap();
    assert_eq!(block.str(Column::Tenant, 0), Some("acct_0007"));
    assert!(block.str(Column::Details, 1).unwrap().contains("ünïcödé"));
    assert!(!block.columns().contains(Column::Seq));
    for event in &rows {
        if let Some(id) = &event.event.id {
            assert!(segment.may_contain_key(&event.event.tenant, id));
            assert_eq!(
                segment.find_key(&event.event.tenant, id).unwrap(),
                Some(event.seq)
            );
        }
    }
    assert_eq!(segment.find_key("acct_0007", "evt_0001").unwrap(), None);
    assert_eq!(segment.find_seq(4).unwrap().map(|e| e.seq), Some(4));
    let mut out = Vec::new();
    segment.collect_seq_range(2, 4, &mut out).unwrap();
    let mut seqs: Vec<u64> = out.iter().map(|e| e.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, vec![2, 3]);
    let all = segment.read_block(1, Columns::ALL).unwrap();
    assert_eq!(all.event(0), sorted(rows)[2]);
}

fn optional_text() -> impl Strategy<Value = Option<Text>> {
    optional_string().prop_map(|text| text.map(Text::from))
}

fn optional_string() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some(String::new())),
        "[a-z0-9_.:-]{1,12}".prop_map(Some),
        any::<String>().prop_map(Some),
    ]
}

fn json_text() -> impl Strategy<Value = Option<Text>> {
    json_string().prop_map(|text| text.map(Text::from))
}

fn json_string() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        optional_string(),
        (any::<String>(), any::<i64>(), "[0-9a-f]{0,40}").prop_map(|(text, number, hex)| {
            Some(serde_json::json!({"s": text, "n": number, "id": format!("req_{hex}"), "a": [number, "x", 1.5]}).to_string())
        }),
        (0usize..70_000).prop_map(|length| Some(format!("{{\"big\":\"{}\"}}", "é".repeat(length / 2)))),
    ]
}

prop_compose! {
    fn stored_event()(
        seq in 1u64..1_000_000,
        tenant_seq in any::<u64>(),
        timestamp_us in any::<i64>(),
        received_delta in -10_000_000i64..10_000_000,
        id in optional_text(),
        tenant in prop_oneof!["acct_[0-9]{1,2}", any::<String>()],
        project in optional_text(),
        actor_id in optional_text(),
        email in optional_text(),
        kind in 0u8..3,
        ip in optional_text(),
        user_agent in optional_text(),
        action in "[a-z_]{0,10}",
        failure in any::<bool>(),
        resource_kind in "[a-z_]{1,8}",
        resource_id in optional_text(),
        resource_name in optional_text(),
        changes in json_text(),
        details in json_text(),
    ) -> StoredEvent {
        StoredEvent {
            seq,
            tenant_seq,
            received_us: timestamp_us.wrapping_add(received_delta),
            event: Event {
                id,
                timestamp_us,
                tenant: tenant.into(),
                project,
                actor: Actor {
                    id: actor_id,
                    email,
                    kind: ActorType::from_code(kind).unwrap(),
                    ip,
                    user_agent,
                },
                action: action.into(),
                outcome: if failure { Outcome::Failure } else { Outcome::Success },
                resource: Resource { kind: resource_kind.into(), id: resource_id, name: resource_name },
                changes,
                details,
            },
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn segment_round_trips_arbitrary_rows(
        rows in prop::collection::vec(stored_event(), 0..40),
        block_rows in 1usize..9,
        segment_id in any::<u64>(),
    ) {
        // seq is unique in a store.
        let mut rows = rows;
        for (index, row) in rows.iter_mut().enumerate() {
            row.seq = index as u64 * 3 + 1;
        }
        let options = EncodeOptions { block_rows, ..EncodeOptions::default() };
        let encoded = encode_segment(segment_id, &rows, &options).unwrap();
        let segment = Segment::from_bytes("p.seg", encoded.bytes).unwrap();
        prop_assert_eq!(segment.meta(), &encoded.meta);
        segment.verify().unwrap();
        prop_assert_eq!(segment.read_all().unwrap(), sorted(rows.clone()));
        for row in &rows {
            if let Some(id) = &row.event.id {
                prop_assert!(segment.may_contain_key(&row.event.tenant, id));
                let found = segment.find_key(&row.event.tenant, id).unwrap();
                prop_assert!(found.is_some());
            }
        }
    }
}

/// A dictionary decoded after open (the file changed since) is an error naming the file, never
/// a column without values: every byte of the file flipped in turn under an open segment, and
/// the `action` dictionary read again from a fresh mapping, is either the one first read or an
/// error.
#[test]
fn segment_dictionary_damaged_after_open_is_an_error_not_an_absent_column() {
    use std::io::{Seek, SeekFrom, Write};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("segment.seg");
    let bytes = encode_segment(0x5e6, &golden_rows(), &dictionary_options())
        .unwrap()
        .bytes;
    std::fs::write(&path, &bytes).unwrap();
    let segment = Segment::open(&path).unwrap();
    let values = |dictionary: &auditlog_engine::segment::Dictionary| -> Vec<String> {
        (1..=dictionary.len() as u32)
            .map(|code| dictionary.get(code).unwrap().to_owned())
            .collect()
    };
    let expected = values(segment.dictionary(Column::Action).unwrap().unwrap());
    assert!(!expected.is_empty());
    let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let mut poke = |position: usize, byte: u8| {
        file.seek(SeekFrom::Start(position as u64)).unwrap();
        file.write_all(&[byte]).unwrap();
    };
    let mut errors = 0;
    for (position, &byte) in bytes.iter().enumerate() {
        poke(position, byte ^ 0x01);
        let fresh = segment.without_dictionaries().unwrap();
        match fresh.dictionary(Column::Action) {
            Ok(Some(dictionary)) => assert_eq!(values(dictionary), expected, "byte {position}"),
            Ok(None) => panic!("byte {position}: the action dictionary went missing"),
            Err(error) => {
                assert!(error.to_string().contains("segment.seg"), "{error}");
                errors += 1;
            }
        }
        poke(position, bytes[position]);
    }
    assert!(
        errors > 0,
        "some flipped byte lies in the action dictionary"
    );
}
