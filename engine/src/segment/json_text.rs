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

/// Encodes a chunk of the text column in the shredded layout (without the layout tag). Returns
/// the length of the packed-hex tail (random bytes, not worth compressing), or `None` when some
/// value cannot use the layout (the caller then writes the plain layout).
pub(crate) fn encode<'a>(
    values: impl Iterator<Item = Option<&'a str>>,
    out: &mut Vec<u8>,
) -> Option<usize> {
    let mut row_shapes = Vec::new();
    let mut shapes: Vec<Vec<u8>> = Vec::new();
    let mut shape_codes: FxMap<Vec<u8>, u64> = FxMap::default();
    let mut binary = Vec::new();
    // Every key of every shape is listed, in order of first appearance.
    let mut keys: Vec<(&'a [u8], KeyStreams<'a>)> = Vec::new();
    let mut key_index: FxMap<&'a [u8], usize> = FxMap::default();
    let mut index_of = |key: &'a [u8], keys: &mut Vec<(&'a [u8], KeyStreams<'a>)>| -> usize {
        *key_index.entry(key).or_insert_with(|| {
            keys.push((key, KeyStreams::default()));
            keys.len() - 1
        })
    };
    let mut shape = Vec::new();
    for value in values {
        let Some(text) = value else {
            put_varint(&mut row_shapes, 0);
            continue;
        };
        let bytes = text.as_bytes();
        if bytes
            .iter()
            .any(|&b| b == STRING_VALUE || b == NUMBER_VALUE)
        {
            return None;
        }
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
                    key = Some(index_of(&bytes[i + 1..end - 1], &mut keys));
                } else {
                    shape.push(STRING_VALUE);
                    let index = match key {
                        Some(index) => index,
                        None => index_of(b"", &mut keys),
                    };
                    put_string(&mut keys[index].1, &mut binary, &bytes[i + 1..end - 1]);
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
                            None => index_of(b"", &mut keys),
                        };
                        put_varint(&mut keys[index].1.numbers, zigzag_encode(number));
                    }
                    None => shape.extend_from_slice(token),
                }
                i = end;
            } else {
                shape.push(byte);
                i += 1;
            }
        }
        let code = match shape_codes.get(shape.as_slice()) {
            Some(code) => *code,
            None => {
                shapes.push(shape.clone());
                shape_codes.insert(shape.clone(), shapes.len() as u64);
                shapes.len() as u64
            }
        };
        put_varint(&mut row_shapes, code);
    }
    put_varint(out, shapes.len() as u64);
    for shape in &shapes {
        put_varint(out, shape.len() as u64);
    }
    for shape in &shapes {
        out.extend_from_slice(shape);
    }
    out.extend_from_slice(&row_shapes);
    put_varint(out, keys.len() as u64);
    for (key, streams) in &keys {
        put_varint(out, key.len() as u64);
        out.extend_from_slice(key);
        put_varint(out, streams.strings.len() as u64);
        put_varint(out, streams.numbers.len() as u64);
    }
    for (_, streams) in &keys {
        out.extend_from_slice(&streams.strings);
    }
    for (_, streams) in &keys {
        out.extend_from_slice(&streams.numbers);
    }
    out.extend_from_slice(&binary);
    Some(binary.len())
}

/// Why a shredded chunk could not be decoded.
pub(crate) type DecodeError = String;

struct Stream<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Stream<'a> {
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

/// Decodes a shredded chunk (after the layout tag) of `rows` rows, appending the text of every
/// present row to `text` and each row's span (`None` when absent) to `spans`.
pub(crate) fn decode(
    raw: &[u8],
    rows: usize,
    text: &mut Vec<u8>,
    spans: &mut Vec<Option<(usize, usize)>>,
) -> Result<(), DecodeError> {
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
        row_shapes.push(code as usize);
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
    // Per shape, the key index of each key it names, in order: resolved once, not per row.
    let mut shape_keys: Vec<Vec<usize>> = Vec::with_capacity(shapes.len());
    for shape in &shapes {
        let mut resolved = Vec::new();
        let mut i = 0;
        while i < shape.len() {
            if shape[i] == b'"' {
                let end = string_end(shape, i).ok_or("unterminated key in a shape")?;
                resolved.push(
                    *keys
                        .get(&shape[i + 1..end - 1])
                        .ok_or("a key has no entry")?,
                );
                i = end;
            } else {
                i += 1;
            }
        }
        shape_keys.push(resolved);
    }
    // Spans in `text` of each key's distinct string values (without quotes).
    let mut distinct: Vec<Vec<(usize, usize)>> = vec![Vec::new(); lengths.len()];
    let empty_key = keys.get(&b""[..]).copied();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for code in row_shapes {
        if code == 0 {
            spans.push(None);
            continue;
        }
        let shape = shapes[code - 1];
        let mut shape_key = shape_keys[code - 1].iter();
        let start = text.len();
        let mut key = empty_key;
        let mut i = 0;
        while i < shape.len() {
            match shape[i] {
                b'"' => {
                    let end = string_end(shape, i).ok_or("unterminated key")?;
                    key = shape_key.next().copied();
                    text.extend_from_slice(&shape[i..end]);
                    i = end;
                }
                STRING_VALUE => {
                    let index = key.ok_or("a string value has no key")?;
                    let stream = strings
                        .get_mut(index)
                        .ok_or("a string value has no stream")?;
                    let values = &mut distinct[index];
                    let item = stream.varint()?;
                    text.push(b'"');
                    if item == 0 {
                        let value_start = text.len();
                        let header = stream.varint()?;
                        text.extend_from_slice(stream.take(header >> 1, "string value")?);
                        if header & 1 == 1 {
                            let packed = stream.varint()?;
                            for byte in binary.take(packed, "hex digits")? {
                                text.push(HEX[(byte >> 4) as usize]);
                                text.push(HEX[(byte & 15) as usize]);
                            }
                        }
                        values.push((value_start, text.len()));
                    } else {
                        let (from, to) = *values
                            .get(item as usize - 1)
                            .ok_or("a string value repeats an unknown value")?;
                        text.extend_from_within(from..to);
                    }
                    text.push(b'"');
                    i += 1;
                }
                NUMBER_VALUE => {
                    let index = key.ok_or("a number value has no key")?;
                    let stream = numbers
                        .get_mut(index)
                        .ok_or("a number value has no stream")?;
                    let value = zigzag_decode(stream.varint()?);
                    let mut buffer = [0u8; 20];
                    text.extend_from_slice(format_i64(value, &mut buffer));
                    i += 1;
                }
                _ => {
                    let run = shape[i..]
                        .iter()
                        .position(|b| matches!(*b, b'"' | STRING_VALUE | NUMBER_VALUE))
                        .unwrap_or(shape.len() - i);
                    text.extend_from_slice(&shape[i..i + run]);
                    i += run;
                }
            }
        }
        spans.push(Some((start, text.len())));
    }
    let all_read = strings.iter().all(|s| s.position == s.bytes.len())
        && numbers.iter().all(|s| s.position == s.bytes.len())
        && binary.position == binary.bytes.len();
    if !all_read {
        return Err("value streams hold more values than the shapes use".into());
    }
    Ok(())
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
        if encode(values.iter().copied(), &mut raw).is_none() {
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
