//! `shard-router`: consumes one shard's change stream and applies it to a SQL replica.
//!
//! This build parses and validates its configuration only; applying changes is the next milestone
//! (see the README).

pub mod config;
pub mod pgarray;
pub mod types;
