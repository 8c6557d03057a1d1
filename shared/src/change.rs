//! The typed change model every stage works on: capture produces [`Change`]s, cdc frames, routes and
//! publishes them, the router batches and applies them. A change's shape is checked once, where it is
//! decoded ([`crate::codec`]); after that a delete always has its old key and an insert its new row, so
//! no stage re-checks optional fields.
//!
//! Column values stay the raw JSON text wal2json printed ([`Column::value`]), so a numeric such as
//! `12345678901234567890.0123456789` travels digit for digit and nothing is ever parsed through `f64`.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::Lsn;

/// What happened: wal2json's one-letter `action`, also the `op` label of metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    /// Begin of a source transaction (within one partition).
    #[serde(rename = "B")]
    Begin,
    /// A row was inserted.
    #[serde(rename = "I")]
    Insert,
    /// A row was updated.
    #[serde(rename = "U")]
    Update,
    /// A row was deleted.
    #[serde(rename = "D")]
    Delete,
    /// A table was truncated.
    #[serde(rename = "T")]
    Truncate,
    /// Commit of a source transaction (within one partition).
    #[serde(rename = "C")]
    Commit,
    /// A logical decoding message (`pg_logical_emit_message`).
    #[serde(rename = "M")]
    Message,
    /// A table's definition changed on the source (published by cdc, never printed by wal2json).
    #[serde(rename = "S")]
    Schema,
}

impl Action {
    /// The wal2json letter.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Begin => "B",
            Action::Insert => "I",
            Action::Update => "U",
            Action::Delete => "D",
            Action::Truncate => "T",
            Action::Commit => "C",
            Action::Message => "M",
            Action::Schema => "S",
        }
    }

    /// The `op` label of both binaries' metrics: `insert`, `update`, `delete`, `truncate` for row
    /// changes (`begin`, `commit`, `message` otherwise).
    pub fn op_label(self) -> &'static str {
        match self {
            Action::Begin => "begin",
            Action::Insert => "insert",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Truncate => "truncate",
            Action::Commit => "commit",
            Action::Message => "message",
            Action::Schema => "schema",
        }
    }

    /// True for the actions that change rows of a table (`I`, `U`, `D`, `T`).
    pub fn is_row_change(self) -> bool {
        matches!(
            self,
            Action::Insert | Action::Update | Action::Delete | Action::Truncate
        )
    }
}

/// A source table, `schema.name`, both unquoted.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl TableName {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        TableName {
            schema: schema.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for TableName {
    /// `schema.table`, unquoted: for logs and metric labels, never for SQL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// A column with its value, as in wal2json's `columns` and `identity` arrays.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    /// The type as PostgreSQL names it, with its modifier: `numeric(30,10)`, `character varying(20)`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The type's OID in the source catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typeoid: Option<u32>,
    /// The value exactly as wal2json printed it: a JSON number with every digit for numeric types, a
    /// string for everything else, `true`/`false` for booleans, `null` for NULL.
    pub value: Box<RawValue>,
}

impl PartialEq for Column {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.type_name == other.type_name
            && self.typeoid == other.typeoid
            && self.value.get() == other.value.get()
    }
}

/// A primary-key column, as in wal2json's `pk` array.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PkColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typeoid: Option<u32>,
}

/// A source transaction's boundary: what `B` and `C` carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnBoundary {
    pub xid: u64,
    /// The LSN of the commit record.
    pub lsn: Lsn,
    /// The LSN just past the commit record: the position confirmed to PostgreSQL once the transaction
    /// is safely in Kafka.
    pub nextlsn: Lsn,
    /// Commit time, as PostgreSQL prints it in the source's `TimeZone` (cdc pins UTC).
    pub timestamp: Option<String>,
    /// On a `C` published by cdc: how many messages of this transaction the partition holds between
    /// its `B` and this `C` (row changes and truncates), so a consumer can tell a whole frame from one
    /// that lost a message. None on `B` and on a `C` as wal2json prints it.
    pub messages: Option<u64>,
    /// On the `B` and `C` of a snapshot chunk (rows cdc copied from a table rather than read from the
    /// WAL): the id of the snapshot request in the source's `cascade.snapshot_requests`. Such a frame
    /// has `xid` 0 and the LSN of the high watermark it was published at. None for a source
    /// transaction.
    pub snapshot: Option<u64>,
}

impl TxnBoundary {
    /// The commit time as Unix seconds (see [`parse_pg_timestamp`]).
    pub fn commit_time_unix(&self) -> Option<f64> {
        self.timestamp.as_deref().and_then(parse_pg_timestamp)
    }
}

/// Where a row change or truncate came from in the source's stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub xid: Option<u64>,
    /// The LSN of the change itself.
    pub lsn: Option<Lsn>,
    /// Commit time of the change's transaction.
    pub timestamp: Option<String>,
}

/// The row part of an insert, update or delete.
#[derive(Clone, Debug, PartialEq)]
pub enum RowOp {
    /// A new row.
    Insert { new: Vec<Column> },
    /// A changed row. `new` leaves out unchanged TOASTed columns; `old` is the old key (or the old
    /// row with `REPLICA IDENTITY FULL`) when the source sent one.
    Update {
        new: Vec<Column>,
        old: Option<Vec<Column>>,
    },
    /// A deleted row, by its old key (or old row).
    Delete { old: Vec<Column> },
}

/// An insert, update or delete of one row.
#[derive(Clone, Debug, PartialEq)]
pub struct RowChange {
    pub origin: Origin,
    pub table: TableName,
    pub op: RowOp,
    /// The table's primary-key columns in key order; empty for a table without one.
    pub pk: Vec<PkColumn>,
}

impl RowChange {
    pub fn action(&self) -> Action {
        match self.op {
            RowOp::Insert { .. } => Action::Insert,
            RowOp::Update { .. } => Action::Update,
            RowOp::Delete { .. } => Action::Delete,
        }
    }

    /// The new row values (`I`, `U`).
    pub fn new_values(&self) -> Option<&[Column]> {
        match &self.op {
            RowOp::Insert { new } | RowOp::Update { new, .. } => Some(new),
            RowOp::Delete { .. } => None,
        }
    }

    /// The old key or row (`D`, and `U` when the source sent it).
    pub fn old_values(&self) -> Option<&[Column]> {
        match &self.op {
            RowOp::Update { old, .. } => old.as_deref(),
            RowOp::Delete { old } => Some(old),
            RowOp::Insert { .. } => None,
        }
    }
}

/// A table truncated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncate {
    pub origin: Origin,
    pub table: TableName,
    /// How many partitions of this message's topic cdc sent the truncate to: the routers' barrier
    /// waits for that many (see docs/event-format.md). None in wal2json input and in messages of
    /// older cdc versions.
    pub partitions: Option<u32>,
}

/// A logical decoding message (`pg_logical_emit_message`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogicalMessage {
    pub origin: Origin,
    pub transactional: bool,
    pub prefix: String,
    pub content: String,
}

/// A table's definition at one point of the source's history, as cdc's event trigger reads it from
/// the source's catalog (see docs/event-format.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDefinition {
    pub schema: String,
    pub table: String,
    /// Every column in `attnum` order, generated ones too (wal2json prints them).
    pub columns: Vec<ColumnDefinition>,
    /// The primary key's column names in `attnum` order, as wal2json's `pk` lists them; empty: none.
    #[serde(default)]
    pub pk: Vec<String>,
    /// Indexes on plain columns, the primary key's excepted.
    #[serde(default)]
    pub indexes: Vec<IndexDefinition>,
}

impl TableDefinition {
    pub fn name(&self) -> TableName {
        TableName::new(self.schema.clone(), self.table.clone())
    }

    /// The column with attribute number `attnum`.
    pub fn column(&self, attnum: i16) -> Option<&ColumnDefinition> {
        self.columns.iter().find(|c| c.attnum == attnum)
    }
}

/// A column of a [`TableDefinition`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ColumnDefinition {
    /// The column's attribute number: stable across renames, so a renamed column is told from a
    /// dropped one and an added one.
    pub attnum: i16,
    pub name: String,
    /// The type as wal2json prints it, with its modifier: `numeric(20,4)`.
    #[serde(rename = "type")]
    pub type_name: String,
    pub typeoid: u32,
    pub not_null: bool,
    /// On a column the change added: the value every existing row has now (its default, evaluated
    /// once by the source), printed as wal2json prints values; absent when existing rows hold NULL or
    /// when the table is copied again ([`Ddl::recopy`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill: Option<Box<RawValue>>,
}

impl PartialEq for ColumnDefinition {
    fn eq(&self, other: &Self) -> bool {
        self.attnum == other.attnum
            && self.name == other.name
            && self.type_name == other.type_name
            && self.typeoid == other.typeoid
            && self.not_null == other.not_null
            && self.fill.as_ref().map(|v| v.get()) == other.fill.as_ref().map(|v| v.get())
    }
}

impl Eq for ColumnDefinition {}

/// An index of a [`TableDefinition`]: a name and plain columns, in index order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDefinition {
    pub name: String,
    pub columns: Vec<String>,
    pub unique: bool,
}

/// What an `S` event says: the command and the table's definition before and after it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ddl {
    /// The command tag: `CREATE TABLE`, `ALTER TABLE`, `DROP TABLE`, `CREATE INDEX`, `DROP INDEX`, …
    pub command: String,
    /// The source rewrote the table's rows (a volatile default, `ALTER … TYPE … USING`): existing
    /// rows changed without row events, so cdc copies the table again right after this change.
    #[serde(default)]
    pub recopy: bool,
    /// The definition before the command; None for a table it created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<TableDefinition>,
    /// The definition after it; None for a table it dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<TableDefinition>,
}

/// A table's definition changed, at this point of its transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaChange {
    pub origin: Origin,
    /// The table as it is named after the change (before it, for a drop).
    pub table: TableName,
    /// Like [`Truncate::partitions`]: how many partitions of the topic got this event.
    pub partitions: Option<u32>,
    pub ddl: Box<Ddl>,
}

/// One change in the stream, checked: every variant holds what its action needs.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Begin(TxnBoundary),
    Row(RowChange),
    Truncate(Truncate),
    Schema(SchemaChange),
    Message(LogicalMessage),
    Commit(TxnBoundary),
}

impl Change {
    pub fn action(&self) -> Action {
        match self {
            Change::Begin(_) => Action::Begin,
            Change::Row(row) => row.action(),
            Change::Truncate(_) => Action::Truncate,
            Change::Schema(_) => Action::Schema,
            Change::Message(_) => Action::Message,
            Change::Commit(_) => Action::Commit,
        }
    }

    /// The table a row change or truncate touches.
    pub fn table(&self) -> Option<&TableName> {
        match self {
            Change::Row(row) => Some(&row.table),
            Change::Truncate(t) => Some(&t.table),
            Change::Schema(s) => Some(&s.table),
            Change::Begin(_) | Change::Commit(_) | Change::Message(_) => None,
        }
    }

    /// The change's own LSN (for `B`/`C`: the commit record's).
    pub fn lsn(&self) -> Option<Lsn> {
        match self {
            Change::Begin(t) | Change::Commit(t) => Some(t.lsn),
            Change::Row(row) => row.origin.lsn,
            Change::Truncate(t) => t.origin.lsn,
            Change::Schema(s) => s.origin.lsn,
            Change::Message(m) => m.origin.lsn,
        }
    }
}

/// Seconds since the Unix epoch of a PostgreSQL ISO timestamp with a numeric offset, as wal2json
/// prints commit times (`2026-11-21 20:03:00.783386+00`; cdc pins `TimeZone=UTC`). `None` for anything
/// else (BC dates, `infinity`). Hand-written: the two formats we read do not justify a date-time crate.
pub fn parse_pg_timestamp(s: &str) -> Option<f64> {
    let (date, rest) = s.split_once(' ')?;
    let mut parts = date.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: i64 = parts.next()?.parse().ok()?;
    let day: i64 = parts.next()?.parse().ok()?;
    let sign_at = rest.rfind(['+', '-'])?;
    let (time, offset) = rest.split_at(sign_at);
    let mut t = time.splitn(3, ':');
    let hour: i64 = t.next()?.parse().ok()?;
    let minute: i64 = t.next()?.parse().ok()?;
    let second: f64 = t.next()?.parse().ok()?;
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let mut o = offset[1..].splitn(3, ':');
    let off_h: i64 = o.next()?.parse().ok()?;
    let off_m: i64 = o.next().map_or(Some(0), |m| m.parse().ok())?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from 1970-01-01 to the date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let local = days * 86_400 + hour * 3_600 + minute * 60;
    Some((local - sign * (off_h * 3_600 + off_m * 60)) as f64 + second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_times_parse_to_unix_seconds() {
        assert_eq!(parse_pg_timestamp("1970-01-01 00:00:00+00"), Some(0.0));
        assert_eq!(
            parse_pg_timestamp("2000-03-01 00:00:00+00"),
            Some(951_868_800.0)
        );
        let t = parse_pg_timestamp("2026-11-21 20:03:00.5+00").unwrap();
        assert_eq!(t, 1_795_291_380.5);
        assert_eq!(parse_pg_timestamp("2026-11-21 22:03:00.5+02"), Some(t));
        assert_eq!(parse_pg_timestamp("2026-11-21 14:33:00.5-05:30"), Some(t));
        assert_eq!(parse_pg_timestamp("infinity"), None);
        assert_eq!(parse_pg_timestamp("2026-13-01 00:00:00+00"), None);
    }

    #[test]
    fn tables_display_unquoted() {
        assert_eq!(
            TableName::new("public", "Order").to_string(),
            "public.Order"
        );
    }
}
