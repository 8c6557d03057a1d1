use std::process::ExitCode;

use shared::service::Invalid;

fn main() -> ExitCode {
    let config: generator::config::Config = shared::service::parse_args(std::env::args_os());
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
