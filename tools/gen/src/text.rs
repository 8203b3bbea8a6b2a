//! Small, allocation-free text helpers: identifiers, numbers and timestamps.

/// Crockford's base32 alphabet in lowercase (no i, l, o, u): reads well in ids.
const BASE32: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// splitmix64's finalizer: a bijection on `u64`, so distinct inputs give distinct ids.
pub(crate) fn mix64(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

/// Appends the low `digits * 5` bits of `value` as base32, most significant digit first.
pub(crate) fn push_base32(out: &mut String, mut value: u64, digits: usize) {
    debug_assert!(digits <= 13);
    let mut buffer = [0u8; 13];
    for slot in buffer[..digits].iter_mut().rev() {
        *slot = BASE32[(value & 31) as usize];
        value >>= 5;
    }
    for &byte in &buffer[..digits] {
        out.push(byte as char);
    }
}

/// Appends `value` as 16 lowercase hex digits.
pub(crate) fn push_hex64(out: &mut String, value: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(HEX[((value >> (shift * 4)) & 15) as usize] as char);
    }
}

/// Appends a decimal number without going through `core::fmt`.
pub(crate) fn push_u64(out: &mut String, mut value: u64) {
    let mut buffer = [0u8; 20];
    let mut start = buffer.len();
    loop {
        start -= 1;
        buffer[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for &byte in &buffer[start..] {
        out.push(byte as char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_numbers_and_ids() {
        let mut text = String::new();
        push_u64(&mut text, 0);
        text.push(' ');
        push_u64(&mut text, 18_446_744_073_709_551_615);
        text.push(' ');
        push_base32(&mut text, 31, 3);
        text.push(' ');
        push_hex64(&mut text, 0xdead_beef);
        assert_eq!(text, "0 18446744073709551615 00z 00000000deadbeef");
        assert_ne!(mix64(1), mix64(2));
    }
}
