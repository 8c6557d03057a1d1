//! SQLite replicas: WAL journal, `synchronous = FULL` (a committed transaction survives a power loss,
//! which is what allows the Kafka offset to advance after it), one connection (one writer at a time).

use std::str::FromStr;
use std::time::Duration;

use shared::Lsn;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Sqlite};

use super::exec::SqlPool;
use super::{Outcome, Replica, StatementFailed, TableKeys};
use crate::batch::AppliedPosition;
use crate::config::ReplicaUrl;
use crate::dead_letter::{DlqPosition, Recorded};
use crate::dialect::Dialect;
use crate::error::RouterError;
use crate::plan::Statement;

/// A SQLite replica.
#[derive(Clone, Debug)]
pub struct SqliteReplica {
    sql: SqlPool<Sqlite>,
}

impl SqliteReplica {
    /// Opens (creating if missing) the database file and creates the bookkeeping tables.
    pub async fn connect(url: &ReplicaUrl) -> Result<Self, RouterError> {
        let options = SqliteConnectOptions::from_str(url.secret_url().as_str())
            .map_err(|e| RouterError::replica(format!("invalid replica URL {url}"), e))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a committed transaction survives a power loss, which is what allows the Kafka
            // offset to advance after it.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(false)
            // Each cached statement holds its compiled program; the planner keeps multi-row
            // statements to one size (`sql::SQLITE_ROWS_PER_STATEMENT`), so a few shapes repeat and
            // a batch's odd-sized tail does not pile up compiled programs.
            .statement_cache_capacity(16)
            .disable_statement_logging();
        // SQLite has one writer at a time; one connection serialises the partitions' writes instead
        // of making them fail with SQLITE_BUSY.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options)
            .await
            .map_err(|e| RouterError::replica(format!("cannot open {url}"), e))?;
        let sql = SqlPool {
            pool,
            dialect: Dialect::Sqlite,
        };
        sql.prepare().await?;
        Ok(SqliteReplica { sql })
    }
}

impl Replica for SqliteReplica {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn collation(&self) -> &str {
        // Only MySQL tables use it.
        "utf8mb4_bin"
    }

    async fn run_ddl(&self, statements: &[String]) -> Result<(), RouterError> {
        self.sql.run_ddl(statements).await
    }

    async fn existing_columns(
        &self,
        _schema: Option<&str>,
        name: &str,
    ) -> Result<Option<Vec<String>>, RouterError> {
        let cols: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info(?) ORDER BY cid")
                .bind(name)
                .fetch_all(&self.sql.pool)
                .await
                .map_err(|e| RouterError::replica(format!("reading the columns of {name}"), e))?;
        Ok(Some(cols).filter(|c| !c.is_empty()))
    }

    async fn position(&self, topic: &str, partition: i32) -> Result<AppliedPosition, RouterError> {
        self.sql.position(topic, partition).await
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
        self.sql
            .apply(
                statements,
                topic,
                partition,
                before,
                position,
                arrival,
                dead_letters,
            )
            .await
    }

    async fn dead_letters(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Vec<(i64, DlqPosition)>, RouterError> {
        self.sql.dead_letters(topic, partition).await
    }

    async fn resolve_dead_letter(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        resolution: &str,
        statements: &[Statement],
    ) -> Result<bool, StatementFailed> {
        self.sql
            .resolve(topic, partition, offset, resolution, statements)
            .await
    }

    async fn dry_run(&self, statements: &[Statement]) -> Result<(), StatementFailed> {
        self.sql.dry_run(statements).await
    }

    async fn apply_schema(&self, statements: &[Statement]) -> Result<(), StatementFailed> {
        self.sql.apply_schema(statements).await
    }

    async fn table_keys(&self, schema: Option<&str>, name: &str) -> Result<TableKeys, RouterError> {
        let _ = schema;
        let context = |e| RouterError::replica(format!("reading the keys of {name}"), e);
        let pk: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk")
                .bind(name)
                .fetch_all(&self.sql.pool)
                .await
                .map_err(context)?;
        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? \
             AND name NOT LIKE 'sqlite_autoindex%' ORDER BY name",
        )
        .bind(name)
        .fetch_all(&self.sql.pool)
        .await
        .map_err(context)?;
        Ok(TableKeys {
            pk,
            pk_constraint: None,
            indexes,
        })
    }

    async fn barrier_state(
        &self,
        topic: &str,
        key: &str,
        lsn: Lsn,
    ) -> Result<(i64, bool), RouterError> {
        self.sql.barrier_state(topic, key, lsn).await
    }

    async fn barrier_once(
        &self,
        topic: &str,
        key: &str,
        lsn: Lsn,
        action: Option<&Statement>,
    ) -> Result<bool, RouterError> {
        self.sql.barrier_once(topic, key, lsn, action).await
    }
}
