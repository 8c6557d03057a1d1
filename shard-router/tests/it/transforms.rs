//! Privacy transforms end to end: a source with personal data and column rules in a routing file that
//! holds only transforms → no raw value of a transformed column in any Kafka message (value or key) or
//! any replica (MariaDB, SQLite, PostgreSQL); `hash` is HMAC-SHA256 under CASCADE_TRANSFORM_KEY, so
//! hashed e-mails still join across tables; `fake-name` is deterministic and never the original;
//! `drop` leaves the column off the replica; every other column equals the source.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use sha2::Sha256;
use std::str::FromStr;

use sqlx::{ConnectOptions, Row};

use crate::support::*;

const KEY: &str = "a transform key for the test";

const SCHEMA: &str = "
CREATE TABLE customers (
    id integer PRIMARY KEY, email varchar(40) NOT NULL, full_name text, phone varchar(24),
    ssn text, born date, notes text, plan text
);
CREATE TABLE orders (id integer PRIMARY KEY, customer_email varchar(40), amount numeric(12,2));
CREATE TABLE subscribers (email varchar(40) PRIMARY KEY, since date);
";

const ROUTING: &str = r#"
[tables."public.customers".transform]
email = "hash"
full_name = "fake-name"
phone = "mask"
ssn = "null"
born = "truncate-date"
notes = "drop"

[tables."public.orders".transform]
customer_email = "hash"

# A hashed primary key: the Kafka key is derived from the hash, never from the address.
[tables."public.subscribers".transform]
email = "hash"
"#;

fn email(i: i32) -> String {
    format!("person{i}@corp.example")
}
fn full_name(i: i32) -> String {
    // Customers 1 and 2 share a name: their fakes must be equal.
    if i <= 2 {
        "Ada Lovelace".into()
    } else {
        format!("Grace Hopper{i}")
    }
}
fn phone(i: i32) -> String {
    format!("+44 20 7946 {:04}", 1000 + i)
}
fn ssn(i: i32) -> String {
    format!("078-05-{:04}", 1100 + i)
}
fn born(i: i32) -> String {
    format!("1990-0{i}-1{i}")
}
fn note(i: i32) -> String {
    format!("private note number {i}")
}

fn hmac_hex(text: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(text.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every value the topic and replicas must never hold.
fn secrets() -> Vec<String> {
    (1..=6)
        .flat_map(|i| [email(i), full_name(i), phone(i), ssn(i), born(i), note(i)])
        .collect()
}

/// Every message (key and value, as text) of the topic, once `expected` row changes are there.
fn read_topic(brokers: &str, topic: &str, expected: usize) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("transforms-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions = metadata.topics()[0].partitions().len();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p as i32, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet_since = Instant::now();
    loop {
        match consumer.poll(Duration::from_millis(200)) {
            Some(m) => {
                let m = m.unwrap();
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                out.push(format!("{key} {value}"));
                quiet_since = Instant::now();
            }
            None => {
                let rows = out
                    .iter()
                    .filter(|m| {
                        m.contains("\"action\":\"I\"")
                            || m.contains("\"action\":\"U\"")
                            || m.contains("\"action\":\"D\"")
                    })
                    .count();
                if rows >= expected && quiet_since.elapsed() > Duration::from_secs(1) {
                    return out;
                }
                assert!(
                    Instant::now() < deadline,
                    "only {rows} of {expected} row changes reached {topic} within 60s"
                );
            }
        }
    }
}

/// Rows of a query on a replica, every column read as text.
async fn try_query(target: &Target, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    match target.engine {
        Engine::Postgres => {
            let c = connect(&target.url).await;
            let rows = c.query(sql, &[]).await.map_err(|e| e.to_string())?;
            Ok(rows
                .iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| r.get::<_, Option<String>>(i))
                        .collect()
                })
                .collect())
        }
        Engine::MySql => {
            let mut c = sqlx::mysql::MySqlConnectOptions::from_str(&target.url)
                .map_err(|e| e.to_string())?
                .connect()
                .await
                .map_err(|e| e.to_string())?;
            let rows = sqlx::query(sql)
                .fetch_all(&mut c)
                .await
                .map_err(|e| e.to_string())?;
            rows.iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| r.try_get::<Option<String>, _>(i).map_err(|e| e.to_string()))
                        .collect()
                })
                .collect()
        }
        Engine::Sqlite => {
            let mut c = sqlx::sqlite::SqliteConnectOptions::from_str(&target.url)
                .map_err(|e| e.to_string())?
                .read_only(true)
                .connect()
                .await
                .map_err(|e| e.to_string())?;
            let rows = sqlx::query(sql)
                .fetch_all(&mut c)
                .await
                .map_err(|e| e.to_string())?;
            rows.iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| r.try_get::<Option<String>, _>(i).map_err(|e| e.to_string()))
                        .collect()
                })
                .collect()
        }
    }
}

async fn replica_query(target: &Target, sql: &str) -> Vec<Vec<Option<String>>> {
    try_query(target, sql)
        .await
        .unwrap_or_else(|e| panic!("{:?} replica: {sql}: {e}", target.engine))
}

/// The replica's customers as text, by id: (email, full_name, phone, ssn, born, plan).
async fn customers(target: &Target) -> BTreeMap<i32, Vec<Option<String>>> {
    let cast = |c: &str| match target.engine {
        Engine::Postgres => format!("{c}::text"),
        Engine::MySql => format!("CAST({c} AS CHAR)"),
        Engine::Sqlite => format!("CAST({c} AS TEXT)"),
    };
    let cols = ["id", "email", "full_name", "phone", "ssn", "born", "plan"]
        .map(cast)
        .join(", ");
    replica_query(target, &format!("SELECT {cols} FROM customers"))
        .await
        .into_iter()
        .map(|mut r| {
            let id: i32 = r.remove(0).unwrap().parse().unwrap();
            (id, r)
        })
        .collect()
}

/// Waits until each table of the replica holds its number of rows.
async fn wait_for_rows(
    target: &Target,
    want: &[(&str, usize)],
    cdc: &mut Process,
    router: &mut Process,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let count = |t: &str| match target.engine {
        Engine::Postgres => format!("SELECT COUNT(*)::text FROM {t}"),
        Engine::MySql => format!("SELECT CAST(COUNT(*) AS CHAR) FROM {t}"),
        Engine::Sqlite => format!("SELECT CAST(COUNT(*) AS TEXT) FROM {t}"),
    };
    loop {
        let mut got = Vec::new();
        for (table, _) in want {
            // A table appears with its first rows: until then the query fails.
            let n = try_query(target, &count(table))
                .await
                .ok()
                .and_then(|mut rows| rows.pop()?.pop()?)
                .and_then(|n| n.parse::<usize>().ok());
            got.push(n);
        }
        if got.iter().zip(want).all(|(n, (_, w))| *n == Some(*w)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the {:?} replica did not reach {want:?} rows within 120s (has {got:?})\n--- cdc\n{}\n--- router\n{}",
            target.engine,
            cdc.log_text(),
            router.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensitive_columns_never_leave_the_primary_in_the_clear() {
    let s = services();
    let name = unique("xform");
    let source_url = testkit::create_pg_db(&s.source_url, &name).await;
    let source = connect(&source_url).await;
    source.batch_execute(SCHEMA).await.expect("schema");
    let routing = std::env::temp_dir().join(format!("{name}.toml"));
    std::fs::write(&routing, ROUTING).unwrap();
    let routing_arg = routing.display().to_string();

    // A keyed rule without the key: cdc refuses to start, naming the variable.
    let (code, out) = testkit::run_to_exit(
        &cdc_bin(),
        &[
            "--source-url",
            &source_url,
            "--kafka-brokers",
            &s.kafka,
            "--config",
            &routing_arg,
        ],
        Duration::from_secs(30),
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("CASCADE_TRANSFORM_KEY"), "{out}");

    let slot = name.replace('-', "_");
    let mut cdc = start_cdc_env(
        &s,
        &source_url,
        &slot,
        &name,
        &["--config", &routing_arg],
        &[("CASCADE_TRANSFORM_KEY", KEY)],
    );
    assert!(
        !cdc.log_text().contains(KEY),
        "the key must never be logged"
    );

    for i in 1..=6 {
        source
            .execute(
                "INSERT INTO customers VALUES ($1, $2, $3, $4, $5, $6::text::date, $7, $8)",
                &[
                    &i,
                    &email(i),
                    &full_name(i),
                    &phone(i),
                    &ssn(i),
                    &born(i),
                    &note(i),
                    &(if i % 2 == 0 { "pro" } else { "free" }),
                ],
            )
            .await
            .unwrap();
    }
    source
        .batch_execute(
            "INSERT INTO orders SELECT g, 'person' || (g % 6 + 1) || '@corp.example', g * 10.5
               FROM generate_series(1, 9) g;
             UPDATE customers SET phone = '+44 20 7946 2003', plan = 'enterprise' WHERE id = 3;
             DELETE FROM customers WHERE id = 6;
             INSERT INTO subscribers SELECT 'person' || g || '@corp.example', '2026-01-01' FROM generate_series(1, 3) g;
             DELETE FROM subscribers WHERE email = 'person3@corp.example';",
        )
        .await
        .unwrap();

    // Kafka: 6 + 9 + 3 inserts, an update and two deletes; no raw value anywhere, keys included.
    let messages = read_topic(&s.kafka, &format!("{name}.main"), 21);
    for secret in secrets().iter().chain([&"+44 20 7946 2003".to_owned()]) {
        if let Some(m) = messages.iter().find(|m| m.contains(secret.as_str())) {
            panic!("{secret:?} reached Kafka: {m}");
        }
    }
    assert!(messages.iter().any(|m| m.contains(&hmac_hex(&email(1)))));

    let mut results = Vec::new();
    for engine in [Engine::MySql, Engine::Sqlite, Engine::Postgres] {
        let target = Target::create(&s, engine, &format!("{name}_{engine:?}").to_lowercase()).await;
        let mut router = start_router(&s, &target, &name, &[]);
        wait_for_rows(
            &target,
            &[("customers", 5), ("orders", 9), ("subscribers", 2)],
            &mut cdc,
            &mut router,
        )
        .await;
        let subscribers = match engine {
            Engine::MySql => "SELECT CAST(email AS CHAR) FROM subscribers",
            _ => "SELECT email FROM subscribers",
        };
        let subscribers = replica_query(&target, subscribers).await;
        let mut got: Vec<String> = subscribers
            .into_iter()
            .filter_map(|mut r| r.remove(0))
            .collect();
        got.sort();
        let mut want = vec![hmac_hex(&email(1)), hmac_hex(&email(2))];
        want.sort();
        assert_eq!(got, want, "{engine:?} subscribers");
        let rows = customers(&target).await;
        for (id, row) in &rows {
            let i = *id;
            let [email_v, name_v, phone_v, ssn_v, born_v, plan_v] = row.as_slice() else {
                panic!("{row:?}")
            };
            assert_eq!(
                email_v.as_deref(),
                Some(hmac_hex(&email(i)).as_str()),
                "{engine:?} email of {i}"
            );
            let fake = name_v.as_deref().unwrap();
            assert_ne!(
                fake,
                full_name(i),
                "{engine:?}: fake-name equals the original"
            );
            assert_eq!(
                fake.split(' ').count(),
                2,
                "{engine:?}: {fake:?} is not a full name"
            );
            let raw_phone = if i == 3 {
                "+44 20 7946 2003".to_owned()
            } else {
                phone(i)
            };
            let masked: String = raw_phone
                .chars()
                .enumerate()
                .map(|(n, c)| {
                    if n + 4 < raw_phone.chars().count() {
                        '*'
                    } else {
                        c
                    }
                })
                .collect();
            assert_eq!(
                phone_v.as_deref(),
                Some(masked.as_str()),
                "{engine:?} phone of {i}"
            );
            assert_eq!(ssn_v, &None, "{engine:?} ssn of {i}");
            assert_eq!(
                born_v.as_deref(),
                Some(format!("1990-0{i}-01").as_str()),
                "{engine:?} born of {i}"
            );
            let plan = match i {
                3 => "enterprise",
                _ if i % 2 == 0 => "pro",
                _ => "free",
            };
            assert_eq!(plan_v.as_deref(), Some(plan), "{engine:?} plan of {i}");
        }
        assert_eq!(
            rows.keys().copied().collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        // Deterministic: the same name gives the same fake.
        assert_eq!(
            rows[&1][1], rows[&2][1],
            "{engine:?}: fake-name is not deterministic"
        );
        // Dropped: the column does not exist on the replica.
        let has_notes = match engine {
            Engine::Postgres => "SELECT COUNT(*)::text FROM information_schema.columns WHERE table_name = 'customers' AND column_name = 'notes'",
            Engine::MySql => "SELECT CAST(COUNT(*) AS CHAR) FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'customers' AND column_name = 'notes'",
            Engine::Sqlite => "SELECT CAST(COUNT(*) AS TEXT) FROM pragma_table_info('customers') WHERE name = 'notes'",
        };
        assert_eq!(
            replica_query(&target, has_notes).await[0][0].as_deref(),
            Some("0"),
            "{engine:?}: notes reached the replica"
        );
        // Hashed e-mails join across tables exactly as the raw ones do on the source.
        let join = "SELECT CAST(COUNT(*) AS CHAR) FROM orders o JOIN customers c ON c.email = o.customer_email";
        let join = match engine {
            Engine::Postgres => join.replace("CAST(COUNT(*) AS CHAR)", "COUNT(*)::text"),
            Engine::Sqlite => join.replace("AS CHAR", "AS TEXT"),
            Engine::MySql => join.to_owned(),
        };
        let want: i64 = source
            .query_one(
                "SELECT COUNT(*) FROM orders o JOIN customers c ON c.email = o.customer_email",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            replica_query(&target, &join).await[0][0].as_deref(),
            Some(want.to_string().as_str()),
            "{engine:?} join"
        );
        // Untransformed columns equal the source, value for value.
        let amounts = match engine {
            Engine::Postgres => "SELECT string_agg(amount::text, ',' ORDER BY id) FROM orders",
            Engine::MySql => "SELECT GROUP_CONCAT(CAST(amount AS CHAR) ORDER BY id) FROM orders",
            Engine::Sqlite => {
                "SELECT GROUP_CONCAT(amount, ',') FROM (SELECT amount FROM orders ORDER BY id)"
            }
        };
        let want: String = source
            .query_one(
                "SELECT string_agg(amount::text, ',' ORDER BY id) FROM orders",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            replica_query(&target, amounts).await[0][0].as_deref(),
            Some(want.as_str()),
            "{engine:?} amounts"
        );
        // Nothing raw on the replica either.
        let all = format!("{rows:?}");
        for secret in secrets() {
            assert!(!all.contains(&secret), "{engine:?} holds {secret:?}");
        }
        router.terminate(Duration::from_secs(30));
        results.push(rows);
    }
    // The same fakes on every replica.
    assert!(
        results.windows(2).all(|w| w[0] == w[1]),
        "replicas disagree: {results:?}"
    );
    cdc.terminate(Duration::from_secs(30));
    testkit::drop_slot(&s.source_url, &slot).await;
    let _ = std::fs::remove_file(routing);
}
