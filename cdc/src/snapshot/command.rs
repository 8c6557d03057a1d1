//! `cdc snapshot`: asks the running cdc to copy a table (or part of it, or into one shard only) again,
//! by inserting a request into the source's `cascade.snapshot_requests`. The insert reaches cdc through
//! the WAL stream, in order, so the copy starts after every change committed before the request.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use shared::shards::ShardMap;
use shared::TableName;

use super::{reader, signal};
use crate::capture::slot::connect_sql;
use crate::config::SourceUrl;
use crate::error::CdcError;

/// Asks the running cdc to copy a table into Kafka again, consistently with the stream: after a
/// replica lost rows, for a replica added after Kafka's retention dropped the history, for a tenant
/// moved between shards. Prints the request's id; with --wait, waits until the copy is in Kafka.
#[derive(Debug, Clone, Parser)]
#[command(name = "cdc snapshot", version)]
pub struct SnapshotArgs {
    /// PostgreSQL source, as a URL: postgres://user:password@host:port/database. The password is
    /// never printed.
    #[arg(long, env = "CDC_SOURCE_URL", hide_env_values = true)]
    pub source_url: SourceUrl,

    /// The table to copy, as schema.table (schema `public` when omitted). It needs a primary key.
    #[arg(long)]
    pub table: String,

    /// Copy only the rows matching this SQL condition (e.g. "org_id = 42"); it runs on the source,
    /// inside a read-only transaction, as the cdc's user.
    #[arg(long = "where", value_name = "SQL")]
    pub where_clause: Option<String>,

    /// Publish the copy only to this shard's topic (rows of other shards are skipped).
    #[arg(long)]
    pub shard: Option<String>,

    /// The replication slot of the cdc that should do the copy.
    #[arg(long, env = "CDC_SLOT", default_value = "cascade")]
    pub slot: String,

    /// The routing file, to check the --shard name against.
    #[arg(long, env = "CASCADE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Wait until the copy is done (exit 0) or failed (exit 1).
    #[arg(long)]
    pub wait: bool,

    /// With --wait, give up after this long (the copy goes on).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub wait_timeout: Duration,
}

impl SnapshotArgs {
    /// The table named by --table.
    pub fn table(&self) -> Result<TableName, crate::config::ConfigError> {
        let t = self.table.trim();
        let (schema, name) = t.split_once('.').unwrap_or(("public", t));
        if schema.is_empty() || name.is_empty() {
            return Err(crate::config::ConfigError::new(
                "--table",
                format!("{:?} is not schema.table", self.table),
            ));
        }
        Ok(TableName::new(schema, name))
    }

    /// Checks --shard against the routing file, when one is given.
    pub fn check_shard(&self) -> Result<(), crate::config::ConfigError> {
        let (Some(shard), Some(path)) = (&self.shard, &self.config) else {
            return Ok(());
        };
        let map = ShardMap::load(path)?;
        if map.shards().iter().any(|s| s == shard) {
            Ok(())
        } else {
            Err(crate::config::ConfigError::new(
                "--shard",
                format!(
                    "no shard {shard:?} in {} (shards: {:?})",
                    path.display(),
                    map.shards()
                ),
            ))
        }
    }
}

pub async fn run(args: SnapshotArgs, table: TableName) -> Result<(), CdcError> {
    let target = args.source_url.target();
    let sql = connect_sql(&args.source_url, &target, Duration::from_secs(10)).await?;
    reader::pin_settings(&sql).await?;
    let refuse = |reason: String| CdcError::Snapshot(reason);
    let shape = reader::shape(&sql, &table)
        .await?
        .ok_or_else(|| refuse(format!("--table: table {table} does not exist on {target}")))?;
    if shape.pk.is_empty() {
        return Err(refuse(format!(
            "--table: table {table} has no primary key; cdc copies tables in key order and cannot copy it"
        )));
    }
    if let Some(w) = &args.where_clause {
        let probe = format!(
            "EXPLAIN SELECT 1 FROM {}.{} WHERE ({w})",
            postgres_protocol::escape::escape_identifier(&table.schema),
            postgres_protocol::escape::escape_identifier(&table.name)
        );
        if let Err(e) = sql.batch_execute(&probe).await {
            let why = e
                .as_db_error()
                .map(|d| d.message().to_owned())
                .unwrap_or_else(|| e.to_string());
            return Err(refuse(format!("--where: {why}")));
        }
    }
    signal::ensure(&sql).await.map_err(|e| {
        refuse(format!(
            "cannot create cascade.snapshot_requests ({}); run `cdc setup --apply` with a privileged account",
            shared::service::error_chain(&e)
        ))
    })?;
    let streaming: Option<bool> = sql
        .query_opt(
            "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
            &[&args.slot],
        )
        .await
        .map_err(|source| CdcError::SourceQuery {
            context: "looking up the replication slot",
            source,
        })?
        .map(|r| r.get(0));
    let id = signal::request(
        &sql,
        &args.slot,
        &table,
        args.where_clause.as_deref(),
        args.shard.as_deref(),
    )
    .await?;
    println!("snapshot request {id}: {table} for slot {:?}", args.slot);
    match streaming {
        Some(true) => {}
        Some(false) => println!(
            "no cdc is streaming from slot {:?} right now; the copy starts when one does",
            args.slot
        ),
        None => println!(
            "slot {:?} does not exist yet; the copy starts when a cdc with this slot streams",
            args.slot
        ),
    }
    if !args.wait {
        return Ok(());
    }
    let started = Instant::now();
    let mut last_rows = -1;
    loop {
        match signal::status(&sql, id).await? {
            Some((state, rows, _)) if state == "done" => {
                println!("snapshot request {id}: done, {rows} rows copied");
                return Ok(());
            }
            Some((state, _, error)) if state == "failed" || state == "superseded" => {
                return Err(refuse(format!(
                    "snapshot request {id} {state}: {}",
                    error.unwrap_or_default()
                )));
            }
            Some((_, rows, _)) if rows != last_rows => {
                last_rows = rows;
                println!("snapshot request {id}: {rows} rows copied so far");
            }
            None => return Err(refuse(format!("snapshot request {id} disappeared"))),
            Some(_) => {}
        }
        if started.elapsed() >= args.wait_timeout {
            return Err(refuse(format!(
                "snapshot request {id} not done after {}; it goes on (see cascade.snapshot_requests)",
                humantime::format_duration(args.wait_timeout)
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(table: &str) -> SnapshotArgs {
        SnapshotArgs::try_parse_from([
            "cdc snapshot",
            "--source-url",
            "postgres://u@h/db",
            "--table",
            table,
        ])
        .unwrap()
    }

    #[test]
    fn tables_are_schema_qualified() {
        assert_eq!(args("s.t").table().unwrap(), TableName::new("s", "t"));
        assert_eq!(args("t").table().unwrap(), TableName::new("public", "t"));
        let e = args(".t").table().unwrap_err();
        assert!(e.to_string().contains("--table"), "{e}");
    }
}
