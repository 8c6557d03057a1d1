use std::process::ExitCode;

use clap::Parser;
use shared::service::Invalid;

fn main() -> ExitCode {
    let config = generator::config::Config::parse();
    shared::service::run(
        "cascade-gen",
        config.log_format,
        || {
            config.validate().map_err(Invalid::configuration)?;
            Ok(config)
        },
        generator::app::run,
    )
}
