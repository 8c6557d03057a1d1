//! Which LSN is safe to confirm to PostgreSQL. Pure.
//!
//! Transactions are tracked in commit order. Each counts the messages handed to Kafka and not yet
//! acknowledged. The safe position is the end LSN of the longest prefix of committed transactions whose
//! messages are all acknowledged; when nothing at all is outstanding, the server's last reported position
//! is safe too (everything before it has been received and acknowledged). Confirming never moves back.

use std::collections::VecDeque;

use shared::Lsn;

/// Handle of a tracked transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TxnId(u64);

#[derive(Debug)]
struct Txn {
    id: TxnId,
    outstanding: u64,
    /// Set when the transaction's commit was seen.
    end: Option<Lsn>,
}

/// Tracks delivery of transactions and yields the position safe to confirm.
#[derive(Debug, Default)]
pub struct Progress {
    txns: VecDeque<Txn>,
    next_id: u64,
    safe: Lsn,
    in_flight: u64,
}

impl Progress {
    /// Starts tracking from `confirmed`, the slot's confirmed position.
    pub fn new(confirmed: Lsn) -> Self {
        Progress {
            safe: confirmed,
            ..Default::default()
        }
    }

    /// A transaction began.
    pub fn begin(&mut self) -> TxnId {
        let id = TxnId(self.next_id);
        self.next_id += 1;
        self.txns.push_back(Txn {
            id,
            outstanding: 0,
            end: None,
        });
        id
    }

    /// A message of `txn` was handed to Kafka.
    pub fn sent(&mut self, txn: TxnId) {
        if let Some(t) = self.find(txn) {
            t.outstanding += 1;
            self.in_flight += 1;
        }
    }

    /// Kafka acknowledged a message of `txn`.
    pub fn acked(&mut self, txn: TxnId) {
        if let Some(t) = self.find(txn) {
            t.outstanding = t.outstanding.saturating_sub(1);
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        self.advance();
    }

    /// `txn` committed; `end` is the LSN just past its commit record.
    pub fn commit(&mut self, txn: TxnId, end: Lsn) {
        if let Some(t) = self.find(txn) {
            t.end = Some(end);
        }
        self.advance();
    }

    /// The server reported that everything before `position` has been sent to us.
    pub fn server_position(&mut self, position: Lsn) {
        if self.txns.is_empty() && position > self.safe {
            self.safe = position;
        }
    }

    /// The position safe to confirm as flushed.
    pub fn safe(&self) -> Lsn {
        self.safe
    }

    /// Messages handed to Kafka and not yet acknowledged.
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// Transactions seen but not yet fully acknowledged.
    pub fn pending_transactions(&self) -> usize {
        self.txns.len()
    }

    fn find(&mut self, id: TxnId) -> Option<&mut Txn> {
        // Acks come mostly for the oldest transactions; ids are increasing, so a binary search works.
        let idx = self.txns.binary_search_by_key(&id.0, |t| t.id.0).ok()?;
        self.txns.get_mut(idx)
    }

    fn advance(&mut self) {
        while let Some(front) = self.txns.front() {
            match front.end {
                Some(end) if front.outstanding == 0 => {
                    if end > self.safe {
                        self.safe = end;
                    }
                    self.txns.pop_front();
                }
                _ => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn confirms_only_fully_acknowledged_prefix() {
        let mut p = Progress::new(Lsn(10));
        let a = p.begin();
        p.sent(a);
        p.sent(a);
        p.commit(a, Lsn(100));
        let b = p.begin();
        p.sent(b);
        p.commit(b, Lsn(200));
        assert_eq!(p.safe(), Lsn(10));
        p.acked(b); // b done, but a is not
        assert_eq!(p.safe(), Lsn(10));
        p.acked(a);
        assert_eq!(p.safe(), Lsn(10));
        p.acked(a);
        assert_eq!(p.safe(), Lsn(200));
        assert_eq!(p.in_flight(), 0);
    }

    #[test]
    fn open_transaction_blocks_confirmation() {
        let mut p = Progress::new(Lsn(0));
        let a = p.begin();
        p.sent(a);
        p.acked(a);
        assert_eq!(p.safe(), Lsn(0), "not committed yet");
        p.server_position(Lsn(500));
        assert_eq!(
            p.safe(),
            Lsn(0),
            "server position ignored while a transaction is open"
        );
        p.commit(a, Lsn(300));
        assert_eq!(p.safe(), Lsn(300));
        p.server_position(Lsn(500));
        assert_eq!(p.safe(), Lsn(500));
    }

    #[test]
    fn empty_transactions_confirm_at_commit() {
        let mut p = Progress::new(Lsn(0));
        let a = p.begin();
        p.commit(a, Lsn(42));
        assert_eq!(p.safe(), Lsn(42));
    }

    #[test]
    fn never_moves_back() {
        let mut p = Progress::new(Lsn(1000));
        let a = p.begin();
        p.commit(a, Lsn(900)); // replayed after a restart
        assert_eq!(p.safe(), Lsn(1000));
        p.server_position(Lsn(10));
        assert_eq!(p.safe(), Lsn(1000));
    }

    proptest! {
        /// Whatever the ack order, the safe position is always the end of a transaction whose messages,
        /// and all earlier transactions' messages, were acknowledged.
        #[test]
        fn safe_position_is_always_a_fully_acked_prefix(
            sizes in proptest::collection::vec(0u8..5, 1..20),
            order in proptest::collection::vec(any::<proptest::sample::Index>(), 0..100),
        ) {
            let mut p = Progress::new(Lsn(0));
            let mut pending: Vec<(usize, TxnId)> = Vec::new();
            let mut remaining: Vec<u8> = sizes.clone();
            for (i, &n) in sizes.iter().enumerate() {
                let t = p.begin();
                for _ in 0..n { p.sent(t); pending.push((i, t)); }
                p.commit(t, Lsn((i as u64 + 1) * 10));
            }
            for idx in order {
                if pending.is_empty() { break; }
                let (i, t) = pending.remove(idx.index(pending.len()));
                remaining[i] -= 1;
                p.acked(t);
                let done_prefix = remaining.iter().take_while(|&&r| r == 0).count();
                prop_assert_eq!(p.safe(), Lsn(done_prefix as u64 * 10));
            }
        }
    }
}
