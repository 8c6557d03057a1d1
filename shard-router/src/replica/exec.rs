//! Running statements on any of the three engines: generic over sqlx's `Database`, so the
//! transaction logic, the position fence, the barrier and the DDL retries exist once. Each engine's
//! [`super::Replica`] implementation holds a [`SqlPool`] and adds what differs (connecting,
//! introspection).

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use shared::Lsn;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use super::bookkeeping;
use crate::batch::AppliedPosition;
use crate::dead_letter::{DlqPosition, Recorded};
use crate::dialect::Dialect;
use crate::error::RouterError;
use crate::plan::Statement;
use crate::types::Bind;

/// A pool of one engine, with the operations every engine runs the same way.
#[derive(Debug)]
pub(super) struct SqlPool<DB: Database> {
    pub(super) pool: Pool<DB>,
    pub(super) dialect: Dialect,
}

impl<DB: Database> Clone for SqlPool<DB> {
    fn clone(&self) -> Self {
        SqlPool {
            pool: self.pool.clone(),
            dialect: self.dialect,
        }
    }
}

impl<DB> SqlPool<DB>
where
    DB: Database,
    DB::QueryResult: RowsAffected,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> f64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
{
    /// Runs DDL statements one by one, outside any transaction.
    pub(super) async fn run_ddl(&self, statements: &[String]) -> Result<(), RouterError> {
        for sql in statements {
            let mut attempt = 0;
            loop {
                let result = self.pool.execute(sql.as_str()).await.map(|_| ());
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

    /// Creates the bookkeeping tables if missing.
    pub(super) async fn prepare(&self) -> Result<(), RouterError> {
        self.run_ddl(&bookkeeping::create_tables(self.dialect))
            .await?;
        self.run_ddl(&bookkeeping::migrate(self.dialect)).await
    }

    pub(super) async fn position(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<AppliedPosition, RouterError> {
        let query = bookkeeping::select_position(self.dialect, topic, partition, false);
        let row = read_ints(&self.pool, &query).await.map_err(|e| {
            RouterError::replica(format!("reading the position of {topic}/{partition}"), e)
        })?;
        Ok(bookkeeping::position_of(row.as_deref()))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn apply(
        &self,
        statements: &[Statement],
        topic: &str,
        partition: i32,
        before: &AppliedPosition,
        position: &AppliedPosition,
        arrival: Option<(&str, Lsn)>,
        dead_letters: &[Recorded],
    ) -> Result<Outcome, StatementFailed> {
        let select = bookkeeping::select_position(self.dialect, topic, partition, true);
        let fence = Fence {
            select: &select,
            before: bookkeeping::stored(before),
            after: bookkeeping::stored(position),
        };
        let book = bookkeeping::position_statements(
            self.dialect,
            topic,
            partition,
            position,
            arrival,
            dead_letters,
        );
        in_transaction(&self.pool, &fence, statements, &book).await
    }

    pub(super) async fn dead_letters(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Vec<(i64, DlqPosition)>, RouterError> {
        let query = bookkeeping::select_dead_letters(self.dialect, topic, partition);
        let binds = query.binds();
        let q = bind_all(sqlx::query::<DB>(query.sql()), &binds);
        let rows = self.pool.fetch_all(q).await.map_err(|e| {
            RouterError::replica(
                format!("reading the dead letters of {topic}/{partition}"),
                e,
            )
        })?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let int = |i: usize| row.try_get::<i64, usize>(i);
            let read = (|| Ok::<_, sqlx::Error>((int(0)?, int(1)?, int(2)?)))();
            let (offset, p, o) = read.map_err(|e| {
                RouterError::replica(
                    format!("reading the dead letters of {topic}/{partition}"),
                    e,
                )
            })?;
            out.push((
                offset,
                DlqPosition {
                    partition: i32::try_from(p).unwrap_or(-1),
                    offset: o,
                },
            ));
        }
        Ok(out)
    }

    /// Marks a dead letter resolved and runs `statements`, in one transaction, unless it is not
    /// recorded or already resolved; returns whether it did.
    pub(super) async fn resolve(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        resolution: &str,
        statements: &[Statement],
    ) -> Result<bool, StatementFailed> {
        let claim =
            bookkeeping::resolve_dead_letter(self.dialect, topic, partition, offset, resolution);
        claim_then_all(&self.pool, &claim, statements).await
    }

    pub(super) async fn dry_run(&self, statements: &[Statement]) -> Result<(), StatementFailed> {
        one_transaction(&self.pool, statements, false).await
    }

    pub(super) async fn apply_schema(
        &self,
        statements: &[Statement],
    ) -> Result<(), StatementFailed> {
        one_transaction(&self.pool, statements, true).await
    }

    pub(super) async fn barrier_state(
        &self,
        topic: &str,
        key: &str,
        lsn: Lsn,
    ) -> Result<(i64, bool), RouterError> {
        let query = bookkeeping::barrier_state(self.dialect, topic, key, lsn);
        let row = read_ints(&self.pool, &query)
            .await
            .map_err(|e| RouterError::replica(format!("reading the barrier of {key}"), e))?;
        match row.as_deref() {
            Some(&[arrived, done]) => Ok((arrived, done > 0)),
            _ => Ok((0, false)),
        }
    }

    pub(super) async fn barrier_once(
        &self,
        topic: &str,
        key: &str,
        lsn: Lsn,
        action: Option<&Statement>,
    ) -> Result<bool, RouterError> {
        let claim = bookkeeping::barrier_claim(self.dialect, topic, key, lsn);
        claim_then(&self.pool, &claim, action)
            .await
            .map_err(|e| RouterError::replica(format!("completing the barrier of {key}"), e))
    }
}

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
    let code = crate::error::db_code(db.as_ref());
    let message = db.message();
    match code.as_str() {
        // PostgreSQL duplicate table/object/column/schema, MySQL table/column exists (by error
        // number, see `db_code`).
        "42P07" | "42710" | "42701" | "42P06" | "1050" | "1060" => DdlRace::AlreadyDone,
        // PostgreSQL: concurrent CREATE … IF NOT EXISTS collide on the catalog's unique index;
        // deadlocks on either engine.
        "23505" | "40P01" | "1213" => DdlRace::Retry,
        _ if message.contains("already exists")
            || message
                .to_ascii_lowercase()
                .contains("duplicate column name") =>
        {
            DdlRace::AlreadyDone
        }
        _ => DdlRace::No,
    }
}

/// Statement text with its parameters: planned statements and the router's own bookkeeping.
pub(crate) trait SqlText {
    fn sql(&self) -> &str;
    /// The parameters as sent.
    fn binds(&self) -> Cow<'_, [Bind]>;
}

impl SqlText for Statement {
    fn sql(&self) -> &str {
        &self.sql
    }
    fn binds(&self) -> Cow<'_, [Bind]> {
        self.wire_binds()
    }
}

/// A statement on the bookkeeping tables.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Bookkeeping {
    pub sql: String,
    pub binds: Vec<Bind>,
}

impl SqlText for Bookkeeping {
    fn sql(&self) -> &str {
        &self.sql
    }
    fn binds(&self) -> Cow<'_, [Bind]> {
        Cow::Borrowed(&self.binds)
    }
}

/// A statement of a replica transaction failed; the transaction was rolled back.
#[derive(Debug)]
pub struct StatementFailed {
    /// Index into the statements handed over; `None` when beginning, committing or the bookkeeping
    /// failed.
    pub index: Option<usize>,
    pub source: sqlx::Error,
}

impl StatementFailed {
    pub(crate) fn bookkeeping(source: sqlx::Error) -> Self {
        StatementFailed {
            index: None,
            source,
        }
    }
}

impl fmt::Display for StatementFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "statement {i} failed: {}", self.source),
            None => write!(f, "{}", self.source),
        }
    }
}

/// The partition's position as stored: (commit_lsn, partial_lsn, partial_rows).
pub type StoredPosition = (i64, i64, i64);

/// The position check that opens every apply transaction.
struct Fence<'a> {
    /// Reads (and locks, where the engine can) the partition's position row.
    pub select: &'a Bookkeeping,
    /// What this task last wrote (or read at start).
    pub before: StoredPosition,
    /// What this transaction will write.
    pub after: StoredPosition,
}

/// What an apply transaction found.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied and committed.
    Applied,
    /// The replica already holds exactly this: an earlier attempt committed although its answer was
    /// lost. Nothing was done.
    AlreadyApplied,
    /// The position is neither what this task wrote last nor what it is about to write: another
    /// router applied this partition meanwhile. Nothing was done.
    Moved(StoredPosition),
}

/// Checks the position, then runs `statements` and `bookkeeping` in one transaction and commits.
async fn in_transaction<DB>(
    pool: &Pool<DB>,
    fence: &Fence<'_>,
    statements: &[Statement],
    bookkeeping: &[Bookkeeping],
) -> Result<Outcome, StatementFailed>
where
    DB: Database,
    for<'r> i64: Decode<'r, DB>,
    usize: ColumnIndex<DB::Row>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> f64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
{
    let mut tx = pool.begin().await.map_err(StatementFailed::bookkeeping)?;
    let found: StoredPosition = match read_ints(&mut *tx, fence.select)
        .await
        .map_err(StatementFailed::bookkeeping)?
    {
        Some(v) => match v[..] {
            [commit, partial, rows, _kafka_offset] => (commit, partial, rows),
            _ => (i64::MIN, 0, 0), // not a position row: never equal, so nothing is written
        },
        None => (0, 0, 0),
    };
    if found != fence.before {
        tx.rollback().await.map_err(StatementFailed::bookkeeping)?;
        return Ok(if found == fence.after {
            Outcome::AlreadyApplied
        } else {
            Outcome::Moved(found)
        });
    }
    run_numbered(&mut *tx, statements).await?;
    for statement in bookkeeping {
        run(&mut *tx, statement)
            .await
            .map_err(StatementFailed::bookkeeping)?;
    }
    tx.commit().await.map_err(StatementFailed::bookkeeping)?;
    Ok(Outcome::Applied)
}

/// Runs `statements` in one transaction, committed or (a dry run) rolled back in the end.
async fn one_transaction<DB>(
    pool: &Pool<DB>,
    statements: &[Statement],
    commit: bool,
) -> Result<(), StatementFailed>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> f64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
{
    let mut tx = pool.begin().await.map_err(StatementFailed::bookkeeping)?;
    run_numbered(&mut *tx, statements).await?;
    if commit {
        tx.commit().await
    } else {
        tx.rollback().await
    }
    .map_err(StatementFailed::bookkeeping)
}

/// Runs `statements` in order; a failure names the statement's index.
async fn run_numbered<DB>(
    conn: &mut DB::Connection,
    statements: &[Statement],
) -> Result<(), StatementFailed>
where
    DB: Database,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> f64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
{
    for (i, statement) in statements.iter().enumerate() {
        run(&mut *conn, statement)
            .await
            .map_err(|source| StatementFailed {
                index: Some(i),
                source,
            })?;
    }
    Ok(())
}

/// The first row of a query whose columns are all integers (the bookkeeping reads), if any.
async fn read_ints<'c, DB, E>(
    executor: E,
    query: &Bookkeeping,
) -> Result<Option<Vec<i64>>, sqlx::Error>
where
    DB: Database,
    E: Executor<'c, Database = DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> f64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
{
    let binds = query.binds();
    let q = bind_all(sqlx::query::<DB>(query.sql()), &binds);
    let Some(row) = executor.fetch_optional(q).await? else {
        return Ok(None);
    };
    (0..row.len())
        .map(|i| row.try_get::<i64, usize>(i))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The number of rows a statement affected; sqlx has no common trait for it.
pub(crate) trait RowsAffected {
    fn affected(&self) -> u64;
}

impl RowsAffected for sqlx::mysql::MySqlQueryResult {
    fn affected(&self) -> u64 {
        self.rows_affected()
    }
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn affected(&self) -> u64 {
        self.rows_affected()
    }
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn affected(&self) -> u64 {
        self.rows_affected()
    }
}

/// Runs `claim` and, only if it affected a row, `then`, in one transaction; returns whether it did.
/// The claim is an insert that ignores a conflicting row, so exactly one caller wins.
async fn claim_then<DB, S: SqlText>(
    pool: &Pool<DB>,
    claim: &Bookkeeping,
    then: Option<&S>,
) -> Result<bool, sqlx::Error>
where
    DB: Database,
    DB::QueryResult: RowsAffected,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> f64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
{
    let mut tx = pool.begin().await?;
    let binds = claim.binds();
    let query = bind_all(sqlx::query::<DB>(claim.sql()), &binds);
    let won = (&mut *tx).execute(query).await?.affected() > 0;
    if !won {
        tx.rollback().await?;
        return Ok(false);
    }
    if let Some(then) = then {
        run(&mut *tx, then).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Runs `claim` and, only if it affected a row, `then`, in one transaction; returns whether it did.
/// A failing statement of `then` is named by its index.
async fn claim_then_all<DB>(
    pool: &Pool<DB>,
    claim: &Bookkeeping,
    then: &[Statement],
) -> Result<bool, StatementFailed>
where
    DB: Database,
    DB::QueryResult: RowsAffected,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> f64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
{
    let mut tx = pool.begin().await.map_err(StatementFailed::bookkeeping)?;
    let binds = claim.binds();
    let query = bind_all(sqlx::query::<DB>(claim.sql()), &binds);
    let won = (&mut *tx)
        .execute(query)
        .await
        .map_err(StatementFailed::bookkeeping)?
        .affected()
        > 0;
    if !won {
        tx.rollback().await.map_err(StatementFailed::bookkeeping)?;
        return Ok(false);
    }
    run_numbered(&mut *tx, then).await?;
    tx.commit().await.map_err(StatementFailed::bookkeeping)?;
    Ok(true)
}

async fn run<'c, DB, S: SqlText>(
    conn: &'c mut DB::Connection,
    statement: &S,
) -> Result<(), sqlx::Error>
where
    DB: Database,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> f64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
{
    let binds = statement.binds();
    let query = bind_all(sqlx::query::<DB>(statement.sql()), &binds);
    conn.execute(query).await.map(|_| ())
}

fn bind_all<'q, DB>(
    mut query: sqlx::query::Query<'q, DB, DB::Arguments<'q>>,
    binds: &'q [Bind],
) -> sqlx::query::Query<'q, DB, DB::Arguments<'q>>
where
    DB: Database,
    i64: Encode<'q, DB> + Type<DB>,
    f64: Encode<'q, DB> + Type<DB>,
    &'q str: Encode<'q, DB> + Type<DB>,
    &'q [u8]: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
{
    for bind in binds {
        query = match bind {
            Bind::Null => query.bind(None::<&str>),
            Bind::Int(v) => query.bind(*v),
            Bind::Float(v) => query.bind(*v),
            Bind::Text(v) => query.bind(v.as_str()),
            Bind::Bytes(v) => query.bind(v.as_slice()),
        };
    }
    query
}
