//! Command-line and environment configuration of `cascade-gen`.

pub use shared::config::PgUrl as DatabaseUrl;
use std::time::Duration;

use clap::Parser;
use shared::config::ConfigError;
use shared::telemetry::LogFormat;

/// Fills the demo's PostgreSQL source with realistic multi-tenant SaaS data: organizations, users,
/// subscriptions, invoices and events. `--bulk N` inserts N organizations with all their rows (one
/// transaction each); `--rate R` then keeps a realistic mix of R transactions per second going until
/// `--duration` ends or SIGTERM/SIGINT. The same `--seed` gives the same bulk data, everywhere.
#[derive(Debug, Clone, Parser)]
#[command(name = "cascade-gen", version, about, long_about = None)]
pub struct Config {
    /// The database to fill, as a URL: postgres://user:password@host:port/database. The password
    /// is never logged.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: DatabaseUrl,

    /// Names the data set: the same seed gives the same bulk rows (and the same steady-mode
    /// choices) on any machine.
    #[arg(long, env = "GEN_SEED", default_value_t = 42)]
    pub seed: u64,

    /// Insert this many organizations, each with its users, subscriptions, invoices and events in
    /// one transaction (batched multi-row INSERTs).
    #[arg(long, env = "GEN_BULK", value_name = "N")]
    pub bulk: Option<u64>,

    /// Steady mode, after any bulk load: this many transactions per second (fractions allowed) of
    /// sign-ups, new users, plan changes, invoices issued and paid, activity, cancellations and
    /// deletions.
    #[arg(long, env = "GEN_RATE", value_name = "R")]
    pub rate: Option<f64>,

    /// How long steady mode runs (e.g. 30s, 10m); without it, until SIGTERM/SIGINT.
    #[arg(long, env = "GEN_DURATION", value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,

    /// Apply main-db/schema.sql (idempotent; embedded in the binary) before generating.
    /// GEN_SCHEMA takes true/false, 1/0, yes/no or on/off.
    #[arg(long, env = "GEN_SCHEMA", value_parser = clap::builder::BoolishValueParser::new())]
    pub schema: bool,

    /// Longest wait between two connection attempts while the database is unreachable (the wait
    /// doubles from 250ms up to this).
    #[arg(long, env = "GEN_MAX_BACKOFF", default_value = "10s", value_parser = humantime::parse_duration)]
    pub max_backoff: Duration,

    /// Log format (logs go to stderr; progress and the summary to stdout).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The most transactions per second steady mode is asked for.
pub const MAX_RATE: f64 = 100_000.0;

impl Config {
    /// Checks what clap's types cannot; the error names the offending flag and variable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.bulk.is_none() && self.rate.is_none() && !self.schema {
            return Err(ConfigError::new(
                "--bulk/GEN_BULK, --rate/GEN_RATE, --schema/GEN_SCHEMA",
                "nothing to do: give at least one of them",
            ));
        }
        if self.bulk == Some(0) {
            return Err(ConfigError::new("--bulk/GEN_BULK", "must be at least 1"));
        }
        if let Some(rate) = self.rate {
            if !(rate > 0.0 && rate <= MAX_RATE) {
                return Err(ConfigError::new(
                    "--rate/GEN_RATE",
                    format!("{rate} is not a rate: give more than 0 and at most {MAX_RATE} transactions per second"),
                ));
            }
        }
        if let Some(duration) = self.duration {
            if self.rate.is_none() {
                return Err(ConfigError::new(
                    "--duration/GEN_DURATION",
                    "only steady mode has a duration: give --rate too",
                ));
            }
            if duration.is_zero() {
                return Err(ConfigError::new(
                    "--duration/GEN_DURATION",
                    "must be more than 0",
                ));
            }
        }
        if self.max_backoff < Duration::from_millis(250) {
            return Err(ConfigError::new(
                "--max-backoff/GEN_MAX_BACKOFF",
                "must be at least 250ms",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        let mut all = vec![
            "cascade-gen",
            "--database-url",
            "postgres://u:secret@db:5433/app",
        ];
        all.extend_from_slice(args);
        Config::try_parse_from(all)
    }

    fn field(args: &[&str]) -> String {
        parse(args)
            .unwrap()
            .validate()
            .unwrap_err()
            .field
            .into_owned()
    }

    #[test]
    fn defaults_and_combinations() {
        let c = parse(&[
            "--bulk",
            "5",
            "--rate",
            "2.5",
            "--duration",
            "2s",
            "--schema",
        ])
        .unwrap();
        c.validate().unwrap();
        assert_eq!((c.seed, c.bulk, c.rate), (42, Some(5), Some(2.5)));
        assert_eq!(c.duration, Some(Duration::from_secs(2)));
        parse(&["--schema"]).unwrap().validate().unwrap();
        parse(&["--rate", "1"]).unwrap().validate().unwrap();
    }

    #[test]
    fn validation_names_the_field() {
        assert_eq!(
            field(&[]),
            "--bulk/GEN_BULK, --rate/GEN_RATE, --schema/GEN_SCHEMA"
        );
        assert_eq!(field(&["--bulk", "0"]), "--bulk/GEN_BULK");
        assert_eq!(field(&["--rate", "0"]), "--rate/GEN_RATE");
        assert_eq!(field(&["--rate", "NaN"]), "--rate/GEN_RATE");
        assert_eq!(field(&["--rate", "1e9"]), "--rate/GEN_RATE");
        assert_eq!(
            field(&["--bulk", "1", "--duration", "5s"]),
            "--duration/GEN_DURATION"
        );
        assert_eq!(
            field(&["--rate", "1", "--duration", "0s"]),
            "--duration/GEN_DURATION"
        );
        assert_eq!(
            field(&["--bulk", "1", "--max-backoff", "1ms"]),
            "--max-backoff/GEN_MAX_BACKOFF"
        );
    }

    #[test]
    fn bad_values_are_rejected_by_the_parser() {
        for args in [
            ["--bulk=-1"],
            ["--bulk=many"],
            ["--duration=soon"],
            ["--seed=x"],
        ] {
            let err = parse(&args).unwrap_err();
            let flag = args[0].split('=').next().unwrap();
            assert!(err.to_string().contains(flag), "{err}");
        }
        let err =
            Config::try_parse_from(["cascade-gen", "--database-url", "mysql://x", "--schema"])
                .unwrap_err();
        assert!(err.to_string().contains("--database-url"), "{err}");
    }

    #[test]
    fn password_is_never_printed() {
        let c = parse(&["--schema"]).unwrap();
        let shown = format!("{c:?} {}", c.database_url);
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("db:5433/app"), "{shown}");
    }
}
