//! docker-compose.yml: the services, what they build and mount, their order, scaling, and the
//! variables given to cdc and the routers.

use std::collections::BTreeSet;

use serde_yaml::Value;

use super::binaries::{env_flags, http_port, parse_service_config, required_envs};
use super::compose::{hosts_of, Binary, Compose};
use super::dockerfile::{context_sources, dockerfile, stage};
use crate::files::{exists, normalise, root, scalar, strings};

/// Services the demo must have (docker-compose.yml).
const SERVICES: &[&str] = &[
    "main-db",
    "kafka",
    "jaeger",
    "prometheus",
    "grafana",
    "replica-mysql",
    "replica-postgres",
    "cdc",
    "router-a-mysql",
    "router-a-sqlite",
    "router-b-postgres",
    "loadgen",
];

/// Services that have nothing to ask for their health: the generator has no HTTP endpoint.
const WITHOUT_HEALTHCHECK: &[&str] = &["loadgen"];

/// Variables the binaries read besides their clap arguments: the log filter, and the standard
/// OpenTelemetry SDK variables passed through to the tracing exporter.
const EXTRA_ENV: &[&str] = &[
    "RUST_LOG",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_PROPAGATORS",
    "OTEL_SDK_DISABLED",
];

#[test]
fn compose_defines_the_demo_services() {
    let compose = Compose::load();
    assert!(
        compose.doc.get("version").is_none(),
        "the compose spec has no `version:` key"
    );
    let services = compose.services();
    for name in SERVICES {
        assert!(services.contains_key(*name), "no service {name}");
    }
    assert_eq!(compose.running(Binary::Cdc), ["cdc"]);
    let routers = compose.running(Binary::Router);
    assert!(routers.len() >= 3, "routers: {routers:?}");

    let kafka = scalar(compose.service("kafka").get("image").expect("kafka image"));
    let version = kafka
        .strip_prefix("apache/kafka:")
        .unwrap_or_else(|| panic!("kafka runs {kafka}, not apache/kafka"));
    let version: Vec<u32> = version
        .split(['.', '-'])
        .take(3)
        .map(|p| p.parse().unwrap_or_else(|_| panic!("kafka tag {version}")))
        .collect();
    assert!(version >= vec![3, 8, 0], "apache/kafka {version:?} < 3.8.0");
    assert!(
        compose
            .environment("kafka")
            .get("KAFKA_PROCESS_ROLES")
            .is_some_and(|r| r.contains("controller")),
        "kafka runs in KRaft mode"
    );

    let loadgen = strings(compose.service("loadgen").get("command"));
    for flag in ["--schema", "--bulk", "--rate"] {
        assert!(
            loadgen.iter().any(|a| a == flag),
            "loadgen {loadgen:?} lacks {flag}"
        );
    }
    let db = compose.environment("loadgen");
    let url = db.get("DATABASE_URL").expect("loadgen DATABASE_URL");
    assert_eq!(hosts_of(url), ["main-db"], "loadgen writes to main-db");
}

#[test]
fn compose_builds_and_mounts_only_files_that_exist() {
    let compose = Compose::load();
    let named = compose.named_volumes();
    let mut checked = 0;
    for (name, service) in compose.services() {
        if let Some(build) = service.get("build") {
            let (context, file_name, target) = match build {
                Value::String(context) => (context.clone(), "Dockerfile".to_owned(), None),
                build => (
                    strings(build.get("context")).concat(),
                    build
                        .get("dockerfile")
                        .map(scalar)
                        .unwrap_or_else(|| "Dockerfile".to_owned()),
                    build.get("target").map(scalar),
                ),
            };
            assert!(
                root().join(normalise(&context)).is_dir(),
                "{name}: build context {context} is not a directory"
            );
            let file = normalise(&format!("{context}/{file_name}"));
            assert!(
                root().join(&file).is_file(),
                "{name}: {file} does not exist"
            );
            let stages = dockerfile(&file);
            if let Some(target) = target {
                assert!(
                    stage(&stages, &target).is_some(),
                    "{name}: {file} has no stage {target:?} (stages: {:?})",
                    stages.iter().map(|s| &s.name).collect::<Vec<_>>()
                );
            }
            for stage in &stages {
                for source in context_sources(stage) {
                    let path = format!("{context}/{source}");
                    assert!(
                        exists(&path),
                        "{name}: {file} copies {source}, which does not exist in {context}"
                    );
                    checked += 1;
                }
            }
        }
        for mount in compose.mounts(&name) {
            if mount.bind {
                assert!(
                    exists(&mount.source),
                    "{name}: mounts {}, which does not exist",
                    mount.source
                );
            } else {
                assert!(
                    named.contains(&mount.source),
                    "{name}: volume {} is not declared under volumes:",
                    mount.source
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} files and volumes checked");
}

#[test]
fn compose_depends_on_existing_services_and_waits_for_health() {
    let compose = Compose::load();
    let services = compose.services();
    for name in services.keys() {
        if !WITHOUT_HEALTHCHECK.contains(&name.as_str()) {
            let test = compose
                .healthcheck(name)
                .unwrap_or_else(|| panic!("{name} has no healthcheck"));
            assert!(
                matches!(test[0].as_str(), "CMD" | "CMD-SHELL"),
                "{name}: healthcheck test {test:?}"
            );
        }
        for (dep, condition) in compose.depends_on(name) {
            assert!(
                services.contains_key(&dep),
                "{name} depends on unknown {dep}"
            );
            match condition.as_str() {
                "service_healthy" => assert!(
                    compose.healthcheck(&dep).is_some(),
                    "{name} waits for {dep} to be healthy, but {dep} has no healthcheck"
                ),
                "service_started" | "service_completed_successfully" => {}
                other => panic!("{name}: unknown depends_on condition {other}"),
            }
        }
    }
    // The chain that makes the demo work: cdc after its source and Kafka, routers after cdc created
    // the topics, the generator after cdc's slot exists.
    let healthy = |from: &str, to: &str| {
        assert!(
            compose
                .depends_on(from)
                .contains(&(to.to_owned(), "service_healthy".to_owned())),
            "{from} must wait for {to} to be healthy"
        );
    };
    healthy("cdc", "main-db");
    healthy("cdc", "kafka");
    healthy("loadgen", "cdc");
    for router in compose.running(Binary::Router) {
        healthy(&router, "cdc");
        healthy(&router, "kafka");
    }
}

#[test]
fn routers_can_be_scaled() {
    let compose = Compose::load();
    for router in compose.running(Binary::Router) {
        let service = compose.service(&router);
        assert!(
            service.get("container_name").is_none(),
            "{router}: container_name prevents --scale"
        );
        assert!(
            service.get("ports").is_none(),
            "{router}: host ports prevent --scale (Prometheus finds replicas through DNS)"
        );
    }
}

#[test]
fn cdc_and_routers_get_only_variables_their_flags_declare() {
    let compose = Compose::load();
    let services = compose.services();
    for binary in [Binary::Cdc, Binary::Router] {
        let flags = env_flags(binary);
        for name in compose.running(binary) {
            let env = compose.environment(&name);
            for var in env.keys() {
                assert!(
                    flags.contains_key(var) || EXTRA_ENV.contains(&var.as_str()),
                    "{name}: {binary:?} reads no variable {var} (its flags: {:?})",
                    flags.keys().collect::<Vec<_>>()
                );
            }
            for var in required_envs(binary) {
                assert!(env.contains_key(&var), "{name}: required {var} is missing");
            }
            parse_service_config(&compose, &name, binary)
                .unwrap_or_else(|e| panic!("{name}: its variables do not parse: {e}"));

            // Every host the service talks to is a service of this file.
            let mut urls = vec!["KAFKA_BROKERS", "OTEL_EXPORTER_OTLP_ENDPOINT"];
            urls.push(match binary {
                Binary::Cdc => "CDC_SOURCE_URL",
                Binary::Router => "ROUTER_REPLICA_URL",
            });
            for var in urls {
                let value = env
                    .get(var)
                    .unwrap_or_else(|| panic!("{name}: {var} is missing"));
                if let Some(path) = value.strip_prefix("sqlite://") {
                    // Every container of the service must open the same, lasting file.
                    let on_volume = compose
                        .mounts(&name)
                        .iter()
                        .any(|m| !m.bind && path.starts_with(&format!("{}/", m.target)));
                    assert!(
                        on_volume,
                        "{name}: the SQLite replica {path} is not on a named volume"
                    );
                    continue;
                }
                for host in hosts_of(value) {
                    assert!(
                        services.contains_key(&host),
                        "{name}: {var} names unknown host {host}"
                    );
                }
            }
            assert!(
                env.contains_key("OTEL_SERVICE_NAME"),
                "{name}: no OTEL_SERVICE_NAME"
            );

            // The routing file is mounted where CASCADE_CONFIG says.
            let config = env
                .get("CASCADE_CONFIG")
                .unwrap_or_else(|| panic!("{name}: no CASCADE_CONFIG"));
            assert_eq!(
                compose.mounted_at(&name, "main-db/routing.toml").as_deref(),
                Some(config.as_str()),
                "{name}: CASCADE_CONFIG={config} is not where main-db/routing.toml is mounted"
            );
        }
    }
}

#[test]
fn router_shards_are_defined_in_the_routing_file() {
    let compose = Compose::load();
    let mut shards = BTreeSet::new();
    for router in compose.running(Binary::Router) {
        let shard = compose
            .environment(&router)
            .get("ROUTER_SHARD")
            .cloned()
            .unwrap_or_else(|| panic!("{router}: no ROUTER_SHARD"));
        // The service (and so the Prometheus job) name says which shard it serves.
        assert!(
            router.starts_with(&format!("router-{shard}-")),
            "{router} serves shard {shard}: name it router-{shard}-<replica>"
        );
        shards.insert(shard);
    }
    assert_eq!(shards, BTreeSet::from(["a".to_owned(), "b".to_owned()]));

    let routing = root().join("main-db/routing.toml");
    let map = shared::shards::ShardMap::load(&routing).unwrap_or_else(|e| panic!("{e}"));
    for shard in &shards {
        assert!(
            map.shard_index(shard).is_some(),
            "ROUTER_SHARD={shard} is not a shard of main-db/routing.toml ({:?})",
            map.shards()
        );
    }
}

#[test]
fn compose_health_checks_ask_readyz_on_the_http_port() {
    let compose = Compose::load();
    for binary in [Binary::Cdc, Binary::Router] {
        for name in compose.running(binary) {
            let test = compose.healthcheck(&name).expect("a healthcheck");
            let url = format!(
                "http://127.0.0.1:{}/readyz",
                http_port(&compose, &name, binary)
            );
            assert!(
                test.iter().any(|a| a.contains(&url)),
                "{name}: healthcheck {test:?} does not ask {url}"
            );
            assert!(
                test.iter().any(|a| a == "curl"),
                "{name}: healthcheck {test:?}"
            );
        }
    }
    // curl is in the images the health checks run in.
    let stages = dockerfile("docker/Dockerfile");
    for target in ["cdc", "shard-router"] {
        let mut s = stage(&stages, target).expect("the target");
        let mut has_curl = false;
        loop {
            has_curl |= s
                .instructions
                .iter()
                .any(|(k, v)| k == "RUN" && v.contains("apt-get install") && v.contains(" curl"));
            match stage(&stages, &s.base) {
                Some(parent) => s = parent,
                None => break,
            }
        }
        assert!(
            has_curl,
            "{target}: the image has no curl for its healthcheck"
        );
    }
}

/// Images whose releases are numbered major.minor (PostgreSQL since 10, Debian point releases);
/// every other image names a major.minor.patch release.
const TWO_PART_VERSIONS: &[&str] = &["postgres", "debian"];

/// Why `image` is not pinned to one release, if it is not: no tag, `latest`, or a version with fewer
/// parts than a release of it has (`postgres:15`, `mysql:8.4`, `rust:1-bookworm` follow new releases).
fn unpinned(image: &str) -> Option<String> {
    let (name, tag) = image.rsplit_once(':')?;
    let version = tag
        .trim_start_matches('v')
        .split('-')
        .next()
        .unwrap_or_default();
    let parts: Vec<&str> = version.split('.').collect();
    let numeric = !parts.is_empty()
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let wanted = if TWO_PART_VERSIONS.contains(&name.rsplit('/').next().unwrap_or(name)) {
        2
    } else {
        3
    };
    (!numeric || parts.len() < wanted)
        .then(|| format!("{image}: pin a release ({wanted} version parts), not a moving tag"))
}

#[test]
fn unpinned_tags_are_recognised() {
    for ok in [
        "mysql:8.4.3",
        "postgres:15.10-bookworm",
        "prom/prometheus:v2.55.1",
        "rust:1.95.0-bookworm",
        "debian:12.8-slim",
    ] {
        assert_eq!(unpinned(ok), None, "{ok}");
    }
    for bad in [
        "mysql:8.4",
        "postgres:15",
        "rust:1-bookworm",
        "debian:bookworm-slim",
        "grafana/grafana:latest",
        "grafana/grafana",
    ] {
        assert!(
            bad.rsplit_once(':').is_none() || unpinned(bad).is_some(),
            "{bad}"
        );
    }
}

#[test]
fn images_are_pinned_ports_are_local_and_stops_are_graceful() {
    let compose = Compose::load();
    let mut problems = Vec::new();
    for (name, service) in compose.services() {
        let image = service.get("image").map(scalar).unwrap_or_default();
        // Our own images are built from this tree (`build:`); every other one is pulled.
        if !image.starts_with("cascade/") {
            match image.rsplit_once(':') {
                None => problems.push(format!("{name}: image {image:?} has no tag")),
                Some(_) => problems.extend(unpinned(&image).map(|p| format!("{name}: {p}"))),
            }
        }
        for port in strings(service.get("ports")) {
            if !port.starts_with("127.0.0.1:") {
                problems.push(format!(
                    "{name}: port {port:?} is published on every interface"
                ));
            }
        }
    }
    for (file, bases) in [
        ("docker/Dockerfile", dockerfile("docker/Dockerfile")),
        ("main-db/Dockerfile", dockerfile("main-db/Dockerfile")),
    ] {
        for stage_ in &bases {
            // A stage built FROM another stage of the file is pinned by that one.
            if bases
                .iter()
                .any(|other| other.name.as_deref() == Some(stage_.base.as_str()))
            {
                continue;
            }
            problems.extend(unpinned(&stage_.base).map(|p| format!("{file}: FROM {p}")));
        }
    }
    // docker stops a container after stop_grace_period (default 10 s): it must cover the binary's
    // shutdown timeout, or a stop kills cdc or a router before it finished its work.
    for (binary, variable) in [
        (Binary::Cdc, "CDC_SHUTDOWN_TIMEOUT"),
        (Binary::Router, "ROUTER_SHUTDOWN_TIMEOUT"),
    ] {
        for name in compose.running(binary) {
            let timeout = compose
                .environment(&name)
                .get(variable)
                .cloned()
                .unwrap_or_else(|| "30s".to_owned());
            let timeout = humantime::parse_duration(&timeout).expect("a shutdown timeout");
            let grace = compose
                .service(&name)
                .get("stop_grace_period")
                .map(|g| humantime::parse_duration(&scalar(g)).expect("a stop_grace_period"))
                .unwrap_or(std::time::Duration::from_secs(10));
            if grace <= timeout {
                problems.push(format!(
                    "{name}: stop_grace_period {grace:?} does not exceed {variable} {timeout:?}"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
