//! Segment-level dictionaries of the low-cardinality string columns.
//!
//! Each dictionary column (tenant, project, actor id/email/ip/user agent, action, resource
//! type/id/name) stores every distinct value of the segment once, sorted bytewise, and each row
//! stores a code: 0 means absent (`None`), `n >= 1` is the n-th value. Sorting makes codes
//! comparable like the strings themselves, so the tenant codes of tenant-sorted rows ascend, and a
//! value's code is found by binary search.
//!
//! Stored layout (before zstd): one varint length per value, then the bytes of every value,
//! concatenated. The value count is in the block directory.

use std::hash::Hasher;
use std::path::Path;

use crate::error::Result;

use super::format::{put_varint, Reader};

/// The distinct values of one column of one segment, sorted bytewise; code `n` is value `n - 1`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dictionary {
    /// Every value, concatenated (values are stored once; rows hold codes).
    text: String,
    /// End offset in `text` of each value.
    ends: Vec<u32>,
}

impl Dictionary {
    /// A dictionary without values.
    pub const EMPTY: Dictionary = Dictionary {
        text: String::new(),
        ends: Vec::new(),
    };

    /// Number of values (not counting the absent code 0).
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The value of `code`: `None` for 0 (absent) and for a code past the end.
    #[inline]
    pub fn get(&self, code: u32) -> Option<&str> {
        let index = (code as usize).checked_sub(1)?;
        let end = *self.ends.get(index)? as usize;
        let start = match index.checked_sub(1) {
            Some(previous) => *self.ends.get(previous)? as usize,
            None => 0,
        };
        self.text.get(start..end)
    }

    /// The code of `value`, if the segment holds it in this column.
    pub fn code_of(&self, value: &str) -> Option<u32> {
        let mut low = 0usize;
        let mut high = self.ends.len();
        while low < high {
            let middle = low + (high - low) / 2;
            let code = middle as u32 + 1;
            match self.get(code)?.cmp(value) {
                std::cmp::Ordering::Less => low = middle + 1,
                std::cmp::Ordering::Greater => high = middle,
                std::cmp::Ordering::Equal => return Some(code),
            }
        }
        None
    }

    /// `(code, value)` for every value, in code order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &str)> + '_ {
        (1..=self.ends.len() as u32).filter_map(|code| self.get(code).map(|value| (code, value)))
    }

    /// Total bytes of the values.
    pub fn text_bytes(&self) -> usize {
        self.text.len()
    }

    /// Serializes `sorted_values` (strictly ascending) in the stored layout.
    pub(crate) fn encode<'a>(
        sorted_values: impl Iterator<Item = &'a str> + Clone,
        out: &mut Vec<u8>,
    ) {
        for value in sorted_values.clone() {
            put_varint(out, value.len() as u64);
        }
        for value in sorted_values {
            out.extend_from_slice(value.as_bytes());
        }
    }

    /// Parses the stored layout of a dictionary of `count` values, checking that the values are
    /// valid UTF-8 and strictly ascending (the binary search relies on it).
    pub(crate) fn decode(
        raw: &[u8],
        count: u32,
        path: &Path,
        offset: u64,
        what: &str,
    ) -> Result<Dictionary> {
        let mut reader = Reader::new(raw, path, offset, what);
        if u64::from(count) > raw.len() as u64 {
            return Err(reader.corrupt(format!("{count} values cannot fit in {} bytes", raw.len())));
        }
        let mut ends = Vec::with_capacity(count as usize);
        let mut total = 0u64;
        for _ in 0..count {
            total = total.saturating_add(reader.varint()?);
            if total > u64::from(u32::MAX) {
                return Err(reader.corrupt("value lengths overflow"));
            }
            ends.push(total as u32);
        }
        if reader.remaining() as u64 != total {
            return Err(reader.corrupt(format!(
                "value lengths add up to {total} bytes, {} are stored",
                reader.remaining()
            )));
        }
        let bytes = reader.take(total as usize)?;
        let text = std::str::from_utf8(bytes)
            .map_err(|_| reader.corrupt("a value is not valid utf-8"))?
            .to_owned();
        let dictionary = Dictionary { text, ends };
        let mut previous: Option<&str> = None;
        for code in 1..=count {
            let value = dictionary
                .get(code)
                .ok_or_else(|| reader.corrupt(format!("value {code} splits a utf-8 character")))?;
            if previous.is_some_and(|p| p >= value) {
                return Err(reader.corrupt(format!("value {code} is not in ascending order")));
            }
            previous = Some(value);
        }
        Ok(dictionary)
    }
}

/// Builds the dictionary of one column while the encoder walks the rows in input order.
///
/// The distinct values are copied into one arena and found through an open-addressing table of
/// full hashes: a lookup compares against the arena (small, cache-resident) instead of the first
/// row that held the value (anywhere in a large heap).
pub(crate) struct DictionaryBuilder {
    /// Every distinct value, concatenated in first-seen order.
    arena: Vec<u8>,
    /// Per first-seen id: end of its value in `arena`, and its hash.
    ends: Vec<usize>,
    hashes: Vec<u64>,
    /// Open addressing, linear probing: `hash >> 32 << 32 | (first-seen id + 1)`, 0 = empty
    /// slot. The upper hash bits rule out most other values without a look at `hashes`.
    slots: Vec<u64>,
    /// `64 - log2(slots.len())`.
    shift: u32,
}

const TAG_MASK: u64 = 0xffff_ffff_0000_0000;

impl Default for DictionaryBuilder {
    fn default() -> Self {
        const INITIAL_SLOTS: usize = 64;
        DictionaryBuilder {
            arena: Vec::new(),
            ends: Vec::new(),
            hashes: Vec::new(),
            slots: vec![0; INITIAL_SLOTS],
            shift: 64 - INITIAL_SLOTS.trailing_zeros(),
        }
    }
}

impl DictionaryBuilder {
    #[inline]
    fn slot_of(&self, hash: u64) -> usize {
        (hash.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    #[inline]
    fn value(&self, id: usize) -> &[u8] {
        let start = match id {
            0 => 0,
            _ => self.ends[id - 1],
        };
        &self.arena[start..self.ends[id]]
    }

    /// The value's first-seen id + 1, or 0 when absent.
    #[inline]
    pub fn push(&mut self, value: Option<&str>) -> u32 {
        let Some(value) = value else { return 0 };
        let bytes = value.as_bytes();
        let mut hasher = FxHasher::default();
        hasher.write(bytes);
        let hash = hasher.finish();
        let mask = self.slots.len() - 1;
        let mut slot = self.slot_of(hash);
        let tag = hash & TAG_MASK;
        loop {
            let entry = self.slots[slot];
            if entry == 0 {
                break;
            }
            let id = (entry & !TAG_MASK) as usize - 1;
            if entry & TAG_MASK == tag && self.hashes[id] == hash && self.value(id) == bytes {
                return id as u32 + 1;
            }
            slot = (slot + 1) & mask;
        }
        let id = self.ends.len() as u32;
        self.arena.extend_from_slice(bytes);
        self.ends.push(self.arena.len());
        self.hashes.push(hash);
        self.slots[slot] = tag | u64::from(id + 1);
        if self.ends.len() * 2 > self.slots.len() {
            self.grow();
        }
        id + 1
    }

    fn grow(&mut self) {
        let size = self.slots.len() * 2;
        self.slots.clear();
        self.slots.resize(size, 0);
        self.shift -= 1;
        let mask = size - 1;
        for (id, &hash) in self.hashes.iter().enumerate() {
            let mut slot = self.slot_of(hash);
            while self.slots[slot] != 0 {
                slot = (slot + 1) & mask;
            }
            self.slots[slot] = (hash & TAG_MASK) | (id as u64 + 1);
        }
    }

    /// Sorts the values; returns them and the code of each id [`DictionaryBuilder::push`]
    /// returned (`remap[id]`; `remap[0] == 0`, absent).
    pub fn finish(self) -> (SortedValues, Vec<u32>) {
        let mut order: Vec<u32> = (0..self.ends.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| self.value(a as usize).cmp(self.value(b as usize)));
        let mut remap = vec![0u32; self.ends.len() + 1];
        let mut sorted = SortedValues {
            text: String::with_capacity(self.arena.len()),
            ends: Vec::with_capacity(self.ends.len()),
        };
        for (sorted_index, &id) in order.iter().enumerate() {
            remap[id as usize + 1] = sorted_index as u32 + 1;
            // The arena holds whole `str` values, each valid UTF-8.
            let value = std::str::from_utf8(self.value(id as usize)).unwrap_or_default();
            sorted.text.push_str(value);
            sorted.ends.push(sorted.text.len());
        }
        (sorted, remap)
    }
}

/// The sorted distinct values of a dictionary being written.
#[derive(Debug, Default)]
pub(crate) struct SortedValues {
    text: String,
    ends: Vec<usize>,
}

impl SortedValues {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Value `index` (code `index + 1`).
    pub fn get(&self, index: usize) -> Option<&str> {
        let end = *self.ends.get(index)?;
        let start = match index {
            0 => 0,
            _ => self.ends[index - 1],
        };
        self.text.get(start..end)
    }

    /// The values in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + Clone + '_ {
        (0..self.ends.len()).filter_map(|index| self.get(index))
    }
}

/// The Firefox/rustc hash: fast for short keys and good enough for an in-memory map whose
/// contents an attacker does not choose adversarially at seal time (keys are validated events).
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some((word, tail)) = rest.split_first_chunk::<8>() {
            self.add(u64::from_le_bytes(*word));
            rest = tail;
        }
        // The last 1..=7 bytes, read without a call to memcpy.
        if rest.is_empty() {
            return;
        }
        let mut word = 0u64;
        let mut shift = 0u32;
        if let Some((half, tail)) = rest.split_first_chunk::<4>() {
            word = u64::from(u32::from_le_bytes(*half));
            shift = 32;
            rest = tail;
        }
        for byte in rest {
            word |= u64::from(*byte) << shift;
            shift += 8;
        }
        self.add(word);
    }

    #[inline]
    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }

    #[inline]
    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_codes_follow_sorted_values() {
        let mut builder = DictionaryBuilder::default();
        let ids: Vec<u32> = [Some("b"), None, Some("a"), Some("b"), Some("é")]
            .into_iter()
            .map(|value| builder.push(value))
            .collect();
        let (values, remap) = builder.finish();
        let codes: Vec<u32> = ids.iter().map(|&id| remap[id as usize]).collect();
        assert_eq!(values.iter().collect::<Vec<_>>(), vec!["a", "b", "é"]);
        assert_eq!(codes, vec![2, 0, 1, 2, 3]);

        let mut raw = Vec::new();
        Dictionary::encode(values.iter(), &mut raw);
        let dictionary = Dictionary::decode(&raw, 3, Path::new("x"), 0, "test").unwrap();
        assert_eq!(dictionary.get(0), None);
        assert_eq!(dictionary.get(1), Some("a"));
        assert_eq!(dictionary.get(3), Some("é"));
        assert_eq!(dictionary.get(4), None);
        assert_eq!(dictionary.code_of("b"), Some(2));
        assert_eq!(dictionary.code_of("c"), None);
        assert_eq!(dictionary.iter().count(), 3);
    }

    #[test]
    fn dictionary_rejects_unsorted_and_short_input() {
        let mut raw = Vec::new();
        Dictionary::encode(["b", "a"].into_iter(), &mut raw);
        assert!(Dictionary::decode(&raw, 2, Path::new("x"), 7, "test").is_err());
        assert!(Dictionary::decode(&raw[..3], 2, Path::new("x"), 7, "test").is_err());
        assert!(Dictionary::decode(&[], 5, Path::new("x"), 7, "test").is_err());
    }
}
