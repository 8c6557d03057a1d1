//! The partition loop's seams filled with testkit's in-memory stand-ins: [`Fake`] adapts the
//! in-memory replica to [`Replica`] (statements become its ops, as a PostgreSQL replica would run
//! them), [`MemoryStream`] reads a partition of the in-memory Kafka log and commits offsets to it.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use shared::Lsn;
use testkit::kafka_log::{MemoryLog, Record};
use testkit::memory_replica::{self as mem, MemoryReplica, Op};

use crate::batch::AppliedPosition;
use crate::dead_letter::{DeadLetterQueue, DlqPosition, Letter, Recorded};
use crate::dialect::Dialect;
use crate::error::RouterError;
use crate::plan::{Statement, StatementKind};
use crate::replica::{Outcome, Replica, StatementFailed};
use crate::resume::Bounds;
use crate::stream::{Inbound, PartitionStream};
use crate::types::Bind;

/// The consumer group the tests' streams commit to.
pub(super) const GROUP: &str = "cascade.main.memory";

/// The in-memory replica behind the [`Replica`] trait.
pub(super) struct Fake(pub MemoryReplica);

fn stored(p: &AppliedPosition) -> mem::Stored {
    (
        p.commit_lsn.0 as i64,
        p.partial_lsn.0 as i64,
        p.partial_rows as i64,
    )
}

fn render(bind: &Bind) -> String {
    match bind {
        Bind::Null => "NULL".to_owned(),
        Bind::Int(v) => v.to_string(),
        Bind::Float(v) => v.to_string(),
        Bind::Text(v) => v.clone(),
        Bind::Bytes(v) => v.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// The ops of the statements, and the statement each op came from.
fn ops(statements: &[Statement]) -> (Vec<Op>, Vec<usize>) {
    let mut ops = Vec::new();
    let mut owner = Vec::new();
    for (index, s) in statements.iter().enumerate() {
        let def = &s.def;
        let table = def.name.to_string();
        let name = |i: usize| def.columns[i].name.clone();
        if s.kind == StatementKind::DeleteAll {
            ops.push(Op::DeleteAll { table });
            owner.push(index);
            continue;
        }
        for chunk in s.binds.chunks(s.columns.len().max(1)) {
            let row: Vec<(String, String)> = s
                .columns
                .iter()
                .zip(chunk)
                .map(|(&i, b)| (name(i), render(b)))
                .collect();
            let table = table.clone();
            ops.push(match s.kind {
                StatementKind::Upsert => Op::Upsert {
                    table,
                    key: def.pk.iter().map(|&i| name(i)).collect(),
                    row,
                },
                StatementKind::Insert => Op::Insert { table, row },
                StatementKind::DeleteByKey => Op::DeleteKey { table, key: row },
                StatementKind::DeleteOne | StatementKind::DeleteAll => Op::DeleteRow { table, row },
                StatementKind::Schema | StatementKind::Fill => continue,
            });
            owner.push(index);
        }
    }
    (ops, owner)
}

/// What a refusal looks like to the router: a database error without a transient code.
#[derive(Debug)]
struct Refusal(String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

impl sqlx::error::DatabaseError for Refusal {
    fn message(&self) -> &str {
        &self.0
    }
    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }
    fn kind(&self) -> sqlx::error::ErrorKind {
        sqlx::error::ErrorKind::Other
    }
}

fn lost() -> sqlx::Error {
    sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into())
}

fn failed(failure: mem::Failure, owner: &[usize]) -> StatementFailed {
    match failure {
        mem::Failure::Refused { op, message } => StatementFailed {
            index: owner.get(op).copied(),
            source: sqlx::Error::Database(Box::new(Refusal(message))),
        },
        mem::Failure::Lost => StatementFailed {
            index: None,
            source: lost(),
        },
    }
}

impl Replica for Fake {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn collation(&self) -> &str {
        "utf8mb4_bin"
    }

    async fn run_ddl(&self, _statements: &[String]) -> Result<(), RouterError> {
        // Tables appear with their first row.
        Ok(())
    }

    async fn existing_columns(
        &self,
        schema: Option<&str>,
        name: &str,
    ) -> Result<Option<Vec<String>>, RouterError> {
        Ok(self
            .0
            .columns(&format!("{}.{name}", schema.unwrap_or("public"))))
    }

    async fn table_keys(
        &self,
        _schema: Option<&str>,
        _name: &str,
    ) -> Result<crate::replica::TableKeys, RouterError> {
        Ok(Default::default())
    }

    async fn apply_schema(&self, _statements: &[Statement]) -> Result<(), StatementFailed> {
        // No schema in the in-memory replica: tables appear with their first row.
        Ok(())
    }

    async fn position(&self, topic: &str, partition: i32) -> Result<AppliedPosition, RouterError> {
        let (c, p, r) = self.0.position(topic, partition);
        let k = self.0.kafka_offset(topic, partition);
        Ok(AppliedPosition {
            commit_lsn: Lsn(c as u64),
            partial_lsn: Lsn(p as u64),
            partial_rows: r as u64,
            kafka_offset: Some(k).filter(|k| *k >= 0),
        })
    }

    async fn apply(
        &self,
        statements: &[Statement],
        topic: &str,
        partition: i32,
        before: &AppliedPosition,
        position: &AppliedPosition,
        arrival: Option<(&str, Lsn)>,
        dead_letters: &[Recorded],
    ) -> Result<Outcome, StatementFailed> {
        let (ops, owner) = ops(statements);
        let txn = mem::Txn {
            topic,
            partition,
            before: stored(before),
            after: stored(position),
            kafka_offset: position.kafka_offset.unwrap_or(-1),
            arrival: arrival.map(|(key, lsn)| (key, lsn.0 as i64)),
            dead_letters: dead_letters
                .iter()
                .map(|d| mem::DeadLetter {
                    offset: d.offset,
                    reason: d.reason.as_str().to_owned(),
                    dlq_partition: d.dlq.partition,
                    dlq_offset: d.dlq.offset,
                    resolution: None,
                })
                .collect(),
            ops,
        };
        match self.0.apply(txn).await {
            Ok(mem::Outcome::Applied) => Ok(Outcome::Applied),
            Ok(mem::Outcome::AlreadyApplied) => Ok(Outcome::AlreadyApplied),
            Ok(mem::Outcome::Moved(found)) => Ok(Outcome::Moved(found)),
            Err(failure) => Err(failed(failure, &owner)),
        }
    }

    async fn dry_run(&self, statements: &[Statement]) -> Result<(), StatementFailed> {
        let (ops, owner) = ops(statements);
        self.0.dry_run(&ops).map_err(|f| failed(f, &owner))
    }

    async fn dead_letters(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Vec<(i64, DlqPosition)>, RouterError> {
        Ok(self
            .0
            .dead_letters(topic, partition)
            .into_iter()
            .map(|d| {
                (
                    d.offset,
                    DlqPosition {
                        partition: d.dlq_partition,
                        offset: d.dlq_offset,
                    },
                )
            })
            .collect())
    }

    async fn resolve_dead_letter(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        resolution: &str,
        statements: &[Statement],
    ) -> Result<bool, StatementFailed> {
        let (ops, owner) = ops(statements);
        self.0
            .resolve(topic, partition, offset, resolution, &ops)
            .map_err(|f| failed(f, &owner))
    }

    async fn barrier_state(
        &self,
        topic: &str,
        key: &str,
        lsn: Lsn,
    ) -> Result<(i64, bool), RouterError> {
        Ok(self.0.barrier_state(topic, key, lsn.0 as i64))
    }

    async fn barrier_once(
        &self,
        topic: &str,
        key: &str,
        lsn: Lsn,
        action: Option<&Statement>,
    ) -> Result<bool, RouterError> {
        let action = action.map(|s| ops(std::slice::from_ref(s)).0);
        let op = action.as_ref().and_then(|ops| ops.first());
        self.0
            .barrier_once(topic, key, lsn.0 as i64, op)
            .map_err(|_| RouterError::replica("completing a barrier", lost()))
    }
}

/// One partition of the in-memory log, read from an offset; stored offsets go to [`GROUP`]. Records
/// below `first` are gone (retention): reading one fails as librdkafka does with
/// `auto.offset.reset=error`.
pub(super) struct MemoryStream {
    pub log: MemoryLog,
    pub topic: String,
    pub partition: i32,
    pub next: AtomicI64,
    pub first: Arc<AtomicI64>,
    pub partitions: usize,
    pub paused: Arc<AtomicBool>,
}

impl Inbound for Record {
    fn offset(&self) -> i64 {
        self.offset
    }

    fn payload(&self) -> Option<&[u8]> {
        Some(&self.payload)
    }

    fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }
}

impl PartitionStream for MemoryStream {
    type Message<'a> = Record;

    async fn recv(&mut self) -> Result<Record, KafkaError> {
        loop {
            if !self.paused.load(Ordering::Relaxed) {
                let next = self.next.load(Ordering::Relaxed);
                // Kafka answers a fetch below the first offset or beyond the end with
                // OFFSET_OUT_OF_RANGE, which auto.offset.reset=error turns into this error.
                if next < self.first.load(Ordering::Relaxed)
                    || next > self.log.end(&self.topic, self.partition)
                {
                    return Err(KafkaError::MessageConsumption(
                        RDKafkaErrorCode::AutoOffsetReset,
                    ));
                }
                if let Some(record) = self.log.record(&self.topic, self.partition, next) {
                    self.next.store(next + 1, Ordering::Relaxed);
                    return Ok(record);
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn store_offset(&self, next: i64) -> Result<(), KafkaError> {
        self.log.commit(GROUP, &self.topic, self.partition, next);
        Ok(())
    }

    fn pause(&self) {
        self.paused.store(true, Ordering::Relaxed);
    }

    fn resume(&self) {
        self.paused.store(false, Ordering::Relaxed);
    }

    async fn partition_count(&self) -> Option<usize> {
        Some(self.partitions)
    }

    async fn bounds(&self) -> Result<Bounds, KafkaError> {
        let high = self.log.end(&self.topic, self.partition);
        let low = self.first.load(Ordering::Relaxed).min(high);
        Ok(Bounds { low, high })
    }

    async fn committed(&self) -> Result<Option<i64>, KafkaError> {
        Ok(self.log.committed(GROUP, &self.topic, self.partition))
    }

    async fn seek(&self, offset: i64) -> Result<(), KafkaError> {
        self.next.store(offset, Ordering::Relaxed);
        Ok(())
    }
}

/// The dead-letter topic in testkit's in-memory Kafka log, with the headers the Kafka one writes.
#[derive(Clone)]
pub(super) struct MemoryDlq {
    pub log: MemoryLog,
    pub topic: String,
    /// Sends fail while set (Kafka down).
    pub down: Arc<AtomicBool>,
}

impl MemoryDlq {
    pub(super) fn new(log: &MemoryLog, topic: &str) -> Self {
        MemoryDlq {
            log: log.clone(),
            topic: topic.to_owned(),
            down: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(super) fn dlq(&self) -> String {
        crate::dead_letter::dlq_topic(&self.topic)
    }

    fn header(record: &Record, key: &str) -> Option<String> {
        record
            .headers
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| String::from_utf8(v.clone()).ok())
    }

    /// The dead letters of a source partition: (source offset, reason, error).
    pub(super) fn letters(&self, partition: i32) -> Vec<(i64, String, String)> {
        use crate::dead_letter as d;
        self.log
            .records(&self.dlq(), partition)
            .iter()
            .map(|r| {
                (
                    Self::header(r, d::HEADER_SOURCE_OFFSET)
                        .and_then(|o| o.parse().ok())
                        .unwrap_or(-1),
                    Self::header(r, d::HEADER_REASON).unwrap_or_default(),
                    Self::header(r, d::HEADER_ERROR).unwrap_or_default(),
                )
            })
            .collect()
    }
}

impl DeadLetterQueue for MemoryDlq {
    async fn send(&self, partition: i32, letter: &Letter) -> Result<DlqPosition, RouterError> {
        use crate::dead_letter as d;
        if self.down.load(Ordering::Relaxed) {
            return Err(RouterError::Kafka {
                context: "producing a dead letter".into(),
                source: KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut),
            });
        }
        let headers = vec![
            (
                d::HEADER_ERROR.to_owned(),
                letter.error.clone().into_bytes(),
            ),
            (
                d::HEADER_SOURCE_TOPIC.to_owned(),
                self.topic.clone().into_bytes(),
            ),
            (
                d::HEADER_SOURCE_PARTITION.to_owned(),
                partition.to_string().into_bytes(),
            ),
            (
                d::HEADER_SOURCE_OFFSET.to_owned(),
                letter.offset.to_string().into_bytes(),
            ),
            (
                d::HEADER_CONSUMER_GROUP.to_owned(),
                GROUP.as_bytes().to_vec(),
            ),
            (
                d::HEADER_REASON.to_owned(),
                letter.reason.as_str().as_bytes().to_vec(),
            ),
        ];
        let value = letter.value.clone().unwrap_or_default();
        let offset = self
            .log
            .append(&self.dlq(), partition, None, &value, headers);
        Ok(DlqPosition { partition, offset })
    }

    async fn sent_since(
        &self,
        partition: i32,
        after: Option<DlqPosition>,
    ) -> Result<std::collections::BTreeMap<i64, DlqPosition>, RouterError> {
        let from = after.map_or(0, |a| a.offset + 1);
        Ok(self
            .letters(partition)
            .into_iter()
            .enumerate()
            .filter(|(o, _)| *o as i64 >= from)
            .map(|(o, (source, _, _))| {
                (
                    source,
                    DlqPosition {
                        partition,
                        offset: o as i64,
                    },
                )
            })
            .collect())
    }
}
