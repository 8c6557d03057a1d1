//! docker-compose.yml as the checks read it: services, what they run, their variables, mounts,
//! dependencies and health checks.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value;

use crate::files::{normalise, scalar, strings, yaml};

pub(super) struct Compose {
    pub(super) doc: Value,
}

/// What a service runs: one of our binaries (by Dockerfile target) or anything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Binary {
    Cdc,
    Router,
}

pub(super) struct Mount {
    /// A host path (relative to the workspace root) or a named volume.
    pub(super) source: String,
    pub(super) target: String,
    pub(super) bind: bool,
}

impl Compose {
    pub(super) fn load() -> Compose {
        Compose {
            doc: yaml("docker-compose.yml"),
        }
    }

    pub(super) fn services(&self) -> BTreeMap<String, &Value> {
        self.doc
            .get("services")
            .and_then(Value::as_mapping)
            .expect("docker-compose.yml has services")
            .iter()
            .map(|(k, v)| (scalar(k), v))
            .collect()
    }

    pub(super) fn service(&self, name: &str) -> &Value {
        self.doc
            .get("services")
            .and_then(|s| s.get(name))
            .unwrap_or_else(|| panic!("docker-compose.yml has no service {name}"))
    }

    pub(super) fn binary(&self, name: &str) -> Option<Binary> {
        let target = self.service(name).get("build")?.get("target")?.as_str()?;
        match target {
            "cdc" => Some(Binary::Cdc),
            "shard-router" => Some(Binary::Router),
            _ => None,
        }
    }

    /// The services running `binary`; panics if there are none, so no check passes on nothing.
    pub(super) fn running(&self, binary: Binary) -> Vec<String> {
        let names: Vec<String> = self
            .services()
            .keys()
            .filter(|n| self.binary(n) == Some(binary))
            .cloned()
            .collect();
        assert!(!names.is_empty(), "no service runs {binary:?}");
        names
    }

    pub(super) fn environment(&self, name: &str) -> BTreeMap<String, String> {
        match self.service(name).get("environment") {
            None => BTreeMap::new(),
            Some(Value::Mapping(m)) => m.iter().map(|(k, v)| (scalar(k), scalar(v))).collect(),
            Some(Value::Sequence(items)) => items
                .iter()
                .map(|i| {
                    let s = scalar(i);
                    match s.split_once('=') {
                        Some((k, v)) => (k.to_owned(), v.to_owned()),
                        None => (s, String::new()),
                    }
                })
                .collect(),
            Some(other) => panic!("{name}: environment is neither a map nor a list: {other:?}"),
        }
    }

    pub(super) fn mounts(&self, name: &str) -> Vec<Mount> {
        let Some(Value::Sequence(items)) = self.service(name).get("volumes") else {
            return Vec::new();
        };
        items
            .iter()
            .map(|item| match item {
                Value::String(short) => {
                    let mut parts = short.split(':');
                    let source = parts.next().unwrap_or_default().to_owned();
                    let target = parts
                        .next()
                        .unwrap_or_else(|| panic!("{name}: volume {short:?} has no target"))
                        .to_owned();
                    let bind = source.starts_with('.') || source.starts_with('/');
                    Mount {
                        source,
                        target,
                        bind,
                    }
                }
                long => Mount {
                    source: strings(long.get("source")).concat(),
                    target: strings(long.get("target")).concat(),
                    bind: long.get("type").and_then(Value::as_str) == Some("bind"),
                },
            })
            .collect()
    }

    pub(super) fn named_volumes(&self) -> BTreeSet<String> {
        self.doc
            .get("volumes")
            .and_then(Value::as_mapping)
            .map(|m| m.keys().map(scalar).collect())
            .unwrap_or_default()
    }

    /// `depends_on` as (service, condition), from the list or the map form.
    pub(super) fn depends_on(&self, name: &str) -> Vec<(String, String)> {
        match self.service(name).get("depends_on") {
            None => Vec::new(),
            Some(Value::Sequence(items)) => items
                .iter()
                .map(|i| (scalar(i), "service_started".to_owned()))
                .collect(),
            Some(Value::Mapping(m)) => m
                .iter()
                .map(|(k, v)| {
                    let condition = v
                        .get("condition")
                        .map(scalar)
                        .unwrap_or_else(|| "service_started".to_owned());
                    (scalar(k), condition)
                })
                .collect(),
            Some(other) => panic!("{name}: depends_on is neither a list nor a map: {other:?}"),
        }
    }

    /// The healthcheck's test command, if the service has one (and it is not disabled).
    pub(super) fn healthcheck(&self, name: &str) -> Option<Vec<String>> {
        let hc = self.service(name).get("healthcheck")?;
        if hc.get("disable").and_then(Value::as_bool) == Some(true) {
            return None;
        }
        let test = strings(hc.get("test"));
        if test.is_empty() || test == ["NONE"] {
            return None;
        }
        Some(test)
    }

    /// The container path where `host` (a file or directory in the workspace) is bind-mounted.
    pub(super) fn mounted_at(&self, service: &str, host: &str) -> Option<String> {
        self.mounts(service)
            .into_iter()
            .find(|m| m.bind && normalise(&m.source) == normalise(host))
            .map(|m| m.target)
    }
}

/// Host names in a comma-separated list of `host:port` or in a URL.
pub(super) fn hosts_of(value: &str) -> Vec<String> {
    if value.contains("://") {
        let url = url::Url::parse(value).unwrap_or_else(|e| panic!("{value}: {e}"));
        return url.host_str().map(str::to_owned).into_iter().collect();
    }
    value
        .split(',')
        .map(|b| b.trim().rsplit_once(':').map_or(b, |(h, _)| h).to_owned())
        .collect()
}
