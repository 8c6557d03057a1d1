//! The command line: every flag documented with its variable, invalid values named.

use std::path::Path;
use std::time::Duration;

fn router() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shard-router"))
}

#[test]
fn help_lists_every_flag_with_its_env_var_and_default() {
    let out = std::process::Command::new(router())
        .arg("--help")
        .output()
        .expect("run --help");
    let help = String::from_utf8_lossy(&out.stdout);
    for (flag, env) in [
        ("--kafka-brokers", "KAFKA_BROKERS"),
        ("--topic-prefix", "TOPIC_PREFIX"),
        ("--shard", "ROUTER_SHARD"),
        ("--replica-url", "ROUTER_REPLICA_URL"),
        ("--replica-name", "ROUTER_REPLICA_NAME"),
        ("--http-addr", "ROUTER_HTTP_ADDR"),
        ("--config", "CASCADE_CONFIG"),
        ("--batch-max-rows", "ROUTER_BATCH_MAX_ROWS"),
        ("--batch-max-bytes", "ROUTER_BATCH_MAX_BYTES"),
        ("--batch-max-wait", "ROUTER_BATCH_MAX_WAIT"),
        ("--max-backoff", "ROUTER_MAX_BACKOFF"),
        ("--shutdown-timeout", "ROUTER_SHUTDOWN_TIMEOUT"),
        ("--log-format", "LOG_FORMAT"),
        ("--on-error", "ROUTER_ON_ERROR"),
        ("--dlq-replication-factor", "ROUTER_DLQ_REPLICATION_FACTOR"),
        ("--kafka-options", "KAFKA_OPTIONS"),
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
        assert!(
            help.contains(&format!("[env: {env}")),
            "--help lacks {env}:\n{help}"
        );
    }
    assert!(help.contains("-X <KEY=VALUE>"), "--help lacks -X:\n{help}");
    assert!(help.contains("[default: main]"));
    assert!(help.contains("[default: 0.0.0.0:9101]"));
}

#[test]
fn invalid_configuration_exits_2_naming_the_field() {
    let (code, err) = testkit::run_to_exit(
        router(),
        &[
            "--kafka-brokers",
            "127.0.0.1:1",
            "--replica-url",
            "sqlite:///tmp/x.db",
            "--shard",
            "no spaces",
        ],
        Duration::from_secs(20),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--shard/ROUTER_SHARD"), "{err}");
    let (code, err) = testkit::run_to_exit(
        router(),
        &[
            "--kafka-brokers",
            "127.0.0.1:1",
            "--replica-url",
            "oracle://x/y",
        ],
        Duration::from_secs(20),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--replica-url"), "{err}");
    let (code, err) = testkit::run_to_exit(
        router(),
        &[
            "--kafka-brokers",
            "127.0.0.1:1",
            "--replica-url",
            "sqlite:///tmp/x.db",
            "--on-error",
            "ignore",
        ],
        Duration::from_secs(20),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--on-error"), "{err}");
    assert!(
        err.contains("dead-letter"),
        "the error lists the values: {err}"
    );
    // Refused URLs are quoted back without their password.
    for url in ["mysql://u:pa55word@h:bad/db", "oracle://u:pa55word@h/db"] {
        let (code, err) = testkit::run_to_exit(
            router(),
            &["--kafka-brokers", "127.0.0.1:1", "--replica-url", url],
            Duration::from_secs(20),
        );
        assert_eq!(code, 2, "{err}");
        assert!(!err.contains("pa55word"), "the password was printed: {err}");
    }
}

fn routing_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("{}.toml", testkit::unique(name)));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_router_refuses_a_shard_the_routing_file_does_not_define() {
    let file = routing_file(
        "routing",
        "[[shards]]\nname = \"a\"\n[[shards]]\nname = \"b\"\n",
    );
    let file = file.to_str().unwrap();
    let base = [
        "--kafka-brokers",
        "127.0.0.1:1",
        "--replica-url",
        "sqlite:///tmp/x.db",
        "--config",
        file,
    ];
    let (code, err) = testkit::run_to_exit(
        router(),
        &[&base[..], &["--shard", "c"]].concat(),
        Duration::from_secs(20),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--shard/ROUTER_SHARD") && err.contains("\"c\""),
        "{err}"
    );
    // Without a file, only `main` exists.
    let (code, err) = testkit::run_to_exit(
        router(),
        &[
            "--kafka-brokers",
            "127.0.0.1:1",
            "--replica-url",
            "sqlite:///tmp/x.db",
            "--shard",
            "a",
        ],
        Duration::from_secs(20),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("\"main\""), "{err}");
}

#[test]
fn invalid_routing_files_name_the_table_and_field_in_both_binaries() {
    let file = routing_file(
        "bad",
        "[[shards]]\nname = \"a\"\n[tables.\"public.users\"]\nbroadcast = false\n",
    );
    let file = file.to_str().unwrap();
    let (code, err) = testkit::run_to_exit(
        router(),
        &[
            "--kafka-brokers",
            "127.0.0.1:1",
            "--replica-url",
            "sqlite:///tmp/x.db",
            "--shard",
            "a",
            "--config",
            file,
        ],
        Duration::from_secs(20),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("tables.\"public.users\".shard_key"), "{err}");
    let (code, err) = testkit::run_to_exit(
        &crate::support::cdc_bin(),
        &[
            "--source-url",
            "postgres://u@127.0.0.1:1/db",
            "--kafka-brokers",
            "127.0.0.1:1",
            "--config",
            file,
        ],
        Duration::from_secs(20),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("tables.\"public.users\".shard_key"), "{err}");
}

#[test]
fn kafka_properties_that_are_malformed_or_rejected_exit_2_naming_them() {
    let base = [
        "--kafka-brokers",
        "127.0.0.1:1",
        "--replica-url",
        "sqlite:///tmp/never-opened.db",
        "--http-addr",
        "127.0.0.1:0",
    ];
    let run = |extra: &[&str], envs: &[(&str, &str)]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        testkit::run_to_exit_env(router(), &args, envs, Duration::from_secs(20))
    };
    let (code, err) = run(&["-X", "fetch.min.bytes"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("-X") && err.contains("key=value"), "{err}");
    let (code, err) = run(
        &["-X", "fetch.min.bytes=1", "-X", "no.such.property=x"],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("\"no.such.property\""), "{err}");
    // A value librdkafka refuses, from the variable; the secret next to it is never printed.
    let (code, err) = run(
        &[],
        &[(
            "KAFKA_OPTIONS",
            "security.protocol=SSL\nssl.ca.location=/nonexistent/ca.pem\nssl.key.password=pa55word",
        )],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("KAFKA_OPTIONS") && err.contains("ssl.ca.location"),
        "{err}"
    );
    assert!(!err.contains("pa55word"), "the password was printed: {err}");
    // A property that carries the delivery guarantee is refused.
    let (code, err) = run(&["-X", "enable.auto.commit=false"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("\"enable.auto.commit\""), "{err}");
    // replay-dlq takes the same properties.
    let (code, err) = testkit::run_to_exit(
        router(),
        &[
            "replay-dlq",
            "--kafka-brokers",
            "127.0.0.1:1",
            "--replica-url",
            "sqlite:///tmp/never-opened.db",
            "-X",
            "oops",
        ],
        Duration::from_secs(20),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("-X"), "{err}");
}
