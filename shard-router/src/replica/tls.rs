//! TLS to the replica, as the replica URL asks for it: PostgreSQL's `sslmode`, `sslrootcert`,
//! `sslcert`, `sslkey` (libpq's names), MySQL/MariaDB's `ssl-mode`, `ssl-ca`, `ssl-cert`, `ssl-key`
//! (sqlx parses them; the handshake uses the system OpenSSL). A TLS failure when connecting (a CA that
//! did not sign the server's certificate, a host the certificate does not name, a server without TLS
//! when the URL requires it) is a configuration error: waiting does not fix it, so the router stops
//! (exit 2) naming the parameters instead of retrying.

use shared::config::ConfigError;
use shared::service::Invalid;

use crate::config::ReplicaUrl;
use crate::dialect::Dialect;
use crate::error::RouterError;

const FIELD: &str = "--replica-url/ROUTER_REPLICA_URL";

/// URL parameters that name a file (PostgreSQL's and sqlx's spellings).
const FILE_PARAMETERS: [&str; 8] = [
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
];

/// The URL's TLS parameters as `key=value` (no secrets: `sslpassword` is left out).
fn tls_parameters(url: &ReplicaUrl) -> Vec<String> {
    url.secret_url()
        .query_pairs()
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            k.starts_with("ssl") && !k.contains("password")
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

/// Checks that the files the URL's TLS parameters name can be read (sqlx would report a missing one
/// as an I/O error, which looks like an unreachable server).
pub fn check_files(url: &ReplicaUrl) -> Result<(), ConfigError> {
    for (key, value) in url.secret_url().query_pairs() {
        let key = key.to_ascii_lowercase();
        // sqlx also takes a PEM text in place of a path.
        if !FILE_PARAMETERS.contains(&key.as_str()) || value.starts_with("-----BEGIN") {
            continue;
        }
        if let Err(error) = std::fs::File::open(&*value) {
            return Err(ConfigError::new(
                FIELD,
                format!("{key}: cannot read {value}: {error}"),
            ));
        }
    }
    Ok(())
}

/// True for a TLS error that is not a lost connection: the handshake failed on its merits.
fn is_tls_failure(error: &sqlx::Error) -> bool {
    let sqlx::Error::Tls(tls) = error else {
        return false;
    };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(tls.as_ref());
    while let Some(e) = cause {
        if e.is::<std::io::Error>() {
            return false;
        }
        cause = e.source();
    }
    true
}

/// The error and its causes, each said once (sqlx's and OpenSSL's messages repeat their causes).
fn distinct_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = e.source();
    }
    text
}

/// Turns a connect error that is a TLS failure into a configuration error naming the parameters;
/// returns other errors unchanged.
pub(super) fn refused(url: &ReplicaUrl, error: RouterError) -> RouterError {
    let RouterError::Replica { source, .. } = &error else {
        return error;
    };
    if !is_tls_failure(source) {
        return error;
    }
    let parameters = tls_parameters(url);
    let given = if parameters.is_empty() {
        "no TLS parameters".to_owned()
    } else {
        parameters.join(" ")
    };
    let cause = distinct_chain(source);
    let no_tls = cause.contains("does not support TLS");
    let hint = match (url.dialect, no_tls) {
        (Dialect::Postgres, true) => {
            "the server does not accept TLS: turn it on there, or lower sslmode"
        }
        (Dialect::Postgres, false) => {
            "sslrootcert must name the CA that signed the server's certificate, and with \
             sslmode=verify-full the URL's host must be a name or address the certificate holds \
             (sslmode=verify-ca checks only the CA)"
        }
        (_, true) => "the server does not accept TLS: turn it on there, or lower ssl-mode",
        (_, false) => {
            "ssl-ca must name the CA that signed the server's certificate, and with \
             ssl-mode=VERIFY_IDENTITY the URL's host must be a name or address the certificate \
             holds (ssl-mode=VERIFY_CA checks only the CA)"
        }
    };
    let reason = format!("TLS to the replica failed ({given}): {cause}; {hint}");
    RouterError::Invalid(Invalid::configuration(ConfigError::new(FIELD, reason)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_failures_are_configuration_errors_and_lost_connections_are_not() {
        let url: ReplicaUrl = "postgres://u:secret@h/db?sslmode=verify-full&sslrootcert=/ca.pem"
            .parse()
            .unwrap();
        let no_tls = RouterError::replica(
            "cannot connect",
            sqlx::Error::Tls("server does not support TLS".into()),
        );
        let e = refused(&url, no_tls);
        assert!(!e.is_retryable());
        let shown = shared::service::error_chain(&e);
        assert!(
            shown.contains("sslmode=verify-full sslrootcert=/ca.pem"),
            "{shown}"
        );
        assert!(!shown.contains("secret"), "{shown}");
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let lost = RouterError::replica("cannot connect", sqlx::Error::Tls(Box::new(reset)));
        assert!(refused(&url, lost).is_retryable());
    }

    #[test]
    fn a_missing_certificate_file_names_the_parameter() {
        let url: ReplicaUrl = "mysql://u@h/db?ssl-mode=VERIFY_CA&ssl-ca=/nonexistent/ca.pem"
            .parse()
            .unwrap();
        let e = check_files(&url).unwrap_err();
        assert_eq!(e.field, FIELD);
        assert!(
            e.reason
                .starts_with("ssl-ca: cannot read /nonexistent/ca.pem"),
            "{e}"
        );
    }
}
