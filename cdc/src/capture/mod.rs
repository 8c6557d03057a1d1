//! Capture: where changes come from. The seam is [`ChangeSource`], a stream of typed [`Change`]s with
//! their WAL positions that takes back the position safe to confirm. Today's one source is
//! [`wal2json::Wal2JsonSource`]: the wal2json decoder over a [`stream::ReplicationStream`], whose one
//! implementation is the protocol client in [`client`], on the slot that [`slot`] checks and creates. A
//! pgoutput decoder or a snapshot reader plugs in beside it.

pub mod client;
pub mod slot;
pub mod stream;
pub mod tls;
pub mod wal2json;

use std::future::Future;

use shared::{Change, Lsn};

use crate::error::CdcError;
pub use stream::StandbyStatus;

/// One item of a change source.
#[derive(Debug, Clone, PartialEq)]
pub enum Captured {
    /// A change, at the WAL position it was read from (for a commit: the end of the commit record).
    Change { change: Change, at: Lsn },
    /// The source has sent everything before `wal_end`; outside a transaction that position holds
    /// nothing more to publish. `reply_requested`: report progress now.
    Keepalive { wal_end: Lsn, reply_requested: bool },
}

/// A source of changes in commit order.
///
/// Guarantees the pump relies on: changes come in WAL order, each transaction framed by its `Begin` and
/// `Commit`; after a restart the source resumes at the last position confirmed through
/// [`ChangeSource::confirm`], so changes after it may be seen again, identical. `next` is cancel-safe (a
/// `select!` may drop it without losing a change).
pub trait ChangeSource {
    /// The next item, or `None` when the source ended.
    fn next(&mut self) -> impl Future<Output = Result<Option<Captured>, CdcError>> + Send;

    /// Reports progress: the source may discard everything up to `status.flushed`.
    fn confirm(
        &mut self,
        status: StandbyStatus,
    ) -> impl Future<Output = Result<(), CdcError>> + Send;
}
