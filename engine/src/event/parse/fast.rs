//! The fast reader: one pass over an event's JSON text for the shape clients send, tried before
//! the serde reader.
//!
//! [`read_event`] reads the event object byte by byte: keys are compared in place, string
//! fields are borrowed from the text (or copied when they hold simple escapes), `details` and the
//! values of `changes` are checked as JSON and kept as borrowed text. It gives up, returning
//! `None`, at anything it does not handle itself: malformed JSON, an unknown or repeated field,
//! a value of the wrong type, a `\u` escape in a string field or in a key, a `changes` item that
//! fails its checks, nesting past the limit (or past 64 levels). The caller then reads the event
//! again with serde_json (`read_event` in the parent module), which names the problem or, for the
//! cases this reader leaves to it, succeeds: this reader only ever decides *that* an event is
//! well formed, never how an error reads. When it returns `Some`, the [`RawEvent`] is the one the
//! serde reader would give (the tests compare both on generated events and on mutations of them).
//!
//! Why: serde_json's reader, driven through the visitors, took 3.5 µs per event of a realistic
//! batch (one thread, about 155 MB/s of NDJSON), most of the CPU of an ingest request; the
//! visitor calls, the second scan of every `details` value and the key handling were spread
//! over the whole profile rather than in one place.
//!
//! Accepted JSON is exactly RFC 8259's (whitespace is space, tab, CR and LF; numbers
//! `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`; no control characters in strings; the escapes
//! `\" \\ \/ \b \f \n \r \t` and, inside `details` and `changes` values, `\uXXXX`), which is what
//! serde_json accepts for the same places.

use std::borrow::Cow;

use super::{push_change, RawEvent, StringFields, Text, CHANGE_FIELDS, EVENT_FIELDS};

/// Nesting the reader follows itself; deeper values go to the serde reader.
const DEPTH_MAX: usize = 64;

/// Reads one event object (the whole of `text`); `None` when the serde reader must decide.
///
/// `depth_max` is the validation limit on the nesting of `details` and `changes`.
pub(super) fn read_event(text: &str, depth_max: usize) -> Option<RawEvent<'_>> {
    let mut reader = Reader {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        spaces: 0,
    };
    let mut raw = RawEvent::default();
    let mut seen = 0u32;
    reader.object(|reader, key| {
        let index = once((EVENT_FIELDS.1)(key)?, &mut seen)?;
        match index {
            0 => raw.id = Some(reader.text()?),
            1 => raw.timestamp = Some(reader.text()?),
            2 => raw.tenant = Some(reader.text()?),
            3 => raw.project = Some(reader.text()?),
            4 => raw.actor = Some(reader.string_object()?),
            5 => raw.action = Some(reader.text()?),
            6 => raw.outcome = Some(reader.text()?),
            7 => raw.resource = Some(reader.string_object()?),
            8 => raw.changes = reader.changes(depth_max)?,
            _ => {
                let (details, compact) = reader.raw_value(depth_max)?;
                raw.details = Some(details);
                raw.details_compact = compact;
            }
        }
        Some(())
    })?;
    reader.skip_whitespace();
    (reader.pos == reader.bytes.len()).then_some(raw)
}

/// The index of the first byte at or after `at` that ends a run of plain string text (`"`, `\`
/// or a control character), or `bytes.len()`. Eight bytes at a time: the classic "has a zero
/// byte" test on `word ^ "…"`, `word ^ \…` and `word - 0x20…`, whose lowest flagged byte is
/// always exact (a false flag can only follow a true one).
fn string_end(bytes: &[u8], mut at: usize) -> usize {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGHS: u64 = ONES << 7;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let special = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (word.wrapping_sub(ONES * 0x20) & !word);
        let special = special & HIGHS;
        if special != 0 {
            return at + (special.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while at < bytes.len() && !matches!(bytes[at], b'"' | b'\\' | 0..=0x1f) {
        at += 1;
    }
    at
}

/// Marks field `index` as seen; `None` if it already was (a repeated field).
fn once(index: usize, seen: &mut u32) -> Option<usize> {
    if *seen & (1 << index) != 0 {
        return None;
    }
    *seen |= 1 << index;
    Some(index)
}

struct Reader<'de> {
    text: &'de str,
    bytes: &'de [u8],
    pos: usize,
    /// Whitespace bytes skipped so far (a raw value without any is already compact).
    spaces: usize,
}

impl<'de> Reader<'de> {
    fn skip_whitespace(&mut self) {
        let from = self.pos;
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
        self.spaces += self.pos - from;
    }

    /// The next byte after whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.bytes.get(self.pos).copied()
    }

    /// The next byte after whitespace, consumed.
    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    fn literal(&mut self, literal: &[u8]) -> Option<()> {
        let end = self.pos + literal.len();
        (self.bytes.get(self.pos..end)? == literal).then(|| self.pos = end)
    }

    /// Reads an object, calling `member` with each key, the reader placed at its value.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'de str) -> Option<()>) -> Option<()> {
        self.expect(b'{')?;
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(());
        }
        loop {
            let key = self.plain_key()?;
            self.expect(b':')?;
            member(self, key)?;
            match self.next()? {
                b',' => {}
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// A key without escapes (field names have none).
    fn plain_key(&mut self) -> Option<&'de str> {
        self.expect(b'"')?;
        let start = self.pos;
        let end = string_end(self.bytes, start);
        if *self.bytes.get(end)? != b'"' {
            return None;
        }
        self.pos = end + 1;
        self.text.get(start..end)
    }

    /// A string field's value: a string or `null`; any other type is the serde reader's to name.
    fn text(&mut self) -> Option<Text<'de>> {
        match self.peek()? {
            b'"' => {
                self.pos += 1;
                self.string().map(Text::String)
            }
            b'n' => self.literal(b"null").map(|()| Text::Null),
            _ => None,
        }
    }

    /// The rest of a string after its opening quote: borrowed unless it holds escapes.
    fn string(&mut self) -> Option<Cow<'de, str>> {
        let start = self.pos;
        let end = string_end(self.bytes, start);
        match *self.bytes.get(end)? {
            b'"' => {
                self.pos = end + 1;
                self.text.get(start..end).map(Cow::Borrowed)
            }
            b'\\' => {
                self.pos = end;
                self.escaped_string(start)
            }
            _ => None,
        }
    }

    /// [`Reader::string`] from the first backslash on: decodes the escapes; `\u` gives up.
    fn escaped_string(&mut self, start: usize) -> Option<Cow<'de, str>> {
        let mut value = String::with_capacity(self.pos - start + 16);
        let mut run = start;
        loop {
            let end = string_end(self.bytes, self.pos);
            value.push_str(self.text.get(run..end)?);
            match *self.bytes.get(end)? {
                b'"' => {
                    self.pos = end + 1;
                    return Some(Cow::Owned(value));
                }
                b'\\' => {
                    value.push(match *self.bytes.get(end + 1)? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        _ => return None,
                    });
                    self.pos = end + 2;
                    run = self.pos;
                }
                _ => return None,
            }
        }
    }

    /// `actor` or `resource`: an object of string fields.
    fn string_object<T: StringFields<'de>>(&mut self) -> Option<T> {
        let mut raw = T::default();
        let mut seen = 0u32;
        self.object(|reader, key| {
            let index = once((T::FIELDS.1)(key)?, &mut seen)?;
            raw.set(index, reader.text()?);
            Some(())
        })?;
        Some(raw)
    }

    /// `changes`: `null` (absent) or an array of change objects, as the compact text stored.
    fn changes(&mut self, depth_max: usize) -> Option<Option<String>> {
        match self.next()? {
            b'[' => {}
            b'n' => {
                self.pos -= 1;
                return self.literal(b"null").map(|()| None);
            }
            _ => return None,
        }
        let mut text = String::with_capacity(64);
        text.push('[');
        if self.peek()? == b']' {
            self.pos += 1;
            text.push(']');
            return Some(Some(text));
        }
        let mut index = 0;
        loop {
            let mut values: [Option<&'de str>; 3] = [None; 3];
            let mut seen = 0u32;
            let mut compact = true;
            self.object(|reader, key| {
                let field = once((CHANGE_FIELDS.1)(key)?, &mut seen)?;
                // The array is depth 1 and the item depth 2.
                let (value, value_compact) = reader.raw_value(depth_max.saturating_sub(2))?;
                values[field] = Some(value);
                compact &= value_compact;
                Some(())
            })?;
            push_change(&mut text, index, values, depth_max, compact).ok()?;
            index += 1;
            match self.next()? {
                b',' => {}
                b']' => break,
                _ => return None,
            }
        }
        text.push(']');
        Some(Some(text))
    }

    /// Any JSON value, checked, as its text and whether that text is compact (no whitespace
    /// outside strings); containers may nest `levels` deep (at most [`DEPTH_MAX`]).
    fn raw_value(&mut self, levels: usize) -> Option<(&'de str, bool)> {
        let levels = levels.min(DEPTH_MAX);
        // Whether each open container is an object.
        let mut objects = [false; DEPTH_MAX];
        let mut depth = 0;
        self.skip_whitespace();
        let (start, spaces) = (self.pos, self.spaces);
        loop {
            // A value.
            match self.next()? {
                open @ (b'{' | b'[') => {
                    if depth == levels {
                        return None;
                    }
                    let object = open == b'{';
                    let close = if object { b'}' } else { b']' };
                    if self.peek()? == close {
                        self.pos += 1;
                    } else {
                        objects[depth] = object;
                        depth += 1;
                        if object {
                            self.member_key()?;
                        }
                        continue;
                    }
                }
                b'"' => self.skip_string()?,
                b't' => self.literal(b"rue")?,
                b'f' => self.literal(b"alse")?,
                b'n' => self.literal(b"ull")?,
                b'-' => self.number(None)?,
                digit @ b'0'..=b'9' => self.number(Some(digit))?,
                _ => return None,
            }
            // After a value: close the containers it ends, or go on to the next element.
            loop {
                if depth == 0 {
                    let text = self.text.get(start..self.pos)?;
                    return Some((text, self.spaces == spaces));
                }
                let object = objects[depth - 1];
                match self.next()? {
                    b',' => {
                        if object {
                            self.member_key()?;
                        }
                        break;
                    }
                    b'}' if object => depth -= 1,
                    b']' if !object => depth -= 1,
                    _ => return None,
                }
            }
        }
    }

    /// An object member's key inside a raw value, and its colon.
    fn member_key(&mut self) -> Option<()> {
        self.expect(b'"')?;
        self.skip_string()?;
        self.expect(b':')
    }

    /// The rest of a string inside a raw value, after its opening quote.
    fn skip_string(&mut self) -> Option<()> {
        loop {
            let end = string_end(self.bytes, self.pos);
            match *self.bytes.get(end)? {
                b'"' => {
                    self.pos = end + 1;
                    return Some(());
                }
                b'\\' => match *self.bytes.get(end + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos = end + 2,
                    b'u' => {
                        let hex = self.bytes.get(end + 2..end + 6)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        self.pos = end + 6;
                    }
                    _ => return None,
                },
                _ => return None,
            }
        }
    }

    /// The rest of a number: `first` is its first digit, already read, or `None` after a `-`.
    fn number(&mut self, first: Option<u8>) -> Option<()> {
        let first = match first {
            Some(digit) => digit,
            None => {
                let digit = *self.bytes.get(self.pos)?;
                self.pos += 1;
                digit
            }
        };
        match first {
            b'0' => {
                if self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
                    return None;
                }
            }
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if !self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
                return None;
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            if !self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
                return None;
            }
            self.digits();
        }
        Some(())
    }

    fn digits(&mut self) {
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::{
        read_event as read_event_serde, validate, RetentionPolicy, ValidationContext,
    };
    use super::*;

    const DEPTH: usize = 32;

    /// Realistic events as the load generator sends them (one JSON object each).
    fn generated(count: usize) -> Vec<String> {
        let mut generator = auditlog_gen::Generator::new(auditlog_gen::GenConfig::default());
        let mut ndjson = Vec::new();
        auditlog_gen::write_ndjson(&generator.fill(count), &mut ndjson);
        let ndjson = String::from_utf8(ndjson).expect("generated JSON is UTF-8");
        ndjson.lines().map(str::to_owned).collect()
    }

    /// The fast reader's answer, checked against the serde reader's when it has one: the same
    /// fields, and the same validated event (or validation error) from them.
    fn agree(text: &str) -> Option<bool> {
        let fast = read_event(text, DEPTH)?;
        let read_serde = || match read_event_serde(text, DEPTH) {
            Ok(serde) => serde,
            Err(failure) => panic!(
                "fast reader accepted what serde refuses ({}): {text}",
                failure.message
            ),
        };
        let serde = read_serde();
        assert!(!serde.details_compact);
        let fast_as_serde = RawEvent {
            details_compact: false,
            ..fast
        };
        assert_eq!(fast_as_serde, serde, "{text}");
        let (fast, serde) = (read_event(text, DEPTH)?, read_serde());
        // Far from every timestamp, so that the generated events validate.
        let retention = RetentionPolicy::new(u32::MAX);
        let mut ctx = ValidationContext::new(i64::MAX / 2, &retention);
        ctx.details_depth_max = DEPTH;
        let from_fast = validate(fast, &ctx);
        let from_serde = validate(serde, &ctx);
        assert_eq!(from_fast, from_serde, "{text}");
        Some(from_fast.is_ok())
    }

    #[test]
    fn generated_events_are_read_fast_and_as_serde_reads_them() {
        for text in generated(5_000) {
            assert_eq!(agree(&text), Some(true), "fell back or refused: {text}");
        }
    }

    #[test]
    fn well_formed_variants_are_read_fast() {
        let cases = [
            // Whitespace everywhere JSON allows it.
            " {\t\"tenant\" :\r\n\"a\" , \"actor\" : { \"id\" : \"u\" } , \"action\":\"x\",\"resource\":{\"type\":\"pod\"} } ",
            // Simple escapes in string fields, nulls, empty strings, empty objects.
            r#"{"tenant":"a","actor":{"id":"u\"1\\\/\b\f\n\r\t","email":null,"ip":""},"action":"x","resource":{}}"#,
            // Non-ASCII text, every JSON type inside details, numbers in every spelling.
            r#"{"tenant":"a","details":{"é":"ünï","n":[0,-0,1.5,-2e10,3E+2,4.25e-3,null,true,false,{},[]],"s":"\u00e9\ud800"}}"#,
            // changes: null, empty, items with old/new missing, any order.
            r#"{"tenant":"a","changes":null}"#,
            r#"{"tenant":"a","changes":[]}"#,
            r#"{"tenant":"a","changes":[{"new":{"a" : [1, 2]},"field":"f"},{"field":"g","old":null}]}"#,
            // A whole valid event with whitespace inside details and changes (compacted).
            r#"{"tenant":"a","actor":{"email":"e@x"},"action":"update","resource":{"type":"vm"},"changes":[{"field":"f","old":[ 1 ],"new":"a b"}],"details":{ "k" : { "l" : [ 1 , "x y" ] } }}"#,
            // details that validation refuses (not an object) are still read.
            r#"{"tenant":"a","details":1}"#,
            r#"{"details":"x"}"#,
            "{}",
        ];
        for text in cases {
            assert!(agree(text).is_some(), "fell back on {text}");
        }
    }

    #[test]
    fn everything_else_falls_back_to_the_serde_reader() {
        let cases = [
            // Malformed JSON.
            r#"{"tenant":"a""#,
            r#"{"tenant":"a",}"#,
            r#"{"tenant":"a"} x"#,
            r#"{"tenant":"a" "action":"b"}"#,
            r#"{"details":{"a":01}}"#,
            r#"{"details":{"a":1.}}"#,
            r#"{"details":{"a":-}}"#,
            r#"{"details":{"a":1e}}"#,
            r#"{"details":{"a":.5}}"#,
            r#"{"details":{"a":tru}}"#,
            r#"{"details":{"a" 1}}"#,
            r#"{"details":{1:1}}"#,
            r#"{"details":[1,]}"#,
            r#"{"details":{"a":"\x"}}"#,
            r#"{"details":{"a":"\u12g4"}}"#,
            "{\"details\":{\"a\":\"tab\there\"}}",
            "{\"tenant\":\"new\nline\"}",
            // Unknown, repeated and escaped keys (serde decodes the escape, so it decides).
            r#"{"tenant":"a","extra":1}"#,
            r#"{"tenant":"a","tenant":"b"}"#,
            r#"{"actor":{"id":"a","id":"b"}}"#,
            r#"{"ten\u0061nt":"a"}"#,
            // Wrong types.
            r#"{"tenant":1}"#,
            r#"{"actor":null}"#,
            r#"{"actor":{"id":true}}"#,
            r#"{"resource":[]}"#,
            r#"{"changes":{}}"#,
            r#"{"changes":[1]}"#,
            r#"{"changes":[{"old":1}]}"#,
            r#"{"changes":[{"field":2}]}"#,
            // A \u escape in a string field, which serde decodes.
            r#"{"tenant":"\u0061"}"#,
            // Nesting past the limit (32 here, counting details itself).
            &format!(r#"{{"details":{}{}}}"#, "[".repeat(33), "]".repeat(33)),
            "[]",
            "",
        ];
        for text in cases {
            assert!(agree(text).is_none(), "read fast: {text}");
        }
        // The limit itself is fine.
        let deepest = format!(r#"{{"details":{}{}}}"#, "[".repeat(32), "]".repeat(32));
        assert!(agree(&deepest).is_some());
    }

    #[test]
    fn string_end_finds_the_first_quote_backslash_or_control() {
        let reference = |bytes: &[u8], at: usize| {
            (at..bytes.len())
                .find(|&index| matches!(bytes[index], b'"' | b'\\' | 0..=0x1f))
                .unwrap_or(bytes.len())
        };
        let alphabet = b"a \"\\\x00\x1f\x20\x7f\xc3\xa9!#[]";
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for length in 0..40 {
            for _ in 0..200 {
                let bytes: Vec<u8> = (0..length)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        // Mostly plain bytes, so that runs of every length occur.
                        let pick = (state >> 33) as usize % (alphabet.len() * 4);
                        alphabet.get(pick).copied().unwrap_or(b'a')
                    })
                    .collect();
                for at in 0..=length {
                    assert_eq!(
                        string_end(&bytes, at),
                        reference(&bytes, at),
                        "{bytes:?} from {at}"
                    );
                }
            }
        }
    }

    /// Bytes that make or break JSON, for mutations.
    const INTERESTING: &[u8] = b"\"\\{}[],: \n\t0123456789.eE+-ntfaxu/\x01";

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3_000))]

        /// Mutated events: whatever the fast reader accepts, serde reads the same way.
        #[test]
        fn mutated_events_are_read_as_serde_reads_them(
            pick in 0usize..200,
            edits in proptest::collection::vec((any::<usize>(), 0u8..3, any::<usize>()), 1..4),
        ) {
            thread_local! {
                static EVENTS: Vec<String> = generated(200);
            }
            let mut bytes = EVENTS.with(|events| events[pick].clone().into_bytes());
            for (position, edit, byte) in edits {
                let position = position % (bytes.len() + 1);
                let byte = INTERESTING[byte % INTERESTING.len()];
                match edit {
                    0 => bytes.insert(position, byte),
                    1 if position < bytes.len() => bytes[position] = byte,
                    _ if position < bytes.len() => { bytes.remove(position); }
                    _ => {}
                }
            }
            if let Ok(text) = std::str::from_utf8(&bytes) {
                agree(text);
            }
        }
    }
}
