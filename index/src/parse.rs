//! The query language of the search bar and of the API's `q` parameter.
//!
//! ```text
//! action:delete resource.type:pod actor:alice@example.com -outcome:failure "llama finetune" ip:203.0.113.7
//! ```
//!
//! # Grammar
//!
//! ```text
//! query   = space* [ clause { space+ clause } ] space*
//! clause  = [ "-" ] ( filter | text )
//! filter  = field ":" value              field names are case-insensitive
//! field   = letter { letter | digit | "." | "_" }
//! value   = quoted | bare                  compared exactly, never tokenized
//! text    = ( quoted | bare ) [ "*" ]
//! quoted  = '"' { character other than '"' and '\' | '\"' | '\\' } '"'
//! bare    = one or more characters other than spaces and '"'
//! ```
//!
//! - `field:value` keeps events whose field is `value`; the same field given again widens it
//!   (any of the values): `action:create action:delete`. Different fields narrow (AND).
//! - `-field:value` drops events whose field is `value` (`-outcome:failure`); repeated, it drops
//!   each value. An event without the field is kept.
//! - Anything else is full text (see [`crate::text`]): a bare word (`llama`, `llama-finetune`,
//!   `alice@example.com`), a phrase in double quotes (`"scale up"`), a prefix (`llam*`,
//!   `"llama fine"*`), `-word` or `-"phrase"` to exclude. All terms must match.
//! - A bare clause `name:...` whose `name` looks like a field name is a filter; to search text
//!   that contains a colon, quote it (`"urn:x"`). Text that does not start like a field name
//!   (`12:30`, `2001:db8::1`) is a word.
//! - `OR`, `AND` and `NOT` are refused rather than silently searched as words.
//!
//! Fields and their aliases:
//!
//! | field | aliases | value |
//! | --- | --- | --- |
//! | `tenant` | | tenant name (narrows the caller's scope, never widens it; through the HTTP API a tenant the token may not read is a 403, as for the `tenant` parameter) |
//! | `project` | | project |
//! | `action` | | action (`create`, `login`, ...) |
//! | `outcome` | | `success` or `failure` |
//! | `resource.type` | `type` | resource type (`pod`, `vm`, ...) |
//! | `resource.id` | `resource` | resource id |
//! | `resource.name` | `name` | resource name |
//! | `actor` | `user` | actor id or actor email |
//! | `actor.id` | | actor id |
//! | `actor.email` | `email` | actor email |
//! | `actor.ip` | `ip` | IP address as stored (normalized text form) |
//! | `actor.type` | | `user`, `api_token` or `system` |
//! | `since` | | a duration back from now: `30m`, `24h`, `7d`, `4w` (units `s m h d w`) |
//! | `from` | | first time included: RFC 3339 (`2026-11-27T01:20:32Z`) or a UTC date (`2026-11-27`) |
//! | `to` | | first time excluded, same forms as `from` |
//!
//! `since` and `from` both set the start: at most one of them, once; `to` at most once; none of
//! the three can be negated.
//!
//! # Errors
//!
//! A [`ParseError`] gives the byte offset (0-based) where the problem starts, what was expected
//! and what was found: `at position 17: expected a value after "action:", found end of input`.
//!
//! # Examples
//!
//! | query | meaning |
//! | --- | --- |
//! | `action:delete type:pod` | pod deletions |
//! | `action:create action:delete` | creations or deletions |
//! | `user:alice@example.com -outcome:failure` | alice's successful actions (by id or email) |
//! | `llama-finetune since:24h` | the last day's events mentioning `llama-finetune` |
//! | `"scale up" -action:login` | text "scale up", except logins |
//! | `llam* from:2026-11-01 to:2026-12-01` | words starting with `llam`, in November 2026 |
//! | `ip:2001:db8::1` | events from that address (values may contain colons) |
//!
//! Limits: a query is at most [`QUERY_BYTES_MAX`] bytes, a value at most
//! [`VALUE_BYTES_MAX`] bytes, at most [`TEXT_TERMS_MAX`] text terms and
//! [`FIELD_VALUES_MAX`] values per field.

use auditlog_engine::event::time::{parse_rfc3339_us, US_PER_SECOND};

use crate::query::{
    Field, Filters, Query, Scope, TextKind, TextTerm, FIELD_VALUES_MAX, TEXT_TERMS_MAX,
    VALUE_BYTES_MAX,
};
use crate::tokenize::{atoms, normalize};

/// Longest query text, in bytes.
pub const QUERY_BYTES_MAX: usize = 4096;

/// Why a query text does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at position {position}: expected {expected}, found {found}")]
pub struct ParseError {
    /// Byte offset in the query text, 0-based.
    pub position: usize,
    pub expected: String,
    pub found: String,
}

/// What a query text says: everything of a [`Query`] but the scope, order, limit and cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedQuery {
    pub filters: Filters,
    pub text: Vec<TextTerm>,
    /// From `from:`.
    pub from_us: Option<i64>,
    /// From `to:`.
    pub to_us: Option<i64>,
    /// From `since:`: how far back from "now", in µs.
    pub since_us: Option<i64>,
}

impl ParsedQuery {
    /// A query of `tenants` with this text's filters, terms and time range (`since` counted back
    /// from `now_us`), newest first, default limit.
    pub fn into_query(self, tenants: Scope, now_us: i64) -> Query {
        let mut query = Query::new(tenants);
        self.apply(&mut query, now_us);
        query
    }

    /// Adds this text's filters and terms to `query` and narrows its time range.
    pub fn apply(self, query: &mut Query, now_us: i64) {
        for (field, filter) in self.filters.iter() {
            for value in &filter.any_of {
                query.filters.include(field, value.clone());
            }
            for value in &filter.none_of {
                query.filters.exclude(field, value.clone());
            }
        }
        query.text.extend(self.text);
        let since = self.since_us.map(|since| now_us.saturating_sub(since));
        for from in [self.from_us, since].into_iter().flatten() {
            query.from_us = Some(query.from_us.map_or(from, |current| current.max(from)));
        }
        if let Some(to) = self.to_us {
            query.to_us = Some(query.to_us.map_or(to, |current| current.min(to)));
        }
    }
}

/// Parses a query text.
pub fn parse(input: &str) -> Result<ParsedQuery, ParseError> {
    if input.len() > QUERY_BYTES_MAX {
        return Err(ParseError {
            position: QUERY_BYTES_MAX,
            expected: format!("a query of at most {QUERY_BYTES_MAX} bytes"),
            found: format!("{} bytes", input.len()),
        });
    }
    let mut parser = Parser {
        input,
        position: 0,
        out: ParsedQuery::default(),
    };
    parser.query()?;
    Ok(parser.out)
}

/// Fields of time, which are not [`Field`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeField {
    Since,
    From,
    To,
}

impl TimeField {
    fn from_name(name: &str) -> Option<TimeField> {
        match name {
            "since" => Some(TimeField::Since),
            "from" => Some(TimeField::From),
            "to" => Some(TimeField::To),
            _ => None,
        }
    }
}

/// A value or text as written: its unquoted text, where it starts, whether it was quoted and
/// whether a `*` followed it.
struct Literal {
    text: String,
    position: usize,
    quoted: bool,
    star: bool,
}

struct Parser<'a> {
    input: &'a str,
    position: usize,
    out: ParsedQuery,
}

fn known_fields() -> String {
    let mut names: Vec<String> = Field::ALL
        .iter()
        .map(|field| {
            let mut name = field.name().to_string();
            for alias in field.aliases() {
                name.push_str(" or ");
                name.push_str(alias);
            }
            name
        })
        .collect();
    names.extend(["since", "from", "to"].map(String::from));
    names.join(", ")
}

fn is_field_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<char> {
        self.input[self.position..].chars().next()
    }

    fn error(&self, position: usize, expected: impl Into<String>) -> ParseError {
        ParseError {
            position,
            expected: expected.into(),
            found: self.found_at(position),
        }
    }

    /// How the text at `position` reads in an error: `end of input`, `a space`, `a quote`, or
    /// the clause that starts there, quoted.
    fn found_at(&self, position: usize) -> String {
        let rest = &self.input[position..];
        match rest.chars().next() {
            None => "end of input".into(),
            Some(c) if c.is_whitespace() => "a space".into(),
            Some('"') => "a quote".into(),
            Some(_) => {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                let mut token: String = rest[..end].chars().take(40).collect();
                if token.len() < end {
                    token.push('…');
                }
                format!("{token:?}")
            }
        }
    }

    fn skip_spaces(&mut self) {
        let rest = &self.input[self.position..];
        let trimmed = rest.trim_start();
        self.position += rest.len() - trimmed.len();
    }

    fn at_clause_end(&self) -> bool {
        self.peek().is_none_or(char::is_whitespace)
    }

    fn query(&mut self) -> Result<(), ParseError> {
        loop {
            self.skip_spaces();
            if self.peek().is_none() {
                return Ok(());
            }
            self.clause()?;
            if !self.at_clause_end() {
                let expected = if self.peek() == Some('"') {
                    "a space before a quote"
                } else {
                    "a space after the closing quote"
                };
                return Err(self.error(self.position, expected));
            }
        }
    }

    fn clause(&mut self) -> Result<(), ParseError> {
        let start = self.position;
        let negated = self.peek() == Some('-');
        if negated {
            self.position += 1;
            if self.at_clause_end() {
                return Err(self.error(self.position, "a field:value, word or phrase after \"-\""));
            }
        }
        let body = self.position;
        if self.peek() != Some('"') {
            let rest = &self.input[body..];
            let name_end = rest
                .find(|c: char| c == ':' || c == '"' || c.is_whitespace())
                .unwrap_or(rest.len());
            let name = &rest[..name_end];
            if rest[name_end..].starts_with(':') && is_field_name(name) {
                let lower = name.to_ascii_lowercase();
                self.position = body + name_end + 1;
                if let Some(time) = TimeField::from_name(&lower) {
                    if negated {
                        return Err(self.error(
                            start,
                            "a filter on a field to negate (since, from and to cannot be negated)",
                        ));
                    }
                    return self.time_clause(time, name, start);
                }
                let Some(field) = Field::from_name(&lower) else {
                    return Err(ParseError {
                        position: body,
                        expected: format!(
                            "a known field ({}; to search text with a colon, put it in quotes)",
                            known_fields()
                        ),
                        found: format!("{name:?}"),
                    });
                };
                return self.filter_clause(field, name, negated);
            }
        }
        self.text_clause(negated, start)
    }

    /// A quoted or bare literal at the current position; `after` names what it follows, for
    /// the error when there is none.
    fn literal(&mut self, after: Option<&str>) -> Result<Literal, ParseError> {
        let position = self.position;
        let missing = |parser: &Self| match after {
            Some(after) => parser.error(position, format!("a value after \"{after}\"")),
            None => parser.error(position, "a word or phrase"),
        };
        if self.peek() == Some('"') {
            let text = self.quoted()?;
            if text.is_empty() && after.is_some() {
                let mut error = missing(self);
                error.found = "empty quotes".into();
                return Err(error);
            }
            let star = self.peek() == Some('*');
            if star {
                self.position += 1;
            }
            return Ok(Literal {
                text,
                position,
                quoted: true,
                star,
            });
        }
        let rest = &self.input[position..];
        let end = rest
            .find(|c: char| c == '"' || c.is_whitespace())
            .unwrap_or(rest.len());
        if end == 0 {
            return Err(missing(self));
        }
        self.position += end;
        let bare = &rest[..end];
        let (text, star) = match bare.strip_suffix('*') {
            Some(stem) => (stem, true),
            None => (bare, false),
        };
        Ok(Literal {
            text: text.to_string(),
            position,
            quoted: false,
            star,
        })
    }

    /// A quoted string at the current position (which holds `"`), unescaped.
    fn quoted(&mut self) -> Result<String, ParseError> {
        let open = self.position;
        let mut text = String::new();
        let mut chars = self.input[open + 1..].char_indices();
        while let Some((offset, c)) = chars.next() {
            let at = open + 1 + offset;
            match c {
                '"' => {
                    self.position = at + 1;
                    return Ok(text);
                }
                '\\' => match chars.next() {
                    Some((_, escaped @ ('"' | '\\'))) => text.push(escaped),
                    Some((_, other)) => {
                        return Err(ParseError {
                            position: at,
                            expected: r#"\" or \\ after a backslash in quotes"#.into(),
                            found: format!("{:?}", format!("\\{other}")),
                        })
                    }
                    None => break,
                },
                _ => text.push(c),
            }
        }
        Err(self.error(
            self.input.len(),
            format!("a closing quote for the quote at position {open}"),
        ))
    }

    fn check_length(&self, literal: &Literal) -> Result<(), ParseError> {
        if literal.text.len() > VALUE_BYTES_MAX {
            return Err(ParseError {
                position: literal.position,
                expected: format!("a value of at most {VALUE_BYTES_MAX} bytes"),
                found: format!("{} bytes", literal.text.len()),
            });
        }
        Ok(())
    }

    fn filter_clause(&mut self, field: Field, name: &str, negated: bool) -> Result<(), ParseError> {
        let literal = self.literal(Some(&format!("{name}:")))?;
        self.check_length(&literal)?;
        if literal.star {
            return Err(self.error(
                literal.position,
                "an exact value (prefix search with * is for text; quote a value to match a literal *)",
            ));
        }
        if let Some(allowed) = field.allowed_values() {
            if !allowed.contains(&literal.text.as_str()) {
                let (last, rest) = allowed.split_last().expect("non-empty");
                return Err(ParseError {
                    position: literal.position,
                    expected: format!("{} or {last} after \"{name}:\"", rest.join(", ")),
                    found: format!("{:?}", literal.text),
                });
            }
        }
        let count = self
            .out
            .filters
            .get(field)
            .map_or(0, |f| f.any_of.len() + f.none_of.len());
        if count >= FIELD_VALUES_MAX {
            return Err(self.error(
                literal.position,
                format!("at most {FIELD_VALUES_MAX} values for {field}"),
            ));
        }
        if negated {
            self.out.filters.exclude(field, literal.text);
        } else {
            self.out.filters.include(field, literal.text);
        }
        Ok(())
    }

    fn time_clause(&mut self, time: TimeField, name: &str, start: usize) -> Result<(), ParseError> {
        let repeated = match time {
            TimeField::Since | TimeField::From => {
                self.out.since_us.is_some() || self.out.from_us.is_some()
            }
            TimeField::To => self.out.to_us.is_some(),
        };
        if repeated {
            let expected = match time {
                TimeField::To => "at most one to:",
                _ => "at most one since: or from:",
            };
            return Err(self.error(start, expected));
        }
        let literal = self.literal(Some(&format!("{name}:")))?;
        let invalid = |expected: &str| ParseError {
            position: literal.position,
            expected: expected.into(),
            found: format!("{:?}", literal.text),
        };
        match time {
            TimeField::Since => {
                let since = parse_duration_us(&literal.text)
                    .filter(|_| !literal.star)
                    .ok_or_else(|| invalid("a duration like 30m, 24h, 7d or 4w"))?;
                self.out.since_us = Some(since);
            }
            TimeField::From | TimeField::To => {
                let at = parse_time_us(&literal.text)
                    .filter(|_| !literal.star)
                    .ok_or_else(|| {
                        invalid(
                            "an RFC 3339 time like 2026-11-27T01:20:32Z or a date like 2026-11-27",
                        )
                    })?;
                if time == TimeField::From {
                    self.out.from_us = Some(at);
                } else {
                    self.out.to_us = Some(at);
                }
            }
        }
        Ok(())
    }

    fn text_clause(&mut self, negated: bool, start: usize) -> Result<(), ParseError> {
        let literal = self.literal(None)?;
        self.check_length(&literal)?;
        if !literal.quoted && !literal.star && matches!(literal.text.as_str(), "OR" | "AND" | "NOT")
        {
            return Err(self.error(
                literal.position,
                "a field:value, word or phrase (OR, AND and NOT are not operators here: repeat a \
                 field for any of its values, put - before a clause to exclude it)",
            ));
        }
        if atoms(&normalize(&literal.text)).next().is_none() {
            let mut error = self.error(literal.position, "a word with a letter or digit");
            if literal.quoted {
                error.found = if literal.text.is_empty() {
                    "empty quotes".into()
                } else {
                    format!("{:?} in quotes", literal.text)
                };
            }
            return Err(error);
        }
        if self.out.text.len() >= TEXT_TERMS_MAX {
            return Err(self.error(start, format!("at most {TEXT_TERMS_MAX} text terms")));
        }
        let kind = match (literal.star, literal.quoted) {
            (true, _) => TextKind::Prefix,
            (false, true) => TextKind::Phrase,
            (false, false) => TextKind::Word,
        };
        self.out.text.push(TextTerm {
            kind,
            text: literal.text,
            negated,
        });
        Ok(())
    }
}

/// `30m`, `24h`, `7d`, `4w`, `90s` in µs (the HTTP API's `since` and `bucket` use it too, so
/// that they and `q` take the same durations).
///
/// ```
/// use auditlog_index::parse::parse_duration_us;
/// assert_eq!(parse_duration_us("90s"), Some(90_000_000));
/// assert_eq!(parse_duration_us("1é"), None);
/// ```
pub fn parse_duration_us(text: &str) -> Option<i64> {
    let unit_at = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(unit_at);
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    let count: i64 = digits.parse().ok()?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    count.checked_mul(seconds)?.checked_mul(US_PER_SECOND)
}

/// RFC 3339 with offset, or `YYYY-MM-DD` (midnight UTC); the HTTP API's `from` and `to` use it
/// too. Stored timestamps are whole microseconds, and a time between two (more than six
/// digits of fraction) is the next one: as a bound, `from` then takes no event before it and
/// `to` leaves out none before it (dropping the digits, as the timestamp parser does, would
/// do both).
///
/// ```
/// use auditlog_index::parse::parse_time_us;
/// assert_eq!(parse_time_us("1970-01-02"), Some(86_400_000_000));
/// assert_eq!(parse_time_us("1970-01-02T00:00:00Z"), Some(86_400_000_000));
/// assert_eq!(parse_time_us("1970-01-02T00:00:00.0000001Z"), Some(86_400_000_001));
/// assert_eq!(parse_time_us("1970-01-02T00:00:00.0000010Z"), Some(86_400_000_001));
/// ```
pub fn parse_time_us(text: &str) -> Option<i64> {
    let is_date = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    if is_date {
        return parse_rfc3339_us(&format!("{text}T00:00:00Z")).ok();
    }
    let us = parse_rfc3339_us(text).ok()?;
    us.checked_add(i64::from(finer_than_micros(text)))
}

/// Whether an RFC 3339 `text` has a non-zero digit past the sixth of its seconds' fraction.
fn finer_than_micros(text: &str) -> bool {
    let Some(dot) = text.find('.') else {
        return false;
    };
    text[dot + 1..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .skip(6)
        .any(|digit| digit != b'0')
}
