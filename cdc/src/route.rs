//! Where each change goes: topic, Kafka key and partition. Every published event passes through
//! [`Router::route`], the one place that knows the rules (shard routing builds on it).

use serde_json::value::RawValue;
use shared::routing::{encode_key, partition_for};
use shared::shards::{Placement, ShardMap};
use shared::{Action, ChangeEvent, Column, Lsn, PkColumn};

use crate::error::CdcError;

/// An event on its way to one partition of one shard's topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    /// Index into the shard list (the topic is `<prefix>.<shard>`).
    pub shard: usize,
    pub partition: i32,
    /// The canonical key (see [`encode_key`]); `None` for truncates, which go to every partition.
    pub key: Option<Vec<u8>>,
    pub event: ChangeEvent,
}

/// Where one row goes: one shard or every shard, under one Kafka key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    One(usize),
    All,
}

/// Routes row changes to the shards of a [`ShardMap`], each shard's topic having `partitions[shard]`
/// partitions.
#[derive(Debug, Clone)]
pub struct Router {
    map: ShardMap,
    partitions: Vec<i32>,
}

impl Router {
    pub fn new(map: ShardMap, partitions: Vec<i32>) -> Self {
        let partitions = partitions.into_iter().map(|p| p.max(1)).collect();
        Router { map, partitions }
    }

    /// One shard (`main`) with `partitions` partitions: the routing without a routing file.
    pub fn single(partitions: i32) -> Self {
        Router::new(ShardMap::single(), vec![partitions])
    }

    pub fn shards(&self) -> usize {
        self.partitions.len()
    }

    pub fn partitions(&self, shard: usize) -> i32 {
        self.partitions.get(shard).copied().unwrap_or(1)
    }

    /// Routes one row change (`I`, `U`, `D`, `T`).
    ///
    /// - The shard: the one of the row's shard-key value for a sharded table, every shard for a
    ///   broadcast table, the default shard for a table not in the routing file.
    /// - The Kafka key: the shard-key value for a sharded table (all rows of a tenant stay in one
    ///   partition, in order, and its transactions whole); otherwise the primary-key values, or all
    ///   column values for a table without a primary key. The partition is Kafka's for that key.
    /// - A `U` whose shard or key changed becomes a `D` under the old key (on the old shard) followed
    ///   by a `U` (an upsert) under the new key, so the order of every key's changes holds. In a table
    ///   without a primary key (keyed by the whole row, `REPLICA IDENTITY FULL`) the second half is an
    ///   `I`.
    /// - `T` goes to every partition of every shard that can hold the table's rows.
    pub fn route(&self, event: ChangeEvent) -> Result<Vec<Routed>, CdcError> {
        let lsn = event.lsn.unwrap_or(Lsn::ZERO);
        let placement = self
            .map
            .placement_of(
                event.schema.as_deref().unwrap_or_default(),
                event.table.as_deref().unwrap_or_default(),
            )
            .map_err(|e| CdcError::Routing {
                lsn,
                reason: e.to_string(),
            })?;
        match event.action {
            Action::Insert => {
                let place = self.place(&event, &placement, event.columns.as_deref(), lsn)?;
                Ok(self.spread(place, event))
            }
            Action::Delete => {
                let place = self.place(&event, &placement, event.identity.as_deref(), lsn)?;
                Ok(self.spread(place, event))
            }
            Action::Update => {
                let new = self.place(&event, &placement, event.columns.as_deref(), lsn)?;
                let old = match event.identity.as_deref() {
                    Some(identity) => Some(self.place(&event, &placement, Some(identity), lsn)?),
                    None => None,
                };
                match old {
                    Some(old) if old != new => {
                        let mut delete = event.clone();
                        delete.action = Action::Delete;
                        delete.columns = None;
                        let mut upsert = event;
                        upsert.identity = None;
                        // Without a primary key there is nothing to upsert by: the new row is an insert.
                        if upsert.pk.as_deref().unwrap_or(&[]).is_empty() {
                            upsert.action = Action::Insert;
                        }
                        let mut out = self.spread(old, delete);
                        out.extend(self.spread(new, upsert));
                        Ok(out)
                    }
                    _ => Ok(self.spread(new, event)),
                }
            }
            Action::Truncate => {
                let shards: Vec<usize> = match placement {
                    Placement::Default(s) => vec![s],
                    Placement::ShardKey(_) | Placement::Broadcast => (0..self.shards()).collect(),
                };
                Ok(shards
                    .into_iter()
                    .flat_map(|shard| {
                        let event = event.clone();
                        (0..self.partitions(shard)).map(move |partition| Routed {
                            shard,
                            partition,
                            key: None,
                            event: event.clone(),
                        })
                    })
                    .collect())
            }
            Action::Begin | Action::Commit | Action::Message => Err(CdcError::Decode {
                lsn,
                reason: format!(
                    "{} is not a row change and cannot be routed",
                    event.action.as_str()
                ),
            }),
        }
    }

    /// The target and key of a row given by `cols` (new values or old identity).
    fn place(
        &self,
        event: &ChangeEvent,
        placement: &Placement,
        cols: Option<&[Column]>,
        lsn: Lsn,
    ) -> Result<(Target, Vec<u8>), CdcError> {
        match placement {
            Placement::ShardKey(column) => {
                let table = event.qualified_table().unwrap_or_default();
                let value = cols
                    .and_then(|cols| cols.iter().find(|c| &c.name == column))
                    .ok_or_else(|| CdcError::Routing {
                        lsn,
                        reason: format!(
                            "the {} on {table} does not carry its shard key {column:?}: make {column:?} part of the primary key, or run ALTER TABLE {table} REPLICA IDENTITY FULL so deletes and updates carry it",
                            event.action.as_str()
                        ),
                    })?;
                let shard = self
                    .map
                    .shard_of(&table, column, &value.value)
                    .map_err(|e| CdcError::Routing {
                        lsn,
                        reason: e.to_string(),
                    })?;
                Ok((Target::One(shard), encode_key([&*value.value])))
            }
            Placement::Broadcast => Ok((Target::All, row_key(event, cols, lsn)?)),
            Placement::Default(shard) => Ok((Target::One(*shard), row_key(event, cols, lsn)?)),
        }
    }

    fn spread(&self, (target, key): (Target, Vec<u8>), event: ChangeEvent) -> Vec<Routed> {
        let shards: Vec<usize> = match target {
            Target::One(s) => vec![s],
            Target::All => (0..self.shards()).collect(),
        };
        let mut out = Vec::with_capacity(shards.len());
        for shard in shards {
            out.push(Routed {
                shard,
                partition: partition_for(&key, self.partitions(shard)),
                key: Some(key.clone()),
                event: event.clone(),
            });
        }
        out
    }
}

/// The key of a row from `cols` (new values or old identity).
fn row_key(event: &ChangeEvent, cols: Option<&[Column]>, lsn: Lsn) -> Result<Vec<u8>, CdcError> {
    let table = event.qualified_table().unwrap_or_default();
    let cols = cols.ok_or_else(|| CdcError::Decode {
        lsn,
        reason: format!(
            "{} on {table} carries no values to key it by",
            event.action.as_str()
        ),
    })?;
    let pk: &[PkColumn] = event.pk.as_deref().unwrap_or(&[]);
    if pk.is_empty() {
        return Ok(encode_key(cols.iter().map(|c| &*c.value)));
    }
    let mut values: Vec<&RawValue> = Vec::with_capacity(pk.len());
    for k in pk {
        let col = cols
            .iter()
            .find(|c| c.name == k.name)
            .ok_or_else(|| CdcError::Decode {
                lsn,
                reason: format!(
                    "{} on {table} lacks primary-key column {:?}",
                    event.action.as_str(),
                    k.name
                ),
            })?;
        values.push(&col.value);
    }
    Ok(encode_key(values))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(json: &str) -> ChangeEvent {
        ChangeEvent::from_json(json.as_bytes()).unwrap()
    }

    const PK: &str = r#""pk":[{"name":"a","type":"integer"},{"name":"b","type":"text"}]"#;

    #[test]
    fn insert_is_keyed_by_primary_key_in_pk_order() {
        let e = ev(&format!(
            r#"{{"action":"I","schema":"s","table":"t","columns":[{{"name":"b","type":"text","value":"x"}},{{"name":"a","type":"integer","value":7}},{{"name":"c","type":"text","value":"y"}}],{PK}}}"#
        ));
        let r = Router::single(8).route(e).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].key.as_deref(), Some(&br#"[7,"x"]"#[..]));
        assert_eq!(r[0].partition, partition_for(br#"[7,"x"]"#, 8));
    }

    #[test]
    fn update_changing_the_key_becomes_delete_then_upsert() {
        let e = ev(
            r#"{"action":"U","schema":"s","table":"t","columns":[{"name":"id","type":"integer","value":3},{"name":"v","type":"text","value":"a"}],"identity":[{"name":"id","type":"integer","value":1}],"pk":[{"name":"id","type":"integer"}]}"#,
        );
        let r = Router::single(8).route(e).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].event.action, Action::Delete);
        assert_eq!(r[0].key.as_deref(), Some(&b"[1]"[..]));
        assert!(r[0].event.columns.is_none());
        assert_eq!(r[1].event.action, Action::Update);
        assert_eq!(r[1].key.as_deref(), Some(&b"[3]"[..]));
        assert!(r[1].event.identity.is_none());
    }

    #[test]
    fn update_keeping_the_key_stays_one_event() {
        // REPLICA IDENTITY FULL: identity has every column, but the key did not change.
        let e = ev(
            r#"{"action":"U","schema":"s","table":"t","columns":[{"name":"id","type":"integer","value":1},{"name":"v","type":"text","value":"b"}],"identity":[{"name":"id","type":"integer","value":1},{"name":"v","type":"text","value":"a"}],"pk":[{"name":"id","type":"integer"}]}"#,
        );
        let r = Router::single(8).route(e).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].event.action, Action::Update);
    }

    #[test]
    fn delete_uses_identity_and_truncate_goes_everywhere() {
        let d = ev(
            r#"{"action":"D","schema":"s","table":"t","identity":[{"name":"id","type":"integer","value":5}],"pk":[{"name":"id","type":"integer"}]}"#,
        );
        assert_eq!(
            Router::single(4).route(d).unwrap()[0].key.as_deref(),
            Some(&b"[5]"[..])
        );
        let t = ev(r#"{"action":"T","schema":"s","table":"t"}"#);
        let parts: Vec<i32> = Router::single(4)
            .route(t)
            .unwrap()
            .iter()
            .map(|r| r.partition)
            .collect();
        assert_eq!(parts, vec![0, 1, 2, 3]);
    }

    #[test]
    fn table_without_primary_key_is_keyed_by_the_whole_row() {
        let e = ev(
            r#"{"action":"I","schema":"s","table":"t","columns":[{"name":"a","type":"integer","value":1},{"name":"b","type":"text","value":null}]}"#,
        );
        assert_eq!(
            Router::single(8).route(e).unwrap()[0].key.as_deref(),
            Some(&b"[1,null]"[..])
        );
    }

    #[test]
    fn update_of_a_table_without_primary_key_becomes_delete_then_insert() {
        let e = ev(
            r#"{"action":"U","schema":"s","table":"t","columns":[{"name":"a","type":"integer","value":2}],"identity":[{"name":"a","type":"integer","value":1}]}"#,
        );
        let r = Router::single(8).route(e).unwrap();
        let actions: Vec<Action> = r.iter().map(|r| r.event.action).collect();
        assert_eq!(actions, vec![Action::Delete, Action::Insert]);
        assert_eq!(r[0].key.as_deref(), Some(&b"[1]"[..]));
        assert!(r[1].event.identity.is_none());
    }

    fn two_shards() -> Router {
        let map = ShardMap::parse(
            r#"
[[shards]]
name = "a"
[[shards]]
name = "b"
[tables."s.users"]
shard_key = "org_id"
[tables."s.plans"]
broadcast = true
[routing]
rule = "list"
[routing.list]
a = [1]
b = [2]
default = "a"
"#,
        )
        .unwrap();
        Router::new(map, vec![4, 4])
    }

    #[test]
    fn sharded_rows_go_to_their_tenants_shard_keyed_by_the_shard_key() {
        let r = two_shards()
            .route(ev(r#"{"action":"I","schema":"s","table":"users","columns":[{"name":"id","type":"integer","value":7},{"name":"org_id","type":"integer","value":2}],"pk":[{"name":"id","type":"integer"}]}"#))
            .unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].shard, 1);
        assert_eq!(r[0].key.as_deref(), Some(&b"[2]"[..]));
        assert_eq!(r[0].partition, partition_for(b"[2]", 4));
    }

    #[test]
    fn broadcast_rows_and_truncates_reach_every_shard() {
        let router = two_shards();
        let r = router
            .route(ev(r#"{"action":"I","schema":"s","table":"plans","columns":[{"name":"id","type":"integer","value":1}],"pk":[{"name":"id","type":"integer"}]}"#))
            .unwrap();
        assert_eq!(r.iter().map(|r| r.shard).collect::<Vec<_>>(), vec![0, 1]);
        let t = router
            .route(ev(r#"{"action":"T","schema":"s","table":"users"}"#))
            .unwrap();
        assert_eq!(t.len(), 8);
        // A table not in the file goes to the default shard only.
        let t = router
            .route(ev(r#"{"action":"T","schema":"s","table":"other"}"#))
            .unwrap();
        assert!(t.iter().all(|r| r.shard == 0) && t.len() == 4);
    }

    #[test]
    fn a_tenant_moving_shards_is_deleted_on_the_old_and_upserted_on_the_new() {
        let r = two_shards()
            .route(ev(r#"{"action":"U","schema":"s","table":"users","columns":[{"name":"id","type":"integer","value":7},{"name":"org_id","type":"integer","value":2}],"identity":[{"name":"id","type":"integer","value":7},{"name":"org_id","type":"integer","value":1}],"pk":[{"name":"id","type":"integer"}]}"#))
            .unwrap();
        let got: Vec<(Action, usize)> = r.iter().map(|r| (r.event.action, r.shard)).collect();
        assert_eq!(got, vec![(Action::Delete, 0), (Action::Update, 1)]);
    }

    #[test]
    fn a_delete_without_its_shard_key_names_the_fix() {
        let e = two_shards()
            .route(ev(r#"{"action":"D","schema":"s","table":"users","identity":[{"name":"id","type":"integer","value":7}],"pk":[{"name":"id","type":"integer"}]}"#))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("REPLICA IDENTITY FULL") && e.contains("s.users"),
            "{e}"
        );
    }

    #[test]
    fn missing_key_column_is_an_error() {
        let e = ev(
            r#"{"action":"I","schema":"s","table":"t","columns":[{"name":"v","type":"text","value":"x"}],"pk":[{"name":"id","type":"integer"}]}"#,
        );
        assert!(Router::single(8)
            .route(e)
            .unwrap_err()
            .to_string()
            .contains("lacks primary-key column"));
    }
}
