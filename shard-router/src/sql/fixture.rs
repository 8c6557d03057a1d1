//! Test tables with awkward names, shared by the SQL, catalog and plan tests.

use super::{ColumnDef, TableDef, TableName};
use crate::dialect::Dialect;
use crate::types::map_column;

/// `(name, source type, typeoid)` of [`weird`]'s columns; the first two form the key.
pub(crate) const WEIRD_COLUMNS: [(&str, &str, u32); 5] = [
    ("Ordér", "integer", 23),
    ("we\"ird", "text", 25),
    ("we`ird", "numeric(30,10)", 1700),
    ("\"Order\"", "jsonb", 3802),
    ("select", "timestamp with time zone", 1184),
];

/// A table with a composite key (`Ordér`, `we"ird`) and names that need quoting.
pub(crate) fn weird(dialect: Dialect, schema: &str, name: &str) -> TableDef {
    def(dialect, schema, name, &WEIRD_COLUMNS, &[0, 1])
}

/// A table of `columns` with key `pk` (indices).
pub(crate) fn def(
    dialect: Dialect,
    schema: &str,
    name: &str,
    columns: &[(&str, &str, u32)],
    pk: &[usize],
) -> TableDef {
    TableDef {
        name: TableName::new(schema, name),
        columns: columns
            .iter()
            .enumerate()
            .map(|(i, &(name, source_type, oid))| ColumnDef {
                name: name.to_owned(),
                source_type: source_type.to_owned(),
                ty: map_column(dialect, source_type, Some(oid), pk.contains(&i)),
            })
            .collect(),
        pk: pk.to_vec(),
    }
}
