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

/// Connection-string parameters whose value is a secret.
const SECRET_PARAMETERS: [&str; 4] = ["password", "sslpassword", "passwd", "pwd"];

/// `text` with every credential in it replaced by `***`: the password of each `scheme://user:password@`
/// URL, and the value of each `password=`-like parameter (URL query or `key=value` connection string).
/// Used on whatever may quote a URL back to the user: argument errors, logged URLs.
pub fn redact_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    // URL passwords: between the first ':' of the userinfo and the authority's last '@'.
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| matches!(c, '/' | '?' | '#' | '\'' | '"') || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..=colon]);
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    redact_parameters(&out)
}

/// Replaces the values of [`SECRET_PARAMETERS`] (`password=…` up to `&`, `;`, a quote or a space).
fn redact_parameters(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let starts_parameter = i == 0
            || matches!(
                text.as_bytes()[i - 1],
                b'?' | b'&' | b';' | b' ' | b'\t' | b'\'' | b'"'
            );
        let secret = starts_parameter
            .then(|| {
                SECRET_PARAMETERS
                    .iter()
                    .find(|p| lower[i..].starts_with(&format!("{p}=")))
            })
            .flatten();
        if let Some(p) = secret {
            let value_at = i + p.len() + 1;
            let value_end = text[value_at..]
                .find(|c: char| matches!(c, '&' | ';' | '\'' | '"') || c.is_whitespace())
                .map_or(text.len(), |e| value_at + e);
            out.push_str(&text[i..value_at]);
            out.push_str("***");
            i = value_end;
        } else {
            let c = text[i..].chars().next().unwrap_or_default();
            out.push(c);
            i += c.len_utf8().max(1);
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_wherever_a_url_is_quoted() {
        for (text, want) in [
            (
                "invalid value 'postgres://u:s3cret@host:x/db' for '--source-url'",
                "invalid value 'postgres://u:***@host:x/db' for '--source-url'",
            ),
            ("mysql://u:p@ss:w@h:3306/db", "mysql://u:***@h:3306/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://h:5432/db", "postgres://h:5432/db"),
            (
                "postgres://h/db?user=u&password=s3cret&sslmode=require",
                "postgres://h/db?user=u&password=***&sslmode=require",
            ),
            (
                "host=h PASSWORD=s3cret user=u",
                "host=h PASSWORD=*** user=u",
            ),
            ("sslpassword=x", "sslpassword=***"),
            ("nopassword=x", "nopassword=x"),
            ("sqlite:///var/lib/r.db", "sqlite:///var/lib/r.db"),
            ("ünïcode://ü:ß@h", "ünïcode://ü:***@h"),
        ] {
            assert_eq!(redact_secrets(text), want, "{text}");
        }
    }
}
