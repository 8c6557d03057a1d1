use std::process::ExitCode;

use shared::service::Invalid;

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("replay-dlq") {
        let args: shard_router::replay::ReplayArgs =
            shared::service::parse_args(std::env::args_os().skip(1));
        return shared::service::run(
            "shard-router replay-dlq",
            shared::telemetry::LogFormat::Text,
            || {
                shard_router::replica::tls::check_files(&args.replica_url)
                    .and_then(|()| args.kafka.check())
                    .map_err(Invalid::configuration)?;
                Ok(args)
            },
            shard_router::replay::run,
        );
    }
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
