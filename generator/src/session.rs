//! The connection to the database: opened (and re-opened) with backoff while the server is
//! unreachable, the schema applied on request, and the next free ids read whenever it (re)connects.

use std::time::Duration;

use shared::backoff::Backoff;
use shared::service::error_chain;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;

use crate::config::DatabaseUrl;
use crate::error::Error;
use crate::rows::Ids;

/// `main-db/schema.sql`, applied by `--schema`.
pub const SCHEMA: &str = include_str!("../../main-db/schema.sql");

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An open connection with the ids to use next.
pub struct Session {
    url: DatabaseUrl,
    max_backoff: Duration,
    pub client: Client,
    pub ids: Ids,
    /// Connections lost and re-opened so far.
    pub reconnects: u64,
}

impl Session {
    /// Connects, waiting with backoff while the server cannot be reached; `None` if `cancel` fired
    /// first. Errors that waiting cannot fix (a wrong password, a missing database) are returned.
    pub async fn open(
        url: &DatabaseUrl,
        max_backoff: Duration,
        cancel: &CancellationToken,
    ) -> Result<Option<Session>, Error> {
        let Some(client) = connect(url, max_backoff, cancel).await? else {
            return Ok(None);
        };
        Ok(Some(Session {
            url: url.clone(),
            max_backoff,
            client,
            ids: Ids::default(),
            reconnects: 0,
        }))
    }

    /// `host:port/database`, for messages.
    pub fn target(&self) -> String {
        self.url.target()
    }

    /// Re-opens the connection after `error` cut it, then reloads the ids (a transaction whose commit
    /// answer was lost may have committed). `false` if `cancel` fired first.
    pub async fn reconnect(
        &mut self,
        error: &Error,
        cancel: &CancellationToken,
    ) -> Result<bool, Error> {
        if !self.reopen(error, cancel).await? {
            return Ok(false);
        }
        self.load_ids().await?;
        Ok(true)
    }

    /// Re-opens the connection after `error` cut it. `false` if `cancel` fired first.
    pub async fn reopen(
        &mut self,
        error: &Error,
        cancel: &CancellationToken,
    ) -> Result<bool, Error> {
        tracing::warn!(database = %self.url, error = %error_chain(error), "lost the database connection; reconnecting");
        let Some(client) = connect(&self.url, self.max_backoff, cancel).await? else {
            return Ok(false);
        };
        self.client = client;
        self.reconnects += 1;
        Ok(true)
    }

    /// Applies `main-db/schema.sql` (idempotent).
    pub async fn apply_schema(&self) -> Result<(), Error> {
        self.client
            .batch_execute(SCHEMA)
            .await
            .map_err(Error::sql("apply main-db/schema.sql"))
    }

    /// Reads the next free id of every tenant table.
    pub async fn load_ids(&mut self) -> Result<(), Error> {
        let row = self
            .client
            .query_one(
                "SELECT (SELECT coalesce(max(id), 0) FROM public.organizations), \
                        (SELECT coalesce(max(id), 0) FROM public.users), \
                        (SELECT coalesce(max(id), 0) FROM public.subscriptions), \
                        (SELECT coalesce(max(id), 0) FROM public.invoices), \
                        (SELECT coalesce(max(id), 0) FROM public.events)",
                &[],
            )
            .await
            .map_err(|source| {
                if source.code() == Some(&SqlState::UNDEFINED_TABLE) {
                    Error::MissingSchema {
                        target: self.url.target(),
                        source,
                    }
                } else {
                    Error::sql("read the highest ids")(source)
                }
            })?;
        let next = |i: usize| {
            row.try_get::<_, i64>(i)
                .map(|v| v + 1)
                .map_err(Error::sql("read the highest ids"))
        };
        self.ids = Ids {
            organization: next(0)?,
            user: next(1)?,
            subscription: next(2)?,
            invoice: next(3)?,
            event: next(4)?,
        };
        Ok(())
    }
}

async fn connect(
    url: &DatabaseUrl,
    max_backoff: Duration,
    cancel: &CancellationToken,
) -> Result<Option<Client>, Error> {
    let target = url.target();
    let mut backoff = Backoff::new(Duration::from_millis(250), max_backoff);
    loop {
        let attempt = async {
            match tokio::time::timeout(CONNECT_TIMEOUT, url.pg_config().connect(NoTls)).await {
                Ok(Ok((client, connection))) => {
                    tokio::spawn(async move {
                        if let Err(error) = connection.await {
                            tracing::debug!(%error, "database connection ended");
                        }
                    });
                    Ok(client)
                }
                Ok(Err(source)) => Err(Error::Connect {
                    target: target.clone(),
                    source,
                }),
                Err(_) => Err(Error::ConnectTimeout {
                    target: target.clone(),
                    after: CONNECT_TIMEOUT,
                }),
            }
        };
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(None),
            result = attempt => result,
        };
        match result {
            Ok(client) => {
                tracing::info!(database = %target, "connected");
                return Ok(Some(client));
            }
            Err(error) if error.is_retryable() => {
                let delay = backoff.next_delay();
                tracing::warn!(
                    database = %target,
                    error = %error_chain(&error),
                    retry_in = ?delay,
                    "waiting for PostgreSQL to accept connections"
                );
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            Err(error) => return Err(error),
        }
    }
}
