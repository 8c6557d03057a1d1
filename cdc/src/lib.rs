//! `cdc`: streams a PostgreSQL primary's logical replication (wal2json) into Kafka.
//!
//! Data flow: [`replication`] reads wal2json `format-version 2` messages over the streaming replication
//! protocol, [`decode`] turns each into a [`shared::ChangeEvent`], [`route`] picks its topic, key and
//! partition, [`publish`] hands it to Kafka, and [`progress`] decides which LSN may be confirmed back to
//! PostgreSQL: only the end of the longest prefix of transactions that Kafka fully acknowledged.

pub mod app;
pub mod config;
pub mod decode;
pub mod error;
pub mod metrics;
pub mod progress;
pub mod publish;
pub mod replication;
pub mod route;
