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

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Appends `timestamp_us` as RFC 3339 UTC with microseconds: `2026-11-27T01:20:32.123456Z`.
pub(crate) fn push_rfc3339_us(out: &mut Vec<u8>, timestamp_us: i64) {
    let seconds = timestamp_us.div_euclid(1_000_000);
    let micros = timestamp_us.rem_euclid(1_000_000) as u32;
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    let mut buffer = *b"0000-00-00T00:00:00.000000Z";
    let year = year.clamp(0, 9999) as u32;
    put_digits(&mut buffer[0..4], year);
    put_digits(&mut buffer[5..7], month);
    put_digits(&mut buffer[8..10], day);
    put_digits(&mut buffer[11..13], second_of_day / 3600);
    put_digits(&mut buffer[14..16], second_of_day / 60 % 60);
    put_digits(&mut buffer[17..19], second_of_day % 60);
    put_digits(&mut buffer[20..26], micros);
    out.extend_from_slice(&buffer);
}

fn put_digits(slot: &mut [u8], mut value: u32) {
    for byte in slot.iter_mut().rev() {
        *byte = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rfc3339_matches_known_instants() {
        let mut out = Vec::new();
        push_rfc3339_us(&mut out, 1_793_491_200_000_000);
        assert_eq!(out, b"2026-11-01T00:00:00.000000Z");
        out.clear();
        push_rfc3339_us(&mut out, 951_782_400_123_456 + 86_399_000_000);
        assert_eq!(out, b"2000-02-29T23:59:59.123456Z");
        out.clear();
        push_rfc3339_us(&mut out, 0);
        assert_eq!(out, b"1970-01-01T00:00:00.000000Z");
    }

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
