//! The HTTP side of every binary: `/healthz` (the process runs), `/readyz` (it does its job right now)
//! and `/metrics` (Prometheus text format).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

/// Whether the process is ready; cheap to clone and flip from any task.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct AppState {
    ready: Readiness,
    metrics: PrometheusHandle,
}

/// Errors of the HTTP endpoint.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Binds `addr` and serves the endpoints until `shutdown` is cancelled. Binding happens before this
/// returns, so a taken port is reported at start-up.
pub async fn serve(
    addr: SocketAddr,
    ready: Readiness,
    metrics: PrometheusHandle,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, HealthError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| HealthError::Bind { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(AppState { ready, metrics });
    tracing::info!(addr = %local, "http endpoint listening (/healthz, /readyz, /metrics)");
    Ok(tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = result {
            tracing::error!(%error, "http endpoint failed");
        }
    }))
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.ready.get() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn render_metrics(State(state): State<AppState>) -> String {
    state.metrics.render()
}
