//! Poison events against the real services (MariaDB replica, tansu): under `--on-error dead-letter`
//! a message that is not JSON, one that breaks the framing, and a row the replica refuses — in every
//! partition of a live topic — each become exactly one dead letter in `<topic>.dlq`, with headers
//! naming where they came from, and the partitions go on; a restart that reads everything again sends
//! none twice; `replay-dlq` applies the refused row after the fix, once. Under the default `stop` a
//! bad message stops its partition, naming the offset, again after a restart.

use std::collections::BTreeMap;
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use shared::{codec, Change, Lsn, TxnBoundary};
use sqlx::ConnectOptions;

use crate::support::*;

const PARTITIONS: i32 = 4;

async fn mysql(url: &str) -> sqlx::MySqlConnection {
    sqlx::mysql::MySqlConnectOptions::from_str(url)
        .unwrap()
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to MariaDB: {e}"))
}

/// A message read back: partition, offset, headers (text), value.
#[derive(Debug, Clone)]
struct Read {
    partition: i32,
    offset: i64,
    headers: BTreeMap<String, String>,
    value: Vec<u8>,
}

/// Every message of a topic, read with a consumer of our own (no group).
fn read_topic(kafka: &str, topic: &str) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .set("group.id", "it-dlq-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions = md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len() as i32);
    let mut out = Vec::new();
    for p in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, Offset::Offset(low))
            .unwrap();
        consumer.assign(&tpl).unwrap();
        // tansu's high watermark can be below the true end: read on until a second passes without
        // a message.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut next = low;
        let mut last = Instant::now();
        loop {
            assert!(
                Instant::now() < deadline,
                "reading {topic}/{p} up to {high} took over 30s (at {next})"
            );
            let Some(m) = consumer.poll(Duration::from_millis(200)) else {
                if next >= high && last.elapsed() > Duration::from_secs(1) {
                    break;
                }
                continue;
            };
            let m = m.unwrap();
            // Left over from the partition read before, or before the offset sought (a broker may
            // send what precedes it).
            if m.partition() != p || m.offset() < next {
                continue;
            }
            next = m.offset() + 1;
            last = Instant::now();
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(Read {
                partition: p,
                offset: m.offset(),
                headers,
                value: m.payload().unwrap_or_default().to_vec(),
            });
        }
    }
    out
}

async fn converge(source: &tokio_postgres::Client, target: &Target, table: &str, router: &Process) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let want = source_rows(source, table, false).await;
        let got = replica_rows(target.engine, &target.url, source, table).await;
        match diff(&want, got.as_ref()) {
            None => return,
            Some(d) if Instant::now() > deadline => panic!(
                "{table} did not converge: {d}\nrouter log:\n{}",
                router.log_text()
            ),
            Some(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

async fn replica_ids(replica: &mut sqlx::MySqlConnection) -> Vec<i64> {
    sqlx::query_scalar("SELECT CAST(id AS SIGNED) FROM notes ORDER BY id")
        .fetch_all(replica)
        .await
        .unwrap()
}

/// A commit without a begin: valid JSON in the cascade format that breaks the framing.
fn stray_commit() -> Vec<u8> {
    codec::encode(&Change::Commit(TxnBoundary {
        xid: 1,
        lsn: Lsn(1),
        nextlsn: Lsn(2),
        timestamp: None,
        messages: None,
        snapshot: None,
    }))
}

/// Runs `shard-router replay-dlq` with `args`; returns (exit code, stdout).
fn replay(args: &[&str]) -> (i32, String) {
    let out = Command::new(router_bin())
        .arg("replay-dlq")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run replay-dlq");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_events_become_one_dead_letter_each_and_replay_applies_the_refused_row() {
    let s = services();
    let name = unique("dlq");
    let source_url = testkit::create_pg_db(&s.source_url, &name).await;
    let source = connect(&source_url).await;
    source
        .batch_execute("CREATE TABLE notes (id integer PRIMARY KEY, body text)")
        .await
        .unwrap();
    let target = Target::create(&s, Engine::MySql, &name).await;
    // A replica column too narrow for one value the source will send.
    let mut replica = mysql(&target.url).await;
    sqlx::query("CREATE TABLE notes (id INT PRIMARY KEY, body VARCHAR(5))")
        .execute(&mut replica)
        .await
        .unwrap();
    let prefix = unique("dlq");
    let topic = format!("{prefix}.main");
    let dlq = format!("{topic}.dlq");
    let cdc = start_cdc(&s, &source_url, &name, &prefix);
    let dead_letter = ["--on-error", "dead-letter"];
    let mut router = start_router(&s, &target, &prefix, &dead_letter);
    router.wait_ready(Duration::from_secs(60));
    source
        .batch_execute("INSERT INTO notes SELECT g, 'ok' FROM generate_series(1, 40) g")
        .await
        .unwrap();
    converge(&source, &target, "notes", &router).await;

    // Into every partition of the live topic: a value that is not JSON (no cascade-format header
    // either), and a commit without its begin.
    let mut bad: BTreeMap<(i32, i64), &str> = BTreeMap::new();
    for p in 0..PARTITIONS {
        let o = produce(&s.kafka, &topic, p, b"this is not json {", &[]).await;
        bad.insert((p, o), "decode");
        let o = produce(
            &s.kafka,
            &topic,
            p,
            &stray_commit(),
            &[(codec::FORMAT_HEADER, codec::FORMAT_VERSION)],
        )
        .await;
        bad.insert((p, o), "framing");
    }
    // One multi-row transaction with a row the replica refuses, then more rows everywhere.
    source
        .batch_execute(
            "INSERT INTO notes SELECT g, CASE WHEN g = 42 THEN 'far too long' ELSE 'ok' END \
             FROM generate_series(41, 80) g",
        )
        .await
        .unwrap();
    source
        .batch_execute("INSERT INTO notes SELECT g, 'later' FROM generate_series(81, 120) g")
        .await
        .unwrap();
    let want: Vec<i64> = (1..=120).filter(|i| *i != 42).collect();
    wait_for(
        Duration::from_secs(90),
        "every row but the refused one on the replica",
        || {
            let ids = futures_block(replica_ids(&mut replica));
            (ids == want).then_some(())
        },
    );
    assert_eq!(
        metric_sum(&router.metrics(), "router_partitions_stopped"),
        0.0,
        "{}",
        router.log_text()
    );
    assert_eq!(
        testkit::http_get(router.http_port, "/readyz").map(|(c, _)| c),
        Some(200)
    );

    // Exactly one dead letter per bad message, with headers naming where it came from.
    let letters = wait_for(Duration::from_secs(30), "nine dead letters", || {
        let l = read_topic(&s.kafka, &dlq);
        (l.len() >= 9).then_some(l)
    });
    assert_eq!(letters.len(), 9, "{letters:#?}");
    let group = format!("{prefix}.main.mysql-{name}");
    let mut refused = None;
    for l in &letters {
        let h = |k: &str| l.headers.get(k).cloned().unwrap_or_default();
        assert_eq!(h("cascade-source-topic"), topic, "{l:?}");
        assert_eq!(h("cascade-consumer-group"), group, "{l:?}");
        assert!(!h("cascade-error").is_empty(), "{l:?}");
        assert!(!h("cascade-error").contains("far too long"), "{l:?}");
        let p: i32 = h("cascade-source-partition").parse().unwrap();
        let o: i64 = h("cascade-source-offset").parse().unwrap();
        assert_eq!(
            l.partition, p,
            "dead letters of partition P go to DLQ partition P"
        );
        match bad.remove(&(p, o)) {
            Some(reason) => assert_eq!(h("cascade-reason"), reason, "{l:?}"),
            None => {
                assert_eq!(h("cascade-reason"), "refused", "{l:?}");
                assert!(
                    h("cascade-error").contains("the replica refused it"),
                    "{l:?}"
                );
                assert!(
                    refused.replace((p, o, l.value.clone())).is_none(),
                    "two refused"
                );
            }
        }
    }
    assert!(bad.is_empty(), "no dead letter for {bad:?}");
    // The refused row's dead letter is the change at its source offset.
    let (rp, ro, value) = refused.expect("the refused row's dead letter");
    let source_messages = read_topic(&s.kafka, &topic);
    let original = source_messages
        .iter()
        .find(|m| m.partition == rp && m.offset == ro)
        .unwrap_or_else(|| {
            let summary: Vec<(i32, i64)> = source_messages
                .iter()
                .map(|m| (m.partition, m.offset))
                .collect();
            panic!("the refused row {rp}/{ro} is not in the source topic: {summary:?}")
        });
    // It was one row of several in its transaction's frame: the others were applied without it.
    let partition: Vec<(i64, Change)> = source_messages
        .iter()
        .filter(|m| m.partition == rp)
        .filter_map(|m| codec::decode(&m.value).ok().map(|c| (m.offset, c)))
        .collect();
    let at = partition.iter().position(|(o, _)| *o == ro).unwrap();
    let begin = partition[..at]
        .iter()
        .rposition(|(_, c)| matches!(c, Change::Begin(_)))
        .unwrap();
    let frame: Vec<&Change> = partition[begin + 1..]
        .iter()
        .map(|(_, c)| c)
        .take_while(|c| !matches!(c, Change::Commit(_)))
        .collect();
    assert!(
        frame.len() > 1,
        "the refused row should share its frame with other rows"
    );
    assert_eq!(codec::decode(&value), codec::decode(&original.value));
    assert!(matches!(codec::decode(&value), Ok(Change::Row(r)) if r.table.name == "notes"));
    // Recorded in the replica, and each an open divergence for the verify tool.
    let open = testkit::compare::open_dead_letters(target.engine, &target.url)
        .await
        .unwrap();
    assert_eq!(open.len(), 9, "{open:?}");
    let metrics = router.metrics();
    assert_eq!(metric_sum(&metrics, "router_dead_letters_total"), 9.0);
    assert!(
        metrics.contains("reason=\"refused\""),
        "no reason label:\n{metrics}"
    );

    // A crash, and a replica that forgot its positions: everything is read again, nothing is sent
    // to the DLQ twice.
    router.kill9();
    sqlx::query("DELETE FROM _cascade_position")
        .execute(&mut replica)
        .await
        .unwrap();
    let router = start_router(&s, &target, &prefix, &dead_letter);
    wait_for(
        Duration::from_secs(90),
        "the restarted router to read every partition to its end",
        || {
            let n: i64 = futures_block(
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM _cascade_position WHERE kafka_offset >= 0",
                )
                .fetch_one(&mut replica),
            )
            .unwrap();
            let log = router.log_text();
            (n == i64::from(PARTITIONS)
                && log
                    .matches("event already in the dead-letter topic")
                    .count()
                    >= 9)
                .then_some(())
        },
    );
    assert_eq!(
        read_topic(&s.kafka, &dlq).len(),
        9,
        "a dead letter was sent twice"
    );
    assert_eq!(
        metric_sum(&router.metrics(), "router_dead_letters_total"),
        0.0
    );

    // The fix, then the replay: the refused row arrives, once.
    sqlx::query("ALTER TABLE notes MODIFY body TEXT")
        .execute(&mut replica)
        .await
        .unwrap();
    let args = [
        "--kafka-brokers",
        &s.kafka,
        "--topic-prefix",
        &prefix,
        "--replica-url",
        &target.url,
    ];
    let (code, out) = replay(&args);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 replayed"), "{out}");
    assert!(out.contains("8 not replayable"), "{out}");
    converge(&source, &target, "notes", &router).await;
    let (code, out) = replay(&args);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 replayed"), "replayed twice: {out}");
    let open = testkit::compare::open_dead_letters(target.engine, &target.url)
        .await
        .unwrap();
    assert_eq!(open.len(), 8, "{open:?}");
    assert!(open.iter().all(|d| d.reason != "refused"), "{open:?}");
    let mut with_discard = args.to_vec();
    with_discard.push("--discard");
    let (code, out) = replay(&with_discard);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("8 discarded"), "{out}");
    assert!(
        testkit::compare::open_dead_letters(target.engine, &target.url)
            .await
            .unwrap()
            .is_empty()
    );
    drop(router);
    drop(cdc);
    testkit::drop_slot(&s.source_url, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_bad_message_stops_its_partition_naming_the_offset() {
    let s = services();
    let name = unique("poison");
    let source_url = testkit::create_pg_db(&s.source_url, &name).await;
    let source = connect(&source_url).await;
    source
        .batch_execute("CREATE TABLE t (id integer PRIMARY KEY)")
        .await
        .unwrap();
    let target = Target::create(&s, Engine::Sqlite, &name).await;
    let prefix = unique("poison");
    let topic = format!("{prefix}.main");
    let cdc = start_cdc(&s, &source_url, &name, &prefix);
    let mut router = start_router(&s, &target, &prefix, &[]);
    router.wait_ready(Duration::from_secs(60));
    let offset = produce(&s.kafka, &topic, 0, b"not json", &[]).await;
    let expected = format!("topic {topic} partition 0 offset {offset}");
    for attempt in ["first run", "after a restart"] {
        let log = wait_for(Duration::from_secs(60), "the partition to stop", || {
            let log = router.log_text();
            log.lines()
                .find(|l| l.contains("partition stopped"))
                .map(str::to_owned)
        });
        assert!(log.contains(&expected), "{attempt}: {log}");
        wait_for(Duration::from_secs(10), "/readyz 503", || {
            testkit::http_get(router.http_port, "/readyz")
                .and_then(|(code, _)| (code == 503).then_some(()))
        });
        assert!(
            !router.log_text().contains("dead-letter topic"),
            "{attempt}: {}",
            router.log_text()
        );
        assert_eq!(router.terminate(Duration::from_secs(30)), 0);
        router = start_router(&s, &target, &prefix, &[]);
    }
    drop(router);
    drop(cdc);
    testkit::drop_slot(&s.source_url, &name).await;
}

/// Runs a future to completion from a synchronous `wait_for` check (inside the multi-threaded test
/// runtime).
fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}
