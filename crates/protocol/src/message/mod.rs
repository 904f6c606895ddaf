//! Stored message records.
