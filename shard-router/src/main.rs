use std::process::ExitCode;

use clap::Parser;
use shared::service::Invalid;

fn main() -> ExitCode {
    let config = shard_router::config::Config::parse();
    shared::service::run(
        "shard-router",
        config.log_format,
        || {
            config
                .validate()
                .and_then(|()| config.check_shard())
                .map_err(Invalid::configuration)?;
            Ok(config)
        },
        shard_router::app::run,
    )
}
