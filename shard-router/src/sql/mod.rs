//! SQL text for the replica, per dialect. Pure: every function returns statement text, and values are
//! always bound as parameters, never interpolated. Each builder documents the order in which the caller
//! binds values. Identifiers are quoted; type names come from [`crate::types::map_column`], which only
//! lets plain type syntax through.
//!
//! Counts: a `rows` of 0 is treated as 1, and column indices outside `def.columns` are skipped (the
//! statement then fails on the replica because the bind count does not match, rather than panicking
//! here; in [`delete_one_by_identity`] such a column matches no row). [`crate::plan`] never passes
//! either.
//!
//! The dialect-specific pieces live in one file per engine: [`mysql`] (also MariaDB), [`sqlite`],
//! [`postgres`].

pub mod mysql;
pub mod postgres;
pub mod sqlite;

use crate::dialect::Dialect;
use crate::types::ColumnType;

/// A source table, by its PostgreSQL schema and name (unquoted).
pub use shared::TableName;

/// A replica column: its source name and type, and what it maps to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnDef {
    pub name: String,
    pub source_type: String,
    pub ty: ColumnType,
}

/// A replica table as Cascade knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableDef {
    pub name: TableName,
    pub columns: Vec<ColumnDef>,
    /// Primary-key columns: indices into `columns`, in key order. Empty: the table has no primary key.
    pub pk: Vec<usize>,
}

/// The most bind parameters one statement may carry: MySQL/MariaDB and PostgreSQL count them in 16
/// bits; SQLite's default `SQLITE_MAX_VARIABLE_NUMBER` is 32766.
pub fn max_binds(dialect: Dialect) -> usize {
    match dialect {
        Dialect::MySql | Dialect::Postgres => 65_535,
        Dialect::Sqlite => 32_766,
    }
}

/// The most bytes of bound values one multi-row statement carries; a statement of more rows is split.
/// MySQL/MariaDB refuse a packet above `max_allowed_packet` (error 1153; 4 MiB in MySQL 5.7,
/// 16 MiB in MariaDB ≥ 10.2.4, 64 MiB in MySQL 8); a bound so far below keeps room for the SQL text,
/// and holds each statement's memory to a known size on every engine. A single row above it is
/// still sent alone.
pub const MAX_STATEMENT_BYTES: usize = 2 << 20;

/// How many rows of `binds_per_row` parameters fit in one statement (at least 1).
pub fn rows_per_statement(dialect: Dialect, binds_per_row: usize) -> usize {
    rows_within(max_binds(dialect), binds_per_row)
}

/// How many rows of `binds_per_row` parameters fit under `max_binds` (at least 1).
pub(crate) fn rows_within(max_binds: usize, binds_per_row: usize) -> usize {
    (max_binds / binds_per_row.max(1)).max(1)
}

/// Quotes an identifier: backticks on MySQL, double quotes elsewhere, the quote character doubled
/// inside.
pub fn quote_ident(dialect: Dialect, name: &str) -> String {
    let q = match dialect {
        Dialect::MySql => '`',
        Dialect::Sqlite | Dialect::Postgres => '"',
    };
    let mut out = String::with_capacity(name.len() + 2);
    out.push(q);
    for c in name.chars() {
        if c == q {
            out.push(q);
        }
        out.push(c);
    }
    out.push(q);
    out
}

/// The replica's name for a source table, unquoted: PostgreSQL keeps the schema; MySQL and SQLite
/// have one namespace, so tables of `public` keep their name and others become `<schema>__<name>`
/// (two source tables `a.b__c` and `a__b.c` would collide; see docs/type-mapping.md).
pub fn replica_table(dialect: Dialect, table: &TableName) -> (Option<&str>, String) {
    match dialect {
        Dialect::Postgres => (Some(&table.schema), table.name.clone()),
        Dialect::MySql | Dialect::Sqlite if table.schema == "public" => (None, table.name.clone()),
        Dialect::MySql | Dialect::Sqlite => (None, format!("{}__{}", table.schema, table.name)),
    }
}

/// The quoted table reference used in statements: `"schema"."name"`, `` `name` ``, `"schema__name"`.
pub fn table_ref(dialect: Dialect, table: &TableName) -> String {
    match replica_table(dialect, table) {
        (Some(schema), name) => format!(
            "{}.{}",
            quote_ident(dialect, schema),
            quote_ident(dialect, &name)
        ),
        (None, name) => quote_ident(dialect, &name),
    }
}

/// `CREATE SCHEMA IF NOT EXISTS` for PostgreSQL replicas; None for the others (no schemas).
pub fn create_schema(dialect: Dialect, schema: &str) -> Option<String> {
    postgres::create_schema(dialect, schema)
}

/// `CREATE TABLE IF NOT EXISTS` with the mapped column types and `PRIMARY KEY (...)` when there is a
/// key (key columns are also `NOT NULL`). MySQL tables are InnoDB, `utf8mb4`, with `mysql_collation`
/// as the default collation (see [`mysql::MARIADB_COLLATION`], [`mysql::MYSQL8_COLLATION`]; it must
/// pass [`mysql::is_valid_collation`], which [`crate::catalog::Catalog::new`] checks).
pub fn create_table(dialect: Dialect, def: &TableDef, mysql_collation: &str) -> String {
    let mut items: Vec<String> = def
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let not_null = if def.pk.contains(&i) { " NOT NULL" } else { "" };
            format!("{} {}{not_null}", quote_ident(dialect, &c.name), c.ty.ddl)
        })
        .collect();
    if !def.pk.is_empty() {
        let key = column_list(dialect, def, &def.pk);
        items.push(format!("PRIMARY KEY ({key})"));
    }
    let mut sql = format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        table_ref(dialect, &def.name),
        items.join(", ")
    );
    if dialect == Dialect::MySql {
        sql.push_str(&mysql::table_options(mysql_collation));
    }
    sql
}

/// Adds a column first seen after the table was created. The caller checks the replica's columns
/// first, so plain `ADD COLUMN` is enough (MySQL 8 and SQLite have no `ADD COLUMN IF NOT EXISTS`);
/// PostgreSQL gets `IF NOT EXISTS` anyway.
pub fn add_column(dialect: Dialect, table: &TableName, column: &ColumnDef) -> String {
    let if_not_exists = if dialect == Dialect::Postgres {
        "IF NOT EXISTS "
    } else {
        ""
    };
    format!(
        "ALTER TABLE {} ADD COLUMN {if_not_exists}{} {}",
        table_ref(dialect, table),
        quote_ident(dialect, &column.name),
        column.ty.ddl
    )
}

/// Multi-row insert-or-update by primary key of the columns `columns` (indices into `def.columns`,
/// which include the key). Binds: row by row, each row's values in `columns` order; on PostgreSQL one
/// text array per column instead (see [`postgres::unnest_select`], `rows` is not used). Columns not in
/// `columns` are not mentioned, so the replica keeps their values (unchanged TOASTed columns).
pub fn upsert(dialect: Dialect, def: &TableDef, columns: &[usize], rows: usize) -> String {
    let mut sql = insert(dialect, def, columns, rows);
    let update: Vec<usize> = columns
        .iter()
        .copied()
        .filter(|i| !def.pk.contains(i))
        .collect();
    match dialect {
        Dialect::MySql => mysql::push_on_duplicate_key(&mut sql, def, &update),
        Dialect::Sqlite | Dialect::Postgres => {
            let key = column_list(dialect, def, &def.pk);
            sql.push_str(&format!(" ON CONFLICT ({key}) "));
            let set: Vec<String> = names(dialect, def, &update)
                .map(|c| format!("{c} = excluded.{c}"))
                .collect();
            if set.is_empty() {
                sql.push_str("DO NOTHING");
            } else {
                sql.push_str("DO UPDATE SET ");
                sql.push_str(&set.join(", "));
            }
        }
    }
    sql
}

/// Plain multi-row insert of `columns` (tables without a primary key). Binds as for [`upsert`].
pub fn insert(dialect: Dialect, def: &TableDef, columns: &[usize], rows: usize) -> String {
    if dialect == Dialect::Postgres {
        return format!(
            "INSERT INTO {} ({}) {}",
            table_ref(dialect, &def.name),
            column_list(dialect, def, columns),
            postgres::unnest_select(def, columns)
        );
    }
    // MySQL's and SQLite's placeholders are not numbered: every row's tuple is the same text, built
    // once.
    let tuple = format!(
        "({})",
        Placeholders::new(dialect).list(def, columns).join(", ")
    );
    let rows = rows.max(1);
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ",
        table_ref(dialect, &def.name),
        column_list(dialect, def, columns)
    );
    sql.reserve(rows * (tuple.len() + 2));
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&tuple);
    }
    sql
}

/// Deletes rows by primary key. Binds: row by row, each row's key values in key order.
/// PostgreSQL: `WHERE (k, …) IN (SELECT … FROM unnest(…))`, one text array per key column.
/// One key column elsewhere: `WHERE k IN (…)`. Composite keys: a row-value `IN` on MySQL, MariaDB and
/// PostgreSQL, which they resolve with the primary-key index; SQLite plans a row-value `IN` as a
/// table scan, so it joins a `VALUES` list to the table instead (see [`sqlite::delete_by_keys`]).
/// Callers keep `rows` at or below [`DELETE_ROWS_PER_STATEMENT`].
pub fn delete_by_key(dialect: Dialect, def: &TableDef, rows: usize) -> String {
    let mut p = Placeholders::new(dialect);
    let table = table_ref(dialect, &def.name);
    let key = column_list(dialect, def, &def.pk);
    if dialect == Dialect::Postgres {
        let keys = postgres::unnest_select(def, &def.pk);
        return format!("DELETE FROM {table} WHERE ({key}) IN ({keys})");
    }
    if let [single] = def.pk.as_slice() {
        let list: Vec<String> = (0..rows.max(1))
            .flat_map(|_| p.list(def, &[*single]))
            .collect();
        return format!("DELETE FROM {table} WHERE {key} IN ({})", list.join(", "));
    }
    let tuples: Vec<String> = (0..rows.max(1))
        .map(|_| format!("({})", p.list(def, &def.pk).join(", ")))
        .collect();
    match dialect {
        Dialect::Sqlite => {
            let keys: Vec<String> = names(dialect, def, &def.pk).collect();
            sqlite::delete_by_keys(&table, sqlite::rowid_alias(def), &keys, &tuples)
        }
        Dialect::MySql | Dialect::Postgres => {
            format!(
                "DELETE FROM {table} WHERE ({key}) IN ({})",
                tuples.join(", ")
            )
        }
    }
}

/// The most rows [`delete_by_key`] should carry. Far below the bind limit on purpose: MySQL turns a
/// key list into ranges and falls back to a full table scan when they exceed
/// `range_optimizer_max_mem_size` (8 MB by default, roughly 230 bytes per key part), and PostgreSQL
/// expands a row-value `IN` into nested `OR`s that exhaust its stack somewhere past a few thousand
/// rows.
pub const DELETE_ROWS_PER_STATEMENT: usize = 1000;

/// Rows per multi-row statement on SQLite (see `plan`).
pub const SQLITE_ROWS_PER_STATEMENT: usize = 256;

/// Deletes exactly one row equal to an old row (tables without a primary key, `REPLICA IDENTITY
/// FULL`). `columns`: (index into `def.columns`, the old value is NULL). NULL columns are compared
/// with `IS NULL` and not bound; binds: the other columns' values, in `columns` order.
/// JSON columns are compared as parsed JSON on MySQL and as text on PostgreSQL (`json` has no `=`).
pub fn delete_one_by_identity(
    dialect: Dialect,
    def: &TableDef,
    columns: &[(usize, bool)],
) -> String {
    let mut p = Placeholders::new(dialect);
    let conditions: Vec<String> = columns
        .iter()
        .map(|&(i, is_null)| {
            // An index outside the table matches nothing: never delete a row on partial evidence.
            let Some(column) = def.columns.get(i) else {
                return "1 = 0".to_owned();
            };
            let name = quote_ident(dialect, &column.name);
            if is_null {
                format!("{name} IS NULL")
            } else {
                match dialect {
                    Dialect::MySql => mysql::equals(&name, &column.ty, &p.next(&column.ty)),
                    Dialect::Postgres => postgres::equals(&name, &column.ty, &mut p),
                    Dialect::Sqlite => format!("{name} = {}", p.next(&column.ty)),
                }
            }
        })
        .collect();
    let condition = if conditions.is_empty() {
        "1 = 1".to_owned()
    } else {
        conditions.join(" AND ")
    };
    let table = table_ref(dialect, &def.name);
    match dialect {
        Dialect::MySql => mysql::delete_one(&table, &condition),
        Dialect::Postgres => postgres::delete_one(&table, &condition),
        // The planner never asks for a table without a rowid alias (see `can_delete_one`).
        Dialect::Sqlite => sqlite::delete_one(
            &table,
            sqlite::rowid_alias(def).unwrap_or("rowid"),
            &condition,
        ),
    }
}

/// Whether [`delete_one_by_identity`] can address exactly one row of `def`'s table: not on SQLite
/// when the table has columns named `rowid`, `_rowid_` and `oid`, which hide every name of its rowid.
pub fn can_delete_one(dialect: Dialect, def: &TableDef) -> bool {
    dialect != Dialect::Sqlite || sqlite::rowid_alias(def).is_some()
}

/// Deletes every row: how a `TRUNCATE` is applied (MySQL's `TRUNCATE` would commit the transaction).
pub fn delete_all(dialect: Dialect, table: &TableName) -> String {
    format!("DELETE FROM {}", table_ref(dialect, table))
}

/// Quoted names of `columns` (indices into `def.columns`; invalid ones skipped).
fn names<'a>(
    dialect: Dialect,
    def: &'a TableDef,
    columns: &'a [usize],
) -> impl Iterator<Item = String> + 'a {
    columns
        .iter()
        .filter_map(move |&i| def.columns.get(i).map(|c| quote_ident(dialect, &c.name)))
}

fn column_list(dialect: Dialect, def: &TableDef, columns: &[usize]) -> String {
    names(dialect, def, columns).collect::<Vec<_>>().join(", ")
}

/// Numbers parameters and applies the column's cast: `?`, `CAST(? AS DECIMAL(30,10))`, `$3::jsonb`.
pub(crate) struct Placeholders {
    dialect: Dialect,
    next: usize,
}

impl Placeholders {
    pub(crate) fn new(dialect: Dialect) -> Self {
        Placeholders { dialect, next: 1 }
    }

    /// The placeholder for the next parameter, bound to a column of type `ty`.
    pub(crate) fn next(&mut self, ty: &ColumnType) -> String {
        let n = self.next;
        self.next += 1;
        match (self.dialect, ty.cast.as_deref()) {
            (Dialect::Postgres, Some(cast)) => format!("${n}::{cast}"),
            (Dialect::Postgres, None) => format!("${n}"),
            (Dialect::MySql, Some(cast)) => format!("CAST(? AS {cast})"),
            (Dialect::MySql | Dialect::Sqlite, _) => "?".to_owned(),
        }
    }

    /// The next PostgreSQL parameter without its cast (`$n`).
    pub(crate) fn next_uncast(&mut self) -> String {
        let n = self.next;
        self.next += 1;
        match self.dialect {
            Dialect::Postgres => format!("${n}"),
            Dialect::MySql | Dialect::Sqlite => "?".to_owned(),
        }
    }

    fn list(&mut self, def: &TableDef, columns: &[usize]) -> Vec<String> {
        columns
            .iter()
            .filter_map(|&i| def.columns.get(i))
            .map(|c| self.next(&c.ty))
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod fixture;
#[cfg(test)]
mod tests;
