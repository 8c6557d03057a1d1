//! Integration tests of shard-router against the local services (`scripts/services.sh up`).
#![allow(unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

mod cli;
mod e2e;
mod failures;
mod keys;
mod prometheus;
mod sharding;
mod support;
mod traces;
mod transforms;
