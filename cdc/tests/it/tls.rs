//! TLS to the source: cdc streams over a verified TLS connection (the server's own view says so), and
//! a CA that did not sign the server's certificate stops it at once, naming the parameter.

use std::time::{Duration, Instant};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_streams_over_verified_tls_and_refuses_a_wrong_ca_at_once() {
    let s = services();
    let name = unique("tls");
    let db_url = create_db(&s, &name).await;
    let c = connect(&db_url).await;
    c.batch_execute("CREATE TABLE kv (k integer PRIMARY KEY, v text)")
        .await
        .unwrap();
    assert!(
        std::path::Path::new(&s.ca_file).is_file(),
        "CASCADE_CA_FILE is not set or missing: run scripts/services.sh up again (it makes the CA)"
    );
    let ca = s.ca_file.clone();
    let verified = format!("{db_url}?sslmode=verify-full&sslrootcert={ca}");
    let slot = unique("cdc");
    let prefix = unique("tls");
    let mut cdc = Cdc::start(&s, &verified, &slot, &prefix, &["--snapshot", "never"]);
    cdc.wait_ready(Duration::from_secs(60));
    c.batch_execute("INSERT INTO kv VALUES (1, 'over tls')")
        .await
        .unwrap();
    let mut reader =
        TopicReader::open(&s.kafka, &format!("{prefix}.main"), Duration::from_secs(30));
    reader.read_until(Duration::from_secs(30), "the row", |m| row_changes(m) >= 1);
    // The server's own view: cdc's replication connection and its SQL connection are encrypted.
    let rows = c
        .query(
            "SELECT a.backend_type::text, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.datname = $1 AND a.application_name = 'cascade-cdc'",
            &[&name],
        )
        .await
        .unwrap();
    let seen: Vec<(String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert!(
        seen.iter().any(|(kind, ssl)| kind == "walsender" && *ssl),
        "the replication connection is not encrypted: {seen:?}"
    );
    assert!(
        seen.iter().all(|(_, ssl)| *ssl),
        "a connection of cdc is not encrypted: {seen:?}"
    );
    assert!(
        !cdc.log_text().contains("sslrootcert"),
        "{}",
        cdc.log_text()
    );
    drop(cdc);
    testkit::drop_slot(&s.source_url, &slot).await;

    // A CA that did not sign the server's certificate: exit 2 at once, naming the parameter.
    let wrong = format!(
        "{db_url}?sslmode=verify-full&sslrootcert={}",
        testkit::throwaway_ca().display()
    );
    let started = Instant::now();
    let (code, stderr) = run_cdc_to_exit(
        &[
            "--source-url",
            &wrong,
            "--kafka-brokers",
            &s.kafka,
            "--slot",
            &unique("cdc"),
            "--topic-prefix",
            &unique("tlsbad"),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains("sslrootcert") && stderr.contains("certificate"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(":cascade@"),
        "prints the password: {stderr}"
    );
}
