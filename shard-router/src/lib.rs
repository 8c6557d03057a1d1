//! `shard-router`: consumes one shard's change stream and applies it to a SQL replica.
//!
//! Data flow: [`consume`] joins the consumer group and runs one [`partition`] task per assigned
//! partition; each task frames source transactions with [`batch`], and [`apply`] turns a batch into
//! DDL ([`catalog`]), statements ([`plan`], [`sql`], [`types`]) and one replica transaction
//! ([`replica`]) that also records the partition's position. The Kafka offset is stored only after
//! that transaction committed. A task starts reading where the replica's position says ([`resume`]),
//! not where the consumer group's offset says.

pub mod app;
pub mod apply;
pub mod barrier;
pub mod batch;
pub mod catalog;
pub mod config;
pub mod consume;
pub mod dead_letter;
pub mod dialect;
pub mod error;
pub mod metrics;
pub mod partition;
pub mod pgarray;
pub mod plan;
pub mod replay;
pub mod replica;
pub mod resume;
pub mod retry;
pub mod schema;
pub mod sql;
pub mod stream;
pub mod trace;
pub mod types;
