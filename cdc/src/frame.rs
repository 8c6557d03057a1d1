//! Framing: turns one source transaction's routed changes into the messages of each partition, each
//! partition's part framed by the transaction's `B` and `C`. Pure.
//!
//! A partition gets a transaction's `B` just before that transaction's first message for it, and a `C`
//! at the commit only if it got the `B`: a partition receives a frame exactly when it receives at least
//! one of the transaction's rows. Rows are passed on as they arrive, so a transaction of a million rows
//! never sits in memory. Each change is encoded once, whatever the number of partitions it goes to.
//! Each partition's `C` carries the number of messages its frame holds (`messages`), so a consumer can
//! tell a whole frame from one that lost a message in between.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use shared::{codec, Action, Change, Lsn, SchemaChange, TableName, Truncate, TxnBoundary};

use crate::error::CdcError;
use crate::route::{Dest, RoutedRow};

/// A message ready for the sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub dest: Dest,
    /// The Kafka key; `None` for `B`, `C` and `T`.
    pub key: Option<Bytes>,
    pub payload: Bytes,
    /// What the message carries, for metrics and error messages (never its values).
    pub action: Action,
    pub table: Option<Arc<str>>,
    /// The change's LSN (for `B`/`C`: the commit record's).
    pub lsn: Lsn,
}

/// The transaction being framed.
#[derive(Debug)]
struct Open {
    txn: TxnBoundary,
    begin: Bytes,
    /// Per shard, per partition: how many of this transaction's messages it got after its `B`
    /// (0: no `B` yet; a `B` is always followed by at least one message).
    sent: Vec<Vec<u64>>,
}

/// Frames transactions over the partitions of every shard's topic.
#[derive(Debug)]
pub struct Framer {
    partitions: Vec<i32>,
    open: Option<Open>,
    /// Table labels, built once per table rather than once per row.
    labels: HashMap<TableName, Arc<str>>,
}

impl Framer {
    /// `partitions[shard]` is the partition count of the shard's topic.
    pub fn new(partitions: Vec<i32>) -> Self {
        Framer {
            partitions,
            open: None,
            labels: HashMap::new(),
        }
    }

    /// The open transaction, if any.
    pub fn open(&self) -> Option<&TxnBoundary> {
        self.open.as_ref().map(|o| &o.txn)
    }

    /// A transaction begins. `at` is where it was read, for the error.
    pub fn begin(&mut self, txn: TxnBoundary, at: Lsn) -> Result<(), CdcError> {
        if self.open.is_some() {
            return Err(framing(at, "B inside an open transaction"));
        }
        let begin = Bytes::from(codec::encode(&Change::Begin(txn.clone())));
        self.open = Some(Open {
            txn,
            begin,
            sent: self
                .partitions
                .iter()
                .map(|&n| vec![0; n.max(1) as usize])
                .collect(),
        });
        Ok(())
    }

    /// The messages of one routed row change: a `B` first for each partition new to the transaction.
    pub fn row(
        &mut self,
        routed: RoutedRow,
        at: Lsn,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), CdcError> {
        let RoutedRow { row, key, dests } = routed;
        let action = row.action();
        let lsn = row.origin.lsn.unwrap_or(at);
        let table = Some(self.label(&row.table));
        let payload = Bytes::from(codec::encode(&Change::Row(row)));
        let key = Some(Bytes::from(key));
        self.emit(&dests, key, payload, action, table, lsn, at, out)
    }

    /// The messages of a truncate, one to each of `dests` (every partition that can hold the table).
    pub fn truncate(
        &mut self,
        truncate: Truncate,
        dests: &[Dest],
        at: Lsn,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), CdcError> {
        let lsn = truncate.origin.lsn.unwrap_or(at);
        let table = truncate.table.clone();
        self.fan_out(
            dests,
            &table,
            Action::Truncate,
            lsn,
            at,
            out,
            |partitions| {
                Change::Truncate(Truncate {
                    partitions,
                    ..truncate.clone()
                })
            },
        )
    }

    /// The messages of a schema change, one to each of `dests`, like a truncate's.
    pub fn schema(
        &mut self,
        change: SchemaChange,
        dests: &[Dest],
        at: Lsn,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), CdcError> {
        let lsn = change.origin.lsn.unwrap_or(at);
        let table = change.table.clone();
        self.fan_out(dests, &table, Action::Schema, lsn, at, out, |partitions| {
            Change::Schema(SchemaChange {
                partitions,
                ..change.clone()
            })
        })
    }

    /// One payload per shard topic, each naming how many of that topic's partitions get it (what
    /// the routers' barrier waits for), sent to each of them.
    #[allow(clippy::too_many_arguments)]
    fn fan_out(
        &mut self,
        dests: &[Dest],
        table: &TableName,
        action: Action,
        lsn: Lsn,
        at: Lsn,
        out: &mut Vec<Outgoing>,
        change: impl Fn(Option<u32>) -> Change,
    ) -> Result<(), CdcError> {
        let label = Some(self.label(table));
        let mut shards: Vec<usize> = dests.iter().map(|d| d.shard).collect();
        shards.sort_unstable();
        shards.dedup();
        for shard in shards {
            let to: Vec<Dest> = dests.iter().filter(|d| d.shard == shard).copied().collect();
            let payload = Bytes::from(codec::encode(&change(u32::try_from(to.len()).ok())));
            self.emit(&to, None, payload, action, label.clone(), lsn, at, out)?;
        }
        Ok(())
    }

    /// The transaction commits: a `C` to every partition that got its `B`, in shard and partition
    /// order, each with the count of messages that partition got. Returns the transaction, closed.
    pub fn commit(
        &mut self,
        txn: TxnBoundary,
        at: Lsn,
        out: &mut Vec<Outgoing>,
    ) -> Result<TxnBoundary, CdcError> {
        let open = self.open.take().ok_or_else(|| framing(at, "C without B"))?;
        let lsn = txn.lsn;
        let mut commit = txn;
        for (shard, parts) in open.sent.iter().enumerate() {
            for (partition, &sent) in parts.iter().enumerate().filter(|(_, sent)| **sent > 0) {
                commit.messages = Some(sent);
                let payload = Bytes::from(codec::encode(&Change::Commit(commit.clone())));
                out.push(Outgoing {
                    dest: Dest {
                        shard,
                        partition: partition as i32,
                    },
                    key: None,
                    payload,
                    action: Action::Commit,
                    table: None,
                    lsn,
                });
            }
        }
        Ok(open.txn)
    }

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        dests: &[Dest],
        key: Option<Bytes>,
        payload: Bytes,
        action: Action,
        table: Option<Arc<str>>,
        lsn: Lsn,
        at: Lsn,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), CdcError> {
        let open = self
            .open
            .as_mut()
            .ok_or_else(|| framing(at, "row change outside a transaction"))?;
        for &dest in dests {
            let sent = open
                .sent
                .get_mut(dest.shard)
                .and_then(|parts| parts.get_mut(dest.partition as usize))
                .ok_or_else(|| {
                    framing(
                        at,
                        "routed to a partition the topic does not have (were partitions added while cdc ran?)",
                    )
                })?;
            if *sent == 0 {
                out.push(Outgoing {
                    dest,
                    key: None,
                    payload: open.begin.clone(),
                    action: Action::Begin,
                    table: None,
                    lsn: open.txn.lsn,
                });
            }
            out.push(Outgoing {
                dest,
                key: key.clone(),
                payload: payload.clone(),
                action,
                table: table.clone(),
                lsn,
            });
            *sent += 1;
        }
        Ok(())
    }

    fn label(&mut self, table: &TableName) -> Arc<str> {
        if let Some(label) = self.labels.get(table) {
            return label.clone();
        }
        let label: Arc<str> = Arc::from(table.to_string());
        self.labels.insert(table.clone(), label.clone());
        label
    }
}

fn framing(at: Lsn, reason: &str) -> CdcError {
    CdcError::Decode {
        lsn: at,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Router;

    fn txn(xid: u64) -> TxnBoundary {
        TxnBoundary {
            xid,
            lsn: Lsn(100 + xid),
            nextlsn: Lsn(200 + xid),
            timestamp: None,
            messages: None,
            snapshot: None,
        }
    }

    fn row(id: u32) -> shared::RowChange {
        let line = format!(
            r#"{{"action":"I","xid":1,"lsn":"0/10","schema":"s","table":"t","columns":[{{"name":"id","type":"integer","value":{id}}}],"pk":[{{"name":"id","type":"integer"}}]}}"#
        );
        match codec::decode(line.as_bytes()).unwrap() {
            Change::Row(row) => row,
            other => panic!("{other:?}"),
        }
    }

    fn summary(out: &[Outgoing]) -> Vec<(i32, Action)> {
        out.iter().map(|o| (o.dest.partition, o.action)).collect()
    }

    #[test]
    fn each_partition_gets_a_frame_only_for_its_rows() {
        let router = Router::single(4);
        let mut framer = Framer::new(vec![4]);
        let mut out = Vec::new();
        framer.begin(txn(1), Lsn(1)).unwrap();
        for id in [1, 2, 1] {
            for routed in router.route(row(id)).unwrap() {
                framer.row(routed, Lsn(1), &mut out).unwrap();
            }
        }
        framer.commit(txn(1), Lsn(1), &mut out).unwrap();
        let p1 = shared::routing::partition_for(b"[1]", 4);
        let p2 = shared::routing::partition_for(b"[2]", 4);
        assert_ne!(p1, p2, "the test needs two partitions");
        use Action::*;
        let mut want = vec![
            (p1, Begin),
            (p1, Insert),
            (p2, Begin),
            (p2, Insert),
            (p1, Insert),
        ];
        let mut commits = vec![(p1, Commit), (p2, Commit)];
        commits.sort_by_key(|(p, _)| *p);
        want.extend(commits);
        assert_eq!(summary(&out), want);
        // One encoding shared by the B messages.
        assert_eq!(out[0].payload, out[2].payload);
        assert_eq!(
            codec::decode(&out[0].payload).unwrap(),
            Change::Begin(txn(1))
        );
        // Each C counts its partition's messages: two rows on p1, one on p2.
        let counted = |p: i32| {
            let c = out
                .iter()
                .find(|o| o.dest.partition == p && o.action == Commit)
                .unwrap();
            match codec::decode(&c.payload).unwrap() {
                Change::Commit(t) => t.messages,
                other => panic!("not a commit: {other:?}"),
            }
        };
        assert_eq!((counted(p1), counted(p2)), (Some(2), Some(1)));
    }

    #[test]
    fn a_truncate_opens_every_partition() {
        let router = Router::single(3);
        let mut framer = Framer::new(vec![3]);
        let mut out = Vec::new();
        framer.begin(txn(2), Lsn(1)).unwrap();
        let t = Truncate {
            origin: Default::default(),
            table: TableName::new("s", "t"),
            partitions: None,
        };
        let dests = router.route_truncate(&t.table, Lsn(1)).unwrap();
        framer.truncate(t, &dests, Lsn(1), &mut out).unwrap();
        framer.commit(txn(2), Lsn(1), &mut out).unwrap();
        assert_eq!(out.len(), 9);
        assert!(out.iter().all(|o| o.key.is_none()));
        // Each T names how many partitions of its topic got it: the routers' barrier waits for them.
        for o in out.iter().filter(|o| o.action == Action::Truncate) {
            match codec::decode(&o.payload).unwrap() {
                Change::Truncate(t) => assert_eq!(t.partitions, Some(3)),
                other => panic!("not a truncate: {other:?}"),
            }
        }
    }

    #[test]
    fn framing_errors_name_the_position() {
        let mut framer = Framer::new(vec![1]);
        let mut out = Vec::new();
        let e = framer.commit(txn(1), Lsn(0x10), &mut out).unwrap_err();
        assert!(e.to_string().contains("0/10") && e.to_string().contains("C without B"));
        let routed = Router::single(1).route(row(1)).unwrap().remove(0);
        let e = framer.row(routed, Lsn(1), &mut out).unwrap_err();
        assert!(e.to_string().contains("outside a transaction"), "{e}");
        framer.begin(txn(1), Lsn(1)).unwrap();
        assert!(framer.begin(txn(2), Lsn(1)).is_err());
        // A partition count that does not match the router's is refused, not dropped.
        let routed = Router::single(8).route(row(7)).unwrap().remove(0);
        if routed.dests[0].partition > 0 {
            assert!(framer.row(routed, Lsn(1), &mut out).is_err());
        }
    }
}
