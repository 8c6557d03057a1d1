use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let config = shard_router::config::Config::parse();
    shared::telemetry::init_logging(config.log_format);
    if let Err(error) = config.validate().and_then(|()| config.check_shard()) {
        tracing::error!("invalid configuration: {error}");
        eprintln!("shard-router: invalid configuration: {error}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("shard-router: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(shard_router::app::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let report = anyhow::Error::from(error);
            tracing::error!(error = format!("{report:#}"), "shard-router stopped");
            eprintln!("shard-router: error: {report:#}");
            ExitCode::FAILURE
        }
    }
}
