//! An in-memory Kafka log: topics of partitions of records with offsets, and consumer groups'
//! committed offsets, for unit tests of code that produces or consumes Cascade's change stream without
//! a broker. [`MemoryLog::frames`] reads a partition the way docs/event-format.md tells consumers to
//! (skip re-sent frames, discard cut ones).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use shared::{codec, Change, Lsn};

/// One record of a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// (topic, partition) → its records.
type Partitions = BTreeMap<(String, i32), Vec<Record>>;

/// (group, topic, partition) → the committed offset (the next one to read).
type GroupOffsets = BTreeMap<(String, String, i32), i64>;

/// Topics → partitions → records, and the consumer groups' committed offsets. Cloning shares the log.
#[derive(Debug, Clone, Default)]
pub struct MemoryLog {
    partitions: Arc<Mutex<Partitions>>,
    offsets: Arc<Mutex<GroupOffsets>>,
}

/// A source transaction as one partition holds it once the consumer rules are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub xid: u64,
    pub commit_lsn: Lsn,
    pub changes: Vec<Change>,
}

impl MemoryLog {
    pub fn new() -> Self {
        MemoryLog::default()
    }

    /// Appends a record; returns its offset.
    pub fn append(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: Vec<(String, Vec<u8>)>,
    ) -> i64 {
        let mut parts = self.partitions.lock().unwrap();
        let records = parts.entry((topic.to_owned(), partition)).or_default();
        let offset = records.len() as i64;
        records.push(Record {
            offset,
            key: key.map(<[u8]>::to_vec),
            payload: payload.to_vec(),
            headers,
        });
        offset
    }

    /// The records of one partition.
    pub fn records(&self, topic: &str, partition: i32) -> Vec<Record> {
        let parts = self.partitions.lock().unwrap();
        parts
            .get(&(topic.to_owned(), partition))
            .cloned()
            .unwrap_or_default()
    }

    /// The record at `offset` of a partition, if it exists yet.
    pub fn record(&self, topic: &str, partition: i32, offset: i64) -> Option<Record> {
        let parts = self.partitions.lock().unwrap();
        let records = parts.get(&(topic.to_owned(), partition))?;
        usize::try_from(offset)
            .ok()
            .and_then(|i| records.get(i))
            .cloned()
    }

    /// The offset after the last record of a partition (0 when empty).
    pub fn end(&self, topic: &str, partition: i32) -> i64 {
        let parts = self.partitions.lock().unwrap();
        parts
            .get(&(topic.to_owned(), partition))
            .map_or(0, |r| r.len() as i64)
    }

    /// Commits a consumer group's offset (the next one to read) for a partition.
    pub fn commit(&self, group: &str, topic: &str, partition: i32, offset: i64) {
        self.offsets
            .lock()
            .unwrap()
            .insert((group.to_owned(), topic.to_owned(), partition), offset);
    }

    /// A consumer group's committed offset for a partition, if it committed one.
    pub fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        self.offsets
            .lock()
            .unwrap()
            .get(&(group.to_owned(), topic.to_owned(), partition))
            .copied()
    }

    /// The partitions of a topic that hold records.
    pub fn partitions(&self, topic: &str) -> Vec<i32> {
        let parts = self.partitions.lock().unwrap();
        parts
            .keys()
            .filter(|(t, _)| t == topic)
            .map(|(_, p)| *p)
            .collect()
    }

    /// The complete frames of a partition as an exactly-once consumer applies them: a frame cut by a
    /// new `B` is discarded, a frame whose commit LSN is not above the last applied one is a re-sent
    /// copy and skipped. Panics on a record that is not a change or breaks the framing rules.
    pub fn frames(&self, topic: &str, partition: i32) -> Vec<Frame> {
        let mut frames: Vec<Frame> = Vec::new();
        let mut open: Option<Frame> = None;
        for record in self.records(topic, partition) {
            let change = codec::decode(&record.payload)
                .unwrap_or_else(|e| panic!("{topic}/{partition}@{}: {e}", record.offset));
            match change {
                Change::Begin(txn) => {
                    open = Some(Frame {
                        xid: txn.xid,
                        commit_lsn: txn.lsn,
                        changes: Vec::new(),
                    })
                }
                Change::Commit(txn) => {
                    let frame = open.take().unwrap_or_else(|| {
                        panic!("{topic}/{partition}@{}: C without B", record.offset)
                    });
                    assert_eq!(frame.commit_lsn, txn.lsn, "C does not match its B");
                    if frames
                        .last()
                        .is_none_or(|f| f.commit_lsn < frame.commit_lsn)
                    {
                        frames.push(frame);
                    }
                }
                other => open
                    .as_mut()
                    .unwrap_or_else(|| {
                        panic!(
                            "{topic}/{partition}@{}: change outside a frame",
                            record.offset
                        )
                    })
                    .changes
                    .push(other),
            }
        }
        frames
    }
}
