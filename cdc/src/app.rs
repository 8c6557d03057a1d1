//! The `cdc` process: telemetry, the health server, and the [`supervisor`](crate::supervisor) until
//! shutdown.

use shared::health::Readiness;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::CdcError;
use crate::metrics as m;
use crate::supervisor::supervise;
use shared::shards::ShardMap;

/// Runs `cdc` until SIGTERM/SIGINT (returns `Ok`) or a definite error.
pub async fn run(config: Config, shards: ShardMap) -> Result<(), CdcError> {
    let handle = shared::telemetry::init_metrics(m::BUCKETS)?;
    m::describe();
    let shutdown = CancellationToken::new();
    shared::shutdown::cancel_on_signal(shutdown.clone());
    let ready = Readiness::default();
    let http_stop = CancellationToken::new();
    let http =
        shared::health::serve(config.http_addr, ready.clone(), handle, http_stop.clone()).await?;
    tracing::info!(
        source = %config.source_url,
        slot = %config.slot,
        brokers = %config.kafka_brokers,
        topic = %config.topic(Config::DEFAULT_SHARD),
        "cdc starting"
    );
    let result = supervise(&config, &shards, &shutdown, &ready).await;
    ready.set(false);
    http_stop.cancel();
    let _ = http.await;
    result
}

/// The error and its causes on one line.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut s = error.to_string();
    let mut cur = error.source();
    while let Some(e) = cur {
        s.push_str(": ");
        s.push_str(&e.to_string());
        cur = e.source();
    }
    s
}
