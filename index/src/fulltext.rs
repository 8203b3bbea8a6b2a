//! The full-text index of a sealed segment (tantivy): which blocks of which tenant may hold a
//! word.
//!
//! One tantivy index per segment, in the directory `{segment_id:016x}.text/` beside the segment
//! (removed with it). It holds **one document per (block, tenant)** for tenants with at least
//! 64 rows in the block, and one shared document per block for the other tenants' rows: the
//! distinct terms of those rows, over every [`TEXT_FIELDS`](crate::text::TEXT_FIELDS) value. It
//! answers "which (block, tenant) pairs may match these terms"; the rows of those blocks are then
//! checked exactly by [`crate::text::TextMatcher`] (phrases, positions, field boundaries), as log
//! stores with per-block filters do. This costs a few bytes per event where a document per event
//! with positions costs tens.
//!
//! # Schema (version 2)
//!
//! - `t`: text, indexed without frequencies or positions ([`IndexRecordOption::Basic`]),
//!   whitespace-tokenized: the terms of the dictionary-coded text fields (resource name and id,
//!   actor email and id, action, project, user agent), pre-tokenized by [`crate::tokenize`]
//!   (lowercased atoms). An atom that looks random ([`is_random_atom`]: 12 characters or more,
//!   with a digit, such as a request id) is indexed as `~` plus its first 4 characters, so a
//!   dictionary of unique ids does not grow with every event, yet a search for the whole id
//!   still prunes blocks.
//! - `j`: the same for the terms of `details` and `changes`. Kept apart so that a query learns
//!   which documents may hold its words in the JSON columns: the other rows are settled by
//!   their dictionary values alone, without decoding or scanning JSON.
//! - `k`: u64, fast field: `block << 32 | tenant`, the tenant's code in the segment's tenant
//!   dictionary, or `2^32 - 1` for a block's shared document.
//!
//! The directory also holds `VERSION` (the text `3`); an index without it, or with another
//! version, is rebuilt when the store opens.
//!
//! Example: a block 3 holding, for tenant code 2, one event with resource name
//! `llama-finetune-3` and details `{"request_id":"req_8f3a9c2e1b0d4f67"}` gives the document
//! `t = "llama finetune 3"`, `j = "request id req ~8f3a"`, `k = 3 << 32 | 2`.
//!
//! Version 1 had all terms in `t` and an indexed `tn` field (the tenant, now read from `k`);
//! version 2 indexed the JSON text with its string escapes as written.

use std::ops::{Bound, Range};
use std::path::{Path, PathBuf};

use auditlog_engine::segment::{Column, Columns, Segment};
use auditlog_engine::{Error, Result};
use roaring::RoaringBitmap;
use tantivy::query::{
    BooleanQuery, EnableScoring, Occur, Query as TantivyQuery, RangeQuery, TermQuery,
};
use tantivy::schema::{
    Field as SchemaField, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST,
};
use tantivy::tokenizer::WhitespaceTokenizer;
use tantivy::{
    DocId, DocSet, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument, Term,
};

use crate::codes::max_code;
use crate::paced_directory::PacedDirectory;
use crate::query::{TextKind, TextTerm};
use crate::text::TEXT_DICTIONARY_COLUMNS;
use crate::tokenize::{atoms, is_normalized, json_unescaped, normalize};

/// The schema version this code writes and reads.
pub const VERSION: u32 = 3;
const VERSION_FILE: &str = "VERSION";
const TOKENIZER: &str = "auditlog_ws";
/// Characters of a random atom that are indexed.
const RANDOM_PREFIX_CHARS: usize = 4;
/// A tenant with at least this many rows in a block gets a document of its own there; the
/// smaller runs of a block share one document (tenant [`SHARED_TENANT`]).
const OWN_DOCUMENT_ROWS: usize = 64;
/// The tenant code of a block's shared document.
const SHARED_TENANT: u32 = u32::MAX;
/// Memory the tantivy writer may use while building one segment's index.
const WRITER_BYTES: usize = 64 << 20;
/// Threads preparing documents, and tantivy indexing threads.
const BUILD_THREADS: usize = 2;

/// The directory name of a segment's text index.
pub fn dir_name(segment_id: u64) -> String {
    format!("{segment_id:016x}.text")
}

/// True for an atom indexed only by its first characters: 12 characters or more with a digit
/// (request ids, session ids, hashes), whose dictionary entries would be unique per event.
pub fn is_random_atom(atom: &str) -> bool {
    atom.len() >= 12 && atom.bytes().any(|b| b.is_ascii_digit()) && atom.chars().count() >= 12
}

/// The index term of an atom (see the module docs).
fn index_term(atom: &str) -> std::borrow::Cow<'_, str> {
    if is_random_atom(atom) {
        let mut term = String::with_capacity(1 + RANDOM_PREFIX_CHARS * 4);
        term.push('~');
        term.extend(atom.chars().take(RANDOM_PREFIX_CHARS));
        term.into()
    } else {
        atom.into()
    }
}

struct Fields {
    /// Terms of the dictionary-coded text fields.
    text: SchemaField,
    /// Terms of `details` and `changes`.
    json: SchemaField,
    key: SchemaField,
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let indexing = TextFieldIndexing::default()
        .set_tokenizer(TOKENIZER)
        .set_index_option(IndexRecordOption::Basic)
        .set_fieldnorms(false);
    let options = TextOptions::default().set_indexing_options(indexing);
    let text = builder.add_text_field("t", options.clone());
    let json = builder.add_text_field("j", options);
    let key = builder.add_u64_field("k", FAST);
    (builder.build(), Fields { text, json, key })
}

fn register(index: &Index) {
    index
        .tokenizers()
        .register(TOKENIZER, WhitespaceTokenizer::default());
}

fn tantivy_error(path: &Path, error: impl std::fmt::Display) -> Error {
    Error::io(
        path,
        std::io::Error::other(format!("full-text index: {error}")),
    )
}

/// Builds the text index of `segment` into `dir` durably (in `dir`.tmp, fsynced, then renamed
/// over any previous `dir`).
pub fn build(segment: &Segment, dir: &Path) -> Result<()> {
    let tmp = dir.with_extension("text.tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let (schema, fields) = schema();
    // Its files are flushed every MiB as tantivy writes them (see PacedDirectory).
    let directory = PacedDirectory::open(&tmp).map_err(|e| tantivy_error(&tmp, e))?;
    let index = Index::create(directory, schema, tantivy::IndexSettings::default())
        .map_err(|e| tantivy_error(&tmp, e))?;
    register(&index);
    let writer = index
        .writer_with_num_threads::<TantivyDocument>(BUILD_THREADS, WRITER_BYTES)
        .map_err(|e| tantivy_error(&tmp, e))?;
    // The blocks are split between threads, each preparing documents for the shared writer
    // (which indexes them on its own threads).
    let blocks = segment.blocks().len();
    let per_thread = blocks.div_ceil(BUILD_THREADS).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..BUILD_THREADS)
            .map(|t| t * per_thread..((t + 1) * per_thread).min(blocks))
            .filter(|range| !range.is_empty())
            .map(|range| {
                let writer = &writer;
                let fields = &fields;
                let tmp = &tmp;
                scope.spawn(move || add_blocks(segment, range, writer, fields, tmp))
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("a text index builder thread panicked"))
    })?;
    let mut writer = writer;
    writer.commit().map_err(|e| tantivy_error(&tmp, e))?;
    writer
        .wait_merging_threads()
        .map_err(|e| tantivy_error(&tmp, e))?;
    std::fs::write(tmp.join(VERSION_FILE), VERSION.to_string()).map_err(|e| Error::io(&tmp, e))?;
    sync_tree(&tmp)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))
}

/// Prepares and adds the documents of `blocks` (see the module docs).
fn add_blocks(
    segment: &Segment,
    blocks: std::ops::Range<usize>,
    writer: &IndexWriter<TantivyDocument>,
    fields: &Fields,
    tmp: &Path,
) -> Result<()> {
    let columns = TEXT_DICTIONARY_COLUMNS
        .iter()
        .fold(Columns::from(Column::Tenant), |set, c| set.with(*c))
        .with(Column::Details)
        .with(Column::Changes);
    // Index terms of each dictionary value, computed once per segment and thread.
    let mut value_terms: FastMap<(Column, u32), Vec<String>> = FastMap::default();
    // (dictionary-field terms, JSON terms) of the document being built, and of the block's
    // shared document.
    let mut own: (FastSet<String>, FastSet<String>) = Default::default();
    let mut shared: (FastSet<String>, FastSet<String>) = Default::default();
    let mut text = String::new();
    // Per dictionary column and code, the number of the last document that took the value's
    // terms: a value repeated over a tenant's rows is merged into the document once, not
    // looked up term by term on every row.
    let mut merged_into: Vec<Vec<u32>> = TEXT_DICTIONARY_COLUMNS
        .iter()
        .map(|column| Ok(vec![0; max_code(segment, *column)? as usize + 1]))
        .collect::<Result<_>>()?;
    let mut documents = 0u32;
    for block_index in blocks {
        let block = segment.read_block(block_index, columns)?;
        let tenants = block.tenant_codes();
        let mut start = 0;
        shared.0.clear();
        shared.1.clear();
        documents += 1;
        let shared_document = documents;
        let mut emit =
            |(terms, json): &(FastSet<String>, FastSet<String>), tenant: u32| -> Result<()> {
                let mut document = TantivyDocument::new();
                for (field, terms) in [(fields.text, terms), (fields.json, json)] {
                    text.clear();
                    for term in terms {
                        text.push_str(term);
                        text.push(' ');
                    }
                    document.add_text(field, &text);
                }
                document.add_u64(fields.key, ((block_index as u64) << 32) | u64::from(tenant));
                writer
                    .add_document(document)
                    .map_err(|e| tantivy_error(tmp, e))?;
                Ok(())
            };
        while start < tenants.len() {
            let tenant = tenants[start];
            let end = start + tenants[start..].partition_point(|t| *t == tenant);
            let has_own = end - start >= OWN_DOCUMENT_ROWS;
            let (terms, json, document) = if has_own {
                own.0.clear();
                own.1.clear();
                documents += 1;
                (&mut own.0, &mut own.1, documents)
            } else {
                (&mut shared.0, &mut shared.1, shared_document)
            };
            for row in start..end {
                for (slot, column) in TEXT_DICTIONARY_COLUMNS.into_iter().enumerate() {
                    let code = block.codes(column)[row];
                    if code == 0 {
                        continue;
                    }
                    // (An own document in between may have taken the stamp: the shared one
                    // then merges the value again, which the set makes harmless.)
                    if let Some(stamp) = merged_into[slot].get_mut(code as usize) {
                        if *stamp == document {
                            continue;
                        }
                        *stamp = document;
                    }
                    let value_terms = value_terms.entry((column, code)).or_insert_with(|| {
                        let value = crate::exec::block_value(&block, column, code);
                        let normalized = normalize(value);
                        let mut terms: Vec<String> = atoms(&normalized)
                            .map(|a| index_term(a).into_owned())
                            .collect();
                        terms.sort_unstable();
                        terms.dedup();
                        terms
                    });
                    for term in value_terms.iter() {
                        if !terms.contains(term) {
                            terms.insert(term.clone());
                        }
                    }
                }
                for column in [Column::Details, Column::Changes] {
                    if let Some(value) = block.str(column, row) {
                        let value = json_unescaped(value);
                        let value = value.as_ref();
                        let normalized = match is_normalized(value) {
                            true => std::borrow::Cow::Borrowed(value),
                            false => std::borrow::Cow::Owned(normalize(value)),
                        };
                        for atom in atoms(&normalized) {
                            let term = index_term(atom);
                            if !json.contains(term.as_ref()) {
                                json.insert(term.into_owned());
                            }
                        }
                    }
                }
            }
            if has_own {
                emit(&own, tenant)?;
            }
            start = end;
        }
        if !shared.0.is_empty() || !shared.1.is_empty() {
            emit(&shared, SHARED_TENANT)?;
        }
    }
    Ok(())
}

/// Adds the rows a document with `key` stands for, among the tenants with these codes: its
/// tenant's rows in its block, or for the block's shared document, the rows of each tenant in
/// scope that has no document of its own there.
fn add_document_rows(segment: &Segment, key: u64, tenant_codes: &[u32], rows: &mut RoaringBitmap) {
    let (block, tenant) = ((key >> 32) as usize, key as u32);
    let Some(meta) = segment.blocks().get(block) else {
        return;
    };
    let block_rows = meta.row_range();
    let codes: &[u32] = if tenant == SHARED_TENANT {
        // Every tenant in scope with rows in the block (codes ascend with rows).
        let first = tenant_codes.partition_point(|&code| {
            segment
                .tenant_code_rows(code)
                .is_none_or(|r| r.end <= block_rows.start)
        });
        let end = first
            + tenant_codes[first..].partition_point(|&code| {
                segment
                    .tenant_code_rows(code)
                    .is_none_or(|r| r.start < block_rows.end)
            });
        &tenant_codes[first..end]
    } else if tenant_codes.binary_search(&tenant).is_ok() {
        std::slice::from_ref(&tenant)
    } else {
        return;
    };
    for &code in codes {
        let Some(tenant_rows) = segment.tenant_code_rows(code) else {
            continue;
        };
        let start = block_rows.start.max(tenant_rows.start);
        let end = block_rows.end.min(tenant_rows.end);
        // The shared document holds only the tenants without a document of their own in the
        // block.
        let own = end.saturating_sub(start) >= OWN_DOCUMENT_ROWS as u64;
        if start < end && (tenant != SHARED_TENANT || !own) {
            rows.insert_range(start as u32..end as u32);
        }
    }
}

// The Fx hash (as in rustc): fast for short keys; the sets hold no untrusted keys whose
// collisions could matter (terms of one segment, deduplicated per document).
type FastMap<K, V> = rustc_hash::FxHashMap<K, V>;
type FastSet<T> = rustc_hash::FxHashSet<T>;

/// fsyncs every file of a directory, then the directory.
fn sync_tree(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.is_file() {
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(&path, e))?;
        }
    }
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// An open text index.
pub struct TextIndex {
    path: PathBuf,
    // Kept so the searcher's segments stay open.
    _reader: IndexReader,
    searcher: Searcher,
    /// The `k` fast field (block and tenant of a document) of each tantivy segment.
    keys: Vec<tantivy::columnar::Column<u64>>,
    /// Per tantivy segment: whether its documents' keys ascend with their ids. They do, as
    /// documents are added block by block; checked at open since queries seek by it.
    sorted: Vec<bool>,
    fields: Fields,
}

impl std::fmt::Debug for TextIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextIndex")
            .field("path", &self.path)
            .finish()
    }
}

impl TextIndex {
    /// Opens the text index in `dir`.
    pub fn open(dir: &Path) -> Result<TextIndex> {
        let version = std::fs::read_to_string(dir.join(VERSION_FILE))
            .map_err(|e| Error::io(dir.join(VERSION_FILE), e))?;
        let found: u32 = version.trim().parse().unwrap_or(0);
        if found != VERSION {
            return Err(Error::UnsupportedVersion {
                path: dir.to_path_buf(),
                kind: "full-text index",
                found,
                supported: VERSION,
            });
        }
        let index = Index::open_in_dir(dir).map_err(|e| tantivy_error(dir, e))?;
        register(&index);
        let (_, fields) = schema();
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| tantivy_error(dir, e))?;
        let searcher = reader.searcher();
        let keys = searcher
            .segment_readers()
            .iter()
            .map(|segment| segment.fast_fields().u64("k"))
            .collect::<tantivy::Result<Vec<_>>>()
            .map_err(|e| tantivy_error(dir, e))?;
        let sorted = searcher
            .segment_readers()
            .iter()
            .zip(&keys)
            .map(|(segment, column)| {
                let mut last = 0;
                (0..segment.max_doc()).all(|doc| {
                    let key = column.first(doc).unwrap_or(u64::MAX);
                    let ascending = key >= last;
                    last = key;
                    ascending
                })
            })
            .collect();
        Ok(TextIndex {
            path: dir.to_path_buf(),
            _reader: reader,
            searcher,
            keys,
            sorted,
            fields,
        })
    }

    /// Bytes of the index's files.
    pub fn bytes(&self) -> u64 {
        dir_bytes(&self.path)
    }

    /// What the index says of `terms` in `segment`, among the rows of the tenants with these
    /// codes: the rows that may match, and the rows whose JSON columns may hold a word of them.
    pub fn candidates(
        &self,
        segment: &Segment,
        terms: &[TextTerm],
        tenant_codes: &[u32],
    ) -> Result<TextCandidates> {
        // A row may match when, for every atom of every non-negated term, its document holds
        // the atom in one of the two fields.
        let mut clauses: Vec<(Occur, Box<dyn TantivyQuery>)> = Vec::new();
        // Its JSON needs a look when its document's `j` holds an atom of any term.
        let mut json_clauses: Vec<(Occur, Box<dyn TantivyQuery>)> = Vec::new();
        for term in terms {
            let normalized = normalize(&term.text);
            let term_atoms: Vec<&str> = atoms(&normalized).collect();
            for (i, atom) in term_atoms.iter().enumerate() {
                let prefix = i + 1 == term_atoms.len() && term.kind == TextKind::Prefix;
                let query_in = |field: SchemaField| -> Box<dyn TantivyQuery> {
                    if prefix {
                        self.prefix_query(field, atom)
                    } else {
                        Box::new(TermQuery::new(
                            Term::from_field_text(field, &index_term(atom)),
                            IndexRecordOption::Basic,
                        ))
                    }
                };
                json_clauses.push((Occur::Should, query_in(self.fields.json)));
                if !term.negated {
                    clauses.push((
                        Occur::Must,
                        Box::new(BooleanQuery::new(vec![
                            (Occur::Should, query_in(self.fields.text)),
                            (Occur::Should, query_in(self.fields.json)),
                        ])),
                    ));
                }
            }
        }
        let rows = if clauses.is_empty() {
            None
        } else {
            Some(self.rows_of(segment, BooleanQuery::new(clauses), tenant_codes)?)
        };
        let json = if json_clauses.is_empty() {
            RoaringBitmap::new()
        } else {
            self.rows_of(segment, BooleanQuery::new(json_clauses), tenant_codes)?
        };
        Ok(TextCandidates { rows, json })
    }

    /// The rows of the documents `query` finds, among the rows of the tenants with these codes.
    /// No tenant clause in the query: the documents of a term are few per block, and their
    /// keys name the tenant. Documents are in block order, so the query's postings are walked
    /// only over the documents of the blocks that hold the tenants' rows (a seek to each run
    /// of them): a small tenant's word query does not visit the documents of every tenant
    /// that used the word.
    fn rows_of(
        &self,
        segment: &Segment,
        query: BooleanQuery,
        tenant_codes: &[u32],
    ) -> Result<RoaringBitmap> {
        let weight = query
            .weight(EnableScoring::disabled_from_searcher(&self.searcher))
            .map_err(|e| tantivy_error(&self.path, e))?;
        // Key ranges of the blocks holding the tenants' rows, ascending, merged.
        let mut key_ranges: Vec<Range<u64>> = tenant_codes
            .iter()
            .filter_map(|&code| segment.tenant_code_rows(code))
            .map(|rows| {
                let blocks = segment.blocks_for_rows(rows);
                (blocks.start as u64) << 32..(blocks.end as u64) << 32
            })
            .collect();
        key_ranges.sort_unstable_by_key(|range| range.start);
        key_ranges.dedup_by(|next, kept| {
            let joins = next.start <= kept.end;
            if joins {
                kept.end = kept.end.max(next.end);
            }
            joins
        });
        let mut rows = RoaringBitmap::new();
        for (ord, reader) in self.searcher.segment_readers().iter().enumerate() {
            let Some(column) = self.keys.get(ord) else {
                continue;
            };
            let max_doc = reader.max_doc();
            // The first document whose key is at least `key`.
            let first_doc = |key: u64| {
                let (mut low, mut high) = (0, max_doc);
                while low < high {
                    let middle = low + (high - low) / 2;
                    if column.first(middle).unwrap_or(u64::MAX) < key {
                        low = middle + 1;
                    } else {
                        high = middle;
                    }
                }
                low
            };
            let doc_ranges: Vec<Range<DocId>> = if self.sorted.get(ord) == Some(&true) {
                key_ranges
                    .iter()
                    .map(|keys| first_doc(keys.start)..first_doc(keys.end))
                    .collect()
            } else {
                std::iter::once(0..max_doc).collect()
            };
            let mut scorer = weight
                .scorer(reader, 1.0)
                .map_err(|e| tantivy_error(&self.path, e))?;
            for docs in doc_ranges {
                let mut doc = scorer.doc();
                if doc < docs.start {
                    doc = scorer.seek(docs.start);
                }
                while doc < docs.end {
                    if let Some(key) = column.first(doc) {
                        add_document_rows(segment, key, tenant_codes, &mut rows);
                    }
                    doc = scorer.advance();
                }
            }
        }
        Ok(rows)
    }

    /// Documents whose `field` has a term starting with `prefix`, or a random atom that may:
    /// ranges of the term dictionary (no automaton to build per query and segment).
    fn prefix_query(&self, field: SchemaField, prefix: &str) -> Box<dyn TantivyQuery> {
        let range = |prefix: &str| -> Box<dyn TantivyQuery> {
            let lower = Term::from_field_text(field, prefix);
            // Every term that starts with `prefix` sorts below `prefix` + U+10FFFF.
            let upper = Term::from_field_text(field, &format!("{prefix}\u{10FFFF}"));
            Box::new(RangeQuery::new(
                Bound::Included(lower),
                Bound::Included(upper),
            ))
        };
        let random: Box<dyn TantivyQuery> = if prefix.chars().count() >= RANDOM_PREFIX_CHARS {
            let mut term = String::from("~");
            term.extend(prefix.chars().take(RANDOM_PREFIX_CHARS));
            Box::new(TermQuery::new(
                Term::from_field_text(field, &term),
                IndexRecordOption::Basic,
            ))
        } else {
            range(&format!("~{prefix}"))
        };
        Box::new(BooleanQuery::new(vec![
            (Occur::Should, range(prefix)),
            (Occur::Should, random),
        ]))
    }
}

/// What a segment's text index says of a query's text ([`TextIndex::candidates`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextCandidates {
    /// The rows that may match every non-negated term; `None` when no term narrows anything
    /// (only negated terms).
    pub rows: Option<RoaringBitmap>,
    /// The rows whose `details` or `changes` may hold a word of any term, negated ones too.
    /// The JSON columns of the other rows cannot change whether they match: their dictionary
    /// values decide.
    pub json: RoaringBitmap,
}

/// Bytes of the files under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditlog_engine::event::{Actor, Event, Resource, StoredEvent};
    use auditlog_engine::segment::{encode_segment, EncodeOptions};

    fn stored(seq: u64, tenant: &str, name: &str) -> StoredEvent {
        StoredEvent {
            seq,
            tenant_seq: seq,
            received_us: 1,
            event: Event {
                timestamp_us: seq as i64,
                tenant: tenant.into(),
                actor: Actor {
                    id: Some("user_1".into()),
                    ..Actor::default()
                },
                action: "create".into(),
                resource: Resource {
                    kind: "pod".into(),
                    name: Some(name.into()),
                    ..Resource::default()
                },
                ..Event::default()
            },
        }
    }

    /// A segment of `events` and its text index, in a temporary directory.
    fn indexed(segment_id: u64, events: &[StoredEvent]) -> (tempfile::TempDir, Segment, TextIndex) {
        let encoded = encode_segment(segment_id, events, &EncodeOptions::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let segment = Segment::from_bytes(dir.path().join("s.seg"), encoded.bytes).unwrap();
        let text_dir = dir.path().join(dir_name(segment_id));
        build(&segment, &text_dir).unwrap();
        let index = TextIndex::open(&text_dir).unwrap();
        (dir, segment, index)
    }

    fn candidates(
        segment: &Segment,
        index: &TextIndex,
        text: &[TextTerm],
        tenants: &[&str],
    ) -> TextCandidates {
        let dictionary = segment.dictionary(Column::Tenant).unwrap().unwrap();
        let mut codes: Vec<u32> = tenants
            .iter()
            .filter_map(|t| dictionary.code_of(t))
            .collect();
        codes.sort_unstable();
        index.candidates(segment, text, &codes).unwrap()
    }

    fn rows(segment: &Segment, index: &TextIndex, text: TextTerm, tenants: &[&str]) -> Vec<u32> {
        candidates(segment, index, &[text], tenants)
            .rows
            .unwrap()
            .iter()
            .collect()
    }

    #[test]
    fn json_rows_are_those_whose_details_or_changes_may_hold_a_word() {
        // "a" (row 0) has `gpu` in its details; "big" (rows 1..=100) only in its name; "c"
        // (row 101, shared document with "a") nowhere.
        let mut first = stored(1, "a", "llama-finetune-3");
        first.event.details = Some(r#"{"gpu":"H100","note":"for llama"}"#.into());
        let mut events = vec![first];
        events.extend((0..100).map(|i| stored(2 + i, "big", "gpu-pool")));
        events.push(stored(200, "c", "llama-train"));
        let (_dir, segment, index) = indexed(9, &events);
        let json = |terms: &[TextTerm], tenants: &[&str]| -> Vec<u32> {
            candidates(&segment, &index, terms, tenants)
                .json
                .iter()
                .collect()
        };
        let all = ["a", "big", "c"];
        // The shared document of "a" and "c" holds `gpu` in `j`: both may need a look.
        assert_eq!(json(&[TextTerm::word("gpu")], &all), [0, 101]);
        assert_eq!(
            rows(&segment, &index, TextTerm::word("gpu"), &all).len(),
            102
        );
        // Names only: no JSON to look at.
        assert!(json(&[TextTerm::word("pool")], &all).is_empty());
        assert!(json(&[TextTerm::word("train")], &all).is_empty());
        // Prefixes and negated terms count too.
        assert_eq!(json(&[TextTerm::prefix("h1")], &all), [0, 101]);
        let mut negated = TextTerm::word("note");
        negated.negated = true;
        assert_eq!(
            json(&[TextTerm::word("pool"), negated.clone()], &all),
            [0, 101]
        );
        assert!(candidates(&segment, &index, &[negated], &all)
            .rows
            .is_none());
    }

    #[test]
    fn small_and_large_tenant_runs_are_found() {
        // Tenant "big" has 100 rows in the block (own document); "a" and "c" 1 row each
        // (the block's shared document).
        let mut events = vec![stored(1, "a", "llama-finetune-3")];
        events.extend((0..100).map(|i| stored(2 + i, "big", "mistral-7b")));
        events.push(stored(200, "c", "llama-train"));
        let (_dir, segment, index) = indexed(7, &events);
        // Rows are sorted by tenant: a = row 0, big = rows 1..=100, c = row 101.
        assert_eq!(rows(&segment, &index, TextTerm::word("llama"), &["a"]), [0]);
        assert_eq!(
            rows(&segment, &index, TextTerm::word("llama"), &["a", "c"]),
            [0, 101]
        );
        assert_eq!(
            rows(&segment, &index, TextTerm::prefix("llam"), &["c"]),
            [101]
        );
        // The shared document stands for every tenant in scope with rows in the block: a
        // superset, which the row check narrows.
        let both = rows(&segment, &index, TextTerm::prefix("llam"), &["c", "big"]);
        assert!(both.contains(&101) && !both.contains(&0));
        assert_eq!(
            rows(&segment, &index, TextTerm::word("mistral"), &["big"]).len(),
            100
        );
        assert!(rows(&segment, &index, TextTerm::word("mistral"), &["a"]).is_empty());
        assert_eq!(
            rows(&segment, &index, TextTerm::prefix("user_"), &["a"]),
            [0]
        );
    }

    #[test]
    fn random_atoms_are_indexed_by_their_first_characters() {
        assert!(is_random_atom("8f3a9c2e1b0d4f67"));
        assert!(!is_random_atom("finetune"));
        assert!(!is_random_atom("8f3a9c2e"));
        assert_eq!(index_term("8f3a9c2e1b0d4f67"), "~8f3a");
        assert_eq!(index_term("llama"), "llama");
    }
}
