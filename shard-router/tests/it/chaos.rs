//! Chaos: pgbench writes steadily through a broker of this test's own that is paused (SIGSTOP) past
//! cdc's `--kafka-message-timeout` 20 times, while cdc and the routers are SIGKILLed at random moments
//! and restarted. In the end every replica (PostgreSQL, MariaDB, SQLite) equals the source, row for
//! row. A private broker, so pausing it does not disturb the tests running beside this one.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const TABLES: [&str; 4] = [
    "pgbench_accounts",
    "pgbench_branches",
    "pgbench_tellers",
    "pgbench_history",
];
const PAUSES: usize = 20;
const MESSAGE_TIMEOUT: Duration = Duration::from_millis(1500);

/// A small deterministic generator, so a failing run can be told by its seed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn pgbench(s: &Services, url: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(format!("{}/pgbench", s.pg_bindir));
    cmd.args(args).arg(url).stdout(Stdio::null());
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_equal_the_source_through_broker_pauses_and_kills() {
    let mut s = services();
    let broker = testkit::Broker::start(&s.tansu_bin);
    s.kafka = format!("127.0.0.1:{}", broker.port);
    let name = unique("chaos");
    let source_url = testkit::create_pg_db(&s.source_url, &name).await;
    let source = connect(&source_url).await;
    let mut targets = Vec::new();
    for engine in [Engine::Postgres, Engine::MySql, Engine::Sqlite] {
        targets.push(Target::create(&s, engine, &name).await);
    }
    let prefix = unique("chaos");
    let timeout = format!("{}ms", MESSAGE_TIMEOUT.as_millis());
    let cdc_args = ["--kafka-message-timeout", &timeout, "--max-backoff", "1s"];
    let start_cdc_now = |s: &Services| start_cdc_with(s, &source_url, &name, &prefix, &cdc_args);
    let mut cdc = start_cdc_now(&s);
    let mut routers: Vec<Process> = targets
        .iter()
        .map(|t| start_router(&s, t, &prefix, &[]))
        .collect();

    // pgbench's own tables and transactions: the schema and rows of a real client. Primary keys are
    // added before the data (`-I dtpG`): a key added to a loaded table is a schema change, and
    // replicating those is the schema-change work, not this test's.
    let init = pgbench(&s, &source_url, &["-i", "-I", "dtpG", "-s", "1", "-q"])
        .status()
        .expect("pgbench -i");
    assert!(init.success(), "pgbench -i failed");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = Lcg(seed);
    let mut writer = pgbench(
        &s,
        &source_url,
        &["-n", "-c", "2", "-j", "2", "-R", "100", "-T", "300"],
    )
    .spawn()
    .expect("pgbench");

    let mut kills = Vec::new();
    let mut cdc_logs = String::new();
    for pause in 0..PAUSES {
        broker.signal("-STOP");
        tokio::time::sleep(MESSAGE_TIMEOUT + Duration::from_millis(500)).await;
        broker.signal("-CONT");
        tokio::time::sleep(Duration::from_millis(200 + rng.below(800))).await;
        match rng.below(3) {
            0 => {
                cdc.kill9();
                cdc_logs.push_str(&cdc.log_text());
                kills.push(format!("pause {pause}: cdc"));
                cdc = start_cdc_now(&s);
            }
            1 => {
                let i = rng.below(routers.len() as u64) as usize;
                routers[i].kill9();
                kills.push(format!("pause {pause}: router {:?}", targets[i].engine));
                routers[i] = start_router(&s, &targets[i], &prefix, &[]);
            }
            _ => {}
        }
    }
    let _ = writer.kill();
    let _ = writer.wait();

    let deadline = Instant::now() + Duration::from_secs(240);
    for (target, router) in targets.iter().zip(&routers) {
        loop {
            let mut problems = Vec::new();
            for table in TABLES {
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
                "the {:?} replica did not converge (seed {seed}, kills {kills:?}):\n{}\nrouter log:\n{}\ncdc log:\n{}",
                target.engine,
                problems.join("\n"),
                router.log_text(),
                cdc.log_text()
            );
            tokio::time::sleep(Duration::from_millis(1000)).await;
        }
    }
    // The pauses did what they are for: deliveries failed and cdc started over.
    cdc_logs.push_str(&cdc.log_text());
    assert!(
        cdc_logs.contains("waiting for Kafka"),
        "no delivery ever failed during the pauses; cdc logs:\n{cdc_logs}"
    );
    let history: i64 = source
        .query_one("SELECT count(*) FROM pgbench_history", &[])
        .await
        .unwrap()
        .get(0);
    assert!(history > 500, "pgbench wrote only {history} transactions");
    drop(routers);
    drop(cdc);
    drop(broker);
    testkit::drop_slot(&s.source_url, &name).await;
}
