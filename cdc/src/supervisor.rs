//! Supervision: one streaming session at a time — check the slot, connect the sink, start the
//! replication stream, run the [`Pump`] — and reconnection with backoff when a session fails on
//! something transient.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::backoff::Backoff;
use shared::health::Readiness;
use shared::shards::ShardMap;
use shared::Lsn;
use tokio_util::sync::CancellationToken;

use crate::capture::client::{PgReplicationClient, ServerErrorOr};
use crate::capture::slot;
use crate::capture::stream::wal2json_options;
use crate::capture::stream::ReplicationStream;
use crate::capture::wal2json::Wal2JsonSource;
use crate::config::Config;
use crate::error::CdcError;
use crate::metrics as m;
use crate::origin;
use crate::pump::{unix_now, Pump, PumpSettings};
use crate::route::Router;
use crate::sink::kafka::KafkaSink;
use crate::sink::origin_log::OriginLog;
use crate::sink::Sink;
use crate::snapshot::{self, SnapshotMode};
use crate::transform::Transforms;
use shared::service::error_chain;

/// How long one connection attempt (PostgreSQL or Kafka) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the lag gauges are refreshed from the source.
const LAG_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// What the supervisor learned from the plugin across sessions.
#[derive(Debug, Default)]
struct PluginCaps {
    /// `Some(false)` once the server's wal2json rejected `numeric-data-types-as-string`.
    numeric_as_string: Option<bool>,
}

/// What outlives one session: the plugin's capabilities, and the commit time of the oldest
/// transaction not yet confirmed (see [`crate::pump::Pump`]), which the lag poller reads.
struct Across {
    caps: PluginCaps,
    pending_since: Arc<AtomicU64>,
}

pub async fn supervise(
    config: &Config,
    shards: &ShardMap,
    transforms: &Transforms,
    shutdown: &CancellationToken,
    ready: &Readiness,
) -> Result<(), CdcError> {
    let mut backoff = Backoff::new(Duration::from_millis(250), config.max_backoff);
    let mut failing_since: Option<Instant> = None;
    let mut across = Across {
        caps: PluginCaps::default(),
        pending_since: Arc::new(AtomicU64::new(0)),
    };
    if !transforms.is_empty() {
        let columns: usize = transforms.tables().map(|(_, rules)| rules.len()).sum();
        tracing::info!(
            tables = transforms.tables().count(),
            columns,
            "column transforms active"
        );
    }
    let pending_since = across.pending_since.clone();
    let lag_stop = shutdown.child_token();
    let _stop_lag = lag_stop.clone().drop_guard();
    tokio::spawn(poll_lag(
        config.clone(),
        Arc::clone(&pending_since),
        lag_stop,
    ));
    loop {
        let mut streamed = false;
        let outcome = session(
            config,
            shards,
            transforms,
            shutdown,
            ready,
            &mut across,
            &mut streamed,
        )
        .await;
        ready.set(false);
        metrics::gauge!(m::STREAMING).set(0.0);
        let error = match outcome {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        // Until a session confirms again, what the source writes waits: the lag counts from now
        // unless an older transaction is already waiting.
        let _ = pending_since.compare_exchange(
            0,
            unix_now().to_bits(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        metrics::counter!(m::ERRORS, "kind" => error.kind()).increment(1);
        if !error.is_retryable() {
            return Err(error);
        }
        if streamed {
            failing_since = None;
            backoff.reset();
        }
        let since = *failing_since.get_or_insert_with(Instant::now);
        if !config.retry_budget.is_zero() && since.elapsed() >= config.retry_budget {
            return Err(CdcError::GaveUp {
                waited: since.elapsed(),
                last: Box::new(error),
            });
        }
        let delay = backoff.next_delay();
        tracing::warn!(
            error = %error_chain(&error),
            retry_in = ?delay,
            "{}; retrying",
            waiting_for(&error, config)
        );
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

fn waiting_for(error: &CdcError, config: &Config) -> String {
    match error {
        CdcError::Kafka { .. } | CdcError::Delivery { .. } => {
            format!("waiting for Kafka at {}", config.kafka_brokers)
        }
        CdcError::SlotBusy { slot, pid } => {
            format!("waiting for replication slot {slot:?} held by pid {pid}")
        }
        _ => format!("waiting for PostgreSQL at {}", config.source_url),
    }
}

async fn session(
    config: &Config,
    shards: &ShardMap,
    transforms: &Transforms,
    shutdown: &CancellationToken,
    ready: &Readiness,
    across: &mut Across,
    streamed: &mut bool,
) -> Result<(), CdcError> {
    let caps = &mut across.caps;
    let target = config.source_url.target();
    let sql = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        r = slot::connect_sql(&config.source_url, &target, CONNECT_TIMEOUT) => r?,
    };
    let source_id = origin::identify(&sql).await?;
    let preflight = slot::inspect(&sql, &config.slot).await?;
    crate::replica_identity::check_shard_keys(&sql, shards).await?;
    let topics: Vec<String> = shards.shards().iter().map(|s| config.topic(s)).collect();
    let mut sink = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        r = KafkaSink::connect(config, topics, CONNECT_TIMEOUT) => r?,
    };
    let signal_table = match snapshot::signal::ensure(&sql).await {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(
                error = %error_chain(&error),
                "cannot create cascade.snapshot_requests on the source: snapshots are off (run `cdc setup --apply` with a privileged account)"
            );
            false
        }
    };
    let schema_changes = crate::schema::ensure(&sql).await;
    let state = ensure_slot(
        config,
        &sql,
        &sink,
        preflight.slot,
        &source_id,
        signal_table,
    )
    .await?;
    let stream = start_stream(config, &target, &sql, caps).await?;
    let mut source = Wal2JsonSource::new(stream);
    let start = state.confirmed_flush.unwrap_or(Lsn::ZERO);
    tracing::info!(
        slot = %config.slot,
        resume_from = %start,
        created = state.created,
        server_version = %preflight.server_version,
        topics = ?sink.topics(),
        partitions = ?sink.partitions(),
        numeric_as_string = caps.numeric_as_string.unwrap_or(false),
        schema_changes,
        "streaming"
    );
    *streamed = true;
    ready.set(true);
    metrics::gauge!(m::STREAMING).set(1.0);

    let settings = PumpSettings {
        max_in_flight: config.max_in_flight,
        status_interval: config.status_interval,
        numeric_as_string: caps.numeric_as_string.unwrap_or(false),
    };
    let router = Router::new(shards.clone(), sink.partitions().to_vec());
    let mut pump = Pump::new(
        settings,
        router,
        transforms,
        &mut sink,
        start,
        across.pending_since.clone(),
    );
    // The snapshot runner lives as long as this session: what it has not recorded as copied, the
    // next session copies again.
    let runner_stop = shutdown.child_token();
    let _stop_runner = runner_stop.clone().drop_guard();
    if signal_table {
        let session = session_nonce();
        let (chunks_tx, chunks_rx) = tokio::sync::mpsc::channel(1);
        let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
        pump = pump.with_snapshots(snapshot::Coordinator::new(session, chunks_rx, events_tx));
        let settings = snapshot::runner::RunnerSettings {
            source: config.source_url.clone(),
            target: target.clone(),
            slot: config.slot.clone(),
            chunk_rows: config.snapshot_chunk_rows,
            numeric_as_string: caps.numeric_as_string.unwrap_or(false),
            shards: shards.shards().to_vec(),
            session,
            max_backoff: config.max_backoff,
        };
        let runner =
            snapshot::runner::Runner::new(settings, chunks_tx, events_rx, runner_stop.clone());
        tokio::spawn(runner.run());
    }
    let result = pump.run(&mut source, shutdown).await;
    let result = match result {
        Ok(()) => pump.drain(&mut source, config.shutdown_timeout).await,
        Err(e) => Err(e),
    };
    source.close().await;
    result
}

/// A token prefix no earlier session of any cdc process is likely to have used (see
/// [`snapshot::Coordinator`]).
fn session_nonce() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mixed = nanos ^ (u64::from(std::process::id()) << 20) ^ (nanos >> 32);
    (mixed & 0xffff_ffff).max(1)
}

/// Applies [`origin::decide`]: streams from the existing slot, or creates it on the first run for this
/// slot and prefix, or stops because the slot is lost or belongs to another server. Writes the
/// origin record when it is missing.
async fn ensure_slot(
    config: &Config,
    sql: &tokio_postgres::Client,
    sink: &KafkaSink,
    existing: Option<slot::SlotState>,
    source: &origin::SourceId,
    signal_table: bool,
) -> Result<slot::SlotState, CdcError> {
    let log = OriginLog::open(config, CONNECT_TIMEOUT).await?;
    let record = log.read(&config.slot, CONNECT_TIMEOUT).await?;
    let topic_data = match (&existing, &record) {
        (None, None) => sink.topic_data(CONNECT_TIMEOUT).await?,
        _ => None,
    };
    let plan = origin::decide(
        &config.slot,
        &config.topic_prefix,
        existing.is_some(),
        record.as_ref(),
        topic_data.as_ref(),
        source,
    )?;
    if let Some(record) = &record {
        if record.timeline != source.timeline {
            tracing::warn!(
                slot = %config.slot,
                recorded_timeline = record.timeline,
                timeline = source.timeline,
                "the source changed timeline since the slot was recorded (a promotion); the slot exists, so its position carried over"
            );
        }
    }
    let counts: BTreeMap<String, i32> = sink
        .topics()
        .iter()
        .cloned()
        .zip(sink.partitions().iter().copied())
        .collect();
    if let Some(record) = &record {
        if let Some(update) = origin::check_partitions(record, &counts)? {
            log.write(&update, CONNECT_TIMEOUT).await?;
            tracing::info!(slot = %config.slot, partitions = ?update.partitions, "origin record updated with the topics' partition counts");
        }
    }
    let state = match (plan, existing) {
        (origin::Plan::Stream, Some(state)) => return Ok(state),
        (origin::Plan::RecordThenStream, Some(state)) => state,
        _ => {
            if config.snapshot == SnapshotMode::Initial {
                queue_initial_snapshot(config, sql, signal_table).await?;
            }
            slot::create(sql, &config.slot).await?
        }
    };
    let created_at = state
        .created
        .then(|| state.confirmed_flush.map(|lsn| lsn.to_string()))
        .flatten();
    let record = origin::OriginRecord::new(
        &config.slot,
        &config.topic_prefix,
        source,
        created_at,
        counts,
    );
    log.write(&record, CONNECT_TIMEOUT).await?;
    tracing::info!(
        slot = %config.slot,
        topic = log.topic(),
        system_identifier = %source.system_identifier,
        "origin record written"
    );
    Ok(state)
}

/// Queues the copy of every table the stream captures, before the slot exists (see
/// [`snapshot::signal::request_initial`]).
async fn queue_initial_snapshot(
    config: &Config,
    sql: &tokio_postgres::Client,
    signal_table: bool,
) -> Result<(), CdcError> {
    if !signal_table {
        return Err(CdcError::Snapshot(
            "--snapshot initial needs the table cascade.snapshot_requests on the source, which this user cannot \
             create: run `cdc setup --apply` with a privileged account, or start with --snapshot never to stream \
             only what changes from now on"
                .into(),
        ));
    }
    let tables = snapshot::reader::all_tables(sql).await?;
    snapshot::signal::request_initial(sql, &config.slot, &tables).await?;
    tracing::info!(
        slot = %config.slot,
        tables = tables.len(),
        "initial snapshot queued: every table is copied while streaming (--snapshot never turns this off)"
    );
    Ok(())
}

/// How long the replication stream may stay silent before cdc counts the connection as dead: twice
/// the server's `wal_sender_timeout` for this database (the server answers cdc's status reports,
/// which ask for a reply, well within it); two minutes when the server has none (0) or does not say.
async fn idle_timeout(sql: &tokio_postgres::Client) -> Option<Duration> {
    let ms: Option<i64> = sql
        .query_one(
            "SELECT setting::bigint FROM pg_settings WHERE name = 'wal_sender_timeout'",
            &[],
        )
        .await
        .ok()
        .map(|r| r.get(0));
    Some(match ms {
        Some(ms) if ms > 0 => Duration::from_millis(2 * ms as u64),
        _ => Duration::from_secs(120),
    })
}

/// Connects for replication and starts streaming, learning whether wal2json takes
/// `numeric-data-types-as-string`.
async fn start_stream(
    config: &Config,
    target: &str,
    sql: &tokio_postgres::Client,
    caps: &mut PluginCaps,
) -> Result<PgReplicationClient, CdcError> {
    loop {
        let mut client =
            PgReplicationClient::connect(&config.source_url, target, CONNECT_TIMEOUT).await?;
        client.set_idle_timeout(idle_timeout(sql).await);
        let numeric_as_string = caps.numeric_as_string != Some(false);
        match client
            .start_logical(
                &config.slot,
                Lsn::ZERO,
                &wal2json_options(numeric_as_string),
            )
            .await
        {
            Ok(()) => {
                caps.numeric_as_string = Some(numeric_as_string);
                return Ok(client);
            }
            Err(ServerErrorOr::Server(err))
                if numeric_as_string && err.message.contains("numeric-data-types-as-string") =>
            {
                tracing::warn!(
                    "the source's wal2json does not support numeric-data-types-as-string (wal2json < 2.6): numeric \
                     values arrive as JSON numbers with every digit, but NaN and Infinity arrive as null"
                );
                caps.numeric_as_string = Some(false);
                client.close().await;
            }
            Err(ServerErrorOr::Server(err)) => {
                client.close().await;
                if let Some(e) = slot::plugin_problem(&err.code, &err.message) {
                    return Err(e);
                }
                if err.code == "55006" {
                    let pid = slot::active_pid(sql, &config.slot)
                        .await
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "unknown".into());
                    return Err(CdcError::SlotBusy {
                        slot: config.slot.clone(),
                        pid,
                    });
                }
                return Err(CdcError::Server {
                    context: "START_REPLICATION",
                    message: err.message,
                    code: err.code,
                });
            }
            Err(ServerErrorOr::Other(e)) => return Err(e),
        }
    }
}

/// Keeps the lag gauges true for as long as cdc runs, across sessions: while Kafka or the stream is
/// down nothing is confirmed, so the WAL the slot retains and the age of the oldest unconfirmed
/// transaction keep growing, and the gauges with them. Reads the slot's own `confirmed_flush_lsn`
/// through a connection of its own, reconnecting when it drops.
async fn poll_lag(config: Config, pending_since: Arc<AtomicU64>, stop: CancellationToken) {
    let target = config.source_url.target();
    let mut sql: Option<tokio_postgres::Client> = None;
    let mut tick = tokio::time::interval(LAG_POLL_INTERVAL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let pending = f64::from_bits(pending_since.load(Ordering::Relaxed));
        if pending > 0.0 {
            metrics::gauge!(m::REPLICATION_LAG_SECONDS).set((unix_now() - pending).max(0.0));
        }
        if sql.as_ref().is_none_or(|c| c.is_closed()) {
            sql = slot::connect_sql(&config.source_url, &target, CONNECT_TIMEOUT)
                .await
                .ok();
        }
        let Some(client) = sql.as_ref() else {
            continue;
        };
        match slot::wal_positions(client, &config.slot).await {
            Ok(p) => {
                if let Some(confirmed) = p.confirmed {
                    metrics::gauge!(m::REPLICATION_LAG_BYTES)
                        .set(p.current.0.saturating_sub(confirmed.0) as f64);
                }
                if let Some(restart) = p.restart {
                    metrics::gauge!(m::SLOT_RETAINED_WAL_BYTES)
                        .set(p.current.0.saturating_sub(restart.0) as f64);
                }
            }
            Err(error) => {
                tracing::debug!(error = %error_chain(&error), "cannot read WAL positions")
            }
        }
    }
}
