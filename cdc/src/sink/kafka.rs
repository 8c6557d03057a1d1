//! Handing messages to Kafka: an idempotent producer with `acks=all`, the topics it writes, and the
//! delivery reports that become [`Ack`]s.

use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use shared::{FORMAT_HEADER, FORMAT_VERSION};

use super::{Ack, SendError, Sink, Ticket};
use crate::config::Config;
use crate::error::CdcError;
use crate::frame::Outgoing;

/// A producer bound to the shards' topics (one per shard, in shard order), with the delivery reports
/// of the messages in flight.
pub struct KafkaSink {
    producer: FutureProducer,
    topics: Vec<String>,
    partitions: Vec<i32>,
    acks: FuturesUnordered<BoxFuture<'static, Ack>>,
}

pub(crate) fn kafka(context: impl Into<String>) -> impl FnOnce(KafkaError) -> CdcError {
    let context = context.into();
    move |source| CdcError::Kafka { context, source }
}

/// librdkafka settings shared by every client; each adds its own, then the user's `-X` properties
/// (`config.kafka.apply`) last.
pub(crate) fn client_config(config: &Config) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.kafka_brokers)
        .set("client.id", "cascade-cdc")
        .set("allow.auto.create.topics", "false")
        .set("socket.keepalive.enable", "true")
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "5000");
    c
}

impl KafkaSink {
    /// Creates the producer and makes sure the topics exist, waiting for Kafka up to `timeout`.
    pub async fn connect(
        config: &Config,
        topics: Vec<String>,
        timeout: Duration,
    ) -> Result<Self, CdcError> {
        let queue_messages = (config.max_in_flight * 2).clamp(1000, 10_000_000);
        let mut settings = client_config(config);
        settings
            .set("enable.idempotence", "true")
            // A message that fails after later ones of its partition were written would leave a gap
            // in a frame; with this librdkafka raises a fatal error instead, and the session restarts
            // from the slot's confirmed position, re-sending the transaction whole.
            .set("enable.gapless.guarantee", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", config.kafka_linger.as_millis().to_string())
            .set("batch.size", config.kafka_batch_size.to_string())
            .set(
                "message.max.bytes",
                config.kafka_max_message_bytes.to_string(),
            )
            .set(
                "message.timeout.ms",
                config.kafka_message_timeout.as_millis().to_string(),
            )
            .set("queue.buffering.max.messages", queue_messages.to_string())
            // Bounds the producer's memory (with --max-in-flight bounding the message count).
            .set("queue.buffering.max.kbytes", "32768");
        let producer: FutureProducer = config
            .kafka
            .apply(&mut settings)
            .create()
            .map_err(kafka("cannot create the producer"))?;
        let mut partitions = Vec::with_capacity(topics.len());
        for topic in &topics {
            let spec = TopicSpec {
                partitions: config.topic_partitions,
                compact: false,
            };
            partitions.push(ensure_topic(config, &producer, topic, spec, timeout).await?);
        }
        Ok(KafkaSink {
            producer,
            topics,
            partitions,
            acks: FuturesUnordered::new(),
        })
    }

    /// The topics, in shard order.
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// The first partition of the shard topics that holds records (high watermark > 0): proof that
    /// cdc published there before (see [`crate::origin`]).
    pub async fn topic_data(
        &self,
        timeout: Duration,
    ) -> Result<Option<crate::origin::TopicData>, CdcError> {
        for (topic, partitions) in self.topics.iter().zip(&self.partitions) {
            for partition in 0..*partitions {
                let producer = self.producer.clone();
                let name = topic.clone();
                let (_, high) = tokio::task::spawn_blocking(move || {
                    producer
                        .client()
                        .fetch_watermarks(&name, partition, timeout)
                })
                .await
                .map_err(|e| CdcError::Protocol(format!("watermark task failed: {e}")))?
                .map_err(kafka(format!(
                    "fetching the watermarks of {topic} partition {partition}"
                )))?;
                if high > 0 {
                    return Ok(Some(crate::origin::TopicData {
                        topic: topic.clone(),
                        partition,
                        high_watermark: high,
                    }));
                }
            }
        }
        Ok(None)
    }

    /// Waits until everything handed over is acknowledged (or `timeout`).
    pub async fn flush(&self, timeout: Duration) -> Result<(), CdcError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|e| CdcError::Protocol(format!("flush task failed: {e}")))?
            .map_err(kafka("flushing the producer"))
    }
}

impl Sink for KafkaSink {
    fn partitions(&self) -> &[i32] {
        &self.partitions
    }

    fn topic(&self, shard: usize) -> &str {
        self.topics.get(shard).map_or("", String::as_str)
    }

    fn send(
        &mut self,
        message: &Outgoing,
        ticket: Ticket,
        trace: &[(String, String)],
    ) -> Result<(), SendError> {
        let mut headers = OwnedHeaders::new_with_capacity(1 + trace.len()).insert(Header {
            key: FORMAT_HEADER,
            value: Some(FORMAT_VERSION),
        });
        for (key, value) in trace {
            headers = headers.insert(Header {
                key: key.as_str(),
                value: Some(value.as_str()),
            });
        }
        let topic = self
            .topics
            .get(message.dest.shard)
            .map_or("", String::as_str);
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
            .partition(message.dest.partition)
            .payload(&message.payload[..])
            .headers(headers);
        if let Some(key) = &message.key {
            record = record.key(&key[..]);
        }
        match self.producer.send_result(record) {
            Ok(delivery) => {
                let sent_at = Instant::now();
                let (action, table, bytes, shard) = (
                    message.action,
                    message.table.clone(),
                    message.payload.len(),
                    message.dest.shard,
                );
                self.acks.push(
                    async move {
                        let result = match delivery.await {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err((source, _))) => Err(CdcError::Delivery {
                                xid: Some(ticket.xid),
                                source,
                            }),
                            // The producer dropped the report: it was shut down.
                            Err(_) => Err(CdcError::Delivery {
                                xid: Some(ticket.xid),
                                source: KafkaError::Canceled,
                            }),
                        };
                        Ack {
                            ticket,
                            action,
                            shard,
                            table,
                            bytes,
                            latency: sent_at.elapsed(),
                            result,
                        }
                    }
                    .boxed(),
                );
                Ok(())
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                Err(SendError::Full)
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) => {
                Err(SendError::Failed(CdcError::MessageTooLarge {
                    action: message.action.as_str(),
                    table: message.table.as_deref().unwrap_or_default().to_owned(),
                    lsn: message.lsn,
                    bytes: message.payload.len(),
                }))
            }
            Err((source, _)) => Err(SendError::Failed(CdcError::Kafka {
                context: format!("producing to {topic}"),
                source,
            })),
        }
    }

    async fn next_ack(&mut self) -> Option<Ack> {
        self.acks.next().await
    }

    fn in_flight(&self) -> usize {
        self.acks.len()
    }
}

/// The shape of a topic cdc creates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TopicSpec {
    pub(crate) partitions: i32,
    /// `cleanup.policy=compact`: the latest record of each key is kept forever.
    pub(crate) compact: bool,
}

/// Creates `topic` if missing and returns its partition count.
pub(crate) async fn ensure_topic(
    config: &Config,
    producer: &FutureProducer,
    topic: &str,
    spec: TopicSpec,
    timeout: Duration,
) -> Result<i32, CdcError> {
    if let Some(n) = partition_count(producer, topic, timeout).await? {
        if n != spec.partitions {
            tracing::info!(
                topic,
                partitions = n,
                "topic exists; keeping its partition count"
            );
        }
        return Ok(n);
    }
    let admin: AdminClient<DefaultClientContext> = config
        .kafka
        .apply(&mut client_config(config))
        .create()
        .map_err(kafka("cannot create the admin client"))?;
    let mut new = NewTopic::new(
        topic,
        spec.partitions,
        TopicReplication::Fixed(config.topic_replication_factor),
    );
    if spec.compact {
        new = new.set("cleanup.policy", "compact");
    }
    let results = admin
        .create_topics(
            [&new],
            &AdminOptions::new().operation_timeout(Some(timeout)),
        )
        .await
        .map_err(kafka(format!("creating topic {topic}")))?;
    for result in results {
        match result {
            Ok(_) => tracing::info!(topic, partitions = spec.partitions, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(CdcError::Kafka {
                    context: format!("creating topic {topic}"),
                    source: KafkaError::AdminOp(code),
                })
            }
        }
    }
    // Metadata can lag behind creation for a moment.
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(n) = partition_count(producer, topic, timeout).await? {
            return Ok(n);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CdcError::Kafka {
                context: format!("topic {topic} does not appear in metadata after creation"),
                source: KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn partition_count(
    producer: &FutureProducer,
    topic: &str,
    timeout: Duration,
) -> Result<Option<i32>, CdcError> {
    let producer = producer.clone();
    let name = topic.to_owned();
    let metadata =
        tokio::task::spawn_blocking(move || producer.client().fetch_metadata(Some(&name), timeout))
            .await
            .map_err(|e| CdcError::Protocol(format!("metadata task failed: {e}")))?
            .map_err(kafka(format!("fetching metadata of topic {topic}")))?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len() as i32))
}
