#![allow(unreachable_pub, clippy::unwrap_used, clippy::expect_used)]
//! Integration tests of `cascade-gen` against the local PostgreSQL of `scripts/services.sh up`:
//! each test fills its own fresh database.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use testkit::{connect, create_pg_db, services, unique, TcpProxy};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_cascade-gen");
const TENANT_TABLES: [&str; 5] = [
    "organizations",
    "users",
    "subscriptions",
    "invoices",
    "events",
];

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .kill_on_drop(true);
    cmd
}

/// Runs `cascade-gen` to its end (at most `timeout`); returns (exit code, stdout, stderr).
async fn run(args: &[&str], timeout: Duration) -> (i32, String, String) {
    let out = tokio::time::timeout(timeout, command(args).output())
        .await
        .unwrap_or_else(|_| panic!("cascade-gen {args:?} still running after {timeout:?}"))
        .expect("cascade-gen starts");
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (
        out.status.code().unwrap_or(-1),
        text(out.stdout),
        text(out.stderr),
    )
}

/// A `cascade-gen` running in the background, its output going to files the test can poll.
struct Background {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Background {
    fn start(args: &[&str]) -> Background {
        let name = unique("cascade-gen");
        let stdout = std::env::temp_dir().join(format!("{name}.out"));
        let stderr = std::env::temp_dir().join(format!("{name}.err"));
        let child = command(args)
            .stdout(Stdio::from(std::fs::File::create(&stdout).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()))
            .spawn()
            .expect("cascade-gen starts");
        Background {
            child,
            stdout,
            stderr,
        }
    }

    fn output(&self) -> (String, String) {
        let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        (read(&self.stdout), read(&self.stderr))
    }

    /// Waits until stdout or stderr contains `text`.
    async fn wait_for(&self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let (out, err) = self.output();
            if out.contains(text) || err.contains(text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {text:?} after {timeout:?}; stdout:\n{out}\nstderr:\n{err}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_exit(&mut self, timeout: Duration) -> i32 {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.unwrap().code().unwrap_or(-1),
            Err(_) => {
                let (out, err) = self.output();
                panic!(
                    "cascade-gen still running after {timeout:?}; stdout:\n{out}\nstderr:\n{err}"
                );
            }
        }
    }
}

/// Row count and an md5 of every row (in id order) of each tenant table.
async fn fingerprint(url: &str) -> Vec<(String, i64, String)> {
    let client = connect(url).await;
    let mut out = Vec::new();
    for table in TENANT_TABLES {
        let sql = format!(
            "SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n' ORDER BY id)), '') FROM public.{table} t"
        );
        let row = client.query_one(&sql, &[]).await.unwrap();
        out.push((table.to_owned(), row.get(0), row.get(1)));
    }
    out
}

/// Drops a test's database once it passed (a failing test leaves it for a look).
async fn drop_db(server_url: &str, url: &str) {
    let name = url.rsplit('/').next().unwrap();
    connect(server_url)
        .await
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .unwrap();
}

async fn count(url: &str, table: &str) -> i64 {
    let client = connect(url).await;
    client
        .query_one(&format!("SELECT count(*) FROM public.{table}"), &[])
        .await
        .unwrap()
        .get(0)
}

/// The number after `label` in `text` (`"5 transactions"` → 5 for label `" transactions"`, looking
/// backwards from the label), in the line starting with `line`.
fn number_before(text: &str, line: &str, label: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(line))
        .unwrap_or_else(|| panic!("no {line:?} line in:\n{text}"));
    let before = &line[..line
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in {line:?}"))];
    before.rsplit(' ').next().unwrap().parse().unwrap()
}

/// The count of `op` in the steady summary (`…: signup 2, new_user 5, …`), 0 if it never ran.
fn op_count(stdout: &str, op: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("steady done:"))
        .unwrap();
    let ops = line.rsplit_once(": ").unwrap().1;
    ops.split(", ")
        .find_map(|part| part.strip_prefix(&format!("{op} ")))
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_then_steady_and_the_same_seed_gives_the_same_rows() {
    let s = services();
    let db = create_pg_db(&s.source_url, &unique("gen_mixed")).await;
    let args = [
        "--database-url",
        &db,
        "--schema",
        "--bulk",
        "5",
        "--rate",
        "20",
        "--duration",
        "2s",
    ];
    let (code, stdout, stderr) = run(&args, Duration::from_secs(90)).await;
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.starts_with("schema: applied main-db/schema.sql"),
        "{stdout}"
    );
    assert_eq!(
        number_before(&stdout, "bulk done:", " organizations"),
        5,
        "{stdout}"
    );
    let bulk_rows = number_before(&stdout, "bulk done:", " rows in");
    let transactions = number_before(&stdout, "steady done:", " transactions");
    // 20 per second for 2 seconds, paced from the start: 40 at most, and not far fewer.
    assert!(
        (30..=41).contains(&transactions),
        "{transactions} steady transactions:\n{stdout}"
    );
    check_values(&db).await;
    let signups = op_count(&stdout, "signup");
    assert_eq!(count(&db, "organizations").await, 5 + signups as i64);
    assert_eq!(count(&db, "plans").await, 5);
    assert_eq!(count(&db, "countries").await, 10);
    for table in ["users", "subscriptions", "events"] {
        assert!(count(&db, table).await >= 5, "{table}");
    }

    // Bulk alone, twice with the default seed 42 and once with another, each in a fresh database.
    let mut fingerprints = Vec::new();
    for seed in ["42", "42", "7"] {
        let fresh = create_pg_db(&s.source_url, &unique("gen_bulk")).await;
        let args = [
            "--database-url",
            &fresh,
            "--schema",
            "--bulk",
            "5",
            "--seed",
            seed,
        ];
        let (code, stdout, stderr) = run(&args, Duration::from_secs(90)).await;
        assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
        let print = fingerprint(&fresh).await;
        fingerprints.push((fresh, print));
    }
    let total: i64 = fingerprints[0].1.iter().map(|(_, n, _)| n).sum();
    assert_eq!(
        total as u64, bulk_rows,
        "the same bulk load wrote another number of rows"
    );
    assert_eq!(
        fingerprints[0].1, fingerprints[1].1,
        "seed 42 gave different rows in two databases"
    );
    for (a, b) in fingerprints[0].1.iter().zip(&fingerprints[2].1) {
        assert_ne!(a.2, b.2, "seeds 42 and 7 gave the same {}", a.0);
    }
    check_values(&fingerprints[0].0).await;
    drop_db(&s.source_url, &db).await;
    for (fresh, _) in &fingerprints {
        drop_db(&s.source_url, fresh).await;
    }
}

/// What the rows promise, after bulk and steady mode alike: valid e-mails, amounts with two
/// decimals that add up their line items, JSON objects as event properties, subscription states,
/// revenue and plans that agree with each other.
async fn check_values(url: &str) {
    let client = connect(url).await;
    let bad = |sql: &'static str| {
        let client = &client;
        async move {
            let n: i64 = client.query_one(sql, &[]).await.unwrap().get(0);
            assert_eq!(n, 0, "{sql}");
        }
    };
    bad(r"SELECT count(*) FROM users WHERE email !~ '^[a-z0-9]+(\.[a-z0-9]+)*@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$'").await;
    bad("SELECT count(*) FROM invoices WHERE scale(amount) <> 2 OR amount <= 0 \
         OR amount <> (SELECT sum((i->>'amount')::numeric) FROM jsonb_array_elements(line_items) i)")
    .await;
    bad(
        "SELECT count(*) FROM invoices i JOIN organizations o ON o.id = i.org_id \
         JOIN countries c ON c.code = o.country_code WHERE c.currency <> i.currency",
    )
    .await;
    bad("SELECT count(*) FROM events WHERE jsonb_typeof(properties) <> 'object'").await;
    bad("SELECT count(*) FROM subscriptions WHERE (status = 'canceled') <> (canceled_at IS NOT NULL)").await;
    bad("SELECT count(*) FROM users u JOIN organizations o ON o.id = u.org_id WHERE u.created_at < o.created_at").await;
    bad("SELECT count(*) FROM invoices WHERE (status = 'paid') <> (paid_at IS NOT NULL)").await;
    bad("SELECT count(*) FROM subscriptions s JOIN plans p ON p.id = s.plan_id \
         WHERE s.mrr <> CASE WHEN s.status IN ('trialing', 'canceled') THEN 0 ELSE s.seats * p.seat_price END \
            OR s.seats > coalesce(p.max_seats, s.seats)")
    .await;
    bad(
        "SELECT count(*) FROM (SELECT org_id FROM subscriptions WHERE status <> 'canceled' \
         GROUP BY org_id HAVING count(*) > 1) more_than_one_live",
    )
    .await;
    bad(
        "SELECT count(*) FROM subscriptions s JOIN organizations o ON o.id = s.org_id \
         WHERE s.status <> 'canceled' AND s.plan_id <> o.plan_id",
    )
    .await;
    let invoices: i64 = client
        .query_one("SELECT count(*) FROM invoices", &[])
        .await
        .unwrap()
        .get(0);
    assert!(invoices > 0, "five organizations of seed 42 have invoices");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_flags_exit_2_naming_the_field() {
    let url = "postgres://u:secret@127.0.0.1:1/db";
    for (args, field) in [
        (
            vec!["--database-url", url, "--rate", "0"],
            "--rate/GEN_RATE",
        ),
        (
            vec!["--database-url", url, "--bulk", "0"],
            "--bulk/GEN_BULK",
        ),
        (
            vec!["--database-url", url, "--bulk", "1", "--duration", "5s"],
            "--duration/GEN_DURATION",
        ),
        (
            vec!["--database-url", url],
            "--bulk/GEN_BULK, --rate/GEN_RATE",
        ),
        (
            vec!["--database-url", "mysql://x", "--schema"],
            "--database-url",
        ),
        (vec!["--bulk", "1"], "--database-url"),
        (
            vec!["--database-url", url, "--duration", "soon", "--rate", "1"],
            "--duration",
        ),
    ] {
        let (code, stdout, stderr) = run(&args, Duration::from_secs(20)).await;
        assert_eq!(code, 2, "{args:?}: stdout:\n{stdout}\nstderr:\n{stderr}");
        assert!(
            stderr.contains(field),
            "{args:?} does not name {field}:\n{stderr}"
        );
        assert!(!stderr.contains("secret"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn waits_for_an_unreachable_database() {
    let s = services();
    let db = create_pg_db(&s.source_url, &unique("gen_wait")).await;
    let upstream = db
        .split('@')
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let proxy = TcpProxy::start(&upstream).await;
    proxy.stop();
    let via_proxy = db.replace(&upstream, &format!("127.0.0.1:{}", proxy.port));
    let mut gen = Background::start(&["--database-url", &via_proxy, "--schema", "--bulk", "3"]);
    gen.wait_for(
        "waiting for PostgreSQL to accept connections",
        Duration::from_secs(20),
    )
    .await;
    let (_, stderr) = gen.output();
    assert!(
        stderr.contains(&format!("127.0.0.1:{}", proxy.port)),
        "says what it waits for:\n{stderr}"
    );
    proxy.resume().await;
    assert_eq!(
        gen.wait_exit(Duration::from_secs(60)).await,
        0,
        "{:?}",
        gen.output()
    );
    assert_eq!(count(&db, "organizations").await, 3);
    drop_db(&s.source_url, &db).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn steady_mode_survives_a_cut_connection_and_stops_on_sigterm() {
    let s = services();
    let db = create_pg_db(&s.source_url, &unique("gen_cut")).await;
    let upstream = db
        .split('@')
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let proxy = TcpProxy::start(&upstream).await;
    let via_proxy = db.replace(&upstream, &format!("127.0.0.1:{}", proxy.port));
    let mut gen = Background::start(&[
        "--database-url",
        &via_proxy,
        "--schema",
        "--bulk",
        "2",
        "--rate",
        "50",
    ]);
    gen.wait_for("steady: ", Duration::from_secs(30)).await;
    proxy.stop();
    gen.wait_for("lost the database connection", Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.resume().await;
    // Transactions flow again after the reconnect.
    let before = count(&db, "events").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&db, "events").await == before {
        assert!(
            Instant::now() < deadline,
            "no new events after the reconnect: {:?}",
            gen.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = gen.child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        gen.wait_exit(Duration::from_secs(30)).await,
        0,
        "{:?}",
        gen.output()
    );
    let (stdout, _) = gen.output();
    assert!(
        stdout.contains("steady done: ") && stdout.contains("(interrupted)"),
        "{stdout}"
    );
    assert!(number_before(&stdout, "steady done:", " transactions") > 0);
    let reconnects = stdout
        .lines()
        .last()
        .unwrap()
        .rsplit("reconnects ")
        .next()
        .unwrap();
    assert!(reconnects.parse::<u64>().unwrap() >= 1, "{stdout}");
    assert!(count(&db, "organizations").await >= 2);
    drop_db(&s.source_url, &db).await;
}
