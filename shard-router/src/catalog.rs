//! What the replica's tables look like, and which DDL brings them up to what the events carry.
//!
//! The catalog is built lazily from the events themselves: a table is created from the first row change
//! seen for it, with the columns that event carries, and columns first seen later are added. Column
//! types come from the events' `type`/`typeoid` through [`map_column`]; the primary key from their
//! `pk`. Columns are never dropped or retyped: an update may leave out unchanged TOASTed columns, and a
//! source `ALTER COLUMN … TYPE` is not propagated (the replica keeps the first type it saw).
//!
//! Protocol with the executor, per row change: if [`Catalog::needs_ddl`], introspect the replica table once
//! (its column names, or None if it does not exist), call [`Catalog::reconcile`], run the returned DDL
//! in order, and if that fails call [`Catalog::forget`] so the table is looked at afresh next time.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use shared::{Column, RowChange};

use crate::dialect::Dialect;
use crate::sql::{self, mysql, ColumnDef, TableDef, TableName};
use crate::types::{map_column, modifier_conflict};

/// Why the catalog cannot follow an event. Names tables and columns, never values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("invalid MySQL collation name {0:?} (letters, digits and '_' only)")]
    InvalidCollation(String),
    #[error("the {action} event for {table} carries no columns")]
    NoColumns {
        action: &'static str,
        table: TableName,
    },
    #[error("column {column:?} appears twice in the event for {table}")]
    DuplicateColumn { table: TableName, column: String },
    #[error("primary key column {column:?} of {table} is not among the event's columns")]
    PkColumnMissing { table: TableName, column: String },
    #[error("the primary key of {table} changed on the source from {old:?} to {new:?}; recreate the replica table")]
    PrimaryKeyChanged {
        table: TableName,
        old: Vec<String>,
        new: Vec<String>,
    },
    #[error(
        "column {column:?} of {table} is {old} on the replica but the source now sends {new}: storing \
         its values could truncate or round them. Replicating type changes is not supported yet: alter \
         the replica column to match (or recreate the replica table), then restart the router"
    )]
    TypeChanged {
        table: TableName,
        column: String,
        old: String,
        new: String,
    },
    #[error("columns {first:?} and {second:?} of {table} have the same name on this replica (names are case-insensitive)")]
    ColumnNameCollision {
        table: TableName,
        first: String,
        second: String,
    },
}

/// The replica's tables as Cascade knows them.
#[derive(Clone, Debug)]
pub struct Catalog {
    dialect: Dialect,
    collation: String,
    tables: HashMap<TableName, Entry>,
}

#[derive(Clone, Debug)]
struct Entry {
    /// Shared with the statements planned from it; copied on write by [`Catalog::reconcile`].
    def: Arc<TableDef>,
    /// Column names the replica table has (introspected or added by us), compared per dialect.
    present: Vec<String>,
    /// `def.columns` by name: `needs_ddl` runs for every event.
    index: HashMap<String, usize>,
}

impl Entry {
    fn new(name: TableName, present: Vec<String>) -> Self {
        Entry {
            def: Arc::new(TableDef {
                name,
                columns: Vec::new(),
                pk: Vec::new(),
            }),
            present,
            index: HashMap::new(),
        }
    }
}

impl Catalog {
    /// An empty catalog. `mysql_collation` is the default collation of MySQL tables (see
    /// [`mysql::MARIADB_COLLATION`]); other dialects ignore it, but it must still be a valid name.
    pub fn new(dialect: Dialect, mysql_collation: &str) -> Result<Self, CatalogError> {
        if !mysql::is_valid_collation(mysql_collation) {
            return Err(CatalogError::InvalidCollation(mysql_collation.to_owned()));
        }
        Ok(Catalog {
            dialect,
            collation: mysql_collation.to_owned(),
            tables: HashMap::new(),
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The definition of a table, if the catalog knows it.
    pub fn lookup(&self, name: &TableName) -> Option<&Arc<TableDef>> {
        self.tables.get(name).map(|e| &e.def)
    }

    /// Drops what the catalog knows about a table (after its DDL failed, or to re-introspect).
    pub fn forget(&mut self, name: &TableName) {
        self.tables.remove(name);
    }

    /// True if [`Catalog::reconcile`] has work for this row change: the table is unknown, the change
    /// carries a column the definition lacks, or its key differs.
    pub fn needs_ddl(&self, row: &RowChange) -> bool {
        let Some(entry) = self.tables.get(&row.table) else {
            return true;
        };
        let row_pk = row.pk.iter().map(|k| k.name.as_str());
        !pk_names(&entry.def).eq(row_pk)
            || incoming(row).any(|c| match entry.index.get(&c.name) {
                None => true,
                Some(&i) => entry
                    .def
                    .columns
                    .get(i)
                    .is_some_and(|d| d.source_type != c.type_name),
            })
    }

    /// Refuses a row change for a table the catalog does not know yet whose replica table has a
    /// column of the same type with other modifiers (`numeric(10,2)` on the replica, `numeric(12,4)`
    /// from the source, after the source's type changed while the router was down): storing into it
    /// would round or truncate. `replica_types`: (column, type) as the replica spells them, for the
    /// dialects that report them.
    pub fn check_replica_types(
        &self,
        row: &RowChange,
        replica_types: &[(String, String)],
    ) -> Result<(), CatalogError> {
        let pk = event_pk(row);
        for c in incoming(row) {
            if let Some((_, have)) = replica_types
                .iter()
                .find(|(name, _)| same_name(self.dialect, name, &c.name))
            {
                check_fits(self.dialect, &row.table, c, &pk, have)?;
            }
        }
        Ok(())
    }

    /// Brings the definition of the row's table up to the row change and returns the DDL to run, in
    /// order (create schema and table, add columns); the definition is updated as if it ran.
    ///
    /// `existing_columns`: the columns the replica table has, as introspected; None = the table does
    /// not exist on the replica. For a table the catalog already knows, None means "no news" and the
    /// catalog relies on what it knows.
    pub fn reconcile(
        &mut self,
        event: &RowChange,
        existing_columns: Option<&[String]>,
    ) -> Result<Vec<String>, CatalogError> {
        let name = event.table.clone();
        let dialect = self.dialect;
        let columns = incoming_checked(event, &name)?;
        let pk = event_pk(event);
        if let Some(missing) = pk.iter().find(|k| !columns.iter().any(|c| &c.name == *k)) {
            return Err(CatalogError::PkColumnMissing {
                table: name,
                column: (*missing).to_owned(),
            });
        }
        // Work on a copy so that an error leaves the catalog as it was.
        let known = self.tables.get(&name);
        let create_entry = known.is_none();
        let create = create_entry && existing_columns.is_none();
        let mut next = known
            .cloned()
            .unwrap_or_else(|| Entry::new(name.clone(), Vec::new()));
        if let Some(cols) = existing_columns {
            merge_present(dialect, &mut next.present, cols);
        }
        if !create_entry && !pk_names(&next.def).eq(pk.iter().copied()) {
            return Err(CatalogError::PrimaryKeyChanged {
                old: pk_names(&next.def).map(str::to_owned).collect(),
                new: pk.iter().map(|s| (*s).to_owned()).collect(),
                table: name,
            });
        }
        retype_columns(dialect, &mut next, &columns, &pk, &name)?;
        let added = add_columns(dialect, &mut next, &columns, &pk)?;
        if create_entry {
            let pk = pk_indices(&next.def, &pk);
            Arc::make_mut(&mut next.def).pk = pk;
        }
        let mut ddl = Vec::new();
        if create {
            ddl.extend(sql::create_schema(dialect, &name.schema));
            ddl.push(sql::create_table(dialect, &next.def, &self.collation));
            next.present = next.def.columns.iter().map(|c| c.name.clone()).collect();
        } else {
            for column in added.iter().filter_map(|&i| next.def.columns.get(i)) {
                if !contains_name(dialect, &next.present, &column.name) {
                    ddl.push(sql::add_column(dialect, &name, column));
                    next.present.push(column.name.clone());
                }
            }
        }
        self.tables.insert(name, next);
        Ok(ddl)
    }
}

/// The columns a row change tells us about: the new values, then those of the old key or row not
/// among them (a delete has only the old key; a `REPLICA IDENTITY FULL` update's old row also has
/// unchanged TOASTed ones).
/// Two row changes of the same table with the same key and the same columns (names and types, in
/// order): what [`Catalog::needs_ddl`] says of one it says of the other. Consecutive rows of a batch
/// usually are; comparing them is cheaper than looking every column up.
pub fn same_shape(a: &RowChange, b: &RowChange) -> bool {
    let same_columns = |x: Option<&[Column]>, y: Option<&[Column]>| match (x, y) {
        (None, None) => true,
        (Some(x), Some(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(c, d)| c.name == d.name && c.type_name == d.type_name)
        }
        _ => false,
    };
    a.table == b.table
        && a.pk.len() == b.pk.len()
        && a.pk.iter().zip(&b.pk).all(|(k, l)| k.name == l.name)
        && same_columns(a.new_values(), b.new_values())
        && same_columns(a.old_values(), b.old_values())
}

fn incoming(row: &RowChange) -> impl Iterator<Item = &Column> {
    let new = row.new_values().unwrap_or_default();
    let old = row.old_values().unwrap_or_default();
    new.iter().chain(
        old.iter()
            .filter(move |o| !new.iter().any(|n| n.name == o.name)),
    )
}

/// [`incoming`], refusing a change without columns or with a column twice.
fn incoming_checked<'e>(
    row: &'e RowChange,
    table: &TableName,
) -> Result<Vec<&'e Column>, CatalogError> {
    for list in [row.new_values(), row.old_values()].into_iter().flatten() {
        let mut seen = HashSet::new();
        if let Some(c) = list.iter().find(|c| !seen.insert(c.name.as_str())) {
            return Err(CatalogError::DuplicateColumn {
                table: table.clone(),
                column: c.name.clone(),
            });
        }
    }
    let columns: Vec<&Column> = incoming(row).collect();
    if columns.is_empty() {
        return Err(CatalogError::NoColumns {
            action: row.action().as_str(),
            table: table.clone(),
        });
    }
    Ok(columns)
}

/// The row's primary-key column names (empty: no primary key).
fn event_pk(row: &RowChange) -> Vec<&str> {
    row.pk.iter().map(|k| k.name.as_str()).collect()
}

fn pk_names(def: &TableDef) -> impl Iterator<Item = &str> {
    def.pk
        .iter()
        .filter_map(|&i| def.columns.get(i))
        .map(|c| c.name.as_str())
}

fn pk_indices(def: &TableDef, pk: &[&str]) -> Vec<usize> {
    pk.iter()
        .filter_map(|k| def.columns.iter().position(|c| c.name == *k))
        .collect()
}

/// Refuses column `c` of `table` when a replica column of type `have` would round or truncate its
/// values ([`modifier_conflict`] with the type the column maps to).
fn check_fits(
    dialect: Dialect,
    table: &TableName,
    c: &Column,
    pk: &[&str],
    have: &str,
) -> Result<(), CatalogError> {
    let want = map_column(
        dialect,
        &c.type_name,
        c.typeoid,
        pk.contains(&c.name.as_str()),
    );
    if modifier_conflict(have, &want.ddl) {
        return Err(CatalogError::TypeChanged {
            table: table.clone(),
            column: c.name.clone(),
            old: have.to_owned(),
            new: c.type_name.clone(),
        });
    }
    Ok(())
}

/// Follows a known column whose source type changed where the replica column still holds every
/// value the same way (`integer` to `bigint` in SQLite's `INTEGER`, or where the replica refuses what
/// does not fit); refuses one whose replica column would truncate or round ([`modifier_conflict`]).
/// The column keeps its replica type: only the source type is recorded, so the check runs once.
fn retype_columns(
    dialect: Dialect,
    entry: &mut Entry,
    columns: &[&Column],
    pk: &[&str],
    table: &TableName,
) -> Result<(), CatalogError> {
    for c in columns {
        let Some(&i) = entry.index.get(&c.name) else {
            continue;
        };
        let Some(known) = entry.def.columns.get(i) else {
            continue;
        };
        if known.source_type == c.type_name {
            continue;
        }
        check_fits(dialect, table, c, pk, &known.ty.ddl)?;
        if let Some(known) = Arc::make_mut(&mut entry.def).columns.get_mut(i) {
            known.source_type = c.type_name.clone();
        }
    }
    Ok(())
}

/// Appends the columns the definition lacks; returns their indices.
fn add_columns(
    dialect: Dialect,
    entry: &mut Entry,
    columns: &[&Column],
    pk: &[&str],
) -> Result<Vec<usize>, CatalogError> {
    let mut added = Vec::new();
    for c in columns {
        if entry.index.contains_key(&c.name) {
            continue;
        }
        if let Some(other) = entry
            .def
            .columns
            .iter()
            .find(|d| same_name(dialect, &d.name, &c.name))
        {
            return Err(CatalogError::ColumnNameCollision {
                table: entry.def.name.clone(),
                first: other.name.clone(),
                second: c.name.clone(),
            });
        }
        let in_pk = pk.contains(&c.name.as_str());
        let def = Arc::make_mut(&mut entry.def);
        def.columns.push(ColumnDef {
            name: c.name.clone(),
            source_type: c.type_name.clone(),
            ty: map_column(dialect, &c.type_name, c.typeoid, in_pk),
        });
        let i = def.columns.len() - 1;
        entry.index.insert(c.name.clone(), i);
        added.push(i);
    }
    Ok(added)
}

/// Column names as the replica compares them: PostgreSQL exactly, MySQL case-insensitively, SQLite
/// case-insensitively for ASCII letters.
pub(crate) fn same_name(dialect: Dialect, a: &str, b: &str) -> bool {
    match dialect {
        Dialect::Postgres => a == b,
        Dialect::MySql => a == b || a.to_lowercase() == b.to_lowercase(),
        Dialect::Sqlite => a.eq_ignore_ascii_case(b),
    }
}

fn contains_name(dialect: Dialect, names: &[String], name: &str) -> bool {
    names.iter().any(|n| same_name(dialect, n, name))
}

fn merge_present(dialect: Dialect, present: &mut Vec<String>, cols: &[String]) {
    for c in cols {
        if !contains_name(dialect, present, c) {
            present.push(c.clone());
        }
    }
}

#[cfg(test)]
mod tests;
