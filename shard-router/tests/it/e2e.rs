//! The end-to-end scenario, written once and run against each replica engine: PostgreSQL → cdc →
//! Kafka → shard-router → replica; a router killed with SIGKILL mid-stream and restarted; in the end
//! every replica table equals its source table, row for row and value for value.

use std::time::{Duration, Instant};

use crate::support::*;

pub(crate) const SCHEMA: &str = r#"
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
CREATE TABLE "Order" ("select" integer PRIMARY KEY, "from" text, "we""ird" text, "Ordér" numeric(12,4));
CREATE TABLE tags (name text PRIMARY KEY, n integer);
CREATE TABLE events_log (at timestamptz, kind text, payload jsonb);
ALTER TABLE events_log REPLICA IDENTITY FULL;
CREATE TABLE scratch (id integer PRIMARY KEY, v text);
CREATE TABLE bulk (id integer PRIMARY KEY, n numeric(20,6), t text, ts timestamptz);
"#;

/// Tables compared at the end.
const TABLES: &[&str] = &[
    "all_types",
    "line_items",
    "Order",
    "tags",
    "events_log",
    "scratch",
    "bulk",
];

/// Before the router is killed.
pub(crate) const WORKLOAD_1: &[&str] = &[
    r#"INSERT INTO all_types VALUES (1, -32768, 2147483647, -9223372036854775808,
        12345678901234567890.0123456789, 3.4028235e38, 1.7976931348623157e308,
        'héllo 世界 🎉 it''s "quoted" and back\slashed', 'varchar ü', true,
        '2024-03-10 02:30:00.123456-08', '2024-03-10 02:30:00.5', '2024-02-29', '23:59:59.999999',
        '1 year 2 mons 3 days 04:05:06.789', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
        '{"b": 1, "a": [1, 2.50, "x"]}', '{"k": {"n": 12345678901234567890.5}}',
        ARRAY['a', 'b c', 'd"e', NULL], ARRAY[1, -2, 3], '\x00ff10deadbeef', 'happy',
        'short')"#,
    "INSERT INTO all_types (id) VALUES (2)",
    "INSERT INTO all_types (id, num, re, dp) VALUES (3, -0.0000000001, 'NaN', '-Infinity')",
    "INSERT INTO all_types (id, num, re, dp, by) VALUES (4, 'NaN', 'Infinity', 'NaN', '\\x')",
    "INSERT INTO all_types (id, big) SELECT 5, string_agg(md5(g::text), '') FROM generate_series(1, 600) g",
    // wal2json leaves the unchanged TOASTed `big` out of this update; the replica must keep it.
    "UPDATE all_types SET ii = 42 WHERE id = 5",
    // One event (about 512 KB, incompressible) larger than a whole fetch response of the router
    // (fetch.max.bytes = 128 KiB): Kafka still hands the record batch over whole.
    "INSERT INTO all_types (id, big) SELECT 6, string_agg(md5(g::text), '') FROM generate_series(1, 16000) g",
    "BEGIN; INSERT INTO line_items VALUES (1, 1, 5, 'a'), (1, 2, 6, 'b'), (2, 1, 7, NULL);
       UPDATE all_types SET tx = 'changed', num = 0.5 WHERE id = 1;
       INSERT INTO \"Order\" VALUES (1, 'from-1', 'w1', 1.5), (2, 'from-2', 'w2', -0.0001); COMMIT;",
    "BEGIN; INSERT INTO line_items VALUES (99, 99, 99, 'ROLLED-BACK'); ROLLBACK;",
    "UPDATE line_items SET qty = qty + 1 WHERE order_id = 1",
    "UPDATE line_items SET line = 3 WHERE order_id = 1 AND line = 2",
    "DELETE FROM line_items WHERE order_id = 2",
    r#"UPDATE "Order" SET "from" = 'moved', "we""ird" = NULL WHERE "select" = 1"#,
    r#"UPDATE "Order" SET "select" = 10 WHERE "select" = 2"#,
    r#"DELETE FROM "Order" WHERE "select" = 1"#,
    "DELETE FROM all_types WHERE id = 2",
    // Keys that only a case-sensitive, NO PAD comparison keeps apart.
    "INSERT INTO tags VALUES ('a', 1), ('A', 2), ('a ', 3), ('ü', 4)",
    "UPDATE tags SET n = 20 WHERE name = 'A'",
    // A table without a primary key (REPLICA IDENTITY FULL), with identical rows.
    r#"INSERT INTO events_log VALUES ('2024-01-01 00:00:00+00', 'dup', '{"x": 1}'),
        ('2024-01-01 00:00:00+00', 'dup', '{"x": 1}'), ('2024-01-02 00:00:00+00', 'one', NULL)"#,
    "DELETE FROM events_log WHERE ctid = (SELECT ctid FROM events_log WHERE kind = 'dup' LIMIT 1)",
    "UPDATE events_log SET kind = 'uno' WHERE kind = 'one'",
    // One source transaction larger than --batch-max-rows: applied in chunks.
    "INSERT INTO bulk SELECT g, g * 1.5, 'row ' || g, '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 minute' FROM generate_series(1, 400) g",
];

/// After the router was killed and restarted.
const WORKLOAD_3: &[&str] = &[
    "UPDATE bulk SET id = id + 10000 WHERE id <= 10",
    "DELETE FROM bulk WHERE id % 7 = 0",
    "INSERT INTO scratch VALUES (1, 'a'), (2, 'b')",
    "TRUNCATE scratch",
    "INSERT INTO scratch VALUES (3, 'c')",
    "BEGIN; INSERT INTO scratch VALUES (4, 'd'); TRUNCATE scratch; INSERT INTO scratch VALUES (5, 'e'); COMMIT;",
    "UPDATE all_types SET jb = '[1, {\"z\": null}]', ta = '{}', md = 'sad' WHERE id = 1",
];

pub(crate) async fn run_all(client: &tokio_postgres::Client, steps: &[&str]) {
    for sql in steps {
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("workload step failed: {e}\n{sql}"));
    }
}

/// Waits until every table equals its source, or fails with the differences.
async fn assert_converges(
    source: &tokio_postgres::Client,
    target: &Target,
    nan_as_null: bool,
    timeout: Duration,
    router: &Process,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let mut problems = Vec::new();
        for table in TABLES {
            let want = source_rows(source, table, nan_as_null).await;
            let got = replica_rows(target.engine, &target.url, source, table).await;
            if let Some(d) = diff(&want, got.as_ref()) {
                problems.push(format!("{table}: {d}"));
            }
        }
        if problems.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "the {:?} replica did not converge within {timeout:?}:\n{}\nrouter log:\n{}",
                target.engine,
                problems.join("\n"),
                router.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn scenario(engine: Engine) {
    let s = services();
    let name = unique("e2e");
    let source_url = testkit::create_pg_db(&s.source_url, &name).await;
    let source = connect(&source_url).await;
    source.batch_execute(SCHEMA).await.expect("schema");
    let target = Target::create(&s, engine, &name).await;

    let prefix = unique("e2e");
    let cdc = start_cdc(&s, &source_url, &name, &prefix);
    let router_args = ["--batch-max-rows", "100"];
    let mut router = start_router(&s, &target, &prefix, &router_args);
    router.wait_ready(Duration::from_secs(60));

    run_all(&source, WORKLOAD_1).await;
    // Wait until the router applies rows, then kill it while a stream of small transactions runs.
    wait_for(Duration::from_secs(60), "the router to apply rows", || {
        (metric_sum(&router.metrics(), "router_rows_applied_total") > 0.0).then_some(())
    });
    // Let librdkafka commit the stored offsets (every second), so the restarted router starts from a
    // committed offset in the middle of the stream, not from the beginning.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let writer = {
        let url = source_url.clone();
        tokio::spawn(async move {
            let c = connect(&url).await;
            for i in 1..=300 {
                c.execute(
                    "UPDATE bulk SET n = n + $1::int, t = t || '.' WHERE id = $2",
                    &[&1i32, &(i % 400 + 1)],
                )
                .await
                .expect("update bulk");
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    router.kill9();
    writer.await.expect("writer");
    let mut router = start_router(&s, &target, &prefix, &router_args);
    router.wait_ready(Duration::from_secs(60));
    run_all(&source, WORKLOAD_3).await;

    let nan_as_null = cdc.log_text().contains("NaN and Infinity arrive as null");
    assert_converges(
        &source,
        &target,
        nan_as_null,
        Duration::from_secs(120),
        &router,
    )
    .await;
    let metrics = router.metrics();
    assert!(
        metric_sum(&metrics, "router_end_to_end_lag_seconds_count") > 0.0,
        "no end-to-end lag observed:\n{metrics}"
    );
    assert!(
        cdc.metrics().contains("cdc_replication_lag_seconds "),
        "cdc reports no lag in seconds"
    );
    assert!(
        metric_sum(&metrics, "router_partitions_stopped") == 0.0,
        "a partition stopped:\n{}",
        router.log_text()
    );
    assert_eq!(
        router.terminate(Duration::from_secs(30)),
        0,
        "router exits 0 on SIGTERM"
    );
    drop(cdc);
    testkit::drop_slot(&s.source_url, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicates_to_mysql() {
    scenario(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicates_to_sqlite() {
    scenario(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicates_to_postgres() {
    scenario(Engine::Postgres).await;
}
