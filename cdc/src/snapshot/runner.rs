//! The snapshot runner: works through the requests of `cascade.snapshot_requests` one table at a time,
//! chunk by chunk, between watermarks (see [`super`]). One runner per streaming session, with a SQL
//! connection of its own; what it has not recorded as copied is copied again by the next session.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use shared::backoff::Backoff;
use shared::service::error_chain;
use tokio::sync::mpsc;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::reader::{self, Shape};
use super::signal::{self, Request};
use super::{Chunk, Event, Mark, Watermark, MESSAGE_PREFIX};
use crate::capture::slot;
use crate::error::CdcError;
use crate::metrics as m;

/// How often a table's progress is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the runner needs to know.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    pub source: crate::config::SourceUrl,
    pub target: String,
    pub slot: String,
    pub chunk_rows: usize,
    pub numeric_as_string: bool,
    /// The shard names, in shard order.
    pub shards: Vec<String>,
    /// The session's token prefix (see [`super::Coordinator`]).
    pub session: u64,
    pub max_backoff: Duration,
}

/// A chunk in Kafka.
struct ChunkDone {
    /// Rows published (the chunk's rows less those the stream changed between the watermarks).
    published: u64,
    /// Rows read.
    read: usize,
    /// Where the next chunk starts.
    last_key: Vec<String>,
}

/// Why a request cannot go on.
enum Stop {
    /// The request is wrong or the table cannot be copied: recorded as failed, the runner goes on.
    Failed(String),
    /// The connection or the server failed: reconnect and resume.
    Transient(CdcError),
    /// The session is ending.
    Cancelled,
}

impl From<CdcError> for Stop {
    fn from(e: CdcError) -> Self {
        Stop::Transient(e)
    }
}

pub struct Runner {
    settings: RunnerSettings,
    chunks: mpsc::Sender<Chunk>,
    events: mpsc::UnboundedReceiver<Event>,
    stop: CancellationToken,
    queue: VecDeque<i64>,
    next_token: u32,
}

impl Runner {
    pub fn new(
        settings: RunnerSettings,
        chunks: mpsc::Sender<Chunk>,
        events: mpsc::UnboundedReceiver<Event>,
        stop: CancellationToken,
    ) -> Self {
        Runner {
            settings,
            chunks,
            events,
            stop,
            queue: VecDeque::new(),
            next_token: 0,
        }
    }

    /// Runs until the session stops, reconnecting on its own when the source fails.
    pub async fn run(mut self) {
        let mut backoff = Backoff::new(Duration::from_millis(250), self.settings.max_backoff);
        loop {
            match self.session().await {
                Ok(()) => return,
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %error_chain(&error), retry_in = ?delay, "snapshot runner: waiting for PostgreSQL at {}", self.settings.target);
                    tokio::select! {
                        _ = self.stop.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    async fn session(&mut self) -> Result<(), CdcError> {
        let sql = slot::connect_sql(
            &self.settings.source,
            &self.settings.target,
            CONNECT_TIMEOUT,
        )
        .await?;
        reader::pin_settings(&sql).await?;
        if !signal::exists(&sql).await? {
            tracing::info!("no cascade.snapshot_requests table on the source: on-demand snapshots are off (cdc setup --apply creates it)");
            self.stop.cancelled().await;
            return Ok(());
        }
        let mut pending: VecDeque<i64> = signal::unfinished(&sql, &self.settings.slot)
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect();
        for id in self.queue.drain(..) {
            if !pending.contains(&id) {
                pending.push_back(id);
            }
        }
        self.queue = pending;
        loop {
            metrics::gauge!(m::SNAPSHOT_REQUESTS_PENDING).set(self.queue.len() as f64);
            let Some(&id) = self.queue.front() else {
                // Wait for a request to arrive through the stream.
                tokio::select! {
                    _ = self.stop.cancelled() => return Ok(()),
                    event = self.events.recv() => match event {
                        Some(Event::Requested(id)) => self.queue.push_back(id),
                        Some(_) => {}
                        None => return Ok(()),
                    },
                }
                continue;
            };
            let Some(request) = self.fetch(&sql, id).await? else {
                self.queue.pop_front();
                continue;
            };
            match self.copy(&sql, &request).await {
                Ok(()) => {
                    signal::finished(&sql, id, None).await?;
                    metrics::counter!(m::SNAPSHOT_TABLES, "result" => "done").increment(1);
                    self.queue.pop_front();
                }
                Err(Stop::Failed(reason)) => {
                    tracing::error!(request = id, table = %request.table, reason, "snapshot request failed; fix it and request the table again (cdc snapshot)");
                    signal::finished(&sql, id, Some(&reason)).await?;
                    metrics::counter!(m::SNAPSHOT_TABLES, "result" => "failed").increment(1);
                    metrics::gauge!(m::SNAPSHOT_ROWS_REMAINING, "table" => request.table.to_string()).set(0.0);
                    self.queue.pop_front();
                }
                Err(Stop::Transient(e)) => return Err(e),
                Err(Stop::Cancelled) => return Ok(()),
            }
        }
    }

    /// The request `id` if it is still to do. The stream can deliver a transaction a moment before
    /// its rows are visible to other sessions (the commit record is flushed, and so decoded, before
    /// the transaction leaves the server's proc array): a request not found yet is looked for again
    /// for a few seconds before it counts as gone.
    /// (Shutdown also ends the wait: the next session reads what is unfinished from the table.)
    async fn fetch(&self, sql: &Client, id: i64) -> Result<Option<Request>, CdcError> {
        for _ in 0..50 {
            if let Some(request) = signal::unfinished_one(sql, &self.settings.slot, id).await? {
                return Ok(Some(request));
            }
            if signal::exists_request(sql, id).await? {
                // Done, failed, superseded, or another slot's.
                return Ok(None);
            }
            tokio::select! {
                _ = self.stop.cancelled() => return Ok(None),
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        tracing::warn!(request = id, "a snapshot request announced by the stream is not in cascade.snapshot_requests: ignoring it");
        Ok(None)
    }

    fn token(&mut self) -> u64 {
        self.next_token = self.next_token.wrapping_add(1);
        (self.settings.session << 32) | u64::from(self.next_token)
    }

    /// Copies one request's rows, chunk after chunk, from where it left off.
    async fn copy(&mut self, sql: &Client, request: &Request) -> Result<(), Stop> {
        let shape = match reader::shape(sql, &request.table).await? {
            Some(shape) => shape,
            None => {
                return Err(Stop::Failed(format!(
                    "table {} does not exist",
                    request.table
                )))
            }
        };
        if shape.pk.is_empty() {
            if reader::is_empty(sql, &shape).await? {
                tracing::info!(request = request.id, table = %request.table, "nothing to copy: the table is empty");
                return Ok(());
            }
            return Err(Stop::Failed(format!(
                "table {} has no primary key: cdc copies a table in key order and reconciles it with the stream by key, \
                 so it cannot copy this table's rows (its changes are streamed all the same); add a primary key and \
                 request it again with `cdc snapshot`, or load its existing rows on the replicas by hand",
                request.table
            )));
        }
        let shard = match &request.shard {
            None => None,
            Some(name) => match self.settings.shards.iter().position(|s| s == name) {
                Some(i) => Some(i),
                None => {
                    return Err(Stop::Failed(format!(
                        "unknown shard {name:?} (the routing file has {:?})",
                        self.settings.shards
                    )))
                }
            },
        };
        signal::started(sql, request.id).await?;
        let label = request.table.to_string();
        let mut after = request.last_key.clone();
        let mut copied = request.rows_copied.max(0) as u64;
        let started = Instant::now();
        let mut copied_here: u64 = 0;
        let mut last_log = Instant::now();
        let estimate = shape.estimated_rows.max(0.0) as u64;
        tracing::info!(
            request = request.id,
            table = %request.table,
            kind = %request.kind,
            resume_after_rows = copied,
            estimated_rows = estimate,
            filter = request.where_clause.as_deref().unwrap_or(""),
            shard = request.shard.as_deref().unwrap_or("all"),
            "snapshot of table started"
        );
        let mut shape = shape;
        loop {
            // Read the definition again before each chunk: a schema change while copying (a column
            // added, dropped, renamed) must not be copied with the old columns.
            shape = match reader::shape(sql, &request.table).await? {
                Some(now) => {
                    if now
                        .pk
                        .iter()
                        .map(|k| &k.name)
                        .ne(shape.pk.iter().map(|k| &k.name))
                    {
                        tracing::info!(request = request.id, table = %request.table, "the table's primary key changed during its copy: copying it again from the start");
                        after = None;
                        copied = 0;
                    }
                    if now.pk.is_empty() {
                        return Err(Stop::Failed(format!(
                            "the primary key of table {} was dropped during its copy",
                            request.table
                        )));
                    }
                    now
                }
                None => {
                    tracing::info!(request = request.id, table = %request.table, "the table was dropped during its copy: nothing more to copy");
                    break;
                }
            };
            let Some(done) = self
                .chunk(sql, request, &shape, after.as_deref(), shard)
                .await?
            else {
                break;
            };
            copied += done.read as u64;
            copied_here += done.published;
            signal::advanced(sql, request.id, &done.last_key, copied as i64).await?;
            after = Some(done.last_key);
            metrics::gauge!(m::SNAPSHOT_ROWS_REMAINING, "table" => label.clone())
                .set(estimate.saturating_sub(copied) as f64);
            if last_log.elapsed() >= LOG_EVERY {
                last_log = Instant::now();
                let rate = copied_here as f64 / started.elapsed().as_secs_f64().max(0.001);
                let remaining = estimate.saturating_sub(copied);
                tracing::info!(
                    table = %request.table,
                    rows = copied,
                    rows_per_second = rate.round(),
                    estimated_remaining = remaining,
                    eta_seconds = (remaining as f64 / rate.max(1.0)).round(),
                    "snapshot progress"
                );
            }
            if done.read < self.settings.chunk_rows {
                break;
            }
        }
        metrics::gauge!(m::SNAPSHOT_ROWS_REMAINING, "table" => label).set(0.0);
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            request = request.id,
            table = %request.table,
            rows = copied,
            seconds = (seconds * 10.0).round() / 10.0,
            rows_per_second = (copied_here as f64 / seconds.max(0.001)).round(),
            "snapshot of table done"
        );
        Ok(())
    }

    /// One chunk between its watermarks, read again until the pump publishes it; `None` when the
    /// table has no more rows.
    async fn chunk(
        &mut self,
        sql: &Client,
        request: &Request,
        shape: &Shape,
        after: Option<&[String]>,
        shard: Option<usize>,
    ) -> Result<Option<ChunkDone>, Stop> {
        loop {
            let token = self.token();
            self.watermark(sql, Mark::Low, token, Some(&request.table))
                .await?;
            let rows = reader::read_chunk(
                sql,
                shape,
                after,
                request.where_clause.as_deref(),
                self.settings.chunk_rows,
                self.settings.numeric_as_string,
            )
            .await
            .map_err(|e| request_error(e, request))?;
            let (read, Some(last_key)) = (rows.read, rows.last_key.clone()) else {
                return Ok(None);
            };
            let chunk = Chunk {
                token,
                request: request.id,
                table: request.table.clone(),
                rows: rows.rows,
                in_progress: rows.in_progress,
                shard,
            };
            tokio::select! {
                _ = self.stop.cancelled() => return Err(Stop::Cancelled),
                sent = self.chunks.send(chunk) => if sent.is_err() { return Err(Stop::Cancelled) },
            }
            self.watermark(sql, Mark::High, token, None).await?;
            loop {
                let event = tokio::select! {
                    _ = self.stop.cancelled() => return Err(Stop::Cancelled),
                    event = self.events.recv() => event.ok_or(Stop::Cancelled)?,
                };
                match event {
                    Event::Requested(id) if !self.queue.contains(&id) => {
                        self.queue.push_back(id);
                    }
                    Event::Published { token: t, rows } if t == token => {
                        metrics::counter!(m::SNAPSHOT_ROWS, "table" => request.table.to_string())
                            .increment(rows);
                        return Ok(Some(ChunkDone {
                            published: rows,
                            read,
                            last_key,
                        }));
                    }
                    Event::Retry { token: t, reason } if t == token => {
                        tracing::debug!(table = %request.table, reason, "reading the chunk again");
                        break;
                    }
                    _ => {}
                }
            }
        }
    }

    async fn watermark(
        &self,
        sql: &Client,
        mark: Mark,
        token: u64,
        table: Option<&shared::TableName>,
    ) -> Result<(), CdcError> {
        let content = serde_json::to_string(&Watermark {
            watermark: mark,
            token,
            schema: table.map(|t| t.schema.clone()),
            table: table.map(|t| t.name.clone()),
        })
        .unwrap_or_default();
        sql.execute(
            "SELECT pg_logical_emit_message(true, $1, $2)",
            &[&MESSAGE_PREFIX, &content],
        )
        .await
        .map_err(|source| CdcError::SourceQuery {
            context: "writing a snapshot watermark",
            source,
        })?;
        Ok(())
    }
}

/// A failed chunk read: the request's fault (a bad filter, a type the key cannot be compared by) or a
/// transient failure.
fn request_error(e: tokio_postgres::Error, request: &Request) -> Stop {
    match e.as_db_error() {
        Some(db) if !is_transient(db.code().code()) => Stop::Failed(format!(
            "reading {} failed: {}{}",
            request.table,
            db.message(),
            if request.where_clause.is_some() {
                " (check the request's --where filter)"
            } else {
                ""
            }
        )),
        _ => Stop::Transient(CdcError::SourceQuery {
            context: "reading a snapshot chunk",
            source: e,
        }),
    }
}

/// SQLSTATE classes worth retrying: connection, resources, operator intervention, rollback.
fn is_transient(code: &str) -> bool {
    ["08", "53", "57", "40"].iter().any(|c| code.starts_with(c)) || code == "55006"
}
