//! prometheus/prometheus.yml and Grafana's provisioning and dashboard.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value;

use super::binaries::http_port;
use super::compose::{hosts_of, Binary, Compose};
use super::promql::{dashboard_queries, exported_metrics, promql_metric_names};
use crate::files::{read, root, scalar, strings, yaml};

#[test]
fn prometheus_scrapes_every_cdc_and_router_at_its_http_port() {
    let compose = Compose::load();
    let prom = yaml("prometheus/prometheus.yml");
    assert_eq!(
        prom["global"]["scrape_interval"].as_str(),
        Some("5s"),
        "scrape every 5s"
    );
    let mut jobs: BTreeMap<String, &Value> = BTreeMap::new();
    for job in prom["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
    {
        jobs.insert(scalar(&job["job_name"]), job);
    }
    let services = compose.services();
    let mut scraped = 0;
    for (job_name, job) in &jobs {
        let sd = job["dns_sd_configs"]
            .as_sequence()
            .unwrap_or_else(|| panic!("job {job_name}: no dns_sd_configs"));
        for config in sd {
            assert_eq!(config["type"].as_str(), Some("A"), "job {job_name}: type");
            let port = config["port"]
                .as_u64()
                .unwrap_or_else(|| panic!("job {job_name}: no port"));
            for name in strings(config.get("names")) {
                assert!(
                    services.contains_key(&name),
                    "job {job_name}: no service {name}"
                );
                let binary = compose
                    .binary(&name)
                    .unwrap_or_else(|| panic!("job {job_name}: {name} is not cdc or a router"));
                assert_eq!(
                    port,
                    u64::from(http_port(&compose, &name, binary)),
                    "job {job_name}: {name} serves /metrics on another port"
                );
                scraped += 1;
            }
        }
    }
    // Every cdc and router service has its own job, named after it (the job identifies the
    // shard and replica); a `shard` label, if set, says the same as ROUTER_SHARD.
    for binary in [Binary::Cdc, Binary::Router] {
        for name in compose.running(binary) {
            let job = jobs
                .get(&name)
                .unwrap_or_else(|| panic!("no Prometheus job {name}"));
            let names = strings(job["dns_sd_configs"][0].get("names"));
            assert_eq!(names, [name.as_str()], "job {name} scrapes {names:?}");
            for relabel in job["relabel_configs"].as_sequence().into_iter().flatten() {
                if relabel["target_label"].as_str() == Some("shard") {
                    assert_eq!(
                        relabel["replacement"].as_str(),
                        compose
                            .environment(&name)
                            .get("ROUTER_SHARD")
                            .map(String::as_str),
                        "job {name}: shard label"
                    );
                }
            }
        }
    }
    assert!(scraped >= 4, "only {scraped} services scraped");
}

#[test]
fn grafana_provisioning_matches_compose() {
    let compose = Compose::load();
    let env = compose.environment("grafana");
    assert_eq!(
        env.get("GF_AUTH_ANONYMOUS_ENABLED").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        env.get("GF_AUTH_ANONYMOUS_ORG_ROLE").map(String::as_str),
        Some("Viewer")
    );
    assert_eq!(
        compose
            .mounted_at("grafana", "grafana/provisioning")
            .as_deref(),
        Some("/etc/grafana/provisioning")
    );

    let ds = yaml("grafana/provisioning/datasources/prometheus.yml");
    let sources = ds["datasources"].as_sequence().expect("datasources");
    let prom = sources
        .iter()
        .find(|d| d["uid"].as_str() == Some("prometheus"))
        .expect("a datasource with uid prometheus");
    assert_eq!(prom["type"].as_str(), Some("prometheus"));
    let url = prom["url"].as_str().expect("a url");
    assert_eq!(hosts_of(url), ["prometheus"]);
    assert!(compose.services().contains_key("prometheus"));

    let providers = yaml("grafana/provisioning/dashboards/cascade.yml");
    let provider = &providers["providers"][0];
    assert_eq!(provider["type"].as_str(), Some("file"));
    let path = provider["options"]["path"].as_str().expect("options.path");
    assert_eq!(
        compose
            .mounted_at("grafana", "grafana/dashboards")
            .as_deref(),
        Some(path),
        "the provider reads {path}, where grafana/dashboards must be mounted"
    );
    if let Some(home) = env.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH") {
        let file = home
            .strip_prefix(&format!("{path}/"))
            .unwrap_or_else(|| panic!("home dashboard {home} is not under {path}"));
        assert!(
            root().join("grafana/dashboards").join(file).is_file(),
            "{home}"
        );
    }

    // Every panel and query uses the provisioned data source.
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("grafana/dashboards/cascade.json")).expect("dashboard JSON");
    let mut uids = 0;
    fn visit(v: &serde_json::Value, uids: &mut usize) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(ds) = m.get("datasource") {
                    assert_eq!(ds["uid"], "prometheus", "datasource {ds}");
                    *uids += 1;
                }
                m.values().for_each(|v| visit(v, uids));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| visit(v, uids)),
            _ => {}
        }
    }
    visit(&dashboard, &mut uids);
    assert!(uids >= 10, "only {uids} datasource references");
}

#[test]
fn dashboard_queries_use_only_exported_metrics() {
    let exported = exported_metrics();
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("grafana/dashboards/cascade.json")).expect("dashboard JSON");
    assert_eq!(dashboard["uid"], "cascade");
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 15, "only {} queries found", queries.len());
    let mut used = BTreeSet::new();
    let mut problems = Vec::new();
    for (place, expr) in &queries {
        let names = promql_metric_names(expr);
        if names.is_empty() {
            problems.push(format!("{place}: no metric found in {expr:?}"));
        }
        for name in names {
            if let Err(e) = exported.check(&name) {
                problems.push(format!("{place}: {e} (in {expr:?})"));
            }
            if name.ends_with("_bucket") && !expr.contains("histogram_quantile(") {
                problems.push(format!("{place}: {name} outside histogram_quantile"));
            }
            used.insert(name);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        used.len() >= 15,
        "only {} distinct series used: {used:?}",
        used.len()
    );
    // The questions the dashboard must answer: throughput, lag per shard and replica, apply latency,
    // consumer lag, errors, WAL retained, partitions.
    for required in [
        "cdc_events_published_total",
        "router_rows_applied_total",
        "cdc_replication_lag_bytes",
        "cdc_replication_lag_seconds",
        "router_end_to_end_lag_seconds_bucket",
        "router_replica_commit_seconds_bucket",
        "router_consumer_lag_messages",
        "cdc_errors_total",
        "router_errors_total",
        "cdc_slot_retained_wal_bytes",
        "router_partitions_assigned",
        "router_partitions_stopped",
        "router_dead_letters_total",
    ] {
        assert!(used.contains(required), "no panel shows {required}");
    }
}
