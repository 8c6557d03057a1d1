//! Code shared by `cdc` and `shard-router`: the wire format of change events, the partitioning rule,
//! telemetry setup, the HTTP health/metrics endpoint and shutdown signalling.

pub mod backoff;
pub mod config;
pub mod event;
pub mod health;
pub mod lsn;
pub mod propagation;
pub mod routing;
pub mod shards;
pub mod shutdown;
pub mod telemetry;

pub use event::{Action, ChangeEvent, Column, PkColumn, FORMAT_HEADER, FORMAT_VERSION};
pub use lsn::Lsn;
