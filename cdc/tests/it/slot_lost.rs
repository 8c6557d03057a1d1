//! Issue 10, item 1: a slot dropped while cdc was stopped (failover, a DBA) must not be re-created
//! silently — the rows written meanwhile would never reach Kafka. cdc creates a slot only on its first
//! run for that slot and prefix, and refuses a slot and prefix recorded for another server.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::support::*;

async fn slot_exists(url: &str, slot: &str) -> bool {
    connect(url)
        .await
        .query_opt(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap()
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_slot_stops_cdc_instead_of_being_recreated() {
    let s = services();
    let db_url = create_db(&s, &unique("slotlost")).await;
    let c = connect(&db_url).await;
    c.batch_execute("CREATE TABLE kv (id integer PRIMARY KEY, v text)")
        .await
        .unwrap();
    let slot = unique("cdc");
    let prefix = unique("lost");

    // First run: cdc creates the slot and records it.
    assert!(!slot_exists(&db_url, &slot).await);
    let mut cdc = Cdc::start(&s, &db_url, &slot, &prefix, &[]);
    cdc.wait_ready(Duration::from_secs(60));
    assert!(
        slot_exists(&db_url, &slot).await,
        "first run creates the slot"
    );
    let log = cdc.log_text();
    assert!(
        log.contains("created replication slot") && log.contains("origin record written"),
        "{log}"
    );
    c.batch_execute("INSERT INTO kv VALUES (1, 'before')")
        .await
        .unwrap();
    let mut reader =
        TopicReader::open(&s.kafka, &format!("{prefix}.main"), Duration::from_secs(30));
    // The initial snapshot may copy the row as well as stream it: look for the row itself.
    reader.read_until(Duration::from_secs(30), "the first insert", |m| {
        has_value(m, "before")
    });
    assert_eq!(cdc.terminate(Duration::from_secs(30)), 0);

    // The slot is dropped while cdc is stopped, and rows are written meanwhile.
    c.query_one("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await
        .unwrap();
    c.batch_execute("INSERT INTO kv VALUES (2, 'lost'), (3, 'lost')")
        .await
        .unwrap();

    // cdc refuses, names the slot, the loss and the recovery, and creates nothing.
    let (code, err) = run_cdc_on(&s, &db_url, &slot, &prefix);
    assert_eq!(code, 1, "{err}");
    for needle in [
        format!("replication slot \"{slot}\" is missing"),
        "not in Kafka".to_owned(),
        "re-seed the replicas".to_owned(),
        format!("pg_create_logical_replication_slot('{slot}', 'wal2json')"),
        format!("{prefix}-cdc-origin"),
    ] {
        assert!(err.contains(&needle), "lacks {needle:?}:\n{err}");
    }
    assert!(
        !slot_exists(&db_url, &slot).await,
        "cdc re-created the slot"
    );

    // Another slot name on the same topics: no origin record for it, but the shard topic holds
    // records, so this is not a first run either.
    let other = unique("cdc");
    let (code, err) = run_cdc_on(&s, &db_url, &other, &prefix);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("topic {prefix}.main partition")) && err.contains("holds records"),
        "{err}"
    );
    assert!(!slot_exists(&db_url, &other).await);

    // The documented way to accept the loss: create the slot by hand; cdc continues on the topics.
    c.query_one(
        "SELECT pg_create_logical_replication_slot($1, 'wal2json')",
        &[&slot],
    )
    .await
    .unwrap();
    let mut cdc = Cdc::start(&s, &db_url, &slot, &prefix, &[]);
    cdc.wait_ready(Duration::from_secs(60));
    c.batch_execute("INSERT INTO kv VALUES (4, 'after')")
        .await
        .unwrap();
    reader.read_until(
        Duration::from_secs(30),
        "the insert after the new slot",
        |m| has_value(m, "after"),
    );
    assert_eq!(cdc.terminate(Duration::from_secs(30)), 0);
    testkit::drop_slot(&s.source_url, &slot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_recorded_for_another_server_is_refused() {
    let s = services();
    let db_url = create_db(&s, &unique("othersrc")).await;
    let slot = unique("cdc");
    let prefix = unique("other");

    // A first run creates the origin topic; then a record of another server for a second slot.
    let mut cdc = Cdc::start(&s, &db_url, &slot, &prefix, &[]);
    cdc.wait_ready(Duration::from_secs(60));
    assert_eq!(cdc.terminate(Duration::from_secs(30)), 0);
    let foreign = unique("cdc");
    let record = serde_json::json!({
        "format": 1,
        "slot": foreign,
        "topic_prefix": prefix,
        "system_identifier": "1234567890123456789",
        "timeline": 1,
        "database": "elsewhere",
        "slot_created_at": "0/16B3748",
        "recorded_by": "a test",
    })
    .to_string();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &s.kafka)
        .create()
        .unwrap();
    let topic = format!("{prefix}-cdc-origin");
    producer
        .send(
            FutureRecord::to(&topic)
                .partition(0)
                .key(foreign.as_bytes())
                .payload(record.as_bytes()),
            Duration::from_secs(10),
        )
        .await
        .unwrap();

    let (code, err) = run_cdc_on(&s, &db_url, &foreign, &prefix);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("another PostgreSQL server") && err.contains("1234567890123456789"),
        "{err}"
    );
    assert!(!slot_exists(&db_url, &foreign).await);
    testkit::drop_slot(&s.source_url, &slot).await;
}

/// Whether a row change with the text value `value` was read.
fn has_value(msgs: &[Msg], value: &str) -> bool {
    let quoted = format!("\"{value}\"");
    msgs.iter().any(|m| {
        m.event.action.is_row_change() && String::from_utf8_lossy(&m.raw).contains(&quoted)
    })
}
