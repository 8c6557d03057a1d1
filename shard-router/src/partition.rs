//! One task per assigned partition: read in order, batch, apply, store the offset.
//!
//! Loop priority (`biased`): revocation/shutdown first, then the batch deadline, then the next
//! message. Applying happens inline, so while the replica is slow or down the task reads nothing more
//! (librdkafka's prefetch is bounded by `queued.max.messages.kbytes`): backpressure without buffers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use shared::backoff::Backoff;
use shared::{codec, Action, Lsn};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::apply::Applier;
use crate::batch::{AppliedPosition, Batch, Flush, Next, TruncateAt};
use crate::consume::{partition_count, Health, PartitionQueue, RouterConsumer};
use crate::error::{Position, RouterError};
use crate::metrics as m;
use crate::replica::{AnyReplica, Replica};

/// How often a partition waiting at a truncate checks whether the others arrived.
const BARRIER_POLL: Duration = Duration::from_millis(50);

/// What a partition task needs; cheap to clone.
pub struct PartitionCtx<R = AnyReplica> {
    pub applier: Arc<Applier<R>>,
    pub consumer: Arc<RouterConsumer>,
    pub health: Health,
    pub batch_max_rows: usize,
    pub batch_max_wait: Duration,
    pub max_backoff: Duration,
}

impl<R> Clone for PartitionCtx<R> {
    fn clone(&self) -> Self {
        PartitionCtx {
            applier: Arc::clone(&self.applier),
            consumer: Arc::clone(&self.consumer),
            health: self.health.clone(),
            batch_max_rows: self.batch_max_rows,
            batch_max_wait: self.batch_max_wait,
            max_backoff: self.max_backoff,
        }
    }
}

/// Why the loop ended.
enum Stop {
    Cancelled,
    Failed(RouterError),
}

pub async fn run<R: Replica>(
    ctx: PartitionCtx<R>,
    partition: i32,
    queue: PartitionQueue,
    cancel: CancellationToken,
) {
    metrics::gauge!(m::PARTITIONS_ASSIGNED).increment(1.0);
    let mut task = Task {
        ctx,
        partition,
        cancel,
        durable: AppliedPosition::default(),
        open_span: None,
        done_spans: Vec::new(),
    };
    if let Stop::Failed(error) = task.run(&queue).await {
        task.stop_at(error).await;
    }
    metrics::gauge!(m::PARTITIONS_ASSIGNED).decrement(1.0);
}

struct Task<R> {
    ctx: PartitionCtx<R>,
    partition: i32,
    cancel: CancellationToken,
    /// The position this task last wrote to (or read from) the replica; every apply checks the
    /// replica still holds it.
    durable: AppliedPosition,
    /// Spans of the source transactions being processed (only while traces are exported): the open
    /// frame's, and those of complete frames not yet committed, each with its producer's
    /// `traceparent`.
    open_span: Option<(tracing::Span, Option<String>)>,
    done_spans: Vec<(tracing::Span, Option<String>)>,
}

impl<R: Replica> Task<R> {
    fn topic(&self) -> &str {
        &self.ctx.applier.topic
    }

    /// Opens a `process <topic>` span at each begin, as a child of the producer's `send` span, and
    /// keeps it until the frame is committed to the replica.
    fn trace_frame(&mut self, action: Action, offset: i64, trace: Option<String>) {
        if !shared::telemetry::exporting_traces() {
            return;
        }
        match action {
            Action::Begin => {
                let span = tracing::info_span!(
                    "process",
                    otel.name = format!("process {}", self.topic()),
                    otel.kind = "consumer",
                    messaging.system = "kafka",
                    messaging.operation.type = "process",
                    messaging.operation.name = "process",
                    messaging.destination.name = self.topic(),
                    messaging.destination.partition.id = self.partition,
                    messaging.kafka.offset = offset,
                );
                shared::propagation::set_parent(&span, trace.as_deref());
                // A frame cut by this begin ends here (it is re-sent whole later).
                self.open_span = Some((span, trace));
            }
            Action::Commit => {
                if let Some(open) = self.open_span.take() {
                    self.done_spans.push(open);
                }
            }
            _ => {}
        }
    }

    /// The database span of one replica transaction: a child of the first source transaction it
    /// applies, linked to the others.
    fn db_span(&self, rows: usize) -> tracing::Span {
        if !shared::telemetry::exporting_traces() {
            return tracing::Span::none();
        }
        let system = self.ctx.applier.replica.dialect().db_system();
        let mut frames = self.done_spans.iter().chain(self.open_span.iter());
        let span = match frames.next() {
            Some((parent, _)) => tracing::info_span!(
                parent: parent,
                "apply",
                otel.name = "apply batch",
                otel.kind = "client",
                db.system.name = system,
                db.operation.name = "apply",
                cascade.rows = rows,
            ),
            None => tracing::info_span!(
                "apply",
                otel.name = "apply batch",
                otel.kind = "client",
                db.system.name = system,
                db.operation.name = "apply",
                cascade.rows = rows,
            ),
        };
        for (_, trace) in frames {
            shared::propagation::add_link(&span, trace.as_deref());
        }
        span
    }

    /// This partition, for pause/resume.
    fn tpl(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(self.topic(), self.partition);
        tpl
    }

    fn at(&self, offset: i64) -> Position {
        Position {
            topic: self.topic().to_owned(),
            partition: self.partition,
            offset,
        }
    }

    async fn run(&mut self, queue: &PartitionQueue) -> Stop {
        let applier = Arc::clone(&self.ctx.applier);
        let applied = match self
            .retry("reading the applied position", || {
                applier.replica.position(&applier.topic, self.partition)
            })
            .await
        {
            Ok(p) => p,
            Err(stop) => return stop,
        };
        tracing::info!(
            partition = self.partition,
            commit_lsn = %applied.commit_lsn,
            "partition task started"
        );
        self.durable = applied;
        // A partition paused by an earlier stop stays paused when it comes back to this member.
        let _ = self.ctx.consumer.resume(&self.tpl());
        let mut batch = Batch::new(applied, self.ctx.batch_max_rows, self.ctx.batch_max_wait);
        loop {
            let deadline = batch.deadline();
            let far = Instant::now() + Duration::from_secs(3600);
            let message = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Stop::Cancelled,
                _ = tokio::time::sleep_until(deadline.unwrap_or(far).into()), if deadline.is_some() => {
                    if let Err(stop) = self.flush(&mut batch, false, None).await {
                        return stop;
                    }
                    continue;
                }
                message = queue.recv() => message,
            };
            let (offset, decoded, trace) = match message {
                Ok(msg) => (
                    msg.offset(),
                    // Decoded once: the typed change is what every later stage works on.
                    codec::check_format(header(&msg, codec::FORMAT_HEADER))
                        .and_then(|()| codec::decode(msg.payload().unwrap_or_default())),
                    traceparent_of(&msg),
                ),
                Err(error) => {
                    metrics::counter!(m::ERRORS, "kind" => "kafka").increment(1);
                    tracing::warn!(partition = self.partition, error = %error, "kafka consume error");
                    continue;
                }
            };
            let change = match decoded {
                Ok(c) => c,
                Err(source) => {
                    return Stop::Failed(RouterError::Undecodable {
                        at: self.at(offset),
                        source,
                    })
                }
            };
            self.trace_frame(change.action(), offset, trace);
            let next = match batch.push(offset, change) {
                Ok(n) => n,
                Err(e) => {
                    return Stop::Failed(RouterError::Framing {
                        at: self.at(offset),
                        reason: e.0,
                    })
                }
            };
            let step = match next {
                Next::Read => Ok(()),
                Next::Flush => self.flush_full(&mut batch).await,
                Next::Truncate(t) => self.truncate(&mut batch, &t).await,
            };
            if let Err(stop) = step {
                return stop;
            }
        }
    }

    /// The buffer is full: apply the complete frames, and the open frame's rows only when they alone
    /// fill the buffer (a source transaction smaller than a batch is never split).
    async fn flush_full(&mut self, batch: &mut Batch) -> Result<(), Stop> {
        self.flush(batch, false, None).await?;
        if batch.open_rows() >= self.ctx.batch_max_rows {
            self.flush(batch, true, None).await?;
        }
        Ok(())
    }

    /// Applies what the batch has ready (with `partial`, the open frame too) and stores the offset.
    async fn flush(
        &mut self,
        batch: &mut Batch,
        partial: bool,
        arrival: Option<(&str, Lsn)>,
    ) -> Result<(), Stop> {
        if !batch.has_work(partial) && arrival.is_none() {
            return Ok(());
        }
        let mut flush: Flush = batch.take_flush(partial);
        let needs_write =
            !flush.rows.is_empty() || arrival.is_some() || flush.position != batch.applied();
        if needs_write {
            let applier = Arc::clone(&self.ctx.applier);
            let span = self.db_span(flush.rows.len());
            let applied = self
                .retry("applying a batch", || {
                    applier
                        .apply(self.partition, &self.durable, &flush, arrival)
                        .instrument(span.clone())
                })
                .await;
            if let Err(Stop::Failed(RouterError::Event { at, .. })) = &applied {
                // Apply the source transactions before the failing one, so the partition stops
                // exactly at it.
                let failing = flush.rows.iter().position(|r| r.offset == at.offset);
                if let Some(prefix) = failing.and_then(|i| flush.split_before(i, batch.applied())) {
                    self.retry("applying the transactions before the failing one", || {
                        applier.apply(self.partition, &self.durable, &prefix, None)
                    })
                    .await?;
                    self.committed(batch, &prefix);
                }
            }
            applied?;
        }
        self.committed(batch, &flush);
        Ok(())
    }

    /// Records a committed flush and stores its offset.
    fn committed(&mut self, batch: &mut Batch, flush: &Flush) {
        batch.flushed(flush.position);
        if flush.frames > 0 || flush.store_offset.is_some() {
            // The complete frames are applied: their process spans end.
            self.done_spans.clear();
        }
        self.durable = flush.position;
        if let Some(offset) = flush.store_offset {
            // `offset` is the next one to read. (`store_offset` would store its argument plus one, as
            // librdkafka's rd_kafka_offset_store does; a partition list stores offsets as given.)
            let mut tpl = TopicPartitionList::new();
            let stored = tpl
                .add_partition_offset(self.topic(), self.partition, Offset::Offset(offset))
                .and_then(|()| self.ctx.consumer.store_offsets(&tpl));
            if let Err(error) = stored {
                // The partition was revoked meanwhile; the next owner starts from the replica position.
                tracing::debug!(partition = self.partition, error = %error, "cannot store offset");
            }
        }
    }

    /// Applies everything before the truncate, waits until every partition reached it, then empties
    /// the table once (whichever partition gets there first does it).
    async fn truncate(&mut self, batch: &mut Batch, t: &TruncateAt) -> Result<(), Stop> {
        let table = t.table.to_string();
        self.flush(batch, true, Some((&table, t.lsn))).await?;
        let started = Instant::now();
        let mut last_log = Instant::now();
        let applier = Arc::clone(&self.ctx.applier);
        // The topic's partition count, from the broker's metadata: read once, again only while unknown.
        let mut partitions = 0;
        loop {
            let (arrived, done) = self
                .retry("reading the truncate barrier", || {
                    applier.replica.barrier_state(&applier.topic, &table, t.lsn)
                })
                .await?;
            if done {
                break;
            }
            if partitions == 0 {
                partitions = tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => return Err(Stop::Cancelled),
                    n = partition_count(&self.ctx.consumer, self.topic()) => n.unwrap_or(0),
                };
            }
            if partitions > 0 && arrived >= partitions as i64 {
                let delete = self
                    .retry("checking the truncated table", || {
                        applier.delete_all(&t.table)
                    })
                    .await?;
                let did = self
                    .retry("truncating", || {
                        applier.replica.barrier_once(
                            &applier.topic,
                            &table,
                            t.lsn,
                            delete.as_deref(),
                        )
                    })
                    .await?;
                if did {
                    metrics::counter!(m::ROWS_APPLIED, "table" => table.clone(), "op" => "truncate")
                        .increment(1);
                    tracing::info!(table = %table, lsn = %t.lsn, "table truncated");
                }
                break;
            }
            if last_log.elapsed() > Duration::from_secs(10) {
                last_log = Instant::now();
                tracing::info!(
                    partition = self.partition,
                    table = %table,
                    arrived,
                    partitions,
                    "waiting for every partition to reach the truncate"
                );
            }
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(Stop::Cancelled),
                _ = tokio::time::sleep(BARRIER_POLL) => {}
            }
        }
        metrics::histogram!(m::TRUNCATE_WAIT).record(started.elapsed().as_secs_f64());
        batch.truncate_done();
        Ok(())
    }

    /// Runs `op` until it succeeds, retrying transient errors with backoff (the partition reads nothing
    /// meanwhile). A definite error or cancellation ends the task.
    async fn retry<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, Stop>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, RouterError>>,
    {
        let mut backoff = Backoff::new(Duration::from_millis(100), self.ctx.max_backoff);
        let mut failing = false;
        let result = loop {
            if self.cancel.is_cancelled() {
                break Err(Stop::Cancelled);
            }
            // An attempt under way is not interrupted by revocation or shutdown: a replica transaction
            // in flight finishes (commits or fails) before the partition is given up.
            match op().await {
                Ok(v) => break Ok(v),
                Err(error) if error.is_retryable() => {
                    metrics::counter!(m::ERRORS, "kind" => error.kind()).increment(1);
                    if !failing {
                        failing = true;
                        self.ctx.health.failing(true);
                    }
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        partition = self.partition,
                        error = shared::service::error_chain(&error),
                        retry_in = ?delay,
                        "{what} failed; waiting for the replica"
                    );
                    tokio::select! {
                        biased;
                        _ = self.cancel.cancelled() => break Err(Stop::Cancelled),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Err(error) => break Err(Stop::Failed(error)),
            }
        };
        if failing {
            self.ctx.health.failing(false);
        }
        result
    }

    /// A definite error: the partition stops here, paused, until it is revoked; nothing after the
    /// event is applied and its offset is not stored.
    async fn stop_at(&self, error: RouterError) {
        metrics::counter!(m::ERRORS, "kind" => error.kind()).increment(1);
        tracing::error!(
            partition = self.partition,
            error = shared::service::error_chain(&error),
            "partition stopped: fix the cause, then restart the router"
        );
        self.ctx.health.stopped(true);
        let _ = self.ctx.consumer.pause(&self.tpl());
        self.cancel.cancelled().await;
        self.ctx.health.stopped(false);
    }
}

impl From<RouterError> for Stop {
    fn from(e: RouterError) -> Self {
        Stop::Failed(e)
    }
}

/// The value of a message's header.
fn header<'m>(msg: &'m rdkafka::message::BorrowedMessage<'_>, key: &str) -> Option<&'m [u8]> {
    use rdkafka::message::Headers;
    msg.headers()?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
}

/// The `traceparent` header of a message, when traces are exported.
fn traceparent_of(msg: &rdkafka::message::BorrowedMessage<'_>) -> Option<String> {
    use rdkafka::message::Headers;
    if !shared::telemetry::exporting_traces() {
        return None;
    }
    let headers = msg.headers()?;
    headers
        .iter()
        .find(|h| h.key == shared::propagation::TRACEPARENT)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_owned)
}
