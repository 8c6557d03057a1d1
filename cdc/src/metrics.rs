//! Metric names of `cdc` (documented in `docs/metrics.md`).

pub const BUILD_INFO: &str = "cdc_build_info";
pub const EVENTS_PUBLISHED: &str = "cdc_events_published_total";
pub const PUBLISHED_BYTES: &str = "cdc_published_bytes_total";
pub const TRANSACTIONS: &str = "cdc_transactions_total";
pub const IN_FLIGHT: &str = "cdc_in_flight_messages";
pub const PRODUCE_LATENCY: &str = "cdc_produce_latency_seconds";
pub const CONFIRMED_LSN: &str = "cdc_confirmed_lsn";
pub const REPLICATION_LAG_BYTES: &str = "cdc_replication_lag_bytes";
pub const REPLICATION_LAG_SECONDS: &str = "cdc_replication_lag_seconds";
pub const SLOT_RETAINED_WAL_BYTES: &str = "cdc_slot_retained_wal_bytes";
pub const ERRORS: &str = "cdc_errors_total";
pub const STREAMING: &str = "cdc_streaming";
pub const SNAPSHOT_ROWS: &str = "cdc_snapshot_rows_total";
pub const SNAPSHOT_ROWS_REMAINING: &str = "cdc_snapshot_rows_remaining";
pub const SNAPSHOT_TABLES: &str = "cdc_snapshot_tables_total";
pub const SNAPSHOT_REQUESTS_PENDING: &str = "cdc_snapshot_requests_pending";
pub const SNAPSHOT_CHUNK_RETRIES: &str = "cdc_snapshot_chunk_retries_total";
pub const SCHEMA_CHANGES: &str = "cdc_schema_changes_total";

/// Histogram buckets by metric-name suffix.
pub const BUCKETS: &[(&str, &[f64])] = &[(
    "_seconds",
    &[
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
    ],
)];

/// Registers descriptions once at start-up.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the label `version` is the cdc version running"
    );
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    describe_counter!(
        EVENTS_PUBLISHED,
        "Row change events acknowledged by Kafka, by op, table and topic"
    );
    describe_counter!(
        PUBLISHED_BYTES,
        Unit::Bytes,
        "Bytes of event payloads acknowledged by Kafka"
    );
    describe_counter!(
        TRANSACTIONS,
        "Source transactions fully handed to Kafka (commit seen)"
    );
    describe_gauge!(
        IN_FLIGHT,
        "Messages handed to Kafka and not yet acknowledged"
    );
    describe_histogram!(
        PRODUCE_LATENCY,
        Unit::Seconds,
        "Time from handing a message to Kafka to its acknowledgement"
    );
    describe_gauge!(
        CONFIRMED_LSN,
        "Last LSN confirmed to PostgreSQL as flushed (as a number)"
    );
    describe_gauge!(
        REPLICATION_LAG_BYTES,
        Unit::Bytes,
        "Server WAL position minus the confirmed position"
    );
    describe_gauge!(
        REPLICATION_LAG_SECONDS,
        Unit::Seconds,
        "Now minus the commit time of the last source transaction Kafka fully acknowledged"
    );
    describe_gauge!(
        SLOT_RETAINED_WAL_BYTES,
        Unit::Bytes,
        "WAL the slot keeps on the server (current position minus restart_lsn)"
    );
    describe_counter!(
        ERRORS,
        "Errors by kind; retryable ones are followed by a reconnect"
    );
    describe_gauge!(
        STREAMING,
        "1 while streaming from PostgreSQL into Kafka, 0 otherwise"
    );
    describe_counter!(
        SNAPSHOT_ROWS,
        "Rows copied by snapshots and acknowledged by Kafka, by table"
    );
    describe_gauge!(
        SNAPSHOT_ROWS_REMAINING,
        "Rows of the table being copied not copied yet (from the planner's row estimate), by table"
    );
    describe_counter!(
        SNAPSHOT_TABLES,
        "Snapshot requests finished, by result (done, failed)"
    );
    describe_gauge!(
        SNAPSHOT_REQUESTS_PENDING,
        "Snapshot requests not finished (the one being copied included)"
    );
    describe_counter!(
        SNAPSHOT_CHUNK_RETRIES,
        "Snapshot chunks read again, by reason (a commit raced the read, a truncate between the watermarks, ...)"
    );
    describe_counter!(
        SCHEMA_CHANGES,
        "Schema changes captured on the source, by result (published, unsupported: logged, not replicated)"
    );
}
