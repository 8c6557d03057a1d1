//! Traces of captured transactions: one `capture transaction` span per source transaction and, per
//! shard it reaches, a `send <topic>` producer span whose trace context (the headers the global
//! propagator writes: `traceparent`, `tracestate`, `baggage`, see `shared::propagation`) every
//! message of that transaction to that topic carries (OpenTelemetry messaging conventions). Nothing is built unless
//! spans are exported.

use shared::TxnBoundary;

/// Trace-context headers: (name, value).
type TraceHeaders = Vec<(String, String)>;

/// The spans of the transaction being published.
pub struct TxnTrace {
    span: tracing::Span,
    /// Per shard, the send span and its trace-context headers.
    sends: Vec<Option<(tracing::Span, TraceHeaders)>>,
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

    /// The trace-context headers of this transaction's messages to `shard`, opening its send span
    /// first.
    pub fn headers(&mut self, shard: usize, topic: &str) -> &[(String, String)] {
        if self.span.is_none() {
            return &[];
        }
        let Some(slot) = self.sends.get_mut(shard) else {
            return &[];
        };
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
            let trace = shared::propagation::inject(&span);
            *slot = Some((span, trace));
        }
        slot.as_ref().map_or(&[], |(_, t)| t.as_slice())
    }
}
