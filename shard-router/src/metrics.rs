//! Metric names of `shard-router` (documented in `docs/metrics.md`). Labels come from small fixed sets:
//! `table` (source tables), `op` (insert/update/delete/truncate), `kind` (error classes), `partition`,
//! `topic` (the shard's topic), `reason` (decode/framing/refused).

pub const BUILD_INFO: &str = "router_build_info";
pub const ROWS_APPLIED: &str = "router_rows_applied_total";
pub const TRANSACTIONS_APPLIED: &str = "router_transactions_applied_total";
pub const FRAMES_SKIPPED: &str = "router_frames_skipped_total";
pub const REPLICA_COMMIT_LATENCY: &str = "router_replica_commit_seconds";
pub const BATCH_ROWS: &str = "router_batch_rows";
pub const ERRORS: &str = "router_errors_total";
pub const PARTITIONS_ASSIGNED: &str = "router_partitions_assigned";
pub const PARTITIONS_STOPPED: &str = "router_partitions_stopped";
pub const REBALANCES: &str = "router_rebalances_total";
pub const TRUNCATE_WAIT: &str = "router_truncate_wait_seconds";
pub const SCHEMA_CHANGES: &str = "router_schema_changes_total";
pub const SCHEMA_WAIT: &str = "router_schema_change_seconds";
pub const END_TO_END_LAG: &str = "router_end_to_end_lag_seconds";
pub const CONSUMER_LAG: &str = "router_consumer_lag_messages";
pub const DEAD_LETTERS: &str = "router_dead_letters_total";

/// Histogram buckets by metric-name suffix.
pub const BUCKETS: &[(&str, &[f64])] = &[
    (
        "_seconds",
        &[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5,
            5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
        ],
    ),
    (
        "_rows",
        &[
            1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
        ],
    ),
];

/// Registers descriptions once at start-up.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the label `version` is the shard-router version running"
    );
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    describe_counter!(
        ROWS_APPLIED,
        "Row changes committed to the replica, by table and op"
    );
    describe_counter!(
        TRANSACTIONS_APPLIED,
        "Source transactions (one partition's frame) committed to the replica"
    );
    describe_counter!(
        FRAMES_SKIPPED,
        "Source transaction frames not applied, by reason: already_applied (a re-sent copy), cut (interrupted by a new begin; re-sent whole later) or short (fewer messages than its C counts; re-sent whole later)"
    );
    describe_histogram!(
        REPLICA_COMMIT_LATENCY,
        Unit::Seconds,
        "Time to run and commit one replica transaction"
    );
    describe_histogram!(BATCH_ROWS, "Row changes per replica transaction");
    describe_counter!(ERRORS, "Errors by kind");
    describe_gauge!(PARTITIONS_ASSIGNED, "Partitions this router consumes now");
    describe_gauge!(
        PARTITIONS_STOPPED,
        "Partitions stopped at an event that cannot be applied, or at a gap in the topic (see the log)"
    );
    describe_counter!(
        REBALANCES,
        "Consumer-group rebalances seen, by kind (assign/revoke)"
    );
    describe_histogram!(
        END_TO_END_LAG,
        Unit::Seconds,
        "Replica commit time minus source commit time, per applied source transaction"
    );
    describe_gauge!(
        CONSUMER_LAG,
        "Messages in a partition after the committed offset (from librdkafka statistics, every 5 s)"
    );
    describe_counter!(
        DEAD_LETTERS,
        "Events set aside in the dead-letter topic <topic>.dlq (--on-error dead-letter), by topic and reason: decode, framing or refused"
    );
    describe_histogram!(
        TRUNCATE_WAIT,
        Unit::Seconds,
        "Time a partition waited for the other partitions to reach a truncate"
    );
    describe_counter!(
        SCHEMA_CHANGES,
        "Schema changes applied to the replica (by the partition that ran each), by table"
    );
    describe_histogram!(
        SCHEMA_WAIT,
        Unit::Seconds,
        "Time a partition spent at a schema change: waiting for the other partitions, then the DDL"
    );
}
