//! `cdc setup`: a checklist of what the source needs before cdc can stream from it — `wal_level`,
//! wal2json loadable, free replication slots and WAL senders, the replica identity of every sharded
//! table — each item ok or needing a fix, with the exact statement. With `--apply` it runs the
//! statements it can: `ALTER TABLE … REPLICA IDENTITY FULL` (effective at once) and `ALTER SYSTEM`
//! for settings (followed by `pg_reload_conf()`; a setting that needs a restart says so).
//!
//! Exit code: 0 when every item is ok (after `--apply`'s changes), 1 when something still needs
//! fixing (a restart included) or could not be checked, 2 for invalid arguments or routing file.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use shared::shards::ShardMap;
use tokio_postgres::Client;

use crate::capture::slot::{connect_sql, plugin_problem};
use crate::config::SourceUrl;
use crate::error::CdcError;
use crate::replica_identity;

/// Checks what the PostgreSQL source needs for cdc (wal_level = logical, wal2json loadable, free
/// replication slots and WAL senders, replica identities that carry each sharded table's shard key,
/// the snapshot requests table) and prints each item as ok or with the statement that fixes it. Exits 0 when everything is in
/// place, 1 otherwise.
#[derive(Debug, Clone, Parser)]
#[command(name = "cdc setup", version)]
pub struct SetupArgs {
    /// PostgreSQL source, as a URL: postgres://user:password@host:port/database. The password is
    /// never printed.
    #[arg(long, env = "CDC_SOURCE_URL", hide_env_values = true)]
    pub source_url: SourceUrl,

    /// The routing file shared with cdc and the routers: its sharded tables are checked.
    #[arg(long, env = "CASCADE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Make the changes it can: ALTER TABLE … REPLICA IDENTITY FULL, and ALTER SYSTEM for settings
    /// (then pg_reload_conf(); settings that need a restart are reported as such).
    #[arg(long)]
    pub apply: bool,
}

impl SetupArgs {
    pub fn shard_map(&self) -> Result<ShardMap, crate::config::ConfigError> {
        match &self.config {
            Some(path) => ShardMap::load(path),
            None => Ok(ShardMap::single()),
        }
    }
}

/// Where an item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Fixed by `--apply`, effective now.
    Fixed,
    /// Changed by `--apply`, effective after a restart of PostgreSQL.
    RestartNeeded,
    NeedsFixing,
    /// Could not be checked (the detail says why).
    NotChecked,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Fixed => "fixed",
            Status::RestartNeeded => "restart needed",
            Status::NeedsFixing => "needs fixing",
            Status::NotChecked => "not checked",
        }
    }

    pub fn is_done(self) -> bool {
        matches!(self, Status::Ok | Status::Fixed)
    }
}

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub status: Status,
    pub subject: String,
    pub detail: String,
    /// The statement that fixes it (run by `--apply` where it can).
    pub fix: Option<Fix>,
}

/// A statement, and what it takes to become effective.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fix {
    pub sql: String,
    pub restart: bool,
    /// What the checklist prints instead of `sql`, when that is too long to read there.
    pub shown: Option<&'static str>,
}

impl Fix {
    fn text(&self) -> &str {
        self.shown.unwrap_or(&self.sql)
    }
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] {}: {}",
            self.status.label(),
            self.subject,
            self.detail
        )?;
        if let Some(fix) = &self.fix {
            match self.status {
                Status::NeedsFixing => {
                    write!(f, "\n      fix: {}", fix.text())?;
                    if fix.restart {
                        write!(f, " then restart PostgreSQL")?;
                    }
                }
                Status::Fixed => write!(f, "\n      ran: {}", fix.text())?,
                Status::RestartNeeded => write!(
                    f,
                    "\n      ran: {}; restart PostgreSQL to make it effective",
                    fix.text()
                )?,
                Status::Ok | Status::NotChecked => {}
            }
        }
        Ok(())
    }
}

fn item(status: Status, subject: &str, detail: impl Into<String>, fix: Option<Fix>) -> Item {
    Item {
        status,
        subject: subject.to_owned(),
        detail: detail.into(),
        fix,
    }
}

fn alter_system(name: &str, value: &str, restart: bool) -> Option<Fix> {
    Some(Fix {
        sql: format!("ALTER SYSTEM SET {name} = '{}';", value.replace('\'', "''")),
        restart,
        shown: None,
    })
}

/// `wal_level`. Pure.
pub fn wal_level(setting: &str) -> Item {
    if setting == "logical" {
        item(Status::Ok, "wal_level", "logical", None)
    } else {
        item(
            Status::NeedsFixing,
            "wal_level",
            format!("is {setting}; logical decoding needs logical"),
            alter_system("wal_level", "logical", true),
        )
    }
}

/// A server limit of which cdc needs one more than is in use. Pure.
pub fn capacity(name: &str, max: i64, used: i64) -> Item {
    if max - used >= 1 {
        item(Status::Ok, name, format!("{max} ({used} in use)"), None)
    } else {
        let wanted = (used + 4).max(10);
        item(
            Status::NeedsFixing,
            name,
            format!("{max} with {used} in use: none free for cdc"),
            alter_system(name, &wanted.to_string(), true),
        )
    }
}

/// `output_plugin_libraries` (PostgreSQL 15.19 and the releases of the same date on): `None` when the
/// server has no such setting. Pure.
pub fn plugin_libraries(setting: Option<(&str, &str)>) -> Item {
    let subject = "output_plugin_libraries";
    let Some((value, context)) = setting else {
        return item(
            Status::Ok,
            subject,
            "not a setting of this server: any installed output plugin may be used",
            None,
        );
    };
    if value.split(',').any(|p| p.trim() == "wal2json") {
        return item(
            Status::Ok,
            subject,
            format!("'{value}' includes wal2json"),
            None,
        );
    }
    let wanted = if value.trim().is_empty() {
        "pgoutput, wal2json".to_owned()
    } else {
        format!("{value}, wal2json")
    };
    item(
        Status::NeedsFixing,
        subject,
        format!("'{value}' does not include wal2json"),
        alter_system(subject, &wanted, context == "postmaster"),
    )
}

/// The replica identity of each sharded table. Pure.
pub fn identities(report: &replica_identity::Report) -> Vec<Item> {
    let mut items = Vec::new();
    for (table, key, how) in &report.ok {
        items.push(item(
            Status::Ok,
            table,
            format!("shard key {key} is in every update and delete ({how})"),
            None,
        ));
    }
    for gap in &report.gaps {
        items.push(item(
            Status::NeedsFixing,
            &gap.table,
            format!("shard key {}: {}", gap.shard_key, gap.reason),
            Some(Fix {
                sql: gap.fix(),
                restart: false,
                shown: None,
            }),
        ));
    }
    for table in &report.missing {
        items.push(item(
            Status::Ok,
            table,
            "not on the source yet: nothing to check (run setup again once it exists)",
            None,
        ));
    }
    items
}

/// Runs `cdc setup`: prints the checklist; an error (exit 1) when anything is not done.
pub async fn run(args: SetupArgs, shards: ShardMap) -> Result<(), CdcError> {
    let target = args.source_url.target();
    let client = connect_sql(&args.source_url, &target, Duration::from_secs(10)).await?;
    let q = |context| move |source| CdcError::SourceQuery { context, source };
    let version: String = client
        .query_one("SHOW server_version", &[])
        .await
        .map_err(q("reading server_version"))?
        .get(0);
    println!("cdc setup for {target} (PostgreSQL {version})");

    let wal = wal_level(&setting(&client, "wal_level").await?.unwrap_or_default().0);
    let logical = wal.status == Status::Ok;
    let mut items = vec![wal];
    let slots_used: i64 = client
        .query_one("SELECT count(*) FROM pg_replication_slots", &[])
        .await
        .map_err(q("counting replication slots"))?
        .get(0);
    let senders_used: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'",
            &[],
        )
        .await
        .map_err(q("counting WAL senders"))?
        .get(0);
    for (name, used) in [
        ("max_replication_slots", slots_used),
        ("max_wal_senders", senders_used),
    ] {
        let max = setting(&client, name)
            .await?
            .and_then(|(v, _)| v.parse::<i64>().ok())
            .unwrap_or(0);
        items.push(capacity(name, max, used));
    }
    let libraries = setting(&client, "output_plugin_libraries").await?;
    items.push(plugin_libraries(
        libraries.as_ref().map(|(v, c)| (v.as_str(), c.as_str())),
    ));
    items.push(probe_wal2json(&client, logical).await);
    let report = replica_identity::inspect(&client, &shards).await?;
    items.extend(identities(&report));
    items.push(signal_table(
        crate::snapshot::signal::exists(&client).await?,
    ));
    items.push(schema_capture(crate::schema::installed(&client).await?));

    if args.apply {
        apply(&client, &mut items).await;
    }
    for item in &items {
        println!("{item}");
    }
    let remaining = items.iter().filter(|i| !i.status.is_done()).count();
    if remaining == 0 {
        println!("the source is ready for cdc");
        return Ok(());
    }
    if !args.apply
        && items
            .iter()
            .any(|i| i.status == Status::NeedsFixing && i.fix.is_some())
    {
        println!("run again with --apply to make the changes listed under fix:");
    }
    Err(CdcError::SetupIncomplete { remaining })
}

/// The snapshot requests table (`cascade.snapshot_requests`), which cdc needs for its initial snapshot
/// and for `cdc snapshot`.
pub fn signal_table(exists: bool) -> Item {
    let subject = "snapshot requests table";
    if exists {
        return item(
            Status::Ok,
            subject,
            "cascade.snapshot_requests exists",
            None,
        );
    }
    item(
        Status::NeedsFixing,
        subject,
        "cascade.snapshot_requests is missing: cdc creates it at start when its user may create a schema; \
         without it cdc cannot copy existing rows (--snapshot initial, cdc snapshot)",
        Some(Fix {
            sql: crate::snapshot::signal::CREATE.to_owned(),
            restart: false,
            shown: None,
        }),
    )
}

/// The event triggers that capture schema changes (see [`crate::schema`]).
pub fn schema_capture(installed: bool) -> Item {
    let subject = "schema-change capture";
    if installed {
        return item(
            Status::Ok,
            subject,
            "cascade's event triggers are installed: DDL reaches every replica in order",
            None,
        );
    }
    item(
        Status::NeedsFixing,
        subject,
        "cascade's event triggers are not installed: schema changes (DDL) will not reach the replicas; \
         cdc installs them at start when its user is a superuser, --apply does with this account",
        Some(Fix {
            sql: crate::schema::INSTALL.to_owned(),
            restart: false,
            shown: Some(
                "the cascade schema's functions, table cascade.table_defs and event triggers \
                 cascade_ddl_command_end, cascade_sql_drop, cascade_table_rewrite (needs a superuser)",
            ),
        }),
    )
}

/// `(setting, context)` from pg_settings, `None` if the server has no such setting.
async fn setting(client: &Client, name: &str) -> Result<Option<(String, String)>, CdcError> {
    let row = client
        .query_opt(
            "SELECT setting, context FROM pg_settings WHERE name = $1",
            &[&name],
        )
        .await
        .map_err(|source| CdcError::SourceQuery {
            context: "reading pg_settings",
            source,
        })?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// Loads wal2json for real: creates a temporary logical slot with it and drops it again.
async fn probe_wal2json(client: &Client, logical: bool) -> Item {
    let subject = "wal2json";
    if !logical {
        return item(
            Status::NotChecked,
            subject,
            "checked once wal_level is logical (loading it needs a logical slot)",
            None,
        );
    }
    let probe = format!("cascade_setup_probe_{}", std::process::id());
    let result = async {
        client
            .batch_execute("SET statement_timeout = '15s'")
            .await?;
        client
            .query_one(
                "SELECT pg_create_logical_replication_slot($1, 'wal2json', true)",
                &[&probe],
            )
            .await?;
        client
            .query_one("SELECT pg_drop_replication_slot($1)", &[&probe])
            .await?;
        client.batch_execute("RESET statement_timeout").await
    }
    .await;
    match result {
        Ok(()) => item(
            Status::Ok,
            subject,
            "loads (a temporary slot with it was created and dropped)",
            None,
        ),
        Err(e) => {
            let (code, message) = e
                .as_db_error()
                .map(|d| (d.code().code().to_owned(), d.message().to_owned()))
                .unwrap_or_else(|| (String::new(), e.to_string()));
            match plugin_problem(&code, &message) {
                Some(CdcError::PluginNotAllowed { .. }) => item(
                    Status::NeedsFixing,
                    subject,
                    format!("the server does not allow it: {message}; add it to output_plugin_libraries (above)"),
                    None,
                ),
                Some(_) => item(
                    Status::NeedsFixing,
                    subject,
                    format!("not installed: {message}; install it on the server (Debian/Ubuntu: the postgresql-15-wal2json package)"),
                    None,
                ),
                None => item(
                    Status::NotChecked,
                    subject,
                    format!("creating a temporary slot to load it failed: {message}"),
                    None,
                ),
            }
        }
    }
}

/// Runs the fixes of the items that need one; a failure leaves the item as it was, with the reason.
async fn apply(client: &Client, items: &mut [Item]) {
    let mut reload = false;
    for item in items.iter_mut() {
        let Some(fix) = item.fix.clone() else {
            continue;
        };
        if item.status != Status::NeedsFixing {
            continue;
        }
        match client.batch_execute(&fix.sql).await {
            Ok(()) => {
                reload |= fix.sql.starts_with("ALTER SYSTEM");
                item.status = if fix.restart {
                    Status::RestartNeeded
                } else {
                    Status::Fixed
                };
            }
            Err(e) => {
                let why = e
                    .as_db_error()
                    .map(|d| d.message().to_owned())
                    .unwrap_or_else(|| e.to_string());
                item.detail = format!("{}; --apply could not run the fix: {why}", item.detail);
            }
        }
    }
    if reload {
        if let Err(e) = client.batch_execute("SELECT pg_reload_conf()").await {
            tracing::warn!(error = %e, "pg_reload_conf() failed; reload PostgreSQL's configuration yourself");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_judged_with_their_fix() {
        assert_eq!(wal_level("logical").status, Status::Ok);
        let w = wal_level("replica");
        assert_eq!(w.status, Status::NeedsFixing);
        assert_eq!(
            w.to_string(),
            "[needs fixing] wal_level: is replica; logical decoding needs logical\n      fix: \
             ALTER SYSTEM SET wal_level = 'logical'; then restart PostgreSQL"
        );
        assert_eq!(capacity("max_wal_senders", 10, 3).status, Status::Ok);
        let c = capacity("max_replication_slots", 4, 4);
        assert_eq!(c.status, Status::NeedsFixing);
        assert_eq!(
            c.fix.unwrap().sql,
            "ALTER SYSTEM SET max_replication_slots = '10';"
        );
    }

    #[test]
    fn plugin_libraries_need_wal2json_where_the_setting_exists() {
        assert_eq!(plugin_libraries(None).status, Status::Ok);
        assert_eq!(
            plugin_libraries(Some(("pgoutput, wal2json", "sighup"))).status,
            Status::Ok
        );
        let i = plugin_libraries(Some(("pgoutput", "sighup")));
        assert_eq!(i.status, Status::NeedsFixing);
        assert_eq!(
            i.fix,
            Some(Fix {
                sql: "ALTER SYSTEM SET output_plugin_libraries = 'pgoutput, wal2json';".into(),
                restart: false,
                shown: None,
            })
        );
    }

    #[test]
    fn identity_gaps_print_their_statement() {
        let report = replica_identity::Report {
            ok: vec![("public.orgs".into(), "id".into(), "REPLICA IDENTITY FULL")],
            gaps: vec![replica_identity::Gap {
                table: "public.events".into(),
                shard_key: "org_id".into(),
                reason: "its replica identity is the primary key".into(),
            }],
            missing: vec![],
        };
        let items = identities(&report);
        assert_eq!(items[0].status, Status::Ok);
        let text = items[1].to_string();
        assert!(
            text.starts_with("[needs fixing] public.events: shard key org_id")
                && text.ends_with("fix: ALTER TABLE public.events REPLICA IDENTITY FULL;"),
            "{text}"
        );
        let mut fixed = items[1].clone();
        fixed.status = Status::Fixed;
        assert!(fixed
            .to_string()
            .ends_with("ran: ALTER TABLE public.events REPLICA IDENTITY FULL;"));
        assert!(Status::Fixed.is_done() && !Status::RestartNeeded.is_done());
    }
}
