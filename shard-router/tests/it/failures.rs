//! Failure handling against a real MariaDB replica: lost replica connections are retried and nothing
//! is lost; a value the replica refuses stops its partition with the event named, and nothing after
//! it in that partition is skipped; replica messages are logged without the row values they quote; a
//! source type change the replica column would round or truncate stops the partition.

use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::{ConnectOptions, Connection};

use crate::support::*;

async fn mysql(url: &str) -> sqlx::MySqlConnection {
    sqlx::mysql::MySqlConnectOptions::from_str(url)
        .unwrap()
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to MariaDB: {e}"))
}

async fn converge(source: &tokio_postgres::Client, target: &Target, table: &str, router: &Process) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let want = source_rows(source, table, false).await;
        let got = replica_rows(target.engine, &target.url, source, table).await;
        match diff(&want, got.as_ref()) {
            None => return,
            Some(d) if Instant::now() > deadline => {
                panic!(
                    "{table} did not converge: {d}\nrouter log:\n{}",
                    router.log_text()
                )
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_replica_connections_are_retried_and_nothing_is_lost() {
    let s = services();
    let name = unique("lost");
    let source_url = testkit::create_pg_db(&s.source_url, &name).await;
    let source = connect(&source_url).await;
    source
        .batch_execute("CREATE TABLE counters (id integer PRIMARY KEY, n bigint, note text)")
        .await
        .unwrap();
    let target = Target::create(&s, Engine::MySql, &name).await;
    let prefix = unique("lost");
    let cdc = start_cdc(&s, &source_url, &name, &prefix);
    let mut router = start_router(&s, &target, &prefix, &[]);
    router.wait_ready(Duration::from_secs(60));

    source
        .batch_execute("INSERT INTO counters SELECT g, 0, 'x' FROM generate_series(0, 49) g")
        .await
        .unwrap();
    converge(&source, &target, "counters", &router).await;

    // Hold every row of the replica table, so the router's next transaction waits on a lock; then
    // cut the router's waiting connections, several times, before letting go.
    let mut holder = mysql(&target.url).await;
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("SELECT * FROM counters FOR UPDATE")
        .execute(&mut holder)
        .await
        .unwrap();
    source
        .batch_execute("UPDATE counters SET n = n + 1")
        .await
        .unwrap();
    source
        .batch_execute("UPDATE counters SET n = n + 10 WHERE id % 2 = 0")
        .await
        .unwrap();
    let mut admin = mysql(&s.mysql_url).await;
    let mut killed = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while killed < 3 && Instant::now() < deadline {
        let ids: Vec<u64> = sqlx::query_scalar(
            "SELECT CAST(ID AS UNSIGNED) FROM information_schema.PROCESSLIST \
             WHERE DB = ? AND COMMAND IN ('Query', 'Execute') AND INFO LIKE '%counters%' AND INFO NOT LIKE '%FOR UPDATE%'",
        )
        .bind(&name)
        .fetch_all(&mut admin)
        .await
        .unwrap();
        for id in ids {
            if sqlx::query(&format!("KILL {id}"))
                .execute(&mut admin)
                .await
                .is_ok()
            {
                killed += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(killed >= 3, "the router never waited on the locked rows");
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    converge(&source, &target, "counters", &router).await;
    assert!(
        router.log_text().contains("waiting for the replica"),
        "the router should have logged its retries:\n{}",
        router.log_text()
    );
    assert_eq!(
        metric_sum(&router.metrics(), "router_partitions_stopped"),
        0.0
    );
    // Once the replica is back, the router is ready again.
    wait_for(
        Duration::from_secs(30),
        "the router to be ready again",
        || {
            testkit::http_get(router.http_port, "/readyz")
                .and_then(|(code, _)| (code == 200).then_some(()))
        },
    );
    drop(cdc);
    testkit::drop_slot(&s.source_url, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_the_replica_refuses_stops_its_partition_and_names_the_event() {
    let s = services();
    let name = unique("refuse");
    let source_url = testkit::create_pg_db(&s.source_url, &name).await;
    let source = connect(&source_url).await;
    source
        .batch_execute("CREATE TABLE notes (id integer PRIMARY KEY, body text)")
        .await
        .unwrap();
    let target = Target::create(&s, Engine::MySql, &name).await;
    // The replica's table exists already, with a column too narrow for one of the values.
    let mut replica = mysql(&target.url).await;
    sqlx::query("CREATE TABLE notes (id INT PRIMARY KEY, body VARCHAR(5))")
        .execute(&mut replica)
        .await
        .unwrap();
    let prefix = unique("refuse");
    let cdc = start_cdc(&s, &source_url, &name, &prefix);
    let mut router = start_router(&s, &target, &prefix, &[]);
    router.wait_ready(Duration::from_secs(60));

    // Three source transactions, apart enough in time to be three replica transactions.
    for sql in [
        "INSERT INTO notes SELECT g, 'ok' FROM generate_series(1, 40) g",
        "UPDATE notes SET body = 'far too long for five' WHERE id = 7",
        "INSERT INTO notes SELECT g, 'later' FROM generate_series(41, 80) g",
    ] {
        source.batch_execute(sql).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let log = wait_for(Duration::from_secs(60), "the partition to stop", || {
        let log = router.log_text();
        log.contains("partition stopped").then_some(log)
    });
    let line = log
        .lines()
        .find(|l| l.contains("partition stopped"))
        .unwrap()
        .to_owned();
    for part in [
        format!("topic {prefix}.main partition"),
        "offset".to_owned(),
        "(table public.notes)".to_owned(),
        "the replica refused it".to_owned(),
    ] {
        assert!(line.contains(&part), "the error lacks {part:?}: {line}");
    }
    assert!(
        !line.contains("far too long"),
        "row values must not be logged: {line}"
    );
    wait_for(
        Duration::from_secs(10),
        "/readyz to report the stop",
        || {
            testkit::http_get(router.http_port, "/readyz")
                .and_then(|(code, _)| (code == 503).then_some(()))
        },
    );
    assert_eq!(
        metric_sum(&router.metrics(), "router_partitions_stopped"),
        1.0
    );
    // Nothing after the refused event in its partition was applied: row 7 still has its old value,
    // and the stopped partition's later rows are missing while the other partitions' rows arrived.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seven: Option<String> =
        sqlx::query_scalar("SELECT CAST(body AS CHAR) FROM notes WHERE id = 7")
            .fetch_one(&mut replica)
            .await
            .unwrap();
    assert_eq!(seven.as_deref(), Some("ok"));
    let later: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notes WHERE id > 40")
        .fetch_one(&mut replica)
        .await
        .unwrap();
    assert!(later > 0 && later < 40, "{later} of 40 later rows applied");

    // Widen the column and restart: the router resumes at the refused event and converges.
    sqlx::query("ALTER TABLE notes MODIFY body TEXT")
        .execute(&mut replica)
        .await
        .unwrap();
    assert_eq!(router.terminate(Duration::from_secs(30)), 0);
    let mut router = start_router(&s, &target, &prefix, &[]);
    router.wait_ready(Duration::from_secs(60));
    converge(&source, &target, "notes", &router).await;
    let _ = replica.close().await;
    drop(cdc);
    testkit::drop_slot(&s.source_url, &name).await;
}

/// The partition-stopped line of a router log, once there is one.
fn stopped_line(router: &Process) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = router.log_text();
        if let Some(line) = log.lines().find(|l| l.contains("partition stopped")) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no partition stopped within 60s; router log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_the_replica_quotes_in_its_error_is_not_logged() {
    let s = services();
    let name = unique("dupval");
    let source_url = testkit::create_pg_db(&s.source_url, &name).await;
    let source = connect(&source_url).await;
    source
        .batch_execute("CREATE TABLE users (id integer PRIMARY KEY, email text)")
        .await
        .unwrap();
    let target = Target::create(&s, Engine::MySql, &name).await;
    // A hand-made replica table with the wrong type: MariaDB's error quotes the value it refused.
    let mut replica = mysql(&target.url).await;
    sqlx::query("CREATE TABLE users (id INT PRIMARY KEY, email INT)")
        .execute(&mut replica)
        .await
        .unwrap();
    let prefix = unique("dupval");
    let cdc = start_cdc(&s, &source_url, &name, &prefix);
    let mut router = start_router(&s, &target, &prefix, &[]);
    router.wait_ready(Duration::from_secs(60));
    source
        .batch_execute("INSERT INTO users VALUES (1, 'alice.secret@example.com')")
        .await
        .unwrap();
    let line = stopped_line(&router);
    assert!(
        line.contains("Incorrect integer value: '…' for column"),
        "{line}"
    );
    assert!(
        !router.log_text().contains("alice.secret"),
        "a row value reached the log:\n{}",
        router.log_text()
    );
    let _ = replica.close().await;
    drop(router);
    drop(cdc);
    testkit::drop_slot(&s.source_url, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_schema_capture_a_type_change_that_would_round_stops_also_after_a_restart() {
    let s = services();
    let name = unique("retype");
    let source_url = testkit::create_pg_db(&s.source_url, &name).await;
    let source = connect(&source_url).await;
    source
        .batch_execute(
            "CREATE TABLE prices (id integer PRIMARY KEY, amount numeric(10,2), code varchar(5))",
        )
        .await
        .unwrap();
    let target = Target::create(&s, Engine::Postgres, &name).await;
    let prefix = unique("retype");
    let cdc = start_cdc(&s, &source_url, &name, &prefix);
    // A source where schema changes are not captured (cdc's user could not install the triggers):
    // the type change reaches the router only through the rows' types.
    source
        .batch_execute(
            "DROP EVENT TRIGGER cascade_ddl_command_end; DROP EVENT TRIGGER cascade_sql_drop; \
             DROP EVENT TRIGGER cascade_table_rewrite;",
        )
        .await
        .unwrap();
    let mut router = start_router(&s, &target, &prefix, &[]);
    router.wait_ready(Duration::from_secs(60));
    source
        .batch_execute("INSERT INTO prices VALUES (1, 1.25, 'abcde'), (2, 2.50, 'xy')")
        .await
        .unwrap();
    converge(&source, &target, "prices", &router).await;

    // A migration widens both columns; the new values do not fit the replica's columns.
    source
        .batch_execute(
            "ALTER TABLE prices ALTER amount TYPE numeric(12,4), ALTER code TYPE varchar(10);
             INSERT INTO prices VALUES (3, 3.1415, 'abcdefghij')",
        )
        .await
        .unwrap();
    let line = stopped_line(&router);
    assert!(
        line.contains("is numeric(10,2) on the replica but the source now sends numeric(12,4)"),
        "{line}"
    );
    let replica = connect(&target.url).await;
    let rows: i64 = replica
        .query_one("SELECT count(*) FROM prices WHERE id = 3", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "the row that does not fit was stored anyway");

    // A new router process has not seen the old type: it reads the replica's column types.
    router.kill9();
    let router = start_router(&s, &target, &prefix, &[]);
    let line = stopped_line(&router);
    assert!(line.contains("numeric(10,2) on the replica"), "{line}");
    let rows: i64 = replica
        .query_one("SELECT count(*) FROM prices WHERE id = 3", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "after a restart the row was stored rounded");
    drop(router);
    drop(cdc);
    testkit::drop_slot(&s.source_url, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_kafka_gone() {
    let mut s = services();
    let broker = testkit::Broker::start(&s.tansu_bin);
    s.kafka = format!("127.0.0.1:{}", broker.port);
    let name = unique("kdown");
    let source_url = testkit::create_pg_db(&s.source_url, &name).await;
    let source = connect(&source_url).await;
    source
        .batch_execute("CREATE TABLE t (id integer PRIMARY KEY)")
        .await
        .unwrap();
    let target = Target::create(&s, Engine::Sqlite, &name).await;
    let prefix = unique("kdown");
    let cdc = start_cdc(&s, &source_url, &name, &prefix);
    let mut router = start_router(&s, &target, &prefix, &[]);
    router.wait_ready(Duration::from_secs(60));
    source
        .batch_execute("INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    converge(&source, &target, "t", &router).await;
    let metrics = router.metrics();
    for wanted in [
        "router_build_info{version=\"",
        "router_rows_applied_total{",
        "op=\"insert\"",
        "process_resident_memory_bytes",
    ] {
        assert!(
            metrics.contains(wanted),
            "no {wanted} in the metrics:\n{metrics}"
        );
    }

    drop(cdc);
    drop(broker);
    wait_for(
        Duration::from_secs(30),
        "/readyz to turn 503 with Kafka gone",
        || {
            testkit::http_get(router.http_port, "/readyz")
                .and_then(|(code, _)| (code == 503).then_some(()))
        },
    );
    assert!(
        router.log_text().contains("no Kafka broker reachable"),
        "{}",
        router.log_text()
    );
    assert!(router.running(), "the router waits for Kafka");
    drop(router);
    testkit::drop_slot(&s.source_url, &name).await;
}
