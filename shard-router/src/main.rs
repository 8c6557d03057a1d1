use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let config = shard_router::config::Config::parse();
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
    let _tracing = {
        let _inside = runtime.enter();
        shared::telemetry::init_tracing(config.log_format, "shard-router")
    };
    if let Err(error) = config.validate().and_then(|()| config.check_shard()) {
        tracing::error!("invalid configuration: {error}");
        eprintln!("shard-router: invalid configuration: {error}");
        return ExitCode::from(2);
    }
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
