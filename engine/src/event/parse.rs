//! Parsing and validating ingest bodies: EVENT.md JSON in, validated [`Event`]s out.
//!
//! A body is NDJSON (one event per line; blank lines are skipped; a trailing `\r` is allowed) or
//! a JSON array of events, told apart by its first non-whitespace byte (`[` means an array).
//! Every rule of EVENT.md is checked; the first event that breaks one fails the whole batch with a
//! [`ValidationError`] naming the line, the field and the rule, and the caller stores nothing.
//!
//! Line numbers: for NDJSON, `line` is the 1-based line of the body (blank lines count); for a
//! JSON array, it is the 1-based position of the event in the array. `line` 0 means the batch as
//! a whole (an empty batch).
//!
//! Beyond the table of EVENT.md, the parser decides a few things the table leaves open:
//! - an empty string, or `null`, in an optional field means "absent" (so `id: ""` is no
//!   idempotency key); in a required field it is an error;
//! - a field given twice in one object is rejected (an audit record must not be ambiguous);
//! - `actor.ip` is stored in its canonical text form (`::FFFF:1.2.3.4` becomes `1.2.3.4`);
//! - `changes` items are re-written in the order `field`, `old`, `new`; `old` and `new` may each
//!   be absent, and an absent one stays absent (it does not become `null`);
//! - `changes` and `details` are stored as compact JSON text: whitespace outside strings is
//!   dropped, everything else (key order, number spelling, string escapes) is kept as sent;
//! - nesting depth counts the field's own value: `details: {}` has depth 1, `changes: [{...}]`
//!   has depth 2, and both are limited to [`ValidationContext::details_depth_max`].
//!
//! Speed: each event is first read by a hand-written one-pass reader (`fast.rs`) that handles
//! the shape clients send and gives up at anything else (malformed JSON, unknown or repeated
//! fields, wrong types, `\u` escapes in string fields); the event is then read again by
//! hand-written serde visitors straight from the input, which name the problem. Either way
//! strings are borrowed from the input unless they hold escapes, and `details` and the
//! `old`/`new` values of `changes` are taken as borrowed raw JSON text and only compacted
//! (not at all when the fast reader saw no whitespace in them); nothing goes through
//! `serde_json::Value`. On realistic events the fast reader takes 1.45 µs per event against
//! 2.4-4.1 µs for the serde reader alone (`benches/examples/parse_profile.rs`).
//!
//! ```
//! use auditlog_engine::event::{parse_batch, RetentionPolicy, ValidationContext};
//! let retention = RetentionPolicy::new(90);
//! let now_us = 1_795_000_000_000_000;
//! let ctx = ValidationContext::new(now_us, &retention);
//! let body = br#"{"tenant":"acct_1","actor":{"id":"u1"},"action":"login","resource":{"type":"account"}}
//!
//! {"tenant":"acct_1","actor":{"email":"a@example.com"},"action":"logout","resource":{"type":"account"}}"#;
//! let events = parse_batch(body, &ctx).unwrap();
//! assert_eq!(events.len(), 2);
//! assert_eq!(events[0].timestamp_us, now_us); // no timestamp: the time of receipt
//!
//! let error = parse_batch(br#"[{"tenant":"acct 1"}]"#, &ctx).unwrap_err();
//! assert_eq!((error.line, error.field.as_deref()), (1, Some("tenant")));
//! ```

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::model::{self, Actor, ActorType, Event, Outcome, Resource, TimestampUs};
use super::time::{format_rfc3339_us, parse_rfc3339_us, US_PER_DAY, US_PER_SECOND};

mod fast;

/// Default limit on one event's JSON text, in bytes (EVENT.md: 64 KiB).
pub const EVENT_BYTES_MAX: usize = 64 * 1024;
/// Default limit on the nesting depth of `details` and `changes`.
pub const DETAILS_DEPTH_MAX: usize = 32;
/// Default tolerance for timestamps ahead of the server's clock (EVENT.md: 24 h).
pub const FUTURE_TOLERANCE_US: i64 = 24 * 3600 * US_PER_SECOND;
/// Limit on `id`, in bytes.
pub const ID_BYTES_MAX: usize = 128;
/// Limit on `tenant`, in bytes.
pub const TENANT_BYTES_MAX: usize = 128;
/// Limit on `project`, in bytes.
pub const PROJECT_BYTES_MAX: usize = 128;
/// Limit on `actor.email`, in bytes.
pub const EMAIL_BYTES_MAX: usize = 254;
/// Limit on `actor.user_agent`, in bytes.
pub const USER_AGENT_BYTES_MAX: usize = 1024;
/// Limit on `action`, in bytes.
pub const ACTION_BYTES_MAX: usize = 64;
/// Limit on `resource.type`, in bytes.
pub const RESOURCE_TYPE_BYTES_MAX: usize = 64;
/// Limit on `resource.id` and on `resource.name`, in bytes.
pub const RESOURCE_ID_BYTES_MAX: usize = 256;

/// Why an event (and so its whole batch) was refused.
///
/// `Display` reads `line 3, field actor.ip: not an IPv4 or IPv6 address: "300.1.1.1"`; the
/// `field` part is left out when the error concerns the event as a whole, and the `line` part
/// when `line` is 0 (the batch as a whole).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}", location(.line, .field), .message)]
pub struct ValidationError {
    /// NDJSON: 1-based line of the body; JSON array: 1-based position of the event; 0: the batch.
    pub line: usize,
    /// Dotted path of the offending field (`actor.ip`, `changes[2].field`), if one is to blame.
    pub field: Option<String>,
    /// What is wrong, lowercase, without a trailing period.
    pub message: String,
}

fn location<'a>(line: &usize, field: &'a Option<String>) -> Location<'a> {
    Location {
        line: *line,
        field: field.as_deref(),
    }
}

struct Location<'a> {
    line: usize,
    field: Option<&'a str>,
}

impl fmt::Display for Location<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.field) {
            (0, None) => Ok(()),
            (0, Some(field)) => write!(formatter, "field {field}: "),
            (line, None) => write!(formatter, "line {line}: "),
            (line, Some(field)) => write!(formatter, "line {line}, field {field}: "),
        }
    }
}

/// How many days of events each tenant keeps: a default plus per-tenant overrides.
///
/// An event older than its tenant's retention is refused at ingest (it would be dropped at once).
/// `u32::MAX` days means, in practice, "keep forever".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetentionPolicy {
    /// Retention of every tenant without an override, in days.
    pub default_days: u32,
    /// Overrides by tenant name, in days.
    pub tenant_days: HashMap<String, u32>,
}

impl RetentionPolicy {
    /// A policy giving every tenant `default_days`.
    pub fn new(default_days: u32) -> Self {
        RetentionPolicy {
            default_days,
            tenant_days: HashMap::new(),
        }
    }

    /// Adds an override for one tenant.
    pub fn with_tenant(mut self, tenant: impl Into<String>, days: u32) -> Self {
        self.tenant_days.insert(tenant.into(), days);
        self
    }

    /// The retention of `tenant`, in days.
    pub fn days_for(&self, tenant: &str) -> u32 {
        if self.tenant_days.is_empty() {
            return self.default_days;
        }
        self.tenant_days
            .get(tenant)
            .copied()
            .unwrap_or(self.default_days)
    }
}

/// What validation needs to know beyond the event itself; built once per request.
#[derive(Debug, Clone, Copy)]
pub struct ValidationContext<'a> {
    /// The server's clock: the timestamp of events that carry none, and the reference for the
    /// future and retention checks.
    pub now_us: TimestampUs,
    /// How far ahead of `now_us` a timestamp may be (default [`FUTURE_TOLERANCE_US`], 24 h).
    pub future_tolerance_us: i64,
    /// Retention per tenant; events older than it are refused.
    pub retention: &'a RetentionPolicy,
    /// Limit on one event's JSON text (default [`EVENT_BYTES_MAX`], 64 KiB).
    pub event_bytes_max: usize,
    /// Limit on the nesting depth of `details` and `changes` (default [`DETAILS_DEPTH_MAX`]).
    pub details_depth_max: usize,
}

impl<'a> ValidationContext<'a> {
    /// A context with the default limits.
    pub fn new(now_us: TimestampUs, retention: &'a RetentionPolicy) -> Self {
        ValidationContext {
            now_us,
            future_tolerance_us: FUTURE_TOLERANCE_US,
            retention,
            event_bytes_max: EVENT_BYTES_MAX,
            details_depth_max: DETAILS_DEPTH_MAX,
        }
    }
}

/// Most events [`parse_batch`] reserves room for up front; a longer batch grows its vector.
const RESERVED_EVENTS_MAX: usize = 16 * 1024;

/// Parses and validates an ingest body (NDJSON or a JSON array of events, see the module docs).
///
/// Fails on the first invalid event; a body without any event is an error (`empty batch`).
pub fn parse_batch(body: &[u8], ctx: &ValidationContext) -> Result<Vec<Event>, ValidationError> {
    Ok(parse_batch_limited(body, ctx, usize::MAX)?.expect("no limit"))
}

/// [`parse_batch`] for a caller with a limit on events per batch: `Ok(None)` when the body holds
/// more than `events_max` events. Past the limit nothing is read (not even whether the rest is
/// valid JSON): the batch is refused for its length, and a body of millions of events (or of
/// blank lines: 16 MiB of them gzip to 16 KB) costs neither their parsing nor memory reserved
/// for them.
///
/// ```
/// use auditlog_engine::event::{parse_batch_limited, RetentionPolicy, ValidationContext};
/// let retention = RetentionPolicy::new(90);
/// let ctx = ValidationContext::new(1_795_000_000_000_000, &retention);
/// let event = r#"{"tenant":"t","actor":{"id":"u"},"action":"login","resource":{"type":"account"}}"#;
/// let two = format!("{event}\n{event}\n");
/// assert_eq!(parse_batch_limited(two.as_bytes(), &ctx, 2).unwrap().unwrap().len(), 2);
/// // Two events, then a line that is not even JSON: over the limit, whatever the rest is.
/// let more = format!("{two}not json\n");
/// assert!(parse_batch_limited(more.as_bytes(), &ctx, 2).unwrap().is_none());
/// assert!(parse_batch_limited(format!("[{event},{event},{event}]").as_bytes(), &ctx, 2)
///     .unwrap()
///     .is_none());
/// ```
pub fn parse_batch_limited(
    body: &[u8],
    ctx: &ValidationContext,
    events_max: usize,
) -> Result<Option<Vec<Event>>, ValidationError> {
    // A UTF-8 byte order mark (some Windows tools write one) is not part of the JSON
    // (RFC 8259 lets a parser ignore it).
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let first = body.iter().position(|byte| !byte.is_ascii_whitespace());
    let events = match first {
        Some(start) if body[start] == b'[' => parse_array(body, ctx, events_max)?,
        _ => parse_ndjson(body, ctx, events_max)?,
    };
    match events {
        Some(events) if events.is_empty() => Err(ValidationError {
            line: 0,
            field: None,
            message: "empty batch".to_owned(),
        }),
        events => Ok(events),
    }
}

/// Parses and validates one event's JSON text; `line` is only used in errors.
pub fn parse_event(
    json: &[u8],
    line: usize,
    ctx: &ValidationContext,
) -> Result<Event, ValidationError> {
    let text = std::str::from_utf8(json).map_err(|error| ValidationError {
        line,
        field: None,
        message: format!("invalid UTF-8 at column {}", error.valid_up_to() + 1),
    })?;
    parse_event_text(text, line, ctx)
}

fn parse_ndjson(
    body: &[u8],
    ctx: &ValidationContext,
    events_max: usize,
) -> Result<Option<Vec<Event>>, ValidationError> {
    // One event per line: sized once, so no push moves the (large) events already parsed.
    let lines = memchr::memchr_iter(b'\n', body).count() + 1;
    let mut events = Vec::with_capacity(lines.min(events_max).min(RESERVED_EVENTS_MAX));
    // Validating the whole body at once spares validating each line; a body with invalid
    // UTF-8 takes the slower path, which names the line.
    let Ok(text) = std::str::from_utf8(body) else {
        for (index, line) in body.split(|&byte| byte == b'\n').enumerate() {
            let line = line.trim_ascii();
            if !line.is_empty() {
                if events.len() == events_max {
                    return Ok(None);
                }
                events.push(parse_event(line, index + 1, ctx)?);
            }
        }
        return Ok(Some(events));
    };
    // Lines cut where memchr's SIMD search finds `\n` (`str::split` searches a word at a
    // time); a `\n` byte is a character of its own, so always a char boundary.
    let ends = memchr::memchr_iter(b'\n', body).chain(std::iter::once(body.len()));
    let mut start = 0;
    for (index, end) in ends.enumerate() {
        let line = text[start..end].trim_ascii();
        start = end + 1;
        if !line.is_empty() {
            if events.len() == events_max {
                return Ok(None);
            }
            events.push(parse_event_text(line, index + 1, ctx)?);
        }
    }
    Ok(Some(events))
}

fn parse_array(
    body: &[u8],
    ctx: &ValidationContext,
    events_max: usize,
) -> Result<Option<Vec<Event>>, ValidationError> {
    match std::str::from_utf8(body) {
        Ok(text) => parse_array_text(text, ctx, events_max),
        Err(utf8_error) => {
            // Find the event holding the bad byte: parse the valid prefix, which stops there
            // (or earlier, at a genuinely invalid event, which is then the first error; or past
            // the caller's limit, which is then what is wrong).
            let offset = utf8_error.valid_up_to();
            let prefix = std::str::from_utf8(&body[..offset]).unwrap_or_default();
            let line = match parse_array_text(prefix, ctx, events_max) {
                Err(error) if error.line > 0 && !error.message.starts_with("malformed") => {
                    return Err(error)
                }
                Err(error) => error.line,
                Ok(None) => return Ok(None),
                Ok(Some(events)) => events.len() + 1,
            };
            Err(ValidationError {
                line,
                field: None,
                message: format!("invalid UTF-8 at byte {} of the body", offset + 1),
            })
        }
    }
}

fn parse_array_text(
    text: &str,
    ctx: &ValidationContext,
    events_max: usize,
) -> Result<Option<Vec<Event>>, ValidationError> {
    let mut events = Vec::new();
    let mut failure = None;
    let mut over_limit = false;
    let mut line = 1;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let result = de::Deserializer::deserialize_seq(
        &mut deserializer,
        BatchVisitor {
            ctx,
            events: &mut events,
            failure: &mut failure,
            line: &mut line,
            events_max,
            over_limit: &mut over_limit,
        },
    );
    let result = result.and_then(|()| deserializer.end());
    match (result, failure) {
        (_, Some(error)) => Err(error),
        // Something follows the last event the caller takes: the rest is not read.
        (_, None) if over_limit => Ok(None),
        (Ok(()), None) => Ok(Some(events)),
        (Err(error), None) => Err(ValidationError {
            line,
            field: None,
            message: format!(
                "malformed JSON at line {}, column {} of the body: {}",
                error.line(),
                error.column(),
                serde_message(&error)
            ),
        }),
    }
}

/// Reads the events of a JSON array one by one, validating each as soon as it is read.
struct BatchVisitor<'c, 'r> {
    ctx: &'c ValidationContext<'r>,
    events: &'c mut Vec<Event>,
    failure: &'c mut Option<ValidationError>,
    /// Position of the event being read, for errors raised by the JSON reader itself.
    line: &'c mut usize,
    events_max: usize,
    /// Set when anything follows the `events_max`-th event.
    over_limit: &'c mut bool,
}

impl<'de> Visitor<'de> for BatchVisitor<'_, '_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            *self.line = self.events.len() + 1;
            if self.events.len() == self.events_max {
                // Over the limit if the array goes on, whatever follows (read past, not
                // validated).
                if !matches!(seq.next_element::<de::IgnoredAny>(), Ok(None)) {
                    *self.over_limit = true;
                    return Err(de::Error::custom("over the caller's event limit"));
                }
                return Ok(());
            }
            let Some(raw) = seq.next_element::<&'de RawValue>()? else {
                return Ok(());
            };
            match parse_event_text(raw.get(), *self.line, self.ctx) {
                Ok(event) => self.events.push(event),
                Err(error) => {
                    *self.failure = Some(error);
                    return Err(de::Error::custom("invalid event"));
                }
            }
        }
    }
}

/// What is wrong with one event, before the line is known.
#[derive(Debug, PartialEq)]
struct Failure {
    field: Option<String>,
    message: String,
}

impl Failure {
    fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Failure {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    fn at_line(self, line: usize) -> ValidationError {
        ValidationError {
            line,
            field: self.field,
            message: self.message,
        }
    }
}

/// Where visitors leave a validation failure; serde only carries a placeholder error upward.
type Slot = Option<Failure>;

fn fail<E: de::Error>(slot: &mut Slot, failure: Failure) -> E {
    *slot = Some(failure);
    E::custom("invalid event")
}

fn parse_event_text(
    text: &str,
    line: usize,
    ctx: &ValidationContext,
) -> Result<Event, ValidationError> {
    if text.len() > ctx.event_bytes_max {
        return Err(ValidationError {
            line,
            field: None,
            message: format!(
                "event is {} bytes of JSON, limit {} bytes",
                text.len(),
                ctx.event_bytes_max
            ),
        });
    }
    let raw = match fast::read_event(text, ctx.details_depth_max) {
        Some(raw) => raw,
        None => read_event(text, ctx.details_depth_max).map_err(|failure| failure.at_line(line))?,
    };
    validate(raw, ctx).map_err(|failure| failure.at_line(line))
}

/// Reads one event object with serde_json, naming what is wrong with it; what the fast reader
/// falls back to.
fn read_event(text: &str, depth_max: usize) -> Result<RawEvent<'_>, Failure> {
    let mut slot: Slot = None;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let raw = EventSeed {
        slot: &mut slot,
        depth_max,
    }
    .deserialize(&mut deserializer)
    .and_then(|raw| deserializer.end().map(|()| raw));
    match (raw, slot) {
        (_, Some(failure)) => Err(failure),
        (Ok(raw), None) => Ok(raw),
        (Err(error), None) => Err(Failure {
            field: None,
            message: format!(
                "malformed JSON at column {}: {}",
                error.column(),
                serde_message(&error)
            ),
        }),
    }
}

/// serde_json's message without its " at line L column C" suffix.
fn serde_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(end) => text[..end].to_owned(),
        None => text,
    }
}

/// A field that must be a string, as read: JSON `null` is kept apart from a missing field so that
/// a required field set to `null` is reported as a type error.
#[derive(Debug, PartialEq)]
enum Text<'de> {
    Null,
    String(Cow<'de, str>),
}

/// Reads a string field (borrowed when it has no escapes); other JSON types fail at `path`.
struct StringSeed<'s> {
    slot: &'s mut Slot,
    path: &'static str,
}

impl StringSeed<'_> {
    fn wrong_type<E: de::Error>(self, found: &str) -> E {
        let message = format!("expected a string, found {found}");
        fail(self.slot, Failure::field(self.path, message))
    }
}

impl<'de> DeserializeSeed<'de> for StringSeed<'_> {
    type Value = Text<'de>;

    /// A value the JSON reader itself refuses inside an NDJSON line (a lone UTF-16 surrogate
    /// escape, an unknown escape, a control character, a misspelt literal) is reported on the
    /// field it was read for, with its column. (A JSON array body's events are cut out by a
    /// first pass that refuses such text before any field is read; a line that ends inside
    /// the value is truncated, which is not the field's fault.)
    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        let StringSeed { slot, path } = self;
        let result = deserializer.deserialize_any(StringSeed {
            slot: &mut *slot,
            path,
        });
        if let Err(error) = &result {
            let text = error.to_string();
            if slot.is_none() && !text.starts_with("EOF while parsing") {
                let (message, at) = match text.rfind(" at line ") {
                    Some(end) => (&text[..end], text[end..].rsplit(' ').next()),
                    None => (&*text, None),
                };
                let message = if message.starts_with("number out of range") {
                    "expected a string, found a number".to_owned()
                } else {
                    match at {
                        Some(column) => format!("malformed JSON at column {column}: {message}"),
                        None => format!("malformed JSON: {message}"),
                    }
                };
                *slot = Some(Failure::field(path, message));
            }
        }
        result
    }
}

impl<'de> Visitor<'de> for StringSeed<'_> {
    type Value = Text<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Text::String(Cow::Borrowed(value)))
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Text::String(Cow::Owned(value.to_owned())))
    }
    fn visit_string<E: de::Error>(self, value: String) -> Result<Self::Value, E> {
        Ok(Text::String(Cow::Owned(value)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Text::Null)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(self.wrong_type("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(self.wrong_type("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(self.wrong_type("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(self.wrong_type("a number"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.wrong_type("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.wrong_type("an object"))
    }
}

/// An event as read, before the checks that need more than the JSON types: what both readers
/// (the fast one and serde_json's) produce.
#[derive(Debug, Default, PartialEq)]
struct RawEvent<'de> {
    id: Option<Text<'de>>,
    timestamp: Option<Text<'de>>,
    tenant: Option<Text<'de>>,
    project: Option<Text<'de>>,
    actor: Option<RawActor<'de>>,
    action: Option<Text<'de>>,
    outcome: Option<Text<'de>>,
    resource: Option<RawResource<'de>>,
    /// The compact text of the `changes` array (`None`: absent or `null`).
    changes: Option<String>,
    /// The raw JSON text of `details`, as sent (compacted by `validate`).
    details: Option<&'de str>,
    /// `details` is known to be compact and within the depth limit (the fast reader checked):
    /// `validate` need not compact it.
    details_compact: bool,
}

#[derive(Debug, Default, PartialEq)]
struct RawActor<'de> {
    id: Option<Text<'de>>,
    email: Option<Text<'de>>,
    kind: Option<Text<'de>>,
    ip: Option<Text<'de>>,
    user_agent: Option<Text<'de>>,
}

#[derive(Debug, Default, PartialEq)]
struct RawResource<'de> {
    kind: Option<Text<'de>>,
    id: Option<Text<'de>>,
    name: Option<Text<'de>>,
}

/// An object whose fields are all strings (`actor`, `resource`): its field names and a setter
/// by field index, shared by both readers.
trait StringFields<'de>: Default {
    const FIELDS: Fields;
    fn set(&mut self, index: usize, value: Text<'de>);
}

impl<'de> StringFields<'de> for RawActor<'de> {
    const FIELDS: Fields = ACTOR_FIELDS;
    fn set(&mut self, index: usize, value: Text<'de>) {
        let value = Some(value);
        match index {
            0 => self.id = value,
            1 => self.email = value,
            2 => self.kind = value,
            3 => self.ip = value,
            _ => self.user_agent = value,
        }
    }
}

impl<'de> StringFields<'de> for RawResource<'de> {
    const FIELDS: Fields = RESOURCE_FIELDS;
    fn set(&mut self, index: usize, value: Text<'de>) {
        let value = Some(value);
        match index {
            0 => self.kind = value,
            1 => self.id = value,
            _ => self.name = value,
        }
    }
}

/// An object's field names, and a function giving a name's index in them.
type Fields = (&'static [&'static str], fn(&str) -> Option<usize>);

// The lookups are `match`es rather than searches of the name lists: keys are the most frequent
// strings of an event, and a `match` compiles to a length switch and one comparison.
const EVENT_FIELDS: Fields = (
    &[
        "id",
        "timestamp",
        "tenant",
        "project",
        "actor",
        "action",
        "outcome",
        "resource",
        "changes",
        "details",
    ],
    |key| match key {
        "id" => Some(0),
        "timestamp" => Some(1),
        "tenant" => Some(2),
        "project" => Some(3),
        "actor" => Some(4),
        "action" => Some(5),
        "outcome" => Some(6),
        "resource" => Some(7),
        "changes" => Some(8),
        "details" => Some(9),
        _ => None,
    },
);
const ACTOR_FIELDS: Fields = (
    &["id", "email", "type", "ip", "user_agent"],
    |key| match key {
        "id" => Some(0),
        "email" => Some(1),
        "type" => Some(2),
        "ip" => Some(3),
        "user_agent" => Some(4),
        _ => None,
    },
);
const RESOURCE_FIELDS: Fields = (&["type", "id", "name"], |key| match key {
    "type" => Some(0),
    "id" => Some(1),
    "name" => Some(2),
    _ => None,
});
const CHANGE_FIELDS: Fields = (&["field", "old", "new"], |key| match key {
    "field" => Some(0),
    "old" => Some(1),
    "new" => Some(2),
    _ => None,
});
const ACTOR_PATHS: [&str; 5] = [
    "actor.id",
    "actor.email",
    "actor.type",
    "actor.ip",
    "actor.user_agent",
];
const RESOURCE_PATHS: [&str; 3] = ["resource.type", "resource.id", "resource.name"];

/// Reads an object key as its index in `names`, or the unknown key itself.
struct KeySeed {
    lookup: fn(&str) -> Option<usize>,
}

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Result<usize, String>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Result<usize, String>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok((self.lookup)(key).ok_or_else(|| key.to_owned()))
    }
}

/// Reads the next key of `map`; `Ok(None)` at the end. Rejects unknown and repeated keys.
fn next_field<'de, A: MapAccess<'de>>(
    map: &mut A,
    slot: &mut Slot,
    (names, lookup): Fields,
    prefix: &dyn Fn() -> String,
    seen: &mut u32,
) -> Result<Option<usize>, A::Error> {
    match map.next_key_seed(KeySeed { lookup })? {
        None => Ok(None),
        Some(Ok(index)) => {
            if *seen & (1 << index) != 0 {
                let path = format!("{}{}", prefix(), names[index]);
                return Err(fail(slot, Failure::field(path, "duplicate field")));
            }
            *seen |= 1 << index;
            Ok(Some(index))
        }
        Some(Err(key)) => {
            let path = format!("{}{}", prefix(), printable_key(&key));
            let message = format!("unknown field (allowed: {})", names.join(", "));
            Err(fail(slot, Failure::field(path, message)))
        }
    }
}

/// A client-chosen key as it may appear in an error: at most 64 characters, controls escaped.
fn printable_key(key: &str) -> String {
    let mut printable = String::with_capacity(key.len().min(70));
    for (count, character) in key.chars().enumerate() {
        if count == 64 {
            printable.push_str("...");
            break;
        }
        if character.is_control() {
            printable.extend(character.escape_default());
        } else {
            printable.push(character);
        }
    }
    printable
}

/// Rejects every JSON type but objects, naming what was found.
macro_rules! accept_only_objects {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err(self.wrong_type("a boolean"))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Err(self.wrong_type("a number"))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Err(self.wrong_type("a number"))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(self.wrong_type("a number"))
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Err(self.wrong_type("a string"))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Err(self.wrong_type("null"))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(self.wrong_type("an array"))
        }
    };
}

/// Reads a whole event object.
struct EventSeed<'s> {
    slot: &'s mut Slot,
    depth_max: usize,
}

impl EventSeed<'_> {
    fn wrong_type<E: de::Error>(self, found: &str) -> E {
        let message = format!("expected an event object, found {found}");
        fail(
            self.slot,
            Failure {
                field: None,
                message,
            },
        )
    }
}

impl<'de> DeserializeSeed<'de> for EventSeed<'_> {
    type Value = RawEvent<'de>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EventSeed<'_> {
    type Value = RawEvent<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an event object")
    }

    accept_only_objects!();

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let slot = self.slot;
        let mut raw = RawEvent::default();
        let mut seen = 0;
        let prefix = String::new;
        while let Some(index) = next_field(&mut map, slot, EVENT_FIELDS, &prefix, &mut seen)? {
            match index {
                0 => raw.id = Some(map.next_value_seed(StringSeed { slot, path: "id" })?),
                1 => {
                    let seed = StringSeed {
                        slot,
                        path: "timestamp",
                    };
                    raw.timestamp = Some(map.next_value_seed(seed)?)
                }
                2 => {
                    raw.tenant = Some(map.next_value_seed(StringSeed {
                        slot,
                        path: "tenant",
                    })?)
                }
                3 => {
                    let seed = StringSeed {
                        slot,
                        path: "project",
                    };
                    raw.project = Some(map.next_value_seed(seed)?)
                }
                4 => raw.actor = Some(map.next_value_seed(ActorSeed { slot })?),
                5 => {
                    raw.action = Some(map.next_value_seed(StringSeed {
                        slot,
                        path: "action",
                    })?)
                }
                6 => {
                    let seed = StringSeed {
                        slot,
                        path: "outcome",
                    };
                    raw.outcome = Some(map.next_value_seed(seed)?)
                }
                7 => raw.resource = Some(map.next_value_seed(ResourceSeed { slot })?),
                8 => {
                    raw.changes = map.next_value_seed(ChangesSeed {
                        slot,
                        depth_max: self.depth_max,
                    })?
                }
                _ => raw.details = Some(map.next_value::<&RawValue>()?.get()),
            }
        }
        Ok(raw)
    }
}

/// Reads the `actor` object.
struct ActorSeed<'s> {
    slot: &'s mut Slot,
}

impl ActorSeed<'_> {
    fn wrong_type<E: de::Error>(self, found: &str) -> E {
        let message = format!("expected an object, found {found}");
        fail(self.slot, Failure::field("actor", message))
    }
}

impl<'de> DeserializeSeed<'de> for ActorSeed<'_> {
    type Value = RawActor<'de>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ActorSeed<'_> {
    type Value = RawActor<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an actor object")
    }

    accept_only_objects!();

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut raw = RawActor::default();
        let mut seen = 0;
        let prefix = || "actor.".to_owned();
        while let Some(index) = next_field(&mut map, self.slot, ACTOR_FIELDS, &prefix, &mut seen)? {
            let path = ACTOR_PATHS[index];
            let value = map.next_value_seed(StringSeed {
                slot: &mut *self.slot,
                path,
            })?;
            raw.set(index, value);
        }
        Ok(raw)
    }
}

/// Reads the `resource` object.
struct ResourceSeed<'s> {
    slot: &'s mut Slot,
}

impl ResourceSeed<'_> {
    fn wrong_type<E: de::Error>(self, found: &str) -> E {
        let message = format!("expected an object, found {found}");
        fail(self.slot, Failure::field("resource", message))
    }
}

impl<'de> DeserializeSeed<'de> for ResourceSeed<'_> {
    type Value = RawResource<'de>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ResourceSeed<'_> {
    type Value = RawResource<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a resource object")
    }

    accept_only_objects!();

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut raw = RawResource::default();
        let mut seen = 0;
        let prefix = || "resource.".to_owned();
        while let Some(index) =
            next_field(&mut map, self.slot, RESOURCE_FIELDS, &prefix, &mut seen)?
        {
            let path = RESOURCE_PATHS[index];
            let value = map.next_value_seed(StringSeed {
                slot: &mut *self.slot,
                path,
            })?;
            raw.set(index, value);
        }
        Ok(raw)
    }
}

/// Reads the `changes` array, checking each item and writing the compact text as it goes.
/// `null` reads as absent.
struct ChangesSeed<'s> {
    slot: &'s mut Slot,
    depth_max: usize,
}

impl ChangesSeed<'_> {
    fn wrong_type<E: de::Error>(self, found: &str) -> E {
        let message = format!("expected an array, found {found}");
        fail(self.slot, Failure::field("changes", message))
    }
}

impl<'de> DeserializeSeed<'de> for ChangesSeed<'_> {
    type Value = Option<String>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ChangesSeed<'_> {
    type Value = Option<String>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an array of changes")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(self.wrong_type("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(self.wrong_type("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(self.wrong_type("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(self.wrong_type("a number"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(self.wrong_type("a string"))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.wrong_type("an object"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut text = String::with_capacity(64);
        text.push('[');
        let mut index = 0;
        loop {
            let item = ChangeSeed {
                slot: &mut *self.slot,
                index,
                depth_max: self.depth_max,
                text: &mut text,
            };
            if seq.next_element_seed(item)?.is_none() {
                break;
            }
            index += 1;
        }
        text.push(']');
        Ok(Some(text))
    }
}

/// Reads one `changes` item and appends it, compact, to `text` (with a leading comma if needed).
struct ChangeSeed<'s> {
    slot: &'s mut Slot,
    index: usize,
    depth_max: usize,
    text: &'s mut String,
}

impl ChangeSeed<'_> {
    fn wrong_type<E: de::Error>(self, found: &str) -> E {
        let message = format!("expected an object, found {found}");
        let path = format!("changes[{}]", self.index);
        fail(self.slot, Failure::field(path, message))
    }
}

impl<'de> DeserializeSeed<'de> for ChangeSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ChangeSeed<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a change object")
    }

    accept_only_objects!();

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let index = self.index;
        let prefix = || format!("changes[{index}].");
        let mut values: [Option<&'de str>; 3] = [None; 3];
        let mut seen = 0;
        while let Some(field) = next_field(&mut map, self.slot, CHANGE_FIELDS, &prefix, &mut seen)?
        {
            values[field] = Some(map.next_value::<&RawValue>()?.get());
        }
        push_change(self.text, index, values, self.depth_max, false)
            .map_err(|failure| fail(self.slot, failure))
    }
}

/// Appends the `changes` item number `index`, compact, to `text` (after a comma unless it is the
/// first): `{"field":..,"old":..,"new":..}` from the raw JSON texts of its three values. What both
/// readers store. `compact`: the values are known to be compact and within the depth limit.
fn push_change(
    text: &mut String,
    index: usize,
    [field, old, new]: [Option<&str>; 3],
    depth_max: usize,
    compact: bool,
) -> Result<(), Failure> {
    let prefix = || format!("changes[{index}].");
    let field = match field {
        Some(field) if field.starts_with('"') => field,
        Some(other) => {
            let message = format!("expected a string, found {}", json_kind(other));
            return Err(Failure::field(prefix() + "field", message));
        }
        None => {
            return Err(Failure::field(
                prefix() + "field",
                "required field is missing",
            ))
        }
    };
    if index > 0 {
        text.push(',');
    }
    text.push_str("{\"field\":");
    text.push_str(field);
    for (name, value) in [("old", old), ("new", new)] {
        let Some(value) = value else { continue };
        text.push_str(",\"");
        text.push_str(name);
        text.push_str("\":");
        if compact {
            text.push_str(value);
        // The array is depth 1 and this item depth 2.
        } else if compact_json(value, 2, depth_max, text).is_err() {
            let message = format!("nested deeper than {depth_max} levels");
            return Err(Failure::field(prefix() + name, message));
        }
    }
    text.push('}');
    Ok(())
}

/// Appends `json` (valid JSON text) to `out` without whitespace outside strings; `Err` when its
/// brackets nest deeper than `depth_max`, counting from `depth`.
fn compact_json(
    json: &str,
    mut depth: usize,
    depth_max: usize,
    out: &mut String,
) -> Result<(), ()> {
    let bytes = json.as_bytes();
    let mut run_start = 0;
    let mut position = 0;
    while position < bytes.len() {
        match bytes[position] {
            b'"' => {
                position += 1;
                while position < bytes.len() {
                    match bytes[position] {
                        b'\\' => position += 2,
                        b'"' => break,
                        _ => position += 1,
                    }
                }
                position += 1;
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > depth_max {
                    return Err(());
                }
                position += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                position += 1;
            }
            b' ' | b'\t' | b'\n' | b'\r' => {
                out.push_str(json.get(run_start..position).unwrap_or_default());
                while position < bytes.len() && bytes[position].is_ascii_whitespace() {
                    position += 1;
                }
                run_start = position;
            }
            _ => position += 1,
        }
    }
    out.push_str(json.get(run_start..).unwrap_or_default());
    Ok(())
}

/// The JSON type of a raw value, as error messages name it.
fn json_kind(raw: &str) -> &'static str {
    match raw.as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// An optional string field: `None` when missing, `null` or `""`.
fn optional_string(text: Option<Text<'_>>) -> Option<Cow<'_, str>> {
    match text {
        Some(Text::String(value)) if !value.is_empty() => Some(value),
        _ => None,
    }
}

/// A required string field: present, not `null`, not empty.
fn required_string<'de>(text: Option<Text<'de>>, path: &str) -> Result<Cow<'de, str>, Failure> {
    match text {
        None => Err(Failure::field(path, "required field is missing")),
        Some(Text::Null) => Err(Failure::field(path, "expected a string, found null")),
        Some(Text::String(value)) if value.is_empty() => {
            Err(Failure::field(path, "must not be empty"))
        }
        Some(Text::String(value)) => Ok(value),
    }
}

fn check_length(value: &str, path: &str, limit: usize) -> Result<(), Failure> {
    if value.len() > limit {
        let message = format!("too long: {} bytes, limit {limit} bytes", value.len());
        return Err(Failure::field(path, message));
    }
    Ok(())
}

/// Checks `value` against a charset; `rule` describes the whole rule for the error message.
fn check_charset(
    value: &str,
    path: &str,
    allowed: fn(u8) -> bool,
    rule: &str,
) -> Result<(), Failure> {
    match value.bytes().position(|byte| !allowed(byte)) {
        None => Ok(()),
        Some(position) => {
            let character = value[position..].chars().next().unwrap_or_default();
            let message = format!(
                "invalid character {character:?} at byte {}: {rule}",
                position + 1
            );
            Err(Failure::field(path, message))
        }
    }
}

fn is_tenant_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b':' | b'-')
}

fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_lowercase() || byte.is_ascii_digit() || matches!(byte, b'_' | b'.')
}

/// A client value quoted for an error message, cut to 64 characters.
fn quoted(value: &str) -> String {
    match value.char_indices().nth(64) {
        Some((end, _)) => format!("{:?}...", &value[..end]),
        None => format!("{value:?}"),
    }
}

fn owned(value: Option<Cow<'_, str>>) -> Option<model::Text> {
    value.map(text)
}

/// The field's text as stored: borrowed text is copied (inline when short), owned text keeps its
/// buffer.
fn text(value: Cow<'_, str>) -> model::Text {
    match value {
        Cow::Borrowed(text) => text.into(),
        Cow::Owned(text) => text.into(),
    }
}

fn validate(raw: RawEvent<'_>, ctx: &ValidationContext) -> Result<Event, Failure> {
    let id = optional_string(raw.id);
    if let Some(id) = &id {
        check_length(id, "id", ID_BYTES_MAX)?;
    }

    let tenant = required_string(raw.tenant, "tenant")?;
    check_length(&tenant, "tenant", TENANT_BYTES_MAX)?;
    check_charset(
        &tenant,
        "tenant",
        is_tenant_byte,
        "a tenant is 1..128 bytes of [A-Za-z0-9_.:-]",
    )?;

    let project = optional_string(raw.project);
    if let Some(project) = &project {
        check_length(project, "project", PROJECT_BYTES_MAX)?;
    }

    let actor = validate_actor(raw.actor)?;

    let action = required_string(raw.action, "action")?;
    check_length(&action, "action", ACTION_BYTES_MAX)?;
    check_charset(
        &action,
        "action",
        is_name_byte,
        "an action is at most 64 bytes of [a-z0-9_.]",
    )?;

    let outcome = match optional_string(raw.outcome) {
        None => Outcome::default(),
        Some(text) => Outcome::parse(&text).ok_or_else(|| {
            let message = format!(
                "unknown outcome {} (expected success or failure)",
                quoted(&text)
            );
            Failure::field("outcome", message)
        })?,
    };

    let resource = validate_resource(raw.resource)?;

    let timestamp_us = match optional_string(raw.timestamp) {
        None => ctx.now_us,
        Some(text) => validate_timestamp(&text, &tenant, ctx)?,
    };

    let details = match raw.details {
        None | Some("null") => None,
        Some(text) if text.starts_with('{') && raw.details_compact => Some(text.into()),
        Some(text) if text.starts_with('{') => {
            let mut compact = String::with_capacity(text.len());
            if compact_json(text, 0, ctx.details_depth_max, &mut compact).is_err() {
                let message = format!("nested deeper than {} levels", ctx.details_depth_max);
                return Err(Failure::field("details", message));
            }
            Some(compact.into())
        }
        Some(text) => {
            let message = format!("expected an object, found {}", json_kind(text));
            return Err(Failure::field("details", message));
        }
    };

    // JSON text with a lone UTF-16 surrogate escape is not Unicode: stored as sent, every
    // strict reader of it (serde_json's `Value`, browsers' TextDecoder with fatal) refuses it.
    for (field, text) in [
        ("details", details.as_deref()),
        ("changes", raw.changes.as_deref()),
    ] {
        if let Some(at) = text.and_then(unpaired_surrogate) {
            let message = format!(
                "a \\u escape at byte {at} of its JSON text is half of a UTF-16 surrogate pair \
                 without the other half (not a Unicode character)"
            );
            return Err(Failure::field(field, message));
        }
    }

    Ok(Event {
        id: owned(id),
        timestamp_us,
        tenant: text(tenant),
        project: owned(project),
        actor,
        action: text(action),
        outcome,
        resource,
        changes: raw.changes.map(model::Text::from),
        details,
    })
}

/// The byte offset of the first `\uXXXX` escape in JSON text that is a UTF-16 surrogate
/// without its other half (a high one not followed by a `\u` low one, or a low one alone).
///
/// ```text
/// {"a":"\ud83d\ude00"}  -> None       (a pair: one character)
/// {"a":"\ud83d x"}       -> Some(6)
/// {"a":"\\ud800"}        -> None       (an escaped backslash, then text)
/// ```
fn unpaired_surrogate(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let hex = |at: usize| -> Option<u16> {
        let digits = std::str::from_utf8(bytes.get(at..at + 4)?).ok()?;
        u16::from_str_radix(digits, 16).ok()
    };
    let mut i = 0;
    while let Some(found) = memchr_backslash(&bytes[i..]) {
        let at = i + found;
        match bytes.get(at + 1) {
            Some(b'u') => {
                let code = hex(at + 2)?;
                match code {
                    0xD800..=0xDBFF => {
                        let low = (bytes.get(at + 6) == Some(&b'\\')
                            && bytes.get(at + 7) == Some(&b'u'))
                        .then(|| hex(at + 8))
                        .flatten();
                        if !low.is_some_and(|low| (0xDC00..=0xDFFF).contains(&low)) {
                            return Some(at);
                        }
                        i = at + 12;
                    }
                    0xDC00..=0xDFFF => return Some(at),
                    _ => i = at + 6,
                }
            }
            Some(_) => i = at + 2,
            None => return None,
        }
    }
    None
}

fn memchr_backslash(bytes: &[u8]) -> Option<usize> {
    memchr::memchr(b'\\', bytes)
}

fn validate_actor(raw: Option<RawActor<'_>>) -> Result<Actor, Failure> {
    let Some(raw) = raw else {
        return Err(Failure::field("actor", "required field is missing"));
    };
    let id = optional_string(raw.id);
    let email = optional_string(raw.email);
    if let Some(email) = &email {
        check_length(email, "actor.email", EMAIL_BYTES_MAX)?;
    }
    if id.is_none() && email.is_none() {
        return Err(Failure::field(
            "actor",
            "needs actor.id or actor.email (both are missing or empty)",
        ));
    }
    let kind = match optional_string(raw.kind) {
        None => ActorType::default(),
        Some(text) => ActorType::parse(&text).ok_or_else(|| {
            let message = format!(
                "unknown actor type {} (expected user, api_token or system)",
                quoted(&text)
            );
            Failure::field("actor.type", message)
        })?,
    };
    let ip = match optional_string(raw.ip) {
        None => None,
        Some(text) => match text.parse::<IpAddr>() {
            // Rust's IPv4 parser accepts only the canonical dotted-quad text (no leading zeros),
            // so the text as sent is already normalized.
            Ok(IpAddr::V4(_)) => Some(self::text(text)),
            Ok(address) => Some(model::Text::from(address.to_canonical().to_string())),
            Err(_) => {
                let message = format!("not an IPv4 or IPv6 address: {}", quoted(&text));
                return Err(Failure::field("actor.ip", message));
            }
        },
    };
    let user_agent = optional_string(raw.user_agent);
    if let Some(user_agent) = &user_agent {
        check_length(user_agent, "actor.user_agent", USER_AGENT_BYTES_MAX)?;
    }
    Ok(Actor {
        id: owned(id),
        email: owned(email),
        kind,
        ip,
        user_agent: owned(user_agent),
    })
}

fn validate_resource(raw: Option<RawResource<'_>>) -> Result<Resource, Failure> {
    let Some(raw) = raw else {
        return Err(Failure::field("resource", "required field is missing"));
    };
    let kind = required_string(raw.kind, "resource.type")?;
    check_length(&kind, "resource.type", RESOURCE_TYPE_BYTES_MAX)?;
    check_charset(
        &kind,
        "resource.type",
        is_name_byte,
        "a resource type is at most 64 bytes of [a-z0-9_.]",
    )?;
    let id = optional_string(raw.id);
    if let Some(id) = &id {
        check_length(id, "resource.id", RESOURCE_ID_BYTES_MAX)?;
    }
    let name = optional_string(raw.name);
    if let Some(name) = &name {
        check_length(name, "resource.name", RESOURCE_ID_BYTES_MAX)?;
    }
    Ok(Resource {
        kind: text(kind),
        id: owned(id),
        name: owned(name),
    })
}

fn validate_timestamp(
    text: &str,
    tenant: &str,
    ctx: &ValidationContext,
) -> Result<TimestampUs, Failure> {
    let timestamp_us = parse_rfc3339_us(text)
        .map_err(|error| Failure::field("timestamp", format!("{error}: {}", quoted(text))))?;
    if timestamp_us > ctx.now_us.saturating_add(ctx.future_tolerance_us) {
        let message = format!(
            "{} is more than {} in the future (server time {})",
            format_rfc3339_us(timestamp_us),
            describe_duration(ctx.future_tolerance_us),
            format_rfc3339_us(ctx.now_us)
        );
        return Err(Failure::field("timestamp", message));
    }
    let retention_days = ctx.retention.days_for(tenant);
    let oldest_us = ctx
        .now_us
        .saturating_sub(i64::from(retention_days).saturating_mul(US_PER_DAY));
    if timestamp_us < oldest_us {
        let message = format!(
            "{} is older than the tenant's retention of {retention_days} days (oldest accepted {})",
            format_rfc3339_us(timestamp_us),
            format_rfc3339_us(oldest_us)
        );
        return Err(Failure::field("timestamp", message));
    }
    Ok(timestamp_us)
}

fn describe_duration(duration_us: i64) -> String {
    const US_PER_HOUR: i64 = 3600 * US_PER_SECOND;
    if duration_us % US_PER_HOUR == 0 {
        format!("{} hours", duration_us / US_PER_HOUR)
    } else if duration_us % US_PER_SECOND == 0 {
        format!("{} seconds", duration_us / US_PER_SECOND)
    } else {
        format!("{duration_us} microseconds")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_drops_whitespace_outside_strings_only() {
        let mut out = String::new();
        compact_json(
            "{ \"a b\" : [ 1 ,\n\t2 ], \"c\\\" d\" : \" x \" }",
            0,
            32,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, r#"{"a b":[1,2],"c\" d":" x "}"#);
    }

    #[test]
    fn compact_counts_depth_from_the_start_depth() {
        let mut out = String::new();
        assert!(compact_json("[[[]]]", 0, 3, &mut out).is_ok());
        assert!(compact_json("[[[]]]", 1, 3, &mut out).is_err());
        assert!(compact_json("\"[[[[\"", 0, 1, &mut out).is_ok());
    }

    #[test]
    fn key_printing_escapes_controls_and_truncates() {
        assert_eq!(printable_key("a\nb"), "a\\nb");
        assert_eq!(
            printable_key(&"x".repeat(100)),
            format!("{}...", "x".repeat(64))
        );
    }
}
