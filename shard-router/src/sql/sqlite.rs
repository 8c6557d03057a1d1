//! SQLite specifics: besides `?` placeholders and the flat table namespace (see [`super`]), a
//! row-value `IN` needs its right-hand side as a subquery, and one row is picked by `rowid`.
//! SQLite 3.24+ is required (`ON CONFLICT … DO UPDATE`).

/// The right-hand side of `(a, b) IN (…)`: SQLite accepts a list of row values only as a `VALUES`
/// subquery (3.15+), which is also exempt from the compound-select limit.
pub(super) fn row_value_list(tuples: &[String]) -> String {
    format!("VALUES {}", tuples.join(", "))
}

/// Deletes one row matching `condition`, picked by `rowid` (Cascade never creates `WITHOUT ROWID`
/// tables).
pub(super) fn delete_one(table: &str, condition: &str) -> String {
    format!(
        "DELETE FROM {table} WHERE rowid = (SELECT rowid FROM {table} WHERE {condition} LIMIT 1)"
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
            "DELETE FROM \"we`ird\" WHERE (\"Ordér\", \"we\"\"ird\") IN (VALUES (?, ?), (?, ?))"
        );
        assert_eq!(
            delete_one_by_identity(S, &t, &[(0, false), (2, true), (3, false)]),
            "DELETE FROM \"we`ird\" WHERE rowid = (SELECT rowid FROM \"we`ird\" WHERE \"Ordér\" = ? \
             AND \"we`ird\" IS NULL AND \"\"\"Order\"\"\" = ? LIMIT 1)"
        );
        assert_eq!(delete_all(S, &t.name), "DELETE FROM \"we`ird\"");
    }
}
