//! The Kafka side: the consumer-group member, one task per assigned partition, and the hand-over of
//! partitions on a rebalance.
//!
//! Rebalances are eager: every partition is revoked, then the new assignment arrives. On revoke the
//! callback (which runs inside the consumer's poll) tells each partition task to stop and waits for it:
//! a task finishes the replica transaction it is running (its position and offset are then durable)
//! and drops what it buffered but had not applied, which the next owner reads again from the last
//! stored offset. Only then does the callback return and the partition leave this member, so two
//! members never write the same partition's rows at once. On assign, the callback assigns each
//! partition paused, at its beginning (never at the group's committed offset: the replica's position
//! decides where a task starts, see [`crate::resume`]), splits it into its own queue before any
//! message is fetched, and a task is started for it; the task seeks and resumes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use futures_util::future::join_all;
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{
    BaseConsumer, Consumer, ConsumerContext, Rebalance, RebalanceProtocol, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use shared::health::Readiness;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics as m;

pub type RouterConsumer = StreamConsumer<RouterContext>;
pub type PartitionQueue = StreamPartitionQueue<RouterContext>;

/// What the rebalance callbacks tell the supervisor.
pub enum Control {
    Assign(Vec<(i32, PartitionQueue)>),
    /// Stop these partitions' tasks, then answer on the channel.
    Revoke(Vec<i32>, std::sync::mpsc::SyncSender<()>),
}

/// The consumer's context: carries rebalances to the supervisor.
pub struct RouterContext {
    pub topic: String,
    pub control: mpsc::UnboundedSender<Control>,
    /// Set right after the consumer is created; needed to split partition queues in the callback.
    pub consumer: OnceLock<Weak<RouterConsumer>>,
    pub revoke_timeout: Duration,
    /// Told whether a broker is reachable, for `/readyz`.
    pub health: Health,
}

impl ClientContext for RouterContext {
    /// librdkafka's statistics (every `statistics.interval.ms`): consumer lag of the partitions this
    /// member fetches.
    fn stats(&self, statistics: rdkafka::Statistics) {
        // Kafka is up for this member while it holds a connection to a broker of the cluster
        // (bootstrap entries, id -1, do not count).
        let up = statistics
            .brokers
            .values()
            .any(|b| b.nodeid >= 0 && b.state == "UP");
        self.health.kafka(up);
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        for (partition, p) in &topic.partitions {
            if *partition >= 0 && p.fetch_state == "active" && p.consumer_lag >= 0 {
                metrics::gauge!(m::CONSUMER_LAG, "partition" => partition.to_string())
                    .set(p.consumer_lag as f64);
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        metrics::counter!(m::ERRORS, "kind" => "kafka").increment(1);
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.health.kafka(false);
        }
        tracing::warn!(error = %error, reason, "kafka client error");
    }
}

impl ConsumerContext for RouterContext {
    /// rdkafka's default rebalance, except that assigned partitions start paused at their beginning.
    ///
    /// Why not the group's committed offset: it says how far *some* replica transaction got, not
    /// what this replica holds now (it may have been restored from a backup), and with
    /// `auto.offset.reset=error` a missing or out-of-range one would leave the partition in a state
    /// that no seek can leave. The beginning is always a valid start; the partition task then seeks
    /// to where the replica's position says and resumes, so nothing is fetched from the beginning.
    fn rebalance(
        &self,
        base_consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            base_consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                for p in partitions_of(tpl, &self.topic) {
                    let _ = tpl.set_partition_offset(&self.topic, p, Offset::Beginning);
                }
                let assigned = if cooperative {
                    base_consumer.incremental_assign(tpl)
                } else {
                    base_consumer.assign(tpl)
                };
                if let Err(error) = assigned {
                    metrics::counter!(m::ERRORS, "kind" => "kafka").increment(1);
                    tracing::error!(error = %error, "cannot take the assigned partitions");
                    return;
                }
                if let Err(error) = base_consumer.pause(tpl) {
                    tracing::warn!(error = %error, "cannot pause the assigned partitions");
                }
                self.post_rebalance(base_consumer, &Rebalance::Assign(tpl));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.pre_rebalance(base_consumer, &Rebalance::Revoke(tpl));
                let _ = if cooperative {
                    base_consumer.incremental_unassign(tpl)
                } else {
                    base_consumer.unassign()
                };
                self.post_rebalance(base_consumer, &Rebalance::Revoke(tpl));
            }
            other => {
                let error = KafkaError::Rebalance(RDKafkaErrorCode::from(other));
                if !cooperative {
                    let _ = base_consumer.unassign();
                }
                self.post_rebalance(base_consumer, &Rebalance::Error(error));
            }
        }
    }

    fn pre_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        metrics::counter!(m::REBALANCES, "kind" => "revoke").increment(1);
        let partitions = partitions_of(tpl, &self.topic);
        tracing::info!(?partitions, "partitions revoked; finishing in-flight work");
        for p in &partitions {
            // Another member reports it from now on.
            metrics::gauge!(m::CONSUMER_LAG, "partition" => p.to_string()).set(0.0);
        }
        let (ack, done) = std::sync::mpsc::sync_channel(1);
        if self.control.send(Control::Revoke(partitions, ack)).is_err() {
            return; // shutting down: the tasks are already stopped
        }
        let wait = || done.recv_timeout(self.revoke_timeout);
        let answered = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        };
        if answered.is_err() {
            tracing::error!(
                timeout = ?self.revoke_timeout,
                "partition tasks did not stop in time; giving the partitions up anyway"
            );
        }
    }

    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                metrics::counter!(m::REBALANCES, "kind" => "assign").increment(1);
                let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
                    return;
                };
                let partitions = partitions_of(tpl, &self.topic);
                tracing::info!(?partitions, "partitions assigned");
                let queues = partitions
                    .into_iter()
                    .filter_map(|p| {
                        consumer
                            .split_partition_queue(&self.topic, p)
                            .map(|q| (p, q))
                    })
                    .collect();
                let _ = self.control.send(Control::Assign(queues));
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => {
                metrics::counter!(m::ERRORS, "kind" => "kafka").increment(1);
                tracing::warn!(error = %error, "rebalance failed");
            }
        }
    }
}

fn partitions_of(tpl: &TopicPartitionList, topic: &str) -> Vec<i32> {
    tpl.elements()
        .iter()
        .filter(|e| e.topic() == topic)
        .map(|e| e.partition())
        .collect()
}

/// Health shared by the tasks: ready when the consumer runs and no partition is failing or stopped.
#[derive(Clone, Debug, Default)]
pub struct Health {
    pub ready: Readiness,
    running: Arc<AtomicUsize>,
    failing: Arc<AtomicUsize>,
    stopped: Arc<AtomicUsize>,
    /// No broker reachable (librdkafka's "all brokers down", or its statistics show none up).
    kafka_down: Arc<AtomicBool>,
}

impl Health {
    pub fn new(ready: Readiness) -> Self {
        Health {
            ready,
            ..Default::default()
        }
    }

    fn refresh(&self) {
        let ok = self.running.load(Ordering::Relaxed) > 0
            && self.failing.load(Ordering::Relaxed) == 0
            && self.stopped.load(Ordering::Relaxed) == 0
            && !self.kafka_down.load(Ordering::Relaxed);
        self.ready.set(ok);
    }

    /// Whether a Kafka broker is reachable; `/readyz` is 503 while none is.
    pub fn kafka(&self, up: bool) {
        let was_down = self.kafka_down.swap(!up, Ordering::Relaxed);
        if was_down == up {
            if up {
                tracing::info!("kafka reachable again");
            } else {
                tracing::warn!("no Kafka broker reachable; /readyz reports not ready until one is");
            }
        }
        self.refresh();
    }

    pub fn set_running(&self, running: bool) {
        self.running.store(usize::from(running), Ordering::Relaxed);
        self.refresh();
    }

    /// A partition started or stopped failing transiently.
    pub fn failing(&self, failing: bool) {
        if failing {
            self.failing.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failing.fetch_sub(1, Ordering::Relaxed);
        }
        self.refresh();
    }

    /// A partition stopped at (or left) an event it cannot apply.
    pub fn stopped(&self, stopped: bool) {
        if stopped {
            self.stopped.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stopped.fetch_sub(1, Ordering::Relaxed);
        }
        metrics::gauge!(m::PARTITIONS_STOPPED).set(self.stopped.load(Ordering::Relaxed) as f64);
        self.refresh();
    }
}

/// Starts and stops partition tasks as the callbacks say, until `shutdown`; then stops them all.
pub async fn supervise<F>(
    mut control: mpsc::UnboundedReceiver<Control>,
    shutdown: CancellationToken,
    stop_timeout: Duration,
    mut spawn: F,
) where
    F: FnMut(i32, PartitionQueue, CancellationToken) -> tokio::task::JoinHandle<()>,
{
    let mut tasks: HashMap<i32, (CancellationToken, tokio::task::JoinHandle<()>)> = HashMap::new();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            ctl = control.recv() => match ctl {
                None => break,
                Some(Control::Assign(queues)) => {
                    for (partition, queue) in queues {
                        let token = shutdown.child_token();
                        if let Some((old, handle)) = tasks.remove(&partition) {
                            old.cancel();
                            let _ = tokio::time::timeout(stop_timeout, handle).await;
                        }
                        let handle = spawn(partition, queue, token.clone());
                        tasks.insert(partition, (token, handle));
                    }
                }
                Some(Control::Revoke(partitions, ack)) => {
                    let mut stopping = Vec::new();
                    for p in partitions {
                        if let Some((token, handle)) = tasks.remove(&p) {
                            token.cancel();
                            stopping.push(handle);
                        }
                    }
                    // One deadline for all: the rebalance callback waits only this long in total.
                    let _ = tokio::time::timeout(stop_timeout, join_all(stopping)).await;
                    let _ = ack.send(());
                }
            }
        }
    }
    for (token, _) in tasks.values() {
        token.cancel();
    }
    let handles = tasks.into_values().map(|(_, handle)| handle);
    let _ = tokio::time::timeout(stop_timeout, join_all(handles)).await;
}

/// Partitions of the topic, from the broker's metadata (blocking call, run off the async workers).
pub async fn partition_count(
    consumer: &Arc<RouterConsumer>,
    topic: &str,
) -> Result<usize, KafkaError> {
    let consumer = Arc::clone(consumer);
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let md = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
        Ok(md
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map_or(0, |t| t.partitions().len()))
    })
    .await
    .unwrap_or(Ok(0))
}
