//! The `cdc` process: supervision (reconnect with backoff), one streaming session, graceful shutdown.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use rdkafka::producer::DeliveryFuture;
use shared::backoff::Backoff;
use shared::health::Readiness;
use shared::{Action, ChangeEvent, Lsn};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::decode::decode;
use crate::error::CdcError;
use crate::metrics as m;
use crate::progress::{Progress, TxnId};
use crate::publish::{is_queue_full, is_too_large, Publisher};
use crate::replication::client::{PgReplicationClient, ServerErrorOr};
use crate::replication::{
    slot, wal2json_options, ReplicationMessage, ReplicationStream, StandbyStatus,
};
use crate::route::Router;
use shared::shards::ShardMap;

/// How long one connection attempt (PostgreSQL or Kafka) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the lag gauges are refreshed from the source.
const LAG_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Runs `cdc` until SIGTERM/SIGINT (returns `Ok`) or a definite error.
pub async fn run(config: Config, shards: ShardMap) -> Result<(), CdcError> {
    let handle = shared::telemetry::init_metrics(m::BUCKETS)?;
    m::describe();
    let shutdown = CancellationToken::new();
    shared::shutdown::cancel_on_signal(shutdown.clone());
    let ready = Readiness::default();
    let http_stop = CancellationToken::new();
    let http =
        shared::health::serve(config.http_addr, ready.clone(), handle, http_stop.clone()).await?;
    tracing::info!(
        source = %config.source_url,
        slot = %config.slot,
        brokers = %config.kafka_brokers,
        topic = %config.topic(Config::DEFAULT_SHARD),
        "cdc starting"
    );
    let result = supervise(&config, &shards, &shutdown, &ready).await;
    ready.set(false);
    http_stop.cancel();
    let _ = http.await;
    result
}

/// What the supervisor learned from the plugin across sessions.
#[derive(Debug, Default)]
struct PluginCaps {
    /// `Some(false)` once the server's wal2json rejected `numeric-data-types-as-string`.
    numeric_as_string: Option<bool>,
}

async fn supervise(
    config: &Config,
    shards: &ShardMap,
    shutdown: &CancellationToken,
    ready: &Readiness,
) -> Result<(), CdcError> {
    let mut backoff = Backoff::new(Duration::from_millis(250), config.max_backoff);
    let mut failing_since: Option<Instant> = None;
    let mut caps = PluginCaps::default();
    loop {
        let mut streamed = false;
        let outcome = session(config, shards, shutdown, ready, &mut caps, &mut streamed).await;
        ready.set(false);
        metrics::gauge!(m::STREAMING).set(0.0);
        let error = match outcome {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
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

/// The error and its causes on one line.
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

async fn session(
    config: &Config,
    shards: &ShardMap,
    shutdown: &CancellationToken,
    ready: &Readiness,
    caps: &mut PluginCaps,
    streamed: &mut bool,
) -> Result<(), CdcError> {
    let target = config.source_url.target();
    let pg = config.source_url.pg_config();
    let sql = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        r = slot::connect_sql(pg, &target, CONNECT_TIMEOUT) => r?,
    };
    let state = slot::prepare(&sql, &config.slot).await?;
    slot::check_shard_keys(&sql, shards).await;
    let topics: Vec<String> = shards.shards().iter().map(|s| config.topic(s)).collect();
    let publisher = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        r = Publisher::connect(config, topics, CONNECT_TIMEOUT) => r?,
    };
    let mut stream = start_stream(config, &target, &sql, caps).await?;
    let start = state.confirmed_flush.unwrap_or(Lsn::ZERO);
    tracing::info!(
        slot = %config.slot,
        resume_from = %start,
        created = state.created,
        server_version = %state.server_version,
        topics = ?publisher.topics(),
        partitions = ?publisher.partitions(),
        numeric_as_string = caps.numeric_as_string.unwrap_or(false),
        "streaming"
    );
    *streamed = true;
    ready.set(true);
    metrics::gauge!(m::STREAMING).set(1.0);

    let confirmed = Arc::new(AtomicU64::new(start.0));
    let lag_stop = CancellationToken::new();
    tokio::spawn(poll_lag(
        sql,
        config.slot.clone(),
        confirmed.clone(),
        lag_stop.clone(),
    ));

    let mut pump = Pump::new(config, shards, &publisher, start, confirmed);
    let result = pump.run(&mut stream, shutdown).await;
    lag_stop.cancel();
    let result = match result {
        Ok(()) => pump.drain(&mut stream, config.shutdown_timeout).await,
        Err(e) => Err(e),
    };
    stream.close().await;
    result
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
            PgReplicationClient::connect(config.source_url.pg_config(), target, CONNECT_TIMEOUT)
                .await?;
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

async fn poll_lag(
    sql: tokio_postgres::Client,
    slot: String,
    confirmed: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(LAG_POLL_INTERVAL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match slot::wal_positions(&sql, &slot).await {
            Ok((current, restart)) => {
                let confirmed = confirmed.load(Ordering::Relaxed);
                metrics::gauge!(m::REPLICATION_LAG_BYTES)
                    .set(current.0.saturating_sub(confirmed) as f64);
                if let Some(restart) = restart {
                    metrics::gauge!(m::SLOT_RETAINED_WAL_BYTES)
                        .set(current.0.saturating_sub(restart.0) as f64);
                }
            }
            Err(error) => {
                tracing::debug!(error = %error_chain(&error), "cannot read WAL positions")
            }
        }
    }
}

/// What a delivery future resolves to, with what we need to account for it.
struct Ack {
    txn: TxnId,
    xid: Option<u64>,
    label: Option<(Action, Arc<str>)>,
    bytes: usize,
    sent_at: Instant,
    /// `None` when the producer dropped the delivery report (it was shut down).
    result: Option<rdkafka::producer::future_producer::OwnedDeliveryResult>,
}

/// The transaction being read from the stream.
struct OpenTxn {
    id: TxnId,
    xid: Option<u64>,
    begin: ChangeEvent,
    /// Per shard, the partitions that already got this transaction's `B`.
    started: Vec<Vec<bool>>,
    /// The transaction's span (`Span::none()` unless traces are exported).
    span: tracing::Span,
    /// Per shard, the `send <topic>` span and the `traceparent` every message of this transaction to
    /// that topic carries.
    sends: Vec<Option<(tracing::Span, Option<String>)>>,
}

impl OpenTxn {
    /// The `traceparent` of this transaction's messages to `shard`, opening its send span first.
    fn trace_for(&mut self, shard: usize, topic: &str) -> Option<String> {
        if self.span.is_none() {
            return None;
        }
        let slot = self.sends.get_mut(shard)?;
        if slot.is_none() {
            let span = tracing::info_span!(
                parent: &self.span,
                "send",
                otel.name = format!("send {topic}"),
                otel.kind = "producer",
                messaging.system = "kafka",
                messaging.operation.type = "send",
                messaging.operation.name = "send",
                messaging.destination.name = topic,
            );
            let trace = shared::propagation::traceparent(&span);
            *slot = Some((span, trace));
        }
        slot.as_ref().and_then(|(_, t)| t.clone())
    }
}

/// Where a message goes, and the trace context it carries.
struct Dest {
    shard: usize,
    partition: i32,
    trace: Option<String>,
}

/// Moves messages from the replication stream into Kafka and acknowledgements into [`Progress`].
struct Pump<'a> {
    config: &'a Config,
    publisher: &'a Publisher,
    router: Router,
    progress: Progress,
    acks: FuturesUnordered<BoxFuture<'static, Ack>>,
    open: Option<OpenTxn>,
    received: Lsn,
    reported: Lsn,
    confirmed: Arc<AtomicU64>,
    tables: HashMap<String, Arc<str>>,
    /// Committed transactions not yet confirmed: their end LSN and commit time (Unix seconds).
    commit_times: VecDeque<(Lsn, f64)>,
}

impl<'a> Pump<'a> {
    fn new(
        config: &'a Config,
        shards: &ShardMap,
        publisher: &'a Publisher,
        start: Lsn,
        confirmed: Arc<AtomicU64>,
    ) -> Self {
        Pump {
            config,
            publisher,
            router: Router::new(shards.clone(), publisher.partitions().to_vec()),
            progress: Progress::new(start),
            acks: FuturesUnordered::new(),
            open: None,
            received: start,
            reported: Lsn::ZERO,
            confirmed,
            commit_times: VecDeque::new(),
            tables: HashMap::new(),
        }
    }

    /// The event loop. Priority (biased): shutdown, then acknowledgements (they free capacity and move
    /// the confirmed position), then the status timer, then new input — read only while fewer than
    /// `max_in_flight` messages await acknowledgement, which is the backpressure on PostgreSQL.
    async fn run<S: ReplicationStream>(
        &mut self,
        stream: &mut S,
        shutdown: &CancellationToken,
    ) -> Result<(), CdcError> {
        let mut status_tick = tokio::time::interval(self.config.status_interval);
        status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let can_read = self.acks.len() < self.config.max_in_flight;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                Some(ack) = self.acks.next(), if !self.acks.is_empty() => self.on_ack(ack)?,
                _ = status_tick.tick() => self.report(stream, false).await?,
                msg = stream.recv(), if can_read => match msg? {
                    None => return Err(CdcError::StreamEnded),
                    Some(ReplicationMessage::Keepalive { wal_end, reply_requested }) => {
                        if self.open.is_none() {
                            self.progress.server_position(wal_end);
                        }
                        if reply_requested {
                            self.report(stream, false).await?;
                        }
                    }
                    Some(ReplicationMessage::XLogData { wal_start, data, .. }) => {
                        self.received = self.received.max(wal_start);
                        let event = decode(&data, wal_start)?;
                        self.on_event(event, wal_start).await?;
                    }
                },
            }
            metrics::gauge!(m::IN_FLIGHT).set(self.acks.len() as f64);
        }
    }

    /// After shutdown: wait (bounded) for outstanding acknowledgements and confirm what is safe.
    async fn drain<S: ReplicationStream>(
        &mut self,
        stream: &mut S,
        timeout: Duration,
    ) -> Result<(), CdcError> {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let waiting = self.acks.len();
        while !self.acks.is_empty() {
            tokio::select! {
                _ = &mut deadline => {
                    tracing::warn!(unacknowledged = self.acks.len(), "shutdown deadline reached; unacknowledged messages will be re-sent after restart");
                    break;
                }
                Some(ack) = self.acks.next() => {
                    if let Err(error) = self.on_ack(ack) {
                        tracing::warn!(error = %error_chain(&error), "delivery failed during shutdown; it will be re-sent after restart");
                        break;
                    }
                }
            }
        }
        self.report(stream, false).await?;
        tracing::info!(confirmed = %self.progress.safe(), drained = waiting, "stopped streaming; confirmed position reported");
        Ok(())
    }

    async fn report<S: ReplicationStream>(
        &mut self,
        stream: &mut S,
        reply_requested: bool,
    ) -> Result<(), CdcError> {
        let flushed = self.progress.safe();
        let mut newest = None;
        while let Some(&(end, t)) = self.commit_times.front() {
            if end > flushed {
                break;
            }
            newest = Some(t);
            self.commit_times.pop_front();
        }
        if let Some(t) = newest {
            metrics::gauge!(m::REPLICATION_LAG_SECONDS).set((unix_now() - t).max(0.0));
        }
        stream
            .send_status(StandbyStatus {
                written: self.received.max(flushed),
                flushed,
                applied: flushed,
                reply_requested,
            })
            .await?;
        if flushed != self.reported {
            tracing::debug!(confirmed = %flushed, "confirmed position");
            self.reported = flushed;
            self.confirmed.store(flushed.0, Ordering::Relaxed);
            metrics::gauge!(m::CONFIRMED_LSN).set(flushed.0 as f64);
        }
        Ok(())
    }

    fn on_ack(&mut self, ack: Ack) -> Result<(), CdcError> {
        match ack.result {
            Some(Ok(_)) => {
                self.progress.acked(ack.txn);
                metrics::histogram!(m::PRODUCE_LATENCY).record(ack.sent_at.elapsed().as_secs_f64());
                if let Some((action, table)) = ack.label {
                    metrics::counter!(m::EVENTS_PUBLISHED, "op" => action.as_str(), "table" => table.to_string()).increment(1);
                }
                metrics::counter!(m::PUBLISHED_BYTES).increment(ack.bytes as u64);
                Ok(())
            }
            Some(Err((source, _))) => Err(CdcError::Delivery {
                xid: ack.xid,
                source,
            }),
            None => Err(CdcError::Delivery {
                xid: ack.xid,
                source: rdkafka::error::KafkaError::Canceled,
            }),
        }
    }

    async fn on_event(&mut self, event: ChangeEvent, wal_start: Lsn) -> Result<(), CdcError> {
        match event.action {
            Action::Begin => {
                if self.open.is_some() {
                    return Err(CdcError::Decode {
                        lsn: wal_start,
                        reason: "B inside an open transaction".into(),
                    });
                }
                let id = self.progress.begin();
                let span = if shared::telemetry::exporting_traces() {
                    tracing::info_span!(
                        "capture transaction",
                        otel.kind = "internal",
                        db.system.name = "postgresql",
                        cascade.xid = event.xid,
                        cascade.commit_lsn = %event.lsn.unwrap_or(Lsn::ZERO),
                    )
                } else {
                    tracing::Span::none()
                };
                self.open = Some(OpenTxn {
                    id,
                    xid: event.xid,
                    begin: event,
                    started: (0..self.router.shards())
                        .map(|s| vec![false; self.router.partitions(s) as usize])
                        .collect(),
                    span,
                    sends: vec![None; self.router.shards()],
                });
            }
            Action::Commit => {
                let Some(open) = self.open.take() else {
                    return Err(CdcError::Decode {
                        lsn: wal_start,
                        reason: "C without B".into(),
                    });
                };
                let end = event.nextlsn.unwrap_or(wal_start);
                let payload = event.to_json();
                let started: Vec<(usize, i32)> = open
                    .started
                    .iter()
                    .enumerate()
                    .flat_map(|(shard, parts)| {
                        parts
                            .iter()
                            .enumerate()
                            .filter(|(_, started)| **started)
                            .map(move |(p, _)| (shard, p as i32))
                    })
                    .collect();
                for (shard, partition) in started {
                    let trace = open
                        .sends
                        .get(shard)
                        .and_then(|s| s.as_ref())
                        .and_then(|(_, t)| t.clone());
                    let dest = Dest {
                        shard,
                        partition,
                        trace,
                    };
                    self.send(open.id, open.xid, dest, None, payload.clone(), None)
                        .await?;
                }
                self.progress.commit(open.id, end);
                // Ends the transaction's spans.
                drop(open);
                if let Some(t) = event.commit_time_unix() {
                    self.commit_times.push_back((end, t));
                }
                metrics::counter!(m::TRANSACTIONS).increment(1);
            }
            Action::Insert | Action::Update | Action::Delete | Action::Truncate => {
                let Some(open) = self.open.as_ref() else {
                    return Err(CdcError::Decode {
                        lsn: wal_start,
                        reason: "row change outside a transaction".into(),
                    });
                };
                let (id, xid) = (open.id, open.xid);
                let table = self.table_label(&event);
                for routed in self.router.route(event)? {
                    let (s, p) = (routed.shard, routed.partition as usize);
                    let publisher = self.publisher;
                    let topic = publisher.topics().get(s).map_or("", String::as_str);
                    let trace = self.open.as_mut().and_then(|o| o.trace_for(s, topic));
                    let dest = || Dest {
                        shard: s,
                        partition: routed.partition,
                        trace: trace.clone(),
                    };
                    let needs_begin = self.open.as_ref().is_some_and(|o| {
                        !o.started
                            .get(s)
                            .and_then(|parts| parts.get(p))
                            .copied()
                            .unwrap_or(true)
                    });
                    if needs_begin {
                        let begin = self
                            .open
                            .as_ref()
                            .map(|o| o.begin.to_json())
                            .unwrap_or_default();
                        self.send(id, xid, dest(), None, begin, None).await?;
                        if let Some(flag) = self
                            .open
                            .as_mut()
                            .and_then(|o| o.started.get_mut(s))
                            .and_then(|parts| parts.get_mut(p))
                        {
                            *flag = true;
                        }
                    }
                    let label = Some((routed.event.action, table.clone()));
                    self.send(id, xid, dest(), routed.key, routed.event.to_json(), label)
                        .await?;
                }
            }
            Action::Message => {
                tracing::debug!(lsn = %wal_start, "ignoring a logical decoding message (not a row change)");
            }
        }
        Ok(())
    }

    fn table_label(&mut self, event: &ChangeEvent) -> Arc<str> {
        let name = event.qualified_table().unwrap_or_default();
        if let Some(t) = self.tables.get(&name) {
            return t.clone();
        }
        let t: Arc<str> = Arc::from(name.as_str());
        self.tables.insert(name, t.clone());
        t
    }

    /// Hands one message to Kafka, waiting for acknowledgements while the producer queue is full.
    async fn send(
        &mut self,
        txn: TxnId,
        xid: Option<u64>,
        dest: Dest,
        key: Option<Vec<u8>>,
        payload: Vec<u8>,
        label: Option<(Action, Arc<str>)>,
    ) -> Result<(), CdcError> {
        loop {
            match self.publisher.send(
                (dest.shard, dest.partition),
                key.as_deref(),
                &payload,
                dest.trace.as_deref(),
            ) {
                Ok(delivery) => {
                    self.progress.sent(txn);
                    self.acks
                        .push(ack_future(delivery, txn, xid, label, payload.len()));
                    return Ok(());
                }
                Err(e) if is_queue_full(&e) => match self.acks.next().await {
                    Some(ack) => self.on_ack(ack)?,
                    None => tokio::time::sleep(Duration::from_millis(10)).await,
                },
                Err(e) if is_too_large(&e) => {
                    let event = ChangeEvent::from_json(&payload).ok();
                    return Err(CdcError::MessageTooLarge {
                        action: event.as_ref().map_or("?", |e| e.action.as_str()),
                        table: event
                            .as_ref()
                            .and_then(ChangeEvent::qualified_table)
                            .unwrap_or_default(),
                        lsn: event.and_then(|e| e.lsn).unwrap_or(Lsn::ZERO),
                        bytes: payload.len(),
                    });
                }
                Err(source) => {
                    return Err(CdcError::Kafka {
                        context: format!(
                            "producing to {}",
                            self.publisher
                                .topics()
                                .get(dest.shard)
                                .map_or("?", String::as_str)
                        ),
                        source,
                    })
                }
            }
        }
    }
}

/// Now, in seconds since the Unix epoch.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn ack_future(
    delivery: DeliveryFuture,
    txn: TxnId,
    xid: Option<u64>,
    label: Option<(Action, Arc<str>)>,
    bytes: usize,
) -> BoxFuture<'static, Ack> {
    let sent_at = Instant::now();
    async move {
        let result = delivery.await.ok();
        Ack {
            txn,
            xid,
            label,
            bytes,
            sent_at,
            result,
        }
    }
    .boxed()
}
