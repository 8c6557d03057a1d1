use std::process::ExitCode;

use shared::service::Invalid;

fn main() -> ExitCode {
    let config: shard_router::config::Config = shared::service::parse_args(std::env::args_os());
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
