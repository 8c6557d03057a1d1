//! Reading a table in chunks, by primary key (keyset pagination), with every value printed exactly as
//! wal2json prints it in the stream, so a copied row and a streamed row of the same key are the same
//! bytes: the same Kafka key, the same partition, the same value on the replica.
//!
//! The connection has the replication connection's pinned settings ([`PINNED_SETTINGS`]), and rows
//! are read with the simple query protocol, whose text results are each type's output function, the
//! same function wal2json calls.

use postgres_protocol::escape::{escape_identifier, escape_literal};
use serde_json::value::RawValue;
use shared::{Column, Origin, PkColumn, RowChange, RowOp, TableName};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::capture::stream::PINNED_SETTINGS;
use crate::error::CdcError;

/// A table's columns and key, as the stream describes them.
#[derive(Debug, Clone)]
pub struct Shape {
    pub table: TableName,
    /// Every column in `attnum` order (generated columns too: wal2json prints them).
    pub columns: Vec<ColumnShape>,
    /// The primary key in `attnum` order, as wal2json's `pk` lists it.
    pub pk: Vec<PkColumn>,
    /// For each key column, its index in `columns` and its type without modifier (for casts).
    pub key: Vec<(usize, String)>,
    /// The planner's estimate of the table's rows (`pg_class.reltuples`; negative when never
    /// analyzed).
    pub estimated_rows: f64,
}

#[derive(Debug, Clone)]
pub struct ColumnShape {
    pub name: String,
    pub type_name: String,
    pub typeoid: u32,
}

fn query_error(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> CdcError {
    move |source| CdcError::SourceQuery { context, source }
}

/// Pins the session settings the stream uses, so values and type names print the same.
pub async fn pin_settings(sql: &Client) -> Result<(), CdcError> {
    let mut set = String::new();
    for (name, value) in PINNED_SETTINGS {
        set.push_str(&format!("SET {name} = {};", escape_literal(value)));
    }
    // Watermarks are transactional messages: their commit must reach the WAL on disk at once (the
    // stream only carries flushed WAL), without waiting for synchronous standbys.
    set.push_str("SET standard_conforming_strings = on; SET synchronous_commit = local;");
    sql.batch_execute(&set)
        .await
        .map_err(query_error("pinning the snapshot session's settings"))
}

/// Every table whose changes the stream carries: ordinary, permanent (logged) tables outside the
/// system schemas and cascade's own.
pub async fn all_tables(sql: &Client) -> Result<Vec<TableName>, CdcError> {
    let rows = sql
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND c.relpersistence = 'p' \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'cascade') \
               AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
             ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(query_error("listing the source's tables"))?;
    Ok(rows
        .iter()
        .map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect())
}

/// The table's shape; `None` when it does not exist.
pub async fn shape(sql: &Client, table: &TableName) -> Result<Option<Shape>, CdcError> {
    let rel = sql
        .query_opt(
            "SELECT c.oid, c.reltuples::float8 FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&table.schema, &table.name],
        )
        .await
        .map_err(query_error("reading a table's definition"))?;
    let Some(rel) = rel else {
        return Ok(None);
    };
    let oid: u32 = rel.get(0);
    let estimated_rows: f64 = rel.get(1);
    let rows = sql
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.atttypid, \
                    format_type(a.atttypid, NULL), \
                    coalesce(a.attnum = ANY(i.indkey), false) \
             FROM pg_attribute a \
             LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .map_err(query_error("reading a table's columns"))?;
    let mut shape = Shape {
        table: table.clone(),
        columns: Vec::with_capacity(rows.len()),
        pk: Vec::new(),
        key: Vec::new(),
        estimated_rows,
    };
    for (i, row) in rows.iter().enumerate() {
        let column = ColumnShape {
            name: row.get(0),
            type_name: row.get(1),
            typeoid: row.get(2),
        };
        if row.get::<_, bool>(4) {
            shape.pk.push(PkColumn {
                name: column.name.clone(),
                type_name: column.type_name.clone(),
                typeoid: Some(column.typeoid),
            });
            shape.key.push((i, row.get(3)));
        }
        shape.columns.push(column);
    }
    Ok(Some(shape))
}

/// Whether the table holds no row.
pub async fn is_empty(sql: &Client, shape: &Shape) -> Result<bool, CdcError> {
    let query = format!(
        "SELECT NOT EXISTS (SELECT 1 FROM {}.{})",
        escape_identifier(&shape.table.schema),
        escape_identifier(&shape.table.name)
    );
    let row = sql
        .query_one(&query, &[])
        .await
        .map_err(query_error("looking into a table"))?;
    Ok(row.get(0))
}

/// The rows of one chunk, and where the next one starts.
#[derive(Debug)]
pub struct ChunkRows {
    pub rows: Vec<RowChange>,
    /// The key of the last row read (the next chunk starts after it); `None` when the chunk is empty.
    pub last_key: Option<Vec<String>>,
    /// Rows read (the chunk is the table's last when this is below the limit).
    pub read: usize,
    /// Transactions in progress when the chunk's snapshot was taken (`pg_current_snapshot()`'s xip
    /// list), as 32-bit xids like the stream's.
    pub in_progress: Vec<u32>,
}

/// The SQL of one chunk: the rows after `after` in key order, filtered by `where_clause`.
pub fn chunk_sql(
    shape: &Shape,
    after: Option<&[String]>,
    where_clause: Option<&str>,
    limit: usize,
) -> String {
    let cols: Vec<String> = shape
        .columns
        .iter()
        .map(|c| escape_identifier(&c.name))
        .collect();
    let key: Vec<String> = shape
        .key
        .iter()
        .map(|(i, _)| escape_identifier(&shape.columns[*i].name))
        .collect();
    let mut sql = format!(
        "SELECT {} FROM {}.{}",
        cols.join(", "),
        escape_identifier(&shape.table.schema),
        escape_identifier(&shape.table.name)
    );
    let mut conditions = Vec::new();
    if let Some(after) = after {
        let values: Vec<String> = after
            .iter()
            .zip(&shape.key)
            .map(|(v, (_, ty))| format!("{}::{ty}", escape_literal(v)))
            .collect();
        conditions.push(format!("({}) > ({})", key.join(", "), values.join(", ")));
    }
    if let Some(w) = where_clause.filter(|w| !w.trim().is_empty()) {
        conditions.push(format!("({w})"));
    }
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    sql.push_str(&format!(" ORDER BY {} LIMIT {limit}", key.join(", ")));
    sql
}

/// Reads one chunk in a repeatable-read, read-only transaction, with the transactions in progress
/// at its snapshot. One round trip.
pub async fn read_chunk(
    sql: &Client,
    shape: &Shape,
    after: Option<&[String]>,
    where_clause: Option<&str>,
    limit: usize,
    numeric_as_string: bool,
) -> Result<ChunkRows, tokio_postgres::Error> {
    let query = format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT pg_current_snapshot()::text; {}; COMMIT",
        chunk_sql(shape, after, where_clause, limit)
    );
    let messages = match sql.simple_query(&query).await {
        Ok(m) => m,
        Err(e) => {
            let _ = sql.batch_execute("ROLLBACK").await;
            return Err(e);
        }
    };
    let mut out = ChunkRows {
        rows: Vec::new(),
        last_key: None,
        read: 0,
        in_progress: Vec::new(),
    };
    let mut snapshot_seen = false;
    for message in &messages {
        let SimpleQueryMessage::Row(row) = message else {
            continue;
        };
        if !snapshot_seen {
            snapshot_seen = true;
            out.in_progress = parse_xip(row.get(0).unwrap_or(""));
            continue;
        }
        let mut new = Vec::with_capacity(shape.columns.len());
        for (i, c) in shape.columns.iter().enumerate() {
            new.push(Column {
                name: c.name.clone(),
                type_name: c.type_name.clone(),
                typeoid: Some(c.typeoid),
                value: render(c.typeoid, row.get(i), numeric_as_string),
            });
        }
        out.last_key = Some(
            shape
                .key
                .iter()
                .map(|(i, _)| row.get(*i).unwrap_or_default().to_owned())
                .collect(),
        );
        out.read += 1;
        out.rows.push(RowChange {
            origin: Origin::default(),
            table: shape.table.clone(),
            op: RowOp::Insert { new },
            pk: shape.pk.clone(),
        });
    }
    Ok(out)
}

/// The xip list of `pg_current_snapshot()`'s text (`xmin:xmax:xip,xip,…`), as 32-bit xids.
fn parse_xip(text: &str) -> Vec<u32> {
    text.rsplit(':')
        .next()
        .unwrap_or("")
        .split(',')
        .filter_map(|x| x.trim().parse::<u64>().ok())
        .map(|x| x as u32)
        .collect()
}

/// A value as wal2json prints it (format-version 2): numbers of the integer, float, oid and numeric
/// types bare (NaN and ±Infinity as `null`, or every one quoted with `numeric-data-types-as-string`),
/// booleans as `true`/`false`, everything else as a JSON string of the type's output, NULL as `null`.
pub fn render(typeoid: u32, text: Option<&str>, numeric_as_string: bool) -> Box<RawValue> {
    let null = || RawValue::from_string("null".to_owned()).expect("null is JSON");
    let string = |s: &str| serde_json::value::to_raw_value(s).unwrap_or_else(|_| null());
    let Some(text) = text else {
        return null();
    };
    match typeoid {
        // int8, int2, int4, oid, float4, float8, numeric
        20 | 21 | 23 | 26 | 700 | 701 | 1700 => {
            if numeric_as_string {
                string(text)
            } else if matches!(text, "NaN" | "Infinity" | "-Infinity") {
                null()
            } else {
                RawValue::from_string(text.to_owned()).unwrap_or_else(|_| string(text))
            }
        }
        16 => RawValue::from_string(if text == "t" { "true" } else { "false" }.to_owned())
            .expect("a boolean is JSON"),
        _ => string(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> Shape {
        let col = |name: &str, ty: &str, oid| ColumnShape {
            name: name.into(),
            type_name: ty.into(),
            typeoid: oid,
        };
        Shape {
            table: TableName::new("public", "we\"ird"),
            columns: vec![
                col("a", "integer", 23),
                col("b", "text", 25),
                col("c", "numeric(10,2)", 1700),
            ],
            pk: vec![],
            key: vec![(0, "integer".into()), (1, "text".into())],
            estimated_rows: 0.0,
        }
    }

    #[test]
    fn chunks_page_by_key_with_values_as_literals() {
        let s = shape();
        assert_eq!(
            chunk_sql(&s, None, None, 10),
            r#"SELECT "a", "b", "c" FROM "public"."we""ird" ORDER BY "a", "b" LIMIT 10"#
        );
        let after = vec!["7".to_owned(), "it's".to_owned()];
        assert_eq!(
            chunk_sql(&s, Some(&after), Some("c > 1"), 5),
            r#"SELECT "a", "b", "c" FROM "public"."we""ird" WHERE ("a", "b") > ('7'::integer, 'it''s'::text) AND (c > 1) ORDER BY "a", "b" LIMIT 5"#
        );
    }

    #[test]
    fn values_print_as_wal2json_prints_them() {
        assert_eq!(render(1700, Some("12.50"), false).get(), "12.50");
        assert_eq!(render(1700, Some("NaN"), false).get(), "null");
        assert_eq!(render(701, Some("-Infinity"), false).get(), "null");
        assert_eq!(render(1700, Some("12.50"), true).get(), "\"12.50\"");
        assert_eq!(render(16, Some("t"), false).get(), "true");
        assert_eq!(render(16, Some("f"), false).get(), "false");
        assert_eq!(render(25, None, false).get(), "null");
        // PostgreSQL's escape_json: the short escapes, \u00XX (lowercase) for other controls.
        assert_eq!(
            render(25, Some("x\"y\\z\nn\u{1}/é"), false).get(),
            r#""x\"y\\z\nn\u0001/é""#
        );
    }

    #[test]
    fn the_xip_list_is_read_as_32_bit_xids() {
        assert_eq!(parse_xip("739:739:"), Vec::<u32>::new());
        assert_eq!(parse_xip("100:105:101,103"), vec![101, 103]);
        assert_eq!(parse_xip("4294967396:4294967400:4294967397"), vec![101]);
    }
}
