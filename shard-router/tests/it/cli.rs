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
        ("--batch-max-rows", "ROUTER_BATCH_MAX_ROWS"),
        ("--batch-max-wait", "ROUTER_BATCH_MAX_WAIT"),
        ("--max-backoff", "ROUTER_MAX_BACKOFF"),
        ("--shutdown-timeout", "ROUTER_SHUTDOWN_TIMEOUT"),
        ("--log-format", "LOG_FORMAT"),
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
        assert!(
            help.contains(&format!("[env: {env}")),
            "--help lacks {env}:\n{help}"
        );
    }
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
}
