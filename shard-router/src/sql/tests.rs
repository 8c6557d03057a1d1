use super::fixture::weird;
use super::*;
use Dialect::*;

#[test]
fn quotes_identifiers_per_dialect() {
    let names = ["select", "we\"ird", "we`ird", "Ordér", "\"Order\""];
    let mysql: Vec<String> = names.iter().map(|n| quote_ident(MySql, n)).collect();
    assert_eq!(
        mysql,
        [
            "`select`",
            "`we\"ird`",
            "`we``ird`",
            "`Ordér`",
            "`\"Order\"`"
        ]
    );
    for d in [Sqlite, Postgres] {
        let quoted: Vec<String> = names.iter().map(|n| quote_ident(d, n)).collect();
        assert_eq!(
            quoted,
            [
                "\"select\"",
                "\"we\"\"ird\"",
                "\"we`ird\"",
                "\"Ordér\"",
                "\"\"\"Order\"\"\""
            ]
        );
    }
}

#[test]
fn names_replica_tables() {
    let public = TableName::new("public", "t");
    let other = TableName::new("Sales", "we`ird");
    assert_eq!(table_ref(Postgres, &public), "\"public\".\"t\"");
    assert_eq!(table_ref(Postgres, &other), "\"Sales\".\"we`ird\"");
    assert_eq!(table_ref(MySql, &public), "`t`");
    assert_eq!(table_ref(MySql, &other), "`Sales__we``ird`");
    assert_eq!(table_ref(Sqlite, &other), "\"Sales__we`ird\"");
    assert_eq!(replica_table(Sqlite, &public), (None, "t".to_owned()));
    assert_eq!(
        replica_table(Postgres, &other),
        (Some("Sales"), "we`ird".to_owned())
    );
    assert_eq!(other.to_string(), "Sales.we`ird");
}

#[test]
fn bind_limits() {
    assert_eq!(max_binds(MySql), 65_535);
    assert_eq!(max_binds(Postgres), 65_535);
    assert_eq!(max_binds(Sqlite), 32_766);
    assert_eq!(rows_per_statement(Postgres, 5), 13_107);
    assert_eq!(rows_per_statement(Sqlite, 2), 16_383);
    assert_eq!(rows_per_statement(MySql, 0), 65_535);
    assert_eq!(rows_per_statement(MySql, 70_000), 1);
    assert_eq!(rows_within(7, 3), 2);
}

#[test]
fn placeholders_count_across_rows_and_never_panic_on_bad_indices() {
    let t = weird(Postgres, "s", "t");
    // PostgreSQL: one array per column, whatever the row count.
    let sql = upsert(Postgres, &t, &[0, 1, 2, 99], 3);
    assert!(
        sql.contains("SELECT u.c0::integer, u.c1, u.c2::numeric FROM unnest($1::text[], $2::text[], $3::text[]) AS u(c0, c1, c2)"),
        "{sql}"
    );
    assert!(!sql.contains("$4"));
    // Out-of-range indices are skipped; zero rows count as one.
    assert_eq!(
        insert(Sqlite, &weird(Sqlite, "public", "t"), &[0, 99], 0),
        "INSERT INTO \"t\" (\"Ordér\") VALUES (?)"
    );
    assert_eq!(
        delete_one_by_identity(MySql, &weird(MySql, "public", "t"), &[(99, false)]),
        "DELETE FROM `t` WHERE 1 = 0 LIMIT 1"
    );
}
