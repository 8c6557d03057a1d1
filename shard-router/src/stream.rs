//! The input of a partition task: one partition's messages in offset order, and where to record how
//! far the replica got. [`KafkaPartition`] is the real one (a partition queue split off the group's
//! consumer); tests read an in-memory log through the same trait.
//!
//! Contract the partition loop relies on: messages come in offset order, each once per assignment;
//! an offset passed to [`PartitionStream::store_offset`] is the next one to read and is committed to
//! the group later (after the replica transaction that covers it committed); a paused partition
//! fetches nothing until resumed. A task is handed its partition paused; it finds where to start
//! ([`PartitionStream::bounds`], [`crate::resume`]), seeks there and resumes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::consume::{partition_count, PartitionQueue, RouterConsumer};
use crate::resume::Bounds;

/// How long a request to the broker (offsets, seek) may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One message of a partition, borrowed from the stream until the loop has decoded it.
pub trait Inbound {
    fn offset(&self) -> i64;
    /// The value; `None` for a message without one.
    fn payload(&self) -> Option<&[u8]>;
    /// The value of the first header named `key`.
    fn header(&self, key: &str) -> Option<&[u8]>;
}

/// One partition's messages.
pub trait PartitionStream: Send + 'static {
    type Message<'a>: Inbound
    where
        Self: 'a;

    /// The next message, or a consume error: the loop stops the partition at an offset that is out of
    /// range (see [`crate::resume`]), and logs the others and reads on.
    fn recv(&mut self) -> impl Future<Output = Result<Self::Message<'_>, KafkaError>> + Send;

    /// Records `next` (the offset after the last message whose transaction the replica holds) as the
    /// partition's position in the consumer group.
    fn store_offset(&self, next: i64) -> Result<(), KafkaError>;

    /// Stops fetching (a partition stopped at an event it cannot apply).
    fn pause(&self);

    /// Fetches again (a partition paused by an earlier stop that came back to this member).
    fn resume(&self);

    /// How many partitions the topic has, if known (`None`: ask again later).
    fn partition_count(&self) -> impl Future<Output = Option<usize>> + Send;

    /// The partition's first available offset and the offset its next message will get.
    fn bounds(&self) -> impl Future<Output = Result<Bounds, KafkaError>> + Send;

    /// The consumer group's committed offset (the next one to read), if it has one.
    fn committed(&self) -> impl Future<Output = Result<Option<i64>, KafkaError>> + Send;

    /// Makes `offset` the next message to read; messages fetched before are discarded.
    fn seek(&self, offset: i64) -> impl Future<Output = Result<(), KafkaError>> + Send;
}

/// A partition queue split off the group's consumer.
pub struct KafkaPartition {
    queue: PartitionQueue,
    consumer: Arc<RouterConsumer>,
    topic: String,
    partition: i32,
}

impl KafkaPartition {
    pub fn new(
        queue: PartitionQueue,
        consumer: Arc<RouterConsumer>,
        topic: String,
        partition: i32,
    ) -> Self {
        KafkaPartition {
            queue,
            consumer,
            topic,
            partition,
        }
    }

    /// This partition, for pause/resume.
    fn tpl(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, self.partition);
        tpl
    }
}

impl Inbound for BorrowedMessage<'_> {
    fn offset(&self) -> i64 {
        Message::offset(self)
    }

    fn payload(&self) -> Option<&[u8]> {
        Message::payload(self)
    }

    fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers()?
            .iter()
            .find(|h| h.key == key)
            .and_then(|h| h.value)
    }
}

impl PartitionStream for KafkaPartition {
    type Message<'a> = BorrowedMessage<'a>;

    fn recv(&mut self) -> impl Future<Output = Result<BorrowedMessage<'_>, KafkaError>> + Send {
        self.queue.recv()
    }

    fn store_offset(&self, next: i64) -> Result<(), KafkaError> {
        // (`store_offset` would store its argument plus one, as librdkafka's rd_kafka_offset_store
        // does; a partition list stores offsets as given.)
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, self.partition, Offset::Offset(next))
            .and_then(|()| self.consumer.store_offsets(&tpl))
    }

    fn pause(&self) {
        let _ = self.consumer.pause(&self.tpl());
    }

    fn resume(&self) {
        let _ = self.consumer.resume(&self.tpl());
    }

    async fn partition_count(&self) -> Option<usize> {
        partition_count(&self.consumer, &self.topic)
            .await
            .ok()
            .filter(|n| *n > 0)
    }

    async fn bounds(&self) -> Result<Bounds, KafkaError> {
        let (topic, partition) = (self.topic.clone(), self.partition);
        self.blocking(move |c| {
            c.fetch_watermarks(&topic, partition, REQUEST_TIMEOUT)
                .map(|(low, high)| Bounds { low, high })
        })
        .await
    }

    async fn committed(&self) -> Result<Option<i64>, KafkaError> {
        let tpl = self.tpl();
        let (topic, partition) = (self.topic.clone(), self.partition);
        self.blocking(move |c| {
            let committed = c.committed_offsets(tpl, REQUEST_TIMEOUT)?;
            Ok(committed
                .find_partition(&topic, partition)
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                }))
        })
        .await
    }

    async fn seek(&self, offset: i64) -> Result<(), KafkaError> {
        let (topic, partition) = (self.topic.clone(), self.partition);
        self.blocking(move |c| c.seek(&topic, partition, Offset::Offset(offset), REQUEST_TIMEOUT))
            .await
    }
}

impl KafkaPartition {
    /// Runs a blocking consumer call off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&RouterConsumer) -> Result<T, KafkaError> + Send + 'static,
    ) -> Result<T, KafkaError> {
        let consumer = Arc::clone(&self.consumer);
        tokio::task::spawn_blocking(move || call(&consumer))
            .await
            .unwrap_or(Err(KafkaError::Canceled))
    }
}
