//! Errors of `shard-router`, classified by what the caller should do about them: a transient error
//! (replica or Kafka unreachable, a lock conflict) is retried with backoff while the partition pauses; a
//! definite one (a value the replica cannot hold, a constraint violation, an event that cannot be
//! decoded) stops the partition it happened on, with the position named, and never skips the event.

use std::fmt;

/// Where in the stream something happened: enough to find the event with any Kafka tool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "topic {} partition {} offset {}",
            self.topic, self.partition, self.offset
        )
    }
}

/// Everything that can stop the router or one of its partitions.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The HTTP endpoint or the metrics recorder could not start.
    #[error(transparent)]
    Service(#[from] shared::service::ServiceError),
    /// The configuration cannot work (a TLS failure connecting to the replica): exit 2.
    #[error("the replica cannot be used as configured")]
    Invalid(#[source] shared::service::Invalid),
    /// The replica's settings cannot be used (for example its collation name).
    #[error("replica catalog")]
    Catalog(#[from] crate::catalog::CatalogError),
    /// Kafka could not be reached or refused a request.
    #[error("kafka: {context}")]
    Kafka {
        context: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A statement on the replica failed.
    #[error("replica: {context}")]
    Replica {
        context: String,
        #[source]
        source: sqlx::Error,
    },
    /// An event could not be applied; the partition stops at it.
    #[error("cannot apply the event at {at} (table {table}): {cause}")]
    Event {
        at: Position,
        table: String,
        cause: String,
        /// The replica's answer, when it is the cause (already in `cause`); classifies retryability.
        db_error: Option<Box<sqlx::Error>>,
        /// Whether this event alone is the cause (found by replaying the batch event by event, or
        /// a check of the event itself); `false` when the batch failed and no single event could be
        /// blamed (then `at` is its first event).
        isolated: bool,
    },
    /// Another router applied this partition while this one held it (its group session had expired):
    /// this one stops writing it.
    #[error("the replica's position for topic {topic} partition {partition} moved to {found} while this router held the partition: another router applied it meanwhile, so this one stops writing it (restart to resume from the replica's position)")]
    Fenced {
        topic: String,
        partition: i32,
        found: String,
    },
    /// A message is not a change this build can read: an unknown `cascade-format` version, no such
    /// header, or a value that is not a change. The partition stops at it.
    #[error("cannot decode the message at {at}")]
    Undecodable {
        at: Position,
        #[source]
        source: shared::codec::DecodeError,
    },
    /// The partition's messages break the framing rules of docs/event-format.md.
    #[error("the stream at {at} breaks the event framing: {reason}")]
    Framing { at: Position, reason: String },
    /// `replay-dlq` could not apply some dead letters (each is printed with its cause).
    #[error("{failed} dead letter(s) could not be applied")]
    Replay { failed: usize },
    /// The partition cannot continue from where the replica left off (see [`crate::resume`]).
    #[error(
        "cannot continue topic {topic} partition {partition} where the replica left off: {gap}"
    )]
    Gap {
        topic: String,
        partition: i32,
        gap: crate::resume::Gap,
    },
}

/// A replica's error message without the row values some messages quote: MySQL's
/// `Duplicate entry 'alice@example.com' for key 'email'` or `Incorrect integer value: 'x' for column`,
/// PostgreSQL's `invalid input syntax for type integer: "x"`. Values become `'…'`; table, column,
/// key and type names stay, so the message still says what went wrong where. Logs, metrics and
/// traces only ever see this form.
pub fn redacted_db_message(message: &str) -> String {
    // The words after which MySQL quotes a value with '…'.
    const MYSQL_BEFORE_VALUE: [&str; 4] = ["entry ", "value: ", "value ", "values "];
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find('\'') {
        let (head, tail) = rest.split_at(start);
        out.push_str(head);
        let Some(len) = tail[1..].find('\'') else {
            out.push_str(tail);
            return out;
        };
        let quoted = &tail[..len + 2];
        if MYSQL_BEFORE_VALUE.iter().any(|w| out.ends_with(w)) {
            out.push_str("'…'");
        } else {
            out.push_str(quoted);
        }
        rest = &tail[len + 2..];
    }
    out.push_str(rest);
    // PostgreSQL ends a message with `: "value"` when it quotes the value it could not take.
    if let Some(start) = out.rfind(": \"") {
        if out.ends_with('"') && out.len() > start + 3 {
            out.truncate(start);
            out.push_str(": \"…\"");
        }
    }
    out
}

impl RouterError {
    pub fn replica(context: impl Into<String>, source: sqlx::Error) -> Self {
        RouterError::Replica {
            context: context.into(),
            source,
        }
    }

    /// True when retrying the same work later may succeed (nothing about the data is wrong).
    pub fn is_retryable(&self) -> bool {
        match self {
            RouterError::Kafka { .. } => true,
            RouterError::Replica { source, .. } => is_transient(source),
            RouterError::Event {
                db_error: Some(e), ..
            } => is_transient(e),
            RouterError::Event { db_error: None, .. }
            | RouterError::Framing { .. }
            | RouterError::Undecodable { .. }
            | RouterError::Fenced { .. }
            | RouterError::Gap { .. }
            | RouterError::Replay { .. }
            | RouterError::Service(_)
            | RouterError::Invalid(_)
            | RouterError::Catalog(_) => false,
        }
    }

    /// A short, fixed label for the `router_errors_total{kind}` metric.
    pub fn kind(&self) -> &'static str {
        match self {
            RouterError::Service(_) | RouterError::Catalog(_) | RouterError::Invalid(_) => {
                "startup"
            }
            RouterError::Kafka { .. } => "kafka",
            RouterError::Replica { .. } if self.is_retryable() => "replica_unavailable",
            RouterError::Replica { .. } => "replica",
            RouterError::Event { .. } if self.is_retryable() => "replica_unavailable",
            RouterError::Event { .. } => "event",
            RouterError::Framing { .. } | RouterError::Undecodable { .. } => "framing",
            RouterError::Fenced { .. } => "fenced",
            RouterError::Gap { .. } => "gap",
            RouterError::Replay { .. } => "replay",
        }
    }
}

/// Transient replica errors: the connection, the pool, lock conflicts and server shutdowns. Everything
/// else (constraint violations, out-of-range values, syntax) is definite.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => transient_code(&db_code(db.as_ref())),
        _ => false,
    }
}

/// A database error's code: MySQL/MariaDB's error number (sqlx's `code()` is their SQLSTATE, which
/// lumps most errors into `HY000`, and puts "packet too large" (1153) among the connection errors
/// `08S01`), PostgreSQL's SQLSTATE, SQLite's result code.
pub fn db_code(db: &dyn sqlx::error::DatabaseError) -> String {
    if let Some(mysql) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return mysql.number().to_string();
    }
    db.code().map(|c| c.into_owned()).unwrap_or_default()
}

/// Database error codes that mean "try again": MySQL/MariaDB error numbers, PostgreSQL SQLSTATEs and
/// SQLite result codes.
fn transient_code(code: &str) -> bool {
    matches!(
        code,
        // MySQL/MariaDB: lock wait timeout, deadlock, server gone/lost, too many connections,
        // server shutting down, query interrupted. Not 1153 (a statement above max_allowed_packet):
        // the same statement fails again.
        "1205" | "1213" | "2006" | "2013" | "1040" | "1053" | "1317"
        // PostgreSQL: serialization failure, deadlock, admin/crash shutdown, cannot connect now,
        // too many connections, lock not available.
        | "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300" | "55P03"
        // SQLite: SQLITE_BUSY, SQLITE_LOCKED and their extended codes.
        | "5" | "6" | "261" | "517" | "262"
    ) || code.starts_with("08") // PostgreSQL connection exceptions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_and_connection_codes_are_transient_and_data_errors_are_not() {
        for code in ["1213", "1205", "40P01", "08006", "5", "517"] {
            assert!(transient_code(code), "{code}");
        }
        for code in ["1264", "1062", "1153", "23505", "22003", "19", "2067"] {
            assert!(!transient_code(code), "{code}");
        }
        assert!(is_transient(&sqlx::Error::PoolTimedOut));
        assert!(!is_transient(&sqlx::Error::RowNotFound));
    }

    #[test]
    fn event_errors_name_the_position() {
        let e = RouterError::Event {
            at: Position {
                topic: "cascade.main".into(),
                partition: 3,
                offset: 42,
            },
            table: "public.t".into(),
            cause: "value out of range".into(),
            db_error: None,
            isolated: true,
        };
        assert_eq!(
            e.to_string(),
            "cannot apply the event at topic cascade.main partition 3 offset 42 (table public.t): value out of range"
        );
        assert!(!e.is_retryable());
        assert_eq!(e.kind(), "event");
    }

    #[test]
    fn an_unknown_format_stops_the_partition_naming_the_version_and_position() {
        let source = shared::codec::check_format(Some(b"7")).unwrap_err();
        let e = RouterError::Undecodable {
            at: Position {
                topic: "cascade.main".into(),
                partition: 1,
                offset: 9,
            },
            source,
        };
        assert_eq!(
            shared::service::error_chain(&e),
            "cannot decode the message at topic cascade.main partition 1 offset 9: unknown cascade-format version \"7\": this build reads version 1; upgrade the router"
        );
        assert!(!e.is_retryable());
        assert_eq!(e.kind(), "framing");
    }

    #[test]
    fn replica_messages_lose_the_values_they_quote_and_keep_the_names() {
        for (message, want) in [
            (
                "Duplicate entry 'alice@example.com' for key 'email'",
                "Duplicate entry '…' for key 'email'",
            ),
            (
                "Incorrect integer value: 'abc' for column `db`.`t`.`n` at row 1",
                "Incorrect integer value: '…' for column `db`.`t`.`n` at row 1",
            ),
            (
                "Incorrect datetime value: '2024-13-01' for column 'd' at row 1",
                "Incorrect datetime value: '…' for column 'd' at row 1",
            ),
            (
                "invalid input syntax for type integer: \"4111 1111\"",
                "invalid input syntax for type integer: \"…\"",
            ),
            (
                "Data too long for column 'body' at row 1",
                "Data too long for column 'body' at row 1",
            ),
            (
                "duplicate key value violates unique constraint \"users_email_key\"",
                "duplicate key value violates unique constraint \"users_email_key\"",
            ),
            ("an unclosed 'quote", "an unclosed 'quote"),
            ("entry 'é' and value: ''", "entry '…' and value: '…'"),
        ] {
            assert_eq!(redacted_db_message(message), want);
        }
    }
}
