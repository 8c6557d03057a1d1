//! Pieces of configuration handling shared by the binaries.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

/// A configuration value that is wrong, with the flag and variable that carry it
/// (`--slot/CDC_SLOT: "Bad-Slot" is not a valid slot name`).
#[derive(Debug, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    pub field: Cow<'static, str>,
    pub reason: String,
}

impl ConfigError {
    pub fn new(field: impl Into<Cow<'static, str>>, reason: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// True if `s` may be part of a Kafka topic or group name (a-z, A-Z, 0-9, `.`, `_`, `-`).
pub fn is_kafka_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 249
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A PostgreSQL URL. Parsed once into a connection config; `Debug`/`Display` never show the password.
#[derive(Clone)]
pub struct PgUrl {
    config: tokio_postgres::Config,
}

impl PgUrl {
    pub fn pg_config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// `host:port/database` for logs and messages.
    pub fn target(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_owned(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let db = self
            .config
            .get_dbname()
            .or(self.config.get_user())
            .unwrap_or("postgres");
        format!("{host}:{port}/{db}")
    }
}

impl FromStr for PgUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !(s.starts_with("postgres://") || s.starts_with("postgresql://")) {
            return Err("expected a URL starting with postgres:// or postgresql://".to_owned());
        }
        let config: tokio_postgres::Config = s
            .parse()
            .map_err(|e| format!("invalid PostgreSQL URL: {e}"))?;
        if config.get_user().is_none() {
            return Err("the URL names no user (postgres://USER@host/db)".to_owned());
        }
        if config.get_hosts().is_empty() {
            return Err("the URL names no host".to_owned());
        }
        Ok(PgUrl { config })
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgUrl({})", self.target())
    }
}

impl fmt::Display for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.target())
    }
}
