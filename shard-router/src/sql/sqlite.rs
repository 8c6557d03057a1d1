//! SQLite specifics: besides `?` placeholders and the flat table namespace (see [`super`]), deletes
//! by composite key join a `VALUES` list, and one row is picked by its rowid (Cascade creates rowid
//! tables only), reached through whichever of `rowid`, `_rowid_`, `oid` is not a column's name.
//! SQLite 3.24+ is required (`ON CONFLICT … DO UPDATE`).

use super::TableDef;

/// The name that reaches a row's rowid in `def`'s table: a column named `rowid`, `_rowid_` or `oid`
/// (SQLite compares names without case) hides that alias, so the first one no column uses; None when
/// the table has columns of all three names.
pub(super) fn rowid_alias(def: &TableDef) -> Option<&'static str> {
    ["rowid", "_rowid_", "oid"].into_iter().find(|alias| {
        !def.columns
            .iter()
            .any(|c| c.name.eq_ignore_ascii_case(alias))
    })
}

/// Deletes the rows whose composite key is one of `tuples` (each `(?, ?, …)` in `keys` order).
/// SQLite plans `(a, b) IN (VALUES …)` as a scan of the whole table; joining the `VALUES` list to the
/// table finds each row through the primary-key index, and the outer `DELETE` goes by `rowid`.
/// `VALUES` lists are exempt from SQLite's compound-select limit. Without a rowid alias (`rowid`:
/// None, see [`rowid_alias`]) it falls back to the row-value `IN`: correct, but a table scan.
pub(super) fn delete_by_keys(
    table: &str,
    rowid: Option<&str>,
    keys: &[String],
    tuples: &[String],
) -> String {
    let Some(rowid) = rowid else {
        return format!(
            "DELETE FROM {table} WHERE ({}) IN (VALUES {})",
            keys.join(", "),
            tuples.join(", ")
        );
    };
    let on: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!("{table}.{k} = v.column{}", i + 1))
        .collect();
    format!(
        "DELETE FROM {table} WHERE {rowid} IN (SELECT {table}.{rowid} FROM (VALUES {}) AS v JOIN {table} ON {})",
        tuples.join(", "),
        on.join(" AND ")
    )
}

/// Deletes one row matching `condition`, picked by its rowid through `rowid` (an alias from
/// [`rowid_alias`]; Cascade never creates `WITHOUT ROWID` tables).
pub(super) fn delete_one(table: &str, rowid: &str, condition: &str) -> String {
    format!(
        "DELETE FROM {table} WHERE {rowid} = (SELECT {rowid} FROM {table} WHERE {condition} LIMIT 1)"
    )
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{def, weird};
    use super::super::*;

    const S: Dialect = Dialect::Sqlite;

    #[test]
    fn create_table_snapshot() {
        assert_eq!(
            create_table(S, &weird(S, "public", "we`ird"), "ignored"),
            "CREATE TABLE IF NOT EXISTS \"we`ird\" (\"Ordér\" INTEGER NOT NULL, \"we\"\"ird\" TEXT NOT NULL, \
             \"we`ird\" TEXT, \"\"\"Order\"\"\" TEXT, \"select\" TEXT, PRIMARY KEY (\"Ordér\", \"we\"\"ird\"))"
        );
        let no_pk = def(
            S,
            "Sales",
            "t",
            &[("f", "real", 700), ("b", "bytea", 17)],
            &[],
        );
        assert_eq!(
            create_table(S, &no_pk, "ignored"),
            "CREATE TABLE IF NOT EXISTS \"Sales__t\" (\"f\" REAL, \"b\" BLOB)"
        );
        assert_eq!(create_schema(S, "Sales"), None);
        assert_eq!(
            add_column(S, &no_pk.name, &no_pk.columns[1]),
            "ALTER TABLE \"Sales__t\" ADD COLUMN \"b\" BLOB"
        );
    }

    #[test]
    fn rows_are_reached_through_a_rowid_name_no_column_hides() {
        let cols = |names: &[&'static str]| -> Vec<(&str, &str, u32)> {
            names.iter().map(|n| (*n, "integer", 23)).collect()
        };
        let t = def(S, "public", "t", &cols(&["ROWID", "v"]), &[]);
        assert_eq!(
            delete_one_by_identity(S, &t, &[(1, false)]),
            "DELETE FROM \"t\" WHERE _rowid_ = (SELECT _rowid_ FROM \"t\" WHERE \"v\" = ? LIMIT 1)"
        );
        let t = def(S, "public", "t", &cols(&["rowid", "_rowid_", "v"]), &[]);
        assert!(delete_one_by_identity(S, &t, &[(2, false)]).contains("WHERE oid = (SELECT oid"));
        let all = def(S, "public", "t", &cols(&["rowid", "_rowid_", "oid"]), &[]);
        assert!(!can_delete_one(S, &all));
        assert!(can_delete_one(S, &t));
        assert!(can_delete_one(Dialect::Postgres, &all));
        // A composite key without a rowid name: the row-value IN.
        let keyed = def(
            S,
            "public",
            "k",
            &cols(&["rowid", "_rowid_", "oid"]),
            &[0, 1],
        );
        assert_eq!(
            delete_by_key(S, &keyed, 2),
            "DELETE FROM \"k\" WHERE (\"rowid\", \"_rowid_\") IN (VALUES (?, ?), (?, ?))"
        );
    }

    #[test]
    fn upsert_insert_and_delete_snapshots() {
        let t = weird(S, "public", "we`ird");
        assert_eq!(
            upsert(S, &t, &[0, 1, 3], 2),
            "INSERT INTO \"we`ird\" (\"Ordér\", \"we\"\"ird\", \"\"\"Order\"\"\") VALUES (?, ?, ?), (?, ?, ?) \
             ON CONFLICT (\"Ordér\", \"we\"\"ird\") DO UPDATE SET \"\"\"Order\"\"\" = excluded.\"\"\"Order\"\"\""
        );
        assert_eq!(
            upsert(S, &t, &[0, 1], 1),
            "INSERT INTO \"we`ird\" (\"Ordér\", \"we\"\"ird\") VALUES (?, ?) ON CONFLICT (\"Ordér\", \"we\"\"ird\") DO NOTHING"
        );
        assert_eq!(
            insert(S, &t, &[2], 1),
            "INSERT INTO \"we`ird\" (\"we`ird\") VALUES (?)"
        );
        assert_eq!(
            delete_by_key(S, &t, 2),
            "DELETE FROM \"we`ird\" WHERE rowid IN (SELECT \"we`ird\".rowid FROM (VALUES (?, ?), (?, ?)) AS v \
             JOIN \"we`ird\" ON \"we`ird\".\"Ordér\" = v.column1 AND \"we`ird\".\"we\"\"ird\" = v.column2)"
        );
        let one = def(S, "public", "o", &[("id", "bigint", 20)], &[0]);
        assert_eq!(
            delete_by_key(S, &one, 2),
            "DELETE FROM \"o\" WHERE \"id\" IN (?, ?)"
        );
        assert_eq!(
            delete_one_by_identity(S, &t, &[(0, false), (2, true), (3, false)]),
            "DELETE FROM \"we`ird\" WHERE rowid = (SELECT rowid FROM \"we`ird\" WHERE \"Ordér\" = ? \
             AND \"we`ird\" IS NULL AND \"\"\"Order\"\"\" = ? LIMIT 1)"
        );
        assert_eq!(delete_all(S, &t.name), "DELETE FROM \"we`ird\"");
    }
}
