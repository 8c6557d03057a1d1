#![allow(unreachable_pub, clippy::unwrap_used, clippy::expect_used)]
//! Integration tests of `cascade-gen` against the local PostgreSQL of `scripts/services.sh up`:
//! each test fills its own fresh database.

mod support;

use std::time::{Duration, Instant};

use support::{
    check_values, count, drop_db, fingerprint, number_before, op_count, run, Background,
};
use testkit::{create_pg_db, services, unique, TcpProxy};

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
