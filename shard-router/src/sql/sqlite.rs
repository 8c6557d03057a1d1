//! SQLite specifics: besides `?` placeholders and the flat table namespace (see [`super`]), deletes
//! by composite key join a `VALUES` list, and one row is picked by `rowid` (Cascade creates rowid
//! tables only).
//! SQLite 3.24+ is required (`ON CONFLICT … DO UPDATE`).

/// Deletes the rows whose composite key is one of `tuples` (each `(?, ?, …)` in `keys` order).
/// SQLite plans `(a, b) IN (VALUES …)` as a scan of the whole table; joining the `VALUES` list to the
/// table finds each row through the primary-key index, and the outer `DELETE` goes by `rowid`.
/// `VALUES` lists are exempt from SQLite's compound-select limit.
pub(super) fn delete_by_keys(table: &str, keys: &[String], tuples: &[String]) -> String {
    let on: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!("{table}.{k} = v.column{}", i + 1))
        .collect();
    format!(
        "DELETE FROM {table} WHERE rowid IN (SELECT {table}.rowid FROM (VALUES {}) AS v JOIN {table} ON {})",
        tuples.join(", "),
        on.join(" AND ")
    )
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
