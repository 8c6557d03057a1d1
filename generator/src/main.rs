use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let config = generator::config::Config::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("cascade-gen: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let _tracing = {
        let _inside = runtime.enter();
        shared::telemetry::init_tracing(config.log_format, "cascade-gen")
    };
    if let Err(error) = config.validate() {
        tracing::error!("invalid configuration: {error}");
        eprintln!("cascade-gen: invalid configuration: {error}");
        return ExitCode::from(2);
    }
    match runtime.block_on(generator::app::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let report = anyhow::Error::from(error);
            tracing::error!(error = format!("{report:#}"), "cascade-gen stopped");
            eprintln!("cascade-gen: error: {report:#}");
            ExitCode::FAILURE
        }
    }
}
