//! WAL framing and recovery: torn tails are cut exactly, damage elsewhere is reported.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use auditlog_engine::event::{Actor, Event, Resource, StoredEvent};
use auditlog_engine::io::{RealVfs, Vfs};
use auditlog_engine::wal::format::{
    encode_events, encode_payload, encode_record, BatchHeader, FileHeader,
};
use auditlog_engine::wal::writer::SPARE_FILES;
use auditlog_engine::wal::{recover, WalWriter};
use auditlog_engine::Error;

fn event(n: u64) -> Event {
    Event {
        id: Some(format!("evt_{n}").into()),
        timestamp_us: 1_795_000_000_000_000 + n as i64,
        tenant: format!("acct_{}", n % 3).into(),
        actor: Actor {
            id: Some(format!("user_{n}").into()),
            ..Actor::default()
        },
        action: "update".into(),
        resource: Resource {
            kind: "pod".into(),
            id: Some(format!("pod_{n}").into()),
            name: Some("llama-finetune-3".into()),
        },
        details: Some(format!(r#"{{"n":{n}}}"#).into()),
        ..Event::default()
    }
}

/// Writes `batches` batches of 3 events into a fresh WAL; returns the file and each record's
/// start offset.
fn write_wal(dir: &Path, batches: u64) -> (PathBuf, Vec<u64>, Vec<StoredEvent>) {
    let mut writer = WalWriter::open(dir, vfs(), 1, 1 << 30, Vec::new()).unwrap();
    let mut offsets = Vec::new();
    let mut all = Vec::new();
    for batch in 0..batches {
        offsets.push(writer.current_file_bytes());
        all.extend(append_batch(&mut writer, 1 + 3 * batch));
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
        version: 3,
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
                found: 3,
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

/// A newest file named past the log's end holds no event (a power loss took the end of the
/// file before it, whose events were never durable): the next writer removes it rather than
/// keep it beside its own file, where it would sort after it and be taken for the newest.
#[test]
fn wal_empty_file_named_past_the_end_of_the_log_is_removed_by_the_next_writer() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, written) = write_wal(dir.path(), 2);
    let header = FileHeader::decode(&std::fs::read(&path).unwrap()).unwrap();
    let stray = dir.path().join(format!("{:020}.wal", 20));
    std::fs::write(
        &stray,
        FileHeader {
            first_seq: 20,
            ..header
        }
        .encode(),
    )
    .unwrap();
    let recovered = recover(dir.path(), &vfs(), 0).unwrap();
    assert_eq!(recovered.events(), written);
    assert_eq!(recovered.last_seq, 6);
    let mut writer =
        WalWriter::open(dir.path(), vfs(), 7, 1 << 30, recovered.files.clone()).unwrap();
    assert!(!stray.exists(), "the stray file is removed");
    let mut all = written;
    all.extend(append_batch(&mut writer, 7));
    drop(writer);
    let recovered = recover(dir.path(), &vfs(), 0).unwrap();
    assert_eq!(recovered.events(), all);
    let firsts: Vec<u64> = recovered.files.iter().map(|(first, _)| *first).collect();
    assert_eq!(firsts, [1, 7]);
}

/// A WAL whose newest file ends torn but which is refused for damage elsewhere is left as it
/// was found: nothing is cut before every check passed.
#[test]
fn wal_refused_as_corrupt_is_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    // A log that starts at seq 4 while the manifest (sealed through 0) needs seq 1 next: refused.
    let mut writer = WalWriter::open(dir.path(), vfs(), 4, 1 << 30, Vec::new()).unwrap();
    append_batch(&mut writer, 4);
    append_batch(&mut writer, 7);
    drop(writer);
    let path = dir.path().join(format!("{:020}.wal", 4));
    let mut bytes = std::fs::read(&path).unwrap();
    // Its last record torn.
    bytes.truncate(bytes.len() - 3);
    std::fs::write(&path, &bytes).unwrap();
    let error = recover(dir.path(), &vfs(), 0).unwrap_err();
    assert!(error.to_string().contains("wal starts at seq 4"), "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was cut");
    // Read as the log of a store sealed through seq 3, it is whole but for the torn record,
    // which is cut.
    let recovered = recover(dir.path(), &vfs(), 3).unwrap();
    assert_eq!(recovered.last_seq, 6);
    assert!(std::fs::metadata(&path).unwrap().len() < bytes.len() as u64);
}

/// A v2 WAL file of four records of 3 events each, record `i` framed with
/// `durable_through` = the end of record `marks[i]` (`None`: the header); each `(record, byte)`
/// of `damage` has a flipped bit (bytes 0..20 are the record header). Returns the bytes and each
/// record's offset.
fn v2_file_with_marks(marks: [Option<usize>; 4], damage: &[(usize, usize)]) -> (Vec<u8>, Vec<u64>) {
    let salt = 0x5a17;
    let mut bytes = FileHeader {
        version: auditlog_engine::wal::format::VERSION,
        first_seq: 1,
        salt,
    }
    .encode()
    .to_vec();
    let mut offsets: Vec<u64> = Vec::new();
    let mut ends: Vec<u64> = Vec::new();
    for (record, mark) in marks.into_iter().enumerate() {
        let (payload, _) = batch_payload(1 + 3 * record as u64);
        offsets.push(bytes.len() as u64);
        let durable = mark.map_or(32, |i| ends[i]);
        encode_record(salt, durable, &payload, &mut bytes);
        ends.push(bytes.len() as u64);
    }
    for &(record, byte) in damage {
        bytes[offsets[record] as usize + byte] ^= 0x10;
    }
    (bytes, offsets)
}

#[test]
fn wal_v2_damage_is_a_torn_tail_only_when_no_later_record_knew_it_durable() {
    use auditlog_engine::wal::reader::{scan, Discarded, End};
    let path = Path::new("table.wal");
    // (durable_through of each record, the damaged records and bytes, what scan makes of it)
    const PAYLOAD: usize = 30;
    const HEADER: usize = 2;
    type Case = (
        [Option<usize>; 4],
        &'static [(usize, usize)],
        Option<Discarded>,
    );
    let cases: [Case; 8] = [
        // Records 1-3 were all written while record 1's fsync was in flight.
        (
            [None, Some(0), Some(0), Some(0)],
            &[(1, PAYLOAD)],
            Some(Discarded {
                records: 2,
                first_seq: 7,
                last_seq: 12,
            }),
        ),
        // The same with record 1's header damaged instead of its payload.
        (
            [None, Some(0), Some(0), Some(0)],
            &[(1, HEADER)],
            Some(Discarded {
                records: 2,
                first_seq: 7,
                last_seq: 12,
            }),
        ),
        // Nothing was ever known durable.
        (
            [None, None, None, None],
            &[(0, PAYLOAD)],
            Some(Discarded {
                records: 3,
                first_seq: 4,
                last_seq: 12,
            }),
        ),
        // The last record was framed after record 2 was durable, so record 1 was too: damage to
        // acknowledged data.
        ([None, Some(0), Some(0), Some(2)], &[(1, PAYLOAD)], None),
        // Each record was framed after the one before was durable (one fsync at a time).
        ([None, Some(0), Some(1), Some(2)], &[(2, PAYLOAD)], None),
        // Record 2 knew record 1 durable; its payload is damaged too, but its header (and so its
        // mark) is intact: still corruption.
        (
            [None, Some(0), Some(1), Some(0)],
            &[(1, PAYLOAD), (2, PAYLOAD)],
            None,
        ),
        // A record that knew record 0 durable does not vouch for record 1.
        (
            [None, Some(0), Some(0), Some(0)],
            &[(2, PAYLOAD)],
            Some(Discarded {
                records: 1,
                first_seq: 10,
                last_seq: 12,
            }),
        ),
        // A damaged header says nothing: record 2's mark would have vouched, but its header
        // does not verify, and record 3 did not know record 1 durable.
        (
            [None, Some(0), Some(1), Some(0)],
            &[(1, PAYLOAD), (2, HEADER)],
            Some(Discarded {
                records: 1,
                first_seq: 10,
                last_seq: 12,
            }),
        ),
    ];
    for (marks, damage, expected) in cases {
        let (bytes, offsets) = v2_file_with_marks(marks, damage);
        let damaged = damage[0].0;
        let case = format!("marks {marks:?}, damage {damage:?}");
        match (scan(path, &bytes), expected) {
            (Ok(scanned), Some(discarded)) => {
                assert_eq!(
                    scanned.end,
                    End::Torn {
                        offset: offsets[damaged]
                    },
                    "{case}"
                );
                assert_eq!(scanned.discarded, Some(discarded), "{case}");
                assert_eq!(scanned.batches.len(), damaged, "{case}");
            }
            (Err(error), None) => match error {
                Error::ChecksumMismatch { offset, .. } => {
                    assert_eq!(offset, offsets[damaged], "{case}")
                }
                other => panic!("{case}: {other}"),
            },
            (Ok(scanned), None) => panic!("{case}: read as {:?}", scanned.end),
            (Err(error), Some(_)) => panic!("{case}: {error}"),
        }
    }
}

/// Frames one batch of 3 events from `seq` for `writer`'s current file and writes it durably.
fn append_batch(writer: &mut WalWriter, seq: u64) -> Vec<StoredEvent> {
    writer.rotate_if_full(seq).unwrap();
    let (payload, stored) = batch_payload(seq);
    let mut record = Vec::new();
    encode_record(
        writer.salt(),
        writer.durable_through(),
        &payload,
        &mut record,
    );
    writer.write(&record, true).unwrap();
    stored
}

/// The record payload of a batch of 3 events from `seq`, and the events as stored.
fn batch_payload(seq: u64) -> (Vec<u8>, Vec<StoredEvent>) {
    let events: Vec<Event> = (seq..seq + 3).map(event).collect();
    let header = BatchHeader {
        first_seq: seq,
        received_us: 7,
        tenant_seqs: (seq..seq + 3).collect(),
    };
    let mut payload = Vec::new();
    encode_payload(&header, &encode_events(&events), &mut payload);
    let stored = events
        .into_iter()
        .enumerate()
        .map(|(i, event)| StoredEvent {
            seq: seq + i as u64,
            tenant_seq: seq + i as u64,
            received_us: 7,
            event,
        })
        .collect();
    (payload, stored)
}

fn names_ending(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(suffix))
        .collect();
    names.sort();
    names
}

/// Sealed files become spares (at most `SPARE_FILES`), later files are written over them, and
/// recovery reads exactly what was written: a file the writer moved on from was cut to its
/// records, and the stale bytes after the newest file's last record are cut as a torn tail.
#[test]
fn wal_recycled_files_are_written_over_and_recover_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = WalWriter::open(dir.path(), vfs(), 1, 2 << 10, Vec::new()).unwrap();
    let mut written = Vec::new();
    let mut seq = 1;
    while writer.file_count() < 6 {
        written.extend(append_batch(&mut writer, seq));
        seq += 3;
    }
    let first_files = names_ending(dir.path(), ".wal");
    let sealed_through = seq - 1 - 3;
    writer.take_sealed(sealed_through).remove().unwrap();
    let spares = names_ending(dir.path(), ".spare");
    assert_eq!(
        spares.len(),
        SPARE_FILES,
        "files kept as spares: {spares:?}"
    );
    assert_eq!(
        names_ending(dir.path(), ".wal").len(),
        1,
        "the rest deleted"
    );
    // Write until both spares are in use again: the current file is the second of them.
    let files_before = writer.file_count();
    while writer.file_count() < files_before + SPARE_FILES {
        written.extend(append_batch(&mut writer, seq));
        seq += 3;
    }
    assert!(
        names_ending(dir.path(), ".spare").is_empty(),
        "both spares reused"
    );
    assert!(first_files.len() >= 6);
    // The current file is recycled and short of its old length: stale records follow.
    let newest = writer.path().to_path_buf();
    let recovered = recover(dir.path(), &vfs(), sealed_through).unwrap();
    assert_eq!(
        recovered.events(),
        written[sealed_through as usize..].to_vec()
    );
    let (cut_file, cut_at) = recovered.truncated.expect("the stale bytes were cut");
    assert_eq!(cut_file, newest);
    assert_eq!(std::fs::metadata(&newest).unwrap().len(), cut_at);
}

/// A crash after a spare got its new header but before it was renamed leaves a spare: recovery
/// ignores it and the next writer adopts it.
#[test]
fn wal_spare_with_a_new_header_is_ignored_by_recovery_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, written) = write_wal(dir.path(), 2);
    let mut spare = FileHeader {
        version: 1,
        first_seq: 7,
        salt: 99,
    }
    .encode()
    .to_vec();
    spare.extend(std::iter::repeat_n(0xab, 5000));
    std::fs::write(dir.path().join(format!("{:020}.spare", 3)), &spare).unwrap();
    let recovered = recover(dir.path(), &vfs(), 0).unwrap();
    assert_eq!(recovered.events(), written);
    assert!(recovered.truncated.is_none());
    let mut writer =
        WalWriter::open(dir.path(), vfs(), 7, 1 << 30, recovered.files.clone()).unwrap();
    assert!(
        names_ending(dir.path(), ".spare").is_empty(),
        "the spare was reused"
    );
    let mut all = written;
    all.extend(append_batch(&mut writer, 7));
    writer.trim().unwrap();
    let recovered = recover(dir.path(), &vfs(), 0).unwrap();
    assert_eq!(recovered.events(), all);
    assert!(
        recovered.truncated.is_none(),
        "trimmed: no stale bytes left"
    );
}

mod payload_decoder {
    //! The hand-written payload decoder (`wal::payload`) reads exactly what postcard writes.

    use auditlog_engine::event::{Actor, ActorType, Event, Outcome, Resource, Text};
    use auditlog_engine::wal::format::{encode_batch_header, encode_events, BatchHeader};
    use auditlog_engine::wal::payload::decode_payload;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            "[a-z0-9_.:-]{1,12}",
            any::<String>(),
            (0usize..400).prop_map(|n| "é".repeat(n)),
        ]
    }

    fn optional() -> impl Strategy<Value = Option<String>> {
        prop_oneof![Just(None), text().prop_map(Some)]
    }

    prop_compose! {
        fn any_event()(
            texts in prop::collection::vec(optional(), 11),
            tenant in text(),
            action in text(),
            kind in text(),
            timestamp_us in any::<i64>(),
            actor_type in 0u8..3,
            failure in any::<bool>(),
        ) -> Event {
            let mut texts = texts.into_iter();
            let mut next = || texts.next().flatten().map(Text::from);
            Event {
                id: next(),
                timestamp_us,
                tenant: tenant.into(),
                project: next(),
                actor: Actor {
                    id: next(),
                    email: next(),
                    kind: ActorType::from_code(actor_type).unwrap(),
                    ip: next(),
                    user_agent: next(),
                },
                action: action.into(),
                outcome: if failure { Outcome::Failure } else { Outcome::Success },
                resource: Resource { kind: kind.into(), id: next(), name: next() },
                changes: next(),
                details: next(),
            }
        }
    }

    fn payload(header: &BatchHeader, events: &[Event]) -> Vec<u8> {
        let mut payload = encode_batch_header(header);
        payload.extend(encode_events(events));
        payload
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn decodes_what_postcard_encodes(
            events in prop::collection::vec(any_event(), 0..12),
            first_seq in any::<u64>().prop_map(|s| s >> 8),
            received_us in any::<i64>(),
            tenant_seq_base in any::<u64>().prop_map(|s| s >> 8),
        ) {
            let header = BatchHeader {
                first_seq,
                received_us,
                tenant_seqs: (0..events.len() as u64).map(|i| tenant_seq_base + i * 1000).collect(),
            };
            let bytes = payload(&header, &events);
            // The reference: serde's postcard decoder of the same bytes.
            let (decoded_header, rest): (BatchHeader, &[u8]) = postcard::take_from_bytes(&bytes).unwrap();
            let reference: Vec<Event> = postcard::from_bytes(rest).unwrap();
            prop_assert_eq!(&decoded_header, &header);
            prop_assert_eq!(&reference, &events);

            let stored = decode_payload(&bytes).unwrap();
            prop_assert_eq!(stored.len(), events.len());
            for (i, (stored, event)) in stored.iter().zip(&events).enumerate() {
                prop_assert_eq!(stored.seq, first_seq + i as u64);
                prop_assert_eq!(stored.tenant_seq, header.tenant_seqs[i]);
                prop_assert_eq!(stored.received_us, received_us);
                prop_assert_eq!(&stored.event, event);
            }
            // Every cut of the payload is refused with a reason, never a panic or a wrong batch.
            for cut in 0..bytes.len() {
                let refused = decode_payload(&bytes[..cut]);
                prop_assert!(refused.is_err(), "cut at {} of {} decoded", cut, bytes.len());
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_payload(&bytes);
        }
    }

    #[test]
    fn malformed_payloads_name_the_problem() {
        let event = Event {
            tenant: "acct_1".into(),
            action: "create".into(),
            ..Event::default()
        };
        let header = BatchHeader {
            first_seq: 1,
            received_us: 0,
            tenant_seqs: vec![1],
        };
        let good = payload(&header, std::slice::from_ref(&event));
        assert_eq!(decode_payload(&good).unwrap()[0].event, event);

        let reason = |bytes: &[u8]| decode_payload(bytes).unwrap_err();
        // Trailing garbage.
        let mut long = good.clone();
        long.push(0);
        assert_eq!(reason(&long), "1 bytes after the last event of the batch");
        // An event count that disagrees with the header's tenant seqs.
        let two = payload(
            &BatchHeader {
                tenant_seqs: vec![1, 2],
                ..header.clone()
            },
            std::slice::from_ref(&event),
        );
        assert_eq!(reason(&two), "batch holds 1 events but 2 tenant seqs");
        // The id's option tag (first byte of the event) is neither 0 nor 1.
        let event_start = encode_batch_header(&header).len() + 1;
        let mut tag = good.clone();
        tag[event_start] = 7;
        assert!(
            reason(&tag).starts_with("bad event 0 of batch: option tag 7 at byte"),
            "{}",
            reason(&tag)
        );
        // Invalid UTF-8 in the tenant (id none, timestamp 0, then the tenant's length and bytes).
        let mut utf8 = good.clone();
        utf8[event_start + 3] = 0xff;
        assert!(reason(&utf8).contains("is not UTF-8"), "{}", reason(&utf8));
        // A varint longer than a u64.
        let mut endless = vec![0x80u8; 11];
        endless.push(0);
        assert!(
            reason(&endless).contains("overflows 64 bits"),
            "{}",
            reason(&endless)
        );
        // A huge tenant-seq count is refused before anything is reserved.
        let huge = [1u8, 0, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(
            reason(&huge).contains("tenant seqs in"),
            "{}",
            reason(&huge)
        );
        // An unknown outcome variant: build an event whose outcome index is 2.
        let mut outcome = good.clone();
        let outcome_at = outcome.len() - 1 /* details */ - 1 /* changes */ - 1 /* name */ - 1 /* id */
            - 1 - "".len() /* resource kind: length 0 */ - 1;
        outcome[outcome_at] = 2;
        assert!(
            reason(&outcome).contains("outcome variant 2"),
            "{}",
            reason(&outcome)
        );
    }
}
