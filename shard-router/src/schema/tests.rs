use serde_json::value::RawValue;
use shared::{ColumnDefinition, Ddl, IndexDefinition, TableDefinition};

use super::*;

fn col(attnum: i16, name: &str, ty: &str, typeoid: u32) -> ColumnDefinition {
    ColumnDefinition {
        attnum,
        name: name.into(),
        type_name: ty.into(),
        typeoid,
        not_null: false,
        fill: None,
    }
}

fn table(name: &str, columns: Vec<ColumnDefinition>, pk: &[&str]) -> TableDefinition {
    TableDefinition {
        schema: "public".into(),
        table: name.into(),
        columns,
        pk: pk.iter().map(|s| (*s).to_owned()).collect(),
        indexes: Vec::new(),
    }
}

fn replica(columns: &[&str], pk: &[&str]) -> ReplicaTable {
    ReplicaTable {
        columns: columns.iter().map(|s| (*s).to_owned()).collect(),
        pk: pk.iter().map(|s| (*s).to_owned()).collect(),
        pk_constraint: (!pk.is_empty()).then(|| "t_pkey".to_owned()),
        indexes: Vec::new(),
    }
}

fn sql(statements: &[Statement]) -> Vec<String> {
    statements.iter().map(|s| s.sql.clone()).collect()
}

fn ddl(before: Option<TableDefinition>, after: Option<TableDefinition>) -> Ddl {
    Ddl {
        command: "ALTER TABLE".into(),
        recopy: false,
        before,
        after,
    }
}

#[test]
fn an_added_column_is_filled_with_the_value_existing_rows_have_on_the_source() {
    let before = table("t", vec![col(1, "id", "integer", 23)], &["id"]);
    let mut tier = col(2, "tier", "text", 25);
    tier.fill = Some(RawValue::from_string("\"basic\"".into()).unwrap());
    let after = table("t", vec![col(1, "id", "integer", 23), tier], &["id"]);
    let change = ddl(Some(before), Some(after));
    let now = replica(&["id"], &["id"]);
    for (dialect, want) in [
        (
            Dialect::Postgres,
            vec![
                r#"ALTER TABLE "public"."t" ADD COLUMN IF NOT EXISTS "tier" text"#,
                r#"UPDATE "public"."t" SET "tier" = $1"#,
            ],
        ),
        (
            Dialect::MySql,
            vec![
                "ALTER TABLE `t` ADD COLUMN `tier` LONGTEXT",
                "UPDATE `t` SET `tier` = ?",
            ],
        ),
    ] {
        let first = plan(dialect, "utf8mb4_bin", &change, None, Some(&now), true).unwrap();
        assert_eq!(sql(&first), want, "{dialect:?}");
        assert_eq!(first[1].binds.len(), 1);
        // Run again after it applied (the column is there): only the fill, which changes nothing
        // more; a later round has nothing to do.
        let done = replica(&["id", "tier"], &["id"]);
        let again = plan(dialect, "utf8mb4_bin", &change, None, Some(&done), true).unwrap();
        assert_eq!(again.len(), 1);
        assert!(
            plan(dialect, "utf8mb4_bin", &change, None, Some(&done), false)
                .unwrap()
                .is_empty()
        );
    }
}

#[test]
fn renames_follow_the_attribute_number_and_are_done_once() {
    let before = table(
        "t",
        vec![col(1, "id", "integer", 23), col(2, "a", "text", 25)],
        &["id"],
    );
    let after = table(
        "t2",
        vec![col(1, "id", "integer", 23), col(2, "aa", "text", 25)],
        &["id"],
    );
    let change = ddl(Some(before), Some(after));
    let old = replica(&["id", "a"], &["id"]);
    let plan1 = plan(Dialect::Sqlite, "x", &change, Some(&old), None, true).unwrap();
    assert_eq!(
        sql(&plan1),
        [
            r#"ALTER TABLE "t" RENAME TO "t2""#,
            r#"ALTER TABLE "t2" RENAME COLUMN "a" TO "aa""#
        ]
    );
    let done = replica(&["id", "aa"], &["id"]);
    assert!(plan(Dialect::Sqlite, "x", &change, None, Some(&done), true)
        .unwrap()
        .is_empty());
}

#[test]
fn type_and_key_changes_alter_in_place_or_rebuild_sqlite() {
    let before = table(
        "t",
        vec![
            col(1, "id", "integer", 23),
            col(2, "n", "numeric(10,2)", 1700),
        ],
        &[],
    );
    let mut after = table(
        "t",
        vec![
            col(1, "id", "integer", 23),
            col(2, "n", "numeric(20,4)", 1700),
        ],
        &["id"],
    );
    after.indexes.push(IndexDefinition {
        name: "t_n".into(),
        columns: vec!["n".into()],
        unique: true,
    });
    let change = ddl(Some(before), Some(after));
    let now = replica(&["id", "n"], &[]);
    let pg = plan(Dialect::Postgres, "x", &change, None, Some(&now), true).unwrap();
    assert_eq!(
        sql(&pg),
        [
            r#"ALTER TABLE "public"."t" ALTER COLUMN "n" TYPE numeric(20,4) USING "n"::numeric(20,4)"#,
            r#"ALTER TABLE "public"."t" ADD PRIMARY KEY ("id")"#,
            r#"CREATE INDEX IF NOT EXISTS "t_n" ON "public"."t" ("n")"#,
        ]
    );
    let my = plan(
        Dialect::MySql,
        "utf8mb4_bin",
        &change,
        None,
        Some(&now),
        true,
    )
    .unwrap();
    assert_eq!(
        sql(&my),
        [
            "ALTER TABLE `t` MODIFY COLUMN `n` DECIMAL(20,4)",
            "ALTER TABLE `t` MODIFY COLUMN `id` INT NOT NULL",
            "ALTER TABLE `t` ADD PRIMARY KEY (`id`)",
            "CREATE INDEX `t_n` ON `t` (`n`)",
        ]
    );
    let lite = plan(Dialect::Sqlite, "x", &change, None, Some(&now), true).unwrap();
    let lite = sql(&lite);
    assert_eq!(lite[0], r#"DROP TABLE IF EXISTS "t__cascade_rebuild""#);
    assert!(
        lite[1].starts_with(r#"CREATE TABLE IF NOT EXISTS "t__cascade_rebuild""#),
        "{}",
        lite[1]
    );
    assert!(lite[1].contains("PRIMARY KEY"), "{}", lite[1]);
    assert_eq!(
        &lite[2..],
        [
            r#"INSERT INTO "t__cascade_rebuild" ("id", "n") SELECT "id", "n" FROM "t""#,
            r#"DROP TABLE "t""#,
            r#"ALTER TABLE "t__cascade_rebuild" RENAME TO "t""#,
            r#"CREATE INDEX IF NOT EXISTS "t_n" ON "t" ("n")"#,
        ]
    );
}

#[test]
fn drops_and_creates() {
    let t = table(
        "t",
        vec![col(1, "id", "integer", 23), col(2, "x", "text", 25)],
        &["id"],
    );
    let now = replica(&["id", "x"], &["id"]);
    let dropped = ddl(Some(t.clone()), None);
    assert_eq!(
        sql(&plan(Dialect::MySql, "c", &dropped, Some(&now), None, true).unwrap()),
        ["DROP TABLE IF EXISTS `t`"]
    );
    assert!(plan(Dialect::MySql, "c", &dropped, None, None, true)
        .unwrap()
        .is_empty());
    let created = ddl(None, Some(t.clone()));
    let create = sql(&plan(Dialect::Postgres, "c", &created, None, None, true).unwrap());
    assert_eq!(create[0], r#"CREATE SCHEMA IF NOT EXISTS "public""#);
    assert!(create[1].starts_with(r#"CREATE TABLE IF NOT EXISTS "public"."t""#));
    let without_x = table("t", vec![col(1, "id", "integer", 23)], &["id"]);
    let drop_column = ddl(Some(t), Some(without_x));
    assert_eq!(
        sql(&plan(Dialect::Postgres, "c", &drop_column, None, Some(&now), true).unwrap()),
        [r#"ALTER TABLE "public"."t" DROP COLUMN "x""#]
    );
    let lite = sql(&plan(Dialect::Sqlite, "c", &drop_column, None, Some(&now), true).unwrap());
    assert!(
        lite.iter().any(|s| s.starts_with("INSERT INTO")),
        "{lite:?}"
    );
}
