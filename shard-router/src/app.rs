//! Wiring: metrics and health endpoint, the replica, the consumer and its partition tasks, shutdown.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::Offset;
use shared::backoff::Backoff;
use shared::service::Service;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::apply::Applier;
use crate::config::{Config, OnError};
use crate::consume::{self, Health, RouterConsumer, RouterContext};
use crate::error::RouterError;
use crate::metrics as m;
use crate::partition::{self, PartitionCtx};
use crate::replica::AnyReplica;
use crate::stream::KafkaPartition;

/// Runs the router until SIGTERM/SIGINT (returns `Ok`) or a definite start-up error.
pub async fn run(config: Config) -> Result<(), RouterError> {
    let service = Service::start(config.http_addr, m::BUCKETS, m::describe).await?;
    tracing::info!(
        topic = %config.topic(),
        group = %config.group_id(),
        replica = %config.replica_url,
        brokers = %config.kafka_brokers,
        "shard-router starting"
    );
    let result = serve(
        &config,
        &service.shutdown,
        Health::new(service.ready.clone()),
    )
    .await;
    service.stop().await;
    result
}

async fn serve(
    config: &Config,
    shutdown: &CancellationToken,
    health: Health,
) -> Result<(), RouterError> {
    let Some(replica) = connect_replica(config, shutdown).await? else {
        return Ok(());
    };
    let topic = config.topic();
    let mut applier = Applier::new(replica, topic.clone())?;
    applier.group = config.group_id();
    applier.db_target = config.replica_url.db_target();
    let applier = Arc::new(applier);

    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let consumer = create_consumer(config, control_tx, health.clone())?;
    if !wait_for_topic(&consumer, &topic, config.max_backoff, shutdown).await {
        drop_consumer(consumer).await;
        return Ok(());
    }
    consumer
        .subscribe(&[&topic])
        .map_err(|source| RouterError::Kafka {
            context: format!("cannot subscribe to {topic}"),
            source,
        })?;
    let dead_letters = match config.on_error {
        OnError::Stop => None,
        OnError::DeadLetter => {
            let partitions =
                consume::partition_count(&consumer, &topic)
                    .await
                    .map_err(|source| RouterError::Kafka {
                        context: format!("reading the partition count of {topic}"),
                        source,
                    })?;
            let queue = crate::dead_letter::KafkaDeadLetters::connect(
                &config.kafka_brokers,
                &config.kafka,
                &topic,
                &config.group_id(),
                i32::try_from(partitions).unwrap_or(i32::MAX),
                config.dlq_replication_factor,
            )
            .await?;
            tracing::info!(
                dlq = %crate::dead_letter::dlq_topic(&topic),
                "events that cannot be applied go to the dead-letter topic"
            );
            Some(Arc::new(queue))
        }
    };
    health.set_running(true);
    tracing::info!(topic = %topic, group = %config.group_id(), "subscribed");

    let ctx = PartitionCtx {
        applier,
        health: health.clone(),
        batch_max_rows: config.batch_max_rows,
        batch_max_bytes: config.batch_max_bytes,
        batch_max_wait: config.batch_max_wait,
        max_backoff: config.max_backoff,
        dead_letters,
    };
    let supervisor = tokio::spawn(consume::supervise(
        control_rx,
        shutdown.clone(),
        config.shutdown_timeout,
        {
            let consumer = Arc::clone(&consumer);
            let topic = topic.clone();
            move |p, queue, token| {
                let stream = KafkaPartition::new(queue, Arc::clone(&consumer), topic.clone(), p);
                let run = partition::run(ctx.clone(), p, stream, token);
                // A stopped partition has logged its error; it is revoked or shut down by now.
                tokio::spawn(async move { drop(run.await) })
            }
        },
    ));

    // The main queue serves rebalances and errors; partition messages go to the partition queues. A
    // message that slipped in before its partition was split is sent back to be fetched again there.
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            message = consumer.recv() => match message {
                Ok(msg) => {
                    let (p, offset) = (msg.partition(), msg.offset());
                    drop(msg);
                    if let Err(error) = consumer.seek(&topic, p, Offset::Offset(offset), Duration::from_secs(5)) {
                        tracing::warn!(partition = p, offset, error = %error, "cannot re-route a message to its partition task");
                    }
                }
                Err(error) => {
                    metrics::counter!(m::ERRORS, "kind" => "kafka").increment(1);
                    tracing::warn!(error = %error, "kafka consumer error");
                }
            }
        }
    }
    tracing::info!("shutting down: finishing in-flight replica transactions");
    health.set_running(false);
    let _ = supervisor.await;
    drop_consumer(consumer).await;
    tracing::info!("stopped");
    Ok(())
}

/// Connects to the replica, retrying with backoff while it is unreachable. `None` if shut down first.
async fn connect_replica(
    config: &Config,
    shutdown: &CancellationToken,
) -> Result<Option<AnyReplica>, RouterError> {
    let mut backoff = Backoff::new(Duration::from_millis(250), config.max_backoff);
    loop {
        // Partition tasks share the pool; a few connections are plenty since each task holds one
        // only while it applies.
        let connections = crate::replica::connections(config.replica_url.dialect);
        match AnyReplica::connect(&config.replica_url, connections as u32).await {
            Ok(r) => {
                tracing::info!(replica = %config.replica_url, "replica connected");
                return Ok(Some(r));
            }
            Err(error) if error.is_retryable() => {
                metrics::counter!(m::ERRORS, "kind" => error.kind()).increment(1);
                let delay = backoff.next_delay();
                tracing::warn!(
                    replica = %config.replica_url,
                    error = shared::service::error_chain(&error),
                    retry_in = ?delay,
                    "waiting for the replica"
                );
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            Err(error) => return Err(error),
        }
    }
}

fn create_consumer(
    config: &Config,
    control: mpsc::UnboundedSender<consume::Control>,
    health: Health,
) -> Result<Arc<RouterConsumer>, RouterError> {
    let context = RouterContext {
        topic: config.topic(),
        control,
        consumer: OnceLock::new(),
        revoke_timeout: config.shutdown_timeout,
        health,
    };
    let mut settings = ClientConfig::new();
    settings
        .set("bootstrap.servers", &config.kafka_brokers)
        .set("group.id", config.group_id())
        .set(
            "client.id",
            format!("shard-router.{}", config.replica_name()),
        )
        // Offsets advance only when a partition task stores them, after its replica transaction
        // committed; librdkafka commits what was stored every second and on revoke/close.
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.commit.interval.ms", "1000")
        // Never jump elsewhere on its own: a task starts where the replica's position says
        // (`resume`), and an offset that is gone stops the partition with a gap.
        .set("auto.offset.reset", "error")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "2000")
        // Bound the prefetch, per partition: librdkafka stops fetching a partition once this much
        // (decompressed) is queued, and looks again after `fetch.queue.backoff.ms` (its default,
        // one second, stalls a drain whenever a queue fills). One fetch can still overshoot by a
        // whole response: a response holds at most `fetch.max.bytes` *compressed* (lz4 packs
        // wal2json-style JSON about 9:1, and a broker may ignore the per-partition bound), so that is
        // kept small too; `message.max.bytes` only has to stay below it. A record batch larger than
        // that is still returned whole (the consumer always makes progress).
        .set("queued.max.messages.kbytes", "128")
        .set("fetch.queue.backoff.ms", "5")
        .set("fetch.max.bytes", "131072")
        .set("max.partition.fetch.bytes", "65536")
        .set("message.max.bytes", "131072")
        // A fetch the broker holds open waiting for data returns after this at the latest: with a
        // broker that does not answer a held fetch as soon as data arrives, this is the router's
        // share of commit-to-replica lag on a quiet partition.
        .set("fetch.wait.max.ms", "20")
        .set("statistics.interval.ms", "5000");
    let consumer: RouterConsumer = config
        .kafka
        .apply(&mut settings)
        .create_with_context(context)
        .map_err(|source| RouterError::Kafka {
            context: "cannot create the consumer".into(),
            source,
        })?;
    let consumer = Arc::new(consumer);
    let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
    Ok(consumer)
}

/// Waits until the topic exists (cdc creates it). `false` if shut down first.
async fn wait_for_topic(
    consumer: &Arc<RouterConsumer>,
    topic: &str,
    max_backoff: Duration,
    shutdown: &CancellationToken,
) -> bool {
    let mut backoff = Backoff::new(Duration::from_millis(250), max_backoff);
    loop {
        match consume::partition_count(consumer, topic).await {
            Ok(n) if n > 0 => {
                tracing::info!(topic, partitions = n, "topic found");
                return true;
            }
            outcome => {
                let delay = backoff.next_delay();
                let reason = match outcome {
                    Err(e) => e.to_string(),
                    Ok(_) => "the topic does not exist yet (cdc creates it)".to_owned(),
                };
                tracing::warn!(topic, reason, retry_in = ?delay, "waiting for the topic");
                tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Dropping the consumer leaves the group and commits the stored offsets; it blocks, so off the
/// async workers.
async fn drop_consumer(consumer: Arc<RouterConsumer>) {
    consumer.unsubscribe();
    let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
}
