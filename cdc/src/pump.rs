//! The pump: moves changes from a [`ChangeSource`] through route, transform and frame into a [`Sink`],
//! and acknowledgements into [`Progress`], which says what may be confirmed back to the source.
//!
//! One event loop, biased in this order: shutdown, then acknowledgements (they free capacity and move
//! the confirmed position), then the status timer, then new input — read only while fewer than
//! `max_in_flight` messages await acknowledgement. That is the backpressure: when Kafka is slow, cdc
//! stops reading and PostgreSQL buffers in its WAL, not in cdc's memory.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shared::{Change, Lsn, TxnBoundary};
use tokio_util::sync::CancellationToken;

use crate::capture::{Captured, ChangeSource, StandbyStatus};
use crate::error::CdcError;
use crate::frame::{Framer, Outgoing};
use crate::metrics as m;
use crate::progress::{Progress, TxnId};
use crate::route::Router;
use crate::sink::{Ack, SendError, Sink, Ticket};
use crate::snapshot::{Chunk, Coordinator};
use crate::trace::TxnTrace;
use crate::transform::Transforms;

/// How long after the last outstanding acknowledgement the position is confirmed.
const CONFIRM_SOON: Duration = Duration::from_millis(10);

/// How the pump paces itself.
#[derive(Debug, Clone, Copy)]
pub struct PumpSettings {
    /// Messages awaiting acknowledgement before the pump stops reading the source.
    pub max_in_flight: usize,
    /// How often the confirmed position is reported to the source.
    pub status_interval: Duration,
    /// The stream prints numeric values as strings (`numeric-data-types-as-string`); the values in
    /// schema-change events follow it.
    pub numeric_as_string: bool,
}

/// The transaction being read from the source.
struct OpenTxn {
    id: TxnId,
    xid: u64,
    trace: TxnTrace,
}

/// Moves one session's changes from a source into a sink.
pub struct Pump<'a, K> {
    settings: PumpSettings,
    sink: &'a mut K,
    transforms: &'a Transforms,
    router: Router,
    framer: Framer,
    progress: Progress,
    open: Option<OpenTxn>,
    /// Messages of the current change, reused.
    out: Vec<Outgoing>,
    received: Lsn,
    reported: Lsn,
    /// The commit time (Unix seconds, as `f64` bits; 0 = none) of the oldest transaction not yet
    /// confirmed, shared with the lag poller, which keeps `cdc_replication_lag_seconds` growing while
    /// nothing is confirmed (Kafka down, cdc reconnecting). Outlives the pump: see
    /// [`crate::supervisor`].
    pending_since: Arc<AtomicU64>,
    /// Committed transactions not yet confirmed: their end LSN and commit time (Unix seconds).
    commit_times: VecDeque<(Lsn, f64)>,
    /// Snapshots: signal rows, watermarks, and chunks to publish (see [`crate::snapshot`]).
    snapshot: Option<Coordinator>,
}

impl<'a, K: Sink> Pump<'a, K> {
    /// A pump resuming at `start`, the source's confirmed position.
    pub fn new(
        settings: PumpSettings,
        router: Router,
        transforms: &'a Transforms,
        sink: &'a mut K,
        start: Lsn,
        pending_since: Arc<AtomicU64>,
    ) -> Self {
        let framer = Framer::new(sink.partitions().to_vec());
        Pump {
            settings,
            sink,
            transforms,
            router,
            framer,
            progress: Progress::new(start),
            open: None,
            out: Vec::new(),
            received: start,
            reported: Lsn::ZERO,
            pending_since,
            commit_times: VecDeque::new(),
            snapshot: None,
        }
    }

    /// Takes part in snapshots through `coordinator`.
    pub fn with_snapshots(mut self, coordinator: Coordinator) -> Self {
        self.snapshot = Some(coordinator);
        self
    }

    /// The position confirmed safe so far.
    pub fn safe(&self) -> Lsn {
        self.progress.safe()
    }

    /// The event loop, until shutdown (`Ok`) or an error.
    pub async fn run<S: ChangeSource>(
        &mut self,
        source: &mut S,
        shutdown: &CancellationToken,
    ) -> Result<(), CdcError> {
        let mut status_tick = tokio::time::interval(self.settings.status_interval);
        status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // When everything sent is acknowledged, the new position is confirmed right away (after
        // `CONFIRM_SOON`, which coalesces the acks of a burst) instead of at the next status tick:
        // the server can recycle its WAL sooner, and a caught-up cdc shows as caught up.
        let mut confirm_soon: Option<tokio::time::Instant> = None;
        loop {
            let in_flight = self.sink.in_flight();
            let can_read = in_flight < self.settings.max_in_flight;
            let soon = confirm_soon.unwrap_or_else(tokio::time::Instant::now);
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                Some(ack) = self.sink.next_ack(), if in_flight > 0 => {
                    self.on_ack(ack)?;
                    if self.sink.in_flight() == 0 && self.progress.safe() > self.reported {
                        confirm_soon.get_or_insert_with(|| tokio::time::Instant::now() + CONFIRM_SOON);
                    }
                }
                // Each report asks the server for a reply: a live connection is never silent
                // for long, so a half-open one is noticed (see the replication client).
                _ = status_tick.tick() => self.report(source, true).await?,
                _ = tokio::time::sleep_until(soon), if confirm_soon.is_some() => {
                    confirm_soon = None;
                    self.report(source, false).await?;
                }
                item = source.next(), if can_read => match item? {
                    None => return Err(CdcError::StreamEnded),
                    Some(Captured::Keepalive { wal_end, reply_requested }) => {
                        if self.open.is_none() {
                            self.progress.server_position(wal_end);
                        }
                        if reply_requested {
                            self.report(source, false).await?;
                        }
                    }
                    Some(Captured::Change { change, at }) => {
                        self.received = self.received.max(at);
                        self.on_change(change, at).await?;
                    }
                },
            }
            metrics::gauge!(m::IN_FLIGHT).set(self.sink.in_flight() as f64);
        }
    }

    /// After shutdown: wait (bounded) for outstanding acknowledgements and confirm what is safe.
    pub async fn drain<S: ChangeSource>(
        &mut self,
        source: &mut S,
        timeout: Duration,
    ) -> Result<(), CdcError> {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let waiting = self.sink.in_flight();
        while self.sink.in_flight() > 0 {
            tokio::select! {
                _ = &mut deadline => {
                    tracing::warn!(unacknowledged = self.sink.in_flight(), "shutdown deadline reached; unacknowledged messages will be re-sent after restart");
                    break;
                }
                Some(ack) = self.sink.next_ack() => {
                    if let Err(error) = self.on_ack(ack) {
                        tracing::warn!(error = %shared::service::error_chain(&error), "delivery failed during shutdown; it will be re-sent after restart");
                        break;
                    }
                }
            }
        }
        self.report(source, false).await?;
        tracing::info!(confirmed = %self.progress.safe(), drained = waiting, "stopped streaming; confirmed position reported");
        Ok(())
    }

    async fn report<S: ChangeSource>(
        &mut self,
        source: &mut S,
        reply_requested: bool,
    ) -> Result<(), CdcError> {
        let flushed = self.progress.safe();
        let mut popped = false;
        while let Some(&(end, _)) = self.commit_times.front() {
            if end > flushed {
                break;
            }
            popped = true;
            self.commit_times.pop_front();
        }
        // Caught up to what was received, or past some transactions: the lag is the age of the
        // oldest transaction still unconfirmed (none: 0).
        if popped || (self.commit_times.is_empty() && flushed >= self.received) {
            let oldest = self.commit_times.front().map(|&(_, t)| t);
            self.pending_since
                .store(oldest.map_or(0, f64::to_bits), Ordering::Relaxed);
            metrics::gauge!(m::REPLICATION_LAG_SECONDS)
                .set(oldest.map_or(0.0, |t| (unix_now() - t).max(0.0)));
        }
        source
            .confirm(StandbyStatus {
                written: self.received.max(flushed),
                flushed,
                applied: flushed,
                reply_requested,
            })
            .await?;
        if flushed != self.reported {
            tracing::debug!(confirmed = %flushed, "confirmed position");
            self.reported = flushed;
            metrics::gauge!(m::CONFIRMED_LSN).set(flushed.0 as f64);
        }
        Ok(())
    }

    fn on_ack(&mut self, ack: Ack) -> Result<(), CdcError> {
        ack.result?;
        self.progress.acked(ack.ticket.txn);
        if let Some(c) = self.snapshot.as_mut() {
            c.acked(ack.ticket.txn);
        }
        metrics::histogram!(m::PRODUCE_LATENCY).record(ack.latency.as_secs_f64());
        if let Some(table) = ack.table {
            metrics::counter!(
                m::EVENTS_PUBLISHED,
                "op" => ack.action.op_label(),
                "table" => table.to_string(),
                "topic" => self.sink.topic(ack.shard).to_owned()
            )
            .increment(1);
        }
        metrics::counter!(m::PUBLISHED_BYTES).increment(ack.bytes as u64);
        Ok(())
    }

    async fn on_change(&mut self, change: Change, at: Lsn) -> Result<(), CdcError> {
        match change {
            Change::Begin(txn) => {
                let trace = TxnTrace::begin(&txn, self.router.shards());
                let xid = txn.xid;
                self.framer.begin(txn, at)?;
                self.open = Some(OpenTxn {
                    id: self.progress.begin(),
                    xid,
                    trace,
                });
            }
            Change::Row(row) if Coordinator::is_signal(&row.table) => {
                // cascade's own table: a request for the snapshot runner, never published.
                if let Some(c) = self.snapshot.as_ref() {
                    c.signal_row(&row);
                }
            }
            Change::Truncate(t) if Coordinator::is_signal(&t.table) => {}
            // The schema-change triggers' bookkeeping: never published.
            Change::Row(row) if crate::schema::is_own(&row.table) => {}
            Change::Truncate(t) if crate::schema::is_own(&t.table) => {}
            Change::Row(row) => {
                if let Some(c) = self.snapshot.as_mut() {
                    c.observe(&row);
                }
                // The shard is chosen from the original values, the key from the transformed ones.
                for mut routed in self.router.route(row)? {
                    self.transforms.apply(&mut routed, &self.router)?;
                    self.framer.row(routed, at, &mut self.out)?;
                }
                self.flush_out().await?;
            }
            Change::Truncate(truncate) => {
                if let Some(c) = self.snapshot.as_mut() {
                    c.observe_truncate(&truncate.table);
                }
                let dests = self.router.route_truncate(&truncate.table, at)?;
                self.framer.truncate(truncate, &dests, at, &mut self.out)?;
                self.flush_out().await?;
            }
            Change::Commit(txn) => {
                let end = txn.nextlsn;
                let commit_time = txn.commit_time_unix();
                let ready = self.snapshot.as_mut().and_then(|c| {
                    c.committed(txn.xid);
                    c.take_ready()
                });
                let high = ready.is_some().then(|| txn.clone());
                self.framer.commit(txn, at, &mut self.out)?;
                self.flush_out().await?;
                if let Some(open) = self.open.take() {
                    self.progress.commit(open.id, end);
                }
                if let Some(t) = commit_time {
                    if self.pending_since.load(Ordering::Relaxed) == 0 {
                        self.pending_since.store(t.to_bits(), Ordering::Relaxed);
                    }
                    self.commit_times.push_back((end, t));
                }
                metrics::counter!(m::TRANSACTIONS).increment(1);
                if let (Some(chunk), Some(high)) = (ready, high) {
                    self.publish_chunk(chunk, high, at).await?;
                }
            }
            Change::Schema(change) => self.on_schema(change, at).await?,
            Change::Message(message) if message.prefix == crate::schema::MESSAGE_PREFIX => {
                match crate::schema::parse(&message.content, self.settings.numeric_as_string) {
                    Ok(crate::schema::Captured::Table(ddl)) => {
                        let Some(table) = crate::schema::table_of(&ddl) else {
                            return Ok(());
                        };
                        let change = shared::SchemaChange {
                            origin: message.origin,
                            table,
                            partitions: None,
                            ddl,
                        };
                        self.on_schema(change, at).await?;
                    }
                    Ok(crate::schema::Captured::Unsupported { command, objects }) => {
                        metrics::counter!(m::SCHEMA_CHANGES, "result" => "unsupported")
                            .increment(1);
                        tracing::warn!(
                            lsn = %at,
                            command,
                            objects,
                            "a schema change Cascade does not replicate: replicas keep what they had \
                             (see docs/schema-changes.md for what to do)"
                        );
                    }
                    Err(reason) => return Err(CdcError::Decode { lsn: at, reason }),
                }
            }
            Change::Message(message) => match self.snapshot.as_mut() {
                Some(c) if message.prefix == crate::snapshot::MESSAGE_PREFIX => {
                    c.message(&message.prefix, &message.content)
                }
                _ => {
                    tracing::debug!(lsn = %at, "ignoring a logical decoding message (not a row change)")
                }
            },
        }
        Ok(())
    }

    /// A table's definition changed: an `S` to every partition that can hold the table, like a
    /// truncate, with the definitions as the replicas see them (after the transforms).
    async fn on_schema(
        &mut self,
        mut change: shared::SchemaChange,
        at: Lsn,
    ) -> Result<(), CdcError> {
        if let Some(c) = self.snapshot.as_mut() {
            c.observe_schema(&change.ddl);
        }
        self.transforms.apply_schema(&mut change)?;
        let dests = self.router.route_truncate(&change.table, at)?;
        tracing::info!(
            lsn = %at,
            table = %change.table,
            command = change.ddl.command,
            recopy = change.ddl.recopy,
            "schema change captured"
        );
        self.framer.schema(change, &dests, at, &mut self.out)?;
        metrics::counter!(m::SCHEMA_CHANGES, "result" => "published").increment(1);
        self.flush_out().await
    }

    /// Publishes a snapshot chunk right after its high watermark's transaction (`high`): one frame per
    /// partition it reaches, at the watermark's position, marked with the request id.
    async fn publish_chunk(
        &mut self,
        chunk: Chunk,
        high: TxnBoundary,
        at: Lsn,
    ) -> Result<(), CdcError> {
        let boundary = TxnBoundary {
            xid: 0,
            messages: None,
            snapshot: u64::try_from(chunk.request).ok(),
            ..high
        };
        let trace = TxnTrace::begin(&boundary, self.router.shards());
        self.framer.begin(boundary.clone(), at)?;
        let id = self.progress.begin();
        self.open = Some(OpenTxn { id, xid: 0, trace });
        if let Some(c) = self.snapshot.as_mut() {
            c.publishing(id, chunk.token);
        }
        let mut rows = 0u64;
        for mut row in chunk.rows {
            row.origin.lsn = Some(boundary.lsn);
            row.origin.timestamp.clone_from(&boundary.timestamp);
            for mut routed in self.router.route(row)? {
                if let Some(shard) = chunk.shard {
                    routed.dests.retain(|d| d.shard == shard);
                    if routed.dests.is_empty() {
                        continue;
                    }
                }
                self.transforms.apply(&mut routed, &self.router)?;
                self.framer.row(routed, at, &mut self.out)?;
                rows += 1;
            }
            self.flush_out().await?;
        }
        let end = boundary.nextlsn;
        self.framer.commit(boundary, at, &mut self.out)?;
        self.flush_out().await?;
        self.open = None;
        self.progress.commit(id, end);
        if let Some(c) = self.snapshot.as_mut() {
            c.sealed(rows);
        }
        Ok(())
    }

    /// Hands the framed messages to the sink, waiting for acknowledgements while its queue is full.
    async fn flush_out(&mut self) -> Result<(), CdcError> {
        let Some(open) = self.open.as_mut() else {
            self.out.clear();
            return Ok(());
        };
        let ticket = Ticket {
            txn: open.id,
            xid: open.xid,
        };
        let mut i = 0;
        while i < self.out.len() {
            let message = &self.out[i];
            let shard = message.dest.shard;
            let trace = match self.open.as_mut() {
                Some(open) if open.trace.is_active() => {
                    open.trace.headers(shard, self.sink.topic(shard))
                }
                _ => &[],
            };
            match self.sink.send(message, ticket, trace) {
                Ok(()) => {
                    self.progress.sent(ticket.txn);
                    if let Some(c) = self.snapshot.as_mut() {
                        c.sent(ticket.txn);
                    }
                    i += 1;
                }
                Err(SendError::Full) => match self.sink.next_ack().await {
                    Some(ack) => self.on_ack(ack)?,
                    None => tokio::time::sleep(Duration::from_millis(10)).await,
                },
                Err(SendError::Failed(error)) => {
                    self.out.clear();
                    return Err(error);
                }
            }
        }
        self.out.clear();
        Ok(())
    }
}

/// Now, in seconds since the Unix epoch.
/// Now, in Unix seconds (the unit of commit times).
pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests;
