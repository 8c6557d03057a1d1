//! TLS to the source, as libpq does it (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`), through the
//! system's OpenSSL (`native-tls`): one connector for the replication connection and tokio-postgres'
//! SQL connections alike.
//!
//! A TLS problem is a configuration error (exit 2, naming the parameter), never a reason to retry:
//! an unreadable certificate file, a server without TLS under `require`, a certificate that the CA
//! does not sign or that names another host.

use shared::config::{PgTls, SslMode};
use shared::service::Invalid;

use crate::error::CdcError;

/// A configuration error of the source's TLS parameters.
pub fn invalid(parameter: &str, reason: impl std::fmt::Display) -> CdcError {
    CdcError::Tls(Invalid::configuration(format!(
        "--source-url/CDC_SOURCE_URL {parameter}: {reason}"
    )))
}

/// The connector for the URL's TLS parameters.
pub fn connector(tls: &PgTls) -> Result<native_tls::TlsConnector, CdcError> {
    let mut builder = native_tls::TlsConnector::builder();
    if let Some(path) = &tls.root_cert {
        let pem = std::fs::read(path).map_err(|e| {
            invalid(
                "sslrootcert",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let certs = native_tls::Certificate::stack_from_pem(&pem).map_err(|e| {
            invalid(
                "sslrootcert",
                format!("{} holds no PEM certificate: {e}", path.display()),
            )
        })?;
        if certs.is_empty() {
            return Err(invalid(
                "sslrootcert",
                format!("{} holds no PEM certificate", path.display()),
            ));
        }
        // Only the given CA, like libpq: the system's store is not trusted on top of it.
        builder.disable_built_in_roots(true);
        for cert in certs {
            builder.add_root_certificate(cert);
        }
    }
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        let read = |path: &std::path::Path, parameter: &str| {
            std::fs::read(path)
                .map_err(|e| invalid(parameter, format!("cannot read {}: {e}", path.display())))
        };
        let identity =
            native_tls::Identity::from_pkcs8(&read(cert, "sslcert")?, &read(key, "sslkey")?)
                .map_err(|e| {
                    invalid(
                        "sslcert/sslkey",
                        format!("not a PEM certificate and PKCS#8 key: {e}"),
                    )
                })?;
        builder.identity(identity);
    }
    match tls.mode {
        SslMode::VerifyFull => {}
        SslMode::VerifyCa => {
            builder.danger_accept_invalid_hostnames(true);
        }
        // libpq: `require` with a root certificate verifies the chain, like verify-ca.
        SslMode::Require if tls.root_cert.is_some() => {
            builder.danger_accept_invalid_hostnames(true);
        }
        SslMode::Require | SslMode::Prefer | SslMode::Disable => {
            builder.danger_accept_invalid_certs(true);
            builder.danger_accept_invalid_hostnames(true);
        }
    }
    builder
        .build()
        .map_err(|e| invalid("sslmode", format!("cannot set up TLS: {e}")))
}

/// The connector tokio-postgres uses for cdc's SQL connections to the source.
pub fn make_tls_connect(tls: &PgTls) -> Result<postgres_native_tls::MakeTlsConnector, CdcError> {
    Ok(postgres_native_tls::MakeTlsConnector::new(connector(tls)?))
}

/// Whether a failed TLS connection is the configuration's fault, from the failure's text (a
/// certificate not trusted, another host's name, a server without TLS): then stop, naming the
/// parameters; else (the connection dropped) `None`, and the caller retries.
pub fn configuration_fault(tls: &PgTls, text: &str) -> Option<CdcError> {
    if text.contains("server does not support TLS") {
        return Some(no_tls(tls));
    }
    let lower = text.to_ascii_lowercase();
    let about_certificate = [
        "certificate",
        "verify",
        "hostname",
        "self-signed",
        "self signed",
    ]
    .iter()
    .any(|w| lower.contains(w));
    about_certificate.then(|| {
        invalid(
            if tls.root_cert.is_some() {
                "sslrootcert/sslmode"
            } else {
                "sslmode"
            },
            format!(
                "the source's TLS certificate is not accepted with sslmode={}: {text}",
                tls.mode.as_str()
            ),
        )
    })
}

/// The server answered the TLS request with no, and `sslmode` requires TLS.
pub fn no_tls(tls: &PgTls) -> CdcError {
    invalid(
        "sslmode",
        format!(
            "the source does not accept TLS connections, and sslmode={} requires one",
            tls.mode.as_str()
        ),
    )
}
