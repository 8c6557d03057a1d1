//! Prometheus (the Debian package started by `scripts/services.sh`) scrapes cdc and a router, and
//! queries over the dashboard's metrics return data.

use std::time::Duration;

use crate::support::*;

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The first value of an instant query, if any series answered.
fn query(prometheus_port: u16, q: &str) -> Option<f64> {
    let (code, body) = testkit::http_get(
        prometheus_port,
        &format!("/api/v1/query?query={}", encode(q)),
    )?;
    if code != 200 {
        return None;
    }
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    let first = json["data"]["result"].as_array()?.first()?.clone();
    first["value"][1].as_str()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_both_binaries_and_dashboard_queries_return_data() {
    let s = services();
    let port: u16 = s
        .prometheus_url
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("PROMETHEUS_URL in target/services/env");
    let name = unique("prom");
    let source_url = testkit::create_pg_db(&s.source_url, &name).await;
    let source = connect(&source_url).await;
    source
        .batch_execute("CREATE TABLE t (id integer PRIMARY KEY, v text)")
        .await
        .unwrap();
    let target = Target::create(&s, Engine::Sqlite, &name).await;
    let prefix = unique("prom");
    let cdc = start_cdc(&s, &source_url, &name, &prefix);
    let mut router = start_router(&s, &target, &prefix, &[]);
    router.wait_ready(Duration::from_secs(60));
    let file = std::path::Path::new(&s.prometheus_targets_dir).join(format!("{name}.json"));
    std::fs::write(
        &file,
        format!(
            r#"[{{"targets": ["127.0.0.1:{}", "127.0.0.1:{}"], "labels": {{"test_run": "{name}"}}}}]"#,
            cdc.http_port, router.http_port
        ),
    )
    .unwrap();
    source
        .batch_execute("INSERT INTO t SELECT g, 'v' FROM generate_series(1, 50) g")
        .await
        .unwrap();

    let run = format!(r#"test_run="{name}""#);
    for q in [
        format!("sum(cdc_events_published_total{{{run}}})"),
        format!("sum(router_rows_applied_total{{{run}}})"),
        format!("max(cdc_slot_retained_wal_bytes{{{run}}})"),
        format!(
            "histogram_quantile(0.99, sum by (le) (router_replica_commit_seconds_bucket{{{run}}}))"
        ),
        format!("sum(router_end_to_end_lag_seconds_count{{{run}}})"),
        format!("count(up{{{run}}} == 1)"),
    ] {
        let value = wait_for(
            Duration::from_secs(60),
            &format!("Prometheus to answer {q}"),
            || query(port, &q).filter(|v| *v > 0.0 || q.starts_with("max")),
        );
        if q.starts_with("sum(cdc_events") || q.starts_with("sum(router_rows") {
            assert_eq!(value, 50.0, "{q}");
        }
        if q.starts_with("count(up") {
            assert_eq!(value, 2.0, "both binaries are scraped");
        }
    }
    let _ = std::fs::remove_file(&file);
    drop(router);
    drop(cdc);
    testkit::drop_slot(&s.source_url, &name).await;
}
