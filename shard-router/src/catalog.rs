//! What the replica's tables look like, and which DDL brings them up to what the events carry.
//!
//! The catalog is built lazily from the events themselves: a table is created from the first row change
//! seen for it, with the columns that event carries, and columns first seen later are added. Column
//! types come from the events' `type`/`typeoid` through [`map_column`]; the primary key from their
//! `pk`. Columns are never dropped or retyped: an update may leave out unchanged TOASTed columns, and a
//! source `ALTER COLUMN … TYPE` is not propagated (the replica keeps the first type it saw).
//!
//! Protocol with the executor, per event: if [`Catalog::needs_ddl`], introspect the replica table once
//! (its column names, or None if it does not exist), call [`Catalog::reconcile`], run the returned DDL
//! in order, and if that fails call [`Catalog::forget`] so the table is looked at afresh next time.

use std::collections::{HashMap, HashSet};

use shared::{Action, ChangeEvent, Column};

use crate::config::Dialect;
use crate::sql::{self, mysql, ColumnDef, TableDef, TableName};
use crate::types::map_column;

/// Why the catalog cannot follow an event. Names tables and columns, never values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("invalid MySQL collation name {0:?} (letters, digits and '_' only)")]
    InvalidCollation(String),
    #[error("the event names no schema or table")]
    NoTable,
    #[error("a {0} event is not a row change")]
    NotARowChange(&'static str),
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
    def: TableDef,
    /// False for a table registered by a `TRUNCATE` (which carries neither columns nor key): the next
    /// row change sets the key.
    pk_known: bool,
    /// Column names the replica table has (introspected or added by us), compared per dialect.
    present: Vec<String>,
    /// `def.columns` by name: `needs_ddl` runs for every event.
    index: HashMap<String, usize>,
}

impl Entry {
    fn new(name: TableName, present: Vec<String>) -> Self {
        Entry {
            def: TableDef {
                name,
                columns: Vec::new(),
                pk: Vec::new(),
            },
            pk_known: false,
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
    pub fn lookup(&self, name: &TableName) -> Option<&TableDef> {
        self.tables.get(name).map(|e| &e.def)
    }

    /// Drops what the catalog knows about a table (after its DDL failed, or to re-introspect).
    pub fn forget(&mut self, name: &TableName) {
        self.tables.remove(name);
    }

    /// True if [`Catalog::reconcile`] has work for this event: the table is unknown, the event carries
    /// a column the definition lacks, or its key differs. Also true for events reconcile will reject
    /// (no table name), so the error surfaces there. False for `B`, `C` and `M`.
    pub fn needs_ddl(&self, event: &ChangeEvent) -> bool {
        if !event.action.is_row_change() {
            return false;
        }
        let Some(name) = table_name(event) else {
            return true;
        };
        let Some(entry) = self.tables.get(&name) else {
            return true;
        };
        if event.action == Action::Truncate {
            return false;
        }
        let event_pk = event
            .pk
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|k| k.name.as_str());
        !entry.pk_known
            || !pk_names(&entry.def).eq(event_pk)
            || incoming(event).any(|c| !entry.index.contains_key(&c.name))
    }

    /// Brings the definition of the event's table up to the event and returns the DDL to run, in
    /// order (create schema and table, add columns); the definition is updated as if it ran.
    ///
    /// `existing_columns`: the columns the replica table has, as introspected; None = the table does
    /// not exist on the replica. For a table the catalog already knows, None means "no news" and the
    /// catalog relies on what it knows.
    ///
    /// A `T` (truncate) carries no columns: for a table unknown to the catalog and absent from the
    /// replica it returns no DDL and registers nothing (there is nothing to delete; the plan skips
    /// it); for a table that exists on the replica it registers the table without columns, so the
    /// truncate can be applied, and the next row change fills in columns and key.
    pub fn reconcile(
        &mut self,
        event: &ChangeEvent,
        existing_columns: Option<&[String]>,
    ) -> Result<Vec<String>, CatalogError> {
        if !event.action.is_row_change() {
            return Err(CatalogError::NotARowChange(event.action.as_str()));
        }
        let name = table_name(event).ok_or(CatalogError::NoTable)?;
        let dialect = self.dialect;
        if event.action == Action::Truncate {
            match (self.tables.get_mut(&name), existing_columns) {
                (Some(entry), Some(cols)) => merge_present(dialect, &mut entry.present, cols),
                (None, Some(cols)) => {
                    self.tables
                        .insert(name.clone(), Entry::new(name, cols.to_vec()));
                }
                (_, None) => {}
            }
            return Ok(Vec::new());
        }
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
        let create = known.is_none() && existing_columns.is_none();
        let mut next = known
            .cloned()
            .unwrap_or_else(|| Entry::new(name.clone(), Vec::new()));
        if let Some(cols) = existing_columns {
            merge_present(dialect, &mut next.present, cols);
        }
        if next.pk_known && !pk_names(&next.def).eq(pk.iter().copied()) {
            return Err(CatalogError::PrimaryKeyChanged {
                old: pk_names(&next.def).map(str::to_owned).collect(),
                new: pk.iter().map(|s| (*s).to_owned()).collect(),
                table: name,
            });
        }
        let added = add_columns(dialect, &mut next, &columns, &pk)?;
        if !next.pk_known {
            next.def.pk = pk_indices(&next.def, &pk);
            next.pk_known = true;
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

/// The event's table, if it names one.
pub fn table_name(event: &ChangeEvent) -> Option<TableName> {
    match (&event.schema, &event.table) {
        (Some(s), Some(t)) => Some(TableName::new(s.as_str(), t.as_str())),
        _ => None,
    }
}

/// The columns an event tells us about: `columns`, then those of `identity` not among them (a delete
/// has only `identity`; a `REPLICA IDENTITY FULL` update's identity also has unchanged TOASTed ones).
fn incoming(event: &ChangeEvent) -> impl Iterator<Item = &Column> {
    let new = event.columns.as_deref().unwrap_or_default();
    let old = event.identity.as_deref().unwrap_or_default();
    new.iter().chain(
        old.iter()
            .filter(move |o| !new.iter().any(|n| n.name == o.name)),
    )
}

/// [`incoming`], refusing an event without columns or with a column twice.
fn incoming_checked<'e>(
    event: &'e ChangeEvent,
    table: &TableName,
) -> Result<Vec<&'e Column>, CatalogError> {
    for list in [&event.columns, &event.identity].into_iter().flatten() {
        let mut seen = HashSet::new();
        if let Some(c) = list.iter().find(|c| !seen.insert(c.name.as_str())) {
            return Err(CatalogError::DuplicateColumn {
                table: table.clone(),
                column: c.name.clone(),
            });
        }
    }
    let columns: Vec<&Column> = incoming(event).collect();
    if columns.is_empty() {
        return Err(CatalogError::NoColumns {
            action: event.action.as_str(),
            table: table.clone(),
        });
    }
    Ok(columns)
}

/// The event's primary-key column names (empty: no primary key).
fn event_pk(event: &ChangeEvent) -> Vec<&str> {
    event
        .pk
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|k| k.name.as_str())
        .collect()
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
        entry.def.columns.push(ColumnDef {
            name: c.name.clone(),
            source_type: c.type_name.clone(),
            ty: map_column(dialect, &c.type_name, c.typeoid, in_pk),
        });
        let i = entry.def.columns.len() - 1;
        entry.index.insert(c.name.clone(), i);
        added.push(i);
    }
    Ok(added)
}

/// Column names as the replica compares them: PostgreSQL exactly, MySQL case-insensitively, SQLite
/// case-insensitively for ASCII letters.
fn same_name(dialect: Dialect, a: &str, b: &str) -> bool {
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
