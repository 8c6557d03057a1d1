use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("suggest-transforms") {
        return suggest_transforms();
    }
    let config = cdc::config::Config::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("cdc: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let _tracing = {
        let _inside = runtime.enter();
        shared::telemetry::init_tracing(config.log_format, "cdc")
    };
    if let Err(error) = config.validate() {
        tracing::error!("invalid configuration: {error}");
        eprintln!("cdc: invalid configuration: {error}");
        return ExitCode::from(2);
    }
    let shards = match config.shard_map() {
        Ok(shards) => shards,
        Err(error) => {
            tracing::error!("invalid routing file: {error}");
            eprintln!("cdc: invalid routing file: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(cdc::app::run(config, shards)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let report = anyhow::Error::from(error);
            tracing::error!(error = format!("{report:#}"), "cdc stopped");
            eprintln!("cdc: error: {report:#}");
            ExitCode::FAILURE
        }
    }
}

/// `cdc suggest-transforms`: prints a routing-file section of likely personal-data columns.
fn suggest_transforms() -> ExitCode {
    let args = cdc::transform::suggest::SuggestArgs::parse_from(std::env::args().skip(1));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("cdc: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cdc::transform::suggest::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!(
                "cdc suggest-transforms: error: {:#}",
                anyhow::Error::from(error)
            );
            ExitCode::FAILURE
        }
    }
}
