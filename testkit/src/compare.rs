//! Compares a source table with its replica, normalising values by the source column's type:
//! numeric as exact decimals, timestamps as UTC instants, floats as doubles, json and arrays as parsed
//! JSON, bytea as bytes, booleans as true/false. Used by the end-to-end tests and the demo's
//! verification table.

use std::str::FromStr;

use sqlx::{ConnectOptions, Connection, Row};

use crate::connect;

/// The engine of a replica URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    MySql,
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn of_url(url: &str) -> Option<Engine> {
        let scheme = url.split_once("://")?.0;
        match scheme {
            "mysql" | "mariadb" => Some(Engine::MySql),
            "sqlite" => Some(Engine::Sqlite),
            "postgres" | "postgresql" => Some(Engine::Postgres),
            _ => None,
        }
    }
}

/// How a column's values are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    Decimal,
    Float,
    Bool,
    Timestamp,
    TimestampTz,
    Time,
    Json,
    Array,
    Bytes,
    /// `character(n)`: blank-padded, trailing blanks insignificant (PostgreSQL's `::text` drops them,
    /// a replica's VARCHAR keeps the padding the value arrived with), so compared without them.
    Padded,
}

#[derive(Clone, Debug)]
pub struct Col {
    pub name: String,
    kind: Kind,
}

fn kind_of(data_type: &str) -> Kind {
    match data_type {
        "numeric" => Kind::Decimal,
        "real" | "double precision" => Kind::Float,
        "boolean" => Kind::Bool,
        "timestamp without time zone" => Kind::Timestamp,
        "timestamp with time zone" => Kind::TimestampTz,
        "time without time zone" => Kind::Time,
        "json" | "jsonb" => Kind::Json,
        "ARRAY" => Kind::Array,
        "bytea" => Kind::Bytes,
        "character" => Kind::Padded,
        _ => Kind::Text,
    }
}

fn pg_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn pg_expr(c: &Col) -> String {
    let q = pg_ident(&c.name);
    match c.kind {
        Kind::TimestampTz => format!("to_char({q} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"),
        Kind::Timestamp => format!("to_char({q}, 'YYYY-MM-DD HH24:MI:SS.US')"),
        Kind::Array => format!("array_to_json({q})::text"),
        Kind::Bytes => format!("encode({q}, 'hex')"),
        _ => format!("{q}::text"),
    }
}

fn replica_expr(engine: Engine, c: &Col) -> String {
    match engine {
        Engine::Postgres => pg_expr(c),
        Engine::MySql => {
            let q = format!("`{}`", c.name.replace('`', "``"));
            match c.kind {
                Kind::Timestamp | Kind::TimestampTz => {
                    format!("DATE_FORMAT({q}, '%Y-%m-%d %H:%i:%s.%f')")
                }
                Kind::Bytes => format!("LOWER(HEX({q}))"),
                _ => format!("CAST({q} AS CHAR)"),
            }
        }
        Engine::Sqlite => {
            let q = pg_ident(&c.name);
            let e = match c.kind {
                Kind::Float => format!("printf('%!.17g', {q})"),
                Kind::Bytes => format!("lower(hex({q}))"),
                _ => format!("CAST({q} AS TEXT)"),
            };
            // printf() and hex() turn NULL into '': keep NULL apart.
            format!("CASE WHEN {q} IS NULL THEN NULL ELSE {e} END")
        }
    }
}

fn strip_fraction(s: &str) -> String {
    match s.split_once('.') {
        Some((whole, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                whole.to_owned()
            } else {
                format!("{whole}.{frac}")
            }
        }
        None => s.to_owned(),
    }
}

fn normalize(kind: Kind, v: Option<String>) -> Option<String> {
    let v = v?;
    Some(match kind {
        Kind::Text => v,
        Kind::Padded => v.trim_end_matches(' ').to_owned(),
        Kind::Decimal => {
            if v.parse::<f64>().is_ok_and(|f| !f.is_finite()) || v == "NaN" {
                return Some(v);
            }
            let (neg, digits) = match v.strip_prefix('-') {
                Some(d) => (true, d),
                None => (false, v.as_str()),
            };
            let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
            let int = int.trim_start_matches('0');
            let frac = frac.trim_end_matches('0');
            let int = if int.is_empty() { "0" } else { int };
            let body = if frac.is_empty() {
                int.to_owned()
            } else {
                format!("{int}.{frac}")
            };
            if neg && body != "0" {
                format!("-{body}")
            } else {
                body
            }
        }
        Kind::Float => match v.to_ascii_lowercase().as_str() {
            "nan" => "NaN".into(),
            "infinity" | "inf" => "Infinity".into(),
            "-infinity" | "-inf" => "-Infinity".into(),
            other => format!("{:?}", other.parse::<f64>().unwrap_or(f64::NAN)),
        },
        Kind::Bool => match v.as_str() {
            "t" | "true" | "1" => "true".into(),
            "f" | "false" | "0" => "false".into(),
            other => other.into(),
        },
        Kind::Timestamp | Kind::TimestampTz => strip_fraction(
            v.trim_end_matches('Z')
                .trim_end_matches("+00")
                .replace('T', " ")
                .as_str(),
        ),
        Kind::Time => strip_fraction(&v),
        Kind::Json | Kind::Array => match serde_json::from_str::<serde_json::Value>(&v) {
            Ok(j) => j.to_string(),
            Err(_) => format!("<invalid json> {v}"),
        },
        Kind::Bytes => v.to_ascii_lowercase(),
    })
}

/// A table's rows, normalised and sorted.
pub type Rows = Vec<Vec<Option<String>>>;

pub async fn columns_of(source: &tokio_postgres::Client, table: &str) -> Vec<Col> {
    source
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
            &[&table],
        )
        .await
        .expect("read source columns")
        .iter()
        .map(|r| Col {
            name: r.get(0),
            kind: kind_of(r.get::<_, String>(1).as_str()),
        })
        .collect()
}

/// The source table's rows. With `nan_as_null` (Debian's wal2json 2.5, which prints NaN and
/// ±Infinity as null), those values are expected as NULL on the replica.
pub async fn source_rows(source: &tokio_postgres::Client, table: &str, nan_as_null: bool) -> Rows {
    source_rows_where(source, table, "true", nan_as_null).await
}

/// The source table's rows that satisfy the SQL condition `filter` (for one shard's share).
pub async fn source_rows_where(
    source: &tokio_postgres::Client,
    table: &str,
    filter: &str,
    nan_as_null: bool,
) -> Rows {
    let cols = columns_of(source, table).await;
    let exprs: Vec<String> = cols.iter().map(pg_expr).collect();
    let sql = format!(
        "SELECT {} FROM public.{} WHERE {filter}",
        exprs.join(", "),
        pg_ident(table)
    );
    let mut rows: Rows = source
        .query(sql.as_str(), &[])
        .await
        .unwrap_or_else(|e| panic!("read source {table}: {e}"))
        .iter()
        .map(|r| {
            cols.iter()
                .enumerate()
                .map(|(i, c)| {
                    let v = normalize(c.kind, r.get::<_, Option<String>>(i));
                    let special = matches!(v.as_deref(), Some("NaN" | "Infinity" | "-Infinity"));
                    if nan_as_null && special && matches!(c.kind, Kind::Float | Kind::Decimal) {
                        None
                    } else {
                        v
                    }
                })
                .collect()
        })
        .collect();
    rows.sort();
    rows
}

/// The replica table's rows, read with the source's column list; `None` if the table is missing.
pub async fn replica_rows(
    engine: Engine,
    url: &str,
    source: &tokio_postgres::Client,
    table: &str,
) -> Option<Rows> {
    let cols = columns_of(source, table).await;
    let exprs: Vec<String> = cols.iter().map(|c| replica_expr(engine, c)).collect();
    let raw: Vec<Vec<Option<String>>> = match engine {
        Engine::Postgres => {
            let client = connect(url).await;
            let sql = format!(
                "SELECT {} FROM public.{}",
                exprs.join(", "),
                pg_ident(table)
            );
            let rows = client.query(sql.as_str(), &[]).await.ok()?;
            rows.iter()
                .map(|r| {
                    (0..cols.len())
                        .map(|i| r.get::<_, Option<String>>(i))
                        .collect()
                })
                .collect()
        }
        Engine::MySql => {
            let mut conn = sqlx::mysql::MySqlConnection::connect(url).await.ok()?;
            let sql = format!(
                "SELECT {} FROM `{}`",
                exprs.join(", "),
                table.replace('`', "``")
            );
            let rows = sqlx::query(&sql).fetch_all(&mut conn).await.ok()?;
            rows.iter()
                .map(|r| {
                    (0..cols.len())
                        .map(|i| r.try_get::<Option<String>, _>(i).unwrap())
                        .collect()
                })
                .collect()
        }
        Engine::Sqlite => {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                .ok()?
                .read_only(true);
            let mut conn = options.connect().await.ok()?;
            let sql = format!("SELECT {} FROM {}", exprs.join(", "), pg_ident(table));
            let rows = sqlx::query(&sql).fetch_all(&mut conn).await.ok()?;
            rows.iter()
                .map(|r| {
                    (0..cols.len())
                        .map(|i| r.try_get::<Option<String>, _>(i).unwrap())
                        .collect()
                })
                .collect()
        }
    };
    let mut rows: Rows = raw
        .into_iter()
        .map(|r| {
            r.into_iter()
                .zip(&cols)
                .map(|(v, c)| normalize(c.kind, v))
                .collect()
        })
        .collect();
    rows.sort();
    Some(rows)
}

/// Describes how two row sets differ (at most a few rows each way), or `None` if equal.
pub fn diff(source: &Rows, replica: Option<&Rows>) -> Option<String> {
    let Some(replica) = replica else {
        return Some("the replica table does not exist (yet)".into());
    };
    if source == replica {
        return None;
    }
    let missing: Vec<_> = source
        .iter()
        .filter(|r| !replica.contains(r))
        .take(3)
        .collect();
    let extra: Vec<_> = replica
        .iter()
        .filter(|r| !source.contains(r))
        .take(3)
        .collect();
    Some(format!(
        "source has {} rows, replica {}; missing on the replica: {missing:?}; only on the replica: {extra:?}",
        source.len(),
        replica.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        let n = |k, v: &str| normalize(k, Some(v.to_owned())).unwrap();
        assert_eq!(n(Kind::Decimal, "0012.3400"), "12.34");
        assert_eq!(n(Kind::Decimal, "-0.000"), "0");
        assert_eq!(n(Kind::Decimal, "5"), n(Kind::Decimal, "5.000000"));
        assert_eq!(
            n(Kind::TimestampTz, "2024-03-10 10:30:00.500000"),
            "2024-03-10 10:30:00.5"
        );
        assert_eq!(
            n(Kind::TimestampTz, "2024-03-10 10:30:00Z"),
            "2024-03-10 10:30:00"
        );
        assert_eq!(
            n(Kind::Json, r#"{"b": 1, "a": 2}"#),
            n(Kind::Json, r#"{"a":2,"b":1}"#)
        );
        assert_eq!(
            n(Kind::Float, "3.4028235e+38"),
            n(Kind::Float, "3.4028235e38")
        );
        assert_eq!(n(Kind::Bool, "t"), n(Kind::Bool, "1"));
    }
}

/// A table's shape as the tests compare it: column names in order, primary-key columns sorted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    pub columns: Vec<String>,
    pub pk: Vec<String>,
}

/// The shape of a source table in `public`; None when it does not exist.
pub async fn source_shape(source: &tokio_postgres::Client, table: &str) -> Option<Shape> {
    let columns: Vec<String> = columns_of(source, table)
        .await
        .into_iter()
        .map(|c| c.name)
        .collect();
    if columns.is_empty() {
        return None;
    }
    let mut pk: Vec<String> = source
        .query(
            "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a \
             ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
             WHERE i.indrelid = format('public.%I', $1::text)::regclass AND i.indisprimary",
            &[&table],
        )
        .await
        .expect("read the source's primary key")
        .iter()
        .map(|r| r.get(0))
        .collect();
    pk.sort();
    Some(Shape { columns, pk })
}

/// The user tables of a replica (Cascade's own `_cascade_*` excepted), sorted.
pub async fn replica_tables(engine: Engine, url: &str) -> Vec<String> {
    let sql = match engine {
        Engine::Postgres => {
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'"
        }
        Engine::MySql => {
            "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
        }
        Engine::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table'",
    };
    let mut names = replica_strings(engine, url, sql, None).await;
    names.retain(|n| !n.starts_with("_cascade"));
    names.sort();
    names
}

/// The shape of a replica table; None when it does not exist.
pub async fn replica_shape(engine: Engine, url: &str, table: &str) -> Option<Shape> {
    let (columns, pk) = match engine {
        Engine::Postgres => (
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
            "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a \
             ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
             WHERE i.indrelid = format('public.%I', $1::text)::regclass AND i.indisprimary",
        ),
        Engine::MySql => (
            "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY'",
        ),
        Engine::Sqlite => (
            "SELECT name FROM pragma_table_info(?) ORDER BY cid",
            "SELECT name FROM pragma_table_info(?) WHERE pk > 0",
        ),
    };
    let columns = replica_strings(engine, url, columns, Some(table)).await;
    if columns.is_empty() {
        return None;
    }
    let mut pk = replica_strings(engine, url, pk, Some(table)).await;
    pk.sort();
    Some(Shape { columns, pk })
}

/// The index names of a replica table (its primary key's excepted), sorted.
pub async fn replica_indexes(engine: Engine, url: &str, table: &str) -> Vec<String> {
    let sql = match engine {
        Engine::Postgres => {
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public' AND tablename = $1 \
             AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE contype = 'p')"
        }
        Engine::MySql => {
            "SELECT DISTINCT CAST(INDEX_NAME AS CHAR) FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND INDEX_NAME <> 'PRIMARY'"
        }
        Engine::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? \
             AND name NOT LIKE 'sqlite_autoindex%'"
        }
    };
    let mut names = replica_strings(engine, url, sql, Some(table)).await;
    names.sort();
    names
}

/// One text column of a query on a replica, with at most one text parameter.
async fn replica_strings(engine: Engine, url: &str, sql: &str, param: Option<&str>) -> Vec<String> {
    match engine {
        Engine::Postgres => {
            let client = connect(url).await;
            let rows = match param {
                Some(p) => client.query(sql, &[&p]).await,
                None => client.query(sql, &[]).await,
            };
            rows.map(|rows| rows.iter().map(|r| r.get(0)).collect())
                .unwrap_or_default()
        }
        Engine::MySql => {
            let Ok(mut conn) = sqlx::mysql::MySqlConnection::connect(url).await else {
                return Vec::new();
            };
            let mut q = sqlx::query_scalar::<_, String>(sql);
            if let Some(p) = param {
                q = q.bind(p);
            }
            q.fetch_all(&mut conn).await.unwrap_or_default()
        }
        Engine::Sqlite => {
            let Ok(options) = sqlx::sqlite::SqliteConnectOptions::from_str(url) else {
                return Vec::new();
            };
            let Ok(mut conn) = options.read_only(true).connect().await else {
                return Vec::new();
            };
            let mut q = sqlx::query_scalar::<_, String>(sql);
            if let Some(p) = param {
                q = q.bind(p);
            }
            q.fetch_all(&mut conn).await.unwrap_or_default()
        }
    }
}

/// A dead letter the router recorded in a replica and nobody replayed or discarded yet.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OpenDeadLetter {
    pub topic: String,
    pub partition: i64,
    pub offset: i64,
    pub reason: String,
}

/// The open dead letters of a replica (`_cascade_dead_letters` rows not resolved): each is an event
/// the replica lacks, so a divergence. An error when the table cannot be read (a replica no router
/// of this version ever connected to has none).
pub async fn open_dead_letters(engine: Engine, url: &str) -> Result<Vec<OpenDeadLetter>, String> {
    const SQL: &str = "SELECT topic, CAST(kafka_partition AS BIGINT), kafka_offset, reason \
                       FROM _cascade_dead_letters WHERE resolved_at IS NULL \
                       ORDER BY topic, kafka_partition, kafka_offset";
    let rows: Vec<(String, i64, i64, String)> = match engine {
        Engine::Postgres => {
            let client = connect(url).await;
            client
                .query(SQL, &[])
                .await
                .map_err(|e| e.to_string())?
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect()
        }
        Engine::MySql => {
            let mut conn = sqlx::mysql::MySqlConnection::connect(url)
                .await
                .map_err(|e| e.to_string())?;
            // MySQL casts to SIGNED (a BIGINT), not to BIGINT.
            let sql = SQL.replace("AS BIGINT", "AS SIGNED");
            sqlx::query_as(&sql)
                .fetch_all(&mut conn)
                .await
                .map_err(|e| e.to_string())?
        }
        Engine::Sqlite => {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                .map_err(|e| e.to_string())?
                .read_only(true);
            let mut conn = options.connect().await.map_err(|e| e.to_string())?;
            sqlx::query_as(SQL)
                .fetch_all(&mut conn)
                .await
                .map_err(|e| e.to_string())?
        }
    };
    Ok(rows
        .into_iter()
        .map(|(topic, partition, offset, reason)| OpenDeadLetter {
            topic,
            partition,
            offset,
            reason,
        })
        .collect())
}
