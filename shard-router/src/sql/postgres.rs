//! PostgreSQL specifics: schemas, casts on parameters, and the types `=` cannot compare.

use std::fmt::Write as _;

use super::{quote_ident, Placeholders, TableDef};
use crate::dialect::Dialect;
use crate::types::{Bind, ColumnType};

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

/// The rows of a multi-row statement as a query: `SELECT u.c0::type, … FROM unnest($1::text[], …) AS
/// u(c0, …)`, each column's values bound as one text array ([`text_array`]) and cast as a single
/// parameter would be.
///
/// Why not `VALUES ($1, $2, …), (…)`: a statement with thousands of parameters is parsed and planned
/// again for every row count, and PostgreSQL spends more time on that than on the rows (a 5,000-row
/// upsert took twice as long as the same rows through `unnest`). This text is the same for every
/// batch of a table and column set, so the prepared statement and its plan are reused.
pub(super) fn unnest_select(def: &TableDef, columns: &[usize]) -> String {
    let mut select = String::from("SELECT ");
    let mut arrays = String::new();
    let mut aliases = String::new();
    for (n, column) in columns
        .iter()
        .filter_map(|&i| def.columns.get(i))
        .enumerate()
    {
        if n > 0 {
            select.push_str(", ");
            arrays.push_str(", ");
            aliases.push_str(", ");
        }
        let _ = write!(select, "u.c{n}");
        if let Some(cast) = column.ty.cast.as_deref() {
            let _ = write!(select, "::{cast}");
        }
        let _ = write!(arrays, "${}::text[]", n + 1);
        let _ = write!(aliases, "c{n}");
    }
    format!("{select} FROM unnest({arrays}) AS u({aliases})")
}

/// One column's values as a PostgreSQL `text[]` literal: each value quoted (backslash and double
/// quote escaped), `NULL` unquoted, bytes in bytea's hex form. The server's array input reads back
/// exactly the text a single parameter would have carried.
pub(crate) fn text_array<'a>(values: impl Iterator<Item = &'a Bind>) -> String {
    let mut out = String::from("{");
    for (n, value) in values.enumerate() {
        if n > 0 {
            out.push(',');
        }
        match value {
            Bind::Null => out.push_str("NULL"),
            Bind::Int(v) => {
                let _ = write!(out, "{v}");
            }
            Bind::Float(v) if v.is_nan() => out.push_str("NaN"),
            Bind::Float(v) if v.is_infinite() && *v > 0.0 => out.push_str("Infinity"),
            Bind::Float(v) if v.is_infinite() => out.push_str("-Infinity"),
            Bind::Float(v) => {
                let _ = write!(out, "{v:?}");
            }
            Bind::Text(text) => {
                out.reserve(text.len() + 2);
                out.push('"');
                for c in text.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
            Bind::Bytes(bytes) => {
                out.reserve(bytes.len() * 2 + 5);
                out.push_str("\"\\\\x");
                for b in bytes {
                    let _ = write!(out, "{b:02x}");
                }
                out.push('"');
            }
        }
    }
    out.push('}');
    out
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
    use super::text_array;
    use crate::types::Bind;

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
                "INSERT INTO {table} (\"Ordér\", \"we\"\"ird\", \"we`ird\", \"select\") SELECT \
                 u.c0::integer, u.c1, u.c2::numeric, u.c3::timestamp with time zone \
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(c0, c1, c2, c3) \
                 ON CONFLICT (\"Ordér\", \"we\"\"ird\") DO UPDATE SET \"we`ird\" = excluded.\"we`ird\", \
                 \"select\" = excluded.\"select\""
            )
        );
        assert_eq!(
            upsert(P, &t, &[0, 1], 1),
            format!("INSERT INTO {table} (\"Ordér\", \"we\"\"ird\") SELECT u.c0::integer, u.c1 FROM unnest($1::text[], $2::text[]) AS u(c0, c1) ON CONFLICT (\"Ordér\", \"we\"\"ird\") DO NOTHING")
        );
        assert_eq!(
            insert(P, &t, &[3], 2),
            format!("INSERT INTO {table} (\"\"\"Order\"\"\") SELECT u.c0::jsonb FROM unnest($1::text[]) AS u(c0)")
        );
        assert_eq!(
            delete_by_key(P, &t, 2),
            format!("DELETE FROM {table} WHERE (\"Ordér\", \"we\"\"ird\") IN (SELECT u.c0::integer, u.c1 FROM unnest($1::text[], $2::text[]) AS u(c0, c1))")
        );
        let one = def(P, "public", "o", &[("id", "bigint", 20)], &[0]);
        assert_eq!(
            delete_by_key(P, &one, 2),
            "DELETE FROM \"public\".\"o\" WHERE (\"id\") IN (SELECT u.c0::bigint FROM unnest($1::text[]) AS u(c0))"
        );
        assert_eq!(delete_all(P, &t.name), format!("DELETE FROM {table}"));
    }

    #[test]
    fn text_arrays_quote_every_value() {
        let values = [
            Bind::Null,
            Bind::Text(String::new()),
            Bind::Text("NULL".into()),
            Bind::Text("a\"b\\c,{d}".into()),
            Bind::Bytes(vec![0, 0xff]),
            Bind::Int(-7),
            Bind::Float(0.1),
            Bind::Float(f64::NEG_INFINITY),
        ];
        assert_eq!(
            text_array(values.iter()),
            r#"{NULL,"","NULL","a\"b\\c,{d}","\\x00ff",-7,0.1,-Infinity}"#
        );
        assert_eq!(text_array([].iter()), "{}");
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
