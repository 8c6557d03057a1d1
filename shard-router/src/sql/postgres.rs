//! PostgreSQL specifics: schemas, casts on parameters, and the types `=` cannot compare.

use super::{quote_ident, Placeholders};
use crate::dialect::Dialect;
use crate::types::ColumnType;

/// `CREATE SCHEMA IF NOT EXISTS "schema"` on PostgreSQL replicas; None elsewhere.
pub(super) fn create_schema(dialect: Dialect, schema: &str) -> Option<String> {
    (dialect == Dialect::Postgres).then(|| {
        format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            quote_ident(dialect, schema)
        )
    })
}

/// Built-in types without a usable `=`: `json` and `xml` have none, and the geometric types compare
/// areas or approximately. Columns of these types (and arrays of them) are compared as text, which is
/// what wal2json printed and what was inserted.
const COMPARED_AS_TEXT: [&str; 9] = [
    "json", "xml", "point", "line", "lseg", "box", "path", "polygon", "circle",
];

/// `name = $n::type`, or `name::text = $n` for the types in [`COMPARED_AS_TEXT`].
pub(super) fn equals(name: &str, ty: &ColumnType, p: &mut Placeholders) -> String {
    let base = ty.ddl.trim_end_matches("[]");
    if COMPARED_AS_TEXT.contains(&base) {
        format!("{name}::text = {}", p.next_uncast())
    } else {
        format!("{name} = {}", p.next(ty))
    }
}

/// Deletes one row matching `condition`: PostgreSQL's `DELETE` has no `LIMIT`, so the row is picked
/// by its physical address (`ctid`) in a subquery.
pub(super) fn delete_one(table: &str, condition: &str) -> String {
    format!("DELETE FROM {table} WHERE ctid = (SELECT ctid FROM {table} WHERE {condition} LIMIT 1)")
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{def, weird};
    use super::super::*;

    const P: Dialect = Dialect::Postgres;

    #[test]
    fn schema_and_table_snapshots() {
        assert_eq!(
            create_schema(P, "we\"ird").as_deref(),
            Some("CREATE SCHEMA IF NOT EXISTS \"we\"\"ird\"")
        );
        assert_eq!(create_schema(Dialect::MySql, "s"), None);
        assert_eq!(
            create_table(P, &weird(P, "Sales", "we\"ird"), "ignored"),
            "CREATE TABLE IF NOT EXISTS \"Sales\".\"we\"\"ird\" (\"Ordér\" integer NOT NULL, \"we\"\"ird\" text NOT NULL, \
             \"we`ird\" numeric(30,10), \"\"\"Order\"\"\" jsonb, \"select\" timestamp with time zone, \
             PRIMARY KEY (\"Ordér\", \"we\"\"ird\"))"
        );
        let no_pk = def(
            P,
            "public",
            "t",
            &[("a", "public.mood", 16390), ("b", "integer[]", 1007)],
            &[],
        );
        assert_eq!(
            create_table(P, &no_pk, ""),
            "CREATE TABLE IF NOT EXISTS \"public\".\"t\" (\"a\" text, \"b\" integer[])"
        );
        assert_eq!(
            add_column(P, &no_pk.name, &no_pk.columns[1]),
            "ALTER TABLE \"public\".\"t\" ADD COLUMN IF NOT EXISTS \"b\" integer[]"
        );
    }

    #[test]
    fn upsert_insert_and_delete_snapshots() {
        let t = weird(P, "Sales", "we\"ird");
        let table = "\"Sales\".\"we\"\"ird\"";
        assert_eq!(
            upsert(P, &t, &[0, 1, 2, 4], 2),
            format!(
                "INSERT INTO {table} (\"Ordér\", \"we\"\"ird\", \"we`ird\", \"select\") VALUES \
                 ($1::integer, $2, $3::numeric, $4::timestamp with time zone), \
                 ($5::integer, $6, $7::numeric, $8::timestamp with time zone) \
                 ON CONFLICT (\"Ordér\", \"we\"\"ird\") DO UPDATE SET \"we`ird\" = excluded.\"we`ird\", \
                 \"select\" = excluded.\"select\""
            )
        );
        assert_eq!(
            upsert(P, &t, &[0, 1], 1),
            format!("INSERT INTO {table} (\"Ordér\", \"we\"\"ird\") VALUES ($1::integer, $2) ON CONFLICT (\"Ordér\", \"we\"\"ird\") DO NOTHING")
        );
        assert_eq!(
            insert(P, &t, &[3], 2),
            format!("INSERT INTO {table} (\"\"\"Order\"\"\") VALUES ($1::jsonb), ($2::jsonb)")
        );
        assert_eq!(
            delete_by_key(P, &t, 2),
            format!("DELETE FROM {table} WHERE (\"Ordér\", \"we\"\"ird\") IN (($1::integer, $2), ($3::integer, $4))")
        );
        let one = def(P, "public", "o", &[("id", "bigint", 20)], &[0]);
        assert_eq!(
            delete_by_key(P, &one, 2),
            "DELETE FROM \"public\".\"o\" WHERE \"id\" IN ($1::bigint, $2::bigint)"
        );
        assert_eq!(delete_all(P, &t.name), format!("DELETE FROM {table}"));
    }

    #[test]
    fn delete_one_snapshot() {
        let t = def(
            P,
            "public",
            "n",
            &[
                ("j", "json", 114),
                ("b", "jsonb", 3802),
                ("p", "point", 600),
                ("x", "integer", 23),
                ("a", "json[]", 199),
            ],
            &[],
        );
        assert_eq!(
            delete_one_by_identity(P, &t, &[(0, false), (1, false), (2, false), (3, true), (4, false)]),
            "DELETE FROM \"public\".\"n\" WHERE ctid = (SELECT ctid FROM \"public\".\"n\" WHERE \"j\"::text = $1 \
             AND \"b\" = $2::jsonb AND \"p\"::text = $3 AND \"x\" IS NULL AND \"a\"::text = $4 LIMIT 1)"
        );
    }
}
