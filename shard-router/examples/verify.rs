//! Compares every table of a source schema with its copy in each replica and prints a table: rows on
//! the source (the replica's shard's share of them), rows on each replica, and whether the contents
//! are equal (values normalised by type, see `testkit::compare`); then each replica's open dead
//! letters (events the router set aside with `--on-error dead-letter` and nobody replayed: the
//! replica lacks them). Exits 1 when a replica differs or holds an open dead letter. Used by
//! `scripts/demo.sh`.
//!
//! ```text
//! cargo run -p shard-router --example verify -- --source postgres://… \
//!     [--config routing.toml] --replica [SHARD=]mysql://… --replica [SHARD=]sqlite://…
//! ```
//! With a routing file each replica is `SHARD=URL` and holds that shard's rows of sharded tables,
//! every row of broadcast tables, and unlisted tables only on the default shard.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use serde_json::value::RawValue;
use shared::shards::{Placement, ShardMap};
use testkit::compare::{diff, open_dead_letters, replica_rows, source_rows_where, Engine};

#[derive(Parser)]
struct Args {
    /// The source database.
    #[arg(long)]
    source: String,
    /// The routing file; without it every replica holds every table.
    #[arg(long)]
    config: Option<PathBuf>,
    /// A replica database, `URL` or `SHARD=URL` (repeat for several).
    #[arg(long = "replica", required = true)]
    replicas: Vec<String>,
    /// Treat NaN/±Infinity on the source as NULL on the replica (Debian's wal2json 2.5 prints them as null).
    #[arg(long)]
    nan_as_null: bool,
}

struct Replica {
    shard: usize,
    url: String,
    engine: Engine,
    label: String,
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The SQL condition selecting a table's rows that belong on `shard` (`None`: not on this shard).
async fn share(
    source: &tokio_postgres::Client,
    map: &ShardMap,
    table: &str,
    shard: usize,
) -> Option<String> {
    let qualified = format!("public.{table}");
    match map.placement(&qualified) {
        Ok(Placement::Broadcast) => Some("true".into()),
        Ok(Placement::Default(s)) => (s == shard).then(|| "true".into()),
        Err(_) => None,
        Ok(Placement::ShardKey(column)) => {
            let numeric: bool = source
                .query_one(
                    "SELECT data_type IN ('smallint','integer','bigint','numeric','real','double precision') \
                     FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 AND column_name = $2",
                    &[&table, &column],
                )
                .await
                .map(|r| r.get(0))
                .unwrap_or(false);
            let ident = format!("\"{}\"", column.replace('"', "\"\""));
            let keys: Vec<Option<String>> = source
                .query(
                    &format!("SELECT DISTINCT {ident}::text FROM public.\"{table}\""),
                    &[],
                )
                .await
                .expect("read shard keys")
                .iter()
                .map(|r| r.get(0))
                .collect();
            let mut mine = Vec::new();
            let mut nulls = false;
            for key in keys {
                let raw = match &key {
                    None => "null".to_owned(),
                    Some(k) if numeric => k.clone(),
                    Some(k) => serde_json::to_string(k).unwrap(),
                };
                let raw = RawValue::from_string(raw).unwrap();
                if map.shard_of(&qualified, &column, &raw).ok() == Some(shard) {
                    match key {
                        Some(k) => mine.push(quote_literal(&k)),
                        None => nulls = true,
                    }
                }
            }
            let mut cond = if mine.is_empty() {
                "false".to_owned()
            } else {
                format!("{ident}::text IN ({})", mine.join(", "))
            };
            if nulls {
                cond = format!("({cond} OR {ident} IS NULL)");
            }
            Some(cond)
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let map = match &args.config {
        Some(path) => ShardMap::load(path).unwrap_or_else(|e| panic!("{e}")),
        None => ShardMap::single(),
    };
    let replicas: Vec<Replica> = args
        .replicas
        .iter()
        .map(|r| {
            let (shard, url) = match r.split_once('=') {
                Some((s, u)) if !s.contains("://") => (s.to_owned(), u.to_owned()),
                _ => (map.shards()[0].clone(), r.clone()),
            };
            let index = map
                .shard_index(&shard)
                .unwrap_or_else(|| panic!("shard {shard:?} is not in the routing file"));
            let engine =
                Engine::of_url(&url).expect("replica URL: mysql://, sqlite:// or postgres://");
            let db = url.rsplit('/').next().unwrap_or("").trim_end_matches(".db");
            let scheme = url.split_once("://").map_or("?", |(s, _)| s);
            let label = if args.config.is_some() {
                format!("{shard}:{scheme}")
            } else {
                format!("{scheme}:{db}")
            };
            Replica {
                shard: index,
                url,
                engine,
                label,
            }
        })
        .collect();
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
    let width = tables.iter().map(String::len).max().unwrap_or(5).max(5);
    print!("{:<width$}  {:>8}", "table", "source");
    for r in &replicas {
        print!("  {:>26}", r.label);
    }
    println!();
    let mut all_equal = true;
    for table in &tables {
        let all = source_rows_where(&source, table, "true", args.nan_as_null).await;
        print!("{:<width$}  {:>8}", table, all.len());
        for r in &replicas {
            let cell = match share(&source, &map, table, r.shard).await {
                None => "not on this shard".to_owned(),
                Some(filter) => {
                    let want = source_rows_where(&source, table, &filter, args.nan_as_null).await;
                    let got = replica_rows(r.engine, &r.url, &source, table).await;
                    match (&got, diff(&want, got.as_ref())) {
                        (None, _) => format!("missing (want {})", want.len()),
                        (Some(rows), None) => format!("{}/{} equal", rows.len(), want.len()),
                        (Some(rows), Some(_)) => format!("{}/{} DIFFERENT", rows.len(), want.len()),
                    }
                }
            };
            all_equal &= cell.ends_with("equal") || cell == "not on this shard";
            print!("  {:>26}", cell);
        }
        println!();
    }
    for r in &replicas {
        match open_dead_letters(r.engine, &r.url).await {
            Ok(open) if open.is_empty() => {}
            Ok(open) => {
                all_equal = false;
                println!(
                    "\n{}: {} open dead letter(s), events this replica lacks (shard-router replay-dlq applies them after a fix):",
                    r.label,
                    open.len()
                );
                for d in &open {
                    println!(
                        "  {} partition {} offset {} ({})",
                        d.topic, d.partition, d.offset, d.reason
                    );
                }
            }
            Err(e) => println!("\n{}: no dead letters read ({e})", r.label),
        }
    }
    if all_equal {
        println!("\nevery replica equals its share of the source, row for row and value for value");
        ExitCode::SUCCESS
    } else {
        println!("\nat least one replica differs from the source");
        ExitCode::FAILURE
    }
}
