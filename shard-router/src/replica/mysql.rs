//! MySQL and MariaDB replicas: strict mode on every connection, UTC, utf8mb4, and a binary NO PAD
//! collation for text columns of new tables.

use std::str::FromStr;

use shared::Lsn;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::{ConnectOptions, Executor, MySql};

use super::exec::SqlPool;
use super::{Outcome, Replica, StatementFailed, TableKeys, ACQUIRE_TIMEOUT};
use crate::batch::AppliedPosition;
use crate::config::ReplicaUrl;
use crate::dead_letter::{DlqPosition, Recorded};
use crate::dialect::Dialect;
use crate::error::RouterError;
use crate::plan::Statement;

/// A MySQL or MariaDB replica.
#[derive(Clone, Debug)]
pub struct MySqlReplica {
    sql: SqlPool<MySql>,
    collation: String,
    mariadb: bool,
}

impl MySqlReplica {
    /// Opens a pool of at most `connections` connections and creates the bookkeeping tables.
    pub async fn connect(url: &ReplicaUrl, connections: u32) -> Result<Self, RouterError> {
        let raw = url
            .secret_url()
            .as_str()
            .replacen("mariadb://", "mysql://", 1);
        let options = MySqlConnectOptions::from_str(&raw)
            .map_err(|e| RouterError::replica(format!("invalid replica URL {url}"), e))?
            .charset("utf8mb4")
            .timezone(Some("+00:00".to_owned()))
            .disable_statement_logging();
        let pool = MySqlPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // Strict mode: a value the column cannot hold is an error, never a silent
                    // truncation or rounding.
                    conn.execute(
                        "SET SESSION sql_mode = CONCAT(@@sql_mode, ',STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION')",
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| RouterError::replica(format!("cannot connect to {url}"), e))?;
        let collation = collation(&pool).await?;
        let version: String = sqlx::query_scalar("SELECT CAST(VERSION() AS CHAR)")
            .fetch_one(&pool)
            .await
            .map_err(|e| RouterError::replica("reading the server version", e))?;
        let mariadb = version.to_ascii_lowercase().contains("mariadb");
        let sql = SqlPool {
            pool,
            dialect: Dialect::MySql,
        };
        sql.prepare().await?;
        Ok(MySqlReplica {
            sql,
            collation,
            mariadb,
        })
    }
}

/// The binary collation for text columns of new MySQL tables: NO PAD where the server has one, so
/// `'a'` and `'a '` stay different keys (MariaDB `utf8mb4_nopad_bin`, MySQL 8 `utf8mb4_0900_bin`).
async fn collation(pool: &MySqlPool) -> Result<String, RouterError> {
    for candidate in ["utf8mb4_nopad_bin", "utf8mb4_0900_bin"] {
        let found: Option<String> = sqlx::query_scalar(
            "SELECT CAST(COLLATION_NAME AS CHAR) FROM information_schema.COLLATIONS WHERE COLLATION_NAME = ?",
        )
        .bind(candidate)
        .fetch_optional(pool)
        .await
        .map_err(|e| RouterError::replica("reading the server's collations", e))?;
        if let Some(found) = found {
            return Ok(found);
        }
    }
    tracing::warn!("the MySQL server has no NO PAD binary collation: text keys differing only in trailing spaces will collide");
    Ok("utf8mb4_bin".to_owned())
}

impl Replica for MySqlReplica {
    fn dialect(&self) -> Dialect {
        Dialect::MySql
    }

    fn collation(&self) -> &str {
        &self.collation
    }

    fn db_system(&self) -> &'static str {
        if self.mariadb {
            "mariadb"
        } else {
            "mysql"
        }
    }

    async fn run_ddl(&self, statements: &[String]) -> Result<(), RouterError> {
        self.sql.run_ddl(statements).await
    }

    async fn existing_columns(
        &self,
        _schema: Option<&str>,
        name: &str,
    ) -> Result<Option<Vec<String>>, RouterError> {
        let cols: Vec<String> = sqlx::query_scalar(
            "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
        )
        .bind(name)
        .fetch_all(&self.sql.pool)
        .await
        .map_err(|e| RouterError::replica(format!("reading the columns of {name}"), e))?;
        Ok(Some(cols).filter(|c| !c.is_empty()))
    }

    async fn column_types(
        &self,
        _schema: Option<&str>,
        name: &str,
    ) -> Result<Vec<(String, String)>, RouterError> {
        sqlx::query_as(
            "SELECT CAST(COLUMN_NAME AS CHAR), CAST(COLUMN_TYPE AS CHAR) FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
        )
        .bind(name)
        .fetch_all(&self.sql.pool)
        .await
        .map_err(|e| RouterError::replica(format!("reading the column types of {name}"), e))
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
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT CAST(INDEX_NAME AS CHAR), CAST(COLUMN_NAME AS CHAR) FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY INDEX_NAME, SEQ_IN_INDEX",
        )
        .bind(name)
        .fetch_all(&self.sql.pool)
        .await
        .map_err(|e| RouterError::replica(format!("reading the keys of {name}"), e))?;
        let mut keys = TableKeys::default();
        for (index, column) in rows {
            if index == "PRIMARY" {
                keys.pk.push(column);
            } else if !keys.indexes.contains(&index) {
                keys.indexes.push(index);
            }
        }
        Ok(keys)
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
