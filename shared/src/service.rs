//! One bootstrap for every binary (`cdc`, `shard-router`, `cascade-gen`): the async runtime, logs and
//! traces, the configuration check, the HTTP endpoint with metrics and readiness, SIGTERM/SIGINT, and
//! the exit code.
//!
//! Exit codes, the same for every binary:
//! - [`EXIT_OK`] (0): finished, or stopped by SIGTERM/SIGINT after a clean shutdown;
//! - [`EXIT_FAILED`] (1): stopped by an error at run time (the error and its causes on stderr);
//! - [`EXIT_INVALID_CONFIG`] (2): the configuration is invalid (the message names the flag, variable or
//!   file field), or a check at start found the environment unfit (an app error caused by an
//!   [`Invalid`], e.g. cdc's check of the source's replica identities); nothing was streamed.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::health::{HealthError, Readiness};
use crate::telemetry::LogFormat;

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_INVALID_CONFIG: u8 = 2;

/// A configuration that cannot run: what was checked (`configuration`, `routing file`) and why.
#[derive(Debug)]
pub struct Invalid {
    what: &'static str,
    message: String,
}

impl Invalid {
    /// Flags and variables.
    pub fn configuration(error: impl std::fmt::Display) -> Self {
        Invalid {
            what: "configuration",
            message: error.to_string(),
        }
    }

    /// The routing file.
    pub fn routing_file(error: impl std::fmt::Display) -> Self {
        Invalid {
            what: "routing file",
            message: error.to_string(),
        }
    }

    /// The source database, found unfit by a check at start (an app returns it as the cause of its
    /// error, and the process exits 2 like for any other invalid configuration).
    pub fn source(error: impl std::fmt::Display) -> Self {
        Invalid {
            what: "source",
            message: error.to_string(),
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid {}: {}", self.what, self.message)
    }
}

impl std::error::Error for Invalid {}

/// The [`Invalid`] in an error's chain (the error itself or one of its causes), if any.
fn invalid_cause<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Invalid> {
    let mut cur = Some(error);
    while let Some(e) = cur {
        if let Some(invalid) = e.downcast_ref::<Invalid>() {
            return Some(invalid);
        }
        cur = e.source();
    }
    None
}

/// Runs a binary to its exit code: builds the runtime, installs logs and traces (`service` names them),
/// runs `check` (an [`Invalid`] exits 2 with `<name>: invalid <what>: <message>`), then `app` with what
/// `check` returned (an error exits 1 with `<name>: error: <error>: <cause>: …`, or 2 like `check`'s
/// when an [`Invalid`] caused it).
pub fn run<T, E, Fut>(
    name: &'static str,
    log_format: LogFormat,
    check: impl FnOnce() -> Result<T, Invalid>,
    app: impl FnOnce(T) -> Fut,
) -> ExitCode
where
    Fut: Future<Output = Result<(), E>>,
    E: std::error::Error + 'static,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("{name}: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let _tracing = {
        let _inside = runtime.enter();
        crate::telemetry::init_tracing(log_format, name)
    };
    let checked = match check() {
        Ok(checked) => checked,
        Err(invalid) => {
            tracing::error!("invalid {}: {}", invalid.what, invalid.message);
            eprintln!("{name}: invalid {}: {}", invalid.what, invalid.message);
            return ExitCode::from(EXIT_INVALID_CONFIG);
        }
    };
    match runtime.block_on(app(checked)) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(error) => {
            if let Some(invalid) = invalid_cause(&error) {
                tracing::error!("invalid {}: {}", invalid.what, invalid.message);
                eprintln!("{name}: invalid {}: {}", invalid.what, invalid.message);
                return ExitCode::from(EXIT_INVALID_CONFIG);
            }
            let report = error_chain(&error);
            tracing::error!(error = report, "{name} stopped");
            eprintln!("{name}: error: {report}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Parses the command line (`args`, program name first) into `C`, like clap's `parse_from`, except
/// that an argument error never shows a credential: clap quotes the value it refused, and a refused
/// `--source-url` is a URL with its password. Help and version print as usual; an argument error
/// exits 2 (clap's usage-error code, the same as an invalid configuration).
pub fn parse_args<C, I>(args: I) -> C
where
    C: clap::Parser,
    I: IntoIterator,
    I::Item: Into<std::ffi::OsString> + Clone,
{
    match C::try_parse_from(args) {
        Ok(parsed) => parsed,
        Err(error) => {
            use clap::error::ErrorKind;
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                error.exit()
            }
            eprint!(
                "{}",
                crate::config::redact_secrets(&error.render().to_string())
            );
            std::process::exit(error.exit_code())
        }
    }
}

/// The error and its causes on one line, `error: cause: cause`.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut s = error.to_string();
    let mut cur = error.source();
    while let Some(e) = cur {
        s.push_str(": ");
        s.push_str(&e.to_string());
        cur = e.source();
    }
    s
}

/// Why the HTTP endpoint or the metrics recorder could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Http(#[from] HealthError),
    #[error("cannot install the metrics recorder")]
    Metrics(#[from] metrics_exporter_prometheus::BuildError),
}

/// How often the `process_*` metrics are refreshed.
const PROCESS_METRICS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// What a long-running binary runs inside: the metrics recorder, `/healthz` `/readyz` `/metrics`,
/// readiness, and the shutdown token cancelled by SIGTERM/SIGINT.
pub struct Service {
    pub shutdown: CancellationToken,
    pub ready: Readiness,
    http_stop: CancellationToken,
    http: tokio::task::JoinHandle<()>,
}

impl Service {
    /// Installs the metrics recorder with `buckets`, runs `describe` (the binary's metric
    /// descriptions), serves the endpoints on `addr` and watches for SIGTERM/SIGINT.
    pub async fn start(
        addr: SocketAddr,
        buckets: &[(&str, &[f64])],
        describe: fn(),
    ) -> Result<Service, ServiceError> {
        let handle = crate::telemetry::init_metrics(buckets)?;
        describe();
        let shutdown = CancellationToken::new();
        crate::shutdown::cancel_on_signal(shutdown.clone());
        let ready = Readiness::default();
        let http_stop = CancellationToken::new();
        // process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, … refreshed
        // every few seconds (as often as Prometheus scrapes, at most).
        let collector = metrics_process::Collector::default();
        collector.describe();
        let stop = http_stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROCESS_METRICS_INTERVAL);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => collector.collect(),
                }
            }
        });
        let http = crate::health::serve(addr, ready.clone(), handle, http_stop.clone()).await?;
        Ok(Service {
            shutdown,
            ready,
            http_stop,
            http,
        })
    }

    /// Not ready any more; stops the endpoint and waits for it.
    pub async fn stop(self) {
        self.ready.set(false);
        self.http_stop.cancel();
        let _ = self.http.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn errors_print_with_their_causes_on_one_line() {
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(error_chain(&e), "outer: inner");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("refused")]
    struct Refused(#[source] Invalid);

    #[test]
    fn an_invalid_cause_is_found_in_the_chain() {
        let e = Refused(Invalid::source("table t lacks its key"));
        let found = invalid_cause(&e).map(ToString::to_string);
        assert_eq!(
            found.as_deref(),
            Some("invalid source: table t lacks its key")
        );
        assert!(invalid_cause(&Outer(std::io::Error::other("x"))).is_none());
    }
}
