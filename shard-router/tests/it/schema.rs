//! Schema changes: DDL on the source reaches MariaDB, SQLite and PostgreSQL replicas in WAL order —
//! a migration script with row changes between its statements (and a router SIGKILLed right after a
//! schema change), and `pgbench -i` then `pgbench -T` on a live pipeline.

use std::time::{Duration, Instant};

use testkit::compare::{replica_indexes, replica_shape, replica_tables, source_shape};

use crate::support::*;

fn pgbench(s: &Services, url: &str, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(format!("{}/pgbench", s.pg_bindir));
    cmd.args(args)
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    cmd
}

/// How a replica differs from the source for `tables` (the source's tables in `public`): the set of
/// tables, each table's column names and primary key, and its rows. None when equal.
async fn differences(
    source: &tokio_postgres::Client,
    target: &Target,
    tables: &[&str],
) -> Option<String> {
    let mut problems = Vec::new();
    let mut want_tables: Vec<String> = tables.iter().map(|t| (*t).to_owned()).collect();
    want_tables.sort();
    let have_tables = replica_tables(target.engine, &target.url).await;
    if have_tables != want_tables {
        problems.push(format!(
            "tables: the source has {want_tables:?}, the replica {have_tables:?}"
        ));
    }
    for table in tables {
        let want = source_shape(source, table).await;
        let have = replica_shape(target.engine, &target.url, table).await;
        if want != have {
            problems.push(format!(
                "{table}: the source is {want:?}, the replica {have:?}"
            ));
            continue;
        }
        let rows = source_rows(source, table, false).await;
        let got = replica_rows(target.engine, &target.url, source, table).await;
        if let Some(d) = diff(&rows, got.as_ref()) {
            problems.push(format!("{table}: {d}"));
        }
    }
    (!problems.is_empty()).then(|| problems.join("\n"))
}

async fn wait_equal(
    source: &tokio_postgres::Client,
    targets: &[Target],
    routers: &[Process],
    tables: &[&str],
    timeout: Duration,
    context: &str,
) {
    let deadline = Instant::now() + timeout;
    for (target, router) in targets.iter().zip(routers) {
        loop {
            let Some(problems) = differences(source, target, tables).await else {
                break;
            };
            assert!(
                Instant::now() < deadline,
                "{context}: the {:?} replica does not equal the source after {timeout:?}:\n{problems}\nrouter log:\n{}",
                target.engine,
                router.log_text()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The migration script: each step one source transaction, each followed by row changes that use
/// the new shape; then the tables whose replicas must equal the source at that point (a later
/// re-copy would hide a step's mistake from the final comparison).
const STEPS: &[(&str, &str, &[&str])] = &[
    (
        "create a table",
        "CREATE TABLE accounts (id integer PRIMARY KEY, name text, balance numeric(10,2));
         INSERT INTO accounts SELECT g, 'name ' || g, g * 1.25 FROM generate_series(1, 50) g;",
        &[],
    ),
    (
        "add a column with a constant default",
        "ALTER TABLE accounts ADD COLUMN tier text NOT NULL DEFAULT 'basic';
         INSERT INTO accounts (id, name, balance, tier) VALUES (51, 'new', 1.5, 'gold');
         UPDATE accounts SET tier = 'silver' WHERE id = 2;",
        &["accounts"],
    ),
    (
        "rename a column",
        "ALTER TABLE accounts RENAME COLUMN name TO full_name;
         INSERT INTO accounts (id, full_name, balance) VALUES (52, 'renamed', 2.5);
         UPDATE accounts SET full_name = 'changed' WHERE id = 3;",
        &["accounts"],
    ),
    (
        "widen a type (the source rewrites the table: copied again)",
        "ALTER TABLE accounts ALTER COLUMN balance TYPE numeric(20,4);
         INSERT INTO accounts (id, full_name, balance) VALUES (53, 'wide', 12345678901234.5678);",
        &[],
    ),
    (
        "create indexes",
        "CREATE INDEX accounts_tier ON accounts (tier);
         CREATE UNIQUE INDEX accounts_full_name ON accounts (full_name);
         INSERT INTO accounts (id, full_name, balance) VALUES (54, 'indexed', 3);",
        &[],
    ),
    (
        "drop not null",
        "ALTER TABLE accounts ALTER COLUMN tier DROP NOT NULL;
         INSERT INTO accounts (id, full_name, balance, tier) VALUES (55, 'no tier', 4, NULL);",
        &[],
    ),
    (
        "drop an index, then an indexed column",
        "DROP INDEX accounts_full_name;
         ALTER TABLE accounts DROP COLUMN tier;
         UPDATE accounts SET balance = balance + 1 WHERE id <= 10;",
        &[],
    ),
    (
        "a table without a primary key gets one",
        "CREATE TABLE events (id bigint NOT NULL, kind text NOT NULL, payload text);
         INSERT INTO events SELECT g, 'k' || (g % 3), 'p' || g FROM generate_series(1, 30) g;
         ALTER TABLE events ADD PRIMARY KEY (id);
         UPDATE events SET payload = 'updated' WHERE id <= 5;
         DELETE FROM events WHERE id = 30;",
        &["accounts", "events"],
    ),
    (
        "change a primary key (a text column joins it)",
        "ALTER TABLE events DROP CONSTRAINT events_pkey, ADD PRIMARY KEY (id, kind);
         INSERT INTO events VALUES (31, 'k1', 'after the key change');
         UPDATE events SET payload = 'again' WHERE id = 6;",
        &["accounts", "events"],
    ),
    (
        "rename a table",
        "ALTER TABLE accounts RENAME TO customers;
         INSERT INTO customers (id, full_name, balance) VALUES (56, 'customer', 5);",
        &[],
    ),
    (
        "narrow a type where the data fits",
        "ALTER TABLE customers ALTER COLUMN balance TYPE numeric(18,4);
         UPDATE customers SET balance = 7.25 WHERE id = 1;",
        &[],
    ),
    (
        "add a column with a stable default",
        "ALTER TABLE events ADD COLUMN created timestamptz DEFAULT now();
         INSERT INTO events (id, kind, payload) VALUES (32, 'k2', 'with a default');",
        &["customers", "events"],
    ),
    (
        "add a column with a volatile default (the source rewrites the table: copied again)",
        "ALTER TABLE events ADD COLUMN seq bigserial;
         INSERT INTO events (id, kind, payload) VALUES (33, 'k2', 'with defaults');",
        &[],
    ),
    (
        "create and drop a table",
        "CREATE TABLE scratch (id integer PRIMARY KEY, note text);
         INSERT INTO scratch VALUES (1, 'short-lived');
         DROP TABLE scratch;",
        &[],
    ),
    (
        "an index on the renamed table",
        "CREATE INDEX customers_balance ON customers (balance);
         UPDATE customers SET balance = 8 WHERE id = 2;",
        &[],
    ),
    (
        "a change Cascade does not replicate",
        "ALTER TYPE mood ADD VALUE 'meh';",
        &[],
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_script_reaches_every_replica_in_order() {
    let s = services();
    let name = unique("ddl");
    let source_url = testkit::create_pg_db(&s.source_url, &name).await;
    let source = connect(&source_url).await;
    source
        .batch_execute("CREATE TYPE mood AS ENUM ('ok')")
        .await
        .unwrap();
    let mut targets = Vec::new();
    for engine in [Engine::Postgres, Engine::MySql, Engine::Sqlite] {
        targets.push(Target::create(&s, engine, &name).await);
    }
    let prefix = unique("ddl");
    let cdc = start_cdc(&s, &source_url, &name, &prefix);
    assert!(
        cdc.log_text().contains("schema_changes=true"),
        "cdc did not install the schema-change triggers:\n{}",
        cdc.log_text()
    );
    let mut routers: Vec<Process> = targets
        .iter()
        .map(|t| start_router(&s, t, &prefix, &[]))
        .collect();
    for (i, (what, sql, check)) in STEPS.iter().enumerate() {
        source
            .batch_execute(&format!("BEGIN; {sql} COMMIT;"))
            .await
            .unwrap_or_else(|e| panic!("step {what}: {e}"));
        if i == 1 {
            // SIGKILL the MariaDB router as soon as the column is there, before (or while) the rows
            // after it are applied: the restarted router goes on from its replica's position.
            let mysql = &targets[1];
            wait_for(
                Duration::from_secs(60),
                "tier on the MariaDB replica",
                || {
                    let shape = tokio::task::block_in_place(|| {
                        tokio::runtime::Handle::current().block_on(replica_shape(
                            mysql.engine,
                            &mysql.url,
                            "accounts",
                        ))
                    });
                    shape
                        .filter(|s| s.columns.iter().any(|c| c == "tier"))
                        .map(|_| ())
                },
            );
            routers[1].kill9();
            routers[1] = start_router(&s, mysql, &prefix, &[]);
        }
        if !check.is_empty() {
            let tables_now: Vec<&str> = check.to_vec();
            wait_equal(
                &source,
                &targets,
                &routers,
                &tables_now,
                Duration::from_secs(60),
                &format!("after step {what:?}"),
            )
            .await;
        }
    }
    wait_equal(
        &source,
        &targets,
        &routers,
        &["customers", "events"],
        Duration::from_secs(120),
        "after the migration script",
    )
    .await;
    for target in &targets {
        let indexes = replica_indexes(target.engine, &target.url, "customers").await;
        assert_eq!(
            indexes,
            ["customers_balance"],
            "{:?}: accounts_tier went with its column, accounts_full_name was dropped, customers_balance \
             was created",
            target.engine
        );
    }
    let metrics = cdc.metrics();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("cdc_schema_changes_total{result=\"unsupported\"}")),
        "the enum change was not counted as unsupported:\n{metrics}"
    );
    assert!(
        cdc.log_text().contains("ALTER TYPE"),
        "the enum change was not logged"
    );
    assert_no_partition_stopped(&routers);
    drop(routers);
    drop(cdc);
    testkit::drop_slot(&s.source_url, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_initialised_and_run_on_a_live_pipeline() {
    let s = services();
    let name = unique("ddlbench");
    let source_url = testkit::create_pg_db(&s.source_url, &name).await;
    let source = connect(&source_url).await;
    let mut targets = Vec::new();
    for engine in [Engine::Postgres, Engine::MySql, Engine::Sqlite] {
        targets.push(Target::create(&s, engine, &name).await);
    }
    let prefix = unique("ddlbench");
    let cdc = start_cdc(&s, &source_url, &name, &prefix);
    let routers: Vec<Process> = targets
        .iter()
        .map(|t| start_router(&s, t, &prefix, &[]))
        .collect();
    // pgbench as a user runs it: drop, create, load, vacuum, then primary keys.
    let init = pgbench(&s, &source_url, &["-i", "-s", "1", "-q"])
        .output()
        .expect("pgbench -i");
    assert!(
        init.status.success(),
        "pgbench -i: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let run = pgbench(&s, &source_url, &["-n", "-c", "2", "-j", "2", "-T", "15"])
        .output()
        .expect("pgbench -T 15");
    assert!(
        run.status.success(),
        "pgbench -T 15: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    wait_equal(
        &source,
        &targets,
        &routers,
        &[
            "pgbench_accounts",
            "pgbench_branches",
            "pgbench_history",
            "pgbench_tellers",
        ],
        Duration::from_secs(180),
        "after pgbench -i and -T 15",
    )
    .await;
    assert_no_partition_stopped(&routers);
    drop(routers);
    drop(cdc);
    testkit::drop_slot(&s.source_url, &name).await;
}
