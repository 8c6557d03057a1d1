//! Code shared by `cdc` and `shard-router`: the wire format of change events, the partitioning rule,
//! telemetry setup, the HTTP health/metrics endpoint and shutdown signalling.

pub mod backoff;
pub mod change;
pub mod codec;
pub mod config;
pub mod health;
pub mod kafka;
pub mod lsn;
pub mod names;
pub mod propagation;
pub mod routing;
pub mod service;
pub mod shards;
pub mod shutdown;
pub mod telemetry;

pub use change::{
    Action, Change, Column, ColumnDefinition, Ddl, IndexDefinition, LogicalMessage, Origin,
    PkColumn, RowChange, RowOp, SchemaChange, TableDefinition, TableName, Truncate, TxnBoundary,
};
pub use codec::{FORMAT_HEADER, FORMAT_VERSION};
pub use lsn::Lsn;
