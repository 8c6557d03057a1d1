use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let config = shard_router::config::Config::parse();
    shared::telemetry::init_logging(config.log_format);
    if let Err(error) = config.validate() {
        eprintln!("shard-router: invalid configuration: {error}");
        return ExitCode::from(2);
    }
    eprintln!(
        "shard-router: configuration is valid (topic {}, group {}, replica {}); this build does not apply changes yet",
        config.topic(),
        config.group_id(),
        config.replica_url
    );
    ExitCode::from(3)
}
