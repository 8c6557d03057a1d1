//! Keys whose text changes while their value does not: `UPDATE nk SET id = id::numeric(20,3)` rewrites
//! 1 as 1.000, equal as a numeric. cdc must keep such a row on one partition (one key), so the router
//! applies its change in order; before the fix the delete of the old text and the upsert of the new
//! one went to different partitions and about half the rows vanished from the replicas. And columns
//! named like SQLite's rowid, which used to redirect deletes on a SQLite replica.

use std::time::{Duration, Instant};

use crate::support::*;

const SCHEMA: &str = "
CREATE TABLE nk (id numeric PRIMARY KEY, v text NOT NULL);
CREATE TABLE nk2 (tenant numeric(10,2), id integer, v text, PRIMARY KEY (tenant, id));
";

const WORKLOAD: &[&str] = &[
    "INSERT INTO nk SELECT i, 'row ' || i FROM generate_series(1, 500) AS i",
    "INSERT INTO nk2 SELECT (i % 9) + 0.5, i, 'row ' || i FROM generate_series(1, 300) AS i",
    // Same values, another scale: 1 → 1.000, 0.50 → 0.500.
    "UPDATE nk SET id = id::numeric(20,3)",
    "UPDATE nk2 SET tenant = tenant::numeric(20,4)",
    // Later changes address the rows by their new text.
    "UPDATE nk SET v = v || ' again' WHERE id % 3 = 0",
    "DELETE FROM nk WHERE id % 5 = 0",
    "UPDATE nk2 SET v = v || ' again' WHERE id % 4 = 0",
];

async fn scenario(engine: Engine) {
    let s = services();
    let name = unique("keys");
    let source_url = testkit::create_pg_db(&s.source_url, &name).await;
    let source = connect(&source_url).await;
    source.batch_execute(SCHEMA).await.expect("schema");
    let target = Target::create(&s, engine, &name).await;
    let prefix = unique("keys");
    let cdc = start_cdc(&s, &source_url, &name, &prefix);
    let mut router = start_router(&s, &target, &prefix, &[]);
    router.wait_ready(Duration::from_secs(60));
    for sql in WORKLOAD {
        source
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("workload step failed: {e}\n{sql}"));
    }

    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut problems = Vec::new();
        for table in ["nk", "nk2"] {
            let want = source_rows(&source, table, false).await;
            let got = replica_rows(target.engine, &target.url, &source, table).await;
            if let Some(d) = diff(&want, got.as_ref()) {
                problems.push(format!("{table}: {d}"));
            }
        }
        if problems.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the {engine:?} replica did not converge within 90s:\n{}\nrouter log:\n{}\ncdc log:\n{}",
            problems.join("\n"),
            router.log_text(),
            cdc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(router);
    drop(cdc);
    testkit::drop_slot(&s.source_url, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rescaled_numeric_keys_stay_whole_on_mysql() {
    scenario(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rescaled_numeric_keys_stay_whole_on_sqlite() {
    scenario(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rescaled_numeric_keys_stay_whole_on_postgres() {
    scenario(Engine::Postgres).await;
}

/// A SQLite replica reaches rows without a primary key through their rowid; a column named `rowid`
/// (or `oid`, `_rowid_`) hides that name, and deleting "the row whose rowid is …" went to the wrong
/// row. Rows here hold `rowid` values that differ from their SQLite rowids, with duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columns_named_like_sqlites_rowid_do_not_redirect_deletes() {
    let s = services();
    let name = unique("rowid");
    let source_url = testkit::create_pg_db(&s.source_url, &name).await;
    let source = connect(&source_url).await;
    source
        .batch_execute(
            "CREATE TABLE r (rowid integer, v text);
             ALTER TABLE r REPLICA IDENTITY FULL;
             CREATE TABLE o (oid integer, \"_ROWID_\" integer, v text);
             ALTER TABLE o REPLICA IDENTITY FULL;
             CREATE TABLE k (a integer, \"rowid\" integer, \"_rowid_\" integer, oid integer, PRIMARY KEY (a, rowid));",
        )
        .await
        .expect("schema");
    let target = Target::create(&s, Engine::Sqlite, &name).await;
    let prefix = unique("rowid");
    let cdc = start_cdc(&s, &source_url, &name, &prefix);
    let mut router = start_router(&s, &target, &prefix, &[]);
    router.wait_ready(Duration::from_secs(60));
    for sql in [
        // rowid 100, 99, …: SQLite's own rowids are 1, 2, …; rows 1–10 twice.
        "INSERT INTO r SELECT 101 - i, 'v' || (i % 10) FROM generate_series(1, 100) AS i",
        "INSERT INTO r SELECT 101 - i, 'v' || (i % 10) FROM generate_series(1, 10) AS i",
        "INSERT INTO o SELECT 51 - i, 51 - i, 'w' || i FROM generate_series(1, 50) AS i",
        "INSERT INTO k SELECT i % 5, i, i, i FROM generate_series(1, 60) AS i",
        "DELETE FROM r WHERE rowid IN (1, 2, 3, 95, 96)",
        "UPDATE r SET v = 'changed' WHERE rowid BETWEEN 40 AND 49",
        "DELETE FROM o WHERE oid % 4 = 0",
        "UPDATE o SET v = 'changed' WHERE oid % 3 = 0",
        "DELETE FROM k WHERE rowid % 7 = 0",
        "UPDATE k SET rowid = rowid + 1000 WHERE rowid % 5 = 0",
    ] {
        source
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("workload step failed: {e}\n{sql}"));
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut problems = Vec::new();
        for table in ["r", "o", "k"] {
            let want = source_rows(&source, table, false).await;
            let got = replica_rows(target.engine, &target.url, &source, table).await;
            if let Some(d) = diff(&want, got.as_ref()) {
                problems.push(format!("{table}: {d}"));
            }
        }
        if problems.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the SQLite replica did not converge within 90s:\n{}\nrouter log:\n{}",
            problems.join("\n"),
            router.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(router);
    drop(cdc);
    testkit::drop_slot(&s.source_url, &name).await;
}
