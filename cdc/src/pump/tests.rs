//! The pump driven by in-memory stand-ins: testkit's scripted slot as the change source and its Kafka
//! log behind a sink that can refuse, stall or lose deliveries. Each test says exactly what the topic
//! ends up holding, read with the consumer rules of docs/event-format.md.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use shared::{Change, Lsn, RowOp, TableName};
use testkit::kafka_log::MemoryLog;
use testkit::slot::{ScriptedSlot, SessionItem, SlotSession};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::capture::wal2json::decode;

const TOPIC: &str = "cascade.main";
const PARTITIONS: i32 = 4;

/// A [`SlotSession`] as a change source. When the script is exhausted it asks the pump to shut down,
/// as SIGTERM would.
struct FakeSource {
    session: SlotSession,
    shutdown: CancellationToken,
    /// Keep the session open when the script is exhausted (a quiet source) instead of shutting down.
    stay_when_idle: bool,
    /// Say nothing for this long before the first line.
    quiet_first: Option<Duration>,
}

impl ChangeSource for FakeSource {
    async fn next(&mut self) -> Result<Option<Captured>, CdcError> {
        if let Some(quiet) = self.quiet_first.take() {
            tokio::time::sleep(quiet).await;
        }
        match self.session.next_item() {
            SessionItem::Line(line) => Ok(Some(Captured::Change {
                change: decode(line.json.as_bytes(), line.at)?,
                at: line.at,
            })),
            SessionItem::Broken => Ok(None),
            SessionItem::Idle => {
                if !self.stay_when_idle {
                    self.shutdown.cancel();
                }
                std::future::pending().await
            }
        }
    }

    async fn confirm(&mut self, status: StandbyStatus) -> Result<(), CdcError> {
        self.session.confirm(status.flushed);
        Ok(())
    }
}

/// A sink over a [`MemoryLog`]: acknowledges at once, holds at most `capacity` unacknowledged
/// messages, and from message number `broken_from` on stores nothing and fails every delivery (a
/// broker gone past the message timeout).
struct FakeSink {
    log: MemoryLog,
    partitions: Vec<i32>,
    acks: VecDeque<Ack>,
    capacity: usize,
    sent: usize,
    broken_from: Option<usize>,
}

impl FakeSink {
    fn new(log: &MemoryLog) -> Self {
        FakeSink {
            log: log.clone(),
            partitions: vec![PARTITIONS],
            acks: VecDeque::new(),
            capacity: usize::MAX,
            sent: 0,
            broken_from: None,
        }
    }
}

impl Sink for FakeSink {
    fn partitions(&self) -> &[i32] {
        &self.partitions
    }

    fn topic(&self, _shard: usize) -> &str {
        TOPIC
    }

    fn send(
        &mut self,
        message: &Outgoing,
        ticket: Ticket,
        _trace: &[(String, String)],
    ) -> Result<(), SendError> {
        if self.acks.len() >= self.capacity {
            return Err(SendError::Full);
        }
        let n = self.sent;
        self.sent += 1;
        let result = if self.broken_from.is_some_and(|from| n >= from) {
            Err(CdcError::Delivery {
                xid: Some(ticket.xid),
                source: KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut),
            })
        } else {
            let headers = vec![(shared::FORMAT_HEADER.to_owned(), b"1".to_vec())];
            self.log.append(
                TOPIC,
                message.dest.partition,
                message.key.as_deref(),
                &message.payload,
                headers,
            );
            Ok(())
        };
        self.acks.push_back(Ack {
            ticket,
            action: message.action,
            shard: message.dest.shard,
            table: message.table.clone(),
            bytes: message.payload.len(),
            latency: Duration::ZERO,
            result,
        });
        Ok(())
    }

    async fn next_ack(&mut self) -> Option<Ack> {
        self.acks.pop_front()
    }

    fn in_flight(&self) -> usize {
        self.acks.len()
    }
}

fn settings() -> PumpSettings {
    PumpSettings {
        max_in_flight: 1000,
        status_interval: Duration::from_millis(5),
        numeric_as_string: false,
    }
}

/// Runs one session of the pump against `slot`: until the script is exhausted (then a graceful
/// shutdown with its drain) or an error, which is returned.
async fn session(
    slot: &ScriptedSlot,
    sink: &mut FakeSink,
    cut_after: Option<usize>,
) -> Result<(), CdcError> {
    let shutdown = CancellationToken::new();
    let mut source = FakeSource {
        session: slot.session(cut_after),
        shutdown: shutdown.clone(),
        stay_when_idle: false,
        quiet_first: None,
    };
    let start = slot.confirmed();
    let transforms = Transforms::none();
    let router = Router::single(PARTITIONS);
    let confirmed = Arc::new(AtomicU64::new(start.0));
    let mut pump = Pump::new(settings(), router, &transforms, sink, start, confirmed);
    pump.run(&mut source, &shutdown).await?;
    pump.drain(&mut source, Duration::from_millis(100)).await
}

fn insert(id: u32) -> String {
    format!(
        r#"{{"action":"I","schema":"s","table":"t","columns":[{{"name":"id","type":"integer","typeoid":23,"value":{id}}},{{"name":"v","type":"numeric(30,10)","typeoid":1700,"value":12345678901234567890.0123456789}}],"pk":[{{"name":"id","type":"integer","typeoid":23}}]}}"#
    )
}

/// Commits `txns` transactions of `rows` inserts each, ids counting from 0; returns their end LSNs.
fn script(slot: &ScriptedSlot, txns: u32, rows: u32) -> Vec<Lsn> {
    (0..txns)
        .map(|t| {
            let lines: Vec<String> = (0..rows).map(|r| insert(t * rows + r)).collect();
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            slot.commit(u64::from(t) + 700, &lines)
        })
        .collect()
}

/// The inserted ids per partition, in the order a consumer applies them.
fn applied_ids(log: &MemoryLog) -> BTreeMap<i32, Vec<u64>> {
    let mut out = BTreeMap::new();
    for p in log.partitions(TOPIC) {
        let ids = log
            .frames(TOPIC, p)
            .into_iter()
            .flat_map(|f| f.changes)
            .map(|c| match c {
                Change::Row(row) => match &row.op {
                    RowOp::Insert { new } => new[0].value.get().parse().unwrap(),
                    other => panic!("unexpected {other:?}"),
                },
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        out.insert(p, ids);
    }
    out
}

/// Every id exactly once overall, each in the partition of its key and in commit order there.
fn assert_exactly_once(log: &MemoryLog, total: u64) {
    let per_partition = applied_ids(log);
    let mut all: Vec<u64> = per_partition.values().flatten().copied().collect();
    for (p, ids) in &per_partition {
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "partition {p} out of order: {ids:?}"
        );
        for id in ids {
            let key = format!("[{id}]");
            assert_eq!(
                shared::routing::partition_for(key.as_bytes(), PARTITIONS),
                *p
            );
        }
    }
    all.sort_unstable();
    assert_eq!(all, (0..total).collect::<Vec<_>>(), "each row exactly once");
}

#[tokio::test]
async fn a_caught_up_pump_confirms_without_waiting_for_the_status_interval() {
    let slot = ScriptedSlot::new();
    let ends = script(&slot, 3, 2);
    let log = MemoryLog::new();
    let mut sink = FakeSink::new(&log);
    let shutdown = CancellationToken::new();
    let mut source = FakeSource {
        session: slot.session(None),
        shutdown: shutdown.clone(),
        stay_when_idle: true,
        // The status timer's first (immediate) tick comes before any change.
        quiet_first: Some(Duration::from_millis(50)),
    };
    let start = slot.confirmed();
    let transforms = Transforms::none();
    let hourly = PumpSettings {
        status_interval: Duration::from_secs(3600),
        ..settings()
    };
    let confirmed = Arc::new(AtomicU64::new(start.0));
    let router = Router::single(PARTITIONS);
    let mut pump = Pump::new(hourly, router, &transforms, &mut sink, start, confirmed);
    let ran = tokio::time::timeout(Duration::from_secs(1), pump.run(&mut source, &shutdown)).await;
    assert!(ran.is_err(), "the pump keeps running on a quiet source");
    assert_eq!(
        slot.confirmed(),
        *ends.last().unwrap(),
        "confirmed once everything was acknowledged, not an hour later"
    );
}

#[tokio::test]
async fn a_clean_run_publishes_every_row_once_framed_and_confirms_the_last_commit() {
    let slot = ScriptedSlot::new();
    let ends = script(&slot, 10, 5);
    let log = MemoryLog::new();
    session(&slot, &mut FakeSink::new(&log), None)
        .await
        .unwrap();
    assert_exactly_once(&log, 50);
    assert_eq!(slot.confirmed(), *ends.last().unwrap());
    // Values travel digit for digit.
    let record = &log.records(TOPIC, log.partitions(TOPIC)[0])[1];
    let text = String::from_utf8(record.payload.clone()).unwrap();
    assert!(text.contains("12345678901234567890.0123456789"), "{text}");
}

#[tokio::test]
async fn a_broker_lost_mid_stream_confirms_only_acknowledged_transactions_and_the_replay_fills_in()
{
    let slot = ScriptedSlot::new();
    let ends = script(&slot, 12, 4);
    let log = MemoryLog::new();
    // Each transaction sends 4 rows plus a B and C per partition it touches: message 23 falls in
    // the middle of the stream, inside a transaction.
    let mut sink = FakeSink::new(&log);
    sink.broken_from = Some(23);
    let error = session(&slot, &mut sink, None).await.unwrap_err();
    assert!(matches!(error, CdcError::Delivery { .. }), "{error}");
    let confirmed = slot.confirmed();
    assert!(
        confirmed < *ends.last().unwrap(),
        "nothing unacknowledged is confirmed"
    );
    // Every confirmed position is the end of a transaction whose messages are all stored.
    let stored: usize = log
        .partitions(TOPIC)
        .iter()
        .map(|p| log.records(TOPIC, *p).len())
        .sum();
    assert_eq!(stored, 23);
    for c in slot.confirms() {
        assert!(
            c == Lsn::ZERO || ends.contains(&c),
            "confirmed {c}, not a transaction end"
        );
    }
    // The restarted session re-sends everything after the confirmed position.
    session(&slot, &mut FakeSink::new(&log), None)
        .await
        .unwrap();
    assert_exactly_once(&log, 48);
    assert_eq!(slot.confirmed(), *ends.last().unwrap());
}

#[tokio::test]
async fn a_connection_cut_inside_a_transaction_leaves_a_cut_frame_that_the_replay_completes() {
    let slot = ScriptedSlot::new();
    script(&slot, 5, 6);
    let log = MemoryLog::new();
    // 8 lines per transaction (B, 6 rows, C): 11 lines end inside the second transaction.
    let error = session(&slot, &mut FakeSink::new(&log), Some(11))
        .await
        .unwrap_err();
    assert!(matches!(error, CdcError::StreamEnded), "{error}");
    // A partition holds a B with rows and no C: the cut frame.
    let cut = log.partitions(TOPIC).into_iter().any(|p| {
        let records = log.records(TOPIC, p);
        let last = shared::codec::decode(&records.last().unwrap().payload).unwrap();
        !matches!(last, Change::Commit(_))
    });
    assert!(cut, "the cut left an unfinished frame");
    session(&slot, &mut FakeSink::new(&log), None)
        .await
        .unwrap();
    assert_exactly_once(&log, 30);
}

#[tokio::test]
async fn a_full_sink_is_waited_for_and_loses_nothing() {
    let slot = ScriptedSlot::new();
    script(&slot, 20, 3);
    let log = MemoryLog::new();
    let mut sink = FakeSink::new(&log);
    sink.capacity = 2;
    session(&slot, &mut sink, None).await.unwrap();
    assert_exactly_once(&log, 60);
}

#[tokio::test]
async fn a_truncate_is_framed_into_every_partition() {
    let slot = ScriptedSlot::new();
    let truncate = r#"{"action":"T","schema":"s","table":"t"}"#;
    let row = insert(1);
    slot.commit(900, &[row.as_str(), truncate]);
    let log = MemoryLog::new();
    session(&slot, &mut FakeSink::new(&log), None)
        .await
        .unwrap();
    for p in 0..PARTITIONS {
        let frames = log.frames(TOPIC, p);
        assert_eq!(frames.len(), 1, "partition {p}");
        assert!(matches!(
            frames[0].changes.last(),
            Some(Change::Truncate(_))
        ));
    }
}

#[tokio::test]
async fn a_schema_change_message_becomes_an_s_in_every_partition_and_the_bookkeeping_stays_home() {
    let slot = ScriptedSlot::new();
    let content = r#"{"command":"ALTER TABLE","recopy":false,"before":{"schema":"public","table":"t","columns":[{"attnum":1,"name":"id","type":"integer","typeoid":23,"not_null":true}],"pk":["id"],"indexes":[]},"after":{"schema":"public","table":"t","columns":[{"attnum":1,"name":"id","type":"integer","typeoid":23,"not_null":true},{"attnum":2,"name":"n","type":"numeric(10,2)","typeoid":1700,"not_null":false,"fill":"1.50"}],"pk":["id"],"indexes":[]}}"#;
    let message = serde_json::json!({
        "action": "M", "transactional": true, "prefix": "cascade.ddl", "content": content
    })
    .to_string();
    let defs = r#"{"action":"I","schema":"cascade","table":"table_defs","columns":[{"name":"relid","type":"oid","typeoid":26,"value":1}]}"#;
    let unsupported = serde_json::json!({
        "action": "M", "transactional": true, "prefix": "cascade.ddl",
        "content": r#"{"command":"ALTER TYPE","unsupported":"public.mood"}"#
    })
    .to_string();
    slot.commit(900, &[message.as_str(), defs, unsupported.as_str()]);
    let log = MemoryLog::new();
    session(&slot, &mut FakeSink::new(&log), None)
        .await
        .unwrap();
    for p in 0..PARTITIONS {
        let frames = log.frames(TOPIC, p);
        assert_eq!(frames.len(), 1, "partition {p}");
        let changes = &frames[0].changes;
        assert_eq!(changes.len(), 1, "only the S, partition {p}: {changes:?}");
        let Change::Schema(s) = &changes[0] else {
            panic!("not an S: {changes:?}")
        };
        assert_eq!(s.table, TableName::new("public", "t"));
        assert_eq!(s.partitions, Some(PARTITIONS as u32));
        let fill = s.ddl.after.as_ref().unwrap().columns[1].fill.as_ref();
        assert_eq!(fill.map(|f| f.get()), Some("1.50"), "printed like wal2json");
    }
}
