//! TLS to the source: cdc streams over a verified TLS connection (the server's own view says so), and
//! a CA that did not sign the server's certificate stops it at once, naming the parameter.

use std::time::{Duration, Instant};

use crate::support::*;

/// The throwaway CA of the local TLS-enabled servers: `CASCADE_CA_FILE`, as scripts/services.sh
/// writes it into target/services/env.
fn ca_file() -> String {
    if let Ok(path) = std::env::var("CASCADE_CA_FILE") {
        return path;
    }
    let env = testkit::repo_root().join("target/services/env");
    let text = std::fs::read_to_string(&env).expect("target/services/env (scripts/services.sh up)");
    text.lines()
        .find_map(|l| l.strip_prefix("export CASCADE_CA_FILE="))
        .map(|v| v.trim_matches('\'').to_owned())
        .expect("CASCADE_CA_FILE in target/services/env: the services do not speak TLS")
}

/// A CA of its own, which signed nothing the servers use.
fn other_ca(dir: &std::path::Path) -> String {
    let key = dir.join("other-ca.key");
    let cert = dir.join("other-ca.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
        ])
        .arg("/CN=not the cascade test CA")
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl could not make a CA");
    cert.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_streams_over_verified_tls_and_refuses_a_wrong_ca_at_once() {
    let s = services();
    let name = unique("tls");
    let db_url = create_db(&s, &name).await;
    let c = connect(&db_url).await;
    c.batch_execute("CREATE TABLE kv (k integer PRIMARY KEY, v text)")
        .await
        .unwrap();
    let ca = ca_file();
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
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    let wrong = format!(
        "{db_url}?sslmode=verify-full&sslrootcert={}",
        other_ca(&dir)
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
