//! cdc refuses bad set-ups with a clear message and a non-zero exit.

use std::time::Duration;

use crate::support::*;

/// Runs cdc with a source, brokers and `extra` flags until it exits; returns (exit code, stderr).
fn run_cdc(source: &str, brokers: &str, extra: &[&str], timeout: Duration) -> (i32, String) {
    let mut args = vec![
        "--source-url",
        source,
        "--kafka-brokers",
        brokers,
        "--http-addr",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    run_cdc_to_exit(&args, timeout)
}

#[test]
fn bad_url_names_the_flag() {
    let (code, err) = run_cdc("not a url", "127.0.0.1:1", &[], Duration::from_secs(20));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--source-url"), "{err}");
    let (code, err) = run_cdc(
        "postgres://u@h/db",
        "127.0.0.1:1",
        &["--slot", "Not-Valid"],
        Duration::from_secs(20),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--slot/CDC_SLOT"), "{err}");
    // A URL refused by the argument parser is quoted back without its password.
    let (code, err) = run_cdc(
        "postgres://u:pa55word@h:notaport/db",
        "127.0.0.1:1",
        &[],
        Duration::from_secs(20),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--source-url") && err.contains("u:***@h"),
        "{err}"
    );
    assert!(!err.contains("pa55word"), "the password was printed: {err}");
}

#[test]
fn kafka_properties_that_are_malformed_or_rejected_exit_2_naming_them() {
    let url = "postgres://u:x@127.0.0.1:1/db";
    let (code, err) = run_cdc(
        url,
        "127.0.0.1:1",
        &["-X", "linger.ms"],
        Duration::from_secs(20),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("-X") && err.contains("key=value"), "{err}");
    let (code, err) = run_cdc(
        url,
        "127.0.0.1:1",
        &["-X", "ssl.no.such.thing=1"],
        Duration::from_secs(20),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("\"ssl.no.such.thing\""), "{err}");
    // The variable, and a value librdkafka refuses; a secret value is never printed.
    let (code, err) = testkit::run_to_exit_env(
        std::path::Path::new(env!("CARGO_BIN_EXE_cdc")),
        &["--source-url", url, "--kafka-brokers", "127.0.0.1:1"],
        &[(
            "KAFKA_OPTIONS",
            "security.protocol=SASL_SSL,sasl.mechanisms=NOT-A-MECHANISM,sasl.password=pa55word",
        )],
        Duration::from_secs(20),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("KAFKA_OPTIONS") && err.contains("sasl.mechanisms"),
        "{err}"
    );
    assert!(!err.contains("pa55word"), "the password was printed: {err}");
}

#[test]
fn unreachable_host_gives_up_after_the_retry_budget() {
    let port = free_port(); // nothing listens there
    let url = format!("postgres://postgres:x@127.0.0.1:{port}/db");
    let (code, err) = run_cdc(
        &url,
        "127.0.0.1:1",
        &["--retry-budget", "2s"],
        Duration::from_secs(30),
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("gave up after retrying"), "{err}");
    assert!(
        err.contains(&format!("cannot reach PostgreSQL at 127.0.0.1:{port}/db")),
        "{err}"
    );
    assert!(
        err.contains("waiting for PostgreSQL"),
        "retries are not announced: {err}"
    );
    assert!(!err.contains(":x@"), "password leaked: {err}");
}

#[test]
fn wal_level_not_logical_is_named_with_the_fix() {
    let s = services();
    // The replica instance of the local services runs with wal_level = replica.
    let (code, err) = run_cdc(&s.replica_pg_url, &s.kafka, &[], Duration::from_secs(30));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("wal_level is \"replica\""), "{err}");
    assert!(err.contains("wal_level = logical"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_wal2json_is_named_with_the_fix() {
    let s = services();
    let db = unique("nowal2json");
    let db_url = create_db(&s, &db).await;
    // Make the library unloadable for this database only: its sessions (and walsenders) search an empty
    // directory for shared libraries, so loading wal2json fails exactly as on a server without it.
    let admin = connect(&s.source_url).await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{db}\" SET dynamic_library_path = '/nonexistent-cascade-test'"
        ))
        .await
        .unwrap();
    let (code, err) = run_cdc(
        &db_url,
        &s.kafka,
        &["--slot", "nowal"],
        Duration::from_secs(30),
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("wal2json output plugin is not installed"),
        "{err}"
    );
    assert!(err.contains("postgresql-15-wal2json"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_with_another_plugin_is_never_recreated() {
    let s = services();
    let db = unique("otherplugin");
    let db_url = create_db(&s, &db).await;
    let c = connect(&db_url).await;
    let slot = unique("slot");
    c.query_one(
        "SELECT pg_create_logical_replication_slot($1, 'test_decoding')",
        &[&slot],
    )
    .await
    .unwrap();
    let (code, err) = run_cdc(
        &db_url,
        &s.kafka,
        &["--slot", &slot],
        Duration::from_secs(30),
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("uses the test_decoding output plugin"),
        "{err}"
    );
    let plugin: String = c
        .query_one(
            "SELECT plugin FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(plugin, "test_decoding", "the slot was touched");
    c.query_one("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await
        .unwrap();
}

#[test]
fn help_lists_every_flag_with_its_variable_and_hides_secrets() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cdc"))
        .arg("--help")
        .env("CDC_SOURCE_URL", "postgres://u:topsecret@h/db")
        .output()
        .expect("cdc --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for (flag, var) in [
        ("--source-url", "CDC_SOURCE_URL"),
        ("--slot", "CDC_SLOT"),
        ("--kafka-brokers", "KAFKA_BROKERS"),
        ("--topic-prefix", "TOPIC_PREFIX"),
        ("--http-addr", "CDC_HTTP_ADDR"),
        ("--topic-partitions", "CDC_TOPIC_PARTITIONS"),
        ("--max-in-flight", "CDC_MAX_IN_FLIGHT"),
        ("--retry-budget", "CDC_RETRY_BUDGET"),
    ] {
        assert!(
            help.contains(flag) && help.contains(&format!("[env: {var}")),
            "--help lacks {flag} / {var}:\n{help}"
        );
    }
    assert!(
        help.contains("[default: cascade]") && help.contains("[default: 0.0.0.0:9100]"),
        "{help}"
    );
    assert!(!help.contains("topsecret"), "--help shows the password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_event_stops_cdc_and_is_never_skipped() {
    let s = services();
    let db = unique("oversized");
    let db_url = create_db(&s, &db).await;
    let c = connect(&db_url).await;
    c.batch_execute("CREATE TABLE blobs (id integer PRIMARY KEY, body text)")
        .await
        .unwrap();
    let slot = unique("cdc");
    let prefix = unique("big");
    let mut cdc = Cdc::start(
        &s,
        &db_url,
        &slot,
        &prefix,
        &["--kafka-max-message-bytes", "100000"],
    );
    cdc.wait_ready(Duration::from_secs(60));
    c.batch_execute(
        "INSERT INTO blobs SELECT 1, string_agg(md5(g::text), '') FROM generate_series(1, 10000) g",
    )
    .await
    .unwrap();
    let code = cdc.wait_exit(Duration::from_secs(30));
    let log = cdc.log_text();
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("public.blobs") && log.contains("--kafka-max-message-bytes"),
        "{log}"
    );
    // The slot did not move past the event: a restart with a higher limit publishes it.
    let mut cdc = Cdc::start(
        &s,
        &db_url,
        &slot,
        &prefix,
        &["--kafka-max-message-bytes", "1000000"],
    );
    cdc.wait_ready(Duration::from_secs(60));
    let mut reader =
        TopicReader::open(&s.kafka, &format!("{prefix}.main"), Duration::from_secs(30));
    reader.read_until(
        Duration::from_secs(30),
        "the oversized insert after raising the limit",
        // At least once: the initial snapshot may copy the row as well as stream it.
        |m| row_changes(m) >= 1,
    );
    assert_eq!(cdc.terminate(Duration::from_secs(30)), 0);
    testkit::drop_slot(&s.source_url, &slot).await;
}
