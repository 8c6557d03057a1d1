//! Static checks of the deployment files — `docker-compose.yml`, `docker/Dockerfile`,
//! `main-db/Dockerfile`, `prometheus/prometheus.yml` and Grafana's provisioning and dashboard —
//! against what the binaries define: their clap arguments (flags, variables, defaults) and the metric
//! names in `cdc/src/metrics.rs` and `shard-router/src/metrics.rs`. There is no Docker engine here or
//! in CI, so these tests read files only; they need no services.
//!
//! Models: [`crate::files`] (paths, YAML), [`compose`] (the compose file), [`binaries`] (the clap
//! definitions of cdc and shard-router), [`dockerfile`] (stages and instructions), [`promql`] (metric
//! names in queries, and the names the binaries export). Checks: [`compose_checks`],
//! [`image_checks`], [`observability_checks`].

mod binaries;
mod compose;
mod compose_checks;
mod dockerfile;
mod image_checks;
mod observability_checks;
mod promql;
