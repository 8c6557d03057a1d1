//! Errors of `cdc`, classified by what the caller should do about them.

use shared::Lsn;

/// Everything that can stop a replication session.
#[derive(Debug, thiserror::Error)]
pub enum CdcError {
    /// The source could not be reached or dropped the connection.
    #[error("cannot reach PostgreSQL at {target}")]
    SourceUnreachable {
        target: String,
        #[source]
        source: std::io::Error,
    },
    /// A query on the source failed.
    #[error("PostgreSQL query failed while {context}")]
    SourceQuery {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    /// The server answered with an error.
    #[error("PostgreSQL refused {context}: {message}")]
    Server {
        context: &'static str,
        message: String,
        code: String,
    },
    /// Authentication failed or uses a method we do not speak.
    #[error("authentication with PostgreSQL failed: {0}")]
    Auth(String),
    /// The wire protocol was violated.
    #[error("replication protocol error: {0}")]
    Protocol(String),
    /// The server's configuration cannot serve logical decoding.
    #[error("wal_level is {actual:?} on the source; logical decoding needs wal_level = logical (set it in postgresql.conf and restart PostgreSQL)")]
    WalLevel { actual: String },
    /// wal2json is not installed on the server.
    #[error("the wal2json output plugin is not installed on the source server (install it, e.g. the postgresql-15-wal2json package, then retry): {message}")]
    PluginMissing { message: String },
    /// The server does not allow wal2json as an output plugin.
    #[error("the source server does not allow wal2json as an output plugin: add it to output_plugin_libraries in postgresql.conf (e.g. output_plugin_libraries = 'pgoutput, wal2json') and reload: {message}")]
    PluginNotAllowed { message: String },
    /// The slot exists but cannot be used by cdc.
    #[error("replication slot {slot:?} cannot be used: {reason}; {fix}")]
    SlotUnusable {
        slot: String,
        reason: String,
        fix: &'static str,
    },
    /// The slot is in use by another process.
    #[error("replication slot {slot:?} is in use by another process (pid {pid})")]
    SlotBusy { slot: String, pid: String },
    /// A wal2json message could not be decoded.
    #[error("cannot decode the wal2json message at {lsn}: {reason}")]
    Decode { lsn: Lsn, reason: String },
    /// A row cannot be routed to a shard (see the routing file).
    #[error("cannot route the change at {lsn}: {reason}")]
    Routing { lsn: Lsn, reason: String },
    /// Kafka could not be reached or refused a request.
    #[error("kafka: {context}")]
    Kafka {
        context: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A message could not be delivered; nothing after it is confirmed and the session restarts from
    /// the last confirmed position.
    #[error("kafka did not acknowledge a message of transaction {xid:?}")]
    Delivery {
        xid: Option<u64>,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// One event is larger than Kafka accepts; it cannot be published and is never skipped.
    #[error("the {action} event of {table} at {lsn} is {bytes} bytes, more than --kafka-max-message-bytes allows; raise it (and the broker and topic limits, message.max.bytes and max.message.bytes)")]
    MessageTooLarge {
        action: &'static str,
        table: String,
        lsn: Lsn,
        bytes: usize,
    },
    /// A transform rule cannot apply to a change: nothing is published in the clear instead, cdc stops.
    #[error("cannot transform {table}.{column} at {lsn}: {reason}")]
    Transform {
        table: String,
        column: String,
        lsn: Lsn,
        reason: String,
    },
    /// The replication stream ended without being asked to.
    #[error("the source ended the replication stream")]
    StreamEnded,
    /// Retrying went on for longer than the configured budget.
    #[error("gave up after retrying for {waited:?}")]
    GaveUp {
        waited: std::time::Duration,
        #[source]
        last: Box<CdcError>,
    },
    /// The HTTP endpoint or the metrics recorder could not start.
    #[error(transparent)]
    Service(#[from] shared::service::ServiceError),
}

impl CdcError {
    /// Transient errors are retried with backoff; the others stop `cdc` with a non-zero exit.
    pub fn is_retryable(&self) -> bool {
        match self {
            CdcError::SourceUnreachable { .. }
            | CdcError::SlotBusy { .. }
            | CdcError::Delivery { .. }
            | CdcError::StreamEnded
            | CdcError::Kafka { .. } => true,
            CdcError::SourceQuery { source, .. } => {
                source.is_closed() || source.as_db_error().is_none()
            }
            // Class 08 (connection), 53 (resources), 57 (operator intervention: shutdown, admin kill),
            // 55006 (object in use) and 40 (transaction rollback) are transient.
            CdcError::Server { code, .. } => {
                code.starts_with("08")
                    || code.starts_with("53")
                    || code.starts_with("57")
                    || code.starts_with("40")
                    || code == "55006"
            }
            CdcError::Auth(_)
            | CdcError::Protocol(_)
            | CdcError::WalLevel { .. }
            | CdcError::PluginMissing { .. }
            | CdcError::PluginNotAllowed { .. }
            | CdcError::SlotUnusable { .. }
            | CdcError::Decode { .. }
            | CdcError::Routing { .. }
            | CdcError::Transform { .. }
            | CdcError::MessageTooLarge { .. }
            | CdcError::GaveUp { .. }
            | CdcError::Service(_) => false,
        }
    }

    /// A short, fixed label for the `errors` metric.
    pub fn kind(&self) -> &'static str {
        match self {
            CdcError::SourceUnreachable { .. } => "source_unreachable",
            CdcError::SourceQuery { .. } | CdcError::Server { .. } => "source",
            CdcError::Auth(_) => "auth",
            CdcError::Protocol(_) => "protocol",
            CdcError::WalLevel { .. }
            | CdcError::PluginMissing { .. }
            | CdcError::PluginNotAllowed { .. }
            | CdcError::SlotUnusable { .. } => "source_config",
            CdcError::SlotBusy { .. } => "slot_busy",
            CdcError::Decode { .. } | CdcError::MessageTooLarge { .. } => "decode",
            CdcError::Routing { .. } => "routing",
            CdcError::Transform { .. } => "transform",
            CdcError::Kafka { .. } => "kafka",
            CdcError::Delivery { .. } => "delivery",
            CdcError::StreamEnded => "stream_ended",
            CdcError::GaveUp { .. } => "gave_up",
            CdcError::Service(_) => "startup",
        }
    }
}
