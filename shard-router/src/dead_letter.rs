//! Dead letters (`--on-error dead-letter`): an event a partition cannot apply — it cannot be decoded,
//! it breaks the framing, or the replica refuses its row — is set aside in the topic `<topic>.dlq`
//! and the partition goes on.
//!
//! Order of effects, which is what makes a dead letter neither lost nor doubled:
//! 1. the dead letter is produced and Kafka acknowledges it ([`DeadLetterQueue::send`]);
//! 2. the replica transaction that moves the partition's position past the event records it in
//!    `_cascade_dead_letters` (with its place in the DLQ);
//! 3. only then is the Kafka offset stored.
//!
//! A router that crashes between 1 and 2 reads the event again. Before it sends the first dead letter
//! of an assignment it collects what is already set aside for the partition: the offsets recorded in
//! the replica, and the dead letters in the DLQ after the last one the replica recorded
//! ([`DeadLetterQueue::sent_since`], this consumer group's only). An event found there is not sent
//! again. [`crate::replay`] applies dead letters again after a fix.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use shared::kafka::KafkaArgs;

use crate::error::RouterError;

/// The Kafka headers of a dead letter.
pub const HEADER_ERROR: &str = "cascade-error";
pub const HEADER_SOURCE_TOPIC: &str = "cascade-source-topic";
pub const HEADER_SOURCE_PARTITION: &str = "cascade-source-partition";
pub const HEADER_SOURCE_OFFSET: &str = "cascade-source-offset";
pub const HEADER_CONSUMER_GROUP: &str = "cascade-consumer-group";
pub const HEADER_REASON: &str = "cascade-reason";

/// How long one Kafka request of the dead-letter queue may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long reading the dead-letter topic's tail may take.
const SCAN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long nothing must arrive, past the high watermark, before a read of a partition counts as
/// having reached its end.
const SCAN_IDLE: Duration = Duration::from_secs(1);

/// The dead-letter topic of a topic.
pub fn dlq_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// Why an event was set aside: the `cascade-reason` header and the `reason` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Not a change: no `cascade-format` header, or a value that is not a change.
    Decode,
    /// A change that breaks the framing of docs/event-format.md (a row or commit outside a frame).
    Framing,
    /// A row change the replica refused (a value it cannot hold, a constraint).
    Refused,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Decode => "decode",
            Reason::Framing => "framing",
            Reason::Refused => "refused",
        }
    }

    pub fn parse(s: &str) -> Option<Reason> {
        match s {
            "decode" => Some(Reason::Decode),
            "framing" => Some(Reason::Framing),
            "refused" => Some(Reason::Refused),
            _ => None,
        }
    }
}

/// An event to set aside.
#[derive(Clone, Debug)]
pub struct Letter {
    /// Its offset in the source partition.
    pub offset: i64,
    pub reason: Reason,
    /// What went wrong, without row values (the replica's message is redacted).
    pub error: String,
    /// The message's value: as read (decode, framing) or the refused row change encoded again
    /// (refused).
    pub value: Option<Vec<u8>>,
    /// Whether the value is a change in the cascade format (it then gets the `cascade-format`
    /// header, so `replay-dlq` can read it).
    pub is_change: bool,
}

/// Where a dead letter was stored in the DLQ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DlqPosition {
    pub partition: i32,
    pub offset: i64,
}

/// A dead letter recorded in the replica with the position that moves past its event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub offset: i64,
    pub reason: Reason,
    pub error: String,
    pub dlq: DlqPosition,
}

/// Where dead letters go. Implemented over Kafka ([`KafkaDeadLetters`]) and in memory by the
/// partition loop's tests.
pub trait DeadLetterQueue: Send + Sync + 'static {
    /// Produces a dead letter of `partition` and waits until Kafka acknowledged it.
    fn send(
        &self,
        partition: i32,
        letter: &Letter,
    ) -> impl Future<Output = Result<DlqPosition, RouterError>> + Send;

    /// The dead letters of this consumer group for source partition `partition` stored after `after`
    /// (from the beginning when `None`), by source offset.
    fn sent_since(
        &self,
        partition: i32,
        after: Option<DlqPosition>,
    ) -> impl Future<Output = Result<BTreeMap<i64, DlqPosition>, RouterError>> + Send;
}

/// The dead-letter topic over Kafka.
pub struct KafkaDeadLetters {
    producer: FutureProducer,
    brokers: String,
    options: KafkaArgs,
    source_topic: String,
    topic: String,
    group: String,
    partitions: i32,
}

fn kafka(context: impl Into<String>) -> impl FnOnce(KafkaError) -> RouterError {
    let context = context.into();
    move |source| RouterError::Kafka { context, source }
}

impl KafkaDeadLetters {
    /// Creates the producer and the topic `<topic>.dlq` if missing, with as many partitions as the
    /// source topic (`partitions`): dead letters of source partition P go to DLQ partition P (modulo
    /// the DLQ's count when it already exists with another).
    pub async fn connect(
        brokers: &str,
        options: &KafkaArgs,
        source_topic: &str,
        group: &str,
        partitions: i32,
        replication_factor: i32,
    ) -> Result<Self, RouterError> {
        let topic = dlq_topic(source_topic);
        let producer: FutureProducer = options
            .apply(
                ClientConfig::new()
                    .set("bootstrap.servers", brokers)
                    .set("client.id", format!("shard-router.dlq.{group}"))
                    .set("enable.idempotence", "true")
                    .set("acks", "all")
                    .set("message.timeout.ms", "30000"),
            )
            .create()
            .map_err(kafka("cannot create the dead-letter producer"))?;
        let mut partitions_now = topic_partitions(&producer, &topic).await?;
        if partitions_now == 0 {
            let admin: AdminClient<DefaultClientContext> = options
                .apply(ClientConfig::new().set("bootstrap.servers", brokers))
                .create()
                .map_err(kafka("cannot create the admin client"))?;
            let new = NewTopic::new(
                &topic,
                partitions.max(1),
                TopicReplication::Fixed(replication_factor),
            );
            let results = admin
                .create_topics(
                    [&new],
                    &AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT)),
                )
                .await
                .map_err(kafka(format!("creating topic {topic}")))?;
            for result in results {
                match result {
                    Ok(_) => tracing::info!(topic, partitions, "created the dead-letter topic"),
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((_, code)) => {
                        return Err(RouterError::Kafka {
                            context: format!("creating topic {topic}"),
                            source: KafkaError::AdminOp(code),
                        })
                    }
                }
            }
            let deadline = Instant::now() + REQUEST_TIMEOUT;
            while partitions_now == 0 {
                if Instant::now() > deadline {
                    return Err(RouterError::Kafka {
                        context: format!(
                            "topic {topic} does not appear in metadata after creation"
                        ),
                        source: KafkaError::MetadataFetch(
                            RDKafkaErrorCode::UnknownTopicOrPartition,
                        ),
                    });
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                partitions_now = topic_partitions(&producer, &topic).await?;
            }
        }
        Ok(KafkaDeadLetters {
            producer,
            brokers: brokers.to_owned(),
            options: options.clone(),
            source_topic: source_topic.to_owned(),
            topic,
            group: group.to_owned(),
            partitions: partitions_now,
        })
    }

    fn dlq_partition(&self, partition: i32) -> i32 {
        partition.rem_euclid(self.partitions.max(1))
    }
}

/// The partition count of a topic (0 when it does not exist).
async fn topic_partitions(producer: &FutureProducer, topic: &str) -> Result<i32, RouterError> {
    let producer = producer.clone();
    let name = topic.to_owned();
    let metadata = tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(Some(&name), REQUEST_TIMEOUT)
    })
    .await
    .unwrap_or(Err(KafkaError::Canceled))
    .map_err(kafka(format!("fetching metadata of topic {topic}")))?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len() as i32))
}

impl DeadLetterQueue for KafkaDeadLetters {
    async fn send(&self, partition: i32, letter: &Letter) -> Result<DlqPosition, RouterError> {
        let (p, o) = (partition.to_string(), letter.offset.to_string());
        let mut headers = OwnedHeaders::new_with_capacity(7)
            .insert(Header {
                key: HEADER_ERROR,
                value: Some(letter.error.as_str()),
            })
            .insert(Header {
                key: HEADER_SOURCE_TOPIC,
                value: Some(self.source_topic.as_str()),
            })
            .insert(Header {
                key: HEADER_SOURCE_PARTITION,
                value: Some(p.as_str()),
            })
            .insert(Header {
                key: HEADER_SOURCE_OFFSET,
                value: Some(o.as_str()),
            })
            .insert(Header {
                key: HEADER_CONSUMER_GROUP,
                value: Some(self.group.as_str()),
            })
            .insert(Header {
                key: HEADER_REASON,
                value: Some(letter.reason.as_str()),
            });
        if letter.is_change {
            headers = headers.insert(Header {
                key: shared::codec::FORMAT_HEADER,
                value: Some(shared::codec::FORMAT_VERSION),
            });
        }
        let key = format!("{}/{partition}/{}", self.source_topic, letter.offset);
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&self.topic)
            .partition(self.dlq_partition(partition))
            .key(key.as_str())
            .headers(headers);
        if let Some(value) = &letter.value {
            record = record.payload(value.as_slice());
        }
        match self.producer.send(record, REQUEST_TIMEOUT).await {
            Ok(delivery) => Ok(DlqPosition {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Err((source, _)) => Err(RouterError::Kafka {
                context: format!("producing a dead letter to {}", self.topic),
                source,
            }),
        }
    }

    async fn sent_since(
        &self,
        partition: i32,
        after: Option<DlqPosition>,
    ) -> Result<BTreeMap<i64, DlqPosition>, RouterError> {
        let dlq_partition = self.dlq_partition(partition);
        let from = after
            .filter(|a| a.partition == dlq_partition)
            .map_or(0, |a| a.offset + 1);
        let scan = Scan {
            brokers: self.brokers.clone(),
            options: self.options.clone(),
            topic: self.topic.clone(),
            partition: dlq_partition,
            from,
        };
        let letters = tokio::task::spawn_blocking(move || scan.run())
            .await
            .unwrap_or(Err(KafkaError::Canceled))
            .map_err(kafka(format!(
                "reading the dead letters of partition {partition} in {}",
                self.topic
            )))?;
        Ok(letters
            .into_iter()
            .filter(|l| {
                l.source_topic == self.source_topic
                    && l.source_partition == partition
                    && l.group == self.group
            })
            .map(|l| (l.source_offset, l.dlq))
            .collect())
    }
}

/// A dead letter as read back from the DLQ.
#[derive(Clone, Debug)]
pub struct Stored {
    pub dlq: DlqPosition,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    pub group: String,
    pub reason: Option<Reason>,
    pub error: String,
    pub value: Option<Vec<u8>>,
}

impl Stored {
    /// Reads a DLQ message; `None` when it lacks the source headers (not a dead letter of ours).
    pub fn of(message: &impl Message) -> Option<Stored> {
        let headers = message.headers()?;
        let text = |key: &str| -> Option<String> {
            headers
                .iter()
                .find(|h| h.key == key)
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_owned)
        };
        Some(Stored {
            dlq: DlqPosition {
                partition: message.partition(),
                offset: message.offset(),
            },
            source_topic: text(HEADER_SOURCE_TOPIC)?,
            source_partition: text(HEADER_SOURCE_PARTITION)?.parse().ok()?,
            source_offset: text(HEADER_SOURCE_OFFSET)?.parse().ok()?,
            group: text(HEADER_CONSUMER_GROUP).unwrap_or_default(),
            reason: text(HEADER_REASON).as_deref().and_then(Reason::parse),
            error: text(HEADER_ERROR).unwrap_or_default(),
            value: message.payload().map(<[u8]>::to_vec),
        })
    }
}

/// Reads one DLQ partition from an offset to its end.
pub struct Scan {
    pub brokers: String,
    /// The user's librdkafka properties (`-X`).
    pub options: KafkaArgs,
    pub topic: String,
    pub partition: i32,
    pub from: i64,
}

impl Scan {
    /// Every dead letter from `from` to the partition's end: at least up to the high watermark read
    /// when the scan began, and on until nothing more arrives for [`SCAN_IDLE`]. Blocking.
    pub fn run(&self) -> Result<Vec<Stored>, KafkaError> {
        let consumer: BaseConsumer = self
            .options
            .apply(
                ClientConfig::new()
                    .set("bootstrap.servers", &self.brokers)
                    .set("group.id", format!("{}.scan", self.topic))
                    .set("enable.auto.commit", "false")
                    .set("enable.auto.offset.store", "false")
                    .set("enable.partition.eof", "false")
                    .set("auto.offset.reset", "earliest"),
            )
            .create()?;
        let (low, high) =
            consumer.fetch_watermarks(&self.topic, self.partition, REQUEST_TIMEOUT)?;
        let start = self.from.max(low);
        let mut out = Vec::new();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, self.partition, Offset::Offset(start))?;
        consumer.assign(&tpl)?;
        // The high watermark is a lower bound of the end (tansu reports one below the true end):
        // read on until nothing more comes for a moment.
        let deadline = Instant::now() + SCAN_TIMEOUT;
        let mut next = start;
        let mut last = Instant::now();
        loop {
            if Instant::now() > deadline {
                return Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::RequestTimedOut,
                ));
            }
            match consumer.poll(Duration::from_millis(200)) {
                None if next >= high && last.elapsed() >= SCAN_IDLE => break,
                None => {}
                Some(Err(e)) => return Err(e),
                Some(Ok(m)) => {
                    // A broker may hand out messages before the offset sought (tansu does).
                    if m.partition() != self.partition || m.offset() < next {
                        continue;
                    }
                    next = m.offset() + 1;
                    last = Instant::now();
                    if let Some(letter) = Stored::of(&m) {
                        out.push(letter);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A shared handle, so the partition tasks of a process use one producer.
impl<Q: DeadLetterQueue> DeadLetterQueue for Arc<Q> {
    fn send(
        &self,
        partition: i32,
        letter: &Letter,
    ) -> impl Future<Output = Result<DlqPosition, RouterError>> + Send {
        (**self).send(partition, letter)
    }

    fn sent_since(
        &self,
        partition: i32,
        after: Option<DlqPosition>,
    ) -> impl Future<Output = Result<BTreeMap<i64, DlqPosition>, RouterError>> + Send {
        (**self).sent_since(partition, after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip() {
        for r in [Reason::Decode, Reason::Framing, Reason::Refused] {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
        assert_eq!(Reason::parse("other"), None);
        assert_eq!(dlq_topic("cascade.a"), "cascade.a.dlq");
    }
}
