//! Integration tests of shard-router against the local services (`scripts/services.sh up`).
#![allow(unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

mod chaos;
mod cli;
mod dlq;
mod e2e;
mod failures;
mod keys;
mod positions;
mod prometheus;
mod schema;
mod sharding;
mod snapshot;
mod support;
mod tls;
mod traces;
mod transforms;
