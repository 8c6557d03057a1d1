//! TLS to the replicas, against the local services (their PostgreSQL and MariaDB speak TLS with
//! certificates from a throwaway CA, `CASCADE_CA_FILE`): routers that verify the servers'
//! certificates apply the changes, and the servers' own views show the routers' sessions encrypted; a
//! certificate from another CA stops the router at once (exit 2), naming the parameter.

use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::ConnectOptions;

use crate::support::*;

fn ca_file(s: &Services) -> &str {
    assert!(
        !s.ca_file.is_empty() && std::path::Path::new(&s.ca_file).is_file(),
        "CASCADE_CA_FILE is not set or missing: run scripts/services.sh up again (it makes the CA)"
    );
    &s.ca_file
}

async fn converge(source: &tokio_postgres::Client, target: &Target, table: &str, router: &Process) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let want = source_rows(source, table, false).await;
        let got = replica_rows(target.engine, &target.url, source, table).await;
        match diff(&want, got.as_ref()) {
            None => return,
            Some(d) if Instant::now() > deadline => panic!(
                "{table} did not converge on {:?}: {d}\nrouter log:\n{}",
                target.engine,
                router.log_text()
            ),
            Some(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

async fn mysql(url: &str) -> Result<sqlx::MySqlConnection, sqlx::Error> {
    sqlx::mysql::MySqlConnectOptions::from_str(url)?
        .connect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routers_verify_the_replicas_certificates_and_the_servers_see_encrypted_sessions() {
    let s = services();
    let ca = ca_file(&s).to_owned();
    let name = unique("tls");
    let source_url = testkit::create_pg_db(&s.source_url, &name).await;
    let source = connect(&source_url).await;
    source
        .batch_execute(
            "CREATE TABLE items (id integer PRIMARY KEY, note text); \
             INSERT INTO items SELECT g, 'row ' || g FROM generate_series(1, 50) g",
        )
        .await
        .unwrap();

    // PostgreSQL: verify-full against the throwaway CA; the application name finds the router's
    // sessions in pg_stat_activity.
    let pg = Target::create(&s, Engine::Postgres, &name).await;
    let pg_tls = Target {
        engine: Engine::Postgres,
        url: format!(
            "{}?sslmode=verify-full&sslrootcert={ca}&application_name={name}",
            pg.url
        ),
    };
    // MariaDB: a user the server lets in over TLS only (REQUIRE SSL), so every session the router
    // holds is encrypted by the server's own rule; VERIFY_CA against the throwaway CA.
    let my = Target::create(&s, Engine::MySql, &name).await;
    let mut admin = mysql(&s.mysql_url).await.expect("connect to MariaDB");
    for statement in [
        format!("CREATE USER '{name}'@'127.0.0.1' IDENTIFIED BY 'tls-only' REQUIRE SSL"),
        format!("GRANT ALL PRIVILEGES ON `{name}`.* TO '{name}'@'127.0.0.1'"),
    ] {
        sqlx::query(&statement).execute(&mut admin).await.unwrap();
    }
    let mut tls_url = url::Url::parse(&my.url).unwrap();
    tls_url.set_username(&name).unwrap();
    tls_url.set_password(Some("tls-only")).unwrap();
    let plain_url = tls_url.to_string();
    tls_url.set_query(Some(&format!("ssl-mode=VERIFY_CA&ssl-ca={ca}")));
    let my_tls = Target {
        engine: Engine::MySql,
        url: tls_url.to_string(),
    };

    let prefix = unique("tls");
    let cdc = start_cdc(&s, &source_url, &name, &prefix);
    let mut pg_router = start_router(&s, &pg_tls, &prefix, &[]);
    let mut my_router = start_router(&s, &my_tls, &prefix, &[]);
    pg_router.wait_ready(Duration::from_secs(60));
    my_router.wait_ready(Duration::from_secs(60));
    converge(&source, &pg, "items", &pg_router).await;
    converge(&source, &my, "items", &my_router).await;
    source
        .batch_execute("UPDATE items SET note = note || ' again' WHERE id % 3 = 0")
        .await
        .unwrap();
    converge(&source, &pg, "items", &pg_router).await;
    converge(&source, &my, "items", &my_router).await;

    // PostgreSQL's view: every session of the router is encrypted.
    let replica_server = connect(&s.replica_pg_url).await;
    let row = replica_server
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl), \
             min(s.version) FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid \
             WHERE a.application_name = $1",
            &[&name],
        )
        .await
        .unwrap();
    let (encrypted, plain): (i64, i64) = (row.get(0), row.get(1));
    let version: Option<String> = row.get(2);
    assert!(
        encrypted >= 1 && plain == 0,
        "the router's PostgreSQL sessions: {encrypted} encrypted, {plain} in clear"
    );
    assert!(
        version.as_deref().is_some_and(|v| v.starts_with("TLSv1.")),
        "TLS version {version:?}"
    );

    // MariaDB's view: the router holds sessions as the TLS-only user, and the server refuses that
    // user in clear.
    let sessions: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ?")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert!(sessions >= 1, "the router holds no MariaDB session");
    match mysql(&format!("{plain_url}?ssl-mode=DISABLED")).await {
        Err(sqlx::Error::Database(e)) => {
            assert!(e.message().contains("Access denied"), "{e}")
        }
        Err(e) => panic!("a plaintext login should be refused by the server: {e}"),
        Ok(_) => panic!("MariaDB let the TLS-only user in without TLS"),
    }
    assert_no_partition_stopped(&[pg_router, my_router]);
    drop(cdc);
    testkit::drop_slot(&s.source_url, &name).await;
    let _ = sqlx::query(&format!("DROP USER '{name}'@'127.0.0.1'"))
        .execute(&mut admin)
        .await;
}

/// Runs a router against `replica_url` until it exits (it must within 30 s); returns its stderr.
fn router_exit(s: &Services, replica_url: &str) -> (i32, String, Duration) {
    let started = Instant::now();
    let (code, err) = testkit::run_to_exit(
        router_bin(),
        &[
            "--kafka-brokers",
            &s.kafka,
            "--replica-url",
            replica_url,
            "--http-addr",
            "127.0.0.1:0",
            "--max-backoff",
            "1s",
        ],
        Duration::from_secs(30),
    );
    (code, err, started.elapsed())
}

#[test]
fn a_certificate_from_another_ca_stops_the_router_with_exit_2_naming_the_parameter() {
    let s = services();
    let _ = ca_file(&s);
    let other = testkit::throwaway_ca();
    let other = other.display();

    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={other}",
        s.replica_pg_url
    );
    let (code, err, took) = router_exit(&s, &url);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--replica-url/ROUTER_REPLICA_URL") && err.contains("sslrootcert"),
        "{err}"
    );
    assert!(err.contains("certificate verify failed"), "{err}");
    assert!(
        !err.contains(":cascade@"),
        "the password was printed: {err}"
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");

    let url = format!("{}?ssl-mode=VERIFY_CA&ssl-ca={other}", s.mysql_url);
    let (code, err, _) = router_exit(&s, &url);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--replica-url/ROUTER_REPLICA_URL") && err.contains("ssl-ca"),
        "{err}"
    );
    assert!(err.contains("certificate verify failed"), "{err}");

    // A CA file that is not there is named too (not mistaken for an unreachable server).
    let url = format!(
        "{}?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem",
        s.replica_pg_url
    );
    let (code, err, _) = router_exit(&s, &url);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("sslrootcert: cannot read /nonexistent/ca.pem"),
        "{err}"
    );
}

#[test]
fn kafka_properties_reach_the_routers_kafka_clients() {
    // The local broker speaks plaintext only: a router told to use TLS to it cannot reach it, which
    // shows the property reached its clients (without it, the same router finds the broker).
    let s = services();
    let dir = std::env::temp_dir().join(unique("tls_kafka"));
    std::fs::create_dir_all(&dir).unwrap();
    let target = Target {
        engine: Engine::Sqlite,
        url: format!("sqlite://{}/r.db", dir.display()),
    };
    let prefix = unique("tls_kafka");
    let router = start_router(
        &s,
        &target,
        &prefix,
        &[
            "-X",
            "security.protocol=SSL",
            "-X",
            &format!("ssl.ca.location={}", ca_file(&s)),
        ],
    );
    wait_for(
        Duration::from_secs(45),
        "the router to report that the broker cannot be reached over TLS",
        || {
            router
                .log_text()
                .contains("BrokerTransportFailure")
                .then_some(())
        },
    );
    drop(router);
    let plain = start_router(&s, &target, &prefix, &[]);
    wait_for(
        Duration::from_secs(30),
        "the router without -X to reach the broker (and wait for its topic)",
        || {
            plain
                .log_text()
                .contains("the topic does not exist yet")
                .then_some(())
        },
    );
    assert!(
        !plain.log_text().contains("BrokerTransportFailure"),
        "{}",
        plain.log_text()
    );
}
