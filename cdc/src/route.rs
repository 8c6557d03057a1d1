//! Where each change goes: topic, Kafka key and partition. Every published event passes through
//! [`Router::route`], the one place that knows the rules (shard routing builds on it).

use serde_json::value::RawValue;
use shared::routing::{encode_key, partition_for};
use shared::{Action, ChangeEvent, Column, Lsn, PkColumn};

use crate::error::CdcError;

/// An event on its way to one partition.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    pub partition: i32,
    /// The canonical key (see [`encode_key`]); `None` for truncates, which go to every partition.
    pub key: Option<Vec<u8>>,
    pub event: ChangeEvent,
}

/// Routes row changes of one topic with `partitions` partitions.
#[derive(Debug, Clone)]
pub struct Router {
    partitions: i32,
}

impl Router {
    pub fn new(partitions: i32) -> Self {
        Router {
            partitions: partitions.max(1),
        }
    }

    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    /// Routes one row change (`I`, `U`, `D`, `T`).
    ///
    /// - `I`/`U`/`D` go to the partition of their key: the primary-key values, or all column values for
    ///   a table without a primary key.
    /// - A `U` whose key changed becomes a `D` under the old key followed by a `U` (an upsert) under the
    ///   new key, each on its own partition, so the order of every key's changes holds. In a table without
    ///   a primary key (keyed by the whole row, `REPLICA IDENTITY FULL`) the second half is an `I`.
    /// - `T` goes to every partition (it affects rows of every key).
    pub fn route(&self, event: ChangeEvent) -> Result<Vec<Routed>, CdcError> {
        let lsn = event.lsn.unwrap_or(Lsn::ZERO);
        match event.action {
            Action::Insert => {
                let key = row_key(&event, event.columns.as_deref(), lsn)?;
                Ok(vec![self.to_key(key, event)])
            }
            Action::Delete => {
                let key = row_key(&event, event.identity.as_deref(), lsn)?;
                Ok(vec![self.to_key(key, event)])
            }
            Action::Update => {
                let new_key = row_key(&event, event.columns.as_deref(), lsn)?;
                let old_key = match event.identity.as_deref() {
                    Some(identity) => Some(row_key(&event, Some(identity), lsn)?),
                    None => None,
                };
                match old_key {
                    Some(old_key) if old_key != new_key => {
                        let mut delete = event.clone();
                        delete.action = Action::Delete;
                        delete.columns = None;
                        let mut upsert = event;
                        upsert.identity = None;
                        // Without a primary key there is nothing to upsert by: the new row is an insert.
                        if upsert.pk.as_deref().unwrap_or(&[]).is_empty() {
                            upsert.action = Action::Insert;
                        }
                        Ok(vec![
                            self.to_key(old_key, delete),
                            self.to_key(new_key, upsert),
                        ])
                    }
                    _ => Ok(vec![self.to_key(new_key, event)]),
                }
            }
            Action::Truncate => Ok((0..self.partitions)
                .map(|partition| Routed {
                    partition,
                    key: None,
                    event: event.clone(),
                })
                .collect()),
            Action::Begin | Action::Commit | Action::Message => Err(CdcError::Decode {
                lsn,
                reason: format!(
                    "{} is not a row change and cannot be routed",
                    event.action.as_str()
                ),
            }),
        }
    }

    fn to_key(&self, key: Vec<u8>, event: ChangeEvent) -> Routed {
        Routed {
            partition: partition_for(&key, self.partitions),
            key: Some(key),
            event,
        }
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
        let r = Router::new(8).route(e).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].key.as_deref(), Some(&br#"[7,"x"]"#[..]));
        assert_eq!(r[0].partition, partition_for(br#"[7,"x"]"#, 8));
    }

    #[test]
    fn update_changing_the_key_becomes_delete_then_upsert() {
        let e = ev(
            r#"{"action":"U","schema":"s","table":"t","columns":[{"name":"id","type":"integer","value":3},{"name":"v","type":"text","value":"a"}],"identity":[{"name":"id","type":"integer","value":1}],"pk":[{"name":"id","type":"integer"}]}"#,
        );
        let r = Router::new(8).route(e).unwrap();
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
        let r = Router::new(8).route(e).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].event.action, Action::Update);
    }

    #[test]
    fn delete_uses_identity_and_truncate_goes_everywhere() {
        let d = ev(
            r#"{"action":"D","schema":"s","table":"t","identity":[{"name":"id","type":"integer","value":5}],"pk":[{"name":"id","type":"integer"}]}"#,
        );
        assert_eq!(
            Router::new(4).route(d).unwrap()[0].key.as_deref(),
            Some(&b"[5]"[..])
        );
        let t = ev(r#"{"action":"T","schema":"s","table":"t"}"#);
        let parts: Vec<i32> = Router::new(4)
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
            Router::new(8).route(e).unwrap()[0].key.as_deref(),
            Some(&b"[1,null]"[..])
        );
    }

    #[test]
    fn update_of_a_table_without_primary_key_becomes_delete_then_insert() {
        let e = ev(
            r#"{"action":"U","schema":"s","table":"t","columns":[{"name":"a","type":"integer","value":2}],"identity":[{"name":"a","type":"integer","value":1}]}"#,
        );
        let r = Router::new(8).route(e).unwrap();
        let actions: Vec<Action> = r.iter().map(|r| r.event.action).collect();
        assert_eq!(actions, vec![Action::Delete, Action::Insert]);
        assert_eq!(r[0].key.as_deref(), Some(&b"[1]"[..]));
        assert!(r[1].event.identity.is_none());
    }

    #[test]
    fn missing_key_column_is_an_error() {
        let e = ev(
            r#"{"action":"I","schema":"s","table":"t","columns":[{"name":"v","type":"text","value":"x"}],"pk":[{"name":"id","type":"integer"}]}"#,
        );
        assert!(Router::new(8)
            .route(e)
            .unwrap_err()
            .to_string()
            .contains("lacks primary-key column"));
    }
}
