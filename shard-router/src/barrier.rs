//! Barriers: every partition of the topic meets at one point of the source's history (an LSN), and
//! one action runs there exactly once. A truncate is one: the table is emptied after every partition
//! applied the rows before it and before any applies a row after it. (Schema changes will be another.)
//!
//! Protocol, per partition: apply everything before the barrier and record the arrival in the same
//! replica transaction ([`crate::replica::Replica::apply`]'s `arrival`); then [`Barrier::meet`]: wait
//! until every partition arrived, and race to claim the action ([`Replica::barrier_once`]: the claim
//! and the action commit together, so exactly one partition runs it and a crash in between leaves it
//! unclaimed). A partition that comes back after a restart finds the barrier done and moves on.

use std::future::Future;
use std::time::{Duration, Instant};

use shared::Lsn;

use crate::error::RouterError;
use crate::plan::Statement;
use crate::replica::Replica;
use crate::retry::{Retry, Stop};
use crate::stream::PartitionStream;

/// How often a partition waiting at a barrier checks whether the others arrived.
const POLL: Duration = Duration::from_millis(50);

/// A point every partition of `topic` meets: `key` names what happens there (for a truncate, the
/// table), `lsn` where in the source's history.
pub struct Barrier<'a> {
    pub topic: &'a str,
    pub key: &'a str,
    pub lsn: Lsn,
    /// How many partitions the event reached, when it says (cdc names it in each `T`); else the
    /// topic's partition count from Kafka. The event's count is the one that holds when partitions
    /// were added to the topic after cdc started: the new ones never get this barrier.
    pub partitions: Option<u32>,
}

impl Barrier<'_> {
    /// Waits (this partition's arrival being recorded) until every partition of the topic arrived or
    /// the action is done, then runs the action if no other partition did: `action` says what it is
    /// at that moment (`None`: only mark the barrier done). Returns whether this partition ran it.
    pub async fn meet<R, S, F, Fut>(
        &self,
        replica: &R,
        stream: &S,
        retry: &Retry,
        mut action: F,
    ) -> Result<bool, Stop>
    where
        R: Replica,
        S: PartitionStream,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<Statement>, RouterError>>,
    {
        let mut last_log = Instant::now();
        // The event's count, or the topic's partition count: read once, again only while unknown.
        let mut partitions: Option<usize> = self.partitions.map(|n| n as usize);
        loop {
            let (arrived, done) = retry
                .run("reading a barrier", || {
                    replica.barrier_state(self.topic, self.key, self.lsn)
                })
                .await?;
            if done {
                return Ok(false);
            }
            if partitions.is_none() {
                partitions = tokio::select! {
                    biased;
                    _ = retry.cancel.cancelled() => return Err(Stop::Cancelled),
                    n = stream.partition_count() => n,
                };
            }
            if let Some(n) = partitions.filter(|&n| arrived >= n as i64) {
                let action = retry
                    .run("preparing a barrier's action", &mut action)
                    .await?;
                let did = retry
                    .run("completing a barrier", || {
                        replica.barrier_once(self.topic, self.key, self.lsn, action.as_ref())
                    })
                    .await?;
                tracing::debug!(key = self.key, lsn = %self.lsn, partitions = n, did, "barrier passed");
                return Ok(did);
            }
            if last_log.elapsed() > Duration::from_secs(10) {
                last_log = Instant::now();
                tracing::info!(
                    partition = retry.partition,
                    key = self.key,
                    arrived,
                    partitions,
                    "waiting for every partition to reach the barrier"
                );
            }
            retry.sleep(POLL).await?;
        }
    }
}
