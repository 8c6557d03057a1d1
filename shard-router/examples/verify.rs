//! Compares every table of a source schema with its copy in each replica and prints a table: rows on
//! the source, rows on each replica, and whether the contents are equal (values normalised by type,
//! see `testkit::compare`). Exits 1 when a replica differs. Used by `scripts/demo.sh`.
//!
//! `cargo run -p shard-router --example verify -- --source postgres://… --replica mysql://… --replica sqlite://…`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::ExitCode;

use clap::Parser;
use testkit::compare::{diff, replica_rows, source_rows, Engine};

#[derive(Parser)]
struct Args {
    /// The source database.
    #[arg(long)]
    source: String,
    /// A replica database (repeat for several).
    #[arg(long = "replica", required = true)]
    replicas: Vec<String>,
    /// Treat NaN/±Infinity on the source as NULL on the replica (Debian's wal2json 2.5 prints them as null).
    #[arg(long)]
    nan_as_null: bool,
}

fn label(url: &str) -> String {
    let scheme = url.split_once("://").map_or("?", |(s, _)| s);
    let db = url.rsplit('/').next().unwrap_or("").trim_end_matches(".db");
    format!("{scheme}:{db}")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let source = testkit::connect(&args.source).await;
    let tables: Vec<String> = source
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
            &[],
        )
        .await
        .expect("list source tables")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let labels: Vec<String> = args.replicas.iter().map(|u| label(u)).collect();
    let width = tables.iter().map(String::len).max().unwrap_or(5).max(5);
    print!("{:<width$}  {:>8}", "table", "source");
    for l in &labels {
        print!("  {:>24}", l);
    }
    println!();
    let mut all_equal = true;
    for table in &tables {
        let want = source_rows(&source, table, args.nan_as_null).await;
        print!("{:<width$}  {:>8}", table, want.len());
        for url in &args.replicas {
            let engine = Engine::of_url(url)
                .expect("replica URL scheme: mysql://, sqlite:// or postgres://");
            let got = replica_rows(engine, url, &source, table).await;
            let cell = match (&got, diff(&want, got.as_ref())) {
                (None, _) => "missing".to_owned(),
                (Some(rows), None) => format!("{} equal", rows.len()),
                (Some(rows), Some(_)) => format!("{} DIFFERENT", rows.len()),
            };
            all_equal &= cell.ends_with("equal");
            print!("  {:>24}", cell);
        }
        println!();
    }
    if all_equal {
        println!("\nevery replica equals the source, row for row and value for value");
        ExitCode::SUCCESS
    } else {
        println!("\nat least one replica differs from the source");
        ExitCode::FAILURE
    }
}
