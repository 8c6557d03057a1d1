//! Handing messages to Kafka: an idempotent producer with `acks=all`, the topics it writes, and the
//! delivery reports that become [`Ack`]s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use shared::{Action, FORMAT_HEADER, FORMAT_VERSION};
use tokio::sync::mpsc;

use super::{Ack, SendError, Sink, Ticket};
use crate::config::Config;
use crate::error::CdcError;
use crate::frame::Outgoing;

/// A producer bound to the shards' topics (one per shard, in shard order), with the delivery reports
/// of the messages in flight.
///
/// Delivery reports arrive through a channel that librdkafka's delivery callback feeds (on the
/// producer's polling thread), rather than one future per message: a burst of reports then costs
/// the pump one wake-up, not one per message.
pub struct KafkaSink {
    producer: Arc<ThreadedProducer<AckContext>>,
    topics: Vec<String>,
    partitions: Vec<i32>,
    acks: mpsc::UnboundedReceiver<Ack>,
    in_flight: usize,
}

/// What a message in flight carries until its delivery report.
pub struct Pending {
    ticket: Ticket,
    action: Action,
    shard: usize,
    table: Option<Arc<str>>,
    bytes: usize,
    sent_at: Instant,
}

/// Turns delivery reports into [`Ack`]s on the sink's channel. (Bounded by `--max-in-flight`: the
/// pump sends nothing more while that many reports are outstanding.)
pub struct AckContext {
    acks: mpsc::UnboundedSender<Ack>,
}

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = Box<Pending>;

    fn delivery(&self, report: &DeliveryResult<'_>, pending: Box<Pending>) {
        let Pending {
            ticket,
            action,
            shard,
            table,
            bytes,
            sent_at,
        } = *pending;
        let result = match report {
            Ok(_) => Ok(()),
            Err((source, _)) => Err(CdcError::Delivery {
                xid: Some(ticket.xid),
                source: source.clone(),
            }),
        };
        // The receiver is gone only when the sink was dropped: nobody waits for the report.
        let _ = self.acks.send(Ack {
            ticket,
            action,
            shard,
            table,
            bytes,
            latency: sent_at.elapsed(),
            result,
        });
    }
}

/// Reads a topic's metadata through an existing client, off the async workers.
pub(crate) type MetadataReader =
    Arc<dyn Fn(&str, Duration) -> Result<Metadata, KafkaError> + Send + Sync>;

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
            // Bounds the producer's memory (with --max-in-flight bounding the message count): 8 MiB
            // of messages is well over what a linger of a few milliseconds batches at full speed,
            // and a snapshot, which produces as fast as it reads, fills no more than that.
            .set("queue.buffering.max.kbytes", "8192");
        let (tx, acks) = mpsc::unbounded_channel();
        let producer: ThreadedProducer<AckContext> = config
            .kafka
            .apply(&mut settings)
            .create_with_context(AckContext { acks: tx })
            .map_err(kafka("cannot create the producer"))?;
        let producer = Arc::new(producer);
        let metadata: MetadataReader = {
            let producer = Arc::clone(&producer);
            Arc::new(move |topic, timeout| producer.client().fetch_metadata(Some(topic), timeout))
        };
        let mut partitions = Vec::with_capacity(topics.len());
        for topic in &topics {
            let spec = TopicSpec {
                partitions: config.topic_partitions,
                compact: false,
            };
            partitions.push(ensure_topic(config, &metadata, topic, spec, timeout).await?);
        }
        Ok(KafkaSink {
            producer,
            topics,
            partitions,
            acks,
            in_flight: 0,
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
                let producer = Arc::clone(&self.producer);
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
        let producer = Arc::clone(&self.producer);
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
        let pending = Box::new(Pending {
            ticket,
            action: message.action,
            shard: message.dest.shard,
            table: message.table.clone(),
            bytes: message.payload.len(),
            sent_at: Instant::now(),
        });
        let mut record: BaseRecord<'_, [u8], [u8], Box<Pending>> =
            BaseRecord::with_opaque_to(topic, pending)
                .partition(message.dest.partition)
                .payload(&message.payload[..])
                .headers(headers);
        if let Some(key) = &message.key {
            record = record.key(&key[..]);
        }
        match self.producer.send(record) {
            Ok(()) => {
                self.in_flight += 1;
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
        if self.in_flight == 0 {
            return None;
        }
        let ack = self.acks.recv().await;
        if ack.is_some() {
            self.in_flight -= 1;
        }
        ack
    }

    fn in_flight(&self) -> usize {
        self.in_flight
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
    metadata: &MetadataReader,
    topic: &str,
    spec: TopicSpec,
    timeout: Duration,
) -> Result<i32, CdcError> {
    if let Some(n) = partition_count(metadata, topic, timeout).await? {
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
        if let Some(n) = partition_count(metadata, topic, timeout).await? {
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
    metadata: &MetadataReader,
    topic: &str,
    timeout: Duration,
) -> Result<Option<i32>, CdcError> {
    let read = Arc::clone(metadata);
    let name = topic.to_owned();
    let metadata = tokio::task::spawn_blocking(move || read(&name, timeout))
        .await
        .map_err(|e| CdcError::Protocol(format!("metadata task failed: {e}")))?
        .map_err(kafka(format!("fetching metadata of topic {topic}")))?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len() as i32))
}
