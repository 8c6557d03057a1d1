//! Keys whose text changes while their value does not: `UPDATE nk SET id = id::numeric(20,3)` rewrites
//! 1 as 1.000, equal as a numeric. cdc must keep such a row on one partition (one key), so the router
//! applies its change in order; before the fix the delete of the old text and the upsert of the new
//! one went to different partitions and about half the rows vanished from the replicas.

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
