//! The `cdc` process: the service (metrics, health endpoint, signals) around the
//! [`supervisor`](crate::supervisor), until shutdown.

use shared::service::Service;
use shared::shards::ShardMap;

use crate::config::Config;
use crate::error::CdcError;
use crate::metrics as m;
use crate::supervisor::supervise;
use crate::transform::Transforms;

/// Runs `cdc` until SIGTERM/SIGINT (returns `Ok`) or a definite error.
pub async fn run(config: Config, shards: ShardMap, transforms: Transforms) -> Result<(), CdcError> {
    let service = Service::start(config.http_addr, m::BUCKETS, m::describe).await?;
    tracing::info!(
        source = %config.source_url,
        slot = %config.slot,
        brokers = %config.kafka_brokers,
        topic = %config.topic(Config::DEFAULT_SHARD),
        "cdc starting"
    );
    let result = supervise(
        &config,
        &shards,
        &transforms,
        &service.shutdown,
        &service.ready,
    )
    .await;
    service.stop().await;
    result
}
