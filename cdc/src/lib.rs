//! `cdc`: streams a PostgreSQL primary's logical replication (wal2json) into Kafka.
//!
//! Data flow, one stage per module: [`capture`] reads the slot's wal2json stream over the streaming
//! replication protocol and yields typed [`shared::Change`]s; [`route`] picks each change's shard, key
//! and partition; [`transform`] rewrites column values before they leave the primary (and re-derives
//! the key from the rewritten values); [`frame`] wraps each
//! partition's part of a transaction in its `B`/`C`; [`sink`] hands messages to Kafka and returns
//! acknowledgements; [`progress`] decides which LSN may be confirmed back to PostgreSQL — only the end
//! of the longest prefix of transactions that Kafka fully acknowledged. [`pump`] is the event loop
//! that drives them, [`supervisor`] runs sessions and reconnects, [`app`] is the process.

pub mod app;
pub mod capture;
pub mod config;
pub mod error;
pub mod frame;
pub mod metrics;
pub mod origin;
pub mod progress;
pub mod pump;
pub mod replica_identity;
pub mod route;
pub mod schema;
pub mod setup;
pub mod sink;
pub mod snapshot;
pub mod supervisor;
pub mod trace;
pub mod transform;
