//! Connections to the source: a half-open replication connection (the network drops everything,
//! neither end closes) is noticed within about twice `wal_sender_timeout` and replaced, and nothing
//! committed meanwhile is lost.

use std::time::{Duration, Instant};

use testkit::wait_for;

use crate::support::*;

/// The URL `url` with its host and port replaced by `127.0.0.1:port`.
fn through(url: &str, port: u16) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (authority, path) = rest.split_once('/').expect("a path");
    let userinfo = authority.rsplit_once('@').map(|(u, _)| u);
    match userinfo {
        Some(u) => format!("{scheme}://{u}@127.0.0.1:{port}/{path}"),
        None => format!("{scheme}://127.0.0.1:{port}/{path}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_source_connection_is_replaced_within_the_idle_timeout() {
    let s = services();
    let name = unique("halfopen");
    let db_url = create_db(&s, &name).await;
    let c = connect(&db_url).await;
    c.batch_execute(&format!(
        "CREATE TABLE kv (k integer PRIMARY KEY, v text);
         ALTER DATABASE \"{name}\" SET wal_sender_timeout = '2s';"
    ))
    .await
    .unwrap();
    let upstream = {
        let after = db_url.split_once('@').map_or(db_url.as_str(), |(_, a)| a);
        after.split('/').next().unwrap().to_owned()
    };
    let proxy = testkit::TcpProxy::start(&upstream).await;
    let slot = unique("cdc");
    let prefix = unique("halfopen");
    let mut cdc = Cdc::start(
        &s,
        &through(&db_url, proxy.port),
        &slot,
        &prefix,
        &["--snapshot", "never"],
    );
    cdc.wait_ready(Duration::from_secs(60));
    c.batch_execute("INSERT INTO kv VALUES (1, 'before')")
        .await
        .unwrap();
    let mut reader =
        TopicReader::open(&s.kafka, &format!("{prefix}.main"), Duration::from_secs(30));
    reader.read_until(Duration::from_secs(30), "the first row", |m| {
        row_changes(m) >= 1
    });

    // The network fails silently: every connection open so far passes nothing, both ends keep it.
    proxy.freeze();
    let frozen_at = Instant::now();
    c.batch_execute("INSERT INTO kv VALUES (2, 'during')")
        .await
        .unwrap();
    wait_for(
        Duration::from_secs(30),
        "cdc to notice the dead replication connection",
        || {
            cdc.log_text()
                .contains("no message from the server in 4s")
                .then_some(())
        },
    );
    let noticed = frozen_at.elapsed();
    assert!(
        noticed < Duration::from_secs(20),
        "noticed only after {noticed:?} (the idle timeout is 4 s)"
    );
    // It reconnects (new connections pass) and the row committed meanwhile arrives.
    reader.read_until(
        Duration::from_secs(60),
        "the row committed while the connection was dead",
        |m| {
            m.iter().any(|x| {
                x.event.action.is_row_change() && String::from_utf8_lossy(&x.raw).contains("during")
            })
        },
    );
    drop(cdc);
    testkit::drop_slot(&s.source_url, &slot).await;
}
