//! The lag gauges stay true while Kafka is down: with the broker paused, cdc confirms nothing, and
//! `cdc_slot_retained_wal_bytes`, `cdc_replication_lag_bytes` and `cdc_replication_lag_seconds` keep
//! growing with the source's writes instead of freezing at their last values; they come down once
//! the broker is back.

use std::time::{Duration, Instant};

use crate::support::*;

fn gauge(cdc: &Cdc, name: &str) -> f64 {
    cdc.metrics()
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .find_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// Waits until `check` holds for the gauges, naming them on a timeout.
fn wait_gauges(cdc: &Cdc, timeout: Duration, what: &str, check: impl Fn(f64, f64, f64) -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        let (retained, bytes, seconds) = (
            gauge(cdc, "cdc_slot_retained_wal_bytes"),
            gauge(cdc, "cdc_replication_lag_bytes"),
            gauge(cdc, "cdc_replication_lag_seconds"),
        );
        if check(retained, bytes, seconds) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: retained {retained}, lag bytes {bytes}, lag seconds {seconds}\ncdc log:\n{}",
            cdc.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_gauges_keep_growing_while_kafka_is_down() {
    let mut s = services();
    let broker = testkit::Broker::start(&s.tansu_bin);
    s.kafka = format!("127.0.0.1:{}", broker.port);
    let name = unique("lag");
    let source_url = create_db(&s, &name).await;
    let source = connect(&source_url).await;
    source
        .batch_execute("CREATE TABLE t (id bigserial PRIMARY KEY, v text)")
        .await
        .unwrap();
    let prefix = unique("lag");
    let mut cdc = Cdc::start(
        &s,
        &source_url,
        &name,
        &prefix,
        &["--kafka-message-timeout", "1500ms", "--max-backoff", "1s"],
    );
    cdc.wait_ready(Duration::from_secs(60));
    let write = || async {
        source
            .batch_execute(
                "INSERT INTO t (v) SELECT repeat('x', 200) FROM generate_series(1, 2000)",
            )
            .await
            .unwrap();
    };
    write().await;
    wait_gauges(
        &cdc,
        Duration::from_secs(30),
        "the first transaction to be confirmed",
        |r, _, s| r > 0.0 && s < 5.0,
    );

    broker.signal("-STOP");
    write().await;
    // cdc gives up on the delivery, starts over, and cannot reach Kafka: nothing is confirmed.
    testkit::wait_for(
        Duration::from_secs(30),
        "cdc to report waiting for Kafka",
        || cdc.log_text().contains("waiting for Kafka").then_some(()),
    );
    std::thread::sleep(Duration::from_secs(6));
    let before = (
        gauge(&cdc, "cdc_slot_retained_wal_bytes"),
        gauge(&cdc, "cdc_replication_lag_bytes"),
        gauge(&cdc, "cdc_replication_lag_seconds"),
    );
    write().await;
    wait_gauges(
        &cdc,
        Duration::from_secs(20),
        "the gauges to grow while Kafka is down",
        |r, b, s| r > before.0 && b > before.1 && s > before.2 + 2.0,
    );

    broker.signal("-CONT");
    wait_gauges(
        &cdc,
        Duration::from_secs(90),
        "the lag to come down once Kafka is back",
        |_, _, s| s < 5.0,
    );
    drop(cdc);
    drop(broker);
    testkit::drop_slot(&s.source_url, &name).await;
}
