//! A cdc killed with SIGKILL mid-stream and restarted loses nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_nothing() {
    let s = services();
    let db = unique("crash");
    let db_url = create_db(&s, &db).await;
    let client = connect(&db_url).await;
    client
        .batch_execute("CREATE TABLE kv (id integer PRIMARY KEY, v integer NOT NULL, note text)")
        .await
        .unwrap();

    let slot = unique("cdc");
    let prefix = unique("crash");
    let topic = format!("{prefix}.main");
    // A small in-flight bound makes the kill land with unacknowledged messages more often.
    // The stream alone is compared with wal2json's: no initial copy of the tables.
    let extra = [
        "--snapshot",
        "never",
        "--topic-partitions",
        "3",
        "--max-in-flight",
        "50",
        "--kafka-linger",
        "20ms",
    ];
    let mut cdc = Cdc::start(&s, &db_url, &slot, &prefix, &extra);
    cdc.wait_ready(Duration::from_secs(60));
    let reference_slot = unique("ref");
    create_reference_slot(&db_url, &reference_slot).await;

    // The workload runs concurrently with the kill and the restart.
    let writer_url = db_url.clone();
    const TXNS: i32 = 1500;
    let writer = tokio::spawn(async move {
        let c = connect(&writer_url).await;
        for i in 0..TXNS {
            let sql = format!(
                "BEGIN; INSERT INTO kv VALUES ({i}, 0, 'n{i}'); UPDATE kv SET v = v + 1 WHERE id = {prev}; \
                 DELETE FROM kv WHERE id = {old}; COMMIT;",
                prev = i - 1,
                old = i - 10
            );
            c.batch_execute(&sql).await.expect("workload transaction");
        }
    });

    // Kill once messages are flowing.
    let mut reader = TopicReader::open(&s.kafka, &topic, Duration::from_secs(30));
    reader.read_until(Duration::from_secs(60), "the first 300 row changes", |m| {
        row_changes(m) >= 300
    });
    cdc.kill9();
    let killed_at = row_changes(&reader.messages);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut cdc = Cdc::start(&s, &db_url, &slot, &prefix, &extra);
    cdc.wait_ready(Duration::from_secs(60));
    tokio::time::timeout(Duration::from_secs(120), writer)
        .await
        .expect("workload did not finish within 120s")
        .expect("workload failed");

    let reference = pg_recvlogical(&s, &db_url, &reference_slot).await;
    let partitions = reader.partitions;
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for e in reference.iter().filter(|e| is_published(e)) {
        for p in expected_publications(e, partitions) {
            *expected.entry(canonical(&p)).or_default() += 1;
        }
    }
    assert!(
        expected.len() >= (TXNS as usize) * 2,
        "reference has only {} row changes",
        expected.len()
    );
    let keys: Vec<String> = expected.keys().cloned().collect();
    reader.read_until(
        Duration::from_secs(120),
        "every committed row change after the restart",
        |msgs| {
            let mut seen = std::collections::BTreeSet::new();
            for m in msgs.iter().filter(|m| m.event.action.is_row_change()) {
                seen.insert(canonical(&m.event));
            }
            keys.iter().all(|k| seen.contains(k))
        },
    );
    reader.read_for(Duration::from_secs(1));

    // Nothing missing; anything extra is an exact copy of a committed change (re-sent after the crash).
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    for m in reader
        .messages
        .iter()
        .filter(|m| m.event.action.is_row_change())
    {
        *got.entry(canonical(&m.event)).or_default() += 1;
    }
    for (event, n) in &expected {
        assert!(
            got.get(event).copied().unwrap_or(0) >= *n,
            "missing after the crash: {event}"
        );
    }
    for event in got.keys() {
        assert!(
            expected.contains_key(event),
            "not a committed change: {event}"
        );
    }
    let resent: usize = got.values().sum::<usize>() - expected.values().sum::<usize>();
    eprintln!("killed after {killed_at} row changes had reached Kafka; {resent} re-sent after the restart");
    assert_framing(&reader.messages, partitions, true);
    assert_wal_order(&reader.messages, &reference, partitions, true);
    assert_eq!(cdc.terminate(Duration::from_secs(30)), 0);
    testkit::drop_slot(&s.source_url, &slot).await;
    testkit::drop_slot(&s.source_url, &reference_slot).await;
}
