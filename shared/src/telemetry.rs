//! Logging and metrics set-up shared by the binaries.

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether spans are exported: callers skip building per-transaction spans when they are not.
pub fn exporting_traces() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
}

/// Keeps the trace exporter alive; dropping it flushes the spans not yet exported.
#[must_use = "dropping the guard stops and flushes the trace exporter"]
pub struct TracingGuard {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global tracing subscriber: logs to stderr (`RUST_LOG` filters, default `info`) and,
/// when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, spans exported
/// over OTLP, gRPC or HTTP/protobuf as `OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL` says. The standard `OTEL_*` variables apply (`OTEL_SERVICE_NAME`, default `service`;
/// `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_TRACES_SAMPLER`, …), and `OTEL_PROPAGATORS` chooses the
/// propagator of the Kafka headers ([`crate::propagation`]). Must be called inside a Tokio runtime (the
/// gRPC exporter needs one).
pub fn init_tracing(format: LogFormat, service: &str) -> TracingGuard {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(true);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    let (otel, provider, problem) = match otlp_provider(service) {
        Ok(Some(provider)) => {
            use opentelemetry::trace::TracerProvider;
            let tracer = provider.tracer(service.to_owned());
            // Only Cascade's own spans: never the exporter's (tonic, h2) or the clients' internals.
            let ours = tracing_subscriber::filter::Targets::new()
                .with_target("cdc", tracing::Level::INFO)
                .with_target("shard_router", tracing::Level::INFO);
            let layer = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(ours);
            (Some(layer), Some(provider), None)
        }
        Ok(None) => (None, None, None),
        Err(problem) => (None, None, Some(problem)),
    };
    EXPORTING.store(provider.is_some(), std::sync::atomic::Ordering::Relaxed);
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .try_init();
    let unknown = crate::propagation::install_propagator();
    if !unknown.is_empty() {
        tracing::warn!(
            ignored = ?unknown,
            "{} names propagators other than tracecontext, baggage and none; ignoring them",
            crate::propagation::PROPAGATORS_VAR
        );
    }
    if let Some(problem) = problem {
        tracing::warn!(error = %problem, "cannot export traces; continuing without them");
    } else if provider.is_some() {
        tracing::info!("exporting traces over OTLP");
    }
    TracingGuard { provider }
}

/// The OTLP transports Cascade speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
}

/// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`: `grpc` (the default here,
/// port 4317) or `http/protobuf` (port 4318, `/v1/traces` appended to `OTEL_EXPORTER_OTLP_ENDPOINT`).
/// `http/json` and anything else is refused by name rather than sent where nobody listens.
fn otlp_protocol() -> Result<OtlpProtocol, String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let (name, value) = match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
        Some(v) => ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", v),
        None => match var("OTEL_EXPORTER_OTLP_PROTOCOL") {
            Some(v) => ("OTEL_EXPORTER_OTLP_PROTOCOL", v),
            None => return Ok(OtlpProtocol::Grpc),
        },
    };
    match value.trim() {
        "grpc" => Ok(OtlpProtocol::Grpc),
        "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
        other => Err(format!(
            "{name}={other:?} is not supported: use grpc or http/protobuf"
        )),
    }
}

fn otlp_provider(
    service: &str,
) -> Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>, String> {
    let configured = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()));
    if !configured {
        return Ok(None);
    }
    let exporter = match otlp_protocol()? {
        OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build(),
        OtlpProtocol::HttpProtobuf => {
            use opentelemetry_otlp::WithExportConfig;
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .build()
        }
    }
    .map_err(|e| e.to_string())?;
    let name = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service.to_owned());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(name)
        .build();
    Ok(Some(
        opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build(),
    ))
}

/// Installs the global Prometheus recorder with explicit histogram buckets per metric-name suffix and
/// returns the handle `/metrics` renders.
pub fn init_metrics(buckets: &[(&str, &[f64])]) -> Result<PrometheusHandle, BuildError> {
    let mut builder = PrometheusBuilder::new();
    for (suffix, b) in buckets {
        builder = builder.set_buckets_for_metric(Matcher::Suffix((*suffix).to_owned()), b)?;
    }
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)?;
    // Histograms are drained into their buckets by upkeep; render() does it too, but a process that is
    // never scraped must not grow, so run it on a timer as well.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}
