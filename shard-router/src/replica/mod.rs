//! The replica: one trait, [`Replica`], implemented once per engine ([`mysql`] also for MariaDB,
//! [`sqlite`], [`postgres`]), and [`AnyReplica`], the enum over the three that the process runs,
//! chosen by the replica URL's scheme. Tests put an in-memory replica in its place.
//!
//! Guarantees the partition tasks rely on, which every implementation keeps:
//! - [`Replica::apply`] runs a flush's statements and records the partition's position in **one**
//!   replica transaction: either both are durable or neither is, and only if the stored position is
//!   still the one the task last wrote (the fence). The Kafka offset is stored only after it returned
//!   `Ok`.
//! - Statements are idempotent for tables with a primary key (upserts and deletes by key); the recorded
//!   position makes replays skip what is applied, which also covers tables without one.
//! - DDL ([`Replica::run_ddl`]) runs outside apply transactions: MySQL commits implicitly around DDL.
//! - A barrier ([`crate::barrier`]) is recorded with [`Replica::apply`] (an arrival) and completed
//!   by [`Replica::barrier_once`], whose action runs exactly once whichever partitions race for it.

mod bookkeeping;
mod exec;
pub mod mysql;
pub mod postgres;
pub mod sqlite;
pub mod tls;

use std::future::Future;
use std::time::Duration;

use shared::Lsn;

use crate::batch::AppliedPosition;
use crate::config::ReplicaUrl;
use crate::dead_letter::{DlqPosition, Recorded};
use crate::dialect::Dialect;
use crate::error::RouterError;
use crate::plan::Statement;

pub use exec::{Outcome, StatementFailed, StoredPosition};

/// A replica table's keys, introspected: see [`Replica::table_keys`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableKeys {
    pub pk: Vec<String>,
    pub pk_constraint: Option<String>,
    pub indexes: Vec<String>,
}
pub use mysql::MySqlReplica;
pub use postgres::PostgresReplica;
pub use sqlite::SqliteReplica;

/// How long to wait for a connection from the pool (or a new one) before calling the replica
/// unreachable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// A replica database, as the applier and the partition tasks use it. Every method may be called from
/// several partition tasks at once.
pub trait Replica: Send + Sync + 'static {
    fn dialect(&self) -> Dialect;

    /// The text collation new MySQL tables get (binary, NO PAD where the server has one); other
    /// engines ignore it.
    fn collation(&self) -> &str;

    /// `db.system.name` of the OpenTelemetry database conventions: `postgresql`, `sqlite`, `mysql`,
    /// or `mariadb` when the MySQL-protocol server says it is one.
    fn db_system(&self) -> &'static str {
        self.dialect().db_system()
    }

    /// Runs DDL statements one by one, outside any transaction. Another router (or partition)
    /// running the same DDL at the same time is not an error.
    fn run_ddl(
        &self,
        statements: &[String],
    ) -> impl Future<Output = Result<(), RouterError>> + Send;

    /// The columns of a replica table, or `None` when it does not exist. `schema` is the replica
    /// schema (PostgreSQL only); `name` the replica table name.
    fn existing_columns(
        &self,
        schema: Option<&str>,
        name: &str,
    ) -> impl Future<Output = Result<Option<Vec<String>>, RouterError>> + Send;

    /// The columns of a replica table with their types as the replica spells them (`numeric(10,2)`,
    /// `decimal(10,2)`), for the engines whose column types carry a length, precision or scale;
    /// empty for a table that does not exist, or an engine without them (SQLite).
    fn column_types(
        &self,
        schema: Option<&str>,
        name: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>, RouterError>> + Send {
        let _ = (schema, name);
        async { Ok(Vec::new()) }
    }

    /// The primary key (and its constraint's name) and the index names of a replica table; empty
    /// for a table that does not exist.
    fn table_keys(
        &self,
        schema: Option<&str>,
        name: &str,
    ) -> impl Future<Output = Result<TableKeys, RouterError>> + Send;

    /// Runs a schema change's statements in one transaction (MySQL commits around each DDL on its
    /// own: every step of a plan is idempotent, see [`crate::schema`]).
    fn apply_schema(
        &self,
        statements: &[Statement],
    ) -> impl Future<Output = Result<(), StatementFailed>> + Send;

    /// The position recorded for a partition (zero if none).
    fn position(
        &self,
        topic: &str,
        partition: i32,
    ) -> impl Future<Output = Result<AppliedPosition, RouterError>> + Send;

    /// Runs `statements` and records `position` for the partition (and `arrival`, a partition reaching
    /// a barrier: its key and LSN; and `dead_letters`, events set aside that the position moves past
    /// — one already recorded is left as it is) in one transaction, provided the stored position is
    /// still `before` (what this task last wrote). A failing statement rolls everything back and is
    /// named by its index.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        statements: &[Statement],
        topic: &str,
        partition: i32,
        before: &AppliedPosition,
        position: &AppliedPosition,
        arrival: Option<(&str, Lsn)>,
        dead_letters: &[Recorded],
    ) -> impl Future<Output = Result<Outcome, StatementFailed>> + Send;

    /// The dead letters recorded for a partition: source offset and place in the DLQ, by offset.
    fn dead_letters(
        &self,
        topic: &str,
        partition: i32,
    ) -> impl Future<Output = Result<Vec<(i64, DlqPosition)>, RouterError>> + Send;

    /// Marks the dead letter of (`topic`, `partition`, `offset`) resolved (`resolution`: `replayed`
    /// or `discarded`) and runs `statements`, in one transaction, unless it is not recorded or is
    /// resolved already (then nothing is done and the answer is `false`): a dead letter is replayed
    /// at most once.
    fn resolve_dead_letter(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        resolution: &str,
        statements: &[Statement],
    ) -> impl Future<Output = Result<bool, StatementFailed>> + Send;

    /// Runs `statements` in a transaction that is always rolled back: finds which one fails.
    fn dry_run(
        &self,
        statements: &[Statement],
    ) -> impl Future<Output = Result<(), StatementFailed>> + Send;

    /// How many partitions reached the barrier `key` at `lsn`, and whether its action is done.
    fn barrier_state(
        &self,
        topic: &str,
        key: &str,
        lsn: Lsn,
    ) -> impl Future<Output = Result<(i64, bool), RouterError>> + Send;

    /// Marks the barrier done and runs `action` (if any) in one transaction, unless another partition
    /// already did; returns whether this call did it.
    fn barrier_once(
        &self,
        topic: &str,
        key: &str,
        lsn: Lsn,
        action: Option<&Statement>,
    ) -> impl Future<Output = Result<bool, RouterError>> + Send;
}

/// The replica the process runs: one of the three engines, chosen by the URL's scheme.
#[derive(Clone, Debug)]
pub enum AnyReplica {
    MySql(MySqlReplica),
    Sqlite(SqliteReplica),
    Postgres(PostgresReplica),
}

/// Connections a router keeps to its replica: partitions take turns at them (see
/// [`crate::apply::Applier`]). Four keep two cores busy while each partition's transaction waits
/// on the server; more only add partitions holding planned statements at once. SQLite takes one
/// writer.
pub fn connections(dialect: Dialect) -> usize {
    match dialect {
        Dialect::Sqlite => 1,
        Dialect::MySql | Dialect::Postgres => 4,
    }
}

impl AnyReplica {
    /// Opens a pool of at most `connections` connections, checks the replica answers and creates the
    /// bookkeeping tables if missing.
    /// A TLS failure is a configuration error ([`tls`]), not retryable.
    pub async fn connect(url: &ReplicaUrl, connections: u32) -> Result<Self, RouterError> {
        let connected = match url.dialect {
            Dialect::MySql => MySqlReplica::connect(url, connections)
                .await
                .map(AnyReplica::MySql),
            Dialect::Sqlite => SqliteReplica::connect(url).await.map(AnyReplica::Sqlite),
            Dialect::Postgres => PostgresReplica::connect(url, connections)
                .await
                .map(AnyReplica::Postgres),
        };
        connected.map_err(|e| tls::refused(url, e))
    }
}

impl Replica for AnyReplica {
    fn dialect(&self) -> Dialect {
        match self {
            AnyReplica::MySql(r) => r.dialect(),
            AnyReplica::Sqlite(r) => r.dialect(),
            AnyReplica::Postgres(r) => r.dialect(),
        }
    }

    fn db_system(&self) -> &'static str {
        match self {
            AnyReplica::MySql(r) => r.db_system(),
            AnyReplica::Sqlite(r) => r.db_system(),
            AnyReplica::Postgres(r) => r.db_system(),
        }
    }

    fn collation(&self) -> &str {
        match self {
            AnyReplica::MySql(r) => r.collation(),
            AnyReplica::Sqlite(r) => r.collation(),
            AnyReplica::Postgres(r) => r.collation(),
        }
    }

    async fn run_ddl(&self, statements: &[String]) -> Result<(), RouterError> {
        match self {
            AnyReplica::MySql(r) => r.run_ddl(statements).await,
            AnyReplica::Sqlite(r) => r.run_ddl(statements).await,
            AnyReplica::Postgres(r) => r.run_ddl(statements).await,
        }
    }

    async fn existing_columns(
        &self,
        schema: Option<&str>,
        name: &str,
    ) -> Result<Option<Vec<String>>, RouterError> {
        match self {
            AnyReplica::MySql(r) => r.existing_columns(schema, name).await,
            AnyReplica::Sqlite(r) => r.existing_columns(schema, name).await,
            AnyReplica::Postgres(r) => r.existing_columns(schema, name).await,
        }
    }

    async fn column_types(
        &self,
        schema: Option<&str>,
        name: &str,
    ) -> Result<Vec<(String, String)>, RouterError> {
        match self {
            AnyReplica::MySql(r) => r.column_types(schema, name).await,
            AnyReplica::Sqlite(r) => r.column_types(schema, name).await,
            AnyReplica::Postgres(r) => r.column_types(schema, name).await,
        }
    }

    async fn table_keys(&self, schema: Option<&str>, name: &str) -> Result<TableKeys, RouterError> {
        match self {
            AnyReplica::MySql(r) => r.table_keys(schema, name).await,
            AnyReplica::Sqlite(r) => r.table_keys(schema, name).await,
            AnyReplica::Postgres(r) => r.table_keys(schema, name).await,
        }
    }

    async fn apply_schema(&self, statements: &[Statement]) -> Result<(), StatementFailed> {
        match self {
            AnyReplica::MySql(r) => r.apply_schema(statements).await,
            AnyReplica::Sqlite(r) => r.apply_schema(statements).await,
            AnyReplica::Postgres(r) => r.apply_schema(statements).await,
        }
    }

    async fn position(&self, topic: &str, partition: i32) -> Result<AppliedPosition, RouterError> {
        match self {
            AnyReplica::MySql(r) => r.position(topic, partition).await,
            AnyReplica::Sqlite(r) => r.position(topic, partition).await,
            AnyReplica::Postgres(r) => r.position(topic, partition).await,
        }
    }

    async fn apply(
        &self,
        statements: &[Statement],
        topic: &str,
        partition: i32,
        before: &AppliedPosition,
        position: &AppliedPosition,
        arrival: Option<(&str, Lsn)>,
        dead_letters: &[Recorded],
    ) -> Result<Outcome, StatementFailed> {
        let (s, t, p, b, a, d) = (statements, topic, partition, before, arrival, dead_letters);
        match self {
            AnyReplica::MySql(r) => r.apply(s, t, p, b, position, a, d).await,
            AnyReplica::Sqlite(r) => r.apply(s, t, p, b, position, a, d).await,
            AnyReplica::Postgres(r) => r.apply(s, t, p, b, position, a, d).await,
        }
    }

    async fn dead_letters(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Vec<(i64, DlqPosition)>, RouterError> {
        match self {
            AnyReplica::MySql(r) => r.dead_letters(topic, partition).await,
            AnyReplica::Sqlite(r) => r.dead_letters(topic, partition).await,
            AnyReplica::Postgres(r) => r.dead_letters(topic, partition).await,
        }
    }

    async fn resolve_dead_letter(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        resolution: &str,
        statements: &[Statement],
    ) -> Result<bool, StatementFailed> {
        let (t, p, o, r, s) = (topic, partition, offset, resolution, statements);
        match self {
            AnyReplica::MySql(x) => x.resolve_dead_letter(t, p, o, r, s).await,
            AnyReplica::Sqlite(x) => x.resolve_dead_letter(t, p, o, r, s).await,
            AnyReplica::Postgres(x) => x.resolve_dead_letter(t, p, o, r, s).await,
        }
    }

    async fn dry_run(&self, statements: &[Statement]) -> Result<(), StatementFailed> {
        match self {
            AnyReplica::MySql(r) => r.dry_run(statements).await,
            AnyReplica::Sqlite(r) => r.dry_run(statements).await,
            AnyReplica::Postgres(r) => r.dry_run(statements).await,
        }
    }

    async fn barrier_state(
        &self,
        topic: &str,
        key: &str,
        lsn: Lsn,
    ) -> Result<(i64, bool), RouterError> {
        match self {
            AnyReplica::MySql(r) => r.barrier_state(topic, key, lsn).await,
            AnyReplica::Sqlite(r) => r.barrier_state(topic, key, lsn).await,
            AnyReplica::Postgres(r) => r.barrier_state(topic, key, lsn).await,
        }
    }

    async fn barrier_once(
        &self,
        topic: &str,
        key: &str,
        lsn: Lsn,
        action: Option<&Statement>,
    ) -> Result<bool, RouterError> {
        match self {
            AnyReplica::MySql(r) => r.barrier_once(topic, key, lsn, action).await,
            AnyReplica::Sqlite(r) => r.barrier_once(topic, key, lsn, action).await,
            AnyReplica::Postgres(r) => r.barrier_once(topic, key, lsn, action).await,
        }
    }
}
