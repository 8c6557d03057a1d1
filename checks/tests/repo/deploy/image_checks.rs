//! docker/Dockerfile and main-db/Dockerfile.

use std::collections::BTreeMap;

use super::binaries::default_http_port;
use super::compose::Binary;
use super::dockerfile::{dockerfile, inherited, stage};
use crate::files::{read, root};

#[test]
fn dockerfile_targets_run_the_binaries_on_their_ports_as_a_user() {
    let stages = dockerfile("docker/Dockerfile");
    let build = stage(&stages, "build").expect("a build stage");
    assert!(build.base.starts_with("rust:") && build.base.ends_with("bookworm"));
    let targets = [
        ("cdc", "/usr/local/bin/cdc", Some(Binary::Cdc)),
        (
            "shard-router",
            "/usr/local/bin/shard-router",
            Some(Binary::Router),
        ),
        ("generator", "/usr/local/bin/cascade-gen", None),
    ];
    for (target, program, binary) in targets {
        let s = stage(&stages, target).unwrap_or_else(|| panic!("no stage {target}"));
        let entrypoint: Vec<String> = serde_json::from_str(
            inherited(&stages, s, "ENTRYPOINT")
                .unwrap_or_else(|| panic!("{target}: no ENTRYPOINT")),
        )
        .unwrap_or_else(|e| panic!("{target}: ENTRYPOINT is not an exec-form list: {e}"));
        assert_eq!(entrypoint, [program], "{target}: ENTRYPOINT");
        assert!(
            s.instructions
                .iter()
                .any(|(k, v)| k == "COPY" && v.starts_with("--from=build") && v.ends_with(program)),
            "{target}: does not copy {program} from the build stage"
        );
        let user = inherited(&stages, s, "USER").unwrap_or("root");
        let user = user.split(':').next().unwrap_or_default();
        assert!(!matches!(user, "root" | "0"), "{target} runs as {user}");
        // The runtime chain ends in a Debian 12 (bookworm) slim image, pinned to a point release.
        let mut base = s;
        while let Some(parent) = stage(&stages, &base.base) {
            base = parent;
        }
        assert!(
            base.base.starts_with("debian:12.") && base.base.ends_with("-slim"),
            "{target}: runtime base {}",
            base.base
        );
        if let Some(binary) = binary {
            let port = default_http_port(binary);
            assert_eq!(
                inherited(&stages, s, "EXPOSE"),
                Some(port.to_string().as_str()),
                "{target}: EXPOSE must be the default --http-addr port"
            );
        }
    }
    // TLS links the system OpenSSL: its headers where the binaries are built, its library where
    // they run.
    let installs = |s: &super::dockerfile::Stage, package: &str| {
        s.instructions.iter().any(|(k, v)| {
            k == "RUN"
                && v.contains("apt-get install")
                && v.split_whitespace().any(|w| w == package)
        })
    };
    assert!(
        installs(build, "libssl-dev"),
        "the build stage lacks libssl-dev"
    );
    let runtime = stage(&stages, "runtime").expect("a runtime stage");
    assert!(
        installs(runtime, "libssl3"),
        "the runtime stage lacks libssl3"
    );
    // The cargo build names the packages and binaries the targets copy.
    let (_, run) = build
        .instructions
        .iter()
        .find(|(k, v)| k == "RUN" && v.contains("cargo build"))
        .expect("a cargo build in the build stage");
    for package in ["-p cdc", "-p shard-router", "-p cascade-generator"] {
        assert!(run.contains(package), "cargo build lacks {package}");
    }
    assert!(
        run.contains("--mount=type=cache"),
        "cargo build without a cache mount"
    );
    // The generator's package and binary are the names the build and the target use.
    let manifest = read("generator/Cargo.toml");
    assert!(manifest.contains("name = \"cascade-generator\""));
    assert!(
        manifest.contains("name = \"cascade-gen\"")
            || root().join("generator/src/bin/cascade-gen.rs").exists(),
        "generator/ builds no cascade-gen binary"
    );
}

#[test]
fn main_db_image_enables_logical_replication_with_wal2json() {
    let stages = dockerfile("main-db/Dockerfile");
    let last = stages.last().expect("a stage");
    assert!(
        last.base.starts_with("postgres:15.") && last.base.ends_with("-bookworm"),
        "main-db base {}",
        last.base
    );
    let has = |keyword: &str, needle: &str| {
        last.instructions
            .iter()
            .any(|(k, v)| k == keyword && v.contains(needle))
    };
    assert!(
        has("RUN", "postgresql-15-wal2json"),
        "wal2json not installed"
    );
    assert!(
        has("COPY", "/docker-entrypoint-initdb.d/"),
        "schema.sql is not copied into /docker-entrypoint-initdb.d/"
    );
    assert!(has("CMD", "config_file=/etc/postgresql/postgresql.conf"));
    let conf: BTreeMap<String, String> = read("main-db/postgresql.conf")
        .lines()
        .filter_map(|l| {
            let l = l.split('#').next()?.trim();
            let (k, v) = l.split_once('=')?;
            Some((k.trim().to_owned(), v.trim().trim_matches('\'').to_owned()))
        })
        .collect();
    assert_eq!(conf.get("wal_level").map(String::as_str), Some("logical"));
    assert_eq!(conf.get("listen_addresses").map(String::as_str), Some("*"));
    for key in ["max_replication_slots", "max_wal_senders"] {
        let n: u32 = conf
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("postgresql.conf lacks {key}"));
        assert!(n >= 4, "{key} = {n}");
    }
    let plugins = conf
        .get("output_plugin_libraries")
        .expect("output_plugin_libraries");
    assert!(
        plugins.split(',').any(|p| p.trim() == "wal2json"),
        "{plugins}"
    );
}
