//! `shard-router`: consumes one shard's change stream and applies it to a SQL replica.
//!
//! The pure half of applying changes lives here: [`types`] maps source columns to replica types and
//! converts values, [`pgarray`] turns PostgreSQL array literals into JSON, [`sql`] builds statement
//! text per dialect, [`catalog`] tracks the replica's tables and the DDL they need, and [`plan`] turns
//! a transaction's row changes into batched statements. None of them does I/O.

pub mod catalog;
pub mod config;
pub mod pgarray;
pub mod plan;
pub mod sql;
pub mod types;
