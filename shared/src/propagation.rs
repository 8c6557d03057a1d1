//! The W3C trace context (`traceparent`) in Kafka message headers, so one trace follows a change
//! from cdc's publish to every router's apply.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The Kafka header carrying the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

struct Map<'a>(&'a mut HashMap<String, String>);

impl Injector for Map<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct One<'a>(Option<&'a str>);

impl Extractor for One<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if key == TRACEPARENT {
            self.0
        } else {
            None
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

/// The `traceparent` of a span, when tracing is exported (otherwise the span has no trace id and
/// there is nothing to propagate).
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let mut map = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut Map(&mut map));
    map.remove(TRACEPARENT)
}

/// Makes the trace context in a `traceparent` header value the parent of `span`. Invalid or missing
/// values leave the span a root.
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    if traceparent.is_none() {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&One(traceparent));
    let _ = span.set_parent(cx);
}

/// Adds the trace context in a `traceparent` value as a link of `span` (a batch that serves several
/// traces).
pub fn add_link(span: &tracing::Span, traceparent: Option<&str>) {
    use opentelemetry::trace::TraceContextExt;
    if traceparent.is_none() {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&One(traceparent));
    let remote = cx.span().span_context().clone();
    if remote.is_valid() {
        span.add_link(remote);
    }
}
