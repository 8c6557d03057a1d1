//! Reading the source's logical replication stream.
//!
//! The seam is [`ReplicationStream`]: anything that yields wal2json payloads with their WAL positions and
//! takes standby status updates. The one implementation, [`super::client::PgReplicationClient`], is a small client
//! of PostgreSQL's streaming replication protocol written on `postgres-protocol` (the message codec
//! tokio-postgres itself uses). Why not `pg_walstream`: its pure-Rust connection works (0.9.0), but it
//! compiles aws-lc (a C/assembly build of minutes on two cores) for TLS and carries ~38k lines aimed at
//! pgoutput, while wal2json needs only the framing below. See ARCHITECTURE.md.

use std::future::Future;

use bytes::Bytes;
use shared::Lsn;

use crate::error::CdcError;

/// One message of the replication stream.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplicationMessage {
    /// A chunk of output from the plugin: one wal2json `format-version 2` JSON object.
    XLogData {
        /// WAL position the payload belongs to (for a commit: the end of the commit record).
        wal_start: Lsn,
        /// The server's current end of WAL.
        wal_end: Lsn,
        data: Bytes,
    },
    /// A heartbeat from the server.
    Keepalive {
        /// Everything up to here has been sent to us.
        wal_end: Lsn,
        /// The server wants a status update now (it will time us out otherwise).
        reply_requested: bool,
    },
}

/// Positions reported to the server in a standby status update. `flushed` is what the slot's
/// `confirmed_flush_lsn` becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandbyStatus {
    pub written: Lsn,
    pub flushed: Lsn,
    pub applied: Lsn,
    pub reply_requested: bool,
}

/// A logical replication stream.
///
/// Guarantees: messages come in WAL order, each exactly once per stream; after a reconnect the stream
/// restarts at the slot's confirmed position, so messages after it may be seen again. `recv` is
/// cancel-safe (a `select!` may drop it without losing data).
pub trait ReplicationStream {
    /// The next message, or `None` when the server ended the stream.
    fn recv(&mut self)
        -> impl Future<Output = Result<Option<ReplicationMessage>, CdcError>> + Send;

    /// Reports progress; the server may discard WAL up to `status.flushed`.
    fn send_status(
        &mut self,
        status: StandbyStatus,
    ) -> impl Future<Output = Result<(), CdcError>> + Send;

    /// Ends the stream politely (CopyDone, Terminate).
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// wal2json options of every stream cdc starts.
pub fn wal2json_options(numeric_as_string: bool) -> Vec<(&'static str, &'static str)> {
    let mut options = vec![
        ("format-version", "2"),
        ("include-xids", "1"),
        ("include-timestamp", "1"),
        ("include-lsn", "1"),
        ("include-pk", "1"),
        ("include-type-oids", "1"),
        ("include-typmod", "1"),
        ("include-transaction", "1"),
    ];
    if numeric_as_string {
        options.push(("numeric-data-types-as-string", "1"));
    }
    options
}

/// Session settings pinned on the replication connection, so values print the same whatever the
/// server's defaults: ISO dates, UTC times, `postgres` intervals, shortest exact floats, and an empty
/// `search_path` so type names come schema-qualified (`public.mood`) and no user schema can shadow a
/// function the output plugin calls (pg_recvlogical does the same).
pub const PINNED_SETTINGS: &[(&str, &str)] = &[
    ("search_path", ""),
    ("DateStyle", "ISO, YMD"),
    ("TimeZone", "UTC"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "1"),
    ("client_encoding", "UTF8"),
];
