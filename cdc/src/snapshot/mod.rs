//! Snapshots: copying tables that already hold data into the same topics and partitions as the
//! stream, consistently with it, while streaming goes on (the DBLog algorithm, also Debezium's
//! incremental snapshot).
//!
//! A table is copied in chunks of rows in primary-key order. For each chunk the [`runner`]
//! 1. commits a *low watermark* (a transactional logical message, prefix [`MESSAGE_PREFIX`]) into the
//!    WAL,
//! 2. reads the chunk in a repeatable-read transaction, noting the transactions its snapshot saw in
//!    progress, and hands the rows to the pump,
//! 3. commits a *high watermark*.
//!
//! The pump (through the [`Coordinator`]) sees both watermarks in the stream, in commit order. Every
//! key of the table that a transaction between them changed is dropped from the chunk: the stream
//! already carries that change, and what the chunk read for it may be older or newer. The rest of the
//! chunk is published right after the high watermark's transaction, as one frame per partition (`B`,
//! `I`s, `C`, the `B`/`C` marked with the request id), so every row lands after the stream's changes
//! that preceded the read and before those that follow. A chunk whose snapshot still saw as running a
//! transaction the stream delivered before the low watermark (a commit racing the read) is read
//! again, as is a chunk during which the table was truncated.
//!
//! Requests and progress live in the source's `cascade.snapshot_requests` ([`signal`]); the key of the
//! last row copied is written there only after Kafka acknowledged the chunk, so a cdc killed mid-copy
//! resumes at the next chunk.

pub mod command;
pub mod reader;
pub mod runner;
pub mod signal;

use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use shared::routing::encode_key;
use shared::{Column, RowChange, RowOp, TableName};
use tokio::sync::mpsc;

use crate::progress::TxnId;

/// Prefix of the watermark messages cdc writes into the source's WAL.
pub const MESSAGE_PREFIX: &str = "cascade.snapshot";

/// Whether cdc copies the existing rows when it creates its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SnapshotMode {
    /// Copy every table the stream captures when the slot is created (the first run).
    Initial,
    /// Stream only what changes after the slot is created.
    Never,
}

/// The content of a watermark message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    pub watermark: Mark,
    pub token: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mark {
    Low,
    High,
}

/// A chunk read by the runner, waiting for its high watermark.
#[derive(Debug)]
pub struct Chunk {
    pub token: u64,
    pub request: i64,
    pub table: TableName,
    pub rows: Vec<RowChange>,
    pub in_progress: Vec<u32>,
    /// Publish only to this shard (index in the shard list).
    pub shard: Option<usize>,
}

/// What the pump tells the runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A request was inserted into the signal table (seen in the stream).
    Requested(i64),
    /// The chunk is in Kafka: `rows` published.
    Published { token: u64, rows: u64 },
    /// The chunk must be read again.
    Retry { token: u64, reason: &'static str },
}

/// Keys changed in the stream between a chunk's watermarks.
#[derive(Debug)]
struct Window {
    token: u64,
    table: TableName,
    keys: HashSet<Vec<u8>>,
    /// Why the chunk cannot be used whatever its keys (a truncate; a change whose key is unknown).
    spoiled: Option<&'static str>,
    /// The sequence number of the first commit after the low watermark.
    from_seq: u64,
}

/// Most window keys kept; beyond, the chunk is read again (a smaller window next time is likely).
const MAX_WINDOW_KEYS: usize = 1_000_000;
/// Committed xids remembered, to find a commit that raced a chunk's read.
const RECENT_XIDS: usize = 16_384;

/// The pump's side of snapshots: watches the stream for signal rows and watermarks, collects the
/// window's keys, and hands back chunks ready to publish.
pub struct Coordinator {
    /// Tokens of this session's chunks carry it in their upper half; watermarks of other sessions
    /// (replayed from the WAL after a restart) are ignored.
    session: u64,
    chunks: mpsc::Receiver<Chunk>,
    events: mpsc::UnboundedSender<Event>,
    window: Option<Window>,
    /// A chunk whose high watermark was seen in the open transaction: published after its commit.
    ready: Option<Chunk>,
    /// The chunk being published: its transaction, messages not yet acknowledged, token and rows.
    pending: Option<Pending>,
    recent: VecDeque<u32>,
    recent_seq: HashMap<u32, u64>,
    seq: u64,
}

#[derive(Debug)]
struct Pending {
    txn: TxnId,
    token: u64,
    outstanding: u64,
    sealed: bool,
    rows: u64,
}

impl Coordinator {
    pub fn new(
        session: u64,
        chunks: mpsc::Receiver<Chunk>,
        events: mpsc::UnboundedSender<Event>,
    ) -> Self {
        Coordinator {
            session,
            chunks,
            events,
            window: None,
            ready: None,
            pending: None,
            recent: VecDeque::with_capacity(RECENT_XIDS),
            recent_seq: HashMap::with_capacity(RECENT_XIDS),
            seq: 0,
        }
    }

    /// Whether `table` is cascade's signal table, whose changes are never published.
    pub fn is_signal(table: &TableName) -> bool {
        table.schema == signal::SCHEMA && table.name == signal::TABLE
    }

    /// A change of the signal table: an insert is a new request.
    pub fn signal_row(&self, row: &RowChange) {
        if let RowOp::Insert { new } = &row.op {
            if let Some(id) = new
                .iter()
                .find(|c| c.name == "id")
                .and_then(|c| c.value.get().parse::<i64>().ok())
            {
                let _ = self.events.send(Event::Requested(id));
            }
        }
    }

    /// A row change of the stream: remembers its key when a window is open on its table.
    pub fn observe(&mut self, row: &RowChange) {
        let Some(w) = self.window.as_mut() else {
            return;
        };
        if w.table != row.table || w.spoiled.is_some() {
            return;
        }
        let (new, old) = match &row.op {
            RowOp::Insert { new } => (Some(new), None),
            RowOp::Update { new, old } => (Some(new), old.as_ref()),
            RowOp::Delete { old } => (None, Some(old)),
        };
        for cols in [new, old].into_iter().flatten() {
            match key_of(cols, row) {
                Some(key) => {
                    w.keys.insert(key);
                }
                None => w.spoiled = Some("a change without its key values"),
            }
        }
        if w.keys.len() > MAX_WINDOW_KEYS {
            w.spoiled = Some("too many changes between the watermarks");
        }
    }

    /// A truncate in the stream: a chunk read around it cannot be used.
    pub fn observe_truncate(&mut self, table: &TableName) {
        if let Some(w) = self.window.as_mut().filter(|w| &w.table == table) {
            w.spoiled = Some("the table was truncated");
        }
    }

    /// A schema change in the stream: a chunk read around it may have the old shape.
    pub fn observe_schema(&mut self, ddl: &shared::Ddl) {
        let tables = [ddl.before.as_ref(), ddl.after.as_ref()];
        if let Some(w) = self.window.as_mut().filter(|w| {
            tables
                .iter()
                .flatten()
                .any(|d| d.schema == w.table.schema && d.table == w.table.name)
        }) {
            w.spoiled = Some("the table's definition changed");
        }
    }

    /// A logical message in the stream; watermarks of this session open and close windows.
    pub fn message(&mut self, prefix: &str, content: &str) {
        if prefix != MESSAGE_PREFIX {
            return;
        }
        let Ok(mark) = serde_json::from_str::<Watermark>(content) else {
            tracing::warn!("ignoring a malformed snapshot watermark message");
            return;
        };
        if mark.token >> 32 != self.session {
            return;
        }
        match mark.watermark {
            Mark::Low => {
                let (Some(schema), Some(table)) = (mark.schema, mark.table) else {
                    return;
                };
                self.window = Some(Window {
                    token: mark.token,
                    table: TableName::new(schema, table),
                    keys: HashSet::new(),
                    spoiled: None,
                    from_seq: self.seq + 1,
                });
            }
            Mark::High => self.high(mark.token),
        }
    }

    fn high(&mut self, token: u64) {
        // The runner hands the chunk over before it writes the high watermark; older chunks left in
        // the channel (read again since) are dropped here.
        let chunk = loop {
            match self.chunks.try_recv() {
                Ok(c) if c.token == token => break Some(c),
                Ok(_) => continue,
                Err(_) => break None,
            }
        };
        let window = match self.window.take() {
            Some(w) if w.token == token => w,
            other => {
                self.window = other;
                self.retry(token, "the low watermark was not seen");
                return;
            }
        };
        let Some(mut chunk) = chunk else {
            self.retry(token, "the chunk's rows were not handed over");
            return;
        };
        if let Some(reason) = window.spoiled {
            self.retry(token, reason);
            return;
        }
        // A transaction the chunk's snapshot saw running, but which the stream delivered before the
        // low watermark: its changes are neither in the chunk nor after the watermark.
        let raced = chunk.in_progress.iter().any(|xid| {
            self.recent_seq
                .get(xid)
                .is_some_and(|&seq| seq < window.from_seq)
        });
        if raced {
            self.retry(token, "a commit raced the chunk's read");
            return;
        }
        chunk.rows.retain(|row| match &row.op {
            RowOp::Insert { new } => key_of(new, row).is_some_and(|k| !window.keys.contains(&k)),
            _ => false,
        });
        self.ready = Some(chunk);
    }

    fn retry(&self, token: u64, reason: &'static str) {
        metrics::counter!(crate::metrics::SNAPSHOT_CHUNK_RETRIES, "reason" => reason).increment(1);
        tracing::debug!(token, reason, "snapshot chunk will be read again");
        let _ = self.events.send(Event::Retry { token, reason });
    }

    /// A transaction of the stream committed.
    pub fn committed(&mut self, xid: u64) {
        self.seq += 1;
        let xid = xid as u32;
        if self.recent.len() == RECENT_XIDS {
            if let Some(old) = self.recent.pop_front() {
                if self
                    .recent_seq
                    .get(&old)
                    .is_some_and(|&s| s + RECENT_XIDS as u64 <= self.seq)
                {
                    self.recent_seq.remove(&old);
                }
            }
        }
        self.recent.push_back(xid);
        self.recent_seq.insert(xid, self.seq);
    }

    /// The chunk to publish now (after the high watermark's transaction committed).
    pub fn take_ready(&mut self) -> Option<Chunk> {
        self.ready.take()
    }

    /// The chunk's messages are being handed to Kafka under `txn`.
    pub fn publishing(&mut self, txn: TxnId, token: u64) {
        self.pending = Some(Pending {
            txn,
            token,
            outstanding: 0,
            sealed: false,
            rows: 0,
        });
    }

    /// A message of `txn` was handed to Kafka.
    pub fn sent(&mut self, txn: TxnId) {
        if let Some(p) = self.pending.as_mut().filter(|p| p.txn == txn) {
            p.outstanding += 1;
        }
    }

    /// All of the chunk's messages are handed over; `rows` rows.
    pub fn sealed(&mut self, rows: u64) {
        if let Some(p) = self.pending.as_mut() {
            p.sealed = true;
            p.rows = rows;
        }
        self.finish_if_done();
    }

    /// Kafka acknowledged a message of `txn`.
    pub fn acked(&mut self, txn: TxnId) {
        if let Some(p) = self.pending.as_mut().filter(|p| p.txn == txn) {
            p.outstanding = p.outstanding.saturating_sub(1);
        }
        self.finish_if_done();
    }

    fn finish_if_done(&mut self) {
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.sealed && p.outstanding == 0)
        {
            if let Some(p) = self.pending.take() {
                let _ = self.events.send(Event::Published {
                    token: p.token,
                    rows: p.rows,
                });
            }
        }
    }
}

/// The canonical key of a row's primary-key columns (as the router encodes Kafka keys); `None` when
/// a key column is missing (an unchanged TOASTed key) or the table has no key.
fn key_of(cols: &[Column], row: &RowChange) -> Option<Vec<u8>> {
    if row.pk.is_empty() {
        return None;
    }
    let mut key = Vec::with_capacity(row.pk.len());
    for pk in &row.pk {
        key.push(cols.iter().find(|c| c.name == pk.name)?);
    }
    Some(encode_key(key))
}

#[cfg(test)]
mod tests;
