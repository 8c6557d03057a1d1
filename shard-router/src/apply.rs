//! What the partition tasks share: the replica, the catalog of its tables, and the steps of applying a
//! flush (DDL first, then one transaction with the rows and the position) and a truncate.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use shared::{Ddl, Lsn};

use crate::batch::{AppliedPosition, Flush, Row};
use crate::catalog::Catalog;
use crate::error::{is_transient, Position, RouterError};
use crate::metrics as m;
use crate::plan::{plan, Statement};
use crate::replica::{AnyReplica, Outcome, Replica};
use crate::schema::{self, ReplicaTable};
use crate::sql::{self, TableDef, TableName};

/// The replica and its catalog, shared by every partition task of the process.
#[derive(Debug)]
pub struct Applier<R = AnyReplica> {
    pub replica: R,
    pub topic: String,
    /// The consumer group, for the spans' `messaging.consumer.group.name`.
    pub group: String,
    /// The replica's database and address, for the database spans.
    pub db_target: crate::trace::DbTarget,
    catalog: RwLock<Catalog>,
    /// Serialises DDL so two partitions never create the same table at once.
    ddl: tokio::sync::Mutex<()>,
    /// The schema-change barriers a partition of this process passed (the latest 1024).
    passed: std::sync::Mutex<std::collections::VecDeque<(String, Lsn)>>,
    /// Turns at the replica, one per pooled connection (SQLite: one writer): a partition takes its
    /// turn before planning, so the partitions waiting hold their rows but not also their planned
    /// statements.
    writer: tokio::sync::Semaphore,
}

impl<R: Replica> Applier<R> {
    pub fn new(replica: R, topic: String) -> Result<Self, RouterError> {
        let catalog = Catalog::new(replica.dialect(), replica.collation())?;
        let writer = tokio::sync::Semaphore::new(crate::replica::connections(replica.dialect()));
        Ok(Applier {
            replica,
            group: String::new(),
            db_target: crate::trace::DbTarget::default(),
            topic,
            catalog: RwLock::new(catalog),
            ddl: tokio::sync::Mutex::new(()),
            passed: Default::default(),
            writer,
        })
    }

    fn at(&self, partition: i32, offset: i64) -> Position {
        Position {
            topic: self.topic.clone(),
            partition,
            offset,
        }
    }

    fn catalog(&self) -> std::sync::RwLockReadGuard<'_, Catalog> {
        // A poisoned lock means a panic elsewhere while reconciling; the catalog is still a valid map.
        self.catalog.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates the tables and columns the rows need that the replica lacks.
    async fn ensure_tables(&self, partition: i32, rows: &[Row]) -> Result<(), RouterError> {
        let needs = |c: &Catalog| {
            let mut previous: Option<&shared::RowChange> = None;
            rows.iter().any(|r| {
                let same = previous.is_some_and(|p| crate::catalog::same_shape(p, &r.change));
                previous = Some(&r.change);
                !same && c.needs_ddl(&r.change)
            })
        };
        if !needs(&self.catalog()) {
            return Ok(());
        }
        let _guard = self.ddl.lock().await;
        let mut next = self.catalog().clone();
        for row in rows {
            if !next.needs_ddl(&row.change) {
                continue;
            }
            let name = &row.change.table;
            let (schema, table) = sql::replica_table(self.replica.dialect(), name);
            let existing = self.replica.existing_columns(schema, &table).await?;
            let event_error = |e: crate::catalog::CatalogError| RouterError::Event {
                at: self.at(partition, row.offset),
                table: name.to_string(),
                cause: e.to_string(),
                db_error: None,
                isolated: true,
            };
            if existing.is_some() && next.lookup(name).is_none() {
                // First sight of a table the replica has: its columns' sizes must still fit.
                let types = self.replica.column_types(schema, &table).await?;
                next.check_replica_types(&row.change, &types)
                    .map_err(event_error)?;
            }
            let ddl = next
                .reconcile(&row.change, existing.as_deref())
                .map_err(event_error)?;
            self.replica.run_ddl(&ddl).await?;
        }
        *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }

    /// Applies a flush in one replica transaction, with the position (and a barrier arrival), if
    /// the replica's position is still `before`. Applying the same flush again after its commit
    /// succeeded (the answer was lost) does nothing.
    pub async fn apply(
        &self,
        partition: i32,
        before: &AppliedPosition,
        flush: &Flush,
        arrival: Option<(&str, Lsn)>,
    ) -> Result<(), RouterError> {
        // Never closed: `Err` cannot happen, and would only mean no turn-taking.
        let _turn = self.writer.acquire().await.ok();
        self.ensure_tables(partition, &flush.rows).await?;
        let changes = flush.rows.iter().map(|r| &r.change);
        let statements = plan(&self.catalog(), changes).map_err(|e| {
            let row = flush.rows.get(e.index);
            RouterError::Event {
                at: self.at(partition, row.map_or(-1, |r| r.offset)),
                table: e.table.to_string(),
                cause: e.to_string(),
                db_error: None,
                isolated: row.is_some(),
            }
        })?;
        let started = std::time::Instant::now();
        match self
            .replica
            .apply(
                &statements,
                &self.topic,
                partition,
                before,
                &flush.position,
                arrival,
                &flush.dead_letters,
            )
            .await
        {
            Ok(Outcome::AlreadyApplied) => {
                tracing::info!(
                    partition,
                    "the replica already holds this batch (an earlier commit's answer was lost)"
                );
                Ok(())
            }
            Ok(Outcome::Moved(found)) => Err(RouterError::Fenced {
                topic: self.topic.clone(),
                partition,
                found: format!("{found:?}"),
            }),
            Ok(Outcome::Applied) => {
                metrics::histogram!(m::REPLICA_COMMIT_LATENCY)
                    .record(started.elapsed().as_secs_f64());
                metrics::histogram!(m::BATCH_ROWS).record(flush.rows.len() as f64);
                metrics::counter!(m::TRANSACTIONS_APPLIED).increment(flush.frames as u64);
                count_rows(&flush.rows);
                record_lag(&flush.rows);
                Ok(())
            }
            Err(failed) if failed.index.is_none() || is_transient(&failed.source) => {
                Err(RouterError::replica("applying a batch", failed.source))
            }
            Err(failed) => Err(self.diagnose(partition, &flush.rows, failed.source).await),
        }
    }

    /// Applies the row change of a dead letter (the message at `row.offset`, set aside earlier) and
    /// marks it replayed, in one replica transaction, unless it is not recorded or is resolved
    /// already (`Ok(false)`). `row: None` marks it `discarded` without applying anything.
    pub async fn replay(
        &self,
        partition: i32,
        offset: i64,
        row: Option<&Row>,
    ) -> Result<bool, RouterError> {
        let rows = row.map(std::slice::from_ref).unwrap_or_default();
        self.ensure_tables(partition, rows).await?;
        let statements = plan(&self.catalog(), rows.iter().map(|r| &r.change)).map_err(|e| {
            RouterError::Event {
                at: self.at(partition, offset),
                table: e.table.to_string(),
                cause: e.to_string(),
                db_error: None,
                isolated: true,
            }
        })?;
        let resolution = if row.is_some() {
            "replayed"
        } else {
            "discarded"
        };
        match self
            .replica
            .resolve_dead_letter(&self.topic, partition, offset, resolution, &statements)
            .await
        {
            Ok(done) => {
                if done && row.is_some() {
                    count_rows(rows);
                }
                Ok(done)
            }
            Err(failed) if failed.index.is_none() || is_transient(&failed.source) => Err(
                RouterError::replica("replaying a dead letter", failed.source),
            ),
            Err(failed) => Err(self.diagnose(partition, rows, failed.source).await),
        }
    }

    /// A definite error in a batch: replays it statement by statement for one event at a time in a
    /// rolled-back transaction to name the event that fails.
    async fn diagnose(&self, partition: i32, rows: &[Row], error: sqlx::Error) -> RouterError {
        let mut statements: Vec<Statement> = Vec::new();
        let mut owner: Vec<usize> = Vec::new();
        {
            let catalog = self.catalog();
            for (i, row) in rows.iter().enumerate() {
                if let Ok(s) = plan(&catalog, [&row.change]) {
                    owner.extend(std::iter::repeat_n(i, s.len()));
                    statements.extend(s);
                }
            }
        }
        let (row, error, isolated) = match self.replica.dry_run(&statements).await {
            Err(f) => match f
                .index
                .and_then(|i| owner.get(i))
                .and_then(|&i| rows.get(i))
            {
                Some(row) => (Some(row), f.source, true),
                None => (rows.first(), error, false),
            },
            Ok(()) => (rows.first(), error, false),
        };
        let cause = match &error {
            sqlx::Error::Database(db) => format!(
                "the replica refused it: {}",
                crate::error::redacted_db_message(db.message())
            ),
            other => other.to_string(),
        };
        RouterError::Event {
            at: self.at(partition, row.map_or(-1, |r| r.offset)),
            table: row.map(|r| r.change.table.to_string()).unwrap_or_default(),
            cause,
            db_error: Some(Box::new(error)),
            isolated,
        }
    }

    /// Brings the replica table to the definition after a schema change (see [`crate::schema`]):
    /// plans from the replica's introspected state, runs the plan in one transaction, and plans again
    /// until nothing is left, so a plan cut short (a crash, a MySQL DDL that committed on its own)
    /// is finished, never repeated wrongly. A statement the replica refuses (a narrowing type change
    /// the data does not fit) stops the partition, naming the table and the statement.
    pub async fn schema_change(
        &self,
        partition: i32,
        offset: i64,
        ddl: &Ddl,
    ) -> Result<(), RouterError> {
        let dialect = self.replica.dialect();
        let _guard = self.ddl.lock().await;
        let old_name = ddl.before.as_ref().map(|d| d.name());
        let new_name = ddl.after.as_ref().map(|d| d.name());
        let table = new_name
            .clone()
            .or(old_name.clone())
            .unwrap_or_else(|| TableName::new("", ""));
        // A schema change that fails stops the partition whatever `--on-error` says: the other
        // partitions wait at its barrier.
        let event_error = |cause: String| RouterError::Event {
            at: self.at(partition, offset),
            table: table.to_string(),
            cause,
            db_error: None,
            isolated: true,
        };
        let mut left = Vec::new();
        for round in 0..3 {
            let new = match &new_name {
                Some(n) => self.introspect(n).await?,
                None => None,
            };
            let old = match &old_name {
                Some(n) if Some(n) != new_name.as_ref() || new_name.is_none() => {
                    self.introspect(n).await?
                }
                _ => None,
            };
            let statements = schema::plan(
                dialect,
                self.replica.collation(),
                ddl,
                old.as_ref(),
                new.as_ref(),
                round == 0,
            )
            .map_err(|e| event_error(e.to_string()))?;
            if statements.is_empty() {
                left.clear();
                break;
            }
            if round > 0 {
                tracing::info!(table = %table, statements = statements.len(), "finishing a schema change an earlier plan left incomplete");
            }
            if let Err(failed) = self.replica.apply_schema(&statements).await {
                let statement = failed
                    .index
                    .and_then(|i| statements.get(i))
                    .map_or("", |s| s.sql.as_str());
                if failed.index.is_none() || is_transient(&failed.source) {
                    return Err(RouterError::replica(
                        format!("applying the schema change of {table}: {statement}"),
                        failed.source,
                    ));
                }
                let cause = match &failed.source {
                    sqlx::Error::Database(db) => crate::error::redacted_db_message(db.message()),
                    other => other.to_string(),
                };
                return Err(event_error(format!(
                    "the replica refused the schema change {} ({statement}): {cause}; change the replica \
                     table by hand to match the source, then restart the router",
                    ddl.command
                )));
            }
            left = statements;
        }
        if !left.is_empty() {
            return Err(event_error(format!(
                "the replica table still differs from the source's definition after applying {} three \
                 times; last statements: {}",
                ddl.command,
                left.iter().map(|s| s.sql.as_str()).collect::<Vec<_>>().join("; ")
            )));
        }
        Ok(())
    }

    /// After a schema change's barrier `(key, lsn)`: forgets what the catalog knows of these tables,
    /// the first time a partition of this process passes that barrier. Only then: the first one to
    /// pass goes on to apply rows with the new shape (learnt again from the replica), while the
    /// others may still be on their way through the barrier; forgetting again then would pull the
    /// table from under a flush being planned.
    pub fn forget_once(&self, key: &str, lsn: Lsn, names: &[TableName]) {
        {
            let mut passed = self.passed.lock().unwrap_or_else(|e| e.into_inner());
            if passed.iter().any(|(k, l)| k == key && *l == lsn) {
                return;
            }
            if passed.len() >= 1024 {
                passed.pop_front();
            }
            passed.push_back((key.to_owned(), lsn));
        }
        let mut catalog = self.catalog.write().unwrap_or_else(|e| e.into_inner());
        for name in names {
            catalog.forget(name);
        }
    }

    /// The replica table of a source table: columns and keys; None when it does not exist.
    async fn introspect(&self, name: &TableName) -> Result<Option<ReplicaTable>, RouterError> {
        let (schema, table) = sql::replica_table(self.replica.dialect(), name);
        let Some(columns) = self.replica.existing_columns(schema, &table).await? else {
            return Ok(None);
        };
        let keys = self.replica.table_keys(schema, &table).await?;
        Ok(Some(ReplicaTable {
            columns,
            pk: keys.pk,
            pk_constraint: keys.pk_constraint,
            indexes: keys.indexes,
        }))
    }

    /// The statement that empties a source table on the replica, if the replica has it.
    pub async fn delete_all(&self, name: &TableName) -> Result<Option<Statement>, RouterError> {
        let dialect = self.replica.dialect();
        let (rschema, rtable) = sql::replica_table(dialect, name);
        if self
            .replica
            .existing_columns(rschema, &rtable)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        // A table the replica has but this process has not written yet is emptied all the same.
        let def = self.catalog().lookup(name).cloned().unwrap_or_else(|| {
            Arc::new(TableDef {
                name: name.clone(),
                columns: Vec::new(),
                pk: Vec::new(),
            })
        });
        Ok(Some(Statement::delete_all(dialect, def)))
    }
}

/// One end-to-end lag observation per source transaction in the flush.
fn record_lag(rows: &[Row]) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut last: Option<&str> = None;
    for row in rows {
        let ts = row.change.origin.timestamp.as_deref();
        if ts.is_some() && ts != last {
            last = ts;
            if let Some(t) = ts.and_then(shared::change::parse_pg_timestamp) {
                metrics::histogram!(m::END_TO_END_LAG).record((now - t).max(0.0));
            }
        }
    }
}

fn count_rows(rows: &[Row]) {
    let mut counts: BTreeMap<(&TableName, &'static str), u64> = BTreeMap::new();
    for row in rows {
        let op = row.change.action().op_label();
        *counts.entry((&row.change.table, op)).or_default() += 1;
    }
    for ((table, op), n) in counts {
        metrics::counter!(m::ROWS_APPLIED, "table" => table.to_string(), "op" => op).increment(n);
    }
}
