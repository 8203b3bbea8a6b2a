//! Unit tests of the segment module; the format-level tests (golden files, corruption) are in
//! `engine/tests/segment_format.rs`.

use super::format::DICTIONARY_COLUMNS;
use super::*;
use crate::event::{format_compact, Actor, ActorType, Event, Outcome, Resource, StoredEvent};

fn row(seq: u64, tenant: &str, timestamp_us: i64) -> StoredEvent {
    StoredEvent {
        seq,
        tenant_seq: seq,
        received_us: timestamp_us + 1_500,
        event: Event {
            id: Some(format!("evt_{seq}").into()),
            timestamp_us,
            tenant: tenant.into(),
            project: matches!(seq % 3, 0).then(|| "proj_a".into()),
            actor: Actor {
                id: Some(format!("user_{}", seq % 5).into()),
                email: None,
                kind: if matches!(seq % 7, 0) {
                    ActorType::System
                } else {
                    ActorType::User
                },
                ip: Some("203.0.113.7".into()),
                user_agent: None,
            },
            action: "update".into(),
            outcome: if matches!(seq % 4, 0) {
                Outcome::Failure
            } else {
                Outcome::Success
            },
            resource: Resource {
                kind: "pod".into(),
                id: Some(format!("pod_{}", seq % 11).into()),
                name: None,
            },
            changes: matches!(seq % 2, 0)
                .then(|| format_compact!(r#"[{{"field":"gpu_count","old":{},"new":4}}]"#, seq % 3)),
            details: None,
        },
    }
}

fn sample(count: u64) -> Vec<StoredEvent> {
    (1..=count)
        .map(|seq| {
            let tenant = format!("acct_{:04}", (seq * 7919) % 13);
            row(
                seq,
                &tenant,
                1_795_000_000_000_000 + ((seq * 104_729) % 10_000) as i64 * 1000,
            )
        })
        .collect()
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

fn options(block_rows: usize) -> EncodeOptions {
    EncodeOptions {
        block_rows,
        ..EncodeOptions::default()
    }
}

#[test]
fn segment_round_trip_sorts_rows() {
    let rows = sample(1000);
    let encoded = encode_segment(42, &rows, &options(64)).unwrap();
    assert_eq!(encoded.meta.rows, 1000);
    assert_eq!(encoded.meta.bytes, encoded.bytes.len() as u64);
    assert_eq!(encoded.meta.min_seq, 1);
    assert_eq!(encoded.meta.max_seq, 1000);
    let segment = Segment::from_bytes("t.seg", encoded.bytes).unwrap();
    assert_eq!(segment.meta(), &encoded.meta);
    assert_eq!(segment.blocks().len(), 1000usize.div_ceil(64));
    assert_eq!(segment.read_all().unwrap(), sorted(rows));
    segment.verify().unwrap();
}

#[test]
fn segment_empty_round_trips() {
    let encoded = encode_segment(1, &[], &EncodeOptions::default()).unwrap();
    let segment = Segment::from_bytes("t.seg", encoded.bytes).unwrap();
    assert_eq!(segment.meta().rows, 0);
    assert!(segment.blocks().is_empty());
    assert!(segment.read_all().unwrap().is_empty());
    assert!(!segment.may_contain_key("a", "b"));
    assert_eq!(segment.find_key("a", "b").unwrap(), None);
    assert_eq!(segment.tenant_rows("a"), None);
    segment.verify().unwrap();
}

#[test]
fn segment_partial_decode_gives_only_requested_columns() {
    let rows = sample(300);
    let encoded = encode_segment(3, &rows, &options(128)).unwrap();
    let segment = Segment::from_bytes("t.seg", encoded.bytes).unwrap();
    let expected = sorted(rows);
    let block = segment
        .read_block(
            1,
            Columns::of(&[Column::Tenant, Column::Seq, Column::Received]),
        )
        .unwrap();
    assert!(block.columns().contains(Column::Timestamp));
    assert!(!block.columns().contains(Column::Details));
    assert_eq!(block.first_row(), 128);
    assert_eq!(block.len(), 128);
    let tenants = segment.dictionary(Column::Tenant).unwrap().unwrap();
    for (row, event) in expected[128..256].iter().enumerate() {
        assert_eq!(block.seqs()[row], event.seq);
        assert_eq!(block.received()[row], event.received_us);
        assert_eq!(block.timestamps()[row], event.event.timestamp_us);
        assert_eq!(
            tenants.get(block.tenant_codes()[row]),
            Some(event.event.tenant.as_str())
        );
        assert_eq!(
            block.str(Column::Tenant, row),
            Some(event.event.tenant.as_str())
        );
    }
    assert!(block.tenant_codes().windows(2).all(|w| w[0] <= w[1]));
    let meta = segment.blocks()[1];
    assert_eq!(meta.first_tenant_code, block.tenant_codes()[0]);
    assert_eq!(meta.last_tenant_code, *block.tenant_codes().last().unwrap());
    let result = std::panic::catch_unwind(|| block.outcomes().len());
    assert!(
        result.is_err(),
        "an undecoded column must not read as empty"
    );
}

#[test]
fn segment_dictionaries_are_decoded_when_read_and_released_after_indexing() {
    let rows = sample(300);
    let encoded = encode_segment(3, &rows, &options(128)).unwrap();
    let mut segment = Segment::from_bytes("t.seg", encoded.bytes).unwrap();
    let loaded = |segment: &Segment| -> Vec<Column> {
        DICTIONARY_COLUMNS
            .into_iter()
            .filter(|column| segment.dictionary_loaded(*column))
            .collect()
    };
    // Open keeps only the tenants' dictionary (all were checked).
    assert_eq!(loaded(&segment), [Column::Tenant]);
    assert_eq!(
        segment.tenant_rows("acct_0003").map(|r| r.is_empty()),
        Some(false)
    );
    // A block read loads the dictionaries of its columns (and of the columns they are coded
    // against) and nothing else.
    let block = segment
        .read_block(0, Columns::of(&[Column::ResourceId]))
        .unwrap();
    assert_eq!(loaded(&segment), [Column::Tenant, Column::ResourceId]);
    // A column coded against a parent column loads the parent's dictionary too.
    segment
        .read_block(0, Columns::of(&[Column::ActorEmail]))
        .unwrap();
    assert_eq!(
        loaded(&segment),
        [
            Column::Tenant,
            Column::ActorId,
            Column::ActorEmail,
            Column::ResourceId
        ]
    );
    let expected = sorted(rows);
    assert_eq!(
        block.str(Column::ResourceId, 5),
        expected[5].event.resource.id.as_deref()
    );
    // `dictionary` decodes on demand too.
    assert_eq!(
        segment.dictionary(Column::ActorIp).unwrap().unwrap().len(),
        1
    );
    // Released: blocks already decoded keep theirs; new reads decode them again.
    segment.release_dictionaries();
    assert_eq!(loaded(&segment), [Column::Tenant]);
    assert_eq!(
        block.str(Column::ResourceId, 5),
        expected[5].event.resource.id.as_deref()
    );
    assert_eq!(segment.read_all().unwrap(), expected);
    assert_eq!(loaded(&segment).len(), DICTIONARY_COLUMNS.len());
}

#[test]
fn segment_tenant_rows_are_contiguous() {
    let rows = sample(500);
    let encoded = encode_segment(3, &rows, &options(50)).unwrap();
    let segment = Segment::from_bytes("t.seg", encoded.bytes).unwrap();
    let expected = sorted(rows);
    let tenant = "acct_0005";
    let range = segment.tenant_rows(tenant).unwrap();
    for (row, event) in expected.iter().enumerate() {
        assert_eq!(range.contains(&(row as u64)), event.event.tenant == tenant);
    }
    assert_eq!(segment.tenant_rows("acct_9999"), None);
    let blocks = segment.blocks_for_rows(range.clone());
    assert!(segment.blocks()[blocks.start]
        .row_range()
        .contains(&range.start));
    assert!(segment.blocks()[blocks.end - 1]
        .row_range()
        .contains(&(range.end - 1)));
}

#[test]
fn segment_find_key_returns_seq() {
    let rows = sample(2000);
    let encoded = encode_segment(9, &rows, &options(100)).unwrap();
    let segment = Segment::from_bytes("t.seg", encoded.bytes).unwrap();
    for event in rows.iter().step_by(37) {
        let id = event.event.id.as_deref().unwrap();
        assert!(segment.may_contain_key(&event.event.tenant, id));
        assert_eq!(
            segment.find_key(&event.event.tenant, id).unwrap(),
            Some(event.seq)
        );
    }
    // Right id, wrong tenant: not found.
    let other = rows
        .iter()
        .find(|e| e.event.tenant != rows[0].event.tenant)
        .unwrap();
    let id = rows[0].event.id.as_deref().unwrap();
    assert_eq!(segment.find_key(&other.event.tenant, id).unwrap(), None);
    assert_eq!(
        segment.find_key(&rows[0].event.tenant, "evt_nope").unwrap(),
        None
    );
    let false_positives = (0..1000)
        .filter(|i| segment.may_contain_key("acct_0001", &format!("missing_{i}")))
        .count();
    assert!(
        false_positives < 50,
        "{false_positives} false positives of 1000"
    );
}

#[test]
fn segment_rejects_bad_options() {
    let error = encode_segment(1, &sample(3), &options(0)).unwrap_err();
    assert!(matches!(error, crate::Error::Config(_)), "{error}");
}

#[test]
fn segment_columns_bitset() {
    let set = Column::Seq | Column::Tenant;
    assert!(set.contains(Column::Seq));
    assert!(!set.contains(Column::Details));
    assert_eq!(
        set.iter().collect::<Vec<_>>(),
        vec![Column::Tenant, Column::Seq]
    );
    assert!(Columns::ALL.contains_all(set));
    assert_eq!(Columns::ALL.iter().count(), COLUMN_COUNT);
}

#[test]
fn segment_received_runs_round_trip_and_decode_alone() {
    // Received per group commit of 10 events: a step function of seq, stored as runs.
    let mut rows = sample(1000);
    for row in rows.iter_mut() {
        row.received_us = 1_796_000_000_000_000 + ((row.seq - 1) / 10) as i64 * 977;
    }
    rows.reverse();
    let encoded = encode_segment(5, &rows, &options(128)).unwrap();
    let segment = Segment::from_bytes("t.seg", encoded.bytes.clone()).unwrap();
    assert!(segment.column_stored_bytes(Column::Received) <= segment.blocks().len() as u64);
    let expected = sorted(rows.clone());
    assert_eq!(segment.read_all().unwrap(), expected);
    let block = segment
        .read_block(2, Columns::from(Column::Received))
        .unwrap();
    for (row, event) in expected[256..384].iter().enumerate() {
        assert_eq!(block.received()[row], event.received_us);
    }
    segment.verify().unwrap();
    // Every damaged byte is an error, never a panic or a wrong answer.
    for position in (0..encoded.bytes.len()).step_by(7) {
        let mut bytes = encoded.bytes.clone();
        bytes[position] ^= 0x21;
        let result = Segment::from_bytes("t.seg", bytes).and_then(|s| s.verify());
        assert!(result.is_err(), "flip at {position} went unnoticed");
    }
}

#[test]
fn segment_packed_ids_and_parent_coded_columns_round_trip() {
    let mut rows = sample(700);
    for row in rows.iter_mut() {
        row.event.id =
            (row.seq % 5 != 0).then(|| format_compact!("evt_{:013x}", row.seq * 0x9e37_79b9));
        row.event.actor.email = row
            .event
            .actor
            .id
            .as_ref()
            .map(|id| format_compact!("{id}@x.com"));
        if row.seq % 13 == 0 {
            row.event.actor.email = Some("other@x.com".into());
        }
        row.event.resource.name = row.event.resource.id.clone();
    }
    let encoded = encode_segment(6, &rows, &options(100)).unwrap();
    let segment = Segment::from_bytes("t.seg", encoded.bytes).unwrap();
    assert_eq!(segment.read_all().unwrap(), sorted(rows.clone()));
    let block = segment
        .read_block(3, Column::ActorEmail | Column::ResourceName | Column::Id)
        .unwrap();
    let expected = sorted(rows);
    for (row, event) in expected[300..400].iter().enumerate() {
        assert_eq!(
            block.str(Column::ActorEmail, row),
            event.event.actor.email.as_deref()
        );
        assert_eq!(block.str(Column::Id, row), event.event.id.as_deref());
    }
    let page = segment.read_rows(3, 90..200).unwrap();
    assert_eq!(page, expected[390..400].to_vec());
    // Packed ids: about 13 hex digits of 4 bits, not 17 bytes.
    assert!(segment.column_stored_bytes(Column::Id) < 700 * 9);
}

#[test]
fn segment_read_rows_matches_read_all_for_any_range() {
    let mut rows = sample(600);
    for row in rows.iter_mut() {
        row.event.id = (row.seq % 4 != 0).then(|| format_compact!("evt_{:08x}", row.seq * 7919));
        // Request ids repeat every 7 rows: packed values repeat across skipped rows.
        row.event.details = (row.seq % 5 != 0).then(|| {
            format_compact!(
                r#"{{"request_id":"req_{:016x}","n":{},"s":"v{}"}}"#,
                (row.seq % 7) * 0x1234_5678_9abc,
                row.seq,
                row.seq % 3
            )
        });
    }
    let encoded = encode_segment(8, &rows, &options(200)).unwrap();
    let segment = Segment::from_bytes("t.seg", encoded.bytes).unwrap();
    let all = segment.read_all().unwrap();
    assert_eq!(all, sorted(rows));
    for block in 0..segment.blocks().len() {
        for (start, end) in [
            (0, 200),
            (1, 5),
            (7, 8),
            (50, 51),
            (150, 200),
            (199, 250),
            (100, 90),
        ] {
            let expected = if start < end {
                all[block * 200 + start..block * 200 + end.min(200)].to_vec()
            } else {
                Vec::new()
            };
            assert_eq!(
                segment.read_rows(block, start..end).unwrap(),
                expected,
                "block {block} rows {start}..{end}"
            );
        }
        for picked in [
            vec![],
            vec![0],
            vec![199],
            vec![3, 4, 9, 120],
            vec![50, 52, 54, 56, 58],
            (0..200).step_by(13).collect::<Vec<usize>>(),
        ] {
            let expected: Vec<StoredEvent> = picked
                .iter()
                .map(|&row| all[block * 200 + row].clone())
                .collect();
            assert_eq!(
                segment.read_rows_at(block, &picked).unwrap(),
                expected,
                "block {block} rows {picked:?}"
            );
        }
    }
}

/// Rows whose `details` are JSON documents of a few shapes with repeating keys and values and a
/// random request id, as a platform sends them.
fn json_rows(count: u64) -> Vec<StoredEvent> {
    let regions = ["eu-west", "us-east", "ap-south"];
    sample(count)
        .into_iter()
        .map(|mut row| {
            let seq = row.seq;
            let request = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            row.event.details = Some(if seq % 3 == 0 {
                format_compact!(
                    r#"{{"region":"{}","request_id":"req_{request:016x}","duration_ms":{}}}"#,
                    regions[(seq % 3) as usize],
                    seq % 997
                )
            } else {
                format_compact!(
                    r#"{{"region":"{}","spec":{{"gpu":"H100","count":{}}},"request_id":"req_{request:016x}"}}"#,
                    regions[(seq % 2) as usize],
                    seq % 8
                )
            });
            row
        })
        .collect()
}

#[test]
fn segment_text_dictionaries_round_trip_and_shrink_json_text() {
    let rows = json_rows(2000);
    let with = EncodeOptions {
        text_dictionary_rows: 256,
        ..options(128)
    };
    let without = EncodeOptions {
        text_dictionary_rows: 0,
        ..options(128)
    };
    let encoded = encode_segment(5, &rows, &with).unwrap();
    let plain = encode_segment(5, &rows, &without).unwrap();
    let mut segment = Segment::from_bytes("t.seg", encoded.bytes).unwrap();
    let plain = Segment::from_bytes("p.seg", plain.bytes).unwrap();
    assert_eq!(segment.format_version(), FORMAT_VERSION);
    assert!(segment.has_text_dictionary(Column::Details));
    assert!(segment.has_text_dictionary(Column::Changes));
    assert!(!segment.has_text_dictionary(Column::Id));
    assert!(!plain.has_text_dictionary(Column::Details));
    assert_eq!(plain.dictionary_stored_bytes(Column::Details), 0);

    let expected = sorted(rows);
    assert_eq!(segment.read_all().unwrap(), expected);
    assert_eq!(plain.read_all().unwrap(), expected);
    segment.verify().unwrap();
    // A span of rows in the middle of a block decodes against the dictionary too.
    let block = 7;
    let first = segment.blocks()[block].first_row as usize;
    assert_eq!(
        segment.read_rows(block, 10..20).unwrap(),
        expected[first + 10..first + 20]
    );

    // The dictionary (stored once) costs less than it saves on the blocks.
    let details = |segment: &Segment| {
        segment.column_stored_bytes(Column::Details)
            + segment.dictionary_stored_bytes(Column::Details)
    };
    assert!(
        details(&segment) < details(&plain),
        "details: {} bytes with a dictionary, {} without",
        details(&segment),
        details(&plain)
    );

    // The prepared dictionaries are memory the store can give back, and read again after.
    assert!(segment.dictionary_bytes() > 0);
    segment.release_dictionaries();
    assert_eq!(segment.dictionary_bytes(), 0);
    let again = segment.without_dictionaries().unwrap();
    assert_eq!(again.read_rows(0, 0..5).unwrap(), expected[..5]);
    assert_eq!(segment.read_all().unwrap(), expected);
}

#[test]
fn segment_small_segments_have_no_text_dictionaries() {
    // Under `text_dictionary_min_blocks` blocks a dictionary would cost more than it saves.
    let rows = json_rows(300);
    let encoded = encode_segment(6, &rows, &options(128)).unwrap();
    let segment = Segment::from_bytes("t.seg", encoded.bytes).unwrap();
    assert!(!segment.has_text_dictionary(Column::Details));
    assert_eq!(segment.read_all().unwrap(), sorted(rows));
}

#[test]
fn segment_columns_most_rows_lack_get_no_text_dictionary() {
    // `details` absent everywhere, `changes` on one row in 50: neither is worth a dictionary
    // that every reader of the segment would have to prepare.
    let rows: Vec<StoredEvent> = sample(2000)
        .into_iter()
        .map(|mut row| {
            if row.seq % 50 != 0 {
                row.event.changes = None;
            }
            row
        })
        .collect();
    let encoded = encode_segment(7, &rows, &options(128)).unwrap();
    let segment = Segment::from_bytes("t.seg", encoded.bytes).unwrap();
    assert!(!segment.has_text_dictionary(Column::Details));
    assert!(!segment.has_text_dictionary(Column::Changes));
    assert_eq!(segment.read_all().unwrap(), sorted(rows));
    // Half the rows with `changes` is enough.
    let rows = sample(2000);
    let encoded = encode_segment(7, &rows, &options(128)).unwrap();
    let segment = Segment::from_bytes("t.seg", encoded.bytes).unwrap();
    assert!(segment.has_text_dictionary(Column::Changes));
    assert_eq!(segment.read_all().unwrap(), sorted(rows));
}
