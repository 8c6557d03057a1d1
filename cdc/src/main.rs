use std::process::ExitCode;

use shared::service::Invalid;

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("suggest-transforms") {
        let args: cdc::transform::suggest::SuggestArgs =
            shared::service::parse_args(std::env::args_os().skip(1));
        return shared::service::run(
            "cdc suggest-transforms",
            shared::telemetry::LogFormat::Text,
            || Ok(args),
            cdc::transform::suggest::run,
        );
    }
    if std::env::args().nth(1).as_deref() == Some("snapshot") {
        let args: cdc::snapshot::command::SnapshotArgs =
            shared::service::parse_args(std::env::args_os().skip(1));
        return shared::service::run(
            "cdc snapshot",
            shared::telemetry::LogFormat::Text,
            || {
                let table = args.table().map_err(Invalid::configuration)?;
                args.check_shard().map_err(Invalid::routing_file)?;
                Ok((args, table))
            },
            |(args, table)| cdc::snapshot::command::run(args, table),
        );
    }
    if std::env::args().nth(1).as_deref() == Some("setup") {
        let args: cdc::setup::SetupArgs = shared::service::parse_args(std::env::args_os().skip(1));
        return shared::service::run(
            "cdc setup",
            shared::telemetry::LogFormat::Text,
            || {
                let shards = args.shard_map().map_err(Invalid::routing_file)?;
                Ok((args, shards))
            },
            |(args, shards)| cdc::setup::run(args, shards),
        );
    }
    let config: cdc::config::Config = shared::service::parse_args(std::env::args_os());
    shared::service::run(
        "cdc",
        config.log_format,
        || {
            config.validate().map_err(Invalid::configuration)?;
            let shards = config.shard_map().map_err(Invalid::routing_file)?;
            let transforms = config.transforms().map_err(|e| {
                if e.field == cdc::transform::KEY_VARIABLE {
                    Invalid::configuration(e)
                } else {
                    Invalid::routing_file(e)
                }
            })?;
            Ok((config, shards, transforms))
        },
        |(config, shards, transforms)| cdc::app::run(config, shards, transforms),
    )
}
