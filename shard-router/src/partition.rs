//! One task per assigned partition: find where the replica left off, read in order, batch, apply,
//! store the offset.
//!
//! Loop priority (`biased`): revocation/shutdown first, then the batch deadline, then the next
//! message. Applying happens inline, so while the replica is slow or down the task reads nothing more
//! (librdkafka's prefetch is bounded by `queued.max.messages.kbytes`): backpressure without buffers.
//! A replica transaction in flight is never interrupted: revocation waits for it (see
//! [`crate::retry`]), so the next owner starts exactly where the replica's position says.
//!
//! At an event it cannot apply the task stops (`--on-error stop`), or, with a dead-letter queue,
//! sets the event aside ([`crate::dead_letter`]) and goes on: a message that cannot be decoded or
//! breaks the framing is left out of the batch, a row the replica refuses is taken out of its
//! replica transaction, which is applied again without it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::{codec, Change, Lsn};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::apply::Applier;
use crate::barrier::Barrier;
use crate::batch::{AppliedPosition, BarrierAt, Batch, Flush, Next};
use crate::consume::Health;
use crate::dead_letter::{
    DeadLetterQueue, DlqPosition, KafkaDeadLetters, Letter, Reason, Recorded,
};
use crate::error::{Position, RouterError};
use crate::metrics as m;
use crate::replica::{AnyReplica, Replica};
use crate::resume::{self, Basis, Gap};
use crate::retry::{Retry, Stop};
use crate::stream::{Inbound, PartitionStream};
use crate::trace::{self, FrameSpans};

/// What a partition task needs; cheap to clone.
pub struct PartitionCtx<R = AnyReplica, D = KafkaDeadLetters> {
    pub applier: Arc<Applier<R>>,
    pub health: Health,
    pub batch_max_rows: usize,
    pub batch_max_bytes: usize,
    pub batch_max_wait: Duration,
    pub max_backoff: Duration,
    /// Where events that cannot be applied go (`--on-error dead-letter`); `None`: the partition
    /// stops at them.
    pub dead_letters: Option<Arc<D>>,
}

impl<R, D> Clone for PartitionCtx<R, D> {
    fn clone(&self) -> Self {
        PartitionCtx {
            applier: Arc::clone(&self.applier),
            health: self.health.clone(),
            batch_max_rows: self.batch_max_rows,
            batch_max_bytes: self.batch_max_bytes,
            batch_max_wait: self.batch_max_wait,
            max_backoff: self.max_backoff,
            dead_letters: self.dead_letters.clone(),
        }
    }
}

/// Runs the partition until `cancel` (revocation or shutdown). At an event it cannot apply it stops,
/// pauses the partition and waits for `cancel`, then returns the error it stopped at — unless it
/// has a dead-letter queue, which the event then goes to.
pub async fn run<R: Replica, D: DeadLetterQueue, S: PartitionStream>(
    ctx: PartitionCtx<R, D>,
    partition: i32,
    mut stream: S,
    cancel: CancellationToken,
) -> Result<(), RouterError> {
    metrics::gauge!(m::PARTITIONS_ASSIGNED).increment(1.0);
    let mut task = Task {
        retry: Retry {
            partition,
            cancel,
            health: ctx.health.clone(),
            max_backoff: ctx.max_backoff,
        },
        ctx,
        partition,
        durable: AppliedPosition::default(),
        spans: FrameSpans::default(),
        aside: None,
    };
    let result = match task.run(&mut stream).await {
        Stop::Cancelled => Ok(()),
        Stop::Failed(error) => {
            task.stop_at(&stream, &error).await;
            Err(error)
        }
    };
    metrics::gauge!(m::PARTITIONS_ASSIGNED).decrement(1.0);
    result
}

struct Task<R, D> {
    ctx: PartitionCtx<R, D>,
    partition: i32,
    retry: Retry,
    /// The position this task last wrote to (or read from) the replica; every apply checks the
    /// replica still holds it.
    durable: AppliedPosition,
    spans: FrameSpans,
    /// The offsets of this partition already set aside, and where in the DLQ: read from the replica
    /// and the DLQ before the first dead letter of this assignment, then kept up to date.
    aside: Option<BTreeMap<i64, DlqPosition>>,
}

/// What woke the loop. (A stack value consumed at once: boxing the message would allocate per
/// message.)
#[allow(clippy::large_enum_variant)]
enum Wake {
    Cancelled,
    Deadline,
    Message(Result<Read, rdkafka::error::KafkaError>),
}

/// A message, read.
struct Read {
    offset: i64,
    decoded: Result<Change, codec::DecodeError>,
    /// The value, kept only when it could not be decoded (for its dead letter).
    undecoded: Option<Vec<u8>>,
    trace: shared::propagation::TraceHeaders,
}

/// Checks the format header and decodes the value, once: the typed change is what every later
/// stage works on.
fn read(message: impl Inbound) -> Read {
    let decoded = codec::check_format(message.header(codec::FORMAT_HEADER))
        .and_then(|()| codec::decode(message.payload().unwrap_or_default()));
    let undecoded = match decoded {
        Err(_) => message.payload().map(<[u8]>::to_vec),
        Ok(_) => None,
    };
    Read {
        offset: message.offset(),
        decoded,
        undecoded,
        trace: trace::headers(&message),
    }
}

impl<R: Replica, D: DeadLetterQueue> Task<R, D> {
    fn topic(&self) -> &str {
        &self.ctx.applier.topic
    }

    fn at(&self, offset: i64) -> Position {
        Position {
            topic: self.topic().to_owned(),
            partition: self.partition,
            offset,
        }
    }

    async fn run<S: PartitionStream>(&mut self, stream: &mut S) -> Stop {
        let applier = Arc::clone(&self.ctx.applier);
        let applied = match self
            .retry
            .run("reading the applied position", || {
                applier.replica.position(&applier.topic, self.partition)
            })
            .await
        {
            Ok(p) => p,
            Err(stop) => return stop,
        };
        self.durable = applied;
        let (mut next, mut basis) = match self.start(stream, &applied).await {
            Ok(start) => (start.offset, start.basis),
            Err(stop) => return stop,
        };
        // Assigned paused (see `consume`): fetching starts at the offset just sought.
        stream.resume();
        let mut batch = Batch::new(
            applied,
            self.ctx.batch_max_rows,
            self.ctx.batch_max_bytes,
            self.ctx.batch_max_wait,
        );
        loop {
            let deadline = batch.deadline();
            let far = Instant::now() + Duration::from_secs(3600);
            let wake = tokio::select! {
                biased;
                _ = self.retry.cancel.cancelled() => Wake::Cancelled,
                _ = tokio::time::sleep_until(deadline.unwrap_or(far).into()), if deadline.is_some() => Wake::Deadline,
                message = stream.recv() => Wake::Message(message.map(read)),
            };
            let message = match wake {
                Wake::Cancelled => return Stop::Cancelled,
                Wake::Deadline => {
                    if let Err(stop) = self.flush(stream, &mut batch, false, None).await {
                        return stop;
                    }
                    continue;
                }
                Wake::Message(Ok(read)) => read,
                Wake::Message(Err(error)) if out_of_range(&error) => {
                    // librdkafka found `next` gone (auto.offset.reset=error): deleted while this
                    // task was not reading, beyond the end (the topic was recreated, or the start
                    // position came from elsewhere).
                    return self.gap(stream, next, basis).await;
                }
                Wake::Message(Err(error)) => {
                    metrics::counter!(m::ERRORS, "kind" => "kafka").increment(1);
                    tracing::warn!(partition = self.partition, error = %error, "kafka consume error");
                    continue;
                }
            };
            let Read {
                offset,
                decoded,
                undecoded,
                trace,
            } = message;
            next = offset + 1;
            basis = Basis::Reading;
            let change: Change = match decoded {
                Ok(c) => c,
                // A newer format is not a bad event: every message would be one. Upgrade instead.
                Err(source) if !matches!(source, codec::DecodeError::UnknownFormat(_)) => {
                    let error = RouterError::Undecodable {
                        at: self.at(offset),
                        source,
                    };
                    if let Err(stop) = self
                        .set_aside_message(&mut batch, offset, Reason::Decode, error, undecoded)
                        .await
                    {
                        return stop;
                    }
                    continue;
                }
                Err(source) => {
                    return Stop::Failed(RouterError::Undecodable {
                        at: self.at(offset),
                        source,
                    })
                }
            };
            if self.ctx.dead_letters.is_some() {
                if let Some(e) = batch.framing_error(&change) {
                    let error = RouterError::Framing {
                        at: self.at(offset),
                        reason: e.0,
                    };
                    let value = Some(codec::encode(&change));
                    if let Err(stop) = self
                        .set_aside_message(&mut batch, offset, Reason::Framing, error, value)
                        .await
                    {
                        return stop;
                    }
                    continue;
                }
            }
            self.spans.frame(
                change.action(),
                &applier.topic,
                &applier.group,
                self.partition,
                offset,
                trace,
            );
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
                Next::Flush => self.flush_full(stream, &mut batch).await,
                Next::Barrier(t) => self.barrier(stream, &mut batch, &t).await,
            };
            if let Err(stop) = step {
                return stop;
            }
        }
    }

    /// The buffer is full: apply the complete frames, and the open frame's rows only when they alone
    /// fill the buffer (a source transaction smaller than a batch is never split).
    async fn flush_full<S: PartitionStream>(
        &mut self,
        stream: &S,
        batch: &mut Batch,
    ) -> Result<(), Stop> {
        self.flush(stream, batch, false, None).await?;
        if batch.open_frame_fills() {
            self.flush(stream, batch, true, None).await?;
        }
        Ok(())
    }

    /// Applies what the batch has ready (with `partial`, the open frame too) and stores the offset;
    /// `arrival` records this partition reaching a barrier in the same transaction.
    async fn flush<S: PartitionStream>(
        &mut self,
        stream: &S,
        batch: &mut Batch,
        partial: bool,
        arrival: Option<(&str, Lsn)>,
    ) -> Result<(), Stop> {
        if !batch.has_work(partial) && arrival.is_none() {
            return Ok(());
        }
        let mut flush: Flush = batch.take_flush(partial);
        let needs_write = !flush.rows.is_empty()
            || arrival.is_some()
            || !flush.dead_letters.is_empty()
            || flush.position != batch.applied();
        if needs_write {
            let applier = Arc::clone(&self.ctx.applier);
            let span = self.spans.db_span(
                applier.replica.db_system(),
                &applier.db_target,
                flush.rows.len(),
            );
            let mut applied = self
                .retry
                .run("applying a batch", || {
                    applier
                        .apply(self.partition, &self.durable, &flush, arrival)
                        .instrument(span.clone())
                })
                .await;
            // With a dead-letter queue, a row the replica refuses is set aside and the rest applied
            // again without it, one refused row at a time.
            while self.ctx.dead_letters.is_some() {
                let refused = match &applied {
                    Err(Stop::Failed(
                        error @ RouterError::Event {
                            at, isolated: true, ..
                        },
                    )) if !error.is_retryable() => flush
                        .rows
                        .iter()
                        .position(|r| r.offset == at.offset)
                        .map(|i| (i, error.to_string())),
                    _ => None,
                };
                let Some((index, error)) = refused else { break };
                let Some(row) = flush.remove_row(index) else {
                    break;
                };
                let letter = Letter {
                    offset: row.offset,
                    reason: Reason::Refused,
                    error,
                    value: Some(codec::encode(&Change::Row(row.change))),
                    is_change: true,
                };
                let recorded = self.set_aside(letter).await?;
                flush.dead_letters.push(recorded);
                applied = self
                    .retry
                    .run("applying a batch without the refused row", || {
                        applier
                            .apply(self.partition, &self.durable, &flush, arrival)
                            .instrument(span.clone())
                    })
                    .await;
            }
            if let Err(Stop::Failed(RouterError::Event { at, .. })) = &applied {
                // Apply the source transactions before the failing one, so the partition stops
                // exactly at it.
                let failing = flush.rows.iter().position(|r| r.offset == at.offset);
                if let Some(prefix) = failing.and_then(|i| flush.split_before(i, batch.applied())) {
                    self.retry
                        .run("applying the transactions before the failing one", || {
                            applier.apply(self.partition, &self.durable, &prefix, None)
                        })
                        .await?;
                    self.committed(stream, batch, &prefix);
                }
            }
            applied?;
        }
        self.committed(stream, batch, &flush);
        Ok(())
    }

    /// Sets aside a message that cannot go into the batch (undecodable, or breaking the framing), or
    /// without a dead-letter queue, stops at it.
    async fn set_aside_message(
        &mut self,
        batch: &mut Batch,
        offset: i64,
        reason: Reason,
        error: RouterError,
        value: Option<Vec<u8>>,
    ) -> Result<(), Stop> {
        if self.ctx.dead_letters.is_none() {
            return Err(Stop::Failed(error));
        }
        let letter = Letter {
            offset,
            reason,
            error: shared::service::error_chain(&error),
            value,
            is_change: reason == Reason::Framing,
        };
        let recorded = self.set_aside(letter).await?;
        batch.set_aside(offset, recorded);
        Ok(())
    }

    /// Puts the event in the dead-letter topic, unless it is there already (an earlier run sent it
    /// and then stopped before the replica recorded it, or recorded it and is reading it again), and
    /// returns the record to write with the next position.
    async fn set_aside(&mut self, letter: Letter) -> Result<Recorded, Stop> {
        let Some(queue) = self.ctx.dead_letters.clone() else {
            return Err(Stop::Failed(RouterError::Framing {
                at: self.at(letter.offset),
                reason: "no dead-letter queue to set the event aside in".into(),
            }));
        };
        let partition = self.partition;
        if self.aside.is_none() {
            let applier = Arc::clone(&self.ctx.applier);
            let recorded = self
                .retry
                .run("reading the dead letters the replica recorded", || {
                    applier.replica.dead_letters(&applier.topic, partition)
                })
                .await?;
            let last = recorded.iter().map(|(_, d)| *d).max_by_key(|d| d.offset);
            let mut known: BTreeMap<i64, DlqPosition> = recorded.into_iter().collect();
            let sent = self
                .retry
                .run("reading the dead-letter topic", || {
                    queue.sent_since(partition, last)
                })
                .await?;
            for (offset, dlq) in sent {
                known.entry(offset).or_insert(dlq);
            }
            self.aside = Some(known);
        }
        let known = self.aside.get_or_insert_with(BTreeMap::new);
        let dlq = match known.get(&letter.offset) {
            Some(dlq) => {
                tracing::info!(
                    partition,
                    offset = letter.offset,
                    dlq_partition = dlq.partition,
                    dlq_offset = dlq.offset,
                    "event already in the dead-letter topic; not sent again"
                );
                *dlq
            }
            None => {
                // A send that failed may still have reached Kafka (a timeout after the broker
                // stored it): look before sending again.
                let attempted = AtomicBool::new(false);
                let dlq = self
                    .retry
                    .run("producing a dead letter", || async {
                        if attempted.swap(true, Ordering::Relaxed) {
                            let sent = queue.sent_since(partition, None).await?;
                            if let Some(dlq) = sent.get(&letter.offset) {
                                return Ok(*dlq);
                            }
                        }
                        queue.send(partition, &letter).await
                    })
                    .await?;
                metrics::counter!(
                    m::DEAD_LETTERS,
                    "topic" => self.ctx.applier.topic.clone(),
                    "reason" => letter.reason.as_str()
                )
                .increment(1);
                tracing::warn!(
                    partition,
                    offset = letter.offset,
                    reason = letter.reason.as_str(),
                    dlq_partition = dlq.partition,
                    dlq_offset = dlq.offset,
                    error = %letter.error,
                    "event set aside in the dead-letter topic; the partition goes on"
                );
                known.insert(letter.offset, dlq);
                dlq
            }
        };
        Ok(Recorded {
            offset: letter.offset,
            reason: letter.reason,
            error: letter.error,
            dlq,
        })
    }

    /// Finds where to start reading ([`resume::start`]) and seeks there: after the replica's own
    /// position, whatever the consumer group committed.
    async fn start<S: PartitionStream>(
        &self,
        stream: &S,
        applied: &AppliedPosition,
    ) -> Result<resume::Start, Stop> {
        let bounds = self.bounds(stream).await?;
        let committed = if applied.kafka_offset.is_none() && !applied.is_empty() {
            self.retry
                .run("reading the group's committed offset", || async {
                    stream
                        .committed()
                        .await
                        .map_err(|source| RouterError::Kafka {
                            context: "reading the group's committed offset".into(),
                            source,
                        })
                })
                .await?
        } else {
            None
        };
        let start = resume::start(applied, committed, bounds).map_err(|gap| self.gap_error(gap))?;
        match start.basis {
            Basis::Group => tracing::warn!(
                partition = self.partition,
                offset = start.offset,
                "the replica's position records no Kafka offset (written by an older router): \
                 continuing from the consumer group's committed offset, which cannot prove the \
                 replica holds everything before it; the next replica transaction records the offset"
            ),
            Basis::Beginning if start.offset > 0 => tracing::warn!(
                partition = self.partition,
                first_offset = start.offset,
                "the replica holds nothing of this partition and Kafka no longer has its first \
                 messages: the replica gets only what follows; load it from a copy of the source \
                 (or a snapshot) to have the rest"
            ),
            _ => {}
        }
        tracing::info!(
            partition = self.partition,
            commit_lsn = %applied.commit_lsn,
            offset = start.offset,
            from = %start.basis,
            first_offset = bounds.low,
            end_offset = bounds.high,
            group_offset = ?committed,
            "partition task started"
        );
        self.retry
            .run("seeking to the start offset", || async {
                stream
                    .seek(start.offset)
                    .await
                    .map_err(|source| RouterError::Kafka {
                        context: format!("seeking to offset {}", start.offset),
                        source,
                    })
            })
            .await?;
        Ok(start)
    }

    /// The partition's first available and next offsets, retried while Kafka does not answer.
    async fn bounds<S: PartitionStream>(&self, stream: &S) -> Result<resume::Bounds, Stop> {
        self.retry
            .run("reading the partition's offsets", || async {
                stream.bounds().await.map_err(|source| RouterError::Kafka {
                    context: "reading the partition's first and last offsets".into(),
                    source,
                })
            })
            .await
    }

    /// The partition cannot continue at `next`.
    async fn gap<S: PartitionStream>(&self, stream: &S, next: i64, basis: Basis) -> Stop {
        match self.bounds(stream).await {
            Ok(bounds) => Stop::Failed(self.gap_error(Gap {
                next,
                basis,
                bounds,
            })),
            Err(stop) => stop,
        }
    }

    fn gap_error(&self, gap: Gap) -> RouterError {
        RouterError::Gap {
            topic: self.topic().to_owned(),
            partition: self.partition,
            gap,
        }
    }

    /// Records a committed flush and stores its offset.
    fn committed<S: PartitionStream>(&mut self, stream: &S, batch: &mut Batch, flush: &Flush) {
        batch.flushed(flush.position);
        if flush.frames > 0 || flush.store_offset.is_some() {
            self.spans.committed();
        }
        self.durable = flush.position;
        if let Some(offset) = flush.store_offset {
            if let Err(error) = stream.store_offset(offset) {
                // The partition was revoked meanwhile; the next owner starts from the replica position.
                tracing::debug!(partition = self.partition, error = %error, "cannot store offset");
            }
        }
    }

    /// Applies everything before a truncate or schema change, then meets the other partitions at it:
    /// the action runs once, by whichever partition gets there last, and no partition applies a row
    /// after it before that. A truncate empties the table; a schema change brings the replica table
    /// to the source's new definition (and every partition passing it forgets what it knew of the
    /// table's shape).
    async fn barrier<S: PartitionStream>(
        &mut self,
        stream: &S,
        batch: &mut Batch,
        t: &BarrierAt,
    ) -> Result<(), Stop> {
        let table = t.table.to_string();
        let key = match &t.schema {
            None => table.clone(),
            Some(_) => format!("schema:{table}"),
        };
        self.flush(stream, batch, true, Some((&key, t.lsn))).await?;
        let started = Instant::now();
        let applier = Arc::clone(&self.ctx.applier);
        let barrier = Barrier {
            topic: &applier.topic,
            key: &key,
            lsn: t.lsn,
            partitions: t.partitions,
        };
        let did = barrier
            .meet(&applier.replica, stream, &self.retry, || async {
                match &t.schema {
                    None => applier.delete_all(&t.table).await,
                    Some(ddl) => applier
                        .schema_change(self.partition, t.offset, ddl)
                        .await
                        .map(|()| None),
                }
            })
            .await?;
        match &t.schema {
            None => {
                if did {
                    metrics::counter!(m::ROWS_APPLIED, "table" => table.clone(), "op" => "truncate")
                        .increment(1);
                    tracing::info!(table = %table, lsn = %t.lsn, "table truncated");
                }
                metrics::histogram!(m::TRUNCATE_WAIT).record(started.elapsed().as_secs_f64());
            }
            Some(ddl) => {
                let names: Vec<shared::TableName> = [ddl.before.as_ref(), ddl.after.as_ref()]
                    .into_iter()
                    .flatten()
                    .map(|d| d.name())
                    .collect();
                applier.forget_once(&key, t.lsn, &names);
                if did {
                    metrics::counter!(m::SCHEMA_CHANGES, "table" => table.clone()).increment(1);
                    tracing::info!(table = %table, lsn = %t.lsn, command = ddl.command, "schema change applied");
                }
                metrics::histogram!(m::SCHEMA_WAIT).record(started.elapsed().as_secs_f64());
            }
        }
        batch.barrier_done();
        Ok(())
    }

    /// A definite error: the partition stops here, paused, until it is revoked; nothing after the
    /// event is applied and its offset is not stored.
    async fn stop_at<S: PartitionStream>(&self, stream: &S, error: &RouterError) {
        metrics::counter!(m::ERRORS, "kind" => error.kind()).increment(1);
        tracing::error!(
            partition = self.partition,
            error = shared::service::error_chain(error),
            "partition stopped: fix the cause, then restart the router"
        );
        self.ctx.health.stopped(true);
        stream.pause();
        self.retry.cancel.cancelled().await;
        self.ctx.health.stopped(false);
    }
}

/// A consume error saying the offset being read is not in the partition (any more).
fn out_of_range(error: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::error::RDKafkaErrorCode as Code;
    matches!(
        error.rdkafka_error_code(),
        Some(Code::AutoOffsetReset | Code::OffsetOutOfRange)
    )
}

#[cfg(test)]
mod tests;
