//! The command lines of cdc and shard-router, from their own clap definitions.

use std::collections::BTreeMap;

use clap::{CommandFactory, FromArgMatches};

use super::compose::{Binary, Compose};

pub(super) fn command(binary: Binary) -> clap::Command {
    match binary {
        Binary::Cdc => cdc::config::Config::command(),
        Binary::Router => shard_router::config::Config::command(),
    }
}

/// Variable → long flag, for every argument that has a variable.
pub(super) fn env_flags(binary: Binary) -> BTreeMap<String, String> {
    command(binary)
        .get_arguments()
        .filter_map(|a| {
            let env = a.get_env()?.to_str()?.to_owned();
            let long = a.get_long()?.to_owned();
            Some((env, long))
        })
        .collect()
}

/// The variables of the required arguments: compose must give each of them.
pub(super) fn required_envs(binary: Binary) -> Vec<String> {
    let required: Vec<String> = command(binary)
        .get_arguments()
        .filter(|a| a.is_required_set())
        .map(|a| {
            a.get_env()
                .and_then(|e| e.to_str())
                .unwrap_or_else(|| {
                    panic!("{binary:?}: required --{:?} has no variable", a.get_id())
                })
                .to_owned()
        })
        .collect();
    assert!(!required.is_empty(), "{binary:?} has no required argument?");
    required
}

/// The port of the default `--http-addr`.
pub(super) fn default_http_port(binary: Binary) -> u16 {
    let cmd = command(binary);
    let arg = cmd
        .get_arguments()
        .find(|a| a.get_long() == Some("http-addr"))
        .expect("an --http-addr argument");
    let default = arg
        .get_default_values()
        .first()
        .expect("a default --http-addr");
    let addr: std::net::SocketAddr = default
        .to_str()
        .and_then(|s| s.parse().ok())
        .expect("a socket address");
    addr.port()
}

/// The port the service serves /metrics on: its `*_HTTP_ADDR` variable, or the default.
pub(super) fn http_port(compose: &Compose, service: &str, binary: Binary) -> u16 {
    let var = match binary {
        Binary::Cdc => "CDC_HTTP_ADDR",
        Binary::Router => "ROUTER_HTTP_ADDR",
    };
    assert!(
        env_flags(binary).contains_key(var),
        "{binary:?} has no {var}"
    );
    match compose.environment(service).get(var) {
        Some(addr) => addr
            .parse::<std::net::SocketAddr>()
            .unwrap_or_else(|e| panic!("{service}: {var}={addr}: {e}"))
            .port(),
        None => default_http_port(binary),
    }
}

/// Parses the service's variables with the binary's own clap definition (as flags, with every `env`
/// fallback removed, so the test's own environment cannot stand in for a missing variable), then
/// runs its `validate()`.
pub(super) fn parse_service_config(
    compose: &Compose,
    service: &str,
    binary: Binary,
) -> Result<(), String> {
    let flags = env_flags(binary);
    let mut args = vec![binary_name(binary).to_owned()];
    for (var, value) in compose.environment(service) {
        if let Some(long) = flags.get(&var) {
            args.push(format!("--{long}"));
            args.push(value);
        }
    }
    let matches = command(binary)
        .mut_args(|a| a.env(None::<&str>))
        .try_get_matches_from(&args)
        .map_err(|e| e.to_string())?;
    match binary {
        Binary::Cdc => cdc::config::Config::from_arg_matches(&matches)
            .map_err(|e| e.to_string())?
            .validate()
            .map_err(|e| e.to_string()),
        Binary::Router => shard_router::config::Config::from_arg_matches(&matches)
            .map_err(|e| e.to_string())?
            .validate()
            .map_err(|e| e.to_string()),
    }
}

pub(super) fn binary_name(binary: Binary) -> &'static str {
    match binary {
        Binary::Cdc => "cdc",
        Binary::Router => "shard-router",
    }
}
