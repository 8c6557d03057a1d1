//! Command-line and environment configuration of `shard-router`.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use shared::telemetry::LogFormat;

use crate::dialect::Dialect;

/// Consumes one shard's Kafka topic (<prefix>.<shard>) in the consumer group
/// <prefix>.<shard>.<replica-name> and applies the changes to one SQL replica.
#[derive(Debug, Clone, Parser)]
#[command(name = "shard-router", version, about, long_about = None)]
pub struct Config {
    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: String,

    /// Prefix of the topics cdc writes (<prefix>.<shard>).
    #[arg(long, env = "TOPIC_PREFIX", default_value = "cascade")]
    pub topic_prefix: String,

    /// The shard this router serves.
    #[arg(long, env = "ROUTER_SHARD", default_value = "main")]
    pub shard: String,

    /// The replica: mysql://user:pass@host:port/db, sqlite://path/to/file.db or
    /// postgres://user:pass@host:port/db. The password is never logged.
    #[arg(long, env = "ROUTER_REPLICA_URL", hide_env_values = true)]
    pub replica_url: ReplicaUrl,

    /// Name of the replica in the consumer group id; defaults to <scheme>-<database>.
    #[arg(long, env = "ROUTER_REPLICA_NAME")]
    pub replica_name: Option<String>,

    /// The routing file (TOML) shared with cdc; the router checks that it defines --shard. Without
    /// it there is one shard, `main`.
    #[arg(long, env = "CASCADE_CONFIG")]
    pub config: Option<std::path::PathBuf>,

    /// Address of the HTTP endpoint serving /healthz, /readyz and /metrics.
    #[arg(long, env = "ROUTER_HTTP_ADDR", default_value = "0.0.0.0:9101")]
    pub http_addr: SocketAddr,

    /// Apply at most this many rows in one replica transaction. Several small source transactions
    /// share one replica transaction up to this size; a larger source transaction is applied in chunks
    /// of this size (see ARCHITECTURE.md for what that means after a crash).
    #[arg(long, env = "ROUTER_BATCH_MAX_ROWS", default_value_t = 5000)]
    pub batch_max_rows: usize,

    /// Apply at most about this many bytes of decoded row changes in one replica transaction (a larger
    /// source transaction is applied in chunks, as for --batch-max-rows): what each partition holds
    /// while it applies, so it bounds the router's memory per partition. Statements within it are
    /// split at 2 MiB of bound values, below MariaDB/MySQL's max_allowed_packet.
    #[arg(long, env = "ROUTER_BATCH_MAX_BYTES", default_value_t = 1 << 20)]
    pub batch_max_bytes: usize,

    /// Commit a replica transaction at most this long after its first complete source transaction
    /// arrived, even if more are coming.
    #[arg(long, env = "ROUTER_BATCH_MAX_WAIT", default_value = "10ms", value_parser = humantime::parse_duration)]
    pub batch_max_wait: Duration,

    /// Longest wait between retries while the replica or Kafka is unavailable.
    #[arg(long, env = "ROUTER_MAX_BACKOFF", default_value = "30s", value_parser = humantime::parse_duration)]
    pub max_backoff: Duration,

    /// How long a partition being revoked or a shutting-down router waits for in-flight replica
    /// transactions to finish.
    #[arg(long, env = "ROUTER_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// What a partition does at an event it cannot apply (one that cannot be decoded, breaks the
    /// framing, or holds a row the replica refuses): `stop` there (fix the cause, restart), or set it
    /// aside in the topic <topic>.dlq and go on (`dead-letter`; `shard-router replay-dlq` applies
    /// dead letters again after a fix).
    #[arg(long, env = "ROUTER_ON_ERROR", value_enum, default_value_t = OnError::Stop)]
    pub on_error: OnError,

    /// Replication factor of the dead-letter topic <topic>.dlq, when the router creates it
    /// (`--on-error dead-letter`).
    #[arg(long, env = "ROUTER_DLQ_REPLICATION_FACTOR", default_value_t = 1)]
    pub dlq_replication_factor: i32,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// librdkafka properties for every Kafka client (TLS, SASL, tuning).
    #[command(flatten)]
    pub kafka: shared::kafka::KafkaArgs,
}

/// What a partition does at an event it cannot apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OnError {
    /// Stop the partition at the event, naming it; restart after fixing the cause.
    #[default]
    Stop,
    /// Set the event aside in <topic>.dlq and go on.
    DeadLetter,
}

pub use shared::config::ConfigError;

impl Config {
    /// Checks what clap's types cannot; the error names the offending flag and variable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let name_ok = shared::config::is_kafka_name;
        if self.kafka_brokers.split(',').all(|b| b.trim().is_empty()) {
            return Err(ConfigError::new(
                "--kafka-brokers/KAFKA_BROKERS",
                "no broker given",
            ));
        }
        if !name_ok(&self.topic_prefix) {
            return Err(ConfigError::new(
                "--topic-prefix/TOPIC_PREFIX",
                format!(
                    "{:?} does not make a valid Kafka topic name",
                    self.topic_prefix
                ),
            ));
        }
        if !name_ok(&self.shard) {
            return Err(ConfigError::new(
                "--shard/ROUTER_SHARD",
                format!(
                    "{:?} is not a valid shard name (a-z, A-Z, 0-9, '.', '_', '-')",
                    self.shard
                ),
            ));
        }
        if let Some(name) = self.replica_name.as_deref().filter(|n| !name_ok(n)) {
            return Err(ConfigError::new(
                "--replica-name/ROUTER_REPLICA_NAME",
                format!("{name:?} is not a valid name (a-z, A-Z, 0-9, '.', '_', '-')"),
            ));
        }
        if self.batch_max_bytes == 0 {
            return Err(ConfigError::new(
                "--batch-max-bytes/ROUTER_BATCH_MAX_BYTES",
                "must be at least 1",
            ));
        }
        if self.batch_max_rows == 0 {
            return Err(ConfigError::new(
                "--batch-max-rows/ROUTER_BATCH_MAX_ROWS",
                "must be at least 1",
            ));
        }
        if self.dlq_replication_factor < 1 {
            return Err(ConfigError::new(
                "--dlq-replication-factor/ROUTER_DLQ_REPLICATION_FACTOR",
                "must be at least 1",
            ));
        }
        if self.max_backoff.is_zero() {
            return Err(ConfigError::new(
                "--max-backoff/ROUTER_MAX_BACKOFF",
                "must be longer than zero",
            ));
        }
        crate::replica::tls::check_files(&self.replica_url)?;
        self.kafka.check()
    }

    /// Reads the routing file (if any) and checks it defines `--shard`.
    pub fn check_shard(&self) -> Result<(), ConfigError> {
        let map = match &self.config {
            Some(path) => shared::shards::ShardMap::load(path)?,
            None => shared::shards::ShardMap::single(),
        };
        if map.shard_index(&self.shard).is_none() {
            let source = match &self.config {
                Some(path) => format!("the routing file {}", path.display()),
                None => {
                    "without --config/CASCADE_CONFIG there is one shard, \"main\"; it".to_owned()
                }
            };
            return Err(ConfigError::new(
                "--shard/ROUTER_SHARD",
                format!(
                    "{source} does not define shard {:?} (shards: {:?})",
                    self.shard,
                    map.shards()
                ),
            ));
        }
        Ok(())
    }

    /// `<prefix>.<shard>`.
    pub fn topic(&self) -> String {
        format!("{}.{}", self.topic_prefix, self.shard)
    }

    /// `<prefix>.<shard>.<replica-name>`.
    pub fn group_id(&self) -> String {
        format!(
            "{}.{}.{}",
            self.topic_prefix,
            self.shard,
            self.replica_name()
        )
    }

    /// `--replica-name`, or `<scheme>-<database>` from the replica URL.
    pub fn replica_name(&self) -> String {
        self.replica_name
            .clone()
            .unwrap_or_else(|| self.replica_url.default_name())
    }
}

/// A replica URL; `Debug`/`Display` never show the password.
#[derive(Clone)]
pub struct ReplicaUrl {
    url: url::Url,
    pub dialect: Dialect,
}

impl ReplicaUrl {
    /// The database and server address, for spans (no user, no password).
    pub fn db_target(&self) -> crate::trace::DbTarget {
        let path = self.url.path().trim_start_matches('/');
        let namespace = match self.dialect {
            // The file, as the URL names it (`sqlite:///var/lib/r.db`, `sqlite://r.db`).
            Dialect::Sqlite => format!(
                "{}{}",
                self.url.host_str().unwrap_or_default(),
                self.url.path()
            ),
            _ => path.to_owned(),
        };
        let address = match (self.url.host_str(), self.url.port()) {
            (Some(h), Some(p)) if self.dialect != Dialect::Sqlite => format!("{h}:{p}"),
            (Some(h), None) if self.dialect != Dialect::Sqlite => h.to_owned(),
            _ => String::new(),
        };
        crate::trace::DbTarget { namespace, address }
    }

    /// The full URL, password included: only for opening the connection, never for printing.
    pub fn secret_url(&self) -> &url::Url {
        &self.url
    }

    /// `mysql`, `sqlite` or `postgres`: the `dialect` label of metrics.
    pub fn scheme_label(&self) -> &'static str {
        self.dialect.label()
    }

    /// `<scheme>-<database>`: the replica's name when `--replica-name` is not given.
    pub fn default_name(&self) -> String {
        let scheme = self.scheme_label();
        let db = self
            .url
            .path_segments()
            .and_then(|mut s| s.next_back().map(str::to_owned))
            .unwrap_or_default();
        let db: String = db
            .trim_end_matches(".db")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if db.is_empty() {
            scheme.to_owned()
        } else {
            format!("{scheme}-{db}")
        }
    }
}

impl FromStr for ReplicaUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let url = url::Url::parse(s).map_err(|e| format!("invalid URL: {e}"))?;
        let Some(dialect) = Dialect::from_scheme(url.scheme()) else {
            return Err(format!(
                "unsupported scheme {:?}: use mysql://, sqlite:// or postgres://",
                url.scheme()
            ));
        };
        Ok(ReplicaUrl { url, dialect })
    }
}

impl fmt::Display for ReplicaUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&shared::config::redact_secrets(self.url.as_str()))
    }
}

impl fmt::Debug for ReplicaUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplicaUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Config {
        let mut args = vec![
            "shard-router",
            "--kafka-brokers",
            "k:9092",
            "--replica-url",
            "mysql://u:secret@h:3306/app",
        ];
        args.extend_from_slice(extra);
        Config::try_parse_from(args).unwrap()
    }

    #[test]
    fn defaults_and_group_id() {
        let c = parse(&[]);
        assert_eq!(c.shard, "main");
        assert_eq!(c.http_addr.to_string(), "0.0.0.0:9101");
        assert_eq!(c.topic(), "cascade.main");
        assert_eq!(c.group_id(), "cascade.main.mysql-app");
        assert_eq!(
            parse(&["--replica-name", "r1", "--shard", "a"]).group_id(),
            "cascade.a.r1"
        );
        c.validate().unwrap();
    }

    #[test]
    fn password_is_hidden_and_scheme_checked() {
        let c = parse(&[]);
        assert!(!format!("{c:?} {}", c.replica_url).contains("secret"));
        let in_query: ReplicaUrl = "postgres://h/db?user=u&password=secret".parse().unwrap();
        assert!(!format!("{in_query:?} {in_query}").contains("secret"));
        assert!("oracle://x".parse::<ReplicaUrl>().is_err());
        assert_eq!(
            "sqlite:///tmp/r.db".parse::<ReplicaUrl>().unwrap().dialect,
            Dialect::Sqlite
        );
    }

    #[test]
    fn on_error_defaults_to_stop_and_takes_dead_letter() {
        assert_eq!(parse(&[]).on_error, OnError::Stop);
        assert_eq!(
            parse(&["--on-error", "dead-letter"]).on_error,
            OnError::DeadLetter
        );
        let args = [
            "shard-router",
            "--kafka-brokers",
            "k:9092",
            "--replica-url",
            "sqlite:///tmp/r.db",
            "--on-error",
            "skip",
        ];
        let e = Config::try_parse_from(args).unwrap_err().to_string();
        assert!(e.contains("--on-error"), "{e}");
        let e = parse(&["--dlq-replication-factor", "0"])
            .validate()
            .unwrap_err();
        assert_eq!(
            e.field,
            "--dlq-replication-factor/ROUTER_DLQ_REPLICATION_FACTOR"
        );
    }

    #[test]
    fn invalid_shard_names_the_field() {
        let e = parse(&["--shard", "a b"]).validate().unwrap_err();
        assert_eq!(e.field, "--shard/ROUTER_SHARD");
    }
}
