//! A golden file pins the v1 filter index format: `fixtures/v1/small.idx` is the index of the
//! engine's golden segment (`engine/tests/fixtures/v1/segment/small.seg`), written once (run
//! with AUDITLOG_WRITE_GOLDEN=1 to rewrite it after a deliberate format change, which must also
//! bump the version and update docs/FORMAT.md). Every build must write the same bytes for that
//! segment, read back postings equal to the segment's own columns, and report a corrupt twin
//! with the file and offset.

use std::path::{Path, PathBuf};

use auditlog_engine::segment::{Column, Segment};
use auditlog_engine::Error;
use auditlog_index::codes::value_code;
use auditlog_index::filter::{self, granularity_of, FilterIndex, Granularity, FILTER_COLUMNS};
use auditlog_index::Field;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1")
}

fn golden_segment() -> Segment {
    Segment::open(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/tests/fixtures/v1/segment/small.seg"),
    )
    .unwrap()
}

/// The field whose values a filter column holds (for reading them from events).
fn field_of(column: Column) -> Field {
    match column {
        Column::Project => Field::Project,
        Column::Action => Field::Action,
        Column::Outcome => Field::Outcome,
        Column::ResourceType => Field::ResourceType,
        Column::ResourceId => Field::ResourceId,
        Column::ResourceName => Field::ResourceName,
        Column::ActorId => Field::ActorId,
        Column::ActorEmail => Field::ActorEmail,
        Column::ActorIp => Field::ActorIp,
        Column::ActorType => Field::ActorType,
        other => panic!("{} is not a filter column", other.name()),
    }
}

#[test]
fn filter_index_v1_golden_file() {
    let segment = golden_segment();
    let bytes = filter::build(&segment).unwrap();
    let path = fixtures().join("small.idx");
    if std::env::var_os("AUDITLOG_WRITE_GOLDEN").is_some() {
        std::fs::write(&path, &bytes).unwrap();
        let mut corrupt = bytes.clone();
        corrupt[40] ^= 0x10;
        std::fs::write(fixtures().join("small-corrupt.idx"), corrupt).unwrap();
    }
    let golden = std::fs::read(&path).unwrap();
    assert_eq!(
        bytes, golden,
        "the filter index of the golden segment changed"
    );

    let meta = segment.meta();
    let index = FilterIndex::open(&path, meta.segment_id, meta.rows).unwrap();
    let events = segment.read_all().unwrap();
    for column in FILTER_COLUMNS {
        assert!(index.has(column));
        let field = field_of(column);
        for (row, event) in events.iter().enumerate() {
            for value in field.values_of(event).into_iter().flatten() {
                let code = value_code(&segment, column, value).unwrap().unwrap();
                let posting = index.posting(column, code).unwrap().unwrap();
                let wanted = match posting.granularity {
                    Granularity::Rows => row as u32,
                    Granularity::Blocks => segment
                        .blocks()
                        .iter()
                        .position(|b| b.row_range().contains(&(row as u64)))
                        .unwrap() as u32,
                };
                assert_eq!(posting.granularity, granularity_of(column));
                assert!(
                    posting.values.contains(wanted),
                    "{} = {value:?}: row {row} missing",
                    column.name()
                );
            }
        }
        if granularity_of(column) == Granularity::Blocks {
            continue;
        }
        let total: u64 = (1..=1000)
            .map(|code| index.posting(column, code).unwrap().unwrap().values.len())
            .sum();
        let expected = events
            .iter()
            .filter(|e| field.values_of(e).iter().any(Option::is_some))
            .count() as u64;
        assert_eq!(
            total,
            expected,
            "{}: every row is in one posting",
            column.name()
        );
    }
}

#[test]
fn filter_index_v1_corrupt_twin_is_reported_with_its_offset() {
    let segment = golden_segment();
    let meta = segment.meta();
    let path = fixtures().join("small-corrupt.idx");
    match FilterIndex::open(&path, meta.segment_id, meta.rows) {
        Err(Error::ChecksumMismatch {
            path: reported,
            offset,
            ..
        }) => {
            assert_eq!(reported, path);
            assert_eq!(offset, std::fs::metadata(&path).unwrap().len() - 8);
        }
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    // Another segment's id: refused too (the checksum is seeded with the id).
    let good = fixtures().join("small.idx");
    assert!(FilterIndex::open(&good, meta.segment_id + 1, meta.rows).is_err());
    assert!(FilterIndex::open(&good, meta.segment_id, meta.rows + 1).is_err());
}
