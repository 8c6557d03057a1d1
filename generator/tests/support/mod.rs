//! Support for the integration tests: running `cascade-gen`, reading what it wrote.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use testkit::{connect, unique};
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_cascade-gen");
pub const TENANT_TABLES: [&str; 5] = [
    "organizations",
    "users",
    "subscriptions",
    "invoices",
    "events",
];

pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .kill_on_drop(true);
    cmd
}

/// Runs `cascade-gen` to its end (at most `timeout`); returns (exit code, stdout, stderr).
pub async fn run(args: &[&str], timeout: Duration) -> (i32, String, String) {
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
pub struct Background {
    pub child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Background {
    pub fn start(args: &[&str]) -> Background {
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

    pub fn output(&self) -> (String, String) {
        let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        (read(&self.stdout), read(&self.stderr))
    }

    /// Waits until stdout or stderr contains `text`.
    pub async fn wait_for(&self, text: &str, timeout: Duration) {
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

    pub async fn wait_exit(&mut self, timeout: Duration) -> i32 {
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
pub async fn fingerprint(url: &str) -> Vec<(String, i64, String)> {
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
pub async fn drop_db(server_url: &str, url: &str) {
    let name = url.rsplit('/').next().unwrap();
    connect(server_url)
        .await
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .unwrap();
}

pub async fn count(url: &str, table: &str) -> i64 {
    let client = connect(url).await;
    client
        .query_one(&format!("SELECT count(*) FROM public.{table}"), &[])
        .await
        .unwrap()
        .get(0)
}

/// The number after `label` in `text` (`"5 transactions"` → 5 for label `" transactions"`, looking
/// backwards from the label), in the line starting with `line`.
pub fn number_before(text: &str, line: &str, label: &str) -> u64 {
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
pub fn op_count(stdout: &str, op: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("steady done:"))
        .unwrap();
    let ops = line.rsplit_once(": ").unwrap().1;
    ops.split(", ")
        .find_map(|part| part.strip_prefix(&format!("{op} ")))
        .map_or(0, |n| n.parse().unwrap())
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.stdout);
        let _ = std::fs::remove_file(&self.stderr);
    }
}

/// What the rows promise, after bulk and steady mode alike: valid e-mails, amounts with two
/// decimals that add up their line items, JSON objects as event properties, subscription states,
/// revenue and plans that agree with each other.
pub async fn check_values(url: &str) {
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
