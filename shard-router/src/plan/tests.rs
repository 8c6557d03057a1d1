use super::*;
use crate::sql::mysql::MARIADB_COLLATION;
use std::error::Error as _;
use Dialect::*;

fn ev(json: &str) -> RowChange {
    match shared::codec::decode(json.as_bytes()).unwrap() {
        shared::Change::Row(row) => row,
        other => panic!("not a row change: {other:?}"),
    }
}

/// A column of the test tables: `id integer`, `s text`, `n numeric`, `f double precision`.
fn col(name: &str, value: &str) -> String {
    let (ty, oid) = match name {
        "id" | "k2" => ("integer", 23),
        "s" => ("text", 25),
        "n" => ("numeric", 1700),
        "f" => ("double precision", 701),
        other => panic!("no test column {other}"),
    };
    format!(r#"{{"name":"{name}","type":"{ty}","typeoid":{oid},"value":{value}}}"#)
}

fn cols(list: &[(&str, &str)]) -> String {
    list.iter()
        .map(|(n, v)| col(n, v))
        .collect::<Vec<_>>()
        .join(",")
}

const PK: &str = r#","pk":[{"name":"id","type":"integer","typeoid":23}]"#;

/// An event on `public.<table>`; tables named `k*` have the key `id`, others none.
fn change(
    action: &str,
    table: &str,
    columns: &[(&str, &str)],
    identity: Option<&[(&str, &str)]>,
) -> RowChange {
    let mut json = format!(r#"{{"action":"{action}","schema":"public","table":"{table}""#);
    if !columns.is_empty() {
        json.push_str(&format!(r#","columns":[{}]"#, cols(columns)));
    }
    if let Some(identity) = identity {
        json.push_str(&format!(r#","identity":[{}]"#, cols(identity)));
    }
    if table.starts_with('k') {
        json.push_str(PK);
    }
    json.push('}');
    ev(&json)
}

fn i(table: &str, columns: &[(&str, &str)]) -> RowChange {
    change("I", table, columns, None)
}

const ALL: [(&str, &str); 4] = [("id", "1"), ("s", "\"a\""), ("n", "1.5"), ("f", "0.5")];

/// A catalog knowing `public.k` (key `id`) and `public.t` (no key), each with all four columns.
fn catalog(d: Dialect) -> Catalog {
    let mut c = Catalog::new(d, MARIADB_COLLATION).unwrap();
    for table in ["k", "t"] {
        c.reconcile(&i(table, &ALL), None).unwrap();
    }
    c
}

fn run(d: Dialect, changes: &[RowChange], max_binds: usize) -> Vec<Statement> {
    plan_within(&catalog(d), changes, max_binds, usize::MAX).unwrap()
}

#[test]
fn statements_are_split_by_the_bytes_they_bind() {
    let rows: Vec<Vec<Bind>> = [10, 10, 30, 10, 10, 10]
        .iter()
        .map(|&n| vec![Bind::Text("x".repeat(n - 4))])
        .collect();
    let sizes = |max_rows, max_bytes| -> Vec<usize> {
        chunks(&rows, max_rows, max_bytes)
            .iter()
            .map(|c| c.len())
            .collect()
    };
    assert_eq!(sizes(100, usize::MAX), [6]);
    assert_eq!(sizes(4, usize::MAX), [4, 2]);
    // A row larger than the bound goes alone; no chunk is empty.
    assert_eq!(sizes(100, 20), [2, 1, 2, 1]);
    assert_eq!(sizes(100, 1), [1, 1, 1, 1, 1, 1]);
    assert!(chunks(&[], 10, 10).is_empty());
}

fn fail(d: Dialect, changes: &[RowChange]) -> PlanError {
    plan(&catalog(d), changes).unwrap_err()
}

fn text(s: &str) -> Bind {
    Bind::Text(s.to_owned())
}

fn shape(statements: &[Statement]) -> Vec<(StatementKind, usize)> {
    statements.iter().map(|s| (s.kind, s.rows)).collect()
}

#[test]
fn merges_consecutive_upserts_into_one_statement() {
    let changes = [
        i("k", &[("id", "1"), ("s", "\"a\"")]),
        change("U", "k", &[("s", "\"b\""), ("id", "2")], None),
        i("k", &[("id", "3"), ("s", "null")]),
    ];
    let out = run(Sqlite, &changes, 100);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].sql,
        "INSERT INTO \"k\" (\"id\", \"s\") VALUES (?, ?), (?, ?), (?, ?) ON CONFLICT (\"id\") DO UPDATE SET \"s\" = excluded.\"s\""
    );
    assert_eq!(
        out[0].binds,
        [
            Bind::Int(1),
            text("a"),
            Bind::Int(2),
            text("b"),
            Bind::Int(3),
            Bind::Null
        ]
    );
    assert_eq!(
        (out[0].kind, out[0].rows, out[0].table().to_string()),
        (StatementKind::Upsert, 3, "public.k".to_owned())
    );
}

#[test]
fn splits_runs_at_the_bind_limit() {
    let changes: Vec<RowChange> = (1..=5)
        .map(|n| i("k", &[("id", &n.to_string()), ("s", "\"x\"")]))
        .collect();
    let out = run(MySql, &changes, 5);
    assert_eq!(
        shape(&out),
        [
            (StatementKind::Upsert, 2),
            (StatementKind::Upsert, 2),
            (StatementKind::Upsert, 1)
        ]
    );
    assert!(out
        .iter()
        .all(|s| s.binds.len() == 2 * s.rows && s.binds.len() <= 5));
    assert_eq!(out[2].binds, [Bind::Int(5), text("x")]);
    // Deletes split the same way; a limit below one row still makes progress, one row at a time.
    let deletes: Vec<RowChange> = (1..=3)
        .map(|n| change("D", "k", &[], Some(&[("id", &n.to_string())])))
        .collect();
    assert_eq!(
        shape(&run(MySql, &deletes, 2)),
        [
            (StatementKind::DeleteByKey, 2),
            (StatementKind::DeleteByKey, 1)
        ]
    );
    assert_eq!(shape(&run(MySql, &changes, 1)).len(), 5);
    // Deletes by key stop at DELETE_ROWS_PER_STATEMENT rows whatever the bind limit.
    let deletes: Vec<RowChange> = (1..=2500)
        .map(|n| change("D", "k", &[], Some(&[("id", &n.to_string())])))
        .collect();
    assert_eq!(
        shape(&run(MySql, &deletes, 65_535)),
        [
            (StatementKind::DeleteByKey, 1000),
            (StatementKind::DeleteByKey, 1000),
            (StatementKind::DeleteByKey, 500)
        ]
    );
    // The real limit: a big run stays in one statement.
    let many: Vec<RowChange> = (1..=1000)
        .map(|n| i("k", &[("id", &n.to_string())]))
        .collect();
    assert_eq!(
        shape(&plan(&catalog(Postgres), &many).unwrap()),
        [(StatementKind::Upsert, 1000)]
    );
}

#[test]
fn a_repeated_key_replaces_the_earlier_row_in_place() {
    let changes = [
        i("k", &[("id", "1"), ("n", "1.0")]),
        i("k", &[("id", "2"), ("n", "2")]),
        change("U", "k", &[("id", "1"), ("n", "1.25")], None),
    ];
    let out = run(Postgres, &changes, 100);
    assert_eq!(shape(&out), [(StatementKind::Upsert, 2)]);
    assert_eq!(
        out[0].binds,
        [text("1"), text("1.25"), text("2"), text("2")]
    );
    // A different column set starts a new statement instead.
    let changes = [
        i("k", &[("id", "1"), ("n", "1")]),
        i("k", &[("id", "1"), ("s", "\"z\"")]),
    ];
    assert_eq!(
        shape(&run(Postgres, &changes, 100)),
        [(StatementKind::Upsert, 1), (StatementKind::Upsert, 1)]
    );
}

#[test]
fn keys_compare_as_the_replica_compares_them() {
    let mut c = Catalog::new(Postgres, MARIADB_COLLATION).unwrap();
    let key = |ty: &str, oid: u32, v: &str| {
        ev(&format!(
            r#"{{"action":"I","schema":"public","table":"x","columns":[{{"name":"k","type":"{ty}","typeoid":{oid},"value":{v}}}],"pk":[{{"name":"k","type":"{ty}","typeoid":{oid}}}]}}"#
        ))
    };
    c.reconcile(&key("numeric", 1700, "1"), None).unwrap();
    let changes = [
        key("numeric", 1700, "1.0"),
        key("numeric", 1700, "1.00"),
        key("numeric", 1700, "-0.0"),
        key("numeric", 1700, "0"),
    ];
    let out = plan(&c, &changes).unwrap();
    assert_eq!(out[0].binds, [text("1.00"), text("0")]);
}

#[test]
fn columns_an_update_leaves_out_are_not_touched() {
    let out = run(
        MySql,
        &[change("U", "k", &[("id", "1"), ("n", "2.5")], None)],
        100,
    );
    assert_eq!(
        out[0].sql,
        "INSERT INTO `k` (`id`, `n`) VALUES (?, CAST(? AS DECIMAL(65,30))) ON DUPLICATE KEY UPDATE `n` = VALUES(`n`)"
    );
    let only_key = run(MySql, &[change("U", "k", &[("id", "1")], None)], 100);
    assert!(
        only_key[0]
            .sql
            .ends_with("ON DUPLICATE KEY UPDATE `id` = `id`"),
        "{}",
        only_key[0].sql
    );
}

#[test]
fn a_key_change_deletes_the_old_key_first() {
    let changes = [
        i("k", &[("id", "1"), ("s", "\"a\"")]),
        change(
            "U",
            "k",
            &[("id", "3"), ("n", "7")],
            Some(&[("id", "1"), ("s", "\"a\""), ("n", "6")]),
        ),
        // Same key in a full identity: a plain upsert.
        change(
            "U",
            "k",
            &[("id", "3"), ("n", "8")],
            Some(&[("id", "3"), ("s", "\"a\""), ("n", "7")]),
        ),
    ];
    let out = run(Sqlite, &changes, 100);
    assert_eq!(
        shape(&out),
        [
            (StatementKind::Upsert, 1),
            (StatementKind::DeleteByKey, 1),
            (StatementKind::Upsert, 1),
            (StatementKind::Upsert, 1)
        ]
    );
    assert_eq!(out[1].sql, "DELETE FROM \"k\" WHERE \"id\" IN (?)");
    assert_eq!(out[1].binds, [Bind::Int(1)]);
    // The moved row takes `s` from the old row (it was left out as an unchanged TOASTed value).
    assert_eq!(out[2].binds, [Bind::Int(3), text("a"), text("7")]);
    assert_eq!(out[3].binds, [Bind::Int(3), text("8")]);
}

#[test]
fn deletes_by_key_keep_their_order_with_upserts() {
    let d = |n: &str| change("D", "k", &[], Some(&[("id", n)]));
    let changes = [
        i("k", &[("id", "1")]),
        d("1"),
        d("2"),
        d("1"),
        i("k", &[("id", "1")]),
    ];
    let out = run(Postgres, &changes, 100);
    assert_eq!(
        shape(&out),
        [
            (StatementKind::Upsert, 1),
            (StatementKind::DeleteByKey, 3),
            (StatementKind::Upsert, 1)
        ]
    );
    assert_eq!(
        out[1].sql,
        "DELETE FROM \"public\".\"k\" WHERE (\"id\") IN (SELECT u.c0::integer FROM unnest($1::text[]) AS u(c0))"
    );
    assert_eq!(out[1].binds, [text("1"), text("2"), text("1")]);
    assert_eq!(*out[1].wire_binds(), [text("{\"1\",\"2\",\"1\"}")]);
    let mysql = run(MySql, &changes, 100);
    assert_eq!(mysql[1].sql, "DELETE FROM `k` WHERE `id` IN (?, ?, ?)");
    assert_eq!(
        *mysql[1].wire_binds(),
        [Bind::Int(1), Bind::Int(2), Bind::Int(1)]
    );
}

#[test]
fn postgres_binds_one_text_array_per_column() {
    let changes = [
        i(
            "t",
            &[
                ("id", "1"),
                ("s", "\"a \\\"quoted\\\" back\\\\slash\""),
                ("n", "1.5"),
            ],
        ),
        i("t", &[("id", "2"), ("s", "null"), ("n", "\"NaN\"")]),
        i("t", &[("id", "3"), ("s", "\"NULL\""), ("n", "-2")]),
    ];
    let out = run(Postgres, &changes, 100);
    assert_eq!(out.len(), 1);
    assert!(out[0].columnar);
    assert!(
        out[0]
            .sql
            .contains("unnest($1::text[], $2::text[], $3::text[])"),
        "{}",
        out[0].sql
    );
    assert_eq!(out[0].binds.len(), 9, "kept row by row");
    assert_eq!(
        *out[0].wire_binds(),
        [
            text("{\"1\",\"2\",\"3\"}"),
            text(r#"{"a \"quoted\" back\\slash",NULL,"NULL"}"#),
            text("{\"1.5\",\"NaN\",\"-2\"}"),
        ]
    );
}

#[test]
fn tables_without_a_key_use_the_old_row() {
    let old: &[(&str, &str)] = &[("id", "1"), ("s", "null"), ("n", "1.5"), ("f", "0.5")];
    let changes = [
        i("t", &[("id", "1"), ("s", "null")]),
        i("t", &[("id", "1"), ("s", "null")]),
        change("U", "t", &[("id", "2"), ("f", "0.25")], Some(old)),
        change("D", "t", &[], Some(old)),
    ];
    let out = run(MySql, &changes, 100);
    assert_eq!(
        shape(&out),
        [
            (StatementKind::Insert, 2),
            (StatementKind::DeleteOne, 1),
            (StatementKind::Insert, 1),
            (StatementKind::DeleteOne, 1)
        ]
    );
    assert_eq!(
        out[0].sql,
        "INSERT INTO `t` (`id`, `s`) VALUES (?, ?), (?, ?)"
    );
    assert_eq!(
        out[1].sql,
        "DELETE FROM `t` WHERE `id` = ? AND `s` IS NULL AND `n` = CAST(? AS DECIMAL(65,30)) AND `f` = ? LIMIT 1"
    );
    assert_eq!(out[1].binds, [Bind::Int(1), text("1.5"), text("0.5")]);
    // The new row is completed from the old one.
    assert_eq!(
        out[2].binds,
        [Bind::Int(2), Bind::Null, text("1.5"), text("0.25")]
    );
    // (A delete always has its old row: the codec refuses one without.)
    let bad = change("U", "t", &[("id", "2")], None);
    let e = fail(MySql, &[i("t", &[("id", "1")]), bad]);
    assert_eq!(e.index, 1);
    assert!(matches!(*e.cause, PlanCause::NoIdentity));
    assert!(e
        .source()
        .unwrap()
        .to_string()
        .contains("REPLICA IDENTITY FULL"));
}

#[test]
fn different_tables_are_never_merged() {
    let changes = [
        i("k", &[("id", "1")]),
        i("k2", &[("id", "1")]),
        i("k", &[("id", "2")]),
    ];
    let mut c = catalog(Postgres);
    c.reconcile(&changes[1], None).unwrap();
    let out = plan(&c, &changes).unwrap();
    let tables: Vec<String> = out.iter().map(|s| s.table().name.clone()).collect();
    assert_eq!(tables, ["k", "k2", "k"]);
}

#[test]
fn errors_name_the_change_table_and_column_but_not_the_value() {
    let e = fail(
        MySql,
        &[
            i("k", &[("id", "1")]),
            i("k", &[("id", "2"), ("f", "\"NaN\"")]),
        ],
    );
    assert_eq!((e.index, e.table.to_string()), (1, "public.k".to_owned()));
    assert_eq!(e.to_string(), "cannot apply change 1 to table public.k");
    let cause = e.source().unwrap();
    assert_eq!(
        cause.to_string(),
        "cannot convert the value of column \"f\""
    );
    assert_eq!(
        cause.source().unwrap().to_string(),
        "float NaN cannot be stored in a MySQL DOUBLE"
    );
    let secret = fail(MySql, &[i("k", &[("id", "\"Zq9secret\"")])]);
    let mut chain = secret.to_string();
    let mut source = secret.source();
    while let Some(s) = source {
        chain.push_str(&s.to_string());
        source = s.source();
    }
    assert!(!chain.contains("Zq9secret"), "{chain}");

    let cause = |changes: &[RowChange]| fail(Sqlite, changes).cause;
    assert!(matches!(
        *cause(&[i("nope", &[("id", "1")])]),
        PlanCause::UnknownTable
    ));
    let extra = ev(
        r#"{"action":"I","schema":"public","table":"k","columns":[{"name":"zz","type":"text","value":"x"}]}"#,
    );
    assert!(matches!(*cause(&[extra]), PlanCause::UnknownColumn(ref c) if c == "zz"));
    assert!(matches!(
        *cause(&[i("k", &[("id", "1"), ("id", "2")])]),
        PlanCause::DuplicateColumn(_)
    ));
    let empty = ev(r#"{"action":"I","schema":"public","table":"t","columns":[]}"#);
    assert!(matches!(*cause(&[empty]), PlanCause::NoColumns));
    assert!(
        matches!(*cause(&[i("k", &[("s", "\"x\"")])]), PlanCause::MissingKey(ref c) if c == "id")
    );
    assert!(matches!(
        *cause(&[change("D", "k", &[], Some(&[("s", "\"x\"")]))]),
        PlanCause::MissingKey(_)
    ));
    assert_eq!(StatementKind::DeleteOne.as_str(), "delete_one");
}
