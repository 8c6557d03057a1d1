//! The Kafka stream equals wal2json's own output, row for row and value for value.

use std::collections::BTreeMap;
use std::time::Duration;

use shared::routing::{encode_key, partition_for};
use shared::Action;

use crate::support::*;

const SCHEMA: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE all_types (
    id bigint PRIMARY KEY,
    si smallint, ii integer, bi bigint,
    num numeric(30,10), re real, dp double precision,
    tx text, vc varchar(20), flag boolean,
    tstz timestamptz, ts timestamp, dt date, tm time, iv interval,
    uu uuid, js json, jb jsonb, ta text[], ia integer[], by bytea, md mood,
    big text
);
CREATE TABLE line_items (
    order_id integer, line integer, qty integer, note text,
    PRIMARY KEY (order_id, line)
);
CREATE TABLE "Order" ("select" integer PRIMARY KEY, "from" text, "we""ird" text);
"#;

const WORKLOAD: &[&str] = &[
    // Every type, with awkward values.
    r#"INSERT INTO all_types VALUES (1, -32768, 2147483647, -9223372036854775808,
        12345678901234567890.0123456789, 3.4028235e38, 1.7976931348623157e308,
        'héllo 世界 🎉 it''s "quoted" and back\slashed', 'varchar ü', true,
        '2024-03-10 02:30:00.123456-08', '2024-03-10 02:30:00.5', '2024-02-29', '23:59:59.999999',
        '1 year 2 mons 3 days 04:05:06.789', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
        '{"b": 1, "a": [1, 2.50, "x"]}', '{"k": {"n": 12345678901234567890.5}}',
        ARRAY['a', 'b c', 'd"e', NULL], ARRAY[1, -2, 3], '\x00ff10deadbeef', 'happy',
        'short')"#,
    // NULL in every nullable column.
    "INSERT INTO all_types (id) VALUES (2)",
    // NaN and infinities in floating point and numeric, negative and tiny numerics.
    r#"INSERT INTO all_types (id, num, re, dp) VALUES (3, -0.0000000001, 'NaN', '-Infinity')"#,
    r#"INSERT INTO all_types (id, num, re, dp) VALUES (4, 'NaN', 'Infinity', 'NaN')"#,
    // A value big and random enough to be TOASTed out of line.
    "INSERT INTO all_types (id, big) SELECT 5, string_agg(md5(g::text), '') FROM generate_series(1, 600) g",
    // An update of another column leaves the TOASTed value unchanged (wal2json omits it).
    "UPDATE all_types SET ii = 42 WHERE id = 5",
    // Several statements and tables in one transaction.
    "BEGIN; INSERT INTO line_items VALUES (1, 1, 5, 'a'), (1, 2, 6, 'b'), (2, 1, 7, NULL);
       UPDATE all_types SET tx = 'changed', num = 0.5 WHERE id = 1;
       INSERT INTO \"Order\" VALUES (1, 'from-1', 'w1'), (2, 'from-2', 'w2'); COMMIT;",
    // A rolled-back transaction must produce nothing.
    "BEGIN; INSERT INTO line_items VALUES (99, 99, 99, 'ROLLED-BACK-MARKER'); ROLLBACK;",
    // Composite-key update of a non-key column, then a key change, then a delete.
    "UPDATE line_items SET qty = qty + 1 WHERE order_id = 1",
    "UPDATE line_items SET line = 3 WHERE order_id = 1 AND line = 2",
    "DELETE FROM line_items WHERE order_id = 2",
    // Quoted identifiers.
    r#"UPDATE "Order" SET "from" = 'moved', "we""ird" = NULL WHERE "select" = 1"#,
    r#"UPDATE "Order" SET "select" = 10 WHERE "select" = 2"#,
    r#"DELETE FROM "Order" WHERE "select" = 1"#,
    "DELETE FROM all_types WHERE id = 2",
    // A truncate reaches every partition.
    "CREATE TABLE scratch (id int PRIMARY KEY); INSERT INTO scratch VALUES (1), (2)",
    "TRUNCATE scratch",
    "INSERT INTO scratch VALUES (3)",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_stream_matches_wal2json_row_for_row() {
    let s = services();
    let db = unique("capture");
    let db_url = create_db(&s, &db).await;
    let client = connect(&db_url).await;
    client.batch_execute(SCHEMA).await.expect("schema");

    let slot = unique("cdc");
    let prefix = unique("cap");
    let topic = format!("{prefix}.main");
    // The stream alone is compared with wal2json's: no initial copy of the tables.
    let mut cdc = Cdc::start(
        &s,
        &db_url,
        &slot,
        &prefix,
        &["--topic-partitions", "4", "--snapshot", "never"],
    );
    cdc.wait_ready(Duration::from_secs(60));
    // The reference slot is created after cdc's, before the workload: both see exactly the workload.
    let reference_slot = unique("ref");
    create_reference_slot(&db_url, &reference_slot).await;

    for sql in WORKLOAD {
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("workload step failed: {e}\n{sql}"));
    }

    let reference = pg_recvlogical(&s, &db_url, &reference_slot).await;
    let reference_rows: Vec<_> = reference
        .iter()
        .filter(|e| is_published(e))
        .cloned()
        .collect();
    assert!(
        reference_rows.len() >= 20,
        "wal2json produced only {} row changes",
        reference_rows.len()
    );

    let mut reader = TopicReader::open(&s.kafka, &topic, Duration::from_secs(30));
    let partitions = reader.partitions;
    assert_eq!(partitions, 4);
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for e in &reference_rows {
        for p in expected_publications(e, partitions) {
            *expected.entry(canonical(&p)).or_default() += 1;
        }
    }
    let expected_total: usize = expected.values().sum();
    reader.read_until(Duration::from_secs(60), "every row change in Kafka", |m| {
        row_changes(m) >= expected_total
    });
    reader.read_for(Duration::from_secs(1));
    let msgs = &reader.messages;

    // Exactly once, value for value.
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    for m in msgs.iter().filter(|m| m.event.action.is_row_change()) {
        *got.entry(canonical(&m.event)).or_default() += 1;
    }
    for (event, n) in &expected {
        if got.get(event) != Some(n) {
            let lsn = serde_json::from_str::<WireEvent>(event).unwrap().lsn;
            let near: Vec<&String> = got
                .keys()
                .filter(|k| serde_json::from_str::<WireEvent>(k).unwrap().lsn == lsn)
                .collect();
            panic!(
                "expected {n}× in Kafka, got {:?}:\n{event}\nKafka has at that lsn:\n{near:#?}",
                got.get(event)
            );
        }
    }
    for (event, n) in &got {
        assert_eq!(
            expected.get(event),
            Some(n),
            "unexpected in Kafka ({n}×): {event}"
        );
    }

    // The TOASTed value travelled once, and the later update left it out, as wal2json does.
    let toast_updates: Vec<_> = msgs
        .iter()
        .filter(|m| {
            m.event.action == Action::Update && m.event.table.as_deref() == Some("all_types")
        })
        .filter(|m| {
            m.event
                .columns
                .iter()
                .flatten()
                .any(|c| c.name == "id" && c.value.get() == "5")
        })
        .collect();
    assert_eq!(toast_updates.len(), 1);
    assert!(
        toast_updates[0]
            .event
            .columns
            .iter()
            .flatten()
            .all(|c| c.name != "big"),
        "unchanged TOAST value was sent"
    );

    // Numeric digits survive on the wire, not just after parsing.
    let raw_all: String = msgs
        .iter()
        .map(|m| String::from_utf8_lossy(&m.raw).into_owned())
        .collect();
    assert!(
        raw_all.contains("12345678901234567890.0123456789"),
        "numeric digits lost on the wire"
    );
    assert!(
        !raw_all.contains("ROLLED-BACK-MARKER"),
        "a rolled-back transaction reached Kafka"
    );

    // Keys, partitions, framing, order, format header.
    for m in msgs {
        assert_eq!(
            m.format_header.as_deref(),
            Some(shared::FORMAT_VERSION),
            "format header missing"
        );
        if matches!(
            m.event.action,
            Action::Insert | Action::Update | Action::Delete
        ) {
            let key = m.key.as_deref().expect("row change without key");
            assert_eq!(
                m.partition,
                partition_for(key, partitions),
                "key {:?} on the wrong partition",
                String::from_utf8_lossy(key)
            );
            let cols = if m.event.action == Action::Delete {
                &m.event.identity
            } else {
                &m.event.columns
            };
            let cols = cols.as_ref().unwrap();
            let want = encode_key(
                m.event
                    .pk
                    .iter()
                    .flatten()
                    .map(|k| cols.iter().find(|c| c.name == k.name).unwrap()),
            );
            assert_eq!(key, &want[..], "key is not the primary-key values");
        }
    }
    assert_framing(msgs, partitions, false);
    assert_wal_order(msgs, &reference, partitions, false);

    // Commits reach Kafka in commit order on every partition.
    let commit_order: Vec<u64> = reference
        .iter()
        .filter(|e| e.action == Action::Commit)
        .filter_map(|e| e.xid)
        .collect();
    for p in 0..partitions {
        let xids: Vec<u64> = msgs
            .iter()
            .filter(|m| m.partition == p && m.event.action == Action::Commit)
            .filter_map(|m| m.event.xid)
            .collect();
        let mut positions = xids.iter().map(|x| {
            commit_order
                .iter()
                .position(|c| c == x)
                .expect("commit of unknown xid")
        });
        let mut last = None;
        for pos in &mut positions {
            assert!(
                last.is_none_or(|l| pos > l),
                "partition {p}: commits out of order"
            );
            last = Some(pos);
        }
    }

    // The slot advanced past the workload once Kafka acknowledged it.
    let end: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let end: shared::Lsn = end.parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let confirmed: Option<String> = client
            .query_one(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .unwrap()
            .get(0);
        let last_commit = reference
            .iter()
            .rev()
            .find(|e| e.action == Action::Commit)
            .and_then(|e| e.nextlsn)
            .unwrap();
        let confirmed: shared::Lsn = confirmed.unwrap().parse().unwrap();
        if confirmed >= last_commit {
            assert!(confirmed <= end);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "slot confirmed only {confirmed}, want ≥ {last_commit}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = cdc.metrics();
    for wanted in [
        "cdc_events_published_total{op=\"insert\"",
        "topic=\"",
        "cdc_build_info{version=\"",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ] {
        assert!(
            metrics.contains(wanted),
            "no {wanted} in the metrics:\n{metrics}"
        );
    }
    assert_eq!(
        cdc.terminate(Duration::from_secs(30)),
        0,
        "cdc did not exit cleanly on SIGTERM"
    );
    testkit::drop_slot(&s.source_url, &slot).await;
    testkit::drop_slot(&s.source_url, &reference_slot).await;
}
