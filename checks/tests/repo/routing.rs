//! `main-db/routing.toml` against `main-db/schema.sql`: the file parses as cdc and the routers parse
//! it, and it places every table of the schema the way the demo needs.

use std::collections::BTreeSet;

use serde_json::value::RawValue;
use shared::shards::{Placement, ShardMap};

use crate::files::{read, root};

/// `main-db/schema.sql`, the demo's source schema (the generator embeds the same file).
fn schema() -> String {
    read("main-db/schema.sql")
}

/// `public.<name>` of every `CREATE TABLE` in schema.sql.
fn schema_tables() -> BTreeSet<String> {
    schema()
        .lines()
        .filter_map(|l| l.strip_prefix("CREATE TABLE IF NOT EXISTS "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|name| format!("public.{name}"))
        .collect()
}

fn routing() -> ShardMap {
    let path = root().join("main-db/routing.toml");
    ShardMap::load(&path).unwrap_or_else(|e| panic!("main-db/routing.toml: {e}"))
}

#[test]
fn routing_file_lists_every_table_of_the_schema() {
    let map = routing();
    assert_eq!(map.shards(), ["a", "b"]);
    let tables = schema_tables();
    assert_eq!(tables.len(), 7, "{tables:?}");
    for table in &tables {
        let placement = map.placement(table).unwrap();
        let expected = match table.as_str() {
            "public.plans" | "public.countries" => Placement::Broadcast,
            "public.organizations" => Placement::ShardKey("id".into()),
            _ => Placement::ShardKey("org_id".into()),
        };
        assert_eq!(placement, expected, "{table}");
    }
    let sharded: BTreeSet<&str> = map.sharded_tables().map(|(t, _)| t).collect();
    assert_eq!(sharded.len(), 5);
    assert!(
        sharded.iter().all(|t| tables.contains(*t)),
        "routing.toml names a table schema.sql lacks: {sharded:?}"
    );
}

#[test]
fn tenant_tables_have_full_replica_identity() {
    // Their shard key org_id is not in their primary key: deletes must carry it.
    let schema = schema();
    for table in ["users", "subscriptions", "invoices", "events"] {
        assert!(
            schema.contains(&format!("ALTER TABLE {table} REPLICA IDENTITY FULL;")),
            "{table}"
        );
    }
}

#[test]
fn hash_rule_spreads_organizations_over_both_shards() {
    let map = routing();
    let mut per_shard = [0u32; 2];
    for org_id in 1..=100 {
        let value = RawValue::from_string(org_id.to_string()).unwrap();
        let by_id = map.shard_of("public.organizations", "id", &value).unwrap();
        // A tenant's rows land where its organization does.
        assert_eq!(
            map.shard_of("public.events", "org_id", &value).unwrap(),
            by_id
        );
        per_shard[by_id] += 1;
    }
    assert!(per_shard.iter().all(|n| *n >= 30), "{per_shard:?}");
}
