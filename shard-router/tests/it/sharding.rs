//! Sharded fan-out: a multi-tenant primary routed over two shards by a routing file. Shard `a` goes
//! to MariaDB and to SQLite (two replicas, two consumer groups), shard `b` to PostgreSQL, with two
//! routers per (shard, replica). During the workload one router is SIGKILLed, one is added, and
//! shard b's replica is unreachable for a while. In the end every replica holds exactly its shard's
//! tenants' rows plus every broadcast row, equal to the source.

use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use shared::shards::ShardMap;
use testkit::compare::source_rows_where;

use crate::support::*;

const ROUTING: &str = r#"
[[shards]]
name = "a"
[[shards]]
name = "b"

[tables."public.organizations"]
shard_key = "id"
[tables."public.users"]
shard_key = "org_id"
[tables."public.projects"]
shard_key = "org_id"
[tables."public.invoices"]
shard_key = "org_id"
[tables."public.plans"]
broadcast = true
[tables."public.countries"]
broadcast = true

[routing]
rule = "hash"
"#;

const SCHEMA: &str = "
CREATE TABLE plans (id integer PRIMARY KEY, name text NOT NULL, price numeric(10,2));
CREATE TABLE countries (code char(2) PRIMARY KEY, name text NOT NULL);
CREATE TABLE organizations (id integer PRIMARY KEY, name text NOT NULL, plan_id integer, country char(2));
CREATE TABLE users (id integer PRIMARY KEY, org_id integer NOT NULL, email text NOT NULL, active boolean);
CREATE TABLE projects (id integer PRIMARY KEY, org_id integer NOT NULL, name text, created_at timestamptz);
CREATE TABLE invoices (id integer PRIMARY KEY, org_id integer NOT NULL, amount numeric(12,2), paid boolean);
-- The shard key is not part of these primary keys: deletes must carry it.
ALTER TABLE users REPLICA IDENTITY FULL;
ALTER TABLE projects REPLICA IDENTITY FULL;
ALTER TABLE invoices REPLICA IDENTITY FULL;
";

const SHARDED: &[(&str, &str)] = &[
    ("organizations", "id"),
    ("users", "org_id"),
    ("projects", "org_id"),
    ("invoices", "org_id"),
];
const BROADCAST: &[&str] = &["plans", "countries"];

/// One tenant's rows, in one transaction.
fn tenant(org: i32) -> String {
    format!(
        "BEGIN;
         INSERT INTO organizations VALUES ({org}, 'Org {org}', {plan}, 'FR');
         INSERT INTO users SELECT {org} * 100 + g, {org}, 'u' || g || '@org{org}.example', true FROM generate_series(1, 5) g;
         INSERT INTO projects SELECT {org} * 100 + g, {org}, 'p' || g, '2026-01-01 00:00:00+00' FROM generate_series(1, 2) g;
         INSERT INTO invoices SELECT {org} * 100 + g, {org}, g * 10.25, false FROM generate_series(1, 3) g;
         COMMIT;",
        plan = 1 + org % 3
    )
}

async fn wait_equal(
    source: &tokio_postgres::Client,
    target: &Target,
    orgs: &[i32],
    routers: &mut [Process],
) {
    let list = orgs
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let mut problems = Vec::new();
        for (table, key) in SHARDED {
            let want = source_rows_where(source, table, &format!("{key} IN ({list})"), false).await;
            let got = replica_rows(target.engine, &target.url, source, table).await;
            if let Some(d) = diff(&want, got.as_ref()) {
                problems.push(format!("{table}: {d}"));
            }
        }
        for table in BROADCAST {
            let want = source_rows(source, table, false).await;
            let got = replica_rows(target.engine, &target.url, source, table).await;
            if let Some(d) = diff(&want, got.as_ref()) {
                problems.push(format!("{table}: {d}"));
            }
        }
        if problems.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = routers
                .iter_mut()
                .map(|r| {
                    let running = r.running();
                    format!("--- {} (running: {running})\n{}", r.name, r.log_text())
                })
                .collect();
            panic!(
                "the {:?} replica of orgs {list} did not converge:\n{}\n{}",
                target.engine,
                problems.join("\n"),
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_reach_their_shard_through_router_crashes_scaling_and_a_replica_outage() {
    let s = services();
    let name = unique("shard");
    let map = ShardMap::parse(ROUTING).unwrap();
    let orgs: Vec<i32> = (1..=12).collect();
    let shard_of = |org: i32| {
        let raw = RawValue::from_string(org.to_string()).unwrap();
        map.shard_of("public.organizations", "id", &raw).unwrap()
    };
    let (orgs_a, orgs_b): (Vec<i32>, Vec<i32>) = orgs.iter().partition(|&&o| shard_of(o) == 0);
    assert!(
        !orgs_a.is_empty() && !orgs_b.is_empty(),
        "the hash should spread 12 orgs over both shards"
    );

    let source_url = testkit::create_pg_db(&s.source_url, &name).await;
    let source = connect(&source_url).await;
    source.batch_execute(SCHEMA).await.expect("schema");
    let file = std::env::temp_dir().join(format!("{name}.toml"));
    std::fs::write(&file, ROUTING).unwrap();
    let file = file.to_str().unwrap().to_owned();

    let mysql_a = Target::create(&s, Engine::MySql, &format!("{name}_a")).await;
    let sqlite_a = Target::create(&s, Engine::Sqlite, &format!("{name}_a")).await;
    let pg_b = Target::create(&s, Engine::Postgres, &format!("{name}_b")).await;
    // Shard b's routers reach their replica through a proxy the test can cut.
    let upstream = s
        .replica_pg_url
        .rsplit_once('@')
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(hostport, _)| hostport.to_owned())
        .expect("host:port in REPLICA_PG_URL");
    let proxy = testkit::TcpProxy::start(&upstream).await;
    let pg_b_routed = Target {
        engine: Engine::Postgres,
        url: pg_b
            .url
            .replace(&upstream, &format!("127.0.0.1:{}", proxy.port)),
    };

    let prefix = unique("shard");
    let cdc = start_cdc_with(&s, &source_url, &name, &prefix, &["--config", &file]);
    let start = |target: &Target, shard: &str| {
        start_router(
            &s,
            target,
            &prefix,
            &[
                "--shard",
                shard,
                "--config",
                &file,
                "--batch-max-rows",
                "50",
            ],
        )
    };
    let mut routers = vec![
        start(&mysql_a, "a"),
        start(&mysql_a, "a"),
        start(&sqlite_a, "a"),
        start(&sqlite_a, "a"),
        start(&pg_b_routed, "b"),
        start(&pg_b_routed, "b"),
    ];
    for r in routers.iter_mut() {
        r.wait_ready(Duration::from_secs(60));
    }

    source
        .batch_execute(
            "INSERT INTO plans VALUES (1, 'free', 0), (2, 'team', 49.90), (3, 'enterprise', 999.99);
             INSERT INTO countries VALUES ('FR', 'France'), ('DE', 'Germany'), ('JP', 'Japan');",
        )
        .await
        .unwrap();
    for &org in &orgs {
        source.batch_execute(&tenant(org)).await.unwrap();
    }
    // Everything reached the replicas once before the trouble starts.
    wait_equal(&source, &mysql_a, &orgs_a, &mut routers).await;

    // Trouble: a router dies without leaving, shard b's replica goes away, a router is added.
    routers[0].kill9();
    proxy.stop();
    let writer = {
        let url = source_url.clone();
        let orgs = orgs.clone();
        tokio::spawn(async move {
            let c = connect(&url).await;
            for round in 0..20 {
                for &org in &orgs {
                    c.batch_execute(&format!(
                        "BEGIN;
                         UPDATE invoices SET amount = amount + 1, paid = NOT paid WHERE org_id = {org};
                         UPDATE users SET active = NOT active WHERE id = {org} * 100 + 1 + {round} % 5;
                         COMMIT;"
                    ))
                    .await
                    .unwrap();
                }
            }
            c.batch_execute(
                "DELETE FROM users WHERE id % 100 = 5;
                 DELETE FROM projects WHERE id % 100 = 2;
                 UPDATE plans SET price = price * 2;
                 INSERT INTO countries VALUES ('BR', 'Brazil');
                 UPDATE organizations SET plan_id = 3 WHERE id % 2 = 0;",
            )
            .await
            .unwrap();
        })
    };
    routers.push(start(&sqlite_a, "a"));
    let last = routers.len() - 1;
    routers[last].wait_ready(Duration::from_secs(60));
    writer.await.unwrap();

    // A user moves to a tenant on the other shard: deleted on one, upserted on the other.
    let (from, to) = (orgs_a[0], orgs_b[0]);
    source
        .batch_execute(&format!(
            "UPDATE users SET org_id = {to} WHERE id = {from} * 100 + 1"
        ))
        .await
        .unwrap();

    // Isolation: shard a catches up while shard b's replica is still unreachable.
    wait_equal(&source, &mysql_a, &orgs_a, &mut routers).await;
    wait_equal(&source, &sqlite_a, &orgs_a, &mut routers).await;
    let b_routers = [4, 5];
    assert!(
        b_routers
            .iter()
            .any(|&i| routers[i].log_text().contains("waiting for the replica")),
        "shard b's routers should be waiting for their replica"
    );
    proxy.resume().await;
    wait_equal(&source, &pg_b, &orgs_b, &mut routers).await;

    assert!(
        routers[1]
            .metrics()
            .contains("router_consumer_lag_messages{partition="),
        "no consumer lag reported"
    );
    // The killed router's partitions moved to the survivor of its group; the added router took some.
    let assignments = |r: &Process| r.log_text().matches("partitions assigned").count();
    assert!(
        assignments(&routers[1]) >= 2,
        "the survivor was never reassigned:\n{}",
        routers[1].log_text()
    );
    assert!(
        routers[last].log_text().contains("partition task started"),
        "the added router never got a partition:\n{}",
        routers[last].log_text()
    );
    for r in routers.iter_mut() {
        if !r.running() {
            continue;
        }
        assert_eq!(
            metric_sum(&r.metrics(), "router_partitions_stopped"),
            0.0,
            "{}",
            r.log_text()
        );
    }
    drop(routers);
    drop(cdc);
    testkit::drop_slot(&s.source_url, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_refuses_to_start_when_updates_and_deletes_would_lack_the_shard_key() {
    let s = services();
    let name = unique("ident");
    let source_url = testkit::create_pg_db(&s.source_url, &name).await;
    let source = connect(&source_url).await;
    source
        .batch_execute(
            "CREATE TABLE users (id integer PRIMARY KEY, org_id integer);
             CREATE TABLE projects (id integer PRIMARY KEY, org_id integer);
             ALTER TABLE projects REPLICA IDENTITY FULL;",
        )
        .await
        .unwrap();
    let file = std::env::temp_dir().join(format!("{name}.toml"));
    std::fs::write(
        &file,
        "[[shards]]\nname = \"a\"\n[tables.\"public.users\"]\nshard_key = \"org_id\"\n[tables.\"public.projects\"]\nshard_key = \"org_id\"\n",
    )
    .unwrap();
    let prefix = unique("ident");
    // cdc exits 2 before creating its slot, naming public.users (only) and the statement that fixes it.
    let (code, err) = testkit::run_to_exit(
        &cdc_bin(),
        &[
            "--source-url",
            &source_url,
            "--kafka-brokers",
            &s.kafka,
            "--slot",
            &name,
            "--topic-prefix",
            &prefix,
            "--config",
            file.to_str().unwrap(),
            "--http-addr",
            "127.0.0.1:0",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("public.users (shard key org_id)")
            && err.contains("ALTER TABLE public.users REPLICA IDENTITY FULL;"),
        "{err}"
    );
    assert!(!err.contains("public.projects"), "{err}");
    let slot: Option<tokio_postgres::Row> = source
        .query_opt(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
            &[&name],
        )
        .await
        .unwrap();
    assert!(slot.is_none(), "cdc created its slot before refusing");

    // Once fixed, cdc starts.
    source
        .batch_execute("ALTER TABLE users REPLICA IDENTITY FULL")
        .await
        .unwrap();
    let cdc = start_cdc_with(
        &s,
        &source_url,
        &name,
        &prefix,
        &["--config", file.to_str().unwrap()],
    );
    drop(cdc);
    testkit::drop_slot(&s.source_url, &name).await;
}
