//! Traces of captured transactions: one `capture transaction` span per source transaction and, per
//! shard it reaches, a `send <topic>` producer span whose `traceparent` every message of that
//! transaction to that topic carries (OpenTelemetry messaging conventions). Nothing is built unless
//! spans are exported.

use shared::TxnBoundary;

/// The spans of the transaction being published.
pub struct TxnTrace {
    span: tracing::Span,
    /// Per shard, the send span and its `traceparent`.
    sends: Vec<Option<(tracing::Span, Option<String>)>>,
}

impl TxnTrace {
    /// Opens the transaction's span (a no-op span when traces are not exported).
    pub fn begin(txn: &TxnBoundary, shards: usize) -> Self {
        let span = if shared::telemetry::exporting_traces() {
            tracing::info_span!(
                "capture transaction",
                otel.kind = "internal",
                db.system.name = "postgresql",
                cascade.xid = txn.xid,
                cascade.commit_lsn = %txn.lsn,
            )
        } else {
            tracing::Span::none()
        };
        TxnTrace {
            span,
            sends: vec![None; shards],
        }
    }

    /// No transaction open: nothing is traced.
    pub fn none() -> Self {
        TxnTrace {
            span: tracing::Span::none(),
            sends: Vec::new(),
        }
    }

    /// Whether spans are built for this transaction.
    pub fn is_active(&self) -> bool {
        !self.span.is_none()
    }

    /// The `traceparent` of this transaction's messages to `shard`, opening its send span first.
    pub fn traceparent(&mut self, shard: usize, topic: &str) -> Option<&str> {
        if self.span.is_none() {
            return None;
        }
        let slot = self.sends.get_mut(shard)?;
        if slot.is_none() {
            let span = tracing::info_span!(
                parent: &self.span,
                "send",
                otel.name = format!("send {topic}"),
                otel.kind = "producer",
                messaging.system = "kafka",
                messaging.operation.type = "send",
                messaging.operation.name = "send",
                messaging.destination.name = topic,
            );
            let trace = shared::propagation::traceparent(&span);
            *slot = Some((span, trace));
        }
        slot.as_ref().and_then(|(_, t)| t.as_deref())
    }
}
