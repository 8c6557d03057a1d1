#![allow(clippy::unwrap_used)]

use super::*;
use shared::{codec, Change};

const FILE: &str = r#"
[[shards]]
name = "a"
[[shards]]
name = "b"
[tables."public.customers"]
shard_key = "org_id"
[tables."public.customers".transform]
email = "hash"
full_name = "fake-name"
phone = "mask"
ssn = "null"
born = "truncate-date"
notes = "drop"
org_id = "fake-email"
[routing]
rule = "list"
[routing.list]
a = [1]
b = [2]
default = "a"
"#;

fn key() -> Option<TransformKey> {
    Some(TransformKey::new("secret"))
}

fn row(json: &str) -> RowChange {
    match codec::decode(json.as_bytes()).unwrap() {
        Change::Row(row) => row,
        other => panic!("{other:?}"),
    }
}

const CUSTOMER: &str = r#"{"action":"I","lsn":"0/10","schema":"public","table":"customers","columns":[{"name":"id","type":"integer","typeoid":23,"value":7},{"name":"org_id","type":"integer","typeoid":23,"value":2},{"name":"email","type":"character varying(20)","typeoid":1043,"value":"ada@x.org"},{"name":"full_name","type":"text","typeoid":25,"value":"Ada Lovelace"},{"name":"phone","type":"text","typeoid":25,"value":"+44 20 7946 0958"},{"name":"ssn","type":"text","typeoid":25,"value":"078-05-1120"},{"name":"born","type":"date","typeoid":1082,"value":"1815-12-10"},{"name":"notes","type":"text","typeoid":25,"value":"secret notes"},{"name":"plan","type":"text","typeoid":25,"value":"pro"}],"pk":[{"name":"id","type":"integer","typeoid":23}]}"#;

fn router() -> Router {
    Router::new(shared::shards::ShardMap::parse(FILE).unwrap(), vec![4, 4])
}

fn routed(json: &str) -> Vec<RoutedRow> {
    let t = Transforms::parse(FILE, key()).unwrap();
    let router = router();
    let mut out = router.route(row(json)).unwrap();
    for r in &mut out {
        t.apply(r, &router).unwrap();
    }
    out
}

fn value<'a>(row: &'a RowChange, name: &str) -> Option<&'a Column> {
    row.new_values().unwrap().iter().find(|c| c.name == name)
}

#[test]
fn every_rule_rewrites_its_column_and_leaves_the_others() {
    let out = routed(CUSTOMER);
    assert_eq!(out.len(), 1);
    let r = &out[0].row;
    let email = value(r, "email").unwrap();
    let want = rule::Rule::Hash
        .apply("ada@x.org", key().as_ref())
        .unwrap()
        .unwrap();
    assert_eq!(email.value.get(), format!("\"{want}\""));
    assert_eq!(email.type_name, "character varying(64)");
    let name = value(r, "full_name").unwrap().value.get();
    assert!(name != "\"Ada Lovelace\"" && name.contains(' '), "{name}");
    assert_eq!(
        value(r, "phone").unwrap().value.get(),
        "\"************0958\""
    );
    assert_eq!(value(r, "ssn").unwrap().value.get(), "null");
    assert_eq!(value(r, "born").unwrap().value.get(), "\"1815-12-01\"");
    assert!(value(r, "notes").is_none(), "a dropped column never leaves");
    assert_eq!(value(r, "plan").unwrap().value.get(), "\"pro\"");
    assert_eq!(value(r, "id").unwrap().value.get(), "7");
}

#[test]
fn the_shard_comes_from_the_original_value_and_the_key_from_the_transformed_one() {
    let out = routed(CUSTOMER);
    // org_id 2 is listed for shard b.
    assert_eq!(out[0].dests[0].shard, 1);
    let fake = value(&out[0].row, "org_id").unwrap().value.get().to_owned();
    assert!(fake.ends_with("@example.com\""), "{fake}");
    assert_eq!(out[0].key, format!("[{fake}]").into_bytes());
    assert_eq!(
        out[0].dests[0].partition,
        shared::routing::partition_for(&out[0].key, 4)
    );
    let payload = String::from_utf8(codec::encode(&Change::Row(out[0].row.clone()))).unwrap();
    for raw in [
        "ada@x.org",
        "Ada Lovelace",
        "7946",
        "078-05-1120",
        "1815-12-10",
        "secret notes",
    ] {
        assert!(
            !payload.contains(raw) || raw == "7946",
            "{raw} leaked: {payload}"
        );
    }
}

#[test]
fn a_key_changing_update_rewrites_both_halves() {
    let update = r#"{"action":"U","lsn":"0/10","schema":"public","table":"customers","columns":[{"name":"id","type":"integer","value":7},{"name":"org_id","type":"integer","value":1},{"name":"email","type":"text","value":"new@x.org"}],"identity":[{"name":"id","type":"integer","value":7},{"name":"org_id","type":"integer","value":2},{"name":"email","type":"text","value":"old@x.org"}],"pk":[{"name":"id","type":"integer"}]}"#;
    let out = routed(update);
    assert_eq!(out.len(), 2);
    assert_eq!((out[0].dests[0].shard, out[1].dests[0].shard), (1, 0));
    let old = out[0].row.old_values().unwrap();
    assert!(!old.iter().any(|c| c.value.get().contains("old@x.org")));
}

#[test]
fn rules_on_key_columns_must_keep_keys_distinct() {
    let file = "[tables.\"public.t\".transform]\nid = \"mask\"\n";
    let t = Transforms::parse(file, None).unwrap();
    let router = Router::single(4);
    let json = r#"{"action":"I","lsn":"0/10","schema":"public","table":"t","columns":[{"name":"id","type":"integer","value":1234567}],"pk":[{"name":"id","type":"integer"}]}"#;
    let mut r = router.route(row(json)).unwrap().remove(0);
    let e = t.apply(&mut r, &router).unwrap_err().to_string();
    assert!(
        e.contains("public.t.id") && e.contains("primary key"),
        "{e}"
    );
    assert!(!e.contains("1234567"), "{e}");
}

#[test]
fn a_value_a_rule_cannot_take_stops_without_quoting_it() {
    let file = "[tables.\"public.t\".transform]\nd = \"truncate-date\"\n";
    let t = Transforms::parse(file, None).unwrap();
    let router = Router::single(4);
    let json = r#"{"action":"I","lsn":"0/10","schema":"public","table":"t","columns":[{"name":"id","type":"integer","value":1},{"name":"d","type":"text","value":"hunter2"}],"pk":[{"name":"id","type":"integer"}]}"#;
    let mut r = router.route(row(json)).unwrap().remove(0);
    let e = t.apply(&mut r, &router).unwrap_err().to_string();
    assert!(e.contains("truncate-date") && !e.contains("hunter2"), "{e}");
}

#[test]
fn configuration_errors_name_the_field_or_the_variable() {
    let e = Transforms::parse(FILE, None).unwrap_err();
    assert_eq!(e.field, KEY_VARIABLE);
    let e =
        Transforms::parse("[tables.\"public.t\".transform]\nx = \"scramble\"\n", None).unwrap_err();
    assert_eq!(e.field, "tables.\"public.t\".transform.x");
    assert!(e.reason.contains("fake-email"), "{e}");
    // Only unkeyed rules: no key needed.
    assert!(Transforms::parse("[tables.\"public.t\".transform]\nx = \"null\"\n", None).is_ok());
}

#[test]
fn nulls_stay_null_and_types_stay_stable() {
    let file = "[tables.\"public.t\".transform]\nv = \"hash\"\n";
    let t = Transforms::parse(file, key()).unwrap();
    let router = Router::single(4);
    let json = r#"{"action":"I","lsn":"0/10","schema":"public","table":"t","columns":[{"name":"id","type":"integer","value":1},{"name":"v","type":"character varying(5)","value":null}],"pk":[{"name":"id","type":"integer"}]}"#;
    let mut r = router.route(row(json)).unwrap().remove(0);
    t.apply(&mut r, &router).unwrap();
    let v = value(&r.row, "v").unwrap();
    assert_eq!(v.value.get(), "null");
    assert_eq!(v.type_name, "character varying(64)");
}

fn schema_change(after_columns: &str, after_table: &str) -> SchemaChange {
    let json = format!(
        r#"{{"action":"S","lsn":"0/20","schema":"public","table":"{after_table}","ddl":{{"command":"ALTER TABLE","before":{{"schema":"public","table":"customers","columns":[{{"attnum":1,"name":"id","type":"integer","typeoid":23,"not_null":true}},{{"attnum":2,"name":"phone","type":"text","typeoid":25,"not_null":false}},{{"attnum":3,"name":"notes","type":"text","typeoid":25,"not_null":false}}],"pk":["id"],"indexes":[{{"name":"by_notes","columns":["notes"],"unique":false}}]}},"after":{{"schema":"public","table":"{after_table}","columns":{after_columns},"pk":["id"],"indexes":[{{"name":"by_notes","columns":["notes"],"unique":false}},{{"name":"by_phone","columns":["phone"],"unique":false}}]}}}}}}"#
    );
    match codec::decode(json.as_bytes()).unwrap() {
        Change::Schema(s) => s,
        other => panic!("{other:?}"),
    }
}

#[test]
fn schema_changes_show_replicas_the_transformed_shape() {
    let t = Transforms::parse(FILE, key()).unwrap();
    let mut change = schema_change(
        r#"[{"attnum":1,"name":"id","type":"integer","typeoid":23,"not_null":true},{"attnum":2,"name":"phone","type":"text","typeoid":25,"not_null":false},{"attnum":3,"name":"notes","type":"text","typeoid":25,"not_null":false},{"attnum":4,"name":"email","type":"character varying(20)","typeoid":1043,"not_null":false,"fill":"ada@x.org"}]"#,
        "customers",
    );
    t.apply_schema(&mut change).unwrap();
    let after = change.ddl.after.as_ref().unwrap();
    let names: Vec<&str> = after.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["id", "phone", "email"],
        "the dropped column is left out"
    );
    let indexes: Vec<&str> = after.indexes.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(indexes, ["by_phone"], "an index on a dropped column too");
    let email = &after.columns[2];
    assert_eq!(email.type_name, "character varying(64)", "hash's type");
    let fill = email.fill.as_ref().unwrap().get();
    assert!(!fill.contains("ada"), "the fill leaves hashed: {fill}");
    assert_eq!(fill.len(), 66, "{fill}");
    let before = change.ddl.before.as_ref().unwrap();
    assert!(before.columns.iter().all(|c| c.name != "notes"));
}

#[test]
fn renaming_a_column_or_table_with_a_rule_stops_cdc() {
    let t = Transforms::parse(FILE, key()).unwrap();
    let mut renamed = schema_change(
        r#"[{"attnum":1,"name":"id","type":"integer","typeoid":23,"not_null":true},{"attnum":2,"name":"telephone","type":"text","typeoid":25,"not_null":false},{"attnum":3,"name":"notes","type":"text","typeoid":25,"not_null":false}]"#,
        "customers",
    );
    let error = t.apply_schema(&mut renamed).unwrap_err().to_string();
    assert!(
        error.contains("telephone") && error.contains("renamed"),
        "{error}"
    );
    let mut moved = schema_change(
        r#"[{"attnum":1,"name":"id","type":"integer","typeoid":23,"not_null":true},{"attnum":2,"name":"phone","type":"text","typeoid":25,"not_null":false},{"attnum":3,"name":"notes","type":"text","typeoid":25,"not_null":false}]"#,
        "clients",
    );
    let error = t.apply_schema(&mut moved).unwrap_err().to_string();
    assert!(error.contains("public.clients"), "{error}");
}
