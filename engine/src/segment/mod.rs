//! Sealed segments.
