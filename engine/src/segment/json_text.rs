//! The JSON-aware layout of the text columns `changes` and `details` ("shredded" layout).
//!
//! Generic compression of short JSON documents is dominated by the values: request ids, hosts,
//! durations. This layout separates each document into a *skeleton* (keys, punctuation,
//! literals; repetitive, compresses to almost nothing) and per-key value streams, so that every
//! `region` sits next to other regions and every `request_id` next to other request ids:
//!
//! - a string value (a JSON string not followed by `:`) becomes byte `0x01` in the skeleton and
//!   an item in the string stream of the most recent key (`""` before any key). An item is
//!   `varint(prefix_len << 1 | packed)`, the prefix bytes, and when `packed`, `varint(n)` and `n`
//!   bytes holding the `2n` lowercase hex digits that end the string (request ids shrink by half);
//! - a canonical integer (`-?(0|[1-9][0-9]*)` within i64, not `-0`) becomes byte `0x02` and a
//!   zigzag varint in the number stream of the most recent key;
//! - every other byte stays in the skeleton as is.
//!
//! The text is reproduced byte for byte; a value that contains byte `0x01` or `0x02` or an
//! unterminated string makes the encoder fall back to the plain layout for the whole chunk, so the
//! layout never has to understand invalid JSON.
//!
//! Chunk layout after the layout tag: one varint per row (0 = absent, n + 1 = skeleton of n
//! bytes), the skeletons, `varint key_count`, per key `varint key_len, key bytes (as written
//! between the quotes), varint strings_len, varint numbers_len`, then every key's string stream,
//! then every key's number stream.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use super::dictionary::FxHasher;
use super::format::{get_varint, put_varint, zigzag_decode, zigzag_encode, VarintError};

const STRING_VALUE: u8 = 0x01;
const NUMBER_VALUE: u8 = 0x02;
/// Shortest hex suffix (in digits) worth packing.
const HEX_DIGITS_MIN: usize = 16;

#[derive(Default)]
struct KeyStreams {
    strings: Vec<u8>,
    numbers: Vec<u8>,
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

fn put_string(out: &mut Vec<u8>, inner: &[u8]) {
    let hex = inner.iter().rev().take_while(|b| is_lower_hex(**b)).count() & !1;
    if hex >= HEX_DIGITS_MIN {
        let prefix = &inner[..inner.len() - hex];
        put_varint(out, ((prefix.len() as u64) << 1) | 1);
        out.extend_from_slice(prefix);
        put_varint(out, (hex / 2) as u64);
        for pair in inner[inner.len() - hex..].chunks_exact(2) {
            let digit = |b: u8| if b.is_ascii_digit() { b - b'0' } else { b - b'a' + 10 };
            out.push(digit(pair[0]) << 4 | digit(pair[1]));
        }
    } else {
        put_varint(out, (inner.len() as u64) << 1);
        out.extend_from_slice(inner);
    }
}

/// Encodes a chunk of the text column in the shredded layout (without the layout tag); `false`
/// when some value cannot use it (the caller then writes the plain layout).
pub(crate) fn encode<'a>(values: impl Iterator<Item = Option<&'a str>>, out: &mut Vec<u8>) -> bool {
    let mut lengths = Vec::new();
    let mut skeleton = Vec::new();
    // Every key of every skeleton is listed, in order of first appearance.
    let mut keys: Vec<(&'a [u8], KeyStreams)> = Vec::new();
    let mut key_index: HashMap<&'a [u8], usize, BuildHasherDefault<FxHasher>> = HashMap::default();
    let mut index_of = |key: &'a [u8], keys: &mut Vec<(&'a [u8], KeyStreams)>| -> usize {
        *key_index.entry(key).or_insert_with(|| {
            keys.push((key, KeyStreams::default()));
            keys.len() - 1
        })
    };
    for value in values {
        let Some(text) = value else {
            put_varint(&mut lengths, 0);
            continue;
        };
        let bytes = text.as_bytes();
        if bytes.iter().any(|&b| b == STRING_VALUE || b == NUMBER_VALUE) {
            return false;
        }
        let start = skeleton.len();
        // Values before any key go to the streams of key "".
        let mut key: Option<usize> = None;
        let mut i = 0;
        while i < bytes.len() {
            let byte = bytes[i];
            if byte == b'"' {
                let Some(end) = string_end(bytes, i) else {
                    return false;
                };
                let is_key = bytes[end..]
                    .iter()
                    .find(|b| !b.is_ascii_whitespace())
                    .is_some_and(|b| *b == b':');
                if is_key {
                    skeleton.extend_from_slice(&bytes[i..end]);
                    key = Some(index_of(&bytes[i + 1..end - 1], &mut keys));
                } else {
                    skeleton.push(STRING_VALUE);
                    let index = match key {
                        Some(index) => index,
                        None => index_of(b"", &mut keys),
                    };
                    put_string(&mut keys[index].1.strings, &bytes[i + 1..end - 1]);
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
                        skeleton.push(NUMBER_VALUE);
                        let index = match key {
                            Some(index) => index,
                            None => index_of(b"", &mut keys),
                        };
                        put_varint(&mut keys[index].1.numbers, zigzag_encode(number));
                    }
                    None => skeleton.extend_from_slice(token),
                }
                i = end;
            } else {
                skeleton.push(byte);
                i += 1;
            }
        }
        put_varint(&mut lengths, (skeleton.len() - start) as u64 + 1);
    }
    out.extend_from_slice(&lengths);
    out.extend_from_slice(&skeleton);
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
    true
}

/// Why a shredded chunk could not be decoded.
pub(crate) type DecodeError = String;

struct Stream<'a> {
    bytes: &'a [u8],
    position: usize,
}

/// Decodes a shredded chunk (after the layout tag) of `rows` rows into the concatenated text and
/// each row's span (`None` when absent).
pub(crate) fn decode(
    raw: &[u8],
    rows: usize,
    text: &mut Vec<u8>,
    spans: &mut Vec<Option<(usize, usize)>>,
) -> Result<(), DecodeError> {
    let varint_error = |e: VarintError| e.reason().to_string();
    let mut position = 0usize;
    let mut skeleton_lengths = Vec::with_capacity(rows);
    let mut skeleton_total = 0usize;
    for _ in 0..rows {
        let value = get_varint(raw, &mut position).map_err(varint_error)?;
        let length = if value == 0 {
            None
        } else {
            let length = usize::try_from(value - 1).map_err(|_| "skeleton length overflows")?;
            skeleton_total = skeleton_total
                .checked_add(length)
                .ok_or("skeleton lengths overflow")?;
            Some(length)
        };
        skeleton_lengths.push(length);
    }
    let skeletons = raw
        .get(position..position.saturating_add(skeleton_total))
        .ok_or("skeletons run past the chunk")?;
    position += skeleton_total;
    let key_count = get_varint(raw, &mut position).map_err(varint_error)? as usize;
    if key_count > raw.len() {
        return Err(format!("{key_count} keys cannot fit"));
    }
    let mut keys: HashMap<&[u8], usize, BuildHasherDefault<FxHasher>> = HashMap::default();
    let mut lengths = Vec::with_capacity(key_count);
    for index in 0..key_count {
        let key_len = get_varint(raw, &mut position).map_err(varint_error)? as usize;
        let key = raw
            .get(position..position.saturating_add(key_len))
            .ok_or("key runs past the chunk")?;
        position += key_len;
        let strings = get_varint(raw, &mut position).map_err(varint_error)? as usize;
        let numbers = get_varint(raw, &mut position).map_err(varint_error)? as usize;
        if keys.insert(key, index).is_some() {
            return Err("a key is listed twice".into());
        }
        lengths.push((strings, numbers));
    }
    let mut take = |length: usize| -> Result<&[u8], DecodeError> {
        let slice = raw
            .get(position..position.saturating_add(length))
            .ok_or("value streams run past the chunk")?;
        position += length;
        Ok(slice)
    };
    let mut strings = Vec::with_capacity(key_count);
    for (length, _) in &lengths {
        strings.push(Stream {
            bytes: take(*length)?,
            position: 0,
        });
    }
    let mut numbers = Vec::with_capacity(key_count);
    for (_, length) in &lengths {
        numbers.push(Stream {
            bytes: take(*length)?,
            position: 0,
        });
    }
    if position != raw.len() {
        return Err(format!("{} trailing bytes", raw.len() - position));
    }

    let empty_key = keys.get(&b""[..]).copied();
    let mut skeleton_position = 0usize;
    for length in skeleton_lengths {
        let Some(length) = length else {
            spans.push(None);
            continue;
        };
        let skeleton = &skeletons[skeleton_position..skeleton_position + length];
        skeleton_position += length;
        let start = text.len();
        let mut key = empty_key;
        let mut i = 0;
        while i < skeleton.len() {
            match skeleton[i] {
                b'"' => {
                    let end = string_end(skeleton, i).ok_or("unterminated key")?;
                    let name = &skeleton[i + 1..end - 1];
                    key = Some(*keys.get(name).ok_or("a key has no entry")?);
                    text.extend_from_slice(&skeleton[i..end]);
                    i = end;
                }
                STRING_VALUE => {
                    let stream = key
                        .and_then(|k| strings.get_mut(k))
                        .ok_or("a string value has no stream")?;
                    let header = get_varint(stream.bytes, &mut stream.position).map_err(varint_error)?;
                    let prefix_len = (header >> 1) as usize;
                    let prefix = stream
                        .bytes
                        .get(stream.position..stream.position.saturating_add(prefix_len))
                        .ok_or("string value runs past its stream")?;
                    stream.position += prefix_len;
                    text.push(b'"');
                    text.extend_from_slice(prefix);
                    if header & 1 == 1 {
                        let packed = get_varint(stream.bytes, &mut stream.position)
                            .map_err(varint_error)? as usize;
                        let digits = stream
                            .bytes
                            .get(stream.position..stream.position.saturating_add(packed))
                            .ok_or("hex digits run past their stream")?;
                        stream.position += packed;
                        const HEX: &[u8; 16] = b"0123456789abcdef";
                        for byte in digits {
                            text.push(HEX[(byte >> 4) as usize]);
                            text.push(HEX[(byte & 15) as usize]);
                        }
                    }
                    text.push(b'"');
                    i += 1;
                }
                NUMBER_VALUE => {
                    let stream = key
                        .and_then(|k| numbers.get_mut(k))
                        .ok_or("a number value has no stream")?;
                    let value = get_varint(stream.bytes, &mut stream.position).map_err(varint_error)?;
                    let mut buffer = itoa_buffer();
                    text.extend_from_slice(format_i64(zigzag_decode(value), &mut buffer));
                    i += 1;
                }
                _ => {
                    let run = skeleton[i..]
                        .iter()
                        .position(|b| matches!(*b, b'"' | STRING_VALUE | NUMBER_VALUE))
                        .unwrap_or(skeleton.len() - i);
                    text.extend_from_slice(&skeleton[i..i + run]);
                    i += run;
                }
            }
        }
        spans.push(Some((start, text.len())));
    }
    let all_read = strings.iter().all(|s| s.position == s.bytes.len())
        && numbers.iter().all(|s| s.position == s.bytes.len());
    if !all_read {
        return Err("value streams hold more values than the skeletons use".into());
    }
    Ok(())
}

fn itoa_buffer() -> [u8; 20] {
    [0u8; 20]
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
