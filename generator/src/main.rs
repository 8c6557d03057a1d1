use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let config = generator::config::Config::parse();
    shared::telemetry::init_logging(config.log_format);
    if let Err(error) = config.validate() {
        tracing::error!("invalid configuration: {error}");
        eprintln!("cascade-gen: invalid configuration: {error}");
        return ExitCode::from(2);
    }
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
