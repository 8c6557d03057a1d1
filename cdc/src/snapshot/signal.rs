//! The snapshot requests in the source: the table `cascade.snapshot_requests`, which is both the
//! signal (an insert into it reaches cdc through the WAL stream, in order) and the durable progress
//! of every copy (the key of the last row copied, updated only after Kafka acknowledged the chunk).
//!
//! Why progress lives in the source and not in Kafka: the source is where the copy is read, so a
//! progress row there can never be ahead of the data it describes, an operator can read and edit it
//! with plain SQL, and `cdc snapshot` (which speaks only to the source) can wait on it. Its writes are
//! small (one update per chunk) and cdc publishes none of them.

use shared::TableName;
use tokio_postgres::Client;

use crate::error::CdcError;

/// The schema cdc keeps its own tables in, on the source.
pub const SCHEMA: &str = "cascade";
/// The signal and progress table.
pub const TABLE: &str = "snapshot_requests";

/// `cascade.snapshot_requests` as a [`TableName`] (how the stream names it).
pub fn table_name() -> TableName {
    TableName::new(SCHEMA, TABLE)
}

/// Creates the schema and the table when missing (idempotent).
pub const CREATE: &str = "\
CREATE SCHEMA IF NOT EXISTS cascade;
CREATE TABLE IF NOT EXISTS cascade.snapshot_requests (
    id            bigserial PRIMARY KEY,
    slot          text NOT NULL,
    table_schema  text NOT NULL,
    table_name    text NOT NULL,
    where_clause  text,
    shard         text,
    kind          text NOT NULL DEFAULT 'on-demand'
                  CONSTRAINT snapshot_requests_kind_check
                  CHECK (kind IN ('initial', 'on-demand', 'schema-change')),
    state         text NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'running', 'done', 'failed', 'superseded')),
    last_key      text[],
    rows_copied   bigint NOT NULL DEFAULT 0,
    error         text,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    updated_at    timestamptz
);
COMMENT ON TABLE cascade.snapshot_requests IS
    'Cascade: table copies requested from cdc (insert a row, or run `cdc snapshot`) and their progress';";

/// One request, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: i64,
    pub table: TableName,
    pub where_clause: Option<String>,
    pub shard: Option<String>,
    pub kind: String,
    /// The text of each key column of the last row copied; `None` before the first chunk.
    pub last_key: Option<Vec<String>>,
    pub rows_copied: i64,
}

fn query_error(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> CdcError {
    move |source| CdcError::SourceQuery { context, source }
}

/// Whether the signal table exists.
pub async fn exists(sql: &Client) -> Result<bool, CdcError> {
    let row = sql
        .query_one(
            "SELECT to_regclass('cascade.snapshot_requests') IS NOT NULL",
            &[],
        )
        .await
        .map_err(query_error("looking for cascade.snapshot_requests"))?;
    Ok(row.get(0))
}

/// Creates the signal table when missing. `Err` when the user may not (then `cdc setup --apply`
/// with a privileged account does it).
pub async fn ensure(sql: &Client) -> Result<(), CdcError> {
    if !exists(sql).await? {
        return sql
            .batch_execute(CREATE)
            .await
            .map_err(query_error("creating cascade.snapshot_requests"));
    }
    // Tables created before schema changes were captured accept two kinds of request only.
    let current = sql
        .query_one(
            "SELECT coalesce(bool_or(pg_get_constraintdef(oid) LIKE '%schema-change%'), false) \
             FROM pg_constraint WHERE conrelid = 'cascade.snapshot_requests'::regclass AND contype = 'c' \
               AND conname = 'snapshot_requests_kind_check'",
            &[],
        )
        .await
        .map_err(query_error("reading cascade.snapshot_requests' constraints"))?;
    if current.get::<_, bool>(0) {
        return Ok(());
    }
    sql.batch_execute(MIGRATE)
        .await
        .map_err(query_error("upgrading cascade.snapshot_requests"))
}

/// Lets a table created by an earlier cdc take the `schema-change` requests of the event triggers.
const MIGRATE: &str = "\
ALTER TABLE cascade.snapshot_requests DROP CONSTRAINT IF EXISTS snapshot_requests_kind_check;
ALTER TABLE cascade.snapshot_requests ADD CONSTRAINT snapshot_requests_kind_check
    CHECK (kind IN ('initial', 'on-demand', 'schema-change'));";

/// Queues the initial copy of `tables` for `slot`, superseding every unfinished request of an earlier
/// first run with this slot name, in one statement. Runs before the slot is created, so a crash
/// between the two only repeats this step.
pub async fn request_initial(
    sql: &Client,
    slot: &str,
    tables: &[TableName],
) -> Result<(), CdcError> {
    let schemas: Vec<&str> = tables.iter().map(|t| t.schema.as_str()).collect();
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    sql.execute(
        "WITH superseded AS ( \
             UPDATE cascade.snapshot_requests SET state = 'superseded', finished_at = now() \
             WHERE slot = $1 AND state IN ('pending', 'running')) \
         INSERT INTO cascade.snapshot_requests (slot, table_schema, table_name, kind) \
         SELECT $1, s, t, 'initial' FROM unnest($2::text[], $3::text[]) AS u(s, t)",
        &[&slot, &schemas, &names],
    )
    .await
    .map_err(query_error("queueing the initial snapshot"))?;
    Ok(())
}

/// Inserts an on-demand request; returns its id.
pub async fn request(
    sql: &Client,
    slot: &str,
    table: &TableName,
    where_clause: Option<&str>,
    shard: Option<&str>,
) -> Result<i64, CdcError> {
    let row = sql
        .query_one(
            "INSERT INTO cascade.snapshot_requests (slot, table_schema, table_name, where_clause, shard) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[&slot, &table.schema, &table.name, &where_clause, &shard],
        )
        .await
        .map_err(query_error("inserting the snapshot request"))?;
    Ok(row.get(0))
}

const COLUMNS: &str =
    "id, table_schema, table_name, where_clause, shard, kind, last_key, rows_copied";

fn from_row(row: &tokio_postgres::Row) -> Request {
    Request {
        id: row.get(0),
        table: TableName::new(row.get::<_, String>(1), row.get::<_, String>(2)),
        where_clause: row.get(3),
        shard: row.get(4),
        kind: row.get(5),
        last_key: row.get(6),
        rows_copied: row.get(7),
    }
}

/// The unfinished requests of `slot`, oldest first.
pub async fn unfinished(sql: &Client, slot: &str) -> Result<Vec<Request>, CdcError> {
    let rows = sql
        .query(
            &format!(
                "SELECT {COLUMNS} FROM cascade.snapshot_requests \
                 WHERE slot = $1 AND state IN ('pending', 'running') ORDER BY id"
            ),
            &[&slot],
        )
        .await
        .map_err(query_error("reading the snapshot requests"))?;
    Ok(rows.iter().map(from_row).collect())
}

/// One request of `slot` if it is unfinished.
pub async fn unfinished_one(
    sql: &Client,
    slot: &str,
    id: i64,
) -> Result<Option<Request>, CdcError> {
    let row = sql
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM cascade.snapshot_requests \
                 WHERE id = $1 AND slot = $2 AND state IN ('pending', 'running')"
            ),
            &[&id, &slot],
        )
        .await
        .map_err(query_error("reading a snapshot request"))?;
    Ok(row.as_ref().map(from_row))
}

/// Whether the request exists at all (in any state).
pub async fn exists_request(sql: &Client, id: i64) -> Result<bool, CdcError> {
    let row = sql
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM cascade.snapshot_requests WHERE id = $1)",
            &[&id],
        )
        .await
        .map_err(query_error("looking for a snapshot request"))?;
    Ok(row.get(0))
}

/// The request starts (or resumes).
pub async fn started(sql: &Client, id: i64) -> Result<(), CdcError> {
    sql.execute(
        "UPDATE cascade.snapshot_requests SET state = 'running', \
         started_at = coalesce(started_at, now()), updated_at = now() WHERE id = $1",
        &[&id],
    )
    .await
    .map_err(query_error("recording snapshot progress"))?;
    Ok(())
}

/// A chunk is in Kafka: the copy continues after `last_key`.
pub async fn advanced(
    sql: &Client,
    id: i64,
    last_key: &[String],
    rows_copied: i64,
) -> Result<(), CdcError> {
    sql.execute(
        "UPDATE cascade.snapshot_requests SET last_key = $2, rows_copied = $3, updated_at = now() \
         WHERE id = $1",
        &[&id, &last_key, &rows_copied],
    )
    .await
    .map_err(query_error("recording snapshot progress"))?;
    Ok(())
}

/// The request ended: `error` None for done.
pub async fn finished(sql: &Client, id: i64, error: Option<&str>) -> Result<(), CdcError> {
    let state = if error.is_some() { "failed" } else { "done" };
    sql.execute(
        "UPDATE cascade.snapshot_requests SET state = $2, error = $3, finished_at = now(), \
         updated_at = now() WHERE id = $1",
        &[&id, &state, &error],
    )
    .await
    .map_err(query_error("recording snapshot progress"))?;
    Ok(())
}

/// State and progress of one request, for `cdc snapshot --wait`.
pub async fn status(
    sql: &Client,
    id: i64,
) -> Result<Option<(String, i64, Option<String>)>, CdcError> {
    let row = sql
        .query_opt(
            "SELECT state, rows_copied, error FROM cascade.snapshot_requests WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(query_error("reading a snapshot request"))?;
    Ok(row.map(|r| (r.get(0), r.get(1), r.get(2))))
}
