//! Checks of the source before streaming: `wal_level`, the slot and its plugin. Uses an ordinary
//! tokio-postgres connection.

use std::time::Duration;

use shared::Lsn;
use tokio_postgres::Client;

use crate::error::CdcError;

/// The slot cdc streams from.
#[derive(Debug, Clone)]
pub struct SlotState {
    /// The slot was created by this session.
    pub created: bool,
    /// Where streaming resumes.
    pub confirmed_flush: Option<Lsn>,
}

/// What the preflight found: the server, and the slot if it exists (checked usable).
#[derive(Debug, Clone)]
pub struct Preflight {
    pub server_version: String,
    pub slot: Option<SlotState>,
}

/// Connects with a plain SQL session.
pub async fn connect_sql(
    url: &shared::config::PgUrl,
    target: &str,
    timeout: Duration,
) -> Result<Client, CdcError> {
    let mut config = url.pg_config().clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(timeout);
    }
    if config.get_application_name().is_none() {
        config.application_name("cascade-cdc");
    }
    let tls = super::tls::make_tls_connect(url.tls())?;
    let (client, connection) = config
        .connect(tls)
        .await
        .map_err(|source| classify_connect(source, target, url.tls()))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "sql connection to the source ended");
        }
    });
    Ok(client)
}

fn classify_connect(
    source: tokio_postgres::Error,
    target: &str,
    tls: &shared::config::PgTls,
) -> CdcError {
    // tokio-postgres reports TLS failures in its message; the configuration's fault stops cdc.
    let text = shared::service::error_chain(&source);
    if text.contains("TLS") || text.contains("certificate") {
        if let Some(fault) = super::tls::configuration_fault(tls, &text) {
            return fault;
        }
    }
    if let Some(db) = source.as_db_error() {
        let code = db.code().code();
        if code == "28P01" || code == "28000" {
            return CdcError::Auth(db.message().to_owned());
        }
        return CdcError::Server {
            context: "a SQL connection",
            message: db.message().to_owned(),
            code: code.to_owned(),
        };
    }
    CdcError::SourceUnreachable {
        target: target.to_owned(),
        source: std::io::Error::other(source),
    }
}

/// Checks `wal_level`, then finds `slot` and checks that cdc can stream from it. Never creates, drops
/// or re-creates a slot: whether a missing slot may be created is [`crate::origin`]'s decision.
pub async fn inspect(client: &Client, slot: &str) -> Result<Preflight, CdcError> {
    let q = |context| move |source| CdcError::SourceQuery { context, source };
    let server_version: String = client
        .query_one("SHOW server_version", &[])
        .await
        .map_err(q("reading server_version"))?
        .get(0);
    let wal_level: String = client
        .query_one("SHOW wal_level", &[])
        .await
        .map_err(q("reading wal_level"))?
        .get(0);
    if wal_level != "logical" {
        return Err(CdcError::WalLevel { actual: wal_level });
    }
    let row = client
        .query_opt(
            "SELECT s.plugin, s.slot_type, d.datname = current_database(), s.database::text, \
                    s.wal_status, s.confirmed_flush_lsn::text \
             FROM pg_replication_slots s LEFT JOIN pg_database d ON d.oid = s.datoid \
             WHERE s.slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(q("looking up the replication slot"))?;
    let Some(row) = row else {
        return Ok(Preflight {
            server_version,
            slot: None,
        });
    };
    let plugin: Option<String> = row.get(0);
    let slot_type: String = row.get(1);
    let same_db: Option<bool> = row.get(2);
    let database: Option<String> = row.get(3);
    let wal_status: Option<String> = row.get(4);
    let confirmed: Option<String> = row.get(5);
    let unusable = |reason: String, fix| CdcError::SlotUnusable {
        slot: slot.to_owned(),
        reason,
        fix,
    };
    if slot_type != "logical" {
        return Err(unusable(
            format!("it is a {slot_type} slot"),
            "choose another --slot name, or drop the slot if nothing else uses it",
        ));
    }
    if plugin.as_deref() != Some("wal2json") {
        return Err(unusable(
            format!("it uses the {} output plugin, not wal2json", plugin.as_deref().unwrap_or("unknown")),
            "choose another --slot name, or drop the slot (SELECT pg_drop_replication_slot('<slot>')) if nothing else uses it",
        ));
    }
    if same_db != Some(true) {
        return Err(unusable(
            format!(
                "it belongs to another database ({})",
                database.as_deref().unwrap_or("unknown")
            ),
            "choose another --slot name or point --source-url at that database",
        ));
    }
    if wal_status.as_deref() == Some("lost") {
        return Err(unusable(
            "it has been invalidated (wal_status = lost: the WAL it needed was removed, e.g. by max_slot_wal_keep_size), so changes were lost".to_owned(),
            "drop it, create a new one and re-seed the replicas; cdc never re-creates a slot by itself",
        ));
    }
    let confirmed_flush = confirmed.and_then(|s| s.parse::<Lsn>().ok());
    Ok(Preflight {
        server_version,
        slot: Some(SlotState {
            created: false,
            confirmed_flush,
        }),
    })
}

/// Creates `slot` with wal2json, returning where it starts.
pub async fn create(client: &Client, slot: &str) -> Result<SlotState, CdcError> {
    let result = client
        .query_one(
            "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'wal2json')",
            &[&slot],
        )
        .await;
    match result {
        Ok(row) => {
            let lsn: String = row.get(0);
            tracing::info!(slot, lsn = %lsn, "created replication slot with the wal2json plugin");
            Ok(SlotState {
                created: true,
                confirmed_flush: lsn.parse().ok(),
            })
        }
        Err(source) => Err(classify_plugin_error(
            source,
            "creating the replication slot",
        )),
    }
}

/// Maps the errors PostgreSQL gives when wal2json cannot be loaded to errors that name the fix.
pub fn classify_plugin_error(source: tokio_postgres::Error, context: &'static str) -> CdcError {
    if let Some(db) = source.as_db_error() {
        if let Some(e) = plugin_problem(db.code().code(), db.message()) {
            return e;
        }
    }
    CdcError::SourceQuery { context, source }
}

/// Recognises "wal2json is missing" and "wal2json is not allowed" from a server error.
pub fn plugin_problem(code: &str, message: &str) -> Option<CdcError> {
    if message.contains("may not be used as an output plugin") {
        return Some(CdcError::PluginNotAllowed {
            message: message.to_owned(),
        });
    }
    if code == "58P01"
        || (message.contains("could not access file") && message.contains("wal2json"))
    {
        return Some(CdcError::PluginMissing {
            message: message.to_owned(),
        });
    }
    None
}

/// The slot's holder, when another process streams from it.
pub async fn active_pid(client: &Client, slot: &str) -> Option<i32> {
    client
        .query_opt(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1 AND active",
            &[&slot],
        )
        .await
        .ok()
        .flatten()
        .and_then(|r| r.get::<_, Option<i32>>(0))
}

/// `pg_current_wal_lsn()` and the WAL the slot retains, for the lag metrics.
/// The server's WAL positions as the lag gauges need them: its current WAL position, and the slot's
/// `confirmed_flush_lsn` and `restart_lsn` (None when the slot does not exist).
pub struct WalPositions {
    pub current: Lsn,
    pub confirmed: Option<Lsn>,
    pub restart: Option<Lsn>,
}

pub async fn wal_positions(client: &Client, slot: &str) -> Result<WalPositions, CdcError> {
    let row = client
        .query_one(
            "SELECT pg_current_wal_lsn()::text, \
                    (SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1), \
                    (SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = $1)",
            &[&slot],
        )
        .await
        .map_err(|source| CdcError::SourceQuery {
            context: "reading WAL positions",
            source,
        })?;
    let current: String = row.get(0);
    let confirmed: Option<String> = row.get(1);
    let restart: Option<String> = row.get(2);
    let current = current
        .parse()
        .map_err(|_| CdcError::Protocol(format!("unreadable pg_current_wal_lsn {current:?}")))?;
    Ok(WalPositions {
        current,
        confirmed: confirmed.and_then(|c| c.parse().ok()),
        restart: restart.and_then(|r| r.parse().ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_plugin_problems() {
        assert!(matches!(
            plugin_problem(
                "58P01",
                "could not access file \"wal2json\": No such file or directory"
            ),
            Some(CdcError::PluginMissing { .. })
        ));
        assert!(matches!(
            plugin_problem(
                "42501",
                "library \"wal2json\" may not be used as an output plugin"
            ),
            Some(CdcError::PluginNotAllowed { .. })
        ));
        assert!(plugin_problem("42P01", "relation does not exist").is_none());
    }
}
