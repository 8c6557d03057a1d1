//! Where a router resumes: from the replica's own position (`_cascade_position.kafka_offset`), never
//! from the consumer group's committed offset alone. A SQLite replica restored from an older copy
//! gets back every row written since the copy; a position the topic cannot serve (here: in a partition
//! that holds no messages) stops the partition with a gap instead of reading on from somewhere else.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::ConnectOptions;

use crate::support::*;

const SCHEMA: &str = "CREATE TABLE t (id integer PRIMARY KEY, v text NOT NULL);";

fn sqlite_path(target: &Target) -> PathBuf {
    PathBuf::from(target.url.trim_start_matches("sqlite://"))
}

/// The database file and its WAL companions, as they exist.
fn sqlite_files(db: &Path) -> Vec<PathBuf> {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| PathBuf::from(format!("{}{suffix}", db.display())))
        .collect()
}

/// Copies the replica's files (the router is stopped) to `<file>.backup`.
fn backup(db: &Path) {
    for file in sqlite_files(db) {
        let copy = PathBuf::from(format!("{}.backup", file.display()));
        let _ = std::fs::remove_file(&copy);
        if file.exists() {
            std::fs::copy(&file, &copy).expect("copy the replica file");
        }
    }
}

/// Puts the copies back in place of the replica's files (the router is stopped).
fn restore(db: &Path) {
    for file in sqlite_files(db) {
        let copy = PathBuf::from(format!("{}.backup", file.display()));
        let _ = std::fs::remove_file(&file);
        if copy.exists() {
            std::fs::copy(&copy, &file).expect("restore the replica file");
        }
    }
}

async fn insert(source: &tokio_postgres::Client, from: i32, to: i32) {
    // Many small transactions, spread over the partitions by key.
    for first in (from..=to).step_by(50) {
        let last = (first + 49).min(to);
        source
            .batch_execute(&format!(
                "INSERT INTO t SELECT g, 'row ' || g FROM generate_series({first}, {last}) g"
            ))
            .await
            .expect("insert rows");
    }
}

/// Waits until the replica's `t` equals the source's; fails naming the difference and the logs.
async fn converges(
    source: &tokio_postgres::Client,
    target: &Target,
    timeout: Duration,
    what: &str,
    router: &Process,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let want = source_rows(source, "t", false).await;
        let got = replica_rows(target.engine, &target.url, source, "t").await;
        let Some(d) = diff(&want, got.as_ref()) else {
            return;
        };
        assert!(
            Instant::now() < deadline,
            "{what}: the replica did not equal the source within {timeout:?}: {d}\nrouter log:\n{}",
            router.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A pipeline cdc → Kafka → router → a SQLite replica, `rows` rows replicated.
struct Pipeline {
    source_url: String,
    source: tokio_postgres::Client,
    target: Target,
    prefix: String,
    slot: String,
    cdc: Process,
}

impl Pipeline {
    async fn start(name: &str) -> Pipeline {
        let s = services();
        let slot = unique(name);
        let source_url = testkit::create_pg_db(&s.source_url, &slot).await;
        let source = connect(&source_url).await;
        source.batch_execute(SCHEMA).await.expect("schema");
        let target = Target::create(&s, Engine::Sqlite, &slot).await;
        let prefix = unique(name);
        let cdc = start_cdc(&s, &source_url, &slot, &prefix);
        Pipeline {
            source_url,
            source,
            target,
            prefix,
            slot,
            cdc,
        }
    }

    fn router(&self) -> Process {
        let mut router = start_router(&services(), &self.target, &self.prefix, &[]);
        router.wait_ready(Duration::from_secs(60));
        router
    }

    async fn stop(self) {
        drop(self.cdc);
        drop(self.source);
        let _ = self.source_url;
        testkit::drop_slot(&services().source_url, &self.slot).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_replica_restored_from_an_older_copy_gets_every_row_back() {
    let p = Pipeline::start("restored").await;
    let db = sqlite_path(&p.target);

    let mut router = p.router();
    insert(&p.source, 1, 500).await;
    converges(
        &p.source,
        &p.target,
        Duration::from_secs(90),
        "500 rows",
        &router,
    )
    .await;
    assert_eq!(router.terminate(Duration::from_secs(30)), 0);
    backup(&db);

    let mut router = p.router();
    insert(&p.source, 501, 1500).await;
    converges(
        &p.source,
        &p.target,
        Duration::from_secs(90),
        "1500 rows",
        &router,
    )
    .await;
    // The group's committed offsets now point past the 1000 rows (committed on the way out).
    assert_eq!(router.terminate(Duration::from_secs(30)), 0);

    // The replica goes back to the copy holding 500 rows.
    restore(&db);
    let router = p.router();
    converges(
        &p.source,
        &p.target,
        Duration::from_secs(90),
        "the restored replica",
        &router,
    )
    .await;
    let log = router.log_text();
    assert!(
        log.contains("from=the replica's position"),
        "the router did not start from the replica's position:\n{log}"
    );
    drop(router);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_in_an_empty_partition_stops_it_with_a_gap() {
    let p = Pipeline::start("gap").await;
    let mut router = p.router();
    // One row: one partition holds messages, the others none.
    insert(&p.source, 1, 1).await;
    converges(
        &p.source,
        &p.target,
        Duration::from_secs(90),
        "1 row",
        &router,
    )
    .await;
    assert_eq!(router.terminate(Duration::from_secs(30)), 0);

    // Positions from elsewhere (another cluster, or the topic was recreated since) for partitions
    // that hold nothing. (A position beyond the end of a partition holding messages is found by
    // the fetch, which Kafka answers with OFFSET_OUT_OF_RANGE; the local broker, tansu, does not,
    // so that case is covered by the unit tests only.)
    let topic = format!("{}.main", p.prefix);
    let mut conn = sqlx::sqlite::SqliteConnectOptions::from_str(&p.target.url)
        .expect("sqlite url")
        .connect()
        .await
        .expect("open the replica");
    let mut added = 0;
    for partition in 0..4 {
        added += sqlx::query(
            "INSERT OR IGNORE INTO _cascade_position \
             (topic, kafka_partition, commit_lsn, partial_lsn, partial_rows, kafka_offset) \
             VALUES (?, ?, 1, 0, 0, 1000000)",
        )
        .bind(&topic)
        .bind(partition)
        .execute(&mut conn)
        .await
        .expect("write a position")
        .rows_affected();
    }
    assert_eq!(
        added, 3,
        "positions for the three empty partitions of {topic}"
    );
    drop(conn);

    let mut router = start_router(&services(), &p.target, &p.prefix, &[]);
    let log = wait_for(
        Duration::from_secs(60),
        "the router to stop a partition with a gap",
        || {
            let log = router.log_text();
            log.contains("partition stopped").then_some(log)
        },
    );
    assert!(
        log.contains(&format!("cannot continue topic {topic} partition"))
            && log.contains("the partition ends before it (it holds no messages")
            && log.contains("Re-create the replica"),
        "the log does not name the gap and the recovery:\n{log}"
    );
    let metrics = wait_for(Duration::from_secs(10), "the stop in the metrics", || {
        let m = router.metrics();
        (metric_sum(&m, "router_partitions_stopped") > 0.0).then_some(m)
    });
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("router_errors_total{") && l.contains("kind=\"gap\"")),
        "no gap error counted:\n{metrics}"
    );
    let ready = testkit::http_get(router.http_port, "/readyz").map(|(code, _)| code);
    assert_eq!(ready, Some(503), "/readyz while a partition is stopped");
    assert!(router.running(), "the other partitions go on");
    drop(router);
    p.stop().await;
}

/// A `_cascade_position` written by a router from before `kafka_offset`: connecting adds the column
/// (-1, unknown, in the existing row), twice without error, and the position reads back unchanged.
async fn an_older_position_table_gains_the_offset_column(engine: Engine) {
    use shard_router::replica::{AnyReplica, Replica};

    let s = services();
    let name = unique("oldpos");
    let target = Target::create(&s, engine, &name).await;
    let old_table = "CREATE TABLE _cascade_position (topic VARCHAR(249) NOT NULL, \
        kafka_partition INT NOT NULL, commit_lsn BIGINT NOT NULL, partial_lsn BIGINT NOT NULL, \
        partial_rows BIGINT NOT NULL, PRIMARY KEY (topic, kafka_partition))";
    let old_row = "INSERT INTO _cascade_position VALUES ('cascade.main', 2, 77, 0, 0)";
    match engine {
        Engine::Sqlite => {
            let mut c = sqlx::sqlite::SqliteConnectOptions::from_str(&target.url)
                .unwrap()
                .create_if_missing(true)
                .connect()
                .await
                .expect("open the replica");
            sqlx::raw_sql(old_table).execute(&mut c).await.unwrap();
            sqlx::raw_sql(old_row).execute(&mut c).await.unwrap();
        }
        Engine::MySql => {
            let mut c = sqlx::mysql::MySqlConnectOptions::from_str(&target.url)
                .unwrap()
                .connect()
                .await
                .expect("open the replica");
            sqlx::raw_sql(old_table).execute(&mut c).await.unwrap();
            sqlx::raw_sql(old_row).execute(&mut c).await.unwrap();
        }
        Engine::Postgres => {
            let c = connect(&target.url).await;
            c.batch_execute(&format!("{old_table}; {old_row}"))
                .await
                .unwrap();
        }
    }
    let url = target.url.parse().expect("replica url");
    for _ in 0..2 {
        let replica = AnyReplica::connect(&url, 1)
            .await
            .unwrap_or_else(|e| panic!("{engine:?}: {}", shared::service::error_chain(&e)));
        let p = replica.position("cascade.main", 2).await.expect("position");
        assert_eq!(p.commit_lsn.0, 77, "{engine:?}");
        assert_eq!(p.kafka_offset, None, "{engine:?}: -1 reads as unknown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_position_table_gains_the_offset_column_on_mysql() {
    an_older_position_table_gains_the_offset_column(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_position_table_gains_the_offset_column_on_sqlite() {
    an_older_position_table_gains_the_offset_column(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_position_table_gains_the_offset_column_on_postgres() {
    an_older_position_table_gains_the_offset_column(Engine::Postgres).await;
}
