//! Trace context in Kafka message headers, through OpenTelemetry's global `TextMapPropagator`, so
//! one trace follows a change from cdc's publish to every router's apply, with its `tracestate` and
//! baggage.
//!
//! The propagator is chosen by the standard `OTEL_PROPAGATORS` variable ([`install_propagator`],
//! called by [`crate::telemetry::init_tracing`]): a comma-separated list of `tracecontext` (W3C
//! `traceparent` and `tracestate`), `baggage` (W3C `baggage`) and `none`; default
//! `tracecontext,baggage`. cdc injects every field the propagator writes as a Kafka header
//! ([`inject`]); a router extracts from every header the propagator reads ([`TraceHeaders`]).

use opentelemetry::propagation::{
    Extractor, Injector, TextMapCompositePropagator, TextMapPropagator,
};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C trace context header (one of the fields of the `tracecontext` propagator).
pub const TRACEPARENT: &str = "traceparent";

/// The variable naming the propagators.
pub const PROPAGATORS_VAR: &str = "OTEL_PROPAGATORS";

/// The propagators `OTEL_PROPAGATORS` asks for (`value`: the variable's value, `None` when unset),
/// and the names it holds that are not supported (ignored, for a warning).
pub fn propagator_from(value: Option<&str>) -> (TextMapCompositePropagator, Vec<String>) {
    let value = value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or("tracecontext,baggage");
    let mut chosen: Vec<Box<dyn TextMapPropagator + Send + Sync>> = Vec::new();
    let mut unknown = Vec::new();
    let mut none = false;
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match name {
            "tracecontext" => chosen.push(Box::new(TraceContextPropagator::new())),
            "baggage" => chosen.push(Box::new(BaggagePropagator::new())),
            "none" => none = true,
            other => unknown.push(other.to_owned()),
        }
    }
    if none {
        chosen.clear();
    }
    (TextMapCompositePropagator::new(chosen), unknown)
}

/// Installs the global propagator from `OTEL_PROPAGATORS`; returns the names it ignored.
pub fn install_propagator() -> Vec<String> {
    let value = std::env::var(PROPAGATORS_VAR).ok();
    let (propagator, unknown) = propagator_from(value.as_deref());
    opentelemetry::global::set_text_map_propagator(propagator);
    unknown
}

/// The header names the global propagator reads and writes.
pub fn fields() -> Vec<String> {
    opentelemetry::global::get_text_map_propagator(|p| p.fields().map(str::to_owned).collect())
}

/// Headers to write: (name, value) pairs.
struct Headers<'a>(&'a mut Vec<(String, String)>);

impl Injector for Headers<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.retain(|(k, _)| k != key);
        self.0.push((key.to_owned(), value));
    }
}

/// The trace-context headers of a span, as the global propagator writes them (empty when traces are
/// not exported: the span has no trace id and there is nothing to propagate).
pub fn inject(span: &tracing::Span) -> Vec<(String, String)> {
    let cx = span.context();
    let mut headers = Vec::new();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut Headers(&mut headers))
    });
    headers
}

/// The trace-context headers of a received message: those of its headers the global propagator
/// reads, as text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceHeaders(pub Vec<(String, String)>);

impl TraceHeaders {
    /// Reads the propagator's fields from a message's headers (`header`: the value of the first
    /// header with that name). Values that are not UTF-8 are left out.
    pub fn read<'a>(fields: &[String], header: impl Fn(&str) -> Option<&'a [u8]>) -> Self {
        TraceHeaders(
            fields
                .iter()
                .filter_map(|f| {
                    let v = std::str::from_utf8(header(f)?).ok()?;
                    Some((f.clone(), v.to_owned()))
                })
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The remote context these headers carry (an empty context when they carry none).
    pub fn context(&self) -> Context {
        opentelemetry::global::get_text_map_propagator(|p| p.extract(self))
    }
}

impl Extractor for TraceHeaders {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// Makes the context the headers carry the parent of `span`. Invalid or missing values leave the
/// span a root.
pub fn set_parent(span: &tracing::Span, headers: &TraceHeaders) {
    if headers.is_empty() {
        return;
    }
    let _ = span.set_parent(headers.context());
}

/// Adds the span context the headers carry as a link of `span` (a batch that serves several
/// traces).
pub fn add_link(span: &tracing::Span, headers: &TraceHeaders) {
    use opentelemetry::trace::TraceContextExt;
    if headers.is_empty() {
        return;
    }
    let cx = headers.context();
    let remote = cx.span().span_context().clone();
    if remote.is_valid() {
        span.add_link(remote);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt;

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn extract(p: &TextMapCompositePropagator, headers: &TraceHeaders) -> Context {
        p.extract(headers)
    }

    #[test]
    fn default_propagators_carry_tracestate_and_baggage() {
        let (p, unknown) = propagator_from(None);
        assert!(unknown.is_empty());
        let mut fields: Vec<&str> = p.fields().collect();
        fields.sort_unstable();
        assert_eq!(fields, ["baggage", "traceparent", "tracestate"]);
        let headers = TraceHeaders(vec![
            ("traceparent".into(), PARENT.into()),
            ("tracestate".into(), "vendor=abc".into()),
            ("baggage".into(), "tenant=7".into()),
        ]);
        let cx = extract(&p, &headers);
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid());
        assert_eq!(sc.trace_state().header(), "vendor=abc");
        use opentelemetry::baggage::BaggageExt;
        assert_eq!(
            cx.baggage().get("tenant").map(|v| v.to_string()),
            Some("7".to_owned())
        );
        // And back out: every field the propagator writes.
        let mut out = Vec::new();
        p.inject_context(&cx, &mut Headers(&mut out));
        let names: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
        assert!(names.contains(&"traceparent") && names.contains(&"tracestate"));
        assert!(names.contains(&"baggage"), "{out:?}");
    }

    #[test]
    fn none_and_unknown_names() {
        let (p, unknown) = propagator_from(Some("tracecontext, b3 ,none"));
        assert_eq!(unknown, ["b3"]);
        assert_eq!(p.fields().count(), 0);
        let (p, _) = propagator_from(Some("baggage"));
        let headers = TraceHeaders(vec![("traceparent".into(), PARENT.into())]);
        assert!(!extract(&p, &headers).span().span_context().is_valid());
    }

    #[test]
    fn headers_are_read_by_the_propagators_fields() {
        let fields = vec!["traceparent".to_owned(), "tracestate".to_owned()];
        let stored: Vec<(&str, &[u8])> = vec![
            ("cascade-format", b"1"),
            ("traceparent", PARENT.as_bytes()),
            ("tracestate", b"\xff"),
        ];
        let h = TraceHeaders::read(&fields, |k| {
            stored.iter().find(|(n, _)| *n == k).map(|(_, v)| *v)
        });
        assert_eq!(h.0, vec![("traceparent".to_owned(), PARENT.to_owned())]);
    }
}
