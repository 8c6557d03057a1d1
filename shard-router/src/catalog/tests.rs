use super::*;
use crate::types::ValueKind;
use Dialect::*;

fn ev(json: &str) -> RowChange {
    match shared::codec::decode(json.as_bytes()).unwrap() {
        shared::Change::Row(row) => row,
        other => panic!("not a row change: {other:?}"),
    }
}

const PK_ID: &str = r#""pk":[{"name":"id","type":"integer","typeoid":23}]"#;

fn insert(table: &str, columns: &str) -> RowChange {
    ev(&format!(
        r#"{{"action":"I","schema":"public","table":"{table}","columns":[{columns}],{PK_ID}}}"#
    ))
}

const ID: &str = r#"{"name":"id","type":"integer","typeoid":23,"value":1}"#;
const S: &str = r#"{"name":"s","type":"text","typeoid":25,"value":"x"}"#;
const N: &str = r#"{"name":"n","type":"numeric(30,10)","typeoid":1700,"value":1.5}"#;

fn catalog(d: Dialect) -> Catalog {
    Catalog::new(d, mysql::MARIADB_COLLATION).unwrap()
}

fn names(def: &TableDef) -> Vec<&str> {
    def.columns.iter().map(|c| c.name.as_str()).collect()
}

#[test]
fn creates_a_new_table_with_schema_on_postgres() {
    let mut c = catalog(Postgres);
    let e = ev(&format!(
        r#"{{"action":"I","schema":"app","table":"t","columns":[{ID},{S}],{PK_ID}}}"#
    ));
    assert!(c.needs_ddl(&e));
    let ddl = c.reconcile(&e, None).unwrap();
    assert_eq!(
        ddl,
        [
            "CREATE SCHEMA IF NOT EXISTS \"app\"",
            "CREATE TABLE IF NOT EXISTS \"app\".\"t\" (\"id\" integer NOT NULL, \"s\" text, PRIMARY KEY (\"id\"))",
        ]
    );
    assert!(!c.needs_ddl(&e));
    let def = c.lookup(&TableName::new("app", "t")).unwrap();
    assert_eq!((names(def), def.pk.clone()), (vec!["id", "s"], vec![0]));
    assert_eq!(c.dialect(), Postgres);
}

#[test]
fn maps_key_columns_for_mysql() {
    let mut c = catalog(MySql);
    let e = ev(&format!(
        r#"{{"action":"I","schema":"public","table":"t","columns":[{S},{N}],"pk":[{{"name":"s","type":"text","typeoid":25}}]}}"#
    ));
    let ddl = c.reconcile(&e, None).unwrap();
    assert_eq!(
        ddl,
        ["CREATE TABLE IF NOT EXISTS `t` (`s` VARCHAR(255) NOT NULL, `n` DECIMAL(30,10), PRIMARY KEY (`s`)) \
          ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin"]
    );
}

#[test]
fn adds_new_columns_and_never_drops_missing_ones() {
    let mut c = catalog(Sqlite);
    c.reconcile(&insert("t", &format!("{ID},{S}")), None)
        .unwrap();
    // An update without the TOASTed `s`: nothing to do, `s` stays.
    let toast = insert("t", ID);
    assert!(!c.needs_ddl(&toast));
    assert_eq!(c.reconcile(&toast, None).unwrap(), Vec::<String>::new());
    let later = insert("t", &format!("{ID},{N}"));
    assert!(c.needs_ddl(&later));
    assert_eq!(
        c.reconcile(&later, None).unwrap(),
        ["ALTER TABLE \"t\" ADD COLUMN \"n\" TEXT"]
    );
    let def = c.lookup(&TableName::new("public", "t")).unwrap();
    assert_eq!(names(def), ["id", "s", "n"]);
    assert_eq!(def.columns[2].ty.kind, ValueKind::Numeric { limit: None });
    assert!(!c.needs_ddl(&later));
}

#[test]
fn uses_the_replicas_existing_columns() {
    // The table exists on the replica (say after a restart) with `ID` and `s`: only `n` is added, and
    // MySQL matches column names case-insensitively.
    let mut c = catalog(MySql);
    let existing = ["ID".to_owned(), "s".to_owned()];
    let e = insert("t", &format!("{ID},{S},{N}"));
    assert_eq!(
        c.reconcile(&e, Some(&existing)).unwrap(),
        ["ALTER TABLE `t` ADD COLUMN `n` DECIMAL(30,10)"]
    );
    assert_eq!(c.lookup(&TableName::new("public", "t")).unwrap().pk, [0]);
    // A stale introspection passed again later does not re-add what the catalog added.
    let e2 = insert(
        "t",
        &format!(r#"{ID},{{"name":"z","type":"bigint","typeoid":20,"value":1}}"#),
    );
    assert_eq!(
        c.reconcile(&e2, Some(&existing)).unwrap(),
        ["ALTER TABLE `t` ADD COLUMN `z` BIGINT"]
    );
    // PostgreSQL compares exactly.
    let mut pg = catalog(Postgres);
    let ddl = pg
        .reconcile(&insert("t", &format!("{ID},{S}")), Some(&existing))
        .unwrap();
    assert_eq!(
        ddl,
        ["ALTER TABLE \"public\".\"t\" ADD COLUMN IF NOT EXISTS \"id\" integer"]
    );
}

#[test]
fn a_delete_creates_the_table_from_its_identity() {
    let mut c = catalog(Sqlite);
    let d = ev(&format!(
        r#"{{"action":"D","schema":"s","table":"t","identity":[{ID}],{PK_ID}}}"#
    ));
    assert_eq!(
        c.reconcile(&d, None).unwrap(),
        ["CREATE TABLE IF NOT EXISTS \"s__t\" (\"id\" INTEGER NOT NULL, PRIMARY KEY (\"id\"))"]
    );
    // A full-identity update contributes identity columns missing from `columns`.
    let u = ev(&format!(
        r#"{{"action":"U","schema":"s","table":"t","columns":[{ID}],"identity":[{ID},{S}],{PK_ID}}}"#
    ));
    assert!(c.needs_ddl(&u));
    assert_eq!(
        c.reconcile(&u, None).unwrap(),
        ["ALTER TABLE \"s__t\" ADD COLUMN \"s\" TEXT"]
    );
}

#[test]
fn refuses_what_it_cannot_follow() {
    let mut c = catalog(MySql);
    let err = |c: &mut Catalog, json: &str| c.reconcile(&ev(json), None).unwrap_err();
    assert!(c.needs_ddl(&ev(
        r#"{"action":"I","schema":"public","table":"t","columns":[]}"#
    )));
    assert!(matches!(
        err(
            &mut c,
            r#"{"action":"I","schema":"public","table":"t","columns":[]}"#
        ),
        CatalogError::NoColumns { action: "I", .. }
    ));
    let e = err(
        &mut c,
        &format!(r#"{{"action":"I","schema":"public","table":"t","columns":[{S}],{PK_ID}}}"#),
    );
    assert_eq!(
        e.to_string(),
        "primary key column \"id\" of public.t is not among the event's columns"
    );
    let e = err(
        &mut c,
        &format!(r#"{{"action":"I","schema":"public","table":"t","columns":[{ID},{ID}],{PK_ID}}}"#),
    );
    assert!(matches!(e, CatalogError::DuplicateColumn { .. }));
    let upper = r#"{"name":"S","type":"text","typeoid":25,"value":"y"}"#;
    let e = err(
        &mut c,
        &format!(
            r#"{{"action":"I","schema":"public","table":"t","columns":[{ID},{S},{upper}],{PK_ID}}}"#
        ),
    );
    assert!(matches!(e, CatalogError::ColumnNameCollision { .. }), "{e}");
    assert!(
        c.lookup(&TableName::new("public", "t")).is_none(),
        "errors change nothing"
    );
    let mut pg = catalog(Postgres);
    assert!(pg
        .reconcile(&insert("t", &format!("{ID},{S},{upper}")), None)
        .is_ok());
    assert!(matches!(
        Catalog::new(MySql, "x; DROP"),
        Err(CatalogError::InvalidCollation(_))
    ));
}

#[test]
fn a_changed_primary_key_is_an_error_that_keeps_the_definition() {
    let mut c = catalog(Postgres);
    c.reconcile(&insert("t", &format!("{ID},{S}")), None)
        .unwrap();
    let no_pk = ev(&format!(
        r#"{{"action":"I","schema":"public","table":"t","columns":[{ID},{S}]}}"#
    ));
    assert!(c.needs_ddl(&no_pk));
    let e = c.reconcile(&no_pk, None).unwrap_err();
    assert!(matches!(e, CatalogError::PrimaryKeyChanged { .. }), "{e}");
    assert_eq!(c.lookup(&TableName::new("public", "t")).unwrap().pk, [0]);
    c.forget(&TableName::new("public", "t"));
    assert!(c.lookup(&TableName::new("public", "t")).is_none());
}

#[test]
fn a_column_whose_source_type_changed_size_stops_and_a_compatible_change_is_followed() {
    const N4: &str = r#"{"name":"n","type":"numeric(32,12)","typeoid":1700,"value":1.5}"#;
    const S_INT: &str = r#"{"name":"s","type":"bigint","typeoid":20,"value":7}"#;
    for d in [Postgres, MySql] {
        let mut c = catalog(d);
        c.reconcile(&insert("t", &format!("{ID},{N}")), None)
            .unwrap();
        let wider = insert("t", &format!("{ID},{N4}"));
        assert!(c.needs_ddl(&wider));
        let err = c.reconcile(&wider, None).unwrap_err();
        assert!(
            matches!(&err, CatalogError::TypeChanged { column, new, .. }
                if column == "n" && new == "numeric(32,12)"),
            "{d:?}: {err:?}"
        );
        // The catalog is unchanged: the next event meets the same refusal.
        assert!(c.needs_ddl(&wider));
    }
    // SQLite stores both as INTEGER: the new source type is followed, once.
    let mut c = catalog(Sqlite);
    c.reconcile(
        &insert(
            "t",
            &format!(r#"{ID},{{"name":"s","type":"integer","typeoid":23,"value":7}}"#),
        ),
        None,
    )
    .unwrap();
    let retyped = insert("t", &format!("{ID},{S_INT}"));
    assert!(c.needs_ddl(&retyped));
    assert_eq!(c.reconcile(&retyped, None).unwrap(), Vec::<String>::new());
    assert!(!c.needs_ddl(&retyped));
}

#[test]
fn a_replica_table_with_other_sizes_is_refused_at_first_sight() {
    let c = catalog(Postgres);
    let e = insert("t", &format!("{ID},{N}"));
    let have = |t: &str| {
        vec![
            ("id".to_owned(), "integer".to_owned()),
            ("n".to_owned(), t.to_owned()),
        ]
    };
    assert!(c.check_replica_types(&e, &have("numeric(30,10)")).is_ok());
    assert!(matches!(
        c.check_replica_types(&e, &have("numeric(10,2)")),
        Err(CatalogError::TypeChanged { .. })
    ));
    let m = catalog(MySql);
    assert!(m
        .check_replica_types(&e, &[("N".to_owned(), "decimal(30,10)".to_owned())])
        .is_ok());
    assert!(m
        .check_replica_types(&e, &[("N".to_owned(), "decimal(10,2)".to_owned())])
        .is_err());
}

#[test]
fn rows_of_one_shape_are_told_from_rows_that_differ() {
    let a = insert("t", &format!("{ID},{S}"));
    assert!(same_shape(&a, &insert("t", &format!("{ID},{S}"))));
    // Another table, another column set, another column order, another type: not the same.
    assert!(!same_shape(&a, &insert("u", &format!("{ID},{S}"))));
    assert!(!same_shape(&a, &insert("t", ID)));
    assert!(!same_shape(&a, &insert("t", &format!("{S},{ID}"))));
    let s_as_varchar = r#"{"name":"s","type":"character varying(5)","typeoid":1043,"value":"x"}"#;
    assert!(!same_shape(
        &a,
        &insert("t", &format!("{ID},{s_as_varchar}"))
    ));
    let without_key = ev(&format!(
        r#"{{"action":"I","schema":"public","table":"t","columns":[{ID},{S}]}}"#
    ));
    assert!(!same_shape(&a, &without_key));
}
