//! The idempotency-key filter: a Bloom filter over [`key_hash`] of `(tenant, id)` of every row
//! whose event carries an `id`, so the store can rule a segment out without reading rows.
//!
//! Stored layout (raw, not compressed: random bits do not compress):
//!
//! ```text
//! u32 probe_count k   u64 bit_count m (a multiple of 64; 0 = no keys)   m/64 x u64 words
//! ```
//!
//! Probe `i` (0..k) of a hash `h` sets bit `(h + i * (mix(h) | 1)) mod m` (wrapping u64
//! arithmetic), bit `b` being bit `b % 64` of word `b / 64`. The hash and probe sequence are part
//! of the format.

use std::path::Path;

use crate::error::Result;

use super::format::Reader;

/// Bytes before the words: probe count (4) and bit count (8).
pub const FILTER_HEADER_LEN: usize = 12;
/// Largest probe count a reader accepts.
pub const PROBES_MAX: u32 = 32;

/// Stable 64-bit hash of an idempotency key: FNV-1a 64 over the tenant's length (u32 LE), the
/// tenant bytes and the id bytes, then the murmur3 finalizer (FNV's low bits are weak).
pub fn key_hash(tenant: &str, id: &str) -> u64 {
    key_hash_id(key_hash_tenant(tenant), id)
}

const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

#[inline]
fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// The state of [`key_hash`] after the tenant: the encoder computes it once per tenant.
#[inline]
pub(crate) fn key_hash_tenant(tenant: &str) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    let hash = fnv1a(FNV_OFFSET, &(tenant.len() as u32).to_le_bytes());
    fnv1a(hash, tenant.as_bytes())
}

/// [`key_hash`] from the state [`key_hash_tenant`] returned.
#[inline]
pub(crate) fn key_hash_id(tenant_state: u64, id: &str) -> u64 {
    mix(fnv1a(tenant_state, id.as_bytes()))
}

/// murmur3's 64-bit finalizer.
#[inline]
fn mix(mut value: u64) -> u64 {
    value ^= value >> 33;
    value = value.wrapping_mul(0xff51_afd7_ed55_8ccd);
    value ^= value >> 33;
    value = value.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    value ^= value >> 33;
    value
}

#[inline]
fn probes(hash: u64, probe_count: u32, bit_count: u64) -> impl Iterator<Item = u64> {
    let step = mix(hash ^ 0x9e37_79b9_7f4a_7c15) | 1;
    (0..u64::from(probe_count)).map(move |i| hash.wrapping_add(i.wrapping_mul(step)) % bit_count)
}

/// Serializes a filter over `hashes` with about `bits_per_key` bits per key.
pub fn build(hashes: &[u64], bits_per_key: u32, out: &mut Vec<u8>) {
    let bits_per_key = bits_per_key.clamp(1, 64);
    let probe_count =
        ((f64::from(bits_per_key) * std::f64::consts::LN_2).round() as u32).clamp(1, PROBES_MAX);
    let bit_count = if hashes.is_empty() {
        0
    } else {
        ((hashes.len() as u64 * u64::from(bits_per_key)).max(64)).div_ceil(64) * 64
    };
    let mut words = vec![0u64; (bit_count / 64) as usize];
    for &hash in hashes {
        for bit in probes(hash, probe_count, bit_count) {
            words[(bit / 64) as usize] |= 1u64 << (bit % 64);
        }
    }
    out.extend_from_slice(&probe_count.to_le_bytes());
    out.extend_from_slice(&bit_count.to_le_bytes());
    for word in words {
        out.extend_from_slice(&word.to_le_bytes());
    }
}

/// A parsed view of a stored filter.
#[derive(Debug, Clone, Copy)]
pub struct FilterShape {
    pub probe_count: u32,
    pub bit_count: u64,
}

/// Checks the stored layout and returns its shape.
pub fn parse(raw: &[u8], path: &Path, offset: u64) -> Result<FilterShape> {
    let mut reader = Reader::new(raw, path, offset, "key filter");
    let probe_count = reader.u32()?;
    let bit_count = reader.u64()?;
    if bit_count % 64 != 0 {
        return Err(reader.corrupt(format!("bit count {bit_count} is not a multiple of 64")));
    }
    if !(1..=PROBES_MAX).contains(&probe_count) {
        return Err(reader.corrupt(format!("probe count {probe_count} out of range")));
    }
    if reader.remaining() as u64 != bit_count / 8 {
        return Err(reader.corrupt(format!(
            "{bit_count} bits need {} bytes, {} are stored",
            bit_count / 8,
            reader.remaining()
        )));
    }
    Ok(FilterShape {
        probe_count,
        bit_count,
    })
}

/// True when the filter may hold `hash`; `raw` was accepted by [`parse`].
pub fn may_contain(raw: &[u8], shape: FilterShape, hash: u64) -> bool {
    if shape.bit_count == 0 {
        return false;
    }
    let words = raw.get(FILTER_HEADER_LEN..).unwrap_or(&[]);
    probes(hash, shape.probe_count, shape.bit_count).all(|bit| {
        let at = (bit / 64) as usize * 8;
        match words.get(at..at + 8) {
            Some(word) => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(word);
                u64::from_le_bytes(bytes) & (1u64 << (bit % 64)) != 0
            }
            // Unreachable after `parse`; answering "maybe" keeps the exact check in charge.
            None => true,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bloom_has_no_false_negatives_and_few_false_positives() {
        let hashes: Vec<u64> = (0..10_000)
            .map(|i| key_hash("acct_1", &format!("evt_{i}")))
            .collect();
        let mut raw = Vec::new();
        build(&hashes, 10, &mut raw);
        let shape = parse(&raw, Path::new("x"), 0).unwrap();
        assert!(hashes.iter().all(|&h| may_contain(&raw, shape, h)));
        let false_positives = (0..10_000)
            .filter(|i| may_contain(&raw, shape, key_hash("acct_2", &format!("evt_{i}"))))
            .count();
        assert!(false_positives < 300, "{false_positives} false positives");
    }

    #[test]
    fn bloom_empty_filter_holds_nothing() {
        let mut raw = Vec::new();
        build(&[], 10, &mut raw);
        let shape = parse(&raw, Path::new("x"), 0).unwrap();
        assert!(!may_contain(&raw, shape, key_hash("a", "b")));
    }

    #[test]
    fn bloom_key_hash_is_pinned() {
        // The hash is part of the format: a change here breaks every stored filter.
        assert_ne!(key_hash("ab", "c"), key_hash("a", "bc"));
        assert_eq!(key_hash("acct_0042", "evt_5f2c9a"), 0xbcf4_62ce_0a45_2183);
    }
}
