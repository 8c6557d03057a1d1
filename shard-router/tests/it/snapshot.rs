//! Snapshots: a source that already holds data is copied into the replicas consistently with the
//! stream, through a cdc SIGKILLed mid-copy; on-demand copies restore rows lost on a replica, for a
//! subset of rows (`--where`) or for one shard only (`--shard`).

use std::time::{Duration, Instant};

use testkit::compare::source_rows_where;

use crate::e2e::{run_all, SCHEMA, WORKLOAD_1};
use crate::support::*;

/// Tables compared after the initial snapshot (`events_log` has no primary key: not copied).
const TABLES: &[&str] = &[
    "all_types",
    "line_items",
    "Order",
    "tags",
    "bulk",
    "pgbench_accounts",
    "pgbench_branches",
    "pgbench_tellers",
    "pgbench_history",
];

fn pgbench(s: &Services, url: &str, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(format!("{}/pgbench", s.pg_bindir));
    cmd.args(args)
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd
}

/// Snapshot requests of `slot` not finished yet.
async fn unfinished(source: &tokio_postgres::Client, slot: &str) -> i64 {
    source
        .query_one(
            "SELECT count(*) FROM cascade.snapshot_requests WHERE slot = $1 AND state IN ('pending', 'running')",
            &[&slot],
        )
        .await
        .expect("read cascade.snapshot_requests")
        .get(0)
}

async fn wait_converged(
    source: &tokio_postgres::Client,
    targets: &[Target],
    routers: &[Process],
    tables: &[&str],
    nan_as_null: bool,
    timeout: Duration,
    context: &str,
) {
    let deadline = Instant::now() + timeout;
    for (target, router) in targets.iter().zip(routers) {
        loop {
            let mut problems = Vec::new();
            for table in tables {
                let want = source_rows(source, table, nan_as_null).await;
                let got = replica_rows(target.engine, &target.url, source, table).await;
                if let Some(d) = diff(&want, got.as_ref()) {
                    problems.push(format!("{table}: {d}"));
                }
            }
            if problems.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{context}: the {:?} replica did not converge within {timeout:?}:\n{}\nrouter log:\n{}",
                target.engine,
                problems.join("\n"),
                router.log_text()
            );
            tokio::time::sleep(Duration::from_millis(1000)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_database_is_copied_consistently_through_a_kill() {
    let s = services();
    let name = unique("snap");
    let source_url = testkit::create_pg_db(&s.source_url, &name).await;
    let source = connect(&source_url).await;
    // Data that exists before cdc ever starts: the type workload and pgbench's 200k accounts (its
    // plain `-i`: tables, data, then primary keys).
    source.batch_execute(SCHEMA).await.expect("schema");
    run_all(&source, WORKLOAD_1).await;
    let init = pgbench(&s, &source_url, &["-i", "-s", "2", "-q"])
        .status()
        .expect("pgbench -i");
    assert!(init.success(), "pgbench -i failed");

    let mut targets = Vec::new();
    for engine in [Engine::Postgres, Engine::MySql, Engine::Sqlite] {
        targets.push(Target::create(&s, engine, &name).await);
    }
    let prefix = unique("snap");
    let cdc_args = ["--snapshot-chunk-rows", "5000", "--max-backoff", "1s"];
    let mut cdc = start_cdc_with(&s, &source_url, &name, &prefix, &cdc_args);
    let routers: Vec<Process> = targets
        .iter()
        .map(|t| start_router(&s, t, &prefix, &[]))
        .collect();
    // pgbench writes throughout the copy.
    let mut writer = pgbench(
        &s,
        &source_url,
        &["-n", "-c", "2", "-j", "2", "-R", "150", "-T", "600"],
    )
    .spawn()
    .expect("pgbench");

    // Kill cdc in the middle of pgbench_accounts' copy.
    wait_for(
        Duration::from_secs(180),
        "the snapshot to copy 60k rows",
        || (metric_sum(&cdc.metrics(), "cdc_snapshot_rows_total") >= 60_000.0).then_some(()),
    );
    cdc.kill9();
    let first_log = cdc.log_text();
    cdc = start_cdc_with(&s, &source_url, &name, &prefix, &cdc_args);
    let deadline = Instant::now() + Duration::from_secs(240);
    while unfinished(&source, &name).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the snapshot did not finish within 240s; cdc log:\n{}",
            cdc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Writes go on after the copy, then stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = writer.kill();
    let _ = writer.wait();

    let nan_as_null = first_log.contains("NaN and Infinity arrive as null");
    wait_converged(
        &source,
        &targets,
        &routers,
        TABLES,
        nan_as_null,
        Duration::from_secs(240),
        "after the initial snapshot",
    )
    .await;

    // Resumed, not restarted: the second cdc started pgbench_accounts past its first rows, and the
    // copy counted each row once.
    let second_log = cdc.log_text();
    let resumed = second_log.lines().any(|l| {
        l.contains("snapshot of table started")
            && l.contains("pgbench_accounts")
            && !l.contains("resume_after_rows=0 ")
    });
    assert!(
        resumed,
        "the restarted cdc did not resume pgbench_accounts mid-table; its log:\n{second_log}"
    );
    let rows = source
        .query(
            "SELECT table_name, state, rows_copied, coalesce(error, '') FROM cascade.snapshot_requests WHERE slot = $1",
            &[&name],
        )
        .await
        .unwrap();
    let states: Vec<(String, String, i64, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    for (table, state, copied, error) in &states {
        match table.as_str() {
            // Without a primary key: refused plainly (pgbench_history was empty when cdc started, its
            // rows all came through the stream and were compared above).
            "events_log" | "pgbench_history" => assert!(
                state == "failed" && error.contains("no primary key"),
                "a table without a key is refused plainly: {states:?}"
            ),
            "pgbench_accounts" => assert!(
                state == "done" && *copied == 200_000,
                "pgbench_accounts copied once: {states:?}"
            ),
            _ => assert_eq!(state, "done", "{states:?}"),
        }
    }
    // cdc's own table on the source never reaches Kafka.
    let replica_pg = connect(&targets[0].url).await;
    let leaked: i64 = replica_pg
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'snapshot_requests'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leaked, 0, "cascade.snapshot_requests reached a replica");
    assert_no_partition_stopped(&routers);
    drop(routers);
    drop(cdc);
    testkit::drop_slot(&s.source_url, &name).await;
}

const ROUTING: &str = r#"
[[shards]]
name = "a"
[[shards]]
name = "b"

[tables."public.notes"]
shard_key = "org_id"

[routing]
rule = "list"
[routing.list]
a = [1, 2]
b = [3, 4]
default = "a"
"#;

async fn request_snapshot(s: &Services, source_url: &str, slot: &str, extra: &[&str]) {
    let mut args: Vec<String> = [
        "snapshot",
        "--source-url",
        source_url,
        "--slot",
        slot,
        "--table",
        "public.notes",
        "--wait",
        "--wait-timeout",
        "90s",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(extra.iter().map(|a| a.to_string()));
    let _ = s;
    let (code, stderr) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        testkit::run_to_exit(&cdc_bin(), &args, Duration::from_secs(120))
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "cdc snapshot {extra:?} failed: {stderr}");
}

async fn replica_count(target: &Target, source: &tokio_postgres::Client, orgs: &str) -> usize {
    let rows = replica_rows(target.engine, &target.url, source, "notes")
        .await
        .unwrap_or_default();
    let orgs: Vec<&str> = orgs.split(',').collect();
    rows.iter()
        .filter(|r| r[0].as_deref().is_some_and(|o| orgs.contains(&o)))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_snapshots_restore_a_table_a_subset_or_one_shard() {
    let s = services();
    let name = unique("snapod");
    let source_url = testkit::create_pg_db(&s.source_url, &name).await;
    let source = connect(&source_url).await;
    source
        .batch_execute(
            "CREATE TABLE notes (org_id integer, id integer, body text, PRIMARY KEY (org_id, id));
             INSERT INTO notes SELECT o, g, 'note ' || g FROM generate_series(1, 4) o, generate_series(1, 500) g;",
        )
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    let routing = dir.join("routing.toml");
    std::fs::write(&routing, ROUTING).unwrap();
    let routing = routing.display().to_string();

    let a = Target::create(&s, Engine::Sqlite, &format!("{name}_a")).await;
    let b = Target::create(&s, Engine::Postgres, &format!("{name}_b")).await;
    let prefix = unique("snapod");
    let cdc = start_cdc_with(&s, &source_url, &name, &prefix, &["--config", &routing]);
    let routers = vec![
        start_router(&s, &a, &prefix, &["--shard", "a", "--config", &routing]),
        start_router(&s, &b, &prefix, &["--shard", "b", "--config", &routing]),
    ];
    let equal = |target: &Target, filter: &'static str| {
        let source = &source;
        let target = target.clone();
        async move {
            let want = source_rows_where(source, "notes", filter, false).await;
            let got = replica_rows(target.engine, &target.url, source, "notes").await;
            diff(&want, got.as_ref())
        }
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (da, db) = (
            equal(&a, "org_id IN (1, 2)").await,
            equal(&b, "org_id IN (3, 4)").await,
        );
        if da.is_none() && db.is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the initial snapshot did not reach both shards: a: {da:?} b: {db:?}\ncdc log:\n{}",
            cdc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Rows deleted by hand on a replica come back with `cdc snapshot --table`.
    delete_on_replica(&a, "org_id = 1 AND id <= 100").await;
    assert_eq!(replica_count(&a, &source, "1").await, 400);
    request_snapshot(&s, &source_url, &name, &[]).await;
    wait_for(Duration::from_secs(60), "org 1's rows to come back", || {
        futures_block(replica_count(&a, &source, "1"))
            .eq(&500)
            .then_some(())
    });

    // A `--where` copy touches only its rows.
    delete_on_replica(&a, "org_id IN (1, 2) AND id <= 50").await;
    request_snapshot(&s, &source_url, &name, &["--where", "org_id = 2"]).await;
    wait_for(Duration::from_secs(60), "org 2's rows to come back", || {
        futures_block(replica_count(&a, &source, "2"))
            .eq(&500)
            .then_some(())
    });
    assert_eq!(
        replica_count(&a, &source, "1").await,
        450,
        "the --where org_id = 2 copy restored rows of org 1"
    );

    // A `--shard b` copy reaches only shard b's topic.
    delete_on_replica(&b, "org_id = 3 AND id <= 10").await;
    request_snapshot(
        &s,
        &source_url,
        &name,
        &["--shard", "b", "--config", &routing],
    )
    .await;
    wait_for(Duration::from_secs(60), "org 3's rows to come back", || {
        futures_block(replica_count(&b, &source, "3"))
            .eq(&500)
            .then_some(())
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        replica_count(&a, &source, "1").await,
        450,
        "the --shard b copy reached shard a"
    );
    // An unknown shard is refused before anything is queued.
    let (code, stderr) = {
        let url = source_url.clone();
        let name = name.clone();
        let routing = routing.clone();
        tokio::task::spawn_blocking(move || {
            testkit::run_to_exit(
                &cdc_bin(),
                &[
                    "snapshot",
                    "--source-url",
                    &url,
                    "--slot",
                    &name,
                    "--table",
                    "notes",
                    "--shard",
                    "zz",
                    "--config",
                    &routing,
                ],
                Duration::from_secs(30),
            )
        })
        .await
        .unwrap()
    };
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--shard"), "{stderr}");
    drop(routers);
    drop(cdc);
    testkit::drop_slot(&s.source_url, &name).await;
}

/// Runs a future to completion from a synchronous closure (inside `wait_for`).
fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

async fn delete_on_replica(target: &Target, condition: &str) {
    let sql = format!("DELETE FROM notes WHERE {condition}");
    match target.engine {
        Engine::Postgres => {
            let c = connect(&target.url).await;
            c.batch_execute(&sql).await.expect("delete on the replica");
        }
        Engine::Sqlite => {
            use sqlx::Connection;
            let mut c = sqlx::SqliteConnection::connect(&target.url)
                .await
                .expect("connect to the replica");
            sqlx::query(&sql)
                .execute(&mut c)
                .await
                .expect("delete on the replica");
        }
        Engine::MySql => unreachable!("the test's replicas are SQLite and PostgreSQL"),
    }
}
