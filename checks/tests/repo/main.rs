//! Checks of the whole repository, run by `cargo test --workspace` (and so by `scripts/test.sh`).
//! They read files only and need no services:
//!
//! - [`deploy`]: the deployment files (`docker-compose.yml`, the Dockerfiles, `prometheus.yml`,
//!   Grafana's provisioning and dashboard) against what the binaries define — their clap arguments
//!   and their metric names;
//! - [`routing`]: the demo's routing file `main-db/routing.toml` against `main-db/schema.sql`.
//!
//! Every file they name must exist: a missing file fails its check, it is never skipped.
#![allow(unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

mod deploy;
mod files;
mod routing;
