//! Traces of the partition loop: a `process <topic>` span per source transaction, child of the
//! producer's `send` span (the trace-context headers of its `B`, read by the global propagator:
//! `traceparent`, `tracestate`, `baggage`), kept open until the transaction is committed to
//! the replica; and an `apply batch` span per replica transaction, child of the first source
//! transaction it applies and linked to the others. Nothing is built unless traces are exported.

use shared::propagation::TraceHeaders;
use shared::Action;

use crate::stream::Inbound;

/// The spans of the source transactions a partition task is processing, each with its producer's
/// trace-context headers.
#[derive(Default)]
pub struct FrameSpans {
    /// The open frame's.
    open: Option<(tracing::Span, TraceHeaders)>,
    /// Those of complete frames not yet committed.
    done: Vec<(tracing::Span, TraceHeaders)>,
}

impl FrameSpans {
    /// Opens a span at each begin and moves it to the complete ones at its commit.
    pub fn frame(
        &mut self,
        action: Action,
        topic: &str,
        group: &str,
        partition: i32,
        offset: i64,
        trace: TraceHeaders,
    ) {
        if !shared::telemetry::exporting_traces() {
            return;
        }
        match action {
            Action::Begin => {
                let span = tracing::info_span!(
                    "process",
                    otel.name = format!("process {topic}"),
                    otel.kind = "consumer",
                    messaging.system = "kafka",
                    messaging.operation.type = "process",
                    messaging.operation.name = "process",
                    messaging.destination.name = topic,
                    messaging.destination.partition.id = %partition,
                    messaging.consumer.group.name = group,
                    messaging.kafka.offset = offset,
                );
                shared::propagation::set_parent(&span, &trace);
                // A frame cut by this begin ends here (it is re-sent whole later).
                self.open = Some((span, trace));
            }
            Action::Commit => {
                if let Some(open) = self.open.take() {
                    self.done.push(open);
                }
            }
            _ => {}
        }
    }

    /// The complete frames are committed to the replica: their spans end.
    pub fn committed(&mut self) {
        self.done.clear();
    }

    /// The database span of one replica transaction of `rows` rows on a `db_system` replica.
    pub fn db_span(
        &self,
        db_system: &'static str,
        target: &DbTarget,
        rows: usize,
    ) -> tracing::Span {
        if !shared::telemetry::exporting_traces() {
            return tracing::Span::none();
        }
        let mut frames = self.done.iter().chain(self.open.iter());
        let span = match frames.next() {
            Some((parent, _)) => tracing::info_span!(
                parent: parent,
                "apply",
                otel.name = "apply batch",
                otel.kind = "client",
                db.system.name = db_system,
                db.operation.name = "BATCH apply",
                db.operation.batch.size = rows,
                db.namespace = target.namespace.as_str(),
                server.address = target.address.as_str(),
                cascade.rows = rows,
            ),
            None => tracing::info_span!(
                "apply",
                otel.name = "apply batch",
                otel.kind = "client",
                db.system.name = db_system,
                db.operation.name = "BATCH apply",
                db.operation.batch.size = rows,
                db.namespace = target.namespace.as_str(),
                server.address = target.address.as_str(),
                cascade.rows = rows,
            ),
        };
        for (_, trace) in frames {
            shared::propagation::add_link(&span, trace);
        }
        span
    }
}

/// Where the replica is, for the database spans' `db.namespace` and `server.address` (never its
/// credentials).
#[derive(Clone, Debug, Default)]
pub struct DbTarget {
    /// The database (PostgreSQL: database; MySQL: schema; SQLite: the file).
    pub namespace: String,
    pub address: String,
}

/// The trace-context headers of a message (every header the global propagator reads), when traces
/// are exported.
pub fn headers(msg: &impl Inbound) -> TraceHeaders {
    static FIELDS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    if !shared::telemetry::exporting_traces() {
        return TraceHeaders::default();
    }
    // The propagator is installed with the tracing subscriber, before any partition runs.
    let fields = FIELDS.get_or_init(shared::propagation::fields);
    TraceHeaders::read(fields, |k| msg.header(k))
}
