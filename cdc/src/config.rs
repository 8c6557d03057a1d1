//! Command-line and environment configuration of `cdc`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use shared::telemetry::LogFormat;

/// Streams a PostgreSQL primary's committed changes (logical replication with the wal2json plugin) into
/// Kafka, one JSON message per row change, framed per transaction. The replication slot is confirmed only
/// up to transactions Kafka has fully acknowledged, so a crash or restart loses nothing.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "cdc",
    version,
    about,
    long_about = None,
    after_help = "Other commands:\n  cdc setup --source-url URL [--apply]      check (and fix) what the source needs (see its --help)\n  cdc snapshot --source-url URL --table T   ask the running cdc to copy a table again (see its --help)\n  cdc suggest-transforms --source-url URL   print transform rules for columns that look like personal data (see its --help)"
)]
pub struct Config {
    /// PostgreSQL source, as a URL: postgres://user:password@host:port/database. The user needs the
    /// REPLICATION attribute. The password is never logged.
    #[arg(long, env = "CDC_SOURCE_URL", hide_env_values = true)]
    pub source_url: SourceUrl,

    /// Name of the logical replication slot (created with the wal2json plugin on the first run for
    /// this slot and --topic-prefix only; a missing slot after that stops cdc).
    #[arg(long, env = "CDC_SLOT", default_value = "cascade")]
    pub slot: String,

    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: String,

    /// Prefix of the topics: events go to <prefix>.<shard> (one shard, `main`, for now).
    #[arg(long, env = "TOPIC_PREFIX", default_value = "cascade")]
    pub topic_prefix: String,

    /// The routing file (TOML, see docs/configuration.md): the shards, each table's shard-key column
    /// or broadcast, and the rule from a key to its shard. Without it there is one shard, `main`,
    /// holding every table.
    #[arg(long, env = "CASCADE_CONFIG")]
    pub config: Option<std::path::PathBuf>,

    /// Secret key of the keyed transforms (`hash`, `fake-name`, `fake-email`) in the routing file:
    /// HMAC-SHA256 under this key. Required when such a rule is configured; never logged. Keep it
    /// stable: a new key maps every value differently.
    #[arg(long, env = "CASCADE_TRANSFORM_KEY", hide_env_values = true)]
    pub transform_key: Option<crate::transform::TransformKey>,

    /// Address of the HTTP endpoint serving /healthz, /readyz and /metrics.
    #[arg(long, env = "CDC_HTTP_ADDR", default_value = "0.0.0.0:9100")]
    pub http_addr: SocketAddr,

    /// Partitions of a topic that cdc creates (an existing topic keeps its own count).
    #[arg(long, env = "CDC_TOPIC_PARTITIONS", default_value_t = 8)]
    pub topic_partitions: i32,

    /// Replication factor of a topic that cdc creates.
    #[arg(long, env = "CDC_TOPIC_REPLICATION_FACTOR", default_value_t = 1)]
    pub topic_replication_factor: i32,

    /// How long the producer waits to fill a batch (librdkafka linger.ms).
    #[arg(long, env = "KAFKA_LINGER", default_value = "5ms", value_parser = humantime::parse_duration)]
    pub kafka_linger: Duration,

    /// Maximum size of a produce batch in bytes (librdkafka batch.size).
    #[arg(long, env = "KAFKA_BATCH_SIZE", default_value_t = 1_000_000)]
    pub kafka_batch_size: u32,

    /// Largest message the producer sends (librdkafka message.max.bytes); the broker's and topic's
    /// limits must allow it too. A bigger event stops cdc with an error naming it.
    #[arg(long, env = "KAFKA_MAX_MESSAGE_BYTES", default_value_t = 1_000_000)]
    pub kafka_max_message_bytes: u32,

    /// How long the producer keeps retrying one message before the session restarts from the last
    /// confirmed position (librdkafka message.timeout.ms).
    #[arg(long, env = "KAFKA_MESSAGE_TIMEOUT", default_value = "2m", value_parser = humantime::parse_duration)]
    pub kafka_message_timeout: Duration,

    /// Messages handed to Kafka but not yet acknowledged, at most; reading from PostgreSQL pauses at
    /// this bound, which caps memory.
    #[arg(long, env = "CDC_MAX_IN_FLIGHT", default_value_t = 20_000)]
    pub max_in_flight: usize,

    /// How often the confirmed position is reported to PostgreSQL (it is also reported whenever the
    /// server asks).
    #[arg(long, env = "CDC_STATUS_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub status_interval: Duration,

    /// Stop with an error once PostgreSQL or Kafka has been unreachable for this long (0 = keep
    /// retrying forever).
    #[arg(long, env = "CDC_RETRY_BUDGET", default_value = "0s", value_parser = humantime::parse_duration)]
    pub retry_budget: Duration,

    /// Longest wait between two retries (the wait doubles from 250ms up to this).
    #[arg(long, env = "CDC_MAX_BACKOFF", default_value = "30s", value_parser = humantime::parse_duration)]
    pub max_backoff: Duration,

    /// Whether to copy the rows the tables already hold when cdc creates its slot (the first run):
    /// `initial` copies every table the stream captures into the same topics and partitions, chunk by
    /// chunk, while streaming goes on; `never` streams only what changes afterwards.
    #[arg(long, env = "CDC_SNAPSHOT", value_enum, default_value_t = crate::snapshot::SnapshotMode::Initial)]
    pub snapshot: crate::snapshot::SnapshotMode,

    /// Rows per snapshot chunk (one read of the source between two watermarks; the chunk is held in
    /// memory until the stream reaches its high watermark).
    #[arg(long, env = "CDC_SNAPSHOT_CHUNK_ROWS", default_value_t = 2_000)]
    pub snapshot_chunk_rows: usize,

    /// On SIGTERM/SIGINT, how long to wait for Kafka to acknowledge what is in flight.
    #[arg(long, env = "CDC_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// librdkafka properties for every Kafka client (TLS, SASL, tuning).
    #[command(flatten)]
    pub kafka: shared::kafka::KafkaArgs,
}

pub use shared::config::ConfigError;
pub use shared::config::PgUrl as SourceUrl;

fn field_error(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(field, reason)
}

impl Config {
    /// The shard of every table without a routing file.
    pub const DEFAULT_SHARD: &'static str = shared::shards::DEFAULT_SHARD;

    /// The shards from `--config`, or the single shard `main`; errors name the file, table and field.
    pub fn shard_map(&self) -> Result<shared::shards::ShardMap, ConfigError> {
        match &self.config {
            Some(path) => shared::shards::ShardMap::load(path),
            None => Ok(shared::shards::ShardMap::single()),
        }
    }

    /// The column transforms of the routing file (none without one); a keyed rule without
    /// `CASCADE_TRANSFORM_KEY` is an error naming the variable.
    pub fn transforms(&self) -> Result<crate::transform::Transforms, ConfigError> {
        match &self.config {
            Some(path) => crate::transform::Transforms::load(path, self.transform_key.clone()),
            None => Ok(crate::transform::Transforms::none()),
        }
    }

    /// Checks what clap's types cannot; the error names the offending flag and variable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.transform_key.as_ref().is_some_and(|k| k.is_empty()) {
            return Err(field_error(
                "--transform-key/CASCADE_TRANSFORM_KEY",
                "is empty",
            ));
        }
        if !(1..=1_000_000).contains(&self.snapshot_chunk_rows) {
            return Err(field_error(
                "--snapshot-chunk-rows/CDC_SNAPSHOT_CHUNK_ROWS",
                format!("{} is not between 1 and 1000000", self.snapshot_chunk_rows),
            ));
        }
        if !is_valid_slot_name(&self.slot) {
            return Err(field_error(
                "--slot/CDC_SLOT",
                format!(
                    "{:?} is not a valid slot name (1-63 characters of a-z, 0-9 and _)",
                    self.slot
                ),
            ));
        }
        if self.kafka_brokers.split(',').all(|b| b.trim().is_empty()) {
            return Err(field_error(
                "--kafka-brokers/KAFKA_BROKERS",
                "no broker given",
            ));
        }
        let topic = self.topic(Self::DEFAULT_SHARD);
        if self.topic_prefix.is_empty() || !shared::config::is_kafka_name(&topic) {
            return Err(field_error(
                "--topic-prefix/TOPIC_PREFIX",
                format!(
                    "{:?} does not make a valid Kafka topic name (a-z, A-Z, 0-9, '.', '_', '-')",
                    self.topic_prefix
                ),
            ));
        }
        if self.topic_partitions < 1 {
            return Err(field_error(
                "--topic-partitions/CDC_TOPIC_PARTITIONS",
                "must be at least 1",
            ));
        }
        if self.topic_replication_factor < 1 {
            return Err(field_error(
                "--topic-replication-factor/CDC_TOPIC_REPLICATION_FACTOR",
                "must be at least 1",
            ));
        }
        if self.max_in_flight < 1 {
            return Err(field_error(
                "--max-in-flight/CDC_MAX_IN_FLIGHT",
                "must be at least 1",
            ));
        }
        if self.status_interval.is_zero() {
            return Err(field_error(
                "--status-interval/CDC_STATUS_INTERVAL",
                "must be more than 0",
            ));
        }
        if self.kafka_message_timeout < Duration::from_secs(1) {
            return Err(field_error(
                "--kafka-message-timeout/KAFKA_MESSAGE_TIMEOUT",
                "must be at least 1s",
            ));
        }
        if !(1000..=1_000_000_000).contains(&self.kafka_max_message_bytes) {
            return Err(field_error(
                "--kafka-max-message-bytes/KAFKA_MAX_MESSAGE_BYTES",
                "must be between 1000 and 1000000000",
            ));
        }
        if self.kafka_linger > Duration::from_secs(5) {
            return Err(field_error(
                "--kafka-linger/KAFKA_LINGER",
                "must be at most 5s",
            ));
        }
        self.kafka.check()
    }

    /// The topic of a shard: `<prefix>.<shard>`.
    pub fn topic(&self, shard: &str) -> String {
        format!("{}.{}", self.topic_prefix, shard)
    }
}

fn is_valid_slot_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        let mut all = vec![
            "cdc",
            "--source-url",
            "postgres://u:secret@db:5433/app",
            "--kafka-brokers",
            "k:9092",
        ];
        all.extend_from_slice(args);
        Config::try_parse_from(all)
    }

    #[test]
    fn defaults_follow_the_brief() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.slot, "cascade");
        assert_eq!(c.topic_prefix, "cascade");
        assert_eq!(c.http_addr.to_string(), "0.0.0.0:9100");
        assert_eq!(c.topic("main"), "cascade.main");
        c.validate().unwrap();
    }

    #[test]
    fn password_is_never_printed() {
        let c = parse(&[]).unwrap();
        let shown = format!("{:?} {}", c, c.source_url);
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("db:5433/app"), "{shown}");
    }

    #[test]
    fn validation_names_the_field() {
        let e = parse(&["--slot", "Bad-Slot"])
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "--slot/CDC_SLOT");
        let e = parse(&["--topic-prefix", "a b"])
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "--topic-prefix/TOPIC_PREFIX");
        let e = parse(&["--topic-partitions", "0"])
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(e
            .to_string()
            .starts_with("--topic-partitions/CDC_TOPIC_PARTITIONS"));
    }

    #[test]
    fn bad_url_is_rejected_by_the_parser() {
        let err =
            Config::try_parse_from(["cdc", "--source-url", "mysql://x", "--kafka-brokers", "k:1"])
                .unwrap_err();
        assert!(err.to_string().contains("--source-url"), "{err}");
    }
}
