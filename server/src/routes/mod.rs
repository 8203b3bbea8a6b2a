//! The `/v1` routes.

pub mod admin;
pub mod events;
pub mod ingest;
pub mod page;
pub mod params;
pub mod stream;
pub mod tokens;
