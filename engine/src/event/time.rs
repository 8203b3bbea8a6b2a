//! RFC 3339 timestamps to and from UTC microseconds since the Unix epoch.
//!
//! Parsing accepts `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (RFC 3339 section 5.6, `T` and `Z`
//! in either case) and requires the offset: a local time without one is ambiguous in an audit
//! trail. Fractions longer than six digits are truncated to microseconds (toward the past, so a
//! stored time never moves later than the client's clock said); a leap second (`:60`) becomes the
//! last microsecond of its minute, `:59.999999`, which keeps ordering. `-00:00` ("offset unknown"
//! in RFC 3339) is taken as UTC.
//!
//! Formatting always writes UTC with exactly six fractional digits,
//! `2026-11-27T01:20:32.123456Z`, so that text order is time order. Hand-written rather than
//! going through the `time` crate: the ingest path parses one timestamp per event, and this is a
//! handful of integer operations (the tests cross-check it against `time`).
//!
//! ```
//! use auditlog_engine::event::time::{format_rfc3339_us, parse_rfc3339_us};
//! let us = parse_rfc3339_us("2026-11-27T03:20:32.1234567+02:00").unwrap();
//! assert_eq!(format_rfc3339_us(us), "2026-11-27T01:20:32.123456Z");
//! assert!(parse_rfc3339_us("2026-11-27T01:20:32").is_err()); // no offset
//! ```

use super::model::TimestampUs;

/// Microseconds in one second.
pub const US_PER_SECOND: i64 = 1_000_000;
/// Microseconds in one day.
pub const US_PER_DAY: i64 = 86_400 * US_PER_SECOND;

/// Why a text is not an RFC 3339 timestamp with offset. `Display` gives the reason, lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// The text does not follow `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
    #[error("not an RFC 3339 timestamp (expected YYYY-MM-DDTHH:MM:SS[.fraction] followed by Z or ±HH:MM)")]
    Syntax,
    /// Date and time are well formed but no UTC offset follows.
    #[error("RFC 3339 timestamp without a UTC offset (append Z or ±HH:MM)")]
    MissingOffset,
    /// A field is out of its range (month 13, February 30, hour 24, offset +24:00, ...).
    #[error("RFC 3339 timestamp with an out-of-range {0}")]
    OutOfRange(&'static str),
}

/// Parses an RFC 3339 timestamp with offset into UTC microseconds since the Unix epoch.
///
/// Years 0000 to 9999; see the module docs for fractions, leap seconds and `-00:00`.
pub fn parse_rfc3339_us(text: &str) -> Result<TimestampUs, TimestampError> {
    let bytes = text.as_bytes();
    // Shortest valid form: 2026-11-27T01:20:32Z (20 bytes).
    if bytes.len() < 19 {
        return Err(TimestampError::Syntax);
    }
    let year = digits(bytes, 0, 4)?;
    expect(bytes, 4, b'-')?;
    let month = digits(bytes, 5, 2)?;
    expect(bytes, 7, b'-')?;
    let day = digits(bytes, 8, 2)?;
    if !matches!(bytes[10], b'T' | b't') {
        return Err(TimestampError::Syntax);
    }
    let hour = digits(bytes, 11, 2)?;
    expect(bytes, 13, b':')?;
    let minute = digits(bytes, 14, 2)?;
    expect(bytes, 16, b':')?;
    let mut second = digits(bytes, 17, 2)?;

    let mut position = 19;
    let mut fraction_us: i64 = 0;
    if bytes.get(position) == Some(&b'.') {
        position += 1;
        let start = position;
        while let Some(byte) = bytes.get(position).filter(|byte| byte.is_ascii_digit()) {
            if position - start < 6 {
                fraction_us = fraction_us * 10 + i64::from(byte - b'0');
            }
            position += 1;
        }
        let fraction_digits = position - start;
        if fraction_digits == 0 {
            return Err(TimestampError::Syntax);
        }
        for _ in fraction_digits..6 {
            fraction_us *= 10;
        }
    }

    let offset_seconds: i64 = match bytes.get(position) {
        None => return Err(TimestampError::MissingOffset),
        Some(b'Z' | b'z') => {
            position += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let offset_hour = digits(bytes, position + 1, 2)?;
            expect(bytes, position + 3, b':')?;
            let offset_minute = digits(bytes, position + 4, 2)?;
            position += 6;
            if offset_hour > 23 || offset_minute > 59 {
                return Err(TimestampError::OutOfRange("offset"));
            }
            let seconds = offset_hour * 3600 + offset_minute * 60;
            if sign == b'+' {
                seconds
            } else {
                -seconds
            }
        }
        Some(_) => return Err(TimestampError::Syntax),
    };
    if position != bytes.len() {
        return Err(TimestampError::Syntax);
    }

    if !(1..=12).contains(&month) {
        return Err(TimestampError::OutOfRange("month"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(TimestampError::OutOfRange("day"));
    }
    if hour > 23 {
        return Err(TimestampError::OutOfRange("hour"));
    }
    if minute > 59 {
        return Err(TimestampError::OutOfRange("minute"));
    }
    if second > 60 {
        return Err(TimestampError::OutOfRange("second"));
    }
    if second == 60 {
        // A leap second is only ever 23:59:60 UTC (RFC 3339, 5.7), whatever the offset.
        let utc_minute = (hour * 60 + minute - offset_seconds / 60).rem_euclid(24 * 60);
        if utc_minute != 23 * 60 + 59 {
            return Err(TimestampError::OutOfRange("second"));
        }
        second = 59;
        fraction_us = US_PER_SECOND - 1;
    }

    let days = days_from_civil(year, month, day);
    let seconds_of_day = hour * 3600 + minute * 60 + second;
    Ok((days * 86_400 + seconds_of_day - offset_seconds) * US_PER_SECOND + fraction_us)
}

/// Formats UTC microseconds as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (always six fractional digits).
///
/// Years outside 0000..=9999 (never produced by [`parse_rfc3339_us`]) are written with a sign
/// and more digits, which is not RFC 3339 but keeps the function total.
pub fn format_rfc3339_us(timestamp_us: TimestampUs) -> String {
    let mut out = Vec::with_capacity(27);
    write_rfc3339_us(timestamp_us, &mut out);
    // Only ASCII was written.
    String::from_utf8(out).unwrap_or_default()
}

/// Appends the [`format_rfc3339_us`] text of `timestamp_us` to `out`.
pub fn write_rfc3339_us(timestamp_us: TimestampUs, out: &mut Vec<u8>) {
    let days = timestamp_us.div_euclid(US_PER_DAY);
    let micros_of_day = timestamp_us.rem_euclid(US_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let seconds_of_day = micros_of_day / US_PER_SECOND;
    let fraction_us = micros_of_day % US_PER_SECOND;

    // Every other field has a fixed width: fill a template (exports write two per row).
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    fill_digits(&mut text[5..7], month);
    fill_digits(&mut text[8..10], day);
    fill_digits(&mut text[11..13], seconds_of_day / 3600);
    fill_digits(&mut text[14..16], seconds_of_day / 60 % 60);
    fill_digits(&mut text[17..19], seconds_of_day % 60);
    fill_digits(&mut text[20..26], fraction_us);
    if (0..=9999).contains(&year) {
        fill_digits(&mut text[0..4], year);
        out.extend_from_slice(&text);
        return;
    }
    out.push(if year < 0 { b'-' } else { b'+' });
    let magnitude = year.unsigned_abs();
    let width = magnitude
        .checked_ilog10()
        .map_or(1, |log| log as usize + 1)
        .max(4);
    let start = out.len();
    out.resize(start + width, b'0');
    fill_digits(&mut out[start..], magnitude as i64);
    out.extend_from_slice(&text[4..]);
}

/// Writes `value` (non-negative) as exactly `digits.len()` decimal digits, zero-padded.
fn fill_digits(digits: &mut [u8], mut value: i64) {
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Reads `count` ASCII digits at `start` as a number.
fn digits(bytes: &[u8], start: usize, count: usize) -> Result<i64, TimestampError> {
    let slice = bytes
        .get(start..start + count)
        .ok_or(TimestampError::Syntax)?;
    let mut value = 0i64;
    for &byte in slice {
        if !byte.is_ascii_digit() {
            return Err(TimestampError::Syntax);
        }
        value = value * 10 + i64::from(byte - b'0');
    }
    Ok(value)
}

fn expect(bytes: &[u8], position: usize, wanted: u8) -> Result<(), TimestampError> {
    if bytes.get(position) == Some(&wanted) {
        Ok(())
    } else {
        Err(TimestampError::Syntax)
    }
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Inverse of [`days_from_civil`]: (year, month, day).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;

    fn reference_us(text: &str) -> i64 {
        let parsed = OffsetDateTime::parse(text, &Rfc3339).expect("reference parse");
        (parsed.unix_timestamp_nanos() / 1000) as i64
    }

    #[test]
    fn time_parses_utc_and_offsets() {
        assert_eq!(parse_rfc3339_us("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339_us("1970-01-01T00:00:00.000001z"), Ok(1));
        assert_eq!(parse_rfc3339_us("1970-01-01t01:00:00+01:00"), Ok(0));
        assert_eq!(parse_rfc3339_us("1969-12-31T23:59:59.5Z"), Ok(-500_000));
        assert_eq!(
            parse_rfc3339_us("2026-11-27T01:20:32.123456Z"),
            Ok(reference_us("2026-11-27T01:20:32.123456Z"))
        );
        assert_eq!(
            parse_rfc3339_us("2024-02-29T23:30:00-05:30"),
            Ok(reference_us("2024-02-29T23:30:00-05:30"))
        );
    }

    #[test]
    fn time_truncates_long_fractions_and_clamps_leap_seconds() {
        assert_eq!(
            parse_rfc3339_us("1970-01-01T00:00:00.9999999Z"),
            Ok(999_999)
        );
        assert_eq!(
            parse_rfc3339_us("1970-01-01T23:59:60Z"),
            Ok(86_399 * US_PER_SECOND + 999_999)
        );
        // Only at 23:59 UTC: a leap second is inserted at the end of a UTC day.
        assert_eq!(
            parse_rfc3339_us("1970-01-01T00:00:60Z"),
            Err(TimestampError::OutOfRange("second"))
        );
        assert_eq!(
            parse_rfc3339_us("1970-01-01T20:59:60-03:00"),
            Ok(86_399 * US_PER_SECOND + 999_999)
        );
    }

    #[test]
    fn time_rejects_malformed_text() {
        for text in [
            "",
            "2026-11-27",
            "2026-11-27 01:20:32Z",
            "2026-11-27T01:20Z",
            "2026-11-27T01:20:32.Z",
            "2026-11-27T01:20:32+0100",
            "2026-11-27T01:20:32+01",
            "2026-11-27T01:20:32Zjunk",
            "+2026-11-27T01:20:32Z",
            "2026-1-27T01:20:32Z",
            "２０２６-11-27T01:20:32Z",
        ] {
            assert_eq!(
                parse_rfc3339_us(text),
                Err(TimestampError::Syntax),
                "{text}"
            );
        }
        assert_eq!(
            parse_rfc3339_us("2026-11-27T01:20:32.5"),
            Err(TimestampError::MissingOffset)
        );
        assert_eq!(
            parse_rfc3339_us("2026-11-27T01:20:32"),
            Err(TimestampError::MissingOffset)
        );
    }

    #[test]
    fn time_rejects_out_of_range_fields() {
        assert_eq!(
            parse_rfc3339_us("2023-02-29T00:00:00Z"),
            Err(TimestampError::OutOfRange("day"))
        );
        assert_eq!(
            parse_rfc3339_us("2026-13-01T00:00:00Z"),
            Err(TimestampError::OutOfRange("month"))
        );
        assert_eq!(
            parse_rfc3339_us("2026-12-01T24:00:00Z"),
            Err(TimestampError::OutOfRange("hour"))
        );
        assert_eq!(
            parse_rfc3339_us("2026-12-01T00:00:00+24:00"),
            Err(TimestampError::OutOfRange("offset"))
        );
    }

    #[test]
    fn time_formats_with_six_fraction_digits() {
        assert_eq!(format_rfc3339_us(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(format_rfc3339_us(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(
            format_rfc3339_us(reference_us("2026-11-27T01:20:32.123456Z")),
            "2026-11-27T01:20:32.123456Z"
        );
        // Total on any input, never panics.
        assert!(format_rfc3339_us(i64::MIN).starts_with('-'));
        assert!(format_rfc3339_us(i64::MAX).starts_with('+'));
    }

    proptest! {
        #[test]
        fn time_matches_the_time_crate(
            us in -62_135_596_800_000_000i64..253_402_300_799_999_999i64,
            offset_minutes in -1439i32..=1439,
        ) {
            let text = format_rfc3339_us(us);
            let reference = OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000).unwrap();
            prop_assert_eq!(&text, &six_digit_fraction(&reference.format(&Rfc3339).unwrap()));
            prop_assert_eq!(parse_rfc3339_us(&text), Ok(us));

            // The same instant written in another offset parses to the same microsecond.
            let offset = time::UtcOffset::from_whole_seconds(offset_minutes * 60).unwrap();
            let shifted = reference.to_offset(offset);
            if (0..=9999).contains(&shifted.year()) {
                let shifted_text = shifted.format(&Rfc3339).unwrap();
                prop_assert_eq!(parse_rfc3339_us(&shifted_text), Ok(us));
            }
        }
    }

    /// `time` writes the shortest fraction (or none); ours always has six digits.
    fn six_digit_fraction(reference: &str) -> String {
        let without_zone = reference.trim_end_matches('Z');
        match without_zone.split_once('.') {
            Some((seconds, fraction)) => format!("{seconds}.{fraction:0<6}Z"),
            None => format!("{without_zone}.000000Z"),
        }
    }
}
