//! The query model: what a caller may ask, independent of how it is written (the query language
//! in [`crate::parse`](mod@crate::parse), or the API's structured parameters) and of how it is answered
//! ([`crate::exec`]).
//!
//! A [`Query`] selects events by:
//!
//! - **scope** ([`Scope`]): the tenants the caller may read. It comes from the credential, never
//!   from the caller's text: the executor looks at no other tenant whatever the filters say (a
//!   `tenant:` filter can only narrow the scope);
//! - **time**: `from_us <= timestamp < to_us`, either end open;
//! - **filters** ([`Filters`]): per [`Field`], an any-of set (the event's value is one of them)
//!   and a none-of set (it is none of them); fields combine with AND. An event without a value
//!   for a field fails that field's any-of and passes its none-of. [`Field::Actor`] matches
//!   `actor.id` or `actor.email`. Filters compare exact text, never tokens;
//! - **text** ([`TextTerm`]): every term must match (a negated one must not) in one of the text
//!   fields, see [`crate::text`].
//!
//! Results are ordered by `(timestamp, seq)`, descending for [`Order::NewestFirst`]. `seq` is
//! unique, so the order is total and a [`Cursor`] (the last row's `(timestamp, seq)`) resumes
//! exactly: no row is repeated or skipped, whatever was ingested, sealed or merged in between.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use auditlog_engine::event::StoredEvent;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Most rows one page may hold.
pub const LIMIT_MAX: usize = 1000;
/// Rows per page when the caller says nothing.
pub const LIMIT_DEFAULT: usize = 50;
/// Most text terms in one query.
pub const TEXT_TERMS_MAX: usize = 32;
/// Most values in one field's any-of plus none-of sets.
pub const FIELD_VALUES_MAX: usize = 256;
/// Longest filter value or text term, in bytes.
pub const VALUE_BYTES_MAX: usize = 1024;

/// The tenants a caller may read: a non-empty set of tenant names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct Scope(BTreeSet<String>);

impl Scope {
    /// A scope of these tenants; [`Error::EmptyScope`] when there are none.
    pub fn new<I, S>(tenants: I) -> Result<Scope>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let tenants: BTreeSet<String> = tenants.into_iter().map(Into::into).collect();
        if tenants.is_empty() {
            return Err(Error::EmptyScope);
        }
        Ok(Scope(tenants))
    }

    /// A scope of one tenant.
    pub fn one(tenant: impl Into<String>) -> Scope {
        Scope(BTreeSet::from([tenant.into()]))
    }

    pub fn contains(&self, tenant: &str) -> bool {
        self.0.contains(tenant)
    }

    /// The tenants, in name order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.0.iter().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a scope names at least one tenant.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TryFrom<Vec<String>> for Scope {
    type Error = Error;
    fn try_from(tenants: Vec<String>) -> Result<Scope> {
        Scope::new(tenants)
    }
}

impl From<Scope> for Vec<String> {
    fn from(scope: Scope) -> Vec<String> {
        scope.0.into_iter().collect()
    }
}

/// A field that filters and facets work on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum Field {
    Tenant,
    Project,
    Action,
    Outcome,
    ResourceType,
    ResourceId,
    ResourceName,
    /// `actor.id` or `actor.email`: a filter matches either; a facet counts the email when the
    /// event has one, else the id.
    Actor,
    ActorId,
    ActorEmail,
    ActorIp,
    ActorType,
}

impl Field {
    pub const ALL: [Field; 12] = [
        Field::Tenant,
        Field::Project,
        Field::Action,
        Field::Outcome,
        Field::ResourceType,
        Field::ResourceId,
        Field::ResourceName,
        Field::Actor,
        Field::ActorId,
        Field::ActorEmail,
        Field::ActorIp,
        Field::ActorType,
    ];

    /// The canonical name (`resource.type`, `actor.ip`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Field::Tenant => "tenant",
            Field::Project => "project",
            Field::Action => "action",
            Field::Outcome => "outcome",
            Field::ResourceType => "resource.type",
            Field::ResourceId => "resource.id",
            Field::ResourceName => "resource.name",
            Field::Actor => "actor",
            Field::ActorId => "actor.id",
            Field::ActorEmail => "actor.email",
            Field::ActorIp => "actor.ip",
            Field::ActorType => "actor.type",
        }
    }

    /// Other names the query language accepts for the field.
    pub fn aliases(self) -> &'static [&'static str] {
        match self {
            Field::ResourceType => &["type"],
            Field::ResourceId => &["resource"],
            Field::ResourceName => &["name"],
            Field::Actor => &["user"],
            Field::ActorEmail => &["email"],
            Field::ActorIp => &["ip"],
            _ => &[],
        }
    }

    /// The field of a canonical name or alias (lowercase).
    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL
            .into_iter()
            .find(|field| field.name() == name || field.aliases().contains(&name))
    }

    /// The values that exist for an enum field (`outcome`, `actor.type`); `None` for text fields.
    pub fn allowed_values(self) -> Option<&'static [&'static str]> {
        match self {
            Field::Outcome => Some(&["success", "failure"]),
            Field::ActorType => Some(&["user", "api_token", "system"]),
            _ => None,
        }
    }

    /// The event's values for this field: one, or two for [`Field::Actor`] (id, email).
    pub fn values_of(self, event: &StoredEvent) -> [Option<&str>; 2] {
        let e = &event.event;
        fn one(value: Option<&str>) -> [Option<&str>; 2] {
            [value, None]
        }
        match self {
            Field::Tenant => one(Some(e.tenant.as_str())),
            Field::Project => one(e.project.as_deref()),
            Field::Action => one(Some(e.action.as_str())),
            Field::Outcome => one(Some(e.outcome.as_str())),
            Field::ResourceType => one(Some(e.resource.kind.as_str())),
            Field::ResourceId => one(e.resource.id.as_deref()),
            Field::ResourceName => one(e.resource.name.as_deref()),
            Field::Actor => [e.actor.id.as_deref(), e.actor.email.as_deref()],
            Field::ActorId => one(e.actor.id.as_deref()),
            Field::ActorEmail => one(e.actor.email.as_deref()),
            Field::ActorIp => one(e.actor.ip.as_deref()),
            Field::ActorType => one(Some(e.actor.kind.as_str())),
        }
    }

    /// The value a facet over this field counts the event under, if any.
    pub fn facet_value_of(self, event: &StoredEvent) -> Option<&str> {
        match self {
            Field::Actor => event
                .event
                .actor
                .email
                .as_deref()
                .or(event.event.actor.id.as_deref()),
            _ => self.values_of(event)[0],
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<Field> for &'static str {
    fn from(field: Field) -> &'static str {
        field.name()
    }
}

impl TryFrom<String> for Field {
    type Error = Error;
    fn try_from(name: String) -> Result<Field> {
        Field::from_name(&name).ok_or(Error::UnknownField { name })
    }
}

/// The any-of and none-of sets of one field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldFilter {
    /// When non-empty, the event's value must be one of these.
    pub any_of: BTreeSet<String>,
    /// The event's value must be none of these.
    pub none_of: BTreeSet<String>,
}

impl FieldFilter {
    /// True when the filter constrains nothing.
    pub fn is_empty(&self) -> bool {
        self.any_of.is_empty() && self.none_of.is_empty()
    }

    /// Whether an event whose values for the field are `values` passes (absent values are
    /// `None`; [`Field::Actor`] passes two).
    pub fn accepts(&self, values: [Option<&str>; 2]) -> bool {
        let present = || values.into_iter().flatten();
        (self.any_of.is_empty() || present().any(|v| self.any_of.contains(v)))
            && !present().any(|v| self.none_of.contains(v))
    }
}

/// Filters of a query: at most one [`FieldFilter`] per field; fields combine with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filters(BTreeMap<Field, FieldFilter>);

impl Filters {
    /// Adds `value` to the field's any-of set.
    pub fn include(&mut self, field: Field, value: impl Into<String>) -> &mut Self {
        self.0.entry(field).or_default().any_of.insert(value.into());
        self
    }

    /// Adds `value` to the field's none-of set.
    pub fn exclude(&mut self, field: Field, value: impl Into<String>) -> &mut Self {
        self.0
            .entry(field)
            .or_default()
            .none_of
            .insert(value.into());
        self
    }

    pub fn get(&self, field: Field) -> Option<&FieldFilter> {
        self.0.get(&field).filter(|filter| !filter.is_empty())
    }

    /// The fields with a non-empty filter, in [`Field`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Field, &FieldFilter)> + '_ {
        self.0
            .iter()
            .filter(|(_, filter)| !filter.is_empty())
            .map(|(field, filter)| (*field, filter))
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// Whether the event passes every filter (the scope is not checked here).
    pub fn accepts(&self, event: &StoredEvent) -> bool {
        self.iter()
            .all(|(field, filter)| filter.accepts(field.values_of(event)))
    }
}

/// How a [`TextTerm`] matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextKind {
    /// A bare word: its atoms at consecutive positions (`llama-finetune` finds `llama-finetune-3`).
    Word,
    /// A quoted phrase: the atoms of all its words at consecutive positions.
    Phrase,
    /// A word or phrase whose last atom may be the prefix of a longer one (`llam*`).
    Prefix,
}

/// One full-text term.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TextTerm {
    pub kind: TextKind,
    /// The text as written (without quotes or `*`); it is tokenized when matched.
    pub text: String,
    /// The event must not match the term.
    #[serde(default)]
    pub negated: bool,
}

impl TextTerm {
    pub fn word(text: impl Into<String>) -> TextTerm {
        TextTerm {
            kind: TextKind::Word,
            text: text.into(),
            negated: false,
        }
    }

    pub fn phrase(text: impl Into<String>) -> TextTerm {
        TextTerm {
            kind: TextKind::Phrase,
            text: text.into(),
            negated: false,
        }
    }

    pub fn prefix(text: impl Into<String>) -> TextTerm {
        TextTerm {
            kind: TextKind::Prefix,
            text: text.into(),
            negated: false,
        }
    }

    /// The same term, negated.
    pub fn negate(mut self) -> TextTerm {
        self.negated = !self.negated;
        self
    }
}

/// Row order of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// `(timestamp, seq)` descending.
    #[default]
    NewestFirst,
    /// `(timestamp, seq)` ascending.
    OldestFirst,
}

impl Order {
    fn code(self) -> u8 {
        match self {
            Order::NewestFirst => 0,
            Order::OldestFirst => 1,
        }
    }

    fn from_code(code: u8) -> Option<Order> {
        match code {
            0 => Some(Order::NewestFirst),
            1 => Some(Order::OldestFirst),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Order::NewestFirst => "newest-first",
            Order::OldestFirst => "oldest-first",
        }
    }

    /// True when the row with key `a` comes before the row with key `b` in this order.
    pub fn before(self, a: (i64, u64), b: (i64, u64)) -> bool {
        match self {
            Order::NewestFirst => a > b,
            Order::OldestFirst => a < b,
        }
    }
}

/// Where a page ended: the `(timestamp, seq)` of its last row, for the order it was read in.
///
/// Clients see it only as the opaque string of [`Cursor::encode`]: base64url (no padding) of
/// `version u8 = 1 | order u8 | timestamp_us i64 LE | seq u64 LE | check u32 LE` (30
/// characters), or, for a query with a relative time bound (`since`), of
/// `version u8 = 2 | order u8 | timestamp_us i64 LE | seq u64 LE | now_us i64 LE | check u32 LE`
/// (40 characters), where `check` is FNV-1a of the bytes before it. The check catches a
/// truncated or mistyped cursor; it is not a signature, and needs none: a cursor only says
/// where to resume, the scope still comes from the credential.
///
/// ```
/// use auditlog_index::{Cursor, Order};
/// let first_page = Cursor { order: Order::NewestFirst, timestamp_us: 5, seq: 7, now_us: None };
/// assert_eq!(first_page.encode().len(), 30);
/// // `since=1h` was resolved against this clock on the first page; every later page uses it.
/// let relative = Cursor { now_us: Some(1_795_000_000_000_000), ..first_page };
/// assert_eq!(Cursor::decode(&relative.encode()).unwrap(), relative);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cursor {
    pub order: Order,
    pub timestamp_us: i64,
    pub seq: u64,
    /// The clock the query's relative bounds (`since`) were resolved against on its first
    /// page: later pages resolve them against it too, so that every page is cut from the same
    /// time window (with the clock of each request, a page read later would lose the rows
    /// that slipped out of the window in between). `None` for a query without one.
    pub now_us: Option<i64>,
}

const CURSOR_VERSION: u8 = 1;
const CURSOR_BYTES: usize = 1 + 1 + 8 + 8 + 4;
/// [`Cursor`] with `now_us`.
const CURSOR_VERSION_CLOCK: u8 = 2;
const CURSOR_CLOCK_BYTES: usize = CURSOR_BYTES + 8;

impl Cursor {
    /// The cursor after the row `event` in `order`, of a query whose relative bounds were
    /// resolved at `now_us` ([`Query::now_us`]).
    pub fn after(order: Order, event: &StoredEvent, now_us: Option<i64>) -> Cursor {
        Cursor {
            order,
            timestamp_us: event.event.timestamp_us,
            seq: event.seq,
            now_us,
        }
    }

    /// True when a row with key `(timestamp_us, seq)` comes after the cursor (in its order).
    pub fn admits(&self, key: (i64, u64)) -> bool {
        self.order.before((self.timestamp_us, self.seq), key)
    }

    /// The opaque, URL-safe text form.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(CURSOR_CLOCK_BYTES);
        bytes.push(match self.now_us {
            None => CURSOR_VERSION,
            Some(_) => CURSOR_VERSION_CLOCK,
        });
        bytes.push(self.order.code());
        bytes.extend_from_slice(&self.timestamp_us.to_le_bytes());
        bytes.extend_from_slice(&self.seq.to_le_bytes());
        if let Some(now_us) = self.now_us {
            bytes.extend_from_slice(&now_us.to_le_bytes());
        }
        let check = fnv1a(&bytes);
        bytes.extend_from_slice(&check.to_le_bytes());
        base64url_encode(&bytes)
    }

    /// Parses [`Cursor::encode`]'s output; [`Error::InvalidCursor`] says what is wrong.
    pub fn decode(text: &str) -> Result<Cursor> {
        let invalid = |reason: String| Error::InvalidCursor { reason };
        let bytes = base64url_decode(text).ok_or_else(|| {
            invalid("it is not base64url text (A-Z, a-z, 0-9, '-', '_')".to_string())
        })?;
        let expected = match bytes.first() {
            Some(&CURSOR_VERSION) => CURSOR_BYTES,
            Some(&CURSOR_VERSION_CLOCK) => CURSOR_CLOCK_BYTES,
            Some(&version) if bytes.len() == CURSOR_BYTES || bytes.len() == CURSOR_CLOCK_BYTES => {
                return Err(invalid(format!(
                    "version {version} is not supported (this build reads versions \
                     {CURSOR_VERSION} and {CURSOR_VERSION_CLOCK})"
                )))
            }
            _ => CURSOR_BYTES,
        };
        if bytes.len() != expected {
            return Err(invalid(format!(
                "it holds {} bytes, a cursor has {expected}",
                bytes.len()
            )));
        }
        let (body, check) = bytes.split_at(expected - 4);
        let check = u32::from_le_bytes(check.try_into().expect("4 bytes"));
        if fnv1a(body) != check {
            return Err(invalid(
                "its check does not match (truncated or mistyped)".into(),
            ));
        }
        let order = Order::from_code(bytes[1])
            .ok_or_else(|| invalid(format!("order code {} is unknown", bytes[1])))?;
        Ok(Cursor {
            order,
            timestamp_us: i64::from_le_bytes(bytes[2..10].try_into().expect("8 bytes")),
            seq: u64::from_le_bytes(bytes[10..18].try_into().expect("8 bytes")),
            now_us: (expected == CURSOR_CLOCK_BYTES)
                .then(|| i64::from_le_bytes(bytes[18..26].try_into().expect("8 bytes"))),
        })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

impl std::str::FromStr for Cursor {
    type Err = Error;
    fn from_str(text: &str) -> Result<Cursor> {
        Cursor::decode(text)
    }
}

impl Serialize for Cursor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.encode())
    }
}

impl<'de> Deserialize<'de> for Cursor {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Cursor, D::Error> {
        let text = String::deserialize(deserializer)?;
        Cursor::decode(&text).map_err(serde::de::Error::custom)
    }
}

fn fnv1a(bytes: &[u8]) -> u32 {
    let mut hash = 0x811c_9dc5u32;
    for &byte in bytes {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64url_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let mut word = [0u8; 3];
        word[..group.len()].copy_from_slice(group);
        let bits = u32::from(word[0]) << 16 | u32::from(word[1]) << 8 | u32::from(word[2]);
        for i in 0..=group.len() {
            out.push(BASE64URL[(bits >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for group in text.as_bytes().chunks(4) {
        let mut bits = 0u32;
        for (i, &c) in group.iter().enumerate() {
            let value = BASE64URL.iter().position(|&b| b == c)? as u32;
            bits |= value << (18 - 6 * i);
        }
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..group.len()]);
        // Canonical form only: the unused low bits of a short group are zero.
        let used_bits = 8 * (group.len() - 1);
        if bits & ((1u32 << (24 - used_bits)) - 1) != 0 {
            return None;
        }
    }
    Some(out)
}

/// A question to the store. Build one with [`Query::new`] and set the fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// The tenants the caller may read.
    pub tenants: Scope,
    /// First timestamp included (UTC µs); `None`: no lower bound.
    pub from_us: Option<i64>,
    /// First timestamp excluded (UTC µs); `None`: no upper bound.
    pub to_us: Option<i64>,
    pub filters: Filters,
    pub text: Vec<TextTerm>,
    pub order: Order,
    /// Rows per page, `1..=LIMIT_MAX`.
    pub limit: usize,
    /// Resume after this row (from the previous page's `next_cursor`).
    pub cursor: Option<Cursor>,
    /// The clock relative bounds (`since`) were resolved against, for a query that has one:
    /// carried in the next page's cursor ([`Cursor::now_us`]).
    pub now_us: Option<i64>,
}

impl Query {
    /// Every event of the scope, newest first, [`LIMIT_DEFAULT`] per page.
    pub fn new(tenants: Scope) -> Query {
        Query {
            tenants,
            from_us: None,
            to_us: None,
            filters: Filters::default(),
            text: Vec::new(),
            order: Order::NewestFirst,
            limit: LIMIT_DEFAULT,
            cursor: None,
            now_us: None,
        }
    }

    /// Checks the limits; every entry point of [`crate::exec`] calls it.
    pub fn validate(&self) -> Result<()> {
        if self.tenants.is_empty() {
            return Err(Error::EmptyScope);
        }
        if self.limit == 0 || self.limit > LIMIT_MAX {
            return Err(Error::LimitOutOfRange {
                found: self.limit,
                max: LIMIT_MAX,
            });
        }
        if self.text.len() > TEXT_TERMS_MAX {
            return Err(Error::TooManyTextTerms {
                found: self.text.len(),
                limit: TEXT_TERMS_MAX,
            });
        }
        for term in &self.text {
            if term.text.len() > VALUE_BYTES_MAX {
                return Err(Error::ValueTooLong {
                    what: "text term".into(),
                    found: term.text.len(),
                    limit: VALUE_BYTES_MAX,
                });
            }
            let normalized = crate::tokenize::normalize(&term.text);
            if crate::tokenize::atoms(&normalized).next().is_none() {
                return Err(Error::EmptyTextTerm {
                    text: term.text.clone(),
                });
            }
        }
        for (field, filter) in self.filters.iter() {
            let count = filter.any_of.len() + filter.none_of.len();
            if count > FIELD_VALUES_MAX {
                return Err(Error::TooManyValues {
                    field,
                    found: count,
                    limit: FIELD_VALUES_MAX,
                });
            }
            if let Some(value) = filter
                .any_of
                .iter()
                .chain(&filter.none_of)
                .find(|v| v.len() > VALUE_BYTES_MAX)
            {
                return Err(Error::ValueTooLong {
                    what: format!("value of {field}"),
                    found: value.len(),
                    limit: VALUE_BYTES_MAX,
                });
            }
        }
        if let Some(cursor) = &self.cursor {
            if cursor.order != self.order {
                return Err(Error::CursorOrderMismatch {
                    cursor: cursor.order.name(),
                    query: self.order.name(),
                });
            }
        }
        Ok(())
    }

    /// The tenants the query may return: the scope, narrowed by a `tenant` filter. Never
    /// outside the scope.
    pub fn effective_tenants(&self) -> Vec<&str> {
        let filter = self.filters.get(Field::Tenant);
        self.tenants
            .iter()
            .filter(|tenant| filter.is_none_or(|f| f.accepts([Some(tenant), None])))
            .collect()
    }

    /// True when `timestamp_us` is inside the query's time range.
    pub fn in_time_range(&self, timestamp_us: i64) -> bool {
        self.from_us.is_none_or(|from| timestamp_us >= from)
            && self.to_us.is_none_or(|to| timestamp_us < to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        for cursor in [
            Cursor {
                order: Order::NewestFirst,
                timestamp_us: 1_795_000_000_000_000,
                seq: 42,
                now_us: None,
            },
            Cursor {
                order: Order::OldestFirst,
                timestamp_us: i64::MIN,
                seq: u64::MAX,
                now_us: None,
            },
        ] {
            let text = cursor.encode();
            assert_eq!(text.len(), 30);
            let clocked = Cursor {
                now_us: Some(-3),
                ..cursor
            };
            assert_eq!(clocked.encode().len(), 40);
            assert_eq!(Cursor::decode(&clocked.encode()).unwrap(), clocked);
            assert!(text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert_eq!(Cursor::decode(&text).unwrap(), cursor);
        }
    }

    #[test]
    fn cursor_damage_is_a_clear_error() {
        let text = Cursor {
            order: Order::NewestFirst,
            timestamp_us: 5,
            seq: 7,
            now_us: None,
        }
        .encode();
        let message = |text: &str| Cursor::decode(text).unwrap_err().to_string();
        assert_eq!(
            message("not a cursor!"),
            "invalid cursor: it is not base64url text (A-Z, a-z, 0-9, '-', '_')"
        );
        assert_eq!(
            message(&text[..24]),
            "invalid cursor: it holds 18 bytes, a cursor has 22"
        );
        let mut flipped = text.clone().into_bytes();
        flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            message(std::str::from_utf8(&flipped).unwrap()),
            "invalid cursor: its check does not match (truncated or mistyped)"
        );
        let mut bytes = base64url_decode(&text).unwrap();
        bytes[0] = 9;
        assert_eq!(
            message(&base64url_encode(&bytes)),
            "invalid cursor: version 9 is not supported (this build reads versions 1 and 2)"
        );
    }

    #[test]
    fn base64url_matches_known_vectors() {
        assert_eq!(base64url_encode(b""), "");
        assert_eq!(base64url_encode(b"f"), "Zg");
        assert_eq!(base64url_encode(b"fo"), "Zm8");
        assert_eq!(base64url_encode(b"foo"), "Zm9v");
        assert_eq!(base64url_encode(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64url_decode("-_8").unwrap(), [0xfb, 0xff]);
        assert_eq!(base64url_decode("Zh"), None, "non-zero unused bits");
    }

    #[test]
    fn query_limits_are_checked() {
        let mut query = Query::new(Scope::one("acct_1"));
        query.limit = 1001;
        assert_eq!(
            query.validate().unwrap_err().to_string(),
            "limit 1001 is out of range 1..=1000"
        );
        query.limit = 10;
        query.cursor = Some(Cursor {
            order: Order::OldestFirst,
            timestamp_us: 0,
            seq: 1,
            now_us: None,
        });
        assert_eq!(
            query.validate().unwrap_err().to_string(),
            "the cursor is for oldest-first order, the query asks for newest-first"
        );
        query.cursor = None;
        query.text.push(TextTerm::word("--"));
        assert_eq!(
            query.validate().unwrap_err().to_string(),
            "text term \"--\" has no letter or digit"
        );
        assert!(Scope::new(Vec::<String>::new()).is_err());
    }

    #[test]
    fn query_tenant_filter_only_narrows_the_scope() {
        let mut query = Query::new(Scope::new(["a", "b"]).unwrap());
        query.filters.include(Field::Tenant, "c");
        assert!(query.effective_tenants().is_empty());
        query.filters.include(Field::Tenant, "b");
        assert_eq!(query.effective_tenants(), ["b"]);
        let mut query = Query::new(Scope::new(["a", "b"]).unwrap());
        query.filters.exclude(Field::Tenant, "a");
        assert_eq!(query.effective_tenants(), ["b"]);
    }
}
