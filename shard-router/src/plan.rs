//! Turns the row changes of one replica transaction into statements, in order.
//!
//! - Tables with a primary key: `I` and `U` upsert the columns the event carries (a column left out, an
//!   unchanged TOASTed one, keeps its replica value); a `U` whose `identity` holds a different key first
//!   deletes the old key. `D` deletes by key (`identity`). (A `T` is not a row change: the truncate
//!   barrier empties the table.)
//! - Tables without one: `I` inserts; `D` deletes one row equal to `identity` (the old row, with
//!   `REPLICA IDENTITY FULL`); `U` does both. Without `identity`, `U` and `D` cannot be applied.
//! - Consecutive changes of the same kind, table and column set become one multi-row statement, split
//!   to stay under the dialect's bind limit (deletes also at [`sql::DELETE_ROWS_PER_STATEMENT`] rows). Anything else keeps its exact order. Within an upsert run a
//!   key seen again replaces the earlier row in place (PostgreSQL refuses to update one row twice in
//!   a statement); keys are compared as the replica would for numeric and float keys (`1.0` = `1.00`,
//!   `-0` = `0`).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use shared::{Action, Column, RowChange, RowOp};

use crate::catalog::Catalog;
use crate::dialect::Dialect;
use crate::sql::{self, TableDef, TableName};
use crate::types::{convert, Bind, ValueError};
use key::KeyPart;

mod key;

/// One statement and its parameters, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    pub sql: String,
    pub binds: Vec<Bind>,
    /// What the statement does, for spans and metrics.
    pub kind: StatementKind,
    /// The table it applies to, as the catalog knew it when planning.
    pub def: Arc<TableDef>,
    /// The columns (indices into `def.columns`) each row binds, in bind order: for `DeleteByKey` the
    /// key, for `DeleteOne` the non-null columns of the old row, none for `DeleteAll`.
    pub columns: Vec<usize>,
    /// How many rows the statement carries (1 for the single-row kinds).
    pub rows: usize,
    /// The statement takes one text array per column (PostgreSQL's multi-row statements, see
    /// [`sql::upsert`]); `binds` still hold the values row by row, [`Statement::wire_binds`] turns
    /// them into the arrays.
    pub columnar: bool,
}

impl Statement {
    /// The source table it applies to.
    pub fn table(&self) -> &TableName {
        &self.def.name
    }

    /// The parameters as sent: `binds`, or for a columnar statement one text array per column.
    pub fn wire_binds(&self) -> Cow<'_, [Bind]> {
        let width = self.columns.len();
        if !self.columnar || width == 0 {
            return Cow::Borrowed(&self.binds);
        }
        let arrays = (0..width)
            .map(|c| {
                let column = self.binds.iter().skip(c).step_by(width);
                Bind::Text(sql::postgres::text_array(column))
            })
            .collect();
        Cow::Owned(arrays)
    }

    /// The statement that empties a table.
    pub fn delete_all(dialect: Dialect, def: Arc<TableDef>) -> Statement {
        Statement {
            sql: sql::delete_all(dialect, &def.name),
            binds: Vec::new(),
            kind: StatementKind::DeleteAll,
            def,
            columns: Vec::new(),
            rows: 1,
            columnar: false,
        }
    }
}

/// The shape of a [`Statement`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatementKind {
    Upsert,
    Insert,
    DeleteByKey,
    DeleteOne,
    DeleteAll,
    /// DDL of a schema change.
    Schema,
    /// The value existing rows get in columns a schema change added.
    Fill,
}

impl StatementKind {
    /// A short lowercase name for span names and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            StatementKind::Upsert => "upsert",
            StatementKind::Insert => "insert",
            StatementKind::DeleteByKey => "delete",
            StatementKind::DeleteOne => "delete_one",
            StatementKind::DeleteAll => "delete_all",
            StatementKind::Schema => "schema",
            StatementKind::Fill => "fill",
        }
    }
}

/// A change that cannot be planned: which one (`index` into `changes`), its table, and why.
#[derive(Debug, thiserror::Error)]
#[error("cannot apply change {index} to table {table}")]
pub struct PlanError {
    pub index: usize,
    pub table: TableName,
    /// Boxed to keep `Result<_, PlanError>` small.
    #[source]
    pub cause: Box<PlanCause>,
}

/// Why a change cannot be planned. Names columns, never values.
#[derive(Debug, thiserror::Error)]
pub enum PlanCause {
    #[error("the table is not in the catalog (its DDL has not run)")]
    UnknownTable,
    #[error("column {0:?} is not in the catalog (its DDL has not run)")]
    UnknownColumn(String),
    #[error("column {0:?} appears twice in the event")]
    DuplicateColumn(String),
    #[error("the event carries no columns")]
    NoColumns,
    #[error("primary key column {0:?} is missing from the event")]
    MissingKey(String),
    #[error("the table has no primary key and no REPLICA IDENTITY FULL, so updates and deletes cannot be applied")]
    NoIdentity,
    #[error("the table has no primary key and columns named rowid, _rowid_ and oid, which hide every name of SQLite's rowid, so one of several equal rows cannot be updated or deleted; give the source table a primary key or rename one of those columns")]
    NoRowid,
    #[error("cannot convert the value of column {column:?}")]
    Value {
        column: String,
        #[source]
        source: ValueError,
    },
}

/// Plans the row changes (`I`, `U`, `D`) of one replica transaction, in order. The catalog must know
/// every table and column the changes use (the executor ran its DDL).
pub fn plan<'r>(
    catalog: &Catalog,
    changes: impl IntoIterator<Item = &'r RowChange>,
) -> Result<Vec<Statement>, PlanError> {
    plan_within(
        catalog,
        changes,
        sql::max_binds(catalog.dialect()),
        sql::MAX_STATEMENT_BYTES,
    )
}

/// [`plan`] with explicit bind and byte limits per statement.
pub(crate) fn plan_within<'r>(
    catalog: &Catalog,
    changes: impl IntoIterator<Item = &'r RowChange>,
    max_binds: usize,
    max_bytes: usize,
) -> Result<Vec<Statement>, PlanError> {
    let mut planner = Planner {
        catalog,
        dialect: catalog.dialect(),
        max_binds,
        max_bytes,
        out: Vec::new(),
        run: None,
    };
    for (index, change) in changes.into_iter().enumerate() {
        planner.change(change).map_err(|cause| PlanError {
            index,
            table: change.table.clone(),
            cause: Box::new(cause),
        })?;
    }
    planner.flush();
    Ok(planner.out)
}

/// One row as bound: (column index in the def, value), sorted by index.
type Row = Vec<(usize, Bind)>;

/// Consecutive slices of `rows` of at most `max_rows` rows and, unless one row alone is larger,
/// `max_bytes` of bound values.
fn chunks(rows: &[Vec<Bind>], max_rows: usize, max_bytes: usize) -> Vec<&[Vec<Bind>]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, row) in rows.iter().enumerate() {
        let len: usize = row.iter().map(Bind::wire_len).sum();
        if i > start && (i - start >= max_rows.max(1) || bytes + len > max_bytes) {
            out.push(&rows[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += len;
    }
    if start < rows.len() {
        out.push(&rows[start..]);
    }
    out
}

/// Consecutive rows that become one statement (or several, split at the bind limit).
struct Run<'c> {
    kind: RunKind,
    def: &'c Arc<TableDef>,
    /// Column indices, ascending; for `DeleteByKey` the key columns.
    columns: Vec<usize>,
    rows: Vec<Vec<Bind>>,
    /// Upsert runs: the row index of each key.
    keys: HashMap<Vec<KeyPart>, usize>,
}

struct Planner<'c> {
    catalog: &'c Catalog,
    dialect: Dialect,
    max_binds: usize,
    max_bytes: usize,
    out: Vec<Statement>,
    run: Option<Run<'c>>,
}

impl<'c> Planner<'c> {
    fn change(&mut self, change: &RowChange) -> Result<(), PlanCause> {
        let catalog = self.catalog;
        let def = catalog
            .lookup(&change.table)
            .ok_or(PlanCause::UnknownTable)?;
        let new = match &change.op {
            RowOp::Delete { .. } => None,
            RowOp::Insert { new } | RowOp::Update { new, .. } if new.is_empty() => {
                return Err(PlanCause::NoColumns)
            }
            RowOp::Insert { new } | RowOp::Update { new, .. } => Some(self.row(def, new)?),
        };
        let old = change.old_values().map(|c| self.row(def, c)).transpose()?;
        if def.pk.is_empty() {
            self.without_key(def, change.action(), new, old)
        } else {
            self.with_key(def, new, old)
        }
    }

    fn with_key(
        &mut self,
        def: &'c Arc<TableDef>,
        new: Option<Row>,
        old: Option<Row>,
    ) -> Result<(), PlanCause> {
        let old_key = old.as_ref().map(|old| key_of(def, old)).transpose()?;
        let Some(mut new) = new else {
            // A delete: by the old key.
            let (binds, _) = old_key
                .ok_or_else(|| missing_key(def, def.pk.first().copied().unwrap_or(usize::MAX)))?;
            self.push(RunKind::DeleteByKey, def, def.pk.clone(), binds, None);
            return Ok(());
        };
        let (_, new_parts) = key_of(def, &new)?;
        if let (Some((old_binds, old_parts)), Some(old)) = (old_key, &old) {
            if old_parts != new_parts {
                self.push(RunKind::DeleteByKey, def, def.pk.clone(), old_binds, None);
                // The new row lacks unchanged TOASTed columns; a full identity has them.
                fill_from(&mut new, old);
            }
        }
        let (columns, binds) = new.into_iter().unzip();
        self.push(RunKind::Upsert, def, columns, binds, Some(new_parts));
        Ok(())
    }

    fn without_key(
        &mut self,
        def: &'c Arc<TableDef>,
        action: Action,
        new: Option<Row>,
        old: Option<Row>,
    ) -> Result<(), PlanCause> {
        if action != Action::Insert {
            let old = old.as_ref().ok_or(PlanCause::NoIdentity)?;
            if !sql::can_delete_one(self.dialect, def) {
                return Err(PlanCause::NoRowid);
            }
            self.flush();
            let columns: Vec<(usize, bool)> =
                old.iter().map(|(i, b)| (*i, *b == Bind::Null)).collect();
            let binds = old
                .iter()
                .filter(|(_, b)| *b != Bind::Null)
                .map(|(_, b)| b.clone());
            let sql = sql::delete_one_by_identity(self.dialect, def, &columns);
            let bound = old
                .iter()
                .filter(|(_, b)| *b != Bind::Null)
                .map(|(i, _)| *i);
            self.emit(
                StatementKind::DeleteOne,
                def,
                sql,
                binds.collect(),
                bound.collect(),
                1,
            );
        }
        if let Some(mut new) = new {
            if let Some(old) = &old {
                // The new row lacks unchanged TOASTed columns; the old row has them.
                fill_from(&mut new, old);
            }
            let (columns, binds) = new.into_iter().unzip();
            self.push(RunKind::Insert, def, columns, binds, None);
        }
        Ok(())
    }

    /// Converts an event's columns to a row of `def`. wal2json lists columns in table order, which is
    /// usually the definition's order: each lookup first tries the position after the previous one.
    fn row(&self, def: &TableDef, columns: &[Column]) -> Result<Row, PlanCause> {
        let mut row = Vec::with_capacity(columns.len());
        let mut seen = vec![false; def.columns.len()];
        let mut next = 0;
        for c in columns {
            let i = match def.columns.get(next) {
                Some(d) if d.name == c.name => next,
                _ => def
                    .columns
                    .iter()
                    .position(|d| d.name == c.name)
                    .ok_or_else(|| PlanCause::UnknownColumn(c.name.clone()))?,
            };
            next = i + 1;
            let (Some(column), Some(seen)) = (def.columns.get(i), seen.get_mut(i)) else {
                return Err(PlanCause::UnknownColumn(c.name.clone()));
            };
            if std::mem::replace(seen, true) {
                return Err(PlanCause::DuplicateColumn(c.name.clone()));
            }
            let bind =
                convert(self.dialect, &column.ty, &c.value).map_err(|source| PlanCause::Value {
                    column: c.name.clone(),
                    source,
                })?;
            row.push((i, bind));
        }
        row.sort_by_key(|(i, _)| *i);
        Ok(row)
    }

    /// Adds a row to the current run, or flushes it and starts a new one. `key`: upserts only.
    fn push(
        &mut self,
        kind: RunKind,
        def: &'c Arc<TableDef>,
        columns: Vec<usize>,
        binds: Vec<Bind>,
        key: Option<Vec<KeyPart>>,
    ) {
        let same = self
            .run
            .as_ref()
            .is_some_and(|r| r.kind == kind && std::ptr::eq(r.def, def) && r.columns == columns);
        if !same {
            self.flush();
        }
        let run = self.run.get_or_insert_with(|| Run {
            kind,
            def,
            columns,
            rows: Vec::new(),
            keys: HashMap::new(),
        });
        if let Some(key) = key {
            if let Some(&at) = run.keys.get(&key) {
                if let Some(slot) = run.rows.get_mut(at) {
                    *slot = binds;
                }
                return;
            }
            run.keys.insert(key, run.rows.len());
        }
        run.rows.push(binds);
    }

    /// Turns the current run into statements of at most `max_binds` parameters and `max_bytes` of
    /// bound values (and at most [`sql::DELETE_ROWS_PER_STATEMENT`] rows for deletes).
    fn flush(&mut self) {
        let Some(run) = self.run.take() else {
            return;
        };
        let d = self.dialect;
        // PostgreSQL binds one array per column: only the byte bound splits its statements.
        let columnar = d == Dialect::Postgres;
        let mut per_statement = sql::rows_within(self.max_binds, run.columns.len());
        if columnar {
            per_statement = usize::MAX;
        } else if run.kind == RunKind::DeleteByKey {
            per_statement = per_statement.min(sql::DELETE_ROWS_PER_STATEMENT);
        }
        if d == Dialect::Sqlite {
            // Statements of one fixed size repeat from batch to batch, so SQLite compiles each
            // shape once (its connection caches the compiled statement) instead of once per batch.
            per_statement = per_statement.min(sql::SQLITE_ROWS_PER_STATEMENT);
        }
        let sizes: Vec<usize> = chunks(&run.rows, per_statement, self.max_bytes)
            .iter()
            .map(|c| c.len())
            .collect();
        let mut remaining = run.rows.into_iter();
        for size in sizes {
            // Moved, not cloned: the run's rows are not needed after this.
            let rows: Vec<Vec<Bind>> = remaining.by_ref().take(size).collect();
            let (kind, sql) = match run.kind {
                RunKind::Upsert => (
                    StatementKind::Upsert,
                    sql::upsert(d, run.def, &run.columns, rows.len()),
                ),
                RunKind::Insert => (
                    StatementKind::Insert,
                    sql::insert(d, run.def, &run.columns, rows.len()),
                ),
                RunKind::DeleteByKey => (
                    StatementKind::DeleteByKey,
                    sql::delete_by_key(d, run.def, rows.len()),
                ),
            };
            let count = rows.len();
            self.emit(
                kind,
                run.def,
                sql,
                rows.into_iter().flatten().collect(),
                run.columns.clone(),
                count,
            );
            if let Some(last) = self.out.last_mut() {
                last.columnar = columnar;
            }
        }
    }

    fn emit(
        &mut self,
        kind: StatementKind,
        def: &Arc<TableDef>,
        sql: String,
        binds: Vec<Bind>,
        columns: Vec<usize>,
        rows: usize,
    ) {
        self.out.push(Statement {
            sql,
            binds,
            kind,
            def: Arc::clone(def),
            columns,
            rows,
            columnar: false,
        });
    }
}

/// The statements that batch rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunKind {
    Upsert,
    Insert,
    DeleteByKey,
}

/// The key values of a row (binds in key order) and their comparable form.
fn key_of(def: &TableDef, row: &Row) -> Result<(Vec<Bind>, Vec<KeyPart>), PlanCause> {
    let mut binds = Vec::with_capacity(def.pk.len());
    let mut parts = Vec::with_capacity(def.pk.len());
    for &k in &def.pk {
        let column = def.columns.get(k);
        let found = row
            .binary_search_by_key(&k, |(i, _)| *i)
            .ok()
            .and_then(|at| row.get(at));
        let (Some(column), Some((_, bind))) = (column, found) else {
            return Err(missing_key(def, k));
        };
        parts.push(KeyPart::new(&column.ty, bind));
        binds.push(bind.clone());
    }
    Ok((binds, parts))
}

fn missing_key(def: &TableDef, k: usize) -> PlanCause {
    PlanCause::MissingKey(
        def.columns
            .get(k)
            .map(|c| c.name.clone())
            .unwrap_or_default(),
    )
}

/// Adds to `new` the columns only `old` has.
fn fill_from(new: &mut Row, old: &Row) {
    let have: HashSet<usize> = new.iter().map(|(i, _)| *i).collect();
    new.extend(old.iter().filter(|(i, _)| !have.contains(i)).cloned());
    new.sort_by_key(|(i, _)| *i);
}

#[cfg(test)]
mod tests;
