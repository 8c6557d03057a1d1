//! Issue 10, item 5: a sharded table whose shard key is not in its replica identity makes cdc refuse
//! to start (exit 2) with the statement that fixes it; `cdc setup` lists the same and, with
//! `--apply`, runs it.

use std::process::Command;
use std::time::Duration;

use crate::support::*;

const ROUTING: &str = r#"
[[shards]]
name = "a"
[[shards]]
name = "b"

[tables."public.orgs"]
shard_key = "id"
[tables."public.members"]
shard_key = "org_id"
[tables."public.events"]
shard_key = "org_id"
[tables."public.later"]
shard_key = "org_id"

[routing]
rule = "hash"
"#;

/// Runs `cdc setup` with `args`; returns (exit code, stdout, stderr).
fn setup(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cdc"))
        .arg("setup")
        .args(args)
        .env_remove("CASCADE_CONFIG")
        .env("NO_COLOR", "1")
        .output()
        .expect("cdc setup runs");
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(out.stdout),
        text(out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_refuses_tables_without_their_shard_key_and_setup_fixes_them() {
    let s = services();
    let db_url = create_db(&s, &unique("setup")).await;
    let c = connect(&db_url).await;
    // orgs: the key is the primary key; members: the key is part of it; events: it is not.
    c.batch_execute(
        "CREATE TABLE orgs (id integer PRIMARY KEY, name text); \
         CREATE TABLE members (org_id integer, id integer, PRIMARY KEY (org_id, id)); \
         CREATE TABLE events (id bigint PRIMARY KEY, org_id integer NOT NULL, body text);",
    )
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(unique("setup"));
    std::fs::create_dir_all(&dir).unwrap();
    let routing = dir.join("routing.toml");
    std::fs::write(&routing, ROUTING).unwrap();
    let routing = routing.to_str().unwrap();
    let fix = "ALTER TABLE public.events REPLICA IDENTITY FULL;";

    // cdc refuses to start: exit 2, the table, its shard key and the statement; no slot is created.
    let slot = unique("cdc");
    let (code, err) = run_cdc_to_exit(
        &[
            "--source-url",
            &db_url,
            "--kafka-brokers",
            &s.kafka,
            "--slot",
            &slot,
            "--topic-prefix",
            &unique("setup"),
            "--config",
            routing,
            "--http-addr",
            "127.0.0.1:0",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cdc: invalid source: 1 sharded table(s)")
            && err.contains("public.events (shard key org_id)")
            && err.contains(fix),
        "{err}"
    );
    assert!(
        !err.contains("public.members") && !err.contains("public.orgs (shard"),
        "{err}"
    );
    let slots: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(slots, 0, "cdc created its slot before refusing");

    // setup lists every item; the one table and the snapshot requests table need fixing; exit 1.
    let (code, out, err) = setup(&["--source-url", &db_url, "--config", routing]);
    assert_eq!(code, 1, "{out}\n{err}");
    for line in [
        "[ok] wal_level: logical",
        "[ok] wal2json: loads",
        "[ok] max_replication_slots:",
        "[ok] max_wal_senders:",
        "[ok] output_plugin_libraries:",
        "[ok] public.orgs: shard key id",
        "[ok] public.members: shard key org_id",
        "[ok] public.later: not on the source yet",
        "[needs fixing] public.events: shard key org_id",
        &format!("fix: {fix}"),
        "[needs fixing] snapshot requests table: cascade.snapshot_requests is missing",
        "CREATE TABLE IF NOT EXISTS cascade.snapshot_requests",
        "[needs fixing] schema-change capture: cascade's event triggers are not installed",
        "run again with --apply",
    ] {
        assert!(out.contains(line), "lacks {line:?}:\n{out}");
    }
    assert!(err.contains("3 item(s)"), "{err}");
    assert!(
        !out.contains(db_url.split('@').next().unwrap()),
        "prints the password:\n{out}"
    );

    // --apply runs the statement; everything is in place, exit 0, and stays so.
    let (code, out, err) = setup(&["--source-url", &db_url, "--config", routing, "--apply"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("[fixed] public.events") && out.contains(&format!("ran: {fix}")),
        "{out}"
    );
    assert!(out.contains("[fixed] snapshot requests table"), "{out}");
    assert!(out.contains("[fixed] schema-change capture"), "{out}");
    assert!(out.contains("the source is ready for cdc"), "{out}");
    let signal: bool = c
        .query_one(
            "SELECT to_regclass('cascade.snapshot_requests') IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(signal, "--apply did not create cascade.snapshot_requests");
    let identity: String = c
        .query_one(
            "SELECT relreplident::text FROM pg_class WHERE oid = 'public.events'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(identity, "f");
    let (code, out, _) = setup(&["--source-url", &db_url, "--config", routing]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("[ok] public.events: shard key org_id is in every update and delete (REPLICA IDENTITY FULL)"), "{out}");

    // Without a routing file nothing is sharded; an unreachable source is an error (exit 1).
    let (code, out, _) = setup(&["--source-url", &db_url]);
    assert_eq!(code, 0, "{out}");
    let port = free_port();
    let (code, _, err) = setup(&[
        "--source-url",
        &format!("postgres://u:secret@127.0.0.1:{port}/db"),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("secret"), "{err}");
    let (code, _, err) = setup(&[
        "--source-url",
        &db_url,
        "--config",
        "/nonexistent/routing.toml",
    ]);
    assert_eq!(code, 2, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
