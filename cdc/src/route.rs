//! Where each change goes: topic, Kafka key and partition. Every published row change and truncate
//! passes through [`Router`], the one place that knows the rules (shard routing builds on it). Pure.

use shared::routing::{encode_key, partition_for};
use shared::shards::{Placement, ShardMap};
use shared::{Action, Column, Lsn, RowChange, RowOp, TableName};

use crate::error::CdcError;

/// A partition of a shard's topic (the topic is `<prefix>.<shard>`; `shard` indexes the shard list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dest {
    pub shard: usize,
    pub partition: i32,
}

/// A row change on its way to one or more partitions (several for a broadcast table) under one key.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutedRow {
    pub row: RowChange,
    /// The canonical key (see [`encode_key`]).
    pub key: Vec<u8>,
    pub dests: Vec<Dest>,
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

    fn placement(&self, table: &TableName, lsn: Lsn) -> Result<Placement, CdcError> {
        self.map
            .placement_of(&table.schema, &table.name)
            .map_err(|e| CdcError::Routing {
                lsn,
                reason: e.to_string(),
            })
    }

    /// Routes one row change.
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
    pub fn route(&self, row: RowChange) -> Result<Vec<RoutedRow>, CdcError> {
        let lsn = row.origin.lsn.unwrap_or(Lsn::ZERO);
        let placement = self.placement(&row.table, lsn)?;
        let RowChange {
            origin,
            table,
            op,
            pk,
        } = row;
        let at = Placing {
            router: self,
            table: &table,
            pk: &pk,
            action: match op {
                RowOp::Insert { .. } => Action::Insert,
                RowOp::Update { .. } => Action::Update,
                RowOp::Delete { .. } => Action::Delete,
            },
            placement: &placement,
            lsn,
        };
        let (place, op, moved) = match op {
            RowOp::Update {
                new,
                old: Some(old),
            } => {
                let (new_place, old_place) = (at.place(&new)?, at.place(&old)?);
                if new_place == old_place {
                    let op = RowOp::Update {
                        new,
                        old: Some(old),
                    };
                    (new_place, op, None)
                } else {
                    // Without a primary key there is nothing to upsert by: the new row is an insert.
                    let op = if pk.is_empty() {
                        RowOp::Insert { new }
                    } else {
                        RowOp::Update { new, old: None }
                    };
                    (new_place, op, Some((old_place, RowOp::Delete { old })))
                }
            }
            RowOp::Insert { new } => (at.place(&new)?, RowOp::Insert { new }, None),
            RowOp::Update { new, old: None } => {
                (at.place(&new)?, RowOp::Update { new, old: None }, None)
            }
            RowOp::Delete { old } => (at.place(&old)?, RowOp::Delete { old }, None),
        };
        let mut out = Vec::with_capacity(2);
        if let Some((old_place, delete)) = moved {
            let delete = RowChange {
                origin: origin.clone(),
                table: table.clone(),
                op: delete,
                pk: pk.clone(),
            };
            out.push(self.spread(old_place, delete));
        }
        let row = RowChange {
            origin,
            table,
            op,
            pk,
        };
        out.push(self.spread(place, row));
        Ok(out)
    }

    /// Re-derives the key (and so each destination's partition) from the row's values as they are
    /// now: after the transform stage rewrote them, so no raw value of a transformed column rides in
    /// the Kafka key. The shards stay those chosen from the original values.
    pub fn rekey(&self, routed: &mut RoutedRow) -> Result<(), CdcError> {
        let row = &routed.row;
        let lsn = row.origin.lsn.unwrap_or(Lsn::ZERO);
        let placement = self.placement(&row.table, lsn)?;
        let at = Placing {
            router: self,
            table: &row.table,
            pk: &row.pk,
            action: row.action(),
            placement: &placement,
            lsn,
        };
        let cols = match &row.op {
            RowOp::Insert { new } | RowOp::Update { new, .. } => new,
            RowOp::Delete { old } => old,
        };
        let key = at.key_of(cols)?;
        for dest in &mut routed.dests {
            dest.partition = partition_for(&key, self.partitions(dest.shard));
        }
        routed.key = key;
        Ok(())
    }

    /// Where a truncate goes: every partition of every shard that can hold the table's rows.
    pub fn route_truncate(&self, table: &TableName, lsn: Lsn) -> Result<Vec<Dest>, CdcError> {
        let shards: Vec<usize> = match self.placement(table, lsn)? {
            Placement::Default(s) => vec![s],
            Placement::ShardKey(_) | Placement::Broadcast => (0..self.shards()).collect(),
        };
        Ok(shards
            .into_iter()
            .flat_map(|shard| {
                (0..self.partitions(shard)).map(move |partition| Dest { shard, partition })
            })
            .collect())
    }

    fn spread(&self, (target, key): (Target, Vec<u8>), row: RowChange) -> RoutedRow {
        let dest = |shard| Dest {
            shard,
            partition: partition_for(&key, self.partitions(shard)),
        };
        let dests = match target {
            Target::One(s) => vec![dest(s)],
            Target::All => (0..self.shards()).map(dest).collect(),
        };
        RoutedRow { row, key, dests }
    }
}

/// What placing one row needs to know.
struct Placing<'a> {
    router: &'a Router,
    table: &'a TableName,
    pk: &'a [shared::PkColumn],
    action: Action,
    placement: &'a Placement,
    lsn: Lsn,
}

impl Placing<'_> {
    /// The shard-key column's value in `cols`.
    fn shard_key<'c>(&self, column: &str, cols: &'c [Column]) -> Result<&'c Column, CdcError> {
        cols.iter().find(|c| c.name == column).ok_or_else(|| {
            let table = self.table;
            CdcError::Routing {
                lsn: self.lsn,
                reason: format!(
                    "the {} on {table} does not carry its shard key {column:?}: make {column:?} part of the primary key, or run ALTER TABLE {table} REPLICA IDENTITY FULL so deletes and updates carry it",
                    self.action.as_str()
                ),
            }
        })
    }

    /// The Kafka key of a row given by `cols`: its shard-key value for a sharded table, else its key.
    fn key_of(&self, cols: &[Column]) -> Result<Vec<u8>, CdcError> {
        match self.placement {
            Placement::ShardKey(column) => Ok(encode_key([self.shard_key(column, cols)?])),
            Placement::Broadcast | Placement::Default(_) => self.key(cols),
        }
    }

    /// The target and key of a row given by `cols` (new values or old identity).
    fn place(&self, cols: &[Column]) -> Result<(Target, Vec<u8>), CdcError> {
        match self.placement {
            Placement::ShardKey(column) => {
                let table = self.table.to_string();
                let value = self.shard_key(column, cols)?;
                let shard = self
                    .router
                    .map
                    .shard_of(&table, column, &value.value)
                    .map_err(|e| CdcError::Routing {
                        lsn: self.lsn,
                        reason: e.to_string(),
                    })?;
                Ok((Target::One(shard), encode_key([value])))
            }
            Placement::Broadcast => Ok((Target::All, self.key(cols)?)),
            Placement::Default(shard) => Ok((Target::One(*shard), self.key(cols)?)),
        }
    }

    /// The key of a row from `cols`: its primary-key values, or all values without a primary key.
    fn key(&self, cols: &[Column]) -> Result<Vec<u8>, CdcError> {
        if self.pk.is_empty() {
            return Ok(encode_key(cols));
        }
        let mut values: Vec<&Column> = Vec::with_capacity(self.pk.len());
        for k in self.pk {
            let col = cols
                .iter()
                .find(|c| c.name == k.name)
                .ok_or_else(|| CdcError::Decode {
                    lsn: self.lsn,
                    reason: format!(
                        "{} on {} lacks primary-key column {:?}",
                        self.action.as_str(),
                        self.table,
                        k.name
                    ),
                })?;
            values.push(col);
        }
        Ok(encode_key(values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One routed message: a row change at one partition.
    #[derive(Debug)]
    struct Out {
        action: Action,
        shard: usize,
        partition: i32,
        key: Vec<u8>,
        row: RowChange,
    }

    fn ev(json: &str) -> RowChange {
        match shared::codec::decode(json.as_bytes()).unwrap() {
            shared::Change::Row(row) => row,
            other => panic!("not a row change: {other:?}"),
        }
    }

    trait RouteFlat {
        fn flat(&self, row: RowChange) -> Result<Vec<Out>, CdcError>;
    }

    impl RouteFlat for Router {
        fn flat(&self, row: RowChange) -> Result<Vec<Out>, CdcError> {
            Ok(self
                .route(row)?
                .into_iter()
                .flat_map(|r| {
                    r.dests
                        .iter()
                        .map(move |d| Out {
                            action: r.row.action(),
                            shard: d.shard,
                            partition: d.partition,
                            key: r.key.clone(),
                            row: r.row.clone(),
                        })
                        .collect::<Vec<_>>()
                })
                .collect())
        }
    }

    fn truncate(router: &Router, table: &str) -> Vec<Dest> {
        router
            .route_truncate(&TableName::new("s", table), Lsn(1))
            .unwrap()
    }

    const PK: &str = r#""pk":[{"name":"a","type":"integer"},{"name":"b","type":"text"}]"#;

    #[test]
    fn insert_is_keyed_by_primary_key_in_pk_order() {
        let e = ev(&format!(
            r#"{{"action":"I","schema":"s","table":"t","columns":[{{"name":"b","type":"text","value":"x"}},{{"name":"a","type":"integer","value":7}},{{"name":"c","type":"text","value":"y"}}],{PK}}}"#
        ));
        let r = Router::single(8).flat(e).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(Some(r[0].key.as_slice()), Some(&br#"[7,"x"]"#[..]));
        assert_eq!(r[0].partition, partition_for(br#"[7,"x"]"#, 8));
    }

    #[test]
    fn update_changing_the_key_becomes_delete_then_upsert() {
        let e = ev(
            r#"{"action":"U","schema":"s","table":"t","columns":[{"name":"id","type":"integer","value":3},{"name":"v","type":"text","value":"a"}],"identity":[{"name":"id","type":"integer","value":1}],"pk":[{"name":"id","type":"integer"}]}"#,
        );
        let r = Router::single(8).flat(e).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].action, Action::Delete);
        assert_eq!(Some(r[0].key.as_slice()), Some(&b"[1]"[..]));
        assert!(r[0].row.new_values().is_none());
        assert_eq!(r[1].action, Action::Update);
        assert_eq!(Some(r[1].key.as_slice()), Some(&b"[3]"[..]));
        assert!(r[1].row.old_values().is_none());
    }

    #[test]
    fn update_keeping_the_key_stays_one_event() {
        // REPLICA IDENTITY FULL: identity has every column, but the key did not change.
        let e = ev(
            r#"{"action":"U","schema":"s","table":"t","columns":[{"name":"id","type":"integer","value":1},{"name":"v","type":"text","value":"b"}],"identity":[{"name":"id","type":"integer","value":1},{"name":"v","type":"text","value":"a"}],"pk":[{"name":"id","type":"integer"}]}"#,
        );
        let r = Router::single(8).flat(e).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].action, Action::Update);
    }

    #[test]
    fn delete_uses_identity_and_truncate_goes_everywhere() {
        let d = ev(
            r#"{"action":"D","schema":"s","table":"t","identity":[{"name":"id","type":"integer","value":5}],"pk":[{"name":"id","type":"integer"}]}"#,
        );
        assert_eq!(Router::single(4).flat(d).unwrap()[0].key, b"[5]");
        let parts: Vec<i32> = truncate(&Router::single(4), "t")
            .iter()
            .map(|d| d.partition)
            .collect();
        assert_eq!(parts, vec![0, 1, 2, 3]);
    }

    #[test]
    fn table_without_primary_key_is_keyed_by_the_whole_row() {
        let e = ev(
            r#"{"action":"I","schema":"s","table":"t","columns":[{"name":"a","type":"integer","value":1},{"name":"b","type":"text","value":null}]}"#,
        );
        assert_eq!(Router::single(8).flat(e).unwrap()[0].key, b"[1,null]");
    }

    #[test]
    fn update_of_a_table_without_primary_key_becomes_delete_then_insert() {
        let e = ev(
            r#"{"action":"U","schema":"s","table":"t","columns":[{"name":"a","type":"integer","value":2}],"identity":[{"name":"a","type":"integer","value":1}]}"#,
        );
        let r = Router::single(8).flat(e).unwrap();
        let actions: Vec<Action> = r.iter().map(|r| r.action).collect();
        assert_eq!(actions, vec![Action::Delete, Action::Insert]);
        assert_eq!(Some(r[0].key.as_slice()), Some(&b"[1]"[..]));
        assert!(r[1].row.old_values().is_none());
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
            .flat(ev(r#"{"action":"I","schema":"s","table":"users","columns":[{"name":"id","type":"integer","value":7},{"name":"org_id","type":"integer","value":2}],"pk":[{"name":"id","type":"integer"}]}"#))
            .unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].shard, 1);
        assert_eq!(Some(r[0].key.as_slice()), Some(&b"[2]"[..]));
        assert_eq!(r[0].partition, partition_for(b"[2]", 4));
    }

    #[test]
    fn broadcast_rows_and_truncates_reach_every_shard() {
        let router = two_shards();
        let r = router
            .flat(ev(r#"{"action":"I","schema":"s","table":"plans","columns":[{"name":"id","type":"integer","value":1}],"pk":[{"name":"id","type":"integer"}]}"#))
            .unwrap();
        assert_eq!(r.iter().map(|r| r.shard).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(truncate(&router, "users").len(), 8);
        // A table not in the file goes to the default shard only.
        let t = truncate(&router, "other");
        assert!(t.iter().all(|d| d.shard == 0) && t.len() == 4);
    }

    #[test]
    fn a_tenant_moving_shards_is_deleted_on_the_old_and_upserted_on_the_new() {
        let r = two_shards()
            .flat(ev(r#"{"action":"U","schema":"s","table":"users","columns":[{"name":"id","type":"integer","value":7},{"name":"org_id","type":"integer","value":2}],"identity":[{"name":"id","type":"integer","value":7},{"name":"org_id","type":"integer","value":1}],"pk":[{"name":"id","type":"integer"}]}"#))
            .unwrap();
        let got: Vec<(Action, usize)> = r.iter().map(|r| (r.action, r.shard)).collect();
        assert_eq!(got, vec![(Action::Delete, 0), (Action::Update, 1)]);
    }

    #[test]
    fn a_delete_without_its_shard_key_names_the_fix() {
        let e = two_shards()
            .flat(ev(r#"{"action":"D","schema":"s","table":"users","identity":[{"name":"id","type":"integer","value":7}],"pk":[{"name":"id","type":"integer"}]}"#))
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
            .flat(e)
            .unwrap_err()
            .to_string()
            .contains("lacks primary-key column"));
    }
}
