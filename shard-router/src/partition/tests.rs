//! The partition loop driven by in-memory stand-ins (no services): a partition of testkit's Kafka log
//! as input and testkit's in-memory replica as output. Each test asserts exactly what the replica
//! holds in the end.

mod fakes;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::{Lsn, FORMAT_HEADER, FORMAT_VERSION};
use testkit::kafka_log::MemoryLog;
use testkit::memory_replica::{Fault, MemoryReplica};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{run, PartitionCtx};
use crate::apply::Applier;
use crate::consume::Health;
use crate::error::RouterError;
use crate::resume::{Basis, Bounds, Gap};
use fakes::{Fake, MemoryDlq, MemoryStream, GROUP};

const TOPIC: &str = "cascade.main";

/// Writes what cdc writes: each partition's part of a transaction between its `B` and `C`.
struct Source {
    log: MemoryLog,
}

impl Source {
    fn new() -> Self {
        Source {
            log: MemoryLog::new(),
        }
    }

    fn append(&self, partition: i32, json: &str) {
        let headers = vec![(FORMAT_HEADER.to_owned(), FORMAT_VERSION.as_bytes().to_vec())];
        self.log
            .append(TOPIC, partition, None, json.as_bytes(), headers);
    }

    fn boundary(&self, partition: i32, action: &str, lsn: u64) {
        let (at, next) = (Lsn(lsn), Lsn(lsn + 8));
        self.append(
            partition,
            &format!(r#"{{"action":"{action}","xid":{lsn},"lsn":"{at}","nextlsn":"{next}"}}"#),
        );
    }

    /// A whole transaction committed at `lsn`.
    fn txn(&self, partition: i32, lsn: u64, changes: &[String]) {
        self.cut(partition, lsn, changes);
        self.boundary(partition, "C", lsn);
    }

    /// The start of a transaction whose `C` never came (cdc was cut off).
    fn cut(&self, partition: i32, lsn: u64, changes: &[String]) {
        self.boundary(partition, "B", lsn);
        for change in changes {
            self.append(partition, change);
        }
    }

    fn end(&self, partition: i32) -> i64 {
        self.log.end(TOPIC, partition)
    }
}

/// `public.t` has the primary key `id`.
fn upsert(id: i64, v: &str) -> String {
    format!(
        r#"{{"action":"I","schema":"public","table":"t","columns":[{{"name":"id","type":"integer","typeoid":23,"value":{id}}},{{"name":"v","type":"text","typeoid":25,"value":"{v}"}}],"pk":[{{"name":"id","type":"integer","typeoid":23}}]}}"#
    )
}

fn delete(id: i64) -> String {
    format!(
        r#"{{"action":"D","schema":"public","table":"t","identity":[{{"name":"id","type":"integer","typeoid":23,"value":{id}}}],"pk":[{{"name":"id","type":"integer","typeoid":23}}]}}"#
    )
}

fn truncate(lsn: u64) -> String {
    format!(
        r#"{{"action":"T","lsn":"{}","schema":"public","table":"t"}}"#,
        Lsn(lsn)
    )
}

/// `public.events` has no key: a row applied twice shows twice.
fn event(n: i64) -> String {
    format!(
        r#"{{"action":"I","schema":"public","table":"events","columns":[{{"name":"n","type":"integer","typeoid":23,"value":{n}}}]}}"#
    )
}

fn row(id: i64, v: &str) -> String {
    format!("id={id} v={v}")
}

/// One router process on `replica`.
fn ctx(replica: &MemoryReplica, batch_max_rows: usize) -> PartitionCtx<Fake> {
    PartitionCtx {
        applier: Arc::new(Applier::new(Fake(replica.clone()), TOPIC.to_owned()).unwrap()),
        health: Health::default(),
        batch_max_rows,
        batch_max_bytes: usize::MAX,
        batch_max_wait: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        dead_letters: None,
    }
}

/// One router process on `replica` that sets aside what it cannot apply in `dlq`.
fn dead_letter_ctx(replica: &MemoryReplica, dlq: &MemoryDlq) -> PartitionCtx<Fake, MemoryDlq> {
    let c = ctx(replica, 100);
    PartitionCtx {
        applier: c.applier,
        health: c.health,
        batch_max_rows: c.batch_max_rows,
        batch_max_bytes: c.batch_max_bytes,
        batch_max_wait: c.batch_max_wait,
        max_backoff: c.max_backoff,
        dead_letters: Some(Arc::new(dlq.clone())),
    }
}

struct Task {
    cancel: CancellationToken,
    handle: JoinHandle<Result<(), RouterError>>,
    paused: Arc<AtomicBool>,
    /// The partition's first available offset (retention moves it).
    first: Arc<AtomicI64>,
}

/// Starts a partition task on a stream positioned at `from` (where the consumer group's offset would
/// put it); the task seeks to where the replica's position says before it reads.
fn start<D: crate::dead_letter::DeadLetterQueue>(
    ctx: &PartitionCtx<Fake, D>,
    source: &Source,
    partition: i32,
    from: i64,
    partitions: usize,
) -> Task {
    let cancel = CancellationToken::new();
    let paused = Arc::new(AtomicBool::new(false));
    let first = Arc::new(AtomicI64::new(0));
    let stream = MemoryStream {
        log: source.log.clone(),
        topic: TOPIC.to_owned(),
        partition,
        next: AtomicI64::new(from),
        first: Arc::clone(&first),
        partitions,
        paused: Arc::clone(&paused),
    };
    let handle = tokio::spawn(run(ctx.clone(), partition, stream, cancel.clone()));
    Task {
        cancel,
        handle,
        paused,
        first,
    }
}

impl Task {
    /// Revokes the partition (or shuts down) and waits for the task.
    async fn stop(self) -> Result<(), RouterError> {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.handle)
            .await
            .expect("the partition task did not stop within 5 s")
            .expect("the partition task panicked")
    }
}

/// Waits (at most 5 s) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn committed(source: &Source, partition: i32) -> i64 {
    source
        .log
        .committed(GROUP, TOPIC, partition)
        .unwrap_or_default()
}

fn commit_lsn(replica: &MemoryReplica, partition: i32) -> i64 {
    replica.position(TOPIC, partition).0
}

#[tokio::test]
async fn a_crash_mid_transaction_and_a_restart_from_an_older_offset_end_with_the_same_replica() {
    let source = Source::new();
    source.txn(0, 0x10, &[event(1), event(2)]);
    // cdc is still sending 0x20 when the router crashes.
    source.cut(0, 0x20, &[event(3), event(4), event(5)]);
    let replica = MemoryReplica::new();
    // Batches of 2: 0x20 is applied in chunks, each recording how many of its rows are applied.
    let first = start(&ctx(&replica, 2), &source, 0, 0, 1);
    until("the first chunk of 0x20", || {
        replica.position(TOPIC, 0) == (0x10, 0x20, 2)
    })
    .await;
    first.handle.abort(); // a crash: nothing more is applied or stored
    let _ = first.handle.await;
    assert_eq!(committed(&source, 0), 4, "the offset after 0x10's commit");
    for n in [6, 7] {
        source.append(0, &event(n));
    }
    source.boundary(0, "C", 0x20);
    source.txn(0, 0x30, &[event(8)]);

    // The restarted router reads from the replica's position (mid-transaction: from 0x20's `B`); the
    // recorded row count decides what is skipped.
    let second = start(&ctx(&replica, 2), &source, 0, 0, 1);
    until("0x30", || commit_lsn(&replica, 0) == 0x30).await;
    second.stop().await.unwrap();
    let events: Vec<String> = (1..=8).map(|n| format!("n={n}")).collect();
    assert_eq!(replica.rows("public.events"), events);
    assert_eq!(replica.position(TOPIC, 0), (0x30, 0, 0));
    assert_eq!(committed(&source, 0), source.end(0));

    // Once more from the start (a position written by a router from before Kafka offsets were
    // recorded, and a group offset at 0), with lost connections: nothing changes, nothing is
    // rewritten.
    let commits = replica.commits();
    replica.set_kafka_offset(TOPIC, 0, -1);
    source.log.commit(GROUP, TOPIC, 0, 0);
    replica.fail_next(Fault::BeforeCommit);
    let third = start(&ctx(&replica, 2), &source, 0, 0, 1);
    until("the whole partition read again", || {
        committed(&source, 0) == source.end(0)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    third.stop().await.unwrap();
    assert_eq!(replica.rows("public.events"), events);
    // No row is written again; only the position, to record the Kafka offset once more.
    assert!(replica.commits() > commits);
    assert_eq!(replica.kafka_offset(TOPIC, 0), source.end(0) - 1);

    // A commit whose answer is lost is found applied on retry, not applied twice.
    source.txn(0, 0x40, &[event(9)]);
    replica.fail_next(Fault::AfterCommit);
    let fourth = start(&ctx(&replica, 2), &source, 0, committed(&source, 0), 1);
    until("0x40", || committed(&source, 0) == source.end(0)).await;
    fourth.stop().await.unwrap();
    let mut events = events;
    events.push("n=9".to_owned());
    assert_eq!(replica.rows("public.events"), events);
    assert_eq!(replica.position(TOPIC, 0), (0x40, 0, 0));
}

#[tokio::test]
async fn a_cut_frame_is_dropped_and_its_resent_copy_applied_once() {
    let source = Source::new();
    source.txn(0, 0x10, &[upsert(1, "a")]);
    // B without C, then cdc re-sends the transaction from its B. (The cut copy differs here only so
    // that a row kept from it would show.)
    source.cut(0, 0x20, &[upsert(9, "ghost"), event(1)]);
    source.txn(0, 0x20, &[upsert(2, "b"), event(2)]);
    source.txn(0, 0x30, &[delete(1), upsert(3, "c")]);
    let replica = MemoryReplica::new();
    let task = start(&ctx(&replica, 100), &source, 0, 0, 1);
    until("0x30", || commit_lsn(&replica, 0) == 0x30).await;
    task.stop().await.unwrap();
    assert_eq!(replica.rows("public.t"), [row(2, "b"), row(3, "c")]);
    assert_eq!(replica.rows("public.events"), ["n=2"]);
    assert_eq!(committed(&source, 0), source.end(0));
}

#[tokio::test]
async fn a_refused_value_stops_the_partition_at_it_after_applying_what_came_before() {
    let source = Source::new();
    source.txn(0, 0x10, &[upsert(1, "a")]); // offsets 0-2
    source.txn(0, 0x20, &[upsert(2, "ok"), upsert(3, "bad")]); // 3-6: the refused value at 5
    source.txn(0, 0x30, &[upsert(4, "d")]);
    let replica = MemoryReplica::new();
    replica.refuse("public.t", "v", "bad");
    let task = start(&ctx(&replica, 100), &source, 0, 0, 1);
    let paused = Arc::clone(&task.paused);
    until("the partition to stop", || paused.load(Ordering::Relaxed)).await;
    let error = task.stop().await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot apply the event at topic cascade.main partition 0 offset 5 (table public.t): the replica refused it: value refused for column v"
    );
    assert!(!error.is_retryable());
    assert_eq!(replica.rows("public.t"), [row(1, "a")]);
    assert_eq!(replica.position(TOPIC, 0), (0x10, 0, 0));
    assert_eq!(committed(&source, 0), 3, "the offset after 0x10's commit");
}

#[tokio::test]
async fn a_revocation_waits_for_the_transaction_in_flight_and_the_next_owner_continues_exactly() {
    let source = Source::new();
    source.txn(0, 0x10, &[event(1), event(2), event(3)]);
    source.txn(0, 0x20, &[event(4), event(5)]);
    source.txn(0, 0x30, &[event(6)]);
    let replica = MemoryReplica::new();
    replica.hold();
    // Batches of 2: the first two rows of 0x10 fill one, applied before 0x10's commit is read.
    let first = start(&ctx(&replica, 2), &source, 0, 0, 1);
    tokio::time::timeout(Duration::from_secs(5), replica.held(1))
        .await
        .expect("a transaction in flight");
    first.cancel.cancel(); // the rebalance revokes the partition
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !first.handle.is_finished(),
        "the task must not give the partition up while its transaction is in flight"
    );
    replica.release();
    first.stop().await.unwrap();
    assert_eq!(replica.rows("public.events"), ["n=1", "n=2"]);
    assert_eq!(replica.position(TOPIC, 0), (0, 0x10, 2));
    assert_eq!(
        committed(&source, 0),
        0,
        "no source transaction is complete"
    );

    // Another member gets the partition and starts at the committed offset, mid-transaction.
    let next_owner = start(&ctx(&replica, 2), &source, 0, committed(&source, 0), 1);
    until("0x30", || commit_lsn(&replica, 0) == 0x30).await;
    next_owner.stop().await.unwrap();
    let events: Vec<String> = (1..=6).map(|n| format!("n={n}")).collect();
    assert_eq!(replica.rows("public.events"), events);
    assert_eq!(replica.position(TOPIC, 0), (0x30, 0, 0));
    assert_eq!(committed(&source, 0), source.end(0));
}

#[tokio::test]
async fn a_truncate_waits_for_every_partition_and_empties_the_table_once() {
    let source = Source::new();
    source.txn(0, 0x10, &[upsert(1, "a")]);
    source.txn(1, 0x10, &[upsert(2, "b")]);
    // cdc sends a truncate to every partition.
    source.txn(0, 0x20, &[truncate(0x18)]);
    source.txn(1, 0x20, &[truncate(0x18)]);
    source.txn(0, 0x30, &[upsert(3, "c")]);
    let replica = MemoryReplica::new();
    let ctx = ctx(&replica, 100);
    let p0 = start(&ctx, &source, 0, 0, 2);
    until("partition 0 at the truncate", || {
        replica.barrier_state(TOPIC, "public.t", 0x18) == (1, false)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Partition 1 has not applied its rows before the truncate: partition 0 waits, and applies
    // nothing after it.
    assert_eq!(replica.rows("public.t"), [row(1, "a")]);
    assert_eq!(replica.barrier_actions(), 0);

    let p1 = start(&ctx, &source, 1, 0, 2);
    until("both partitions past the truncate", || {
        commit_lsn(&replica, 0) == 0x30 && commit_lsn(&replica, 1) == 0x20
    })
    .await;
    p0.stop().await.unwrap();
    p1.stop().await.unwrap();
    assert_eq!(replica.rows("public.t"), [row(3, "c")]);
    assert_eq!(replica.barrier_actions(), 1);
    assert_eq!(replica.barrier_state(TOPIC, "public.t", 0x18), (2, true));
}

#[tokio::test]
async fn a_truncate_waits_for_the_partitions_it_names_not_those_added_since() {
    // cdc started with 2 partitions; a third was added to the topic since. cdc (still on 2) sends
    // the truncate to 2 and says so: the barrier must not wait for the third, which never gets it.
    let counted = format!(
        r#"{{"action":"T","lsn":"{}","partitions":2,"schema":"public","table":"t"}}"#,
        Lsn(0x18)
    );
    let source = Source::new();
    source.txn(0, 0x10, &[upsert(1, "a")]);
    source.txn(0, 0x20, std::slice::from_ref(&counted));
    source.txn(1, 0x20, &[counted]);
    source.txn(0, 0x30, &[upsert(3, "c")]);
    let replica = MemoryReplica::new();
    let ctx = ctx(&replica, 100);
    let p0 = start(&ctx, &source, 0, 0, 3);
    let p1 = start(&ctx, &source, 1, 0, 3);
    until("both partitions past the truncate", || {
        commit_lsn(&replica, 0) == 0x30 && commit_lsn(&replica, 1) == 0x20
    })
    .await;
    p0.stop().await.unwrap();
    p1.stop().await.unwrap();
    assert_eq!(replica.rows("public.t"), [row(3, "c")]);
    assert_eq!(replica.barrier_actions(), 1);
}

#[tokio::test]
async fn a_replica_restored_from_a_backup_gets_back_what_it_lost_whatever_the_group_committed() {
    let source = Source::new();
    source.txn(0, 0x10, &[upsert(1, "a")]);
    source.txn(0, 0x20, &[upsert(2, "b"), event(1)]);
    let replica = MemoryReplica::new();
    let ctx = ctx(&replica, 100);
    let task = start(&ctx, &source, 0, 0, 1);
    until("0x20", || commit_lsn(&replica, 0) == 0x20).await;
    task.stop().await.unwrap();
    let backup = replica.backup();
    assert_eq!(replica.kafka_offset(TOPIC, 0), 6, "the offset of 0x20's C");

    source.txn(0, 0x30, &[upsert(3, "c"), delete(1)]);
    source.txn(0, 0x40, &[event(2)]);
    let task = start(&ctx, &source, 0, committed(&source, 0), 1);
    until("0x40", || commit_lsn(&replica, 0) == 0x40).await;
    task.stop().await.unwrap();
    let expected = (replica.rows("public.t"), replica.rows("public.events"));
    assert_eq!(committed(&source, 0), source.end(0));

    // The replica goes back to the backup; the group's committed offset stays at the end.
    replica.restore(&backup);
    let task = start(&ctx, &source, 0, committed(&source, 0), 1);
    until("0x40 again", || commit_lsn(&replica, 0) == 0x40).await;
    task.stop().await.unwrap();
    assert_eq!(
        (replica.rows("public.t"), replica.rows("public.events")),
        expected
    );
    assert_eq!(replica.rows("public.t"), [row(2, "b"), row(3, "c")]);
}

/// Waits until the task stopped its partition, and returns the error it stopped at.
async fn stopped_at(ctx: &PartitionCtx<Fake>, task: Task) -> RouterError {
    let paused = Arc::clone(&task.paused);
    until("the partition to stop", || paused.load(Ordering::Relaxed)).await;
    assert!(
        !ctx.health.ready.get(),
        "/readyz must fail while a partition is stopped"
    );
    task.stop().await.unwrap_err()
}

#[tokio::test]
async fn a_position_beyond_the_end_of_the_partition_stops_it_with_a_gap() {
    let source = Source::new();
    source.txn(0, 0x10, &[upsert(1, "a")]);
    let replica = MemoryReplica::new();
    let ctx = ctx(&replica, 100);
    ctx.health.set_running(true);
    let task = start(&ctx, &source, 0, 0, 1);
    until("0x10", || commit_lsn(&replica, 0) == 0x10).await;
    task.stop().await.unwrap();
    assert!(ctx.health.ready.get());

    // The topic was recreated (or the position came from elsewhere): it holds fewer messages than
    // the replica's position says it applied.
    replica.set_kafka_offset(TOPIC, 0, 999);
    let error = stopped_at(&ctx, start(&ctx, &source, 0, 0, 1)).await;
    assert_eq!(error.kind(), "gap");
    assert!(!error.is_retryable());
    let RouterError::Gap { gap, partition, .. } = &error else {
        panic!("not a gap: {error}");
    };
    assert_eq!(*partition, 0);
    assert_eq!(
        *gap,
        Gap {
            next: 1000,
            basis: Basis::Replica,
            bounds: Bounds { low: 0, high: 3 }
        }
    );
    let text = error.to_string();
    assert!(
        text.starts_with("cannot continue topic cascade.main partition 0 where the replica left off: the replica needs offset 1000 next"),
        "{text}"
    );
    assert!(
        ctx.health.ready.get(),
        "ready again once the partition is revoked"
    );
    assert_eq!(replica.rows("public.t"), [row(1, "a")]);
}

#[tokio::test]
async fn messages_deleted_before_the_replica_applied_them_stop_the_partition() {
    let source = Source::new();
    source.txn(0, 0x10, &[upsert(1, "a")]); // 0-2
    let replica = MemoryReplica::new();
    let ctx = ctx(&replica, 100);
    ctx.health.set_running(true);
    let task = start(&ctx, &source, 0, 0, 1);
    until("0x10", || commit_lsn(&replica, 0) == 0x10).await;
    task.stop().await.unwrap();

    // The router is down longer than the retention: 0x20 is deleted before it comes back.
    source.txn(0, 0x20, &[upsert(2, "b")]); // 3-5
    source.txn(0, 0x30, &[upsert(3, "c")]); // 6-8
    let task = start(&ctx, &source, 0, source.end(0), 1);
    task.first.store(6, Ordering::Relaxed);
    let error = stopped_at(&ctx, task).await;
    let RouterError::Gap { gap, .. } = &error else {
        panic!("not a gap: {error}");
    };
    assert!(gap.deleted());
    assert_eq!((gap.next, gap.bounds.low), (3, 6));
    assert!(error.to_string().contains("messages 3 to 5 were deleted"));
    assert_eq!(
        replica.rows("public.t"),
        [row(1, "a")],
        "nothing after the gap"
    );
}

#[tokio::test]
async fn messages_deleted_while_the_replica_was_down_stop_the_partition_when_it_reads_on() {
    let source = Source::new();
    source.txn(0, 0x10, &[upsert(1, "a")]); // 0-2
    let replica = MemoryReplica::new();
    let ctx = ctx(&replica, 100);
    let task = start(&ctx, &source, 0, 0, 1);
    until("0x10", || commit_lsn(&replica, 0) == 0x10).await;
    replica.hold();
    source.txn(0, 0x20, &[upsert(2, "b")]); // 3-5
    tokio::time::timeout(Duration::from_secs(5), replica.held(1))
        .await
        .expect("0x20's transaction waiting for the replica");
    source.txn(0, 0x30, &[upsert(3, "c")]); // 6-8
    task.first.store(7, Ordering::Relaxed);
    replica.release();
    let error = stopped_at(&ctx, task).await;
    let RouterError::Gap { gap, .. } = &error else {
        panic!("not a gap: {error}");
    };
    assert_eq!(
        *gap,
        Gap {
            next: 6,
            basis: Basis::Reading,
            bounds: Bounds { low: 7, high: 9 }
        }
    );
    assert_eq!(replica.rows("public.t"), [row(1, "a"), row(2, "b")]);
}

#[tokio::test]
async fn with_a_dead_letter_queue_bad_events_are_set_aside_once_and_the_partition_goes_on() {
    let source = Source::new();
    source.txn(0, 0x10, &[upsert(1, "a")]); // 0-2
    source.log.append(TOPIC, 0, None, b"not json", Vec::new()); // 3: no header, not JSON
    source.boundary(0, "C", 0x18); // 4: a commit without its begin
                                   // 5-9: the refused row in the middle of a transaction; the rest of it is applied.
    source.txn(
        0,
        0x20,
        &[upsert(2, "ok"), upsert(3, "bad"), upsert(4, "d")],
    );
    source.txn(0, 0x30, &[upsert(5, "e")]); // 10-12
    let replica = MemoryReplica::new();
    replica.refuse("public.t", "v", "bad");
    let dlq = MemoryDlq::new(&source.log, TOPIC);
    let ctx = dead_letter_ctx(&replica, &dlq);
    ctx.health.set_running(true);
    let task = start(&ctx, &source, 0, 0, 1);
    until("0x30", || commit_lsn(&replica, 0) == 0x30).await;
    assert!(ctx.health.ready.get(), "no partition stopped");
    task.stop().await.unwrap();
    assert_eq!(
        replica.rows("public.t"),
        [row(1, "a"), row(2, "ok"), row(4, "d"), row(5, "e")]
    );
    let letters = dlq.letters(0);
    let summary: Vec<(i64, &str)> = letters.iter().map(|(o, r, _)| (*o, r.as_str())).collect();
    assert_eq!(summary, [(3, "decode"), (4, "framing"), (7, "refused")]);
    assert!(
        letters[2].2.contains("offset 7 (table public.t)"),
        "{}",
        letters[2].2
    );
    let recorded: Vec<i64> = replica
        .dead_letters(TOPIC, 0)
        .iter()
        .map(|d| d.offset)
        .collect();
    assert_eq!(recorded, [3, 4, 7]);
    assert_eq!(committed(&source, 0), source.end(0));
    // The refused row's dead letter holds the row change, which a replay applies after the fix.
    let value = source.log.record(&dlq.dlq(), 0, 2).unwrap().payload;
    let Ok(shared::Change::Row(change)) = shared::codec::decode(&value) else {
        panic!("the refused row's dead letter is not a row change");
    };
    let applier = Applier::new(Fake(replica.clone()), TOPIC.to_owned()).unwrap();
    let row7 = crate::batch::Row { offset: 7, change };
    assert!(matches!(
        applier.replay(0, 7, Some(&row7)).await,
        Err(RouterError::Event { .. })
    ));
    assert_eq!(
        replica.dead_letters(TOPIC, 0)[2].resolution,
        None,
        "still open"
    );
    let fixed = MemoryReplica::new();
    fixed.restore(&replica.backup());
    let applier = Applier::new(Fake(fixed.clone()), TOPIC.to_owned()).unwrap();
    assert!(applier.replay(0, 7, Some(&row7)).await.unwrap());
    assert!(
        !applier.replay(0, 7, Some(&row7)).await.unwrap(),
        "replayed once"
    );
    assert_eq!(fixed.rows("public.t")[2], row(3, "bad"));
    assert_eq!(
        fixed.dead_letters(TOPIC, 0)[2].resolution.as_deref(),
        Some("replayed")
    );
}

#[tokio::test]
async fn a_dead_letter_sent_before_a_crash_is_not_sent_again() {
    let source = Source::new();
    source.txn(0, 0x10, &[upsert(1, "a")]); // 0-2
    source.log.append(TOPIC, 0, None, b"garbage", Vec::new()); // 3
    source.txn(0, 0x20, &[upsert(2, "b")]); // 4-6
    let replica = MemoryReplica::new();
    let dlq = MemoryDlq::new(&source.log, TOPIC);
    // The first router sent the dead letter, then died before the replica recorded it: the
    // replica holds 0x10 only.
    replica.hold();
    let first = start(&dead_letter_ctx(&replica, &dlq), &source, 0, 0, 1);
    until("the dead letter", || dlq.letters(0).len() == 1).await;
    first.handle.abort();
    let _ = first.handle.await;
    replica.release();
    assert!(replica.dead_letters(TOPIC, 0).is_empty());
    let second = start(&dead_letter_ctx(&replica, &dlq), &source, 0, 0, 1);
    until("0x20", || commit_lsn(&replica, 0) == 0x20).await;
    second.stop().await.unwrap();
    assert_eq!(dlq.letters(0).len(), 1, "the dead letter was sent twice");
    assert_eq!(replica.dead_letters(TOPIC, 0).len(), 1);
    // And a third run, reading it all again, sends nothing either.
    replica.set_kafka_offset(TOPIC, 0, -1);
    let third = start(&dead_letter_ctx(&replica, &dlq), &source, 0, 0, 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    third.stop().await.unwrap();
    assert_eq!(dlq.letters(0).len(), 1);
    assert_eq!(replica.rows("public.t"), [row(1, "a"), row(2, "b")]);
}

#[tokio::test]
async fn with_the_dead_letter_queue_down_the_partition_waits_and_loses_nothing() {
    let source = Source::new();
    source.log.append(TOPIC, 0, None, b"garbage", Vec::new()); // 0
    source.txn(0, 0x10, &[upsert(1, "a")]);
    let replica = MemoryReplica::new();
    let dlq = MemoryDlq::new(&source.log, TOPIC);
    dlq.down.store(true, Ordering::Relaxed);
    let task = start(&dead_letter_ctx(&replica, &dlq), &source, 0, 0, 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        commit_lsn(&replica, 0),
        0,
        "nothing passes the bad event meanwhile"
    );
    dlq.down.store(false, Ordering::Relaxed);
    until("0x10", || commit_lsn(&replica, 0) == 0x10).await;
    task.stop().await.unwrap();
    assert_eq!(dlq.letters(0).len(), 1);
}
