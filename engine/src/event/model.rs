//! The audit event as Rust types (`../shared/EVENT.md` is the wire contract).
//!
//! [`Event`] is a validated event as a client sent it; [`StoredEvent`] adds what the store assigns
//! on acknowledgement (`seq`, `tenant_seq`, `received`). Text fields are [`Text`] (a string kept
//! inline up to 24 bytes); optional ones are `Option<Text>` and are never `Some("")`: validation turns an empty string into `None`, and the columnar
//! segment format relies on that (an empty cell means "absent").
//!
//! `changes` and `details` are kept as compact JSON text: the store never interprets them, the
//! full-text index tokenizes them, and readers get them back byte for byte.
//!
//! ```
//! use auditlog_engine::event::{Actor, ActorType, Event, Outcome, Resource};
//! let event = Event {
//!     id: Some("evt_1".into()),
//!     timestamp_us: 1_795_000_000_000_000,
//!     tenant: "acct_0042".into(),
//!     project: None,
//!     actor: Actor { id: Some("user_913".into()), ..Actor::default() },
//!     action: "delete".into(),
//!     outcome: Outcome::Success,
//!     resource: Resource { kind: "pod".into(), id: Some("pod_8fj2k".into()), name: None },
//!     changes: None,
//!     details: None,
//! };
//! assert_eq!(event.actor.kind, ActorType::User);
//! ```

use serde::{Deserialize, Serialize};

/// Microseconds since the Unix epoch, UTC.
pub type TimestampUs = i64;

/// A text field of an event: UTF-8 like `String` (it derefs to `&str` and serializes as a
/// string, so the WAL and JSON formats do not see it), but kept inline when it fits in 24 bytes.
/// Most fields of an audit event do (tenants, ids, actions, IPv4 addresses, names), so an event
/// costs 3-4 heap allocations instead of 13: they were the largest part of decoding the WAL at
/// open and of parsing an ingest batch, and of the tail's memory.
///
/// ```
/// use auditlog_engine::event::Text;
/// let tenant: Text = "acct_0042".into();
/// assert!(!tenant.is_heap_allocated());
/// assert_eq!(tenant, "acct_0042");
/// ```
pub type Text = compact_str::CompactString;

/// Longest text a [`Text`] keeps inline (no heap allocation): its own size, 24 bytes on 64-bit.
const INLINE_TEXT_BYTES: usize = std::mem::size_of::<Text>();

/// Who performed the action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum ActorType {
    #[default]
    User,
    ApiToken,
    System,
}

impl ActorType {
    /// The wire name (`user`, `api_token`, `system`).
    pub fn as_str(self) -> &'static str {
        match self {
            ActorType::User => "user",
            ActorType::ApiToken => "api_token",
            ActorType::System => "system",
        }
    }

    /// Parses the wire name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "user" => Some(ActorType::User),
            "api_token" => Some(ActorType::ApiToken),
            "system" => Some(ActorType::System),
            _ => None,
        }
    }

    /// Stable one-byte code used by the on-disk formats.
    pub fn code(self) -> u8 {
        match self {
            ActorType::User => 0,
            ActorType::ApiToken => 1,
            ActorType::System => 2,
        }
    }

    /// Inverse of [`ActorType::code`].
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(ActorType::User),
            1 => Some(ActorType::ApiToken),
            2 => Some(ActorType::System),
            _ => None,
        }
    }
}

/// Whether the action succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Outcome {
    #[default]
    Success,
    Failure,
}

impl Outcome {
    /// The wire name (`success`, `failure`).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }

    /// Parses the wire name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "success" => Some(Outcome::Success),
            "failure" => Some(Outcome::Failure),
            _ => None,
        }
    }

    /// Stable one-byte code used by the on-disk formats.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Failure => 1,
        }
    }

    /// Inverse of [`Outcome::code`].
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Outcome::Success),
            1 => Some(Outcome::Failure),
            _ => None,
        }
    }
}

/// `actor`: at least one of `id` and `email` is present after validation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Actor {
    pub id: Option<Text>,
    pub email: Option<Text>,
    pub kind: ActorType,
    /// Normalized text form of a validated IPv4 or IPv6 address.
    pub ip: Option<Text>,
    pub user_agent: Option<Text>,
}

/// `resource`: what the action was done to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Resource {
    /// `resource.type` on the wire.
    pub kind: Text,
    pub id: Option<Text>,
    pub name: Option<Text>,
}

/// A validated event, before the store assigns its sequence numbers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Event {
    /// Client idempotency key, unique per tenant.
    pub id: Option<Text>,
    /// When it happened, UTC microseconds (the receive time when the client sent none).
    pub timestamp_us: TimestampUs,
    pub tenant: Text,
    pub project: Option<Text>,
    pub actor: Actor,
    pub action: Text,
    pub outcome: Outcome,
    pub resource: Resource,
    /// Compact JSON text of the `changes` array (`[{"field":..,"old":..,"new":..}]`).
    pub changes: Option<Text>,
    /// Compact JSON text of the `details` object.
    pub details: Option<Text>,
}

/// An acknowledged event, as every read path returns it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Unique in the store, strictly increasing in acknowledgement order; starts at 1.
    pub seq: u64,
    /// Per-tenant counter without gaps: the n-th event acknowledged for a tenant has `tenant_seq == n`.
    pub tenant_seq: u64,
    /// When the store acknowledged it, UTC microseconds.
    pub received_us: TimestampUs,
    pub event: Event,
}

/// A stored event borrowed from where it lives (a decoded block's columns, a tail event): what
/// read paths that only write events out (export, stream) use, so that no string is copied
/// before it reaches the output. Flat: the nested [`Event`] fields are spelled out.
///
/// ```
/// use auditlog_engine::event::{Actor, Event, StoredEvent};
/// let stored = StoredEvent {
///     seq: 7,
///     event: Event {
///         tenant: "acct_1".into(),
///         actor: Actor { email: Some("ana@example.com".into()), ..Actor::default() },
///         action: "delete".into(),
///         ..Event::default()
///     },
///     ..StoredEvent::default()
/// };
/// let view = stored.view();
/// assert_eq!((view.seq, view.actor_email), (7, Some("ana@example.com")));
/// assert_eq!(view.to_stored(), stored);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef<'a> {
    pub seq: u64,
    pub tenant_seq: u64,
    pub received_us: TimestampUs,
    pub id: Option<&'a str>,
    pub timestamp_us: TimestampUs,
    pub tenant: &'a str,
    pub project: Option<&'a str>,
    pub actor_id: Option<&'a str>,
    pub actor_email: Option<&'a str>,
    pub actor_type: ActorType,
    pub actor_ip: Option<&'a str>,
    pub actor_user_agent: Option<&'a str>,
    pub action: &'a str,
    pub outcome: Outcome,
    pub resource_type: &'a str,
    pub resource_id: Option<&'a str>,
    pub resource_name: Option<&'a str>,
    /// Compact JSON text, as in [`Event::changes`].
    pub changes: Option<&'a str>,
    /// Compact JSON text, as in [`Event::details`].
    pub details: Option<&'a str>,
}

impl EventRef<'_> {
    /// The owned event.
    pub fn to_stored(&self) -> StoredEvent {
        let owned = |value: Option<&str>| value.map(Text::from);
        StoredEvent {
            seq: self.seq,
            tenant_seq: self.tenant_seq,
            received_us: self.received_us,
            event: Event {
                id: owned(self.id),
                timestamp_us: self.timestamp_us,
                tenant: self.tenant.into(),
                project: owned(self.project),
                actor: Actor {
                    id: owned(self.actor_id),
                    email: owned(self.actor_email),
                    kind: self.actor_type,
                    ip: owned(self.actor_ip),
                    user_agent: owned(self.actor_user_agent),
                },
                action: self.action.into(),
                outcome: self.outcome,
                resource: Resource {
                    kind: self.resource_type.into(),
                    id: owned(self.resource_id),
                    name: owned(self.resource_name),
                },
                changes: owned(self.changes),
                details: owned(self.details),
            },
        }
    }
}

impl StoredEvent {
    /// The event borrowed as an [`EventRef`].
    pub fn view(&self) -> EventRef<'_> {
        self.event.view(self.seq, self.tenant_seq, self.received_us)
    }
}

impl Event {
    /// Bytes of text the event holds: the sum of its strings' lengths (for buffer and memory
    /// estimates).
    ///
    /// ```
    /// use auditlog_engine::event::Event;
    /// let event = Event { tenant: "acct_1".into(), action: "login".into(), ..Event::default() };
    /// assert_eq!(event.text_len(), 11);
    /// ```
    pub fn text_len(&self) -> usize {
        self.texts().map(|text| text.len()).sum()
    }

    /// Heap bytes the event's text holds beyond its own size: the capacity of each [`Text`] too
    /// long to be kept inline, plus 16 bytes of allocator overhead for each (for the tail's
    /// memory bound).
    ///
    /// ```
    /// use auditlog_engine::event::Event;
    /// let mut event = Event { tenant: "acct_1".into(), action: "login".into(), ..Event::default() };
    /// assert_eq!(event.heap_bytes(), 0);
    /// event.details = Some(r#"{"request_id":"req_58e2e50f110ad946"}"#.into());
    /// assert!(event.heap_bytes() >= 37 + 16);
    /// ```
    pub fn heap_bytes(&self) -> usize {
        self.texts()
            .filter(|text| text.is_heap_allocated())
            .map(|text| text.capacity() + 16)
            .sum()
    }

    /// [`Event::heap_bytes`] at each text's length rather than its capacity: what a copy
    /// decoded from a segment holds, however the original's strings were grown (merges bound
    /// their memory by it).
    ///
    /// ```
    /// use auditlog_engine::event::Event;
    /// let mut event = Event { tenant: "acct_1".into(), action: "login".into(), ..Event::default() };
    /// event.details = Some(r#"{"request_id":"req_58e2e50f110ad946"}"#.into());
    /// assert_eq!(event.heap_len_bytes(), 37 + 16);
    /// ```
    pub fn heap_len_bytes(&self) -> usize {
        self.texts()
            .filter(|text| text.len() > INLINE_TEXT_BYTES)
            .map(|text| text.len() + 16)
            .sum()
    }

    /// Every text field present, required ones first.
    fn texts(&self) -> impl Iterator<Item = &Text> {
        [&self.tenant, &self.action, &self.resource.kind]
            .into_iter()
            .chain(
                [
                    &self.id,
                    &self.project,
                    &self.actor.id,
                    &self.actor.email,
                    &self.actor.ip,
                    &self.actor.user_agent,
                    &self.resource.id,
                    &self.resource.name,
                    &self.changes,
                    &self.details,
                ]
                .into_iter()
                .flatten(),
            )
    }

    /// The event borrowed as an [`EventRef`] with the given store-assigned numbers.
    pub fn view(&self, seq: u64, tenant_seq: u64, received_us: TimestampUs) -> EventRef<'_> {
        EventRef {
            seq,
            tenant_seq,
            received_us,
            id: self.id.as_deref(),
            timestamp_us: self.timestamp_us,
            tenant: &self.tenant,
            project: self.project.as_deref(),
            actor_id: self.actor.id.as_deref(),
            actor_email: self.actor.email.as_deref(),
            actor_type: self.actor.kind,
            actor_ip: self.actor.ip.as_deref(),
            actor_user_agent: self.actor.user_agent.as_deref(),
            action: &self.action,
            outcome: self.outcome,
            resource_type: &self.resource.kind,
            resource_id: self.resource.id.as_deref(),
            resource_name: self.resource.name.as_deref(),
            changes: self.changes.as_deref(),
            details: self.details.as_deref(),
        }
    }
}
