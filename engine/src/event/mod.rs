//! The audit event: model, JSON parsing and validation, JSON output.

mod model;

pub use model::{Actor, ActorType, Event, Outcome, Resource, StoredEvent, TimestampUs};

/// Placeholder until the parser lands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ValidationError {
    pub line: usize,
    pub field: Option<String>,
    pub message: String,
}
