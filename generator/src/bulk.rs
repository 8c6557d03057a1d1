//! Bulk mode: N organizations, each inserted with all its rows in one transaction of batched
//! multi-row `INSERT`s.

use std::time::Duration;

use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::progress::Progress;
use crate::session::Session;
use crate::sql::{insert, Statement};
use crate::tenant::Tenant;

/// How long one organization's transaction may take before the connection is considered dead.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(120);

/// How a bulk run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub organizations: u64,
    pub rows: u64,
    /// SIGTERM/SIGINT stopped it early.
    pub interrupted: bool,
}

/// Inserts `count` organizations after the highest existing id. A lost connection is re-opened and
/// the organization retried; if its commit had gone through before the cut (its id now exists), it
/// is not written twice.
pub async fn run(
    session: &mut Session,
    seed: u64,
    count: u64,
    cancel: &CancellationToken,
) -> Result<Outcome, Error> {
    let mut progress = Progress::new("bulk");
    let mut done = 0;
    while done < count {
        let first_id = session.ids.organization;
        let mut ids = session.ids.clone();
        let tenant = Tenant::generate(seed, &mut ids);
        let what = format!("insert organization {first_id}");
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            r = tokio::time::timeout(TRANSACTION_TIMEOUT, write(&mut session.client, &tenant, &what)) => {
                r.unwrap_or_else(|_| Err(Error::Timeout { what: what.clone(), after: TRANSACTION_TIMEOUT }))
            }
        };
        match result {
            Ok(()) => {
                session.ids = ids;
                done += 1;
                progress.committed(tenant.rows() as u64);
                progress.tick(&format!("{done}/{count} organizations, "));
            }
            Err(error) if error.is_retryable() => {
                if !session.reconnect(&error, cancel).await? {
                    break;
                }
                if session.ids.organization > first_id {
                    // The commit reached the server before the connection broke.
                    done += 1;
                    progress.committed(tenant.rows() as u64);
                }
            }
            Err(error) => return Err(error),
        }
    }
    let interrupted = done < count;
    let note = if interrupted { " (interrupted)" } else { "" };
    crate::progress::say(&progress.summary(&format!(", {done} organizations{note}")));
    Ok(Outcome {
        organizations: done,
        rows: progress.rows,
        interrupted,
    })
}

async fn write(client: &mut Client, tenant: &Tenant, what: &str) -> Result<(), Error> {
    let tx = client.transaction().await.map_err(Error::sql(what))?;
    let statements: Vec<Statement> = [
        insert(std::slice::from_ref(&tenant.organization)),
        insert(&tenant.users),
        insert(&tenant.subscriptions),
        insert(&tenant.invoices),
        insert(&tenant.events),
    ]
    .into_iter()
    .flatten()
    .collect();
    for statement in &statements {
        tx.execute(statement.sql.as_str(), &statement.refs())
            .await
            .map_err(Error::sql(what))?;
    }
    tx.commit().await.map_err(Error::sql(what))
}
