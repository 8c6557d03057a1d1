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
    /// The slot is missing, but cdc streamed from it before for this topic prefix (the proof: its
    /// origin record or records in the shard topics); a new slot would silently skip the changes
    /// committed since the last confirmed position.
    #[error(
        "replication slot {slot:?} is missing on the source, but cdc streamed from it before with topic \
         prefix {prefix:?} ({evidence}): the changes committed since its last confirmed position are not \
         in Kafka and can no longer be read from the source's WAL, so cdc does not create a new slot, which \
         would skip them silently. Recover: re-seed the replicas from the source (the coming `cdc snapshot` \
         command will do it; today by hand: start over with a new --slot and --topic-prefix, which cdc \
         treats as a first run, and load the replicas from a copy of the source taken after that slot \
         exists); or, to accept the loss and continue on these topics, create the slot yourself \
         (SELECT pg_create_logical_replication_slot('{slot}', 'wal2json')) and start cdc again"
    )]
    SlotLost {
        slot: String,
        prefix: String,
        evidence: String,
    },
    /// The slot and topics were recorded for another PostgreSQL server than the one connected to.
    #[error(
        "replication slot {slot:?} and topic prefix {prefix:?} were recorded for another PostgreSQL \
         server (system identifier {recorded}; this server's is {actual}): positions of one server mean \
         nothing on another. Point --source-url at the recorded server, or use another --slot and \
         --topic-prefix for this one"
    )]
    OtherSource {
        slot: String,
        prefix: String,
        recorded: String,
        actual: String,
    },
    /// A shard topic's partition count differs from the one cdc published it with.
    #[error(
        "topic {topic} has {now} partitions, but cdc has published it with {recorded} (origin record \
         of slot {slot:?}): with another count a key's later changes go to another partition than \
         its earlier ones, and routers could apply them out of order. Cascade does not follow a \
         partition-count change: publish to new topics (another --topic-prefix, a new slot) and load \
         the replicas afresh, or recreate the topic with {recorded} partitions"
    )]
    PartitionsChanged {
        slot: String,
        topic: String,
        recorded: i32,
        now: i32,
    },
    /// Sharded tables whose updates and deletes would lack their shard key; cdc exits 2 naming them.
    #[error("the source is not ready for the routing file")]
    ShardKeyNotInIdentity(#[source] shared::service::Invalid),
    /// TLS to the source cannot work as configured (a certificate file, a server without TLS under
    /// `sslmode=require`, a certificate not trusted); cdc exits 2 naming the parameter.
    #[error("TLS to the source failed")]
    Tls(#[source] shared::service::Invalid),
    /// A snapshot could not be requested or did not finish (`cdc snapshot`), or cdc cannot queue
    /// its initial snapshot.
    #[error("{0}")]
    Snapshot(String),
    /// `cdc setup` found items that are not in place.
    #[error("{remaining} item(s) of the checklist above are not in place")]
    SetupIncomplete { remaining: usize },
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
            | CdcError::SlotLost { .. }
            | CdcError::OtherSource { .. }
            | CdcError::PartitionsChanged { .. }
            | CdcError::ShardKeyNotInIdentity(_)
            | CdcError::Tls(_)
            | CdcError::SetupIncomplete { .. }
            | CdcError::Snapshot(_)
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
            | CdcError::SlotUnusable { .. }
            | CdcError::OtherSource { .. }
            | CdcError::ShardKeyNotInIdentity(_)
            | CdcError::SetupIncomplete { .. } => "source_config",
            CdcError::Tls(_) => "tls",
            CdcError::SlotLost { .. } => "slot_lost",
            CdcError::Snapshot(_) => "snapshot",
            CdcError::PartitionsChanged { .. } => "partitions_changed",
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
