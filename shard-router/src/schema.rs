//! Schema changes on a replica: what an `S` event ([`shared::Ddl`]) asks for, translated per dialect
//! into statements that bring the replica table from what it is now to the source's definition after
//! the change.
//!
//! The plan is computed from the replica's **introspected** state ([`ReplicaTable`]) and the event's
//! definitions before and after, matched by `attnum` (so a renamed column is told from a dropped one
//! and an added one). Every step checks the replica first (rename only what is still under its old
//! name, add only what is missing, …), so a plan run twice does nothing the second time: a router that
//! dies between a MySQL DDL (which commits on its own) and the barrier's completion runs it again
//! safely. The applier runs a plan, introspects again and plans again until nothing is left
//! ([`plan`]'s `first` says whether to include the steps that are not structural: type changes and the
//! fill of added columns).
//!
//! Per dialect:
//! - create/drop/rename table, add/drop/rename column: `ALTER TABLE` everywhere (SQLite ≥ 3.25 renames
//!   columns; drops go through a rebuild, see below);
//! - an added column's existing rows get the value they have on the source ([`ColumnDefinition::fill`]),
//!   bound in one `UPDATE`, before anything else writes the table;
//! - a type change: PostgreSQL `ALTER COLUMN … TYPE … USING col::type`, MySQL `MODIFY COLUMN`; a value
//!   that does not fit the new type fails the statement (MySQL runs in strict mode), which stops the
//!   partition naming the table, the column and the replica's error;
//! - primary key added, dropped or changed: `DROP PRIMARY KEY`/`DROP CONSTRAINT` and `ADD PRIMARY KEY`
//!   (MySQL first gives key columns their key type: text keys are `VARCHAR` there);
//! - indexes on plain columns: created and dropped by name. Unique indexes become plain indexes on
//!   replicas: partitions apply in parallel, so a value moving from one row to another in two source
//!   transactions could collide on a replica for a moment;
//! - SQLite changes types, keys and drops columns by rebuilding the table in one transaction (create
//!   the new table, copy, drop the old one, rename, recreate the indexes).
//!
//! NOT NULL is not mirrored on non-key columns (as when a table is created from rows): an update that
//! leaves out an unchanged TOASTed value is applied as an upsert of the columns it carries, which a
//! NOT NULL column could refuse. Set/drop NOT NULL therefore changes nothing on a replica.

use std::sync::Arc;

use shared::{ColumnDefinition, Ddl, IndexDefinition, TableDefinition};

use crate::catalog::same_name;
use crate::dialect::Dialect;
use crate::plan::{Statement, StatementKind};
use crate::sql::{self, quote_ident, replica_table, table_ref, ColumnDef, TableDef, TableName};
use crate::types::{convert, map_column, ColumnType};

/// What a replica has of a table, introspected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaTable {
    pub columns: Vec<String>,
    /// The primary key's columns, in key order; empty: none.
    pub pk: Vec<String>,
    /// PostgreSQL: the primary-key constraint's name (to drop it).
    pub pk_constraint: Option<String>,
    /// The names of its indexes, the primary key's excepted.
    pub indexes: Vec<String>,
}

impl ReplicaTable {
    fn has(&self, dialect: Dialect, column: &str) -> bool {
        self.columns.iter().any(|c| same_name(dialect, c, column))
    }

    fn rename(&mut self, dialect: Dialect, from: &str, to: &str) {
        for c in self.columns.iter_mut().chain(self.pk.iter_mut()) {
            if same_name(dialect, c, from) {
                to.clone_into(c);
            }
        }
    }
}

/// Why a schema change cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("the value existing rows get in the new column {column:?} of {table} cannot be stored on this replica: {reason}")]
    Fill {
        table: TableName,
        column: String,
        reason: String,
    },
}

/// The replica definition of a source table definition: the same mapping as for tables created
/// from rows ([`map_column`]).
pub fn table_def(dialect: Dialect, def: &TableDefinition) -> TableDef {
    let columns: Vec<ColumnDef> = def
        .columns
        .iter()
        .map(|c| ColumnDef {
            name: c.name.clone(),
            source_type: c.type_name.clone(),
            ty: column_type(dialect, c, def.pk.contains(&c.name)),
        })
        .collect();
    let pk = def
        .pk
        .iter()
        .filter_map(|k| columns.iter().position(|c| &c.name == k))
        .collect();
    TableDef {
        name: def.name(),
        columns,
        pk,
    }
}

fn column_type(dialect: Dialect, c: &ColumnDefinition, in_pk: bool) -> ColumnType {
    map_column(dialect, &c.type_name, Some(c.typeoid), in_pk)
}

/// The statements that bring the replica to `ddl.after`. `new`: the replica table under the name
/// after the change; `old`: under the name before it, when that differs. `first`: the first plan for
/// this change (with type changes and fills); the later ones only finish structural steps.
pub fn plan(
    dialect: Dialect,
    collation: &str,
    ddl: &Ddl,
    old: Option<&ReplicaTable>,
    new: Option<&ReplicaTable>,
    first: bool,
) -> Result<Vec<Statement>, SchemaError> {
    let Some(after) = &ddl.after else {
        let Some(before) = &ddl.before else {
            return Ok(Vec::new());
        };
        if old.or(new).is_none() {
            return Ok(Vec::new());
        }
        let def = Arc::new(table_def(dialect, before));
        let sql = format!("DROP TABLE IF EXISTS {}", table_ref(dialect, &def.name));
        return Ok(vec![ddl_statement(sql, &def)]);
    };
    let target = Arc::new(table_def(dialect, after));
    let before = ddl.before.as_ref();
    let mut out = Vec::new();
    let mut current = match (new, old, before) {
        (Some(t), _, _) => t.clone(),
        (None, Some(t), Some(b)) if b.name() != after.name() => {
            out.extend(rename_table(dialect, &b.name(), &target.name, &target));
            t.clone()
        }
        _ => {
            if let Some(s) = sql::create_schema(dialect, &target.name.schema) {
                out.push(ddl_statement(s, &target));
            }
            out.push(ddl_statement(
                sql::create_table(dialect, &target, collation),
                &target,
            ));
            for index in &after.indexes {
                out.push(create_index(dialect, &target, index));
            }
            return Ok(out);
        }
    };
    let table = &target.name;
    let mut rebuild = false;

    // Indexes dropped on the source go first: dropping a column drops MySQL's index on it, after
    // which `DROP INDEX` would fail.
    if let Some(before) = before {
        for index in &before.indexes {
            let name = index_name(dialect, table, &index.name);
            let kept = after.indexes.iter().any(|i| i.name == index.name);
            if !kept && current.indexes.iter().any(|i| same_name(dialect, i, &name)) {
                out.push(drop_index(dialect, &target, &name));
                current.indexes.retain(|i| !same_name(dialect, i, &name));
            }
        }
    }

    // Columns: renames first (by attnum), then what is missing.
    let mut fills: Vec<&ColumnDefinition> = Vec::new();
    for col in &after.columns {
        let was = before.and_then(|b| b.column(col.attnum));
        if let Some(was) = was.filter(|w| w.name != col.name) {
            if current.has(dialect, &was.name) && !current.has(dialect, &col.name) {
                let sql = format!(
                    "ALTER TABLE {} RENAME COLUMN {} TO {}",
                    table_ref(dialect, table),
                    quote_ident(dialect, &was.name),
                    quote_ident(dialect, &col.name)
                );
                out.push(ddl_statement(sql, &target));
                current.rename(dialect, &was.name, &col.name);
            }
        }
        if !current.has(dialect, &col.name) {
            let def = ColumnDef {
                name: col.name.clone(),
                source_type: col.type_name.clone(),
                ty: column_type(dialect, col, false),
            };
            out.push(ddl_statement(
                sql::add_column(dialect, table, &def),
                &target,
            ));
            current.columns.push(col.name.clone());
        }
        if first && was.is_none() && before.is_some() && col.fill.is_some() {
            fills.push(col);
        }
    }
    if !fills.is_empty() {
        out.push(fill(dialect, &target, &fills)?);
    }

    // Columns dropped on the source.
    if let Some(before) = before {
        for was in &before.columns {
            if after.column(was.attnum).is_some() || !current.has(dialect, &was.name) {
                continue;
            }
            if dialect == Dialect::Sqlite {
                rebuild = true;
            } else {
                let sql = format!(
                    "ALTER TABLE {} DROP COLUMN {}",
                    table_ref(dialect, table),
                    quote_ident(dialect, &was.name)
                );
                out.push(ddl_statement(sql, &target));
            }
            current
                .columns
                .retain(|c| !same_name(dialect, c, &was.name));
        }
    }

    // Types, where the replica type changes (a key column's too: MySQL keys text as VARCHAR).
    if first {
        if let Some(before) = before {
            for col in &after.columns {
                let Some(was) = before.column(col.attnum) else {
                    continue;
                };
                let old_ty = column_type(dialect, was, before.pk.contains(&was.name));
                let new_ty = column_type(dialect, col, after.pk.contains(&col.name));
                if old_ty.ddl == new_ty.ddl {
                    continue;
                }
                match dialect {
                    Dialect::Sqlite => rebuild = true,
                    Dialect::Postgres => {
                        let c = quote_ident(dialect, &col.name);
                        let sql = format!(
                            "ALTER TABLE {} ALTER COLUMN {c} TYPE {} USING {c}::{}",
                            table_ref(dialect, table),
                            new_ty.ddl,
                            new_ty.ddl
                        );
                        out.push(ddl_statement(sql, &target));
                    }
                    Dialect::MySql => out.push(modify_mysql(
                        &target,
                        &col.name,
                        &new_ty,
                        after.pk.contains(&col.name),
                    )),
                }
            }
        }
    }

    // The primary key.
    let pk_same = current.pk.len() == after.pk.len()
        && current
            .pk
            .iter()
            .zip(&after.pk)
            .all(|(a, b)| same_name(dialect, a, b));
    if !pk_same {
        match dialect {
            Dialect::Sqlite => rebuild = true,
            Dialect::Postgres => {
                if let Some(name) = &current.pk_constraint {
                    let sql = format!(
                        "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
                        table_ref(dialect, table),
                        quote_ident(dialect, name)
                    );
                    out.push(ddl_statement(sql, &target));
                }
                if !after.pk.is_empty() {
                    out.push(add_primary_key(dialect, &target));
                }
            }
            Dialect::MySql => {
                if !current.pk.is_empty() {
                    let sql = format!("ALTER TABLE {} DROP PRIMARY KEY", table_ref(dialect, table));
                    out.push(ddl_statement(sql, &target));
                }
                for &i in &target.pk {
                    if let Some(c) = target.columns.get(i) {
                        out.push(modify_mysql(&target, &c.name, &c.ty, true));
                    }
                }
                if !after.pk.is_empty() {
                    out.push(add_primary_key(dialect, &target));
                }
            }
        }
    }

    if rebuild {
        out.extend(rebuild_sqlite(&target, &current, &after.indexes, collation));
        return Ok(out);
    }

    // Indexes missing here.
    for index in &after.indexes {
        let name = index_name(dialect, table, &index.name);
        if !current.indexes.iter().any(|i| same_name(dialect, i, &name)) {
            out.push(create_index(dialect, &target, index));
        }
    }
    Ok(out)
}

fn ddl_statement(sql: String, def: &Arc<TableDef>) -> Statement {
    Statement {
        sql,
        binds: Vec::new(),
        kind: StatementKind::Schema,
        def: Arc::clone(def),
        columns: Vec::new(),
        rows: 1,
        columnar: false,
    }
}

fn rename_table(
    dialect: Dialect,
    from: &TableName,
    to: &TableName,
    def: &Arc<TableDef>,
) -> Vec<Statement> {
    let mut out = Vec::new();
    match dialect {
        Dialect::Postgres => {
            let mut at = from.clone();
            if from.schema != to.schema {
                if let Some(s) = sql::create_schema(dialect, &to.schema) {
                    out.push(ddl_statement(s, def));
                }
                let sql = format!(
                    "ALTER TABLE {} SET SCHEMA {}",
                    table_ref(dialect, from),
                    quote_ident(dialect, &to.schema)
                );
                out.push(ddl_statement(sql, def));
                at.schema.clone_from(&to.schema);
            }
            if from.name != to.name {
                let sql = format!(
                    "ALTER TABLE {} RENAME TO {}",
                    table_ref(dialect, &at),
                    quote_ident(dialect, &to.name)
                );
                out.push(ddl_statement(sql, def));
            }
        }
        Dialect::MySql | Dialect::Sqlite => {
            let (_, name) = replica_table(dialect, to);
            let sql = format!(
                "ALTER TABLE {} RENAME TO {}",
                table_ref(dialect, from),
                quote_ident(dialect, &name)
            );
            out.push(ddl_statement(sql, def));
        }
    }
    out
}

/// `UPDATE t SET c = ?, …`: the value each existing row holds in the columns just added.
fn fill(
    dialect: Dialect,
    def: &Arc<TableDef>,
    columns: &[&ColumnDefinition],
) -> Result<Statement, SchemaError> {
    let mut placeholders = sql::Placeholders::new(dialect);
    let mut set = Vec::new();
    let mut binds = Vec::new();
    let mut indices = Vec::new();
    for col in columns {
        let Some(value) = &col.fill else { continue };
        let Some(i) = def.columns.iter().position(|c| c.name == col.name) else {
            continue;
        };
        let ty = def.columns[i].ty.clone();
        let bind = convert(dialect, &ty, value).map_err(|e| SchemaError::Fill {
            table: def.name.clone(),
            column: col.name.clone(),
            reason: e.to_string(),
        })?;
        set.push(format!(
            "{} = {}",
            quote_ident(dialect, &col.name),
            placeholders.next(&ty)
        ));
        binds.push(bind);
        indices.push(i);
    }
    Ok(Statement {
        sql: format!(
            "UPDATE {} SET {}",
            table_ref(dialect, &def.name),
            set.join(", ")
        ),
        binds,
        kind: StatementKind::Fill,
        def: Arc::clone(def),
        columns: indices,
        rows: 1,
        columnar: false,
    })
}

fn modify_mysql(def: &Arc<TableDef>, column: &str, ty: &ColumnType, key: bool) -> Statement {
    let not_null = if key { " NOT NULL" } else { "" };
    let sql = format!(
        "ALTER TABLE {} MODIFY COLUMN {} {}{not_null}",
        table_ref(Dialect::MySql, &def.name),
        quote_ident(Dialect::MySql, column),
        ty.ddl
    );
    ddl_statement(sql, def)
}

fn add_primary_key(dialect: Dialect, def: &Arc<TableDef>) -> Statement {
    let key: Vec<String> = def
        .pk
        .iter()
        .filter_map(|&i| def.columns.get(i))
        .map(|c| quote_ident(dialect, &c.name))
        .collect();
    let sql = format!(
        "ALTER TABLE {} ADD PRIMARY KEY ({})",
        table_ref(dialect, &def.name),
        key.join(", ")
    );
    ddl_statement(sql, def)
}

/// The replica's name of a source index: PostgreSQL and MySQL keep it (per schema, per table); SQLite
/// has one namespace, so indexes of tables outside `public` get the schema prefix their table has.
pub fn index_name(dialect: Dialect, table: &TableName, index: &str) -> String {
    match dialect {
        Dialect::Sqlite if table.schema != "public" => format!("{}__{index}", table.schema),
        _ => index.to_owned(),
    }
}

fn create_index(dialect: Dialect, def: &Arc<TableDef>, index: &IndexDefinition) -> Statement {
    let columns: Vec<String> = index
        .columns
        .iter()
        .map(|name| {
            let quoted = quote_ident(dialect, name);
            let ty = def.columns.iter().find(|c| &c.name == name).map(|c| &c.ty);
            match ty {
                // MySQL indexes TEXT and BLOB columns by a prefix only.
                Some(t) if dialect == Dialect::MySql && needs_prefix(&t.ddl) => {
                    format!("{quoted}(255)")
                }
                _ => quoted,
            }
        })
        .collect();
    let name = quote_ident(dialect, &index_name(dialect, &def.name, &index.name));
    let if_not_exists = match dialect {
        Dialect::MySql => "",
        Dialect::Postgres | Dialect::Sqlite => "IF NOT EXISTS ",
    };
    let sql = format!(
        "CREATE INDEX {if_not_exists}{name} ON {} ({})",
        table_ref(dialect, &def.name),
        columns.join(", ")
    );
    ddl_statement(sql, def)
}

fn needs_prefix(ddl: &str) -> bool {
    let upper = ddl.to_ascii_uppercase();
    upper.contains("TEXT") || upper.contains("BLOB") || upper == "JSON"
}

fn drop_index(dialect: Dialect, def: &Arc<TableDef>, name: &str) -> Statement {
    let sql = match dialect {
        Dialect::MySql => format!(
            "DROP INDEX {} ON {}",
            quote_ident(dialect, name),
            table_ref(dialect, &def.name)
        ),
        Dialect::Postgres => format!(
            "DROP INDEX IF EXISTS {}.{}",
            quote_ident(dialect, &def.name.schema),
            quote_ident(dialect, name)
        ),
        Dialect::Sqlite => format!("DROP INDEX IF EXISTS {}", quote_ident(dialect, name)),
    };
    ddl_statement(sql, def)
}

/// SQLite's way to change types, keys and drop columns: a new table with the target definition, the
/// rows copied over (columns both have), the old table dropped, the new one renamed, the indexes
/// recreated. Runs in the same transaction as the rest of the plan.
fn rebuild_sqlite(
    target: &Arc<TableDef>,
    current: &ReplicaTable,
    indexes: &[IndexDefinition],
    collation: &str,
) -> Vec<Statement> {
    let d = Dialect::Sqlite;
    let (_, name) = replica_table(d, &target.name);
    let temp_name = TableName::new("public", format!("{name}__cascade_rebuild"));
    let temp = TableDef {
        name: temp_name.clone(),
        ..(**target).clone()
    };
    let copied: Vec<String> = target
        .columns
        .iter()
        .filter(|c| current.has(d, &c.name))
        .map(|c| quote_ident(d, &c.name))
        .collect();
    let old = table_ref(d, &target.name);
    let new = table_ref(d, &temp_name);
    let mut out = vec![
        ddl_statement(format!("DROP TABLE IF EXISTS {new}"), target),
        ddl_statement(sql::create_table(d, &temp, collation), target),
        ddl_statement(
            format!(
                "INSERT INTO {new} ({cols}) SELECT {cols} FROM {old}",
                cols = copied.join(", ")
            ),
            target,
        ),
        ddl_statement(format!("DROP TABLE {old}"), target),
        ddl_statement(
            format!("ALTER TABLE {new} RENAME TO {}", quote_ident(d, &name)),
            target,
        ),
    ];
    for index in indexes {
        out.push(create_index(d, target, index));
    }
    out
}

#[cfg(test)]
mod tests;
