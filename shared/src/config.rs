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

/// libpq's `sslmode`: whether to use TLS and what to verify.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, without verifying the certificate (libpq's default).
    #[default]
    Prefer,
    /// TLS or nothing; the certificate is verified against `sslrootcert` when one is given (as
    /// libpq does), not otherwise.
    Require,
    /// TLS, the certificate signed by a trusted CA (`sslrootcert`, else the system's).
    VerifyCa,
    /// As `VerifyCa`, and the certificate names the host connected to.
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// The TLS parameters of a PostgreSQL URL, as libpq spells them (`sslmode`, `sslrootcert`,
/// `sslcert`, `sslkey`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PgTls {
    pub mode: SslMode,
    /// PEM file of the CA certificates to trust.
    pub root_cert: Option<std::path::PathBuf>,
    /// PEM client certificate and its PKCS#8 PEM key, for certificate authentication.
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
}

/// A PostgreSQL URL. Parsed once into a connection config; `Debug`/`Display` never show the password.
#[derive(Clone)]
pub struct PgUrl {
    config: tokio_postgres::Config,
    tls: PgTls,
}

impl PgUrl {
    pub fn pg_config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The URL's TLS parameters.
    pub fn tls(&self) -> &PgTls {
        &self.tls
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
        let (rest, tls) = split_tls(s)?;
        let config: tokio_postgres::Config = rest
            .parse()
            .map_err(|e| format!("invalid PostgreSQL URL: {e}"))?;
        if config.get_user().is_none() {
            return Err("the URL names no user (postgres://USER@host/db)".to_owned());
        }
        if config.get_hosts().is_empty() {
            return Err("the URL names no host".to_owned());
        }
        Ok(PgUrl { config, tls })
    }
}

/// Takes libpq's TLS parameters out of a URL's query (tokio-postgres knows `sslmode` only up to
/// `require`, and no certificate files): the URL for tokio-postgres, with `sslmode` mapped to what
/// it knows (`verify-*` → `require`), and the parameters themselves.
fn split_tls(url: &str) -> Result<(String, PgTls), String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => return Ok((url.to_owned(), PgTls::default())),
    };
    let mut tls = PgTls::default();
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = percent_decode(value);
        match key {
            "sslmode" => {
                tls.mode = match decoded.as_str() {
                    "disable" => SslMode::Disable,
                    "allow" | "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    other => {
                        return Err(format!(
                            "sslmode: {other:?} is not one of disable, prefer, require, verify-ca, verify-full"
                        ))
                    }
                };
                let known = match tls.mode {
                    SslMode::Disable => "disable",
                    SslMode::Prefer => "prefer",
                    _ => "require",
                };
                kept.push(format!("sslmode={known}"));
            }
            "sslrootcert" => tls.root_cert = Some(decoded.into()),
            "sslcert" => tls.cert = Some(decoded.into()),
            "sslkey" => tls.key = Some(decoded.into()),
            _ => kept.push(pair.to_owned()),
        }
    }
    if tls.cert.is_some() != tls.key.is_some() {
        return Err(
            "sslcert and sslkey: give both (a client certificate and its key) or neither"
                .to_owned(),
        );
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, tls))
}

/// `%XX` escapes of a URL query value decoded (`+` stays: libpq does not read it as a space).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
    fn tls_parameters_are_read_as_libpq_spells_them() {
        let url: PgUrl = "postgres://u:p@h:5433/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x"
            .parse()
            .unwrap();
        assert_eq!(url.tls().mode, SslMode::VerifyFull);
        assert_eq!(
            url.tls().root_cert.as_deref(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
        assert_eq!(url.pg_config().get_application_name(), Some("x"));
        assert_eq!(
            url.pg_config().get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        let plain: PgUrl = "postgres://u@h/db".parse().unwrap();
        assert_eq!(plain.tls().mode, SslMode::Prefer);
        let err = "postgres://u@h/db?sslmode=maybe"
            .parse::<PgUrl>()
            .unwrap_err();
        assert!(err.contains("sslmode"), "{err}");
        let err = "postgres://u@h/db?sslcert=/c.pem"
            .parse::<PgUrl>()
            .unwrap_err();
        assert!(err.contains("sslkey"), "{err}");
    }

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
