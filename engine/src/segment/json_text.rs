//! The JSON-aware layout of the text columns `changes` and `details` ("shredded" layout).
//!
//! Generic compression of short JSON documents is dominated by the values (request ids, hosts,
//! durations) and by re-matching the same document shape row after row. This layout separates
//! each document into a *shape* (keys, punctuation, literals) and per-key value streams, so that
//! every `region` sits next to other regions and every `request_id` next to other request ids:
//!
//! - a string value (a JSON string not followed by `:`) becomes byte `0x01` in the shape and an
//!   item in the string stream of the most recent key (`""` before any key). An item is a varint
//!   `k`: `k >= 1` repeats the key's k-th distinct value of the chunk; `k == 0` is a new value:
//!   `varint(prefix_len << 1 | packed)`, the prefix bytes (as written between the quotes), and
//!   when `packed`, `varint(n)`: the value ends with `2n` lowercase hex digits stored as `n` bytes
//!   in the binary tail (request ids shrink by half);
//! - a canonical integer (`-?(0|[1-9][0-9]*)` within i64, not `-0`) becomes byte `0x02` and a
//!   zigzag varint in the number stream of the most recent key;
//! - every other byte stays in the shape as is. Distinct shapes are stored once per chunk.
//!
//! The text is reproduced byte for byte; a value that contains byte `0x01` or `0x02` or an
//! unterminated string makes the encoder fall back to the plain layout for the whole chunk, so the
//! layout never has to understand invalid JSON.
//!
//! Chunk layout after the layout tag: `varint shape_count`, per shape `varint len`, the shapes'
//! bytes; one varint per row (0 = absent, k = shape k); `varint key_count`, per key `varint
//! key_len, key bytes, varint strings_len, varint numbers_len`; every key's string stream; every
//! key's number stream; then the packed hex bytes of every new string item in order (the rest of
//! the chunk). The packed bytes are random: the chunk is stored with codec `CODEC_ZSTD_RAW_TAIL`,
//! which leaves them out of zstd so they do not spoil its entropy tables.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use super::dictionary::FxHasher;
use super::format::{get_varint, put_varint, zigzag_decode, zigzag_encode, VarintError};

const STRING_VALUE: u8 = 0x01;
const NUMBER_VALUE: u8 = 0x02;
/// Shortest hex suffix (in digits) worth packing.
const HEX_DIGITS_MIN: usize = 16;

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

#[derive(Default)]
struct KeyStreams<'a> {
    strings: Vec<u8>,
    numbers: Vec<u8>,
    distinct: FxMap<&'a [u8], u64>,
    /// Index of the key that followed this one last time (`usize::MAX`: none yet): documents of
    /// one chunk repeat their key sequences, so a key is usually found without hashing it.
    successor: usize,
}

impl KeyStreams<'_> {
    fn clear(&mut self) {
        self.strings.clear();
        self.numbers.clear();
        self.distinct.clear();
        self.successor = usize::MAX;
    }
}

/// End (exclusive) of the JSON string starting with the quote at `start`.
#[inline]
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

fn canonical_integer(token: &[u8]) -> Option<i64> {
    let digits = token.strip_prefix(b"-").unwrap_or(token);
    let canonical = !digits.is_empty()
        && digits.len() <= 19
        && digits.iter().all(u8::is_ascii_digit)
        && (digits[0] != b'0' || digits.len() == 1)
        && token != b"-0";
    if !canonical {
        return None;
    }
    std::str::from_utf8(token).ok()?.parse().ok()
}

#[inline]
fn is_lower_hex(byte: u8) -> bool {
    byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte)
}

fn put_string<'a>(streams: &mut KeyStreams<'a>, binary: &mut Vec<u8>, inner: &'a [u8]) {
    let next = streams.distinct.len() as u64 + 1;
    let code = *streams.distinct.entry(inner).or_insert(next);
    if code != next {
        put_varint(&mut streams.strings, code);
        return;
    }
    let out = &mut streams.strings;
    put_varint(out, 0);
    let hex = inner.iter().rev().take_while(|b| is_lower_hex(**b)).count() & !1;
    if hex >= HEX_DIGITS_MIN {
        let prefix = &inner[..inner.len() - hex];
        put_varint(out, ((prefix.len() as u64) << 1) | 1);
        out.extend_from_slice(prefix);
        put_varint(out, (hex / 2) as u64);
        for pair in inner[inner.len() - hex..].chunks_exact(2) {
            let digit = |b: u8| {
                if b.is_ascii_digit() {
                    b - b'0'
                } else {
                    b - b'a' + 10
                }
            };
            binary.push(digit(pair[0]) << 4 | digit(pair[1]));
        }
    } else {
        put_varint(out, (inner.len() as u64) << 1);
        out.extend_from_slice(inner);
    }
}

/// Encodes chunks of a text column in the shredded layout; its buffers and maps are reused from
/// one chunk to the next.
#[derive(Default)]
pub(crate) struct Encoder<'a> {
    row_shapes: Vec<u8>,
    /// The distinct shapes of the chunk, concatenated, with each one's end.
    shape_bytes: Vec<u8>,
    shape_ends: Vec<usize>,
    shape_codes: FxMap<Vec<u8>, u64>,
    binary: Vec<u8>,
    /// Every key of every shape, in order of first appearance; entries past `key_count` are
    /// spare streams kept from earlier chunks.
    keys: Vec<(&'a [u8], KeyStreams<'a>)>,
    key_count: usize,
    key_index: FxMap<&'a [u8], usize>,
    /// The key that starts the documents (prediction for the first key, as `successor`).
    first_key: usize,
    shape: Vec<u8>,
}

impl<'a> Encoder<'a> {
    fn clear(&mut self) {
        self.row_shapes.clear();
        self.shape_bytes.clear();
        self.shape_ends.clear();
        self.shape_codes.clear();
        self.binary.clear();
        self.key_count = 0;
        self.key_index.clear();
        self.first_key = usize::MAX;
    }

    /// The index of `key`, added when new; `previous` is the key before it in the document.
    #[inline]
    fn key(&mut self, key: &'a [u8], previous: Option<usize>) -> usize {
        let predicted = match previous {
            Some(previous) => self.keys[previous].1.successor,
            None => self.first_key,
        };
        let index = if predicted < self.key_count && self.keys[predicted].0 == key {
            predicted
        } else {
            self.index_of(key)
        };
        match previous {
            Some(previous) => self.keys[previous].1.successor = index,
            None => self.first_key = index,
        }
        index
    }

    fn index_of(&mut self, key: &'a [u8]) -> usize {
        if let Some(index) = self.key_index.get(key) {
            return *index;
        }
        let index = self.key_count;
        if index == self.keys.len() {
            self.keys.push((key, KeyStreams::default()));
        }
        self.keys[index].0 = key;
        self.keys[index].1.clear();
        self.key_count += 1;
        self.key_index.insert(key, index);
        index
    }

    /// Encodes `values` in the shredded layout (without the layout tag). Returns the length of
    /// the packed-hex tail (random bytes, not worth compressing), or `None` when some value
    /// cannot use the layout (the caller then writes the plain layout).
    pub(crate) fn encode(
        &mut self,
        values: &[Option<&'a str>],
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        self.clear();
        for (row, value) in values.iter().enumerate() {
            // The values are scattered over the heap: start loading a later one now.
            if let Some(Some(ahead)) = values.get(row + 4) {
                prefetch_text(ahead.as_bytes());
            }
            let Some(text) = value else {
                self.row_shapes.push(0);
                continue;
            };
            self.shred(text.as_bytes())?;
        }
        let shape_count = self.shape_ends.len();
        put_varint(out, shape_count as u64);
        let mut start = 0;
        for &end in &self.shape_ends {
            put_varint(out, (end - start) as u64);
            start = end;
        }
        out.extend_from_slice(&self.shape_bytes);
        out.extend_from_slice(&self.row_shapes);
        let keys = &self.keys[..self.key_count];
        put_varint(out, keys.len() as u64);
        for (key, streams) in keys {
            put_varint(out, key.len() as u64);
            out.extend_from_slice(key);
            put_varint(out, streams.strings.len() as u64);
            put_varint(out, streams.numbers.len() as u64);
        }
        for (_, streams) in keys {
            out.extend_from_slice(&streams.strings);
        }
        for (_, streams) in keys {
            out.extend_from_slice(&streams.numbers);
        }
        out.extend_from_slice(&self.binary);
        Some(self.binary.len())
    }

    /// Splits one present value into its shape and value streams; appends its shape code.
    fn shred(&mut self, bytes: &'a [u8]) -> Option<()> {
        if bytes
            .iter()
            .any(|&b| b == STRING_VALUE || b == NUMBER_VALUE)
        {
            return None;
        }
        let mut shape = std::mem::take(&mut self.shape);
        shape.clear();
        // Values before any key go to the streams of key "".
        let mut key: Option<usize> = None;
        let mut i = 0;
        while i < bytes.len() {
            let byte = bytes[i];
            if byte == b'"' {
                let end = string_end(bytes, i)?;
                let is_key = bytes[end..]
                    .iter()
                    .find(|b| !b.is_ascii_whitespace())
                    .is_some_and(|b| *b == b':');
                if is_key {
                    shape.extend_from_slice(&bytes[i..end]);
                    key = Some(self.key(&bytes[i + 1..end - 1], key));
                } else {
                    shape.push(STRING_VALUE);
                    let index = match key {
                        Some(index) => index,
                        None => self.index_of(b""),
                    };
                    put_string(
                        &mut self.keys[index].1,
                        &mut self.binary,
                        &bytes[i + 1..end - 1],
                    );
                }
                i = end;
            } else if byte == b'-' || byte.is_ascii_digit() {
                let end = i + bytes[i..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit() || b"-+.eE".contains(b))
                    .count();
                let token = &bytes[i..end];
                match canonical_integer(token) {
                    Some(number) => {
                        shape.push(NUMBER_VALUE);
                        let index = match key {
                            Some(index) => index,
                            None => self.index_of(b""),
                        };
                        put_varint(&mut self.keys[index].1.numbers, zigzag_encode(number));
                    }
                    None => shape.extend_from_slice(token),
                }
                i = end;
            } else {
                // A run of punctuation and literals up to the next string or number.
                let run = bytes[i..]
                    .iter()
                    .position(|b| *b == b'"' || *b == b'-' || b.is_ascii_digit())
                    .unwrap_or(bytes.len() - i);
                shape.extend_from_slice(&bytes[i..i + run]);
                i += run;
            }
        }
        let code = match self.shape_codes.get(shape.as_slice()) {
            Some(code) => *code,
            None => {
                self.shape_bytes.extend_from_slice(&shape);
                self.shape_ends.push(self.shape_bytes.len());
                let code = self.shape_ends.len() as u64;
                self.shape_codes.insert(shape.clone(), code);
                code
            }
        };
        put_varint(&mut self.row_shapes, code);
        self.shape = shape;
        Some(())
    }
}

/// Starts loading the first cache lines of `bytes`.
#[inline(always)]
fn prefetch_text(bytes: &[u8]) {
    for offset in (0..bytes.len().min(256)).step_by(64) {
        super::encoder::prefetch(bytes.as_ptr().wrapping_add(offset));
    }
}

/// Why a shredded chunk could not be decoded.
pub(crate) type DecodeError = String;

struct Stream<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Stream<'a> {
    /// Reads past `count` varints.
    fn skip_varints(&mut self, count: usize) -> Result<(), DecodeError> {
        let mut left = count;
        let rest = &self.bytes[self.position.min(self.bytes.len())..];
        for (offset, byte) in rest.iter().enumerate() {
            if left == 0 {
                self.position += offset;
                return Ok(());
            }
            if *byte < 0x80 {
                left -= 1;
            }
        }
        if left == 0 {
            self.position = self.bytes.len();
            return Ok(());
        }
        Err(VarintError::Truncated.reason().to_string())
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, DecodeError> {
        get_varint(self.bytes, &mut self.position).map_err(|e: VarintError| e.reason().to_string())
    }

    #[inline]
    fn take(&mut self, length: u64, what: &str) -> Result<&'a [u8], DecodeError> {
        let length = usize::try_from(length).map_err(|_| format!("{what} too long"))?;
        let bytes = self
            .bytes
            .get(self.position..self.position.saturating_add(length))
            .ok_or_else(|| format!("{what} runs past the chunk"))?;
        self.position += length;
        Ok(bytes)
    }
}

/// One step of rebuilding a document of a given shape, resolved once per shape.
#[derive(Clone, Copy)]
enum Op {
    /// Copy bytes `start..end` of the shape (punctuation, keys, literals).
    Literal { start: u32, end: u32 },
    /// The next item of key `k`'s string stream, quoted.
    String(u32),
    /// The next item of key `k`'s number stream.
    Number(u32),
}

/// Where a distinct string value of a key is in the chunk: its prefix bytes in the string stream
/// and its packed hex bytes in the binary tail. Values are rebuilt from the chunk, not from
/// earlier output, so rows that are not wanted are skipped without being written.
#[derive(Clone, Copy)]
struct StoredString<'a> {
    prefix: &'a [u8],
    /// `None`: the value has packed bytes whose place in the tail was not worked out (a row
    /// skipped by [`decode_rows`]' fast path introduced it).
    packed: Option<&'a [u8]>,
}

/// Decodes a shredded chunk (after the layout tag) of `rows` rows, appending the text of every
/// present row to `text` and each row's span (`None` when absent) to `spans`.
#[cfg(test)]
pub(crate) fn decode(
    raw: &[u8],
    rows: usize,
    text: &mut Vec<u8>,
    spans: &mut Vec<Option<(usize, usize)>>,
) -> Result<(), DecodeError> {
    decode_rows(raw, rows, 0..rows, text, spans)
}

/// [`decode`] of the rows `wanted` only: spans are pushed for those rows only, the values of
/// earlier rows are read past without being written, and reading stops after the last wanted
/// row (so only a whole decode checks that every stream is used up).
pub(crate) fn decode_rows(
    raw: &[u8],
    rows: usize,
    wanted: std::ops::Range<usize>,
    text: &mut Vec<u8>,
    spans: &mut Vec<Option<(usize, usize)>>,
) -> Result<(), DecodeError> {
    let (text_len, spans_len) = (text.len(), spans.len());
    if decode_rows_with(raw, rows, wanted.clone(), text, spans, true)? {
        return Ok(());
    }
    // A wanted row repeats a packed value of a skipped row: walk every row instead.
    text.truncate(text_len);
    spans.truncate(spans_len);
    decode_rows_with(raw, rows, wanted, text, spans, false).map(|_| ())
}

/// [`decode_rows`]; with `fast_skip`, the rows before the wanted ones are skipped stream by
/// stream, and `Ok(false)` means that was not enough (nothing useful was written).
fn decode_rows_with(
    raw: &[u8],
    rows: usize,
    wanted: std::ops::Range<usize>,
    text: &mut Vec<u8>,
    spans: &mut Vec<Option<(usize, usize)>>,
    fast_skip: bool,
) -> Result<bool, DecodeError> {
    let mut chunk = Stream {
        bytes: raw,
        position: 0,
    };
    let shape_count = chunk.varint()?;
    if shape_count > raw.len() as u64 {
        return Err(format!("{shape_count} shapes cannot fit"));
    }
    let mut shape_lengths = Vec::with_capacity(shape_count as usize);
    for _ in 0..shape_count {
        shape_lengths.push(chunk.varint()?);
    }
    let mut shapes = Vec::with_capacity(shape_lengths.len());
    for length in shape_lengths {
        shapes.push(chunk.take(length, "shape")?);
    }
    let mut row_shapes = Vec::with_capacity(rows);
    for _ in 0..rows {
        let code = chunk.varint()?;
        if code > shapes.len() as u64 {
            return Err(format!("shape {code} of {}", shapes.len()));
        }
        row_shapes.push(code as u32);
    }
    let key_count = chunk.varint()?;
    if key_count > raw.len() as u64 {
        return Err(format!("{key_count} keys cannot fit"));
    }
    let mut keys: FxMap<&[u8], usize> = FxMap::default();
    let mut lengths = Vec::with_capacity(key_count as usize);
    for index in 0..key_count as usize {
        let key_len = chunk.varint()?;
        let key = chunk.take(key_len, "key")?;
        let strings = chunk.varint()?;
        let numbers = chunk.varint()?;
        if keys.insert(key, index).is_some() {
            return Err("a key is listed twice".into());
        }
        lengths.push((strings, numbers));
    }
    let mut strings = Vec::with_capacity(lengths.len());
    for (length, _) in &lengths {
        strings.push(Stream {
            bytes: chunk.take(*length, "string stream")?,
            position: 0,
        });
    }
    let mut numbers = Vec::with_capacity(lengths.len());
    for (_, length) in &lengths {
        numbers.push(Stream {
            bytes: chunk.take(*length, "number stream")?,
            position: 0,
        });
    }
    let mut binary = Stream {
        bytes: raw.get(chunk.position..).unwrap_or_default(),
        position: 0,
    };
    // Per shape, its steps; every value's key is known from the shape alone.
    let empty_key = keys.get(&b""[..]).copied();
    let mut ops: Vec<Op> = Vec::new();
    let mut shape_ops: Vec<(usize, usize)> = Vec::with_capacity(shapes.len());
    for shape in &shapes {
        let first = ops.len();
        let mut key = empty_key;
        let mut i = 0;
        while i < shape.len() {
            match shape[i] {
                STRING_VALUE | NUMBER_VALUE => {
                    let index = key.ok_or(if shape[i] == STRING_VALUE {
                        "a string value has no key"
                    } else {
                        "a number value has no key"
                    })? as u32;
                    ops.push(if shape[i] == STRING_VALUE {
                        Op::String(index)
                    } else {
                        Op::Number(index)
                    });
                    i += 1;
                }
                _ => {
                    let start = i;
                    while i < shape.len() && !matches!(shape[i], STRING_VALUE | NUMBER_VALUE) {
                        if shape[i] == b'"' {
                            let end = string_end(shape, i).ok_or("unterminated key in a shape")?;
                            key = Some(
                                *keys
                                    .get(&shape[i + 1..end - 1])
                                    .ok_or("a key has no entry")?,
                            );
                            i = end;
                        } else {
                            i += 1;
                        }
                    }
                    ops.push(Op::Literal {
                        start: start as u32,
                        end: i as u32,
                    });
                }
            }
        }
        shape_ops.push((first, ops.len()));
    }
    let mut distinct: Vec<Vec<StoredString<'_>>> = vec![Vec::new(); lengths.len()];
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let last = wanted.end.min(rows);
    let first = if fast_skip { wanted.start.min(last) } else { 0 };
    if first > 0 {
        // Rows before the wanted ones: count the items each key's streams hold for them and
        // read past those items stream by stream (no text is built).
        let mut uses = vec![0usize; shapes.len() + 1];
        for &code in &row_shapes[..first] {
            uses[code as usize] += 1;
        }
        let mut skip_strings = vec![0usize; lengths.len()];
        let mut skip_numbers = vec![0usize; lengths.len()];
        for (shape, &(from, to)) in shape_ops.iter().enumerate() {
            let count = uses[shape + 1];
            if count == 0 {
                continue;
            }
            for op in &ops[from..to] {
                match *op {
                    Op::String(index) => skip_strings[index as usize] += count,
                    Op::Number(index) => skip_numbers[index as usize] += count,
                    Op::Literal { .. } => {}
                }
            }
        }
        for (index, &count) in skip_numbers.iter().enumerate() {
            numbers[index].skip_varints(count)?;
        }
        // The packed bytes of the binary tail are in row order across keys, so where a skipped
        // value's bytes are is not known here, only how many bytes the skipped rows hold.
        let mut packed_total = 0u64;
        for (index, &count) in skip_strings.iter().enumerate() {
            let stream = &mut strings[index];
            let values = &mut distinct[index];
            for _ in 0..count {
                if stream.varint()? == 0 {
                    let header = stream.varint()?;
                    let prefix = stream.take(header >> 1, "string value")?;
                    let packed = if header & 1 == 1 {
                        let packed = stream.varint()?;
                        packed_total = packed_total.saturating_add(packed);
                        None
                    } else {
                        Some(&[][..])
                    };
                    values.push(StoredString { prefix, packed });
                }
            }
        }
        binary.take(packed_total, "hex digits")?;
    }
    for (row, &code) in row_shapes.iter().enumerate().take(last).skip(first) {
        let write = row >= wanted.start;
        if code == 0 {
            if write {
                spans.push(None);
            }
            continue;
        }
        let shape = shapes[code as usize - 1];
        let (first, end) = shape_ops[code as usize - 1];
        let start = text.len();
        for op in &ops[first..end] {
            match *op {
                Op::Literal { start, end } => {
                    if write {
                        text.extend_from_slice(&shape[start as usize..end as usize]);
                    }
                }
                Op::String(index) => {
                    let index = index as usize;
                    let stream = &mut strings[index];
                    let values = &mut distinct[index];
                    let item = stream.varint()?;
                    let value = if item == 0 {
                        let header = stream.varint()?;
                        let prefix = stream.take(header >> 1, "string value")?;
                        let packed = if header & 1 == 1 {
                            let packed = stream.varint()?;
                            Some(binary.take(packed, "hex digits")?)
                        } else {
                            Some(&[][..])
                        };
                        let value = StoredString { prefix, packed };
                        values.push(value);
                        value
                    } else {
                        *values
                            .get(item as usize - 1)
                            .ok_or("a string value repeats an unknown value")?
                    };
                    if write {
                        let Some(packed) = value.packed else {
                            return Ok(false);
                        };
                        text.reserve(value.prefix.len() + packed.len() * 2 + 2);
                        text.push(b'"');
                        text.extend_from_slice(value.prefix);
                        for byte in packed {
                            text.push(HEX[(byte >> 4) as usize]);
                            text.push(HEX[(byte & 15) as usize]);
                        }
                        text.push(b'"');
                        // Repeats of one long value could otherwise grow the text without
                        // bound from a small (crafted) chunk.
                        if text.len() > u32::MAX as usize {
                            return Err("decoded text too long".into());
                        }
                    }
                }
                Op::Number(index) => {
                    let value = zigzag_decode(numbers[index as usize].varint()?);
                    if write {
                        let mut buffer = [0u8; 20];
                        text.extend_from_slice(format_i64(value, &mut buffer));
                    }
                }
            }
        }
        if write {
            spans.push(Some((start, text.len())));
        }
    }
    if last == rows {
        let all_read = strings.iter().all(|s| s.position == s.bytes.len())
            && numbers.iter().all(|s| s.position == s.bytes.len())
            && binary.position == binary.bytes.len();
        if !all_read {
            return Err("value streams hold more values than the shapes use".into());
        }
    }
    Ok(true)
}

/// Decimal text of `value` (at most 20 bytes).
fn format_i64(value: i64, buffer: &mut [u8; 20]) -> &[u8] {
    let mut magnitude = value.unsigned_abs();
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if value < 0 {
        at -= 1;
        buffer[at] = b'-';
    }
    &buffer[at..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(values: &[Option<&str>]) -> bool {
        let mut raw = Vec::new();
        if Encoder::default().encode(values, &mut raw).is_none() {
            return false;
        }
        let mut text = Vec::new();
        let mut spans = Vec::new();
        decode(&raw, values.len(), &mut text, &mut spans).unwrap();
        let decoded: Vec<Option<&str>> = spans
            .iter()
            .map(|span| span.map(|(s, e)| std::str::from_utf8(&text[s..e]).unwrap()))
            .collect();
        assert_eq!(decoded, values);
        true
    }

    #[test]
    fn json_text_round_trips_documents() {
        assert!(round_trip(&[
            Some(r#"{"region":"us-west","request_id":"req_37d15c54cb5ae111","duration_ms":18473}"#),
            None,
            Some(
                r#"{"region":"us-west","request_id":"req_d06a5837cafa38c3","n":-0,"x":-12,"f":1.5e3}"#
            ),
            Some(
                r#"[{"field":"gpu_count","old":1,"new":4},{"field":"labels","old":null,"new":{"a":"b"}}]"#
            ),
            Some(r#""top" 12 007 -9223372036854775808 99999999999999999999"#),
            Some(r#"{"":"x","k\"q":"é\u00e9","deadbeef":"ABCDEF0123456789abcdef","e":""}"#),
            Some(r#"{ "spaced" : "v" , "a" : [ "b" , 1 ] }"#),
            Some(""),
        ]));
    }

    #[test]
    fn json_text_falls_back_on_unterminated_strings_and_marker_bytes() {
        assert!(!round_trip(&[Some(r#"{"a":"b"#)]));
        assert!(!round_trip(&[Some("{\"a\":\"\u{1}\"}")]));
    }
}
