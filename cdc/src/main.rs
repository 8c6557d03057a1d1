use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let config = cdc::config::Config::parse();
    shared::telemetry::init_logging(config.log_format);
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
