//! The bit-packed layout of a text chunk ([`super::format::TEXT_LAYOUT_PACKED`]).
//!
//! Random identifiers (`evt_` + 13 base32 digits) are all entropy: zstd gets them to about 5.4
//! bits a digit at best, and spends time trying. When every present value of a chunk is one
//! common prefix followed by exactly `L` bytes drawn from an alphabet of at most 64 ASCII bytes,
//! the chunk stores the prefix and the alphabet once and each value as `L` symbols of
//! `ceil(log2(alphabet))` bits.
//!
//! Layout after the layout tag: `varint prefix_len`, the prefix bytes, `varint L`, `u8
//! alphabet_len` (1..=64), the alphabet bytes (ASCII, strictly ascending), `u8 presence` (0: every
//! row has a value; 1: a bitmap of `ceil(n / 8)` bytes follows, bit `i % 8` of byte `i / 8` set
//! when row `i` has a value), then the symbols of every present value in row order, each the
//! index of its byte in the alphabet, as a little-endian bit stream (symbol `k`'s bit `b` is bit
//! `(k * bits + b) % 8` of byte `(k * bits + b) / 8`), zero-padded to a whole byte. The bit
//! stream is the chunk's random tail, stored outside the zstd frame.

use super::format::{get_varint, put_varint};

/// Largest alphabet the layout accepts (6 bits a symbol).
const ALPHABET_MAX: usize = 64;

fn bits_for(alphabet_len: usize) -> u32 {
    usize::BITS - (alphabet_len.max(2) - 1).leading_zeros()
}

/// Encodes `values` in the packed layout (without the layout tag) when they fit it and it saves
/// space; returns the length of the bit-stream tail, or `None` (nothing written) otherwise.
pub(crate) fn encode(values: &[Option<&str>], out: &mut Vec<u8>) -> Option<usize> {
    let rows = values.len();
    let values = values.iter().copied();
    let mut prefix: Option<&[u8]> = None;
    let mut length = 0usize;
    let mut present = 0usize;
    for value in values.clone().flatten() {
        let bytes = value.as_bytes();
        present += 1;
        match prefix {
            None => {
                prefix = Some(bytes);
                length = bytes.len();
            }
            Some(common) => {
                if bytes.len() != length {
                    return None;
                }
                let same = common.iter().zip(bytes).take_while(|(a, b)| a == b).count();
                prefix = Some(&common[..same]);
            }
        }
    }
    let prefix = prefix?;
    // The suffix starts at an ASCII byte (checked below), so the prefix ends on a char boundary.
    let suffix_len = length - prefix.len();
    if suffix_len == 0 {
        return None;
    }
    let mut seen = [false; 128];
    for value in values.clone().flatten() {
        for &byte in &value.as_bytes()[prefix.len()..] {
            if byte >= 128 {
                return None;
            }
            seen[byte as usize] = true;
        }
    }
    let alphabet: Vec<u8> = (0u8..128).filter(|b| seen[*b as usize]).collect();
    if alphabet.len() > ALPHABET_MAX {
        return None;
    }
    let bits = bits_for(alphabet.len());
    let mut index = [0u8; 128];
    for (position, &byte) in alphabet.iter().enumerate() {
        index[byte as usize] = position as u8;
    }
    put_varint(out, prefix.len() as u64);
    out.extend_from_slice(prefix);
    put_varint(out, suffix_len as u64);
    out.push(alphabet.len() as u8);
    out.extend_from_slice(&alphabet);
    if present == rows {
        out.push(0);
    } else {
        out.push(1);
        let mut bitmap = vec![0u8; rows.div_ceil(8)];
        for (row, value) in values.clone().enumerate() {
            if value.is_some() {
                bitmap[row / 8] |= 1 << (row % 8);
            }
        }
        out.extend_from_slice(&bitmap);
    }
    let tail_start = out.len();
    let mut accumulator = 0u64;
    let mut filled = 0u32;
    for value in values.flatten() {
        for &byte in &value.as_bytes()[prefix.len()..] {
            accumulator |= u64::from(index[byte as usize]) << filled;
            filled += bits;
            if filled >= 32 {
                out.extend_from_slice(&(accumulator as u32).to_le_bytes());
                accumulator >>= 32;
                filled -= 32;
            }
        }
    }
    while filled > 0 {
        out.push(accumulator as u8);
        accumulator >>= 8;
        filled = filled.saturating_sub(8);
    }
    Some(out.len() - tail_start)
}

/// Decodes a packed chunk (after the layout tag) of `rows` rows, appending the text of every
/// present row to `text` and each row's span (`None` when absent) to `spans`.
#[cfg(test)]
pub(crate) fn decode(
    raw: &[u8],
    rows: usize,
    text: &mut Vec<u8>,
    spans: &mut Vec<Option<(usize, usize)>>,
) -> Result<(), String> {
    decode_rows(raw, rows, 0..rows, text, spans)
}

/// [`decode`] of the rows `wanted` only (spans are pushed for those rows only): the symbols of
/// earlier rows are skipped by bit offset.
pub(crate) fn decode_rows(
    raw: &[u8],
    rows: usize,
    wanted: std::ops::Range<usize>,
    text: &mut Vec<u8>,
    spans: &mut Vec<Option<(usize, usize)>>,
) -> Result<(), String> {
    let mut position = 0usize;
    let varint = |position: &mut usize| -> Result<usize, String> {
        let value = get_varint(raw, position).map_err(|e| e.reason().to_string())?;
        usize::try_from(value).map_err(|_| "length too large".to_string())
    };
    let take = |position: &mut usize, length: usize, what: &str| -> Result<&[u8], String> {
        let end = position
            .checked_add(length)
            .filter(|end| *end <= raw.len())
            .ok_or_else(|| format!("{what} runs past the chunk"))?;
        let bytes = &raw[*position..end];
        *position = end;
        Ok(bytes)
    };
    let prefix_len = varint(&mut position)?;
    let prefix = take(&mut position, prefix_len, "prefix")?;
    let suffix_len = varint(&mut position)?;
    let alphabet_len = *take(&mut position, 1, "alphabet length")?
        .first()
        .unwrap_or(&0) as usize;
    if alphabet_len == 0 || alphabet_len > ALPHABET_MAX || suffix_len == 0 {
        return Err(format!(
            "alphabet of {alphabet_len} symbols, suffix of {suffix_len}"
        ));
    }
    let alphabet = take(&mut position, alphabet_len, "alphabet")?;
    if alphabet.iter().any(|b| *b >= 128) || alphabet.windows(2).any(|w| w[0] >= w[1]) {
        return Err("alphabet is not ascending ascii".into());
    }
    let presence = *take(&mut position, 1, "presence")?.first().unwrap_or(&0);
    let bitmap = match presence {
        0 => None,
        1 => Some(take(&mut position, rows.div_ceil(8), "presence bitmap")?),
        other => return Err(format!("unknown presence byte {other}")),
    };
    let present = match bitmap {
        None => rows,
        Some(bitmap) => bitmap.iter().map(|b| b.count_ones() as usize).sum(),
    };
    let bits = bits_for(alphabet_len);
    let symbols = present.checked_mul(suffix_len).ok_or("too many symbols")?;
    let stream_len = symbols
        .checked_mul(bits as usize)
        .ok_or("too many symbols")?
        .div_ceil(8);
    let stream = &raw[position.min(raw.len())..];
    if stream.len() != stream_len {
        return Err(format!(
            "{present} values need {stream_len} packed bytes, {} are stored",
            stream.len()
        ));
    }
    if let Some(bitmap) = bitmap {
        let extra = rows % 8;
        if extra != 0 && bitmap.last().is_some_and(|b| b >> extra != 0) {
            return Err("presence bits past the last row".into());
        }
    }
    // Checked: a crafted chunk (its checksum recomputed) may declare lengths whose sum or
    // product overflows, or a text far larger than any block holds; it is an error, never a
    // panic or an allocation of that size.
    let value_len = prefix_len
        .checked_add(suffix_len)
        .ok_or("value length overflows")?;
    let wanted = wanted.start.min(rows)..wanted.end.min(rows);
    let text_len = present
        .min(wanted.len())
        .checked_mul(value_len)
        .filter(|&len| len <= u32::MAX as usize)
        .ok_or("values too long for a block")?;
    let present_before = |row: usize| match bitmap {
        None => row,
        Some(bitmap) => {
            let whole: usize = bitmap[..row / 8]
                .iter()
                .map(|b| b.count_ones() as usize)
                .sum();
            whole
                + match row % 8 {
                    0 => 0,
                    bits => (bitmap[row / 8] & ((1u8 << bits) - 1)).count_ones() as usize,
                }
        }
    };
    text.reserve(text_len);
    spans.reserve(wanted.len());
    let mask = (1u64 << bits) - 1;
    // Start at the first wanted row's first symbol.
    let first_bit = present_before(wanted.start) * suffix_len * bits as usize;
    let mut next = first_bit / 8;
    let mut accumulator = 0u64;
    let mut available = 0u32;
    let skip = (first_bit % 8) as u32;
    let mut table = [0u8; ALPHABET_MAX];
    table[..alphabet_len].copy_from_slice(alphabet);
    let refill = |accumulator: &mut u64, available: &mut u32, next: &mut usize| {
        let mut word = [0u8; 4];
        let start = (*next).min(stream.len());
        let end = (start + 4).min(stream.len());
        word[..end - start].copy_from_slice(&stream[start..end]);
        *accumulator |= u64::from(u32::from_le_bytes(word)) << *available;
        *available += 32;
        *next += 4;
    };
    if skip > 0 {
        refill(&mut accumulator, &mut available, &mut next);
        accumulator >>= skip;
        available -= skip;
    }
    for row in wanted.clone() {
        if let Some(bitmap) = bitmap {
            if bitmap[row / 8] & (1 << (row % 8)) == 0 {
                spans.push(None);
                continue;
            }
        }
        let start = text.len();
        text.extend_from_slice(prefix);
        for _ in 0..suffix_len {
            if available < bits {
                refill(&mut accumulator, &mut available, &mut next);
            }
            let symbol = (accumulator & mask) as usize;
            accumulator >>= bits;
            available -= bits;
            if symbol >= alphabet_len {
                return Err(format!("symbol {symbol} of an alphabet of {alphabet_len}"));
            }
            text.push(table[symbol]);
        }
        spans.push(Some((start, text.len())));
    }
    // The padding bits of the last byte are zero in a well-formed chunk.
    if wanted.end == rows && accumulator & ((1u64 << available.min(63)) - 1) != 0 {
        return Err("nonzero padding bits".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(values: &[Option<&str>]) -> Option<usize> {
        let mut out = Vec::new();
        let tail = encode(values, &mut out)?;
        let mut text = Vec::new();
        let mut spans = Vec::new();
        decode(&out, values.len(), &mut text, &mut spans).unwrap();
        let decoded: Vec<Option<&str>> = spans
            .iter()
            .map(|span| span.map(|(s, e)| std::str::from_utf8(&text[s..e]).unwrap()))
            .collect();
        assert_eq!(decoded, values);
        Some(tail)
    }

    #[test]
    fn packed_text_round_trips_ids() {
        let tail = round_trip(&[
            Some("evt_0123456789abc"),
            None,
            Some("evt_vwxyz00000000"),
            Some("evt_zzzzzzzzzzzzz"),
        ])
        .unwrap();
        assert!(tail <= (3 * 13 * 5usize).div_ceil(8));
        assert!(round_trip(&[Some("a"), Some("b"), Some("a")]).is_some());
        assert!(round_trip(&[Some("x1"), Some("x2")]).is_some());
        for rows in 1..20 {
            let values: Vec<Option<String>> = (0..rows)
                .map(|i| (i % 3 != 1).then(|| format!("é_{:05x}", i * 7919)))
                .collect();
            let values: Vec<Option<&str>> = values.iter().map(|v| v.as_deref()).collect();
            round_trip(&values);
        }
    }

    #[test]
    fn packed_text_refuses_what_does_not_fit() {
        assert!(round_trip(&[Some("abc"), Some("abcd")]).is_none());
        assert!(round_trip(&[Some("same"), Some("same")]).is_none());
        assert!(round_trip(&[Some("aé"), Some("bé")]).is_none());
        assert!(round_trip(&[None, None]).is_none());
    }

    #[test]
    fn packed_text_rejects_bad_input_without_panic() {
        let mut out = Vec::new();
        encode(&[Some("evt_abc"), None, Some("evt_xyz")], &mut out).unwrap();
        for cut in 0..out.len() {
            let (mut text, mut spans) = (Vec::new(), Vec::new());
            assert!(decode(&out[..cut], 3, &mut text, &mut spans).is_err());
        }
        for position in 0..out.len() {
            for bit in 0..8 {
                let mut bad = out.clone();
                bad[position] ^= 1 << bit;
                let (mut text, mut spans) = (Vec::new(), Vec::new());
                let _ = decode(&bad, 3, &mut text, &mut spans);
            }
        }
    }

    /// Lengths a crafted chunk may declare: a suffix so long that the value length overflows
    /// (every row absent, so no symbol is stored), or values whose text would be far larger
    /// than any block: an error, never a panic or an allocation of that size.
    #[test]
    fn packed_text_refuses_crafted_lengths() {
        let varint = |mut value: u64, out: &mut Vec<u8>| loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        };
        // prefix "a", suffix of u64::MAX symbols, alphabet "b", a presence bitmap of
        // 8 absent rows.
        let mut raw = Vec::new();
        varint(1, &mut raw);
        raw.push(b'a');
        varint(u64::MAX, &mut raw);
        raw.extend_from_slice(&[1, b'b', 1, 0]);
        let (mut text, mut spans) = (Vec::new(), Vec::new());
        let error = decode(&raw, 8, &mut text, &mut spans).unwrap_err();
        assert!(
            error.contains("overflows") || error.contains("too"),
            "{error}"
        );
        // Present rows whose values would need terabytes: refused (by the packed stream's
        // length, which the chunk does not hold) before anything is reserved.
        let mut raw = Vec::new();
        varint(1, &mut raw);
        raw.push(b'a');
        varint(1 << 40, &mut raw);
        raw.extend_from_slice(&[1, b'b', 0]);
        let error = decode(&raw, 8, &mut text, &mut spans).unwrap_err();
        assert!(!error.is_empty());
    }
}
