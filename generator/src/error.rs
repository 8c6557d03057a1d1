//! What can stop the generator, split by what to do about it: transient failures (the database is
//! away, a connection was cut) are retried after reconnecting; anything else stops with exit 1.

use std::time::Duration;

use tokio_postgres::error::SqlState;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to PostgreSQL at {target}")]
    Connect {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("timed out after {after:?} connecting to PostgreSQL at {target}")]
    ConnectTimeout { target: String, after: Duration },
    #[error("the tables of main-db/schema.sql are missing in {target}: run with --schema")]
    MissingSchema {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{what} failed")]
    Sql {
        what: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{what} timed out after {after:?}")]
    Timeout { what: String, after: Duration },
}

impl Error {
    /// Wraps a failed statement with what it was doing (`insert organization 17`).
    pub fn sql(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Error {
        let what = what.into();
        move |source| Error::Sql { what, source }
    }

    /// True when reconnecting and trying again may succeed: the connection was lost or refused, the
    /// server is starting or shutting down, or a serialization failure or deadlock rolled the
    /// transaction back.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Connect { source, .. } | Error::Sql { source, .. } => is_transient(source),
            Error::ConnectTimeout { .. } | Error::Timeout { .. } => true,
            Error::MissingSchema { .. } => false,
        }
    }
}

fn is_transient(error: &tokio_postgres::Error) -> bool {
    if let Some(db) = error.as_db_error() {
        let code = db.code();
        return code.code().starts_with("08")
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::TOO_MANY_CONNECTIONS,
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
            ]
            .contains(code);
    }
    // No answer from the server: a closed connection or an I/O error on the socket.
    error.is_closed()
        || std::error::Error::source(error)
            .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some())
}
