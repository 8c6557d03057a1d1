//! Support for the end-to-end tests: fresh replica databases of each engine, the cdc and router
//! processes, and a comparison of a source table with its replica that normalises values by type
//! (numeric as exact decimals, timestamps as UTC instants, json as parsed JSON, bytea as bytes).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::ConnectOptions;
pub use testkit::compare::{diff, replica_rows, source_rows, Engine};
pub use testkit::{connect, services, unique, wait_for, Process, Services};

/// A fresh, empty replica database.
#[derive(Clone, Debug)]
pub struct Target {
    pub engine: Engine,
    pub url: String,
}

impl Target {
    pub async fn create(s: &Services, engine: Engine, name: &str) -> Target {
        let url = match engine {
            Engine::MySql => {
                let mut conn = sqlx::mysql::MySqlConnectOptions::from_str(&s.mysql_url)
                    .unwrap()
                    .connect()
                    .await
                    .unwrap_or_else(|e| panic!("cannot connect to MariaDB: {e}"));
                sqlx::query(&format!("CREATE DATABASE `{name}`"))
                    .execute(&mut conn)
                    .await
                    .expect("create replica database");
                testkit::with_db(&s.mysql_url, name)
            }
            Engine::Sqlite => {
                let dir = PathBuf::from(s.sqlite_url.trim_start_matches("sqlite://"))
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(std::env::temp_dir);
                std::fs::create_dir_all(&dir).unwrap();
                format!("sqlite://{}/{name}.db", dir.display())
            }
            Engine::Postgres => testkit::create_pg_db(&s.replica_pg_url, name).await,
        };
        Target { engine, url }
    }
}

pub fn router_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shard-router"))
}

pub fn cdc_bin() -> PathBuf {
    testkit::sibling_binary(env!("CARGO_BIN_EXE_shard-router"), "cdc")
}

pub fn start_cdc(s: &Services, source_url: &str, slot: &str, prefix: &str) -> Process {
    start_cdc_with(s, source_url, slot, prefix, &[])
}

pub fn start_cdc_with(
    s: &Services,
    source_url: &str,
    slot: &str,
    prefix: &str,
    extra: &[&str],
) -> Process {
    start_cdc_env(s, source_url, slot, prefix, extra, &[])
}

pub fn start_cdc_env(
    s: &Services,
    source_url: &str,
    slot: &str,
    prefix: &str,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> Process {
    let mut args: Vec<String> = [
        "--source-url",
        source_url,
        "--kafka-brokers",
        &s.kafka,
        "--slot",
        slot,
        "--topic-prefix",
        prefix,
        "--topic-partitions",
        "4",
        "--status-interval",
        "200ms",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(extra.iter().map(|a| a.to_string()));
    let mut all = vec![("RUST_LOG", "info")];
    all.extend_from_slice(envs);
    let mut p = Process::start(&cdc_bin(), &format!("cdc-{slot}"), &args, &all);
    p.wait_ready(Duration::from_secs(60));
    p
}

pub fn start_router(s: &Services, target: &Target, prefix: &str, extra: &[&str]) -> Process {
    start_router_env(s, target, prefix, extra, &[])
}

pub fn start_router_env(
    s: &Services,
    target: &Target,
    prefix: &str,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> Process {
    let mut args: Vec<String> = [
        "--kafka-brokers",
        &s.kafka,
        "--topic-prefix",
        prefix,
        "--replica-url",
        &target.url,
        "--max-backoff",
        "1s",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(extra.iter().map(|a| a.to_string()));
    let mut all = vec![("RUST_LOG", "info,shard_router=debug")];
    all.extend_from_slice(envs);
    Process::start(router_bin(), &format!("router-{prefix}"), &args, &all)
}

/// Fails, with the router's log, when a partition of one of `routers` stopped.
pub fn assert_no_partition_stopped(routers: &[Process]) {
    for router in routers {
        assert_eq!(
            metric_sum(&router.metrics(), "router_partitions_stopped"),
            0.0,
            "a partition stopped:\n{}",
            router.log_text()
        );
    }
}

/// The sum of a counter over all its label sets in a Prometheus text exposition.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| {
            let rest = &l[name.len()..];
            rest.starts_with('{') || rest.starts_with(' ')
        })
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// Produces one message to a partition; returns its offset.
pub async fn produce(
    kafka: &str,
    topic: &str,
    partition: i32,
    value: &[u8],
    headers: &[(&str, &str)],
) -> i64 {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .create()
        .unwrap();
    let mut h = OwnedHeaders::new();
    for (k, v) in headers {
        h = h.insert(Header {
            key: k,
            value: Some(*v),
        });
    }
    let record: FutureRecord<'_, (), [u8]> = FutureRecord::to(topic)
        .partition(partition)
        .payload(value)
        .headers(h);
    let delivery = producer
        .send(record, Duration::from_secs(10))
        .await
        .unwrap_or_else(|(e, _)| panic!("cannot produce to {topic}/{partition}: {e}"));
    delivery.offset
}
