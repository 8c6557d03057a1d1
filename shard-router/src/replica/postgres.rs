//! PostgreSQL replicas: sessions pinned to UTC, ISO dates and the `postgres` interval style, so values
//! read back the way the source printed them.

use std::str::FromStr;

use shared::Lsn;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Postgres};

use super::exec::SqlPool;
use super::{Outcome, Replica, StatementFailed, TableKeys, ACQUIRE_TIMEOUT};
use crate::batch::AppliedPosition;
use crate::config::ReplicaUrl;
use crate::dead_letter::{DlqPosition, Recorded};
use crate::dialect::Dialect;
use crate::error::RouterError;
use crate::plan::Statement;

/// A PostgreSQL replica.
#[derive(Clone, Debug)]
pub struct PostgresReplica {
    sql: SqlPool<Postgres>,
}

impl PostgresReplica {
    /// Opens a pool of at most `connections` connections and creates the bookkeeping tables.
    pub async fn connect(url: &ReplicaUrl, connections: u32) -> Result<Self, RouterError> {
        let options = PgConnectOptions::from_str(url.secret_url().as_str())
            .map_err(|e| RouterError::replica(format!("invalid replica URL {url}"), e))?
            .options([
                ("TimeZone", "UTC"),
                ("DateStyle", "ISO,YMD"),
                ("IntervalStyle", "postgres"),
            ])
            .disable_statement_logging();
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| RouterError::replica(format!("cannot connect to {url}"), e))?;
        let sql = SqlPool {
            pool,
            dialect: Dialect::Postgres,
        };
        sql.prepare().await?;
        Ok(PostgresReplica { sql })
    }
}

impl Replica for PostgresReplica {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
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
        schema: Option<&str>,
        name: &str,
    ) -> Result<Option<Vec<String>>, RouterError> {
        let cols: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
        )
        .bind(schema.unwrap_or("public"))
        .bind(name)
        .fetch_all(&self.sql.pool)
        .await
        .map_err(|e| RouterError::replica(format!("reading the columns of {name}"), e))?;
        Ok(Some(cols).filter(|c| !c.is_empty()))
    }

    async fn column_types(
        &self,
        schema: Option<&str>,
        name: &str,
    ) -> Result<Vec<(String, String)>, RouterError> {
        // format_type spells types as wal2json does (`timestamp(3) with time zone`).
        sqlx::query_as(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
             JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
        )
        .bind(schema.unwrap_or("public"))
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
        let schema = schema.unwrap_or("public");
        let context = |e| RouterError::replica(format!("reading the keys of {name}"), e);
        let pk: Vec<(String, String)> = sqlx::query_as(
            "SELECT a.attname::text, con.conname::text FROM pg_constraint con \
             JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord) ON true \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum \
             WHERE n.nspname = $1 AND c.relname = $2 AND con.contype = 'p' ORDER BY k.ord",
        )
        .bind(schema)
        .bind(name)
        .fetch_all(&self.sql.pool)
        .await
        .map_err(context)?;
        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT ic.relname::text FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_class ic ON ic.oid = i.indexrelid \
             WHERE n.nspname = $1 AND c.relname = $2 AND NOT i.indisprimary ORDER BY 1",
        )
        .bind(schema)
        .bind(name)
        .fetch_all(&self.sql.pool)
        .await
        .map_err(context)?;
        Ok(TableKeys {
            pk_constraint: pk.first().map(|(_, c)| c.clone()),
            pk: pk.into_iter().map(|(c, _)| c).collect(),
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
