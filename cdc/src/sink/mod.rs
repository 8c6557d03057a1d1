//! Sinks: where framed messages go. The seam is [`Sink`]; [`kafka::KafkaSink`] is the one
//! implementation (an idempotent producer with `acks=all`).

pub mod kafka;
pub mod origin_log;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use shared::Action;

use crate::error::CdcError;
use crate::frame::Outgoing;
use crate::progress::TxnId;

/// Which transaction a message belongs to, handed back with its acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub txn: TxnId,
    pub xid: u64,
}

/// The answer for one message.
#[derive(Debug)]
pub struct Ack {
    pub ticket: Ticket,
    pub action: Action,
    /// The shard whose topic took the message.
    pub shard: usize,
    pub table: Option<Arc<str>>,
    pub bytes: usize,
    /// From hand-over to acknowledgement.
    pub latency: Duration,
    /// `Err`: the message is not durably stored; nothing after it may be confirmed.
    pub result: Result<(), CdcError>,
}

/// Why a message was not taken.
#[derive(Debug)]
pub enum SendError {
    /// The sink's queue is full: wait for an acknowledgement, then hand the message over again.
    Full,
    /// The message can never be taken, or the sink is broken.
    Failed(CdcError),
}

/// A destination for framed messages.
///
/// Guarantees the pump relies on: messages handed over for one partition are stored in that order,
/// without duplicates from the sink's own retries; every accepted message gets exactly one [`Ack`]; an
/// `Ok` acknowledgement means the message is durable. Only then may the position of its transaction be
/// confirmed to the source.
pub trait Sink {
    /// The partition count of each shard's topic, in shard order.
    fn partitions(&self) -> &[i32];

    /// The topic of a shard.
    fn topic(&self, shard: usize) -> &str;

    /// Hands one message over, with the trace-context headers it carries.
    fn send(
        &mut self,
        message: &Outgoing,
        ticket: Ticket,
        trace: &[(String, String)],
    ) -> Result<(), SendError>;

    /// The next acknowledgement; `None` when nothing is in flight.
    fn next_ack(&mut self) -> impl Future<Output = Option<Ack>> + Send;

    /// Messages handed over and not yet acknowledged.
    fn in_flight(&self) -> usize;
}
