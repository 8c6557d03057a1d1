//! An in-memory replica database for unit tests of the router's partition loop: tables of rows (keyed
//! by primary key, or a bag for tables without one), the position row of each (topic, partition), the
//! barrier rows and the dead letters — with the same transaction rules as the real bookkeeping: the position is checked
//! (fence) and written with the rows, all or nothing. It knows nothing of SQL: the router's tests adapt
//! it to their `Replica` trait, translating statements into [`Op`]s (as `ScriptedSlot` is adapted to
//! cdc's change source).
//!
//! Faults on demand: refuse a value (the transaction fails naming the op, nothing is written), lose the
//! connection before or after a commit, or hold transactions in flight until released.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// A position as stored: (commit_lsn, partial_lsn, partial_rows).
pub type Stored = (i64, i64, i64);

/// A row: column name → value as text (`NULL` for null).
pub type Row = BTreeMap<String, String>;

/// One write of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Inserts the row, or updates the columns it carries in the row with the same key (`key`: the key
    /// column names, all among `row`'s).
    Upsert {
        table: String,
        key: Vec<String>,
        row: Vec<(String, String)>,
    },
    /// Adds a row to a table without a key.
    Insert {
        table: String,
        row: Vec<(String, String)>,
    },
    /// Deletes the row with this key (column, value) if there is one.
    DeleteKey {
        table: String,
        key: Vec<(String, String)>,
    },
    /// Deletes one row of a table without a key whose columns hold these values.
    DeleteRow {
        table: String,
        row: Vec<(String, String)>,
    },
    /// Deletes every row.
    DeleteAll { table: String },
}

impl Op {
    fn table(&self) -> &str {
        match self {
            Op::Upsert { table, .. }
            | Op::Insert { table, .. }
            | Op::DeleteKey { table, .. }
            | Op::DeleteRow { table, .. }
            | Op::DeleteAll { table } => table,
        }
    }
}

/// A transaction that records a partition's position with its writes.
#[derive(Debug, Clone)]
pub struct Txn<'a> {
    pub topic: &'a str,
    pub partition: i32,
    /// The position the writer last wrote; the transaction runs only if it is still stored.
    pub before: Stored,
    pub after: Stored,
    /// The Kafka offset recorded with `after` (-1: unknown); not part of the fence.
    pub kafka_offset: i64,
    /// A barrier this partition reached: its key and LSN.
    pub arrival: Option<(&'a str, i64)>,
    /// Events set aside that the position moves past; one already recorded is left as it is.
    pub dead_letters: Vec<DeadLetter>,
    pub ops: Vec<Op>,
}

/// An event set aside in the dead-letter topic, as the replica records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its offset in the source partition.
    pub offset: i64,
    pub reason: String,
    /// Where it is in the dead-letter topic.
    pub dlq_partition: i32,
    pub dlq_offset: i64,
    /// `None` while open; `replayed` or `discarded` once resolved.
    pub resolution: Option<String>,
}

/// What a transaction found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// The stored position is already `after`: nothing done.
    AlreadyApplied,
    /// The stored position is neither `before` nor `after`: nothing done.
    Moved(Stored),
}

/// Why a transaction failed; nothing of it was written unless said otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The op at this index writes a refused value.
    Refused { op: usize, message: String },
    /// The connection was lost (the commit may have happened: see [`Fault`]).
    Lost,
}

/// A fault for the next transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The connection is lost before the commit: nothing written.
    BeforeCommit,
    /// The commit happens, then the connection is lost: the answer never arrives.
    AfterCommit,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Table {
    keyed: BTreeMap<Vec<String>, Row>,
    bag: Vec<Row>,
    columns: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct State {
    tables: BTreeMap<String, Table>,
    positions: BTreeMap<(String, i32), Stored>,
    kafka_offsets: BTreeMap<(String, i32), i64>,
    /// (topic, key, lsn) → partitions that arrived; `-1` once the action ran.
    barriers: BTreeMap<(String, String, i64), BTreeSet<i32>>,
    /// (topic, partition, offset) → the dead letter.
    dead_letters: BTreeMap<(String, i32, i64), DeadLetter>,
    refused: BTreeSet<(String, String, String)>,
    faults: VecDeque<Fault>,
    commits: usize,
    barrier_actions: usize,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    /// False while transactions are held.
    open: watch::Sender<bool>,
    /// Transactions waiting at the gate.
    waiting: watch::Sender<usize>,
}

/// A copy of a [`MemoryReplica`]'s contents ([`MemoryReplica::backup`]).
#[derive(Debug, Clone)]
pub struct Backup {
    tables: BTreeMap<String, Table>,
    positions: BTreeMap<(String, i32), Stored>,
    kafka_offsets: BTreeMap<(String, i32), i64>,
    barriers: BTreeMap<(String, String, i64), BTreeSet<i32>>,
    dead_letters: BTreeMap<(String, i32, i64), DeadLetter>,
}

/// The database. Cloning shares it (several partition tasks, or a restarted router, use one replica).
#[derive(Debug, Clone)]
pub struct MemoryReplica {
    inner: Arc<Inner>,
}

impl Default for MemoryReplica {
    fn default() -> Self {
        MemoryReplica::new()
    }
}

impl MemoryReplica {
    pub fn new() -> Self {
        MemoryReplica {
            inner: Arc::new(Inner {
                state: Mutex::default(),
                open: watch::Sender::new(true),
                waiting: watch::Sender::new(0),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap()
    }

    /// Refuses any write of `value` to `column` of `table`, as a strict replica refuses a value its
    /// column cannot hold.
    pub fn refuse(&self, table: &str, column: &str, value: &str) {
        self.state()
            .refused
            .insert((table.to_owned(), column.to_owned(), value.to_owned()));
    }

    /// Injects a fault into the next transaction (one per call, in order).
    pub fn fail_next(&self, fault: Fault) {
        self.state().faults.push_back(fault);
    }

    /// Holds every transaction before it commits, until [`MemoryReplica::release`].
    pub fn hold(&self) {
        self.inner.open.send_replace(false);
    }

    /// Lets held transactions go on.
    pub fn release(&self) {
        self.inner.open.send_replace(true);
    }

    /// Waits until `n` transactions are held at the gate.
    pub async fn held(&self, n: usize) {
        let mut waiting = self.inner.waiting.subscribe();
        let _ = waiting.wait_for(|w| *w >= n).await;
    }

    /// Runs a transaction: the fence, then every op, the position and the arrival, all or nothing.
    pub async fn apply(&self, txn: Txn<'_>) -> Result<Outcome, Failure> {
        if !*self.inner.open.borrow() {
            self.inner.waiting.send_modify(|w| *w += 1);
            let mut open = self.inner.open.subscribe();
            let _ = open.wait_for(|o| *o).await;
            self.inner.waiting.send_modify(|w| *w -= 1);
        }
        let mut s = self.state();
        let fault = s.faults.pop_front();
        if fault == Some(Fault::BeforeCommit) {
            return Err(Failure::Lost);
        }
        let key = (txn.topic.to_owned(), txn.partition);
        let found = s.positions.get(&key).copied().unwrap_or((0, 0, 0));
        if found != txn.before {
            return Ok(if found == txn.after {
                Outcome::AlreadyApplied
            } else {
                Outcome::Moved(found)
            });
        }
        let tables = s.run(&txn.ops)?;
        s.tables = tables;
        s.kafka_offsets.insert(key.clone(), txn.kafka_offset);
        s.positions.insert(key, txn.after);
        if let Some((barrier, lsn)) = txn.arrival {
            s.barriers
                .entry((txn.topic.to_owned(), barrier.to_owned(), lsn))
                .or_default()
                .insert(txn.partition);
        }
        for letter in txn.dead_letters {
            s.dead_letters
                .entry((txn.topic.to_owned(), txn.partition, letter.offset))
                .or_insert(letter);
        }
        s.commits += 1;
        if fault == Some(Fault::AfterCommit) {
            return Err(Failure::Lost);
        }
        Ok(Outcome::Applied)
    }

    /// Runs ops in a transaction that is rolled back: which one fails.
    pub fn dry_run(&self, ops: &[Op]) -> Result<(), Failure> {
        self.state().run(ops).map(|_| ())
    }

    /// The stored position of a partition ((0, 0, 0) if none).
    pub fn position(&self, topic: &str, partition: i32) -> Stored {
        self.state()
            .positions
            .get(&(topic.to_owned(), partition))
            .copied()
            .unwrap_or((0, 0, 0))
    }

    /// The Kafka offset stored with a partition's position (-1 if none or unknown).
    pub fn kafka_offset(&self, topic: &str, partition: i32) -> i64 {
        self.state()
            .kafka_offsets
            .get(&(topic.to_owned(), partition))
            .copied()
            .unwrap_or(-1)
    }

    /// Overwrites a partition's stored Kafka offset, as a position copied from elsewhere would.
    pub fn set_kafka_offset(&self, topic: &str, partition: i32, offset: i64) {
        self.state()
            .kafka_offsets
            .insert((topic.to_owned(), partition), offset);
    }

    /// A copy of the data and bookkeeping, as a backup of the database would hold them.
    pub fn backup(&self) -> Backup {
        let s = self.state();
        Backup {
            tables: s.tables.clone(),
            positions: s.positions.clone(),
            kafka_offsets: s.kafka_offsets.clone(),
            barriers: s.barriers.clone(),
            dead_letters: s.dead_letters.clone(),
        }
    }

    /// Puts a backup back in place of the current data and bookkeeping.
    pub fn restore(&self, backup: &Backup) {
        let mut s = self.state();
        s.tables = backup.tables.clone();
        s.positions = backup.positions.clone();
        s.kafka_offsets = backup.kafka_offsets.clone();
        s.barriers = backup.barriers.clone();
        s.dead_letters = backup.dead_letters.clone();
    }

    /// The dead letters recorded for a partition, by offset.
    pub fn dead_letters(&self, topic: &str, partition: i32) -> Vec<DeadLetter> {
        self.state()
            .dead_letters
            .iter()
            .filter(|((t, p, _), _)| t == topic && *p == partition)
            .map(|(_, d)| d.clone())
            .collect()
    }

    /// Marks a dead letter resolved and runs `ops`, in one transaction, unless it is not recorded or
    /// already resolved; returns whether it did.
    pub fn resolve(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        resolution: &str,
        ops: &[Op],
    ) -> Result<bool, Failure> {
        let mut s = self.state();
        let key = (topic.to_owned(), partition, offset);
        let open = s
            .dead_letters
            .get(&key)
            .is_some_and(|d| d.resolution.is_none());
        if !open {
            return Ok(false);
        }
        let tables = s.run(ops)?;
        s.tables = tables;
        if let Some(d) = s.dead_letters.get_mut(&key) {
            d.resolution = Some(resolution.to_owned());
        }
        s.commits += 1;
        Ok(true)
    }

    /// How many partitions reached a barrier, and whether its action ran.
    pub fn barrier_state(&self, topic: &str, key: &str, lsn: i64) -> (i64, bool) {
        let s = self.state();
        let Some(arrived) = s.barriers.get(&(topic.to_owned(), key.to_owned(), lsn)) else {
            return (0, false);
        };
        let done = arrived.contains(&-1);
        (arrived.len() as i64 - i64::from(done), done)
    }

    /// Claims a barrier and runs its action in one transaction, unless it is done already.
    pub fn barrier_once(
        &self,
        topic: &str,
        key: &str,
        lsn: i64,
        action: Option<&Op>,
    ) -> Result<bool, Failure> {
        let mut s = self.state();
        let id = (topic.to_owned(), key.to_owned(), lsn);
        if s.barriers.get(&id).is_some_and(|a| a.contains(&-1)) {
            return Ok(false);
        }
        let tables = s.run(action.into_iter().cloned().collect::<Vec<_>>().as_slice())?;
        s.tables = tables;
        s.barriers.entry(id).or_default().insert(-1);
        s.barrier_actions += 1;
        Ok(true)
    }

    /// The columns a table has, or `None` if it was never written.
    pub fn columns(&self, table: &str) -> Option<Vec<String>> {
        self.state()
            .tables
            .get(table)
            .map(|t| t.columns.iter().cloned().collect())
    }

    /// The rows of a table as `col=value` lists in column order, keyed rows in key order, then the
    /// rows of a table without a key in insertion order.
    pub fn rows(&self, table: &str) -> Vec<String> {
        let s = self.state();
        let Some(t) = s.tables.get(table) else {
            return Vec::new();
        };
        t.keyed
            .values()
            .chain(t.bag.iter())
            .map(|row| {
                row.iter()
                    .map(|(c, v)| format!("{c}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    /// Transactions committed (with rows or only a position).
    pub fn commits(&self) -> usize {
        self.state().commits
    }

    /// Barrier actions run.
    pub fn barrier_actions(&self) -> usize {
        self.state().barrier_actions
    }
}

impl State {
    /// The tables after `ops`, or the first op that writes a refused value.
    fn run(&self, ops: &[Op]) -> Result<BTreeMap<String, Table>, Failure> {
        let mut tables = self.tables.clone();
        for (i, op) in ops.iter().enumerate() {
            let name = op.table().to_owned();
            let table = tables.entry(name.clone()).or_default();
            let check = |row: &[(String, String)]| -> Result<(), Failure> {
                for (column, value) in row {
                    if self
                        .refused
                        .contains(&(name.clone(), column.clone(), value.clone()))
                    {
                        return Err(Failure::Refused {
                            op: i,
                            message: format!("value refused for column {column}"),
                        });
                    }
                }
                Ok(())
            };
            match op {
                Op::Upsert { key, row, .. } => {
                    check(row)?;
                    let key_values: Vec<String> = key
                        .iter()
                        .map(|k| {
                            row.iter()
                                .find(|(c, _)| c == k)
                                .map(|(_, v)| v.clone())
                                .unwrap_or_default()
                        })
                        .collect();
                    let stored = table.keyed.entry(key_values).or_default();
                    for (c, v) in row {
                        stored.insert(c.clone(), v.clone());
                        table.columns.insert(c.clone());
                    }
                }
                Op::Insert { row, .. } => {
                    check(row)?;
                    table.columns.extend(row.iter().map(|(c, _)| c.clone()));
                    table.bag.push(row.iter().cloned().collect());
                }
                Op::DeleteKey { key, .. } => {
                    let values: Vec<String> = key.iter().map(|(_, v)| v.clone()).collect();
                    table.keyed.remove(&values);
                }
                Op::DeleteRow { row, .. } => {
                    let matches = |r: &Row| row.iter().all(|(c, v)| r.get(c) == Some(v));
                    if let Some(at) = table.bag.iter().position(matches) {
                        table.bag.remove(at);
                    }
                }
                Op::DeleteAll { .. } => {
                    table.keyed.clear();
                    table.bag.clear();
                }
            }
        }
        Ok(tables)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upsert(id: &str, v: &str) -> Op {
        Op::Upsert {
            table: "public.t".into(),
            key: vec!["id".into()],
            row: vec![("id".into(), id.into()), ("v".into(), v.into())],
        }
    }

    fn txn(before: Stored, after: Stored, ops: Vec<Op>) -> Txn<'static> {
        Txn {
            topic: "t",
            partition: 0,
            before,
            after,
            kafka_offset: -1,
            arrival: None,
            dead_letters: Vec::new(),
            ops,
        }
    }

    #[tokio::test]
    async fn transactions_are_fenced_and_all_or_nothing() {
        let r = MemoryReplica::new();
        r.refuse("public.t", "v", "bad");
        let ok = r.apply(txn((0, 0, 0), (10, 0, 0), vec![upsert("1", "a")]));
        assert_eq!(ok.await, Ok(Outcome::Applied));
        let refused = r.apply(txn(
            (10, 0, 0),
            (20, 0, 0),
            vec![upsert("2", "b"), upsert("3", "bad")],
        ));
        assert!(matches!(refused.await, Err(Failure::Refused { op: 1, .. })));
        assert_eq!(r.rows("public.t"), ["id=1 v=a"]);
        assert_eq!(r.position("t", 0), (10, 0, 0));
        let again = r.apply(txn((0, 0, 0), (10, 0, 0), vec![upsert("1", "x")]));
        assert_eq!(again.await, Ok(Outcome::AlreadyApplied));
        let moved = r.apply(txn((5, 0, 0), (20, 0, 0), vec![]));
        assert_eq!(moved.await, Ok(Outcome::Moved((10, 0, 0))));
        r.fail_next(Fault::AfterCommit);
        let lost = r.apply(txn((10, 0, 0), (20, 0, 0), vec![upsert("1", "b")]));
        assert_eq!(lost.await, Err(Failure::Lost));
        assert_eq!(r.rows("public.t"), ["id=1 v=b"]);
        assert_eq!(r.commits(), 2);
    }

    #[test]
    fn a_barrier_action_runs_once() {
        let r = MemoryReplica::new();
        let all = Op::DeleteAll {
            table: "public.t".into(),
        };
        assert_eq!(r.barrier_state("t", "public.t", 7), (0, false));
        assert_eq!(r.barrier_once("t", "public.t", 7, Some(&all)), Ok(true));
        assert_eq!(r.barrier_once("t", "public.t", 7, Some(&all)), Ok(false));
        assert_eq!(r.barrier_state("t", "public.t", 7), (0, true));
        assert_eq!(r.barrier_actions(), 1);
    }
}
