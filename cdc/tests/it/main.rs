#![allow(unreachable_pub)]
//! Integration tests of `cdc` against the real local services (`scripts/services.sh up`).

mod capture;
mod crash;
mod failures;
mod support;
