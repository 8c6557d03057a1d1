//! The untyped change event: the wire object as an Option-bag. Being replaced by the typed
//! [`crate::change::Change`] and [`crate::codec`]; kept while the router moves over.

use serde::{Deserialize, Serialize};

use crate::change::{parse_pg_timestamp, Action, Column, PkColumn};
use crate::Lsn;

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
    /// The commit time of the event's transaction as Unix seconds (see [`parse_pg_timestamp`]).
    pub fn commit_time_unix(&self) -> Option<f64> {
        self.timestamp.as_deref().and_then(parse_pg_timestamp)
    }

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
