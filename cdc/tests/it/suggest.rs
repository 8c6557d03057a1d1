//! `cdc suggest-transforms` against a real source: columns recognised by name and by sampled values,
//! primary keys kept apart, a section the routing file accepts, and no sampled value printed.

use std::time::Duration;

use crate::support::*;

#[tokio::test]
async fn suggests_rules_for_personal_data_and_never_prints_a_value() {
    let s = services();
    let name = unique("suggest");
    let url = create_db(&s, &name).await;
    let db = connect(&url).await;
    db.batch_execute(
        "CREATE TABLE customers (
             id integer PRIMARY KEY, email text, full_name text, phone_number text,
             born date, plan text, contact text, payment text, ssn text, seen_from inet);
         INSERT INTO customers VALUES
           (1, 'ada@corp.example', 'Ada L', '+44 20 7946 0958', '1815-12-10', 'pro',
            'ada.l@home.example', '4111 1111 1111 1111', '078-05-1120', '10.1.2.3'),
           (2, 'bob@corp.example', 'Bob M', '+44 20 7946 0959', '1990-01-01', 'free',
            'bob.m@home.example', '5500-0000-0000-0004', '219-09-9999', '10.1.2.4'),
           (3, 'cy@corp.example', 'Cy N', '+44 20 7946 0960', '1991-02-02', 'free',
            'cy.n@home.example', '340000000000009', '123-45-6789', '10.1.2.5');
         CREATE TABLE \"Sessions\" (token text PRIMARY KEY, plan text);
         INSERT INTO \"Sessions\" VALUES ('t1', 'x'), ('t2', 'y'), ('t3', 'z');
         CREATE TABLE plans (id integer PRIMARY KEY, name text);",
    )
    .await
    .unwrap();
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_cdc"))
            .args(["suggest-transforms", "--source-url", &url])
            .output(),
    )
    .await
    .expect("cdc suggest-transforms did not finish within 60s")
    .expect("cannot run cdc");
    let out = String::from_utf8(output.stdout).unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{out}\n{err}");
    for line in [
        "[tables.\"public.customers\".transform]",
        "email = \"fake-email\"",
        "full_name = \"fake-name\"",
        "phone_number = \"mask\"",
        "born = \"truncate-date\"",
        // Recognised from the values alone.
        "contact = \"fake-email\"",
        "payment = \"mask\"",
        "ssn = \"null\"",
        "seen_from = \"hash\"",
        // A credential in a primary key: only a rule that keeps keys apart.
        "[tables.\"public.Sessions\".transform]",
        "token = \"hash\"",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    for quiet in ["plan =", "id =", "public.plans"] {
        assert!(!out.contains(quiet), "unexpected {quiet:?} in:\n{out}");
    }
    for value in [
        "ada@corp.example",
        "4111",
        "078-05-1120",
        "10.1.2.3",
        "Ada L",
    ] {
        assert!(
            !out.contains(value),
            "a sampled value was printed: {value}\n{out}"
        );
    }
    // The section is a valid routing file as printed.
    let section: String = out
        .lines()
        .filter(|l| !l.starts_with("test:"))
        .collect::<Vec<_>>()
        .join("\n");
    let parsed =
        cdc::transform::Transforms::parse(&section, Some(cdc::transform::TransformKey::new("k")));
    assert!(parsed.is_ok(), "{parsed:?}\n{section}");
    assert!(shared::shards::ShardMap::parse(&section).is_ok());
}
