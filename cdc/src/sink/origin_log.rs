//! The origin records in Kafka (topic `<prefix>-cdc-origin`, see [`crate::origin`]): read the
//! latest one of a slot, write a new one and wait for Kafka's acknowledgement.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::kafka::{client_config, ensure_topic, kafka, MetadataReader, TopicSpec};
use crate::config::Config;
use crate::error::CdcError;
use crate::origin::OriginRecord;

/// The origin topic of one prefix.
pub struct OriginLog {
    config: Config,
    producer: FutureProducer,
    topic: String,
}

impl OriginLog {
    /// Makes sure the topic exists (one partition, compacted).
    pub async fn open(config: &Config, timeout: Duration) -> Result<Self, CdcError> {
        let producer: FutureProducer = config
            .kafka
            .apply(
                client_config(config)
                    .set("enable.idempotence", "true")
                    .set("acks", "all")
                    .set("message.timeout.ms", timeout.as_millis().to_string()),
            )
            .create()
            .map_err(kafka("cannot create the origin record producer"))?;
        let topic = crate::origin::topic(&config.topic_prefix);
        let spec = TopicSpec {
            partitions: 1,
            compact: true,
        };
        let metadata: MetadataReader = {
            let producer = producer.clone();
            std::sync::Arc::new(move |topic, timeout| {
                producer.client().fetch_metadata(Some(topic), timeout)
            })
        };
        ensure_topic(config, &metadata, &topic, spec, timeout).await?;
        Ok(OriginLog {
            config: config.clone(),
            producer,
            topic,
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The latest origin record of `slot`, reading the topic from its first to its last record.
    pub async fn read(
        &self,
        slot: &str,
        timeout: Duration,
    ) -> Result<Option<OriginRecord>, CdcError> {
        let config = self.config.clone();
        let topic = self.topic.clone();
        let slot = slot.to_owned();
        tokio::task::spawn_blocking(move || read_blocking(&config, &topic, &slot, timeout))
            .await
            .map_err(|e| CdcError::Protocol(format!("origin read task failed: {e}")))?
    }

    /// Writes `record` (keyed by its slot) and waits until Kafka acknowledged it.
    pub async fn write(&self, record: &OriginRecord, timeout: Duration) -> Result<(), CdcError> {
        let payload = serde_json::to_vec(record)
            .map_err(|e| CdcError::Protocol(format!("cannot encode the origin record: {e}")))?;
        let delivery = self.producer.send(
            FutureRecord::to(&self.topic)
                .partition(0)
                .key(record.slot.as_bytes())
                .payload(&payload),
            timeout,
        );
        match delivery.await {
            Ok(_) => Ok(()),
            Err((source, _)) => Err(CdcError::Delivery { xid: None, source }),
        }
    }
}

fn read_blocking(
    config: &Config,
    topic: &str,
    slot: &str,
    timeout: Duration,
) -> Result<Option<OriginRecord>, CdcError> {
    let consumer: BaseConsumer = config
        .kafka
        .apply(
            client_config(config)
                .set("group.id", "cascade-cdc-origin-reader")
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false"),
        )
        .create()
        .map_err(kafka("cannot create the origin record reader"))?;
    let (low, high) = consumer
        .fetch_watermarks(topic, 0, timeout)
        .map_err(kafka(format!("fetching the watermarks of {topic}")))?;
    if high <= low {
        return Ok(None);
    }
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Offset(low))
        .map_err(kafka(format!("assigning {topic}")))?;
    consumer
        .assign(&assignment)
        .map_err(kafka(format!("assigning {topic}")))?;
    let deadline = Instant::now() + timeout;
    let mut latest = None;
    loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return Err(CdcError::Kafka {
                context: format!(
                    "reading {topic} up to offset {high} took longer than {timeout:?}"
                ),
                source: KafkaError::NoMessageReceived,
            });
        };
        let Some(message) = consumer.poll(left.min(Duration::from_millis(500))) else {
            continue;
        };
        let message = message.map_err(kafka(format!("reading {topic}")))?;
        if message.key() == Some(slot.as_bytes()) {
            // A record without a value (a tombstone) deletes the slot's record.
            latest = match message.payload() {
                None => None,
                Some(payload) => Some(serde_json::from_slice(payload).map_err(|e| {
                    CdcError::Protocol(format!(
                        "the origin record of slot {slot:?} at {topic} offset {} is unreadable: {e}",
                        message.offset()
                    ))
                })?),
            };
        }
        if message.offset() + 1 >= high {
            return Ok(latest);
        }
    }
}
