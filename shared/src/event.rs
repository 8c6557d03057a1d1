//! The change event: Cascade's wire format on Kafka (documented in `docs/event-format.md`).
//!
//! Each Kafka message value is one JSON object shaped like a wal2json `format-version 2` line. Column values
//! are kept as the raw JSON text wal2json printed ([`RawValue`]), so a numeric such as
//! `12345678901234567890.0123456789` travels digit for digit and nothing is ever parsed through `f64`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::Lsn;

/// Kafka header that names the version of this format; present on every message cdc publishes.
pub const FORMAT_HEADER: &str = "cascade-format";
/// The current version of the format, the value of [`FORMAT_HEADER`].
pub const FORMAT_VERSION: &str = "1";

/// What happened: wal2json's one-letter `action`.
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

/// One change event. Which fields are present depends on `action`; see `docs/event-format.md`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    pub action: Action,
    /// The source transaction id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xid: Option<u64>,
    /// Commit time of the source transaction, in the source's `TimeZone` (cdc pins UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// For `B`/`C`: the LSN of the commit record. For row changes: the LSN of the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn: Option<Lsn>,
    /// For `B`/`C`: the LSN just past the commit record; the position confirmed to PostgreSQL once the
    /// transaction is safely in Kafka.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nextlsn: Option<Lsn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// New row values (`I`, `U`). An update leaves out unchanged TOASTed columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<Column>>,
    /// Old key values (`D`, and `U` when the key changed or the table has `REPLICA IDENTITY FULL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Vec<Column>>,
    /// The table's primary-key columns (row changes of tables that have one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pk: Option<Vec<PkColumn>>,
    /// `M` only: whether the message was transactional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactional: Option<bool>,
    /// `M` only: the message prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// `M` only: the message content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

impl ChangeEvent {
    /// An event with only `action` set; the building block for tests and framing messages.
    pub fn bare(action: Action) -> Self {
        ChangeEvent {
            action,
            xid: None,
            timestamp: None,
            lsn: None,
            nextlsn: None,
            schema: None,
            table: None,
            columns: None,
            identity: None,
            pk: None,
            transactional: None,
            prefix: None,
            content: None,
        }
    }

    /// `schema.table`, unquoted, for logs and metric labels.
    pub fn qualified_table(&self) -> Option<String> {
        match (&self.schema, &self.table) {
            (Some(s), Some(t)) => Some(format!("{s}.{t}")),
            _ => None,
        }
    }

    /// Encodes the event as the JSON value of a Kafka message.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain structs of strings, integers and raw JSON cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a Kafka message value.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_numeric_digits_and_round_trips() {
        let line = r#"{"action":"I","xid":727,"timestamp":"2026-11-21 20:03:00.783386+00","lsn":"0/1948458","schema":"public","table":"t","columns":[{"name":"n","type":"numeric(30,10)","typeoid":1700,"value":12345678901234567890.0123456789},{"name":"s","type":"text","typeoid":25,"value":"q\"uo'te\\ ü"},{"name":"x","type":"text","typeoid":25,"value":null}],"pk":[{"name":"id","type":"integer","typeoid":23}]}"#;
        let ev = ChangeEvent::from_json(line.as_bytes()).unwrap();
        assert_eq!(ev.action, Action::Insert);
        let cols = ev.columns.as_ref().unwrap();
        assert_eq!(cols[0].value.get(), "12345678901234567890.0123456789");
        assert_eq!(cols[2].value.get(), "null");
        let again = ChangeEvent::from_json(&ev.to_json()).unwrap();
        assert_eq!(again, ev);
        assert!(String::from_utf8(ev.to_json())
            .unwrap()
            .contains("12345678901234567890.0123456789"));
    }

    #[test]
    fn unknown_action_is_an_error() {
        assert!(ChangeEvent::from_json(br#"{"action":"X"}"#).is_err());
    }
}
