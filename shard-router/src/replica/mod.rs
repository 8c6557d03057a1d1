//! The replica connection: one enum over the three engines, chosen by URL scheme.
//!
//! Guarantees the partition tasks rely on:
//! - [`Replica::apply`] runs a flush's statements and records the partition's position in **one**
//!   replica transaction: either both are durable or neither is. The Kafka offset is stored only after
//!   it returned `Ok`.
//! - Statements are idempotent for tables with a primary key (upserts and deletes by key); the recorded
//!   position makes replays skip what is applied, which also covers tables without one.
//! - DDL ([`Replica::run_ddl`]) runs outside apply transactions: MySQL commits implicitly around DDL.

/// Evaluates `$body` with `$pool` bound to the replica's pool, whatever the engine: the body is
/// written once and type-checked against each engine's concrete pool.
macro_rules! on_pool {
    ($replica:expr, $pool:ident => $body:expr) => {
        match $replica {
            Replica::MySql { pool: $pool, .. } => $body,
            Replica::Sqlite($pool) => $body,
            Replica::Postgres($pool) => $body,
        }
    };
}

mod bookkeeping;
mod exec;

use std::str::FromStr;
use std::time::Duration;

use shared::Lsn;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Executor};

use crate::batch::AppliedPosition;
use crate::config::ReplicaUrl;
use crate::dialect::Dialect;
use crate::error::RouterError;
use crate::plan::Statement;

pub use exec::{Outcome, StatementFailed};

enum DdlRace {
    AlreadyDone,
    Retry,
    No,
}

/// Classifies a DDL error caused by another router running the same DDL at the same time.
fn ddl_race(error: &sqlx::Error) -> DdlRace {
    let sqlx::Error::Database(db) = error else {
        return DdlRace::No;
    };
    let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
    let message = db.message();
    match code.as_str() {
        // PostgreSQL duplicate table/object/column/schema, MySQL table/column exists.
        "42P07" | "42710" | "42701" | "42P06" | "1050" | "1060" => DdlRace::AlreadyDone,
        // PostgreSQL: concurrent CREATE … IF NOT EXISTS collide on the catalog's unique index;
        // deadlocks on either engine.
        "23505" | "40P01" | "1213" => DdlRace::Retry,
        _ if message.contains("already exists") || message.contains("duplicate column name") => {
            DdlRace::AlreadyDone
        }
        _ => DdlRace::No,
    }
}

/// How long to wait for a connection from the pool (or a new one) before calling the replica unreachable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// A replica database.
#[derive(Clone, Debug)]
pub enum Replica {
    MySql { pool: MySqlPool, collation: String },
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Replica {
    /// Opens a pool of at most `connections` connections and checks the replica answers.
    pub async fn connect(url: &ReplicaUrl, connections: u32) -> Result<Self, RouterError> {
        let raw = url.secret_url().as_str();
        let bad_url =
            |e: sqlx::Error| RouterError::replica(format!("invalid replica URL {url}"), e);
        let replica = match url.dialect {
            Dialect::MySql => {
                let raw = raw.replacen("mariadb://", "mysql://", 1);
                let options = MySqlConnectOptions::from_str(&raw)
                    .map_err(bad_url)?
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
                let collation = bookkeeping::mysql_collation(&pool).await?;
                Replica::MySql { pool, collation }
            }
            Dialect::Sqlite => {
                let options = SqliteConnectOptions::from_str(raw)
                    .map_err(bad_url)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    // FULL: a committed transaction survives a power loss, which is what allows the
                    // Kafka offset to advance after it.
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(30))
                    .foreign_keys(false)
                    .disable_statement_logging();
                // SQLite has one writer at a time; one connection serialises the partitions' writes
                // instead of making them fail with SQLITE_BUSY.
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(60))
                    .connect_with(options)
                    .await
                    .map_err(|e| RouterError::replica(format!("cannot open {url}"), e))?;
                Replica::Sqlite(pool)
            }
            Dialect::Postgres => {
                let options = PgConnectOptions::from_str(raw)
                    .map_err(bad_url)?
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
                Replica::Postgres(pool)
            }
        };
        replica.prepare().await?;
        Ok(replica)
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Replica::MySql { .. } => Dialect::MySql,
            Replica::Sqlite(_) => Dialect::Sqlite,
            Replica::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The text collation new MySQL tables get (binary, NO PAD where the server has one).
    pub fn collation(&self) -> &str {
        match self {
            Replica::MySql { collation, .. } => collation,
            // Ignored by the other dialects.
            _ => "utf8mb4_bin",
        }
    }

    /// Creates the bookkeeping tables if missing.
    async fn prepare(&self) -> Result<(), RouterError> {
        self.run_ddl(&bookkeeping::create_tables(self.dialect()))
            .await
    }

    /// Runs DDL statements one by one, outside any transaction.
    pub async fn run_ddl(&self, statements: &[String]) -> Result<(), RouterError> {
        for sql in statements {
            let mut attempt = 0;
            loop {
                let result = on_pool!(self, pool => pool.execute(sql.as_str()).await.map(|_| ()));
                let Err(error) = result else { break };
                // Routers (and partitions) create the same tables concurrently: the loser sees the
                // object exist (done) or a catalog conflict (try again).
                match ddl_race(&error) {
                    DdlRace::AlreadyDone => break,
                    DdlRace::Retry if attempt < 5 => {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                    }
                    _ => {
                        return Err(RouterError::replica(
                            format!("creating or altering a table: {sql}"),
                            error,
                        ))
                    }
                }
            }
        }
        Ok(())
    }

    /// The columns of a replica table, or `None` when it does not exist. `schema` is the replica
    /// schema (PostgreSQL only); `name` the replica table name.
    pub async fn existing_columns(
        &self,
        schema: Option<&str>,
        name: &str,
    ) -> Result<Option<Vec<String>>, RouterError> {
        let cols: Result<Vec<String>, sqlx::Error> = match self {
            Replica::MySql { pool, .. } => {
                sqlx::query_scalar(
                    "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.COLUMNS \
                     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                )
                .bind(name)
                .fetch_all(pool)
                .await
            }
            Replica::Sqlite(pool) => {
                sqlx::query_scalar("SELECT name FROM pragma_table_info(?) ORDER BY cid")
                    .bind(name)
                    .fetch_all(pool)
                    .await
            }
            Replica::Postgres(pool) => {
                sqlx::query_scalar(
                    "SELECT column_name::text FROM information_schema.columns \
                     WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
                )
                .bind(schema.unwrap_or("public"))
                .bind(name)
                .fetch_all(pool)
                .await
            }
        };
        let cols =
            cols.map_err(|e| RouterError::replica(format!("reading the columns of {name}"), e))?;
        Ok(if cols.is_empty() { None } else { Some(cols) })
    }

    /// The position recorded for a partition (zero if none).
    pub async fn position(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<AppliedPosition, RouterError> {
        bookkeeping::read_position(self, topic, partition).await
    }

    /// Runs `statements` and records `position` for the partition in one transaction, provided the
    /// stored position is still `before` (what this task last wrote). A failing statement rolls
    /// everything back and is named by its index.
    pub async fn apply(
        &self,
        statements: &[Statement],
        topic: &str,
        partition: i32,
        before: &AppliedPosition,
        position: &AppliedPosition,
        truncate_arrival: Option<(&str, Lsn)>,
    ) -> Result<Outcome, StatementFailed> {
        let select = bookkeeping::select_position(self.dialect(), topic, partition, true);
        let fence = exec::Fence {
            select: &select,
            before: bookkeeping::stored(before),
            after: bookkeeping::stored(position),
        };
        let book = bookkeeping::position_statements(
            self.dialect(),
            topic,
            partition,
            position,
            truncate_arrival,
        );
        on_pool!(self, pool => exec::in_transaction(pool, &fence, statements, &book).await)
    }

    /// Runs `statements` in a transaction that is always rolled back: finds which one fails.
    pub async fn dry_run(&self, statements: &[Statement]) -> Result<(), StatementFailed> {
        on_pool!(self, pool => exec::dry_run(pool, statements).await)
    }

    /// How many partitions reached the truncate of `table` at `lsn`, and whether it is done.
    pub async fn truncate_state(
        &self,
        topic: &str,
        table: &str,
        lsn: Lsn,
    ) -> Result<(i64, bool), RouterError> {
        bookkeeping::truncate_state(self, topic, table, lsn).await
    }

    /// Marks the truncate done and runs `delete` (if the table exists) in one transaction, unless
    /// another partition already did; returns whether this call did it.
    pub async fn truncate_once(
        &self,
        topic: &str,
        table: &str,
        lsn: Lsn,
        delete: Option<&str>,
    ) -> Result<bool, RouterError> {
        bookkeeping::truncate_once(self, topic, table, lsn, delete).await
    }
}
