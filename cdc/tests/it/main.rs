#![allow(unreachable_pub, clippy::unwrap_used, clippy::expect_used)]
//! Integration tests of `cdc` against the real local services (`scripts/services.sh up`).

mod capture;
mod connections;
mod crash;
mod failures;
mod lag;
mod partitions;
mod setup;
mod slot_lost;
mod suggest;
mod support;
